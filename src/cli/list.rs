use hyperion::queue::Filter;
use hyperion::request::model::Status;

use super::error::{CmdResult, CommandError};
use super::{Ctx, parse_since, print_records};

/// List requests, oldest first.
///
/// Columns: id, status (with the dead-letter class), priority, attempts, agent, task, last
/// update, title. `--format json` prints an array of records. In remote mode the text ends
/// with when the queue was last fetched (with `--format json`, that line is on stderr).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only this status: awaiting_approval, pending, leased, applied, dead, rolled_back.
    #[arg(long, value_name = "S")]
    status: Option<String>,
    /// Only requests from this agent.
    #[arg(long, value_name = "A")]
    agent: Option<String>,
    /// Only requests updated at or after T (RFC 3339, a date, or an age such as 2h).
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// At most N requests.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Fetch the queue from the remote first (remote mode: `--remote NAME` or
    /// `hyperion.remote`). Without it, the output says when the queue was last fetched.
    #[arg(long)]
    fetch: bool,
}

pub fn parse_status(s: &str) -> CmdResult<Status> {
    Status::parse(s).ok_or_else(|| {
        CommandError::usage(format!("unknown status '{s}'")).hint(format!(
            "use one of: {}",
            Status::ALL.map(|s| s.as_str()).join(", ")
        ))
    })
}

pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let filter = Filter {
        status: args.status.as_deref().map(parse_status).transpose()?,
        dead_class: None,
        agent: args.agent,
        since: args.since.as_deref().map(parse_since).transpose()?,
        limit: args.limit,
    };
    let remote = super::remote::fetch_first(ctx, args.fetch)?;
    let records = ctx.queue()?.list(&filter)?;
    print_records(ctx, &records);
    if let Some(r) = &remote {
        super::remote::print_freshness(ctx, r)?;
    }
    Ok(())
}
