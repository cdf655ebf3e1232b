//! The derived index: a sled database under `$GIT_DIR/hyperion/index`.
//!
//! It holds, per request, the chain tip it was built from and the record at that tip, plus the
//! ready queue ordered by (priority, enqueue time). It is never the source of truth: every
//! entry remembers the tip it reflects and [`Index::reconcile`] compares those with the refs,
//! re-reading only what moved. Deleting the directory loses nothing.
//!
//! sled admits one process at a time. A process opens the index for a run of queue operations
//! and closes it before any long step (applying, checks, sleeping) and at exit; it never holds
//! it across long work. [`Index::open`] retries briefly when another process has it and
//! reports `None` when it stays busy; callers then answer from the refs.
//!
//! Freshness is checked cheaply: a [`Stamp`] of the refs (the loose-ref directory, which every
//! ref update renames a lock file into; `packed-refs`; and an exact update counter that every
//! hyperion writer bumps) is compared with the one the index was built at. Only when it moved
//! does [`Index::reconcile`] list the refs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gix::ObjectId;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{Record, Status};
use crate::store::Store;

/// Bump when the stored form changes; an index of another version is rebuilt.
const FORMAT: &[u8] = b"hyperion-index/2";

pub struct Index {
    db: sled::Db,
    records: sled::Tree,
    ready: sled::Tree,
    /// The ids of leased requests (what `sweep` looks at).
    leased: sled::Tree,
    /// Unflushed changes.
    dirty: bool,
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
    /// The stored [`Meta`], as this process last wrote or read it (sled admits one process
    /// at a time, so nobody else changes it meanwhile).
    meta: Option<Meta>,
    /// `meta` moved past the stored one without being written (see [`Index::absorb_own_writes`]).
    meta_unsaved: bool,
    /// This process's last ref updates, recorded here, to be taken as known at the next
    /// stamp read (see [`Index::absorb_own_writes`]).
    unsettled: Option<OwnWrites>,
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
    /// Past this, a full rescan instead (see [`REVERIFY`]).
    deadline: jiff::Timestamp,
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

#[derive(Serialize, Deserialize)]
struct Stored {
    tip: String,
    record: Record,
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
    /// it stays busy.
    pub fn open(dir: &Path, wait: Duration) -> Result<Option<Index>> {
        let start = Instant::now();
        let mut delay = Duration::from_millis(1);
        loop {
            match Index::try_open(dir) {
                Ok(index) => return Ok(Some(index)),
                Err(sled::Error::Io(e)) if is_busy(&e) => {
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
                Err(e) => {
                    // A damaged index is rebuilt: it is derived data.
                    tracing::warn!(error = %e, "index unreadable; rebuilding it");
                    std::fs::remove_dir_all(dir)
                        .map_err(|e| Error::io(format!("could not remove {}", dir.display()), e))?;
                    return Index::try_open(dir).map(Some).map_err(|e| {
                        Error::io(
                            format!("could not open the index at {}", dir.display()),
                            std::io::Error::other(e.to_string()),
                        )
                    });
                }
            }
        }
    }

    fn try_open(dir: &Path) -> sled::Result<Index> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(16 * 1024 * 1024)
            .flush_every_ms(None)
            .open()?;
        let mut index = Index {
            records: db.open_tree("records")?,
            ready: db.open_tree("ready")?,
            leased: db.open_tree("leased")?,
            db,
            dirty: false,
            wrote: false,
            known: None,
            opened_at: std::time::SystemTime::now(),
            wanted_path: wanted_path(dir),
            rescan_cost: None,
            meta: None,
            meta_unsaved: false,
            unsettled: None,
        };
        if index.db.get("format")?.as_deref() != Some(FORMAT) {
            index.records.clear()?;
            index.ready.clear()?;
            index.leased.clear()?;
            index.db.insert("format", FORMAT)?;
            index.dirty = true;
        }
        index.meta = index
            .db
            .get("meta")?
            .and_then(|v| serde_json::from_slice(&v).ok());
        Ok(index)
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
        self.unsettled = Some(OwnWrites {
            before,
            count: total - writes_then,
            total,
            deadline: reverify_after(jiff::Timestamp::now(), self.expected_rescan(&before)),
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
        if own.before != meta.stamp
            || store.own_writes() != own.total
            || !only_ours
            || now >= own.deadline
        {
            return false;
        }
        let verify_after = meta
            .verify_after
            .map_or(own.deadline, |t| t.min(own.deadline));
        // Kept in memory until the index is closed: a process that dies first leaves the
        // older stamp stored, which the next one finds moved, and rescans.
        self.meta = Some(Meta {
            stamp: cur,
            verify_after: Some(verify_after),
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
        let Some((cost, then)) = self.rescan_cost.or_else(stored) else {
            return std::time::Duration::ZERO;
        };
        // (A missing directory counts as one block: growth from nothing is not infinite.)
        let grown = (now.bytes() as f64 / then.max(4096) as f64).max(1.0);
        std::time::Duration::try_from_secs_f64(cost.as_secs_f64() * grown)
            .unwrap_or(std::time::Duration::MAX)
    }

    fn set_meta(&mut self, meta: &Meta) -> Result<()> {
        let bytes = serde_json::to_vec(meta).expect("Meta serialises");
        self.db.insert("meta", bytes).map_err(sled_err)?;
        self.meta = Some(*meta);
        self.meta_unsaved = false;
        self.dirty = true;
        Ok(())
    }

    /// Bring the index in line with the refs: entries whose tip differs from the ref are
    /// re-read from git, entries without a ref are dropped, refs without an entry are added.
    pub fn reconcile(&mut self, store: &Store) -> Result<Reconciled> {
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
        for kv in self.records.iter() {
            let (k, v) = kv.map_err(sled_err)?;
            let id = String::from_utf8_lossy(&k).into_owned();
            let tip = serde_json::from_slice::<Stored>(&v)
                .ok()
                .and_then(|s| ObjectId::from_hex(s.tip.as_bytes()).ok());
            match tip {
                Some(tip) => {
                    known.insert(id, tip);
                }
                None => {
                    self.remove(&id)?;
                }
            }
        }
        for (id, tip) in &refs {
            if known.remove(id) == Some(*tip) {
                continue;
            }
            match store.read_record(id, *tip) {
                Ok(record) => {
                    self.put(*tip, &record)?;
                    stats.updated += 1;
                }
                Err(e) => {
                    tracing::warn!(request = %id, error = %e, "unreadable request left out of the index");
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
        })?;
        self.known = Some((stamp, writes_before));
        self.wrote = false;
        self.unsettled = None;
        if stats.updated + stats.removed > 0 {
            tracing::debug!(
                updated = stats.updated,
                removed = stats.removed,
                "index reconciled"
            );
        }
        Ok(stats)
    }

    /// The indexed tip and record of `id`.
    pub fn get(&self, id: &str) -> Result<Option<(ObjectId, Record)>> {
        let Some(v) = self.records.get(id).map_err(sled_err)? else {
            return Ok(None);
        };
        Ok(decode(&v))
    }

    /// Record that `id`'s chain is now at `tip` with `record`.
    pub fn put(&mut self, tip: ObjectId, record: &Record) -> Result<()> {
        if let Some((_, old)) = self.get(&record.id)?
            && old.status == Status::Pending
        {
            self.ready.remove(old.queue_key()).map_err(sled_err)?;
        }
        self.put_entry(tip, record)
    }

    /// [`Index::put`] after this process moved the chain from a record in status `from` to
    /// `record`: the entry being replaced need not be read, as its place in the queue is
    /// `record`'s (priority and enqueue time never change along a chain).
    pub fn put_transition(
        &mut self,
        tip: ObjectId,
        record: &Record,
        from: Option<Status>,
    ) -> Result<()> {
        if from == Some(Status::Pending) && record.status != Status::Pending {
            self.ready.remove(record.queue_key()).map_err(sled_err)?;
        }
        self.put_entry(tip, record)
    }

    fn put_entry(&mut self, tip: ObjectId, record: &Record) -> Result<()> {
        if record.status == Status::Leased {
            self.leased
                .insert(record.id.as_bytes(), &[])
                .map_err(sled_err)?;
        } else {
            self.leased.remove(record.id.as_bytes()).map_err(sled_err)?;
        }
        let stored = Stored {
            tip: tip.to_string(),
            record: record.clone(),
        };
        let bytes = serde_json::to_vec(&stored).expect("a Record always serialises");
        self.records
            .insert(record.id.as_bytes(), bytes)
            .map_err(sled_err)?;
        self.wrote = true;
        if record.status == Status::Pending {
            self.ready
                .insert(record.queue_key(), record.id.as_bytes())
                .map_err(sled_err)?;
        }
        self.dirty = true;
        Ok(())
    }

    pub fn remove(&mut self, id: &str) -> Result<()> {
        if let Some(v) = self.records.remove(id).map_err(sled_err)?
            && let Some((_, old)) = decode(&v)
        {
            self.ready.remove(old.queue_key()).map_err(sled_err)?;
        }
        self.leased.remove(id.as_bytes()).map_err(sled_err)?;
        self.dirty = true;
        self.wrote = true;
        Ok(())
    }

    /// Leased requests with their tips, in id order: what `sweep` examines, without reading
    /// the rest of the queue.
    pub fn leased(&self) -> Result<Vec<(ObjectId, Record)>> {
        let mut out = Vec::new();
        for kv in self.leased.iter() {
            let (id, _) = kv.map_err(sled_err)?;
            if let Some(v) = self.records.get(&id).map_err(sled_err)?
                && let Some(entry) = decode(&v)
            {
                out.push(entry);
            }
        }
        Ok(out)
    }

    /// Pending requests in queue order (priority, then enqueue time), with their tips.
    pub fn pending(&self) -> impl Iterator<Item = Result<(ObjectId, Record)>> + '_ {
        self.ready.iter().filter_map(move |kv| {
            let (_, id) = match kv {
                Ok(kv) => kv,
                Err(e) => return Some(Err(sled_err(e))),
            };
            match self.records.get(&id) {
                Ok(Some(v)) => decode(&v).map(Ok),
                Ok(None) => None,
                Err(e) => Some(Err(sled_err(e))),
            }
        })
    }

    /// Every indexed record with its tip, in id order.
    pub fn all(&self) -> Result<Vec<(ObjectId, Record)>> {
        let mut raw = Vec::with_capacity(self.records.len());
        for kv in self.records.iter() {
            raw.push(kv.map_err(sled_err)?.1);
        }
        // Decoding dominates a listing; spread it over the cores for large queues.
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8);
        if threads < 2 || raw.len() < 2048 {
            return Ok(raw.iter().filter_map(|v| decode(v)).collect());
        }
        let chunk = raw.len().div_ceil(threads);
        let parts: Vec<Vec<(ObjectId, Record)>> = std::thread::scope(|s| {
            let handles: Vec<_> = raw
                .chunks(chunk)
                .map(|c| s.spawn(move || c.iter().filter_map(|v| decode(v)).collect::<Vec<_>>()))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("decoding does not panic"))
                .collect()
        });
        Ok(parts.into_iter().flatten().collect())
    }

    /// Drop every entry (for `doctor --reindex`).
    pub fn clear(&mut self) -> Result<()> {
        self.records.clear().map_err(sled_err)?;
        self.ready.clear().map_err(sled_err)?;
        self.leased.clear().map_err(sled_err)?;
        self.db.remove("meta").map_err(sled_err)?;
        self.meta = None;
        self.meta_unsaved = false;
        self.unsettled = None;
        self.known = None;
        self.dirty = true;
        Ok(())
    }

    /// Write buffered changes and release the database.
    pub fn close(mut self, store: &Store) -> Result<()> {
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
            self.set_meta(&meta)?;
        }
        if self.dirty {
            self.db.flush().map_err(sled_err)?;
        }
        Ok(())
    }
}

fn decode(v: &[u8]) -> Option<(ObjectId, Record)> {
    let s: Stored = serde_json::from_slice(v).ok()?;
    Some((ObjectId::from_hex(s.tip.as_bytes()).ok()?, s.record))
}

fn is_busy(e: &std::io::Error) -> bool {
    // sled reports a held lock as an I/O error from its file lock.
    e.kind() == std::io::ErrorKind::WouldBlock
        || e.to_string().contains("lock")
        || e.raw_os_error() == Some(11)
}

fn sled_err(e: sled::Error) -> Error {
    Error::io("index", std::io::Error::other(e.to_string()))
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
        let mut index = Index::try_open(&dir.path().join("index")).expect("opens");
        let stamp = |dir_len| Stamp {
            dir: Some((1, 2)),
            packed: None,
            generation: None,
            dir_len,
        };
        assert_eq!(index.expected_rescan(&stamp(4096)), Duration::ZERO);
        index.meta = Some(Meta {
            stamp: stamp(4096),
            verify_after: None,
            rescan_us: Some(2_000),
            rescan_bytes: Some(4096),
        });
        assert_eq!(
            index.expected_rescan(&stamp(4096)),
            Duration::from_millis(2)
        );
        assert_eq!(
            index.expected_rescan(&stamp(4096 * 100)),
            Duration::from_millis(200)
        );
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
