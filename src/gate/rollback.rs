//! Rollback: a revert commit for a landed request, on top of the target's current tip.
//!
//! The revert is a 3-way merge per file the request changed: base = the landed commit's
//! file, ours = the file at the tip, theirs = the file before the request. Files nobody
//! touched since simply go back; files changed since are merged; anything that does not merge
//! cleanly refuses the rollback and changes nothing. The target moves by compare-and-swap (a
//! clean checkout of it is brought along, as for landing) and the request records
//! `rolled_back` with the reason and the revert commit.

use gix::ObjectId;
use gix::objs::tree::EntryKind;
use serde::Serialize;

use crate::code::Code;
use crate::error::Error as Failure;
use crate::gate::land::{self, Blocked};
use crate::queue::Queue;
use crate::request::apply::{Merged, merge_text};
use crate::request::model::{Record, Status};
use crate::request::target::Target;

/// A revert ready to land (or shown by `--dry-run`).
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub id: String,
    pub title: String,
    #[serde(serialize_with = "crate::request::target::serialize_name")]
    pub target: Target,
    /// The commit that landed the request.
    pub landed: String,
    /// The target tip the revert is built on.
    pub tip: String,
    /// Paths the revert changes.
    pub files: Vec<String>,
    #[serde(skip)]
    tree: ObjectId,
    #[serde(skip)]
    tip_id: ObjectId,
    #[serde(skip)]
    landed_id: ObjectId,
}

/// Why a rollback was refused. Each has a stable code (docs/errors.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotApplied {
        status: Status,
    },
    /// The landed commit is not on the target's first-parent history any more.
    NotOnTarget {
        landed: String,
        target: String,
    },
    /// Later commits changed the same lines.
    Conflict {
        paths: Vec<String>,
    },
    /// The target already has none of the request's changes.
    AlreadyReverted,
    /// The target could not be moved.
    Target {
        code: Code,
        message: String,
    },
}

impl Refusal {
    pub fn code(&self) -> Code {
        match self {
            Refusal::NotApplied { .. } => Code::RollbackNotApplied,
            Refusal::NotOnTarget { .. } => Code::RollbackNotOnTarget,
            Refusal::Conflict { .. } => Code::RollbackConflict,
            Refusal::AlreadyReverted => Code::RollbackAlreadyReverted,
            Refusal::Target { code, .. } => *code,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Refusal::NotApplied { status } => {
                format!("the request is {status}; only an applied request can be rolled back")
            }
            Refusal::NotOnTarget { landed, target } => {
                format!("its commit {landed} is no longer on {target}")
            }
            Refusal::Conflict { paths } => format!(
                "later commits changed the same lines; the revert conflicts in {}",
                paths.join(", ")
            ),
            Refusal::AlreadyReverted => {
                "the target no longer has any of the request's changes".to_owned()
            }
            Refusal::Target { message, .. } => message.clone(),
        }
    }

    pub fn hint(&self) -> &'static str {
        match self {
            Refusal::Conflict { .. } => {
                "revert by hand (`git revert` the landed commit and resolve), or roll back the later requests first"
            }
            Refusal::Target { code, .. } => land::hint(*code),
            _ => "see `git hyperion show ID` for the request's history",
        }
    }
}

/// Why a rollback did not happen: refused, with a code of its own, or failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", .0.message())]
    Refused(Refusal),
    #[error(transparent)]
    Failed(#[from] Failure),
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Error {
        Error::Refused(r)
    }
}

impl Error {
    /// The stable code (docs/errors.md).
    pub fn code(&self) -> Code {
        match self {
            Error::Refused(r) => r.code(),
            Error::Failed(e) => e.code(),
        }
    }
}

/// The most recently landed request on `target` that is still applied.
pub fn last(queue: &Queue, target: &Target) -> crate::Result<Option<String>> {
    let repo = queue.store().repo();
    let Some(mut next) = target.tip(repo)? else {
        return Ok(None);
    };
    for _ in 0..100_000 {
        let commit = repo
            .find_commit(next)
            .map_err(|e| Failure::git(format!("cannot read commit {next}: {e}")))?;
        let decoded = commit
            .decode()
            .map_err(|e| Failure::git(format!("cannot decode commit {next}: {e}")))?;
        let message = decoded.message.to_string();
        if let Some(id) = crate::git::message::trailer(&message, land::TRAILER_REQUEST)
            && let Ok(details) = queue.show(id)
            && details.record.status == Status::Applied
            && details.record.landed_commit.as_deref() == Some(next.to_string().as_str())
        {
            return Ok(Some(id.to_owned()));
        }
        match decoded.parents().next() {
            Some(p) => next = p,
            None => break,
        }
    }
    Ok(None)
}

/// Work out the revert of `record` on its target's current tip.
pub fn plan(queue: &Queue, record: &Record) -> Result<Plan, Error> {
    if record.status != Status::Applied {
        return Err(Error::Refused(Refusal::NotApplied {
            status: record.status,
        }));
    }
    let repo = queue.store().repo();
    let target = match Target::of_request(record.target.as_deref(), &queue.settings().target) {
        Ok(t) => t,
        Err(p) => {
            return Err(Error::Refused(Refusal::Target {
                code: p.code,
                message: p.message,
            }));
        }
    };
    let landed_hex = record.landed_commit.clone().unwrap_or_default();
    let landed = ObjectId::from_hex(landed_hex.as_bytes())
        .map_err(|e| Failure::git(format!("bad landed commit '{landed_hex}': {e}")))?;
    let Some(tip) = target.tip(repo)? else {
        return Err(Error::Refused(Refusal::NotOnTarget {
            landed: landed_hex,
            target: target.to_string(),
        }));
    };
    if !crate::git::tree::on_first_parent_line(repo, tip, landed)? {
        return Err(Error::Refused(Refusal::NotOnTarget {
            landed: landed_hex,
            target: target.to_string(),
        }));
    }
    let commit = repo
        .find_commit(landed)
        .map_err(|e| Failure::git(format!("cannot read {landed}: {e}")))?;
    let before = match commit.parent_ids().next() {
        Some(p) => crate::git::tree::tree_of(repo, p.detach())?,
        None => repo.empty_tree().id,
    };
    let after = crate::git::tree::tree_of(repo, landed)?;
    let tip_tree = crate::git::tree::tree_of(repo, tip)?;
    // Every file the landing changed: (path, its entry before the landing, after it).
    let side = |s| -> Side {
        crate::git::tree::Change::file(s)
            .map(|(m, id): (gix::objs::tree::EntryMode, ObjectId)| (m.kind(), id))
    };
    let changed: Vec<(String, Side, Side)> =
        crate::git::tree::diff(repo, Some(before), Some(after))?
            .into_iter()
            .map(|c| (c.path.to_string(), side(c.old), side(c.new)))
            .filter(|(_, before, after)| before != after)
            .collect();

    let tip_root = repo
        .find_tree(tip_tree)
        .map_err(|e| Failure::git(format!("cannot read {tip_tree}: {e}")))?;
    let mut editor = repo
        .edit_tree(tip_tree)
        .map_err(|e| Failure::git(format!("cannot edit {tip_tree}: {e}")))?;
    let mut conflicts = Vec::new();
    let mut files = Vec::new();
    for (path, theirs, base) in &changed {
        let ours = tip_root
            .lookup_entry_by_path(path.as_str())
            .map_err(|e| Failure::git(format!("cannot look up {path}: {e}")))?
            .and_then(|e| {
                let kind = e.mode().kind();
                (kind != EntryKind::Tree).then(|| (kind, e.object_id()))
            });
        let result = if ours == *base {
            *theirs
        } else if ours == *theirs {
            continue;
        } else if let (Some(b), Some(o), Some(t)) = (base, ours, theirs) {
            let read = |id: ObjectId| -> crate::Result<Vec<u8>> {
                Ok(repo
                    .find_object(id)
                    .map_err(|e| Failure::git(format!("cannot read {id}: {e}")))?
                    .detach()
                    .data)
            };
            match merge_text(&read(b.1)?, &read(o.1)?, &read(t.1)?) {
                Merged::Clean(out) => {
                    let id = crate::git::pack::write_object(repo, gix::objs::Kind::Blob, &out)?;
                    let kind = if o.0 == b.0 { t.0 } else { o.0 };
                    Some((kind, id))
                }
                Merged::Conflict(_) => {
                    conflicts.push(path.clone());
                    continue;
                }
            }
        } else {
            conflicts.push(path.clone());
            continue;
        };
        match result {
            Some((kind, id)) => editor.upsert(path.as_str(), kind, id),
            None => editor.remove(path.as_str()),
        }
        .map_err(|e| Failure::git(format!("cannot edit {path}: {e}")))?;
        files.push(path.clone());
    }
    if !conflicts.is_empty() {
        return Err(Error::Refused(Refusal::Conflict { paths: conflicts }));
    }
    if files.is_empty() {
        return Err(Error::Refused(Refusal::AlreadyReverted));
    }
    let tree = editor
        .write()
        .map_err(|e| Failure::git(format!("cannot write the revert tree: {e}")))?
        .detach();
    Ok(Plan {
        id: record.id.clone(),
        title: record.title.clone(),
        target,
        landed: landed_hex,
        tip: tip.to_string(),
        files,
        tree,
        tip_id: tip,
        landed_id: landed,
    })
}

/// Land the revert of `plan` and record `rolled_back`. Returns the revert commit.
pub fn execute(
    queue: &Queue,
    plan: &Plan,
    reason: &str,
    actor: &str,
) -> Result<(ObjectId, Record), Error> {
    let repo = queue.store().repo();
    let who = land::committer(repo);
    let now = jiff::Timestamp::now();
    let message = format!(
        "Revert \"{}\"\n\nThis reverts commit {}, which landed request {}.\n\nReason: {}\n\n{}: {}\n",
        plan.title.trim(),
        plan.landed_id,
        plan.id,
        crate::request::secrets::redact(reason.trim()),
        land::TRAILER_ROLLBACK,
        plan.id
    );
    let revert = land::write_commit(
        repo,
        plan.tree,
        &[plan.tip_id],
        &who,
        now,
        &who,
        now,
        &message,
    )?;
    match land::advance(
        repo,
        plan.target.refname(),
        plan.tip_id,
        revert,
        &format!("hyperion: rollback {}", plan.id),
        &who,
        &land::Holder {
            worker: &format!("rollback:{actor}"),
            queue,
        },
    ) {
        Ok(()) => {}
        Err(land::Error::Failed(e)) => return Err(e.into()),
        Err(land::Error::Blocked(not_moved)) => {
            let message = match &not_moved {
                Blocked::Moved { .. } => format!(
                    "{}; run the rollback again to rebuild it on the new tip",
                    not_moved.message(plan.target.name())
                ),
                _ => not_moved.message(plan.target.name()),
            };
            return Err(Error::Refused(Refusal::Target {
                code: not_moved.code(),
                message,
            }));
        }
    }
    let record = queue.roll_back(&plan.id, &revert.to_string(), reason, actor)?;
    Ok((revert, record))
}

/// A file's entry on one side of a landing: its kind and blob, `None` if absent.
type Side = Option<(EntryKind, ObjectId)>;
