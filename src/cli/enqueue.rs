use std::io::Read;
use std::path::{Path, PathBuf};

use hyperion::Code;
use hyperion::Problem;
use hyperion::queue::{Enqueued, Queue};
use hyperion::request::model::ChangeRequest;

use super::error::{CmdResult, CommandError};
use super::{Ctx, JsonArray, print_json};

/// Submit change requests to the queue.
///
/// Each FILE is a request in format v1 (schemas/change-request.schema.json); a DIR submits
/// every `*.json` in it in name order; `-` reads one request from stdin. Every request is
/// validated first and if any is refused, nothing is stored. Prints the id of each request,
/// one per line. Submitting the same request again stores nothing and prints the same id.
///
/// With --patch, wraps raw `git diff` or `git format-patch` output into a request, one change
/// per file, with operation and hash filled in.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Request files, directories of them, or `-` for stdin.
    #[arg(
        value_name = "FILE|DIR|-",
        required_unless_present = "patch",
        conflicts_with = "patch"
    )]
    sources: Vec<PathBuf>,
    /// A diff to wrap into a request (`-` for stdin).
    #[arg(long, value_name = "FILE", requires_all = ["task", "agent"])]
    patch: Option<PathBuf>,
    /// Task id for --patch.
    #[arg(long, value_name = "T", requires = "patch")]
    task: Option<String>,
    /// Agent name for --patch.
    #[arg(long, value_name = "A", requires = "patch")]
    agent: Option<String>,
    /// Title for --patch (default: the mail subject, if any).
    #[arg(long, requires = "patch")]
    title: Option<String>,
    /// Check to run for --patch (repeatable).
    #[arg(long = "check", value_name = "NAME", requires = "patch")]
    checks: Vec<String>,
    /// Priority 0..9 for --patch (9 most urgent).
    #[arg(long, requires = "patch", value_parser = clap::value_parser!(u8).range(0..=9))]
    priority: Option<u8>,
    /// For --patch: a request this one builds on (repeatable), by id (or unique prefix) or
    /// task id (the newest request of that task). It lands after them, and is validated on
    /// top of them.
    #[arg(long = "depends-on", value_name = "ID|TASK", requires = "patch")]
    depends_on: Vec<String>,
    /// Store a request even if gc archived its id: a new chain under the id (the archived
    /// one can then not be restored under it).
    #[arg(long)]
    force: bool,
    /// Validate and report, but store nothing.
    #[arg(long)]
    dry_run: bool,
}

/// A source name, the request read from it (whenever it passed the schema, so that it can
/// still be checked against its target), and every problem found in it so far.
pub type Loaded = (String, Option<ChangeRequest>, Vec<Problem>);

/// Read the requests named by `sources`: (source name, parsed request or its problems).
pub fn load_sources(sources: &[PathBuf]) -> CmdResult<Vec<Loaded>> {
    let mut out = Vec::new();
    for src in sources {
        if src.as_os_str() == "-" {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| CommandError::usage(format!("could not read stdin: {e}")))?;
            let (req, problems) = hyperion::request::validate::check_request(&buf);
            out.push(("<stdin>".to_owned(), req, problems));
        } else if src.is_dir() {
            for f in dir_files(src)? {
                out.push(load_file(&f)?);
            }
        } else {
            out.push(load_file(src)?);
        }
    }
    Ok(out)
}

/// The `*.json` files of directory `src`, in name order.
fn dir_files(src: &Path) -> CmdResult<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(src)
        .map_err(|e| read_error(src, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(CommandError::usage(format!(
            "{} holds no *.json request",
            src.display()
        )));
    }
    Ok(files)
}

/// The request files named by `sources` when they are more than a chunk
/// ([`hyperion::queue::store::chunk`]) and none is stdin: what [`run_in_chunks`] takes.
fn many_files(sources: &[PathBuf]) -> CmdResult<Option<Vec<PathBuf>>> {
    if sources.iter().any(|s| s.as_os_str() == "-") {
        return Ok(None);
    }
    let mut files = Vec::new();
    for src in sources {
        if src.is_dir() {
            files.extend(dir_files(src)?);
        } else {
            files.push(src.clone());
        }
    }
    Ok((files.len() > hyperion::queue::store::chunk()).then_some(files))
}

fn load_file(path: &Path) -> CmdResult<Loaded> {
    let bytes = std::fs::read(path).map_err(|e| read_error(path, e))?;
    let (req, problems) = hyperion::request::validate::check_request(&bytes);
    Ok((path.display().to_string(), req, problems))
}

fn read_error(path: &Path, e: std::io::Error) -> CommandError {
    CommandError::usage(format!("could not read {}: {e}", path.display()))
        .hint("pass a request file, a directory of *.json requests, or - for stdin")
}

/// Read the default target's policy before any request, so that its secret rules are known
/// when a request that fails the schema (and so is never checked against its target) is
/// scanned, and when problems are redacted. A failure here shows in the checks that follow.
pub fn read_default_policy(ctx: &Ctx) {
    if let Ok(queue) = ctx.queue() {
        let repo = queue.store().repo();
        if let Ok(tip) = queue.settings().target.resolve(repo) {
            let _ = tip.policy(repo);
        }
    }
}

pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    read_default_policy(ctx);
    // A remote named wrong is refused before anything is stored.
    let remote = if args.dry_run { None } else { ctx.remote()? };
    if let Some(r) = remote {
        let mut ids = Vec::new();
        run_local(&args, ctx, &mut ids)?;
        return publish(ctx, &r, &ids);
    }
    run_local(&args, ctx, &mut Vec::new())
}

/// Publish the requests just stored (remote mode): one create-only push. When it fails, the
/// error says that they are stored locally and how to publish them later.
fn publish(ctx: &Ctx, remote: &hyperion::queue::remote::Remote, ids: &[String]) -> CmdResult {
    match hyperion::queue::remote::publish_new(ctx.queue()?.store(), remote, ids, &actor()) {
        Ok(p) => {
            if !ctx.json() {
                eprintln!(
                    "note: published to {}: {} new, {} already there",
                    remote.name(),
                    p.pushed.len(),
                    p.up_to_date.len()
                );
            }
            Ok(())
        }
        Err(e) => {
            let code = e.code();
            let mut err = CommandError::from(e);
            err.hints.insert(
                0,
                format!(
                    "the request(s) are stored in this clone's queue (ids above), not published to {}; `git hyperion push` publishes them{}",
                    remote.name(),
                    if code == Code::RemoteUnreachable {
                        " once the remote can be reached"
                    } else {
                        " after the conflict is resolved"
                    }
                ),
            );
            err.lists = vec![("not_published", ids.to_vec())].into();
            Err(err)
        }
    }
}

/// Validate and store in this clone's queue; the ids stored (or found stored) go to `ids`.
fn run_local(args: &Args, ctx: &Ctx, ids: &mut Vec<String>) -> CmdResult {
    if args.patch.is_none()
        && !args.dry_run
        && let Some(files) = many_files(&args.sources)?
    {
        return run_in_chunks(args, ctx, &files, ids);
    }
    let loaded = match &args.patch {
        Some(p) => vec![wrap(args, p)?],
        None => load_sources(&args.sources)?,
    };
    let mut checked = check_targets(loaded, ctx)?;
    if !args.dry_run && !args.force {
        checked = refuse_archived(ctx.queue()?, checked)?;
    }
    let mut requests = Vec::with_capacity(checked.len());
    let mut problems = Vec::new();
    for (source, r) in checked {
        match r {
            Ok(req) => requests.push((source, req)),
            Err(ps) => problems.extend(ps.into_iter().map(|p| (source.clone(), p))),
        }
    }
    if !problems.is_empty() {
        return Err(CommandError::rejected(problems));
    }
    if args.dry_run {
        if ctx.json() {
            let rows: Vec<_> = requests
                .iter()
                .map(|(s, r)| serde_json::json!({"source": s, "id": r.id(), "valid": true}))
                .collect();
            print_json(&rows);
        } else {
            for (s, r) in &requests {
                println!("{} {s} (valid; dry run, nothing stored)", r.id());
            }
        }
        return Ok(());
    }
    let queue = ctx.queue()?;
    let reqs: Vec<ChangeRequest> = requests.into_iter().map(|(_, r)| r).collect();
    // Printed as stored, a chunk at a time.
    let mut json = ctx.json().then(JsonArray::default);
    // Checked above, archived ids too: stored without a second pass of the checks.
    let done = queue.enqueue_checked(&reqs, &actor(), |e| {
        ids.push(e.id.clone());
        print_one(json.as_mut(), e)
    });
    finish(json, done)
}

/// Print one stored request: its id (text, with notes on stderr) or an array element (json).
fn print_one(json: Option<&mut JsonArray>, e: Enqueued) {
    match json {
        Some(json) => json.push(&e),
        None => {
            println!("{}", e.id);
            print_notes(&e);
        }
    }
}

/// More requests than a chunk, from files: every one is read and checked first (schema,
/// target, policy, archived ids; as a whole batch, nothing is stored if one is refused),
/// keeping only its id; then they are read again and stored a chunk at a time, each id
/// printed once stored. Memory holds one chunk of requests, however many there are.
fn run_in_chunks(args: &Args, ctx: &Ctx, files: &[PathBuf], stored: &mut Vec<String>) -> CmdResult {
    let queue = ctx.queue()?;
    let chunk = hyperion::queue::store::chunk();
    let mut ids = Vec::with_capacity(files.len());
    let mut problems = Vec::new();
    for part in files.chunks(chunk) {
        let loaded = part
            .iter()
            .map(|f| load_file(f))
            .collect::<CmdResult<Vec<_>>>()?;
        let mut checked = check_targets(loaded, ctx)?;
        if !args.force {
            checked = refuse_archived(queue, checked)?;
        }
        for (source, r) in checked {
            match r {
                Ok(req) => ids.push(req.id()),
                Err(ps) => problems.extend(ps.into_iter().map(|p| (source.clone(), p))),
            }
        }
    }
    if !problems.is_empty() {
        return Err(CommandError::rejected(problems));
    }
    let chunks = files
        .chunks(chunk)
        .map(|part| part.iter().map(|f| reload(f)).collect());
    let mut json = ctx.json().then(JsonArray::default);
    let done = queue.store_checked(chunks, &ids, &actor(), |e| {
        stored.push(e.id.clone());
        print_one(json.as_mut(), e)
    });
    finish(json, done)
}

/// A request file read again after it was checked; refused if it no longer passes.
fn reload(path: &Path) -> hyperion::Result<ChangeRequest> {
    let source = path.display().to_string();
    let bytes = std::fs::read(path)
        .map_err(|e| hyperion::Error::io(format!("could not read {source}"), e))?;
    match hyperion::request::validate::check_request(&bytes) {
        (Some(req), problems) if problems.is_empty() => Ok(req),
        (_, problems) => Err(hyperion::Error::Rejected {
            source_name: format!("{source} (changed while it was enqueued)"),
            problems,
        }),
    }
}

/// End the output: what was stored is printed even when a later chunk failed, then the error
/// (with `--format json`, an array only if something was stored or nothing failed).
fn finish(json: Option<JsonArray>, done: hyperion::Result<usize>) -> CmdResult {
    if let Some(json) = json.filter(|j| done.is_ok() || j.started) {
        json.finish();
    }
    done?;
    Ok(())
}

/// The notes on stderr about a stored request: it awaits approval, or it was stored before.
pub fn print_notes(e: &Enqueued) {
    if e.created && e.record.status == hyperion::request::model::Status::AwaitingApproval {
        eprintln!(
            "note: {} awaits approval ({}); an approver runs `git hyperion approve {}`",
            e.id,
            e.record.approval_tiers.join(", "),
            e.id
        );
    }
    if !e.created {
        eprintln!(
            "note: {} was already enqueued ({}); nothing new was stored",
            e.id, e.record.status
        );
    }
}

/// The archived-id rule: a checked request whose id `gc` archived (and whose ref is gone) is
/// refused with `request.archived` and the command that restores it.
pub fn refuse_archived(queue: &Queue, checked: Vec<Checked>) -> CmdResult<Vec<Checked>> {
    let reqs: Vec<ChangeRequest> = checked
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok().cloned())
        .collect();
    if reqs.is_empty() {
        return Ok(checked);
    }
    let mut archived = queue.archived_problems(&reqs)?.into_iter().peekable();
    let mut i = 0;
    Ok(checked
        .into_iter()
        .map(|(source, r)| match r {
            Ok(req) => {
                let here = i;
                i += 1;
                match archived.next_if(|(at, _)| *at == here) {
                    Some((_, p)) => (source, Err(vec![p])),
                    None => (source, Ok(req)),
                }
            }
            Err(ps) => (source, Err(ps)),
        })
        .collect())
}

/// The stored duplicate of a request that passed the schema, if any: the same id and the
/// same dedupe key. `ingest` and `watch` report such a request as already queued without
/// judging it again by the target as it is now, which it may no longer fit (its change
/// landed there); a different request under the id (a prefix collision) is not one.
pub fn stored_duplicate(queue: &Queue, loaded: &Loaded) -> CmdResult<Option<Enqueued>> {
    let (_, Some(req), problems) = loaded else {
        return Ok(None);
    };
    if !problems.is_empty() {
        return Ok(None);
    }
    let id = req.id();
    let Some(tip) = queue.store().tip(&id)? else {
        return Ok(None);
    };
    let record = queue.store().read_record(&id, tip)?;
    Ok((record.dedupe_key == req.dedupe_key()).then_some(Enqueued {
        id,
        created: false,
        record,
    }))
}

/// Store requests that passed every check here — [`check_targets`] and [`refuse_archived`] —
/// as `enqueue` does (one batch, the actor from `HYPERION_ACTOR`), without the queue checking
/// them a second time; a request stored before comes back with `created: false`.
pub fn store(queue: &Queue, reqs: &[ChangeRequest]) -> CmdResult<Vec<Enqueued>> {
    let mut out = Vec::with_capacity(reqs.len());
    queue.enqueue_checked(reqs, &actor(), |e| out.push(e))?;
    Ok(out)
}

/// Check every request that passed the schema against its target branch and that target's
/// policy too, so that every problem is reported at once. One result per source, in order.
pub fn check_targets(loaded: Vec<Loaded>, ctx: &Ctx) -> CmdResult<Vec<Checked>> {
    let reqs: Vec<&ChangeRequest> = loaded.iter().filter_map(|(_, r, _)| r.as_ref()).collect();
    let mut against = if reqs.is_empty() {
        Vec::new()
    } else {
        ctx.queue()?.check_against_targets(&reqs)?
    }
    .into_iter();
    Ok(loaded
        .into_iter()
        .map(|(source, req, mut problems)| {
            if req.is_some() {
                problems.extend(against.next().expect("one list of problems per request"));
            }
            match req {
                Some(req) if problems.is_empty() => (source, Ok(req)),
                _ => (source, Err(problems)),
            }
        })
        .collect())
}

/// A source and its request, or every problem found in it.
pub type Checked = (String, Result<ChangeRequest, Vec<Problem>>);

fn wrap(args: &Args, path: &Path) -> CmdResult<Loaded> {
    let text = if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| CommandError::usage(format!("could not read stdin: {e}")))?;
        String::from_utf8(bytes).map_err(|_| {
            CommandError::refused(Code::PatchNotUtf8, "the diff on stdin is not UTF-8 text")
                .hint("binary diffs must be produced with `git diff --binary`, which is ASCII")
        })?
    } else {
        let bytes = std::fs::read(path).map_err(|e| read_error(path, e))?;
        String::from_utf8(bytes).map_err(|_| {
            CommandError::refused(
                Code::PatchNotUtf8,
                format!("{} is not UTF-8 text", path.display()),
            )
            .hint("binary diffs must be produced with `git diff --binary`, which is ASCII")
        })?
    };
    let wrap = Wrap {
        task: args.task.as_deref().unwrap_or_default(),
        agent: args.agent.as_deref().unwrap_or_default(),
        title: args.title.as_deref(),
        checks: &args.checks,
        priority: args.priority,
        description: None,
        target: None,
        depends_on: &args.depends_on,
    };
    Ok(wrap_text(&text, path.display().to_string(), &wrap))
}

/// What a wrapped diff becomes a request with (see [`wrap_text`]).
pub struct Wrap<'a> {
    pub task: &'a str,
    pub agent: &'a str,
    /// Default: the mail subject, else `N file(s) from AGENT`.
    pub title: Option<&'a str>,
    pub checks: &'a [String],
    pub priority: Option<u8>,
    pub description: Option<String>,
    pub target: Option<String>,
    /// `depends_on` of the request (see [`hyperion::queue::depends`]).
    pub depends_on: &'a [String],
}

/// Wrap raw diff text into a request (`hyperion::request::patch::wrap`) and put it through the same
/// schema validation as a submitted file: what `enqueue --patch` and `ingest` submit.
pub fn wrap_text(text: &str, source: String, w: &Wrap) -> Loaded {
    let (req, problems) =
        match hyperion::request::patch::wrap(text, w.task, w.agent, w.title, w.checks) {
            Ok(mut req) => {
                if let Some(p) = w.priority {
                    req.priority = p;
                }
                req.description.clone_from(&w.description);
                req.target.clone_from(&w.target);
                req.depends_on = w.depends_on.to_vec();
                // The wrapped request goes through the same validation as a submitted one.
                let value = serde_json::to_value(&req).expect("a ChangeRequest serialises");
                hyperion::request::validate::check_value(&value)
            }
            Err(p) => (None, vec![p.at("--patch")]),
        };
    (source, req, problems)
}

/// Who is acting, for the audit trail: `$HYPERION_ACTOR`, else `cli:$USER`.
pub fn actor() -> String {
    std::env::var("HYPERION_ACTOR")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            format!(
                "cli:{}",
                std::env::var("USER").unwrap_or_else(|_| "unknown".into())
            )
        })
}
