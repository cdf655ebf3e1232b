use super::error::CmdResult;
use super::{Ctx, print_json};
use hyperion::tui::shown_line;

/// Return expired leases to the queue.
///
/// Each expiry counts as an attempt; a request whose lease expired hyperion.maxAttempts
/// times becomes a dead letter of class `lease`. Workers run this as they poll. In remote mode
/// (`hyperion.remote`, `--remote`) the remote's leases are fetched first and the returns
/// pushed, each with a lease on the expired lease's tip.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args, ctx: &Ctx) -> CmdResult {
    let remote = ctx.remote()?;
    let queue = ctx.queue()?;
    let (mut s, lost) = match &remote {
        None => (queue.sweep()?, Vec::new()),
        Some(remote) => {
            let r = hyperion::queue::remote::sweep(queue, remote, &super::enqueue::actor())?;
            if let Some(e) = &r.fetch_failed {
                eprintln!(
                    "warning: could not fetch from {} first; swept what this clone saw: {}",
                    remote.name(),
                    shown_line(&e.to_string())
                );
            }
            if let Some(e) = &r.push_failed {
                eprintln!(
                    "warning: could not push the sweep to {}: {}",
                    remote.name(),
                    shown_line(&e.to_string())
                );
                eprintln!("hint: `git hyperion push` publishes it later");
            }
            (r.swept, r.lost)
        }
    };
    // A return another machine beat is not a return.
    s.requeued.retain(|id| !lost.contains(id));
    s.dead.retain(|id| !lost.contains(id));
    for id in &lost {
        eprintln!("note: {id} was renewed or taken on another machine first; not swept");
    }
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
