use std::io::Write;
use std::path::{Path, PathBuf};

use hyperion::Code;
use hyperion::obs::report::Report;

use super::error::{CmdResult, CommandError};
use super::{Ctx, parse_since, print_json};

/// Write the queue's report over a window as one self-contained HTML page, or print its
/// numbers as JSON.
///
/// The page (no script, nothing loaded from the network: open it anywhere, mail it, archive
/// it) shows landed and dead letters per hour (per day over windows longer than 14 days), the
/// enqueue-to-landed latency (p50, p90, p99) of the requests applied, the top failure codes,
/// success rate and cost per agent, and the slowest checks. Cost is what the records carry:
/// attempts, the check time of landed requests (from the notes on their commits), and the
/// tokens and dollars of agent runs (the transcripts of requests made by `git hyperion run`).
/// Every chart element carries its numbers in `data-*` attributes.
///
/// The window holds the requests last updated at or after --since (as `list --since`).
/// With --format json the same numbers are printed instead of writing a page.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Write the page to FILE (replaced atomically: a reader never sees half a page).
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// The window's start: an age (7d, 12h), an RFC 3339 time or a date.
    #[arg(long, value_name = "T", default_value = "7d")]
    since: String,
}

pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let since = parse_since(&args.since)?;
    let html = match (&args.html, ctx.json()) {
        (_, true) => None,
        (Some(p), false) => Some(p),
        (None, false) => {
            return Err(CommandError::usage("where should the report go?")
                .hint("give --html FILE, or --format json for the numbers"));
        }
    };
    let queue = ctx.queue()?;
    let report = Report::read(queue, since, jiff::Timestamp::now(), |r| {
        hyperion::agents::run::spent(queue, &r.id)
    })?;
    match html {
        None => print_json(&report),
        Some(path) => {
            write_atomically(path, report.to_html().as_bytes()).map_err(|e| {
                CommandError::env(Code::EnvIo, format!("cannot write {}: {e}", path.display()))
                    .hint("check that the directory exists and is writable")
            })?;
            eprintln!(
                "report of {} request(s) written to {}",
                report.requests,
                path.display()
            );
        }
    }
    Ok(())
}

/// `data` into `path` through a temporary file beside it and a rename.
fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".hyperion-report")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(data)?;
    // A page to share: readable by others, as a file the shell wrote would be (the temporary
    // file starts as 0600).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map(|_| ()).map_err(|e| e.error)
}
