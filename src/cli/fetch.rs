use hyperion::queue::remote;

use super::error::{CmdResult, CommandError};
use super::{Ctx, print_json};

/// Fetch the queue from the remote and take in what other machines did.
///
/// The remote's request refs are fetched into refs/hyperion-remotes/NAME/requests/ (a mirror
/// of the remote); then each local request that is missing or behind moves to the remote's
/// tip, by compare-and-swap, and the local notes (refs/notes/hyperion) move to the remote's
/// when they are behind, so that other machines' landings are annotated here too. Local
/// transitions not yet pushed are kept (`git hyperion push` publishes them); requests whose
/// chains diverged are left alone and listed (`git hyperion doctor` says how to resolve
/// them). A chain or a note hyperion would not have written (forged on a host that runs no
/// `pre-receive` hook) is not taken in: the rest is, then the command exits 1
/// (`remote.forged`) naming the problems. The remote is `--remote NAME`, else
/// `hyperion.remote`.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args, ctx: &Ctx) -> CmdResult {
    let r = ctx.need_remote()?;
    let f = remote::fetch(ctx.queue()?.store(), &r, &super::enqueue::actor())?;
    if ctx.json() {
        print_json(&f);
        return refused(&f, r.name(), true);
    }
    println!(
        "fetched the queue from {}: {} request(s) taken in, {} with local transitions to push, {} diverged{}",
        r.name(),
        f.adopted.len(),
        f.ahead.len(),
        f.diverged.len(),
        if f.notes_taken_in {
            "; notes taken in"
        } else {
            ""
        }
    );
    for id in &f.diverged {
        println!("diverged: {id}");
    }
    refused(&f, r.name(), false)
}

/// `remote.forged` when the fetch left chains out that hyperion would not have written, each
/// with its problems (in the JSON document already printed, when `json_printed`).
fn refused(f: &remote::Fetched, remote: &str, json_printed: bool) -> CmdResult {
    if f.refused.is_empty() && f.notes_refused.is_empty() {
        return Ok(());
    }
    let listed = |problems: &[hyperion::Problem]| {
        let each: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        each.join("; ")
    };
    let mut each: Vec<String> = f
        .refused
        .iter()
        .map(|r| format!("{}: {}", r.id, listed(&r.problems)))
        .collect();
    if !f.notes_refused.is_empty() {
        each.push(format!("refs/notes/hyperion: {}", listed(&f.notes_refused)));
    }
    let mut e = CommandError::refused(
        hyperion::Code::RemoteForged,
        format!(
            "the queue on {remote} holds what hyperion would not have written; not taken in: {}",
            each.join(" | ")
        ),
    )
    .hint("restrict who may push refs/hyperion/* on the remote, and delete or fix these refs there (docs/errors.md, remote.forged)");
    e.json_printed = json_printed;
    Err(e)
}
