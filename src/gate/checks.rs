//! Running one check: its command, through the runner of untrusted processes
//! ([`crate::gate::untrusted`]): its own process group, a hard deadline (SIGTERM, grace, SIGKILL),
//! its descendants found and killed however they detached (Linux), cancellation, and its
//! output captured with a bounded tail that no leftover process can hold open.
//!
//! The child gets no stdin, the worktree slot as its directory, and a scrubbed environment
//! ([`crate::gate::untrusted::Env::scrubbed`]): `PATH`, `LANG`, `LC_*`, `TZ`, the variables named in
//! `hyperion.checkEnv`, `HOME` and `TMPDIR` in a scratch directory emptied before and after
//! the check, the check's own variables from the policy, `HYPERION_CHECK=<name>`, and
//! `GIT_CEILING_DIRECTORIES` set to the directory above the slot, so that git run in the
//! check finds the slot's repository and never one above it.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::gate::untrusted::{self, Ended, Env, Scratch, Spec};
pub use crate::gate::untrusted::{Captured, GRACE, Killed, Stream};

/// One check to run.
#[derive(Debug, Clone)]
pub struct CheckCommand {
    pub name: String,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub timeout: Duration,
    /// Variables of the worker's environment the check also gets (`hyperion.checkEnv`).
    pub inherit: Vec<String>,
}

/// How much of each output stream is kept (the tail).
#[derive(Debug, Clone, Copy)]
pub struct OutputLimit {
    pub bytes: usize,
}

impl Default for OutputLimit {
    fn default() -> Self {
        OutputLimit { bytes: 64 << 10 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckStatus {
    Passed,
    Failed {
        exit_code: Option<i32>,
        signal: Option<i32>,
    },
    TimedOut,
    Cancelled,
    SpawnFailed(String),
}

#[derive(Debug, Clone)]
pub struct CheckResult {
    pub name: String,
    pub status: CheckStatus,
    pub duration: Duration,
    pub stdout: Captured,
    pub stderr: Captured,
    /// Processes outside the check's process group that were found and killed (its
    /// descendants that detached, or were left running after it exited).
    pub killed: Vec<Killed>,
    /// Something still held the output pipes when reading stopped.
    pub output_cut: bool,
}

/// Run `cmd` in `cwd`, with `HOME` and `TMPDIR` under `scratch` (emptied before and after).
/// `tick` is called every 100 ms while it runs (the worker heartbeats its lease
/// there); setting `cancel` stops the check.
pub fn run(
    cmd: &CheckCommand,
    cwd: &Path,
    scratch: &Path,
    limit: OutputLimit,
    cancel: &AtomicBool,
    tick: &mut dyn FnMut(),
) -> CheckResult {
    run_observed(cmd, cwd, scratch, limit, cancel, tick, &mut |_, _| {})
}

/// [`run`], handing every chunk of the check's output to `seen` as it is read (`worker
/// --follow`). The chunks are the check's raw bytes: hostile, to be escaped before shown.
pub fn run_observed(
    cmd: &CheckCommand,
    cwd: &Path,
    scratch: &Path,
    limit: OutputLimit,
    cancel: &AtomicBool,
    tick: &mut dyn FnMut(),
    seen: &mut dyn FnMut(Stream, &[u8]),
) -> CheckResult {
    let failed = |why: String| CheckResult {
        name: cmd.name.clone(),
        status: CheckStatus::SpawnFailed(why),
        duration: Duration::ZERO,
        stdout: Captured::default(),
        stderr: Captured::default(),
        killed: Vec::new(),
        output_cut: false,
    };
    if cmd.argv.is_empty() {
        return failed("the check has no command".into());
    }
    let scratch = match Scratch::at(scratch) {
        Ok(s) => s,
        Err(e) => {
            return failed(format!(
                "cannot prepare its scratch directory {}: {e}",
                scratch.display()
            ));
        }
    };
    let mut env = Env::scrubbed(&scratch, &cmd.inherit);
    for (k, v) in &cmd.env {
        env.set(k, v);
    }
    env.set("HYPERION_CHECK", &cmd.name);
    if let Some(above) = cwd.parent() {
        env.set("GIT_CEILING_DIRECTORIES", above.to_string_lossy());
    }
    let outcome = untrusted::run_observed(
        &Spec {
            argv: &cmd.argv,
            cwd,
            env: &env,
            stdin: None,
            timeout: cmd.timeout,
            grace: GRACE,
            keep: limit.bytes,
            portable: false,
        },
        cancel,
        tick,
        seen,
    );
    // What the check left in its scratch goes now (and again before the next one).
    let _ = scratch.clear();
    let status = match outcome.ended {
        Ended::Exited(s) if s.success() => CheckStatus::Passed,
        Ended::Exited(s) => CheckStatus::Failed {
            exit_code: s.code(),
            signal: s.signal(),
        },
        Ended::TimedOut => CheckStatus::TimedOut,
        Ended::Cancelled => CheckStatus::Cancelled,
        Ended::SpawnFailed(why) => CheckStatus::SpawnFailed(why),
    };
    CheckResult {
        name: cmd.name.clone(),
        status,
        duration: outcome.duration,
        stdout: outcome.stdout,
        stderr: outcome.stderr,
        killed: outcome.killed,
        output_cut: outcome.output_cut,
    }
}
