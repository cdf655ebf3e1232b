//! Pooled worktrees for checks, under `$GIT_COMMON_DIR/hyperion/worktrees/`.
//!
//! A slot `hyperion-N` is a repository of its own, not a linked worktree of the shared one:
//! its `.git` directory holds only what hyperion writes there — `HEAD` (detached), a fixed
//! `config`, the `index`, `refs/` (empty), and an object store whose
//! `objects/info/alternates` points at the shared repository's objects, plus one pack of the
//! objects git in the slot needs that are not written to the shared repository yet (the
//! commit under check, held in memory until it lands; see [`crate::git::pack::memory_pack`]).
//! A check that runs `git config`, `git branch`, `git update-ref`, `git commit`, or writes
//! `.git/config` or `.git/hooks/…` in its directory changes that repository, never the shared
//! one: its config, refs and hooks are not shared, and git writes new objects into the slot's
//! own store. Before every move the slot's `.git` is checked against what hyperion wrote
//! (entries, kinds, `config`, `alternates`, nothing in `refs/`); one a check changed is
//! rebuilt from scratch, and the `index` and `HEAD` are rewritten by every move anyway. A
//! slot taken by holding an exclusive `flock` on `hyperion-N.lock` beside it: a worker that
//! dies frees its slot with its file descriptors. A worker keeps its slot from one request to
//! the next. `hyperion-N.scratch/` beside it holds the checks' `HOME` and `TMPDIR`.
//!
//! Moving a slot to a commit has two ways:
//! - **incremental**, in process: when nothing has touched the slot's files since hyperion
//!   last put it at a commit, the two commits' trees are compared and only the files that
//!   differ are written or removed; the slot's index (kept in memory) gets those entries
//!   (with fresh stat data) and its `HEAD` the new commit. "Nothing has touched it" is known
//!   from an inotify watch on every directory of the checked-out tree: any creation,
//!   deletion, rename, write or mode change in one of them — by a check, a person, anything —
//!   marks the slot dirty.
//! - **full**, with git: `git read-tree --reset -u` (git, too, touches only files that differ
//!   from its index, which hyperion puts back first when it holds one) and `git clean -ffdq`,
//!   which removes untracked files a check left but keeps ignored ones (`target/`,
//!   `node_modules/`). Used when the slot is dirty, new, or holds an index feature the
//!   incremental way does not handle, and when a path changes between file and directory.
//!
//! Either way a check starts from the commit's content plus whatever the repository's
//! `.gitignore` says is a cache: files inside ignored directories are neither watched nor
//! removed. Nothing of a move — no object, ref, reflog or config — reaches the shared
//! repository, so a dry run with checks leaves it as it was.
//!
//! What this does not stop: a check runs as the worker's user, so one that writes the shared
//! repository by its absolute path can (see docs/usage.md, "What a check can reach").

use std::fs::File;
use std::path::{Path, PathBuf};

use std::os::unix::ffi::OsStrExt;

use gix::ObjectId;

use crate::error::{Error, Result};

/// The pool of one repository.
pub struct Pool {
    dir: PathBuf,
    common: PathBuf,
}

/// A slot held by this process until dropped.
pub struct Slot {
    path: PathBuf,
    scratch: PathBuf,
    /// The slot repository's `objects/info/alternates`: the shared object directory.
    alternates: String,
    /// The shared repository's common git directory.
    common: PathBuf,
    _lock: File,
    /// What hyperion put there last, while no one has touched it since.
    known: Option<Known>,
}

struct Known {
    commit: ObjectId,
    watch: Watch,
    /// The slot's index as hyperion last wrote it, kept from one move to the next (decoding
    /// 50,000 entries again was an eighth of a move). A check that changed the index (`git
    /// add`, `git rm --cached`, by hand) has it put back by the next move.
    index: Option<gix::index::File>,
}

/// How a slot was moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    /// In process, touching `files` paths.
    Incremental { files: usize },
    /// With `git read-tree --reset -u` and `git clean`.
    Full,
}

/// The name of the slot's own pack (see [`Slot::write_objects`]): fixed, so that each move
/// writes the same two files over instead of making and removing files.
const PACK: &str = "pack-0000000000000000000000000000000068797065";

/// The slot repository's whole config.
const CONFIG: &str = "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n\
\tlogallrefupdates = false\n\tfsmonitor = false\n\tuntrackedCache = false\n\tsplitIndex = false\n\
[gc]\n\tauto = 0\n";

/// `HEAD` of a slot not yet moved.
const UNBORN: &str = "ref: refs/heads/hyperion-slot\n";

impl Pool {
    pub fn new(common_dir: &Path) -> Pool {
        Pool {
            dir: common_dir.join("hyperion").join("worktrees"),
            common: common_dir.to_owned(),
        }
    }

    /// Take a free slot, making a new one when all are taken. (`_git_dir`, the repository's
    /// git directory, is no longer needed: a slot is a repository of its own.)
    pub fn acquire(&self, _git_dir: &Path) -> Result<Slot> {
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
            ensure_slot(&self.common, &path)?;
            let known = released().remove(&path);
            return Ok(Slot {
                scratch: self.dir.join(format!("{name}.scratch")),
                path,
                alternates: alternates(&self.common),
                common: self.common.clone(),
                _lock: lock,
                known,
            });
        }
        Err(Error::git("all 1024 worktree slots are taken"))
    }
}

/// What the slots this process let go of held (see [`Known`]), by path: a slot taken again by
/// the same process (a new worker in a long-lived process, a benchmark's next round) goes on
/// moving in process. Its watch stays armed meanwhile, so whatever touched the slot in between
/// — another process that held it, a person — still makes the next move a full one.
fn released() -> std::sync::MutexGuard<'static, std::collections::HashMap<PathBuf, Known>> {
    static RELEASED: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<PathBuf, Known>>,
    > = std::sync::OnceLock::new();
    RELEASED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// At most this many released slots are remembered: each holds an inotify instance, of which
/// a user may have only a few (128 by default on Linux).
const REMEMBERED: usize = 16;

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(known) = self.known.take() {
            let mut released = released();
            // Slots of repositories deleted since are forgotten.
            released.retain(|path, _| path.exists());
            if released.len() < REMEMBERED {
                released.insert(self.path.clone(), known);
            }
        }
    }
}

impl Slot {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the checks run in this slot get their `HOME` and `TMPDIR`
    /// ([`crate::gate::untrusted::Scratch`]).
    pub fn scratch(&self) -> &Path {
        &self.scratch
    }

    /// The slot's own git directory.
    pub fn git_dir(&self) -> PathBuf {
        self.path.join(".git")
    }

    /// Move the slot to `commit`: its files, index and `HEAD`. Touches only what differs
    /// from what the slot holds; removes what a check added (ignored files stay); puts back
    /// the slot's repository if a check changed it. Writes nothing into the shared
    /// repository.
    pub fn checkout(&mut self, repo: &gix::Repository, commit: ObjectId) -> Result<Moved> {
        // A check may have put something else in the slot's place (a link to another
        // repository): nothing below may go through it.
        if !matches!(std::fs::symlink_metadata(&self.path), Ok(m) if m.is_dir()) {
            self.known = None;
            ensure_slot(&self.common, &self.path)?;
        }
        let git_dir = self.git_dir();
        // Whether the files were touched, before the repository's rebuild adds its own events.
        let quiet = self.known.as_ref().is_some_and(|k| k.watch.quiet());
        if !git_dir_intact(&git_dir, &self.alternates) {
            tracing::debug!(slot = %self.path.display(), "the slot's repository was changed; rebuilding it");
            build_git_dir(&git_dir, &self.alternates)?;
        }
        self.write_objects(repo)?;
        let mut known = self.known.take();
        if let Some(k) = &mut known
            && quiet
            && let Some(index) = &mut k.index
        {
            match incremental(repo, &self.path, k.commit, commit, &k.watch, index) {
                Ok(Some(files)) => {
                    k.watch.quiet();
                    k.commit = commit;
                    self.known = known;
                    return Ok(Moved::Incremental { files });
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "incremental move failed; checking out fully");
                }
            }
        }
        // git compares the files with the index: the one hyperion last wrote, when it has
        // it, not one a check may have changed; none when the repository was rebuilt.
        let index_path = git_dir.join("index");
        if let Some(index) = known.as_ref().and_then(|k| k.index.as_ref())
            && plain(index)
        {
            write_index(index, &index_path)?;
        }
        drop(known);
        let hex = commit.to_string();
        let full = || -> Result<()> {
            slot_git(&self.path, &["read-tree", "--reset", "-u", &hex])?;
            slot_git(&self.path, &["clean", "-ffdq"]).map(|_| ())
        };
        if let Err(e) = full() {
            // An index git cannot use, objects the shared repository pruned since: start the
            // slot over (its files are all written again) rather than fail every request.
            tracing::warn!(slot = %self.path.display(), error = %e, "a full move failed; making the slot anew");
            remove_all(&self.path)?;
            ensure_slot(&self.common, &self.path)?;
            self.write_objects(repo)?;
            full()?;
        }
        let head = git_dir.join("HEAD");
        crate::git::spare::exchange(&head, format!("{hex}\n").as_bytes())
            .map_err(|e| Error::io(format!("cannot update {}", head.display()), e))?;
        self.known = match Watch::arm(repo, &self.path, commit) {
            Ok(watch) => {
                // Read back while nothing else runs here: the index hyperion trusts next time.
                let index = gix::index::File::at(
                    &index_path,
                    gix::hash::Kind::Sha1,
                    true,
                    Default::default(),
                )
                .ok();
                Some(Known {
                    commit,
                    watch,
                    index,
                })
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot watch the slot; every move will be full");
                None
            }
        };
        Ok(Moved::Full)
    }

    /// Write the objects `repo` holds in memory — the commit to check and what it needs that
    /// the shared repository has not got yet — as the slot's own pack, so that git in the
    /// slot (the full move, a check running `git log`) finds them; they reach the shared
    /// repository only when they land. With nothing in memory the pack goes: the commit is in
    /// the shared repository, and what a check may have written over the pack is not kept.
    fn write_objects(&self, repo: &gix::Repository) -> Result<()> {
        let dir = self.git_dir().join("objects").join("pack");
        let (pack, idx) = (
            dir.join(format!("{PACK}.pack")),
            dir.join(format!("{PACK}.idx")),
        );
        let Some((pack_data, idx_data)) = crate::git::pack::memory_pack(repo)
            .map_err(|e| Error::io("cannot encode the objects in memory", e))?
        else {
            for p in [&idx, &pack] {
                match std::fs::remove_file(p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(format!("cannot remove {}", p.display()), e)),
                }
            }
            return Ok(());
        };
        // The pack first: an index is never newer than its pack.
        for (p, data) in [(&pack, &pack_data), (&idx, &idx_data)] {
            if !overwrite(p, data, false) {
                replace_file(p, data)
                    .map_err(|e| Error::io(format!("cannot write {}", p.display()), e))?;
            }
        }
        Ok(())
    }
}

/// Write `index` (git's version 2 format) as the slot's index file.
fn write_index(index: &gix::index::File, index_path: &Path) -> Result<()> {
    let skip_hash = git_reads_unhashed_index();
    let data = match encode_index(index, skip_hash) {
        Some(data) => data,
        None => {
            let mut data = Vec::with_capacity(index.entries().len() * 80 + 4096);
            index
                .write_to(
                    &mut data,
                    gix::index::write::Options {
                        skip_hash,
                        ..Default::default()
                    },
                )
                .map_err(|e| Error::object(format!("cannot write {}", index_path.display()), e))?;
            data
        }
    };
    // Replaced by exchange with a companion file (the slot is this worker's alone, and
    // nothing a check started runs any more): no file is made or freed.
    crate::git::spare::exchange(index_path, &data)
        .map_err(|e| Error::io(format!("cannot write {}", index_path.display()), e))
}

/// Write `data` into a new file renamed over `p`.
fn replace_file(p: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = p.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix("tmp_").tempfile_in(dir)?;
    tmp.write_all(data)?;
    tmp.persist(p).map(|_| ()).map_err(|e| e.error)
}

/// A watch on every directory of a slot's checked-out tree ([`crate::git::os::DirWatch`]).
struct Watch {
    dirs: crate::git::os::DirWatch,
    /// The watch of the slot's root, where `.git` is: what happens to the slot's repository
    /// is found by looking at it ([`git_dir_intact`]), not by this watch.
    root: i32,
}

impl Watch {
    /// Watch the slot's root and every directory of `commit`'s tree. An error where
    /// directories cannot be watched (not Linux, `HYPERION_PORTABLE`, the kernel's limit on
    /// watches): every move of the slot is then full.
    fn arm(repo: &gix::Repository, root: &Path, commit: ObjectId) -> Result<Watch> {
        let dirs = crate::git::os::DirWatch::new()
            .map_err(|e| Error::io("cannot watch the slot's directories", e))?;
        let mut watch = Watch { dirs, root: -1 };
        watch.root = watch.add(root)?;
        let tree = crate::git::tree::tree_of(repo, commit)?;
        let mut stack = vec![(tree, root.to_path_buf())];
        while let Some((tree, dir)) = stack.pop() {
            for entry in tree_entries(repo, tree)? {
                if entry.mode.is_tree() {
                    let sub = under(&dir, &entry.filename);
                    watch.add(&sub)?;
                    stack.push((entry.oid, sub));
                }
            }
        }
        watch.quiet();
        Ok(watch)
    }

    fn add(&self, dir: &Path) -> Result<i32> {
        self.dirs
            .add(dir)
            .map_err(|e| Error::io(format!("cannot watch {}", dir.display()), e))
    }

    /// Whether nothing happened in the slot since the last call (the root's `.git` aside).
    fn quiet(&self) -> bool {
        self.dirs.quiet(self.root, b".git")
    }
}

fn tree_entries(repo: &gix::Repository, tree: ObjectId) -> Result<Vec<gix::objs::tree::Entry>> {
    let tree = repo
        .find_tree(tree)
        .map_err(|e| Error::object(format!("cannot read tree {tree}"), e))?;
    let decoded = tree
        .decode()
        .map_err(|e| Error::object(format!("cannot decode tree {}", tree.id), e))?;
    Ok(decoded.entries.iter().map(|e| (*e).into()).collect())
}

/// One path that differs between two trees: its entry before and after.
struct Change {
    path: gix::bstr::BString,
    new: Option<(gix::objs::tree::EntryMode, ObjectId)>,
}

/// The non-tree paths that differ between `a` and `b`, and the directories only `b` has and
/// only `a` has; `None` when a path is a directory on one side and not on the other.
#[allow(clippy::type_complexity)]
fn diff_trees(
    repo: &gix::Repository,
    a: ObjectId,
    b: ObjectId,
) -> Result<
    Option<(
        Vec<Change>,
        Vec<gix::bstr::BString>,
        Vec<gix::bstr::BString>,
    )>,
> {
    let (mut changes, mut new_dirs, mut gone_dirs) = (Vec::new(), Vec::new(), Vec::new());
    let diff = crate::git::tree::diff(repo, Some(a), Some(b))?;
    // A file that became a directory (or the reverse) is two changes of one path, one beside
    // the other in path order: that move is left to git.
    if diff.windows(2).any(|w| w[0].path == w[1].path) {
        return Ok(None);
    }
    for c in diff {
        let tree = |side: Option<crate::git::tree::Entry>| side.is_some_and(|(m, _)| m.is_tree());
        match (c.old, c.new) {
            (Some(_), Some(_)) if tree(c.old) != tree(c.new) => return Ok(None),
            _ if tree(c.new) => new_dirs.push(c.path),
            _ if tree(c.old) => gone_dirs.push(c.path),
            _ => changes.push(Change {
                path: c.path,
                new: c.new,
            }),
        }
    }
    Ok(Some((changes, new_dirs, gone_dirs)))
}

/// Move a clean slot from `from` to `to` in process, `index` being what hyperion last wrote
/// there. `None` when this needs git (see the module documentation); an error leaves the slot
/// for a full move to repair. `index` is changed only to what was written to the disk.
fn incremental(
    repo: &gix::Repository,
    root: &Path,
    from: ObjectId,
    to: ObjectId,
    watch: &Watch,
    index: &mut gix::index::File,
) -> Result<Option<usize>> {
    use gix::index::entry::{Flags, Mode, Stage, Stat};
    use gix::objs::tree::EntryKind;
    let git_dir = root.join(".git");
    let index_path = git_dir.join("index");
    if !plain(index) {
        return Ok(None);
    }
    let (from_tree, to_tree) = (
        crate::git::tree::tree_of(repo, from)?,
        crate::git::tree::tree_of(repo, to)?,
    );
    let Some((changes, new_dirs, gone_dirs)) = diff_trees(repo, from_tree, to_tree)? else {
        return Ok(None);
    };
    let io =
        |what: &str, p: &Path, e: std::io::Error| Error::io(format!("{what} {}", p.display()), e);

    // Removals first, so that a file can take a removed one's place.
    let mut removed = std::collections::HashSet::new();
    for c in changes.iter().filter(|c| c.new.is_none()) {
        let p = under(root, &c.path);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("cannot remove", &p, e)),
        }
        removed.insert(c.path.clone());
    }
    // Deepest first; a directory that still holds ignored files stays, as with git.
    let mut gone_dirs = gone_dirs;
    gone_dirs.sort_by_key(|d| std::cmp::Reverse(d.len()));
    for d in &gone_dirs {
        let _ = std::fs::remove_dir(under(root, d));
    }
    let mut new_dirs = new_dirs;
    new_dirs.sort_by_key(|d| d.len());
    for d in &new_dirs {
        let p = under(root, d);
        std::fs::create_dir_all(&p).map_err(|e| io("cannot create", &p, e))?;
        watch.add(&p)?;
    }
    let mut written = Vec::new();
    for c in changes.iter() {
        let Some((mode, id)) = c.new else { continue };
        let p = under(root, &c.path);
        let executable = mode.kind() == EntryKind::BlobExecutable;
        let blob = match mode.kind() {
            EntryKind::Blob | EntryKind::BlobExecutable | EntryKind::Link => Some(
                repo.find_object(id)
                    .map_err(|e| Error::object(format!("cannot read blob {id}"), e))?,
            ),
            _ => None,
        };
        let mut in_place = false;
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => return Ok(None),
            Ok(m) if m.is_file() && mode.kind() != EntryKind::Link => {
                let data = blob.as_ref().map_or(&[][..], |b| &b.data[..]);
                in_place = mode.kind() != EntryKind::Commit && overwrite(&p, data, executable);
                if !in_place {
                    std::fs::remove_file(&p).map_err(|e| io("cannot replace", &p, e))?;
                }
            }
            Ok(_) => std::fs::remove_file(&p).map_err(|e| io("cannot replace", &p, e))?,
            Err(_) => {}
        }
        let index_mode = match mode.kind() {
            EntryKind::Blob | EntryKind::BlobExecutable => {
                let blob = blob.as_ref().expect("read above");
                if !in_place {
                    std::fs::write(&p, &blob.data).map_err(|e| io("cannot write", &p, e))?;
                }
                if executable && !in_place {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
                        .map_err(|e| io("cannot make executable", &p, e))?;
                }
                if executable {
                    Mode::FILE_EXECUTABLE
                } else {
                    Mode::FILE
                }
            }
            EntryKind::Link => {
                let blob = blob.as_ref().expect("read above");
                let target = std::ffi::OsStr::from_bytes(&blob.data);
                std::os::unix::fs::symlink(target, &p).map_err(|e| io("cannot link", &p, e))?;
                Mode::SYMLINK
            }
            EntryKind::Commit => {
                std::fs::create_dir_all(&p).map_err(|e| io("cannot create", &p, e))?;
                Mode::COMMIT
            }
            EntryKind::Tree => unreachable!("trees are descended into"),
        };
        let meta = gix::index::fs::Metadata::from_path_no_follow(&p)
            .map_err(|e| io("cannot stat", &p, e))?;
        let stat = Stat::from_fs(&meta).unwrap_or_default();
        written.push((c.path.clone(), id, index_mode, stat));
    }

    // The index: removed entries out, changed ones updated, new ones added.
    let mut added = Vec::new();
    for (path, id, mode, stat) in written {
        use gix::bstr::ByteSlice;
        removed.remove(&path);
        match index.entry_mut_by_path_and_stage(path.as_bstr(), Stage::Unconflicted) {
            Some(e) => {
                e.id = id;
                e.mode = mode;
                e.stat = stat;
            }
            None => added.push((path, id, mode, stat)),
        }
    }
    if !removed.is_empty() {
        index.remove_entries(|_, path, _| removed.contains(path));
    }
    for (path, id, mode, stat) in &added {
        use gix::bstr::ByteSlice;
        index.dangerously_push_entry(*stat, *id, Flags::empty(), *mode, path.as_bstr());
    }
    if !added.is_empty() {
        index.sort_entries();
    }
    index.remove_tree();
    write_index(index, &index_path)?;
    let head = git_dir.join("HEAD");
    crate::git::spare::exchange(&head, format!("{to}\n").as_bytes())
        .map_err(|e| io("cannot update", &head, e))?;
    Ok(Some(changes.len()))
}

/// Whether `index` is one the incremental move handles and [`write_index`] writes whole: no
/// split index, untracked cache, fsmonitor data or sparse entries.
fn plain(index: &gix::index::File) -> bool {
    index.link().is_none()
        && index.untracked().is_none()
        && index.fs_monitor().is_none()
        && !index.is_sparse()
}

/// `index` in git's index format, version 2, without extensions: what git reads back as the
/// same entries. gix's writer puts each field through a `dyn Write`, which for 50,000 entries
/// was most of a move; this fills one buffer. `None` when an entry needs more than version 2
/// holds (extended flags): gix's writer then.
fn encode_index(index: &gix::index::File, skip_hash: bool) -> Option<Vec<u8>> {
    use gix::index::entry::Flags;
    let entries = index.entries();
    let mut out = Vec::with_capacity(12 + entries.len() * 88 + 20);
    out.extend_from_slice(b"DIRC");
    out.extend_from_slice(&2u32.to_be_bytes());
    out.extend_from_slice(&u32::try_from(entries.len()).ok()?.to_be_bytes());
    for e in entries {
        if e.flags.contains(Flags::EXTENDED) {
            return None;
        }
        let path = e.path(index);
        let s = &e.stat;
        for n in [
            s.ctime.secs,
            s.ctime.nsecs,
            s.mtime.secs,
            s.mtime.nsecs,
            s.dev,
            s.ino,
            e.mode.bits(),
            s.uid,
            s.gid,
            s.size,
        ] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        out.extend_from_slice(e.id.as_bytes());
        let len = path.len().min(0xfff) as u16;
        out.extend_from_slice(&(e.flags.to_storage().bits() | len).to_be_bytes());
        out.extend_from_slice(path);
        // NUL-padded to a multiple of 8 bytes, at least one NUL.
        let size = 62 + path.len();
        out.resize(out.len() + (size + 8) / 8 * 8 - size, 0);
    }
    if skip_hash {
        out.extend_from_slice(&[0u8; 20]);
    } else {
        let mut h = gix::hash::hasher(gix::hash::Kind::Sha1);
        h.update(&out);
        out.extend_from_slice(h.try_finalize().ok()?.as_bytes());
    }
    Some(out)
}

/// Write `data` over the regular file `p` where it stands, when that is safe: the file has no
/// other name, nobody else has it open, and its executable bit is already the one wanted.
/// `false` (nothing written): the caller replaces the file. A new file costs its creation and
/// the old one's freeing, which on some file systems is most of a move (see `crate::git::spare`).
fn overwrite(p: &Path, data: &[u8], executable: bool) -> bool {
    use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
    let Ok(file) = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(p)
    else {
        return false;
    };
    let fits = file
        .metadata()
        .is_ok_and(|m| m.is_file() && m.nlink() == 1 && (m.mode() & 0o100 != 0) == executable);
    if !fits || !crate::git::os::only_opener(&file).unwrap_or(false) {
        return false;
    }
    // Written first, then cut to size: a file cut to nothing first is, on ext4, written out
    // at once when closed (`auto_da_alloc`).
    file.write_all_at(data, 0).is_ok() && file.set_len(data.len() as u64).is_ok()
}

/// Whether the git on PATH reads an index without its trailing checksum (all zeros, as
/// `index.skipHash` writes it): git 2.40 and later. Hashing a large index with collision
/// detection is most of the cost of an incremental move.
fn git_reads_unhashed_index() -> bool {
    crate::git::command::version().is_some_and(|v| v >= (2, 40))
}

/// `rel` (a path from a tree, `/`-separated bytes) below `root`.
fn under(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(std::ffi::OsStr::from_bytes(rel))
}

/// Run git in the slot at `root`, on the slot's repository and nothing else: its git
/// directory and work tree named, none of the caller's `GIT_*` redirections.
fn slot_git(root: &Path, args: &[&str]) -> Result<String> {
    let git_dir = root.join(".git");
    let mut full: Vec<&str> = Vec::with_capacity(args.len() + 4);
    let (g, w) = (git_dir.to_string_lossy(), root.to_string_lossy());
    full.extend(["--git-dir", &g, "--work-tree", &w]);
    full.extend(args);
    crate::git::command::text(root, &full)
}

/// Make sure the slot at `path` exists and is a repository of its own; start it over
/// otherwise (deleted by hand, or a linked worktree of the shared repository as hyperion made
/// slots before).
fn ensure_slot(common: &Path, path: &Path) -> Result<()> {
    let dotgit = path.join(".git");
    if matches!(std::fs::symlink_metadata(path), Ok(m) if m.is_dir()) {
        match std::fs::symlink_metadata(&dotgit) {
            Ok(m) if m.is_dir() => return Ok(()),
            Ok(m) if m.is_file() => forget_linked_worktree(common, path),
            _ => {}
        }
    }
    if std::fs::symlink_metadata(path).is_ok() {
        remove_all(path)?;
    }
    std::fs::create_dir_all(path)
        .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
    build_git_dir(&dotgit, &alternates(common))
}

/// A slot that was a linked worktree (`.git` a file naming `<common>/worktrees/NAME`): remove
/// that registration, which is hyperion's own, so that the shared repository forgets it as
/// `git worktree prune` would. Only a registration pointing back at this slot is removed.
fn forget_linked_worktree(common: &Path, path: &Path) {
    let Ok(text) = std::fs::read_to_string(path.join(".git")) else {
        return;
    };
    let Some(dir) = text
        .strip_prefix("gitdir:")
        .map(|d| PathBuf::from(d.trim()))
    else {
        return;
    };
    let registry = common.join("worktrees");
    let Ok(back) = std::fs::read_to_string(dir.join("gitdir")) else {
        return;
    };
    if dir.parent() == Some(registry.as_path())
        && Path::new(back.trim()) == path.join(".git").as_path()
    {
        let _ = remove_all(&dir);
    }
}

/// Remove `p` and everything under it, without following links (a directory a check made
/// read-only included).
fn remove_all(p: &Path) -> Result<()> {
    crate::gate::untrusted::remove_all(p)
        .map_err(|e| Error::io(format!("cannot remove {}", p.display()), e))
}

/// The `objects/info/alternates` of a slot of the repository whose common directory is
/// `common`: its object directory, absolute.
fn alternates(common: &Path) -> String {
    let objects =
        std::fs::canonicalize(common.join("objects")).unwrap_or_else(|_| common.join("objects"));
    format!("{}\n", objects.display())
}

/// Make the slot's git directory `git_dir` from scratch: whatever is there goes.
fn build_git_dir(git_dir: &Path, alternates: &str) -> Result<()> {
    if std::fs::symlink_metadata(git_dir).is_ok() {
        remove_all(git_dir)?;
    }
    let io = |p: &Path, e| Error::io(format!("cannot create {}", p.display()), e);
    for d in ["objects/info", "objects/pack", "refs"] {
        let p = git_dir.join(d);
        std::fs::create_dir_all(&p).map_err(|e| io(&p, e))?;
    }
    for (name, content) in [
        ("config", CONFIG.to_owned()),
        ("HEAD", UNBORN.to_owned()),
        ("objects/info/alternates", alternates.to_owned()),
    ] {
        let p = git_dir.join(name);
        std::fs::write(&p, content).map_err(|e| io(&p, e))?;
    }
    Ok(())
}

/// Whether the slot's git directory holds exactly what hyperion writes there: the entries
/// (regular files and directories, no links), `config` and `alternates` as written, a `HEAD`
/// naming a commit (or the unborn start), nothing in `refs/`, only the slot's own pack in
/// `objects/`. The index, `HEAD`'s commit and the pack's content are not checked: every move
/// writes them.
fn git_dir_intact(git_dir: &Path, alternates: &str) -> bool {
    use std::collections::BTreeSet;
    fn listing(dir: &Path) -> Option<BTreeSet<(String, bool)>> {
        let mut names = BTreeSet::new();
        for e in std::fs::read_dir(dir).ok()? {
            let e = e.ok()?;
            let kind = e.file_type().ok()?;
            if !(kind.is_file() || kind.is_dir()) {
                return None;
            }
            names.insert((e.file_name().into_string().ok()?, kind.is_dir()));
        }
        Some(names)
    }
    let within = |dir: &Path, files: &[&str], dirs: &[&str], required: &[&str]| -> bool {
        let Some(names) = listing(dir) else {
            return false;
        };
        names.iter().all(|(n, is_dir)| {
            if *is_dir {
                dirs.contains(&n.as_str())
            } else {
                files.contains(&n.as_str())
            }
        }) && required.iter().all(|r| names.iter().any(|(n, _)| n == r))
    };
    let spare = crate::git::spare::COMPANION;
    let (head_spare, index_spare) = (format!("HEAD{spare}"), format!("index{spare}"));
    let pack = (format!("{PACK}.pack"), format!("{PACK}.idx"));
    let content = |p: &Path| std::fs::read(p).ok();
    matches!(std::fs::symlink_metadata(git_dir), Ok(m) if m.is_dir())
        && within(
            git_dir,
            &["HEAD", "config", "index", &head_spare, &index_spare],
            &["objects", "refs"],
            &["HEAD", "config", "objects", "refs"],
        )
        && within(
            &git_dir.join("objects"),
            &[],
            &["info", "pack"],
            &["info", "pack"],
        )
        && within(
            &git_dir.join("objects/info"),
            &["alternates"],
            &[],
            &["alternates"],
        )
        && within(&git_dir.join("objects/pack"), &[&pack.0, &pack.1], &[], &[])
        && within(&git_dir.join("refs"), &[], &[], &[])
        && content(&git_dir.join("config")).is_some_and(|c| c == CONFIG.as_bytes())
        && content(&git_dir.join("objects/info/alternates"))
            .is_some_and(|c| c == alternates.as_bytes())
        && content(&git_dir.join("HEAD")).is_some_and(|h| {
            h == UNBORN.as_bytes()
                || (h.len() == 41 && h[40] == b'\n' && h[..40].iter().all(u8::is_ascii_hexdigit))
        })
}
