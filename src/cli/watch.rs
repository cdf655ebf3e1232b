use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyperion::Code;
use hyperion::Problem;
use hyperion::queue::spool::{Content, OpenError, Spool};

use super::enqueue;
use super::error::{CmdResult, CommandError};
use super::{Ctx, parse_duration_arg};

/// Enqueue request files dropped into a spool directory.
///
/// Every complete `*.json` file in DIR (a request in format v1, as `enqueue FILE` takes it) is
/// validated and enqueued exactly as `enqueue` would, one file at a time, then moved to
/// DIR/done/, or, when refused, to DIR/rejected/ with NAME.error.json beside it (the JSON
/// error document `enqueue --format json` prints). A file is complete when it is not hidden,
/// has not changed for --settle and (on Linux) no process has it open; the safe way to drop one
/// is to write `.NAME.json` or `NAME.json.tmp` and rename it to NAME.json. A request stored
/// before (the same file twice) is reported as already queued and moved to done/.
///
/// Runs until SIGINT/SIGTERM (it stops between files, exit 0), looking again every --interval
/// and as soon as the directory changes where it can be watched. With --once it processes what
/// is complete now and exits: 1 if any file was rejected, else 0.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The spool directory (must exist; done/, rejected/ and .work/ are made in it).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Process the files complete now, then exit.
    #[arg(long)]
    once: bool,
    /// How often to look for new files.
    #[arg(long, value_name = "DUR", default_value = "1s", value_parser = parse_duration_arg)]
    interval: Duration,
    /// How long a file must be unchanged before it is taken.
    #[arg(long, value_name = "DUR", default_value = "1s", value_parser = parse_duration_arg)]
    settle: Duration,
}

/// Largest request file taken (larger ones are rejected unread).
const MAX_FILE: u64 = 64 << 20;

#[derive(Default)]
struct Counts {
    queued: usize,
    already: usize,
    rejected: usize,
}

pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    enqueue::read_default_policy(ctx);
    let queue = ctx.queue()?;
    let spool = Spool::open(&args.dir).map_err(|e| match e {
        OpenError::Busy => CommandError::usage(format!(
            "another `git hyperion watch` is watching {}",
            args.dir.display()
        ))
        .hint("one watcher per spool directory; stop the other one first"),
        OpenError::Io(e) => {
            CommandError::usage(format!("cannot watch {}: {e}", args.dir.display()))
                .hint("give an existing directory that this user can write")
        }
    })?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| CommandError::env(Code::EnvIo, format!("cannot handle signals: {e}")))?;
    }
    let io = |what: &str, e: std::io::Error| {
        CommandError::env(
            Code::EnvIo,
            format!("{what} in {}: {e}", args.dir.display()),
        )
    };
    let mut counts = Counts::default();
    // Files claimed by a run that stopped before it moved them: again, first.
    for claimed in spool.leftovers().map_err(|e| io("cannot list", e))? {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        process(&spool, &claimed, ctx, &mut counts, args.once)?;
    }
    while !stop.load(Ordering::SeqCst) {
        let ready = match spool.ready(args.settle) {
            Ok(r) => r,
            Err(e) if args.once => return Err(io("cannot list", e)),
            Err(e) => {
                tracing::warn!("cannot list {}: {e}", args.dir.display());
                Vec::new()
            }
        };
        for name in ready {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let claimed = match spool.claim(&name) {
                Ok(Some(c)) => c,
                Ok(None) => continue,
                Err(e) if args.once => return Err(io(&format!("cannot take {name}"), e)),
                Err(e) => {
                    tracing::warn!("cannot take {name}: {e}");
                    continue;
                }
            };
            process(&spool, &claimed, ctx, &mut counts, args.once)?;
        }
        if args.once {
            break;
        }
        // Idle: the index goes back to whoever wants it (see `Queue::close_index`).
        queue.close_index();
        spool.wait(args.interval, &stop);
    }
    if !ctx.json() {
        eprintln!(
            "watch {}: {} queued, {} already queued, {} rejected{}",
            args.dir.display(),
            counts.queued,
            counts.already,
            counts.rejected,
            if stop.load(Ordering::SeqCst) {
                " (stopped)"
            } else {
                ""
            }
        );
    }
    if args.once && counts.rejected > 0 {
        let mut err = CommandError::refused(
            Code::WatchRejected,
            format!(
                "{} file(s) were rejected and moved to {}",
                counts.rejected,
                args.dir.join("rejected").display()
            ),
        )
        .hint("each rejected file has NAME.error.json beside it with every problem");
        // stdout is one object per file: the problems are in them already.
        err.json_printed = true;
        return Err(err);
    }
    Ok(())
}

/// Enqueue one claimed file and move it where it ends. A failure of the environment puts it
/// back into the spool: an error with `once`, else a warning (it is tried again later).
fn process(spool: &Spool, claimed: &Path, ctx: &Ctx, counts: &mut Counts, once: bool) -> CmdResult {
    let name = claimed
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match submit(spool, claimed, &name, ctx) {
        Ok(Submitted::Stored(e)) => {
            let moved = spool.done(claimed).map_err(|err| {
                CommandError::env(Code::EnvIo, format!("cannot move {name}: {err}"))
            })?;
            if e.created {
                counts.queued += 1;
            } else {
                counts.already += 1;
            }
            report(ctx, &name, &moved, Some(&e), &[]);
            if !ctx.json() && e.created {
                enqueue::print_notes(&e);
            }
            Ok(())
        }
        Ok(Submitted::Rejected(problems)) => {
            let err = CommandError::rejected(
                problems.iter().map(|p| (name.clone(), p.clone())).collect(),
            );
            let doc = serde_json::to_string_pretty(&err.document()).expect("a document serialises");
            let doc = hyperion::request::secrets::redact(&doc);
            let moved = spool.reject(claimed, doc.as_bytes()).map_err(|e| {
                CommandError::env(Code::EnvIo, format!("cannot move {name} to rejected/: {e}"))
            })?;
            counts.rejected += 1;
            report(ctx, &name, &moved, None, &problems);
            Ok(())
        }
        Err(err) => {
            let _ = spool.unclaim(claimed);
            if once {
                return Err(err);
            }
            tracing::warn!(
                "{name}: {} [{}]; left in place, tried again later",
                err.message,
                err.code
            );
            Ok(())
        }
    }
}

/// What became of the request in a claimed file.
enum Submitted {
    /// Stored (or found stored already).
    Stored(Box<hyperion::queue::Enqueued>),
    /// Refused, for these problems.
    Rejected(Vec<Problem>),
}

/// The request in a claimed file through the one path every request takes (schema, target,
/// policy, secrets, archived ids), stored when it passed. `Err` is the environment's failure.
fn submit(spool: &Spool, claimed: &Path, name: &str, ctx: &Ctx) -> CmdResult<Submitted> {
    let bytes = match spool
        .read(claimed, MAX_FILE)
        .map_err(|e| CommandError::env(Code::EnvIo, format!("cannot read {name}: {e}")))?
    {
        Content::Bytes(b) => b,
        Content::Refused(why) => {
            return Ok(Submitted::Rejected(vec![Problem::new(
                Code::WatchUnreadable,
                format!("{name} was not read: {why}"),
                "drop regular files of at most 64 MiB, each one request in format v1",
            )]));
        }
    };
    let (req, problems) = hyperion::request::validate::check_request(&bytes);
    let loaded = (name.to_owned(), req, problems);
    let queue = ctx.queue()?;
    if let Some(e) = enqueue::stored_duplicate(queue, &loaded)? {
        return Ok(Submitted::Stored(Box::new(e)));
    }
    let checked = enqueue::check_targets(vec![loaded], ctx)?;
    let checked = enqueue::refuse_archived(queue, checked)?;
    let (_, result) = checked.into_iter().next().expect("one result per source");
    match result {
        Err(problems) => Ok(Submitted::Rejected(problems)),
        Ok(req) => {
            let mut done = enqueue::store(queue, &[req])?;
            Ok(Submitted::Stored(Box::new(done.remove(0))))
        }
    }
}

fn report(
    ctx: &Ctx,
    name: &str,
    moved: &Path,
    stored: Option<&hyperion::queue::Enqueued>,
    problems: &[Problem],
) {
    let to = moved.display().to_string();
    if ctx.json() {
        let result = match stored {
            Some(e) if e.created => "queued",
            Some(_) => "already_queued",
            None => "rejected",
        };
        let mut v = serde_json::json!({"file": name, "result": result, "moved_to": to});
        if let Some(e) = stored {
            v["id"] = e.id.clone().into();
            v["status"] = e.record.status.to_string().into();
        }
        if !problems.is_empty() {
            v["problems"] = serde_json::to_value(problems).expect("problems serialise");
        }
        println!("{}", hyperion::request::secrets::redact(&v.to_string()));
        return;
    }
    let line = match stored {
        Some(e) if e.created => format!("queued   {}  {name} -> {to}\n", e.id),
        Some(e) => format!(
            "already  {}  {name} -> {to} (already queued: {})\n",
            e.id, e.record.status
        ),
        None => format!("rejected {:<16}  {name} -> {to}\n", "-"),
    };
    print!("{}", hyperion::request::secrets::redact(&line));
    if !problems.is_empty() {
        let mut text = String::new();
        for p in problems {
            text.push_str(&format!("  {name}: {p}\n"));
        }
        eprint!("{}", hyperion::request::secrets::redact(&text));
    }
}
