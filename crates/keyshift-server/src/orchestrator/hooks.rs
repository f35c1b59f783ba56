//! Test hooks, inert unless their environment variables are set. They let
//! integration tests put a real server in the situations the invariants
//! must survive, against the real targets.
//!
//! - `KEYSHIFT_TEST_HALT_AT=<phase>:<before|after>` (e.g. `dual_accept:after`):
//!   the driver prints `keyshift: halted at <phase>:<when>` to stderr and
//!   stops forever at that boundary, so the test can SIGKILL the process
//!   there. `before` is after the in-flight state was persisted and before
//!   the step's side effect; `after` is after the side effect and before its
//!   result is persisted.
//! - `KEYSHIFT_TEST_REFUSE_VERIFY=<phase>`: after the step of that phase has
//!   done its real work on the target, its verification is reported as
//!   refused, as if the target had said no; the rollback that follows runs
//!   for real.

use keyshift_core::rotation::Phase;

/// The halt-point variable.
pub const HALT_ENV: &str = "KEYSHIFT_TEST_HALT_AT";
/// The refused-verification variable.
pub const REFUSE_ENV: &str = "KEYSHIFT_TEST_REFUSE_VERIFY";

/// Test hooks, read once from the environment.
#[derive(Debug, Clone, Default)]
pub struct TestHooks {
    halt_at: Option<(String, String)>,
    refuse_verify: Option<String>,
}

impl TestHooks {
    /// Reads [`HALT_ENV`] and [`REFUSE_ENV`].
    pub fn from_env() -> Self {
        let halt_at = std::env::var(HALT_ENV).ok().and_then(|v| {
            let (phase, when) = v.split_once(':')?;
            Some((phase.to_owned(), when.to_owned()))
        });
        let refuse_verify = std::env::var(REFUSE_ENV).ok();
        if halt_at.is_some() || refuse_verify.is_some() {
            tracing::warn!("test hooks are set ({HALT_ENV}, {REFUSE_ENV}): not for production");
        }
        Self {
            halt_at,
            refuse_verify,
        }
    }

    /// Halts forever if `phase:when` is the configured point.
    pub async fn halt_point(&self, phase: Phase, when: &str) {
        if let Some((p, w)) = &self.halt_at {
            if p == phase.as_str() && w == when {
                eprintln!("keyshift: halted at {p}:{w}");
                std::future::pending::<()>().await;
            }
        }
    }

    /// Whether verification in `phase` must be reported as refused.
    pub fn refuses_verify(&self, phase: Phase) -> bool {
        self.refuse_verify.as_deref() == Some(phase.as_str())
    }
}
