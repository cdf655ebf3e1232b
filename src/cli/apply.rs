use std::time::Duration;

use hyperion::Code;
use hyperion::gate::worker::{self, Disposition, Stop, Worker};

use super::error::{CmdResult, CommandError};
use super::worker::print_report;
use super::{Ctx, parse_duration_arg};

/// Apply and land one request now, out of queue order.
///
/// Leases the pending request ID and takes it through the worker's pipeline: validation
/// against the target's tip and policy, pre-apply hooks, in-memory apply (3-way when needed),
/// checks, landing. With --dry-run it runs everything up to landing (checks included) and
/// changes nothing. Exits 1 with the failure's code when the request does not land.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Request id (or a unique prefix of at least 4 characters).
    id: String,
    /// Show what would happen; lease, land and record nothing.
    #[arg(long)]
    dry_run: bool,
    /// Lease length (default hyperion.leaseDuration).
    #[arg(long, value_name = "DUR", value_parser = parse_duration_arg)]
    lease: Option<Duration>,
}

pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let queue = ctx.queue()?;
    let w = Worker::new(queue, worker::new_id(), args.lease);
    let report = if args.dry_run {
        let (_, _, record) = queue.resolve(&args.id)?;
        w.dry_run(&record)?
    } else {
        let record = queue.lease_one(&args.id, w.id(), args.lease)?;
        w.process(&record, &Stop::default(), &mut |_| {})?
    };
    print_report(&report, ctx.json());
    match report.result {
        Disposition::Landed | Disposition::Recovered | Disposition::WouldLand => Ok(()),
        _ => {
            let mut e = CommandError::refused(
                report.code.unwrap_or(Code::ApplyFailed),
                report
                    .message
                    .clone()
                    .unwrap_or_else(|| "the request did not land".into()),
            )
            .hint(format!(
                "see `git hyperion show {}` for its record and artifacts",
                report.id
            ));
            if let Some(code) = report.code.filter(|c| c.as_str().starts_with("land.")) {
                e = e.hint(hyperion::gate::land::hint(code));
            }
            e.json_printed = ctx.json();
            Err(e)
        }
    }
}
