use super::error::{CmdResult, CommandError};
use super::{Ctx, print_json};
use hyperion::tui::shown_line;

use hyperion::Code;

/// Check every request chain and the index.
///
/// Reports chains git hyperion would not have written (the checks of `verify-push`, with this
/// repository's settings and branches: unreadable commits, illegal transitions, records that
/// do not follow from their events, unbounded leases, landings not on the target), expired
/// leases, how far the derived index had drifted from the refs, and landings onto checked-out
/// branches: one in progress, one interrupted half-way (with what to do), an old index.lock.
/// With --reindex, rebuilds the index from the refs (the index is derived: deleting it loses
/// nothing). Exits 1 when a chain is broken or a landing was interrupted.
///
/// In remote mode, also reports each request whose chain diverged from the remote's (as of
/// the last fetch; --fetch fetches first) and how to resolve it (exit 1).
///
/// Progress on stderr (see --progress): chains whose objects were checked, index entries
/// checked (every one with --reindex), chains checked, each of the total.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Rebuild the index from the refs.
    #[arg(long)]
    reindex: bool,
    /// Set aside every request whose chain misses objects (under refs/hyperion/lost/ID) and
    /// drop it from the index.
    #[arg(long)]
    repair: bool,
    /// Fetch the queue from the remote first (remote mode).
    #[arg(long)]
    fetch: bool,
}

pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let remote = super::remote::fetch_first(ctx, args.fetch)?;
    let mut progress = ctx.progress();
    let mut d = hyperion::gate::verify::doctor_shared(
        ctx.queue()?,
        args.reindex,
        args.repair,
        remote.as_ref(),
        &mut |scan| progress.update(|_| format!("doctor: {}", super::progress::scanned(&scan))),
    )?;
    drop(progress);
    if let Some(r) = &remote {
        d.findings
            .extend(hyperion::queue::remote::findings(ctx.queue()?.store(), r)?);
    }
    if ctx.json() {
        print_json(&d);
    } else {
        println!("{} request(s) checked", d.requests);
        if d.index_drift > 0 {
            println!(
                "index: {} entr(ies) were out of date and have been brought up to date",
                d.index_drift
            );
        }
        if d.reindexed {
            println!("index: rebuilt from refs");
        }
        for f in &d.findings {
            println!(
                "{}  [{}] {}",
                shown_line(&f.id),
                f.code,
                shown_line(&f.message)
            );
        }
        if d.findings.is_empty() {
            println!("no problems found");
        }
    }
    let broken = d
        .findings
        .iter()
        .filter(|f| {
            !matches!(
                f.code,
                Code::LeaseExpired
                    | Code::StoreStaleLock
                    | Code::StoreStaleKeep
                    | Code::LandInProgress
                    | Code::LandIndexLock
            ) && !d.set_aside.contains(&f.id)
        })
        .count();
    if broken > 0 {
        let mut e = CommandError::refused(
            Code::DoctorProblems,
            format!("{broken} problem(s) in request chains or landings"),
        )
        .hint("see the list above; `git log refs/hyperion/requests/ID` shows a chain");
        // The report above is the JSON document; print no second one.
        e.json_printed = ctx.json();
        return Err(e);
    }
    Ok(())
}
