//! A person's checkout of the target branch, while a landing moves it and after a landing was
//! interrupted half-way.
//!
//! A landing onto a branch that is checked out moves the checkout first (only when it is
//! clean, with a two-way `git read-tree -u -m OLD NEW`, as `receive.denyCurrentBranch=
//! updateInstead` does) and then the branch. Between the two, the checkout holds the landing's
//! changes as if they were staged. This module owns that window:
//!
//! - **The landing lock.** A landing onto a branch with a checkout holds an `flock` on
//!   `$GIT_DIR/hyperion/landing/KEY.lock` (KEY: the branch's hashed name) from before it looks
//!   at the checkout until the branch moved, and hands it down to every git process it runs
//!   there. The kernel drops it when the last of them dies: a held lock is a live landing,
//!   which another worker waits for (bounded, then `land.busy` and a retry later) and never
//!   "repairs". The file holds the holder's worker id and pid, for people and `doctor`.
//! - **The marker.** `KEY.json`, written (atomically) after the checkout was found clean and
//!   before it moves, removed once the branch moved or the checkout is back: the move (branch,
//!   old and new commit, the worktrees it moves) and who made it. A marker whose lock is free
//!   is an interrupted landing.
//! - **Recovery** of an interrupted landing, by the next landing onto the branch: if the
//!   branch moved since, the landing completed (or a person took over): the checkout is left
//!   as it is. Otherwise each checkout the marker names (and git still lists as a checkout of
//!   the branch — a marker never points git at any other directory) is put back with a
//!   two-way `read-tree -u -m NEW OLD`, but only where every file the landing changed is
//!   still exactly as the landing wrote it; a person's edits elsewhere (staged, unstaged,
//!   untracked) stay as they are. If the person's edits touch the landing's files, nothing
//!   is changed and landings onto the branch stop with `land.interrupted` until a person
//!   resolves it (docs/storage.md says how). Never `--reset`.
//!
//! It never removes a git `index.lock` in a person's checkout: a landing waits a moment for
//! it and then stops with `land.worktree_locked`; `doctor` reports an old one.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gix::ObjectId;
use gix::bstr::ByteSlice;
use serde::{Deserialize, Serialize};

use crate::code::Code;
use crate::error::{Error, Result};
use crate::gate::land::{Blocked, Error as LandError};
use crate::git::tree::read_tip;
use crate::queue::Finding;

/// Who lands, from which queue.
#[derive(Clone, Copy)]
pub struct Holder<'a> {
    /// The worker id (or `rollback:ACTOR`), recorded for people and `doctor`.
    pub worker: &'a str,
    /// The queue this process has open. Its `hyperion.landingWait` is how long a landing
    /// waits for a live one onto the same branch; a landing that brings a checkout along
    /// lets go of its index first, so that other commands do not wait `hyperion.indexWait`
    /// for it and then answer from the refs while the checkout moves.
    pub queue: &'a crate::queue::Queue,
}

/// How long a landing waits for a git process of the person's to let go of the checkout's
/// index before it stops with `land.worktree_locked`.
const INDEX_LOCK_WAIT: Duration = Duration::from_secs(1);

/// What the lock file holds while it is held.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct HolderInfo {
    target: String,
    worker: String,
    pid: u32,
    since: jiff::Timestamp,
}

/// A landing's record of the move it is making (`KEY.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Marker {
    /// The branch, a full ref name.
    pub target: String,
    /// The commit the branch and the checkouts were at.
    pub old: String,
    /// The commit they are moving to.
    pub new: String,
    /// The checkouts being moved.
    pub worktrees: Vec<PathBuf>,
    pub worker: String,
    pub pid: u32,
    pub started_at: jiff::Timestamp,
}

impl Marker {
    fn describe(&self) -> String {
        let short = |h: &str| h.get(..12).unwrap_or(h).to_owned();
        format!(
            "by worker {} (pid {}, started {}), moving {} from {} to {}",
            self.worker,
            self.pid,
            self.started_at,
            list_paths(&self.worktrees),
            short(&self.old),
            short(&self.new)
        )
    }
}

fn list_paths(paths: &[PathBuf]) -> String {
    let v: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    if v.is_empty() {
        "no checkout".into()
    } else {
        v.join(", ")
    }
}

fn landing_dir(repo: &gix::Repository) -> PathBuf {
    repo.common_dir().join("hyperion").join("landing")
}

fn key(name: &str) -> String {
    crate::request::model::sha256_hex(name.as_bytes())[..16].to_owned()
}

fn lock_path(repo: &gix::Repository, name: &str) -> PathBuf {
    landing_dir(repo).join(format!("{}.lock", key(name)))
}

/// Where the marker of a landing onto `name` is.
pub fn marker_path(repo: &gix::Repository, name: &str) -> PathBuf {
    landing_dir(repo).join(format!("{}.json", key(name)))
}

/// A worktree of this repository: its top level and what its `HEAD` file says.
struct Worktree {
    path: PathBuf,
    git_dir: PathBuf,
    head: String,
}

/// The main worktree (unless the repository is bare) and every linked one, as git's own
/// registry (`$GIT_DIR/worktrees/*/gitdir`) has them; hyperion's pooled slots left out.
fn worktrees(repo: &gix::Repository) -> Vec<Worktree> {
    let common = repo.common_dir();
    let head = |dir: &Path| {
        std::fs::read_to_string(dir.join("HEAD"))
            .map(|s| s.trim_end().to_owned())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    let bare = repo
        .config_snapshot()
        .boolean("core.bare")
        .unwrap_or(repo.is_bare());
    if !bare {
        let main = repo
            .config_snapshot()
            .string("core.worktree")
            .map(|p| common.join(p.to_str_lossy().as_ref()))
            .or_else(|| common.parent().map(Path::to_path_buf));
        if let Some(path) = main {
            out.push(Worktree {
                path,
                git_dir: common.to_path_buf(),
                head: head(common),
            });
        }
    }
    let pool = common.join("hyperion");
    if let Ok(entries) = std::fs::read_dir(common.join("worktrees")) {
        for e in entries.flatten() {
            let dir = e.path();
            if let Ok(gitdir) = std::fs::read_to_string(dir.join("gitdir"))
                && let Some(wt) = Path::new(gitdir.trim()).parent()
                && !wt.starts_with(&pool)
            {
                out.push(Worktree {
                    path: wt.to_path_buf(),
                    head: head(&dir),
                    git_dir: dir,
                });
            }
        }
    }
    out
}

/// Worktrees of this repository whose `HEAD` is the branch `name`.
pub fn checkouts(repo: &gix::Repository, name: &str) -> Vec<PathBuf> {
    let wanted = format!("ref: {name}");
    worktrees(repo)
        .into_iter()
        .filter(|w| w.head == wanted)
        .map(|w| w.path)
        .collect()
}

fn same_path(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The checkout's `index.lock` and its age, if there is one.
fn index_lock(git_dir: &Path) -> Option<(PathBuf, Duration)> {
    let lock = git_dir.join("index.lock");
    let meta = std::fs::symlink_metadata(&lock).ok()?;
    let age = meta
        .modified()
        .ok()
        .and_then(|t| t.elapsed().ok())
        .unwrap_or_default();
    Some((lock, age))
}

/// A landing onto a branch with a checkout: the lock held, what it moved.
pub struct Landing<'r> {
    repo: &'r gix::Repository,
    name: String,
    lock: File,
    marker: PathBuf,
    /// The checkouts of the branch, listed under the lock.
    checkouts: Vec<PathBuf>,
    /// The checkouts moved to `new` so far.
    moved: Vec<PathBuf>,
    holder: String,
}

/// Where a checkout stands relative to a move from `old` to `new`.
enum State {
    /// Every file the move changes is as `old` has it, in the index and the work tree.
    AtOld,
    /// Every file the move changes is as `new` has it.
    AtNew,
    /// Neither: files a person changed since, or a move half done (those not as `new` has
    /// them, listed).
    Changed(Vec<String>),
}

impl<'r> Landing<'r> {
    /// Take the landing lock of `name` if the branch is checked out somewhere or an
    /// interrupted landing left its marker, and deal with that landing first. `None` when
    /// there is no checkout to bring along: the compare-and-swap alone lands.
    pub fn begin(
        repo: &'r gix::Repository,
        name: &str,
        holder: &Holder<'_>,
    ) -> Result<Option<Landing<'r>>, LandError> {
        let marker = marker_path(repo, name);
        if checkouts(repo, name).is_empty() && !marker.exists() {
            return Ok(None);
        }
        // The lock may be waited for and git runs in the checkouts: what others wait for
        // goes back to them first, as before checks.
        holder.queue.close_index();
        let lock = take_lock(repo, name, holder)?;
        let mut landing = Landing {
            repo,
            name: name.to_owned(),
            lock,
            marker,
            checkouts: Vec::new(),
            moved: Vec::new(),
            holder: holder.worker.to_owned(),
        };
        landing.recover()?;
        // Listed again under the lock: a person may have switched branches meanwhile.
        landing.checkouts = checkouts(repo, name);
        Ok(Some(landing))
    }

    /// Start `cmd` (git in a checkout), holding the landing lock for as long as it runs: a
    /// git that outlives a killed worker keeps the landing live until it is done.
    fn spawn(&self, cmd: &mut Command) -> std::io::Result<std::process::Child> {
        crate::git::os::spawn_holding(cmd, &self.lock)
    }

    /// Run git in `wt`; whether it succeeded, and its error output. Output goes to files, not
    /// pipes: a git that outlives a killed worker must not die of SIGPIPE half-way.
    fn run(&self, wt: &Path, args: &[&str]) -> std::result::Result<(bool, String), Blocked> {
        let cannot = |e: std::io::Error| Blocked::Checkout {
            worktree: wt.to_path_buf(),
            message: format!("cannot run git {}: {e}", args.first().unwrap_or(&"")),
        };
        let mut err = tempfile::tempfile().map_err(cannot)?;
        let status = self
            .spawn(
                crate::git::command::in_worktree(wt)
                    .args(args)
                    .stdout(Stdio::null())
                    .stderr(err.try_clone().map_err(cannot)?),
            )
            .and_then(|mut child| child.wait())
            .map_err(cannot)?;
        let mut text = String::new();
        if !status.success() {
            use std::io::{Read, Seek};
            let _ = err.rewind();
            let _ = err.read_to_string(&mut text);
        }
        Ok((status.success(), text.trim().to_owned()))
    }

    /// The paths git lists (`-z --name-only` output).
    fn names(&self, wt: &Path, args: &[&str]) -> std::result::Result<HashSet<Vec<u8>>, Blocked> {
        let out = self
            .spawn(
                crate::git::command::in_worktree(wt)
                    .args(args)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped()),
            )
            .and_then(std::process::Child::wait_with_output)
            .map_err(|e| Blocked::Checkout {
                worktree: wt.to_path_buf(),
                message: format!("cannot run git: {e}"),
            })?;
        if !out.status.success() {
            return Err(Blocked::Checkout {
                worktree: wt.to_path_buf(),
                message: format!(
                    "git {} failed: {}",
                    args.first().unwrap_or(&""),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(out
            .stdout
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(<[u8]>::to_vec)
            .collect())
    }

    /// The git directory of the checkout `wt`.
    fn git_dir_of(&self, wt: &Path) -> Option<PathBuf> {
        worktrees(self.repo)
            .into_iter()
            .find(|w| same_path(&w.path, wt))
            .map(|w| w.git_dir)
    }

    /// Wait a moment for a git process of the person's that holds the checkout's index
    /// (`index.lock`); then `land.worktree_locked`. The lock is never removed here: only a
    /// person can tell a git that died from one waiting for an editor.
    fn unlocked(&self, wt: &Path) -> std::result::Result<(), Blocked> {
        let until = Instant::now() + INDEX_LOCK_WAIT;
        loop {
            let Some((lock, age)) = self.git_dir_of(wt).and_then(|d| index_lock(&d)) else {
                return Ok(());
            };
            if Instant::now() >= until {
                return Err(Blocked::Locked {
                    worktree: wt.to_path_buf(),
                    lock,
                    age,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Refresh the checkout's index (stat data only, as `git status` does).
    fn refresh(&self, wt: &Path) -> std::result::Result<(), Blocked> {
        self.unlocked(wt)?;
        let refresh = ["update-index", "-q", "--ignore-submodules", "--refresh"];
        if !self.run(wt, &refresh)?.0 {
            // A git of the person's took the lock meanwhile: wait for it once more. Any
            // other failure shows in what follows.
            self.unlocked(wt)?;
            self.run(wt, &refresh)?;
        }
        Ok(())
    }

    /// Where `wt` stands between `old` and `new` (after a refresh).
    fn state(
        &self,
        wt: &Path,
        old: ObjectId,
        new: ObjectId,
    ) -> std::result::Result<State, Blocked> {
        self.refresh(wt)?;
        let (old_hex, new_hex) = (old.to_string(), new.to_string());
        let z = ["-z", "--no-renames", "--name-only"];
        let changed = self.names(
            wt,
            &[&["diff-tree", "-r"][..], &z, &[&old_hex, &new_hex]].concat(),
        )?;
        if changed.is_empty() {
            return Ok(State::AtOld);
        }
        let staged_vs_new = self.names(
            wt,
            &[&["diff-index", "--cached"][..], &z, &[&new_hex, "--"]].concat(),
        )?;
        let staged_vs_old = self.names(
            wt,
            &[&["diff-index", "--cached"][..], &z, &[&old_hex, "--"]].concat(),
        )?;
        let unstaged = self.names(wt, &[&["diff-files"][..], &z, &["--"]].concat())?;
        let at_new = |p: &Vec<u8>| !staged_vs_new.contains(p) && !unstaged.contains(p);
        let at_old = |p: &Vec<u8>| !staged_vs_old.contains(p) && !unstaged.contains(p);
        if changed.iter().all(at_new) {
            return Ok(State::AtNew);
        }
        if changed.iter().all(at_old) {
            return Ok(State::AtOld);
        }
        let mut touched: Vec<String> = changed
            .iter()
            .filter(|p| !at_new(p))
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        touched.sort();
        Ok(State::Changed(touched))
    }

    /// Two-way `read-tree -u -m from to` in `wt`: moves the files that differ between the
    /// two, refusing (changing nothing) where the index or a file is not as `from` has it.
    fn read_tree(
        &self,
        wt: &Path,
        from: ObjectId,
        to: ObjectId,
    ) -> std::result::Result<(), Blocked> {
        let (ok, err) = self.run(
            wt,
            &["read-tree", "-u", "-m", &from.to_string(), &to.to_string()],
        )?;
        if ok {
            return Ok(());
        }
        // git refused before it changed anything; a lock of the person's is the likely cause.
        if let Some((lock, age)) = self.git_dir_of(wt).and_then(|d| index_lock(&d)) {
            return Err(Blocked::Locked {
                worktree: wt.to_path_buf(),
                lock,
                age,
            });
        }
        Err(Blocked::Checkout {
            worktree: wt.to_path_buf(),
            message: err,
        })
    }

    /// Put `wt` back from `new` to `old` if it is provably as the landing left it: every
    /// file the landing changed still as `new` has it. `Ok(true)` when it was moved back,
    /// `Ok(false)` when it was at `old` already.
    fn put_back(
        &self,
        wt: &Path,
        old: ObjectId,
        new: ObjectId,
        why: &str,
    ) -> std::result::Result<bool, Blocked> {
        let interrupted = |message: String| Blocked::Interrupted {
            worktree: Some(wt.to_path_buf()),
            message,
        };
        match self.state(wt, old, new)? {
            State::AtOld => Ok(false),
            State::AtNew => match self.read_tree(wt, new, old) {
                Ok(()) => Ok(true),
                Err(Blocked::Checkout { message, .. }) => Err(interrupted(format!(
                    "{why}; putting the checkout back was refused by git, nothing was changed: {message}"
                ))),
                Err(other) => Err(other),
            },
            State::Changed(paths) => {
                let shown: Vec<&str> = paths.iter().take(10).map(String::as_str).collect();
                let more = match paths.len() {
                    n if n > 10 => format!(" and {} more", n - 10),
                    _ => String::new(),
                };
                Err(interrupted(format!(
                    "{why}; it cannot be put back because changes made in the checkout since touch files the landing changed ({}{more}); nothing was changed",
                    shown.join(", ")
                )))
            }
        }
    }

    /// Deal with the marker of a landing whose holder died (we hold its lock now).
    fn recover(&mut self) -> Result<(), LandError> {
        let text = match std::fs::read(&self.marker) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(Error::io(format!("cannot read {}", self.marker.display()), e).into());
            }
        };
        let unreadable = |why: String| {
            Err(LandError::Blocked(Blocked::Interrupted {
                worktree: None,
                message: format!(
                    "the landing marker {} {why}; landings onto this branch wait until a person has checked the checkout and removed it",
                    self.marker.display()
                ),
            }))
        };
        let marker: Marker = match serde_json::from_slice(&text) {
            Ok(m) => m,
            Err(e) => return unreadable(format!("cannot be read ({e})")),
        };
        if marker.target != self.name {
            return unreadable(format!("names {}, not {}", marker.target, self.name));
        }
        let commit = |hex: &str| {
            ObjectId::from_hex(hex.as_bytes())
                .ok()
                .filter(|id| crate::git::tree::tree_of(self.repo, *id).is_ok())
        };
        let (Some(old), Some(new)) = (commit(&marker.old), commit(&marker.new)) else {
            return unreadable("names commits this repository does not have".into());
        };
        let tip = read_tip(self.repo, &self.name)?;
        if tip != Some(old) {
            // The branch moved since the marker was written: by the landing's own
            // compare-and-swap (it completed, the checkout was already at `new`), or by a
            // person who took over (a commit, a reset). Either way nothing is pending.
            tracing::warn!(
                target = %self.name,
                now = ?tip,
                "an interrupted landing {}: the branch moved since, the checkout is left as it is",
                marker.describe()
            );
            self.forget_marker();
            return Ok(());
        }
        let current = checkouts(self.repo, &self.name);
        let why = format!(
            "a landing onto {} was interrupted after it moved the checkout ({})",
            self.name,
            marker.describe()
        );
        for named in &marker.worktrees {
            // git runs in the checkout as git's registry has it, never in the marker's path.
            let Some(wt) = current.iter().find(|c| same_path(c, named)) else {
                // Not (any longer) a checkout of this branch as git lists them: nothing to
                // bring back for this branch, and no git is run there on a marker's word.
                tracing::warn!(
                    target = %self.name,
                    worktree = %named.display(),
                    "an interrupted landing named a worktree that is not a checkout of the branch; left alone"
                );
                continue;
            };
            match self.put_back(wt, old, new, &why) {
                Ok(true) => tracing::warn!(
                    target = %self.name,
                    worktree = %wt.display(),
                    "put the checkout back where an interrupted landing had moved it from ({})",
                    marker.describe()
                ),
                Ok(false) => {}
                Err(refusal) => return Err(refusal.into()),
            }
        }
        self.forget_marker();
        Ok(())
    }

    fn forget_marker(&self) {
        let _ = std::fs::remove_file(&self.marker);
    }

    /// Bring every checkout of the branch from `old` to `new`: all must be clean (index and
    /// files as `old`), then the marker is written, then each moves. On a refusal the ones
    /// already moved go back and nothing is changed.
    pub fn bring_along(
        &mut self,
        old: ObjectId,
        new: ObjectId,
    ) -> std::result::Result<(), Blocked> {
        if self.checkouts.is_empty() {
            return Ok(());
        }
        let old_hex = old.to_string();
        for wt in &self.checkouts {
            self.refresh(wt)?;
            let clean = self
                .run(wt, &["diff-files", "--quiet", "--ignore-submodules", "--"])?
                .0
                && self
                    .run(
                        wt,
                        &[
                            "diff-index",
                            "--quiet",
                            "--cached",
                            "--ignore-submodules",
                            &old_hex,
                            "--",
                        ],
                    )?
                    .0;
            if !clean {
                return Err(Blocked::Dirty {
                    worktree: wt.clone(),
                });
            }
        }
        let marker = Marker {
            target: self.name.clone(),
            old: old_hex.clone(),
            new: new.to_string(),
            worktrees: self.checkouts.clone(),
            worker: self.holder.clone(),
            pid: crate::git::os::pid(),
            started_at: jiff::Timestamp::now(),
        };
        if let Err(e) = write_atomically(&self.marker, &marker) {
            return Err(Blocked::Checkout {
                worktree: self.checkouts[0].clone(),
                message: format!("cannot write {}: {e}", self.marker.display()),
            });
        }
        crate::git::os::pause_point("landing.marker_written");
        for wt in self.checkouts.clone() {
            if let Err(refusal) = self.read_tree(&wt, old, new) {
                self.put_back_all(old, new);
                return Err(refusal);
            }
            self.moved.push(wt);
        }
        crate::git::os::pause_point("landing.checkout_moved");
        Ok(())
    }

    /// The branch did not move: put back every checkout moved. What cannot be put back keeps
    /// the marker, so the next landing finds the interrupted move (and `doctor` reports it).
    pub fn put_back_all(&mut self, old: ObjectId, new: ObjectId) {
        let why = format!("a landing onto {} did not complete", self.name);
        let mut all = true;
        for wt in std::mem::take(&mut self.moved) {
            if let Err(e) = self.put_back(&wt, old, new, &why) {
                tracing::warn!(target = %self.name, worktree = %wt.display(), error = %e.message(&self.name), "could not put the checkout back");
                all = false;
            }
        }
        if all {
            self.forget_marker();
        }
    }

    /// The branch moved: the move is complete.
    pub fn finish(self) {
        self.forget_marker();
    }
}

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        // Who held it is history once it is free; the kernel releases the lock on close.
        let _ = self.lock.set_len(0);
    }
}

fn write_atomically(path: &Path, marker: &Marker) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", crate::git::os::pid()));
    let text = serde_json::to_vec_pretty(marker).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Take the landing lock of `name`, waiting up to `hyperion.landingWait` for a live holder.
fn take_lock(repo: &gix::Repository, name: &str, holder: &Holder<'_>) -> Result<File, LandError> {
    let path = lock_path(repo, name);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    }
    let file = File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => break,
            Err(rustix::io::Errno::WOULDBLOCK) => {
                if started.elapsed() >= holder.queue.settings().landing_wait {
                    return Err(Blocked::Busy {
                        holder: describe_holder(&path),
                        waited: started.elapsed(),
                    }
                    .into());
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(25));
            }
            Err(e) => {
                return Err(Error::io(format!("cannot lock {}", path.display()), e.into()).into());
            }
        }
    }
    let info = HolderInfo {
        target: name.to_owned(),
        worker: holder.worker.to_owned(),
        pid: crate::git::os::pid(),
        since: jiff::Timestamp::now(),
    };
    let text = serde_json::to_vec(&info).map_err(|e| Error::git(e.to_string()))?;
    {
        use std::io::Write;
        let mut f = &file;
        // For people and doctor only: a failure here does not stop the landing.
        let _ = file.set_len(0).and_then(|()| f.write_all(&text));
    }
    Ok(file)
}

/// "worker W (pid P) since T", from a held lock file.
fn describe_holder(lock: &Path) -> String {
    std::fs::read(lock)
        .ok()
        .and_then(|t| serde_json::from_slice::<HolderInfo>(&t).ok())
        .map(|h| format!("worker {} (pid {}) since {}", h.worker, h.pid, h.since))
        .unwrap_or_else(|| "a process that has not said who it is yet".into())
}

/// What `doctor` reports about landings onto checked-out branches: one in progress (its
/// holder), one interrupted (dead holder, the move, what to do), and an old `index.lock` in a
/// checkout. Reads only; takes no lock but, for an instant, a shared one to test a landing's.
pub fn findings(repo: &gix::Repository) -> Vec<Finding> {
    let mut out = Vec::new();
    let dir = landing_dir(repo);
    let mut keys: Vec<String> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".lock")
                .or_else(|| name.strip_suffix(".json"))
                .map(str::to_owned)
        })
        .collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let lock = dir.join(format!("{k}.lock"));
        let marker_file = dir.join(format!("{k}.json"));
        let held = File::open(&lock).is_ok_and(|f| {
            matches!(
                rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockShared),
                Err(rustix::io::Errno::WOULDBLOCK)
            )
        });
        let marker = std::fs::read(&marker_file).ok();
        let parsed = marker
            .as_deref()
            .and_then(|t| serde_json::from_slice::<Marker>(t).ok());
        let branch = |target: &str| {
            target
                .strip_prefix("refs/heads/")
                .unwrap_or(target)
                .to_owned()
        };
        if held {
            let who = describe_holder(&lock);
            let info = std::fs::read(&lock)
                .ok()
                .and_then(|t| serde_json::from_slice::<HolderInfo>(&t).ok());
            let id = parsed
                .as_ref()
                .map(|m| branch(&m.target))
                .or_else(|| info.map(|i| branch(&i.target)))
                .unwrap_or_else(|| k.clone());
            let what = match &parsed {
                Some(m) => format!(
                    ": moving {} from {} to {}",
                    list_paths(&m.worktrees),
                    &m.old,
                    &m.new
                ),
                None => String::new(),
            };
            out.push(Finding {
                id,
                code: Code::LandInProgress,
                message: format!("{who} is landing onto this branch{what}"),
            });
        } else if let Some(m) = parsed {
            let old = ObjectId::from_hex(m.old.as_bytes()).ok();
            if old.is_some() && read_tip(repo, &m.target).ok().flatten() != old {
                // The branch moved since: the landing completed or a person took over.
                // Nothing is pending; the next landing onto the branch drops the marker.
                continue;
            }
            out.push(Finding {
                id: branch(&m.target),
                code: Code::LandInterrupted,
                message: format!(
                    "a landing {} was interrupted (its process is gone) after it moved the checkout and before it moved the branch; \
                     the next landing onto {} puts the checkout back unless changes made there since touch the files it changed \
                     (`git diff --name-only {} {}`); if they do, landings stop until, in that checkout, `git stash -u` \
                     (keeps the landing's changes and yours), the request lands again, and `git stash pop`; marker: {}",
                    m.describe(),
                    branch(&m.target),
                    &m.old,
                    &m.new,
                    marker_file.display()
                ),
            });
        } else if marker.is_some() {
            out.push(Finding {
                id: k.clone(),
                code: Code::LandInterrupted,
                message: format!(
                    "the landing marker {} cannot be read; landings onto its branch stop until a person has checked the checkout and removed the file",
                    marker_file.display()
                ),
            });
        }
    }
    for w in worktrees(repo) {
        if let Some((lock, age)) = index_lock(&w.git_dir)
            && age >= crate::queue::store::STALE_LOCK
        {
            out.push(Finding {
                id: w.path.display().to_string(),
                code: Code::LandIndexLock,
                message: format!(
                    "{} is {}s old: git commands there, and landings onto its branch, are refused while it exists; if no git command is running in that worktree, remove it",
                    lock.display(),
                    age.as_secs()
                ),
            });
        }
    }
    out
}
