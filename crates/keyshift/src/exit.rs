//! Exit codes, which scripts test. Documented in `--help` and `docs/cli.md`.

use std::process::ExitCode;

use keyshift_core::rotation::Status;

/// Success; with `rotate --wait`, the rotation succeeded.
pub const SUCCESS: u8 = 0;
/// An error: network, API, or input found bad after parsing.
pub const ERROR: u8 = 1;
/// A usage error found by the argument parser (clap's own code).
pub const USAGE: u8 = 2;
/// `rotate --wait`: the rotation was rolled back (the old credential is
/// current again; nothing is broken, but nothing rotated).
pub const ROLLED_BACK: u8 = 3;
/// `rotate --wait`: the rotation failed and needs an operator.
pub const FAILED: u8 = 4;
/// `drill`: requests failed or rotations did not complete.
pub const DRILL_FAILURES: u8 = 5;
/// Interrupted by Ctrl-C (128 + SIGINT, as shells report it).
pub const INTERRUPTED: u8 = 130;

/// The exit code for a rotation that ended with `status`.
pub fn for_status(status: Status) -> u8 {
    match status {
        Status::Succeeded | Status::Running => SUCCESS,
        Status::RolledBack => ROLLED_BACK,
        Status::Failed => FAILED,
    }
}

/// `code` as an [`ExitCode`].
pub fn code(code: u8) -> ExitCode {
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_outcomes_map_to_distinct_codes() {
        assert_eq!(for_status(Status::Succeeded), 0);
        assert_eq!(for_status(Status::RolledBack), 3);
        assert_eq!(for_status(Status::Failed), 4);
        let all = [SUCCESS, ERROR, USAGE, ROLLED_BACK, FAILED, INTERRUPTED];
        let mut dedup = all.to_vec();
        dedup.sort_unstable();
        dedup.dedup();
        assert_eq!(dedup.len(), all.len());
    }

    #[test]
    fn usage_code_is_clap_s() {
        use clap::Parser;
        let e = crate::cli::Cli::try_parse_from(["keyshift", "--bogus"]).unwrap_err();
        assert_eq!(e.exit_code(), i32::from(USAGE));
    }
}
