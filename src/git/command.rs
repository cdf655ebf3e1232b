//! The few things done by running the `git` binary: whole-repository operations where git's
//! own implementation is the reference (bundles for archives, ref transactions for their
//! removal). Hot paths never spawn git.

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
    let mut child = Command::new("git")
        .arg("--git-dir")
        .arg(git_dir)
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

/// git run in the worktree `worktree`, with none of the variables that would point it
/// elsewhere and no stdin.
pub fn in_worktree(worktree: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(worktree)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_COMMON_DIR")
        .stdin(std::process::Stdio::null());
    cmd
}
