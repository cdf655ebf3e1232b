//! The derived index: two files of our own under `$GIT_DIR/hyperion/index/`.
//!
//! It holds, per request, the chain tip it was built from and the record at that tip, and
//! orders the ready queue by (priority, enqueue time). It is never the source of truth: every
//! entry remembers the tip it reflects and [`Index::reconcile`] compares those with the refs,
//! re-reading only what moved. Deleting the directory loses nothing.
//!
//! Storage (see docs/storage.md, "The index"):
//! - `keys`: a header (format version, the id of the `records` file it goes with), then
//!   append-only frames, each with its length and CRC-32: per request its id, tip, status,
//!   priority, enqueue time and where its record is in `records`; removals; the [`Meta`]
//!   (stamp). Small: opening reads and checks it whole, and that is all a `dequeue` reads
//!   besides the records it takes.
//! - `records`: a header, then the records' JSON, appended; each one's CRC-32 is in its
//!   `keys` entry, and it is read (and checked) only when asked for.
//!
//! A process writes its changes at [`Index::close`]: records first, then their entries, then
//! the stamp they reflect, so a process that dies first leaves an older stamp (and the next one
//! rescans). When superseded frames outnumber live ones, or after [`Index::clear`], both files
//! are written anew and renamed into place (`records` first; the shared id tells a new one
//! from an old one).
//!
//! Any problem reading it (a wrong version, a bad checksum, a truncation, a missing or
//! unreadable file, a directory where a file should be or a file where the directory should
//! be, an I/O error) discards it: it is rebuilt from the refs by the next reconcile, in time
//! proportional to the number of requests. A record found damaged later is read from git
//! instead, and the index is discarded at close. Where even that fails (the directory cannot
//! be written), the command answers from the refs. The index never fails a command.
//!
//! One process at a time holds it, by an exclusive `flock` on `lock`. A process opens it for a
//! run of queue operations and closes it before any long step (applying, checks, sleeping)
//! and at exit. [`Index::open`] retries briefly when another process has it and reports
//! `None` when it stays busy; callers then answer from the refs.
//!
//! Freshness is checked cheaply: a [`Stamp`] of the refs (the loose-ref directory, which every
//! ref update renames a lock file into; `packed-refs`; and an exact update counter that every
//! hyperion writer bumps) is compared with the one the index was built at. Only when it moved
//! does [`Index::reconcile`] list the refs.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gix::ObjectId;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::queue::store::Store;
use crate::request::model::{Record, Status};

/// The first bytes of both files. Bump the version when the stored form changes; an index of
/// another version is discarded and rebuilt.
const MAGIC: &[u8; 16] = b"hyperion-index/4";
/// Magic, then the 8-byte id shared by the two files, then (in `keys`) the number of frames
/// the last rewrite wrote, in id order: the base, searched in place.
const HEADER: usize = 32;
/// Frame kinds in `keys`.
const ENTRY: u8 = 1;
const REMOVED: u8 = 2;
const META: u8 = 3;
/// No frame is larger: a length above it is damage, not a request to allocate.
const MAX_FRAME: usize = 1 << 20;
/// The status classes the index keeps apart.
const OTHER: u8 = 0;
const PENDING: u8 = 1;
const LEASED: u8 = 2;

pub struct Index {
    dir: PathBuf,
    /// Holds the `flock` while open.
    _lock: std::fs::File,
    /// The entries, by id.
    entries: Table,
    /// `keys` as opened (appended to at close); `None` when there was none.
    keys: Option<std::fs::File>,
    /// `records` as opened, and its length then; `None` when there was none.
    records: Option<std::fs::File>,
    records_len: u64,
    /// The id the two files share.
    file_id: u64,
    /// Records written since open, placed after `records_len`.
    new_records: Vec<u8>,
    /// `keys` frames written since open.
    new_keys: Vec<u8>,
    /// Write both files anew at close (a fresh or cleared index, or compaction).
    rewrite: bool,
    /// A read went wrong since open: discard the files at close.
    damaged: std::cell::Cell<bool>,
    /// Entries written by this process since the last [`Index::absorb_own_writes`].
    wrote: bool,
    /// The refs stamp the entries are known to reflect, and the store's own write count then.
    known: Option<(Stamp, u64)>,
    /// When this process opened it (see [`Index::wanted`]).
    opened_at: std::time::SystemTime,
    /// `index.wanted` beside it.
    wanted_path: PathBuf,
    /// How long this process's last full rescan ([`Index::reconcile`]) took, if it made one,
    /// and [`Stamp::bytes`] then.
    rescan_cost: Option<(std::time::Duration, u64)>,
    /// The stored [`Meta`], as this process last wrote or read it (one process holds the
    /// index at a time, so nobody else changes it meanwhile).
    meta: Option<Meta>,
    /// `meta` moved past the stored one without being written (see [`Index::absorb_own_writes`]).
    meta_unsaved: bool,
    /// This process's last ref updates, recorded here, to be taken as known at the next
    /// stamp read (see [`Index::absorb_own_writes`]).
    unsettled: Option<OwnWrites>,
}

/// One request's entry: what ordering and sweeping need, and where its record is.
#[derive(Debug, Clone, Copy)]
struct Slot {
    tip: ObjectId,
    class: u8,
    priority: u8,
    created: i128,
    /// Offset in `records` (or past its length: in `new_records`), length and CRC-32.
    at: u64,
    len: u32,
    crc: u32,
}

/// A pending request's place in the queue: priority descending, enqueue time, id (as
/// [`Record::queue_key`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct QueueKey<'a>(u8, i128, &'a str);

impl Slot {
    /// A removal, among the frames read at open.
    const REMOVED: Slot = Slot {
        tip: ObjectId::null(gix::hash::Kind::Sha1),
        class: OTHER,
        priority: 0,
        created: 0,
        at: 0,
        len: u32::MAX,
        crc: 0,
    };

    fn queue_key<'a>(&self, id: &'a str) -> QueueKey<'a> {
        QueueKey(9u8.saturating_sub(self.priority), self.created, id)
    }
}

/// The hash of the map of entries written since the last rewrite: ids are short and come from
/// our own refs, so a fast multiplicative hash (as in rustc's FxHash) is enough; SipHash's
/// resistance to chosen keys is not needed.
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }

    fn write_u8(&mut self, b: u8) {
        self.add(u64::from(b));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl IdHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// The entries: those the last rewrite of `keys` left (its base: in id order, ids read in
/// place from the file's bytes, found by binary search) and, over them, those written since
/// (`None`: removed). Opening builds no map of the whole queue.
#[derive(Default)]
struct Table {
    data: Vec<u8>,
    base: Vec<Base>,
    over: HashMap<String, Option<Slot>, std::hash::BuildHasherDefault<IdHasher>>,
    len: usize,
}

/// A base entry: its id at `data[id..id + id_len]`.
struct Base {
    id: u32,
    id_len: u32,
    slot: Slot,
}

impl Table {
    fn base_id(&self, b: &Base) -> &str {
        let bytes = &self.data[b.id as usize..(b.id + b.id_len) as usize];
        std::str::from_utf8(bytes).expect("checked at load")
    }

    fn in_base(&self, id: &str) -> Option<Slot> {
        let i = self
            .base
            .binary_search_by(|b| self.base_id(b).cmp(id))
            .ok()?;
        Some(self.base[i].slot)
    }

    fn get(&self, id: &str) -> Option<Slot> {
        match self.over.get(id) {
            Some(o) => *o,
            None => self.in_base(id),
        }
    }

    fn insert(&mut self, id: &str, slot: Slot) {
        if self.get(id).is_none() {
            self.len += 1;
        }
        self.over.insert(id.to_owned(), Some(slot));
    }

    fn remove(&mut self, id: &str) -> Option<Slot> {
        let old = self.get(id);
        if old.is_some() {
            self.len -= 1;
            self.over.insert(id.to_owned(), None);
        }
        old
    }

    /// Every live entry, in no particular order.
    fn iter(&self) -> impl Iterator<Item = (&str, Slot)> {
        let shadowed = !self.over.is_empty();
        self.base
            .iter()
            .map(|b| (self.base_id(b), b.slot))
            .filter(move |(id, _)| !shadowed || !self.over.contains_key(*id))
            .chain(
                self.over
                    .iter()
                    .filter_map(|(id, s)| s.map(|s| (id.as_str(), s))),
            )
    }

    /// Every live entry, in id order.
    fn sorted(&self) -> Vec<(&str, Slot)> {
        let mut v: Vec<(&str, Slot)> = self.iter().collect();
        if !self.over.is_empty() {
            v.sort_unstable_by_key(|(id, _)| *id);
        }
        v
    }
}

fn class_of(status: Status) -> u8 {
    match status {
        Status::Pending => PENDING,
        Status::Leased => LEASED,
        _ => OTHER,
    }
}

/// What [`Index::absorb_own_writes`] leaves for the next stamp read to settle.
#[derive(Debug, Clone, Copy)]
struct OwnWrites {
    /// The stamp the entries reflected before the updates.
    before: Stamp,
    /// How many ref updates this process made since then, all recorded in the entries.
    count: u64,
    /// The store's count of its own updates at the end: one more since means an update the
    /// entries may not reflect.
    total: u64,
    /// When the updates were recorded.
    at: jiff::Timestamp,
    /// How long after the first unverified stamp a full rescan is due (see [`REVERIFY`]),
    /// judged by what the refs are after the updates.
    window: std::time::Duration,
}

/// A cheap fingerprint of the request refs: the `stat` of the loose-ref directory (every ref
/// update renames a lock file into it) and of `packed-refs`. If it has not changed, no ref
/// has, and the index needs no rescan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    dir: Option<(i128, u64)>,
    packed: Option<(i128, u64, u64)>,
    /// [`Store::generation`]: exact for updates made by hyperion processes.
    generation: Option<(u64, u64)>,
    /// The size of the loose-ref directory: it grows with the number of refs.
    #[serde(default)]
    dir_len: u64,
}

/// Stamps with a modification time this close to a scan's start may hide a change made in the
/// same clock tick (file times advance in coarse ticks); they are re-verified later.
const RACY: jiff::SignedDuration = jiff::SignedDuration::from_millis(20);
/// How long an unverified stamp (racy, or moved by our own writes) is trusted before a full
/// rescan: the longest a concurrent foreign write can stay unseen — at least; see
/// [`reverify_after`].
const REVERIFY: jiff::SignedDuration = jiff::SignedDuration::from_secs(1);
/// A rescan is allowed this share of a busy process's time: a deep queue stretches
/// [`REVERIFY`] so that rescanning it every second does not become most of the work.
const RESCAN_SHARE: u32 = 50;
/// What a rescan costs at least per byte of refs ([`Stamp::bytes`]): a loose ref takes ~34
/// bytes of its directory, and a rescan of 20,000 (670 KB) took 70–150 ms on the development
/// machine.
const RESCAN_NS_PER_BYTE: u64 = 100;
/// After this many updates of its own, a process re-reads the stamp's size to judge what a
/// rescan will cost (three `stat`s; below it, the size before is close enough).
const GROWN_BY: u64 = 1000;
/// The longest an unverified stamp is trusted, however deep the queue.
const REVERIFY_MAX: jiff::SignedDuration = jiff::SignedDuration::from_secs(30);

/// How long after `at` an unverified stamp is re-verified, given what the last full rescan
/// cost this process.
fn reverify_after(at: jiff::Timestamp, rescan: std::time::Duration) -> jiff::Timestamp {
    let stretched = rescan
        .checked_mul(RESCAN_SHARE)
        .and_then(|d| jiff::SignedDuration::try_from(d).ok())
        .unwrap_or(REVERIFY_MAX);
    at + stretched.clamp(REVERIFY, REVERIFY_MAX)
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Meta {
    stamp: Stamp,
    /// Rescan once this time has passed, even if the stamp still matches.
    verify_after: Option<jiff::Timestamp>,
    /// How long the last full rescan took, in microseconds, whichever process made it: a
    /// process that has not rescanned yet stretches [`REVERIFY`] by it too (else its first
    /// re-verification of a deep queue would come after one second).
    #[serde(default)]
    rescan_us: Option<u64>,
    /// [`Stamp::bytes`] at that rescan.
    #[serde(default)]
    rescan_bytes: Option<u64>,
    /// When the first stamp taken without a rescan ([`Index::settle`]) since the last
    /// rescan was taken: the window before the next rescan runs from then.
    #[serde(default)]
    unverified_since: Option<jiff::Timestamp>,
}

impl Stamp {
    pub fn read(store: &Store) -> Stamp {
        let common = store.repo().common_dir();
        let dir = std::fs::metadata(common.join("refs/hyperion/requests")).ok();
        let packed = std::fs::metadata(common.join("packed-refs")).ok();
        Stamp {
            dir: dir.as_ref().map(|m| (mtime_ns(m), ino(m))),
            packed: packed.map(|m| (mtime_ns(&m), m.len(), ino(&m))),
            generation: store.generation(),
            dir_len: dir.map_or(0, |m| m.len()),
        }
    }

    /// How much the refs take: the loose-ref directory's size plus `packed-refs`'s. Both grow
    /// with the number of refs, and so does the cost of a rescan.
    fn bytes(&self) -> u64 {
        self.dir_len + self.packed.map_or(0, |p| p.1)
    }

    fn newest(&self) -> i128 {
        self.dir
            .map(|d| d.0)
            .into_iter()
            .chain(self.packed.map(|p| p.0))
            .max()
            .unwrap_or(0)
    }

    fn is_racy(&self, scan_start: jiff::Timestamp) -> bool {
        self.newest() >= (scan_start - RACY).as_nanosecond()
    }
}

fn mtime_ns(m: &std::fs::Metadata) -> i128 {
    m.modified()
        .ok()
        .and_then(|t| jiff::Timestamp::try_from(t).ok())
        .map(|t| t.as_nanosecond())
        .unwrap_or(0)
}

#[cfg(unix)]
fn ino(m: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(m)
}

#[cfg(not(unix))]
fn ino(_: &std::fs::Metadata) -> u64 {
    0
}

/// What [`Index::try_open`] could not do.
enum OpenError {
    /// Another process holds the lock.
    Busy,
    /// The directory cannot be used at all (not even rebuilt).
    Unusable(std::io::Error),
}

/// The files as read at open.
struct Loaded {
    entries: Table,
    meta: Option<Meta>,
    keys: Option<std::fs::File>,
    records: Option<std::fs::File>,
    records_len: u64,
    file_id: u64,
}

impl Loaded {
    fn fresh() -> Loaded {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Loaded {
            entries: Table::default(),
            meta: None,
            keys: None,
            records: None,
            records_len: HEADER as u64,
            file_id: nanos ^ (u64::from(crate::git::os::pid()) << 40),
        }
    }
}

/// What a reconciliation did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Reconciled {
    pub refs: usize,
    pub updated: usize,
    pub removed: usize,
}

impl Index {
    pub fn path(store: &Store) -> PathBuf {
        store.hyperion_dir().join("index")
    }

    /// Whether another process found the index busy since this one opened it. Opening costs
    /// milliseconds, so a worker keeps the index open from one batch to the next, and lets go
    /// when someone else asked for it (by touching `index.wanted`).
    pub fn wanted(&self) -> bool {
        // File times come from the kernel's coarse clock, a tick behind: a request made just
        // after the index was opened can carry an earlier time. One asked for shortly before
        // is counted too; at worst the index is reopened once more.
        let since = self.opened_at - std::time::Duration::from_secs(1);
        std::fs::metadata(&self.wanted_path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= since)
    }

    /// Open the index, waiting up to `wait` while another process holds it. `Ok(None)` when
    /// it stays busy, or when its directory cannot be used at all; a damaged index is
    /// discarded (and rebuilt by the next reconcile).
    pub fn open(dir: &Path, wait: Duration) -> Result<Option<Index>> {
        let start = Instant::now();
        let mut delay = Duration::from_millis(1);
        loop {
            match Index::try_open(dir) {
                Ok(index) => return Ok(Some(index)),
                Err(OpenError::Busy) => {
                    if delay == Duration::from_millis(1) {
                        // Tell the holder (a worker keeping it across batches) to let go.
                        let _ = std::fs::write(wanted_path(dir), b"");
                    }
                    if start.elapsed() >= wait {
                        tracing::debug!(path = %dir.display(), "index busy; answering from refs");
                        return Ok(None);
                    }
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_millis(20));
                }
                Err(OpenError::Unusable(e)) => {
                    tracing::warn!(path = %dir.display(), error = %e, "index unusable; answering from refs");
                    return Ok(None);
                }
            }
        }
    }

    fn try_open(dir: &Path) -> std::result::Result<Index, OpenError> {
        let lock = lock(dir)?;
        let loaded = match load(dir) {
            Ok(l) => l,
            Err(why) => {
                tracing::warn!(path = %dir.display(), problem = %why, "index unreadable; rebuilding it");
                for name in ["keys", "records"] {
                    discard(&dir.join(name));
                }
                Loaded::fresh()
            }
        };
        let rewrite = loaded.keys.is_none() || loaded.records.is_none();
        Ok(Index {
            dir: dir.to_owned(),
            _lock: lock,
            entries: loaded.entries,
            records: loaded.records,
            records_len: loaded.records_len,
            keys: loaded.keys,
            file_id: loaded.file_id,
            new_records: Vec::new(),
            new_keys: Vec::new(),
            rewrite,
            damaged: std::cell::Cell::new(false),
            wrote: false,
            known: None,
            opened_at: std::time::SystemTime::now(),
            wanted_path: wanted_path(dir),
            rescan_cost: None,
            meta: loaded.meta,
            meta_unsaved: false,
            unsettled: None,
        })
    }

    /// Make sure the index reflects the refs: a `stat` of the refs when nothing changed, a
    /// [`Index::reconcile`] when something did (or a stamp is due for re-verification).
    pub fn ensure_fresh(&mut self, store: &Store) -> Result<()> {
        let cur = Stamp::read(store);
        let now = jiff::Timestamp::now();
        if let Some(meta) = self.meta
            && meta.verify_after.is_none_or(|t| now < t)
            && (meta.stamp == cur || self.settle(store, meta, cur, now))
        {
            self.unsettled = None;
            self.known = Some((cur, store.own_writes()));
            return Ok(());
        }
        self.reconcile(store)?;
        Ok(())
    }

    /// After this process moved refs and recorded the moves here: let the next stamp read
    /// take the stamp it finds as known, so the next operation need not rescan — but only
    /// when the update counter moved by exactly our own updates, i.e. no other hyperion
    /// process wrote meanwhile (see [`Index::settle`]). Reading the stamp here and again at
    /// the next operation's start would cost three `stat`s per operation.
    pub fn absorb_own_writes(&mut self, store: &Store) -> Result<()> {
        if !self.wrote {
            return Ok(());
        }
        self.wrote = false;
        self.unsettled = None;
        let (Some(meta), Some((before, writes_then))) = (self.meta, self.known) else {
            return Ok(());
        };
        if before != meta.stamp {
            return Ok(());
        }
        let total = store.own_writes();
        let count = total - writes_then;
        // The rescan that re-verifies the stamp costs what the refs are *now*: after a large
        // batch (an enqueue of 100,000 into an empty queue), judged by the stamp before it,
        // a rescan of the whole queue would come after one second, in the next command.
        let size = if count >= GROWN_BY {
            Stamp::read(store)
        } else {
            before
        };
        self.unsettled = Some(OwnWrites {
            before,
            count,
            total,
            at: jiff::Timestamp::now(),
            window: self.expected_rescan(&size),
        });
        Ok(())
    }

    /// Take `cur` as the stamp the entries reflect if all that moved the refs since `meta`
    /// was this process's own updates, recorded here ([`Index::absorb_own_writes`]). A write
    /// by plain git (a fetch) in the same clock tick could still hide behind them, so such a
    /// stamp is re-verified by a rescan after [`REVERIFY`] — or at once, once that passed.
    fn settle(&mut self, store: &Store, meta: Meta, cur: Stamp, now: jiff::Timestamp) -> bool {
        let Some(own) = self.unsettled.take() else {
            return false;
        };
        let only_ours = match (own.before.generation, cur.generation) {
            (Some((before, ino_a)), Some((after, ino_b))) => {
                ino_a == ino_b && after == before + own.count
            }
            (None, Some((after, _))) => after == own.count,
            _ => false,
        };
        // The window runs from the first stamp taken unverified since the last rescan: a
        // process writing on and on (a worker, the chunks of a large enqueue) never puts the
        // rescan off further, but a queue that grew meanwhile gets the window of its size.
        let since = meta.unverified_since.unwrap_or(own.at);
        let deadline = reverify_after(since, own.window);
        if own.before != meta.stamp
            || store.own_writes() != own.total
            || !only_ours
            || now >= deadline
        {
            return false;
        }
        let verify_after = match (meta.unverified_since, meta.verify_after) {
            // A racy stamp of the last rescan is due when it is.
            (None, Some(racy)) => racy.min(deadline),
            _ => deadline,
        };
        // Kept in memory until the index is closed: a process that dies first leaves the
        // older stamp stored, which the next one finds moved, and rescans.
        self.meta = Some(Meta {
            stamp: cur,
            verify_after: Some(verify_after),
            unverified_since: Some(since),
            ..meta
        });
        self.meta_unsaved = true;
        true
    }

    /// What a full rescan is expected to cost: this process's last one, else the last one any
    /// process made, scaled by how much the refs grew since. A process that rescanned a
    /// shallow queue and then filled it (a large enqueue), or that has not rescanned at all
    /// (the stamp matched when it started), must not take a deep queue for a shallow one.
    fn expected_rescan(&self, now: &Stamp) -> std::time::Duration {
        let stored = || {
            let m = self.meta?;
            Some((
                std::time::Duration::from_micros(m.rescan_us?),
                m.rescan_bytes?,
            ))
        };
        // A rescan of a small queue is mostly fixed costs, and grown with the refs it would
        // promise too little for a deep one: never less than what rescans cost per byte of
        // refs here.
        let least = std::time::Duration::from_nanos(now.bytes().saturating_mul(RESCAN_NS_PER_BYTE));
        let Some((cost, then)) = self.rescan_cost.or_else(stored) else {
            return least;
        };
        // (A missing directory counts as one block: growth from nothing is not infinite.)
        let grown = (now.bytes() as f64 / then.max(4096) as f64).max(1.0);
        std::time::Duration::try_from_secs_f64(cost.as_secs_f64() * grown)
            .unwrap_or(std::time::Duration::MAX)
            .max(least)
    }

    fn set_meta(&mut self, meta: &Meta) {
        let bytes = serde_json::to_vec(meta).expect("Meta serialises");
        let mut payload = Vec::with_capacity(1 + bytes.len());
        payload.push(META);
        payload.extend_from_slice(&bytes);
        push_frame(&mut self.new_keys, &payload);
        self.meta = Some(*meta);
        self.meta_unsaved = false;
    }

    /// Bring the index in line with the refs: entries whose tip differs from the ref are
    /// re-read from git, entries without a ref are dropped, refs without an entry are added.
    pub fn reconcile(&mut self, store: &Store) -> Result<Reconciled> {
        self.reconcile_with(store, &mut |_| {})
    }

    /// [`Index::reconcile`], telling `on_scan` how many of the refs it has gone through (a
    /// rebuild reads every chain: `doctor --reindex`).
    pub fn reconcile_with(
        &mut self,
        store: &Store,
        on_scan: &mut crate::queue::OnScan<'_>,
    ) -> Result<Reconciled> {
        let start = jiff::Timestamp::now();
        let timer = Instant::now();
        let writes_before = store.own_writes();
        let stamp = Stamp::read(store);
        let refs = store.list()?;
        let mut stats = Reconciled {
            refs: refs.len(),
            ..Reconciled::default()
        };
        let mut known: HashMap<String, ObjectId> = HashMap::with_capacity(refs.len());
        for (id, slot) in self.entries.iter() {
            known.insert(id.to_owned(), slot.tip);
        }
        crate::git::os::pause_point("reconcile_index");
        // A rebuild reads every chain: the pages of the packs are given back as it goes, and
        // the records it writes go to the file a chunk at a time.
        let mut pages = crate::git::os::PageBudget;
        let chunk = crate::queue::store::chunk();
        let total = refs.len();
        for (i, (id, tip)) in refs.iter().enumerate() {
            if (i + 1).is_multiple_of(crate::queue::SCAN_STEP) || i + 1 == total {
                on_scan(crate::queue::Scan {
                    what: "index entries checked",
                    done: i + 1,
                    total,
                });
            }
            if known.remove(id) == Some(*tip) {
                continue;
            }
            pages.read_one();
            if stats.updated > 0 && stats.updated.is_multiple_of(chunk) {
                self.spill();
            }
            match store.read_record(id, *tip) {
                Ok(record) => {
                    self.put(*tip, &record)?;
                    stats.updated += 1;
                }
                Err(e) => {
                    tracing::warn!(request_id = %id, error = %e, "unreadable request left out of the index");
                    self.remove(id)?;
                }
            }
        }
        for id in known.keys() {
            self.remove(id)?;
            stats.removed += 1;
        }
        // Entries are written before the stamp, so an index that lost a tail of writes in a
        // crash never claims a stamp its entries do not reflect.
        let cost = timer.elapsed();
        self.rescan_cost = Some((cost, stamp.bytes()));
        self.set_meta(&Meta {
            stamp,
            verify_after: stamp.is_racy(start).then(|| reverify_after(start, cost)),
            rescan_us: Some(cost.as_micros().try_into().unwrap_or(u64::MAX)),
            rescan_bytes: Some(stamp.bytes()),
            unverified_since: None,
        });
        self.known = Some((stamp, writes_before));
        self.wrote = false;
        self.unsettled = None;
        tracing::debug!(
            refs = stats.refs,
            updated = stats.updated,
            removed = stats.removed,
            took = ?cost,
            "index reconciled with a rescan of the refs"
        );
        Ok(stats)
    }

    /// The indexed tip and record of `id`.
    pub fn get(&self, store: &Store, id: &str) -> Result<Option<(ObjectId, Record)>> {
        Ok(self
            .entries
            .get(id)
            .and_then(|slot| self.decode(store, id, &slot)))
    }

    /// Record that `id`'s chain is now at `tip` with `record`.
    pub fn put(&mut self, tip: ObjectId, record: &Record) -> Result<()> {
        self.put_entry(tip, record)
    }

    /// [`Index::put`] after this process moved the chain from a record in status `from` to
    /// `record`. (The entry keeps its place in the queue, so `from` is not needed; kept for
    /// the callers, which know it.)
    pub fn put_transition(
        &mut self,
        tip: ObjectId,
        record: &Record,
        _from: Option<Status>,
    ) -> Result<()> {
        self.put(tip, record)
    }

    fn put_entry(&mut self, tip: ObjectId, record: &Record) -> Result<()> {
        let json = serde_json::to_vec(&record.to_store()).expect("a Record always serialises");
        let slot = Slot {
            tip,
            class: class_of(record.status),
            priority: record.priority,
            created: record.created_at.as_nanosecond(),
            at: self.records_len + self.new_records.len() as u64,
            len: json.len() as u32,
            crc: crc32fast::hash(&json),
        };
        self.new_records.extend_from_slice(&json);
        push_frame(&mut self.new_keys, &entry_payload(&record.id, &slot));
        self.entries.insert(&record.id, slot);
        self.wrote = true;
        Ok(())
    }

    pub fn remove(&mut self, id: &str) -> Result<()> {
        if self.entries.remove(id).is_some() {
            let mut payload = vec![REMOVED];
            payload.extend_from_slice(id.as_bytes());
            push_frame(&mut self.new_keys, &payload);
        }
        self.wrote = true;
        Ok(())
    }

    /// The ids of leased requests, in id order: what `sweep` examines (a chunk at a time,
    /// with [`Index::get`]), without reading the rest of the queue.
    pub fn leased(&self) -> Vec<(String, ObjectId)> {
        let mut ids: Vec<(String, ObjectId)> = self
            .entries
            .iter()
            .filter(|(_, s)| s.class == LEASED)
            .map(|(id, s)| (id.to_owned(), s.tip))
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Pending requests in queue order (priority, then enqueue time), with their tips; each
    /// record is read as the iteration reaches it. The order is a heap made afresh at each
    /// call (linear in the queue's depth), so writes need not maintain one.
    pub fn pending<'a>(
        &'a self,
        store: &'a Store,
    ) -> impl Iterator<Item = Result<(ObjectId, Record)>> + 'a {
        let mut heap: std::collections::BinaryHeap<std::cmp::Reverse<QueueKey<'a>>> = self
            .entries
            .iter()
            .filter(|(_, s)| s.class == PENDING)
            .map(|(id, s)| std::cmp::Reverse(s.queue_key(id)))
            .collect();
        std::iter::from_fn(move || {
            loop {
                let std::cmp::Reverse(k) = heap.pop()?;
                let slot = self.entries.get(k.2)?;
                if let Some(entry) = self.decode(store, k.2, &slot) {
                    return Some(Ok(entry));
                }
            }
        })
    }

    /// Every indexed id with its tip, in id order, without reading a record: what `doctor`
    /// compares with the refs.
    pub fn tips(&self) -> Vec<(&str, ObjectId)> {
        self.entries
            .sorted()
            .into_iter()
            .map(|(id, slot)| (id, slot.tip))
            .collect()
    }

    /// Every indexed record with its tip, in id order.
    pub fn all(&self, store: &Store) -> Result<Vec<(ObjectId, Record)>> {
        let slots = self.entries.sorted();
        // One read of the stored records, then decoding, spread over the cores for large
        // queues (it dominates a listing).
        let stored = self.stored_records();
        let (new, base) = (&self.new_records[..], self.records_len);
        let one = |(id, slot): &(&str, Slot)| -> Option<(ObjectId, Record)> {
            parse(id, slot, raw(stored.as_deref(), new, base, slot)?)
        };
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8);
        let decoded: Vec<Option<(ObjectId, Record)>> = if threads < 2 || slots.len() < 2048 {
            slots.iter().map(one).collect()
        } else {
            let chunk = slots.len().div_ceil(threads);
            std::thread::scope(|s| {
                let handles: Vec<_> = slots
                    .chunks(chunk)
                    .map(|c| s.spawn(move || c.iter().map(one).collect::<Vec<_>>()))
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().expect("decoding does not panic"))
                    .collect()
            })
        };
        // Collected into the memory of `decoded` (one copy of every record, not two).
        Ok(decoded
            .into_iter()
            .zip(&slots)
            .filter_map(|(entry, (id, slot))| entry.or_else(|| self.decode(store, id, slot)))
            .collect())
    }

    /// Drop every entry (for `doctor --reindex`).
    pub fn clear(&mut self) -> Result<()> {
        self.entries = Table::default();
        self.new_records.clear();
        self.new_keys.clear();

        self.rewrite = true;
        self.meta = None;
        self.meta_unsaved = false;
        self.unsettled = None;
        self.known = None;
        Ok(())
    }

    /// Write what changed and release the index. Failing to write only costs the next
    /// process a rebuild: it is reported in the log, not as an error.
    pub fn close(mut self, store: &Store) {
        if let Some(meta) = self.meta
            && self.unsettled.is_some()
        {
            // Settle now, so that the next process need not rescan.
            self.settle(store, meta, Stamp::read(store), jiff::Timestamp::now());
        }
        if self.meta_unsaved
            && let Some(meta) = self.meta
        {
            // After every entry it vouches for (see [`Index::reconcile`]).
            self.set_meta(&meta);
        }
        if self.damaged.get() {
            tracing::warn!(path = %self.dir.display(), "index damaged; discarding it");
            for name in ["keys", "records"] {
                discard(&self.dir.join(name));
            }
            return;
        }
        if self.new_keys.is_empty() && !self.rewrite {
            return;
        }
        // Compaction: `keys` once the entries written since its last rewrite are many (each
        // open reads them into a map), `records` too once it is mostly superseded records.
        let stored = self.records_len + self.new_records.len() as u64;
        let live: u64 = self.entries.iter().map(|(_, s)| u64::from(s.len)).sum();
        let written = if self.rewrite || stored > 2 * live + (64 << 10) {
            self.write_anew(true)
        } else if self.entries.over.len() > self.entries.base.len() / 8 + 256 {
            self.write_anew(false)
        } else {
            self.append()
        };
        if let Err(e) = written {
            tracing::warn!(path = %self.dir.display(), error = %e, "could not write the index; it will be rebuilt");
            for name in ["keys", "records"] {
                discard(&self.dir.join(name));
            }
        }
    }

    /// Append this process's records, then their entries and the stamp.
    fn append(&mut self) -> std::io::Result<()> {
        let (Some(records), Some(keys)) = (&self.records, &mut self.keys) else {
            return Err(std::io::Error::other("no files to append to"));
        };
        records.write_all_at(&self.new_records, self.records_len)?;
        keys.write_all(&self.new_keys)?;
        Ok(())
    }

    /// Write `keys` anew, its entries in id order, and with `all`, `records` too (the live
    /// records only, each read from where it is and written out in turn, so that memory never
    /// holds the file), renaming them into place: `records` first, then `keys` (whose header
    /// names the `records` it goes with). Without `all`, this process's records are appended
    /// to `records` first.
    fn write_anew(&mut self, all: bool) -> std::io::Result<()> {
        let file_id = if all {
            Loaded::fresh().file_id ^ self.file_id.rotate_left(17)
        } else {
            self.file_id
        };
        let pid = crate::git::os::pid();
        let records_tmp = self.dir.join(format!("records.{pid}.tmp"));
        let mut records = if all {
            let file = std::fs::File::create(&records_tmp)?;
            let mut w = std::io::BufWriter::new(file);
            w.write_all(&header(file_id, 0))?;
            Some(w)
        } else {
            None
        };
        let slots = self.entries.sorted();
        let mut keys = header(file_id, slots.len() as u64);
        let mut at = HEADER as u64;
        let mut buf = Vec::new();
        let written = (|| -> std::io::Result<()> {
            for (id, slot) in slots {
                let moved = match records.as_mut() {
                    Some(out) => {
                        let bytes = self.raw_one(&slot, &mut buf).ok_or_else(|| {
                            std::io::Error::other(format!("record of {id} unreadable"))
                        })?;
                        out.write_all(bytes)?;
                        let moved = Slot { at, ..slot };
                        at += u64::from(slot.len);
                        moved
                    }
                    None => slot,
                };
                push_frame(&mut keys, &entry_payload(id, &moved));
            }
            if let Some(out) = records.take() {
                out.into_inner().map_err(|e| e.into_error())?;
                std::fs::rename(&records_tmp, self.dir.join("records"))?;
            }
            Ok(())
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&records_tmp);
        }
        written?;
        if let Some(meta) = self.meta {
            let mut payload = vec![META];
            payload.extend_from_slice(&serde_json::to_vec(&meta).expect("Meta serialises"));
            push_frame(&mut keys, &payload);
        }
        if !all {
            let Some(file) = &self.records else {
                return Err(std::io::Error::other("no records file to append to"));
            };
            file.write_all_at(&self.new_records, self.records_len)?;
        }
        let tmp = self.dir.join(format!("keys.{pid}.tmp"));
        let written =
            std::fs::write(&tmp, &keys).and_then(|()| std::fs::rename(&tmp, self.dir.join("keys")));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// The checked bytes of `slot`'s record, from the records written since open or read from
    /// the `records` file into `buf`.
    fn raw_one<'a>(&'a self, slot: &Slot, buf: &'a mut Vec<u8>) -> Option<&'a [u8]> {
        if slot.at >= self.records_len {
            return self.raw_in(None, slot);
        }
        buf.resize(slot.len as usize, 0);
        self.records.as_ref()?.read_exact_at(buf, slot.at).ok()?;
        (crc32fast::hash(buf) == slot.crc).then_some(&buf[..])
    }

    /// Write the records put since open to the end of `records` (their entries stay in memory
    /// until [`Index::close`] writes them): what an operation over many requests does between
    /// chunks, so that memory does not hold every record it wrote. A record written so and
    /// never named by `keys` (the process died first) is a superseded one, dropped by the
    /// next compaction.
    pub fn spill(&mut self) {
        let Some(file) = &self.records else {
            return;
        };
        if self.new_records.is_empty() {
            return;
        }
        match file.write_all_at(&self.new_records, self.records_len) {
            Ok(()) => {
                self.records_len += self.new_records.len() as u64;
                self.new_records = Vec::new();
            }
            // Kept in memory; close tries again.
            Err(e) => tracing::debug!(error = %e, "could not spill index records"),
        }
    }

    /// The whole stored `records` file (for a pass over every entry), if there is one.
    fn stored_records(&self) -> Option<Vec<u8>> {
        let file = self.records.as_ref()?;
        let mut buf = vec![0; usize::try_from(self.records_len).ok()?];
        match file.read_exact_at(&mut buf, 0) {
            Ok(()) => Some(buf),
            Err(e) => {
                tracing::warn!(error = %e, "index records unreadable");
                self.damaged.set(true);
                None
            }
        }
    }

    /// The checked bytes of `slot`'s record, from `stored` (the file read whole) or from the
    /// records written since open.
    fn raw_in<'a>(&'a self, stored: Option<&'a [u8]>, slot: &Slot) -> Option<&'a [u8]> {
        raw(stored, &self.new_records, self.records_len, slot)
    }

    /// `id`'s record: from the index, or, when it is damaged there, from git (and the index is
    /// discarded at close). `None` when git cannot give it either.
    fn decode(&self, store: &Store, id: &str, slot: &Slot) -> Option<(ObjectId, Record)> {
        let from_index = if slot.at >= self.records_len {
            self.raw_in(None, slot).and_then(|b| parse(id, slot, b))
        } else {
            let mut buf = vec![0; slot.len as usize];
            self.records
                .as_ref()
                .and_then(|f| f.read_exact_at(&mut buf, slot.at).ok())
                .filter(|()| crc32fast::hash(&buf) == slot.crc)
                .and_then(|()| parse(id, slot, &buf))
        };
        if from_index.is_some() {
            return from_index;
        }
        if !self.damaged.replace(true) {
            tracing::warn!(
                request_id = id,
                "index record damaged; reading the refs instead"
            );
        }
        match store.read_record(id, slot.tip) {
            Ok(record) => Some((slot.tip, record)),
            Err(e) => {
                tracing::warn!(request_id = id, error = %e, "unreadable request left out");
                None
            }
        }
    }
}

/// The checked bytes of `slot`'s record: in `stored` (the file read whole), or in `new` (the
/// records written since open, which follow the file's `base` bytes).
fn raw<'a>(stored: Option<&'a [u8]>, new: &'a [u8], base: u64, slot: &Slot) -> Option<&'a [u8]> {
    let (buf, at) = if slot.at >= base {
        (new, slot.at - base)
    } else {
        (stored?, slot.at)
    };
    let at = usize::try_from(at).ok()?;
    let bytes = buf.get(at..at.checked_add(slot.len as usize)?)?;
    (crc32fast::hash(bytes) == slot.crc).then_some(bytes)
}

/// A stored record, checked against its entry.
fn parse(id: &str, slot: &Slot, bytes: &[u8]) -> Option<(ObjectId, Record)> {
    let record: Record = serde_json::from_slice(bytes).ok()?;
    (record.id == id).then_some((slot.tip, record))
}

fn header(file_id: u64, base: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&file_id.to_le_bytes());
    h.extend_from_slice(&base.to_le_bytes());
    h
}

fn push_frame(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

fn entry_payload(id: &str, slot: &Slot) -> Vec<u8> {
    let tip = slot.tip.as_bytes();
    let mut p = Vec::with_capacity(4 + tip.len() + 32 + id.len());
    p.extend_from_slice(&[ENTRY, slot.class, slot.priority, tip.len() as u8]);
    p.extend_from_slice(tip);
    p.extend_from_slice(&slot.created.to_le_bytes());
    p.extend_from_slice(&slot.at.to_le_bytes());
    p.extend_from_slice(&slot.len.to_le_bytes());
    p.extend_from_slice(&slot.crc.to_le_bytes());
    p.extend_from_slice(id.as_bytes());
    p
}

/// Read `keys` and check it, and the header of `records`. `Err` says what is wrong.
fn load(dir: &Path) -> std::result::Result<Loaded, String> {
    let keys_path = dir.join("keys");
    let mut keys = match std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .open(&keys_path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::fresh()),
        Err(e) => return Err(format!("keys: {e}")),
    };
    // (Not a FIFO or a device, whose reads could block.)
    if !keys.metadata().is_ok_and(|m| m.is_file()) {
        return Err("keys: not a regular file".into());
    }
    let mut data = Vec::with_capacity(keys.metadata().map_or(0, |m| m.len() as usize + 1));
    std::io::Read::read_to_end(&mut keys, &mut data).map_err(|e| format!("keys: {e}"))?;
    let (file_id, base_count) = check_header(&data).ok_or("keys: not an index of this version")?;
    let mut base: Vec<Base> = Vec::with_capacity(base_count.min(data.len() as u64 / 64) as usize);
    let mut over: Vec<(&str, Slot)> = Vec::new();
    let mut meta = None;
    let mut frames = 0u64;
    let mut pos = HEADER;
    while pos < data.len() {
        let at = pos;
        let word = |p: usize| -> Option<u32> {
            Some(u32::from_le_bytes(data.get(p..p + 4)?.try_into().ok()?))
        };
        let (Some(len), Some(crc)) = (word(pos), word(pos + 4)) else {
            return Err(format!("keys: truncated at {at}"));
        };
        let len = len as usize;
        let Some(payload) = data
            .get(pos + 8..pos + 8 + len)
            .filter(|_| len <= MAX_FRAME)
        else {
            return Err(format!("keys: truncated at {at}"));
        };
        if crc32fast::hash(payload) != crc {
            return Err(format!("keys: bad checksum at {at}"));
        }
        let start = pos + 8;
        pos += 8 + len;
        frames += 1;
        match payload.first() {
            Some(&ENTRY) => {
                let (id, slot) =
                    parse_entry(payload).ok_or_else(|| format!("keys: bad entry at {at}"))?;
                if frames <= base_count {
                    let id_at = start + payload.len() - id.len();
                    if let Some(last) = base.last()
                        && data[last.id as usize..(last.id + last.id_len) as usize]
                            >= *id.as_bytes()
                    {
                        return Err(format!("keys: base out of order at {at}"));
                    }
                    base.push(Base {
                        id: u32::try_from(id_at).map_err(|_| "keys: too large")?,
                        id_len: id.len() as u32,
                        slot,
                    });
                } else {
                    over.push((id, slot));
                }
            }
            Some(&REMOVED) if frames > base_count => {
                let id = std::str::from_utf8(&payload[1..])
                    .map_err(|_| format!("keys: bad removal at {at}"))?;
                over.push((id, Slot::REMOVED));
            }
            Some(&META) => {
                meta = Some(
                    serde_json::from_slice(&payload[1..])
                        .map_err(|e| format!("keys: bad stamp at {at}: {e}"))?,
                );
            }
            _ => return Err(format!("keys: unknown frame at {at}")),
        }
    }
    if frames < base_count {
        return Err("keys: base truncated".into());
    }
    let over: Vec<(String, Slot)> = over.into_iter().map(|(id, s)| (id.to_owned(), s)).collect();
    let mut entries = Table {
        len: base.len(),
        data,
        base,
        ..Table::default()
    };
    for (id, slot) in over {
        if slot.len == u32::MAX {
            entries.remove(&id);
        } else {
            entries.insert(&id, slot);
        }
    }
    let records = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join("records"))
        .map_err(|e| format!("records: {e}"))?;
    let records_meta = records.metadata().map_err(|e| format!("records: {e}"))?;
    if !records_meta.is_file() {
        return Err("records: not a regular file".into());
    }
    let records_len = records_meta.len();
    let mut head = [0; HEADER];
    records
        .read_exact_at(&mut head, 0)
        .map_err(|e| format!("records: {e}"))?;
    if check_header(&head).map(|h| h.0) != Some(file_id) {
        return Err("records: not the file its keys were written with".into());
    }
    if let Some((id, _)) = entries
        .iter()
        .find(|(_, s)| s.at < HEADER as u64 || s.at + u64::from(s.len) > records_len)
    {
        return Err(format!(
            "records: truncated (the record of {id} is missing)"
        ));
    }
    Ok(Loaded {
        entries,
        meta,
        keys: Some(keys),
        records: Some(records),
        records_len,
        file_id,
    })
}

/// The file id and base count in a header.
fn check_header(data: &[u8]) -> Option<(u64, u64)> {
    if data.get(..MAGIC.len())? != MAGIC {
        return None;
    }
    let word = |at: usize| Some(u64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?));
    Some((word(MAGIC.len())?, word(MAGIC.len() + 8)?))
}

fn parse_entry(p: &[u8]) -> Option<(&str, Slot)> {
    let (&[_, class, priority, tip_len], rest) = p.split_first_chunk::<4>()?;
    let (tip, rest) = rest.split_at_checked(tip_len as usize)?;
    let (created, rest) = rest.split_first_chunk::<16>()?;
    let (at, rest) = rest.split_first_chunk::<8>()?;
    let (len, rest) = rest.split_first_chunk::<4>()?;
    let (crc, id) = rest.split_first_chunk::<4>()?;
    let slot = Slot {
        tip: ObjectId::try_from(tip).ok()?,
        class,
        priority,
        created: i128::from_le_bytes(*created),
        at: u64::from_le_bytes(*at),
        len: u32::from_le_bytes(*len),
        crc: u32::from_le_bytes(*crc),
    };
    Some((std::str::from_utf8(id).ok()?, slot))
}

/// Take the directory and its `lock`, making whatever stands in their way (a file where the
/// directory should be, a directory or an unreadable file where `lock` should be) give way.
fn lock(dir: &Path) -> std::result::Result<std::fs::File, OpenError> {
    let lock_path = dir.join("lock");
    let mut last = None;
    for _ in 0..3 {
        match std::fs::symlink_metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => discard(dir),
            Err(_) => {}
        }
        if let Err(e) = std::fs::create_dir_all(dir) {
            last = Some(e);
            continue;
        }
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
        {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(path = %lock_path.display(), error = %e, "index lock unusable; discarding the index");
                discard(dir);
                last = Some(e);
                continue;
            }
        };
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => return Err(OpenError::Busy),
            Err(e) => return Err(OpenError::Unusable(e.into())),
        }
        // The directory may have been deleted (and made again) since `lock` was opened.
        let same = match (file.metadata(), std::fs::metadata(&lock_path)) {
            (Ok(a), Ok(b)) => ino(&a) == ino(&b),
            _ => false,
        };
        if same {
            return Ok(file);
        }
    }
    Err(OpenError::Unusable(last.unwrap_or_else(|| {
        std::io::Error::other("the index directory keeps changing")
    })))
}

/// Remove `path`, whatever it is. One that cannot be removed in place (a directory that cannot
/// be read) is first renamed aside, under `hyperion/`.
fn discard(path: &Path) {
    let gone = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => Err(e),
    };
    if gone.is_ok() || !path.exists() {
        return;
    }
    let aside = path.with_extension(format!("discarded-{}", crate::git::os::pid()));
    if std::fs::rename(path, &aside).is_ok() {
        let _ = std::fs::remove_dir_all(&aside).or_else(|_| std::fs::remove_file(&aside));
    }
}

fn wanted_path(dir: &Path) -> PathBuf {
    dir.with_extension("wanted")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_costly_rescan_is_repeated_less_often() {
        let at = jiff::Timestamp::UNIX_EPOCH;
        let after = |ms| reverify_after(at, Duration::from_millis(ms)).duration_since(at);
        assert_eq!(after(0), REVERIFY, "a cheap rescan: every second");
        assert_eq!(after(10), REVERIFY);
        assert_eq!(after(100), jiff::SignedDuration::from_secs(5));
        assert_eq!(after(2_000), REVERIFY_MAX, "never longer than the cap");
        assert_eq!(
            reverify_after(at, Duration::MAX).duration_since(at),
            REVERIFY_MAX
        );
    }

    /// A process that has not rescanned expects the cost of the last rescan any process made,
    /// grown with the refs: a deep queue enqueued after a rescan of an empty one is not
    /// rescanned one second into the next process's work.
    #[test]
    fn a_process_that_has_not_rescanned_expects_the_last_cost_grown_with_the_refs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut index = Index::try_open(&dir.path().join("index"))
            .ok()
            .expect("opens");
        let stamp = |dir_len| Stamp {
            dir: Some((1, 2)),
            packed: None,
            generation: None,
            dir_len,
        };
        assert_eq!(
            index.expected_rescan(&stamp(4096 * 100)),
            Duration::from_nanos(4096 * 100 * RESCAN_NS_PER_BYTE),
            "no rescan measured: what rescans cost per byte"
        );
        index.meta = Some(Meta {
            stamp: stamp(4096),
            verify_after: None,
            rescan_us: Some(2_000),
            rescan_bytes: Some(4096),
            unverified_since: None,
        });
        assert_eq!(
            index.expected_rescan(&stamp(4096)),
            Duration::from_millis(2)
        );
        assert_eq!(
            index.expected_rescan(&stamp(4096 * 100)),
            Duration::from_millis(200)
        );
        index.meta.as_mut().expect("set").rescan_us = Some(20);
        assert_eq!(
            index.expected_rescan(&stamp(4096 * 100)),
            Duration::from_nanos(4096 * 100 * RESCAN_NS_PER_BYTE),
            "a rescan of a small queue grown is no less than the cost per byte"
        );
        index.meta.as_mut().expect("set").rescan_us = Some(2_000);
        assert_eq!(
            index.expected_rescan(&stamp(1024)),
            Duration::from_millis(2),
            "never less than measured"
        );
        index.rescan_cost = Some((Duration::from_millis(7), 4096 * 10));
        assert_eq!(
            index.expected_rescan(&stamp(4096 * 100)),
            Duration::from_millis(70),
            "this process's own measure first, grown too"
        );
    }
}
