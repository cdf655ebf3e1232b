//! A spool directory that request files are dropped into (`git hyperion watch DIR`): which
//! files are complete, and moving each exactly once to where it ends.
//!
//! Layout: `DIR/*.json` are waiting; `DIR/.work/` holds the one file being processed (claimed
//! by a rename, so a writer dropping a new file under the same name cannot be mistaken for
//! it); `DIR/done/` and `DIR/rejected/` (with `NAME.error.json` beside each rejected `NAME`)
//! are where files end. `DIR/.hyperion-watch.lock` (an `flock`) keeps a second watcher off the
//! same directory.
//!
//! A file is taken when it is complete: a regular file (or anything else that is not a
//! directory, to be rejected) named `*.json`, not hidden, whose modification time is at least
//! the settle time old and — on Linux — that no process has open (a write lease would be
//! refused, see [`crate::git::os::only_opener`]). Writers that write in place and pause longer
//! than the settle time can be taken half-written elsewhere; the safe contract everywhere is
//! to write a hidden or non-`.json` name (`.x.json`, `x.json.tmp`) and rename it in.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// The pause point between storing a file's request and moving the file to `done/`.
pub const PAUSE_STORED: &str = "enqueue.watch_stored";

/// Where claimed files wait while they are processed.
const WORK: &str = ".work";
const LOCK: &str = ".hyperion-watch.lock";
/// Suffix of the problems file beside a rejected file.
pub const ERROR_SUFFIX: &str = ".error.json";

/// An open spool directory, held by this process.
pub struct Spool {
    dir: PathBuf,
    work: PathBuf,
    done: PathBuf,
    rejected: PathBuf,
    _lock: File,
    watch: Option<crate::git::os::DirWatch>,
}

/// Why a spool directory could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// Another process watches it.
    Busy,
    Io(std::io::Error),
}

impl From<std::io::Error> for OpenError {
    fn from(e: std::io::Error) -> OpenError {
        OpenError::Io(e)
    }
}

/// What [`Spool::read`] found in a claimed file.
#[derive(Debug)]
pub enum Content {
    /// Its bytes.
    Bytes(Vec<u8>),
    /// Not read, and why: the file is not one a request can be in (the dropper's fault).
    Refused(String),
}

impl Spool {
    /// Open `dir` (which must exist): create `done/`, `rejected/` and `.work/`, take its lock.
    pub fn open(dir: &Path) -> std::result::Result<Spool, OpenError> {
        if !std::fs::metadata(dir)?.is_dir() {
            return Err(OpenError::Io(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                "not a directory",
            )));
        }
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK))?;
        if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            return Err(OpenError::Busy);
        }
        let sub = |name: &str| -> std::io::Result<PathBuf> {
            let p = dir.join(name);
            match std::fs::create_dir(&p) {
                Ok(()) => Ok(p),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if std::fs::symlink_metadata(&p)?.is_dir() {
                        Ok(p)
                    } else {
                        Err(std::io::Error::new(
                            std::io::ErrorKind::AlreadyExists,
                            format!("{} exists and is not a directory", p.display()),
                        ))
                    }
                }
                Err(e) => Err(e),
            }
        };
        let watch = crate::git::os::DirWatch::new()
            .ok()
            .filter(|w| w.add(dir).is_ok());
        Ok(Spool {
            work: sub(WORK)?,
            done: sub("done")?,
            rejected: sub("rejected")?,
            dir: dir.to_owned(),
            _lock: lock,
            watch,
        })
    }

    /// Files claimed before and never finished (the process stopped between claiming and
    /// moving them): to be processed again, first. Sorted by name.
    pub fn leftovers(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(&self.work)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        out.sort();
        Ok(out)
    }

    /// The names of the complete files waiting (see the module documentation), in name order.
    pub fn ready(&self, settle: Duration) -> std::io::Result<Vec<String>> {
        let now = SystemTime::now();
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let Ok(entry) = entry else { continue };
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                continue;
            }
            if meta.is_file() {
                let age = meta
                    .modified()
                    .ok()
                    .and_then(|m| now.duration_since(m).ok());
                if age.is_none_or(|a| a < settle) {
                    continue;
                }
                if open_elsewhere(&entry.path()) {
                    continue;
                }
            }
            out.push(name);
        }
        out.sort();
        Ok(out)
    }

    /// Take file `name` out of the spool into `.work/`: its new path, or `None` when it is
    /// gone (or a file of that name is still being processed).
    pub fn claim(&self, name: &str) -> std::io::Result<Option<PathBuf>> {
        let to = self.work.join(name);
        if to.symlink_metadata().is_ok() {
            return Ok(None);
        }
        match std::fs::rename(self.dir.join(name), &to) {
            Ok(()) => Ok(Some(to)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Put a claimed file back where it was dropped (its processing failed for a reason of
    /// the environment, to be tried again).
    pub fn unclaim(&self, claimed: &Path) -> std::io::Result<()> {
        let name = claimed.file_name().unwrap_or_default();
        std::fs::rename(claimed, self.dir.join(name))
    }

    /// The content of a claimed file, up to `max` bytes; [`Content::Refused`] with the reason
    /// when it is not a regular file or larger than that. Symbolic links are not followed.
    /// `Err` is the environment's failure (the file is tried again), not the file's.
    pub fn read(&self, claimed: &Path, max: u64) -> std::io::Result<Content> {
        let meta = claimed.symlink_metadata()?;
        if !meta.is_file() {
            return Ok(Content::Refused(
                "not a regular file (a symbolic link, a pipe, …)".to_owned(),
            ));
        }
        if meta.len() > max {
            return Ok(Content::Refused(format!(
                "{} bytes, more than {max}",
                meta.len()
            )));
        }
        let mut bytes = Vec::new();
        File::open(claimed)?.take(max + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > max {
            return Ok(Content::Refused(format!("more than {max} bytes")));
        }
        Ok(Content::Bytes(bytes))
    }

    /// Move a claimed file, whose request is stored, to `done/`; its new path.
    pub fn done(&self, claimed: &Path) -> std::io::Result<PathBuf> {
        crate::git::os::pause_point(PAUSE_STORED);
        let to = free_name(&self.done, claimed)?;
        std::fs::rename(claimed, &to)?;
        Ok(to)
    }

    /// Move a claimed file to `rejected/`, with `error` written beside it first as
    /// `NAME.error.json`; the file's new path.
    pub fn reject(&self, claimed: &Path, error: &[u8]) -> std::io::Result<PathBuf> {
        let to = free_name(&self.rejected, claimed)?;
        let mut err_name = to.clone().into_os_string();
        err_name.push(ERROR_SUFFIX);
        let tmp = self.rejected.join(format!(".{}.tmp", std::process::id()));
        std::fs::write(&tmp, error)?;
        std::fs::rename(&tmp, PathBuf::from(err_name))?;
        std::fs::rename(claimed, &to)?;
        Ok(to)
    }

    /// Wait up to `interval`, less when the directory changes (where it can be watched) or
    /// `stop` is set.
    pub fn wait(&self, interval: Duration, stop: &AtomicBool) {
        let until = Instant::now() + interval;
        loop {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            if let Some(w) = &self.watch
                && !w.quiet(-1, b"")
            {
                return;
            }
            let now = Instant::now();
            if now >= until {
                return;
            }
            std::thread::sleep((until - now).min(Duration::from_millis(50)));
        }
    }
}

/// `dir/NAME` for the claimed file's name, or `dir/STEM-N.EXT` when that is taken (also by a
/// rejected file's problems file).
fn free_name(dir: &Path, claimed: &Path) -> std::io::Result<PathBuf> {
    let name = claimed
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("request.json");
    let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
    for n in 0..10_000u32 {
        let candidate = if n == 0 {
            name.to_owned()
        } else if ext.is_empty() {
            format!("{stem}-{n}")
        } else {
            format!("{stem}-{n}.{ext}")
        };
        let path = dir.join(&candidate);
        let error = dir.join(format!("{candidate}{ERROR_SUFFIX}"));
        if path.symlink_metadata().is_err() && error.symlink_metadata().is_err() {
            return Ok(path);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        format!("{} holds too many files named like {name}", dir.display()),
    ))
}

/// Whether another process has `path` open (a writer still writing): on Linux, a write
/// lease is refused then. Where that cannot be told, false.
fn open_elsewhere(path: &Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        // Opened for writing (nothing is written): the kernel then counts this process's
        // own descriptor as the one writer allowed. A file this process may not write is
        // judged by its age alone.
        if let Ok(f) = std::fs::OpenOptions::new().write(true).open(path) {
            return matches!(crate::git::os::only_opener(&f), Ok(false));
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = path;
    false
}
