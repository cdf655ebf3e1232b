//! Prometheus metrics (OpenMetrics text exposition), with the official client crate.
//!
//! [`of_records`] computes the queue's state from its records; [`WorkerMetrics`] counts what
//! one worker process does, fed by the event stream the worker already has for its caller.
//! Label values come from closed sets only (statuses, dead classes, stable codes, check names
//! of the landed policy), never from a request's own fields: a hostile request can neither
//! inject text into the exposition nor grow the number of series.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::Code;
use crate::gate::worker::{Disposition, Progress, Report};
use crate::request::model::{DeadClass, Record, Status};

/// The content type of the exposition (`/metrics`).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A label pair; keys are ours, values from closed sets.
type Labels<const N: usize> = [(&'static str, String); N];

/// Buckets of step durations (apply, a check, a whole request): 1 ms to about 65 s.
fn step_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Buckets of enqueue-to-landed latency: 50 ms to about 7 hours.
fn latency_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 20))
}

/// A stored error code as a label: its stable name when it is one, else `other` (a record
/// written by something else than hyperion may carry anything).
pub(crate) fn code_label(code: Option<&str>) -> String {
    match code {
        Some(c) => Code::parse(c).map_or("other", |c| c.as_str()).to_owned(),
        None => "none".to_owned(),
    }
}

fn seconds(d: jiff::SignedDuration) -> f64 {
    d.as_secs_f64().max(0.0)
}

/// Enqueue-to-landed latency of a request `applied` now, in seconds: from `created_at` to the
/// `updated_at` of its record, which was last written when it landed.
pub fn landing_latency(r: &Record) -> Option<f64> {
    (r.status == Status::Applied).then(|| seconds(r.updated_at.duration_since(r.created_at)))
}

fn render(registry: &Registry) -> String {
    let mut out = String::new();
    encode(&mut out, registry).expect("writing to a String cannot fail");
    out
}

/// The exposition of the queue as its records say now (`git hyperion metrics`): depth by
/// status, totals, attempts, and enqueue-to-landed latency of the requests applied.
pub fn of_records(records: &[Record]) -> String {
    let mut registry = Registry::default();

    let depth = Family::<Labels<1>, Gauge>::default();
    registry.register(
        "hyperion_requests",
        "Requests in the queue by status",
        depth.clone(),
    );
    for s in Status::ALL {
        let _ = depth.get_or_create(&[("status", s.as_str().to_owned())]);
    }

    let enqueued = Counter::<u64>::default();
    registry.register(
        "hyperion_enqueued",
        "Requests accepted and stored (archived ones excluded)",
        enqueued.clone(),
    );
    let landed = Counter::<u64>::default();
    registry.register(
        "hyperion_landed",
        "Requests that landed on their target (applied or rolled back since)",
        landed.clone(),
    );
    let dead = Family::<Labels<2>, Counter>::default();
    registry.register(
        "hyperion_dead",
        "Dead letters by class and error code",
        dead.clone(),
    );
    let attempts = Counter::<u64>::default();
    registry.register(
        "hyperion_attempts",
        "Leases counted against the requests' attempts",
        attempts.clone(),
    );
    let retries = Counter::<u64>::default();
    registry.register(
        "hyperion_retries",
        "Attempts after a request's first",
        retries.clone(),
    );
    let latency = latency_buckets();
    registry.register(
        "hyperion_enqueue_to_landed_seconds",
        "From enqueue to landing, of the requests applied now",
        latency.clone(),
    );

    for r in records {
        depth
            .get_or_create(&[("status", r.status.as_str().to_owned())])
            .inc();
        enqueued.inc();
        if r.landed_commit.is_some() {
            landed.inc();
        }
        if r.status == Status::Dead {
            dead.get_or_create(&dead_labels(
                r.dead_class,
                r.error.as_ref().map(|e| e.code.as_str()),
            ))
            .inc();
        }
        attempts.inc_by(u64::from(r.attempts));
        retries.inc_by(u64::from(r.attempts.saturating_sub(1)));
        if let Some(s) = landing_latency(r) {
            latency.observe(s);
        }
    }
    render(&registry)
}

fn dead_labels(class: Option<DeadClass>, code: Option<&str>) -> Labels<2> {
    [
        ("class", class.map_or("none", |c| c.as_str()).to_owned()),
        ("code", code_label(code)),
    ]
}

/// What one worker process did since it started, live (`worker --metrics-addr`). Cheap to
/// feed: every update is an atomic add, or a lock-free lookup of a labelled series.
#[derive(Debug)]
pub struct WorkerMetrics {
    registry: Registry,
    leased: Counter,
    landed: Counter,
    dead: Family<Labels<2>, Counter>,
    retries: Family<Labels<1>, Counter>,
    given_back: Family<Labels<1>, Counter>,
    rebuilds: Counter,
    swept: Counter,
    apply: Histogram,
    checks: Family<Labels<2>, Histogram>,
    request: Histogram,
    latency: Histogram,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        WorkerMetrics::new()
    }
}

impl WorkerMetrics {
    pub fn new() -> WorkerMetrics {
        let mut registry = Registry::default();
        let m = WorkerMetrics {
            leased: Counter::default(),
            landed: Counter::default(),
            dead: Family::default(),
            retries: Family::default(),
            given_back: Family::default(),
            rebuilds: Counter::default(),
            swept: Counter::default(),
            apply: step_buckets(),
            checks: Family::new_with_constructor(step_buckets),
            request: step_buckets(),
            latency: latency_buckets(),
            registry: Registry::default(),
        };
        registry.register(
            "hyperion_worker_leased",
            "Requests this worker leased",
            m.leased.clone(),
        );
        registry.register(
            "hyperion_worker_landed",
            "Requests this worker landed (or found landed and recorded)",
            m.landed.clone(),
        );
        registry.register(
            "hyperion_worker_dead",
            "Requests this worker made dead letters, by class and error code",
            m.dead.clone(),
        );
        registry.register(
            "hyperion_worker_retries",
            "Transient failures put back for another attempt, by error code",
            m.retries.clone(),
        );
        registry.register(
            "hyperion_worker_given_back",
            "Requests given back unfinished: released, lease_lost or held for approval",
            m.given_back.clone(),
        );
        registry.register(
            "hyperion_worker_rebuilds",
            "Chains rebuilt because the target moved before landing",
            m.rebuilds.clone(),
        );
        registry.register(
            "hyperion_worker_swept",
            "Expired leases this worker's sweeps returned or buried",
            m.swept.clone(),
        );
        registry.register(
            "hyperion_worker_apply_seconds",
            "Time to apply one request's patches in memory",
            m.apply.clone(),
        );
        registry.register(
            "hyperion_worker_check_seconds",
            "Duration of one check run, by check and outcome",
            m.checks.clone(),
        );
        registry.register(
            "hyperion_worker_request_seconds",
            "From taking a request up to recording its outcome",
            m.request.clone(),
        );
        registry.register(
            "hyperion_worker_enqueue_to_landed_seconds",
            "From enqueue to landing, of the requests this worker landed",
            m.latency.clone(),
        );
        WorkerMetrics { registry, ..m }
    }

    /// Count one outcome the worker reported.
    pub fn report(&self, r: &Report) {
        match r.result {
            Disposition::Landed | Disposition::Recovered => {
                self.landed.inc();
                if let Some(created) = r.created_at {
                    self.latency
                        .observe(seconds(jiff::Timestamp::now().duration_since(created)));
                }
            }
            Disposition::Dead => {
                self.dead
                    .get_or_create(&[
                        ("class", r.class.map_or("none", |c| c.as_str()).to_owned()),
                        ("code", r.code.map_or("none", |c| c.as_str()).to_owned()),
                    ])
                    .inc();
            }
            Disposition::Retry => {
                self.retries
                    .get_or_create(&[("code", r.code.map_or("none", |c| c.as_str()).to_owned())])
                    .inc();
            }
            Disposition::Released => self.give_back("released"),
            Disposition::LeaseLost => self.give_back("lease_lost"),
            Disposition::Held => self.give_back("held"),
            Disposition::WouldLand | Disposition::WouldFail => return,
        }
        for c in &r.checks {
            self.checks
                .get_or_create(&[("check", c.name.clone()), ("status", c.status.to_owned())])
                .observe(c.duration_ms as f64 / 1000.0);
        }
        self.request.observe(r.duration_ms as f64 / 1000.0);
    }

    fn give_back(&self, how: &str) {
        self.given_back
            .get_or_create(&[("result", how.to_owned())])
            .inc();
    }

    /// Count one step the worker announced.
    pub fn progress(&self, p: &Progress) {
        match p {
            Progress::Leased { .. } => {
                self.leased.inc();
            }
            Progress::Applied { duration, .. } => self.apply.observe(secs(*duration)),
            Progress::Rebuild { .. } => {
                self.rebuilds.inc();
            }
            Progress::Sweep { returned } => {
                self.swept.inc_by(*returned as u64);
            }
            Progress::Check { .. }
            | Progress::CheckBatch { .. }
            | Progress::Landing { .. }
            | Progress::Tick
            | Progress::Output { .. } => {}
        }
    }

    /// The exposition, as of now.
    pub fn encode(&self) -> String {
        render(&self.registry)
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
