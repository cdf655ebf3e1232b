use super::error::CmdResult;
use super::{Ctx, print_json};

/// Give a leased request back to the queue without counting a failed attempt.
///
/// In remote mode the release is pushed (with a lease on the remote's tip).
#[derive(clap::Args, Debug)]
pub struct Args {
    id: String,
    /// The worker that holds the lease.
    #[arg(long, value_name = "W")]
    worker: String,
}

pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let r = super::remote::held_transition(ctx, &args.id, &args.worker, |q, id| {
        q.release(id, &args.worker)
    })?;
    if ctx.json() {
        print_json(&r);
    } else {
        println!("{} is {} again", r.id, r.status);
    }
    Ok(())
}
