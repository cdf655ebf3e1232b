//! Observability: Prometheus metrics of the queue and of a running worker, the HTTP
//! endpoint that serves the latter, and the report of what the queue did over a window.
//!
//! Two sources, one vocabulary (docs/observability.md lists every name):
//! - [`metrics::of_records`]: the exposition computed from the repository, from the same read
//!   of every record that `list` makes ([`crate::queue::Queue::list`]); no second way of
//!   reading requests.
//! - [`metrics::WorkerMetrics`]: live counters and histograms fed by the worker's own event
//!   stream (its [`crate::gate::worker::Report`]s and [`crate::gate::worker::Progress`]),
//!   which the caller passes to the worker; the worker itself knows nothing of metrics.
//!
//! - [`report::Report`]: the queue over a window (landed and dead per hour, latency
//!   percentiles, failure codes, agents, slowest checks) as numbers and as a self-contained
//!   HTML page, from the same read of the records plus the notes and transcripts beside them.
//!
//! Tracing spans are the worker's own (`request` span: `request_id`, `task_id`, `worker`);
//! the subscriber is the binary's. This module never prints.

pub mod metrics;
pub mod report;
pub mod serve;
