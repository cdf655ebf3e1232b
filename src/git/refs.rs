//! Compare-and-swap of one loose ref, the way git's files backend does it.
//!
//! `refs/<name>.lock` is created exclusively, the current value read (the loose file, else
//! `packed-refs`) and compared, the new value written into the lock, a reflog line appended
//! where git would write one, and the lock renamed over the ref. git itself takes only the
//! ref's own lock for an update, so hyperion's writers and git's exclude each other exactly as
//! two git processes do. Unlike a general ref transaction this never locks `packed-refs`,
//! which every update would otherwise create and delete once more (and a writer killed while
//! holding it would block every ref update in the repository).
//!
//! The lock is made of a spare file where one is kept ([`crate::git::spare`]): the file a ref
//! update replaces is kept for a later lock instead of being freed.
//!
//! A lock older than [`STALE_LOCK`] was left by a writer that died (live writers hold one for
//! microseconds): it is moved aside, checked again, and removed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gix::ObjectId;

use crate::error::{Error, Result};

/// A ref lock older than this was left by a dead writer.
pub const STALE_LOCK: Duration = Duration::from_secs(5);

/// What a compare-and-swap ([`cas`]) did.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swap {
    /// The ref moved from the value expected to the new one.
    Done,
    /// The ref was not at the value expected, and nothing changed: it points at `now`
    /// (`None`: it does not exist).
    Moved { now: Option<ObjectId> },
}

impl Swap {
    /// Whether the ref moved to the new value.
    pub fn done(self) -> bool {
        self == Swap::Done
    }
}

/// Who moves a ref, for its reflog line.
pub struct LogLine<'a> {
    pub name: &'a str,
    pub email: &'a str,
    pub at: jiff::Timestamp,
    pub message: &'a str,
}

/// Move `name` (a full ref name under `refs/`) from `expected` (`None`: it must not exist) to
/// `new`. The objects held in memory are written first. [`Swap::Moved`] when the ref is not
/// at `expected`; nothing changed then.
pub fn cas(
    repo: &gix::Repository,
    name: &str,
    expected: Option<ObjectId>,
    new: ObjectId,
    log: &LogLine<'_>,
) -> Result<Swap> {
    if !writable_name(name) {
        return Err(Error::git(format!("not a ref hyperion writes: {name}")));
    }
    crate::git::pack::persist(repo)?;
    let common = repo.common_dir();
    let path = common.join(name);
    let lock_path = lock_of(&path);
    let mut lock = take_lock(common, &lock_path, name)?;
    let outcome = (|| {
        let now = current(repo, &path, name)?;
        if now != expected {
            return Ok(Swap::Moved { now });
        }
        lock.write(format!("{new}\n").as_bytes())?;
        if let Some(reflog) = reflog_path(repo, name) {
            append_reflog(&reflog, expected, new, log)?;
        }
        // Keep the file this rename replaces, for a later lock.
        if now.is_some() {
            crate::git::spare::keep(common, &path);
        }
        std::fs::rename(&lock_path, &path)
            .map_err(|e| Error::io(format!("could not update {name}"), e))?;
        lock.committed = true;
        Ok(Swap::Done)
    })();
    drop(lock);
    // The ref holds its objects now (or will not): their pack need not be kept any more.
    crate::git::pack::settle();
    outcome
}

/// How long [`delete`] waits for another process's `packed-refs.lock`: git's own
/// `core.packedRefsTimeout` by default.
const PACKED_LOCK_WAIT: Duration = Duration::from_secs(1);

/// Delete each of `refs` (full name, value it must still hold) that holds its value; a ref
/// that moved or is gone is left as it is. Returns the names deleted, and the error that
/// stopped the deletion part-way, if any.
///
/// The protocol is git's files backend's, so git's writers and readers and these exclude each
/// other as two git processes do. `packed-refs.lock` is held throughout (no `git pack-refs`
/// copies a ref into `packed-refs` while its file goes); each ref's own lock is taken and its
/// value (its file, else its `packed-refs` line) compared. A ref without a `packed-refs` line
/// loses its file at once. The lines of the others go in one rewrite of `packed-refs`, and
/// only then their files: a reader never sees an older packed value come back.
///
/// Unlike `git update-ref --stdin`, which creates and frees a lock file per ref, a lock here is
/// a spare renamed into place and back, and a deleted ref's file is set aside as a spare
/// instead of freed ([`crate::git::spare::set_aside`]): gc's 100,000 deletions allocate no
/// inode (ext4 searches the recently freed ones for each new one; that search was most of
/// gc's time) and free no block. Give it a few thousand refs at a time: `packed-refs.lock`
/// blocks other deletions and `git pack-refs` while it is held.
pub fn delete(repo: &gix::Repository, refs: &[(String, ObjectId)]) -> (Vec<String>, Option<Error>) {
    let common = repo.common_dir();
    let mut removed = Vec::with_capacity(refs.len());
    if let Some(bad) = refs.iter().find(|(name, _)| !writable_name(name)) {
        return (
            removed,
            Some(Error::git(format!("not a ref hyperion writes: {}", bad.0))),
        );
    }
    let packed_path = common.join("packed-refs");
    let mut packed_lock = match PackedLock::take(lock_of(&packed_path)) {
        Ok(lock) => lock,
        Err(e) => return (removed, Some(e)),
    };
    let outcome = (|| -> Result<()> {
        let packed_data = match std::fs::read(&packed_path) {
            Ok(data) => data,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io("could not read packed-refs", e)),
        };
        let doomed: std::collections::HashSet<&str> =
            refs.iter().map(|(name, _)| name.as_str()).collect();
        let packed: std::collections::HashMap<&str, ObjectId> = packed_entries(&packed_data)
            .filter(|(name, _)| doomed.contains(name))
            .collect();
        // Refs with a `packed-refs` line, locked until that line is gone.
        let mut held = Vec::new();
        for (name, expected) in refs {
            let path = common.join(name);
            let lock = take_lock(common, &lock_of(&path), name)?;
            let loose = match read_small(&path) {
                Ok(data) => Some(plain_value(&data)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(Error::io(format!("could not read {}", path.display()), e)),
            };
            let now = match loose {
                // A symbolic ref or a damaged file: not the value expected.
                Some(value) => value,
                None => packed.get(name.as_str()).copied(),
            };
            if now != Some(*expected) {
                continue;
            }
            if packed.contains_key(name.as_str()) {
                held.push((name, lock, loose.is_some()));
            } else {
                remove_loose(common, name, &path)?;
                removed.push(name.clone());
            }
        }
        if held.is_empty() {
            return Ok(());
        }
        let gone: std::collections::HashSet<&str> =
            held.iter().map(|(name, ..)| name.as_str()).collect();
        let mut kept = Vec::with_capacity(packed_data.len());
        let mut keep_peeled = true;
        for line in packed_data.split_inclusive(|&b| b == b'\n') {
            let keep = match line.first() {
                Some(b'^') => keep_peeled,
                Some(b'#') | None => true,
                Some(_) => {
                    let text = line.strip_suffix(b"\n").unwrap_or(line);
                    let name = text
                        .iter()
                        .position(|&b| b == b' ')
                        .and_then(|space| std::str::from_utf8(&text[space + 1..]).ok());
                    keep_peeled = !name.is_some_and(|name| gone.contains(name));
                    keep_peeled
                }
            };
            if keep {
                kept.extend_from_slice(line);
            }
        }
        packed_lock.commit(&kept, &packed_path)?;
        for (name, lock, has_file) in held {
            if has_file {
                remove_loose(common, name, &common.join(name))?;
            }
            drop(lock);
            removed.push(name.clone());
        }
        Ok(())
    })();
    drop(packed_lock);
    (removed, outcome.err())
}

/// Whether hyperion may write or delete the ref `name`: a full name under `refs/` that git
/// accepts (`git check-ref-format`'s rules, by gix-validate: no `..`, no component ending in
/// `.lock` or starting with `.`, no control characters, spaces, `~^:?*[\\` or `@{`), so that
/// no name a request or a remote could make up reaches a path outside the ref store.
fn writable_name(name: &str) -> bool {
    use gix::bstr::ByteSlice;
    name.starts_with("refs/") && gix::validate::reference::name(name.as_bytes().as_bstr()).is_ok()
}

/// Remove the file of ref `name` (at `path`, whose lock the caller holds) and its reflog, as
/// git does; the file is kept as a spare.
fn remove_loose(common: &Path, name: &str, path: &Path) -> Result<()> {
    crate::git::spare::set_aside(common, path);
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("could not delete {name}"), e)),
    }
    let _ = std::fs::remove_file(common.join("logs").join(name));
    Ok(())
}

/// `packed-refs.lock`, held: removed on drop unless it became `packed-refs`.
struct PackedLock {
    path: PathBuf,
    held: bool,
}

impl PackedLock {
    /// Create the lock, waiting up to [`PACKED_LOCK_WAIT`] for another holder.
    fn take(path: PathBuf) -> Result<PackedLock> {
        let mut waited = Duration::ZERO;
        let mut delay = Duration::from_millis(1);
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(_) => return Ok(PackedLock { path, held: true }),
                Err(e)
                    if e.kind() == std::io::ErrorKind::AlreadyExists
                        && waited < PACKED_LOCK_WAIT =>
                {
                    std::thread::sleep(delay);
                    waited += delay;
                    delay = (delay * 2).min(Duration::from_millis(50));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(Error::git(format!(
                        "could not delete refs: {} is held by another process (if no git process runs, one that died left it: remove it)",
                        path.display()
                    )));
                }
                Err(e) => {
                    return Err(Error::io(format!("could not create {}", path.display()), e));
                }
            }
        }
    }

    /// Write `data` into the lock and rename it over `packed` (`packed-refs`).
    fn commit(&mut self, data: &[u8], packed: &Path) -> Result<()> {
        std::fs::write(&self.path, data)
            .and_then(|()| std::fs::rename(&self.path, packed))
            .map_err(|e| Error::io("could not rewrite packed-refs", e))?;
        self.held = false;
        Ok(())
    }
}

impl Drop for PackedLock {
    fn drop(&mut self) {
        if self.held {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The value of `name` now: its loose file, else its line in `packed-refs`.
fn current(repo: &gix::Repository, path: &Path, name: &str) -> Result<Option<ObjectId>> {
    match read_small(path) {
        Ok(data) => plain_value(&data).map(Some).ok_or_else(|| {
            let text = String::from_utf8_lossy(&data);
            Error::git(format!("{name} is not a plain ref: {:?}", text.trim()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => read(repo, name),
        Err(e) => Err(Error::io(format!("could not read {}", path.display()), e)),
    }
}

/// The value of loose ref `name` (`refs/…`) when it is a loose file holding an object id:
/// one `open` and `read`, where a lookup through gix also checks `packed-refs` and `stat`s.
/// `None` otherwise (packed, symbolic, absent, unreadable): ask gix then.
pub fn loose_value(common: &Path, name: &str) -> Option<ObjectId> {
    plain_value(&read_small(&common.join(name)).ok()?)
}

/// The object id a loose ref file holds, if it holds one (not `ref: …`).
fn plain_value(data: &[u8]) -> Option<ObjectId> {
    ObjectId::from_hex(data.trim_ascii()).ok()
}

/// A loose ref's content: open and read, without the `stat` `std::fs::read` makes to size
/// its buffer (a ref file is 41 bytes; a symbolic one a little more).
fn read_small(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut data = Vec::new();
    let mut buf = [0u8; 128];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(data),
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn lock_of(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// A held ref lock, removed on drop unless it became the ref.
struct Lock<'a> {
    common: &'a Path,
    path: PathBuf,
    file: std::fs::File,
    /// Made of a spare: the old content is overwritten in place.
    recycled: bool,
    committed: bool,
}

impl Lock<'_> {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        let err = |e| Error::io(format!("could not write {}", self.path.display()), e);
        // Give the lock its block now: renaming a file whose block is still to be allocated
        // over an existing one makes ext4 write it out first (its `auto_da_alloc`), an I/O
        // round trip per ref update. Best effort: not every file system allocates ahead.
        #[cfg(target_os = "linux")]
        let _ = rustix::fs::fallocate(
            &self.file,
            rustix::fs::FallocateFlags::KEEP_SIZE,
            0,
            data.len() as u64,
        );
        if self.recycled {
            use std::os::unix::fs::FileExt;
            self.file.write_all_at(data, 0).map_err(err)?;
            self.file.set_len(data.len() as u64).map_err(err)
        } else {
            self.file.write_all(data).map_err(err)
        }
    }
}

impl Drop for Lock<'_> {
    fn drop(&mut self) {
        if !self.committed {
            crate::git::spare::give_back(self.common, &self.path);
        }
    }
}

/// Take `lock_path`, waiting a little for a live holder and clearing a dead one's.
fn take_lock<'a>(common: &'a Path, lock_path: &Path, name: &str) -> Result<Lock<'a>> {
    let mut delay = Duration::from_micros(100);
    let mut waited = Duration::ZERO;
    loop {
        let lock = |file, recycled| Lock {
            common,
            path: lock_path.to_owned(),
            file,
            recycled,
            committed: false,
        };
        let attempt = match crate::git::spare::take(common, lock_path, crate::git::spare::Kind::Ref)
        {
            crate::git::spare::Taken::File(file) => Ok(lock(file, true)),
            crate::git::spare::Taken::Busy => Err(std::io::ErrorKind::AlreadyExists.into()),
            crate::git::spare::Taken::None => std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(lock_path)
                .map(|file| lock(file, false)),
        };
        match attempt {
            Ok(lock) => return Ok(lock),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let dir = lock_path.parent().expect("a ref has a directory");
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::io(format!("could not create {}", dir.display()), e))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if remove_stale_lock(lock_path, STALE_LOCK) {
                    continue;
                }
                if waited >= Duration::from_secs(2) {
                    return Err(Error::git(format!(
                        "could not update {name}: {} is held by another writer",
                        lock_path.display()
                    )));
                }
                std::thread::sleep(delay);
                waited += delay;
                delay = (delay * 2).min(Duration::from_millis(20));
            }
            Err(e) => {
                return Err(Error::io(
                    format!("could not lock {}", lock_path.display()),
                    e,
                ));
            }
        }
    }
}

/// Remove the lock at `lock` if it is older than `min_age`. It is first moved aside and
/// checked again, and put back if it turns out to be a live writer's fresh lock.
pub fn remove_stale_lock(lock: &Path, min_age: Duration) -> bool {
    if !crate::git::os::is_older_than(lock, min_age) {
        return false;
    }
    let mut aside = lock.as_os_str().to_owned();
    aside.push(format!(
        ".stale-{}-{}",
        std::process::id(),
        jiff::Timestamp::now().as_nanosecond()
    ));
    let aside = PathBuf::from(aside);
    if std::fs::rename(lock, &aside).is_err() {
        return false;
    }
    if crate::git::os::is_older_than(&aside, min_age) {
        let _ = std::fs::remove_file(&aside);
        tracing::warn!(lock = %lock.display(), "removed a stale ref lock left by a dead writer");
        true
    } else {
        // We took a live lock: hand it back unless its writer already moved on.
        if !lock.exists() {
            let _ = std::fs::rename(&aside, lock);
        } else {
            let _ = std::fs::remove_file(&aside);
        }
        false
    }
}

/// Where git would log an update of `name`: its reflog when one exists, or when
/// `core.logAllRefUpdates` asks for one (`true`, the default outside bare repositories:
/// branches, remote-tracking refs and notes; `always`: every ref).
fn reflog_path(repo: &gix::Repository, name: &str) -> Option<PathBuf> {
    let path = repo.common_dir().join("logs").join(name);
    if path.is_file() {
        return Some(path);
    }
    let config = repo.config_snapshot();
    let setting = config
        .string("core.logAllRefUpdates")
        .map(|v| v.to_string().to_ascii_lowercase());
    let create = match setting.as_deref() {
        Some("always") => true,
        Some("true" | "yes" | "on" | "1") => standard_logged(name),
        Some(_) => false,
        None => !repo.is_bare() && standard_logged(name),
    };
    create.then_some(path)
}

fn standard_logged(name: &str) -> bool {
    ["refs/heads/", "refs/remotes/", "refs/notes/"]
        .iter()
        .any(|p| name.starts_with(p))
}

fn append_reflog(
    path: &Path,
    old: Option<ObjectId>,
    new: ObjectId,
    log: &LogLine<'_>,
) -> Result<()> {
    let old = old.unwrap_or_else(|| ObjectId::null(gix::hash::Kind::Sha1));
    let clean = |s: &str| s.replace(['\n', '<', '>'], " ");
    let line = format!(
        "{old} {new} {} <{}> {} +0000\t{}\n",
        clean(log.name),
        clean(log.email),
        log.at.as_second(),
        log.message.replace('\n', " ")
    );
    let dir = path.parent().expect("a reflog has a directory");
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("could not create {}", dir.display()), e))?;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(|e| Error::io(format!("could not write {}", path.display()), e))
}

/// How often a read that met a concurrent `git pack-refs` is tried again.
const READ_ATTEMPTS: usize = 8;

/// The object `name` (a full ref name) points at, following a symbolic ref; `None` when it
/// does not exist. Every ref read of hyperion goes through here or [`list`]: git's own
/// maintenance (`git pack-refs`, alone or in `git gc` / `git maintenance run`) moves loose
/// refs into `packed-refs` and deletes their files while we read, and a read that meets such
/// a move is made again, as git's files backend does (the loose file, else `packed-refs` read
/// afresh).
pub fn read(repo: &gix::Repository, name: &str) -> Result<Option<ObjectId>> {
    let mut last = None;
    for attempt in 0..READ_ATTEMPTS {
        if let Some(id) = loose_value(repo.common_dir(), name) {
            return Ok(Some(id));
        }
        match read_once(repo, name) {
            Ok(found) => return Ok(found),
            Err(e) => last = Some(e),
        }
        retry_pause(attempt);
    }
    Err(Error::git(format!(
        "could not read {name}: {}",
        last.expect("at least one attempt")
    )))
}

fn read_once(repo: &gix::Repository, name: &str) -> std::result::Result<Option<ObjectId>, String> {
    let Some(mut r) = repo.try_find_reference(name).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    r.peel_to_id()
        .map(|id| Some(id.detach()))
        .map_err(|e| e.to_string())
}

fn retry_pause(attempt: usize) {
    std::thread::sleep(Duration::from_millis(1 << attempt.min(6)));
}

/// Refs by full name, each with the object it holds (`None`: a symbolic ref).
pub type Listing = Vec<(String, Option<ObjectId>)>;

/// Every ref under `prefix` (e.g. `refs/hyperion/requests/`), sorted by name: its full name
/// and the object it holds (`None` for a symbolic ref). The loose refs are read first and
/// `packed-refs` after them: `git pack-refs` writes `packed-refs` before it deletes a loose
/// file, so a loose ref that vanished under the walk is in the `packed-refs` read after it.
/// When `packed-refs` is replaced while it is read, the listing is made again.
pub fn list(common: &Path, prefix: &str) -> Result<Listing> {
    let mut last = None;
    for attempt in 0..READ_ATTEMPTS {
        match list_once(common, prefix) {
            Ok(Some(refs)) => return Ok(refs),
            Ok(None) => last = Some("packed-refs changed while it was read".to_owned()),
            Err(e) => last = Some(e.to_string()),
        }
        retry_pause(attempt);
    }
    Err(Error::git(format!(
        "could not list {prefix}: {}",
        last.expect("at least one attempt")
    )))
}

/// One listing; `None` when `packed-refs` changed under it.
fn list_once(common: &Path, prefix: &str) -> std::io::Result<Option<Listing>> {
    let mut found: std::collections::BTreeMap<String, Option<ObjectId>> = Default::default();
    // The directory holding the prefix's loose refs, and the part of a file name to match.
    let (dir_part, name_part) = match prefix.rfind('/') {
        Some(i) => (&prefix[..=i], &prefix[i + 1..]),
        None => ("", prefix),
    };
    walk_loose(&common.join(dir_part), dir_part, name_part, &mut found)?;
    let packed = common.join("packed-refs");
    let before = identity(&packed);
    match std::fs::read(&packed) {
        Ok(data) => {
            for (name, id) in packed_entries(&data) {
                if name.starts_with(prefix) && !found.contains_key(name) {
                    found.insert(name.to_owned(), Some(id));
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if identity(&packed) != before {
        return Ok(None);
    }
    Ok(Some(found.into_iter().collect()))
}

/// The refs a `packed-refs` file holds, each with its line's object id: the header and the
/// peeled (`^`) lines are skipped, and so is any line that is not `ID NAME`, as git skips it.
fn packed_entries(data: &[u8]) -> impl Iterator<Item = (&str, ObjectId)> {
    data.split(|&b| b == b'\n').filter_map(|line| {
        if line.first().is_none_or(|&b| b == b'#' || b == b'^') {
            return None;
        }
        let space = line.iter().position(|&b| b == b' ')?;
        let name = std::str::from_utf8(&line[space + 1..]).ok()?;
        Some((name, ObjectId::from_hex(&line[..space]).ok()?))
    })
}

/// What tells one `packed-refs` from the next: it is always replaced by a rename.
fn identity(path: &Path) -> Option<(u64, u64, u64, std::time::SystemTime)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.len(), m.modified().ok()?))
}

/// The loose refs below `dir` (whose ref name is `name`, ending in `/` or empty), whose
/// first component starts with `start`. A file or directory that vanished meanwhile was
/// packed or deleted: skipped.
fn walk_loose(
    dir: &Path,
    name: &str,
    start: &str,
    found: &mut std::collections::BTreeMap<String, Option<ObjectId>>,
) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        if !file.starts_with(start) || file.ends_with(".lock") || file.contains(".lock.") {
            continue;
        }
        let full = format!("{name}{file}");
        let path = entry.path();
        let is_dir = match entry.file_type() {
            Ok(t) => t.is_dir(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if is_dir {
            walk_loose(&path, &format!("{full}/"), "", found)?;
            continue;
        }
        match read_small(&path) {
            Ok(data) => {
                if let Some(id) = plain_value(&data) {
                    found.insert(full, Some(id));
                } else if data.starts_with(b"ref: ") {
                    found.insert(full, None);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_git_would_refuse_are_never_written() {
        let (dir, commits) = repo();
        let repo = gix::open(dir.path()).expect("open");
        let log = LogLine {
            name: "t",
            email: "t@t",
            at: jiff::Timestamp::now(),
            message: "t",
        };
        for good in [
            "refs/hyperion/requests/0123abcd",
            "refs/heads/main",
            "refs/heads/feature/x-1",
            "refs/notes/hyperion",
        ] {
            assert!(writable_name(good), "{good}");
        }
        for bad in [
            "HEAD",
            "refs/heads/a..b",
            "refs/heads/x.lock",
            "refs/heads/x.lock/y",
            "refs/heads/.hidden",
            "refs/heads/a b",
            "refs/heads/a\u{1}b",
            "refs/heads/a~1",
            "refs/heads/a:b",
            "refs/heads/a@{1}",
            "refs/heads/a//b",
            "refs/heads/a/",
            "refs/../config",
        ] {
            assert!(!writable_name(bad), "{bad:?}");
            assert!(cas(&repo, bad, None, commits[0], &log).is_err(), "{bad:?}");
            assert!(delete(&repo, &[(bad.to_owned(), commits[0])]).1.is_some());
        }
    }

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = crate::git::command::text(dir, args).expect("git succeeds");
        out.trim().to_owned()
    }

    /// A repository with commits `c0…c3` and refs under `refs/t/`: `a`, `b`, `c` at c0,
    /// plus the annotated tags `refs/tags/x` and `refs/tags/y` (whose `packed-refs` lines
    /// carry a peeled `^` line).
    fn repo() -> (tempfile::TempDir, Vec<ObjectId>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        git(d, &["init", "-q"]);
        let mut commits = Vec::new();
        for i in 0..4 {
            git(
                d,
                &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q"]
                    .into_iter()
                    .chain(["--allow-empty", "-m", &format!("c{i}")])
                    .collect::<Vec<_>>(),
            );
            commits.push(ObjectId::from_hex(git(d, &["rev-parse", "HEAD"]).as_bytes()).unwrap());
        }
        for r in ["a", "b", "c"] {
            git(
                d,
                &[
                    "update-ref",
                    &format!("refs/t/{r}"),
                    &commits[0].to_string(),
                ],
            );
        }
        for t in ["x", "y"] {
            git(
                d,
                &[
                    "-c",
                    "user.name=t",
                    "-c",
                    "user.email=t@t",
                    "tag",
                    "-a",
                    "-m",
                    t,
                    t,
                ],
            );
        }
        (dir, commits)
    }

    fn show_refs(d: &Path) -> String {
        git(
            d,
            &[
                "for-each-ref",
                "--format=%(refname) %(objectname) %(*objectname)",
            ],
        )
    }

    /// Loose refs at their expected value go; one that moved stays; a wrong expectation
    /// deletes nothing; the reflog goes with its ref, as git's deletion does.
    #[test]
    fn loose_refs_at_their_value_go_and_moved_ones_stay() {
        let (dir, c) = repo();
        let d = dir.path();
        git(
            d,
            &[
                "-c",
                "core.logAllRefUpdates=always",
                "update-ref",
                "refs/t/a",
                &c[1].to_string(),
            ],
        );
        assert!(d.join(".git/logs/refs/t/a").exists());
        let gix = gix::open(d).unwrap();
        let (gone, err) = delete(
            &gix,
            &[
                ("refs/t/a".into(), c[1]),
                ("refs/t/b".into(), c[2]), // moved: it holds c0
                ("refs/t/missing".into(), c[0]),
            ],
        );
        assert!(err.is_none(), "{err:?}");
        assert_eq!(gone, vec!["refs/t/a".to_owned()]);
        let left = show_refs(d);
        assert!(!left.contains("refs/t/a "), "{left}");
        assert!(left.contains(&format!("refs/t/b {}", c[0])), "{left}");
        assert!(!d.join(".git/logs/refs/t/a").exists());
        assert!(!d.join(".git/packed-refs.lock").exists());
        assert!(!d.join(".git/refs/t/a.lock").exists());
        git(d, &["fsck", "--no-dangling"]);
    }

    /// Packed refs: a ref only in `packed-refs` loses its line; a ref whose loose file
    /// shadows an older packed line loses both (the packed value never comes back); the
    /// peeled line of a deleted tag goes with it, the other tag's line and peeled line stay,
    /// and git reads the rewritten file as before.
    #[test]
    fn packed_lines_go_with_their_refs_and_nothing_older_comes_back() {
        let (dir, c) = repo();
        let d = dir.path();
        git(d, &["pack-refs", "--all"]);
        // `a` moves on after packing: its loose file shadows the packed c0.
        git(d, &["update-ref", "refs/t/a", &c[3].to_string()]);
        let x = ObjectId::from_hex(git(d, &["rev-parse", "refs/tags/x"]).as_bytes()).unwrap();
        let before = show_refs(d);
        let gix = gix::open(d).unwrap();
        let (mut gone, err) = delete(
            &gix,
            &[
                ("refs/t/a".into(), c[3]),
                ("refs/t/b".into(), c[0]),
                ("refs/tags/x".into(), x),
                ("refs/t/c".into(), c[1]), // moved: packed at c0
            ],
        );
        assert!(err.is_none(), "{err:?}");
        gone.sort();
        assert_eq!(gone, ["refs/t/a", "refs/t/b", "refs/tags/x"]);
        let expected: Vec<&str> = before
            .lines()
            .filter(|l| {
                !l.starts_with("refs/t/a ")
                    && !l.starts_with("refs/t/b ")
                    && !l.starts_with("refs/tags/x ")
            })
            .collect();
        assert_eq!(show_refs(d), expected.join("\n"));
        let packed = std::fs::read_to_string(d.join(".git/packed-refs")).unwrap();
        assert!(packed.starts_with("# pack-refs with:"), "{packed}");
        assert_eq!(
            packed.lines().filter(|l| l.starts_with('^')).count(),
            1,
            "{packed}"
        );
        assert!(!d.join(".git/refs/t/a").exists());
        git(d, &["pack-refs", "--all"]);
        assert_eq!(show_refs(d), expected.join("\n"));
        git(d, &["fsck", "--no-dangling"]);
    }

    /// While another process holds `packed-refs.lock`, nothing is deleted: after waiting as
    /// git does, an error names the lock, and the other holder's lock stays.
    #[test]
    fn a_held_packed_refs_lock_stops_the_deletion() {
        let (dir, c) = repo();
        let d = dir.path();
        let lock = d.join(".git/packed-refs.lock");
        std::fs::write(&lock, b"").unwrap();
        let gix = gix::open(d).unwrap();
        let started = std::time::Instant::now();
        let (gone, err) = delete(&gix, &[("refs/t/a".into(), c[0])]);
        assert!(gone.is_empty());
        let err = err.expect("an error").to_string();
        assert!(err.contains("packed-refs.lock"), "{err}");
        assert!(started.elapsed() >= PACKED_LOCK_WAIT);
        assert!(lock.exists());
        assert!(show_refs(d).contains(&format!("refs/t/a {}", c[0])));
    }

    /// A ref whose own lock another writer holds (git mid-update) is not deleted behind its
    /// back: the deletion waits, then stops with an error, the ref and the lock untouched.
    #[test]
    fn a_held_ref_lock_is_respected() {
        let (dir, c) = repo();
        let d = dir.path();
        let lock = d.join(".git/refs/t/b.lock");
        std::fs::write(&lock, format!("{}\n", c[2])).unwrap();
        let gix = gix::open(d).unwrap();
        let (gone, err) = delete(
            &gix,
            &[("refs/t/a".into(), c[0]), ("refs/t/b".into(), c[0])],
        );
        assert_eq!(gone, ["refs/t/a"]);
        assert!(err.expect("an error").to_string().contains("refs/t/b"));
        assert!(lock.exists());
        assert!(show_refs(d).contains(&format!("refs/t/b {}", c[0])));
        assert!(!d.join(".git/packed-refs.lock").exists());
    }
}
