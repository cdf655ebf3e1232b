use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hyperion::Code;
use hyperion::agents::run::{Options, Progress, Report};
use hyperion::gate::worker::{self, Mode, Stop, Worker};

use super::error::{CmdResult, CommandError};
use super::{Ctx, print_json};

/// Run agents on a plan's assignments and submit what they change as change requests.
///
/// Every ready assignment of PLAN.json (`hyperion.plan/v1`, as `git hyperion plan` writes
/// it) gets its own worktree at the target's tip (with its predecessors' requests applied),
/// its agent is run headless (the first of the assignment's `agents`, else
/// `hyperion.agent.default`, else `claude`), and the worktree's diff is enqueued with the
/// assignment id as `task_id` and the predecessors' requests as `depends_on`. The prompt and
/// everything stored are redacted; budgets, rate limits, retries and a watchdog apply (see
/// docs/agents.md). An assignment that already has a request is not run again. Ctrl-C stops
/// the agents, removes their worktrees and enqueues nothing more.
///
/// Exit 0 when every assignment has a request, 1 when one failed (`agent.failed`).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A task request (`hyperion.task-request/v1`), planned first as `git hyperion plan`
    /// plans it (against the task's target).
    #[arg(
        value_name = "TASK.json",
        required_unless_present = "plan",
        conflicts_with = "plan"
    )]
    task: Option<PathBuf>,
    /// The plan to run.
    #[arg(long, value_name = "PLAN.json")]
    plan: Option<PathBuf>,
    /// Agents at once.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    parallel: u16,
    /// Then run a worker until nothing is ready (the requests land or become dead letters).
    #[arg(long)]
    drain: bool,
}

pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let plan = match (&args.plan, &args.task) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CommandError::usage(format!("cannot read {}: {e}", path.display())))?;
            hyperion::agents::run::parse_plan(&text)?
        }
        // Planned now, as `git hyperion plan TASK.json` would, and checked as a plan file is.
        (None, Some(task)) => {
            let planned = super::plan::make(task, None, None, ctx)?;
            let text = serde_json::to_string(&planned.plan).expect("a plan serialises");
            hyperion::agents::run::parse_plan(&text)?
        }
        (None, None) => unreachable!("clap requires TASK.json or --plan"),
    };
    let queue = ctx.queue()?;
    let cancel = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, cancel.clone())
            .map_err(|e| CommandError::env(Code::EnvIo, format!("cannot handle signals: {e}")))?;
    }
    // What happens to each assignment, as lines on stderr: shown as every long step's
    // progress is (`--progress`, `--no-progress`; not by default with `--format json`).
    let mut shown = super::progress::Progress::new(ctx.progress, ctx.json());
    let mut progress = |p: &Progress| {
        if !shown.on() {
            return;
        }
        let line = match p {
            Progress::Skipped {
                assignment,
                request,
            } => format!("{assignment}: has request {request}, not run again"),
            Progress::Started {
                assignment,
                provider,
            } => format!("{assignment}: {provider} started"),
            Progress::Finished(r) => {
                let spent = r
                    .totals
                    .as_ref()
                    .map(super::transcript::summary)
                    .unwrap_or_default();
                match &r.request {
                    Some(id) => format!("{}: {} {id} ({spent})", r.assignment, r.status),
                    None => format!("{}: {} — {} ({spent})", r.assignment, r.status, r.reason),
                }
            }
        };
        // Failure reasons carry what the agent said: escaped, as everything from outside.
        shown.line(&format!("hyperion: {}", hyperion::tui::shown_line(&line)));
    };
    let opts = Options {
        parallel: args.parallel as usize,
        actor: format!("agent-run:{}", super::enqueue::actor()),
    };
    let report = hyperion::agents::run::run_plan(queue, &plan, &opts, &cancel, &mut progress)?;
    let mut landed = None;
    if args.drain && !report.cancelled {
        let w = Worker::new(queue, worker::new_id(), None);
        let stop = Stop::default();
        let wopts = worker::Options {
            batch: 1,
            mode: Mode::Drain,
            poll: std::time::Duration::from_millis(200),
        };
        let reports = w.run(&wopts, &stop, &mut |_| {}, &mut |_| {})?;
        landed = Some(reports.len());
    }
    print(ctx, &report, landed);
    // The report is the JSON document, failed or not.
    let printed = |mut e: CommandError| {
        e.json_printed = ctx.json();
        e
    };
    if cancel.load(Ordering::SeqCst) {
        return Err(printed(CommandError::refused(Code::AgentFailed, "stopped: nothing more was enqueued")
            .hint("run the same plan again to go on: assignments that have a request are not run again")));
    }
    if !report.ok() {
        let failed: Vec<&str> = report
            .assignments
            .iter()
            .filter(|a| !matches!(a.status, "enqueued" | "existing"))
            .map(|a| a.assignment.as_str())
            .collect();
        return Err(printed(CommandError::refused(
            Code::AgentFailed,
            format!("{} assignment(s) have no request: {}", failed.len(), failed.join(", ")),
        )
        .hint("the reasons are above; failed agents' transcripts are kept in $GIT_DIR/hyperion/agents/; run the plan again to retry what has no request")));
    }
    Ok(())
}

fn print(ctx: &Ctx, report: &Report, processed: Option<usize>) {
    if ctx.json() {
        let mut v = serde_json::to_value(report).expect("serialises");
        if let Some(n) = processed {
            v["worker_processed"] = n.into();
        }
        print_json(&v);
        return;
    }
    let shown = hyperion::tui::shown_line;
    for a in &report.assignments {
        let spent = a
            .totals
            .as_ref()
            .map(super::transcript::summary)
            .unwrap_or_default();
        println!(
            "{:<24} {:<10} {:<10} {:<16} {spent}{}",
            shown(&a.assignment),
            shown(&a.provider),
            a.status,
            a.request.as_deref().unwrap_or("-"),
            if a.reason.is_empty() {
                String::new()
            } else {
                format!("  ({})", shown(&a.reason))
            }
        );
    }
    println!("total: {}", super::transcript::summary(&report.totals));
    if let Some(n) = processed {
        println!("worker: {n} request(s) processed");
    }
}
