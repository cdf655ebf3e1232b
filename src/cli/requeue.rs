use super::enqueue::actor;
use super::error::CmdResult;
use super::{Ctx, print_records};

/// Put dead letters back into the queue, recording why.
///
/// Attempts start again from zero; the reason is stored in each request's chain. Every id is
/// checked first: if one is unknown or not dead, nothing changes. A rejected request, or one
/// whose risk tier needs approval by the target's policy now, goes back to awaiting_approval.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Ids (or unique prefixes) of dead requests.
    #[arg(required = true)]
    ids: Vec<String>,
    /// Why they are worth another try (recorded in the audit trail).
    #[arg(long)]
    reason: String,
}

pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let records = ctx.queue()?.requeue(&args.ids, &args.reason, &actor())?;
    if ctx.json() {
        print_records(ctx, &records);
    } else {
        for r in &records {
            println!("{} {} again", r.id, r.status);
        }
    }
    Ok(())
}
