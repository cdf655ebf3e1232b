//! Running one check: a command in its own process group, with a timeout, a watchdog,
//! cancellation, and its output captured with a bounded tail.
//!
//! The child gets no stdin, the worktree as its directory, the worker's environment without
//! the `GIT_*` variables that would redirect git, plus the check's own variables and
//! `HYPERION_CHECK=<name>`. stdout and stderr are drained by threads into ring buffers that
//! keep the last [`OutputLimit::bytes`] of each, so a check that prints gigabytes neither blocks
//! nor fills memory. On timeout or cancellation the whole process group gets SIGTERM, then
//! SIGKILL after a grace period: grandchildren (`sh -c 'sleep 1000 &'`) go too.

use std::collections::{BTreeMap, VecDeque};
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Time between SIGTERM and SIGKILL of a check's process group.
pub const GRACE: Duration = Duration::from_secs(2);

/// Variables that would point git inside a check at another repository or index.
const GIT_REDIRECTS: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
];

/// One check to run.
#[derive(Debug, Clone)]
pub struct CheckCommand {
    pub name: String,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub timeout: Duration,
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

/// The tail of one output stream.
#[derive(Debug, Clone, Default)]
pub struct Captured {
    pub tail: Vec<u8>,
    pub total_bytes: u64,
    pub truncated: bool,
}

impl Captured {
    /// The tail as text, with a marker for what was dropped.
    pub fn render(&self) -> String {
        let text = String::from_utf8_lossy(&self.tail);
        if self.truncated {
            format!(
                "[… {} bytes omitted …]\n{text}",
                self.total_bytes - self.tail.len() as u64
            )
        } else {
            text.into_owned()
        }
    }
}

#[derive(Debug, Clone)]
pub struct CheckResult {
    pub name: String,
    pub status: CheckStatus,
    pub duration: Duration,
    pub stdout: Captured,
    pub stderr: Captured,
}

/// Run `cmd` in `cwd`. `tick` is called about once a second while it runs (the worker
/// heartbeats its lease there); setting `cancel` stops the check.
pub fn run(
    cmd: &CheckCommand,
    cwd: &Path,
    limit: OutputLimit,
    cancel: &AtomicBool,
    tick: &mut dyn FnMut(),
) -> CheckResult {
    let started = Instant::now();
    let result = |status, stdout, stderr| CheckResult {
        name: cmd.name.clone(),
        status,
        duration: started.elapsed(),
        stdout,
        stderr,
    };
    let Some((program, args)) = cmd.argv.split_first() else {
        return result(
            CheckStatus::SpawnFailed("the check has no command".into()),
            Captured::default(),
            Captured::default(),
        );
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for v in GIT_REDIRECTS {
        command.env_remove(v);
    }
    command.envs(&cmd.env).env("HYPERION_CHECK", &cmd.name);
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            return result(
                CheckStatus::SpawnFailed(format!("{program}: {e}")),
                Captured::default(),
                Captured::default(),
            );
        }
    };
    let pgid = rustix::process::Pid::from_child(&child);
    let out = drain(child.stdout.take(), limit.bytes);
    let err = drain(child.stderr.take(), limit.bytes);
    let deadline = started + cmd.timeout;
    let mut last_tick = Instant::now();
    let mut stopping: Option<(CheckStatus, Instant)> = None;
    // The wait wakes when the child exits (a pidfd, Linux 5.3+) or after 10 ms, to look at
    // the deadline, the cancel flag and the tick. Without a pidfd it polls, fine-grained at
    // first so that a quick check is not held up, backing off to 10 ms.
    #[cfg(target_os = "linux")]
    let exited = rustix::process::pidfd_open(pgid, rustix::process::PidfdFlags::empty()).ok();
    #[cfg(not(target_os = "linux"))]
    let exited: Option<std::os::fd::OwnedFd> = None;
    let mut pause = Duration::from_micros(50);
    let exit = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(_) => break None,
        }
        let now = Instant::now();
        match &stopping {
            None => {
                let why = if cancel.load(Ordering::SeqCst) {
                    Some(CheckStatus::Cancelled)
                } else if now >= deadline {
                    Some(CheckStatus::TimedOut)
                } else {
                    None
                };
                if let Some(why) = why {
                    let _ =
                        rustix::process::kill_process_group(pgid, rustix::process::Signal::TERM);
                    stopping = Some((why, now));
                }
            }
            Some((_, since)) if now.duration_since(*since) >= GRACE => {
                let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
            }
            Some(_) => {}
        }
        if now.duration_since(last_tick) >= Duration::from_secs(1) {
            last_tick = now;
            tick();
        }
        match &exited {
            Some(fd) => {
                use rustix::event::{PollFd, PollFlags, Timespec};
                let mut fds = [PollFd::new(fd, PollFlags::IN)];
                let most = Timespec {
                    tv_sec: 0,
                    tv_nsec: 10_000_000,
                };
                let _ = rustix::event::poll(&mut fds, Some(&most));
            }
            None => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(10));
            }
        }
    };
    // The leader is gone; whatever it left behind in its group goes too, so nothing outlives
    // the check and the pipes close.
    let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let status = match (stopping, exit) {
        (Some((why, _)), _) => why,
        (None, Some(s)) if s.success() => CheckStatus::Passed,
        (None, Some(s)) => CheckStatus::Failed {
            exit_code: s.code(),
            signal: s.signal(),
        },
        (None, None) => CheckStatus::Failed {
            exit_code: None,
            signal: None,
        },
    };
    result(status, stdout, stderr)
}

/// Read a stream to its end on a thread, keeping the last `keep` bytes.
fn drain<R: Read + Send + 'static>(
    stream: Option<R>,
    keep: usize,
) -> std::thread::JoinHandle<Captured> {
    std::thread::spawn(move || {
        let Some(mut stream) = stream else {
            return Captured::default();
        };
        let mut ring: VecDeque<u8> = VecDeque::with_capacity(keep.min(1 << 20));
        let mut total = 0u64;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    total += n as u64;
                    let chunk = &buf[n.saturating_sub(keep)..n];
                    let overflow = (ring.len() + chunk.len()).saturating_sub(keep);
                    ring.drain(..overflow.min(ring.len()));
                    ring.extend(chunk);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let tail: Vec<u8> = ring.into_iter().collect();
        Captured {
            truncated: total > tail.len() as u64,
            total_bytes: total,
            tail,
        }
    })
}
