use std::path::PathBuf;

use hyperion::Code;
use hyperion::agents::model::Plan;
use hyperion::agents::plan::{self, Options, Planned};
use hyperion::request::target::Target;

use super::error::{CmdResult, CommandError};
use super::{Ctx, print_json};

/// Plan a task: split it into assignments for agents, with owners, domains, token sizes,
/// instructions and the order they must land in.
///
/// Reads TASK.json (a task request, schemas/task-request.schema.json) and the target branch's
/// tip: the files the task's `scope` globs match, CODEOWNERS, the workspace layout and
/// `.hyperion/templates/KIND.md.j2` — all from the branch's tree, never from the work tree.
/// Files are grouped by (domain, owners); a group above the token maximum is split by
/// directory, then by file. Assignments that use each other's files (Rust `mod`/`use`,
/// Python imports, JS/TS relative imports) are ordered; cycles are reported and sequenced.
///
/// Prints a table and the dependencies; with `--format json`, the plan (`hyperion.plan/v1`),
/// which `run --plan` reads. Nothing is written. See docs/agents.md#planning.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The task request (`-` for stdin).
    #[arg(value_name = "TASK.json")]
    task: PathBuf,
    /// Plan against this branch (default: the task's `target`, else `hyperion.target`).
    #[arg(long, value_name = "BRANCH")]
    target: Option<String>,
    /// The largest assignment, in tokens of instructions plus file contents
    /// (default: `hyperion.plan.maxTokens`, 60000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_tokens: Option<u64>,
}

pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let started = std::time::Instant::now();
    let planned = make(&args.task, args.target.as_deref(), args.max_tokens, ctx)?;
    let elapsed = started.elapsed();
    tracing::info!(
        files = planned.files,
        bytes = planned.bytes,
        assignments = planned.plan.assignments.len(),
        ms = elapsed.as_millis() as u64,
        "planned"
    );
    if ctx.json() {
        print_json(&planned.plan);
    } else {
        print_text(&planned, elapsed);
    }
    Ok(())
}

/// Read the task request at `path` (`-`: stdin) and plan it against `target` (default: the
/// task's, else `hyperion.target`): what `plan` prints and `run TASK.json` runs.
pub(super) fn make(
    path: &std::path::Path,
    target: Option<&str>,
    max_tokens: Option<u64>,
    ctx: &Ctx,
) -> CmdResult<Planned> {
    let source = path.display().to_string();
    let bytes = read_task(path)?;
    let task = hyperion::agents::task::parse(&bytes)
        .map_err(|problems| task_refused(&source, problems))?;
    let store = ctx.store()?;
    let repo = store.repo();
    let settings = hyperion::queue::settings::Settings::load(repo)?;
    let target = target
        .map(Target::parse)
        .transpose()
        .map_err(|p| CommandError::from_problem(p.at("--target")))?;
    let opts = Options {
        target,
        default_target: settings.target.clone(),
        max_tokens: max_tokens.unwrap_or(settings.plan_max_tokens),
        now: jiff::Timestamp::now(),
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    plan::plan(repo, &task, &opts).map_err(|e| match e {
        plan::Error::Failed(e) => CommandError::from(e),
        plan::Error::Refused(p) => {
            let field = p.field.clone();
            let e = if p.code.as_str().starts_with("target.") {
                CommandError::from_problem(p)
            } else if p.code.as_str().starts_with("task.") {
                task_refused(&source, vec![p])
            } else {
                CommandError::refused(p.code, p.message).hint(p.hint)
            };
            match field {
                Some(f) if !e.message.contains(&f) => CommandError {
                    message: format!("{f}: {}", e.message),
                    ..e
                },
                _ => e,
            }
        }
    })
}

fn read_task(path: &std::path::Path) -> CmdResult<Vec<u8>> {
    use std::io::Read;
    let limit = hyperion::agents::task::MAX_TASK_BYTES as u64 + 1;
    let mut bytes = Vec::new();
    let result = if path.as_os_str() == "-" {
        std::io::stdin().take(limit).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(limit).read_to_end(&mut bytes))
    };
    result.map_err(|e| {
        CommandError::usage(format!("could not read {}: {e}", path.display()))
            .hint("pass the path of a task request (see samples/tasks/)")
    })?;
    Ok(bytes)
}

fn task_refused(source: &str, problems: Vec<hyperion::Problem>) -> CommandError {
    let mut e = CommandError::rejected(
        problems
            .into_iter()
            .map(|p| (source.to_owned(), p))
            .collect(),
    );
    e.message = format!(
        "{} problem(s) in the task {source}; nothing was planned",
        e.problems.len()
    );
    e.hints.retain(|h| !h.starts_with("nothing was stored"));
    if e.code == Code::RequestInvalid {
        e.code = Code::TaskInvalidValue;
    }
    e
}

fn print_text(planned: &Planned, elapsed: std::time::Duration) {
    let p: &Plan = &planned.plan;
    println!(
        "plan {} \"{}\" ({}) on {} at {}",
        p.task_id,
        p.title,
        p.kind.as_str(),
        p.target,
        &p.base[..12.min(p.base.len())]
    );
    println!(
        "{} file(s), {} bytes in scope; {} assignment(s); max {} tokens ({}); owners from {}; template {}; {} ms",
        planned.files,
        planned.bytes,
        p.assignments.len(),
        p.max_tokens,
        p.tokenizer,
        planned.codeowners.as_deref().unwrap_or("(no CODEOWNERS)"),
        planned.template,
        elapsed.as_millis()
    );
    if !planned.codeowners_skipped.is_empty() {
        println!(
            "note: CODEOWNERS lines that are not rules were skipped: {}",
            planned
                .codeowners_skipped
                .iter()
                .map(|l| l.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!();
    let id_width = p
        .assignments
        .iter()
        .map(|a| a.id.len())
        .max()
        .unwrap_or(2)
        .max(2);
    let dom_width = p
        .assignments
        .iter()
        .map(|a| a.domain.len())
        .max()
        .unwrap_or(6)
        .clamp(6, 30);
    println!(
        "{:<id_width$}  {:>7}  {:>5}  {:<dom_width$}  {:<20}  AFTER",
        "ID", "TOKENS", "FILES", "DOMAIN", "OWNERS"
    );
    for a in &p.assignments {
        let owners = if a.owners.is_empty() {
            "-".to_owned()
        } else {
            a.owners.join(",")
        };
        let after = if a.depends_on.is_empty() {
            "-".to_owned()
        } else {
            a.depends_on.join(",")
        };
        println!(
            "{:<id_width$}  {:>7}  {:>5}  {:<dom_width$}  {:<20}  {}",
            a.id,
            a.tokens,
            a.files.len(),
            a.domain,
            owners,
            after
        );
    }
    let edges: Vec<_> = p
        .assignments
        .iter()
        .filter(|a| !a.depends_on.is_empty())
        .collect();
    if !edges.is_empty() {
        println!();
        println!("dependencies:");
        for a in edges {
            println!("  {} after {}", a.id, a.depends_on.join(", "));
        }
    }
    for c in &p.cycles {
        println!();
        println!(
            "cycle: {} use each other's files; sequenced in plan order",
            c.assignments.join(" <-> ")
        );
        for d in &c.dropped {
            println!(
                "  not waited for: {} ({}) uses {} ({})",
                d.assignment, d.file, d.depends_on, d.uses
            );
        }
    }
}
