//! Writing many new objects as one pack file (with its `.idx`) instead of one loose file
//! each, as `git fast-import` does. A batch enqueue of thousands of requests otherwise spends
//! most of its time creating and renaming small files.
//!
//! The pack holds whole objects (no deltas), in pack format v2 with an index of version 2:
//! the formats git reads natively. The pack is written before its index, and both are
//! renamed into place only when complete, so a reader never sees a partial pack; callers
//! point refs at the objects only after [`PackBuilder::write`] returned.

use std::io::Write;
use std::path::{Path, PathBuf};

use gix::ObjectId;
use gix::objs::Kind;

/// Objects collected in memory, to be written as one pack.
#[derive(Default)]
pub struct PackBuilder {
    objects: Vec<(ObjectId, Kind, Vec<u8>)>,
    seen: std::collections::HashSet<ObjectId>,
}

impl PackBuilder {
    pub fn new() -> PackBuilder {
        PackBuilder::default()
    }

    /// Add an object given its kind and serialised content; returns its id.
    pub fn add(&mut self, kind: Kind, data: Vec<u8>) -> ObjectId {
        let id = gix::objs::compute_hash(gix::hash::Kind::Sha1, kind, &data)
            .expect("hashing in memory cannot fail");
        if self.seen.insert(id) {
            self.objects.push((id, kind, data));
        }
        id
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Write the pack and its index under `objects_dir/pack/`. Returns the pack's path, or
    /// `None` when there was nothing to write.
    pub fn write(self, objects_dir: &Path) -> std::io::Result<Option<PathBuf>> {
        if self.objects.is_empty() {
            return Ok(None);
        }
        let mut pack = Vec::with_capacity(
            12 + self
                .objects
                .iter()
                .map(|(_, _, d)| d.len() / 2 + 32)
                .sum::<usize>(),
        );
        pack.extend_from_slice(b"PACK");
        pack.extend_from_slice(&2u32.to_be_bytes());
        pack.extend_from_slice(&(self.objects.len() as u32).to_be_bytes());
        // (id, offset, crc32) of every entry.
        let mut entries = Vec::with_capacity(self.objects.len());
        for (id, kind, data) in &self.objects {
            let offset = pack.len() as u64;
            let type_code: u8 = match kind {
                Kind::Commit => 1,
                Kind::Tree => 2,
                Kind::Blob => 3,
                Kind::Tag => 4,
            };
            let mut size = data.len() as u64;
            let mut byte = (type_code << 4) | (size & 0x0f) as u8;
            size >>= 4;
            while size > 0 {
                pack.push(byte | 0x80);
                byte = (size & 0x7f) as u8;
                size >>= 7;
            }
            pack.push(byte);
            let mut z = gix_zlib::stream::deflate::Write::new(
                Vec::with_capacity(data.len() / 2 + 16),
                gix_zlib::Compression::BEST_SPEED,
            );
            z.write_all(data)?;
            z.flush()?;
            pack.extend_from_slice(&z.into_inner());
            let crc = crc32fast::hash(&pack[offset as usize..]);
            entries.push((*id, offset, crc));
        }
        let pack_sum = sha1(&pack);
        pack.extend_from_slice(pack_sum.as_bytes());

        entries.sort_by_key(|e| e.0);
        let mut idx = Vec::with_capacity(8 + 1024 + entries.len() * 28 + 40);
        idx.extend_from_slice(&[0xff, b't', b'O', b'c']);
        idx.extend_from_slice(&2u32.to_be_bytes());
        let mut fanout = [0u32; 256];
        for (id, _, _) in &entries {
            fanout[id.as_bytes()[0] as usize] += 1;
        }
        let mut total = 0u32;
        for n in fanout {
            total += n;
            idx.extend_from_slice(&total.to_be_bytes());
        }
        for (id, _, _) in &entries {
            idx.extend_from_slice(id.as_bytes());
        }
        for (_, _, crc) in &entries {
            idx.extend_from_slice(&crc.to_be_bytes());
        }
        let mut large = Vec::new();
        for (_, offset, _) in &entries {
            if *offset < 0x8000_0000 {
                idx.extend_from_slice(&(*offset as u32).to_be_bytes());
            } else {
                idx.extend_from_slice(&(0x8000_0000u32 | large.len() as u32).to_be_bytes());
                large.push(*offset);
            }
        }
        for offset in large {
            idx.extend_from_slice(&offset.to_be_bytes());
        }
        idx.extend_from_slice(pack_sum.as_bytes());
        let idx_sum = sha1(&idx);
        idx.extend_from_slice(idx_sum.as_bytes());

        let dir = objects_dir.join("pack");
        std::fs::create_dir_all(&dir)?;
        let name = format!("pack-{pack_sum}");
        let final_pack = dir.join(format!("{name}.pack"));
        let mut tmp = tempfile::Builder::new()
            .prefix("tmp_pack_")
            .tempfile_in(&dir)?;
        tmp.write_all(&pack)?;
        tmp.persist(&final_pack).map_err(|e| e.error)?;
        let mut tmp = tempfile::Builder::new()
            .prefix("tmp_idx_")
            .tempfile_in(&dir)?;
        tmp.write_all(&idx)?;
        tmp.persist(dir.join(format!("{name}.idx")))
            .map_err(|e| e.error)?;
        Ok(Some(final_pack))
    }
}

fn sha1(data: &[u8]) -> ObjectId {
    let mut h = gix::hash::hasher(gix::hash::Kind::Sha1);
    h.update(data);
    h.try_finalize().expect("sha1 of bytes in memory")
}

/// Up to this many objects are written loose; more become one pack.
const LOOSE_AT_MOST: usize = 6;

/// Once this many packs exist, small ones are rolled up (see [`roll_up`]).
const PACKS_BEFORE_ROLL_UP: usize = 40;

/// Write the objects held in `repo`'s object memory to disk: a few as loose objects, more as
/// one pack. Hyperion's repository handles keep new objects in memory (see
/// [`crate::store::Store::from_repo`]) until a ref is about to point at them, so that
/// everything one step of work writes — a batch of leases, a chain of landed commits with
/// their notes and records — reaches the disk as one pack instead of dozens of small files.
/// Every ref update and every git subprocess that reads new objects calls this first.
/// Returns how many objects were written.
pub fn persist(repo: &gix::Repository) -> crate::Result<usize> {
    let Some(memory) = repo.objects.reset_object_memory() else {
        return Ok(0);
    };
    let n = memory.len();
    if n == 0 {
        return Ok(0);
    }
    let objects_dir = repo.common_dir().join("objects");
    let write = || {
        if n <= LOOSE_AT_MOST {
            let odb: &gix::odb::Cache<_> = &repo.objects;
            memory.iter().try_for_each(|(_, (kind, data))| {
                gix::objs::Write::write_buf(odb, *kind, data)
                    .map(|_| ())
                    .map_err(|e| std::io::Error::other(e.to_string()))
            })
        } else {
            let mut pack = PackBuilder::new();
            for (kind, data) in memory.values() {
                pack.add(*kind, data.clone());
            }
            pack.write(&objects_dir).map(|_| ())
        }
    };
    // A concurrent `git repack -d` (another worker rolling packs up) prunes emptied
    // `objects/xx/` directories under a writer's feet; git retries such writes, so do we.
    let mut written = write();
    for _ in 0..3 {
        if written.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
        written = write();
    }
    if let Err(e) = written {
        // Keep them for a retry: nothing points at them yet.
        for (kind, data) in memory.values() {
            let _ = gix::objs::Write::write_buf(&repo.objects, *kind, data);
        }
        return Err(crate::Error::io(
            format!("could not write objects in {}", objects_dir.display()),
            e,
        ));
    }
    if n > LOOSE_AT_MOST {
        roll_up(repo);
    }
    Ok(n)
}

/// Drop the objects held in memory (a dry run's commits): nothing points at them.
pub fn discard(repo: &gix::Repository) {
    repo.objects.reset_object_memory();
}

/// Keep the number of packs small: every worker batch writes one, and object lookups slow
/// down with many. When more than [`PACKS_BEFORE_ROLL_UP`] exist, `git repack -d
/// --geometric=2` merges the small ones (the large base pack stays as it is), under a lock so
/// that concurrent workers do not repack at once. Best effort: a failure only costs speed.
fn roll_up(repo: &gix::Repository) {
    let common = repo.common_dir();
    let packs = std::fs::read_dir(common.join("objects/pack"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".idx"))
                .count()
        })
        .unwrap_or(0);
    if packs < PACKS_BEFORE_ROLL_UP {
        return;
    }
    let lock = common.join("hyperion/repack.lock");
    let _ = std::fs::create_dir_all(common.join("hyperion"));
    let held = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&lock);
    if held.is_err() {
        // Another process is at it — or died at it long ago.
        if std::fs::metadata(&lock)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(600))
        {
            let _ = std::fs::remove_file(&lock);
        }
        return;
    }
    let started = std::time::Instant::now();
    let out = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(common)
        .args(["repack", "-d", "-q", "--geometric=2"])
        .stdin(std::process::Stdio::null())
        .output();
    let _ = std::fs::remove_file(&lock);
    match out {
        Ok(o) if o.status.success() => {
            tracing::debug!(packs, took = ?started.elapsed(), "rolled up small packs");
        }
        Ok(o) => tracing::warn!(
            packs,
            stderr = %String::from_utf8_lossy(&o.stderr).trim(),
            "could not roll up small packs"
        ),
        Err(e) => tracing::warn!(packs, error = %e, "could not run git repack"),
    }
}
