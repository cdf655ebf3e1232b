use hyperion::Problem;
use hyperion::queue::ingest::{self, Read};
use hyperion::request::model::ChangeRequest;
use hyperion::request::target::Target;

use super::Ctx;
use super::enqueue::{self, Wrap};
use super::error::{CmdResult, CommandError};

/// Turn pushed branches into change requests.
///
/// For each branch matching REF|PATTERN (default: `hyperion.ingest.pattern`, else
/// refs/heads/agent/*/*): the diff between its merge-base with the target branch and its tip,
/// as `git diff --binary --full-index` writes it, becomes a request, validated and enqueued
/// exactly as `enqueue --patch` would (schema, target, policy, secrets, archived ids), and
/// applied in memory onto the target to refuse a branch that conflicts. Agent and task come
/// from the branch name `agent/<agent>/<task>`, unless the tip's trailers `Hyperion-Agent:` and
/// `Hyperion-Task:` say otherwise; `Hyperion-Check:` (repeatable) and `Hyperion-Priority:` add
/// checks and a priority. The title is the tip's subject. Branches are only read.
///
/// Ingesting the same tip again stores nothing (request ids come from the content) and
/// reports the request as already queued. A branch with nothing the target lacks is skipped.
///
/// Output: one line per branch, `queued ID REF`, `already ID REF (STATUS)`, `skipped REF
/// [CODE] …` or `refused REF`; the problems of refused branches follow on stderr as `enqueue`
/// prints them. Exit 1 when any branch was refused (the others are stored), 2 on a usage or
/// environment error.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Branches (`agent/a/t`, `refs/heads/…`, `refs/remotes/…`) or patterns (`*` within a
    /// component, `**` across); default: hyperion.ingest.pattern.
    #[arg(value_name = "REF|PATTERN")]
    refs: Vec<String>,
    /// Branch the requests land on, and that diffs are taken against (default:
    /// hyperion.target).
    #[arg(long, value_name = "BRANCH")]
    target: Option<String>,
    /// Read and validate every branch, store nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(serde::Serialize)]
struct Row {
    #[serde(rename = "ref")]
    refname: String,
    commit: String,
    /// `queued`, `already_queued`, `skipped`, `refused`, `valid` (dry run).
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<hyperion::request::model::Record>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    problems: Vec<Problem>,
}

pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    enqueue::read_default_policy(ctx);
    let queue = ctx.queue()?;
    let store = queue.store();
    let repo = store.repo();
    let patterns = if args.refs.is_empty() {
        queue.settings().ingest_patterns.clone()
    } else {
        args.refs
            .iter()
            .map(|r| {
                ingest::parse_pattern(r).map_err(|m| {
                    CommandError::usage(m).hint(
                        "name branches (agent/A/T, refs/heads/…) or remote-tracking branches (refs/remotes/…)",
                    )
                })
            })
            .collect::<CmdResult<_>>()?
    };
    let target = match &args.target {
        Some(t) => Target::parse(t).map_err(CommandError::from_problem)?,
        None => queue.settings().target.clone(),
    };
    let tip = match target.resolve(repo) {
        Ok(tip) => tip,
        Err(e) => return Err(CommandError::from_problem(e.refusal()?)),
    };
    let policy = tip.policy(repo)?;
    let request_target = args.target.as_ref().map(|_| target.name().to_owned());

    let mut rows: Vec<Row> = Vec::new();
    // Branches read into requests, by row.
    let mut loaded = Vec::new();
    let mut at_row = Vec::new();
    for (refname, commit) in ingest::matching(repo, &patterns)? {
        let row = Row {
            refname: refname.clone(),
            commit: commit.to_string(),
            result: "refused",
            id: None,
            record: None,
            problems: Vec::new(),
        };
        match ingest::read(
            repo,
            store.git_dir(),
            &refname,
            commit,
            &tip,
            policy.limits.request_bytes,
        )? {
            Read::Refused(p) => rows.push(Row {
                problems: vec![p],
                ..row
            }),
            Read::Nothing(p) => rows.push(Row {
                result: "skipped",
                problems: vec![p],
                ..row
            }),
            Read::Diff(b) => {
                let wrap = Wrap {
                    task: &b.task,
                    agent: &b.agent,
                    title: b.title.as_deref(),
                    checks: &b.checks,
                    priority: b.priority,
                    description: Some(b.description.clone()),
                    target: request_target.clone(),
                    depends_on: &[],
                };
                let wrapped = enqueue::wrap_text(&b.diff, refname, &wrap);
                if let Some(e) = enqueue::stored_duplicate(queue, &wrapped)? {
                    rows.push(Row {
                        result: "already_queued",
                        id: Some(e.id),
                        record: Some(e.record),
                        ..row
                    });
                    continue;
                }
                loaded.push(wrapped);
                at_row.push(rows.len());
                rows.push(row);
            }
        }
    }

    // The one path of every request: schema (above), target and policy, archived ids; then
    // the in-memory apply a worker would do.
    let checked = enqueue::check_targets(loaded, ctx)?;
    let checked = enqueue::refuse_archived(queue, checked)?;
    let trial = ctx.store()?;
    let mut accepted: Vec<(usize, ChangeRequest)> = Vec::new();
    for ((_, result), &row) in checked.into_iter().zip(&at_row) {
        match result {
            Err(problems) => rows[row].problems = problems,
            Ok(req) => match ingest::trial_apply(trial.repo(), &tip, &req, &policy.limits)? {
                Some(p) => rows[row].problems = vec![p],
                None => {
                    rows[row].id = Some(req.id());
                    accepted.push((row, req));
                }
            },
        }
    }
    drop(trial);

    if args.dry_run {
        for (row, _) in &accepted {
            rows[*row].result = "valid";
        }
    } else if !accepted.is_empty() {
        let reqs: Vec<ChangeRequest> = accepted.iter().map(|(_, r)| r.clone()).collect();
        let done = enqueue::store(queue, &reqs)?;
        for ((row, _), e) in accepted.iter().zip(done) {
            let row = &mut rows[*row];
            row.result = if e.created {
                "queued"
            } else {
                "already_queued"
            };
            row.id = Some(e.id.clone());
            if e.created && !ctx.json() {
                enqueue::print_notes(&e);
            }
            row.record = Some(e.record);
        }
    }

    let refused: Vec<(String, Problem)> = rows
        .iter()
        .filter(|r| r.result == "refused")
        .flat_map(|r| r.problems.iter().map(|p| (r.refname.clone(), p.clone())))
        .collect();
    if ctx.json() {
        let text = serde_json::to_string_pretty(&rows).expect("rows serialise");
        println!("{}", hyperion::request::secrets::redact(&text));
    } else {
        print_rows(&rows);
    }
    if rows.is_empty() {
        eprintln!(
            "no branch matches {}",
            patterns
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if refused.is_empty() {
        return Ok(());
    }
    let n = rows.iter().filter(|r| r.result == "refused").count();
    let mut err = CommandError::rejected(refused);
    err.message = format!(
        "{} problem(s) in {n} branch(es); nothing was stored for them",
        err.problems.len()
    );
    if let Some(last) = err.hints.last_mut() {
        *last = "fix the branch (rebase it onto the target, drop what the policy refuses) and push it again; `git hyperion ingest` then takes its new tip".into();
    }
    err.json_printed = ctx.json();
    Err(err)
}

fn print_rows(rows: &[Row]) {
    let mut out = String::new();
    for r in rows {
        let id = r.id.as_deref().unwrap_or("-");
        let line = match r.result {
            "queued" => format!("queued   {id}  {}", r.refname),
            "already_queued" => format!(
                "already  {id}  {} (already queued: {})",
                r.refname,
                r.record
                    .as_ref()
                    .map_or_else(String::new, |x| x.status.to_string())
            ),
            "valid" => format!("valid    {id}  {} (dry run, nothing stored)", r.refname),
            "skipped" => format!(
                "skipped  {:<16}  {} {}",
                "-",
                r.refname,
                r.problems
                    .first()
                    .map_or_else(String::new, |p| p.to_string())
            ),
            _ => format!("refused  {:<16}  {}", "-", r.refname),
        };
        out.push_str(&line);
        out.push('\n');
    }
    print!("{}", hyperion::request::secrets::redact(&out));
}
