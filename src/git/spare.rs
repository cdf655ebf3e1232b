//! Spare files: the files hyperion would otherwise delete, kept to be written again.
//!
//! A queue transition replaces a ref file (the lock renamed over it frees the old one) and
//! writes a kept pack (a pack, its index and its `.keep`: new files). On some file systems
//! creating and freeing files is most of what a transition costs: ext4 without a journal
//! walks, for every new inode, every inode freed in the last minutes, and with `discard` each
//! freed block is discarded at once. SQLite, by contrast, appends to files that exist. So
//! hyperion keeps what it would free — the file a ref update replaces, a released `.keep`,
//! the files of the packs it joined — in `$GIT_COMMON_DIR/hyperion/spares/`, and takes a
//! spare where it would create a file: a ref's lock, a `.keep`, a pack's or an index's
//! temporary file.
//!
//! A spare is taken with one rename (for a lock: one that fails when the lock exists,
//! `RENAME_NOREPLACE`, so writers exclude each other exactly as creating the lock would),
//! and then written in place. Two checks make that safe; a spare failing either is not
//! written to:
//! - it has no other name (a link count of 1): a ref file is linked here just before the
//!   rename that replaces it, and a writer that died in between left a spare that is still
//!   the live ref;
//! - nobody else has it open or mapped ([`crate::git::os::only_opener`]): a reader that opened a
//!   ref or mapped a pack before it was replaced keeps reading what it opened, never a torn
//!   or foreign value.
//!
//! Where the kernel lacks what this needs (non-Linux systems, file systems without leases or
//! `RENAME_NOREPLACE`, another user's files), files are created and deleted as git does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// At most this many spares are kept by one process; beyond, files are deleted.
const KEPT: usize = 256;

/// Where spares live, under the common git directory.
pub const DIR: &str = "hyperion/spares";

/// What a spare was and will be again: files of one kind keep their size from one use to
/// the next (a ref file is always 41 bytes), so they are rewritten without being resized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Ref files and their locks.
    Ref,
    /// Pack files, their indexes, and the temporary files they are written as.
    Pack,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Ref => "r",
            Kind::Pack => "p",
        }
    }

    fn slot(self) -> usize {
        match self {
            Kind::Ref => 0,
            Kind::Pack => 1,
        }
    }
}

/// The spares of one repository, as this process knows them.
struct Pool {
    dir: PathBuf,
    /// Spares this process may take (another process may take one first), by [`Kind`].
    free: [Vec<PathBuf>; 2],
    /// Whether `dir` was read for spares other processes left.
    scanned: bool,
    /// Off once the kernel refused something spares need.
    enabled: bool,
}

/// The pools of this process, by common git directory.
fn pools() -> &'static Mutex<HashMap<PathBuf, Pool>> {
    static POOLS: std::sync::OnceLock<Mutex<HashMap<PathBuf, Pool>>> = std::sync::OnceLock::new();
    POOLS.get_or_init(Default::default)
}

fn with_pool<T>(common: &Path, f: impl FnOnce(&mut Pool) -> T) -> T {
    let mut pools = pools().lock().unwrap_or_else(|p| p.into_inner());
    let pool = pools.entry(common.to_owned()).or_insert_with(|| Pool {
        dir: common.join(DIR),
        free: [Vec::new(), Vec::new()],
        scanned: false,
        enabled: crate::git::os::linux_paths(),
    });
    f(pool)
}

/// Forget what this process knows of the pool of `common`: the next [`take`] reads the pool
/// directory again, as a process that starts then would.
#[cfg(test)]
pub fn forget(common: &Path) {
    pools()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(common);
}

/// What [`take`] found.
pub enum Taken {
    /// A spare, now at the destination, open for writing: overwrite it whole.
    File(std::fs::File),
    /// The destination exists (with `exclusive`): a lock held by another writer.
    Busy,
    /// No usable spare: create the file.
    None,
}

/// Take a spare to `dest` (which must be on the same file system), one of `kind` if there
/// is one. A ref's lock is taken exclusively: [`Taken::Busy`] when `dest` exists, as
/// creating it exclusively would.
pub fn take(common: &Path, dest: &Path, kind: Kind) -> Taken {
    let exclusive = kind == Kind::Ref;
    with_pool(common, |pool| {
        if !pool.enabled {
            return Taken::None;
        }
        if !pool.scanned {
            pool.scanned = true;
            if let Ok(entries) = std::fs::read_dir(&pool.dir) {
                for e in entries.flatten().take(KEPT) {
                    let pack = e
                        .file_name()
                        .to_string_lossy()
                        .starts_with(Kind::Pack.prefix());
                    let kind = if pack { Kind::Pack } else { Kind::Ref };
                    pool.free[kind.slot()].push(e.path());
                }
            }
        }
        let other = 1 - kind.slot();
        loop {
            let slot = if pool.free[kind.slot()].is_empty() {
                other
            } else {
                kind.slot()
            };
            let Some(spare) = pool.free[slot].pop() else {
                break;
            };
            let renamed = if exclusive {
                crate::git::os::rename_noreplace(&spare, dest)
            } else {
                std::fs::rename(&spare, dest)
            };
            match renamed.map_err(|e| (e.raw_os_error(), e)) {
                Ok(()) => {}
                Err((Some(libc::EEXIST), _)) => {
                    pool.free[slot].push(spare);
                    return Taken::Busy;
                }
                Err((Some(libc::ENOENT), _)) => {
                    if spare.exists() {
                        // The destination's directory is missing: the caller makes it.
                        pool.free[slot].push(spare);
                        return Taken::None;
                    }
                    // Another process took this one.
                    continue;
                }
                Err((_, e)) => {
                    pool.disable(&e);
                    pool.free[slot].push(spare);
                    return Taken::None;
                }
            }
            match usable(dest) {
                Ok(Some(file)) => return Taken::File(file),
                Ok(None) => {
                    // Still linked elsewhere, or open: leave it to its other users. (With
                    // `exclusive`, dest stays ours until removed; a new file takes its place.)
                    let _ = std::fs::remove_file(dest);
                    return Taken::None;
                }
                Err(e) => {
                    pool.disable(&e);
                    let _ = std::fs::remove_file(dest);
                    return Taken::None;
                }
            }
        }
        Taken::None
    })
}

/// Open a just-taken spare for writing if it is safe to write (see the module docs).
fn usable(path: &Path) -> std::io::Result<Option<std::fs::File>> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    // Not through a symbolic link, and without waiting on a FIFO: whatever the name leads
    // to is checked on the open file.
    let open = || {
        std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
    };
    let file = match open() {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            // A read-only file (a pack's): made writable to be written over.
            if !std::fs::symlink_metadata(path)?.is_file() {
                return Ok(None);
            }
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
            open()?
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(None),
        other => other?,
    };
    let meta = file.metadata()?;
    if meta.nlink() != 1 || !meta.is_file() || !crate::git::os::only_opener(&file)? {
        return Ok(None);
    }
    Ok(Some(file))
}

impl Pool {
    fn disable(&mut self, why: &std::io::Error) {
        if self.enabled {
            self.enabled = false;
            tracing::debug!(error = %why, "no spare files from now on: files are created");
        }
    }

    fn name(&self, kind: Kind) -> PathBuf {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        self.dir.join(format!(
            "{}-{}-{}",
            kind.prefix(),
            crate::git::os::pid(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// Put `path` into the pool directory with `put` (a rename or a link), making the
    /// directory once; the spare's name. Not listed for this process to take.
    fn put_in(
        &self,
        path: &Path,
        kind: Kind,
        put: impl Fn(&Path, &Path) -> std::io::Result<()>,
    ) -> Option<PathBuf> {
        if !self.enabled {
            return None;
        }
        let spare = self.name(kind);
        let mut done = put(path, &spare);
        if done
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
            && !self.dir.exists()
        {
            done = std::fs::create_dir_all(&self.dir).and_then(|()| put(path, &spare));
        }
        done.ok().map(|()| spare)
    }

    /// [`Pool::put_in`], listed for this process to take, unless it keeps [`KEPT`] already.
    fn keep_with(
        &mut self,
        path: &Path,
        kind: Kind,
        put: impl Fn(&Path, &Path) -> std::io::Result<()>,
    ) -> bool {
        if self.free.iter().map(Vec::len).sum::<usize>() >= KEPT {
            return false;
        }
        match self.put_in(path, kind, put) {
            Some(spare) => {
                self.free[kind.slot()].push(spare);
                true
            }
            None => false,
        }
    }
}

/// Keep the file at `path` as a spare once its last other name goes: link it into the pool.
/// Used on a ref file just before the rename that replaces it. Best effort.
pub fn keep(common: &Path, path: &Path) {
    with_pool(common, |pool| {
        pool.keep_with(path, Kind::Ref, |from, to| std::fs::hard_link(from, to));
    });
}

/// Keep the file of a ref that git is about to delete as a spare, however many the pool
/// holds: link it into the pool directory, so that git's `unlink` only drops a name and
/// frees no block. Used by `gc` on every ref it removes: on a file system mounted with
/// `discard`, freeing the block of each of 100,000 ref files costs a discard each (4 ms apiece
/// on a cloud machine's disk, minutes in all), a link 0.1 ms. Should the removal
/// not happen (the ref moved, the transaction failed), the spare is still the live ref's
/// file: it has another name, so it is never written to ([`take`] checks). [`trim`] deletes
/// what is more than a pool needs, later. Best effort; `false` where spares are off.
pub fn set_aside(common: &Path, path: &Path) -> bool {
    with_pool(common, |pool| {
        pool.put_in(path, Kind::Ref, |from, to| std::fs::hard_link(from, to))
            .is_some()
    })
}

/// How many spares [`trim`] leaves: enough for the locks and new refs of a busy stretch of
/// work (4 KiB of disk each on most file systems).
pub const TRIM_TO: usize = 4096;

/// Whether the pool directory of `common` holds more than `n` spares.
pub fn more_than(common: &Path, n: usize) -> bool {
    std::fs::read_dir(common.join(DIR)).is_ok_and(|mut d| d.nth(n).is_some())
}

/// Delete spares beyond `keep`, in the order the directory lists them; returns how many
/// went. Safe next to writers taking spares: a spare taken first is gone from the
/// directory (this finds nothing to delete), one deleted first is not found by the taker,
/// which takes another or creates a file. Deleting the pool's name of a live ref (one set
/// aside or kept whose ref was not replaced after all) only drops that extra name.
pub fn trim(common: &Path, keep: usize) -> usize {
    let Ok(entries) = std::fs::read_dir(common.join(DIR)) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten().skip(keep) {
        if std::fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Move the file at `path` into the pool instead of deleting it, for this process to take
/// again; deleted when the pool is full or spares are off. Used on released `.keep` files.
pub fn adopt(common: &Path, path: &Path, kind: Kind) {
    let kept = with_pool(common, |pool| {
        pool.keep_with(path, kind, |from, to| std::fs::rename(from, to))
    });
    if !kept {
        let _ = std::fs::remove_file(path);
    }
}

/// Move the file at `path` into the pool for processes that start later, instead of deleting
/// it; this one does not take it. For the files of a pack a join removed: this process may
/// have the pack mapped, and would find the spare not free to write and lose it. Deleted
/// where spares are off. Best effort.
pub fn leave(common: &Path, path: &Path, kind: Kind) {
    let left = with_pool(common, |pool| {
        pool.put_in(path, kind, |from, to| std::fs::rename(from, to))
            .is_some()
    });
    if !left {
        let _ = std::fs::remove_file(path);
    }
}

/// Return a taken spare (at `path`) that was not used, e.g. the lock of a failed
/// compare-and-swap.
pub fn give_back(common: &Path, path: &Path) {
    adopt(common, path, Kind::Ref);
}

/// Suffix of the companion file [`exchange`] keeps beside a file it replaces.
pub const COMPANION: &str = ".hyperion-spare";

/// Replace the content of `path` with `data` in one step, without creating or freeing a file:
/// `data` is written into the companion `<path>.hyperion-spare`, which is then exchanged with
/// `path` (`renameat2` with `RENAME_EXCHANGE`). A reader finds the old content or the new,
/// never a mix, as after a rename; the old content stays in the companion, to be written over
/// the next time.
///
/// For files only hyperion writes, under a lock it already holds (a check slot's index and
/// `HEAD`): the companion excludes no other writer, as a ref's lock does. It is written over
/// only if it is a regular file with no other name that nobody else has open (the rules of
/// spares, see the module docs); else a new companion takes its place. Where the kernel cannot
/// exchange two names, the companion is renamed over `path`, as a temporary file would be.
pub fn exchange(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    let mut companion = path.as_os_str().to_owned();
    companion.push(COMPANION);
    let companion = PathBuf::from(companion);
    match usable(&companion) {
        Ok(Some(file)) => {
            file.write_all_at(data, 0)?;
            file.set_len(data.len() as u64)?;
        }
        _ => {
            match std::fs::remove_file(&companion) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&companion)?
                .write_all(data)?;
        }
    }
    #[cfg(target_os = "linux")]
    {
        let cwd = rustix::fs::CWD;
        match rustix::fs::renameat_with(
            cwd,
            &companion,
            cwd,
            path,
            rustix::fs::RenameFlags::EXCHANGE,
        ) {
            Ok(()) => return Ok(()),
            // No `path` yet (nothing to exchange with), or no exchange on this file system.
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
            }
            Err(e) => return Err(e.into()),
        }
    }
    std::fs::rename(&companion, path)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// A repository-like directory with one spare, whose content is `old`.
    fn pool_with_one_spare(old: &[u8]) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let common = dir.path().to_owned();
        let file = common.join("replaced");
        std::fs::write(&file, old).expect("write");
        adopt(&common, &file, Kind::Pack);
        assert!(!file.exists(), "moved into the pool");
        let spares: Vec<_> = std::fs::read_dir(common.join(DIR))
            .expect("the pool exists")
            .flatten()
            .map(|e| e.path())
            .collect();
        assert_eq!(spares.len(), 1);
        let spare = spares[0].clone();
        (dir, common, spare)
    }

    #[test]
    fn a_spare_is_taken_exclusively_and_written_in_place() {
        let (_dir, common, spare) = pool_with_one_spare(b"old old old");
        let lock = common.join("ref.lock");
        std::fs::write(&lock, b"held").expect("write");
        assert!(matches!(take(&common, &lock, Kind::Ref), Taken::Busy));
        assert!(spare.exists(), "a busy lock leaves the spare where it was");
        assert_eq!(std::fs::read(&lock).expect("read"), b"held");
        std::fs::remove_file(&lock).expect("rm");
        let mut taken = None;
        let granted = crate::git::os::granted_soon(|| match take(&common, &lock, Kind::Ref) {
            Taken::File(file) => {
                taken = Some(file);
                true
            }
            _ => {
                // Refused while another test spawned a child: that spare is gone, keep another.
                let again = common.join("replaced-again");
                std::fs::write(&again, b"old old old").expect("write");
                adopt(&common, &again, Kind::Ref);
                false
            }
        });
        assert!(granted, "the spare is free to take");
        let file = taken.expect("taken");
        assert!(!spare.exists());
        use std::os::unix::fs::FileExt;
        file.write_all_at(b"new", 0).expect("write");
        file.set_len(3).expect("truncate");
        assert_eq!(std::fs::read(&lock).expect("read"), b"new");
        // The pool is empty now: the next lock is a new file.
        std::fs::remove_file(&lock).expect("rm");
        assert!(matches!(take(&common, &lock, Kind::Ref), Taken::None));
    }

    /// A writer that died between linking a ref file into the pool and renaming its lock over
    /// the ref left a spare that is still the live ref: it must not be written.
    #[test]
    fn a_spare_that_is_still_a_live_file_is_left_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let common = dir.path().to_owned();
        let live = common.join("live-ref");
        std::fs::write(&live, b"the live value\n").expect("write");
        keep(&common, &live);
        let lock = common.join("other.lock");
        assert!(matches!(take(&common, &lock, Kind::Ref), Taken::None));
        assert!(!lock.exists(), "the name taken is given up again");
        assert_eq!(std::fs::read(&live).expect("read"), b"the live value\n");
    }

    fn companion_of(path: &Path) -> PathBuf {
        PathBuf::from(format!("{}{COMPANION}", path.display()))
    }

    fn inode(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(path).expect("stat").ino()
    }

    /// After the first exchange, a file and its companion trade places: no file is made or
    /// freed, and each keeps a whole content.
    #[test]
    fn an_exchange_reuses_the_companion() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("index");
        std::fs::write(&path, b"first, a long content").expect("write");
        exchange(&path, b"second").expect("exchange");
        assert_eq!(std::fs::read(&path).expect("read"), b"second");
        let companion = companion_of(&path);
        assert_eq!(
            std::fs::read(&companion).expect("read"),
            b"first, a long content"
        );
        let mut n = 0;
        let reused = crate::git::os::granted_soon(|| {
            n += 1;
            let before = [inode(&path), inode(&companion)];
            exchange(&path, format!("update {n}").as_bytes()).expect("exchange");
            let after = [inode(&path), inode(&companion)];
            before[0] == after[1] && before[1] == after[0]
        });
        assert!(reused, "the two files trade places");
        assert_eq!(
            std::fs::read(&path).expect("read"),
            format!("update {n}").as_bytes()
        );
    }

    /// A reader that has the companion open (it opened the file before it was exchanged) keeps
    /// reading what it opened; the companion is replaced by a new file instead.
    #[test]
    fn an_exchange_leaves_an_open_companion_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("HEAD");
        std::fs::write(&path, b"old\n").expect("write");
        let reader = std::fs::File::open(&path).expect("open");
        exchange(&path, b"new\n").expect("exchange");
        exchange(&path, b"newer\n").expect("exchange");
        assert_eq!(std::fs::read(&path).expect("read"), b"newer\n");
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 16];
        let n = reader.read_at(&mut buf, 0).expect("read");
        assert_eq!(&buf[..n], b"old\n");
    }

    /// A companion that is a symbolic link is not followed, and a missing file is created.
    #[test]
    fn an_exchange_follows_no_link_and_creates_a_missing_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("index");
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, b"not ours").expect("write");
        std::os::unix::fs::symlink(&target, companion_of(&path)).expect("symlink");
        exchange(&path, b"created").expect("exchange");
        assert_eq!(std::fs::read(&path).expect("read"), b"created");
        assert_eq!(std::fs::read(&target).expect("read"), b"not ours");
        assert!(std::fs::symlink_metadata(companion_of(&path)).is_err());
    }

    /// A spare that is a symbolic link (put there by hand) is not followed: what it points
    /// to is left unwritten.
    #[test]
    fn a_spare_that_is_a_symbolic_link_is_not_followed() {
        let (_dir, common, spare) = pool_with_one_spare(b"x");
        let target = common.join("somewhere-else");
        std::fs::write(&target, b"not a spare").expect("write");
        std::fs::remove_file(&spare).expect("rm");
        std::os::unix::fs::symlink(&target, &spare).expect("symlink");
        let dest = common.join("tmp_obj");
        assert!(matches!(take(&common, &dest, Kind::Pack), Taken::None));
        assert!(!dest.exists() && std::fs::symlink_metadata(&dest).is_err());
        assert_eq!(std::fs::read(&target).expect("read"), b"not a spare");
    }

    /// A reader that opened a file before it became a spare keeps reading what it opened.
    #[test]
    fn a_spare_someone_has_open_is_left_alone() {
        let (_dir, common, spare) = pool_with_one_spare(b"what the reader opened");
        let reader = std::fs::File::open(&spare).expect("open");
        let dest = common.join("tmp_obj");
        assert!(matches!(take(&common, &dest, Kind::Pack), Taken::None));
        assert!(!dest.exists());
        let mut seen = String::new();
        std::io::Read::read_to_string(&mut &reader, &mut seen).expect("read");
        assert_eq!(seen, "what the reader opened");
    }
}
