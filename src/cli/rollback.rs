use hyperion::Code;
use hyperion::gate::rollback;
use hyperion::request::target::Target;

use super::error::{CmdResult, CommandError};
use super::{Ctx, print_json};

/// Revert a landed request with a new commit on its target.
///
/// Builds the revert on the target's current tip (a 3-way merge per file, so later commits
/// that touched other lines are kept), lands it by compare-and-swap and records the request
/// as rolled_back with the reason. Refuses, changing nothing, when later commits conflict
/// with the revert. --last picks the most recently landed request still applied on the
/// target (hyperion.target unless --target).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Request id (or a unique prefix of at least 4 characters).
    #[arg(required_unless_present = "last", conflicts_with = "last")]
    id: Option<String>,
    /// Roll back the most recently landed request.
    #[arg(long)]
    last: bool,
    /// Target branch for --last.
    #[arg(long, value_name = "BRANCH", requires = "last")]
    target: Option<String>,
    /// Why; recorded in the revert commit and the request's history.
    #[arg(long, value_name = "TEXT", default_value = "rolled back")]
    reason: String,
    /// Show the revert; land and record nothing.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let queue = ctx.queue()?;
    let id = match (&args.id, args.last) {
        (Some(id), _) => id.clone(),
        (None, _) => {
            let target = match &args.target {
                Some(name) => Target::parse(name).map_err(CommandError::from_problem)?,
                None => queue.settings().target.clone(),
            };
            rollback::last(queue, &target)?.ok_or_else(|| {
                CommandError::refused(
                    Code::RollbackNothing,
                    format!("no applied request has landed on {target}"),
                )
            })?
        }
    };
    let (_, _, record) = queue.resolve(&id)?;
    let refuse = |e: rollback::Error| match e {
        rollback::Error::Refused(r) => CommandError::refused(
            r.code(),
            format!("cannot roll back {}: {}", record.id, r.message()),
        )
        .hint(r.hint()),
        rollback::Error::Failed(e) => e.into(),
    };
    let plan = rollback::plan(queue, &record).map_err(refuse)?;
    if args.dry_run {
        if ctx.json() {
            print_json(&serde_json::json!({ "dry_run": true, "plan": plan }));
        } else {
            println!(
                "would revert {} ({}) on {}: {}",
                plan.id,
                &plan.landed[..12],
                plan.target,
                plan.files.join(", ")
            );
        }
        return Ok(());
    }
    let actor = super::enqueue::actor();
    let (revert, updated) =
        rollback::execute(queue, &plan, &args.reason, &actor).map_err(refuse)?;
    if ctx.json() {
        print_json(
            &serde_json::json!({ "revert": revert.to_string(), "plan": plan, "record": updated }),
        );
    } else {
        println!(
            "rolled back {} on {}: revert {}",
            plan.id,
            plan.target,
            &revert.to_string()[..12]
        );
    }
    Ok(())
}
