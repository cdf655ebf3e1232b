use super::error::CmdResult;
use super::{Ctx, print_json};

/// Return expired leases to the queue.
///
/// Each expiry counts as an attempt; a request whose lease expired hyperion.maxAttempts
/// times becomes a dead letter of class `lease`. Workers run this as they poll.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args, ctx: &Ctx) -> CmdResult {
    let s = ctx.queue()?.sweep()?;
    if ctx.json() {
        print_json(&s);
    } else {
        for id in &s.requeued {
            println!("{id} pending (lease expired)");
        }
        for id in &s.dead {
            println!("{id} dead (lease expired too often)");
        }
        eprintln!("swept {} expired lease(s)", s.requeued.len() + s.dead.len());
    }
    Ok(())
}
