//! Running the `git` binary: the one way hyperion spawns git, for the few things where git's
//! own implementation is the reference (bundles for archives, ref transactions for their
//! removal, checkouts of check slots and of a person's work tree). Hot paths never spawn git.
//!
//! [`at`] points git at a repository, [`in_worktree`] runs it in a work tree; both give it no
//! stdin, and [`output`] runs either to its end. [`REDIRECTS`] are the variables that would
//! point git elsewhere.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// Run `git` in `git_dir` with `input` on its stdin; its stdout, or an error naming `what`.
pub fn run(git_dir: &Path, args: &[&str], input: &[u8], what: &str) -> Result<Vec<u8>> {
    run_into(git_dir, args, input, Stdio::piped(), what)
}

/// [`run`] with git's stdout sent to `stdout` (a file, say); what was captured, if anything.
pub fn run_into(
    git_dir: &Path,
    args: &[&str],
    input: &[u8],
    stdout: impl Into<Stdio>,
    what: &str,
) -> Result<Vec<u8>> {
    let mut child = at(git_dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io("could not run git", e))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // Written from a thread: git may fill its stdout before it has read all of its stdin.
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io("could not wait for git", e))?;
    let fed = writer.join().unwrap_or(Ok(()));
    if !out.status.success() {
        return Err(Error::Git(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    fed.map_err(|e| Error::io(format!("{what}: could not feed git"), e))?;
    Ok(out.stdout)
}

/// Variables that point git at another repository, index or object store, or inject config
/// (with `GIT_CONFIG_KEY_n` and `GIT_CONFIG_VALUE_n`).
pub const REDIRECTS: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
    "GIT_CEILING_DIRECTORIES",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
];

/// The variables that say where the repository and its work tree are.
const LOCATION: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
];

/// `git --git-dir GIT_DIR`, with no stdin. The rest of the environment is inherited on
/// purpose: in a `pre-receive` hook, git points `GIT_OBJECT_DIRECTORY` and
/// `GIT_ALTERNATE_OBJECT_DIRECTORIES` at the quarantine the pushed objects are in.
pub fn at(git_dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("--git-dir").arg(git_dir).stdin(Stdio::null());
    cmd
}

/// git run in the work tree `worktree`, with none of the variables that would point it
/// elsewhere and no stdin.
pub fn in_worktree(worktree: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(worktree).stdin(Stdio::null());
    for var in LOCATION {
        cmd.env_remove(var);
    }
    cmd
}

/// Run `cmd` (from [`at`] or [`in_worktree`]) to its end: its stdout, or an error naming
/// `what` with what git said.
pub fn output(cmd: &mut Command, what: &str) -> Result<Vec<u8>> {
    let out = cmd
        .output()
        .map_err(|e| Error::io(format!("{what}: could not run git"), e))?;
    if !out.status.success() {
        return Err(Error::Git(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

/// `git ARGS` run in the work tree `dir` ([`in_worktree`]), its output as text.
pub fn text(dir: &Path, args: &[&str]) -> Result<String> {
    let what = format!("git {} (in {})", args.join(" "), dir.display());
    let out = output(in_worktree(dir).args(args), &what)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The version of the git on PATH as (major, minor), asked once per process; `None` when
/// git cannot be run or says something unexpected.
pub fn version() -> Option<(u32, u32)> {
    static ANSWER: std::sync::OnceLock<Option<(u32, u32)>> = std::sync::OnceLock::new();
    *ANSWER.get_or_init(|| {
        let out = Command::new("git").arg("--version").output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut numbers = text.split_whitespace().nth(2)?.split('.');
        let major = numbers.next()?.parse().ok()?;
        let minor = numbers.next()?.parse().ok()?;
        Some((major, minor))
    })
}
