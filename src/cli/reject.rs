use super::approve::identity;
use super::error::CmdResult;
use super::{Ctx, print_records};

/// Refuse a request that awaits approval.
///
/// It becomes a dead letter of class `rejected`, with the reason and your identity
/// ($HYPERION_ACTOR, else git config user.email) in its history. `requeue` brings a rejected
/// request back to awaiting_approval, never straight into the queue.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Request id (or a unique prefix of at least 4 characters).
    id: String,
    /// Why it must not land (recorded in the request's history and error).
    #[arg(long, value_name = "TEXT")]
    reason: String,
}

pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let queue = ctx.queue()?;
    let who = identity(queue.store())?;
    let record = queue.reject(&args.id, &who, &args.reason)?;
    if ctx.json() {
        print_records(ctx, std::slice::from_ref(&record));
    } else {
        println!("{} rejected by {who}", record.id);
    }
    Ok(())
}
