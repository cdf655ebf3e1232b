use std::io::Read;

use super::error::{CmdResult, CommandError};
use super::{Ctx, print_json};

/// Check pushed request chains; for a server's `pre-receive` hook (see hooks/pre-receive).
///
/// Reads `OLD NEW REFNAME` lines on stdin, as `pre-receive` gets them. Under refs/hyperion/
/// only refs/hyperion/requests/<id> is taken, and each pushed chain is held to what `doctor`
/// checks (docs/storage.md, "What a chain must be") with this server's settings and
/// branches: the root holds a valid request stored under its own id, every commit is a legal
/// transition whose record follows from its event and the enqueue record, leases are
/// bounded, landings are on the target with their trailer, the payload never changes,
/// history is only extended (a heartbeat may replace the tip), and only finished requests are
/// deleted. Notes in refs/notes/hyperion must match their commit's trailer. Other refs pass.
/// Exits 1 if any update is refused.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args, ctx: &Ctx) -> CmdResult {
    let queue = ctx.queue()?;
    let mut lines = String::new();
    std::io::stdin()
        .read_to_string(&mut lines)
        .map_err(|e| CommandError::usage(format!("could not read stdin: {e}")))?;
    let refused = hyperion::gate::verify::check_push(queue, &lines)?;
    if ctx.json() {
        print_json(&refused);
    }
    if refused.is_empty() {
        return Ok(());
    }
    let mut problems = Vec::new();
    let mut names: Vec<&String> = refused.keys().collect();
    names.sort();
    for name in names {
        problems.extend(refused[name].iter().map(|p| (name.clone(), p.clone())));
    }
    let mut e = CommandError::rejected(problems);
    e.message = format!("{} pushed ref(s) refused", refused.len());
    e.hints.retain(|h| !h.starts_with("nothing was stored"));
    e.hints
        .push("the push was refused whole; nothing was changed on the server".into());
    e.json_printed = ctx.json();
    Err(e)
}
