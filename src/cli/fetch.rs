use hyperion::queue::remote;

use super::error::CmdResult;
use super::{Ctx, print_json};

/// Fetch the queue from the remote and take in what other machines did.
///
/// The remote's request refs are fetched into refs/hyperion-remotes/NAME/requests/ (a mirror
/// of the remote); then each local request that is missing or behind moves to the remote's
/// tip, by compare-and-swap. Local transitions not yet pushed are kept (`git hyperion push`
/// publishes them); requests whose chains diverged are left alone and listed
/// (`git hyperion doctor` says how to resolve them). The remote is `--remote NAME`, else
/// `hyperion.remote`.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args, ctx: &Ctx) -> CmdResult {
    let r = ctx.need_remote()?;
    let f = remote::fetch(ctx.queue()?.store(), &r, &super::enqueue::actor())?;
    if ctx.json() {
        print_json(&f);
        return Ok(());
    }
    println!(
        "fetched the queue from {}: {} request(s) taken in, {} with local transitions to push, {} diverged",
        r.name(),
        f.adopted.len(),
        f.ahead.len(),
        f.diverged.len()
    );
    for id in &f.diverged {
        println!("diverged: {id}");
    }
    Ok(())
}
