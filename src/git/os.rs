//! What the standard library and rustix do not offer as hyperion needs it, and every path
//! that works only on Linux, each with the portable way beside it: a file lease, asked for
//! only to learn whether anyone else has a file open (see [`only_opener`], one of the few `unsafe`
//! calls), a rename that never replaces ([`rename_noreplace`]), directory watches
//! ([`DirWatch`]), a lock handed down to a child process ([`spawn_holding`]), the process id
//! without a system call per use ([`pid`]), the pause points tests stop a process at
//! ([`pause_point`]), and on Linux the orphans this process adopts ([`adopt_orphans`],
//! [`children`]): what lets the runner of untrusted processes find a check's descendants that
//! left its process group; and the pages of mapped pack files, given back between chunks of
//! work ([`release_pack_pages`]).
//!
//! [`linux_paths`] says whether the Linux ways are used. `HYPERION_PORTABLE=1` in the
//! environment turns them off on Linux too, so that the portable ways, which every other
//! system takes, are built and tested here (CI runs the tests that reach them both ways).
#![allow(unsafe_code)]

/// The environment variable that makes a process take the portable paths on Linux too.
pub const PORTABLE: &str = "HYPERION_PORTABLE";

/// Whether this process uses the Linux-only paths: on Linux, unless `HYPERION_PORTABLE` is
/// set to anything but `0` or the empty string. Read once.
pub fn linux_paths() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        let portable = std::env::var_os(PORTABLE).is_some_and(|v| !v.is_empty() && v != "0");
        cfg!(target_os = "linux") && !portable
    })
}

fn unsupported<T>() -> std::io::Result<T> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// Whether `file` (opened for writing) is the only open file description of its inode: no
/// other process, and no other handle of this one, has it open or mapped. Asks the kernel
/// for a write lease, which it grants only then, and gives it back at once.
///
/// `Err` where leases are not available (switched off, a file system without them, a file
/// owned by another user); callers then treat the file as possibly open. `Ok(false)` also
/// while another thread of this process spawns a child: from its fork to its exec the child
/// holds copies of every descriptor (the cost is a new file instead of a spare).
#[cfg(target_os = "linux")]
pub fn only_opener(file: &std::fs::File) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    if !linux_paths() {
        return unsupported();
    }
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is open for as long as `file` is borrowed, and F_SETLEASE takes a plain
    // integer argument: no memory is shared with the kernel.
    let taken = unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_WRLCK) };
    if taken == -1 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN) => Ok(false),
            _ => Err(e),
        };
    }
    // SAFETY: as above.
    let released = unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_UNLCK) };
    if released == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(true)
}

/// This process's id, asked of the kernel once: it names the temporary files of every ref
/// update and object write (`getpid` is a system call each time).
pub fn pid() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// Start `cmd` with a copy of `file`'s descriptor that it inherits: whatever is tied to the
/// open file description, an `flock` above all, then lasts until this process and the child
/// have both closed it. The copy (made without close-on-exec) lives only while the child is
/// spawned, so the standard library's fast spawn (no `fork` of this whole process) still
/// applies; a child another thread spawns in that instant inherits it too (it then holds the
/// lock as long as it runs: a delay for others, never a lock released too early).
pub fn spawn_holding(
    cmd: &mut std::process::Command,
    file: &std::fs::File,
) -> std::io::Result<std::process::Child> {
    let copy = rustix::io::dup(file)?;
    let child = cmd.spawn();
    drop(copy);
    child
}

/// The environment variable naming the pause point a test wants a process stopped at.
pub const PAUSE_AT: &str = "HYPERION_TEST_PAUSE_AT";

/// For tests of crashes at an exact instant: when `HYPERION_TEST_PAUSE_AT` is `name`, the
/// process stops itself (SIGSTOP) here. A test waits until `/proc/PID/stat` says it is stopped,
/// then kills it (SIGKILL) or lets it go on (SIGCONT). Stopped, the process holds everything
/// it held: its locks, leases and open files.
pub fn pause_point(name: &str) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let at = AT.get_or_init(|| std::env::var(PAUSE_AT).ok());
    if at.as_deref() == Some(name) {
        tracing::info!(point = name, "pausing ({PAUSE_AT})");
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::STOP);
    }
}

/// The environment variable naming the panic point a test wants a process to panic at.
pub const PANIC_AT: &str = "HYPERION_TEST_PANIC_AT";

/// For tests of what a panic leaves behind (`top` must give the terminal back): when
/// `HYPERION_TEST_PANIC_AT` is `name`, the process panics here.
pub fn panic_point(name: &str) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let at = AT.get_or_init(|| std::env::var(PANIC_AT).ok());
    if at.as_deref() == Some(name) {
        panic!("panicking at {name} ({PANIC_AT})");
    }
}

/// One child of this process, as `/proc` shows it.
#[derive(Debug, Clone)]
pub struct ChildProc {
    pub pid: u32,
    /// The program's name (`comm`, at most 15 bytes).
    pub name: String,
    pub pgrp: i32,
    pub session: i32,
    /// Exited, waiting to be reaped.
    pub zombie: bool,
    /// Start time, in clock ticks since boot.
    pub start: u64,
}

/// Make this process the reaper of its orphaned descendants (`PR_SET_CHILD_SUBREAPER`): a
/// process whose parent exits is then reparented to this one instead of init, so that
/// [`children`] finds what a check left behind however it detached (`setsid`, double fork).
/// Once per process; false where the kernel refuses.
#[cfg(target_os = "linux")]
pub fn adopt_orphans() -> bool {
    static ADOPTING: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ADOPTING.get_or_init(|| {
        if !linux_paths() {
            return false;
        }
        let me = rustix::process::getpid();
        rustix::process::set_child_subreaper(Some(me)).is_ok()
    })
}

#[cfg(not(target_os = "linux"))]
pub fn adopt_orphans() -> bool {
    false
}

/// Make this process's `/proc` files (`environ`, `mem`, …) readable by itself only and keep
/// it from being traced (`PR_SET_DUMPABLE` 0): a check runs as the same user, and could
/// otherwise read the worker's environment — its tokens — in `/proc/PPID/environ`. Once per
/// process; costs the worker its core dumps. A program it starts is dumpable again (`execve`
/// resets the flag).
#[cfg(target_os = "linux")]
pub fn keep_to_self() {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let _ =
            rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
    });
}

#[cfg(not(target_os = "linux"))]
pub fn keep_to_self() {}

/// The orphans this process adopted (see [`adopt_orphans`]), with the children its main
/// thread started: the kernel hands an orphan to the reaper's first live thread, the main one
/// (`/proc/self/task/PID/children`). While the main thread has exited, the children of every
/// thread; where the kernel lacks those files, every process whose parent this is.
#[cfg(target_os = "linux")]
pub fn children() -> Vec<ChildProc> {
    let mut pids = Vec::new();
    let read = |path: &std::path::Path, pids: &mut Vec<u32>| {
        let text = std::fs::read_to_string(path).ok()?;
        pids.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
        Some(())
    };
    let main = pid();
    let mut listed = read(
        std::path::Path::new(&format!("/proc/self/task/{main}/children")),
        &mut pids,
    )
    .is_some();
    if !listed && let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            listed |= read(&t.path().join("children"), &mut pids).is_some();
        }
    }
    if !listed {
        let me = pid() as i32;
        if let Ok(all) = std::fs::read_dir("/proc") {
            for e in all.flatten() {
                let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                    continue;
                };
                if stat(p).is_some_and(|(_, ppid)| ppid == me) {
                    pids.push(p);
                }
            }
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids.into_iter()
        .filter_map(|p| stat(p).map(|(c, _)| c))
        .collect()
}

#[cfg(not(target_os = "linux"))]
pub fn children() -> Vec<ChildProc> {
    Vec::new()
}

/// `/proc/PID/stat`: the process and its parent's pid.
#[cfg(target_os = "linux")]
fn stat(pid: u32) -> Option<(ChildProc, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp session … starttime(22) …`; comm may hold anything, ')'
    // included, so the fields are counted from the last ')'.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let num = |i: usize| fields.get(i).and_then(|f| f.parse::<i64>().ok());
    Some((
        ChildProc {
            pid,
            name,
            zombie: matches!(fields.first(), Some(&"Z") | Some(&"X")),
            pgrp: num(2)? as i32,
            session: num(3)? as i32,
            start: num(19)? as u64,
        },
        num(1)? as i32,
    ))
}

/// The start time of process `pid` (clock ticks since boot), if it exists.
#[cfg(target_os = "linux")]
pub fn start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|(c, _)| c.start)
}

#[cfg(not(target_os = "linux"))]
pub fn start_time(_: u32) -> Option<u64> {
    None
}

/// The value of `name` in the environment process `pid` started with; `None` when it has
/// none or it cannot be read (another user's process, a zombie).
#[cfg(target_os = "linux")]
pub fn environ_var(pid: u32, name: &str) -> Option<Vec<u8>> {
    let data = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    data.split(|b| *b == 0).find_map(|entry| {
        entry
            .strip_prefix(name.as_bytes())
            .and_then(|rest| rest.strip_prefix(b"="))
            .map(<[u8]>::to_vec)
    })
}

#[cfg(not(target_os = "linux"))]
pub fn environ_var(_: u32, _: &str) -> Option<Vec<u8>> {
    None
}

/// Give back the pages of pack files (`*.pack`, `*.idx`) this process has mapped and read:
/// gix maps each pack whole, so a command that reads every chain would otherwise keep the
/// whole object store resident (300 MB at 100,000 requests). Called between chunks of work;
/// the mappings stay, and a page read again comes back from the page cache. Off Linux (and
/// with `HYPERION_PORTABLE`) nothing is done: memory then grows with what was read.
#[cfg(target_os = "linux")]
pub fn release_pack_pages() {
    if !linux_paths() {
        return;
    }
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for line in maps.lines() {
        // `start-end perms offset dev inode path`
        let mut fields = line.split_ascii_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Some(path) = fields.nth(3) else {
            continue;
        };
        // Read-only mappings of git's pack files only: their pages are the file's.
        if !perms.starts_with("r-") || !(path.ends_with(".pack") || path.ends_with(".idx")) {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        // SAFETY: the range is a whole read-only file mapping of this process, as the kernel
        // listed it; MADV_DONTNEED on it drops the process's references to page-cache pages
        // it never wrote, and the next read of any of them faults the same bytes back in.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub fn release_pack_pages() {}

/// Mapped file pages (packs, and this program's own code) above which a [`PageBudget`] gives
/// back the packs' ones.
const MAPPED_LIMIT: u64 = 48 << 20;

/// After every chain read, looks at the file pages this process has mapped
/// (`/proc/self/statm`) and gives back those of packs ([`release_pack_pages`]) when they are
/// over [`MAPPED_LIMIT`]. The objects of one chain lie apart in the packs, and the kernel maps
/// cached pages around each one read: 64 KiB, or since Linux 6.18 the whole page-cache folio
/// the page is in, up to 2 MiB for a pack written in large writes. One chain may so map
/// 10 MB, and a look every 16 chains let doctor reach 160 MB of pack pages at 100,000
/// requests; a look after each (one `pread` of a file kept open, ~1 µs) keeps a command that
/// reads every chain within [`MAPPED_LIMIT`] plus one chain's pages however many there are.
#[derive(Default)]
pub struct PageBudget;

impl PageBudget {
    /// One more chain read.
    pub fn read_one(&mut self) {
        if mapped_file_bytes() > MAPPED_LIMIT {
            release_pack_pages();
        }
    }
}

/// The file pages this process has mapped, in bytes (the third field of `/proc/self/statm`:
/// resident file and shared pages); 0 where that cannot be read. The file is opened once and
/// read again from its start each time (the kernel writes it anew on every read at offset 0).
#[cfg(target_os = "linux")]
fn mapped_file_bytes() -> u64 {
    use std::os::unix::fs::FileExt;
    static STATM: std::sync::OnceLock<Option<(std::fs::File, u64)>> = std::sync::OnceLock::new();
    if !linux_paths() {
        return 0;
    }
    let Some((file, page)) = STATM.get_or_init(|| {
        // SAFETY: sysconf takes a plain integer and returns one; no memory is shared.
        let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        std::fs::File::open("/proc/self/statm")
            .ok()
            .map(|f| (f, page))
    }) else {
        return 0;
    };
    let mut buf = [0u8; 128];
    let Ok(n) = file.read_at(&mut buf, 0) else {
        return 0;
    };
    std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|s| s.split_ascii_whitespace().nth(2)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page)
}

#[cfg(not(target_os = "linux"))]
fn mapped_file_bytes() -> u64 {
    0
}

/// Reap child `pid` if it has exited; true when it was reaped (or is gone).
pub fn reap(pid: u32) -> bool {
    use rustix::process::{Pid, WaitOptions};
    let Some(p) = Pid::from_raw(pid as i32) else {
        return true;
    };
    match rustix::process::waitpid(Some(p), WaitOptions::NOHANG) {
        Ok(Some(_)) => true,
        Ok(None) => false,
        Err(_) => true,
    }
}

#[cfg(not(target_os = "linux"))]
pub fn only_opener(_: &std::fs::File) -> std::io::Result<bool> {
    unsupported()
}

/// Rename `from` to `to` unless `to` exists (`RENAME_NOREPLACE`, one system call, so two
/// renames to one name exclude each other). `Unsupported` off Linux: callers then create
/// the file exclusively instead.
#[cfg(target_os = "linux")]
pub fn rename_noreplace(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    if !linux_paths() {
        return unsupported();
    }
    let cwd = rustix::fs::CWD;
    rustix::fs::renameat_with(cwd, from, cwd, to, rustix::fs::RenameFlags::NOREPLACE)
        .map_err(Into::into)
}

#[cfg(not(target_os = "linux"))]
pub fn rename_noreplace(_: &std::path::Path, _: &std::path::Path) -> std::io::Result<()> {
    unsupported()
}

/// Watches on directories (inotify): whether anything in them changed since the last look.
/// Off Linux [`DirWatch::new`] is `Unsupported`; callers then assume everything changed.
pub struct DirWatch {
    #[cfg(target_os = "linux")]
    fd: rustix::fd::OwnedFd,
}

#[cfg(target_os = "linux")]
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

#[cfg(target_os = "linux")]
impl DirWatch {
    pub fn new() -> std::io::Result<DirWatch> {
        use rustix::fs::inotify;
        if !linux_paths() {
            return unsupported();
        }
        let fd = inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC)?;
        Ok(DirWatch { fd })
    }

    /// Watch `dir` (not what is below it); its watch descriptor.
    pub fn add(&self, dir: &std::path::Path) -> std::io::Result<i32> {
        rustix::fs::inotify::add_watch(&self.fd, dir, WATCHED).map_err(Into::into)
    }

    /// Read every pending event; true when there was none, apart from events about the entry
    /// `ignore` of the directory watched as `ignore_in` and the notices of removed watches.
    pub fn quiet(&self, ignore_in: i32, ignore: &[u8]) -> bool {
        use rustix::fs::inotify::{ReadFlags, Reader};
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = Reader::new(&self.fd, &mut buf);
        let mut quiet = true;
        loop {
            match reader.next() {
                Ok(event) => {
                    let ignored = event.wd() == ignore_in
                        && event.file_name().is_some_and(|n| n.to_bytes() == ignore);
                    if !ignored && !event.events().difference(ReadFlags::IGNORED).is_empty() {
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
}

#[cfg(not(target_os = "linux"))]
impl DirWatch {
    pub fn new() -> std::io::Result<DirWatch> {
        unsupported()
    }

    pub fn add(&self, _: &std::path::Path) -> std::io::Result<i32> {
        unsupported()
    }

    pub fn quiet(&self, _: i32, _: &[u8]) -> bool {
        false
    }
}

/// For tests that expect a lease to be granted: while another test thread spawns a child the
/// kernel refuses it (see [`only_opener`]). Tries `f` until it succeeds, for about a second.
#[cfg(all(test, target_os = "linux"))]
pub(crate) fn granted_soon(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..1_000 {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    false
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::{granted_soon, only_opener, spawn_holding};

    fn free(path: &std::path::Path) -> bool {
        let f = std::fs::File::open(path).expect("open");
        rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockShared).is_ok()
    }

    /// A landing's lock lasts while a git it started runs, even when the landing's process
    /// is gone (here: its descriptor closed); a child spawned without it does not hold it.
    #[test]
    fn a_handed_down_lock_lasts_until_the_child_exits() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("lock");
        for handed in [true, false] {
            let lock = std::fs::File::create(&path).expect("create");
            rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
                .expect("lock");
            let mut cmd = std::process::Command::new("sleep");
            cmd.arg("30");
            let mut child = if handed {
                spawn_holding(&mut cmd, &lock)
            } else {
                cmd.spawn()
            }
            .expect("sleep runs");
            drop(lock);
            if handed {
                for _ in 0..20 {
                    assert!(!free(&path), "the child holds the lock");
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            } else {
                // (Another test thread's child holds a copy between its fork and its exec.)
                assert!(granted_soon(|| free(&path)), "only this process held it");
            }
            child.kill().expect("kill");
            child.wait().expect("wait");
            assert!(granted_soon(|| free(&path)));
        }
    }

    /// The kilobytes of the mapping at `addr` resident in this process (`/proc/self/smaps`).
    fn resident_kb(addr: usize) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let start = format!("{addr:x}-");
        let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&start));
        lines
            .find_map(|l| l.strip_prefix("Rss:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
            .expect("the mapping is listed")
    }

    /// A chain read while more than the limit of pack pages is mapped gives them back, at
    /// once (not some chains later): a pack mapped and read whole is no longer resident after
    /// one [`super::PageBudget::read_one`].
    #[test]
    fn the_page_budget_gives_pack_pages_back_after_a_chain() {
        if !super::linux_paths() {
            return;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("pack-test.pack");
        let len = (super::MAPPED_LIMIT + (16 << 20)) as usize;
        std::fs::write(&path, vec![7u8; len]).expect("write");
        let file = std::fs::File::open(&path).expect("open");
        // SAFETY: a fresh read-only private mapping of a file this test owns, unmapped below.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
            )
        };
        assert_ne!(addr, libc::MAP_FAILED);
        let mut sum = 0u8;
        for off in (0..len).step_by(4096) {
            // SAFETY: within the mapping.
            sum ^= unsafe { *(addr as *const u8).add(off) };
        }
        std::hint::black_box(sum);
        assert!(resident_kb(addr as usize) * 1024 >= len as u64 / 2);
        super::PageBudget.read_one();
        let after = resident_kb(addr as usize);
        // SAFETY: the mapping made above, no longer read.
        unsafe { libc::munmap(addr, len) };
        assert!(after < 1024, "{after} kB still resident");
    }

    #[test]
    fn a_file_open_elsewhere_is_seen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").expect("write");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        let alone = || only_opener(&file).expect("leases work here");
        assert!(granted_soon(alone));
        let reader = std::fs::File::open(&path).expect("open to read");
        assert!(!alone());
        drop(reader);
        assert!(granted_soon(alone));
    }
}

/// Whether the file at `path` was last modified at least `age` ago (`false` when it cannot
/// be told).
pub fn is_older_than(path: &std::path::Path, age: std::time::Duration) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|e| e >= age)
}
