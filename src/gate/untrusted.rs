//! Running a program hyperion does not trust — a check, a pre-apply hook — bounded in time and
//! in what it sees. Checks and hooks both go through [`run`].
//!
//! **Time.** The program runs in its own process group. At its deadline (or when cancelled) the
//! group gets SIGTERM, after a grace period SIGKILL. Its output is read by this thread, polling
//! the pipes together with the program's exit (a pidfd): nothing waits for a pipe to close, so
//! a descendant that detached (`setsid`) and keeps the pipes open cannot hold the caller. The
//! run ends when the program has exited and its pipes are closed, or at the latest a grace
//! period after the program exited, or after its deadline, the grace and [`KILL_WAIT`]:
//! whatever still holds a pipe then is left behind and the output is reported as cut.
//!
//! **Descendants.** On Linux this process makes itself the reaper of orphans
//! (`PR_SET_CHILD_SUBREAPER`): when a process started by the program loses its parent, it is
//! reparented here instead of to init, however it detached. Once the program has exited, or
//! when it is stopped, every such orphan that belongs to this run is signalled too and reaped:
//! those that still carry the run's token (`HYPERION_RUN`, inherited from the environment the
//! program got), and — when no other run of this process is going on — those that cleared
//! their environment but started after the program did. Each one signalled is reported
//! ([`Outcome::killed`]). Elsewhere, and with [`Spec::portable`], only the process group is
//! signalled; the time bound holds all the same.
//!
//! **Environment.** The program gets [`Env`]: nothing of this process's environment but an
//! allowlist (see [`Env::scrubbed`]), with `HOME` and `TMPDIR` in a scratch directory that is
//! emptied before and after each run ([`Scratch`]). On Linux this process also makes itself
//! undumpable before the first run ([`crate::git::os::keep_to_self`]), so that the program cannot
//! read this process's environment through `/proc/PPID/environ` either.
//!
//! Same user, no namespace: a hostile program can still write anything this user can, by
//! absolute path; what this bounds is time, processes and what leaks through the environment.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Time between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(2);

/// How often `tick` is called while a program runs: often enough for the shortest lease's
/// renewals (a third of 1s; see `worker::leases`).
const TICK: Duration = Duration::from_millis(100);

/// After SIGKILL, how long to wait for the killed to go (a process in uninterruptible sleep
/// may take longer; it is left behind).
pub const KILL_WAIT: Duration = Duration::from_secs(1);

/// The variable that marks every process of one run.
pub const TOKEN_VAR: &str = "HYPERION_RUN";

/// Variables of this process's environment that an untrusted program always gets (with
/// `LC_*`): what programs need to find programs and read text.
pub const ALWAYS: &[&str] = &["PATH", "LANG", "TZ"];

/// The complete environment of an untrusted program.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// `PATH` (a plain default when this process has none), `LANG`, every `LC_*` and `TZ` from
    /// this process's environment, the variables named in `inherit` (`hyperion.checkEnv`)
    /// when set and allowed ([`crate::queue::settings::check_env_name`]), and `HOME` and `TMPDIR` in `scratch`. Nothing else: tokens and credentials
    /// in the worker's environment do not reach the program.
    pub fn scrubbed(scratch: &Scratch, inherit: &[String]) -> Env {
        let mut vars = BTreeMap::new();
        for (k, v) in std::env::vars_os() {
            let (Some(k), Some(v)) = (k.to_str(), v.to_str()) else {
                continue;
            };
            if ALWAYS.contains(&k) || k.starts_with("LC_") {
                vars.insert(k.to_owned(), v.to_owned());
            }
        }
        vars.entry("PATH".into())
            .or_insert_with(|| "/usr/local/bin:/usr/bin:/bin".into());
        vars.insert("HOME".into(), scratch.home().to_string_lossy().into_owned());
        vars.insert(
            "TMPDIR".into(),
            scratch.tmp().to_string_lossy().into_owned(),
        );
        // Checked again here, whoever built the list: a name that points git or hyperion
        // elsewhere never passes.
        let passable = inherit
            .iter()
            .filter(|n| crate::queue::settings::check_env_name(n).is_ok());
        for name in passable {
            if let Ok(v) = std::env::var(name) {
                vars.insert(name.clone(), v);
            }
        }
        Env { vars }
    }

    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Env {
        self.vars.insert(name.into(), value.into());
        self
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// `HOME` and `TMPDIR` of untrusted programs: `ROOT/home` and `ROOT/tmp`, emptied before and
/// after every run, so that nothing one run leaves there (a `.gitconfig`, a cache holding a
/// request's files) reaches the next.
#[derive(Debug)]
pub struct Scratch {
    root: PathBuf,
}

impl Scratch {
    /// Make (or empty) the scratch directories under `root`.
    pub fn at(root: &Path) -> std::io::Result<Scratch> {
        let s = Scratch {
            root: root.to_owned(),
        };
        s.clear()?;
        Ok(s)
    }

    pub fn home(&self) -> PathBuf {
        self.root.join("home")
    }

    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Remove everything in the scratch directories (symbolic links are removed, never
    /// followed); an emptied directory a run made unwritable is made writable first.
    pub fn clear(&self) -> std::io::Result<()> {
        // Never through a link a run put in the root's place: what it points at is not ours.
        match std::fs::symlink_metadata(&self.root) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                std::fs::remove_file(&self.root)?;
                std::fs::create_dir(&self.root)?;
            }
            Err(_) => std::fs::create_dir_all(&self.root)?,
        }
        for d in [self.home(), self.tmp()] {
            // A run may have replaced the directory itself (by a link, a file): start over.
            match std::fs::symlink_metadata(&d) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    std::fs::remove_file(&d)?;
                    std::fs::create_dir(&d)?;
                    continue;
                }
                Err(_) => {
                    std::fs::create_dir_all(&d)?;
                    continue;
                }
            }
            empty_dir(&d)?;
        }
        Ok(())
    }
}

/// Remove `p` and everything under it, without following links; directories a program made
/// read-only are made writable on the way.
pub(crate) fn remove_all(p: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            if std::fs::remove_dir_all(p).is_err() {
                empty_dir(p)?;
                std::fs::remove_dir(p)?;
            }
            Ok(())
        }
        Ok(_) => std::fs::remove_file(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Remove what `dir` holds, without following links; directories a program made read-only
/// are made writable on the way.
fn empty_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
            std::fs::read_dir(dir)?
        }
        Err(e) => return Err(e),
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            if std::fs::remove_dir_all(&p).is_err() {
                let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700));
                empty_dir(&p)?;
                std::fs::remove_dir(&p)?;
            }
        } else {
            std::fs::remove_file(&p)?;
        }
    }
    Ok(())
}

/// What to run and within which bounds.
#[derive(Debug, Clone)]
pub struct Spec<'a> {
    /// The program and its arguments (the program is looked up in the `PATH` of `env`).
    pub argv: &'a [String],
    pub cwd: &'a Path,
    pub env: &'a Env,
    /// Written to the program's stdin (then closed); `None`: stdin is `/dev/null`.
    pub stdin: Option<&'a [u8]>,
    pub timeout: Duration,
    /// Between SIGTERM and SIGKILL; also how long output is still read after the program
    /// exited while something else holds its pipes.
    pub grace: Duration,
    /// How much of the end of each output stream is kept.
    pub keep: usize,
    /// Signal only the process group, as where Linux's orphan reaping is not available (to
    /// exercise that path on Linux).
    pub portable: bool,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Exited(ExitStatus),
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

/// A process outside the program's own (that the group signal reaches anyway) that the run
/// signalled: a descendant that left the process group, or one left behind after the program
/// exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Killed {
    pub pid: u32,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub ended: Ended,
    pub duration: Duration,
    pub stdout: Captured,
    pub stderr: Captured,
    /// Descendants found and signalled (Linux; see the module documentation).
    pub killed: Vec<Killed>,
    /// Something still held the output pipes when reading stopped: the tails may lack the
    /// end of what was written.
    pub output_cut: bool,
}

impl Outcome {
    fn spawn_failed(why: String, started: Instant) -> Outcome {
        Outcome {
            ended: Ended::SpawnFailed(why),
            duration: started.elapsed(),
            stdout: Captured::default(),
            stderr: Captured::default(),
            killed: Vec::new(),
            output_cut: false,
        }
    }
}

/// The runs of this process that have not ended, by the pid of their program: a sweep leaves
/// the programs of other runs, and the processes carrying their tokens, alone.
fn live() -> std::sync::MutexGuard<'static, HashMap<u32, String>> {
    static LIVE: std::sync::OnceLock<std::sync::Mutex<HashMap<u32, String>>> =
        std::sync::OnceLock::new();
    LIVE.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Run `spec`. `tick` is called every 100 ms while it runs (the worker heartbeats its
/// lease there); setting `cancel` stops the program as a timeout does.
pub fn run(spec: &Spec<'_>, cancel: &AtomicBool, tick: &mut dyn FnMut()) -> Outcome {
    run_observed(spec, cancel, tick, &mut |_, _| {})
}

/// One of a program's output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// [`run`], handing every chunk of the program's output to `seen` as soon as it is read,
/// with the stream it came from (the agent harness parses an agent's events on stdout while
/// it runs, and stops it by `cancel`; `worker --follow` shows a check's output as it comes).
pub fn run_observed(
    spec: &Spec<'_>,
    cancel: &AtomicBool,
    tick: &mut dyn FnMut(),
    seen: &mut dyn FnMut(Stream, &[u8]),
) -> Outcome {
    let started = Instant::now();
    let Some((program, args)) = spec.argv.split_first() else {
        return Outcome::spawn_failed("no command".into(), started);
    };
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let token = format!(
        "{}.{}",
        crate::git::os::pid(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    );
    crate::git::os::keep_to_self();
    let adopting = !spec.portable && crate::git::os::adopt_orphans();
    let mut command = Command::new(resolve(program, spec.env.get("PATH"), spec.cwd));
    command
        .arg0(program)
        .args(args)
        .current_dir(spec.cwd)
        .env_clear()
        .envs(spec.env.iter())
        .env(TOKEN_VAR, &token)
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // Registered before the spawn returns, so that no sweep of another run takes the new
    // program for an orphan.
    let mut registry = live();
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            drop(registry);
            return Outcome::spawn_failed(format!("{program}: {e}"), started);
        }
    };
    let leader = child.id();
    registry.insert(leader, token.clone());
    drop(registry);
    let pgid = rustix::process::Pid::from_child(&child);

    let mut stdin = child.stdin.take().map(|s| (s, 0usize));
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    for fd in [
        out.as_ref().map(|f| f.as_fd()),
        err.as_ref().map(|f| f.as_fd()),
        stdin.as_ref().map(|(f, _)| f.as_fd()),
    ]
    .into_iter()
    .flatten()
    {
        let _ = rustix::io::ioctl_fionbio(fd, true);
    }
    let mut out_tail = Tail::new(spec.keep);
    let mut err_tail = Tail::new(spec.keep);

    #[cfg(target_os = "linux")]
    let exit_fd = if spec.portable || !crate::git::os::linux_paths() {
        None
    } else {
        rustix::process::pidfd_open(pgid, rustix::process::PidfdFlags::empty()).ok()
    };
    #[cfg(not(target_os = "linux"))]
    let exit_fd: Option<std::os::fd::OwnedFd> = None;

    let deadline = started + spec.timeout;
    let hard_stop = deadline + spec.grace + KILL_WAIT;
    let mut stopping: Option<(Ended, Instant, bool)> = None;
    let mut exited_at: Option<Instant> = None;
    let mut killed: Vec<Killed> = Vec::new();
    let mut last_tick = Instant::now();
    let mut pause = Duration::from_micros(50);
    let mut output_cut = false;
    let sweep = |sig: rustix::process::Signal, killed: &mut Vec<Killed>| -> bool {
        let _ = rustix::process::kill_process_group(pgid, sig);
        if adopting {
            sweep_orphans(leader, &token, sig, killed)
        } else {
            false
        }
    };

    loop {
        let now = Instant::now();
        if exited_at.is_none() && leader_exited(&mut child, exit_fd.as_ref()) {
            exited_at = Some(now);
            // What it wrote last, and its pipes' end when nothing else holds them: most runs
            // end right here, with one sweep.
            read_some(&mut out, &mut out_tail, &mut |b| seen(Stream::Stdout, b));
            read_some(&mut err, &mut err_tail, &mut |b| seen(Stream::Stderr, b));
        }
        if exited_at.is_none() {
            match &mut stopping {
                None => {
                    let why = if cancel.load(Ordering::SeqCst) {
                        Some(Ended::Cancelled)
                    } else if now >= deadline {
                        Some(Ended::TimedOut)
                    } else {
                        None
                    };
                    if let Some(why) = why {
                        sweep(rustix::process::Signal::TERM, &mut killed);
                        stopping = Some((why, now, false));
                    }
                }
                Some((_, since, hard)) if !*hard && now.duration_since(*since) >= spec.grace => {
                    sweep(rustix::process::Signal::KILL, &mut killed);
                    *hard = true;
                }
                Some(_) => {}
            }
        }
        let open = out.is_some() || err.is_some();
        if let Some(at) = exited_at {
            // The program is gone: whatever it left behind goes too, so that nothing outlives
            // the run and the pipes close.
            let pending = sweep(rustix::process::Signal::KILL, &mut killed);
            if !open && !pending {
                break;
            }
            if now >= (at + spec.grace).min(hard_stop) {
                output_cut = open;
                break;
            }
        } else if now >= hard_stop {
            // The program did not go even after SIGKILL (uninterruptible sleep): leave it.
            output_cut = open;
            break;
        }
        if now.duration_since(last_tick) >= TICK {
            last_tick = now;
            tick();
        }

        // Wait for output, room for input, the program's exit, or 10 ms.
        {
            use rustix::event::{PollFd, PollFlags, Timespec};
            let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(4);
            if let Some(f) = &out {
                fds.push(PollFd::new(f, PollFlags::IN));
            }
            if let Some(f) = &err {
                fds.push(PollFd::new(f, PollFlags::IN));
            }
            if let Some((f, _)) = &stdin {
                fds.push(PollFd::new(f, PollFlags::OUT));
            }
            let waiting_for_exit = exited_at.is_none();
            if let (Some(fd), true) = (&exit_fd, waiting_for_exit) {
                fds.push(PollFd::new(fd, PollFlags::IN));
            }
            // Without a pidfd the exit is polled: fine-grained at first, so that a quick
            // program is not held up, backing off to 10 ms.
            let most = if waiting_for_exit && exit_fd.is_none() {
                let p = pause;
                pause = (pause * 2).min(Duration::from_millis(10));
                p
            } else if exited_at.is_some() {
                // Something still holds the pipes, or a killed orphan is not gone yet: look
                // again (and sweep again) soon.
                Duration::from_millis(5)
            } else {
                Duration::from_millis(10)
            };
            let ts = Timespec {
                tv_sec: 0,
                tv_nsec: most.as_nanos() as _,
            };
            if fds.is_empty() {
                std::thread::sleep(most);
            } else {
                let _ = rustix::event::poll(&mut fds, Some(&ts));
            }
        }
        read_some(&mut out, &mut out_tail, &mut |b| seen(Stream::Stdout, b));
        read_some(&mut err, &mut err_tail, &mut |b| seen(Stream::Stderr, b));
        if let Some((f, written)) = &mut stdin {
            let data = spec.stdin.unwrap_or_default();
            let done = loop {
                if *written >= data.len() {
                    break true;
                }
                match f.write(&data[*written..]) {
                    Ok(0) => break true,
                    Ok(n) => *written += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    // A program that does not read its input closed the pipe.
                    Err(_) => break true,
                }
            };
            if done {
                stdin = None;
            }
        }
    }
    drop(stdin);
    drop(out);
    drop(err);

    // Reap the program; when it did not go (see above), a thread waits for it.
    let status = match child.try_wait() {
        Ok(Some(s)) => Some(s),
        _ if exited_at.is_some() => child.wait().ok(),
        _ => {
            std::thread::spawn(move || {
                let _ = child.wait();
                live().remove(&leader);
            });
            None
        }
    };
    if status.is_some() {
        live().remove(&leader);
    }
    let ended = match (stopping, status) {
        (Some((why, _, _)), _) => why,
        (None, Some(s)) => Ended::Exited(s),
        (None, None) => Ended::TimedOut,
    };
    Outcome {
        ended,
        duration: started.elapsed(),
        stdout: out_tail.into_captured(),
        stderr: err_tail.into_captured(),
        killed,
        output_cut,
    }
}

/// `program` found in `path` (the program's own `PATH`), as the shell would: unchanged when it
/// names a path (holds a `/`) or is found nowhere. The standard library looks a bare name up
/// itself when the environment's `PATH` differs from this process's, by forking and trying
/// each directory; with the full path it spawns the program with `posix_spawn` (a `vfork`),
/// which for a worker with a large address space is much cheaper.
fn resolve(program: &str, path: Option<&str>, cwd: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    if program.contains('/') {
        return PathBuf::from(program);
    }
    for dir in path.unwrap_or_default().split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = cwd.join(dir).join(program);
        if std::fs::metadata(&candidate)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        {
            return candidate;
        }
    }
    PathBuf::from(program)
}

/// Whether the program has exited. On Linux it is left a zombie (`WNOWAIT`), so that its pid,
/// and with it the process group's id, cannot be taken by another process while the group is
/// signalled; elsewhere it is reaped.
fn leader_exited(child: &mut std::process::Child, exit_fd: Option<&std::os::fd::OwnedFd>) -> bool {
    #[cfg(target_os = "linux")]
    if let Some(fd) = exit_fd {
        use rustix::process::{WaitId, WaitIdOptions};
        return match rustix::process::waitid(
            WaitId::PidFd(fd.as_fd()),
            WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT,
        ) {
            Ok(Some(_)) => true,
            Ok(None) => false,
            Err(_) => !matches!(child.try_wait(), Ok(None)),
        };
    }
    let _ = exit_fd;
    !matches!(child.try_wait(), Ok(None))
}

/// Signal the orphans of this run and reap those that are gone; whether any of this run's
/// is still there. An orphan is this run's when it carries the run's token, or, carrying no
/// token of another run, when no other run is going on and it started after the program.
/// Children of this process in its own process group and session (git, spawned by the
/// worker) and the programs of other runs are never touched.
fn sweep_orphans(
    leader: u32,
    token: &str,
    sig: rustix::process::Signal,
    killed: &mut Vec<Killed>,
) -> bool {
    let (my_pgrp, my_session) = (
        rustix::process::getpgrp().as_raw_nonzero().get(),
        rustix::process::getsid(None)
            .map(|p| p.as_raw_nonzero().get())
            .unwrap_or(0),
    );
    let (leaders, others): (Vec<u32>, usize) = {
        let live = live();
        (live.keys().copied().collect(), live.len().saturating_sub(1))
    };
    let mut pending = false;
    for c in crate::git::os::children() {
        if leaders.contains(&c.pid) || (c.pgrp == my_pgrp && c.session == my_session) {
            continue;
        }
        if c.zombie {
            // Dead already: only the reaping is left (its environment is gone with it).
            crate::git::os::reap(c.pid);
            continue;
        }
        let mine = match crate::git::os::environ_var(c.pid, TOKEN_VAR) {
            Some(t) => t == token.as_bytes(),
            // The program is not reaped yet (see `leader_exited`): its start time is there.
            None => {
                others == 0
                    && (c.pgrp == leader as i32
                        || crate::git::os::start_time(leader).is_some_and(|start| c.start >= start))
            }
        };
        if !mine {
            continue;
        }
        pending = true;
        if let Some(p) = rustix::process::Pid::from_raw(c.pid as i32) {
            let _ = rustix::process::kill_process(p, sig);
        }
        if !killed.iter().any(|k| k.pid == c.pid) {
            killed.push(Killed {
                pid: c.pid,
                name: c.name,
            });
        }
    }
    pending
}

/// Read what is there (non-blocking) into `tail`; the stream is dropped at its end.
fn read_some<R: Read>(stream: &mut Option<R>, tail: &mut Tail, seen: &mut dyn FnMut(&[u8])) {
    let Some(s) = stream else { return };
    let mut buf = [0u8; 64 << 10];
    loop {
        match s.read(&mut buf) {
            Ok(0) => {
                *stream = None;
                return;
            }
            Ok(n) => {
                seen(&buf[..n]);
                tail.push(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(_) => {
                *stream = None;
                return;
            }
        }
    }
}

/// The last `keep` bytes of a stream, and how many there were.
struct Tail {
    ring: VecDeque<u8>,
    total: u64,
    keep: usize,
}

impl Tail {
    fn new(keep: usize) -> Tail {
        Tail {
            ring: VecDeque::with_capacity(keep.min(1 << 20)),
            total: 0,
            keep,
        }
    }

    fn push(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        let chunk = &data[data.len().saturating_sub(self.keep)..];
        let overflow = (self.ring.len() + chunk.len()).saturating_sub(self.keep);
        self.ring.drain(..overflow.min(self.ring.len()));
        self.ring.extend(chunk);
    }

    fn into_captured(self) -> Captured {
        let tail: Vec<u8> = self.ring.into_iter().collect();
        Captured {
            truncated: self.total > tail.len() as u64,
            total_bytes: self.total,
            tail,
        }
    }
}
