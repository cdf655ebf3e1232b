//! Pooled worktrees for checks, under `$GIT_COMMON_DIR/hyperion/worktrees/`.
//!
//! A slot is a linked worktree (`git worktree add --detach`, locked so `git worktree prune`
//! leaves it) named `hyperion-N`, taken by holding an exclusive `flock` on `hyperion-N.lock`
//! beside it: a worker that dies frees its slot with its file descriptors. A worker keeps its
//! slot from one request to the next.
//!
//! Moving a slot to a commit has two ways:
//! - **incremental**, in process: when nothing has touched the slot since hyperion last put it
//!   at a commit, the two commits' trees are compared and only the files that differ are
//!   written or removed; the slot's index gets those entries (with fresh stat data) and its
//!   `HEAD` the new commit. "Nothing has touched it" is known from an inotify watch on every
//!   directory of the checked-out tree: any creation, deletion, rename, write or mode change
//!   in one of them — by a check, a person, anything — marks the slot dirty.
//! - **full**, with git: `git checkout --force --detach` (git, too, touches only files that
//!   differ) and `git clean -fdq`, which removes untracked files a check left but keeps
//!   ignored ones (`target/`, `node_modules/`). Used when the slot is dirty, new, or holds an
//!   index feature the incremental way does not handle (split index, untracked cache), and
//!   when a path changes between file and directory.
//!
//! Either way a check starts from the commit's content plus whatever the repository's
//! `.gitignore` says is a cache: files inside ignored directories are neither watched nor
//! removed.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use std::os::unix::ffi::OsStrExt;

use gix::ObjectId;

use crate::error::{Error, Result};

/// The pool of one repository.
pub struct Pool {
    dir: PathBuf,
}

/// A slot held by this process until dropped.
pub struct Slot {
    path: PathBuf,
    _lock: File,
    /// What hyperion put there last, while no one has touched it since.
    known: Option<Known>,
}

struct Known {
    commit: ObjectId,
    watch: Watch,
    /// The slot's index as hyperion last wrote it, kept from one move to the next (decoding
    /// 50,000 entries again was an eighth of a move). A check that changed the index without
    /// touching a file (`git add`, `git rm --cached`) has it put back by the next move.
    index: Option<gix::index::File>,
}

/// How a slot was moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    /// In process, touching `files` paths.
    Incremental { files: usize },
    /// With `git checkout --force` and `git clean`.
    Full,
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
            let known = released().remove(&path);
            return Ok(Slot {
                path,
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

    /// Move the slot to `commit`: its files, index and `HEAD`. Touches only what differs
    /// from what the slot holds; removes what a check added (ignored files stay).
    pub fn checkout(&mut self, repo: &gix::Repository, commit: ObjectId) -> Result<Moved> {
        if let Some(known) = self.known.take()
            && known.watch.quiet()
        {
            match incremental(
                repo,
                &self.path,
                known.commit,
                commit,
                &known.watch,
                known.index,
            ) {
                Ok(Some((files, index))) => {
                    known.watch.drain();
                    self.known = Some(Known {
                        commit,
                        watch: known.watch,
                        index: Some(index),
                    });
                    return Ok(Moved::Incremental { files });
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "incremental move failed; checking out fully");
                }
            }
        }
        // git reads the commit from disk.
        crate::pack::persist(repo)?;
        let hex = commit.to_string();
        git(
            &self.path,
            &["checkout", "--force", "--quiet", "--detach", &hex],
        )?;
        git(&self.path, &["clean", "-fdq"])?;
        self.known = match Watch::arm(repo, &self.path, commit) {
            Ok(watch) => Some(Known {
                commit,
                watch,
                index: None,
            }),
            Err(e) => {
                tracing::debug!(error = %e, "cannot watch the slot; every move will be full");
                None
            }
        };
        Ok(Moved::Full)
    }
}

/// An inotify watch on every directory of a slot's checked-out tree.
struct Watch {
    fd: rustix::fd::OwnedFd,
}

const WATCHED: rustix::fs::inotify::WatchFlags = rustix::fs::inotify::WatchFlags::MODIFY
    .union(rustix::fs::inotify::WatchFlags::ATTRIB)
    .union(rustix::fs::inotify::WatchFlags::CREATE)
    .union(rustix::fs::inotify::WatchFlags::DELETE)
    .union(rustix::fs::inotify::WatchFlags::MOVED_FROM)
    .union(rustix::fs::inotify::WatchFlags::MOVED_TO)
    .union(rustix::fs::inotify::WatchFlags::DELETE_SELF)
    .union(rustix::fs::inotify::WatchFlags::MOVE_SELF)
    .union(rustix::fs::inotify::WatchFlags::ONLYDIR)
    .union(rustix::fs::inotify::WatchFlags::DONT_FOLLOW);

impl Watch {
    /// Watch the slot's root and every directory of `commit`'s tree.
    fn arm(repo: &gix::Repository, root: &Path, commit: ObjectId) -> Result<Watch> {
        use rustix::fs::inotify;
        let fd = inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC)
            .map_err(|e| Error::io("cannot start an inotify watch", e.into()))?;
        let watch = Watch { fd };
        watch.add(root)?;
        let tree = crate::land::tree_of(repo, commit)?;
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
        watch.drain();
        Ok(watch)
    }

    fn add(&self, dir: &Path) -> Result<()> {
        rustix::fs::inotify::add_watch(&self.fd, dir, WATCHED)
            .map(|_| ())
            .map_err(|e| Error::io(format!("cannot watch {}", dir.display()), e.into()))
    }

    /// Read every pending event; true when there was none (a removed watch's own notice
    /// aside).
    fn drain(&self) -> bool {
        use rustix::fs::inotify::{ReadFlags, Reader};
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = Reader::new(&self.fd, &mut buf);
        let mut quiet = true;
        loop {
            match reader.next() {
                Ok(event) => {
                    if !event.events().difference(ReadFlags::IGNORED).is_empty() {
                        quiet = false;
                    }
                }
                Err(rustix::io::Errno::INTR) => continue,
                // AGAIN: nothing more; anything else: treat as touched.
                Err(rustix::io::Errno::AGAIN) => return quiet,
                Err(_) => return false,
            }
        }
    }

    /// Whether nothing happened in the slot since the last drain.
    fn quiet(&self) -> bool {
        self.drain()
    }
}

fn tree_entries(repo: &gix::Repository, tree: ObjectId) -> Result<Vec<gix::objs::tree::Entry>> {
    let tree = repo
        .find_tree(tree)
        .map_err(|e| Error::git(format!("cannot read tree {tree}: {e}")))?;
    let decoded = tree.decode().map_err(Error::git)?;
    Ok(decoded.entries.iter().map(|e| (*e).into()).collect())
}

/// One path that differs between two trees: its entry before and after.
struct Change {
    path: gix::bstr::BString,
    new: Option<(gix::objs::tree::EntryMode, ObjectId)>,
}

/// The non-tree paths that differ between `a` and `b`, and the directories only `b` has;
/// `None` when a path is a directory on one side and not on the other.
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
    use gix::bstr::{BString, ByteVec};
    let mut changes = Vec::new();
    let mut new_dirs = Vec::new();
    let mut gone_dirs = Vec::new();
    // (old tree, new tree, prefix); either side may be absent (a directory added/removed).
    let mut stack: Vec<(Option<ObjectId>, Option<ObjectId>, BString)> =
        vec![(Some(a), Some(b), BString::default())];
    while let Some((old, new, prefix)) = stack.pop() {
        let old_entries = match old {
            Some(t) => tree_entries(repo, t)?,
            None => Vec::new(),
        };
        let new_entries = match new {
            Some(t) => tree_entries(repo, t)?,
            None => Vec::new(),
        };
        let mut by_name: std::collections::BTreeMap<BString, (Option<_>, Option<_>)> =
            std::collections::BTreeMap::new();
        for e in old_entries {
            by_name.entry(e.filename.clone()).or_default().0 = Some((e.mode, e.oid));
        }
        for e in new_entries {
            by_name.entry(e.filename.clone()).or_default().1 = Some((e.mode, e.oid));
        }
        for (name, (o, n)) in by_name {
            if o == n {
                continue;
            }
            let mut path = prefix.clone();
            if !path.is_empty() {
                path.push_byte(b'/');
            }
            path.extend_from_slice(&name);
            let o_tree = o.filter(|(m, _)| m.is_tree());
            let n_tree = n.filter(|(m, _)| m.is_tree());
            match (o, n) {
                (Some((om, _)), Some((nm, _))) if om.is_tree() != nm.is_tree() => {
                    return Ok(None);
                }
                _ => {}
            }
            if o_tree.is_some() || n_tree.is_some() {
                if o_tree.is_none() {
                    new_dirs.push(path.clone());
                }
                if n_tree.is_none() {
                    gone_dirs.push(path.clone());
                }
                stack.push((o_tree.map(|t| t.1), n_tree.map(|t| t.1), path));
            } else {
                changes.push(Change { path, new: n });
            }
        }
    }
    Ok(Some((changes, new_dirs, gone_dirs)))
}

/// Move a clean slot from `from` to `to` in process. `None` when this needs git (see the
/// module documentation); an error leaves the slot for a full checkout to repair.
fn incremental(
    repo: &gix::Repository,
    root: &Path,
    from: ObjectId,
    to: ObjectId,
    watch: &Watch,
    cached: Option<gix::index::File>,
) -> Result<Option<(usize, gix::index::File)>> {
    use gix::index::entry::{Flags, Mode, Stage, Stat};
    use gix::objs::tree::EntryKind;
    let Some(git_dir) = slot_git_dir(root) else {
        return Ok(None);
    };
    let index_path = git_dir.join("index");
    // Not re-hashed on reading: git and hyperion wrote it, and git checks it when it reads.
    let mut index = match cached {
        Some(index) => index,
        None => gix::index::File::at(&index_path, gix::hash::Kind::Sha1, true, Default::default())
            .map_err(|e| Error::git(format!("cannot read {}: {e}", index_path.display())))?,
    };
    if index.link().is_some()
        || index.untracked().is_some()
        || index.fs_monitor().is_some()
        || index.is_sparse()
    {
        return Ok(None);
    }
    let (from_tree, to_tree) = (
        crate::land::tree_of(repo, from)?,
        crate::land::tree_of(repo, to)?,
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
                    .map_err(|e| Error::git(format!("cannot read blob {id}: {e}")))?,
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
    let skip_hash = git_reads_unhashed_index();
    let data = match encode_index(&index, skip_hash) {
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
                .map_err(|e| Error::git(format!("cannot write {}: {e}", index_path.display())))?;
            data
        }
    };
    // The index and `HEAD` are replaced by exchange with a companion file (the slot is this
    // worker's alone, and nothing a check started runs any more): no file is made or freed.
    crate::spare::exchange(&index_path, &data).map_err(|e| io("cannot write", &index_path, e))?;
    let head = git_dir.join("HEAD");
    crate::spare::exchange(&head, format!("{to}\n").as_bytes())
        .map_err(|e| io("cannot update", &head, e))?;
    Ok(Some((changes.len(), index)))
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
/// the old one's freeing, which on some file systems is most of a move (see `crate::spare`).
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
    if !fits || !crate::sys::only_opener(&file).unwrap_or(false) {
        return false;
    }
    // Written first, then cut to size: a file cut to nothing first is, on ext4, written out
    // at once when closed (`auto_da_alloc`).
    file.write_all_at(data, 0).is_ok() && file.set_len(data.len() as u64).is_ok()
}

/// Whether the git on PATH reads an index without its trailing checksum (all zeros, as
/// `index.skipHash` writes it): git 2.40 and later. Hashing a large index with collision
/// detection is most of the cost of an incremental move; asked once per process.
fn git_reads_unhashed_index() -> bool {
    static ANSWER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ANSWER.get_or_init(|| {
        let Ok(out) = Command::new("git").arg("--version").output() else {
            return false;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let mut numbers = text
            .split_whitespace()
            .nth(2)
            .unwrap_or("")
            .split('.')
            .map(|n| n.parse::<u32>().unwrap_or(0));
        let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
        (major, minor) >= (2, 40)
    })
}

/// `rel` (a path from a tree, `/`-separated bytes) below `root`.
fn under(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(std::ffi::OsStr::from_bytes(rel))
}

/// The slot's own git directory (`<common>/worktrees/<name>`), from its `.git` file.
fn slot_git_dir(root: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(root.join(".git")).ok()?;
    let dir = text.strip_prefix("gitdir:")?.trim();
    let dir = PathBuf::from(dir);
    Some(if dir.is_absolute() {
        dir
    } else {
        root.join(dir)
    })
}

pub(crate) fn git(dir: &Path, args: &[&str]) -> Result<String> {
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
