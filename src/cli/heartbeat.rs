use super::error::CmdResult;
use super::{Ctx, print_json, ts};

/// Extend a lease you hold by its lease length.
///
/// Only the lease owner may do this; anyone else gets exit 1 and nothing changes. In remote
/// mode the renewal is pushed (with a lease on the remote's tip).
#[derive(clap::Args, Debug)]
pub struct Args {
    id: String,
    /// The worker that holds the lease.
    #[arg(long, value_name = "W")]
    worker: String,
}

pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let r = super::remote::held_transition(ctx, &args.id, &args.worker, |q, id| {
        q.heartbeat(id, &args.worker)
    })?;
    if ctx.json() {
        print_json(&r);
    } else {
        println!(
            "{} leased to {} until {}",
            r.id,
            args.worker,
            r.leased_until.map(ts).unwrap_or_default()
        );
    }
    Ok(())
}
