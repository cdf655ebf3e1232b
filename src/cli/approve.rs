use hyperion::queue::store::Store;

use super::error::{CmdResult, CommandError};
use super::{Ctx, print_records};

/// Approve a request that awaits approval, so that it joins the queue.
///
/// A request whose risk tier needs a person (changes to .hyperion/, hooks, CI definitions,
/// executable bits, or a tier of the target's policy) waits in awaiting_approval. You may
/// approve it if you are an allowed approver of every tier it falls in, by the policy at the
/// target's tip: the tier's `approvers`, else the policy's [approvals] approvers, else git
/// config hyperion.approvers. Your identity is $HYPERION_ACTOR, else git config user.email;
/// it is recorded as the actor of the approval. A worker checks the approval again, by the
/// policy at that time, before it lands the request.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Request id (or a unique prefix of at least 4 characters).
    id: String,
    /// Why it may land (recorded in the request's history).
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
}

pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let queue = ctx.queue()?;
    let who = identity(queue.store())?;
    let record = queue.approve(&args.id, &who, args.reason.as_deref())?;
    if ctx.json() {
        print_records(ctx, std::slice::from_ref(&record));
    } else {
        println!("{} approved by {who}; pending", record.id);
    }
    Ok(())
}

/// Who is approving or rejecting: `$HYPERION_ACTOR`, else `user.email` from git config (every
/// level git reads). Nothing proves it: anyone who can run git in the repository can set
/// either; see docs/policy.md.
pub fn identity(store: &Store) -> CmdResult<String> {
    if let Some(a) = std::env::var("HYPERION_ACTOR")
        .ok()
        .filter(|s| !s.trim().is_empty())
    {
        return Ok(a.trim().to_owned());
    }
    store
        .repo()
        .config_snapshot()
        .string("user.email")
        .map(|v| v.to_string().trim().to_owned())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            CommandError::usage(
                "no identity to record: neither HYPERION_ACTOR nor git config user.email is set",
            )
            .hint("set HYPERION_ACTOR, or `git config user.email YOU@EXAMPLE.COM`")
        })
}
