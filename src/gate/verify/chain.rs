//! The consistency of one request chain: everything its commits claim, checked against the
//! chain's own enqueue record, the lifecycle and the repository.
//!
//! One implementation for both places a chain comes from: a push (`verify-push`, objects read
//! through `git cat-file` from the quarantine) and a local repository (`doctor`, objects read
//! with gix). It trusts nothing a commit says:
//!
//! - every commit is one hyperion writes: at most one parent, no extra headers, a UTF-8
//!   message with an event and a record, a tree holding exactly the payload (and artifacts);
//! - the root holds a request that validates, whose id is the ref's, and whose record is the
//!   one enqueue makes of it;
//! - every later commit is a transition the lifecycle allows, by the action that makes it,
//!   and its record is exactly what that action makes of the record before it: the enqueue
//!   record's fields (id, task, agent, title, priority, kind, target, created_at, dedupe key)
//!   never change, attempts count leases, a lease lasts from 1 s to `hyperion.maxLease` and
//!   expires when its event says, a heartbeat renews the owner's lease by its length, a dead
//!   letter has a class and an error code;
//! - event times do not go back (beyond [`CLOCK_SKEW`]) nor lie in the future;
//! - `applied` names a commit that exists, lies on the target branch's first-parent history
//!   and carries `Hyperion-Request: ID`; `rolled_back` names the revert commit, after it on
//!   that history, carrying `Hyperion-Rollback: ID`.
//!
//! Reads are bounded (chain length, object sizes, history walked), so a hostile chain costs
//! bounded time and memory.

use std::collections::HashMap;
use std::time::Duration;

use gix::ObjectId;

use super::objects::{self, Entry, Objects};
use crate::code::Code;
use crate::error::{Problem, Result};
use crate::gate::verify::Error as Check;
use crate::queue::store::{parse_event, parse_record, patch_file_name};
use crate::request::model::{Action, ChangeRequest, DeadClass, Event, Record, Status};

/// How far clocks of the machines sharing a queue may disagree: an event may be this much
/// earlier than the one before it, or this much later than now.
pub const CLOCK_SKEW: Duration = Duration::from_secs(300);
/// Commits in one chain (a lease cycle takes two or three; requeues start new cycles).
pub const MAX_CHAIN: usize = 10_000;
/// Bytes of one chain commit (an event and a record, whose error message may be long).
pub const MAX_CHAIN_COMMIT: u64 = 1 << 20;
/// Bytes of all the commits of one chain together.
pub const MAX_CHAIN_BYTES: u64 = 64 << 20;
/// Bytes of `request.json`.
pub const MAX_REQUEST_JSON: u64 = 16 << 20;
/// Bytes of all the patches of one request together (eight times the default
/// `[limits] request_bytes`; a policy allowing more cannot have such requests pushed).
pub const MAX_PAYLOAD: u64 = 64 << 20;
/// Entries of `changes/`.
pub const MAX_CHANGES: usize = 100_000;
/// Bytes of a commit on a target branch that is read for its trailer.
pub const MAX_TARGET_COMMIT: u64 = 16 << 20;
/// Commits of a target's first-parent history walked to find a landed commit.
pub const MAX_WALK: usize = 1_000_000;

/// The fields a request's enqueue record fixes for good.
const FIXED: &[&str] = &[
    "id",
    "task_id",
    "agent",
    "title",
    "priority",
    "kind",
    "target",
    "created_at",
    "dedupe_key",
    "depends_on",
];
/// The fields that describe a lease.
const LEASE: &[&str] = &["lease_owner", "leased_until", "lease_secs"];

const HINT_UNREADABLE: &str =
    "only git hyperion writes request chains; restore the ref from a clone or an archive";
const HINT_FORGED: &str = "the chain was not written by git hyperion: restore the ref from a clone or an archive, or reset it to the last good commit (`git log` the ref)";
const HINT_SECRET: &str = "what a worker stores is redacted, so this chain was written by hand: remove the secret (and revoke it) and push a chain without it";
/// What the artifacts of one pushed commit may hold in all, and how deep: all of it is read
/// to be scanned for secrets.
const MAX_ARTIFACT_BYTES: u64 = 64 << 20;
const MAX_ARTIFACT_DEPTH: usize = 8;
const HINT_LANDED: &str = "fetch or push the target branch with the chain (`git push --atomic`), or restore the chain: a request is applied only by a commit on its target that carries its trailer";

/// The rules a chain is held to, from the repository that checks it.
#[derive(Debug, Clone)]
pub struct Rules {
    /// `hyperion.maxLease`.
    pub max_lease: Duration,
    /// The time to compare event times with.
    pub now: jiff::Timestamp,
    /// `hyperion.target`: where a request that names no target lands.
    pub default_target: crate::request::target::Target,
    /// Whether the commits a chain names as landed or reverted must be found on its target
    /// (not for a chain fetched with the queue alone, without the branches).
    pub landings: bool,
}

/// One commit of a chain, read.
#[derive(Debug, Clone)]
pub struct Link {
    pub commit: objects::Commit,
    pub event: Event,
    pub record: Record,
    entries: Vec<Entry>,
}

impl Link {
    pub fn parent(&self) -> Option<ObjectId> {
        self.commit.parents.first().copied()
    }

    fn short(&self) -> String {
        short(self.commit.id)
    }
}

/// What checking a chain found.
#[derive(Debug, Default)]
pub struct Checked {
    pub problems: Vec<Problem>,
    /// The root's request, when it could be read and validated.
    pub request: Option<ChangeRequest>,
}

/// The first-parent history of one target tip, walked as far as needed so far: each
/// commit's distance from the tip.
#[derive(Default)]
struct Line {
    depth: HashMap<ObjectId, usize>,
    next: Option<ObjectId>,
    /// Why the walk stopped early, if it did.
    stopped: Option<String>,
}

/// Where a checker reads a target branch's tip (by full ref name).
type TipOf<'a> = Box<dyn FnMut(&str) -> Result<Option<ObjectId>> + 'a>;

/// Checks chains; remembers the target histories it walked.
pub struct Checker<'a> {
    objects: &'a mut dyn Objects,
    rules: Rules,
    /// The tip a target branch (a full ref name) is checked against.
    target_tip: TipOf<'a>,
    lines: HashMap<ObjectId, Line>,
}

impl<'a> Checker<'a> {
    pub fn new(
        objects: &'a mut dyn Objects,
        rules: Rules,
        target_tip: impl FnMut(&str) -> Result<Option<ObjectId>> + 'a,
    ) -> Checker<'a> {
        Checker {
            objects,
            rules,
            target_tip: Box::new(target_tip),
            lines: HashMap::new(),
        }
    }

    pub fn objects(&mut self) -> &mut dyn Objects {
        self.objects
    }

    /// Read the chain ending in `tip`, root first. A problem (`chain.unreadable`) when a
    /// commit is not one hyperion writes or a bound is exceeded.
    pub fn read(&mut self, tip: ObjectId) -> Result<Vec<Link>, Check> {
        let unreadable = |m: String| Problem::new(Code::ChainUnreadable, m, HINT_UNREADABLE);
        let mut links = Vec::new();
        let mut bytes = 0u64;
        let mut next = Some(tip);
        let mut trees: HashMap<ObjectId, Vec<Entry>> = HashMap::new();
        while let Some(id) = next {
            if links.len() >= MAX_CHAIN {
                return Err(Check::Refused(unreadable(format!(
                    "the chain has more than {MAX_CHAIN} commits"
                ))));
            }
            let commit = objects::commit(self.objects, id, MAX_CHAIN_COMMIT, true)
                .map_err(|e| e.refused_as(unreadable))?;
            bytes += commit.message.len() as u64;
            if bytes > MAX_CHAIN_BYTES {
                return Err(Check::Refused(unreadable(format!(
                    "the chain's commits hold more than {MAX_CHAIN_BYTES} bytes"
                ))));
            }
            if commit.parents.len() > 1 {
                return Err(Check::Refused(unreadable(format!(
                    "{} has {} parents; a chain is linear",
                    short(id),
                    commit.parents.len()
                ))));
            }
            let entries = match trees.get(&commit.tree) {
                Some(e) => e.clone(),
                None => {
                    let e =
                        objects::tree(self.objects, commit.tree, 64 << 10, 16).map_err(|e| {
                            e.refused_as(|why| unreadable(format!("{}: {why}", short(id))))
                        })?;
                    trees.insert(commit.tree, e.clone());
                    e
                }
            };
            let Some(event) = parse_event(&commit.message) else {
                return Err(Check::Refused(unreadable(format!(
                    "{} carries no hyperion event",
                    short(id)
                ))));
            };
            let record = match parse_record(&commit.message) {
                Some(r) => Some(r),
                // Chains written before records moved into messages keep it in the tree.
                None => match entries.iter().find(|e| e.name == "state.json") {
                    Some(e) if e.is_file() => {
                        match objects::blob(self.objects, e.id, MAX_CHAIN_COMMIT) {
                            Ok(data) => serde_json::from_slice(&data).ok(),
                            Err(e) => {
                                e.refusal()?;
                                None
                            }
                        }
                    }
                    _ => None,
                },
            };
            let Some(record) = record else {
                return Err(Check::Refused(unreadable(format!(
                    "{} carries no readable record",
                    short(id)
                ))));
            };
            next = commit.parents.first().copied();
            links.push(Link {
                commit,
                event,
                record,
                entries,
            });
        }
        links.reverse();
        Ok(links)
    }

    /// Check the chain `links` (root first) of request `id`. Commits before `fresh_from`
    /// were accepted earlier: they are held to the rules that do not depend on this
    /// repository's settings or branches (those may have changed since), the others to all.
    pub fn check(&mut self, id: &str, links: &[Link], fresh_from: usize) -> Result<Checked> {
        let mut out = Checked::default();
        let Some(root) = links.first() else {
            return Ok(out);
        };
        if self.check_trees(links, &mut out.problems) {
            out.request = self.check_root(id, root, &mut out.problems)?;
        }
        let mut fields_reported = false;
        for (i, pair) in links.windows(2).enumerate() {
            let (prev, link) = (&pair[0], &pair[1]);
            let fresh = i + 1 >= fresh_from;
            self.check_step(prev, link, fresh, &mut fields_reported, &mut out.problems)?;
        }
        for (i, link) in links.iter().enumerate() {
            if link.event.at > later(self.rules.now, CLOCK_SKEW) {
                out.problems.push(time_problem(format!(
                    "{} ({}): its time {} is in the future",
                    link.short(),
                    link.event.action.as_str(),
                    link.event.at
                )));
            }
            if i >= fresh_from.max(1) && self.rules.landings {
                self.check_commits_named(id, links, i, &mut out.problems)?;
            }
            // The root too: it may carry an agent's transcript.
            if i >= fresh_from {
                self.check_secrets(links, i, &mut out.problems)?;
            }
        }
        Ok(out)
    }

    /// A commit new to this repository stores no secret, in its message or its artifacts:
    /// what a worker stores is redacted, and the payload was scanned when it was validated.
    /// Artifacts are read only where they differ from the commit before's.
    fn check_secrets(
        &mut self,
        links: &[Link],
        i: usize,
        problems: &mut Vec<Problem>,
    ) -> Result<()> {
        let link = &links[i];
        let scanner = crate::request::secrets::known();
        let here = format!("{} ({})", link.short(), link.event.action.as_str());
        let found = |what: String, hit: &crate::request::secrets::Hit<'_>| {
            Problem::new(
                Code::ChainSecret,
                format!(
                    "{here}: {what} holds what looks like {} (rule {}); it is not shown here",
                    hit.what, hit.rule
                ),
                HINT_SECRET,
            )
        };
        if let Some(hit) = scanner.find(link.commit.message.as_bytes()) {
            problems.push(found("its message".into(), &hit));
        }
        let artifacts = |l: &Link| {
            l.entries
                .iter()
                .find(|e| e.name == "artifacts")
                .map(|e| e.id)
        };
        let Some(tree) = artifacts(link) else {
            return Ok(());
        };
        if i > 0 && artifacts(&links[i - 1]) == Some(tree) {
            return Ok(());
        }
        let unreadable = |why: String| {
            Problem::new(
                Code::ChainUnreadable,
                format!("{here}: its artifacts: {why}"),
                HINT_UNREADABLE,
            )
        };
        let mut budget = MAX_ARTIFACT_BYTES;
        let mut stack = vec![("artifacts".to_owned(), tree, 0usize)];
        while let Some((path, id, depth)) = stack.pop() {
            let entries = match objects::tree(self.objects, id, MAX_CHAIN_COMMIT, 10_000) {
                Ok(entries) => entries,
                Err(e) => {
                    problems.push(unreadable(e.refusal()?));
                    return Ok(());
                }
            };
            for e in entries {
                let p = format!("{path}/{}", e.name.escape_debug());
                if let Some(hit) = scanner.find(e.name.as_bytes()) {
                    problems.push(found(format!("the name of {p}"), &hit));
                }
                if e.is_tree() {
                    if depth + 1 > MAX_ARTIFACT_DEPTH {
                        problems.push(unreadable(format!(
                            "{p} is nested deeper than {MAX_ARTIFACT_DEPTH} directories"
                        )));
                        return Ok(());
                    }
                    stack.push((p, e.id, depth + 1));
                    continue;
                }
                let data = match objects::blob(self.objects, e.id, budget) {
                    Ok(data) => data,
                    Err(e) => {
                        let why = e.refusal()?;
                        problems.push(unreadable(format!(
                            "{p}: {why} (the artifacts of one commit hold at most {MAX_ARTIFACT_BYTES} bytes)"
                        )));
                        return Ok(());
                    }
                };
                budget -= data.len() as u64;
                if let Some(hit) = scanner.find(&data) {
                    problems.push(found(p, &hit));
                }
            }
        }
        Ok(())
    }

    /// Every commit holds the root's payload, byte for byte, and nothing but artifacts
    /// besides.
    fn check_trees(&mut self, links: &[Link], problems: &mut Vec<Problem>) -> bool {
        let root = &links[0];
        let payload = |l: &Link, name: &str| l.entries.iter().find(|e| e.name == name).cloned();
        let (request, changes) = (payload(root, "request.json"), payload(root, "changes"));
        for (i, link) in links.iter().enumerate() {
            let legacy = parse_record(&link.commit.message).is_none();
            let mut wrong = Vec::new();
            for e in &link.entries {
                let (fits, what) = match e.name.as_str() {
                    "request.json" => (e.is_file(), "a regular file"),
                    "changes" => (e.is_tree(), "a directory"),
                    // The root may hold an agent's transcript (`artifacts/transcript.jsonl`).
                    "artifacts" => (e.is_tree(), "a directory"),
                    "state.json" => (e.is_file() && legacy, "a regular file of an old chain"),
                    _ => (false, ""),
                };
                if what.is_empty() {
                    wrong.push(format!(
                        "'{}', which hyperion does not write",
                        e.name.escape_debug()
                    ));
                } else if !fits {
                    wrong.push(format!(
                        "{} with mode {:o}, where hyperion writes {what}",
                        e.name, e.mode
                    ));
                }
            }
            if request.is_none() || changes.is_none() {
                wrong.push("no request.json or no changes/".into());
            }
            if !wrong.is_empty() {
                problems.push(Problem::new(
                    Code::ChainUnreadable,
                    format!("{}: its tree holds {}", link.short(), wrong.join("; ")),
                    HINT_UNREADABLE,
                ));
                return false;
            }
            if i > 0
                && (payload(link, "request.json") != request || payload(link, "changes") != changes)
            {
                problems.push(Problem::new(
                    Code::ChainPayloadChanged,
                    format!(
                        "{} ({}): the request or its patches were changed after enqueue",
                        link.short(),
                        link.event.action.as_str()
                    ),
                    HINT_FORGED,
                ));
                return false;
            }
        }
        true
    }

    /// The root: an enqueue of a request that validates, stored under its own id, with the
    /// record enqueue makes of it.
    fn check_root(
        &mut self,
        id: &str,
        root: &Link,
        problems: &mut Vec<Problem>,
    ) -> Result<Option<ChangeRequest>> {
        let ev = &root.event;
        let enqueue = ev.action == Action::Enqueue && ev.from.is_none() && ev.to.may_start();
        if !enqueue {
            problems.push(Problem::new(
                Code::ChainIllegalTransition,
                format!(
                    "the chain starts with {} ({} -> {}), not with enqueue",
                    ev.action.as_str(),
                    status_name(ev.from),
                    ev.to
                ),
                HINT_FORGED,
            ));
        }
        let request = match self.request(root) {
            Ok(value) => value,
            Err(e) => {
                problems.push(e.refusal()?);
                return Ok(None);
            }
        };
        let req = match crate::request::validate::validate_value(&request.0) {
            Ok(req) => req,
            Err(ps) => {
                problems.extend(ps);
                return Ok(None);
            }
        };
        let canonical =
            serde_json::to_vec_pretty(&req.without_patches()).expect("a ChangeRequest serialises");
        if canonical != request.1 {
            problems.push(Problem::new(
                Code::ChainUnreadable,
                "request.json is not in the form git hyperion writes",
                HINT_UNREADABLE,
            ));
        }
        if req.id() != id {
            problems.push(Problem::new(
                Code::ChainWrongId,
                format!(
                    "the request's id (its dedupe key) is {}, but its chain is stored as {id}",
                    req.id()
                ),
                HINT_FORGED,
            ));
        }
        let mut expected = Record::new(&req, ev.at);
        if ev.to == Status::AwaitingApproval {
            // Which tiers it waits for is the enqueuing side's judgement; that it names some
            // is the form. The worker judges the approval again by the target's policy.
            expected.status = Status::AwaitingApproval;
            expected.approval_tiers = root.record.approval_tiers.clone();
            if expected.approval_tiers.is_empty() {
                problems.push(Problem::new(
                    Code::ChainRecordMismatch,
                    format!("{} (enqueue): awaits approval for no tier", root.short()),
                    HINT_FORGED,
                ));
            }
        }
        // Which requests `depends_on` named is the enqueuing side's judgement (a task id
        // resolves to the newest request of the task then); that it names full ids, at most
        // one per entry, is the form. The worker lands it only on top of them.
        let deps = &root.record.depends_on;
        if deps.len() <= req.depends_on.len()
            && deps.iter().all(|d| crate::request::model::is_id(d))
        {
            expected.depends_on = deps.clone();
        }
        if req.id() != id {
            // Reported above; the record's id and key would only say it again.
            expected.id = root.record.id.clone();
            expected.dedupe_key = root.record.dedupe_key.clone();
        }
        if !enqueue {
            // What the root claims to be was reported; its record is not an enqueue's.
            return Ok(Some(req));
        }
        report_differences(
            &format!("{} (enqueue)", root.short()),
            "the request",
            &expected,
            &root.record,
            problems,
        );
        Ok(Some(req))
    }

    /// The root's request (JSON, with its patches put back) and the bytes of request.json.
    fn request(&mut self, root: &Link) -> Result<(serde_json::Value, Vec<u8>), Check> {
        let bad = |m: String| Problem::new(Code::ChainUnreadable, m, HINT_UNREADABLE);
        let find = |name: &str| root.entries.iter().find(|e| e.name == name).cloned();
        let (Some(json), Some(changes)) = (find("request.json"), find("changes")) else {
            return Err(Check::Refused(bad(
                "the root lacks request.json or changes/".into(),
            )));
        };
        if !json.is_file() || !changes.is_tree() {
            return Err(Check::Refused(bad(
                "request.json is not a regular file or changes/ not a directory".into(),
            )));
        }
        let bytes = objects::blob(self.objects, json.id, MAX_REQUEST_JSON)
            .map_err(|e| e.refused_as(|why| bad(format!("request.json: {why}"))))?;
        let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            return Err(Check::Refused(bad("request.json is not JSON".into())));
        };
        let n = value["changes"].as_array().map_or(0, Vec::len);
        let entries = objects::tree(self.objects, changes.id, 64 << 20, MAX_CHANGES)
            .map_err(|e| e.refused_as(|why| bad(format!("changes/: {why}"))))?;
        if entries.len() != n {
            return Err(Check::Refused(bad(format!(
                "changes/ holds {} entries for {n} changes",
                entries.len()
            ))));
        }
        // Sizes first: a request whose patches together exceed the bound is not read.
        let mut total = 0u64;
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let name = patch_file_name(i);
            let Some(e) = entries.iter().find(|e| e.name == name) else {
                return Err(Check::Refused(bad(format!("changes/{name} is missing"))));
            };
            if !e.is_file() {
                return Err(Check::Refused(bad(format!(
                    "changes/{name} is not a regular file"
                ))));
            }
            match self.objects.header(e.id)? {
                Some((gix::objs::Kind::Blob, size)) => total += size,
                _ => {
                    return Err(Check::Refused(bad(format!(
                        "changes/{name} is not a readable blob"
                    ))));
                }
            }
            ids.push(e.id);
        }
        if total > MAX_PAYLOAD {
            return Err(Check::Refused(bad(format!(
                "the patches hold {total} bytes, more than the {MAX_PAYLOAD} a push may carry"
            ))));
        }
        for (i, blob) in ids.into_iter().enumerate() {
            let data = objects::blob(self.objects, blob, MAX_PAYLOAD).map_err(|e| {
                e.refused_as(|why| bad(format!("changes/{}: {why}", patch_file_name(i))))
            })?;
            let Ok(text) = String::from_utf8(data) else {
                return Err(Check::Refused(bad(format!(
                    "changes/{} is not UTF-8",
                    patch_file_name(i)
                ))));
            };
            value["changes"][i]["patch"] = text.into();
        }
        Ok((value, bytes))
    }

    /// One transition: `link` after `prev`.
    fn check_step(
        &mut self,
        prev: &Link,
        link: &Link,
        fresh: bool,
        fields_reported: &mut bool,
        problems: &mut Vec<Problem>,
    ) -> Result<()> {
        let (p, ev, r) = (&prev.record, &link.event, &link.record);
        let here = format!("{} ({})", link.short(), ev.action.as_str());
        let forged = |code: Code, m: String| Problem::new(code, m, HINT_FORGED);
        if ev.from != Some(p.status)
            || !p.status.may_become(ev.to)
            || !action_fits(ev.action, ev.from, ev.to)
        {
            problems.push(forged(
                Code::ChainIllegalTransition,
                format!(
                    "{here}: {} -> {} does not follow a record that is {}",
                    status_name(ev.from),
                    ev.to,
                    p.status
                ),
            ));
            // What follows an illegal step cannot be judged against it.
            return Ok(());
        }
        if later(ev.at, CLOCK_SKEW) < prev.event.at {
            problems.push(time_problem(format!(
                "{here}: its time {} is before the time of the transition before it ({})",
                ev.at, prev.event.at
            )));
        }
        let secs = |d: jiff::SignedDuration| d.as_secs_f64();
        let lease_problem = |m: String| Problem::new(Code::ChainBadLease, m, HINT_FORGED);
        // The worker that holds the lease is the one acting (for an expiry: whose it was).
        let holder_acts = matches!(
            ev.action,
            Action::Heartbeat
                | Action::Release
                | Action::Retry
                | Action::Land
                | Action::Fail
                | Action::Expire
                | Action::Hold
        );
        if holder_acts && (ev.worker.is_none() || ev.worker != p.lease_owner) {
            problems.push(lease_problem(format!(
                "{here}: made by worker {}, but the lease is held by {}",
                ev.worker.as_deref().unwrap_or("(none)").escape_debug(),
                p.lease_owner
                    .as_deref()
                    .unwrap_or("(nobody)")
                    .escape_debug()
            )));
        }
        let mut expected = p.clone();
        expected.status = ev.to;
        expected.updated_at = ev.at;
        let mut event_until = None;
        match ev.action {
            Action::Lease => {
                match (&ev.worker, ev.leased_until) {
                    (Some(w), Some(until)) if crate::queue::check_worker(w).is_ok() => {
                        let length = until.duration_since(ev.at);
                        if length < jiff::SignedDuration::from_secs(1) {
                            problems.push(lease_problem(format!(
                                "{here}: a lease of {:.3}s; leases last at least 1s",
                                secs(length)
                            )));
                        } else if fresh && secs(length) > self.rules.max_lease.as_secs_f64() {
                            problems.push(lease_problem(format!(
                                "{here}: a lease of {}, longer than hyperion.maxLease ({})",
                                crate::duration::format(Duration::from_secs(
                                    length.as_secs().max(0) as u64
                                )),
                                crate::duration::format(self.rules.max_lease)
                            )));
                        }
                        expected.lease_owner = Some(w.clone());
                        expected.leased_until = Some(until);
                        expected.lease_secs = Some((length.as_secs().max(1)) as u64);
                    }
                    _ => problems.push(lease_problem(format!(
                        "{here}: the event names no usable worker id (1-128 characters, no spaces or control characters) or no expiry"
                    ))),
                }
                event_until = ev.leased_until;
                expected.attempts = p.attempts.saturating_add(1);
                expected.not_before = None;
            }
            Action::Heartbeat => {
                let renewed = match (ev.leased_until, p.lease_secs) {
                    (Some(until), Some(s)) => {
                        until.duration_since(ev.at) == jiff::SignedDuration::from_secs(s as i64)
                    }
                    _ => false,
                };
                if !renewed {
                    problems.push(lease_problem(format!(
                        "{here}: the lease is renewed until {}, not by its length ({}s) from the heartbeat's time {}",
                        ev.leased_until.map(|t| t.to_string()).unwrap_or_else(|| "(none)".into()),
                        p.lease_secs.unwrap_or(0),
                        ev.at
                    )));
                }
                event_until = ev.leased_until;
                expected.leased_until = ev.leased_until;
            }
            Action::Release => {
                expected.clear_lease();
                expected.attempts = p.attempts.saturating_sub(1);
            }
            Action::Land => {
                expected.clear_lease();
                expected.error = None;
                expected.landed_commit = r.landed_commit.clone();
                if r.landed_commit.is_none() {
                    problems.push(Problem::new(
                        Code::ChainLanded,
                        format!("{here}: applied without a landed commit"),
                        HINT_LANDED,
                    ));
                }
            }
            Action::Fail | Action::Retry | Action::Expire => {
                expected.clear_lease();
                if ev.action == Action::Expire
                    && p.leased_until
                        .is_some_and(|until| later(ev.at, CLOCK_SKEW) < until)
                {
                    problems.push(lease_problem(format!(
                        "{here}: the lease was expired at {}, before it ran out",
                        ev.at
                    )));
                }
                let expiry = ev.action == Action::Expire;
                let error_code = if expiry {
                    Some(Code::LeaseExpired.as_str())
                } else {
                    r.error.as_ref().map(|e| e.code.as_str())
                };
                let coded =
                    error_code.is_some_and(|c| !c.is_empty()) && ev.code.as_deref() == error_code;
                match ev.to {
                    Status::Dead => {
                        expected.dead_class = if expiry {
                            Some(DeadClass::Lease)
                        } else {
                            r.dead_class
                        };
                        expected.error = r.error.clone();
                        let ok = r.dead_class.is_some()
                            && coded
                            && r.error.as_ref().map(|e| e.code.as_str()) == error_code;
                        if !ok {
                            problems.push(forged(
                                Code::ChainRecordMismatch,
                                format!(
                                    "{here}: a dead letter needs a class and an error code that its event names"
                                ),
                            ));
                        }
                    }
                    _ => {
                        if !expiry {
                            expected.error = r.error.clone();
                            if !coded || r.error.is_none() {
                                problems.push(forged(
                                    Code::ChainRecordMismatch,
                                    format!(
                                        "{here}: a retry needs an error code that its event names"
                                    ),
                                ));
                            }
                        } else if !coded {
                            problems.push(forged(
                                Code::ChainRecordMismatch,
                                format!("{here}: an expiry's event names code lease.expired"),
                            ));
                        }
                        expected.not_before = r.not_before;
                        let max = jiff::SignedDuration::try_from(crate::queue::MAX_BACKOFF)
                            .expect("the backoff bound fits");
                        let fits = r
                            .not_before
                            .is_some_and(|t| t >= ev.at && t.duration_since(ev.at) <= max);
                        if !fits {
                            problems.push(forged(
                                Code::ChainRecordMismatch,
                                format!(
                                    "{here}: a retry waits until {}, not within the backoff bound ({}) after {}",
                                    r.not_before
                                        .map(|t| t.to_string())
                                        .unwrap_or_else(|| "(never set)".into()),
                                    crate::duration::format(crate::queue::MAX_BACKOFF),
                                    ev.at
                                ),
                            ));
                        }
                    }
                }
            }
            Action::Requeue => {
                expected.approved_by = None;
                expected.approval_tiers = r.approval_tiers.clone();
                expected.dead_class = None;
                expected.error = None;
                expected.attempts = 0;
                expected.not_before = None;
                if ev.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
                    problems.push(forged(
                        Code::ChainRecordMismatch,
                        format!("{here}: a requeue without a reason"),
                    ));
                }
            }
            Action::Rollback => {
                expected.rolled_back_by = r.rolled_back_by.clone();
                if r.rolled_back_by.is_none() {
                    problems.push(Problem::new(
                        Code::ChainRolledBack,
                        format!("{here}: rolled back without a revert commit"),
                        HINT_LANDED,
                    ));
                }
            }
            Action::Approve => {
                expected.error = None;
                expected.not_before = None;
                expected.approved_by = Some(ev.actor.clone());
                expected.approval_tiers = r.approval_tiers.clone();
            }
            Action::Reject => {
                expected.dead_class = Some(DeadClass::Rejected);
                expected.approved_by = None;
                expected.error = r.error.clone();
                let coded = ev.code.as_deref() == Some(Code::ApprovalRejected.as_str())
                    && r.error.as_ref().map(|e| e.code.as_str())
                        == Some(Code::ApprovalRejected.as_str());
                if !coded || ev.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
                    problems.push(forged(
                        Code::ChainRecordMismatch,
                        format!(
                            "{here}: a rejection needs a reason and code approval.rejected in its event and record"
                        ),
                    ));
                }
            }
            Action::Hold => {
                expected.clear_lease();
                expected.attempts = p.attempts.saturating_sub(1);
                expected.approved_by = None;
                expected.approval_tiers = r.approval_tiers.clone();
                expected.error = r.error.clone();
                let coded = ev.code.as_deref() == Some(Code::ApprovalRequired.as_str())
                    && r.error.as_ref().map(|e| e.code.as_str())
                        == Some(Code::ApprovalRequired.as_str());
                if !coded || r.approval_tiers.is_empty() {
                    problems.push(forged(
                        Code::ChainRecordMismatch,
                        format!(
                            "{here}: a hold needs the tiers it waits for and code approval.required in its event and record"
                        ),
                    ));
                }
            }
            Action::Cancel => {
                expected.dead_class = Some(DeadClass::Dependency);
                expected.error = r.error.clone();
                let dead = Some(Code::RequestDependencyDead.as_str());
                let coded =
                    ev.code.as_deref() == dead && r.error.as_ref().map(|e| e.code.as_str()) == dead;
                if !coded {
                    problems.push(forged(
                        Code::ChainRecordMismatch,
                        format!(
                            "{here}: a cancel needs code request.dependency_dead in its event and record"
                        ),
                    ));
                }
            }
            Action::Enqueue => {}
        }
        if ev.leased_until != event_until {
            problems.push(lease_problem(format!(
                "{here}: the event names a lease expiry, which only a lease or heartbeat does"
            )));
        }
        if !*fields_reported {
            let before = problems.len();
            report_differences(&here, "the transition", &expected, r, problems);
            // One report of a changed enqueue field is enough: every later record repeats it.
            *fields_reported = problems[before..]
                .iter()
                .any(|p| p.code == Code::ChainFieldChanged);
        } else {
            let mut rest = Vec::new();
            report_differences(&here, "the transition", &expected, r, &mut rest);
            problems.extend(
                rest.into_iter()
                    .filter(|p| p.code != Code::ChainFieldChanged),
            );
        }
        Ok(())
    }

    /// The commits named by the record of `links[i]` when its event made them: a landing's
    /// commit and a rollback's revert.
    fn check_commits_named(
        &mut self,
        id: &str,
        links: &[Link],
        i: usize,
        problems: &mut Vec<Problem>,
    ) -> Result<()> {
        let link = &links[i];
        let here = format!("{} ({})", link.short(), link.event.action.as_str());
        let r = &link.record;
        let target = match crate::request::target::Target::of_request(
            r.target.as_deref(),
            &self.rules.default_target,
        ) {
            Ok(t) => t,
            Err(p) => {
                problems.push(p);
                return Ok(());
            }
        };
        let target = &target;
        let problem = |code: Code, m: String| Problem::new(code, m, HINT_LANDED);
        match link.event.action {
            Action::Land => {
                let Some(hex) = &r.landed_commit else {
                    return Ok(());
                };
                if let Err(e) =
                    self.named_commit(hex, crate::gate::land::TRAILER_REQUEST, id, target)
                {
                    let why = e.refusal()?;
                    problems.push(problem(
                        Code::ChainLanded,
                        format!("{here}: applied as {}, but {why}", hex.escape_debug()),
                    ));
                }
            }
            Action::Rollback => {
                let Some(hex) = &r.rolled_back_by else {
                    return Ok(());
                };
                match self.named_commit(hex, crate::gate::land::TRAILER_ROLLBACK, id, target) {
                    Ok(depth) => {
                        // The revert comes after the landed commit.
                        let landed = r
                            .landed_commit
                            .as_deref()
                            .and_then(|h| full_id(h, self.objects.hash_kind()));
                        let tip = self.tip_of(target.refname())?;
                        let landed_depth = match (landed, tip) {
                            (Some(l), Some(t)) => self.depth(t, l)?,
                            _ => None,
                        };
                        if landed_depth.is_none_or(|d| d <= depth) {
                            problems.push(problem(
                                Code::ChainRolledBack,
                                format!(
                                    "{here}: reverted by {hex}, which does not come after the landed commit on {}",
                                    target.name().escape_debug()
                                ),
                            ));
                        }
                    }
                    Err(why) => problems.push(problem(
                        Code::ChainRolledBack,
                        format!("{here}: reverted by {}, but {why}", hex.escape_debug()),
                    )),
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The tip of the branch `refname` (a [`crate::request::target::Target`]'s ref).
    fn tip_of(&mut self, refname: &str) -> Result<Option<ObjectId>> {
        (self.target_tip)(refname)
    }

    /// Commit `hex` exists, carries `key: id` as a trailer and lies on `target`'s
    /// first-parent history: its distance from the tip, or why not.
    fn named_commit(
        &mut self,
        hex: &str,
        key: &str,
        id: &str,
        target: &crate::request::target::Target,
    ) -> Result<usize, Check<objects::Refusal>> {
        let Some(commit) = full_id(hex, self.objects.hash_kind()) else {
            return Err(Check::Refused("that is not a full commit id".into()));
        };
        let c = objects::commit(self.objects, commit, MAX_TARGET_COMMIT, false)?;
        match crate::git::message::trailer(&c.message, key) {
            Some(t) if t == id => {}
            Some(other) => {
                return Err(Check::Refused(format!(
                    "that commit's trailer is '{key}: {}', another request's",
                    other.escape_debug()
                )));
            }
            None => {
                return Err(Check::Refused(format!(
                    "that commit carries no '{key}: {id}' trailer"
                )));
            }
        }
        let Some(tip) = self.tip_of(target.refname())? else {
            return Err(Check::Refused(format!(
                "the target branch {} does not exist",
                target.name().escape_debug()
            )));
        };
        match self.depth(tip, commit)? {
            Some(d) => Ok(d),
            None => {
                let line = self.lines.get(&tip).and_then(|l| l.stopped.clone());
                Err(Check::Refused(match line {
                    Some(why) => {
                        format!(
                            "it was not found on {}'s first-parent history ({why})",
                            target.name().escape_debug()
                        )
                    }
                    None => format!(
                        "it is not on {}'s first-parent history",
                        target.name().escape_debug()
                    ),
                }))
            }
        }
    }

    /// How far `commit` is from `tip` along first parents, if it is on that line.
    fn depth(&mut self, tip: ObjectId, commit: ObjectId) -> Result<Option<usize>> {
        let line = self.lines.entry(tip).or_insert_with(|| Line {
            next: Some(tip),
            ..Line::default()
        });
        loop {
            if let Some(d) = line.depth.get(&commit) {
                return Ok(Some(*d));
            }
            let Some(next) = line.next else {
                return Ok(None);
            };
            if line.depth.len() >= MAX_WALK {
                line.stopped = Some(format!("walked {MAX_WALK} commits"));
                line.next = None;
                return Ok(None);
            }
            match objects::commit(self.objects, next, MAX_TARGET_COMMIT, false) {
                Ok(c) => {
                    let d = line.depth.len();
                    line.depth.insert(next, d);
                    line.next = c.parents.first().copied();
                }
                Err(e) => {
                    line.stopped = Some(e.refusal()?);
                    line.next = None;
                }
            }
        }
    }
}

/// Which action makes which transition.
fn action_fits(action: Action, from: Option<Status>, to: Status) -> bool {
    use Action::*;
    use Status::*;
    matches!(
        (action, from, to),
        (Enqueue, None, Pending | AwaitingApproval)
            | (Approve, Some(AwaitingApproval), Pending)
            | (Reject, Some(AwaitingApproval), Dead)
            | (Hold, Some(Leased), AwaitingApproval)
            | (Lease, Some(Pending), Leased)
            | (Heartbeat, Some(Leased), Leased)
            | (Release | Retry | Expire, Some(Leased), Pending)
            | (Land, Some(Leased), Applied)
            | (Fail | Expire, Some(Leased), Dead)
            | (Requeue, Some(Dead), Pending | AwaitingApproval)
            | (Rollback, Some(Applied), RolledBack)
            | (Cancel, Some(Pending), Dead)
    )
}

/// `hex` as an object id, if it is a full one.
fn full_id(hex: &str, kind: gix::hash::Kind) -> Option<ObjectId> {
    (hex.len() == kind.len_in_hex())
        .then(|| ObjectId::from_hex(hex.as_bytes()).ok())
        .flatten()
}

/// Report how `got` differs from `expected`: changed enqueue fields as
/// `chain.field_changed`, lease fields as `chain.bad_lease`, the rest as
/// `chain.record_mismatch`.
fn report_differences(
    here: &str,
    source: &str,
    expected: &Record,
    got: &Record,
    problems: &mut Vec<Problem>,
) {
    if expected == got {
        return;
    }
    let (e, g) = (
        serde_json::to_value(expected).expect("a Record serialises"),
        serde_json::to_value(got).expect("a Record serialises"),
    );
    let (Some(e), Some(g)) = (e.as_object(), g.as_object()) else {
        return;
    };
    let mut keys: Vec<&String> = e.keys().chain(g.keys()).collect();
    keys.sort();
    keys.dedup();
    let null = serde_json::Value::Null;
    let mut by_code: Vec<(Code, Vec<String>)> = Vec::new();
    for k in keys {
        let (a, b) = (e.get(k).unwrap_or(&null), g.get(k).unwrap_or(&null));
        if a == b {
            continue;
        }
        let code = if FIXED.contains(&k.as_str()) {
            Code::ChainFieldChanged
        } else if LEASE.contains(&k.as_str()) {
            Code::ChainBadLease
        } else {
            Code::ChainRecordMismatch
        };
        let text = format!("{k} is {}, {source} makes it {}", clip(b), clip(a));
        match by_code.iter_mut().find(|(c, _)| *c == code) {
            Some((_, v)) => v.push(text),
            None => by_code.push((code, vec![text])),
        }
    }
    for (code, texts) in by_code {
        let hint = if code == Code::ChainFieldChanged {
            "the fields of a request's enqueue record never change: the chain was edited; restore it from a clone or an archive"
        } else {
            HINT_FORGED
        };
        problems.push(Problem::new(
            code,
            format!("{here}: {}", texts.join("; ")),
            hint,
        ));
    }
}

/// A JSON value for a message, cut short.
fn clip(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.len() > 80 {
        let mut end = 77;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s
    }
}

/// `t + d`, or the latest time there is: a forged time near the end of the calendar must not
/// overflow.
fn later(t: jiff::Timestamp, d: Duration) -> jiff::Timestamp {
    t.checked_add(d).unwrap_or(jiff::Timestamp::MAX)
}

fn time_problem(message: String) -> Problem {
    Problem::new(
        Code::ChainTime,
        message,
        "event times come from the clock of the machine that made the transition; check its clock, or restore the chain",
    )
}

fn status_name(s: Option<Status>) -> &'static str {
    s.map_or("(none)", Status::as_str)
}

fn short(id: ObjectId) -> String {
    id.to_hex_with_len(12).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_makes_only_legal_transitions() {
        let actions = [
            Action::Enqueue,
            Action::Lease,
            Action::Heartbeat,
            Action::Release,
            Action::Expire,
            Action::Retry,
            Action::Land,
            Action::Fail,
            Action::Requeue,
            Action::Rollback,
            Action::Approve,
        ];
        for a in actions {
            for from in Status::ALL {
                for to in Status::ALL {
                    if action_fits(a, Some(from), to) {
                        assert!(from.may_become(to), "{a:?}: {from} -> {to}");
                    }
                }
            }
        }
        assert!(!action_fits(
            Action::Heartbeat,
            Some(Status::Pending),
            Status::Leased
        ));
        assert!(!action_fits(
            Action::Land,
            Some(Status::Leased),
            Status::Dead
        ));
    }
}
