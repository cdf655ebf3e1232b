//! `inspect`: everything stored about one request, for deep debugging: every transition of
//! its chain with the record it left, the request and its patches, the artifacts (check
//! output, conflict reports, merged files), the landed commit and its note, what the derived
//! index holds, and the findings of `doctor`'s chain checks for this one chain.
//!
//! It reads only: nothing is reconciled, repaired or rewritten. Every byte shown comes from
//! the chain as stored (the caller escapes what it prints to a terminal).

use serde::Serialize;

use crate::Result;
use crate::queue::{Finding, HistoryItem, Queue};
use crate::request::model::{ChangeRequest, Record};

/// Artifacts larger than this are shown cut (the whole is in the chain, `git show` reads it).
pub const ARTIFACT_SHOWN: usize = 64 * 1024;

/// Everything `inspect` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub id: String,
    pub reference: String,
    pub tip: String,
    pub record: Record,
    /// The chain, oldest first: each transition's event and the record it left.
    pub chain: Vec<Link>,
    pub request: ChangeRequest,
    pub artifacts: Vec<ArtifactShown>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub landed: Option<Landed>,
    pub index: IndexView,
    /// `doctor`'s chain checks, for this chain only.
    pub findings: Vec<Finding>,
}

/// One commit of the chain.
#[derive(Debug, Clone, Serialize)]
pub struct Link {
    #[serde(flatten)]
    pub item: HistoryItem,
    /// The record this transition left (`None` when it could not be read: see `findings`).
    pub record: Option<Record>,
}

/// One artifact at the chain's tip.
#[derive(Debug, Clone, Serialize)]
pub struct ArtifactShown {
    pub name: String,
    pub size: usize,
    /// Its content as text (invalid UTF-8 replaced), at most [`ARTIFACT_SHOWN`] bytes.
    pub text: String,
    pub cut: bool,
}

/// The commit a request landed as.
#[derive(Debug, Clone, Serialize)]
pub struct Landed {
    pub commit: String,
    /// Whether the commit exists in this repository.
    pub present: bool,
    /// Its note in `refs/notes/hyperion`, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What the derived index holds for the request, as stored (before reconciling).
#[derive(Debug, Clone, Serialize)]
pub struct IndexView {
    /// The tip the index has; `None`: no entry (or the index is busy or unusable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<crate::request::model::Status>,
    /// Whether the index agrees with the ref (same tip).
    pub agrees: bool,
}

/// Inspect the request `id` (a unique prefix will do).
pub fn inspect(queue: &Queue, id: &str) -> Result<Inspection> {
    let (id, tip, record) = queue.resolve(id)?;
    let store = queue.store();
    let repo = store.repo();
    let mut chain = Vec::new();
    for h in store.history(&id, tip)?.into_iter().rev() {
        let at = store.read_record(&id, h.commit).ok();
        chain.push(Link {
            item: HistoryItem::from(h),
            record: at,
        });
    }
    let request = store.read_request(&id, tip)?;
    let mut artifacts = Vec::new();
    for name in store.artifacts(tip)? {
        let data = store.read_path(&id, tip, &name)?;
        let cut = data.len() > ARTIFACT_SHOWN;
        let text = String::from_utf8_lossy(&data[..data.len().min(ARTIFACT_SHOWN)]).into_owned();
        artifacts.push(ArtifactShown {
            name,
            size: data.len(),
            text,
            cut,
        });
    }
    let landed = match &record.landed_commit {
        Some(c) => {
            let oid = gix::ObjectId::from_hex(c.as_bytes()).ok();
            let present = oid.is_some_and(|o| repo.find_commit(o).is_ok());
            let note = match oid {
                Some(o) if present => crate::gate::land::read_note(repo, o)?,
                _ => None,
            };
            Some(Landed {
                commit: c.clone(),
                present,
                note,
            })
        }
        None => None,
    };
    let indexed = queue.indexed(&id)?;
    let index = IndexView {
        tip: indexed.as_ref().map(|(t, _)| t.to_string()),
        status: indexed.as_ref().map(|(_, r)| r.status),
        agrees: indexed.as_ref().is_some_and(|(t, _)| *t == tip),
    };
    let findings = crate::gate::verify::check_local(
        queue,
        &[(id.clone(), tip)],
        &mut crate::git::os::PageBudget,
        None,
    )?;
    Ok(Inspection {
        reference: crate::queue::store::Store::ref_name(&id),
        id,
        tip: tip.to_string(),
        record,
        chain,
        request,
        artifacts,
        landed,
        index,
        findings,
    })
}
