use hyperion::queue::Filter;

use super::Ctx;
use super::error::CmdResult;

/// Print the queue's metrics as the repository holds them now, in the Prometheus text format
/// (OpenMetrics 1.0).
///
/// Requests by status, totals (enqueued, landed, dead by class and code, attempts, retries)
/// and the enqueue-to-landed latency of the applied requests, computed from the request
/// records (the same read as `list`). Scrape it from a cron job or a textfile collector; for a
/// running worker's live counters see `worker --metrics-addr`. Every name is documented in
/// docs/observability.md. The output is the exposition whatever --format says.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args, ctx: &Ctx) -> CmdResult {
    let records = ctx.queue()?.list(&Filter::default())?;
    print!("{}", hyperion::obs::metrics::of_records(&records));
    Ok(())
}
