//! What the commands of remote mode share: the remote in use, a fetch before a read, and how
//! fresh the local view of the remote's queue is.

use hyperion::queue::remote::{self, Remote};

use super::Ctx;
use super::error::{CmdResult, CommandError};

impl Ctx {
    /// The remote the queue is shared through (`--remote`, else `hyperion.remote`), if any.
    pub fn remote(&self) -> CmdResult<Option<Remote>> {
        Ok(Remote::configured(
            self.queue()?.store(),
            self.remote.as_deref(),
            hyperion::gate::verify::REMOTE_CHECKS,
        )?)
    }

    /// The remote, or `remote.missing` for a command that needs one.
    pub fn need_remote(&self) -> CmdResult<Remote> {
        self.remote()?.ok_or_else(|| {
            CommandError::usage("no remote to share the queue through")
                .hint("name one with --remote NAME, or set it up with `git hyperion init --remote NAME`")
                .code(hyperion::Code::RemoteMissing)
        })
    }
}

/// A lease holder's transition in remote mode (`heartbeat`, `release`, `complete`): fetch
/// first (the lease must be the remote's), make the transition with `f` (a compare-and-swap
/// here), then publish it with a lease on the remote's tip ([`remote::publish`]). When
/// another machine's transition reached the remote first the local one is put back to the
/// remote's and the command fails as a lost lease would (`queue.conflict`). Without a remote,
/// just `f`.
pub fn held_transition<T>(
    ctx: &Ctx,
    id: &str,
    worker: &str,
    f: impl FnOnce(&hyperion::queue::Queue, &str) -> hyperion::Result<T>,
) -> CmdResult<T> {
    let queue = ctx.queue()?;
    let Some(r) = ctx.remote()? else {
        return Ok(f(queue, id)?);
    };
    let actor = format!("worker:{worker}");
    remote::fetch(queue.store(), &r, &actor)?;
    // The full id, as the transition resolved it (a prefix names it on the command line).
    let (full, _, _) = queue.resolve(id)?;
    let out = f(queue, &full)?;
    let lost = remote::publish(queue.store(), &r, std::slice::from_ref(&full), &actor)?;
    if !lost.is_empty() {
        return Err(hyperion::Error::Conflict {
            id: full,
            what: format!(
                "another machine's transition reached {} first (the lease is gone there); the local one was put back to the remote's",
                r.name()
            ),
        }
        .into());
    }
    Ok(out)
}

/// `--fetch` of a read: fetch the queue first (when a remote is configured; without one,
/// `remote.missing`). Diverged requests are named on stderr.
pub fn fetch_first(ctx: &Ctx, fetch: bool) -> CmdResult<Option<Remote>> {
    let remote = if fetch {
        Some(ctx.need_remote()?)
    } else {
        ctx.remote()?
    };
    if fetch && let Some(r) = &remote {
        let f = remote::fetch(ctx.queue()?.store(), r, &super::enqueue::actor())?;
        for id in &f.diverged {
            eprintln!(
                "note: {id} diverged from {}'s; `git hyperion doctor` says how to resolve it",
                r.name()
            );
        }
    }
    Ok(remote)
}

/// How fresh the view of `remote`'s queue is: its name and the last fetch (JSON).
pub fn freshness(ctx: &Ctx, remote: &Remote) -> CmdResult<serde_json::Value> {
    let at = remote.last_fetch(ctx.queue()?.store());
    Ok(serde_json::json!({"name": remote.name(), "fetched_at": at.map(super::ts)}))
}

/// The freshness line of a text read: `remote origin: fetched 2026-…Z (3m ago)`.
pub fn freshness_line(ctx: &Ctx, remote: &Remote) -> CmdResult<String> {
    Ok(match remote.last_fetch(ctx.queue()?.store()) {
        Some(at) => {
            let age = jiff::Timestamp::now().duration_since(at);
            let secs = age.as_secs().max(0);
            let ago = match secs {
                0..=59 => format!("{secs}s"),
                60..=3599 => format!("{}m", secs / 60),
                3600..=86399 => format!("{}h", secs / 3600),
                _ => format!("{}d", secs / 86400),
            };
            format!(
                "remote {}: queue as of the last fetch, {} ({ago} ago); --fetch to refresh",
                remote.name(),
                super::ts(at)
            )
        }
        None => format!(
            "remote {}: never fetched by hyperion; --fetch to fetch the queue first",
            remote.name()
        ),
    })
}

/// The freshness line after a listing: on stdout with the text, on stderr beside JSON (a
/// listing's JSON document is its array of records).
pub fn print_freshness(ctx: &Ctx, remote: &Remote) -> CmdResult {
    let line = freshness_line(ctx, remote)?;
    if ctx.json() {
        eprintln!("note: {line}");
    } else {
        println!("{line}");
    }
    Ok(())
}
