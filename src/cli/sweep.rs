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
        for id in &s.unlocked {
            println!("{id} unlocked (a writer died holding its ref lock)");
        }
        for f in &s.skipped {
            eprintln!(
                "warning: {} not swept this time: [{}] {}",
                f.id, f.code, f.message
            );
        }
        eprintln!("swept {} expired lease(s)", s.requeued.len() + s.dead.len());
    }
    Ok(())
}
