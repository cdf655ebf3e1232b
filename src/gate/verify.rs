//! Checking request chains: pushed ones, for a server's `pre-receive` hook, and local ones,
//! for `doctor`.
//!
//! A server that shares a queue must not take what a client forged. [`check_push`] looks at
//! every ref a push updates:
//!
//! - under `refs/hyperion/`, only `refs/hyperion/requests/<id>` with `id` of the shape
//!   request ids have: not `refs/hyperion/requests` itself, not a nested name, not any other
//!   name (each would block the refs of every request, or of one, from being created);
//! - a request's chain is held to everything [`chain`] checks, its new commits also to this
//!   server's `hyperion.maxLease` and target branches (the pushed update of the target, when
//!   the same push moves it); a new request must pass validation against this server's
//!   target and policy; an update only extends the chain (a heartbeat may replace the tip);
//!   only finished requests are deleted;
//! - `refs/notes/hyperion` only gains notes, each on a commit carrying a `Hyperion-Request`
//!   trailer and naming the same request: a note never attributes a commit that does not
//!   say so itself, and notes are not removed.
//!
//! Other refs pass. [`check_local`] holds a local repository's chains to the same rules.

pub mod chain;
pub mod objects;

use std::collections::HashMap;

use gix::ObjectId;

use crate::code::Code;
use crate::error::{Error as Failure, Problem, Result};
use crate::queue::store::REQUESTS_PREFIX;
use crate::queue::{Finding, Queue};
use crate::request::model::{Action, Status, is_id};
use chain::{Checker, Rules};
use objects::{CatFile, Local, Objects};

/// Why a chain, a push or an object does not pass: refused, because what was read is not what
/// it must be — a problem with its code (`chain.*`, `push.*`), or, where the caller names the
/// code, the reason ([`objects::Refusal`]) — or failed (git, the disk).
#[derive(Debug, thiserror::Error)]
pub enum Error<R = Problem> {
    #[error("{0}")]
    Refused(R),
    #[error(transparent)]
    Failed(#[from] Failure),
}

impl<R> Error<R> {
    /// The refusal, for a caller that reports it (as a problem, a finding); a failure goes on
    /// as the caller's own error.
    pub fn refusal(self) -> Result<R> {
        match self {
            Error::Refused(r) => Ok(r),
            Error::Failed(e) => Err(e),
        }
    }

    /// The same failure, or the refusal made into another (a reason into a problem).
    pub fn refused_as<S>(self, f: impl FnOnce(R) -> S) -> Error<S> {
        match self {
            Error::Refused(r) => Error::Refused(f(r)),
            Error::Failed(e) => Error::Failed(e),
        }
    }
}

impl Error {
    /// The stable code (docs/errors.md).
    pub fn code(&self) -> Code {
        match self {
            Error::Refused(p) => p.code,
            Error::Failed(e) => e.code(),
        }
    }
}

/// Notes that one push may add, change or move.
pub const MAX_NOTES: usize = 1_000_000;
/// Bytes of one note.
pub const MAX_NOTE: u64 = 64 << 10;

const HINT_PUSH: &str =
    "push only chains written by git hyperion; fetch and retry if the request moved";
const HINT_REF: &str = "under refs/hyperion/ a server takes only refs/hyperion/requests/<id>, with the 16 hex digits of a request id";
const HINT_NOTES: &str = "refs/notes/hyperion holds the notes git hyperion writes on landed commits; push it as a worker left it";

/// The rules of this repository: its settings, and now.
fn rules(queue: &Queue) -> Rules {
    Rules {
        max_lease: queue.settings().max_lease,
        now: queue.now(),
        default_target: queue.settings().target.clone(),
        landings: true,
    }
}

/// What remote mode holds fetched chains and notes to before a local ref moves onto them
/// ([`crate::queue::remote::Checks`]): [`vet_adoption`] and [`vet_notes`].
pub const REMOTE_CHECKS: crate::queue::remote::Checks = crate::queue::remote::Checks {
    chain: vet_adoption,
    notes: vet_notes,
};

/// The notes fetched from a remote (`theirs`), before the local notes ref (at `local`) moves
/// onto them: held to what `verify-push` holds a push of `refs/notes/hyperion` to — notes are
/// only added, each on a commit whose `Hyperion-Request` trailer names the request the note
/// names. Problems, none when they may be taken in.
pub fn vet_notes(
    store: &crate::queue::store::Store,
    local: Option<ObjectId>,
    theirs: ObjectId,
) -> Result<Vec<Problem>> {
    let repo = store.repo();
    let mut objects = Local::new(repo);
    let old = local.unwrap_or_else(|| ObjectId::null(repo.object_hash()));
    check_notes(&mut objects, old, theirs)
}

/// A chain fetched from a remote, before a local ref moves onto it (remote mode's
/// [`crate::queue::remote::Checks`]): request `id`'s chain at `theirs` is held to everything
/// [`chain`] holds a pushed chain to — legal transitions, the payload and the enqueue fields
/// as enqueued, no secret, the request valid and stored under its own id, leases within
/// `hyperion.maxLease` — but that a landed commit lie on the target (a fetch of the queue
/// alone brings no branches; `doctor` checks that). A host without a `pre-receive` hook takes
/// any push: this keeps a chain forged there from being leased and landed here. The commits
/// of the local chain (`local` and before) were taken in earlier and are not judged by this
/// clone's settings again. Problems, none when it may be taken in.
pub fn vet_adoption(
    store: &crate::queue::store::Store,
    id: &str,
    local: Option<ObjectId>,
    theirs: ObjectId,
) -> Result<Vec<Problem>> {
    if !is_id(id) {
        return Ok(vec![Problem::new(
            Code::ChainBadRef,
            format!(
                "{REQUESTS_PREFIX}{} is not the ref of a request",
                id.escape_debug()
            ),
            HINT_REF,
        )]);
    }
    let repo = store.repo();
    let settings = crate::queue::settings::Settings::load(repo)?;
    let rules = Rules {
        max_lease: settings.max_lease,
        now: jiff::Timestamp::now(),
        default_target: settings.target,
        landings: false,
    };
    let mut objects = Local::new(repo);
    let mut checker = Checker::new(&mut objects, rules, |_: &str| Ok(None));
    let links = match checker.read(theirs) {
        Ok(links) => links,
        Err(e) => return Ok(vec![e.refusal()?]),
    };
    let mut mine = std::collections::HashSet::new();
    let mut at = local;
    while let Some(c) = at {
        if mine.len() > chain::MAX_CHAIN || !mine.insert(c) {
            break;
        }
        at = store.parent_of(c)?;
    }
    let fresh_from = links
        .iter()
        .take_while(|l| mine.contains(&l.commit.id))
        .count();
    Ok(checker.check(id, &links, fresh_from)?.problems)
}

/// Check every update `pre-receive` was given (`OLD NEW REFNAME` lines); problems by ref.
pub fn check_push(queue: &Queue, lines: &str) -> Result<HashMap<String, Vec<Problem>>> {
    let repo = queue.store().repo();
    let hash = repo.object_hash();
    let mut updates = Vec::new();
    for line in lines.lines().filter(|l| !l.trim().is_empty()) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let parsed = match parts[..] {
            [old, new, name] => ObjectId::from_hex(old.as_bytes())
                .and_then(|o| ObjectId::from_hex(new.as_bytes()).map(|n| (o, n, name))),
            _ => {
                return Err(Failure::Usage(format!(
                    "not an 'OLD NEW REFNAME' line: {line}"
                )));
            }
        };
        let (old, new, name) =
            parsed.map_err(|_| Failure::Usage(format!("not an 'OLD NEW REFNAME' line: {line}")))?;
        updates.push((old, new, name.to_owned()));
    }
    // A landing is checked against the target as this push leaves it.
    let pushed: HashMap<String, ObjectId> = updates
        .iter()
        .filter(|(_, _, name)| name.starts_with("refs/heads/"))
        .map(|(_, new, name)| (name.clone(), *new))
        .collect();
    let branches = pushed.clone();
    let view = quarantine_view(repo)?;
    let objects = view.as_ref().map(|(_, repo)| repo);
    // In `pre-receive`, the view of the quarantine reads the pushed objects with gix, within
    // the same bounds as `git cat-file` would (no process to start on every push); without a
    // quarantine, git is asked.
    let (mut local, mut cat);
    let reader: &mut dyn Objects = match objects {
        Some(view) => {
            local = Local::new(view);
            &mut local
        }
        None => {
            cat = CatFile::start(queue.store().git_dir(), hash)?;
            &mut cat
        }
    };
    let mut checker = Checker::new(reader, rules(queue), move |name: &str| {
        match pushed.get(name) {
            Some(new) if new.is_null() => Ok(None),
            Some(new) => Ok(Some(*new)),
            None => crate::git::tree::read_tip(repo, name),
        }
    });
    let mut out = HashMap::new();
    for (old, new, name) in updates {
        // The ref name is each problem's source (see `verify-push`).
        let problems = check_update(&mut checker, queue, &branches, objects, old, new, &name)?;
        if !problems.is_empty() {
            out.insert(name, problems);
        }
    }
    Ok(out)
}

/// Problems of one pushed update of `refname` from `old` to `new` (null ids for create and
/// delete).
fn check_update(
    checker: &mut Checker<'_>,
    queue: &Queue,
    pushed: &HashMap<String, ObjectId>,
    objects: Option<&gix::Repository>,
    old: ObjectId,
    new: ObjectId,
    refname: &str,
) -> Result<Vec<Problem>> {
    if refname == crate::gate::land::NOTES_REF {
        return check_notes(checker.objects(), old, new);
    }
    if refname != "refs/hyperion" && !refname.starts_with("refs/hyperion/") {
        return Ok(Vec::new());
    }
    let Some(id) = refname.strip_prefix(REQUESTS_PREFIX).filter(|id| is_id(id)) else {
        return Ok(vec![Problem::new(
            Code::ChainBadRef,
            format!("{refname} is not the ref of a request"),
            HINT_REF,
        )]);
    };
    let push_problem = |code: Code, m: String| vec![Problem::new(code, m, HINT_PUSH)];
    if new.is_null() {
        // Deleting a chain loses its history: only finished requests, as `gc` does.
        let finished = match checker.read(old) {
            Ok(links) => links.last().is_some_and(|l| l.record.status.is_final()),
            Err(e) => {
                e.refusal()?;
                false
            }
        };
        return Ok(if finished {
            Vec::new()
        } else {
            push_problem(
                Code::PushDeleteUnfinished,
                format!("{id} is not finished; its chain may not be deleted"),
            )
        });
    }
    let links = match checker.read(new) {
        Ok(links) => links,
        Err(e) => return Ok(vec![e.refusal()?]),
    };
    let mut out = Vec::new();
    // Commits the server has already taken are not judged again by its current settings.
    let fresh_from = if old.is_null() {
        0
    } else if let Some(k) = links.iter().position(|l| l.commit.id == old) {
        k + 1
    } else {
        // A heartbeat may replace the heartbeat at the tip.
        let replaced = match objects::commit(checker.objects(), old, chain::MAX_CHAIN_COMMIT, true)
        {
            Ok(o) => crate::queue::store::parse_event(&o.message)
                .is_some_and(|e| e.action == Action::Heartbeat && e.to == Status::Leased)
                .then(|| o.parents.first().copied())
                .flatten()
                .and_then(|p| links.iter().position(|l| l.commit.id == p)),
            Err(e) => {
                e.refusal()?;
                None
            }
        };
        match replaced {
            Some(k) => k + 1,
            None => {
                out.extend(push_problem(
                    Code::PushRewritesHistory,
                    format!("the push drops {old} from {id}'s chain"),
                ));
                0
            }
        }
    };
    let checked = checker.check(id, &links, fresh_from)?;
    out.extend(checked.problems);
    // A new request is held to what `validate` checks against its target here: the target's
    // tree and this repository's policy for it.
    if old.is_null()
        && let Some(req) = checked.request
    {
        let moved = |t: &crate::request::target::Target| {
            pushed
                .get(t.refname())
                .map(|tip| Some(*tip).filter(|t| !t.is_null()))
        };
        out.extend(
            queue
                .check_against_tips(&[&req], &moved, objects)?
                .into_iter()
                .flatten(),
        );
    }
    Ok(out)
}

/// Problems of an update of `refs/notes/hyperion`: it is not deleted, no note goes, and
/// every note added or changed sits on a commit whose `Hyperion-Request` trailer names the
/// request the note names.
fn check_notes(objects: &mut dyn Objects, old: ObjectId, new: ObjectId) -> Result<Vec<Problem>> {
    let problem = |m: String| vec![Problem::new(Code::PushNotes, m, HINT_NOTES)];
    if new.is_null() {
        return Ok(problem(
            "deleting refs/notes/hyperion would drop the record of every landed commit".into(),
        ));
    }
    let tree_of = |objects: &mut dyn Objects, c: ObjectId| {
        objects::commit(objects, c, chain::MAX_CHAIN_COMMIT, false).map(|c| c.tree)
    };
    let new_tree = match tree_of(objects, new) {
        Ok(t) => t,
        Err(e) => return Ok(problem(e.refusal()?)),
    };
    let old_tree = if old.is_null() {
        None
    } else {
        match tree_of(objects, old) {
            Ok(t) => Some(t),
            Err(e) => {
                e.refusal()?;
                None
            }
        }
    };
    let mut diff = NotesDiff::default();
    if let Err(e) = diff.trees(objects, old_tree, Some(new_tree), "") {
        return Ok(problem(e.refusal()?));
    }
    let mut out = Vec::new();
    let mut gone: Vec<&String> = diff
        .removed
        .keys()
        .filter(|k| !diff.added.contains_key(*k))
        .collect();
    gone.sort();
    if let Some(first) = gone.first() {
        out.extend(problem(format!(
            "the push removes {} note(s), the first on {first}; notes are only added",
            gone.len()
        )));
    }
    let mut added: Vec<(&String, &ObjectId)> = diff
        .added
        .iter()
        .filter(|(k, blob)| diff.removed.get(*k) != Some(*blob))
        .collect();
    added.sort();
    for (commit, blob) in added {
        if let Err(e) = check_note(objects, commit, *blob) {
            let why = e.refusal()?;
            out.extend(problem(format!("the note on {commit} {why}")));
            if out.len() >= 20 {
                break;
            }
        }
    }
    Ok(out)
}

/// The note `blob` on `commit`: the commit carries `Hyperion-Request: ID` and the note starts
/// with `request: ID`.
fn check_note(
    objects: &mut dyn Objects,
    commit: &str,
    blob: ObjectId,
) -> Result<(), Error<objects::Refusal>> {
    let Ok(id) = ObjectId::from_hex(commit.as_bytes()) else {
        return Err(Error::Refused("is not on a commit id".into()));
    };
    let c = objects::commit(objects, id, chain::MAX_TARGET_COMMIT, false)
        .map_err(|e| e.refused_as(|why| format!("is on no commit here: {why}")))?;
    let Some(request) =
        crate::git::message::trailer(&c.message, crate::gate::land::TRAILER_REQUEST)
    else {
        return Err(Error::Refused(format!(
            "is on a commit that carries no {} trailer: hyperion notes only what it landed",
            crate::gate::land::TRAILER_REQUEST
        )));
    };
    let text = objects::blob(objects, blob, MAX_NOTE)?;
    let first = text.split(|b| *b == b'\n').next().unwrap_or_default();
    if first != format!("request: {request}").as_bytes() {
        return Err(Error::Refused(format!(
            "does not start with 'request: {request}', the request its commit names"
        )));
    }
    Ok(())
}

/// Notes removed from and added to a notes tree, by the commit they annotate (fan-out
/// directories joined), with their blobs.
#[derive(Default)]
struct NotesDiff {
    removed: HashMap<String, ObjectId>,
    added: HashMap<String, ObjectId>,
    seen: usize,
}

impl NotesDiff {
    fn trees(
        &mut self,
        objects: &mut dyn Objects,
        a: Option<ObjectId>,
        b: Option<ObjectId>,
        prefix: &str,
    ) -> Result<(), Error<objects::Refusal>> {
        let mut read = |t: Option<ObjectId>| match t {
            None => Ok(Vec::new()),
            Some(t) => objects::tree(objects, t, 64 << 20, MAX_NOTES),
        };
        let ea = read(a)?;
        let eb = read(b)?;
        let mut names: Vec<&str> = ea.iter().chain(&eb).map(|e| e.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            let x = ea.iter().find(|e| e.name == name);
            let y = eb.iter().find(|e| e.name == name);
            if x == y {
                continue;
            }
            self.seen += 1;
            if self.seen > MAX_NOTES {
                return Err(Error::Refused(format!(
                    "the push changes more than {MAX_NOTES} notes"
                )));
            }
            if !name.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Error::Refused(format!(
                    "refs/notes/hyperion holds '{prefix}{}', which is not a note",
                    name.escape_debug()
                )));
            }
            let path = format!("{prefix}{name}");
            let sub = |e: Option<&objects::Entry>| e.filter(|e| e.is_tree()).map(|e| e.id);
            if sub(x).is_some() || sub(y).is_some() {
                self.trees(objects, sub(x), sub(y), &path)?;
            }
            if let Some(e) = x.filter(|e| !e.is_tree()) {
                self.removed.insert(path.clone(), e.id);
            }
            if let Some(e) = y.filter(|e| !e.is_tree()) {
                if !e.is_file() {
                    return Err(Error::Refused(format!(
                        "the note on {path} is not a regular file"
                    )));
                }
                self.added.insert(path, e.id);
            }
        }
        Ok(())
    }
}

/// `git hyperion doctor`: the queue's own checks ([`Queue::doctor_with`]), every chain's
/// ([`check_local`]), and the landings onto checked-out branches (in progress, interrupted, an
/// old `index.lock`: [`crate::gate::land::checkout::findings`]).
pub fn doctor(queue: &Queue, reindex: bool, repair: bool) -> Result<crate::queue::Diagnosis> {
    doctor_shared(queue, reindex, repair, None, &mut |_| {})
}

/// [`doctor`] of a clone sharing its queue through `remote` (remote mode): a landing is
/// looked for on the remote's target as of the last fetch when the local branch is behind it
/// (other machines land there; the local branch follows only this clone's landings). How far
/// it got goes to `on_scan` ([`crate::queue::Scan`]).
pub fn doctor_shared(
    queue: &Queue,
    reindex: bool,
    repair: bool,
    remote: Option<&crate::queue::remote::Remote>,
    on_scan: &mut crate::queue::OnScan<'_>,
) -> Result<crate::queue::Diagnosis> {
    let mut d = queue.doctor_with(
        reindex,
        repair,
        &mut |q, chunk, pages| check_local(q, chunk, pages, remote),
        on_scan,
    )?;
    d.findings
        .extend(crate::gate::land::checkout::findings(queue.store().repo()));
    Ok(d)
}

/// The chain problems of every request of a local repository (`doctor`), by id; each chain
/// read counts in `pages`.
pub fn check_local(
    queue: &Queue,
    refs: &[(String, ObjectId)],
    pages: &mut crate::git::os::PageBudget,
    remote: Option<&crate::queue::remote::Remote>,
) -> Result<Vec<Finding>> {
    let repo = queue.store().repo();
    let mut local = Local::new(repo);
    let mut tips: HashMap<String, Option<ObjectId>> = HashMap::new();
    let mut checker = Checker::new(&mut local, rules(queue), |name: &str| {
        if let Some(tip) = tips.get(name) {
            return Ok(*tip);
        }
        let mut tip = crate::git::tree::read_tip(repo, name)?;
        if let Some(remote) = remote
            && let Some(theirs) = remote.tracked_ref(queue.store(), name)?
            && tip.is_none_or(|mine| {
                crate::git::tree::on_first_parent_line(repo, theirs, mine).unwrap_or(false)
            })
        {
            tip = Some(theirs);
        }
        tips.insert(name.to_owned(), tip);
        Ok(tip)
    });
    let mut out = Vec::new();
    for (id, tip) in refs {
        pages.read_one();
        let finding = |p: Problem| Finding {
            id: id.clone(),
            code: p.code,
            message: p.message,
        };
        if !is_id(id) {
            out.push(Finding {
                id: id.clone(),
                code: Code::ChainBadRef,
                message: format!("{REQUESTS_PREFIX}{id} is not the ref of a request"),
            });
            continue;
        }
        match checker.read(*tip) {
            Ok(links) => match checker.check(id, &links, 0) {
                Ok(checked) => out.extend(checked.problems.into_iter().map(finding)),
                Err(e) => out.push(Finding {
                    id: id.clone(),
                    code: Code::StoreCorrupt,
                    message: e.to_string(),
                }),
            },
            Err(Error::Refused(p)) => out.push(finding(p)),
            Err(Error::Failed(e)) => out.push(Finding {
                id: id.clone(),
                code: Code::StoreCorrupt,
                message: e.to_string(),
            }),
        }
    }
    Ok(out)
}

/// During `pre-receive`, a read-only repository whose objects are the push's quarantine
/// (`GIT_QUARANTINE_PATH`) and this repository's objects: the pushed chains, the pushed
/// branch's trees and policy are found there, as git itself finds them. `None` outside a hook. The temporary
/// directory lives as long as the view.
fn quarantine_view(repo: &gix::Repository) -> Result<Option<(tempfile::TempDir, gix::Repository)>> {
    let Some(quarantine) = std::env::var_os("GIT_QUARANTINE_PATH") else {
        return Ok(None);
    };
    let io = |e| Failure::io("could not set up a view of the push's quarantine", e);
    let main = std::fs::canonicalize(repo.objects.store_ref().path()).map_err(io)?;
    let quarantine = std::fs::canonicalize(quarantine).map_err(io)?;
    let dir = tempfile::tempdir().map_err(io)?;
    let root = dir.path();
    std::fs::create_dir_all(root.join("objects/info")).map_err(io)?;
    std::fs::create_dir_all(root.join("refs")).map_err(io)?;
    std::fs::write(root.join("HEAD"), "ref: refs/heads/main\n").map_err(io)?;
    std::fs::write(
        root.join("config"),
        "[core]\n\trepositoryformatversion = 0\n\tbare = true\n",
    )
    .map_err(io)?;
    let mut alternates = Vec::new();
    for p in [&quarantine, &main] {
        alternates.extend_from_slice(p.as_os_str().as_encoded_bytes());
        alternates.push(b'\n');
    }
    std::fs::write(root.join("objects/info/alternates"), alternates).map_err(io)?;
    let view = gix::open_opts(root, gix::open::Options::isolated()).map_err(|e| {
        Failure::git(format!(
            "could not open a view of the push's quarantine: {e}"
        ))
    })?;
    Ok(Some((dir, view)))
}
