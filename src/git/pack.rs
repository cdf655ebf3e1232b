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

    /// Add an object whose id is known (it was hashed when it was written to memory).
    fn add_known(&mut self, id: ObjectId, kind: Kind, data: Vec<u8>) {
        if self.seen.insert(id) {
            self.objects.push((id, kind, data));
        }
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Write the pack, its `.keep` and its index under `objects_dir/pack/`. Returns the
    /// pack's path, or `None` when there was nothing to write.
    ///
    /// git sees a pack once its `.idx` exists, and this one is kept (`<pack>.keep`, naming
    /// hyperion and this process) before that: `git repack -a`, `git gc` and `git
    /// maintenance` leave a kept pack alone, so its objects survive until the refs that need
    /// them exist. The keep is removed when this thread's step of work is done ([`settle`]),
    /// or, when the process died first, by `doctor` and the worker's sweep
    /// ([`remove_stale_keeps`]).
    /// Writing again after a failure writes the same objects (and those a retry added).
    pub fn write(&mut self, objects_dir: &Path) -> std::io::Result<Option<PathBuf>> {
        if self.objects.is_empty() {
            return Ok(None);
        }
        let dir = objects_dir.join("pack");
        std::fs::create_dir_all(&dir)?;
        let mut nonce = 0u32;
        loop {
            let (pack, idx, pack_sum) = self.encode()?;
            let name = format!("pack-{pack_sum}");
            let keep = dir.join(format!("{name}.keep"));
            // The same objects written as a pack before (by another process, or before a
            // crash): that pack is not ours to keep. One object more makes this one another.
            if dir.join(format!("{name}.idx")).exists() || keep.exists() {
                nonce += 1;
                self.add(
                    Kind::Blob,
                    format!("hyperion pack {} {nonce}\n", crate::git::os::pid()).into_bytes(),
                );
                continue;
            }
            let final_pack = dir.join(format!("{name}.pack"));
            put_file(&dir, "tmp_pack_", &pack, &final_pack)?;
            // The keep is a spare file where one is kept ([`crate::git::spare`]), taken as a ref's
            // lock is (it fails when the keep exists), and becomes a spare again once released:
            // a transition then neither creates nor frees a file for it.
            let common = objects_dir.parent().unwrap_or(objects_dir);
            let content = keep_content();
            match crate::git::spare::take(common, &keep, crate::git::spare::Kind::Ref) {
                crate::git::spare::Taken::File(file) => {
                    use std::os::unix::fs::FileExt;
                    file.write_all_at(content.as_bytes(), 0)
                        .and_then(|()| file.set_len(content.len() as u64))?;
                }
                crate::git::spare::Taken::Busy => {
                    nonce += 1;
                    continue;
                }
                crate::git::spare::Taken::None => match std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&keep)
                {
                    Ok(mut file) => file.write_all(content.as_bytes())?,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        nonce += 1;
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            }
            KEPT.with_borrow_mut(|kept| kept.push((common.to_owned(), keep.clone())));
            put_file(&dir, "tmp_idx_", &idx, &dir.join(format!("{name}.idx")))?;
            WRITTEN.with_borrow_mut(|written| {
                written.push((common.to_owned(), final_pack.clone(), self.objects.len()));
                // A long-running worker writes a pack per batch; the roll-ups take most.
                if written.len() > 256 {
                    written.retain(|(_, p, _)| p.exists());
                }
            });
            return Ok(Some(final_pack));
        }
    }

    /// The pack and its index, in memory, and the pack's checksum (which names it).
    pub fn encode(&self) -> std::io::Result<(Vec<u8>, Vec<u8>, ObjectId)> {
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
        for (body, (id, _, _)) in bodies(&self.objects)?.iter().zip(&self.objects) {
            entries.push((*id, pack.len() as u64, crc32fast::hash(body)));
            pack.extend_from_slice(body);
        }
        let pack_sum = sha1(&pack);
        pack.extend_from_slice(pack_sum.as_bytes());

        let idx = index(entries, &pack_sum);
        Ok((pack, idx, pack_sum))
    }
}

/// From this many bytes to compress, a pack's entries are compressed on two threads: a
/// landing's new versions of a few source files take milliseconds at the fastest level, while
/// starting a thread takes tens of microseconds.
const PARALLEL_FROM: usize = 128 << 10;

/// The entries of a pack holding `objects`, in their order: each one's type-and-size header
/// and zlib stream. Compressed on two threads when there is much to compress (see
/// [`PARALLEL_FROM`]), the objects split where half the bytes lie on each side.
fn bodies(objects: &[(ObjectId, Kind, Vec<u8>)]) -> std::io::Result<Vec<Vec<u8>>> {
    let encode = |part: &[(ObjectId, Kind, Vec<u8>)]| -> std::io::Result<Vec<Vec<u8>>> {
        part.iter()
            .map(|(_, kind, data)| entry_body(*kind, data))
            .collect()
    };
    let weight = |data: &Vec<u8>| {
        if data.len() < STORED_BELOW {
            0
        } else {
            data.len()
        }
    };
    let total: usize = objects.iter().map(|(_, _, d)| weight(d)).sum();
    if total < PARALLEL_FROM || objects.len() < 2 {
        return encode(objects);
    }
    let mut sum = 0;
    let split = objects
        .iter()
        .position(|(_, _, d)| {
            sum += weight(d);
            sum >= total / 2
        })
        .map_or(objects.len() / 2, |i| (i + 1).min(objects.len() - 1));
    let (first, second) = objects.split_at(split);
    std::thread::scope(|scope| {
        let other = scope.spawn(|| encode(second));
        let mut bodies = encode(first)?;
        bodies.extend(
            other
                .join()
                .map_err(|_| std::io::Error::other("a compressing thread panicked"))??,
        );
        Ok(bodies)
    })
}

/// One pack entry of an object whole: the header (type, size) and the zlib stream of `data`.
fn entry_body(kind: Kind, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let type_code: u8 = match kind {
        Kind::Commit => 1,
        Kind::Tree => 2,
        Kind::Blob => 3,
        Kind::Tag => 4,
    };
    let mut body = Vec::with_capacity(data.len() / 2 + 32);
    let mut size = data.len() as u64;
    let mut byte = (type_code << 4) | (size & 0x0f) as u8;
    size >>= 4;
    while size > 0 {
        body.push(byte | 0x80);
        byte = (size & 0x7f) as u8;
        size >>= 7;
    }
    body.push(byte);
    deflate(&[data], &mut body)?;
    Ok(body)
}

/// Write `bytes` to `path` whole or not at all: into a temporary file of `dir` ([`Tmp`]),
/// renamed into place.
fn put_file(dir: &Path, prefix: &str, bytes: &[u8], path: &Path) -> std::io::Result<()> {
    let mut tmp = Tmp::new(dir, prefix)?;
    tmp.file.write_all(bytes)?;
    tmp.persist(path)
}

/// A temporary file of a pack directory that a pack or an index is written into, named
/// `prefix…` (git's prefixes, which its maintenance knows as leftovers) with this process's
/// id and a counter. It is a spare where one is kept ([`crate::git::spare`]: the file of a
/// pack that a join removed), written over from the start, else a new file. Removed when
/// dropped before [`Tmp::persist`].
struct Tmp {
    path: PathBuf,
    file: std::fs::File,
    persisted: bool,
}

impl Tmp {
    fn new(dir: &Path, prefix: &str) -> std::io::Result<Tmp> {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let common = dir
            .parent()
            .and_then(Path::parent)
            .expect("a pack directory lies in a git directory");
        loop {
            let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = dir.join(format!("{prefix}h{}_{n}", crate::git::os::pid()));
            if let crate::git::spare::Taken::File(file) =
                crate::git::spare::take(common, &path, crate::git::spare::Kind::Pack)
            {
                return Ok(Tmp {
                    path,
                    file,
                    persisted: false,
                });
            }
            use std::os::unix::fs::OpenOptionsExt;
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(Tmp {
                        path,
                        file,
                        persisted: false,
                    });
                }
                // A leftover of a process that had this id before.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Cut the file where the writing stopped (a spare may have been longer) and rename it
    /// to `dest`.
    fn persist(mut self, dest: &Path) -> std::io::Result<()> {
        use std::io::Seek;
        let len = self.file.stream_position()?;
        self.file.set_len(len)?;
        std::fs::rename(&self.path, dest)?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// An object's entry in a pack: its id, the offset of the entry, the entry's crc32.
type Entry = (ObjectId, u64, u32);

/// The index (version 2) of a pack whose entries are given in any order, no id twice;
/// `pack_sum` is the pack's checksum.
fn index(mut entries: Vec<Entry>, pack_sum: &ObjectId) -> Vec<u8> {
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
    idx
}

/// Below this size an object is stored in its zlib stream without compression: preparing a
/// compressor for a stream (clearing its tables) costs more than a small object gains.
const STORED_BELOW: usize = 1024;

/// Append the zlib stream of the concatenated `parts` to `out`: uncompressed ("stored"
/// blocks, which every zlib reader reads) when small, else compressed at the fastest level.
fn deflate(parts: &[&[u8]], out: &mut Vec<u8>) -> std::io::Result<()> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    if total < STORED_BELOW {
        stored(parts, out);
        return Ok(());
    }
    compressed(parts, out)
}

/// A zlib stream of stored blocks: header (deflate, 32 KiB window, no dictionary, fastest),
/// blocks of at most 65,535 bytes each with its length and the length's complement, and the
/// Adler-32 checksum of the data.
fn stored(parts: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(&[0x78, 0x01]);
    let data: Vec<u8>;
    let all: &[u8] = match parts {
        [one] => one,
        _ => {
            data = parts.concat();
            &data
        }
    };
    let mut blocks = all.chunks(0xffff).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        out.push(u8::from(blocks.peek().is_none()));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&adler32(all).to_be_bytes());
}

fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65_521;
    let (mut a, mut b) = (1u32, 0u32);
    // 5,552 bytes is the most that can be summed before the sums may overflow.
    for chunk in data.chunks(5_552) {
        for &byte in chunk {
            a += u32::from(byte);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

/// The compressed zlib stream (fastest level) of `parts`. The compressor is made once per
/// thread and reset for every stream: making one allocates a few hundred kilobytes.
fn compressed(parts: &[&[u8]], out: &mut Vec<u8>) -> std::io::Result<()> {
    use gix_zlib::stream::deflate::{Compress, FlushCompress};
    thread_local! {
        static COMPRESS: std::cell::RefCell<Option<Compress>> = const { std::cell::RefCell::new(None) };
    }
    COMPRESS.with_borrow_mut(|slot| {
        let z = slot.get_or_insert_with(|| Compress::new(gix_zlib::Compression::BEST_SPEED));
        z.reset();
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut buf = vec![0u8; total + total / 8 + 64];
        let last = parts.len().saturating_sub(1);
        for (i, part) in parts.iter().enumerate() {
            let mut input = *part;
            let flush = if i == last {
                FlushCompress::Finish
            } else {
                FlushCompress::None
            };
            loop {
                let (before_in, before_out) = (z.total_in(), z.total_out());
                let status = z
                    .compress(input, &mut buf, flush)
                    .map_err(std::io::Error::other)?;
                let consumed = (z.total_in() - before_in) as usize;
                let produced = (z.total_out() - before_out) as usize;
                out.extend_from_slice(&buf[..produced]);
                input = &input[consumed..];
                match status {
                    gix_zlib::Status::StreamEnd => return Ok(()),
                    _ if input.is_empty() && flush == FlushCompress::None => break,
                    _ => {}
                }
            }
        }
        Ok(())
    })
}

thread_local! {
    /// The `.keep` files of the packs this thread wrote whose refs may not exist yet.
    static KEPT: std::cell::RefCell<Vec<(PathBuf, PathBuf)>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The packs this thread wrote ([`PackBuilder::write`]) and has not joined yet
    /// ([`join_written`]): (common git directory, pack, how many objects it holds).
    static WRITTEN: std::cell::RefCell<Vec<(PathBuf, PathBuf, usize)>> = const { std::cell::RefCell::new(Vec::new()) };
    /// How many [`Hold`]s of this thread are alive.
    static HOLDS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// What a hyperion `.keep` file says: `hyperion <pid> <process start> <unix time>`, so that a
/// person can tell whose it is, and [`remove_stale_keeps`] whether its writer is gone.
fn keep_content() -> String {
    let pid = crate::git::os::pid();
    format!(
        "hyperion {pid} {} {}\n",
        crate::git::os::start_time(pid).unwrap_or(0),
        jiff::Timestamp::now().as_second()
    )
}

/// The step of work of this thread is done: every ref its new objects were written for
/// exists (or will not be written). The packs' `.keep` files are removed, unless a [`Hold`]
/// is alive. Called after every ref update ([`crate::git::refs::cas`]).
pub fn settle() {
    if HOLDS.get() == 0 {
        release_keeps();
    }
}

fn release_keeps() {
    for (common, keep) in KEPT.with_borrow_mut(std::mem::take) {
        // Into the spares (removed when there is no room).
        crate::git::spare::adopt(&common, &keep, crate::git::spare::Kind::Ref);
    }
}

/// While alive, the packs this thread writes stay kept, across ref updates: for a step that
/// writes the objects of several refs before it updates the first (a batch enqueue, a
/// worker's batch). Dropping the last one settles ([`settle`]).
pub struct Hold(());

pub fn hold() -> Hold {
    HOLDS.set(HOLDS.get() + 1);
    Hold(())
}

impl Drop for Hold {
    fn drop(&mut self) {
        HOLDS.set(HOLDS.get() - 1);
        settle();
    }
}

/// A keep file of a dead writer is removed once it is this old.
pub const KEEP_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// The `.keep` files hyperion wrote whose writer is gone (that process no longer runs) and
/// that are older than `grace`: a writer killed between its pack and its refs. Their packs'
/// objects that no ref reaches are garbage git's maintenance may then collect. Keeps of other
/// tools (not starting `hyperion `) are never touched.
pub fn stale_keeps(common: &Path, grace: std::time::Duration) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(common.join("objects/pack")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "keep") {
            continue;
        }
        // A keep is written before its pack's index, and may be a spare file that still
        // holds an earlier writer's words for an instant: until the index exists, it is a
        // writer's at work (a pack without an index is one git does not see anyway).
        if !path.with_extension("idx").exists() {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let mut words = text.split_ascii_whitespace();
        if words.next() != Some("hyperion") {
            continue;
        }
        let pid: Option<u32> = words.next().and_then(|w| w.parse().ok());
        let start: Option<u64> = words.next().and_then(|w| w.parse().ok());
        let alive = match (pid, start) {
            (Some(pid), Some(start)) => crate::git::os::start_time(pid) == Some(start),
            _ => false,
        };
        if !alive && crate::git::os::is_older_than(&path, grace) {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Remove the stale keeps ([`stale_keeps`]); returns the ones removed.
pub fn remove_stale_keeps(common: &Path, grace: std::time::Duration) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for keep in stale_keeps(common, grace) {
        match std::fs::remove_file(&keep) {
            Ok(()) => {
                tracing::warn!(keep = %keep.display(), "removed the keep file of a writer that died");
                removed.push(keep);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(keep = %keep.display(), error = %e, "could not remove a stale keep file")
            }
        }
    }
    removed
}

fn sha1(data: &[u8]) -> ObjectId {
    let mut h = gix::hash::hasher(gix::hash::Kind::Sha1);
    h.update(data);
    h.try_finalize().expect("sha1 of bytes in memory")
}

/// Once this many packs exist, small ones are rolled up (see [`roll_up`]).
const PACKS_BEFORE_ROLL_UP: usize = 40;

/// Write the objects held in `repo`'s object memory to disk, as one kept pack (see
/// [`PackBuilder::write`]). Hyperion's repository handles keep new objects in memory (see
/// the store's `Store::from_repo`) until a ref is about to point at them, so that
/// everything one step of work writes — a batch of leases, a chain of landed commits with
/// their notes and records — reaches the disk as one pack instead of dozens of small files.
/// Every ref update and every git subprocess that reads new objects calls this first.
/// Hyperion never writes a loose object: `git gc --prune=now` removes every unreferenced
/// loose object at once, whatever its age. Returns how many objects were written.
pub fn persist(repo: &gix::Repository) -> crate::Result<usize> {
    let Some(mut memory) = repo.objects.reset_object_memory() else {
        return Ok(0);
    };
    let n = memory.len();
    if n == 0 {
        return Ok(0);
    }
    let objects_dir = repo.common_dir().join("objects");
    let mut pack = PackBuilder::new();
    for id in written_order(memory.keys()) {
        let (kind, data) = memory.remove(&id).expect("listed by the memory itself");
        pack.add_known(id, kind, data);
    }
    // A concurrent `git repack -d` may remove a directory or a pack under a writer's feet;
    // git retries such writes, so do we.
    let mut written = pack.write(&objects_dir);
    for _ in 0..3 {
        if written.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
        written = pack.write(&objects_dir);
    }
    if let Err(e) = written {
        // Keep them for a retry: nothing points at them yet.
        for (id, kind, data) in &pack.objects {
            let _ = gix::objs::Write::write_buf_with_known_id(&repo.objects, *kind, data, *id);
        }
        return Err(crate::Error::io(
            format!("could not write objects in {}", objects_dir.display()),
            e,
        ));
    }
    roll_up(repo);
    Ok(n)
}

/// Put an object into `repo`'s object memory, to be written by [`persist`] into a kept
/// pack, even when the object database has it already: a copy that exists only as an
/// unreferenced (loose or unkept) object may be pruned by git between this lookup and the
/// ref update that makes it reachable. Every object hyperion writes goes through here.
pub fn write_object(repo: &gix::Repository, kind: Kind, data: &[u8]) -> crate::Result<ObjectId> {
    let id = gix::objs::Write::write_buf(&repo.objects, kind, data)
        .map_err(|e| crate::Error::object(format!("could not write a {kind}"), e))?;
    let mut order = WRITE_ORDER.lock().unwrap_or_else(|p| p.into_inner());
    let (count, at) = &mut *order;
    at.entry(id).or_insert(*count);
    *count += 1;
    Ok(id)
}

/// When each object held in memory was first written ([`write_object`]), so that [`persist`]
/// writes a pack in that order rather than the memory's (object ids): a request's objects are
/// written together, chain by chain, and so lie together in the pack. A pass that reads whole
/// chains in that order (doctor, sweep, gc, a batch lease) then reads the pack front to back
/// instead of faulting pages in at random (see [`sort_by_location`]). Only an order: an
/// object not found here goes last.
#[allow(clippy::type_complexity)]
static WRITE_ORDER: std::sync::LazyLock<
    std::sync::Mutex<(u64, std::collections::HashMap<ObjectId, u64>)>,
> = std::sync::LazyLock::new(Default::default);

/// `ids` in the order they were written, forgotten by [`WRITE_ORDER`] (their objects are
/// leaving memory).
fn written_order<'a>(ids: impl Iterator<Item = &'a ObjectId>) -> Vec<ObjectId> {
    let mut order = WRITE_ORDER.lock().unwrap_or_else(|p| p.into_inner());
    let (_, at) = &mut *order;
    let mut keyed: Vec<(u64, ObjectId)> = ids
        .map(|id| (at.remove(id).unwrap_or(u64::MAX), *id))
        .collect();
    if at.is_empty() {
        // Give the map's memory back after a large batch.
        *at = Default::default();
    }
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, id)| id).collect()
}

/// The objects held in `repo`'s memory as one pack and its index, leaving them there: what a
/// check slot's own object store gets, so that git in the slot sees a
/// commit before, or without (a dry run), it is written to the repository. `None` when
/// memory holds nothing.
pub fn memory_pack(repo: &gix::Repository) -> std::io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    let Some(memory) = repo.objects.reset_object_memory() else {
        return Ok(None);
    };
    let mut pack = PackBuilder::new();
    for (id, (kind, data)) in memory.iter() {
        pack.objects.push((*id, *kind, data.clone()));
    }
    // Back into memory as they were (nothing else reads or writes it meanwhile: a repository
    // handle is used by one thread).
    for (id, (kind, data)) in memory.iter() {
        let _ = gix::objs::Write::write_buf_with_known_id(&repo.objects, *kind, data, *id);
    }
    if pack.is_empty() {
        return Ok(None);
    }
    pack.encode().map(|(p, i, _)| Some((p, i)))
}

/// Run `f` with objects it writes held apart and dropped afterwards: trees built only to be
/// looked at (enqueue's view of a target with a request's predecessors applied) never reach
/// the disk. What memory held before is kept as it was.
pub fn scratch<T>(repo: &gix::Repository, f: impl FnOnce() -> T) -> T {
    let before = repo.objects.reset_object_memory();
    let out = f();
    if let Some(dropped) = repo.objects.reset_object_memory() {
        written_order(dropped.keys());
    }
    if let Some(before) = before {
        for (id, (kind, data)) in before.iter() {
            let _ = gix::objs::Write::write_buf_with_known_id(&repo.objects, *kind, data, *id);
        }
    }
    out
}

/// Drop the objects held in memory (a dry run's commits): nothing points at them.
pub fn discard(repo: &gix::Repository) {
    if let Some(dropped) = repo.objects.reset_object_memory() {
        written_order(dropped.keys());
    }
}

/// Keep the number of packs small: every worker batch writes one, and object lookups slow
/// down with many. When more than [`PACKS_BEFORE_ROLL_UP`] exist, `git repack -d
/// --geometric=2` merges the small ones (the large base pack stays as it is). It runs in the
/// background while this process goes on (it compares the new trees with each other for
/// deltas, which on a large repository takes a few hundred milliseconds). Detached (see
/// [`detach_roll_ups`]; `hyperion.autoDetach`, the default), it goes on after the process
/// exits, as git's own auto gc does, in a process group of its own (a Ctrl-C meant for the
/// command does not stop it), its messages in `hyperion/repack.log`; otherwise
/// [`finish_roll_up`] waits for it. An `flock` on `hyperion/repack.lock`, held by the `git`
/// process itself, keeps concurrent processes from repacking at once, and goes with it
/// however it ends. Best effort: a failure only costs speed.
fn roll_up(repo: &gix::Repository) {
    roll_up_at(
        repo.common_dir(),
        DETACH.load(std::sync::atomic::Ordering::Relaxed),
    );
}

/// Whether roll-ups started from now on outlive this process ([`roll_up`]). Off until a
/// caller says otherwise: the queue sets it from `hyperion.autoDetach` when it opens.
static DETACH: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Let roll-ups started from now on go on after this process exits (`true`), or have
/// [`finish_roll_up`] wait for them (`false`, the default of the library).
pub fn detach_roll_ups(detach: bool) {
    DETACH.store(detach, std::sync::atomic::Ordering::Relaxed);
}

/// A roll-up this process started.
struct RollUp {
    child: std::process::Child,
    packs: usize,
    started: std::time::Instant,
    /// Left running when the process is done ([`detach_roll_ups`]).
    detached: bool,
}

impl RollUp {
    /// Wait for it (at once when it has ended) and say how it went.
    fn finish(self) {
        let RollUp {
            mut child,
            packs,
            started,
            detached,
        } = self;
        if detached {
            match child.try_wait() {
                Ok(Some(status)) if !status.success() => tracing::warn!(
                    packs,
                    %status,
                    "could not roll up small packs (see hyperion/repack.log)"
                ),
                Ok(Some(_)) => {
                    tracing::debug!(packs, took = ?started.elapsed(), "rolled up small packs")
                }
                // Still at work: it goes on on its own.
                _ => tracing::debug!(
                    packs,
                    pid = child.id(),
                    "rolling up small packs in the background"
                ),
            }
            return;
        }
        let status = child.wait_with_output();
        let took = started.elapsed();
        match status {
            Ok(o) if o.status.success() => {
                tracing::debug!(packs, ?took, "rolled up small packs");
            }
            Ok(o) => tracing::warn!(
                packs,
                stderr = %String::from_utf8_lossy(&o.stderr).trim(),
                "could not roll up small packs"
            ),
            Err(e) => tracing::warn!(packs, error = %e, "could not wait for git repack"),
        }
    }
}

/// The roll-ups this process started and has not waited for, by common git directory.
fn rolling() -> std::sync::MutexGuard<'static, std::collections::HashMap<PathBuf, RollUp>> {
    static ROLLING: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<PathBuf, RollUp>>,
    > = std::sync::OnceLock::new();
    ROLLING
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

fn roll_up_at(common: &Path, detach: bool) {
    let mut rolling = rolling();
    if let Some(r) = rolling.get_mut(common) {
        if let Ok(None) = r.child.try_wait() {
            return;
        }
        rolling.remove(common).expect("present").finish();
    }
    let dir = common.join("objects/pack");
    let names: std::collections::HashSet<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    let mut packs = names.iter().filter(|n| n.ends_with(".idx")).count();
    if let Some(joined) = join_small(common, &dir, &names) {
        packs -= joined - 1;
    }
    if packs < PACKS_BEFORE_ROLL_UP {
        return;
    }
    let Some(lock) = repack_lock(common) else {
        // Another process is at it.
        return;
    };
    // git inherits the locked descriptor, so the lock lasts as long as the repack.
    if rustix::io::fcntl_setfd(&lock, rustix::io::FdFlags::empty()).is_err() {
        return;
    }
    let mut child = crate::git::command::at(common);
    child
        // One thread: the other cores stay with the work that goes on meanwhile.
        .args([
            "-c",
            "pack.threads=1",
            "repack",
            "-d",
            "-q",
            "--geometric=2",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    if detach {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(common.join("hyperion/repack.log"))
            .map_or_else(|_| std::process::Stdio::null(), std::process::Stdio::from);
        child.stderr(log).process_group(0);
    } else {
        child.stderr(std::process::Stdio::piped());
    }
    let child = child.spawn();
    drop(lock);
    match child {
        Ok(child) => {
            rolling.insert(
                common.to_owned(),
                RollUp {
                    child,
                    packs,
                    started: std::time::Instant::now(),
                    detached: detach,
                },
            );
        }
        Err(e) => tracing::warn!(packs, error = %e, "could not run git repack"),
    }
}

/// Wait for the roll-ups this process started (see [`roll_up`]), but for detached ones
/// ([`detach_roll_ups`]), which are left running, then join the packs this process wrote
/// if they hold `join_from` objects or more ([`join_written`]). A command calls this before
/// it exits; with roll-ups not detached, no repack outlives it.
pub fn finish_roll_up(join_from: usize) {
    // Whatever this thread still keeps was written for refs it will not update now.
    release_keeps();
    let running: Vec<RollUp> = rolling().drain().map(|(_, r)| r).collect();
    for r in running {
        r.finish();
    }
    join_written(join_from);
}

/// Join the packs this thread wrote into one per repository, when it wrote several holding
/// `join_from` objects or more in all (the queue passes a chunk's worth, see
/// `queue::store::chunk`: fewer are the few packs of one request's steps, which the
/// roll-up of small packs takes in time, and joining them would cost a worker's one-request
/// drain a new pack and index to write and four packs to delete, a tenth of its time): a
/// command working through a large queue writes one pack per chunk of requests (see
/// `queue::store::chunk`), and every object lookup afterwards searches the index of each pack
/// in turn, so that a pass over 100,000 chains cost more per chain than one over 10,000.
/// Joined, the packs a command leaves are as few for any size of queue. The packs are
/// hyperion's own (whole objects, no deltas), so joining copies their entries as they are:
/// no object is decompressed, and only the entries' ids, offsets and checksums are held in
/// memory. Called once the refs that need their objects exist (their keeps are gone).
/// Best effort: a pack already gone (a concurrent `git repack -d` took it), still kept, or
/// not as hyperion writes them is left out; a failure leaves the packs as they were.
pub fn join_written(join_from: usize) {
    let mut by_repo: std::collections::BTreeMap<PathBuf, (Vec<PathBuf>, usize)> =
        Default::default();
    for (common, pack, objects) in WRITTEN.with_borrow_mut(std::mem::take) {
        let entry = by_repo.entry(common).or_default();
        entry.0.push(pack);
        entry.1 += objects;
    }
    for (common, (packs, objects)) in by_repo {
        if objects >= join_from {
            join_packs(&common, packs);
        }
    }
}

/// Join `packs` of the repository whose common git directory is `common` (see
/// [`join_written`]), removing them once the joined pack is in place. Returns the joined pack.
fn join_packs(common: &Path, packs: Vec<PathBuf>) -> Option<PathBuf> {
    let packs: Vec<PathBuf> = packs
        .into_iter()
        .filter(|p| p.exists() && !p.with_extension("keep").exists())
        .collect();
    if packs.len() < 2 {
        return None;
    }
    // Not while a roll-up is at work on the same packs.
    let _lock = repack_lock(common)?;
    let started = std::time::Instant::now();
    match join(&packs) {
        Ok(Some(joined)) => {
            for p in &packs {
                remove_pack(common, p);
            }
            tracing::debug!(packs = packs.len(), joined = %joined.display(), took = ?started.elapsed(), "joined the packs of this process");
            Some(joined)
        }
        Ok(None) => {
            tracing::debug!(
                packs = packs.len(),
                "packs left as they are (gone, or not hyperion's own form)"
            );
            None
        }
        Err(e) => {
            tracing::warn!(packs = packs.len(), error = %e, "could not join this process's packs");
            None
        }
    }
}

/// Small packs are joined in process once this many would be joined ([`join_small`]).
const JOIN_SMALL_FROM: usize = 8;

/// Packs larger than this are left to the roll-up ([`roll_up`]).
const SMALL_PACK: u64 = 4 << 20;

/// Join the small packs of `dir` (the pack directory of `common`, whose file `names` are
/// given) that hyperion wrote and whose refs exist, once there are [`JOIN_SMALL_FROM`] of
/// them to join, as a geometric repack would: sorted by size, every pack that is not at
/// least twice as large as all smaller ones together is joined with them, so that a byte is
/// copied a few times over the life of a queue, not once per join. A worker's one-request
/// drain writes four small packs and an enqueue one; joined, they neither slow object lookups
/// down nor wait for the roll-up, which runs `git repack` next to the work. The joined packs'
/// files become spares for the packs that later processes write ([`remove_pack`]): a
/// request's steps then create no file. Returns how many packs were joined into one, `None`
/// when none were.
///
/// Candidates are packs of no more than [`SMALL_PACK`] bytes that their owner may write (git
/// makes its own packs read-only) with only an index beside them: no `.keep` (a writer's
/// refs may not exist yet, or the pack is someone's to keep), and none of the files git
/// writes beside its own packs (`.rev`, `.bitmap`, `.promisor`, `.mtimes`). [`join`] copies
/// only whole-object entries and leaves everything as it was otherwise.
fn join_small(
    common: &Path,
    dir: &Path,
    names: &std::collections::HashSet<String>,
) -> Option<usize> {
    let mut small: Vec<(u64, PathBuf)> = Vec::new();
    for name in names {
        let Some(stem) = name.strip_suffix(".idx") else {
            continue;
        };
        if ["keep", "rev", "bitmap", "promisor", "mtimes"]
            .iter()
            .any(|ext| names.contains(&format!("{stem}.{ext}")))
            || !names.contains(&format!("{stem}.pack"))
        {
            continue;
        }
        let pack = dir.join(format!("{stem}.pack"));
        match std::fs::metadata(&pack) {
            // git makes its packs read-only; hyperion's are written into files it can write
            // again. Without that check, a repository whose git writes no `.rev` would have
            // its fetched packs read by every join only to find deltas in them.
            Ok(meta)
                if meta.len() <= SMALL_PACK
                    && std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o200
                        != 0 =>
            {
                small.push((meta.len(), pack))
            }
            _ => {}
        }
    }
    if small.len() < JOIN_SMALL_FROM {
        return None;
    }
    small.sort();
    let (mut below, mut upto) = (0u64, 0usize);
    for (i, (size, _)) in small.iter().enumerate() {
        if *size < 2 * below {
            upto = i + 1;
        }
        below += size;
    }
    if upto < JOIN_SMALL_FROM {
        return None;
    }
    let packs: Vec<PathBuf> = small.into_iter().take(upto).map(|(_, p)| p).collect();
    let n = packs.len();
    join_packs(common, packs).map(|_| n)
}

/// `hyperion/repack.lock` of `common`, taken without waiting: `None` when another process
/// holds it (or it cannot be opened).
fn repack_lock(common: &Path) -> Option<std::fs::File> {
    let _ = std::fs::create_dir_all(common.join("hyperion"));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(common.join("hyperion/repack.lock"))
        .ok()?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).ok()?;
    Some(lock)
}

/// Remove a pack the way git does: its index first (no new reader finds it), then the rest.
/// The index and the pack file become spares for the packs later processes write
/// ([`crate::git::spare::leave`]).
fn remove_pack(common: &Path, pack: &Path) {
    for ext in ["idx", "pack", "rev", "bitmap", "mtimes"] {
        let path = pack.with_extension(ext);
        if matches!(ext, "idx" | "pack") {
            crate::git::spare::leave(common, &path, crate::git::spare::Kind::Pack);
        } else {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The entries of a pack as its version 2 index lists them: `(id, offset, crc32)`, and the
/// pack's checksum. `None` when the index is not of that form.
fn read_index(idx: &[u8]) -> Option<(Vec<Entry>, ObjectId)> {
    if idx.len() < 8 + 1024 + 40
        || idx[..4] != [0xff, b't', b'O', b'c']
        || idx[4..8] != [0, 0, 0, 2]
    {
        return None;
    }
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(idx.get(at..at + 4)?.try_into().ok()?))
    };
    let n = word(8 + 255 * 4)? as usize;
    let ids = 8 + 1024;
    let crcs = ids + n * 20;
    let offsets = crcs + n * 4;
    let large = offsets + n * 4;
    let large_count = (0..n)
        .filter_map(|i| word(offsets + i * 4))
        .filter(|o| o & 0x8000_0000 != 0)
        .count();
    let pack_sum_at = large + large_count * 8;
    if idx.len() != pack_sum_at + 40 {
        return None;
    }
    let mut entries = Vec::with_capacity(n);
    for i in 0..n {
        let id = ObjectId::try_from(&idx[ids + i * 20..ids + i * 20 + 20]).ok()?;
        let crc = word(crcs + i * 4)?;
        let raw = word(offsets + i * 4)?;
        let offset = if raw & 0x8000_0000 == 0 {
            u64::from(raw)
        } else {
            let at = large + (raw & 0x7fff_ffff) as usize * 8;
            u64::from_be_bytes(idx.get(at..at + 8)?.try_into().ok()?)
        };
        entries.push((id, offset, crc));
    }
    let pack_sum = ObjectId::try_from(&idx[pack_sum_at..pack_sum_at + 20]).ok()?;
    Some((entries, pack_sum))
}

/// Write one pack (and its index) holding every object of `packs`, each once, by copying
/// their entries. `None` when a pack is gone or is not as [`PackBuilder`] writes them (an
/// entry is a delta, or its index and pack disagree); nothing is written then.
fn join(packs: &[PathBuf]) -> std::io::Result<Option<PathBuf>> {
    use std::io::{Read, Seek};
    let dir = packs[0]
        .parent()
        .expect("a pack lies in a directory")
        .to_owned();
    let mut sources = Vec::with_capacity(packs.len());
    let mut count = 0usize;
    for pack in packs {
        let (Ok(idx), Ok(file)) = (
            std::fs::read(pack.with_extension("idx")),
            std::fs::File::open(pack),
        ) else {
            return Ok(None);
        };
        let Some((mut entries, sum)) = read_index(&idx) else {
            return Ok(None);
        };
        let len = file.metadata()?.len();
        if len < 32 {
            return Ok(None);
        }
        entries.sort_by_key(|e| e.1);
        count += entries.len();
        sources.push((file, entries, sum, len));
    }
    let mut tmp = Tmp::new(&dir, "tmp_pack_")?;
    let mut hasher = gix::hash::hasher(gix::hash::Kind::Sha1);
    let mut out = std::io::BufWriter::with_capacity(1 << 20, &mut tmp.file);
    let mut offset = 0u64;
    let mut put = |out: &mut std::io::BufWriter<&mut std::fs::File>,
                   bytes: &[u8],
                   hasher: &mut gix::hash::Hasher|
     -> std::io::Result<u64> {
        hasher.update(bytes);
        out.write_all(bytes)?;
        let at = offset;
        offset += bytes.len() as u64;
        Ok(at)
    };
    let mut seen = std::collections::HashSet::with_capacity(count);
    let mut joined = Vec::with_capacity(count);
    // The count in the header is known only at the end: entries seen twice are left out.
    let unique = {
        let mut all: std::collections::HashSet<ObjectId> =
            std::collections::HashSet::with_capacity(count);
        for (_, entries, _, _) in &sources {
            all.extend(entries.iter().map(|e| e.0));
        }
        all.len()
    };
    let mut header = Vec::with_capacity(12);
    header.extend_from_slice(b"PACK");
    header.extend_from_slice(&2u32.to_be_bytes());
    header.extend_from_slice(&(unique as u32).to_be_bytes());
    put(&mut out, &header, &mut hasher)?;
    let mut buf = Vec::new();
    for (file, entries, sum, len) in &mut sources {
        let mut head = [0u8; 12];
        file.read_exact(&mut head)?;
        let mut trailer = [0u8; 20];
        file.seek(std::io::SeekFrom::Start(*len - 20))?;
        file.read_exact(&mut trailer)?;
        if head[..8] != *b"PACK\0\0\0\x02"
            || u32::from_be_bytes(head[8..12].try_into().expect("4 bytes")) as usize
                != entries.len()
            || trailer != *sum.as_bytes()
        {
            return Ok(None);
        }
        let ends: Vec<u64> = entries
            .iter()
            .skip(1)
            .map(|e| e.1)
            .chain([*len - 20])
            .collect();
        file.seek(std::io::SeekFrom::Start(12))?;
        let mut reader = std::io::BufReader::with_capacity(1 << 20, &*file);
        let mut at = 12u64;
        for ((id, start, crc), end) in entries.iter().zip(ends) {
            if *start != at || end <= *start {
                return Ok(None);
            }
            buf.resize((end - start) as usize, 0);
            reader.read_exact(&mut buf)?;
            at = end;
            // Whole objects only (types 1 to 4): a delta's base lies in its own pack.
            if !matches!((buf[0] >> 4) & 7, 1..=4) {
                return Ok(None);
            }
            if seen.insert(*id) {
                let new = put(&mut out, &buf, &mut hasher)?;
                joined.push((*id, new, *crc));
            }
        }
    }
    let pack_sum = hasher.try_finalize().map_err(std::io::Error::other)?;
    out.write_all(pack_sum.as_bytes())?;
    out.flush()?;
    drop(out);
    let name = format!("pack-{pack_sum}");
    let final_pack = dir.join(format!("{name}.pack"));
    if dir.join(format!("{name}.idx")).exists() {
        return Ok(None);
    }
    tmp.persist(&final_pack)?;
    let idx = index(joined, &pack_sum);
    put_file(&dir, "tmp_idx_", &idx, &dir.join(format!("{name}.idx")))?;
    Ok(Some(final_pack))
}

/// Where an object lies.
#[derive(Debug, Clone)]
pub enum Place {
    /// In a pack, at this entry.
    Packed(gix::odb::pack::data::entry::Location),
    /// Present, but not found in a pack: a loose object, or one whose place was not asked
    /// for (a walk that only checks blobs are there).
    Elsewhere,
    Missing,
}

/// A handle on `repo`'s objects that can tell where each lies in the packs and hand out
/// pack entries as stored (gix's pack-generation calls), for [`sort_by_location`] and
/// [`copy_entries`].
pub fn locator(repo: &gix::Repository) -> gix::OdbHandle {
    let mut handle = repo.objects.clone();
    handle.prevent_pack_unload();
    handle
}

/// Append `objects` to `out` as entries of one pack, each whole (no deltas) and each the way
/// it is stored where it can be: an object whose pack entry is whole has that entry's bytes
/// copied as they are (header and zlib stream: no inflating, no deflating; a few hundred
/// bytes each for a request's objects), read in pack order so that the packs are read front
/// to back; one stored as a delta (its base is elsewhere in its pack), or loose, is read and
/// written whole ([`entry_body`]). `odb` is a [`locator`] on `repo`. Returns the number of
/// entries written.
pub fn copy_entries(
    repo: &gix::Repository,
    odb: &gix::OdbHandle,
    objects: &mut [(ObjectId, Kind, Place)],
    out: &mut impl std::io::Write,
    pages: &mut crate::git::os::PageBudget,
) -> crate::Result<u32> {
    use gix::odb::pack::Find;
    let at = |p: &Place| match p {
        Place::Packed(l) => (l.pack_id, l.pack_offset),
        _ => (u32::MAX, u64::MAX),
    };
    objects.sort_by_key(|(_, _, place)| at(place));
    let err = |e: std::io::Error| crate::Error::io("could not write the archive", e);
    let mut count = 0u32;
    for (i, (id, kind, place)) in objects.iter().enumerate() {
        if i % 64 == 0 {
            pages.read_one();
        }
        let stored = match place {
            Place::Packed(l) => odb.entry_by_location(l),
            _ => None,
        };
        // The type in an entry's first byte: 1-4 a whole object, 6 and 7 deltas.
        match stored {
            Some(e) if matches!(e.data.first().map(|b| (b >> 4) & 7), Some(1..=4)) => {
                out.write_all(&e.data).map_err(err)?;
            }
            _ => {
                let object = repo
                    .find_object(*id)
                    .map_err(|e| crate::Error::object(format!("could not read object {id}"), e))?;
                out.write_all(&entry_body(*kind, &object.data).map_err(err)?)
                    .map_err(err)?;
            }
        }
        count += 1;
    }
    Ok(count)
}

/// Sort `items` by where the object `key` gives for each lies in the packs (pack, then
/// offset; loose and missing objects last, in their given order): an order that reads the
/// packs front to back. A pass over many chains in id order jumps across every pack for
/// each chain, and each jump maps cached pages around it (up to a 2 MiB folio since Linux
/// 6.18); in pack order consecutive chains share those pages. Only an order: nothing is
/// read but the packs' indexes.
pub fn sort_by_location<T>(
    repo: &gix::Repository,
    items: &mut Vec<T>,
    key: impl Fn(&T) -> ObjectId,
) {
    use gix::odb::pack::Find;
    let handle = locator(repo);
    let mut buf = Vec::new();
    let mut keyed: Vec<(u32, u64, usize)> = items
        .iter()
        .enumerate()
        .map(
            |(i, item)| match handle.location_by_oid(&key(item), &mut buf) {
                Ok(Some(at)) => (at.pack_id, at.pack_offset, i),
                _ => (u32::MAX, u64::MAX, i),
            },
        )
        .collect();
    keyed.sort_unstable();
    let mut old: Vec<Option<T>> = std::mem::take(items).into_iter().map(Some).collect();
    *items = keyed
        .into_iter()
        .map(|(_, _, i)| old[i].take().expect("each index once"))
        .collect();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = crate::git::command::text(dir, args).expect("git succeeds");
        out.trim().to_owned()
    }

    /// A new repository: its directory, its git directory, its object directory.
    fn repo() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        git(dir.path(), &["init", "-q"]);
        let common = dir.path().join(".git");
        let objects = common.join("objects");
        (dir, common, objects)
    }

    /// A pack of one blob written by git itself (`git pack-objects`, which writes a `.rev`
    /// beside it): not one of hyperion's, so [`join_small`] leaves it to the roll-up.
    fn git_pack(common: &Path, data: &[u8]) -> ObjectId {
        let id = crate::git::command::run(
            common,
            &["hash-object", "-w", "--stdin"],
            data,
            "hash-object",
        )
        .expect("hash-object");
        let id = String::from_utf8(id).expect("hex").trim().to_owned();
        let base = common.join("objects/pack/pack");
        let name = crate::git::command::run(
            common,
            &["pack-objects", "-q", base.to_str().expect("utf-8")],
            format!("{id}\n").as_bytes(),
            "pack-objects",
        )
        .expect("pack-objects");
        let name = String::from_utf8(name).expect("hex").trim().to_owned();
        assert!(
            common
                .join(format!("objects/pack/pack-{name}.rev"))
                .exists(),
            "git writes a reverse index"
        );
        ObjectId::from_hex(id.as_bytes()).expect("an id")
    }

    fn count_packs(objects: &Path) -> usize {
        std::fs::read_dir(objects.join("pack"))
            .expect("pack dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".idx"))
            .count()
    }

    /// Small packs hyperion wrote are joined in process once there are enough of them (and
    /// no `git repack` runs): every object stays readable, a kept pack and git's own packs
    /// are left alone, and the joined packs' files become spares that the next pack this
    /// repository gets is written into, so that it creates no file.
    #[test]
    fn small_packs_are_joined_and_their_files_written_again() {
        let (dir, common, objects) = repo();
        let mut ids = Vec::new();
        let theirs = git_pack(&common, b"git's own pack\n");
        // Read-only, as git leaves its packs, and without its reverse index (a git told not
        // to write one): still git's, left alone.
        for e in std::fs::read_dir(objects.join("pack"))
            .expect("pack dir")
            .flatten()
        {
            if e.path().extension().is_some_and(|x| x == "rev") {
                std::fs::remove_file(e.path()).expect("rm");
            }
        }
        for p in 0..JOIN_SMALL_FROM {
            let mut pack = PackBuilder::new();
            for i in 0..3 {
                ids.push(pack.add(Kind::Blob, format!("pack {p} object {i}\n").into_bytes()));
            }
            pack.write(&objects).expect("write");
        }
        settle();
        // Written after the settling: kept, as if its refs did not exist yet.
        let mut kept = PackBuilder::new();
        let kept_id = kept.add(Kind::Blob, b"kept\n".to_vec());
        let kept = kept.write(&objects).expect("write").expect("a pack");
        let before = count_packs(&objects);
        assert_eq!(before, JOIN_SMALL_FROM + 2);
        roll_up_at(&common, false);
        assert_eq!(
            count_packs(&objects),
            3,
            "the joined one, the kept one and git's own"
        );
        assert!(kept.exists() && kept.with_extension("keep").exists());
        finish_roll_up(usize::MAX);
        assert!(
            !common.join("hyperion/repack.log").exists(),
            "no git repack ran"
        );
        let spares = || -> Vec<u64> {
            use std::os::unix::fs::MetadataExt;
            // Those of packs (the rest are keeps, kept as ref files are).
            std::fs::read_dir(common.join(crate::git::spare::DIR))
                .map(|d| {
                    d.flatten()
                        .filter(|e| e.file_name().to_string_lossy().starts_with("p-"))
                        .filter_map(|e| e.metadata().ok())
                        .map(|m| m.ino())
                        .collect()
                })
                .unwrap_or_default()
        };
        if crate::git::os::linux_paths() {
            let left = spares();
            assert_eq!(
                left.len(),
                2 * JOIN_SMALL_FROM,
                "each joined pack's two files"
            );
            // The pool is read by a process when it first takes a spare; forget this one's.
            crate::git::spare::forget(&common);
            let mut next = PackBuilder::new();
            ids.push(next.add(Kind::Blob, b"written into spares\n".to_vec()));
            let next = next.write(&objects).expect("write").expect("a pack");
            use std::os::unix::fs::MetadataExt;
            let inode = |p: PathBuf| std::fs::metadata(p).expect("stat").ino();
            for file in [next.clone(), next.with_extension("idx")] {
                assert!(left.contains(&inode(file)), "written into a spare");
            }
            assert_eq!(spares().len(), 2 * JOIN_SMALL_FROM - 2);
        }
        settle();
        for id in ids.iter().chain([&kept_id, &theirs]) {
            git(dir.path(), &["cat-file", "-e", &id.to_string()]);
        }
        git(dir.path(), &["fsck", "--strict", "--no-dangling"]);
    }

    /// A pack [`persist`] writes holds the objects in the order they were written (a chain's
    /// objects together), not in the order of their ids; and [`sort_by_location`] orders
    /// items by where their objects lie.
    #[test]
    fn objects_reach_the_pack_in_the_order_they_were_written() {
        let (dir, _common, objects) = repo();
        let mut repo = gix::open(dir.path()).expect("open");
        repo.objects.enable_object_memory();
        // Ids in an order other than the writing order (checked below).
        let written: Vec<ObjectId> = (0..64)
            .map(|i| write_object(&repo, Kind::Blob, format!("object {i}\n").as_bytes()))
            .collect::<crate::Result<_>>()
            .expect("write");
        let mut sorted = written.clone();
        sorted.sort();
        assert_ne!(sorted, written, "the test needs ids out of order");
        assert_eq!(persist(&repo).expect("persist"), 64);
        settle();
        let repo = gix::open(dir.path()).expect("open again");
        let idx = std::fs::read_dir(objects.join("pack"))
            .expect("pack dir")
            .map(|e| e.expect("entry").path())
            .find(|p| p.extension().is_some_and(|e| e == "idx"))
            .expect("an index");
        let index = gix::odb::pack::index::File::at(&idx, gix::hash::Kind::Sha1).expect("idx");
        let offset = |id: &ObjectId| {
            let n = index.lookup(id).expect("in the pack");
            index.pack_offset_at_index(n)
        };
        let offsets: Vec<u64> = written.iter().map(offset).collect();
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "written order: {offsets:?}"
        );
        let mut by_id = sorted.clone();
        sort_by_location(&repo, &mut by_id, |id| *id);
        assert_eq!(by_id, written);
    }

    /// A detached roll-up is not waited for: [`finish_roll_up`] returns while git still holds
    /// the lock, the repack ends on its own (its messages in `hyperion/repack.log`), and every
    /// object is still there.
    #[test]
    fn a_detached_roll_up_outlives_the_wait_for_it() {
        let (dir, common, _objects) = repo();
        // git's own packs: hyperion's small ones would be joined in process instead.
        let ids: Vec<ObjectId> = (0..PACKS_BEFORE_ROLL_UP)
            // Some weight, so that the repack takes a moment.
            .map(|p| git_pack(&common, &vec![p as u8; 256 << 10]))
            .collect();
        roll_up_at(&common, true);
        let started = std::time::Instant::now();
        finish_roll_up(0);
        let lock = std::fs::File::open(common.join("hyperion/repack.lock")).expect("lock file");
        let held = rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockShared);
        assert!(
            held.is_err(),
            "the repack still runs once the wait returned"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockShared)
            .expect("the repack ends on its own");
        assert!(common.join("hyperion/repack.log").exists());
        for id in ids {
            git(dir.path(), &["cat-file", "-e", &id.to_string()]);
        }
    }

    /// Many small packs are rolled up by a `git repack` that runs while this process goes on,
    /// holding `hyperion/repack.lock` for as long as it runs; [`finish_roll_up`] waits for it.
    #[test]
    fn small_packs_are_rolled_up_in_the_background() {
        let (dir, common, objects) = repo();
        // git's own packs: hyperion's small ones would be joined in process instead.
        let ids: Vec<ObjectId> = (0..PACKS_BEFORE_ROLL_UP)
            .map(|p| git_pack(&common, format!("pack {p}\n").as_bytes()))
            .collect();
        let count = || count_packs(&objects);
        assert_eq!(count(), PACKS_BEFORE_ROLL_UP);
        roll_up_at(&common, false);
        let lock = std::fs::File::open(common.join("hyperion/repack.lock")).expect("lock file");
        let held = rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockShared);
        assert!(held.is_err(), "git holds the lock while it runs");
        finish_roll_up(0);
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockShared)
            .expect("the lock is free once the repack is done");
        assert!(count() < PACKS_BEFORE_ROLL_UP, "rolled up: {}", count());
        for id in ids {
            git(dir.path(), &["cat-file", "-e", &id.to_string()]);
        }
    }

    /// The packs a thread wrote are joined into one holding each of their objects once, by
    /// copying the entries: git reads every object from it, `git fsck` and `git verify-pack`
    /// find it sound, and the packs joined are gone.
    #[test]
    fn the_packs_a_thread_wrote_are_joined_into_one() {
        let (dir, common, objects) = repo();
        let mut ids = Vec::new();
        let mut packs = Vec::new();
        for p in 0..4 {
            let mut pack = PackBuilder::new();
            // One object in two packs: joined once.
            ids.push(pack.add(Kind::Blob, b"in two packs\n".to_vec()));
            for i in 0..50 {
                // Some large enough to be compressed, some stored.
                let size = if i % 2 == 0 { 10 } else { 4000 };
                ids.push(pack.add(
                    Kind::Blob,
                    format!("pack {p} object {i} {}\n", "x".repeat(size)).into_bytes(),
                ));
            }
            packs.push(pack.write(&objects).expect("write").expect("a pack"));
        }
        settle();
        let joined = join_packs(&common, packs.clone()).expect("joined");
        for p in &packs {
            assert!(
                !p.exists() && !p.with_extension("idx").exists(),
                "{} is gone",
                p.display()
            );
        }
        let left: Vec<_> = std::fs::read_dir(objects.join("pack"))
            .expect("pack dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".idx"))
            .collect();
        assert_eq!(left.len(), 1, "one pack left");
        let verified = git(
            dir.path(),
            &[
                "verify-pack",
                "-v",
                joined.with_extension("idx").to_str().expect("utf-8"),
            ],
        );
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert!(
            verified.contains(&format!("non delta: {} objects", unique.len())),
            "{verified}"
        );
        for id in &ids {
            git(dir.path(), &["cat-file", "-e", &id.to_string()]);
        }
        git(dir.path(), &["fsck", "--strict", "--no-dangling"]);
    }

    /// A pack with much to compress is compressed on two threads, into the very bytes one
    /// thread writes, and git reads every object of it back.
    #[test]
    fn a_pack_compressed_on_two_threads_is_the_pack_one_thread_writes() {
        let (dir, _common, objects) = repo();
        let mut pack = PackBuilder::new();
        let mut ids = Vec::new();
        for i in 0..9 {
            // Large, compressible, of uneven sizes; small ones between them.
            let text: String = (0..(i * 900 + 200))
                .map(|l| format!("{i} line {l}\n"))
                .collect();
            ids.push(pack.add(Kind::Blob, text.into_bytes()));
            ids.push(pack.add(Kind::Blob, format!("small {i}\n").into_bytes()));
        }
        let total: usize = pack.objects.iter().map(|(_, _, d)| d.len()).sum();
        assert!(total >= 2 * PARALLEL_FROM, "{total} bytes");
        let one_thread: Vec<Vec<u8>> = pack
            .objects
            .iter()
            .map(|(_, kind, data)| entry_body(*kind, data).expect("encode"))
            .collect();
        assert_eq!(bodies(&pack.objects).expect("encode"), one_thread);
        let written = pack.write(&objects).expect("write").expect("a pack");
        settle();
        let verified = git(
            dir.path(),
            &[
                "verify-pack",
                "-v",
                written.with_extension("idx").to_str().expect("utf-8"),
            ],
        );
        assert!(
            verified.contains(&format!("non delta: {} objects", ids.len())),
            "{verified}"
        );
        for id in &ids {
            git(dir.path(), &["cat-file", "-e", &id.to_string()]);
        }
    }

    /// A pack git wrote with deltas is not of hyperion's form: it is left as it is, and so are
    /// the packs that were to be joined with it.
    #[test]
    fn a_pack_with_deltas_is_never_joined() {
        let (dir, common, objects) = repo();
        let text: String = (0..400).map(|i| format!("line {i}\n")).collect();
        for i in 0..3 {
            std::fs::write(dir.path().join("f"), format!("{text}{i}\n")).expect("write");
            git(dir.path(), &["add", "f"]);
            git(dir.path(), &["commit", "-qm", &format!("c{i}")]);
        }
        git(dir.path(), &["repack", "-adq"]);
        let gits: Vec<PathBuf> = std::fs::read_dir(objects.join("pack"))
            .expect("pack dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "pack"))
            .collect();
        assert_eq!(gits.len(), 1);
        assert!(
            git(
                dir.path(),
                &[
                    "verify-pack",
                    "-v",
                    gits[0].with_extension("idx").to_str().expect("utf-8")
                ]
            )
            .contains("chain length"),
            "git's pack has deltas"
        );
        let mut pack = PackBuilder::new();
        pack.add(Kind::Blob, b"ours\n".to_vec());
        let ours = pack.write(&objects).expect("write").expect("a pack");
        settle();
        assert_eq!(
            join_packs(&common, vec![ours.clone(), gits[0].clone()]),
            None
        );
        assert!(ours.exists() && gits[0].exists());
        git(dir.path(), &["fsck", "--strict"]);
    }
}
