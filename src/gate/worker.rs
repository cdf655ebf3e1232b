//! The worker: lease, validate again, run pre-apply hooks, apply in memory, run checks in a
//! pooled worktree, land by compare-and-swap, note, record.
//!
//! Every outcome is recorded on the request's chain: `applied` with the landed commit, a dead
//! letter with its class and code, or a retry with backoff for transient failures. A worker
//! that dies anywhere leaves the request leased; the lease expires, `sweep` returns it, and the
//! next worker first looks for a commit that already landed it (the `Hyperion-Request`
//! trailer) so nothing lands twice.
//!
//! In remote mode a worker speculates (`hyperion.speculate`, docs/remote.md "A train without a
//! coordinator"): its chain starts on top of the requests other workers leased ahead of its
//! own ([`Worker::speculation`]), applied but never checked, recorded or landed here; it lands
//! only once the remote's target holds exactly the tree they make, its commits moved onto that
//! target commit ([`Worker::await_ahead`]), else it is built again on the target as it is.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gix::ObjectId;
use serde::Serialize;

mod leases;

use crate::code::Code;
use crate::error::{Error, Result};
use crate::gate::checks::{self, CheckCommand, CheckStatus, OutputLimit};
use crate::gate::land::{self, Blocked, Person};
use crate::queue::remote::{self as shared, Landing, Remote};
use crate::queue::{Outcome, Queue};
use crate::request::apply::{self, FileApplied};
use crate::request::model::Artifact;
use crate::request::model::{ChangeRequest, DeadClass, ErrorInfo, Record, Status};
use crate::request::policy::Policy;
use crate::request::target::{self, Target, Tip};

/// How a request left the worker's hands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// Landed on the target branch.
    Landed,
    /// Found already landed by an earlier attempt that died before recording it.
    Recovered,
    /// Became a dead letter.
    Dead,
    /// Failed transiently; back in the queue after a backoff.
    Retry,
    /// Given back to the queue untouched (the worker was told to stop).
    Released,
    /// Another worker took the request over (our lease expired meanwhile).
    LeaseLost,
    /// Back to `awaiting_approval`: its tier needs approval and its chain holds no approval
    /// valid under the policy now.
    Held,
    /// `--dry-run`: what would happen, nothing changed.
    WouldLand,
    WouldFail,
}

/// One check's outcome, as reported and noted.
#[derive(Debug, Clone, Serialize)]
pub struct CheckSummary {
    pub name: String,
    /// `passed`, `failed`, `timed_out`, `cancelled` or `spawn_failed`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    /// The tree the check ran on: the request's own commit's, or with batched checks
    /// (`hyperion.checkBatch`) the combined tree of the requests checked together.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tree: Option<String>,
    /// With batched checks: how many requests that tree combined on top of the target's tip
    /// (this one and those before it in its batch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
}

/// What the worker did with one request.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub id: String,
    pub task_id: String,
    pub result: Disposition,
    /// The request's status afterwards.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<DeadClass>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<Code>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileApplied>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckSummary>,
    pub duration_ms: u64,
    /// When the request was enqueued (for enqueue-to-landed latency; not printed).
    #[serde(skip)]
    pub created_at: Option<jiff::Timestamp>,
}

/// The worker's steps as they happen: progress on a terminal, live metrics
/// ([`crate::obs::metrics::WorkerMetrics::progress`]).
#[derive(Debug, Clone)]
pub enum Progress {
    Leased {
        id: String,
        task_id: String,
    },
    Check {
        id: String,
        name: String,
    },
    /// Batched checks: `name` runs on the combined tree of `requests` requests.
    CheckBatch {
        requests: usize,
        tree: String,
        name: String,
    },
    Sweep {
        returned: usize,
    },
    /// A request's patches applied in memory, in `duration`.
    Applied {
        id: String,
        duration: Duration,
    },
    /// The target moved before a chain landed: it is built and checked again on the new tip.
    Rebuild {
        target: String,
    },
    /// The chains built from a batch of `requests` requests are being landed.
    Landing {
        requests: usize,
    },
    /// A check is still running (every 100 ms while it runs: a display of its elapsed time
    /// redraws on it).
    Tick,
    /// A chunk of the running check `name`'s output, as read (only with
    /// [`Worker::with_follow`]). The check's raw bytes: hostile, escape before showing them.
    Output {
        name: String,
        stream: checks::Stream,
        chunk: Vec<u8>,
    },
}

/// Stop signals: `drain` finishes what is in hand and stops; `abort` also cancels running
/// checks and gives the request back.
#[derive(Debug, Default)]
pub struct Stop {
    pub drain: AtomicBool,
    pub abort: AtomicBool,
}

impl Stop {
    pub fn draining(&self) -> bool {
        self.drain.load(Ordering::SeqCst) || self.aborted()
    }
    pub fn aborted(&self) -> bool {
        self.abort.load(Ordering::SeqCst)
    }
}

/// How the worker loop ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One batch (or nothing, when the queue is empty), then stop.
    Once,
    /// Until no request is ready.
    Drain,
    /// Until stopped.
    Forever,
}

/// Options of a worker run (its id and lease length are the [`Worker`]'s own).
#[derive(Debug, Clone)]
pub struct Options {
    pub batch: usize,
    pub mode: Mode,
    /// Longest sleep between polls of an empty queue.
    pub poll: Duration,
}

/// A unique worker id: host, process and a random part.
pub fn new_id() -> String {
    let host = host_name();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        (nanos ^ std::process::id().rotate_left(16)) & 0xffff
    )
}

fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_else(|_| "host".into());
    let host: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if host.is_empty() { "host".into() } else { host }
}

/// The worker's machinery around one queue.
pub struct Worker<'q> {
    queue: &'q Queue,
    id: String,
    lease: Option<Duration>,
    committer: Person,
    pool: crate::gate::worktree::Pool,
    /// The worktree slot this worker keeps between requests with checks.
    slot: std::cell::RefCell<Option<crate::gate::worktree::Slot>>,
    /// More slots, for batched checks run several at once (`hyperion.checkJobs`).
    extra_slots: std::cell::RefCell<Vec<crate::gate::worktree::Slot>>,
    /// The leases of the batch in hand, renewed while it is worked on.
    leases: leases::Leases,
    output: OutputLimit,
    /// Requests whose checks run once on their combined tree (`hyperion.checkBatch`); 1:
    /// each request's checks run on its own commit as it is built.
    check_batch: usize,
    /// How many trees batched checks may check at once, each in a slot of its own
    /// (`hyperion.checkJobs`).
    check_jobs: usize,
    /// Remote mode (docs/remote.md): leases, heartbeats, landings and records are pushed to
    /// this remote, and requests are built on its target tips.
    remote: Option<Remote>,
    /// Remote mode's train (`hyperion.speculate`): build on the requests other workers leased
    /// ahead of this one's, land once they landed as speculated ([`Worker::speculate`]).
    speculate: bool,
    /// Requests leased ahead (id, owner) this worker no longer speculates on: it waited for
    /// them past its bound, or a request of its own failed on top of them.
    distrusted: std::cell::RefCell<Vec<(String, String)>>,
    /// Hand each check's output to the progress callback as it comes ([`Progress::Output`]).
    follow: bool,
}

/// The fate of a request decided inside the pipeline.
enum Verdict {
    /// Built as `commit` (not landed yet), or found already landed (`recovered`).
    Land {
        commit: ObjectId,
        files: Vec<FileApplied>,
        checks: Vec<CheckSummary>,
        artifacts: Vec<Artifact>,
        recovered: bool,
        /// Recorded already: remote mode pushes a landing's records with it.
        recorded: Option<Box<Record>>,
        /// Checks left to run on a tree holding this commit (batched checks, see
        /// [`Worker::check_chain`]).
        deferred: Vec<CheckCommand>,
    },
    Fail {
        class: DeadClass,
        code: Code,
        message: String,
        transient: bool,
        artifacts: Vec<Artifact>,
        checks: Vec<CheckSummary>,
    },
    Release {
        reason: String,
    },
    /// No valid approval: back to `awaiting_approval` (see [`crate::queue::Queue::at_lease`]).
    Hold {
        tiers: Vec<String>,
        reason: String,
    },
    LeaseLost,
}

impl<'q> Worker<'q> {
    pub fn new(queue: &'q Queue, id: String, lease: Option<Duration>) -> Worker<'q> {
        let repo = queue.store().repo();
        Worker {
            queue,
            id,
            lease,
            committer: land::committer(repo),
            pool: crate::gate::worktree::Pool::new(repo.common_dir()),
            slot: std::cell::RefCell::new(None),
            extra_slots: std::cell::RefCell::new(Vec::new()),
            leases: leases::Leases::default(),
            output: OutputLimit::default(),
            check_batch: queue.settings().check_batch.max(1),
            check_jobs: queue.settings().check_jobs.max(1),
            remote: None,
            speculate: false,
            distrusted: std::cell::RefCell::new(Vec::new()),
            follow: false,
        }
    }

    /// Hand the output of each check run on a request's own commit, or on a batch's tree
    /// while not bisecting in parallel, to the progress callback as it is read
    /// ([`Progress::Output`]): `worker --follow`.
    pub fn with_follow(mut self, on: bool) -> Worker<'q> {
        self.follow = on;
        self
    }

    /// Work on the queue shared through `remote` (remote mode, docs/remote.md): leases as
    /// [`crate::queue::remote::lease`] takes them, heartbeats pushed, requests built on the
    /// remote's target tip and landed by one atomic push with their records and notes.
    pub fn with_remote(mut self, remote: Remote) -> Worker<'q> {
        self.leases.remote = Some(remote.clone());
        self.remote = Some(remote);
        self.speculate = self.queue.settings().speculate;
        self
    }

    /// Speculate on the requests leased ahead of this worker's (remote mode's train, see
    /// [`Worker::speculate`]), or not (instead of `hyperion.speculate`).
    pub fn with_speculate(mut self, on: bool) -> Worker<'q> {
        self.speculate = on && self.remote.is_some();
        self
    }

    /// Run the checks of up to `n` requests of a chain once, on their combined tree, and
    /// bisect when they fail (instead of `hyperion.checkBatch`); 1 checks each request on
    /// its own commit.
    pub fn with_check_batch(mut self, n: usize) -> Worker<'q> {
        self.check_batch = n.max(1);
        self
    }

    /// Let batched checks check up to `n` trees at once, each in a slot of its own (instead
    /// of `hyperion.checkJobs`).
    pub fn with_check_jobs(mut self, n: usize) -> Worker<'q> {
        self.check_jobs = n.max(1);
        self
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn actor(&self) -> String {
        format!("worker:{}", self.id)
    }

    /// Run the loop: sweep, lease, process, until `opts.mode` says stop or `stop` is set.
    /// Every report goes to `on_report`; they are also returned, except in
    /// [`Mode::Forever`] (a long-running worker does not keep them).
    pub fn run(
        &self,
        opts: &Options,
        stop: &Stop,
        on_report: &mut dyn FnMut(&Report),
        on_progress: &mut dyn FnMut(&Progress),
    ) -> Result<Vec<Report>> {
        let mut reports = Vec::new();
        // Expired leases are found within a lease of their end: this worker's own lease
        // (`--lease`) when it is the shorter, as in a fleet started with short leases.
        let sweep_every = self
            .lease
            .unwrap_or(self.queue.settings().lease)
            .min(self.queue.settings().lease)
            .min(Duration::from_secs(30))
            .max(Duration::from_secs(1));
        let mut last_sweep: Option<Instant> = None;
        let mut idle = Duration::from_millis(50);
        loop {
            if stop.draining() {
                break;
            }
            // A batch writes the objects of several refs before it updates them: its packs
            // stay kept until the batch is done.
            let _hold = crate::git::pack::hold();
            if last_sweep.is_none_or(|t| t.elapsed() >= sweep_every) {
                let swept = match &self.remote {
                    None => self.queue.sweep()?,
                    Some(remote) => {
                        let r = shared::sweep(self.queue, remote, &self.actor())?;
                        if let Some(e) = &r.fetch_failed {
                            tracing::warn!(worker = %self.id, error = %e, "could not fetch before the sweep");
                        }
                        if let Some(e) = &r.push_failed {
                            tracing::warn!(worker = %self.id, error = %e, "could not push the sweep");
                        }
                        r.swept
                    }
                };
                last_sweep = Some(Instant::now());
                let returned = swept.requeued.len() + swept.dead.len();
                if returned > 0 {
                    on_progress(&Progress::Sweep { returned });
                }
            }
            let leased = match &self.remote {
                None => self
                    .queue
                    .dequeue(&self.id, opts.batch.max(1), self.lease)?,
                Some(remote) => {
                    // A fetch first, branches and notes too: the chain is built on the target
                    // tip it saw.
                    match shared::lease(
                        self.queue,
                        remote,
                        &self.id,
                        opts.batch.max(1),
                        self.lease,
                        shared::View::Fetch,
                    ) {
                        Ok(won) => won.records,
                        // Cut off from the remote: nothing is leased; polled again later.
                        Err(e) if e.code() == Code::RemoteUnreachable => {
                            tracing::warn!(worker = %self.id, error = %e, "remote unreachable");
                            Vec::new()
                        }
                        Err(e) => return Err(e),
                    }
                }
            };
            if leased.is_empty() {
                // Other processes may want the index while we wait.
                self.queue.close_index();
                if matches!(opts.mode, Mode::Once | Mode::Drain) {
                    break;
                }
                let until = Instant::now() + idle;
                while Instant::now() < until && !stop.draining() {
                    std::thread::sleep(Duration::from_millis(20));
                }
                idle = (idle * 2).min(opts.poll.max(Duration::from_millis(50)));
                continue;
            }
            idle = Duration::from_millis(50);
            self.hold(&leased);
            let mut batch = Batch::default();
            for record in leased {
                self.leases.renew_if_due(self.queue, &self.id);
                // Stopping: what is in hand lands; the rest of the batch goes back.
                if stop.draining() {
                    batch.decided.push(Decided::new(
                        record,
                        Verdict::Release {
                            reason: "the worker was stopped".into(),
                        },
                        Instant::now(),
                    ));
                    continue;
                }
                on_progress(&Progress::Leased {
                    id: record.id.clone(),
                    task_id: record.task_id.clone(),
                });
                self.take(&mut batch, record, stop, on_progress)?;
            }
            let flushed = self.flush(&mut batch, stop, on_progress);
            self.leases.clear();
            for report in flushed? {
                on_report(&report);
                if opts.mode != Mode::Forever {
                    reports.push(report);
                }
            }
            // The index stays open from batch to batch (opening it costs milliseconds) until
            // another process asks for it; then it is its turn.
            self.queue.release_index_if_wanted();
            if opts.mode == Mode::Once {
                break;
            }
        }
        self.queue.close_index();
        // A repack this worker started in the background ends with its run.
        crate::git::pack::finish_roll_up(crate::queue::store::chunk());
        Ok(reports)
    }

    /// Take one leased request through the pipeline and record the outcome.
    pub fn process(
        &self,
        record: &Record,
        stop: &Stop,
        on_progress: &mut dyn FnMut(&Progress),
    ) -> Result<Report> {
        let mut batch = Batch::default();
        self.hold(std::slice::from_ref(record));
        self.take(&mut batch, record.clone(), stop, on_progress)?;
        let flushed = self.flush(&mut batch, stop, on_progress);
        self.leases.clear();
        Ok(flushed?.pop().expect("one request in, one report out"))
    }

    /// Keep the leases of `records` (just leased to this worker) until they are recorded.
    fn hold(&self, records: &[Record]) {
        let lease = self.lease.unwrap_or(self.queue.settings().lease);
        self.leases.clear();
        self.leases.hold(records.iter().map(|r| {
            let secs = r.lease_secs.map(Duration::from_secs).unwrap_or(lease);
            (r.id.clone(), leases::renew_every(secs))
        }));
    }

    /// Build `record` onto its target (on top of what this batch built there already); a
    /// request that cannot land is decided at once, one that can waits in its target's
    /// chain for [`Worker::flush`].
    fn take(
        &self,
        batch: &mut Batch,
        record: Record,
        stop: &Stop,
        on_progress: &mut dyn FnMut(&Progress),
    ) -> Result<()> {
        let started = Instant::now();
        request_span(&record.id, &record.task_id, &self.id).in_scope(|| {
            tracing::info!(step = "lease", attempts = record.attempts, "leased");
        });
        let req = match self.queue.request(&record.id) {
            Ok(req) => req,
            Err(e) => {
                batch
                    .decided
                    .push(Decided::new(record, environment(&e), started));
                return Ok(());
            }
        };
        self.build(
            &mut batch.chains,
            &mut batch.decided,
            record,
            req,
            started,
            stop,
            on_progress,
        );
        Ok(())
    }

    /// Build one request on the head of its target's chain in `chains` (or the target's tip
    /// when there is none yet) and add it there; decide it when it cannot land.
    #[allow(clippy::too_many_arguments)]
    fn build(
        &self,
        chains: &mut Vec<Chain>,
        decided: &mut Vec<Decided>,
        record: Record,
        req: ChangeRequest,
        started: Instant,
        stop: &Stop,
        on_progress: &mut dyn FnMut(&Progress),
    ) {
        // A stacked request lands only on top of its predecessors: one leased in this batch
        // and decided otherwise (dead, retried, given back, lost) takes it out of the batch;
        // the queue then has it wait, or die with its predecessor.
        let not_landed = record.depends_on.iter().find(|dep| {
            decided
                .iter()
                .any(|d| d.record.id == **dep && !matches!(d.verdict, Verdict::Land { .. }))
        });
        if let Some(dep) = not_landed {
            let reason = format!("its predecessor {dep} did not land in this batch");
            decided.push(Decided::new(record, Verdict::Release { reason }, started));
            return;
        }
        let (gate, mut onto) = match self.gate_for(chains, &req) {
            Ok(found) => found,
            Err(verdict) => {
                decided.push(Decided::new(record, verdict, started));
                return;
            }
        };
        // The first request of a chain on this target: in remote mode, the chain starts on
        // top of the requests other workers leased ahead of this one (the train).
        if self.speculate
            && !chains.iter().any(|c| std::rc::Rc::ptr_eq(&c.gate, &gate))
            && let Some(spec) = self.speculation(&gate, &record)
        {
            onto = spec.head;
            chains.push(Chain {
                head: spec.head,
                onto: gate.tip.commit,
                gate: gate.clone(),
                items: Vec::new(),
                spec: Some(spec),
            });
        }
        let verdict = self
            .pipeline(&record, &req, &gate, onto, stop, on_progress, Pass::Land)
            .unwrap_or_else(|e| environment(&e));
        // A request that fails on top of requests leased ahead says nothing yet: they may be
        // what fails. They are no longer speculated on here, and the chain is built again
        // without them (its requests before this one too), this one last.
        if matches!(verdict, Verdict::Fail { .. })
            && let Some(at) = chains
                .iter()
                .position(|c| std::rc::Rc::ptr_eq(&c.gate, &gate) && c.spec.is_some())
        {
            let chain = chains.remove(at);
            let spec = chain.spec.expect("matched with a speculation");
            tracing::info!(request_id = %record.id, ahead = spec.phantoms.len(), "failed on top of requests leased ahead; building without them");
            self.distrust(&spec);
            for b in chain.items {
                self.build(
                    chains,
                    decided,
                    b.record,
                    b.req,
                    b.started,
                    stop,
                    on_progress,
                );
            }
            self.build(chains, decided, record, req, started, stop, on_progress);
            return;
        }
        match verdict {
            Verdict::Land {
                commit,
                files,
                checks,
                artifacts,
                recovered: false,
                recorded: None,
                deferred,
            } => {
                let built = Built {
                    record,
                    req,
                    commit,
                    files,
                    checks,
                    artifacts,
                    deferred,
                    started,
                };
                match chains
                    .iter_mut()
                    .find(|c| std::rc::Rc::ptr_eq(&c.gate, &gate))
                {
                    Some(chain) => {
                        chain.head = commit;
                        chain.items.push(built);
                    }
                    None => chains.push(Chain {
                        onto: gate.tip.commit,
                        gate,
                        head: commit,
                        items: vec![built],
                        spec: None,
                    }),
                }
            }
            verdict => decided.push(Decided::new(record, verdict, started)),
        }
    }

    /// The gate `req` is judged by and the commit it is applied onto: the head of the
    /// batch's chain on its target when there is one (the gate stays that of the branch as it
    /// is, never what the batch built), else the target's tip. A verdict when the request
    /// names no valid target or the branch is gone.
    fn gate_for(
        &self,
        chains: &[Chain],
        req: &ChangeRequest,
    ) -> std::result::Result<(std::rc::Rc<Gate>, ObjectId), Verdict> {
        let target = Target::of_request(req.target.as_deref(), &self.queue.settings().target)
            .map_err(|p| fail(DeadClass::Validation, p.code, p.message, false))?;
        if let Some(chain) = chains.iter().find(|c| c.gate.tip.target == target) {
            return Ok((chain.gate.clone(), chain.head));
        }
        match self.gate(&target) {
            Ok(gate) => {
                let onto = gate.tip.commit;
                Ok((gate, onto))
            }
            // Gone since enqueue: someone may bring it back.
            Err(target::Error::Refused(p)) => {
                Err(fail(DeadClass::Environment, p.code, p.message, true))
            }
            Err(target::Error::Failed(e)) => Err(environment(&e)),
        }
    }

    /// The gate of `target` as the branch is now: its tip and the policy there.
    fn gate(&self, target: &Target) -> Result<std::rc::Rc<Gate>, target::Error> {
        let repo = self.queue.store().repo();
        let tip = match &self.remote {
            None => target.resolve(repo)?,
            // The remote's branch as of the last fetch: what a landing push moves.
            Some(remote) => {
                let tracked = remote
                    .tracked_ref(self.queue.store(), target.refname())
                    .map_err(target::Error::Failed)?;
                target.resolve_at(repo, tracked)?
            }
        };
        let policy = tip.policy(repo)?;
        Ok(std::rc::Rc::new(Gate { tip, policy }))
    }

    /// The train (remote mode, `hyperion.speculate`, docs/remote.md): the requests other
    /// workers leased on `gate`'s target ahead of this worker's (`first` is one of its own),
    /// applied in their order onto the target's tip with the same gate as any request — one
    /// that does not apply or is refused is left out — but never checked, recorded or landed
    /// here. `None` when there are none.
    ///
    /// The order is total and the same on every machine: each worker's place is the time of
    /// its earliest live lease (the lease commit's, which a heartbeat does not change), then
    /// its id; a worker's requests follow each other by their lease times, then queue order.
    /// A worker speculates only on workers placed before it, so no two wait for each other.
    fn speculation(&self, gate: &std::rc::Rc<Gate>, first: &Record) -> Option<Speculation> {
        let store = self.queue.store();
        let repo = store.repo();
        let now = self.queue.now();
        let filter = crate::queue::Filter {
            status: Some(Status::Leased),
            ..Default::default()
        };
        let leased = match self.queue.list(&filter) {
            Ok(leased) => leased,
            Err(e) => {
                tracing::warn!(worker = %self.id, error = %e, "could not list the leases ahead; not speculating");
                return None;
            }
        };
        let mut places: std::collections::HashMap<String, jiff::Timestamp> = Default::default();
        let mut live = Vec::new();
        for r in leased {
            let Some(owner) = r.lease_owner.clone() else {
                continue;
            };
            if r.leased_until.is_none_or(|until| until <= now) {
                continue;
            }
            let Some(at) = leased_at(store, &r.id) else {
                continue;
            };
            let place = places.entry(owner.clone()).or_insert(at);
            *place = (*place).min(at);
            live.push((owner, at, r));
        }
        let Some(mine) = places.get(&self.id).copied() else {
            tracing::debug!(request_id = %first.id, "no live lease of this worker found; not speculating");
            return None;
        };
        let mine = (mine, self.id.as_str());
        let default_target = &self.queue.settings().target;
        let mut ahead: Vec<(jiff::Timestamp, String, jiff::Timestamp, Record)> = {
            let distrusted = self.distrusted.borrow();
            live.into_iter()
                .filter(|(owner, _, r)| {
                    *owner != self.id
                        && !distrusted.iter().any(|(id, o)| *id == r.id && o == owner)
                        && Target::of_request(r.target.as_deref(), default_target)
                            .is_ok_and(|t| t == gate.tip.target)
                })
                .filter_map(|(owner, at, r)| {
                    let place = places[&owner];
                    ((place, owner.as_str()) < mine).then_some((place, owner, at, r))
                })
                .collect()
        };
        if ahead.is_empty() {
            return None;
        }
        ahead.sort_by(|a, b| {
            let key = |x: &(jiff::Timestamp, String, jiff::Timestamp, Record)| {
                (
                    x.0,
                    x.1.clone(),
                    x.2,
                    std::cmp::Reverse(x.3.priority),
                    x.3.created_at,
                    x.3.id.clone(),
                )
            };
            key(a).cmp(&key(b))
        });
        let gate_dir = gate_entry(repo, gate.tip.tree).ok()?;
        let stop = Stop::default();
        let mut head = gate.tip.commit;
        let mut phantoms = Vec::new();
        for (_, owner, _, r) in ahead {
            let Ok(req) = self.queue.request(&r.id) else {
                continue;
            };
            let verdict = self.pipeline(&r, &req, gate, head, &stop, &mut |_| {}, Pass::Phantom);
            let commit = match verdict {
                Ok(Verdict::Land { commit, .. }) => commit,
                // Refused here (does not apply, not valid, held): left out.
                Ok(_) => continue,
                Err(e) => {
                    tracing::debug!(request_id = %r.id, error = %e, "could not apply a request leased ahead");
                    continue;
                }
            };
            let Ok(tree) = crate::git::tree::tree_of(repo, commit) else {
                break;
            };
            // One that changes the gate (policy, hooks, checks) changes it for the requests
            // after it only once it landed: the speculation stops before it.
            if gate_entry(repo, tree).ok()? != gate_dir {
                break;
            }
            head = commit;
            phantoms.push(Phantom {
                id: r.id,
                owner,
                tree,
            });
        }
        if phantoms.is_empty() {
            return None;
        }
        let ids: Vec<&str> = phantoms.iter().map(|p| p.id.as_str()).collect();
        tracing::info!(target = %gate.tip.target, ahead = ?ids, "speculating on the requests leased ahead");
        Some(Speculation { phantoms, head })
    }

    /// Speculate no more on the requests of `phantoms` (while their owner holds them).
    fn distrust(&self, spec: &Speculation) {
        self.distrust_from(&spec.phantoms);
    }

    fn distrust_from(&self, phantoms: &[Phantom]) {
        let mut distrusted = self.distrusted.borrow_mut();
        for p in phantoms {
            if !distrusted
                .iter()
                .any(|(id, o)| *id == p.id && *o == p.owner)
            {
                distrusted.push((p.id.clone(), p.owner.clone()));
            }
        }
    }

    /// Wait until the remote's target holds the tree of the last request `chain` speculated
    /// on (they all landed, by their own workers, as speculated): polled by fetching, after a
    /// short jittered pause, the chain's leases renewed meanwhile. Any other move of the
    /// target, a request ahead no longer leased by its worker, or a wait past half the lease
    /// ends it: the chain is built again on the target as it is (those waited for too long
    /// are not speculated on again).
    fn await_ahead(&self, chain: &Chain, stop: &Stop) -> Result<Ahead> {
        let spec = chain.spec.as_ref().expect("called on a speculating chain");
        let remote = self.remote.as_ref().expect("speculation is remote mode's");
        let store = self.queue.store();
        let repo = store.repo();
        let branch = chain.gate.tip.target.refname();
        let bound = self.lease.unwrap_or(self.queue.settings().lease) / 2;
        let started = Instant::now();
        let mut landed = 0;
        loop {
            if stop.aborted() {
                return Ok(Ahead::Stopped("the worker was stopped".into()));
            }
            if let Some(tip) = remote.tracked_ref(store, branch)?
                && tip != chain.gate.tip.commit
            {
                let tree = crate::git::tree::tree_of(repo, tip)?;
                if tree == spec.tree() {
                    tracing::info!(target = branch, %tip, waited_ms = started.elapsed().as_millis() as u64, "the requests leased ahead landed as speculated");
                    return Ok(Ahead::Landed(tip));
                }
                // Some of them landed (a worker lands its chain at once).
                match spec.phantoms.iter().position(|p| p.tree == tree) {
                    Some(k) => landed = k + 1,
                    None => {
                        return Ok(Ahead::Otherwise(format!(
                            "{branch} moved to {tip}, not to what was speculated"
                        )));
                    }
                }
            }
            let now = self.queue.now();
            for p in &spec.phantoms[landed..] {
                let record = match store.tip(&p.id)? {
                    Some(tip) => Some(store.read_record(&p.id, tip)?),
                    None => None,
                };
                let held = record.is_some_and(|r| {
                    r.status == Status::Leased
                        && r.lease_owner.as_deref() == Some(p.owner.as_str())
                        && r.leased_until.is_some_and(|until| until > now)
                });
                if !held {
                    return Ok(Ahead::Otherwise(format!(
                        "{}, leased ahead, is no longer leased by its worker",
                        p.id
                    )));
                }
            }
            if started.elapsed() >= bound {
                self.distrust_from(&spec.phantoms[landed..]);
                return Ok(Ahead::Otherwise(format!(
                    "waited {} ms for the requests leased ahead",
                    started.elapsed().as_millis()
                )));
            }
            let gone = self.leases.renew_if_due(self.queue, &self.id);
            if chain.items.iter().any(|b| gone.contains(&b.record.id)) {
                return Ok(Ahead::Otherwise("a lease of the chain was lost".into()));
            }
            shared::jitter(&self.id, 0);
            if let Err(e) = shared::fetch(store, remote, &self.actor()) {
                tracing::warn!(worker = %self.id, error = %e, "could not fetch while waiting for the requests leased ahead");
            }
        }
    }

    /// Move `chain`'s commits onto `onto` (the target commit that landed the requests it
    /// speculated on, with the tree of the last of them): the same trees, messages and
    /// trailers, new parents. It then lands from `onto`.
    fn reparent(&self, chain: &mut Chain, onto: ObjectId) -> Result<()> {
        let repo = self.queue.store().repo();
        let mut parent = onto;
        for b in &mut chain.items {
            b.commit = land::reparent(repo, b.commit, parent)?;
            parent = b.commit;
        }
        chain.head = parent;
        chain.onto = onto;
        chain.spec = None;
        Ok(())
    }

    /// Land every chain of the batch (one compare-and-swap of each target, one notes
    /// commit), then record every outcome (one pack for all the records).
    fn flush(
        &self,
        batch: &mut Batch,
        stop: &Stop,
        on_progress: &mut dyn FnMut(&Progress),
    ) -> Result<Vec<Report>> {
        let requests = batch.chains.iter().map(|c| c.items.len()).sum();
        if requests > 0 {
            on_progress(&Progress::Landing { requests });
        }
        for chain in std::mem::take(&mut batch.chains) {
            let mut next = Some(chain);
            // With batched checks a chain may land in parts: what is left after a part
            // landed comes back built on the new tip.
            while let Some(chain) = next {
                next = self.land_chain(chain, &mut batch.decided, stop, on_progress)?;
            }
        }
        let mut decided = std::mem::take(&mut batch.decided);
        // Reports in the order the requests were leased (queue order).
        decided.sort_by_key(|d| d.started);
        self.record(decided)
    }

    /// Move `chain`'s target from its base to its head, rebuilding on the new tip (bounded)
    /// when another writer moved it first. With batched checks, the chain's checks run first
    /// on its combined tree ([`Worker::check_chain`]): only the part of it that passed lands,
    /// and what comes after that part is returned, built again on the new tip, for the next
    /// call.
    fn land_chain(
        &self,
        mut chain: Chain,
        decided: &mut Vec<Decided>,
        stop: &Stop,
        on_progress: &mut dyn FnMut(&Progress),
    ) -> Result<Option<Chain>> {
        let repo = self.queue.store().repo();
        let mut max_rebuilds = self.queue.settings().max_rebuilds;
        if self.remote.is_some() {
            // Machines landing on one remote beat each other's pushes routinely.
            max_rebuilds = max_rebuilds.saturating_mul(4);
        }
        let mut rebuilds = 0;
        crate::git::os::pause_point("landing.chain_built");
        loop {
            // A lease that ran out meanwhile (a slow disk, a stopped process) may be another
            // worker's now: its request must not land here as well.
            let lost_any;
            (chain.items, lost_any) = drop_lost(
                chain.items,
                |b| !self.queue.holds(&b.record.id, &self.id),
                decided,
            );
            // Any request lost anywhere in the chain is inside the commits of those built
            // after it: the rest is built again without it.
            if lost_any {
                match self.rebuild(chain, decided)? {
                    Some(c) => chain = c,
                    None => return Ok(None),
                }
                continue;
            }
            if chain.items.is_empty() {
                return Ok(None);
            }
            // Batched checks: what lands now is the part whose combined tree passed; the
            // requests after it wait (built again on the new tip once that part landed).
            let mut rest = Vec::new();
            if chain.items.iter().any(|b| !b.deferred.is_empty()) {
                match self.check_chain(&chain, stop, on_progress)? {
                    Probed::Split { culprit, .. } if culprit.is_some() && chain.spec.is_some() => {
                        // Failed on top of requests leased ahead: they may be what fails. Built
                        // and checked again without them.
                        self.distrust(chain.spec.as_ref().expect("matched with a speculation"));
                        match self.rebuild(chain, decided)? {
                            Some(c) => chain = c,
                            None => return Ok(None),
                        }
                        continue;
                    }
                    Probed::Split {
                        land,
                        passed,
                        culprit,
                    } => {
                        rest = chain.items.split_off(land);
                        if let Some(verdict) = culprit {
                            decided.push(rest.remove(0).decide(verdict));
                        }
                        if let Some((checks, artifacts)) = passed {
                            for b in &mut chain.items {
                                b.checks = checks.clone();
                                b.artifacts = artifacts.clone();
                            }
                        }
                        chain.head = match chain.items.last() {
                            Some(b) => b.commit,
                            None => chain.base(),
                        };
                    }
                    Probed::LeaseLost(ids) => {
                        (chain.items, _) =
                            drop_lost(chain.items, |b| ids.contains(&b.record.id), decided);
                        match self.rebuild(chain, decided)? {
                            Some(c) => chain = c,
                            None => return Ok(None),
                        }
                        continue;
                    }
                    Probed::Release(reason) => {
                        release_all(chain.items, &reason, decided);
                        return Ok(None);
                    }
                }
                if chain.items.is_empty() {
                    // The first request failed on its own: the rest is built again without it.
                    chain.items = rest;
                    return self.rebuild(chain, decided);
                }
                // The checks took long: a lease lost meanwhile is found now, as above.
                if !chain
                    .items
                    .iter()
                    .all(|b| self.queue.holds(&b.record.id, &self.id))
                {
                    chain.items.append(&mut rest);
                    continue;
                }
            }
            // Built on top of requests leased ahead: it lands only on the target commit that
            // landed them as speculated, moved onto it (the same trees, which passed).
            if chain.spec.is_some() {
                match self.await_ahead(&chain, stop)? {
                    Ahead::Landed(onto) => self.reparent(&mut chain, onto)?,
                    Ahead::Stopped(reason) => {
                        chain.items.append(&mut rest);
                        release_all(chain.items, &reason, decided);
                        return Ok(None);
                    }
                    Ahead::Otherwise(why) => {
                        chain.items.append(&mut rest);
                        let remote = self.remote.as_ref().expect("speculation is remote mode's");
                        let branch = chain.gate.tip.target.refname();
                        if rebuilds >= max_rebuilds {
                            let moved = Blocked::Moved {
                                now: remote.tracked_ref(self.queue.store(), branch)?,
                            };
                            let message = moved.message(chain.gate.tip.target.name());
                            retry_all(chain.items, moved.code(), message, decided);
                            return Ok(None);
                        }
                        rebuilds += 1;
                        tracing::info!(target = %chain.gate.tip.target, why = %why, rebuilds, "the requests leased ahead did not land as speculated; rebuilding");
                        on_progress(&Progress::Rebuild {
                            target: chain.gate.tip.target.name().to_owned(),
                        });
                        (chain.items, _) = drop_lost(
                            chain.items,
                            |b| !self.queue.holds(&b.record.id, &self.id),
                            decided,
                        );
                        match self.rebuild(chain, decided)? {
                            Some(c) => chain = c,
                            None => return Ok(None),
                        }
                        continue;
                    }
                }
            }
            let reflog = match chain.items.as_slice() {
                [one] => format!("hyperion: land {}", one.record.id),
                many => format!("hyperion: land {} requests", many.len()),
            };
            let advanced = match &self.remote {
                None => self
                    .advance(
                        repo,
                        chain.gate.tip.target.refname(),
                        chain.onto,
                        chain.head,
                        &reflog,
                    )
                    .map(|()| None),
                Some(remote) => self.land_remote(remote, &chain, &reflog),
            };
            match advanced {
                // The branch could not be moved (a live writer holds its lock, the disk
                // failed): nothing landed; every request of the chain is retried later.
                Err(land::Error::Failed(e)) => {
                    chain.items.append(&mut rest);
                    retry_all(chain.items, e.code(), e.to_string(), decided);
                    return Ok(None);
                }
                Ok(recorded) => {
                    tracing::info!(target = %chain.gate.tip.target, head = %chain.head, requests = chain.items.len(), "landed");
                    // Remote mode pushed the notes and the records with the landing.
                    let mut recorded = match recorded {
                        Some(recorded) => recorded,
                        None => {
                            let notes = self.notes(&chain);
                            if let Err(e) = land::add_notes(repo, &notes, &self.committer) {
                                // Landed all the same; notes are for people and can be added
                                // later.
                                tracing::warn!(target = %chain.gate.tip.target, error = %e, "could not add the notes");
                            }
                            Vec::new()
                        }
                    };
                    for b in std::mem::take(&mut chain.items) {
                        let record = recorded
                            .iter()
                            .position(|r| r.id == b.record.id)
                            .map(|i| Box::new(recorded.swap_remove(i)));
                        decided.push(Decided {
                            record: b.record,
                            verdict: Verdict::Land {
                                commit: b.commit,
                                files: b.files,
                                checks: b.checks,
                                artifacts: b.artifacts,
                                recovered: false,
                                recorded: record,
                                deferred: Vec::new(),
                            },
                            started: b.started,
                        });
                    }
                    if rest.is_empty() {
                        return Ok(None);
                    }
                    chain.items = rest;
                    return self.rebuild(chain, decided);
                }
                Err(land::Error::Blocked(Blocked::Moved { now })) if rebuilds < max_rebuilds => {
                    rebuilds += 1;
                    tracing::info!(target = %chain.gate.tip.target, moved_to = ?now, rebuilds, "target moved; rebuilding");
                    on_progress(&Progress::Rebuild {
                        target: chain.gate.tip.target.name().to_owned(),
                    });
                    // What was checked was built on the old tip: all of it is built and
                    // checked again (a request found failing stays failed).
                    chain.items.append(&mut rest);
                    if let Some(remote) = &self.remote {
                        // Another machine won the remote: requests it took are dropped before
                        // the rebuild, and the next push waits a jittered while.
                        (chain.items, _) = drop_lost(
                            chain.items,
                            |b| !self.queue.holds(&b.record.id, &self.id),
                            decided,
                        );
                        shared::jitter(&self.id, (rebuilds as usize).min(4));
                        tracing::debug!(remote = remote.name(), "landing push beaten");
                    }
                    match self.rebuild(chain, decided)? {
                        Some(c) => chain = c,
                        None => return Ok(None),
                    }
                }
                Err(land::Error::Blocked(not_moved)) => {
                    let message = not_moved.message(chain.gate.tip.target.name());
                    chain.items.append(&mut rest);
                    retry_all(chain.items, not_moved.code(), message, decided);
                    return Ok(None);
                }
            }
        }
    }

    /// Batched checks: run the chain's checks once on the combined tree of its first
    /// `hyperion.checkBatch` requests (the union of their checks, in order). When that tree
    /// fails, bisect for the first request that makes it fail: the combined tree of the
    /// first half is checked, then of the first half of the failing part or of the first
    /// three quarters…, until a prefix that passed (or none: the target's tip) and the one
    /// request after it, whose own commit on that prefix failed, are known. That prefix may
    /// land — its head's tree is exactly the tree that passed — and the request after it is
    /// a dead letter with that failure, as it would be checked on its own. No tree is checked
    /// twice and nothing lands on a tree that was not checked.
    ///
    /// With several check jobs (`hyperion.checkJobs`), each round checks that many prefixes
    /// at once, each in a slot of its own: the first round the whole batch and the prefixes
    /// spread below it (speculatively: a batch that passes used one of them), the next ones
    /// prefixes spread over the part still in doubt.
    fn check_chain(
        &self,
        chain: &Chain,
        stop: &Stop,
        on_progress: &mut dyn FnMut(&Progress),
    ) -> Result<Probed> {
        let n = chain.items.len().min(self.check_batch);
        let jobs = self.check_jobs.min(n);
        // Prefix `lo` passed (0: the target's tip, where the chain starts) with `passed`;
        // prefix `hi` failed with `failed`, once one did.
        let (mut lo, mut passed) = (0, None);
        let mut failed: Option<(usize, Verdict)> = None;
        let mut positions = spread(0, n, jobs - 1);
        positions.push(n);
        loop {
            let mut results = self.probe(chain, &positions, stop, on_progress)?;
            results.sort_by_key(|(k, _)| *k);
            // The whole batch passed: it lands, whatever a prefix of it did.
            if let Some(i) = results
                .iter()
                .position(|(k, done)| *k == n && matches!(done, ChecksDone::Passed(..)))
                && failed.is_none()
            {
                let (_, done) = results.swap_remove(i);
                let ChecksDone::Passed(checks, artifacts) = done else {
                    unreachable!("matched as passed")
                };
                return Ok(Probed::Split {
                    land: n,
                    passed: Some((checks, artifacts)),
                    culprit: None,
                });
            }
            for (k, done) in results {
                match done {
                    ChecksDone::LeaseLost(ids) => return Ok(Probed::LeaseLost(ids)),
                    ChecksDone::Failed(Verdict::Release { reason }) => {
                        return Ok(Probed::Release(reason));
                    }
                    // Only the first failure counts: what passes above it tells nothing.
                    _ if failed.as_ref().is_some_and(|(hi, _)| k >= *hi) => {}
                    ChecksDone::Passed(checks, artifacts) => {
                        if k > lo {
                            lo = k;
                            passed = Some((checks, artifacts));
                        }
                    }
                    ChecksDone::Failed(verdict) => failed = Some((k, verdict)),
                }
            }
            let hi = match &failed {
                Some((hi, _)) => *hi,
                None => unreachable!("the whole batch passed or a prefix failed"),
            };
            if hi - lo <= 1 {
                break;
            }
            positions = spread(lo, hi, jobs);
        }
        let (_, failed) = failed.expect("a prefix failed");
        let culprit = match failed {
            Verdict::Fail {
                class,
                code,
                message,
                transient,
                artifacts,
                checks,
            } => {
                let tree = checks
                    .last()
                    .and_then(|c| c.tree.clone())
                    .unwrap_or_default();
                let why = if lo == 0 {
                    format!(
                        " (checked in a batch of {n}, bisected: it fails at tree {tree}, on the target's tip)"
                    )
                } else {
                    format!(
                        " (checked in a batch of {n}, bisected: it fails at tree {tree}, on the {lo} request(s) before it, which passed without it)"
                    )
                };
                Verdict::Fail {
                    class,
                    code,
                    message: message + &why,
                    transient,
                    artifacts,
                    checks,
                }
            }
            other => other,
        };
        Ok(Probed::Split {
            land: lo,
            passed,
            culprit: Some(culprit),
        })
    }

    /// Check the combined trees of the chain's first `k` requests, for each `k` of
    /// `positions`, at once (one slot each); each with the union of their checks.
    fn probe(
        &self,
        chain: &Chain,
        positions: &[usize],
        stop: &Stop,
        on_progress: &mut dyn FnMut(&Progress),
    ) -> Result<Vec<(usize, ChecksDone)>> {
        let mut out = Vec::new();
        let mut probes = Vec::new();
        for &k in positions {
            let items = &chain.items[..k];
            let mut commands: Vec<CheckCommand> = Vec::new();
            for cmd in items.iter().flat_map(|b| &b.deferred) {
                if !commands.iter().any(|c| c.name == cmd.name) {
                    commands.push(cmd.clone());
                }
            }
            if commands.is_empty() {
                out.push((k, ChecksDone::Passed(Vec::new(), Vec::new())));
                continue;
            }
            tracing::info!(requests = k, head = %items[k - 1].commit, "checking a batch");
            probes.push(Probe {
                k,
                guard: items.iter().map(|b| b.record.id.as_str()).collect(),
                commands,
                commit: items[k - 1].commit,
            });
        }
        match probes.as_slice() {
            [] => {}
            [one] => out.push((
                one.k,
                self.run_checks(
                    &one.guard,
                    &one.commands,
                    one.commit,
                    Some(one.k),
                    stop,
                    on_progress,
                    false,
                )?,
            )),
            many => out.extend(self.run_parallel(many, stop, on_progress)?),
        }
        Ok(out)
    }

    /// Run `probes` at the same time, each in a slot of its own (the worker's slot and as
    /// many more as it needs, kept for the next time), each probe's checks in order until
    /// one does not pass; the leases are renewed here meanwhile.
    fn run_parallel(
        &self,
        probes: &[Probe],
        stop: &Stop,
        on_progress: &mut dyn FnMut(&Progress),
    ) -> Result<Vec<(usize, ChecksDone)>> {
        let repo = self.queue.store().repo();
        self.queue.release_index_if_wanted();
        let mut held = self.slot.borrow_mut();
        if held.is_none() {
            *held = Some(self.pool.acquire(repo.git_dir())?);
        }
        let mut extra = self.extra_slots.borrow_mut();
        while extra.len() + 1 < probes.len() {
            extra.push(self.pool.acquire(repo.git_dir())?);
        }
        let slots = std::iter::once(held.as_mut().expect("a slot is held")).chain(extra.iter_mut());
        let mut places = Vec::new();
        for (probe, slot) in probes.iter().zip(slots) {
            slot.checkout(repo, probe.commit)?;
            let tree = crate::git::tree::tree_of(repo, probe.commit)?;
            for cmd in &probe.commands {
                on_progress(&Progress::CheckBatch {
                    requests: probe.k,
                    tree: tree.to_string(),
                    name: cmd.name.clone(),
                });
            }
            places.push((slot.path().to_owned(), slot.scratch().to_owned(), tree));
        }
        let cancel = AtomicBool::new(false);
        let mut lost = Vec::new();
        let output = self.output;
        let results: Vec<Vec<checks::CheckResult>> = std::thread::scope(|scope| {
            let handles: Vec<_> = probes
                .iter()
                .zip(&places)
                .map(|(probe, (path, scratch, _))| {
                    let cancel = &cancel;
                    scope.spawn(move || {
                        let mut results = Vec::new();
                        for cmd in &probe.commands {
                            let r = checks::run(cmd, path, scratch, output, cancel, &mut || {});
                            let passed = r.status == CheckStatus::Passed;
                            results.push(r);
                            if !passed {
                                break;
                            }
                        }
                        results
                    })
                })
                .collect();
            while !handles.iter().all(|h| h.is_finished()) {
                std::thread::sleep(Duration::from_millis(20));
                if stop.aborted() {
                    cancel.store(true, Ordering::SeqCst);
                }
                let gone = self.leases.renew_if_due(self.queue, &self.id);
                if probes
                    .iter()
                    .any(|p| gone.iter().any(|id| p.guard.contains(&id.as_str())))
                {
                    lost.extend(gone);
                    cancel.store(true, Ordering::SeqCst);
                }
                self.queue.release_index_if_wanted();
            }
            handles
                .into_iter()
                .map(|h| h.join().expect("a check thread does not panic"))
                .collect()
        });
        let mut out = Vec::new();
        for ((probe, (_, _, tree)), results) in probes.iter().zip(&places).zip(results) {
            let mut summaries = Vec::new();
            let mut artifacts = Vec::new();
            let mut done = None;
            for (cmd, result) in probe.commands.iter().zip(results) {
                if !lost.is_empty() {
                    done = Some(ChecksDone::LeaseLost(lost.clone()));
                    break;
                }
                let judged = judge(
                    cmd,
                    &result,
                    *tree,
                    Some(probe.k),
                    &probe.guard,
                    &mut summaries,
                    &mut artifacts,
                );
                if let Some(verdict) = judged {
                    done = Some(ChecksDone::Failed(verdict));
                    break;
                }
            }
            let done = match done {
                Some(done) => done,
                None if !lost.is_empty() => ChecksDone::LeaseLost(lost.clone()),
                None => ChecksDone::Passed(summaries, artifacts),
            };
            out.push((probe.k, done));
        }
        Ok(out)
    }

    /// The notes of a chain's landed commits.
    fn notes(&self, chain: &Chain) -> Vec<(ObjectId, String)> {
        chain
            .items
            .iter()
            .map(|b| (b.commit, self.note(&b.req, &b.record.id, &b.checks)))
            .collect()
    }

    /// Remote mode's landing of `chain` (docs/remote.md): its requests' records (applied) and
    /// a notes commit on the remote's notes are written, then pushed with the target in one
    /// atomic push ([`shared::land`]), the target with a lease on the remote tip the chain
    /// was built on. Only then do the local refs follow: the records, the notes, and the
    /// local branch when it fast-forwards. The records, pushed; `Blocked::Moved` when another
    /// machine won the push (the tracking refs say what the remote holds now; requests it
    /// took are no longer held here).
    fn land_remote(
        &self,
        remote: &Remote,
        chain: &Chain,
        reflog: &str,
    ) -> std::result::Result<Option<Vec<Record>>, land::Error> {
        let store = self.queue.store();
        let repo = store.repo();
        let branch = chain.gate.tip.target.refname();
        let items = chain
            .items
            .iter()
            .map(|b| {
                let outcome = Outcome::Applied {
                    commit: b.commit.to_string(),
                    artifacts: b.artifacts.clone(),
                };
                (b.record.id.clone(), outcome)
            })
            .collect();
        let mut prepared = Vec::with_capacity(chain.items.len());
        for p in self.queue.prepare_completions(&self.id, items) {
            match p {
                Ok(p) => prepared.push(p),
                // Lost since it was checked: the caller drops it and builds again.
                Err(e) if lease_gone(&e) => {
                    return Err(Blocked::Moved {
                        now: Some(chain.onto),
                    }
                    .into());
                }
                Err(e) => return Err(e.into()),
            }
        }
        // A push with a lease may move the remote's branch anywhere: it moves it only
        // forward, from the commit the chain was built (or moved) onto.
        if !crate::git::tree::on_first_parent_line(repo, chain.head, chain.onto)? {
            return Err(land::Error::Failed(Error::git(format!(
                "the chain's head {} does not follow {}, the remote's tip it would land on; not pushed",
                chain.head, chain.onto
            ))));
        }
        let landed: Vec<(String, ObjectId)> =
            prepared.iter().map(|p| (p.id.clone(), p.commit)).collect();
        let notes_ref = land::NOTES_REF;
        let notes_parent = remote.tracked_ref(store, notes_ref)?;
        let blobs = land::note_blobs(repo, &self.notes(chain))?;
        let notes = land::notes_commit(repo, notes_parent, &blobs, &self.committer)?;
        let pushed = shared::land(
            store,
            remote,
            branch,
            chain.onto,
            chain.head,
            &landed,
            Some((notes, notes_parent)),
            &self.actor(),
        )?;
        if let Landing::Beaten { lost } = pushed {
            tracing::info!(target = branch, lost = ?lost, "landing push beaten");
            return Err(Blocked::Moved {
                now: remote.tracked_ref(store, branch)?,
            }
            .into());
        }
        let records: Vec<Record> = prepared.iter().map(|p| p.record().clone()).collect();
        for (r, done) in records.iter().zip(
            self.queue
                .finish_completions(&self.id, prepared.into_iter().map(Ok).collect())?,
        ) {
            if let Err(e) = done {
                // On the remote all the same; the next fetch takes it in.
                tracing::warn!(request_id = %r.id, error = %e, "landed record not taken in locally");
            }
        }
        // The local notes and branch follow when they are where the remote was.
        let log = crate::git::refs::LogLine {
            name: &self.committer.name,
            email: &self.committer.email,
            at: jiff::Timestamp::now(),
            message: reflog,
        };
        let local_notes = crate::git::tree::read_tip(repo, notes_ref)?;
        if local_notes.is_none() || local_notes == notes_parent {
            // Moved meanwhile: the next fetch brings the remote's notes.
            let _ = crate::git::refs::cas(repo, notes_ref, local_notes, notes, &log)?;
        }
        if let Some(local) = chain.gate.tip.target.tip(repo)?
            && local != chain.head
            && crate::git::tree::on_first_parent_line(repo, chain.head, local)?
            && let Err(e) = self.advance(repo, branch, local, chain.head, reflog)
        {
            tracing::warn!(target = branch, error = %e, "the local branch did not follow the remote's");
        }
        Ok(Some(records))
    }

    /// Move the local branch `name` from `old` to `new` ([`land::advance`]) as this worker.
    fn advance(
        &self,
        repo: &gix::Repository,
        name: &str,
        old: gix::ObjectId,
        new: gix::ObjectId,
        reflog: &str,
    ) -> std::result::Result<(), land::Error> {
        land::advance(
            repo,
            name,
            old,
            new,
            reflog,
            &self.committer,
            &land::Holder {
                worker: &self.id,
                queue: self.queue,
            },
        )
    }

    /// Build `chain`'s requests again, in order, on the target's tip as it is now; those
    /// that no longer land are decided. `None` when nothing is left to land.
    fn rebuild(&self, chain: Chain, decided: &mut Vec<Decided>) -> Result<Option<Chain>> {
        let mut chains = Vec::new();
        let stop = Stop::default();
        for b in chain.items {
            self.build(
                &mut chains,
                decided,
                b.record,
                b.req,
                b.started,
                &stop,
                &mut |_| {},
            );
        }
        // One target: at most one chain.
        Ok(chains.pop())
    }

    /// Record every decided outcome on its request's chain (one pack for all), and report.
    fn record(&self, decided: Vec<Decided>) -> Result<Vec<Report>> {
        let mut reports = Vec::with_capacity(decided.len());
        let mut completions = Vec::new();
        for d in decided {
            let mut report = Report::new(&d.record);
            let outcome = match d.verdict {
                Verdict::Land {
                    commit,
                    files,
                    checks,
                    artifacts,
                    recovered,
                    recorded,
                    ..
                } => {
                    report.commit = Some(commit.to_string());
                    report.files = files;
                    report.checks = checks;
                    if let Some(r) = recorded {
                        report.result = Disposition::Landed;
                        report.status = Some(r.status);
                        report.duration_ms = d.started.elapsed().as_millis() as u64;
                        reports.push((report, None));
                        continue;
                    }
                    report.result = if recovered {
                        Disposition::Recovered
                    } else {
                        Disposition::Landed
                    };
                    Some(Outcome::Applied {
                        commit: commit.to_string(),
                        artifacts,
                    })
                }
                Verdict::Fail {
                    class,
                    code,
                    message,
                    transient,
                    artifacts,
                    checks,
                } => {
                    report.checks = checks;
                    report.class = Some(class);
                    report.code = Some(code);
                    // As it will be stored (hook and process output can be quoted in it).
                    report.message = Some(crate::request::secrets::redact(&message).into_owned());
                    Some(Outcome::Failed {
                        class,
                        error: ErrorInfo {
                            code: code.into(),
                            message,
                        },
                        transient,
                        artifacts,
                    })
                }
                Verdict::Release { reason } => {
                    let mut r = self.give_back(&d.record, &reason)?;
                    r.duration_ms = d.started.elapsed().as_millis() as u64;
                    reports.push((r, None));
                    continue;
                }
                Verdict::Hold { tiers, reason } => {
                    let mut report = Report::new(&d.record);
                    report.result = match self.queue.hold(&d.record.id, &self.id, tiers, &reason) {
                        Ok(_) => Disposition::Held,
                        Err(e) if lease_gone(&e) => Disposition::LeaseLost,
                        Err(e) => return Err(e),
                    };
                    report.status = Some(Status::AwaitingApproval);
                    report.code = Some(Code::ApprovalRequired);
                    report.message = Some(reason);
                    report.duration_ms = d.started.elapsed().as_millis() as u64;
                    reports.push((report, None));
                    continue;
                }
                Verdict::LeaseLost => {
                    report.result = Disposition::LeaseLost;
                    report.code = Some(Code::WorkerLeaseLost);
                    report.message = Some("the lease expired and another worker took over".into());
                    None
                }
            };
            if let Some(outcome) = outcome {
                completions.push((d.record.id.clone(), outcome));
                reports.push((report, Some((completions.len() - 1, d.started))));
            } else {
                report.duration_ms = d.started.elapsed().as_millis() as u64;
                reports.push((report, None));
            }
        }
        let mut results = self
            .queue
            .complete_many(&self.id, completions)?
            .into_iter()
            .map(Some)
            .collect::<Vec<_>>();
        let mut out = Vec::with_capacity(reports.len());
        for (mut report, completion) in reports {
            if let Some((i, started)) = completion {
                match results[i].take().expect("each completion is reported once") {
                    Ok(r) => {
                        report.status = Some(r.status);
                        if report.class.is_some() {
                            if r.status == Status::Dead {
                                report.result = Disposition::Dead;
                            } else {
                                report.result = Disposition::Retry;
                                report.class = None;
                            }
                        }
                    }
                    // Landed, but someone else holds the request now: they will find the
                    // commit by its trailer and record it.
                    Err(e) if lease_gone(&e) => {
                        report.result = Disposition::LeaseLost;
                        report.class = None;
                        if let Some(commit) = &report.commit {
                            report.code = Some(Code::WorkerLeaseLost);
                            report.message = Some(format!("landed as {commit}, but {e}"));
                        }
                    }
                    Err(e) => return Err(e),
                }
                report.duration_ms = started.elapsed().as_millis() as u64;
            }
            out.push(report);
        }
        if let Some(remote) = &self.remote {
            self.publish_records(remote, &mut out);
        }
        // After the records are published: a push another machine beat changes the result.
        for report in &out {
            request_span(&report.id, &report.task_id, &self.id).in_scope(|| {
                tracing::info!(
                    step = "record",
                    result = report.result.as_str(),
                    code = report.code.map(|c| c.as_str()),
                    commit = report.commit.as_deref(),
                    "recorded"
                );
            });
        }
        Ok(out)
    }

    /// Remote mode: publish the records this batch wrote here and did not push with a
    /// landing (dead letters, retries, requests given back or held, recoveries), in one push.
    /// A request another machine's transition reached first is reported lost (its local ref
    /// is put back to the remote's). A remote that cannot be reached leaves them here, ahead
    /// of the remote: the next lease or `git hyperion push` publishes them.
    fn publish_records(&self, remote: &Remote, reports: &mut [Report]) {
        let ids: Vec<String> = reports
            .iter()
            .filter(|r| {
                matches!(
                    r.result,
                    Disposition::Recovered
                        | Disposition::Dead
                        | Disposition::Retry
                        | Disposition::Released
                        | Disposition::Held
                )
            })
            .map(|r| r.id.clone())
            .collect();
        match shared::publish(self.queue.store(), remote, &ids, &self.actor()) {
            Ok(lost) => {
                for r in reports.iter_mut().filter(|r| lost.contains(&r.id)) {
                    r.result = Disposition::LeaseLost;
                    r.code = Some(Code::WorkerLeaseLost);
                    r.message = Some(format!(
                        "another machine's transition reached {} first",
                        remote.name()
                    ));
                }
            }
            Err(e) => {
                tracing::warn!(worker = %self.id, error = %e, "could not push the records")
            }
        }
    }

    fn give_back(&self, record: &Record, reason: &str) -> Result<Report> {
        let started = Instant::now();
        let result = match self.queue.release(&record.id, &self.id) {
            Ok(_) => Disposition::Released,
            Err(e) if lease_gone(&e) => Disposition::LeaseLost,
            Err(e) => return Err(e),
        };
        let mut report = Report::new(record);
        report.result = result;
        report.status = Some(Status::Pending);
        report.message = Some(reason.to_owned());
        report.duration_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }

    /// What would happen to `id` now, without leasing it or changing anything.
    pub fn dry_run(&self, record: &Record) -> Result<Report> {
        let started = Instant::now();
        let stop = Stop::default();
        let verdict =
            self.queue
                .request(&record.id)
                .and_then(|req| match self.gate_for(&[], &req) {
                    Ok((gate, onto)) => {
                        self.pipeline(record, &req, &gate, onto, &stop, &mut |_| {}, Pass::DryRun)
                    }
                    Err(verdict) => Ok(verdict),
                });
        // What the dry run built stays off the disk.
        self.queue.store().discard();
        let verdict = verdict?;
        self.queue.close_index();
        let mut report = Report::new(record);
        report.result = Disposition::WouldLand;
        report.status = Some(record.status);
        match verdict {
            Verdict::Land { files, checks, .. } => {
                report.files = files;
                report.checks = checks;
            }
            Verdict::Fail {
                class,
                code,
                message,
                checks,
                ..
            } => {
                report.result = Disposition::WouldFail;
                report.class = Some(class);
                report.code = Some(code);
                report.message = Some(crate::request::secrets::redact(&message).into_owned());
                report.checks = checks;
            }
            Verdict::Release { reason } => {
                report.result = Disposition::WouldFail;
                report.message = Some(reason);
            }
            Verdict::Hold { reason, .. } => {
                report.result = Disposition::WouldFail;
                report.code = Some(Code::ApprovalRequired);
                report.message = Some(reason);
            }
            Verdict::LeaseLost => report.result = Disposition::WouldFail,
        }
        report.duration_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }

    /// Validate, run hooks, apply onto `onto` and commit; run the checks. Everything that
    /// decides whether the request may land — the policy, the hooks, the definitions of the
    /// checks — comes from `gate`, the target branch as it is; `onto` is what the request is
    /// applied onto and validated against (the gate's tip, or the head of what this batch
    /// built there). Nothing lands here: a `Land` verdict is a commit built on `onto`.
    #[allow(clippy::too_many_arguments)]
    fn pipeline(
        &self,
        record: &Record,
        req: &ChangeRequest,
        gate: &Gate,
        onto: ObjectId,
        stop: &Stop,
        on_progress: &mut dyn FnMut(&Progress),
        pass: Pass,
    ) -> Result<Verdict> {
        let dry_run = pass == Pass::DryRun;
        let queue = self.queue;
        let repo = queue.store().repo();
        let id = record.id.as_str();
        let settings = queue.settings();
        let target = &gate.tip.target;
        let _span = request_span(id, &record.task_id, &self.id).entered();

        // An earlier attempt may have landed it and died before recording that.
        if pass == Pass::Land
            && record.attempts > 1
            && let Some(commit) = land::find_landed(
                repo,
                gate.tip.commit,
                land::TRAILER_REQUEST,
                id,
                record.created_at,
            )?
        {
            if land::read_note(repo, commit)?.is_none() {
                land::add_note(repo, commit, &self.note(req, id, &[]), &self.committer)?;
            }
            tracing::info!(request_id = id, %commit, "found already landed; recording it");
            return Ok(Verdict::Land {
                commit,
                files: Vec::new(),
                checks: Vec::new(),
                artifacts: Vec::new(),
                recovered: true,
                recorded: None,
                deferred: Vec::new(),
            });
        }

        // Risk tiers, approval and required checks, by the policy at the target's tip: a
        // request without an approval valid under it goes back to awaiting_approval.
        let tree = crate::git::tree::tree_of(repo, onto)?;
        let check_names = match queue.at_lease(&gate.policy, record, req, tree)? {
            crate::queue::AtLease::Proceed { checks } => checks,
            crate::queue::AtLease::Hold { tiers, reason } => {
                return Ok(Verdict::Hold { tiers, reason });
            }
        };

        // Validate again, against what it is applied onto: the policy or the target may have
        // changed since enqueue, and requests before it in this batch changed the tree.
        let problems =
            crate::request::validate::against_target(repo, req, Some(tree), &gate.policy);
        if let Some(first) = problems.first() {
            let message = problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            return Ok(fail(
                DeadClass::Validation,
                first.code,
                format!("no longer valid against {target}: {message}"),
                false,
            ));
        }
        tracing::info!(step = "validate", %target, "valid against the target");

        if let Some(refused) = crate::gate::hooks::pre_apply(
            repo,
            settings,
            gate.tip.tree,
            req,
            id,
            target.name(),
            &mut || {
                self.leases.renew_if_due(self.queue, &self.id);
            },
        )? {
            return Ok(fail(
                DeadClass::Validation,
                Code::HookRefused,
                refused.message,
                false,
            ));
        }

        tracing::info!(step = "hooks", "pre-apply hooks passed");

        let applying = Instant::now();
        let applied = apply::apply_request(repo, tree, req, &gate.policy.limits);
        on_progress(&Progress::Applied {
            id: id.to_owned(),
            duration: applying.elapsed(),
        });
        let applied = match applied {
            Ok(a) => {
                tracing::info!(step = "apply", files = a.files.len(), "applied");
                a
            }
            Err(apply::Error::Failed(e)) => return Err(e),
            Err(apply::Error::Refused(refusal)) => {
                return Ok(Verdict::Fail {
                    class: DeadClass::Apply,
                    code: refusal.code(),
                    message: refusal.message(),
                    transient: false,
                    artifacts: refusal.artifacts(),
                    checks: Vec::new(),
                });
            }
        };

        let commit = land::write_commit(
            repo,
            applied.tree,
            &[onto],
            &land::author(&req.agent),
            record.created_at,
            &self.committer,
            jiff::Timestamp::now(),
            &land::message(req, id),
        )?;

        let mut checks = Vec::new();
        let mut artifacts = Vec::new();
        let mut deferred = Vec::new();
        // A request leased ahead is checked by its own worker, not here.
        if !check_names.is_empty() && pass != Pass::Phantom {
            let commands = match self.resolve_checks(&check_names, gate) {
                Ok(commands) => commands,
                Err(verdict) => return Ok(verdict),
            };
            if self.check_batch > 1 && !dry_run {
                // Run once on the combined tree of the batch, just before it lands.
                deferred = commands;
            } else {
                match self.run_checks(&[id], &commands, commit, None, stop, on_progress, dry_run)? {
                    ChecksDone::Passed(s, a) => {
                        checks = s;
                        artifacts = a;
                    }
                    ChecksDone::Failed(v) => return Ok(v),
                    ChecksDone::LeaseLost(_) => return Ok(Verdict::LeaseLost),
                }
            }
        }
        Ok(Verdict::Land {
            commit,
            files: applied.files,
            checks,
            artifacts,
            recovered: false,
            recorded: None,
            deferred,
        })
    }

    /// The commands of the checks `names`, as the gate's policy defines them; a verdict when
    /// one is not defined there.
    fn resolve_checks(
        &self,
        names: &[String],
        gate: &Gate,
    ) -> std::result::Result<Vec<CheckCommand>, Verdict> {
        names
            .iter()
            .map(|name| {
                gate.policy
                    .resolve_check(name)
                    .map(|def| CheckCommand {
                        name: def.name,
                        argv: def.run,
                        env: def.env,
                        timeout: def.timeout,
                        inherit: self.queue.settings().check_env.clone(),
                    })
                    .map_err(|p| fail(DeadClass::Validation, p.code, p.message, false))
            })
            .collect()
    }

    /// Run `commands` in this worker's slot moved to `commit`, in order, until one does not
    /// pass. `guard`: the requests whose commits `commit` holds; the checks stop when the
    /// lease of one of them turns out lost. `batch`: how many requests the tree combines, with
    /// batched checks.
    #[allow(clippy::too_many_arguments)]
    fn run_checks(
        &self,
        guard: &[&str],
        commands: &[CheckCommand],
        commit: ObjectId,
        batch: Option<usize>,
        stop: &Stop,
        on_progress: &mut dyn FnMut(&Progress),
        dry_run: bool,
    ) -> Result<ChecksDone> {
        let repo = self.queue.store().repo();
        let tree = crate::git::tree::tree_of(repo, commit)?;
        // Other processes may need the index while checks run.
        self.queue.release_index_if_wanted();
        let mut held = self.slot.borrow_mut();
        if held.is_none() {
            *held = Some(self.pool.acquire(repo.git_dir())?);
        }
        let slot = held.as_mut().expect("a slot is held");
        let moved = slot.checkout(repo, commit)?;
        tracing::debug!(requests = ?guard, %commit, ?moved, "slot moved");
        let cancel = AtomicBool::new(false);
        let mut lost = Vec::new();
        let mut summaries = Vec::new();
        let mut artifacts = Vec::new();
        // The tick and the output of a check both report progress, one at a time.
        let on_progress = std::cell::RefCell::new(on_progress);
        for cmd in commands {
            (on_progress.borrow_mut())(&match batch {
                Some(requests) => Progress::CheckBatch {
                    requests,
                    tree: tree.to_string(),
                    name: cmd.name.clone(),
                },
                None => Progress::Check {
                    id: guard.first().copied().unwrap_or_default().to_owned(),
                    name: cmd.name.clone(),
                },
            });
            let mut tick = || {
                if stop.aborted() {
                    cancel.store(true, Ordering::SeqCst);
                }
                // Every lease of the batch is kept, those of the requests under check and
                // those of the requests waiting to land with them or after them (one lost
                // there shows when landing).
                if !dry_run {
                    let gone = self.leases.renew_if_due(self.queue, &self.id);
                    if gone.iter().any(|id| guard.contains(&id.as_str())) {
                        lost.extend(gone);
                        cancel.store(true, Ordering::SeqCst);
                    }
                }
                self.queue.release_index_if_wanted();
                (on_progress.borrow_mut())(&Progress::Tick);
            };
            let mut seen = |stream, chunk: &[u8]| {
                if self.follow {
                    (on_progress.borrow_mut())(&Progress::Output {
                        name: cmd.name.clone(),
                        stream,
                        chunk: chunk.to_vec(),
                    });
                }
            };
            let result = checks::run_observed(
                cmd,
                slot.path(),
                slot.scratch(),
                self.output,
                &cancel,
                &mut tick,
                &mut seen,
            );
            if !lost.is_empty() {
                return Ok(ChecksDone::LeaseLost(lost));
            }
            let failed = judge(
                cmd,
                &result,
                tree,
                batch,
                guard,
                &mut summaries,
                &mut artifacts,
            );
            if let Some(s) = summaries.last() {
                tracing::info!(step = "check", check = %s.name, status = s.status, duration_ms = s.duration_ms, "check ran");
            }
            if let Some(verdict) = failed {
                return Ok(ChecksDone::Failed(verdict));
            }
        }
        Ok(ChecksDone::Passed(summaries, artifacts))
    }

    /// The note on a landed commit: who and what produced it.
    fn note(&self, req: &ChangeRequest, id: &str, checks: &[CheckSummary]) -> String {
        let mut s = format!(
            "request: {id}\ntask: {}\nagent: {}\nworker: {}\nversion: git-hyperion {}\n",
            req.task_id.replace('\n', " "),
            req.agent.replace('\n', " "),
            self.id,
            crate::VERSION
        );
        for c in checks {
            s.push_str(&format!(
                "check: {} {} {}ms\n",
                c.name, c.status, c.duration_ms
            ));
        }
        // Batched checks ran on a tree that holds this commit and the requests landed with
        // it, not on this commit's own tree (unless it is the last of them).
        if let Some(c) = checks.iter().find(|c| c.batch.is_some()) {
            s.push_str(&format!(
                "checked: as part of a batch of {} at tree {}\n",
                c.batch.unwrap_or(1),
                c.tree.as_deref().unwrap_or("?")
            ));
        }
        s
    }
}

/// A request built into a commit on its target, waiting to land with its chain.
struct Built {
    record: Record,
    req: ChangeRequest,
    commit: ObjectId,
    files: Vec<FileApplied>,
    checks: Vec<CheckSummary>,
    artifacts: Vec<Artifact>,
    /// Checks to run on a tree holding this commit before it lands (batched checks).
    deferred: Vec<CheckCommand>,
    started: Instant,
}

impl Built {
    /// Decided otherwise than landed with its chain: what it built is dropped.
    fn decide(self, verdict: Verdict) -> Decided {
        Decided::new(self.record, verdict, self.started)
    }
}

/// When `id`'s current lease was taken: the time of its lease commit (a heartbeat on top of
/// it does not change it). `None` when its tip is not a lease or a heartbeat on one.
fn leased_at(store: &crate::queue::store::Store, id: &str) -> Option<jiff::Timestamp> {
    let mut at = store.tip(id).ok()??;
    // A heartbeat replaces a heartbeat: at most one stands on the lease.
    for _ in 0..4 {
        let event = store.history_head(at).ok()??;
        match event.action {
            crate::request::model::Action::Lease => return Some(event.at),
            crate::request::model::Action::Heartbeat => at = store.parent_of(at).ok()??,
            _ => return None,
        }
    }
    None
}

/// The object at `.hyperion` in `tree` (policy, hooks): what a request must not change for
/// the requests after it before it landed.
fn gate_entry(repo: &gix::Repository, tree: ObjectId) -> Result<Option<ObjectId>> {
    let root = repo
        .find_tree(tree)
        .map_err(|e| Error::object(format!("cannot read tree {tree}"), e))?;
    Ok(root
        .lookup_entry_by_path(".hyperion")
        .map_err(|e| Error::object(format!("cannot read .hyperion in {tree}"), e))?
        .map(|e| e.object_id()))
}

/// `items` without those `is_lost` picks (requests this worker no longer holds), which are
/// decided [`Verdict::LeaseLost`]; and whether there were any.
fn drop_lost(
    items: Vec<Built>,
    is_lost: impl Fn(&Built) -> bool,
    decided: &mut Vec<Decided>,
) -> (Vec<Built>, bool) {
    let (lost, held): (Vec<Built>, Vec<Built>) = items.into_iter().partition(is_lost);
    let any = !lost.is_empty();
    decided.extend(lost.into_iter().map(|b| b.decide(Verdict::LeaseLost)));
    (held, any)
}

/// The commits built on one target in this batch, each on the one before: landed together
/// by one compare-and-swap from `base` to `head`.
struct Chain {
    /// The branch as it was when the chain was started (its tip is the chain's base) and
    /// the policy there: every request of the chain is judged by it.
    gate: std::rc::Rc<Gate>,
    head: ObjectId,
    items: Vec<Built>,
    /// The target commit the landing moves the branch from (with a lease on it remotely):
    /// the gate's tip, or once the requests leased ahead landed, the commit that landed them.
    onto: ObjectId,
    /// The requests leased ahead that the chain's own are built on, when it speculates.
    spec: Option<Speculation>,
}

impl Chain {
    /// The commit the chain's own requests start from: the last request leased ahead, or the
    /// gate's tip.
    fn base(&self) -> ObjectId {
        self.spec.as_ref().map_or(self.gate.tip.commit, |s| s.head)
    }
}

/// Requests other workers leased ahead of this one's on a target (the train), applied in
/// their order on the target's tip: never checked, recorded or landed here.
struct Speculation {
    phantoms: Vec<Phantom>,
    /// The commit of the last of them: where this worker's own requests start.
    head: ObjectId,
}

impl Speculation {
    /// The tree the target must hold once they all landed.
    fn tree(&self) -> ObjectId {
        self.phantoms
            .last()
            .expect("a speculation has phantoms")
            .tree
    }
}

/// One request leased ahead, as speculated.
struct Phantom {
    id: String,
    owner: String,
    /// The tree after it (and those before it) applied.
    tree: ObjectId,
}

/// How the wait for the requests leased ahead ended ([`Worker::await_ahead`]).
enum Ahead {
    /// They landed as speculated: the target is at this commit, whose tree is the last one's.
    Landed(ObjectId),
    /// The target moved elsewhere, one of them is no longer leased, or the wait ran out.
    Otherwise(String),
    /// The worker was stopped.
    Stopped(String),
}

/// What [`Worker::pipeline`] is run for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// A request this worker leased: checked, then landed.
    Land,
    /// `--dry-run`: checked, nothing changes.
    DryRun,
    /// A request another worker leased ahead: applied (validated by the same gate), never
    /// checked, recorded or landed here.
    Phantom,
}

/// What requests are judged by on one target: the branch's tip as it is on the branch —
/// never a commit a batch built on it — and the policy of that tip. A request that changes
/// the policy, the hooks or the checks changes the gate only once it has landed.
struct Gate {
    tip: Tip,
    policy: Policy,
}

/// An outcome waiting to be recorded.
struct Decided {
    record: Record,
    verdict: Verdict,
    /// When the worker took the request up; orders the reports too.
    started: Instant,
}

impl Decided {
    fn new(record: Record, verdict: Verdict, started: Instant) -> Decided {
        Decided {
            record,
            verdict,
            started,
        }
    }
}

/// What a batch holds between leasing and recording.
#[derive(Default)]
struct Batch {
    chains: Vec<Chain>,
    decided: Vec<Decided>,
}

/// A chain that could not land: each of its requests is retried later (environment class).
fn retry_all(items: Vec<Built>, code: Code, message: String, decided: &mut Vec<Decided>) {
    for b in items {
        decided.push(Decided {
            record: b.record,
            verdict: Verdict::Fail {
                class: DeadClass::Environment,
                code,
                message: message.clone(),
                transient: true,
                artifacts: Vec::new(),
                checks: b.checks,
            },
            started: b.started,
        });
    }
}

/// Give every request of `items` back unfinished (the worker was stopped): released.
fn release_all(items: Vec<Built>, reason: &str, decided: &mut Vec<Decided>) {
    decided.extend(items.into_iter().map(|b| {
        b.decide(Verdict::Release {
            reason: reason.to_owned(),
        })
    }));
}

/// A request that cannot land, without artifacts or checks run.
fn fail(class: DeadClass, code: Code, message: String, transient: bool) -> Verdict {
    Verdict::Fail {
        class,
        code,
        message,
        transient,
        artifacts: Vec::new(),
        checks: Vec::new(),
    }
}

/// The repository or the machine failed us, not the request: retry later.
fn environment(e: &Error) -> Verdict {
    Verdict::Fail {
        class: DeadClass::Environment,
        code: e.code(),
        message: e.to_string(),
        transient: true,
        artifacts: Vec::new(),
        checks: Vec::new(),
    }
}

impl Disposition {
    /// Its name as serialised (`landed`, `dead`, `would_land`…).
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Landed => "landed",
            Disposition::Recovered => "recovered",
            Disposition::Dead => "dead",
            Disposition::Retry => "retry",
            Disposition::Released => "released",
            Disposition::LeaseLost => "lease_lost",
            Disposition::Held => "held",
            Disposition::WouldLand => "would_land",
            Disposition::WouldFail => "would_fail",
        }
    }
}

impl Report {
    fn new(record: &Record) -> Report {
        Report {
            id: record.id.clone(),
            task_id: record.task_id.clone(),
            result: Disposition::Landed,
            status: None,
            commit: None,
            class: None,
            code: None,
            message: None,
            files: Vec::new(),
            checks: Vec::new(),
            duration_ms: 0,
            created_at: Some(record.created_at),
        }
    }
}

/// What batched checks decided about a chain ([`Worker::check_chain`]).
enum Probed {
    /// The first `land` requests may land: the combined tree of them passed (`passed`, the
    /// checks' summaries and output; `None` when `land` is 0). `culprit`: the verdict of the
    /// request right after them, which failed on that tree.
    Split {
        land: usize,
        passed: Option<(Vec<CheckSummary>, Vec<Artifact>)>,
        culprit: Option<Verdict>,
    },
    /// The lease of these requests was lost while checking.
    LeaseLost(Vec<String>),
    /// The checks were cancelled (the worker was stopped): everything goes back.
    Release(String),
}

enum ChecksDone {
    Passed(Vec<CheckSummary>, Vec<Artifact>),
    Failed(Verdict),
    /// The lease of a request under check was lost (these ids); the checks were stopped.
    LeaseLost(Vec<String>),
}

/// One prefix of a chain to check ([`Worker::probe`]).
struct Probe<'a> {
    /// How many requests of the chain the tree combines.
    k: usize,
    guard: Vec<&'a str>,
    commands: Vec<CheckCommand>,
    commit: ObjectId,
}

/// The span every event about one request is logged in: its id, its task and the worker.
fn request_span(id: &str, task_id: &str, worker: &str) -> tracing::Span {
    tracing::info_span!("request", request_id = %id, task_id = %task_id, worker = %worker)
}

/// Up to `j` positions strictly between `lo` and `hi`, spread evenly (one: the middle).
fn spread(lo: usize, hi: usize, j: usize) -> Vec<usize> {
    let mut out: Vec<usize> = (1..=j)
        .map(|i| lo + (hi - lo) * i / (j + 1))
        .filter(|p| *p > lo && *p < hi)
        .collect();
    out.dedup();
    out
}

/// Record what check `cmd` did on `tree` (its summary, its output as artifacts); the verdict
/// when it did not pass.
fn judge(
    cmd: &CheckCommand,
    result: &checks::CheckResult,
    tree: ObjectId,
    batch: Option<usize>,
    guard: &[&str],
    summaries: &mut Vec<CheckSummary>,
    artifacts: &mut Vec<Artifact>,
) -> Option<Verdict> {
    let (status, exit_code) = match &result.status {
        CheckStatus::Passed => ("passed", Some(0)),
        CheckStatus::Failed { exit_code, .. } => ("failed", *exit_code),
        CheckStatus::TimedOut => ("timed_out", None),
        CheckStatus::Cancelled => ("cancelled", None),
        CheckStatus::SpawnFailed(_) => ("spawn_failed", None),
    };
    summaries.push(CheckSummary {
        name: cmd.name.clone(),
        status,
        exit_code,
        duration_ms: result.duration.as_millis() as u64,
        tree: Some(tree.to_string()),
        batch,
    });
    for (stream, captured) in [("stdout", &result.stdout), ("stderr", &result.stderr)] {
        if captured.total_bytes > 0 {
            artifacts.push(Artifact {
                name: format!("checks/{}.{stream}", cmd.name),
                // Redacted when stored; a cut tail first loses its partial line.
                data: crate::request::secrets::cut_tail(&captured.tail, captured.truncated)
                    .to_vec(),
            });
        }
    }
    if !result.killed.is_empty() || result.output_cut {
        tracing::info!(requests = ?guard, check = %cmd.name, killed = ?result.killed, output_cut = result.output_cut, "processes the check left behind");
    }
    let left = leftovers(result);
    match &result.status {
        CheckStatus::Passed => None,
        CheckStatus::Cancelled => Some(Verdict::Release {
            reason: format!("check {} was cancelled: the worker was stopped", cmd.name),
        }),
        other => {
            let (code, message) = match other {
                CheckStatus::TimedOut => (
                    Code::CheckTimeout,
                    format!(
                        "check {} ran past its timeout of {}s and was stopped",
                        cmd.name,
                        cmd.timeout.as_secs()
                    ),
                ),
                CheckStatus::SpawnFailed(why) => (
                    Code::CheckSpawn,
                    format!("check {} could not start: {why}", cmd.name),
                ),
                CheckStatus::Failed { exit_code, signal } => (
                    Code::CheckFailed,
                    match (exit_code, signal) {
                        (Some(c), _) => format!("check {} failed (exit {c})", cmd.name),
                        (None, Some(s)) => format!("check {} was killed by signal {s}", cmd.name),
                        _ => format!("check {} failed", cmd.name),
                    },
                ),
                _ => (Code::CheckFailed, format!("check {} failed", cmd.name)),
            };
            Some(Verdict::Fail {
                class: DeadClass::Check,
                code,
                message: message + &left,
                transient: code == Code::CheckTimeout,
                artifacts: artifacts.clone(),
                checks: summaries.clone(),
            })
        }
    }
}

/// What a check left behind, for its failure message: the processes outside its process
/// group that were killed, and output cut short by one still holding the pipes.
fn leftovers(result: &checks::CheckResult) -> String {
    let mut s = String::new();
    if !result.killed.is_empty() {
        let names: Vec<String> = result
            .killed
            .iter()
            .map(|k| format!("{} ({})", k.name, k.pid))
            .collect();
        s.push_str(&format!(
            "; killed {} process(es) it left outside its process group: {}",
            names.len(),
            names.join(", ")
        ));
    }
    if result.output_cut {
        s.push_str("; its output may be cut: a process it started still held the pipes");
    }
    s
}

/// Errors that mean our lease is gone: someone swept it, or another worker holds it now.
fn lease_gone(e: &Error) -> bool {
    matches!(
        e,
        Error::NotOwner { .. } | Error::WrongState { .. } | Error::Conflict { .. }
    )
}
