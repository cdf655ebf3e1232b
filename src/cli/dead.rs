use hyperion::queue::Filter;
use hyperion::request::model::{DeadClass, Status};

use super::error::{CmdResult, CommandError};
use super::{Ctx, print_records};

/// List dead letters, with why they died.
///
/// Classes: validation (the policy or target changed), apply (does not apply), check (a check
/// failed or timed out), lease (workers holding it kept dying), environment (the repository
/// kept failing), rejected (a person refused it while it awaited approval). Put one back with
/// `git hyperion requeue ID --reason TEXT`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only this class: validation, apply, check, lease, environment, rejected.
    #[arg(long, value_name = "C")]
    class: Option<String>,
    /// At most N requests.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Fetch the queue from the remote first (remote mode: `--remote NAME` or
    /// `hyperion.remote`). Without it, the output says when the queue was last fetched.
    #[arg(long)]
    fetch: bool,
}

pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let class = match args.class.as_deref() {
        Some(c) => Some(DeadClass::parse(c).ok_or_else(|| {
            CommandError::usage(format!("unknown dead-letter class '{c}'")).hint(format!(
                "use one of: {}",
                DeadClass::ALL.map(|c| c.as_str()).join(", ")
            ))
        })?),
        None => None,
    };
    let filter = Filter {
        status: Some(Status::Dead),
        dead_class: class,
        limit: args.limit,
        ..Filter::default()
    };
    let remote = super::remote::fetch_first(ctx, args.fetch)?;
    let records = ctx.queue()?.list(&filter)?;
    if let Some(r) = &remote {
        super::remote::print_freshness(ctx, r)?;
    }
    if !ctx.json() {
        for r in &records {
            if let Some(e) = &r.error {
                println!(
                    "{}  {}  [{}] {}",
                    r.id,
                    r.dead_class.map(|c| c.as_str()).unwrap_or("?"),
                    e.code,
                    e.message
                );
            } else {
                println!(
                    "{}  {}",
                    r.id,
                    r.dead_class.map(|c| c.as_str()).unwrap_or("?")
                );
            }
        }
        return Ok(());
    }
    print_records(ctx, &records);
    Ok(())
}
