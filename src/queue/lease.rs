//! Leases and the transitions a worker makes: `dequeue`, `heartbeat`, `release`, `complete`,
//! holds and approvals, rollback, and the compare-and-swap helpers every transition goes through.

use std::time::Duration;

use gix::ObjectId;

use crate::code::Code;
use crate::error::{Error, Result};
use crate::queue::index::Index;
use crate::queue::store::Transition;
use crate::request::model::Artifact;
use crate::request::model::{Action, ChangeRequest, DeadClass, ErrorInfo, Event, Record, Status};

use super::depends;
use super::{MAX_BACKOFF, Queue, check_worker};

/// What the worker does with a leased request, by the policy at the target's tip now.
#[derive(Debug)]
pub enum AtLease {
    /// Go on; these checks must pass (required ones first).
    Proceed { checks: Vec<String> },
    /// No valid approval: back to `awaiting_approval`.
    Hold { tiers: Vec<String>, reason: String },
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

impl Queue {
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
            reason: Some(error.message.clone()),
            code: Some(error.code.clone()),
            ..Event::new(
                Action::Cancel,
                Some(Status::Pending),
                Status::Dead,
                format!("worker:{worker}"),
                now,
            )
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
            leased_until: Some(until),
            ..Event::by_worker(Action::Lease, Status::Pending, Status::Leased, worker, now)
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
            reason: Some(format!("{reason} (reverted by {revert})")),
            ..Event::new(
                Action::Rollback,
                Some(Status::Applied),
                Status::RolledBack,
                actor,
                now,
            )
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
            reason: Some(match reason.map(str::trim).filter(|r| !r.is_empty()) {
                Some(r) => format!("{r} ({what})"),
                None => format!("approved ({what})"),
            }),
            ..Event::new(
                Action::Approve,
                Some(Status::AwaitingApproval),
                Status::Pending,
                actor.trim(),
                now,
            )
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
            reason: Some(reason.trim().to_owned()),
            code: Some(Code::ApprovalRejected.into()),
            ..Event::new(
                Action::Reject,
                Some(Status::AwaitingApproval),
                Status::Dead,
                actor.trim(),
                now,
            )
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
            next.clear_lease();
            next.attempts = next.attempts.saturating_sub(1);
            next.approved_by = None;
            next.approval_tiers = tiers;
            next.error = Some(ErrorInfo {
                code: Code::ApprovalRequired.into(),
                message: reason.to_owned(),
            });
            next.updated_at = now;
            let event = Event {
                reason: Some(reason.to_owned()),
                code: Some(Code::ApprovalRequired.into()),
                ..Event::by_worker(
                    Action::Hold,
                    Status::Leased,
                    Status::AwaitingApproval,
                    worker,
                    now,
                )
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
                leased_until: Some(until),
                ..Event::by_worker(
                    Action::Heartbeat,
                    Status::Leased,
                    Status::Leased,
                    worker,
                    now,
                )
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
            next.clear_lease();
            next.attempts = next.attempts.saturating_sub(1);
            next.updated_at = now;
            let event = Event::by_worker(
                Action::Release,
                Status::Leased,
                Status::Pending,
                worker,
                now,
            );
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
            next.clear_lease();
            next.updated_at = now;
            let mut event =
                Event::by_worker(Action::Land, Status::Leased, Status::Applied, worker, now);
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
    pub(super) fn backoff(&self, r: &Record) -> jiff::SignedDuration {
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

    pub(super) fn transition(
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
    pub(super) fn prepare(
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
    pub(super) fn finish(
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
