use std::path::{Path, PathBuf};

use hyperion::Code;
use hyperion::queue::store::Store;
use hyperion::queue::{Filter, Queue};

use super::error::{CmdResult, CommandError};
use super::{Ctx, print_json};

/// Run hyperion end to end on a scratch repository with the built-in samples.
///
/// Creates a small repository (samples/base), enqueues the sample requests (good ones, one
/// that will conflict, one that fails validation), runs a worker that lands them (or parks
/// them as dead letters), rolls the last one back, and prints an outcome table and where to
/// look. The repository is kept so you can explore it.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where to create the scratch repository (default: a new directory under the system
    /// temp dir). Must not exist yet.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

const BASE: &[(&str, &str)] = &[
    (
        "src/pager.rs",
        include_str!("../../samples/base/src/pager.rs"),
    ),
    ("README.md", include_str!("../../samples/base/README.md")),
];

const GOOD: &[(&str, &str)] = &[
    (
        "01-fix-pager.json",
        include_str!("../../samples/01-fix-pager.json"),
    ),
    (
        "02-usage-doc.json",
        include_str!("../../samples/02-usage-doc.json"),
    ),
    (
        "03-conflicting-pager.json",
        include_str!("../../samples/03-conflicting-pager.json"),
    ),
    (
        "04-readme.json",
        include_str!("../../samples/04-readme.json"),
    ),
];

const BAD: (&str, &str) = (
    "invalid/unknown-field.json",
    include_str!("../../samples/invalid/unknown-field.json"),
);

fn git(dir: &Path, args: &[&str]) -> CmdResult<String> {
    let out = hyperion::git::command::in_worktree(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "hyperion demo")
        .env("GIT_AUTHOR_EMAIL", "demo@hyperion.invalid")
        .env("GIT_COMMITTER_NAME", "hyperion demo")
        .env("GIT_COMMITTER_EMAIL", "demo@hyperion.invalid")
        .output()
        .map_err(|e| {
            CommandError::env(Code::EnvIo, format!("could not run git: {e}"))
                .hint("install git and put it on PATH")
        })?;
    if !out.status.success() {
        return Err(CommandError::env(
            Code::EnvGit,
            format!(
                "git {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let dir = match args.dir {
        Some(d) => {
            if d.exists() {
                return Err(
                    CommandError::usage(format!("{} already exists", d.display()))
                        .hint("give --dir a path that does not exist yet"),
                );
            }
            d
        }
        None => tempfile::Builder::new()
            .prefix("hyperion-demo-")
            .tempdir()
            .map_err(|e| {
                CommandError::env(Code::EnvIo, format!("could not create a temp dir: {e}"))
            })?
            .keep(),
    };
    std::fs::create_dir_all(&dir).map_err(|e| {
        CommandError::env(
            Code::EnvIo,
            format!("could not create {}: {e}", dir.display()),
        )
    })?;
    for (path, text) in BASE {
        let p = dir.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| CommandError::env(Code::EnvIo, e.to_string()))?;
        }
        std::fs::write(&p, text).map_err(|e| CommandError::env(Code::EnvIo, e.to_string()))?;
    }
    git(&dir, &["init", "-q", "-b", "main"])?;
    git(&dir, &["add", "-A"])?;
    git(&dir, &["commit", "-q", "-m", "pager: first version"])?;
    git(&dir, &["config", "hyperion.target", "main"])?;

    let queue = Queue::open(Store::discover(&dir)?)?;
    let mut rows: Vec<(String, String, String)> = Vec::new();
    let mut log = Vec::new();

    let mut reqs = Vec::new();
    for (name, text) in GOOD {
        let req = hyperion::request::validate::parse_request(text.as_bytes()).map_err(|p| {
            CommandError::usage(format!("built-in sample {name} is invalid: {}", p[0]))
        })?;
        reqs.push((name, req));
    }
    let all: Vec<_> = reqs.iter().map(|(_, r)| r.clone()).collect();
    let done = queue.enqueue(&all, "demo")?;
    for ((name, _), e) in reqs.iter().zip(&done) {
        log.push(format!("{:<10} {name:<28} -> {}", "enqueue", e.id));
    }
    let again = queue.enqueue(&all[..1], "demo")?;
    log.push(format!(
        "{:<10} {:<28} -> {} again: duplicate, nothing stored",
        "enqueue", GOOD[0].0, again[0].id
    ));
    match hyperion::request::validate::parse_request(BAD.1.as_bytes()) {
        Ok(_) => return Err(CommandError::usage("the invalid sample was accepted")),
        Err(problems) => {
            log.push(format!(
                "{:<10} {:<28} -> refused: {}",
                "enqueue", BAD.0, problems[0]
            ));
            rows.push((BAD.0.to_owned(), "refused".into(), problems[0].code.into()));
        }
    }
    // A worker drains the queue: validation again, apply in memory, land, note.
    let worker = hyperion::gate::worker::Worker::new(&queue, "demo-worker".into(), None);
    let reports = worker.run(
        &hyperion::gate::worker::Options {
            batch: 1,
            mode: hyperion::gate::worker::Mode::Drain,
            poll: std::time::Duration::from_millis(50),
        },
        &hyperion::gate::worker::Stop::default(),
        &mut |_| {},
        &mut |_| {},
    )?;
    for r in &reports {
        let what = match (&r.commit, &r.code) {
            (Some(c), _) => format!("landed as {}", &c[..12]),
            (None, Some(code)) => format!("{:?} [{code}]", r.result).to_lowercase(),
            _ => format!("{:?}", r.result).to_lowercase(),
        };
        log.push(format!("{:<10} {:<28} -> {what}", "worker", r.id));
    }
    // Roll the last landing back: a revert commit, the request marked rolled_back.
    if let Some(id) = hyperion::gate::rollback::last(&queue, &queue.settings().target)? {
        let (_, _, record) = queue.resolve(&id)?;
        use hyperion::gate::rollback::{self, Error as Rollback};
        let plan = match rollback::plan(&queue, &record) {
            Ok(plan) => Some(plan),
            Err(Rollback::Refused(_)) => None,
            Err(Rollback::Failed(e)) => return Err(e.into()),
        };
        if let Some(plan) = plan {
            match rollback::execute(&queue, &plan, "demo: showing rollback", "demo") {
                Ok((revert, _)) => log.push(format!(
                    "{:<10} {:<28} -> reverted by {}",
                    "rollback",
                    id,
                    &revert.to_string()[..12]
                )),
                Err(Rollback::Refused(r)) => log.push(format!(
                    "{:<10} {id:<28} -> refused: {}",
                    "rollback",
                    r.message()
                )),
                Err(Rollback::Failed(e)) => return Err(e.into()),
            }
        }
    }
    for r in queue.list(&Filter::default())? {
        let name = reqs
            .iter()
            .zip(&done)
            .find(|(_, e)| e.id == r.id)
            .map(|((n, _), _)| n.to_string())
            .unwrap_or_default();
        let outcome = match r.dead_class {
            Some(c) => format!("{}:{c}", r.status),
            None => r.status.to_string(),
        };
        rows.push((name, outcome, r.id.clone()));
    }
    rows.sort();

    if ctx.json() {
        let rows: Vec<_> = rows
            .iter()
            .map(|(s, st, id)| serde_json::json!({"sample": s, "outcome": st, "id_or_code": id}))
            .collect();
        print_json(&serde_json::json!({"repository": dir, "steps": log, "outcomes": rows}));
        return Ok(());
    }
    println!("scratch repository: {}\n", dir.display());
    for l in &log {
        println!("  {l}");
    }
    println!("\n  {:<30} {:<12} ID / ERROR CODE", "SAMPLE", "OUTCOME");
    for (s, st, id) in &rows {
        println!("  {s:<30} {st:<12} {id}");
    }
    let first = done.first().map(|e| e.id.as_str()).unwrap_or("ID");
    println!("\nwhere to look:");
    println!("  cd {}", dir.display());
    println!("  git hyperion list                           # the queue");
    println!("  git hyperion show {first}            # one request and its history");
    println!("  git log refs/hyperion/requests/{first}   # the same history, as commits");
    println!("  git show refs/hyperion/requests/{first}:request.json");
    println!("  git log --notes=hyperion main               # landed commits and their notes");
    println!("  git hyperion dead                           # dead letters and why");
    Ok(())
}
