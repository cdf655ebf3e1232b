//! The queue: enqueue, lease, heartbeat, release, sweep, complete, requeue, retention.
//!
//! Every operation is one or more [`Store::transition`]s, each a compare-and-swap on a
//! request's chain; this module decides which transitions are legal and what they record.
//! The index only speeds up finding work and listing; a stale index can make an operation
//! try a request that has moved on, which the compare-and-swap refuses, and the operation
//! then moves on to the next one.
//!
//! Below it: [`store`] (the chains under `refs/hyperion/requests/`), [`index`] (the derived
//! index), [`settings`] (`hyperion.*` from git config), [`archive`] (retention into bundles),
//! [`lost`] (chains that lost objects), [`remote`] (one queue shared through a git remote), and the two ways requests come in besides files:
//! [`ingest`] (pushed branches) and [`spool`] (a watched directory).

pub mod archive;
pub mod depends;
pub mod index;
pub mod ingest;
pub mod lost;
pub mod remote;
pub mod settings;
pub mod spool;
pub mod store;

use std::cell::{RefCell, RefMut};
use std::time::Duration;

use gix::ObjectId;
use serde::Serialize;

use crate::code::Code;
use crate::error::{Error, Result};
use crate::queue::index::Index;
use crate::queue::settings::Settings;
use crate::queue::store::{Created, Store, Transition};
use crate::request::model::{Action, ChangeRequest, DeadClass, ErrorInfo, Event, Record, Status};
use crate::request::model::{Artifact, HistoryEntry};
use crate::request::target::{Target, Tip};

/// The longest backoff before a retry (`not_before` is at most this after the retry).
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// What the worker does with a leased request, by the policy at the target's tip now.
#[derive(Debug)]
pub enum AtLease {
    /// Go on; these checks must pass (required ones first).
    Proceed { checks: Vec<String> },
    /// No valid approval: back to `awaiting_approval`.
    Hold { tiers: Vec<String>, reason: String },
}

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

/// What enqueue did with one request.
#[derive(Debug, Clone, Serialize)]
pub struct Enqueued {
    pub id: String,
    /// `false` when an identical submission was already stored.
    pub created: bool,
    pub record: Record,
}

/// A completion prepared by [`Queue::prepare_completions`]: its commit is written, its ref
/// not moved yet.
#[derive(Debug, Clone)]
pub struct Completion {
    pub id: String,
    /// The tip it was built on (the lease).
    pub tip: ObjectId,
    pub commit: ObjectId,
    next: Record,
    event: Event,
}

impl Completion {
    /// The record it completes the request with.
    pub fn record(&self) -> &Record {
        &self.next
    }
}

/// How a leased request ended, as reported by its worker.
#[derive(Debug, Clone)]
pub enum Outcome {
    Applied {
        commit: String,
        /// Stored with the transition (check output).
        artifacts: Vec<Artifact>,
    },
    Failed {
        class: DeadClass,
        error: ErrorInfo,
        /// Worth retrying (e.g. a timeout); retried until `maxAttempts`, then dead.
        transient: bool,
        artifacts: Vec<Artifact>,
    },
}

/// Filters for [`Queue::list`].
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub status: Option<Status>,
    pub dead_class: Option<DeadClass>,
    pub agent: Option<String>,
    pub since: Option<jiff::Timestamp>,
    pub limit: Option<usize>,
}

impl Filter {
    fn matches(&self, r: &Record) -> bool {
        self.status.is_none_or(|s| r.status == s)
            && self.dead_class.is_none_or(|c| r.dead_class == Some(c))
            && self.agent.as_deref().is_none_or(|a| r.agent == a)
            && self.since.is_none_or(|t| r.updated_at >= t)
    }
}

/// Everything `show` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Details {
    pub record: Record,
    pub tip: String,
    pub history: Vec<HistoryItem>,
    pub artifacts: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HistoryItem {
    pub commit: String,
    #[serde(flatten)]
    pub event: Event,
}

impl From<HistoryEntry> for HistoryItem {
    fn from(h: HistoryEntry) -> Self {
        HistoryItem {
            commit: h.commit.to_string(),
            event: h.event,
        }
    }
}

/// What a sweep did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Swept {
    pub requeued: Vec<String>,
    pub dead: Vec<String>,
    /// Requests whose ref lock, left by a writer that died mid-update, was removed.
    pub unlocked: Vec<String>,
    /// Keep files of packs whose writer died before its refs existed, removed.
    pub unkept: Vec<String>,
    /// Expired leases that could not be swept this time (e.g. a ref lock not yet stale).
    pub skipped: Vec<Finding>,
}

/// What gc did (or would do, with `dry_run`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Collected {
    pub archived: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive: Option<String>,
    pub dry_run: bool,
}

/// One finding of `doctor`.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub id: String,
    pub code: Code,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Diagnosis {
    pub requests: usize,
    pub findings: Vec<Finding>,
    /// Index entries that disagreed with the refs before this run reconciled them.
    pub index_drift: usize,
    pub reindexed: bool,
    /// Requests whose objects were missing, set aside under `refs/hyperion/lost/` (repair).
    pub set_aside: Vec<String>,
    /// Keep files of packs whose writer died before its refs existed, removed.
    pub stale_keeps: Vec<String>,
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

    /// Problems of each request against the branch it lands on, one list per request: the
    /// target must be an existing branch ([`Target`]), and the request must pass
    /// [`crate::request::validate::against_target`] with that branch's tree and the policy of its tip —
    /// never a policy the request brings. An invalid policy file fails the whole call
    /// (`policy.invalid`).
    ///
    /// A request stored already (its id has a ref) has no problem here: submitting it again
    /// stores nothing ([`Queue::enqueue`]), whatever became of it — once it landed, its patch
    /// no longer applies to the target, and the duplicate is still not an error. The id is
    /// derived from the whole content, so nothing unchecked gets in this way.
    pub fn check_against_targets(
        &self,
        reqs: &[&ChangeRequest],
    ) -> Result<Vec<Vec<crate::Problem>>> {
        let mut stored = Vec::with_capacity(reqs.len());
        for req in reqs {
            stored.push(self.store.tip(&req.id())?.is_some());
        }
        let new: Vec<&ChangeRequest> = reqs
            .iter()
            .zip(&stored)
            .filter(|(_, stored)| !**stored)
            .map(|(req, _)| *req)
            .collect();
        let mut checked = self.check_against_tips(&new, &|_| None, None)?.into_iter();
        Ok(stored
            .into_iter()
            .map(|stored| match stored {
                true => Vec::new(),
                false => checked
                    .next()
                    .expect("one list of problems per new request"),
            })
            .collect())
    }

    /// [`Queue::check_against_targets`] with some branches elsewhere than their refs say:
    /// `moved(target)` is `Some(tip)` for a branch a push about to be taken moves (`Some(None)`
    /// when it deletes it).
    ///
    /// `objects` reads the objects instead of this repository when given: during a push,
    /// the pushed branch's commits sit in git's quarantine, which a view over it sees
    /// (see `verify::quarantine_view`).
    pub fn check_against_tips(
        &self,
        reqs: &[&ChangeRequest],
        moved: &dyn Fn(&Target) -> Option<Option<gix::ObjectId>>,
        objects: Option<&gix::Repository>,
    ) -> Result<Vec<Vec<crate::Problem>>> {
        let refs = self.store.repo();
        let repo = objects.unwrap_or(refs);
        let mut tips: std::collections::HashMap<
            Target,
            std::result::Result<(Tip, crate::request::policy::Policy), crate::Problem>,
        > = std::collections::HashMap::new();
        // A request refused for its target is not judged by any branch's policy; what it
        // would store is still scanned for secrets, with the built-in rules.
        let refused = |req: &ChangeRequest, p: crate::Problem| {
            let mut problems = vec![p];
            problems.extend(
                crate::request::validate::check_policy(
                    req,
                    &crate::request::policy::Policy::default(),
                    None,
                )
                .into_iter()
                .filter(|p| p.code == Code::SecretDetected),
            );
            problems
        };
        let mut targets = Vec::with_capacity(reqs.len());
        for req in reqs {
            let target = match Target::of_request(req.target.as_deref(), &self.settings.target) {
                Ok(t) => t,
                Err(p) => {
                    targets.push(Err(p));
                    continue;
                }
            };
            if !tips.contains_key(&target) {
                let tip = match moved(&target) {
                    Some(tip) => tip,
                    None => target.tip(refs)?,
                };
                let resolved = match target.resolve_at(repo, tip) {
                    Ok(tip) => {
                        let policy = tip.policy(repo)?;
                        Ok((tip, policy))
                    }
                    Err(e) => Err(e.refusal()?),
                };
                tips.insert(target.clone(), resolved);
            }
            targets.push(Ok(target));
        }
        // Stacked requests are judged on top of their predecessors (`queue::depends`): the
        // trees built for that are looked at, never written.
        let plan = match reqs.iter().any(|r| !r.depends_on.is_empty()) {
            true => Some(self.resolve_dependencies(reqs)?),
            false => None,
        };
        crate::git::pack::scratch(repo, || {
            let bases = match &plan {
                Some(plan) => self.dependency_bases(repo, reqs, plan, &|i| match targets[i]
                    .as_ref()
                    .ok()
                    .map(|t| &tips[t])
                {
                    Some(Ok((tip, policy))) => Some((tip.tree, policy.clone())),
                    _ => None,
                })?,
                None => vec![None; reqs.len()],
            };
            let mut out = Vec::with_capacity(reqs.len());
            for (i, req) in reqs.iter().enumerate() {
                let target = match &targets[i] {
                    Ok(t) => t,
                    Err(p) => {
                        out.push(refused(req, p.clone()));
                        continue;
                    }
                };
                // A request's own changes are always judged in full; a dependency problem
                // leaves only the tree to judge them against unknown.
                let own = |policy| crate::request::validate::check_policy(req, policy, None);
                out.push(match &tips[target] {
                    Ok((tip, policy)) => match (plan.as_ref().map(|p| &p.deps[i]), &bases[i]) {
                        (Some(Err(problems)), _) => {
                            let mut all = problems.clone();
                            all.extend(own(policy));
                            all
                        }
                        (_, Some(Err(problem))) => {
                            let mut all = vec![problem.clone()];
                            all.extend(own(policy));
                            all
                        }
                        (_, Some(Ok(base))) => {
                            crate::request::validate::against_target(repo, req, Some(*base), policy)
                        }
                        (_, None) => crate::request::validate::against_target(
                            repo,
                            req,
                            Some(tip.tree),
                            policy,
                        ),
                    },
                    Err(p) if req.target.is_some() => refused(req, p.clone().at("/target")),
                    Err(p) => refused(req, p.clone()),
                });
            }
            Ok(out)
        })
    }

    /// The risk tiers of each request (see [`crate::request::tiers`]), judged by its target's policy
    /// and tree as they are now, one assessment per request. A request whose target is not
    /// an existing branch is refused (`target.*`).
    pub fn assess(
        &self,
        reqs: &[&ChangeRequest],
    ) -> Result<Vec<crate::request::tiers::Assessment>> {
        let repo = self.store.repo();
        let local = self.local_gate();
        let refused = |req: &ChangeRequest, p: crate::Problem| rejected(req, vec![p]);
        let mut gates: std::collections::HashMap<Target, (Tip, crate::request::tiers::Rules)> =
            std::collections::HashMap::new();
        let mut out = Vec::with_capacity(reqs.len());
        for req in reqs {
            let target = Target::of_request(req.target.as_deref(), &self.settings.target)
                .map_err(|p| refused(req, p))?;
            if !gates.contains_key(&target) {
                let tip = match target.resolve(repo) {
                    Ok(tip) => tip,
                    Err(e) => return Err(refused(req, e.refusal()?)),
                };
                let policy = tip.policy(repo)?;
                let view = crate::request::view::CachedTree::at(repo, tip.tree);
                let rules = crate::request::tiers::Rules::new(&policy, &local, Some(&view));
                gates.insert(target.clone(), (tip, rules));
            }
            let (tip, rules) = &gates[&target];
            let view = crate::request::view::CachedTree::at(repo, tip.tree);
            out.push(rules.assess(req, Some(&view)));
        }
        Ok(out)
    }

    /// Accept validated requests. All are checked for storage in one pass; an identical
    /// submission is not stored twice and is reported with `created: false`.
    pub fn enqueue(&self, requests: &[ChangeRequest], actor: &str) -> Result<Vec<Enqueued>> {
        self.enqueue_with(requests, actor, false)
    }

    /// [`Queue::enqueue`]; a request whose id gc archived (and that was not restored) is
    /// refused (`request.archived`) unless `force`, which stores a new chain under the id.
    pub fn enqueue_with(
        &self,
        requests: &[ChangeRequest],
        actor: &str,
        force: bool,
    ) -> Result<Vec<Enqueued>> {
        let mut out = Vec::with_capacity(requests.len());
        self.enqueue_each(requests, actor, force, |e| out.push(e))?;
        Ok(out)
    }

    /// [`Queue::enqueue_with`], handing each request's outcome to `each` once its ref exists.
    /// Every request is checked before anything is written; then they are stored a chunk at a
    /// time ([`crate::queue::store::chunk`]: one pack, its refs, its index entries), so that memory
    /// holds one chunk's objects. When a chunk fails part-way, the error
    /// ([`Error::Incomplete`]) lists as stored every request of the earlier chunks too, and
    /// as not stored those of the later ones that are not in the queue.
    pub fn enqueue_each(
        &self,
        requests: &[ChangeRequest],
        actor: &str,
        force: bool,
        each: impl FnMut(Enqueued),
    ) -> Result<usize> {
        if !force {
            self.refuse_archived(requests)?;
        }
        // Refuse the whole batch, before writing anything, if one does not fit its target.
        let all: Vec<&ChangeRequest> = requests.iter().collect();
        for (req, problems) in requests.iter().zip(self.check_against_targets(&all)?) {
            if !problems.is_empty() {
                return Err(rejected(req, problems));
            }
        }
        drop(all);
        self.enqueue_checked(requests, actor, each)
    }

    /// Store `requests` that passed [`Queue::check_against_targets`] (and, unless forced,
    /// the refusal of archived ids) as [`Queue::enqueue_each`] stores them, without checking
    /// them again: for a caller that checked them itself, to report every problem of a
    /// submission at once (the CLI). A request that lands is validated again by the worker
    /// in any case.
    pub fn enqueue_checked(
        &self,
        requests: &[ChangeRequest],
        actor: &str,
        each: impl FnMut(Enqueued),
    ) -> Result<usize> {
        let all: Vec<&ChangeRequest> = requests.iter().collect();
        // Predecessors are stored before the requests that build on them, so that they are
        // also ahead of them in the queue.
        let ordered: Vec<ChangeRequest>;
        let requests = match all.iter().any(|r| !r.depends_on.is_empty()) {
            true => {
                let plan = self.resolve_dependencies(&all)?;
                ordered = plan.order.iter().map(|&i| requests[i].clone()).collect();
                &ordered[..]
            }
            false => requests,
        };
        drop(all);
        let ids: Vec<String> = requests.iter().map(ChangeRequest::id).collect();
        let chunks = requests
            .chunks(crate::queue::store::chunk())
            .map(|c| Ok(c.to_vec()));
        self.store_checked(chunks, &ids, actor, each)
    }

    /// Store requests already checked as [`Queue::enqueue_each`] checks them, a chunk at a
    /// time as `chunks` yields them (`enqueue` of a large directory checks every request
    /// first, then reads them again a chunk at a time, so that it never holds them all);
    /// `ids` are the ids of all of them, in order. When a chunk fails part-way (or cannot be
    /// had), the error ([`Error::Incomplete`]) lists as stored every request of the earlier
    /// chunks too, and as not stored those of the later ones that are not in the queue.
    pub fn store_checked(
        &self,
        chunks: impl Iterator<Item = Result<Vec<ChangeRequest>>>,
        ids: &[String],
        actor: &str,
        mut each: impl FnMut(Enqueued),
    ) -> Result<usize> {
        let mut done = 0;
        let mut stored_before: Vec<String> = Vec::new();
        for (n, chunk) in chunks.enumerate() {
            if n == 1 {
                crate::git::os::pause_point("enqueue.chunk_stored");
            }
            let stored = match chunk.and_then(|c| {
                let len = c.len();
                self.enqueue_chunk(&c, actor, &mut each)
                    .map(|ids| (ids, len))
            }) {
                Ok((ids, len)) => {
                    done += len;
                    ids
                }
                // Nothing of this command is in the queue.
                Err(e) if n == 0 && !matches!(e, Error::Incomplete { .. }) => return Err(e),
                // Some is: say exactly what, with this chunk's part and the rest.
                Err(e) => {
                    let (mut stored, mut not_stored, cause) = match e {
                        Error::Incomplete {
                            stored,
                            not_stored,
                            cause,
                        } => (stored, not_stored, cause),
                        other => (Vec::new(), Vec::new(), Box::new(other)),
                    };
                    stored_before.append(&mut stored);
                    let mut seen = std::collections::HashSet::new();
                    stored_before.retain(|id| seen.insert(id.clone()));
                    seen.extend(not_stored.iter().cloned());
                    // This chunk's requests that it did not decide on, and every later one.
                    for id in &ids[done.min(ids.len())..] {
                        if !seen.insert(id.clone()) {
                            continue;
                        }
                        if self.store.tip(id)?.is_some() {
                            stored_before.push(id.clone());
                        } else {
                            not_stored.push(id.clone());
                        }
                    }
                    return Err(Error::Incomplete {
                        stored: stored_before,
                        not_stored,
                        cause,
                    });
                }
            };
            stored_before.extend(stored);
        }
        Ok(done)
    }

    /// Store one chunk of checked requests ([`Queue::enqueue_each`]); returns their ids, each
    /// once, in order.
    fn enqueue_chunk(
        &self,
        requests: &[ChangeRequest],
        actor: &str,
        each: &mut impl FnMut(Enqueued),
    ) -> Result<Vec<String>> {
        // A request whose risk tier needs a person waits for one, out of the ready queue.
        let all: Vec<&ChangeRequest> = requests.iter().collect();
        let assessments = self.assess(&all)?;
        // The predecessors each depends on, as full ids: of this chunk or stored before.
        let depends: Vec<Vec<String>> = match all.iter().any(|r| !r.depends_on.is_empty()) {
            true => {
                let plan = self.resolve_dependencies(&all)?;
                let mut depends = Vec::with_capacity(requests.len());
                for (req, deps) in requests.iter().zip(plan.deps) {
                    match deps {
                        Ok(d) => depends.push(d),
                        Err(problems) => {
                            return Err(rejected(req, problems));
                        }
                    }
                }
                depends
            }
            false => vec![Vec::new(); requests.len()],
        };
        let mut ix = self.index()?;
        let prepared: Vec<(Record, Event)> = requests
            .iter()
            .zip(&assessments)
            .zip(depends)
            .map(|((req, assessment), depends_on)| {
                let now = self.now();
                let mut record = Record::new(req, now);
                record.depends_on = depends_on;
                let mut event = Event {
                    action: Action::Enqueue,
                    from: None,
                    to: Status::Pending,
                    // Stored in the chain's first commit and its reflog, like every actor.
                    actor: crate::request::secrets::redact(actor).into_owned(),
                    worker: None,
                    reason: None,
                    code: None,
                    at: now,
                    leased_until: None,
                };
                if assessment.needs_approval() {
                    record.status = Status::AwaitingApproval;
                    record.approval_tiers = assessment.approval_tiers();
                    event.to = Status::AwaitingApproval;
                    event.reason = Some(format!("needs approval: {}", assessment.summary()));
                }
                (record, event)
            })
            .collect();
        // All objects first (one pack when there are more than a few), then the refs.
        let items: Vec<_> = requests
            .iter()
            .zip(&prepared)
            .map(|(req, (record, event))| (req, record, event))
            .collect();
        let created = self.store.create_many(&items);
        let created = match created {
            Ok(c) => c,
            Err(e) => {
                self.done(ix)?;
                return Err(e);
            }
        };
        let mut ids: Vec<String> = Vec::with_capacity(requests.len());
        let mut seen = std::collections::HashSet::with_capacity(requests.len());
        for ((record, _), result) in prepared.into_iter().zip(created) {
            if seen.insert(record.id.clone()) {
                ids.push(record.id.clone());
            }
            match result {
                Created::New(tip) => {
                    tracing::info!(request_id = %record.id, task_id = %record.task_id, "enqueued");
                    if let Some(ix) = ix.as_mut() {
                        ix.put(tip, &record)?;
                    }
                    each(Enqueued {
                        id: record.id.clone(),
                        created: true,
                        record,
                    });
                }
                Created::Existing(tip) => {
                    let existing = self.store.read_record(&record.id, tip)?;
                    tracing::info!(request_id = %record.id, task_id = %record.task_id, "duplicate submission");
                    each(Enqueued {
                        id: record.id.clone(),
                        created: false,
                        record: existing,
                    });
                }
            }
        }
        if let Some(ix) = ix.as_mut() {
            ix.spill();
        }
        self.done(ix)?;
        Ok(ids)
    }

    /// Refuse requests whose id gc archived and whose ref is gone: a new chain under the id
    /// would make the archived one impossible to restore.
    fn refuse_archived(&self, requests: &[ChangeRequest]) -> Result<()> {
        let problems: Vec<_> = self
            .archived_problems(requests)?
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        if problems.is_empty() {
            return Ok(());
        }
        Err(Error::Rejected {
            source_name: format!("{} archived request(s)", problems.len()),
            problems,
        })
    }

    /// A `request.archived` problem for each of `requests` (by index) whose id gc archived
    /// and whose ref is gone, with the command that restores it.
    pub fn archived_problems(
        &self,
        requests: &[ChangeRequest],
    ) -> Result<Vec<(usize, crate::error::Problem)>> {
        let ids: Vec<String> = requests.iter().map(|r| r.id()).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let dir = self.store.hyperion_dir().join("archive");
        let found = crate::queue::archive::archived(&dir, &refs)?;
        let mut problems = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            if let Some(bundle) = found.get(id)
                && self.store.tip(id)?.is_none()
            {
                let b = bundle.display();
                problems.push((i, crate::error::Problem::new(
                    Code::RequestArchived,
                    format!("request {id} was archived by gc into {b}"),
                    format!(
                        "restore it with `git fetch {b} refs/hyperion/requests/{id}:refs/hyperion/requests/{id}`; or submit it with --force to store a new chain (the archived one can then not be restored under this id)"
                    ),
                )));
            }
        }
        Ok(problems)
    }

    /// Lease up to `batch` ready requests to `worker`, in queue order.
    pub fn dequeue(
        &self,
        worker: &str,
        batch: usize,
        lease: Option<Duration>,
    ) -> Result<Vec<Record>> {
        let mut leased = Vec::new();
        self.dequeue_each(worker, batch, lease, |r| leased.push(r))?;
        Ok(leased)
    }

    /// [`Queue::dequeue`], handing each leased record to `each` as soon as its ref moved
    /// (a batch of any size is leased a chunk at a time: one pack each, and memory for one
    /// chunk); returns how many were leased.
    pub fn dequeue_each(
        &self,
        worker: &str,
        batch: usize,
        lease: Option<Duration>,
        mut each: impl FnMut(Record),
    ) -> Result<usize> {
        let lease = self.lease_length(lease)?;
        check_worker(worker)?;
        let mut ix = self.index()?;
        let now = self.now();
        // Without the index, every ready request from the refs, in queue order.
        let mut from_refs = match ix.as_ref() {
            Some(_) => None,
            None => {
                let mut v: Vec<_> = self
                    .snapshot(None)?
                    .entries
                    .into_iter()
                    .filter(|(_, r)| r.is_ready(now))
                    .collect();
                v.sort_by_key(|(_, r)| r.queue_key());
                Some(v.into_iter())
            }
        };
        let mut tried = std::collections::HashSet::new();
        let mut leased = 0;
        let mut failure = None;
        let mut pages = crate::git::os::PageBudget;
        // Stacked requests: taken only once their predecessors have landed, or when they are
        // taken before them in this very call (the same batch, landed in order).
        let mut deps = depends::Dequeue::default();
        while leased < batch {
            // Take as many candidates as leases are missing (more only after a lost race), at
            // most a chunk, prepare them, write their objects as one pack (at the first ref
            // update, kept until the last), then move their refs one by one.
            let missing = (batch - leased).min(crate::queue::store::chunk());
            let mut candidates: Vec<(ObjectId, Record)> = Vec::with_capacity(missing);
            let mut orphans: Vec<(ObjectId, Record, ErrorInfo)> = Vec::new();
            let mut judge = |tip: ObjectId, r: Record, ix: Option<&Index>| -> Result<bool> {
                match deps.judge(self, ix, &r)? {
                    depends::Readiness::Ready => {
                        deps.plan(&r.id);
                        candidates.push((tip, r));
                        Ok(candidates.len() == missing)
                    }
                    depends::Readiness::Waiting => Ok(false),
                    depends::Readiness::Orphaned(error) => {
                        deps.dead(&r.id);
                        orphans.push((tip, r, error));
                        Ok(false)
                    }
                }
            };
            match (&mut from_refs, ix.as_ref()) {
                (Some(refs), _) => {
                    for (tip, r) in refs.by_ref() {
                        if judge(tip, r, None)? {
                            break;
                        }
                    }
                }
                (None, Some(ix)) => {
                    for item in ix.pending(&self.store) {
                        let (tip, r) = item?;
                        if r.is_ready(now) && tried.insert(r.id.clone()) && judge(tip, r, Some(ix))?
                        {
                            break;
                        }
                    }
                }
                (None, None) => {}
            }
            if candidates.is_empty() && orphans.is_empty() {
                break;
            }
            let _hold = crate::git::pack::hold();
            // Requests whose predecessor died cannot land as they were made: dead letters.
            for (tip, r, error) in orphans {
                let (mut next, mut event) = self.cancelled(&r, worker, error);
                match self.transition(&mut ix, tip, &mut next, &mut event, &mut [], false) {
                    Ok(_) => {
                        tracing::info!(request_id = %r.id, worker, "predecessor died; cancelled")
                    }
                    Err(Error::Conflict { .. }) => {}
                    Err(e) => {
                        tracing::warn!(request_id = %r.id, worker, error = %e, "could not cancel; skipped")
                    }
                }
            }
            let mut prepared = Vec::new();
            for (tip, current) in candidates {
                pages.read_one();
                let (mut next, mut event) = self.leased(&current, worker, lease);
                match self.prepare(tip, &mut next, &mut event, &mut [], false) {
                    Ok(commit) => prepared.push((tip, commit, next, event)),
                    Err(e) => {
                        tracing::warn!(request_id = %current.id, worker, error = %e, "could not lease; skipped");
                        failure.get_or_insert(e);
                    }
                }
            }
            for (tip, commit, next, event) in prepared {
                // A predecessor of this batch that could not be leased: not without it.
                if !deps.may_lease(&next) {
                    continue;
                }
                match self.finish(&mut ix, tip, commit, &next, &event) {
                    Ok(()) => {
                        tracing::info!(request_id = %next.id, task_id = %next.task_id, worker, "leased");
                        leased += 1;
                        deps.leased(&next.id);
                        each(next);
                    }
                    Err(Error::Conflict { .. }) => {
                        tracing::debug!(request_id = %next.id, worker, "lost the race for a lease");
                    }
                    // One request that cannot be leased (say, its ref is locked by a writer
                    // that died) must not stop the queue: skip it, and report only if nothing
                    // worked.
                    Err(e) => {
                        tracing::warn!(request_id = %next.id, worker, error = %e, "could not lease; skipped");
                        failure.get_or_insert(e);
                    }
                }
            }
            if let Some(ix) = ix.as_mut() {
                ix.spill();
            }
        }
        self.done(ix)?;
        match failure {
            Some(e) if leased == 0 => Err(e),
            _ => Ok(leased),
        }
    }

    /// The record and event of pending `r` dying because a predecessor died (`error`).
    fn cancelled(&self, r: &Record, worker: &str, error: ErrorInfo) -> (Record, Event) {
        let now = self.now();
        let mut next = r.clone();
        next.status = Status::Dead;
        next.dead_class = Some(DeadClass::Dependency);
        next.updated_at = now;
        let event = Event {
            action: Action::Cancel,
            from: Some(Status::Pending),
            to: Status::Dead,
            actor: format!("worker:{worker}"),
            worker: None,
            reason: Some(error.message.clone()),
            code: Some(error.code.clone()),
            at: now,
            leased_until: None,
        };
        next.error = Some(error);
        (next, event)
    }

    /// The record and event of `worker` leasing `current` for `lease`.
    fn leased(&self, current: &Record, worker: &str, lease: Duration) -> (Record, Event) {
        let now = self.now();
        let until = now + jiff::SignedDuration::try_from(lease).expect("lease fits");
        let mut next = current.clone();
        next.status = Status::Leased;
        next.lease_owner = Some(worker.to_owned());
        next.leased_until = Some(until);
        next.lease_secs = Some(lease.as_secs().max(1));
        next.attempts += 1;
        next.not_before = None;
        next.updated_at = now;
        let event = Event {
            action: Action::Lease,
            from: Some(Status::Pending),
            to: Status::Leased,
            actor: format!("worker:{worker}"),
            worker: Some(worker.to_owned()),
            reason: None,
            code: None,
            at: now,
            leased_until: Some(until),
        };
        (next, event)
    }

    /// Lease one particular pending request (`git hyperion apply ID`), ignoring queue order
    /// and any retry backoff.
    pub fn lease_one(&self, id: &str, worker: &str, lease: Option<Duration>) -> Result<Record> {
        let lease = self.lease_length(lease)?;
        check_worker(worker)?;
        let (id, tip, current) = self.resolve_in(id, Status::Pending)?;
        // Not before its predecessors: they land first.
        let why = match depends::Dequeue::default().judge(self, None, &current)? {
            depends::Readiness::Ready => None,
            depends::Readiness::Waiting => Some(format!(
                "every predecessor landed (it waits for {})",
                self.waiting_for(&current)?.join(", ")
            )),
            depends::Readiness::Orphaned(e) => Some(format!("live predecessors ({})", e.message)),
        };
        if let Some(expected) = why {
            return Err(Error::WrongState {
                id,
                actual: current.status,
                expected,
            });
        }
        let (next, event) = self.leased(&current, worker, lease);
        self.apply_transition(id, tip, next, event)
    }

    /// Record that the commit of applied request `id` was reverted by `revert`.
    pub fn roll_back(&self, id: &str, revert: &str, reason: &str, actor: &str) -> Result<Record> {
        let (id, tip, current) = self.resolve_in(id, Status::Applied)?;
        let now = self.now();
        let mut next = current.clone();
        next.status = Status::RolledBack;
        next.updated_at = now;
        next.rolled_back_by = Some(revert.to_owned());
        let event = Event {
            action: Action::Rollback,
            from: Some(Status::Applied),
            to: Status::RolledBack,
            actor: actor.to_owned(),
            worker: None,
            reason: Some(format!("{reason} (reverted by {revert})")),
            code: None,
            at: now,
            leased_until: None,
        };
        self.apply_transition(id, tip, next, event)
    }

    /// Approve a request that awaits approval: `actor` must be an allowed approver of every
    /// tier the request falls in now, by its target's policy at the tip
    /// (`approval.not_allowed`, `approval.no_approvers`). It becomes `pending`; the event
    /// records the actor. A worker checks the approval again when it leases the request.
    pub fn approve(&self, id: &str, actor: &str, reason: Option<&str>) -> Result<Record> {
        check_identity(actor)?;
        let (id, tip, current) = self.resolve_in(id, Status::AwaitingApproval)?;
        let req = self.store.read_request(&id, tip)?;
        let assessment = self
            .assess(&[&req])?
            .pop()
            .expect("one request, one assessment");
        assessment
            .check_approver(actor)
            .map_err(|problem| Error::Approval {
                id: id.clone(),
                problem: Box::new(problem),
            })?;
        let tiers = assessment.approval_tiers();
        let what = if tiers.is_empty() {
            "no tier needs approval any more".to_owned()
        } else {
            format!("tier {}", tiers.join(", "))
        };
        let now = self.now();
        let mut next = current.clone();
        next.status = Status::Pending;
        next.updated_at = now;
        next.error = None;
        next.not_before = None;
        next.approved_by = Some(actor.trim().to_owned());
        next.approval_tiers = tiers;
        let event = Event {
            action: Action::Approve,
            from: Some(Status::AwaitingApproval),
            to: Status::Pending,
            actor: actor.trim().to_owned(),
            worker: None,
            reason: Some(match reason.map(str::trim).filter(|r| !r.is_empty()) {
                Some(r) => format!("{r} ({what})"),
                None => format!("approved ({what})"),
            }),
            code: None,
            at: now,
            leased_until: None,
        };
        self.apply_transition(id, tip, next, event)
    }

    /// Refuse a request that awaits approval: it becomes a dead letter of class `rejected`
    /// with the reason. `requeue` brings it back to `awaiting_approval`, never to `pending`.
    pub fn reject(&self, id: &str, actor: &str, reason: &str) -> Result<Record> {
        if reason.trim().is_empty() {
            return Err(Error::Usage("reject needs a --reason".into()));
        }
        check_identity(actor)?;
        let (id, tip, current) = self.resolve_in(id, Status::AwaitingApproval)?;
        let now = self.now();
        let mut next = current.clone();
        next.status = Status::Dead;
        next.dead_class = Some(DeadClass::Rejected);
        next.error = Some(ErrorInfo {
            code: Code::ApprovalRejected.into(),
            message: format!("rejected by {}: {}", actor.trim(), reason.trim()),
        });
        next.approved_by = None;
        next.updated_at = now;
        let event = Event {
            action: Action::Reject,
            from: Some(Status::AwaitingApproval),
            to: Status::Dead,
            actor: actor.trim().to_owned(),
            worker: None,
            reason: Some(reason.trim().to_owned()),
            code: Some(Code::ApprovalRejected.into()),
            at: now,
            leased_until: None,
        };
        self.apply_transition(id, tip, next, event)
    }

    /// What this clone's configuration adds to every target's policy (hooks in the work tree,
    /// approvers of last resort; see [`crate::request::tiers::Local`]).
    pub fn local_gate(&self) -> crate::request::tiers::Local {
        crate::request::tiers::Local::load(
            self.store.repo(),
            self.settings.hooks_dir.as_deref(),
            &self.settings.approvers,
        )
    }

    /// Judge a leased request again, as the worker must before applying it: its tiers by the
    /// policy at the target's tip now (it may have changed since enqueue: `policy` is the one at
    /// the tip the worker read), the approval in its chain (an `approve` by an actor allowed now,
    /// after its last enqueue or requeue), and the checks it must pass.
    ///
    /// `onto` is the tree the request is about to be applied to (the target's tip, or the commit
    /// of an earlier request of the same batch): what is there (modes, symlinks) is judged from
    /// it, the rules from the policy at the target's tip.
    pub fn at_lease(
        &self,
        policy: &crate::request::policy::Policy,
        record: &Record,
        req: &ChangeRequest,
        onto: gix::ObjectId,
    ) -> Result<AtLease> {
        let store = &self.store;
        let local = self.local_gate();
        let view = crate::request::view::CachedTree::at(store.repo(), onto);
        let view_ref = Some(&view as &dyn crate::request::view::TreeView);
        let assessment =
            crate::request::tiers::Rules::new(policy, &local, view_ref).assess(req, view_ref);
        if assessment.needs_approval() {
            let tip = store
                .tip(&record.id)?
                .ok_or_else(|| crate::Error::NotFound(record.id.clone()))?;
            let history = store.history(&record.id, tip)?;
            if let Err(why) = crate::request::tiers::valid_approval(&history, &assessment) {
                return Ok(AtLease::Hold {
                    tiers: assessment.approval_tiers(),
                    reason: format!("not landed: {why}"),
                });
            }
        }
        Ok(AtLease::Proceed {
            checks: assessment.checks(req),
        })
    }

    /// A worker found no valid approval for the request it leased (see
    /// [`Queue::at_lease`]): it goes back to `awaiting_approval`, the attempt not
    /// counted, with the reason as its error (`approval.required`).
    pub fn hold(&self, id: &str, worker: &str, tiers: Vec<String>, reason: &str) -> Result<Record> {
        self.with_lease(id, worker, |q, _, r| {
            let now = q.now();
            let mut next = r.clone();
            next.status = Status::AwaitingApproval;
            next.lease_owner = None;
            next.leased_until = None;
            next.lease_secs = None;
            next.attempts = next.attempts.saturating_sub(1);
            next.approved_by = None;
            next.approval_tiers = tiers;
            next.error = Some(ErrorInfo {
                code: Code::ApprovalRequired.into(),
                message: reason.to_owned(),
            });
            next.updated_at = now;
            let event = Event {
                action: Action::Hold,
                from: Some(Status::Leased),
                to: Status::AwaitingApproval,
                actor: format!("worker:{worker}"),
                worker: Some(worker.to_owned()),
                reason: Some(reason.to_owned()),
                code: Some(Code::ApprovalRequired.into()),
                at: now,
                leased_until: None,
            };
            Ok((next, event, Vec::new(), false))
        })
    }

    /// One transition of `id` from `tip` outside a lease, with the index brought along.
    fn apply_transition(
        &self,
        id: String,
        tip: ObjectId,
        mut next: Record,
        mut event: Event,
    ) -> Result<Record> {
        let mut ix = self.index()?;
        let result = self.transition(&mut ix, tip, &mut next, &mut event, &mut [], false);
        self.done(ix)?;
        match result {
            Ok(_) => Ok(next),
            Err(Error::Conflict { .. }) => Err(Error::Conflict {
                id,
                what: "another process changed it first".into(),
            }),
            Err(e) => Err(e),
        }
    }

    /// Extend `worker`'s lease on `id` by its lease length.
    pub fn heartbeat(&self, id: &str, worker: &str) -> Result<Record> {
        self.with_lease(id, worker, |q, tip, r| {
            let now = q.now();
            let secs = r.lease_secs.unwrap_or(q.settings.lease.as_secs());
            let until = now + jiff::SignedDuration::from_secs(secs as i64);
            let mut next = r.clone();
            next.leased_until = Some(until);
            next.updated_at = now;
            let event = Event {
                action: Action::Heartbeat,
                from: Some(Status::Leased),
                to: Status::Leased,
                actor: format!("worker:{worker}"),
                worker: Some(worker.to_owned()),
                reason: None,
                code: None,
                at: now,
                leased_until: Some(until),
            };
            // A heartbeat on top of a heartbeat replaces it: the chain keeps the lease and
            // the latest renewal only.
            let replace = q
                .store
                .history_head(tip)?
                .is_some_and(|e| e.action == Action::Heartbeat);
            Ok((next, event, Vec::new(), replace))
        })
    }

    /// Give a leased request back to the queue without counting it as a failed attempt.
    pub fn release(&self, id: &str, worker: &str) -> Result<Record> {
        self.with_lease(id, worker, |q, _, r| {
            let now = q.now();
            let mut next = r.clone();
            next.status = Status::Pending;
            next.lease_owner = None;
            next.leased_until = None;
            next.lease_secs = None;
            next.attempts = next.attempts.saturating_sub(1);
            next.updated_at = now;
            let event = Event {
                action: Action::Release,
                from: Some(Status::Leased),
                to: Status::Pending,
                actor: format!("worker:{worker}"),
                worker: Some(worker.to_owned()),
                reason: None,
                code: None,
                at: now,
                leased_until: None,
            };
            Ok((next, event, Vec::new(), false))
        })
    }

    /// Finish a leased request: landed, or failed (retried with backoff when transient and
    /// attempts remain, else a dead letter).
    pub fn complete(&self, id: &str, worker: &str, outcome: Outcome) -> Result<Record> {
        self.with_lease(id, worker, |q, _, r| {
            let (next, event, artifacts) = q.completed(r, worker, outcome);
            Ok((next, event, artifacts, false))
        })
    }

    /// [`Queue::complete`] for many requests held by `worker`: every record's objects are
    /// written as one pack, then each ref moves. One result per item, in order; an error of
    /// one item does not stop the others.
    pub fn complete_many(
        &self,
        worker: &str,
        items: Vec<(String, Outcome)>,
    ) -> Result<Vec<Result<Record>>> {
        let prepared = self.prepare_completions(worker, items);
        self.finish_completions(worker, prepared)
    }

    /// The first half of [`Queue::complete_many`]: each completion's commit, written (in
    /// memory until [`crate::git::pack::persist`]) but no ref moved. Remote mode pushes them
    /// with the landing, then [`Queue::finish_completions`] moves the local refs.
    pub fn prepare_completions(
        &self,
        worker: &str,
        items: Vec<(String, Outcome)>,
    ) -> Vec<Result<Completion>> {
        items
            .into_iter()
            .map(|(id, outcome)| {
                self.held(&id, worker).and_then(|(id, tip, r)| {
                    let (mut next, mut event, mut artifacts) = self.completed(&r, worker, outcome);
                    let commit = self.prepare(tip, &mut next, &mut event, &mut artifacts, false)?;
                    Ok(Completion {
                        id,
                        tip,
                        commit,
                        next,
                        event,
                    })
                })
            })
            .collect()
    }

    /// The second half of [`Queue::complete_many`]: move each prepared completion's ref from
    /// the tip it was prepared on (a compare-and-swap each). Errors pass through, in order.
    pub fn finish_completions(
        &self,
        worker: &str,
        prepared: Vec<Result<Completion>>,
    ) -> Result<Vec<Result<Record>>> {
        let mut ix = self.index()?;
        let mut out = Vec::with_capacity(prepared.len());
        for p in prepared {
            let Completion {
                id,
                tip,
                commit,
                next,
                event,
            } = match p {
                Ok(p) => p,
                Err(e) => {
                    out.push(Err(e));
                    continue;
                }
            };
            out.push(match self.finish(&mut ix, tip, commit, &next, &event) {
                Ok(()) => {
                    tracing::info!(request_id = %id, task_id = %next.task_id, worker, action = event.action.as_str(), to = %next.status, "transition");
                    Ok(next)
                }
                Err(Error::Conflict { .. }) => Err(Error::Conflict {
                    id,
                    what: "another process changed it first (lease lost?)".into(),
                }),
                Err(e) => Err(e),
            });
        }
        self.done(ix)?;
        Ok(out)
    }

    /// The record and event of `worker` finishing `r` with `outcome`.
    fn completed(
        &self,
        r: &Record,
        worker: &str,
        outcome: Outcome,
    ) -> (Record, Event, Vec<Artifact>) {
        {
            let q = self;
            let now = q.now();
            let mut next = r.clone();
            next.lease_owner = None;
            next.leased_until = None;
            next.lease_secs = None;
            next.updated_at = now;
            let mut event = Event {
                action: Action::Land,
                from: Some(Status::Leased),
                to: Status::Applied,
                actor: format!("worker:{worker}"),
                worker: Some(worker.to_owned()),
                reason: None,
                code: None,
                at: now,
                leased_until: None,
            };
            match outcome {
                Outcome::Applied { commit, artifacts } => {
                    next.status = Status::Applied;
                    next.error = None;
                    next.landed_commit = Some(commit.clone());
                    event.reason = Some(format!("landed as {commit}"));
                    (next, event, artifacts)
                }
                Outcome::Failed {
                    class,
                    error,
                    transient,
                    artifacts,
                } => {
                    event.code = Some(error.code.clone());
                    event.reason = Some(error.message.clone());
                    next.error = Some(error);
                    if transient && next.attempts < q.settings.max_attempts {
                        next.status = Status::Pending;
                        next.not_before = Some(now + q.backoff(&next));
                        event.action = Action::Retry;
                        event.to = Status::Pending;
                    } else {
                        next.status = Status::Dead;
                        next.dead_class = Some(class);
                        event.action = Action::Fail;
                        event.to = Status::Dead;
                    }
                    (next, event, artifacts)
                }
            }
        }
    }

    /// Return expired leases to the queue, counting the attempt; past `maxAttempts` the
    /// request becomes a dead letter of class `lease`.
    pub fn sweep(&self) -> Result<Swept> {
        let mut swept = Swept::default();
        // Looking for stale locks reads the whole ref directory. A lock becomes stale only
        // after STALE_LOCK, so a process sweeping more often than that looks once per period.
        let due = self
            .locks_scanned
            .get()
            .is_none_or(|at| at.elapsed() >= crate::queue::store::STALE_LOCK);
        let stale = if due {
            self.locks_scanned.set(Some(std::time::Instant::now()));
            let common = self.store.repo().common_dir().to_owned();
            swept.unkept =
                crate::git::pack::remove_stale_keeps(&common, crate::git::pack::KEEP_GRACE)
                    .iter()
                    .filter_map(|k| k.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .collect();
            self.store.stale_locks(crate::queue::store::STALE_LOCK)?
        } else {
            Vec::new()
        };
        for id in stale {
            if self
                .store
                .remove_stale_lock(&id, crate::queue::store::STALE_LOCK)?
            {
                swept.unlocked.push(id);
            }
        }
        let mut ix = self.index()?;
        let now = self.now();
        // The index keeps the leased ones apart, read a chunk at a time; without it, every
        // record is read and the expired ones kept.
        let is_expired =
            |r: &Record| r.status == Status::Leased && r.leased_until.is_none_or(|t| t < now);
        let (mut leased_ids, mut from_refs) = match ix.as_ref() {
            Some(ix) => {
                // In the packs' order: each one's tip commit is read to build on.
                let mut leased = ix.leased();
                crate::git::pack::sort_by_location(self.store.repo(), &mut leased, |l| l.1);
                (leased.into_iter(), None)
            }
            None => (
                Vec::new().into_iter(),
                Some(
                    self.records_where(
                        None,
                        |tip, r| is_expired(&r).then_some((tip, r)),
                        &mut |_| {},
                    )?
                    .into_iter(),
                ),
            ),
        };
        // In chunks: each chunk's commits are prepared in memory and reach the disk as one pack
        // at its first ref update (a few packs for any number of requests, so no repack to
        // wait for), and memory holds one chunk's records and objects at a time.
        let mut pages = crate::git::os::PageBudget;
        loop {
            let chunk: Vec<(ObjectId, Record)> = match (&mut from_refs, ix.as_ref()) {
                (Some(records), _) => records
                    .by_ref()
                    .take(crate::queue::store::chunk())
                    .collect(),
                (None, Some(ix)) => {
                    let mut v = Vec::new();
                    for (id, _) in leased_ids.by_ref().take(crate::queue::store::chunk()) {
                        if let Some((tip, r)) = ix.get(&self.store, &id)?
                            && is_expired(&r)
                        {
                            v.push((tip, r));
                        }
                    }
                    v
                }
                (None, None) => Vec::new(),
            };
            if chunk.is_empty() {
                if leased_ids.len() == 0 {
                    break;
                }
                continue;
            }
            // The chunk's pack stays kept until its last ref moved.
            let _hold = crate::git::pack::hold();
            let mut prepared = Vec::with_capacity(chunk.len());
            for (tip, r) in chunk {
                pages.read_one();
                let (mut next, mut event) = self.expired(&r, now);
                match self.prepare(tip, &mut next, &mut event, &mut [], false) {
                    Ok(commit) => prepared.push((tip, commit, next, event)),
                    Err(e) => {
                        tracing::warn!(request_id = %r.id, error = %e, "could not sweep; will retry");
                        swept.skipped.push(Finding {
                            id: r.id,
                            code: e.code(),
                            message: e.to_string(),
                        });
                    }
                }
            }
            for (tip, commit, next, event) in prepared {
                match self.finish(&mut ix, tip, commit, &next, &event) {
                    Ok(()) => {
                        tracing::info!(request_id = %next.id, task_id = %next.task_id, to = %next.status, "swept expired lease");
                        if next.status == Status::Dead {
                            swept.dead.push(next.id);
                        } else {
                            swept.requeued.push(next.id);
                        }
                    }
                    Err(Error::Conflict { .. }) => {}
                    // Recovery must not stop at one stuck request: report it and go on.
                    Err(e) => {
                        tracing::warn!(request_id = %next.id, error = %e, "could not sweep; will retry");
                        swept.skipped.push(Finding {
                            id: next.id,
                            code: e.code(),
                            message: e.to_string(),
                        });
                    }
                }
            }
            if let Some(ix) = ix.as_mut() {
                ix.spill();
            }
        }
        self.done(ix)?;
        // Swept in the packs' order; reported in the ids'.
        swept.requeued.sort_unstable();
        swept.dead.sort_unstable();
        swept.skipped.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(swept)
    }

    /// The record and event of `r`'s expired lease being swept at `now`: back to `pending`
    /// with a backoff, or `dead` (class `lease`) on its last attempt.
    fn expired(&self, r: &Record, now: jiff::Timestamp) -> (Record, Event) {
        let mut next = r.clone();
        let owner = r.lease_owner.clone();
        next.lease_owner = None;
        next.leased_until = None;
        next.lease_secs = None;
        next.updated_at = now;
        let message = format!(
            "lease held by '{}' expired (attempt {} of {})",
            owner.as_deref().unwrap_or("?"),
            r.attempts,
            self.settings.max_attempts
        );
        let mut event = Event {
            action: Action::Expire,
            from: Some(Status::Leased),
            to: Status::Pending,
            actor: "sweep".into(),
            worker: owner,
            reason: Some(message.clone()),
            code: Some(Code::LeaseExpired.into()),
            at: now,
            leased_until: None,
        };
        if r.attempts >= self.settings.max_attempts {
            next.status = Status::Dead;
            next.dead_class = Some(DeadClass::Lease);
            next.error = Some(ErrorInfo {
                code: Code::LeaseExpired.into(),
                message,
            });
            event.to = Status::Dead;
        } else {
            next.status = Status::Pending;
            next.not_before = Some(now + self.backoff(&next));
        }
        (next, event)
    }

    /// Put dead letters back in the queue, with the reason recorded in their chains. One
    /// that was rejected, or whose risk tier needs approval by the policy now, goes back to
    /// `awaiting_approval` (an approval given before does not carry over).
    pub fn requeue(&self, ids: &[String], reason: &str, actor: &str) -> Result<Vec<Record>> {
        if reason.trim().is_empty() {
            return Err(Error::Usage("requeue needs a --reason".into()));
        }
        // Resolve every id before changing anything, so a typo changes nothing.
        let mut targets = Vec::new();
        let mut requests = Vec::new();
        let mut reasons = Vec::new();
        for id in ids {
            let (id, tip, record) = self.resolve_in(id, Status::Dead)?;
            requests.push(self.store.read_request(&id, tip)?);
            targets.push((tip, record));
            reasons.push(reason.to_owned());
        }
        // Stacked requests that died with a predecessor come back with it, and wait for it.
        let named: std::collections::HashSet<String> =
            targets.iter().map(|(_, r)| r.id.clone()).collect();
        for (dependent, on) in self.orphans_of(&named)? {
            let (id, tip, record) = self.resolve_in(&dependent, Status::Dead)?;
            requests.push(self.store.read_request(&id, tip)?);
            targets.push((tip, record));
            reasons.push(format!("{reason} (with its predecessor {on})"));
        }
        let assessments = self.assess(&requests.iter().collect::<Vec<_>>())?;
        let mut ix = self.index()?;
        let mut out = Vec::new();
        for (((tip, r), assessment), reason) in targets.into_iter().zip(assessments).zip(reasons) {
            let reason = reason.as_str();
            let now = self.now();
            let mut next = r.clone();
            let waits = r.dead_class == Some(DeadClass::Rejected) || assessment.needs_approval();
            next.status = if waits {
                Status::AwaitingApproval
            } else {
                Status::Pending
            };
            next.dead_class = None;
            next.error = None;
            next.attempts = 0;
            next.not_before = None;
            next.approved_by = None;
            next.approval_tiers = if waits {
                assessment.approval_tiers()
            } else {
                Vec::new()
            };
            next.updated_at = now;
            let mut why = reason.to_owned();
            if waits {
                let summary = assessment.summary();
                why.push_str(&if summary.is_empty() {
                    "; it was rejected, so it needs approval again".to_owned()
                } else {
                    format!("; needs approval: {summary}")
                });
            }
            let mut event = Event {
                action: Action::Requeue,
                from: Some(Status::Dead),
                to: next.status,
                actor: actor.to_owned(),
                worker: None,
                reason: Some(why),
                code: None,
                at: now,
                leased_until: None,
            };
            match self.transition(&mut ix, tip, &mut next, &mut event, &mut [], false) {
                Ok(_) => out.push(next),
                Err(e) => {
                    self.done(ix)?;
                    return Err(e);
                }
            }
        }
        self.done(ix)?;
        Ok(out)
    }

    /// Records matching `filter`, oldest first.
    pub fn list(&self, filter: &Filter) -> Result<Vec<Record>> {
        let ix = self.index()?;
        let snap = self.snapshot(ix.as_ref());
        self.done(ix)?;
        let entries = snap?.entries;
        // What a stacked request waits for, from the same read of every record (a queue
        // without one pays nothing for it).
        let stacked = entries.iter().any(|(_, r)| !r.depends_on.is_empty());
        let landed: std::collections::HashMap<&str, bool> = entries
            .iter()
            .filter(|(_, r)| stacked && r.status == Status::Applied)
            .map(|(_, r)| (r.id.as_str(), true))
            .collect();
        let waiting: Vec<Vec<String>> = entries
            .iter()
            .map(|(_, r)| match r.status {
                Status::Pending | Status::AwaitingApproval => r
                    .depends_on
                    .iter()
                    .filter(|d| landed.get(d.as_str()) != Some(&true))
                    .cloned()
                    .collect(),
                _ => Vec::new(),
            })
            .collect();
        drop(landed);
        let records: Vec<Record> = entries
            .into_iter()
            .zip(waiting)
            .map(|((_, mut r), waiting_for)| {
                r.waiting_for = waiting_for;
                r
            })
            .filter(|r| filter.matches(r))
            .collect();
        // Oldest first, ids breaking ties. The keys are sorted, not the records: a record is
        // a few hundred bytes, and moving 100,000 of them through a sort was a sixth of a
        // `list` of them.
        let mut order: Vec<(jiff::Timestamp, usize)> = records
            .iter()
            .enumerate()
            .map(|(i, r)| (r.created_at, i))
            .collect();
        order.sort_unstable_by(|a, b| (a.0, &records[a.1].id).cmp(&(b.0, &records[b.1].id)));
        if let Some(limit) = filter.limit {
            order.truncate(limit);
        }
        let mut slots: Vec<Option<Record>> = records.into_iter().map(Some).collect();
        Ok(order
            .into_iter()
            .map(|(_, i)| slots[i].take().expect("each index once"))
            .collect())
    }

    /// Record, history and artifacts of one request (`id` may be a unique prefix).
    pub fn show(&self, id: &str) -> Result<Details> {
        let (id, tip, mut record) = self.resolve(id)?;
        if matches!(record.status, Status::Pending | Status::AwaitingApproval) {
            record.waiting_for = self.waiting_for(&record)?;
        }
        let history = self.store.history(&id, tip)?;
        Ok(Details {
            record,
            tip: tip.to_string(),
            history: history.into_iter().map(HistoryItem::from).collect(),
            artifacts: self.store.artifacts(tip)?,
        })
    }

    /// What the derived index holds for `id` (its tip and record) as stored, before any
    /// reconciling with the refs: `None` when it has no entry, or when the index is busy
    /// (held by another process) or unusable.
    pub fn indexed(&self, id: &str) -> Result<Option<(ObjectId, Record)>> {
        let mut slot = self.index.borrow_mut();
        if slot.is_none() {
            *slot = Index::open(&Index::path(&self.store), self.settings.index_wait)?;
        }
        match slot.as_ref() {
            Some(ix) => ix.get(&self.store, id),
            None => Ok(None),
        }
    }

    /// The full request stored under `id`.
    pub fn request(&self, id: &str) -> Result<ChangeRequest> {
        let (id, tip, _) = self.resolve(id)?;
        self.store.read_request(&id, tip)
    }

    /// Every transition of every request since `since`, oldest first.
    pub fn audit(&self, since: Option<jiff::Timestamp>) -> Result<Vec<(String, HistoryItem)>> {
        let mut out = Vec::new();
        for (id, tip) in self.store.list()? {
            for h in self.store.history(&id, tip)? {
                if since.is_none_or(|t| h.event.at >= t) {
                    out.push((id.clone(), HistoryItem::from(h)));
                }
            }
        }
        out.sort_by(|a, b| (a.1.event.at, &a.0).cmp(&(b.1.event.at, &b.0)));
        Ok(out)
    }

    /// Archive finished requests older than the retention into a git bundle under
    /// `$GIT_DIR/hyperion/archive/`, verify it, then remove their refs by compare-and-swap.
    /// How far it got goes to `on_scan`: the records read, then the requests archived and
    /// their refs removed.
    pub fn gc(
        &self,
        older_than: Option<Duration>,
        dry_run: bool,
        on_scan: &mut OnScan<'_>,
    ) -> Result<Collected> {
        let age = older_than.unwrap_or(self.settings.retention);
        let cutoff = self.now() - jiff::SignedDuration::try_from(age).expect("age fits");
        // Only the old ones are kept, as they are read (not every record at once).
        let ix = self.index()?;
        // A finished request that a live one depends on stays until that one is finished:
        // the queue reads its status to let it go (or die) after it.
        let mut needed = std::collections::HashSet::new();
        let old = self.records_where(
            ix.as_ref(),
            |tip, r| {
                if !r.status.is_final() {
                    needed.extend(r.depends_on);
                    return None;
                }
                (r.updated_at < cutoff).then_some((tip, r.id))
            },
            on_scan,
        );
        self.done(ix)?;
        let mut old = old?;
        old.retain(|(_, id)| !needed.contains(id));
        // Archived in the packs' order: see [`crate::git::pack::sort_by_location`].
        crate::git::pack::sort_by_location(self.store.repo(), &mut old, |(tip, _)| *tip);
        let mut collected = Collected {
            archived: {
                let mut ids: Vec<String> = old.iter().map(|(_, id)| id.clone()).collect();
                ids.sort_unstable();
                ids
            },
            archive: None,
            dry_run,
        };
        if dry_run || old.is_empty() {
            return Ok(collected);
        }
        let dir = self.store.hyperion_dir().join("archive");
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("could not create {}", dir.display()), e))?;
        let stamp = self.now().strftime("%Y%m%dT%H%M%S%.9fZ").to_string();
        let bundle = dir.join(format!("gc-{stamp}.bundle"));
        let refs: Vec<(String, ObjectId)> = old
            .iter()
            .map(|(tip, id)| (Store::ref_name(id), *tip))
            .collect();
        let total = old.len();
        on_scan(Scan {
            what: "requests archived",
            done: 0,
            total,
        });
        // Everything the refs reach is on disk before git reads it.
        self.store.persist()?;
        crate::queue::archive::bundle_create(
            self.store.repo(),
            self.store.git_dir(),
            &bundle,
            &refs,
        )?;
        let heads = crate::queue::archive::bundle_heads(&bundle)?;
        drop(refs);
        // Only a ref the bundle holds at the very tip to be removed is removed (one that moved
        // since the snapshot is kept: it is no longer old, or its newer state is not archived).
        let mut doomed = Vec::with_capacity(old.len());
        let mut by_ref = std::collections::HashMap::with_capacity(old.len());
        for (tip, id) in old {
            let name = Store::ref_name(&id);
            if heads.get(&name) == Some(&tip) {
                doomed.push((name.clone(), tip));
                by_ref.insert(name, id);
            }
        }
        drop(heads);
        on_scan(Scan {
            what: "requests archived",
            done: total,
            total,
        });
        crate::git::os::pause_point("gc.bundle_verified");
        let doomed_len = doomed.len();
        let (removed_names, failed) =
            crate::queue::archive::delete_refs(self.store.repo(), &doomed);
        on_scan(Scan {
            what: "refs removed",
            done: removed_names.len(),
            total: doomed_len,
        });
        self.store.count_writes(removed_names.len());
        let mut ix = self.index()?;
        let mut archived = Vec::with_capacity(removed_names.len());
        for name in &removed_names {
            let id = by_ref.remove(name).expect("only doomed refs are removed");
            if let Some(ix) = ix.as_mut() {
                ix.remove(&id)?;
            }
            tracing::debug!(request_id = %id, archive = %bundle.display(), "archived");
            archived.push(id);
        }
        tracing::info!(requests = archived.len(), archive = %bundle.display(), "archived");
        let listed = crate::queue::archive::record(&dir, &bundle, &archived);
        archived.sort_unstable();
        if let Some(e) = failed.or(listed.err()) {
            self.done(ix)?;
            // Some refs may be gone already: say which, never "nothing was changed".
            let mut kept: Vec<String> = by_ref.into_values().collect();
            kept.sort_unstable();
            return Err(Error::GcIncomplete {
                archived,
                kept,
                bundle: bundle.display().to_string(),
                cause: Box::new(e),
            });
        }
        self.done(ix)?;
        self.store.reset_generation()?;
        collected.archived = archived;
        collected.archive = Some(bundle.display().to_string());
        Ok(collected)
    }

    /// The queue's part of `doctor`: stale keeps and locks, chains with missing objects,
    /// expired leases, the index against the refs (with `reindex`, rebuilt from them); and
    /// each chunk of chains handed to `check_chains` (the gate's chain checks: see
    /// `gate::verify::doctor`, which is the whole of `doctor`). With `repair`, a request whose
    /// chain misses objects is set aside under `refs/hyperion/lost/` ([`crate::queue::lost`])
    /// and dropped from the index.
    pub fn doctor_with(
        &self,
        reindex: bool,
        repair: bool,
        check_chains: &mut ChainCheck<'_>,
        on_scan: &mut OnScan<'_>,
    ) -> Result<Diagnosis> {
        let mut d = Diagnosis::default();
        // Keeps of packs whose writer died before its refs: their objects are garbage now.
        let common = self.store.repo().common_dir().to_owned();
        for keep in crate::git::pack::remove_stale_keeps(&common, crate::git::pack::KEEP_GRACE) {
            let name = keep
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            d.findings.push(Finding {
                id: name.clone(),
                code: Code::StoreStaleKeep,
                message: format!(
                    "a writer died between writing pack {name} and its refs; its keep file was removed"
                ),
            });
            d.stale_keeps.push(name);
        }
        // Every chain is read three times (its objects, its record, its links), a chunk of
        // requests at a time: the pages of the packs read are given back after each chunk, and
        // the findings are gathered by kind so that their order does not depend on the chunk.
        let mut refs = self.store.list()?;
        // Read in the packs' order, not the ids': see [`crate::git::pack::sort_by_location`].
        // The findings are put back in id order below.
        crate::git::pack::sort_by_location(self.store.repo(), &mut refs, |(_, tip)| *tip);
        let mut lost = Vec::new();
        let mut complete = Vec::with_capacity(refs.len());
        let mut pages = crate::git::os::PageBudget;
        let total = refs.len();
        let mut done = 0;
        for chunk in refs.chunks(crate::queue::store::chunk()) {
            for (id, tip) in chunk {
                scanned(on_scan, "chains' objects checked", done, total);
                done += 1;
                pages.read_one();
                let missing = crate::queue::lost::missing(self.store.repo(), *tip);
                if missing.is_empty() {
                    complete.push((id.clone(), *tip));
                } else {
                    lost.push((id.clone(), *tip, missing));
                }
            }
            crate::git::os::release_pack_pages();
        }
        refs = complete;
        lost.sort_by(|a, b| a.0.cmp(&b.0));
        if !lost.is_empty() {
            let mut ix = self.index()?;
            for (id, tip, missing) in lost {
                let names = missing
                    .iter()
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                let mut message = format!("its chain at {tip} misses object(s) {names}");
                if repair {
                    crate::queue::lost::set_aside(&self.store, &id, tip, &missing)?;
                    if let Some(ix) = ix.as_mut() {
                        ix.remove(&id)?;
                    }
                    message.push_str(&format!(
                        "; set aside as {}{id}",
                        crate::queue::lost::LOST_PREFIX
                    ));
                    d.set_aside.push(id.clone());
                } else {
                    message.push_str("; `git hyperion doctor --repair` sets it aside");
                }
                d.findings.push(Finding {
                    id,
                    code: Code::StoreMissingObject,
                    message,
                });
            }
            self.done(ix)?;
        }
        d.requests = refs.len() + d.set_aside.len();
        // Compare the index with the refs before reconciling it (tips only: no record read).
        let mut slot = self.index.borrow_mut();
        if slot.is_none() {
            *slot = Index::open(&Index::path(&self.store), self.settings.index_wait)?;
        }
        if let Some(ix) = slot.as_mut() {
            let by_id: std::collections::HashMap<&str, ObjectId> =
                refs.iter().map(|(id, tip)| (id.as_str(), *tip)).collect();
            let indexed = ix.tips();
            d.index_drift = indexed
                .iter()
                .filter(|(id, tip)| by_id.get(id) != Some(tip))
                .count()
                + refs.len().saturating_sub(indexed.len());
            drop((indexed, by_id));
            if reindex {
                ix.clear()?;
                d.reindexed = true;
            }
            ix.reconcile_with(&self.store, on_scan)?;
        } else if reindex {
            return Err(Error::Usage(
                "the index is held by another process; try again when it is idle".into(),
            ));
        }
        drop(slot);
        for id in self.store.stale_locks(crate::queue::store::STALE_LOCK)? {
            d.findings.push(Finding {
                id,
                code: Code::StoreStaleLock,
                message: "a writer died holding this ref's lock; `git hyperion sweep` removes it"
                    .into(),
            });
        }
        let now = self.now();
        let mut chains = Vec::new();
        let expired_from = d.findings.len();
        let total = refs.len();
        let mut done = 0;
        for chunk in refs.chunks(crate::queue::store::chunk()) {
            for (id, tip) in chunk {
                pages.read_one();
                // An unreadable record is reported by the chain checks below.
                if let Ok(record) = self.store.read_record(id, *tip)
                    && record.status == Status::Leased
                    && record.leased_until.is_some_and(|t| t < now)
                {
                    d.findings.push(Finding {
                        id: id.clone(),
                        code: Code::LeaseExpired,
                        message: "lease expired; `git hyperion sweep` returns it to the queue"
                            .into(),
                    });
                }
            }
            // The chain checks read a chunk at once: its progress is told per step within it.
            for start in (0..chunk.len()).step_by(SCAN_STEP) {
                let part = &chunk[start..(start + SCAN_STEP).min(chunk.len())];
                chains.extend(check_chains(self, part, &mut pages)?);
                done += part.len();
                on_scan(Scan {
                    what: "chains checked",
                    done,
                    total,
                });
            }
            crate::git::os::release_pack_pages();
        }
        d.findings[expired_from..].sort_by(|a, b| a.id.cmp(&b.id));
        chains.sort_by(|a, b| a.id.cmp(&b.id));
        d.findings.extend(chains);
        Ok(d)
    }

    /// Find a request by id or unique prefix (at least 4 hex digits).
    pub fn resolve(&self, prefix: &str) -> Result<(String, ObjectId, Record)> {
        if prefix.len() == crate::request::model::ID_LEN {
            if let Some(tip) = self.store.tip(prefix)? {
                let r = self.store.read_record(prefix, tip)?;
                return Ok((prefix.to_owned(), tip, r));
            }
            return Err(Error::NotFound(prefix.to_owned()));
        }
        if prefix.len() < 4 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::NotFound(prefix.to_owned()));
        }
        let matches: Vec<_> = self
            .store
            .list()?
            .into_iter()
            .filter(|(id, _)| id.starts_with(prefix))
            .collect();
        match matches.as_slice() {
            [] => Err(Error::NotFound(prefix.to_owned())),
            [(id, tip)] => Ok((id.clone(), *tip, self.store.read_record(id, *tip)?)),
            many => Err(Error::Ambiguous {
                prefix: prefix.to_owned(),
                candidates: many
                    .iter()
                    .take(5)
                    .map(|(id, _)| id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// [`Queue::resolve`], refusing a request that is not in `status`.
    fn resolve_in(&self, prefix: &str, status: Status) -> Result<(String, ObjectId, Record)> {
        let (id, tip, record) = self.resolve(prefix)?;
        if record.status != status {
            return Err(Error::WrongState {
                id,
                actual: record.status,
                expected: status.as_str().into(),
            });
        }
        Ok((id, tip, record))
    }

    fn lease_length(&self, lease: Option<Duration>) -> Result<Duration> {
        let lease = lease.unwrap_or(self.settings.lease);
        if lease < Duration::from_secs(1) {
            return Err(Error::Usage("a lease must last at least 1s".into()));
        }
        if lease > self.settings.max_lease {
            return Err(Error::Usage(format!(
                "a lease of {} is longer than hyperion.maxLease ({})",
                crate::duration::format(lease),
                crate::duration::format(self.settings.max_lease)
            )));
        }
        Ok(lease)
    }

    /// Jittered exponential backoff before attempt `attempts + 1`.
    fn backoff(&self, r: &Record) -> jiff::SignedDuration {
        let base = self.settings.retry_backoff.as_millis() as u64;
        let exp = base.saturating_mul(1u64 << r.attempts.saturating_sub(1).min(16));
        let capped = exp.min(MAX_BACKOFF.as_millis() as u64);
        // Jitter in [50%, 100%] of the delay, decorrelated across requests.
        let seed = crate::request::model::sha256_hex(
            format!("{}:{}:{}", r.id, r.attempts, jiff::Timestamp::now()).as_bytes(),
        );
        let frac = u64::from_str_radix(&seed[..4], 16).unwrap_or(0) as f64 / 65535.0;
        jiff::SignedDuration::from_millis((capped as f64 * (0.5 + 0.5 * frac)) as i64)
    }

    /// Run `f` on `id`'s current record after checking that `worker` holds its lease, then
    /// perform the transition it returns.
    fn with_lease(
        &self,
        id: &str,
        worker: &str,
        f: impl FnOnce(&Queue, ObjectId, &Record) -> Result<(Record, Event, Vec<Artifact>, bool)>,
    ) -> Result<Record> {
        let (id, tip, record) = self.held(id, worker)?;
        let (mut next, mut event, mut artifacts, replace) = f(self, tip, &record)?;
        let _span =
            tracing::info_span!("transition", request_id = %id, task_id = %record.task_id, worker)
                .entered();
        // The ref write is the commit point; the index is brought along afterwards and is
        // reconciled by the next reader if we die in between.
        let mut ix = self.index()?;
        let result = self.transition(&mut ix, tip, &mut next, &mut event, &mut artifacts, replace);
        self.done(ix)?;
        match result {
            Ok(_) => {
                tracing::info!(request_id = %id, task_id = %record.task_id, worker, action = event.action.as_str(), to = %next.status, "transition");
                Ok(next)
            }
            Err(Error::Conflict { .. }) => Err(Error::Conflict {
                id,
                what: "another process changed it first (lease lost?)".into(),
            }),
            Err(e) => Err(e),
        }
    }

    /// Whether `worker` still holds `id`'s lease (read from its ref, not the index).
    pub fn holds(&self, id: &str, worker: &str) -> bool {
        let Ok(Some(tip)) = self.store.tip(id) else {
            return false;
        };
        self.store
            .read_record(id, tip)
            .is_ok_and(|r| r.status == Status::Leased && r.lease_owner.as_deref() == Some(worker))
    }

    /// `id` with its tip and record, if `worker` holds its lease.
    fn held(&self, id: &str, worker: &str) -> Result<(String, ObjectId, Record)> {
        let (id, tip, record) = self.resolve_in(id, Status::Leased)?;
        let owner = record.lease_owner.clone().unwrap_or_default();
        if owner != worker {
            return Err(Error::NotOwner {
                id,
                owner,
                worker: worker.to_owned(),
            });
        }
        Ok((id, tip, record))
    }

    fn transition(
        &self,
        ix: &mut Option<Index>,
        tip: ObjectId,
        next: &mut Record,
        event: &mut Event,
        artifacts: &mut [Artifact],
        replace_tip: bool,
    ) -> Result<ObjectId> {
        let commit = self.prepare(tip, next, event, artifacts, replace_tip)?;
        self.finish(ix, tip, commit, next, event)?;
        Ok(commit)
    }

    /// The objects of a transition, in memory until the first ref update persists them.
    ///
    /// Every transition passes here, so this is where what it stores is redacted (error
    /// messages, reasons, actors, artifacts such as check output): the record and event
    /// are changed in place, and what the ref, the reflog and the index then get is the
    /// redacted form.
    fn prepare(
        &self,
        tip: ObjectId,
        next: &mut Record,
        event: &mut Event,
        artifacts: &mut [Artifact],
        replace_tip: bool,
    ) -> Result<ObjectId> {
        crate::request::secrets::redact_transition(next, event, artifacts);
        debug_assert!(
            event.from.is_none_or(|from| from.may_become(event.to)),
            "illegal transition {:?} -> {:?}",
            event.from,
            event.to
        );
        self.store.prepare(Transition {
            expected_tip: tip,
            record: next,
            event,
            artifacts,
            replace_tip,
        })
    }

    /// Move the ref to a prepared transition's commit and bring the index along.
    fn finish(
        &self,
        ix: &mut Option<Index>,
        tip: ObjectId,
        commit: ObjectId,
        next: &Record,
        event: &Event,
    ) -> Result<()> {
        let result = self.store.commit_transition(&next.id, tip, commit, event);
        if let Some(ix) = ix.as_mut() {
            match &result {
                Ok(()) => ix.put_transition(commit, next, event.from)?,
                Err(Error::Conflict { .. }) => {
                    // Someone else moved it: refresh this entry from the ref.
                    match self.store.tip(&next.id)? {
                        Some(t) => {
                            if let Ok(r) = self.store.read_record(&next.id, t) {
                                ix.put(t, &r)?;
                            }
                        }
                        None => ix.remove(&next.id)?,
                    }
                }
                Err(_) => {}
            }
        }
        result
    }
}

/// An approver's identity must be usable (see [`crate::request::model::identity_problem`]).
fn check_identity(actor: &str) -> Result<()> {
    match crate::request::model::identity_problem(actor) {
        Some(why) => Err(Error::Usage(format!(
            "'{}' is not a usable identity: {why}",
            actor.escape_debug()
        ))),
        None => Ok(()),
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

/// A request refused, named by its id and its title (redacted: a title is the agent's text).
fn rejected(req: &ChangeRequest, problems: Vec<crate::Problem>) -> Error {
    Error::Rejected {
        source_name: format!(
            "{} ({})",
            req.id(),
            crate::request::secrets::redact(&req.title)
        ),
        problems,
    }
}
