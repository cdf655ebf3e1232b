//! Pooled worktrees for checks, under `$GIT_COMMON_DIR/hyperion/worktrees/`.
//!
//! A slot is a linked worktree (`git worktree add --detach`, locked so `git worktree prune`
//! leaves it) named `hyperion-N`, taken by holding an exclusive `flock` on `hyperion-N.lock`
//! beside it: a worker that dies frees its slot with its file descriptors. Moving a slot to a
//! commit is `git checkout --force --detach` — git touches only the files that differ, so
//! unchanged files keep their timestamps and build caches survive — followed by
//! `git clean -fdq`, which removes untracked files a previous check left but keeps ignored
//! ones (`target/`, `node_modules/`): checks start from the commit's content plus whatever the
//! repository's `.gitignore` says is a cache.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// The pool of one repository.
pub struct Pool {
    dir: PathBuf,
}

/// A slot held by this process until dropped.
pub struct Slot {
    path: PathBuf,
    _lock: File,
}

impl Pool {
    pub fn new(common_dir: &Path) -> Pool {
        Pool {
            dir: common_dir.join("hyperion").join("worktrees"),
        }
    }

    /// Take a free slot, making a new one when all are taken. `git_dir` is the repository's
    /// git directory (the worktrees are registered with it).
    pub fn acquire(&self, git_dir: &Path) -> Result<Slot> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| Error::io(format!("cannot create {}", self.dir.display()), e))?;
        for n in 0..1024 {
            let name = format!("hyperion-{n}");
            let lock_path = self.dir.join(format!("{name}.lock"));
            let lock = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(|e| Error::io(format!("cannot open {}", lock_path.display()), e))?;
            match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => continue,
                Err(e) => {
                    return Err(Error::io(
                        format!("cannot lock {}", lock_path.display()),
                        e.into(),
                    ));
                }
            }
            let path = self.dir.join(&name);
            ensure_worktree(git_dir, &path)?;
            return Ok(Slot { path, _lock: lock });
        }
        Err(Error::git("all 1024 worktree slots are taken"))
    }
}

impl Slot {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Move the slot's files to `commit`, touching only what differs, and remove what a
    /// previous check added (ignored files stay).
    pub fn checkout(&self, commit: &str) -> Result<()> {
        git(
            &self.path,
            &["checkout", "--force", "--quiet", "--detach", commit],
        )?;
        git(&self.path, &["clean", "-fdq"])?;
        Ok(())
    }
}

fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_COMMON_DIR")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io("cannot run git", e))?;
    if !out.status.success() {
        return Err(Error::git(format!(
            "git {} (in {}): {}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Make sure `path` is a working linked worktree of the repository; repair it otherwise.
fn ensure_worktree(git_dir: &Path, path: &Path) -> Result<()> {
    let healthy = path.join(".git").is_file()
        && Command::new("git")
            .current_dir(path)
            .args(["rev-parse", "--is-inside-work-tree"])
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if healthy {
        return Ok(());
    }
    // Deleted by hand, or its registration is gone: start the slot over.
    if path.exists() {
        std::fs::remove_dir_all(path)
            .map_err(|e| Error::io(format!("cannot remove {}", path.display()), e))?;
    }
    let path_str = path.to_string_lossy();
    let _ = git(git_dir, &["worktree", "unlock", &path_str]);
    git(git_dir, &["worktree", "prune"])?;
    git(
        git_dir,
        &[
            "worktree",
            "add",
            "--quiet",
            "--detach",
            "--no-checkout",
            &path_str,
        ],
    )?;
    git(
        git_dir,
        &[
            "worktree",
            "lock",
            "--reason",
            "git-hyperion check pool",
            &path_str,
        ],
    )?;
    Ok(())
}
