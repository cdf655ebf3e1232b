use hyperion::request::model::Record;

use super::error::CmdResult;
use super::{Ctx, JsonArray, parse_duration_arg, ts};

/// Lease the next ready requests to a worker.
///
/// Takes up to N pending requests in queue order (priority first, then first in, first out)
/// and leases each to WORKER by compare-and-swap, so two workers never hold the same request.
/// Prints the leased records (an empty array with --format json when nothing is ready).
///
/// In remote mode (`--remote NAME` or `hyperion.remote`), the queue is fetched first (unless
/// the last fetch is younger than hyperion.leaseView: then the lease is taken from what it saw)
/// and the leases are published in one atomic push, each with a lease on the remote's tip: a
/// request another machine leased first is not this worker's (its local lease is put back to the
/// remote's state) and is not printed. See docs/remote.md.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Worker id that will own the leases.
    #[arg(long, value_name = "W")]
    worker: String,
    /// How many requests to lease at most.
    #[arg(long, value_name = "N", default_value_t = 1)]
    batch: usize,
    /// Lease length (default hyperion.leaseDuration; at most hyperion.maxLease).
    #[arg(long, value_name = "DUR", value_parser = parse_duration_arg)]
    lease: Option<std::time::Duration>,
}

pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    if let Some(remote) = ctx.remote()? {
        let won = hyperion::queue::remote::lease(
            ctx.queue()?,
            &remote,
            &args.worker,
            args.batch.max(1),
            args.lease,
            hyperion::queue::remote::View::Recent,
        )?;
        let mut json = ctx.json().then(JsonArray::default);
        for r in &won.records {
            print_leased(r, &args.worker, json.as_mut());
        }
        if let Some(json) = json {
            json.finish();
        }
        for id in &won.lost {
            eprintln!("note: {id} was leased by another machine first");
        }
        if won.records.is_empty() && !ctx.json() {
            eprintln!("nothing is ready");
        }
        return Ok(());
    }
    // Printed as leased: a batch of any size is never held whole.
    let mut json = ctx.json().then(JsonArray::default);
    let leased = ctx
        .queue()?
        .dequeue_each(&args.worker, args.batch.max(1), args.lease, |r| {
            print_leased(&r, &args.worker, json.as_mut())
        });
    // What was leased is printed even when a later part failed, then the error; an error
    // before the first lease prints no array.
    let leased = match leased {
        Ok(n) => n,
        Err(e) => {
            if let Some(json) = json.filter(|j| j.started) {
                json.finish();
            }
            return Err(e.into());
        }
    };
    if let Some(json) = json {
        json.finish();
    }
    if leased == 0 && !ctx.json() {
        eprintln!("nothing is ready");
    }
    Ok(())
}

/// One leased record as it is printed: an element of the JSON array, or a line.
fn print_leased(r: &Record, worker: &str, json: Option<&mut JsonArray>) {
    match json {
        Some(json) => json.push(r),
        None => println!(
            "{}  leased to {worker} until {}  {}",
            r.id,
            r.leased_until.map(ts).unwrap_or_default(),
            r.title
        ),
    }
}
