use hyperion::tui::shown_line;

use super::error::CmdResult;
use super::{Ctx, print_json, ts};

/// Show one request: its record, its history (one line per transition) and its artifacts.
///
/// ID may be a unique prefix of at least 4 digits. The history is the request's chain:
/// `git log refs/hyperion/requests/ID` shows the same commits.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The request id (or a unique prefix).
    id: String,
    /// Also print the request's patches.
    #[arg(long)]
    patch: bool,
    /// Fetch the queue from the remote first (remote mode: `--remote NAME` or
    /// `hyperion.remote`). Without it, the output says when the queue was last fetched.
    #[arg(long)]
    fetch: bool,
}

pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let remote = super::remote::fetch_first(ctx, args.fetch)?;
    let q = ctx.queue()?;
    let d = q.show(&args.id)?;
    if ctx.json() {
        let mut v = serde_json::to_value(&d).expect("serialises");
        if let Some(r) = &remote {
            v["remote"] = super::remote::freshness(ctx, r)?;
        }
        if let Some((_, lines)) = hyperion::agents::run::transcript(q, &d.record.id)? {
            v["agent_totals"] =
                serde_json::to_value(hyperion::agents::run::totals_of(&lines)).expect("serialises");
        }
        if args.patch {
            v["request"] = serde_json::to_value(q.request(&d.record.id)?).expect("serialises");
        }
        print_json(&v);
        return Ok(());
    }
    let r = &d.record;
    println!("request   {}", r.id);
    println!(
        "ref       refs/hyperion/requests/{} ({})",
        r.id,
        &d.tip[..12]
    );
    match r.dead_class {
        Some(c) => println!("status    {} ({c})", r.status),
        None => println!("status    {}", r.status),
    }
    println!("title     {}", shown_line(&r.title));
    println!("task      {}", shown_line(&r.task_id));
    println!("agent     {}", shown_line(&r.agent));
    println!("priority  {}", r.priority);
    println!("attempts  {}", r.attempts);
    println!("created   {}", ts(r.created_at));
    println!("updated   {}", ts(r.updated_at));
    if let Some(remote) = &remote {
        println!("{}", super::remote::freshness_line(ctx, remote)?);
    }
    if let (Some(o), Some(u)) = (&r.lease_owner, r.leased_until) {
        println!("lease     {} until {}", shown_line(o), ts(u));
    }
    if r.status == hyperion::request::model::Status::AwaitingApproval
        && !r.approval_tiers.is_empty()
    {
        println!(
            "approval  needed for tier {} (git hyperion approve {})",
            r.approval_tiers.join(", "),
            r.id
        );
    }
    if let Some(a) = &r.approved_by {
        println!("approved  by {}", shown_line(a));
    }
    if !r.depends_on.is_empty() {
        println!("depends   on {}", r.depends_on.join(", "));
    }
    if !r.waiting_for.is_empty() {
        println!("waiting   for {} to land first", r.waiting_for.join(", "));
    }
    if let Some(e) = &r.error {
        println!(
            "error     [{}] {}",
            shown_line(&e.code),
            shown_line(&e.message)
        );
    }
    if let Some(c) = &r.landed_commit {
        println!("landed    {c}");
    }
    println!("\nhistory (newest first):");
    for h in &d.history {
        let e = &h.event;
        let from = e.from.map(|s| s.as_str()).unwrap_or("-");
        let mut line = format!(
            "  {}  {}  {:<9} {from} -> {}  {}",
            &h.commit[..12],
            ts(e.at),
            e.action.as_str(),
            e.to,
            shown_line(&e.actor)
        );
        if let Some(reason) = &e.reason {
            line.push_str(&format!("  ({})", shown_line(reason)));
        }
        println!("{line}");
    }
    if let Some((_, lines)) = hyperion::agents::run::transcript(q, &r.id)?
        && let Some(t) = hyperion::agents::run::totals_of(&lines)
    {
        println!(
            "\nagent     {} ({}; `git hyperion transcript {}`)",
            super::transcript::summary(t),
            t.outcome,
            r.id
        );
    }
    if !d.artifacts.is_empty() {
        println!(
            "\nartifacts (git show refs/hyperion/requests/{}:PATH):",
            r.id
        );
        for a in &d.artifacts {
            println!("  {a}");
        }
    }
    if args.patch {
        let req = q.request(&r.id)?;
        println!();
        for c in &req.changes {
            print!("{}", c.patch);
        }
    }
    Ok(())
}
