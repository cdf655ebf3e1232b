use super::error::CmdResult;
use super::{Ctx, parse_duration_arg, print_json};

/// Archive and remove old finished requests (retention).
///
/// Applied, dead and rolled-back requests not updated for hyperion.retention (default 30d)
/// are written to a git bundle under $GIT_DIR/hyperion/archive/, which is verified before
/// their refs are removed. Restore with:
/// `git fetch BUNDLE 'refs/hyperion/requests/*:refs/hyperion/requests/*'`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Override the retention age.
    #[arg(long, value_name = "DUR", value_parser = parse_duration_arg)]
    older_than: Option<std::time::Duration>,
    /// Show what would be archived; change nothing.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let c = ctx.queue()?.gc(args.older_than, args.dry_run)?;
    if ctx.json() {
        print_json(&c);
        return Ok(());
    }
    for id in &c.archived {
        println!("{id}");
    }
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
