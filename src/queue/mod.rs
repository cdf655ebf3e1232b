//! The queue: enqueue, lease, heartbeat, release, sweep, complete, requeue, retention.
//!
//! Every operation is one or more [`Store::transition`]s, each a compare-and-swap on a
//! request's chain; this module decides which transitions are legal and what they record.
//! The index only speeds up finding work and listing; a stale index can make an operation
//! try a request that has moved on, which the compare-and-swap refuses, and the operation
//! then moves on to the next one.
//!
//! The operations on [`Queue`], one file each by what they do: [`enqueue`] (the checks before a
//! request is stored, and storing it), [`lease`] (dequeue, heartbeat, release, complete,
//! holds, approvals, and the compare-and-swap helpers every transition goes through),
//! [`admin`] (sweep, requeue, gc, the queue's part of doctor) and [`read`] (list, show,
//! audit, id prefixes). This file holds the queue itself: opening it, its clock, and the index
//! it keeps open between operations.
//!
//! Below it: [`store`] (the chains under `refs/hyperion/requests/`), [`index`] (the derived
//! index), [`settings`] (`hyperion.*` from git config), [`archive`] (retention into bundles),
//! [`lost`] (chains that lost objects), [`depends`] (stacked requests), [`remote`] (one queue
//! shared through a git remote), and the two ways requests come in besides files: [`ingest`]
//! (pushed branches) and [`spool`] (a watched directory).

pub mod archive;
pub mod depends;
pub mod index;
pub mod ingest;
pub mod lost;
pub mod remote;
pub mod settings;
pub mod spool;
pub mod store;

mod admin;
mod enqueue;
mod lease;
mod read;

pub use admin::{Collected, Diagnosis, Finding, Swept};
pub use enqueue::Enqueued;
pub use lease::{AtLease, Completion, Outcome};
pub use read::{Details, Filter, HistoryItem};

use std::cell::{RefCell, RefMut};
use std::time::Duration;

use gix::ObjectId;

use crate::error::{Error, Result};
use crate::queue::index::Index;
use crate::queue::settings::Settings;
use crate::queue::store::Store;
use crate::request::model::Record;

/// The longest backoff before a retry (`not_before` is at most this after the retry).
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// How far a long pass over the requests has got (`gc`, `doctor`, a rebuild of the index):
/// `done` of `total` `what`. Reported every [`SCAN_STEP`] requests and at the end of each
/// pass, so a caller showing it costs nothing per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    pub what: &'static str,
    pub done: usize,
    pub total: usize,
}

/// Where [`Scan`]s go; `&mut |_| {}` when nobody watches.
pub type OnScan<'a> = dyn FnMut(Scan) + 'a;

/// How many requests a pass reads between two [`Scan`] reports.
pub const SCAN_STEP: usize = 256;

/// `on_scan` told of request `i` (0-based) of `total` when a step of them is done.
fn scanned(on_scan: &mut OnScan<'_>, what: &'static str, i: usize, total: usize) {
    let done = i + 1;
    if done.is_multiple_of(SCAN_STEP) || done == total {
        on_scan(Scan { what, done, total });
    }
}

/// What `doctor` asks of the layer above for each chunk of chains: their problems (the gate's
/// chain checks), each chain read counted in the page budget.
pub type ChainCheck<'a> = dyn FnMut(&Queue, &[(String, ObjectId)], &mut crate::git::os::PageBudget) -> Result<Vec<Finding>>
    + 'a;

pub struct Queue {
    store: Store,
    settings: Settings,
    last_now: std::cell::Cell<jiff::Timestamp>,
    /// Added to the wall clock (see [`Queue::travel`]).
    clock_offset: std::cell::Cell<jiff::SignedDuration>,
    /// The index while this process runs queue operations back to back. Closed by
    /// [`Queue::close_index`] before any long step, and when the queue is dropped.
    index: RefCell<Option<Index>>,
    /// When `sweep` last looked for stale ref locks (see [`Queue::sweep`]).
    locks_scanned: std::cell::Cell<Option<std::time::Instant>>,
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.close_index();
    }
}

/// A read of all records: from the index when it could be had, else from the refs.
struct Snapshot {
    entries: Vec<(ObjectId, Record)>,
}

impl Queue {
    pub fn open(store: Store) -> Result<Queue> {
        let settings = Settings::load(store.repo())?;
        Ok(Queue::with_settings(store, settings))
    }

    pub fn with_settings(store: Store, settings: Settings) -> Queue {
        crate::git::pack::detach_roll_ups(settings.auto_detach);
        Queue {
            store,
            settings,
            last_now: std::cell::Cell::new(jiff::Timestamp::UNIX_EPOCH),
            clock_offset: std::cell::Cell::new(jiff::SignedDuration::ZERO),
            index: RefCell::new(None),
            locks_scanned: std::cell::Cell::new(None),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The current time, strictly increasing within this process so that requests enqueued
    /// one after another keep their order.
    pub fn now(&self) -> jiff::Timestamp {
        let mut now = jiff::Timestamp::now() + self.clock_offset.get();
        let last = self.last_now.get();
        if now <= last {
            now = last + jiff::SignedDuration::from_nanos(1);
        }
        self.last_now.set(now);
        now
    }

    /// Move this queue's clock forward by `by`, so that lease expiry and backoff can be
    /// exercised without waiting. For tests and simulations; real workers never call it.
    pub fn travel(&self, by: jiff::SignedDuration) {
        self.clock_offset.set(self.clock_offset.get() + by);
    }

    /// The index, opened if need be and brought up to date; `None` inside when another
    /// process keeps it busy (callers then work from the refs).
    fn index(&self) -> Result<RefMut<'_, Option<Index>>> {
        let mut slot = self.index.borrow_mut();
        if slot.is_none() {
            *slot = Index::open(&Index::path(&self.store), self.settings.index_wait)?;
        }
        if let Some(ix) = slot.as_mut() {
            ix.ensure_fresh(&self.store)?;
        }
        Ok(slot)
    }

    /// End an operation: remember that the refs moved by our own hand are reflected.
    fn done(&self, mut ix: RefMut<'_, Option<Index>>) -> Result<()> {
        match ix.as_mut() {
            Some(ix) => ix.absorb_own_writes(&self.store),
            None => Ok(()),
        }
    }

    /// [`Queue::close_index`] if another process asked for the index since this one opened
    /// it; otherwise keep it open (opening it again costs milliseconds).
    pub fn release_index_if_wanted(&self) {
        let wanted = self.index.borrow().as_ref().is_some_and(|ix| ix.wanted());
        if wanted {
            self.close_index();
        }
    }

    /// Flush and release the index so other processes can use it. Call before long work
    /// (applying, running checks, sleeping); the next operation opens it again. Never
    /// fails: the index is derived data, and what could not be written is rebuilt from the
    /// refs by the next process that opens it (logged as a warning).
    pub fn close_index(&self) {
        if let Some(ix) = self.index.borrow_mut().take() {
            ix.close(&self.store);
        }
    }

    fn snapshot(&self, ix: Option<&Index>) -> Result<Snapshot> {
        let entries = match ix {
            Some(ix) => ix.all(&self.store)?,
            None => {
                let mut v = Vec::new();
                for (id, tip) in self.store.list()? {
                    match self.store.read_record(&id, tip) {
                        Ok(r) => v.push((tip, r)),
                        Err(e) => {
                            tracing::warn!(request_id = %id, error = %e, "unreadable request left out")
                        }
                    }
                }
                v
            }
        };
        Ok(Snapshot { entries })
    }

    /// What `pick` makes of each record and its tip (`None`: nothing), in id order: from the
    /// index when it could be had, else from the refs; each record read and picked in turn, so
    /// that memory holds what was picked only.
    fn records_where<T>(
        &self,
        ix: Option<&Index>,
        mut pick: impl FnMut(ObjectId, Record) -> Option<T>,
        on_scan: &mut OnScan<'_>,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        let mut pages = crate::git::os::PageBudget;
        match ix {
            Some(ix) => {
                let tips = ix.tips();
                let total = tips.len();
                for (i, (id, _)) in tips.into_iter().enumerate() {
                    if let Some((tip, r)) = ix.get(&self.store, id)? {
                        out.extend(pick(tip, r));
                    }
                    scanned(on_scan, "records read", i, total);
                }
            }
            None => {
                let refs = self.store.list()?;
                let total = refs.len();
                for (i, (id, tip)) in refs.into_iter().enumerate() {
                    scanned(on_scan, "records read", i, total);
                    pages.read_one();
                    match self.store.read_record(&id, tip) {
                        Ok(r) => out.extend(pick(tip, r)),
                        Err(e) => {
                            tracing::warn!(request_id = %id, error = %e, "unreadable request left out")
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

pub(crate) fn check_worker(worker: &str) -> Result<()> {
    if worker.is_empty()
        || worker.len() > 128
        || worker.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(Error::Usage(format!(
            "'{}' is not a usable worker id (1-128 characters, no spaces or control characters)",
            crate::request::secrets::redact(worker)
        )));
    }
    // The id is stored as the lease owner, which is never redacted (it is how a worker
    // recognises its own leases): one that looks like a secret is refused instead.
    if let Some(hit) = crate::request::secrets::redactor().find(worker.as_bytes()) {
        return Err(Error::Usage(format!(
            "the worker id looks like {} (rule {}); it is not shown here, and not used",
            hit.what, hit.rule
        )));
    }
    Ok(())
}
