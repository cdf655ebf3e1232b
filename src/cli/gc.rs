use hyperion::git::spare;

use super::error::CmdResult;
use super::{Ctx, parse_duration_arg, print_json};

/// Archive and remove old finished requests (retention).
///
/// Applied, dead and rolled-back requests not updated for hyperion.retention (default 30d)
/// are written to a git bundle under $GIT_DIR/hyperion/archive/, which is verified before
/// their refs are removed. Restore with:
/// `git fetch BUNDLE 'refs/hyperion/requests/*:refs/hyperion/requests/*'`.
///
/// Progress on stderr (see --progress): the records read, the requests archived, the refs
/// removed.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Override the retention age.
    #[arg(long, value_name = "DUR", value_parser = parse_duration_arg)]
    older_than: Option<std::time::Duration>,
    /// Show what would be archived; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Only delete the spare files beyond the 4,096 hyperion keeps, and archive nothing.
    ///
    /// gc keeps the file of every ref it removes as a spare file
    /// ($GIT_DIR/hyperion/spares/), so that removing many refs frees no disk block while
    /// you wait (on a file system mounted with `discard`, freeing blocks one file at a time
    /// is slow), and then starts `gc --trim-spares` in the background to give the space back
    /// (with hyperion.autoDetach=false, gc does it before it exits).
    #[arg(long, conflicts_with_all = ["older_than", "dry_run"])]
    trim_spares: bool,
}

/// What `gc --trim-spares` did.
#[derive(serde::Serialize)]
struct Trimmed {
    /// Spare files deleted.
    trimmed: usize,
}

pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let queue = ctx.queue()?;
    let common = queue.store().repo().common_dir().to_owned();
    if args.trim_spares {
        let trimmed = spare::trim(&common, spare::TRIM_TO);
        if ctx.json() {
            print_json(&Trimmed { trimmed });
        } else {
            eprintln!("deleted {trimmed} spare file(s)");
        }
        return Ok(());
    }
    let mut progress = ctx.progress();
    let c = queue.gc(args.older_than, args.dry_run, &mut |scan| {
        progress.update(|_| format!("gc: {}", super::progress::scanned(&scan)))
    })?;
    drop(progress);
    if c.archive.is_some() && spare::more_than(&common, spare::TRIM_TO) {
        trim_spares(ctx, &common, queue.settings().auto_detach);
    }
    if ctx.json() {
        print_json(&c);
        return Ok(());
    }
    let mut out = super::Lines::new();
    for id in &c.archived {
        out.line(format_args!("{id}"));
    }
    drop(out);
    match (&c.archive, c.dry_run) {
        (_, true) => eprintln!("would archive {} request(s) (dry run)", c.archived.len()),
        (Some(b), false) => {
            eprintln!("archived {} request(s) into {b}", c.archived.len());
            eprintln!(
                "restore with: git fetch {b} 'refs/hyperion/requests/*:refs/hyperion/requests/*'"
            );
        }
        (None, false) => eprintln!("nothing to archive"),
    }
    Ok(())
}

/// Give back the disk space of the spare files gc kept beyond what a queue needs: by a
/// `gc --trim-spares` of this executable that goes on after gc exits (in a process group
/// of its own, its messages in `hyperion/trim.log`), as git's auto gc does; here and now
/// when `detach` is off or the executable cannot be started.
fn trim_spares(ctx: &Ctx, common: &std::path::Path, detach: bool) {
    if detach && let Ok(exe) = std::env::current_exe() {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(common.join("hyperion/trim.log"))
            .map_or_else(|_| std::process::Stdio::null(), std::process::Stdio::from);
        let started = std::process::Command::new(exe)
            .arg("-C")
            .arg(&ctx.dir)
            .args(["gc", "--trim-spares"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn();
        if started.is_ok() {
            return;
        }
    }
    spare::trim(common, spare::TRIM_TO);
}
