//! Remote mode: one queue shared through a git remote (docs/remote.md).
//!
//! The remote's request refs are fetched into a tracking namespace of their own,
//! `refs/hyperion-remotes/NAME/requests/ID` (forced, as remote-tracking refs are: they mirror
//! the remote), never straight over `refs/hyperion/requests/`; a local ref then moves only by
//! compare-and-swap, to a fetched tip that descends from it ([`fetch`]). A push moves each
//! remote ref only with a lease on the tip the tracking ref says the remote holds
//! (`--force-with-lease=REF:OLD`, `REF:` for create-only): the remote's compare-and-swap. So
//! a rejected push means another machine's transition reached the remote first, and nothing
//! here ever overwrites one.
//!
//! This module decides what to push and adopt; [`crate::git::remote`] runs git.

use std::path::PathBuf;

use gix::ObjectId;
use serde::Serialize;

use crate::code::Code;
use crate::error::{Error, Result};
use crate::git::remote::{Expect, Outcome, Update};
use crate::queue::store::{REQUESTS_PREFIX, Store};
use crate::request::model::Action;

/// Where the remotes' request refs are tracked: `refs/hyperion-remotes/NAME/requests/ID`.
/// Outside `refs/hyperion/`, whose every ref must be a request's.
pub const TRACKING_ROOT: &str = "refs/hyperion-remotes/";

/// What a chain, or the notes, fetched from a remote must pass before a local ref moves onto
/// them: the gate's checks (`gate::verify::REMOTE_CHECKS`). The queue knows no rule of chains
/// or notes; every [`Remote`] is made with these.
#[derive(Debug, Clone, Copy)]
pub struct Checks {
    pub chain: ChainCheck,
    pub notes: NotesCheck,
}

/// `(store, id, the local tip, the fetched tip)` → the chain's problems, none when it may be
/// taken in.
pub type ChainCheck = fn(&Store, &str, Option<ObjectId>, ObjectId) -> Result<Vec<crate::Problem>>;

/// `(store, the local notes tip, the fetched one)` → the notes' problems.
pub type NotesCheck = fn(&Store, Option<ObjectId>, ObjectId) -> Result<Vec<crate::Problem>>;

/// A remote the queue is shared through, by its git name.
#[derive(Debug, Clone)]
pub struct Remote {
    name: String,
    /// What fetched chains and notes must pass before a local ref moves onto them.
    checks: Checks,
}

/// How moving a local ref onto a fetched chain ended ([`Remote::adopt`]).
#[derive(Debug)]
pub enum Adopted {
    /// The ref points at the fetched tip now.
    Moved,
    /// The ref moved meanwhile; nothing changed (the next fetch looks again).
    Stale,
    /// The fetched chain is not one hyperion would have written: its problems. Nothing
    /// changed; the remote's ref stays in the tracking namespace only.
    Refused(Vec<crate::Problem>),
}

impl Adopted {
    pub fn moved(&self) -> bool {
        matches!(self, Adopted::Moved)
    }
}

/// A chain of the remote's that was not taken in, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Refused {
    pub id: String,
    pub problems: Vec<crate::Problem>,
}

impl Remote {
    /// The remote `name`, if it is one this repository has (`remote.NAME.url`) and a name
    /// hyperion takes (it becomes part of ref names): else `remote.missing`. Fetched chains
    /// and notes are taken in only when `checks` find no problem in them.
    pub fn named(store: &Store, name: &str, checks: Checks) -> Result<Remote> {
        let plain = !name.is_empty()
            && !name.starts_with(['-', '.'])
            && !name.ends_with(".lock")
            && !name.contains("..")
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !plain {
            return Err(missing(format!(
                "'{}' is not a remote name hyperion takes (letters, digits, '.', '_', '-')",
                name.escape_debug()
            )));
        }
        // Read from the configuration the store opened with (all the levels git reads):
        // no `git config` process on every command of remote mode.
        let url = store
            .repo()
            .config_snapshot()
            .string(format!("remote.{name}.url").as_str())
            .is_some_and(|v| !v.trim_ascii().is_empty());
        if !url {
            return Err(missing(format!("this repository has no remote '{name}'")));
        }
        Ok(Remote {
            name: name.to_owned(),
            checks,
        })
    }

    /// The remote the queue is shared through: `flag` (`--remote NAME`), else
    /// `hyperion.remote`; `None` when neither is set (one clone, no remote mode).
    pub fn configured(store: &Store, flag: Option<&str>, checks: Checks) -> Result<Option<Remote>> {
        let name = match flag {
            Some(n) => Some(n.to_owned()),
            None => store
                .repo()
                .config_snapshot()
                .string("hyperion.remote")
                .map(|v| v.to_string().trim().to_owned())
                .filter(|v| !v.is_empty()),
        };
        name.map(|n| Remote::named(store, &n, checks)).transpose()
    }

    /// Move request `id`'s local ref from `expected` (`None`: absent) to `theirs`, a tip
    /// fetched from this remote, if the chain there passes the remote's [`Checks`] (a host
    /// without a `pre-receive` hook takes any push: a forged chain must not be leased and
    /// landed here) and the ref has not moved meanwhile. A refusal is logged too.
    pub fn adopt(
        &self,
        store: &Store,
        id: &str,
        expected: Option<ObjectId>,
        theirs: ObjectId,
        actor: &str,
    ) -> Result<Adopted> {
        if expected != Some(theirs) {
            let problems = (self.checks.chain)(store, id, expected, theirs)?;
            if !problems.is_empty() {
                for p in &problems {
                    tracing::warn!(
                        request_id = id,
                        remote = %self.name,
                        tip = %theirs,
                        code = %p.code,
                        "not taken in from the remote: {}",
                        p.message
                    );
                }
                return Ok(Adopted::Refused(problems));
            }
        }
        Ok(if store.adopt(id, expected, theirs, actor)? {
            Adopted::Moved
        } else {
            Adopted::Stale
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `refs/hyperion-remotes/NAME/requests/`.
    pub fn tracking_prefix(&self) -> String {
        format!("{TRACKING_ROOT}{}/requests/", self.name)
    }

    /// The refspecs `init --remote` adds to `remote.NAME.fetch`: the queue and the notes into
    /// the tracking namespace (a glob for the notes, so that a remote without notes yet does
    /// not make `git fetch` fail).
    pub fn fetch_refspecs(&self) -> Vec<String> {
        vec![
            format!("+{REQUESTS_PREFIX}*:{}*", self.tracking_prefix()),
            format!(
                "+refs/notes/hyperion*:{TRACKING_ROOT}{}/notes/hyperion*",
                self.name
            ),
        ]
    }

    /// The refspecs `init --remote` adds to `remote.NAME.push`: the queue and the notes under
    /// their own names, without `+` (fast-forward only).
    pub fn push_refspecs(&self) -> Vec<String> {
        vec![
            format!("{REQUESTS_PREFIX}*:{REQUESTS_PREFIX}*"),
            "refs/notes/hyperion*:refs/notes/hyperion*".to_owned(),
        ]
    }

    /// Where the remote's branch `refname` (`refs/heads/B`) is tracked:
    /// `refs/hyperion-remotes/NAME/heads/B`. A worker builds on it, never on the local branch.
    pub fn tracking_branch(&self, refname: &str) -> String {
        let short = refname.strip_prefix("refs/").unwrap_or(refname);
        format!("{TRACKING_ROOT}{}/{short}", self.name)
    }

    /// Where the remote's notes ref is tracked (the fetch refspec of `init --remote`).
    pub fn tracking_notes(&self) -> String {
        self.tracking_branch(crate::gate::land::NOTES_REF)
    }

    /// What a worker fetches besides the queue: the remote's branches (its targets) and its
    /// notes, into the tracking namespace (globs: a remote without notes yet fetches fine).
    pub fn landing_refspecs(&self) -> Vec<String> {
        vec![
            format!("+refs/heads/*:{TRACKING_ROOT}{}/heads/*", self.name),
            format!(
                "+refs/notes/hyperion*:{TRACKING_ROOT}{}/notes/hyperion*",
                self.name
            ),
        ]
    }

    /// The remote's tip of `refname` (`refs/heads/B`, the notes ref) as of the last fetch or
    /// push.
    pub fn tracked_ref(&self, store: &Store, refname: &str) -> Result<Option<ObjectId>> {
        crate::git::refs::read(store.repo(), &self.tracking_branch(refname))
    }

    fn tracking(&self, store: &Store) -> Result<Vec<(String, ObjectId)>> {
        let prefix = self.tracking_prefix();
        Ok(crate::git::refs::list(store.repo().common_dir(), &prefix)?
            .into_iter()
            .filter_map(|(name, oid)| Some((name.strip_prefix(&prefix)?.to_owned(), oid?)))
            .collect())
    }

    fn tracked(&self, store: &Store, id: &str) -> Result<Option<ObjectId>> {
        crate::git::refs::read(store.repo(), &format!("{}{id}", self.tracking_prefix()))
    }

    /// Set the tracking ref of `id` to `new` after a push that put it there.
    fn track(&self, store: &Store, id: &str, new: ObjectId) -> Result<()> {
        self.track_ref(store, &format!("{}{id}", self.tracking_prefix()), new)
    }

    /// Set the tracking ref `name` to `new` after a push that put it there.
    fn track_ref(&self, store: &Store, name: &str, new: ObjectId) -> Result<()> {
        for _ in 0..3 {
            let now = crate::git::refs::read(store.repo(), name)?;
            if now == Some(new) {
                return Ok(());
            }
            let log = crate::git::refs::LogLine {
                name: "hyperion",
                email: "hyperion@localhost",
                at: jiff::Timestamp::now(),
                message: "hyperion: push",
            };
            if crate::git::refs::cas(store.repo(), name, now, new, &log)?.done() {
                return Ok(());
            }
        }
        // A fetch is moving it at the same time: it will say what the remote holds.
        Ok(())
    }

    fn last_fetch_path(&self, store: &Store) -> PathBuf {
        store.hyperion_dir().join("last-fetch").join(&self.name)
    }

    /// When hyperion last fetched the queue from this remote (`hyperion/last-fetch/NAME`).
    pub fn last_fetch(&self, store: &Store) -> Option<jiff::Timestamp> {
        std::fs::read_to_string(self.last_fetch_path(store))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn record_fetch(&self, store: &Store, at: jiff::Timestamp) -> Result<()> {
        let path = self.last_fetch_path(store);
        let dir = path.parent().expect("a file in a directory");
        let tmp = dir.join(format!(".{}.{}", self.name, std::process::id()));
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&tmp, format!("{at}\n")))
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| Error::io(format!("could not write {}", path.display()), e))
    }
}

fn missing(message: String) -> Error {
    Error::Remote {
        code: Code::RemoteMissing,
        message,
    }
}

/// How a request's local tip stands to the remote's (as of the last fetch or push).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    Same,
    /// Not on the remote: never published.
    LocalOnly,
    /// Only on the remote: not fetched into the local queue yet.
    RemoteOnly,
    /// The local tip descends from the remote's: transitions not published yet.
    Ahead,
    /// The remote's tip descends from the local one: transitions not adopted yet.
    Behind,
    /// The local chain replaced the remote's heartbeat tip with a newer one (a heartbeat may
    /// replace a heartbeat): published with a lease on the replaced tip.
    Replaced,
    /// Neither descends from the other: two machines made different transitions.
    Diverged,
}

/// One request's local and remote tips and how they stand.
#[derive(Debug, Clone)]
pub struct Compared {
    pub id: String,
    pub local: Option<ObjectId>,
    pub remote: Option<ObjectId>,
    pub relation: Relation,
}

/// Every request either side has, with how its tips stand; sorted by id.
pub fn compare(store: &Store, remote: &Remote) -> Result<Vec<Compared>> {
    let mut both: std::collections::BTreeMap<String, (Option<ObjectId>, Option<ObjectId>)> =
        Default::default();
    for (id, oid) in store.list()? {
        both.entry(id).or_default().0 = Some(oid);
    }
    for (id, oid) in remote.tracking(store)? {
        both.entry(id).or_default().1 = Some(oid);
    }
    both.into_iter()
        .map(|(id, (local, theirs))| {
            let relation = relate(store, local, theirs)?;
            Ok(Compared {
                id,
                local,
                remote: theirs,
                relation,
            })
        })
        .collect()
}

fn relate(store: &Store, local: Option<ObjectId>, theirs: Option<ObjectId>) -> Result<Relation> {
    Ok(match (local, theirs) {
        (None, None) => Relation::Same,
        (Some(_), None) => Relation::LocalOnly,
        (None, Some(_)) => Relation::RemoteOnly,
        (Some(l), Some(r)) if l == r => Relation::Same,
        (Some(l), Some(r)) => {
            if store.descends(l, r)? {
                Relation::Ahead
            } else if store.descends(r, l)? {
                Relation::Behind
            } else if replaced_heartbeat(store, l, r)? {
                Relation::Replaced
            } else {
                Relation::Diverged
            }
        }
    })
}

/// Whether `theirs` is a heartbeat whose parent the local chain `local` descends from: the
/// local chain replaced it (or a later one) with its own heartbeat.
fn replaced_heartbeat(store: &Store, local: ObjectId, theirs: ObjectId) -> Result<bool> {
    let heartbeat = store
        .history_head(theirs)?
        .is_some_and(|e| e.action == Action::Heartbeat);
    if !heartbeat {
        return Ok(false);
    }
    match store.parent_of(theirs)? {
        Some(parent) => store.descends(local, parent),
        None => Ok(false),
    }
}

/// What a fetch did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Fetched {
    pub remote: String,
    pub at: Option<jiff::Timestamp>,
    /// Requests new to this clone or moved forward to the remote's tip.
    pub adopted: Vec<String>,
    /// Requests with local transitions the remote does not have yet (`git hyperion push`).
    pub ahead: Vec<String>,
    /// Requests whose local and remote chains diverged (left alone; `doctor` says more).
    pub diverged: Vec<String>,
    /// Requests whose chain on the remote hyperion would not have written: not taken in.
    pub refused: Vec<Refused>,
    /// The local notes moved to the remote's (landings other machines annotated).
    pub notes_taken_in: bool,
    /// Why the remote's notes were not taken in: a note hyperion would not have written.
    pub notes_refused: Vec<crate::Problem>,
}

/// Fetch the remote's queue into the tracking namespace, then move every local request ref
/// that is absent or behind to the remote's tip (each a compare-and-swap; one that moved
/// meanwhile is left for the next fetch). Local transitions are never overwritten.
///
/// The same `git fetch` brings the remote's branches and notes into the tracking namespace
/// ([`Remote::landing_refspecs`]): the commits the chains name as landed, and the tips a
/// worker builds on.
pub fn fetch(store: &Store, remote: &Remote, actor: &str) -> Result<Fetched> {
    fetch_with(store, remote, actor, true)
}

/// [`fetch`], of the queue alone when not `landing` (no branches, no notes: what a lease by
/// `dequeue` needs).
fn fetch_with(store: &Store, remote: &Remote, actor: &str, landing: bool) -> Result<Fetched> {
    let at = jiff::Timestamp::now();
    let mut refspecs = vec![format!("+{REQUESTS_PREFIX}*:{}*", remote.tracking_prefix())];
    if landing {
        refspecs.extend(remote.landing_refspecs());
    }
    crate::git::remote::fetch(store.git_dir(), remote.name(), &refspecs)?;
    remote.record_fetch(store, at)?;
    let mut out = Fetched {
        remote: remote.name.clone(),
        at: Some(at),
        ..Fetched::default()
    };
    for c in compare(store, remote)? {
        match (c.relation, c.remote) {
            (Relation::RemoteOnly | Relation::Behind, Some(theirs)) => {
                // A local ref that moved meanwhile is left for the next fetch.
                match remote.adopt(store, &c.id, c.local, theirs, actor)? {
                    Adopted::Moved => out.adopted.push(c.id),
                    Adopted::Stale => {}
                    Adopted::Refused(problems) => out.refused.push(Refused { id: c.id, problems }),
                }
            }
            (Relation::Ahead | Relation::LocalOnly | Relation::Replaced, _) => out.ahead.push(c.id),
            (Relation::Diverged, _) => out.diverged.push(c.id),
            _ => {}
        }
    }
    if landing {
        match take_in_notes(store, remote, actor)? {
            Ok(moved) => out.notes_taken_in = moved,
            Err(problems) => out.notes_refused = problems,
        }
    }
    Ok(out)
}

/// Move the local notes (`refs/notes/hyperion`) to the remote's as fetched, when they are
/// absent here or behind (on the first-parent line of the remote's) and the remote's notes
/// pass the remote's [`Checks`] (only notes added, each on a commit whose trailer names its
/// request): the landings other machines made are annotated here too. Local notes the remote
/// lacks are left (this clone's landing pushes publish its own). `Ok(true)` when they moved;
/// `Err` with the problems when the remote's notes were refused (logged too).
fn take_in_notes(
    store: &Store,
    remote: &Remote,
    actor: &str,
) -> Result<std::result::Result<bool, Vec<crate::Problem>>> {
    let notes_ref = crate::gate::land::NOTES_REF;
    let repo = store.repo();
    let Some(theirs) = remote.tracked_ref(store, notes_ref)? else {
        return Ok(Ok(false));
    };
    let mine = crate::git::tree::read_tip(repo, notes_ref)?;
    let behind = match mine {
        None => true,
        Some(m) => m != theirs && crate::git::tree::on_first_parent_line(repo, theirs, m)?,
    };
    if !behind {
        return Ok(Ok(false));
    }
    let problems = (remote.checks.notes)(store, mine, theirs)?;
    if !problems.is_empty() {
        for p in &problems {
            tracing::warn!(remote = %remote.name, tip = %theirs, code = %p.code, "notes not taken in from the remote: {}", p.message);
        }
        return Ok(Err(problems));
    }
    let log = crate::git::refs::LogLine {
        name: actor,
        email: "hyperion@localhost",
        at: jiff::Timestamp::now(),
        message: "hyperion: fetch",
    };
    Ok(Ok(crate::git::refs::cas(
        repo, notes_ref, mine, theirs, &log,
    )?
    .done()))
}

/// What a push published.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Published {
    pub remote: String,
    /// Requests the push created or moved on the remote.
    pub pushed: Vec<String>,
    /// Requests the remote already held at the local tip.
    pub up_to_date: Vec<String>,
    /// Requests not pushed because they diverged from the remote's (`git hyperion push`).
    pub diverged: Vec<String>,
}

/// Publish new requests `ids` (already stored locally), create-only: one atomic push, each
/// ref with a lease on its absence. A remote that holds the same tip is the idempotent case.
/// A remote that holds another chain of the same request (another machine enqueued the same
/// submission first: same dedupe key) is idempotent too: when the local chain is only its
/// enqueue commit, it is replaced by the remote's (compare-and-swap) and the push is made
/// again for the others. A different request under the id is `remote.conflict`, and nothing
/// of the batch is published.
pub fn publish_new(
    store: &Store,
    remote: &Remote,
    ids: &[String],
    actor: &str,
) -> Result<Published> {
    let mut out = Published {
        remote: remote.name.clone(),
        ..Published::default()
    };
    let mut pending: Vec<String> = ids.to_vec();
    // Each round either publishes or takes in at least one request of the remote's.
    for _ in 0..=ids.len().min(8) {
        let mut updates = Vec::with_capacity(pending.len());
        for id in &pending {
            let tip = store.tip(id)?.ok_or_else(|| Error::NotFound(id.clone()))?;
            updates.push((id.clone(), tip, Expect::Absent));
        }
        let (done, conflicts) = push_once(store, remote, updates)?;
        if conflicts.is_empty() {
            out.pushed.extend(done.pushed);
            out.up_to_date.extend(done.up_to_date);
            return Ok(out);
        }
        let refspecs: Vec<String> = conflicts
            .iter()
            .map(|id| format!("+{}:{}{id}", Store::ref_name(id), remote.tracking_prefix()))
            .collect();
        crate::git::remote::fetch(store.git_dir(), remote.name(), &refspecs)?;
        let mut different = Vec::new();
        for id in &conflicts {
            let Some(local) = store.tip(id)? else {
                different.push(id.clone());
                continue;
            };
            let Some(theirs) = remote.tracked(store, id)? else {
                // Still absent there: the push failed for another ref; try it again.
                continue;
            };
            let same_request = store.read_record(id, local)?.dedupe_key
                == store.read_record(id, theirs)?.dedupe_key;
            let only_enqueued = store.parent_of(local)?.is_none();
            // Taken in only when hyperion would have written the chain there: a forged one
            // under the id is not this request's.
            if same_request
                && only_enqueued
                && (local == theirs
                    || !matches!(
                        remote.adopt(store, id, Some(local), theirs, actor)?,
                        Adopted::Refused(_)
                    ))
            {
                out.up_to_date.push(id.clone());
                pending.retain(|p| p != id);
            } else {
                different.push(id.clone());
            }
        }
        if !different.is_empty() {
            return Err(conflict(
                remote,
                &different,
                "another request or a chain this clone's does not follow",
            ));
        }
        if pending.is_empty() {
            return Ok(out);
        }
    }
    Err(conflict(remote, &pending, "the remote kept changing"))
}

fn conflict(remote: &Remote, ids: &[String], what: &str) -> Error {
    Error::Remote {
        code: Code::RemoteConflict,
        message: format!(
            "{} holds {what} under {} id(s): {}; nothing was published",
            remote.name,
            ids.len(),
            ids.join(", ")
        ),
    }
}

/// Publish every local request the remote lacks or is behind on (by the tracking refs):
/// one atomic push, each ref with a lease on the tip the remote is known to hold. Diverged
/// requests are not pushed and are listed.
pub fn push(store: &Store, remote: &Remote) -> Result<Published> {
    let mut updates = Vec::new();
    let mut diverged = Vec::new();
    for c in compare(store, remote)? {
        let Some(local) = c.local else { continue };
        match (c.relation, c.remote) {
            (Relation::LocalOnly, _) => updates.push((c.id, local, Expect::Absent)),
            (Relation::Ahead | Relation::Replaced, Some(theirs)) => {
                updates.push((c.id, local, Expect::At(theirs)))
            }
            (Relation::Diverged, _) => diverged.push(c.id),
            _ => {}
        }
    }
    let (mut out, conflicts) = push_once(store, remote, updates)?;
    if !conflicts.is_empty() {
        return Err(conflict(
            remote,
            &conflicts,
            "other tips than this clone builds on (run `git hyperion fetch`)",
        ));
    }
    out.diverged = diverged;
    Ok(out)
}

/// One atomic push of `updates`; what it published, or (nothing published) the ids whose
/// lease did not hold. A refusal for any other reason is `remote.rejected`.
fn push_once(
    store: &Store,
    remote: &Remote,
    updates: Vec<(String, ObjectId, Expect)>,
) -> Result<(Published, Vec<String>)> {
    let mut out = Published {
        remote: remote.name.clone(),
        ..Published::default()
    };
    let git_updates: Vec<Update> = updates
        .iter()
        .map(|(id, new, expect)| Update {
            name: Store::ref_name(id),
            new: *new,
            expect: *expect,
        })
        .collect();
    let (report, said) =
        crate::git::remote::push(store.git_dir(), remote.name(), &git_updates, true)?;
    let mut conflicts = Vec::new();
    let mut refused = Vec::new();
    for (name, outcome) in &report {
        let Some(id) = name.strip_prefix(REQUESTS_PREFIX) else {
            continue;
        };
        match outcome {
            Outcome::Pushed => out.pushed.push(id.to_owned()),
            Outcome::UpToDate => out.up_to_date.push(id.to_owned()),
            Outcome::Rejected(why) if why == "atomic push failed" => {}
            Outcome::Rejected(why) if lease_refused(why) => conflicts.push(id.to_owned()),
            Outcome::Rejected(why) => refused.push(format!("{id} ({why})")),
        }
    }
    if !refused.is_empty()
        || (conflicts.is_empty() && out.pushed.len() + out.up_to_date.len() < updates.len())
    {
        return Err(Error::Remote {
            code: Code::RemoteRejected,
            message: format!(
                "{} refused the push of {}; nothing was published: {}",
                remote.name,
                if refused.is_empty() {
                    "the requests".to_owned()
                } else {
                    refused.join(", ")
                },
                said
            ),
        });
    }
    if !conflicts.is_empty() {
        return Ok((Published::default(), conflicts));
    }
    for (id, new, _) in &updates {
        remote.track(store, id, *new)?;
    }
    Ok((out, conflicts))
}

/// `doctor`'s findings about the remote: every request whose local and remote chains (as of
/// the last fetch) diverged, with how to resolve it.
pub fn findings(store: &Store, remote: &Remote) -> Result<Vec<crate::queue::Finding>> {
    let when = match remote.last_fetch(store) {
        Some(at) => format!("as of the last fetch, {at}"),
        None => "as of the last push or plain git fetch".to_owned(),
    };
    let name = &remote.name;
    let mut out = Vec::new();
    for c in compare(store, remote)? {
        let (Relation::Diverged, Some(local), Some(theirs)) = (c.relation, c.local, c.remote)
        else {
            continue;
        };
        let id = &c.id;
        out.push(crate::queue::Finding {
            id: id.clone(),
            code: Code::RemoteDiverged,
            message: format!(
                "the local chain (at {local}) and {name}'s (at {theirs}, {when}) diverged: \
                 neither follows the other, two machines made different transitions. \
                 The remote's stands (it reached the shared queue first): take it with \
                 `git update-ref {REQUESTS_PREFIX}{id} {}{id} {local}`; \
                 compare first with `git log {local} {theirs}`",
                remote.tracking_prefix()
            ),
        });
    }
    Ok(out)
}

/// What a lease by push won and lost.
#[derive(Debug, Default)]
pub struct Leased {
    /// The leases this worker holds on the remote too.
    pub records: Vec<crate::request::model::Record>,
    /// Requests this worker leased locally but another machine's transition reached the
    /// remote first: the local ref was put back to the remote's tip.
    pub lost: Vec<String>,
    /// Requests whose local chain diverged with this worker's own unpublished transitions
    /// (made while it could not reach the remote): put back to the remote's ([`give_way`]).
    pub given_way: Vec<String>,
}

/// How many rounds of fetch, lease and push a lease by push makes before it settles for what
/// it won (a round leased from the view of an earlier fetch is not counted).
const LEASE_ROUNDS: usize = 3;

/// What a lease by push leases from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// A fetch of the queue, the branches and the notes, first: a worker builds on the target
    /// tip this fetch saw and speculates on the leases it saw.
    Fetch,
    /// What the last fetch saw, while it is younger than `hyperion.leaseView` (`dequeue`):
    /// nothing is fetched before the push, whose lease on each ref is the check; else a fetch
    /// of the queue alone first.
    Recent,
}

/// Whether the last fetch from `remote` is younger than `max` (and not in the future).
fn view_is_recent(store: &Store, remote: &Remote, max: std::time::Duration) -> bool {
    let Some(at) = remote.last_fetch(store) else {
        return false;
    };
    let age = jiff::Timestamp::now().duration_since(at);
    !age.is_negative() && age.unsigned_abs() < max
}

/// Lease up to `batch` requests to `worker` on the shared queue: fetch (unless `view` is
/// [`View::Recent`] and the last fetch is recent), lease locally
/// ([`crate::queue::Queue::dequeue`]), then publish every new lease in one atomic push, each
/// with a lease on the remote's tip it was built on ([`publish`]). When the push is refused
/// because another machine's transition reached a request first, that machine won it: the
/// local ref is put back to the remote's tip, and the others are pushed again. Then another
/// round for what is missing: at once, after a fetch, when the round leased from an earlier
/// fetch's view (it was stale); else after a jittered pause (two machines met). A view with
/// nothing ready is fetched again before the lease says so. A lease that is not on the remote
/// is never reported as won.
pub fn lease(
    queue: &crate::queue::Queue,
    remote: &Remote,
    worker: &str,
    batch: usize,
    length: Option<std::time::Duration>,
    view: View,
) -> Result<Leased> {
    let store = queue.store();
    let actor = format!("worker:{worker}");
    let mut out = Leased::default();
    let landing = view == View::Fetch;
    let mut reuse =
        view == View::Recent && view_is_recent(store, remote, queue.settings().lease_view);
    let refresh = |out: &mut Leased| -> Result<()> {
        let fetched = fetch_with(store, remote, &actor, landing)?;
        if !fetched.diverged.is_empty() {
            out.given_way
                .extend(give_way(store, remote, &fetched.diverged, worker)?);
        }
        Ok(())
    };
    let mut round = 0;
    while round < LEASE_ROUNDS {
        if !reuse {
            refresh(&mut out)?;
        }
        let want = batch.saturating_sub(out.records.len());
        if want == 0 {
            break;
        }
        let mut leased = queue.dequeue(worker, want, length)?;
        if leased.is_empty() && reuse {
            // Nothing ready in the view: what the remote holds now, before saying so.
            reuse = false;
            continue;
        }
        if leased.is_empty() {
            break;
        }
        let ids: Vec<String> = leased.iter().map(|r| r.id.clone()).collect();
        crate::git::os::pause_point("remote.leased_locally");
        let lost = match publish(store, remote, &ids, &actor) {
            Ok(lost) => lost,
            Err(e) if e.code() == Code::RemoteUnreachable => {
                take_back(store, &ids, worker, &actor)?;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let lost_any = !lost.is_empty();
        leased.retain(|r| !lost.contains(&r.id));
        out.records.extend(leased);
        out.lost.extend(lost);
        if !lost_any {
            // Nothing lost: what was ready is leased.
            break;
        }
        if reuse {
            // The view was stale: fetched again and leased again at once (not a race met
            // now, whose pause the other machine needs).
            reuse = false;
            continue;
        }
        // Another machine is leasing too: a pause before it fetches again.
        jitter(worker, round);
        round += 1;
    }
    Ok(out)
}

/// Take back the local leases `ids` of `worker` when their push reached no remote (a lease from
/// a recent view is made before anything is fetched): each ref moves from the lease back to
/// the tip it was made on (a compare-and-swap; a ref that moved since, or whose tip is not this
/// worker's lease, is left). An unreachable remote leaves no lease held in this clone alone.
fn take_back(store: &Store, ids: &[String], worker: &str, actor: &str) -> Result<()> {
    for id in ids {
        let Some(tip) = store.tip(id)? else {
            continue;
        };
        let lease = store
            .history_head(tip)?
            .is_some_and(|e| e.action == Action::Lease && e.worker.as_deref() == Some(worker));
        if let (true, Some(before)) = (lease, store.parent_of(tip)?) {
            store.adopt(id, Some(tip), before, actor)?;
        }
    }
    Ok(())
}

/// A pause in [25, 100) ms times `round + 1`, different on every machine, so that machines
/// that met on a ref do not meet again at once.
pub fn jitter(worker: &str, round: usize) {
    let seed = crate::request::model::sha256_hex(
        format!("{worker}:{round}:{}", jiff::Timestamp::now()).as_bytes(),
    );
    let frac = u64::from_str_radix(&seed[..4], 16).unwrap_or(0);
    std::thread::sleep(std::time::Duration::from_millis(
        (25 + frac * 75 / 65536) * (round as u64 + 1),
    ));
}

/// What a sweep in remote mode did ([`sweep`]).
#[derive(Debug, Default)]
pub struct RemoteSweep {
    /// What was swept here (and pushed, but for `lost` and a failed push).
    pub swept: crate::queue::Swept,
    /// The fetch before it failed: the sweep saw this clone's view only.
    pub fetch_failed: Option<Error>,
    /// The push after it failed: the returns stay here until `git hyperion push`.
    pub push_failed: Option<Error>,
    /// Returns another machine's transition beat (a lease renewed or taken meanwhile): put
    /// back to the remote's tip, not swept after all.
    pub lost: Vec<String>,
}

/// Sweep in remote mode: take the remote's leases in (a fetch of the queue), return the expired ones here
/// as without a remote ([`crate::queue::Queue::sweep`]), and publish the returns, each with a
/// lease on the expired lease's tip ([`publish`]). A failed fetch or push is said, not an
/// error: what was swept here is swept.
pub fn sweep(queue: &crate::queue::Queue, remote: &Remote, actor: &str) -> Result<RemoteSweep> {
    let mut out = RemoteSweep {
        // The queue alone: what a sweep returns is the remote's leases.
        fetch_failed: fetch_with(queue.store(), remote, actor, false).err(),
        ..RemoteSweep::default()
    };
    out.swept = queue.sweep()?;
    let ids: Vec<String> = out
        .swept
        .requeued
        .iter()
        .chain(&out.swept.dead)
        .cloned()
        .collect();
    match publish(queue.store(), remote, &ids, actor) {
        Ok(lost) => out.lost = lost,
        Err(e) => out.push_failed = Some(e),
    }
    Ok(out)
}

/// Publish the local transitions of `ids` (a lease, a heartbeat, a release, a completion
/// made in this clone on a chain the remote holds) in one atomic push, each with a lease on
/// the remote's tip it was built on (as of the last fetch or push). Returns the requests
/// **lost**: another machine's transition reached the remote first (the push's lease did
/// not hold, or the local chain does not follow the remote's any more: made while this clone
/// could not reach it). Their local ref is put back to the remote's tip (a compare-and-swap
/// from the tip this clone wrote; one that moved since is left to the next fetch), and the
/// others are pushed again.
pub fn publish(store: &Store, remote: &Remote, ids: &[String], actor: &str) -> Result<Vec<String>> {
    let mut lost = Vec::new();
    let mut pending = Vec::with_capacity(ids.len());
    for id in ids {
        let tip = store.tip(id)?.ok_or_else(|| Error::NotFound(id.clone()))?;
        let theirs = remote.tracked(store, id)?;
        match theirs {
            None => pending.push((id.clone(), tip, Expect::Absent)),
            Some(t) if t == tip => {}
            Some(t) => match relate(store, Some(tip), Some(t))? {
                Relation::Ahead | Relation::Replaced => {
                    pending.push((id.clone(), tip, Expect::At(t)))
                }
                // The remote moved on without this clone's transitions (or this clone has
                // not taken them in): the remote's stands.
                _ => {
                    remote.adopt(store, id, Some(tip), t, actor)?;
                    lost.push(id.clone());
                }
            },
        }
    }
    let mut attempts = 0;
    while !pending.is_empty() {
        let (_, conflicts) = push_once(store, remote, pending.clone())?;
        if conflicts.is_empty() {
            break;
        }
        attempts += 1;
        if attempts > LEASE_ROUNDS * 2 {
            return Err(Error::Remote {
                code: Code::RemoteRejected,
                message: format!(
                    "{} kept refusing the transitions of {} without another machine's transition in the way; they are held in this clone only (`git hyperion push` publishes them later)",
                    remote.name,
                    conflicts.join(", ")
                ),
            });
        }
        let refspecs: Vec<String> = conflicts
            .iter()
            .map(|id| format!("+{}:{}{id}", Store::ref_name(id), remote.tracking_prefix()))
            .collect();
        crate::git::remote::fetch(store.git_dir(), remote.name(), &refspecs)?;
        for id in conflicts {
            let Some(at) = pending.iter().position(|(p, _, _)| *p == id) else {
                continue;
            };
            let theirs = remote.tracked(store, &id)?;
            let expected = match pending[at].2 {
                Expect::At(t) => Some(t),
                Expect::Absent => None,
            };
            if theirs == expected {
                // The remote still holds what the lease expects: refused for another ref of
                // the atomic push. Pushed again.
                continue;
            }
            let (_, mine, _) = pending.remove(at);
            if let Some(theirs) = theirs {
                // Only the tip this clone wrote is replaced; a ref that moved since is left
                // to the next fetch.
                remote.adopt(store, &id, Some(mine), theirs, actor)?;
            }
            lost.push(id);
        }
    }
    Ok(lost)
}

/// Give way to the remote on `ids` (requests whose local chain diverged from the remote's)
/// where everything the local chain holds that the remote's does not is this worker's own
/// work (its leases, heartbeats, records, or sweeps): made while this clone could not reach
/// the remote, or beaten there. The remote's state stands; the local ref is put back to it
/// (a compare-and-swap). Requests with another writer's transitions are left to `doctor`.
/// Returns the requests given way on.
pub fn give_way(
    store: &Store,
    remote: &Remote,
    ids: &[String],
    worker: &str,
) -> Result<Vec<String>> {
    let actor = format!("worker:{worker}");
    let mut out = Vec::new();
    for id in ids {
        let (Some(mine), Some(theirs)) = (store.tip(id)?, remote.tracked(store, id)?) else {
            continue;
        };
        let mut at = Some(mine);
        let mut own = true;
        let mut steps = 0;
        while let Some(c) = at {
            if store.descends(theirs, c)? {
                break;
            }
            steps += 1;
            let ours = store.history_head(c)?.is_some_and(|e| {
                e.worker.as_deref() == Some(worker) || e.actor == actor || e.actor == "sweep"
            });
            if !ours || steps > 64 {
                own = false;
                break;
            }
            at = store.parent_of(c)?;
        }
        if own && at.is_some() && remote.adopt(store, id, Some(mine), theirs, &actor)?.moved() {
            out.push(id.clone());
        }
    }
    Ok(out)
}

/// How a landing push ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Landing {
    /// The target, the requests' transitions and the notes are on the remote (and tracked).
    Landed,
    /// Nothing was published: another machine moved the target or the notes first, or took
    /// requests of the chain (`lost`: their local refs were put back to the remote's tips).
    /// The tracking refs hold what the remote holds now.
    Beaten { lost: Vec<String> },
}

/// Land a chain on the remote: **one** atomic push of the target branch `branch` from `old`
/// (its remote tip, which the chain was built on) to `new`, the prepared completions of its
/// requests (`(id, commit)`, each with a lease on the remote's tip of the request) and the
/// notes commit `notes` (with a lease on the remote's notes tip it was built on). All or
/// nothing. On a refusal by a lease, the target, the notes and the refused requests are
/// fetched again: a request whose remote tip moved is lost (put back locally as in
/// [`publish`]); the caller rebuilds on the target's new tip and tries again. A refusal for
/// another reason (the remote's hook) is `remote.rejected`.
#[allow(clippy::too_many_arguments)]
pub fn land(
    store: &Store,
    remote: &Remote,
    branch: &str,
    old: ObjectId,
    new: ObjectId,
    completions: &[(String, ObjectId)],
    notes: Option<(ObjectId, Option<ObjectId>)>,
    actor: &str,
) -> Result<Landing> {
    let notes_ref = crate::gate::land::NOTES_REF;
    let mut updates = vec![Update {
        name: branch.to_owned(),
        new,
        expect: Expect::At(old),
    }];
    let mut expected = Vec::with_capacity(completions.len());
    let mut lost = Vec::new();
    for (id, commit) in completions {
        let theirs = remote.tracked(store, id)?;
        let mine = store.tip(id)?;
        // A record is pushed only over the remote tip it follows from: never over another
        // machine's transition that this clone has seen but not taken in.
        if theirs.is_some()
            && !matches!(
                relate(store, Some(*commit), theirs)?,
                Relation::Ahead | Relation::Replaced
            )
        {
            if let (Some(mine), Some(theirs)) = (mine, theirs) {
                remote.adopt(store, id, Some(mine), theirs, actor)?;
            }
            lost.push(id.clone());
            continue;
        }
        expected.push((id.clone(), mine, theirs));
        updates.push(Update {
            name: Store::ref_name(id),
            new: *commit,
            expect: theirs.map_or(Expect::Absent, Expect::At),
        });
    }
    if !lost.is_empty() {
        return Ok(Landing::Beaten { lost });
    }
    if let Some((commit, parent)) = notes {
        updates.push(Update {
            name: notes_ref.to_owned(),
            new: commit,
            expect: parent.map_or(Expect::Absent, Expect::At),
        });
    }
    // The pushed commits must be on disk for git to send them.
    crate::git::pack::persist(store.repo())?;
    crate::git::os::pause_point("remote.landing_push");
    let (report, said) = crate::git::remote::push(store.git_dir(), remote.name(), &updates, true)?;
    let mut beaten = false;
    let mut refused = Vec::new();
    for (name, outcome) in &report {
        match outcome {
            Outcome::Pushed | Outcome::UpToDate => {}
            Outcome::Rejected(why) if why == "atomic push failed" => beaten = true,
            Outcome::Rejected(why) if lease_refused(why) => beaten = true,
            Outcome::Rejected(why) => refused.push(format!("{name} ({why})")),
        }
    }
    if !refused.is_empty() || (!beaten && report.len() < updates.len()) {
        return Err(Error::Remote {
            code: Code::RemoteRejected,
            message: format!(
                "{} refused the landing push of {}; nothing was published: {}",
                remote.name,
                if refused.is_empty() {
                    "the chain".to_owned()
                } else {
                    refused.join(", ")
                },
                said
            ),
        });
    }
    if !beaten {
        remote.track_ref(store, &remote.tracking_branch(branch), new)?;
        for (id, commit) in completions {
            remote.track(store, id, *commit)?;
        }
        if let Some((commit, _)) = notes {
            remote.track_ref(store, &remote.tracking_notes(), commit)?;
        }
        return Ok(Landing::Landed);
    }
    // Who won what: the target and the notes as the remote holds them now, and each request.
    let mut refspecs = remote.landing_refspecs();
    refspecs.extend(
        completions
            .iter()
            .map(|(id, _)| format!("+{}:{}{id}", Store::ref_name(id), remote.tracking_prefix())),
    );
    crate::git::remote::fetch(store.git_dir(), remote.name(), &refspecs)?;
    for (id, mine, expected) in expected {
        let theirs = remote.tracked(store, &id)?;
        if theirs == expected {
            continue;
        }
        if let (Some(mine), Some(theirs)) = (mine, theirs) {
            remote.adopt(store, &id, Some(mine), theirs, actor)?;
        }
        lost.push(id);
    }
    Ok(Landing::Beaten { lost })
}

/// Whether git's reason for refusing a ref says its lease did not hold: as git checks it
/// before sending (`stale info`), or as the remote's ref transaction checks it (another push
/// moved the ref in between: "cannot lock ref … is at X but expected Y", reported as a failed
/// atomic transaction).
fn lease_refused(why: &str) -> bool {
    why.contains("stale info")
        || why.contains("fetch first")
        || why.contains("non-fast-forward")
        || why.contains("atomic transaction failed")
        || why.contains("failed to update ref")
}
