use hyperion::queue::remote;

use super::error::{CmdResult, CommandError};
use super::{Ctx, print_json};

/// Publish local requests and transitions to the remote, in one atomic push.
///
/// Every local request the remote lacks is pushed create-only; every one whose local chain
/// goes on from the remote's tip (as of the last fetch) is pushed with a lease on that tip
/// (`--force-with-lease`), so that a transition another machine pushed meanwhile is never
/// overwritten: the push is then refused (`remote.conflict`) and nothing is published; run
/// `git hyperion fetch` and look at `doctor`. The remote is `--remote NAME`, else
/// `hyperion.remote`.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args, ctx: &Ctx) -> CmdResult {
    let r = ctx.need_remote()?;
    let p = remote::push(ctx.queue()?.store(), &r)?;
    if ctx.json() {
        print_json(&p);
    } else {
        println!(
            "pushed {} request(s) to {} ({} already there)",
            p.pushed.len(),
            r.name(),
            p.up_to_date.len()
        );
        for id in &p.diverged {
            println!("diverged (not pushed): {id}");
        }
    }
    if !p.diverged.is_empty() {
        let mut e = CommandError::refused(
            hyperion::Code::RemoteDiverged,
            format!(
                "{} request(s) diverged from {}'s and were not pushed",
                p.diverged.len(),
                r.name()
            ),
        )
        .hint("`git hyperion doctor` names them and how to resolve each");
        e.json_printed = ctx.json();
        return Err(e);
    }
    Ok(())
}
