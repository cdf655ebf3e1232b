use super::error::CmdResult;
use super::{Ctx, parse_duration_arg, print_json, ts};

/// Lease the next ready requests to a worker.
///
/// Takes up to N pending requests in queue order (priority first, then first in, first out)
/// and leases each to WORKER by compare-and-swap, so two workers never hold the same request.
/// Prints the leased records (an empty array with --format json when nothing is ready).
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
    let leased = ctx
        .queue()?
        .dequeue(&args.worker, args.batch.max(1), args.lease)?;
    if ctx.json() {
        print_json(&leased);
    } else {
        for r in &leased {
            println!(
                "{}  leased to {} until {}  {}",
                r.id,
                args.worker,
                r.leased_until.map(ts).unwrap_or_default(),
                r.title
            );
        }
        if leased.is_empty() {
            eprintln!("nothing is ready");
        }
    }
    Ok(())
}
