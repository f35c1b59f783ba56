//! The `exec` transport: one process per step, request on stdin, reply on
//! stdout, stderr logged.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tracing::{debug, warn};
use zeroize::Zeroizing;

use super::config::{human_duration, ExecConfig};
use super::protocol::{
    self, parse_reply, Fields, Reply, Request, MAX_LOGGED_BYTES, MAX_REPLY_BYTES,
};
use crate::TargetError;

/// How much stderr is read before the rest is dropped: what is logged
/// plus room for a whole secret value (64 KiB), so a value straddling the
/// log's cut is still redacted whole before the cut.
const STDERR_READ_BYTES: usize = MAX_LOGGED_BYTES + 64 * 1024;

/// Spare capacity tokio's `read_to_end` wants before each read: with it,
/// a buffer sized up front never reallocates (which would leave unzeroed
/// copies of a generated value behind).
const READ_SLACK: usize = 32;

/// How long to wait for a killed plugin to be reaped.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs an [`ExecConfig`]'s program.
pub(super) struct Exec {
    config: ExecConfig,
    /// Names the plugin in errors: `plugin <program>`.
    label: String,
}

/// What a finished plugin left behind.
struct Finished {
    status: ExitStatus,
    overflow: bool,
}

impl Exec {
    pub fn new(config: ExecConfig) -> Exec {
        let label = format!("plugin {}", config.program);
        Exec { config, label }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Runs one step: spawns the program, writes the request, reads the
    /// reply, all within the timeout.
    pub async fn call(&self, request: &Request<'_>) -> Result<Fields, TargetError> {
        let body = request.to_json();
        let mut child = self.command().spawn().map_err(|e| TargetError::Config {
            detail: format!("cannot start {}: {e}", self.label),
        })?;
        // Declared after `child`, so dropped first: the group dies before
        // kill_on_drop lets the leader be reaped (and its pid reused).
        let mut group = ProcessGroup(child.id());
        let mut out = Zeroizing::new(Vec::with_capacity(MAX_REPLY_BYTES + READ_SLACK));
        let mut err = Vec::with_capacity(STDERR_READ_BYTES + READ_SLACK);
        let run = run(&mut child, &body, &mut out, &mut err);
        let finished = match tokio::time::timeout(self.config.timeout, run).await {
            Ok(finished) => {
                group.0 = None;
                finished?
            }
            Err(_) => {
                group.kill();
                let _ = child.start_kill();
                let _ = tokio::time::timeout(REAP_TIMEOUT, child.wait()).await;
                self.log_stderr(request, &err, true);
                return Err(self.timed_out(request));
            }
        };
        let reply = self.interpret(request, &finished, &out);
        self.log_stderr(request, &err, reply.is_err());
        reply
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.config.program);
        cmd.args(&self.config.args).env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        cmd.envs(&self.config.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group, so a timeout kills what it forked too.
            .process_group(0);
        cmd
    }

    /// The reply, given how the process ended and what it printed.
    fn interpret(
        &self,
        request: &Request<'_>,
        finished: &Finished,
        out: &[u8],
    ) -> Result<Fields, TargetError> {
        let step = request.step;
        if finished.overflow {
            return Err(self.protocol(format!(
                "printed more than {MAX_REPLY_BYTES} bytes at the {step} step, which is not a protocol reply"
            )));
        }
        let status = finished.status;
        match parse_reply(out) {
            // A failure reply counts whatever the exit status.
            Ok(Reply::Failed { error, transient }) => {
                Err(protocol::failed(&self.label, request, &error, transient))
            }
            Ok(Reply::Done(fields)) if status.success() => Ok(fields),
            Ok(_) => Err(self.protocol(format!(
                "replied ok but {} at the {step} step",
                describe(status)
            ))),
            Err(_) if !status.success() => Err(self.protocol(format!(
                "{} at the {step} step without a protocol reply (see its stderr in keyshift's log)",
                describe(status)
            ))),
            Err(why) => Err(self.protocol(format!(
                "printed something that is not a protocol reply at the {step} step ({why})"
            ))),
        }
    }

    fn log_stderr(&self, request: &Request<'_>, err: &[u8], failed: bool) {
        if err.is_empty() {
            return;
        }
        let stderr = protocol::loggable(request, err);
        let step = request.step.as_str();
        if failed {
            warn!(plugin = %self.config.program, step, %stderr, "plugin stderr");
        } else {
            debug!(plugin = %self.config.program, step, %stderr, "plugin stderr");
        }
    }

    fn protocol(&self, what: String) -> TargetError {
        TargetError::Protocol {
            detail: format!("{} {what}", self.label),
        }
    }

    fn timed_out(&self, request: &Request<'_>) -> TargetError {
        TargetError::Unreachable {
            target: self.label.clone(),
            detail: format!(
                "did not answer the {} step within {} (killed)",
                request.step,
                human_duration::format(self.config.timeout)
            ),
        }
    }
}

/// Feeds the request, collects stdout and stderr, waits for the exit.
async fn run(
    child: &mut Child,
    body: &[u8],
    out: &mut Vec<u8>,
    err: &mut Vec<u8>,
) -> Result<Finished, TargetError> {
    let pipes_missing = || TargetError::Protocol {
        detail: "plugin pipes were not set up".to_owned(),
    };
    let mut stdin = child.stdin.take().ok_or_else(pipes_missing)?;
    let stdout = child.stdout.take().ok_or_else(pipes_missing)?;
    let stderr = child.stderr.take().ok_or_else(pipes_missing)?;
    let feed = async move {
        // A plugin may exit without reading its input (broken pipe):
        // its reply decides, not this write.
        if let Err(e) = stdin.write_all(body).await {
            debug!("writing the request to the plugin failed: {e}");
        }
        drop(stdin);
    };
    let (_, overflow, _) = tokio::join!(
        feed,
        read_capped(stdout, out, MAX_REPLY_BYTES),
        read_capped(stderr, err, STDERR_READ_BYTES),
    );
    let status = child.wait().await.map_err(|e| TargetError::Protocol {
        detail: format!("waiting for the plugin failed: {e}"),
    })?;
    Ok(Finished { status, overflow })
}

/// Reads up to `cap` bytes into `buf` (sized `cap + READ_SLACK`, so it
/// never reallocates), then drains the rest. True when there was more.
async fn read_capped(reader: impl AsyncRead + Unpin, buf: &mut Vec<u8>, cap: usize) -> bool {
    let mut limited = reader.take(cap as u64);
    if let Err(e) = limited.read_to_end(buf).await {
        debug!("reading from the plugin failed: {e}");
        return false;
    }
    let mut rest = limited.into_inner();
    matches!(tokio::io::copy(&mut rest, &mut tokio::io::sink()).await, Ok(n) if n > 0)
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => format!("ended abnormally ({status})"),
    }
}

/// The plugin's process group, killed with SIGKILL on drop unless
/// disarmed (`None`).
struct ProcessGroup(Option<u32>);

impl ProcessGroup {
    /// Kills every process in the group, once.
    fn kill(&mut self) {
        let Some(pgid) = self.0.take() else {
            return;
        };
        // std has no killpg and this crate forbids unsafe code and has no
        // libc binding: the shell's `kill` builtin signals the group. Only a
        // number goes on its command line.
        let negative: OsString = format!("-{pgid}").into();
        let killed = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg("kill -s KILL -- \"$1\" 2>/dev/null")
            .arg("sh")
            .arg(negative)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Err(e) = killed {
            warn!(pgid, "could not kill the plugin's process group: {e}");
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}
