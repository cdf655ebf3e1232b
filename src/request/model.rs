//! The data model: change requests (format v1), queue records, transition events, and the
//! stable error codes every layer reports.
//!
//! These types are the serde form of what lives in the repository (`request.json`,
//! commit-message events and records) and of what `--format json` prints. They hold no
//! behaviour beyond (de)serialisation and a few derived values; the state machine lives in
//! `queue`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `schema` value of format v1.
pub const SCHEMA_V1: &str = "hyperion.change-request/v1";

/// Default priority when a request names none.
pub const DEFAULT_PRIORITY: u8 = 5;

/// A change request as submitted by an agent (format v1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeRequest {
    pub schema: String,
    pub task_id: String,
    pub agent: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ChangeKind>,
    #[serde(default = "default_priority")]
    pub priority: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub file_targets: Vec<String>,
    pub changes: Vec<Change>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<String>,
    /// Requests this one builds on, as submitted: request ids (full or a unique prefix) or
    /// task ids (the newest request of that task). They land first; this one is validated
    /// and applied on top of them (see docs/lifecycle.md#stacked-requests). The resolved
    /// ids are in the record ([`Record::depends_on`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

fn default_priority() -> u8 {
    DEFAULT_PRIORITY
}

/// One touched path and the patch that touches it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    pub path: String,
    pub operation: Operation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The unified diff. In the stored `request.json` this is empty and the text lives in
    /// `changes/NNNN.patch` beside it, so patches are stored once and readable with `git show`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub patch: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Add,
    Update,
    Delete,
    Rename,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Feature,
    Bugfix,
    Refactor,
    Docs,
    Chore,
}

impl ChangeRequest {
    /// The canonical serialisation: compact JSON with the fields in schema order and
    /// defaults made explicit. Two submissions with the same content give the same bytes.
    pub fn canonical_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a ChangeRequest always serialises")
    }

    /// sha256 over task id, agent and the canonical payload: the identity of a submission.
    pub fn dedupe_key(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.task_id.as_bytes());
        h.update([0u8]);
        h.update(self.agent.as_bytes());
        h.update([0u8]);
        h.update(self.canonical_json());
        hex(&h.finalize())
    }

    /// The request id: the first 16 hex digits of the dedupe key, so the same submission maps
    /// to the same ref on every machine.
    pub fn id(&self) -> String {
        self.dedupe_key()[..ID_LEN].to_owned()
    }

    /// This request without patch bodies, as stored in `request.json`.
    pub fn without_patches(&self) -> ChangeRequest {
        let mut r = self.clone();
        for c in &mut r.changes {
            c.patch.clear();
        }
        r
    }
}

/// Length of a request id in hex digits.
pub const ID_LEN: usize = 16;

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        write!(s, "{b:02x}").expect("writing to a String cannot fail");
    }
    s
}

/// Hex sha256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Whether `s` has the shape of a request id.
pub fn is_id(s: &str) -> bool {
    s.len() == ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Where a request is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    AwaitingApproval,
    Pending,
    Leased,
    Applied,
    Dead,
    RolledBack,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::AwaitingApproval,
        Status::Pending,
        Status::Leased,
        Status::Applied,
        Status::Dead,
        Status::RolledBack,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::AwaitingApproval => "awaiting_approval",
            Status::Pending => "pending",
            Status::Leased => "leased",
            Status::Applied => "applied",
            Status::Dead => "dead",
            Status::RolledBack => "rolled_back",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Finished states: retention may archive them.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Applied | Status::Dead | Status::RolledBack)
    }

    /// The statuses a chain may start in (its root, the `enqueue` event): `awaiting_approval`
    /// when its risk tier needs a person, else `pending`.
    pub fn may_start(self) -> bool {
        matches!(self, Status::Pending | Status::AwaitingApproval)
    }

    /// The legal transitions of the lifecycle (see docs/lifecycle.md).
    ///
    /// `awaiting_approval` is left only by `approve` (to `pending`) and `reject` (to `dead`);
    /// a worker that finds no valid approval at lease time puts the request back
    /// (`leased -> awaiting_approval`), and `requeue` of a request whose tier needs approval
    /// (or that was rejected) goes back there too (`dead -> awaiting_approval`). Nothing
    /// reaches `pending` from `awaiting_approval` but an approval.
    pub fn may_become(self, to: Status) -> bool {
        use Status::*;
        matches!(
            (self, to),
            (AwaitingApproval, Pending)
                | (AwaitingApproval, Dead)
                | (Leased, AwaitingApproval)
                | (Dead, AwaitingApproval)
                | (Pending, Leased)
                | (Pending, Dead)
                | (Leased, Leased)
                | (Leased, Pending)
                | (Leased, Applied)
                | (Leased, Dead)
                | (Dead, Pending)
                | (Applied, RolledBack)
        )
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request became a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadClass {
    /// Re-validation at lease time failed (the policy or the target changed).
    Validation,
    /// The patch does not apply (3-way conflict).
    Apply,
    /// A check failed or timed out.
    Check,
    /// Its lease expired `hyperion.maxAttempts` times: the workers that took it kept dying.
    Lease,
    /// The worker's environment kept failing (the repository could not be read or written,
    /// the target branch is missing) until `hyperion.maxAttempts`.
    Environment,
    /// A person refused it while it awaited approval (`reject`).
    Rejected,
    /// A request it depends on died, was rolled back or is gone, so it cannot land as made
    /// (`request.dependency_dead`).
    Dependency,
}

impl DeadClass {
    pub const ALL: [DeadClass; 7] = [
        DeadClass::Validation,
        DeadClass::Apply,
        DeadClass::Check,
        DeadClass::Lease,
        DeadClass::Environment,
        DeadClass::Rejected,
        DeadClass::Dependency,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeadClass::Validation => "validation",
            DeadClass::Apply => "apply",
            DeadClass::Check => "check",
            DeadClass::Lease => "lease",
            DeadClass::Environment => "environment",
            DeadClass::Rejected => "rejected",
            DeadClass::Dependency => "dependency",
        }
    }

    pub fn parse(s: &str) -> Option<DeadClass> {
        DeadClass::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for DeadClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A structured failure attached to a record or returned by a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub code: String,
    pub message: String,
}

/// The current state of one request: the record in the tip commit of its chain, and the row of
/// `list`/`show --format json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_class: Option<DeadClass>,
    pub task_id: String,
    pub agent: String,
    pub title: String,
    pub priority: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ChangeKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub attempts: u32,
    pub created_at: jiff::Timestamp,
    pub updated_at: jiff::Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leased_until: Option<jiff::Timestamp>,
    /// Seconds a heartbeat extends the lease by (the length asked for at lease time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_secs: Option<u64>,
    /// A retried request is not leased again before this time (jittered backoff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<jiff::Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landed_commit: Option<String>,
    /// The revert commit of a rolled-back request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_by: Option<String>,
    /// The risk tiers that need a person's approval, as judged when the request last entered
    /// `awaiting_approval` (see docs/policy.md#risk-tiers-and-approvals).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approval_tiers: Vec<String>,
    /// Who approved it, since it last entered `awaiting_approval` (the `approve` event's actor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    pub dedupe_key: String,
    /// The full ids of the requests it depends on, resolved at enqueue from the request's
    /// `depends_on`: it is not leased before every one of them is `applied`, and it dies
    /// (`request.dependency_dead`) when one of them dies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Derived, never stored: the predecessors that have not landed yet, as `list` and
    /// `show` see them (see [`Record::depends_on`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting_for: Vec<String>,
}

impl Record {
    /// No lease any more: no owner, no expiry, no length (every transition out of `leased`,
    /// and verify-push's expectation of one).
    pub fn clear_lease(&mut self) {
        self.lease_owner = None;
        self.leased_until = None;
        self.lease_secs = None;
    }

    /// The record of a freshly accepted request.
    pub fn new(req: &ChangeRequest, now: jiff::Timestamp) -> Record {
        Record {
            id: req.id(),
            status: Status::Pending,
            dead_class: None,
            task_id: req.task_id.clone(),
            agent: req.agent.clone(),
            title: req.title.clone(),
            priority: req.priority,
            kind: req.kind,
            target: req.target.clone(),
            attempts: 0,
            created_at: now,
            updated_at: now,
            lease_owner: None,
            leased_until: None,
            lease_secs: None,
            not_before: None,
            error: None,
            landed_commit: None,
            rolled_back_by: None,
            approval_tiers: Vec::new(),
            approved_by: None,
            dedupe_key: req.dedupe_key(),
            depends_on: Vec::new(),
            waiting_for: Vec::new(),
        }
    }

    /// This record as it is stored: without what is derived when it is read
    /// ([`Record::waiting_for`]).
    pub fn to_store(&self) -> std::borrow::Cow<'_, Record> {
        if self.waiting_for.is_empty() {
            std::borrow::Cow::Borrowed(self)
        } else {
            let mut r = self.clone();
            r.waiting_for.clear();
            std::borrow::Cow::Owned(r)
        }
    }

    /// Whether a worker may lease this record now.
    pub fn is_ready(&self, now: jiff::Timestamp) -> bool {
        self.status == Status::Pending && self.not_before.is_none_or(|t| t <= now)
    }

    /// Queue order: higher priority first, then strictly first-in first-out by enqueue time,
    /// then id so the order is total.
    pub fn queue_key(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(1 + 16 + ID_LEN);
        k.push(9u8.saturating_sub(self.priority));
        k.extend_from_slice(&self.created_at.as_nanosecond().to_be_bytes());
        k.extend_from_slice(self.id.as_bytes());
        k
    }
}

/// What happened in one transition; stored as the JSON body of the chain commit's message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub action: Action,
    pub from: Option<Status>,
    pub to: Status,
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub at: jiff::Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leased_until: Option<jiff::Timestamp>,
}

/// The kinds of transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Enqueue,
    Lease,
    Heartbeat,
    Release,
    Expire,
    Retry,
    Land,
    Fail,
    Requeue,
    Rollback,
    /// A person approved a request awaiting approval (`awaiting_approval -> pending`).
    Approve,
    /// A person refused a request awaiting approval (`awaiting_approval -> dead`).
    Reject,
    /// A worker found no valid approval at lease time (`leased -> awaiting_approval`).
    Hold,
    /// A request it depends on died: it cannot land (`pending -> dead`, class `dependency`).
    Cancel,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Enqueue => "enqueue",
            Action::Lease => "lease",
            Action::Heartbeat => "heartbeat",
            Action::Release => "release",
            Action::Expire => "expire",
            Action::Retry => "retry",
            Action::Land => "land",
            Action::Fail => "fail",
            Action::Requeue => "requeue",
            Action::Rollback => "rollback",
            Action::Approve => "approve",
            Action::Reject => "reject",
            Action::Hold => "hold",
            Action::Cancel => "cancel",
        }
    }
}

impl Event {
    /// A transition `from` → `to` by `actor` at `at`, with nothing else said (no worker,
    /// reason, code or lease): what the struct-update syntax starts from.
    pub fn new(
        action: Action,
        from: Option<Status>,
        to: Status,
        actor: impl Into<String>,
        at: jiff::Timestamp,
    ) -> Event {
        Event {
            action,
            from,
            to,
            actor: actor.into(),
            worker: None,
            reason: None,
            code: None,
            at,
            leased_until: None,
        }
    }

    /// [`Event::new`] by worker `worker`: the actor `worker:ID`, and the worker named.
    pub fn by_worker(
        action: Action,
        from: Status,
        to: Status,
        worker: &str,
        at: jiff::Timestamp,
    ) -> Event {
        Event {
            worker: Some(worker.to_owned()),
            ..Event::new(action, Some(from), to, format!("worker:{worker}"), at)
        }
    }

    /// The one-line summary that heads the chain commit's message.
    pub fn summary(&self, id: &str) -> String {
        let mut s = format!("hyperion: {} {id}", self.action.as_str());
        match self.from {
            Some(from) => s.push_str(&format!(" ({from} -> {})", self.to)),
            None => s.push_str(&format!(" (-> {})", self.to)),
        }
        if let Some(w) = &self.worker {
            s.push_str(&format!(" by {w}"));
        }
        s
    }
}

/// A file stored with a transition under `artifacts/`.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// Name below `artifacts/`, e.g. `conflict.json` or `checks/unit.stderr`.
    pub name: String,
    pub data: Vec<u8>,
}

/// One commit of a chain, newest first in `Store::history`.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub commit: gix::ObjectId,
    pub event: Event,
}

/// Why an approver identity is unusable, or `None`.
pub fn identity_problem(identity: &str) -> Option<&'static str> {
    let t = identity.trim();
    if t.is_empty() {
        Some("it is blank")
    } else if t.chars().count() > 256 {
        Some("it is longer than 256 characters")
    } else if t.chars().any(char::is_control) {
        Some("it contains control characters")
    } else {
        None
    }
}

/// Whether `a` and `b` name the same identity: trimmed, ASCII case ignored (e-mail addresses
/// are compared that way in practice).
pub fn same_identity(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_legal_transition_changes_or_renews_a_lease() {
        for from in Status::ALL {
            for to in Status::ALL {
                if from == to && from.may_become(to) {
                    assert_eq!(from, Status::Leased, "only a lease may renew itself");
                }
            }
        }
        assert!(!Status::Applied.may_become(Status::Pending));
        assert!(!Status::Pending.may_become(Status::Applied));
    }

    #[test]
    fn ids_are_hex_prefixes_of_the_dedupe_key() {
        let req: ChangeRequest = serde_json::from_value(serde_json::json!({
            "schema": SCHEMA_V1, "task_id": "T-1", "agent": "a", "title": "t",
            "file_targets": ["x"], "changes": [{"path": "x", "operation": "add",
            "patch": "p", "sha256": sha256_hex(b"p")}]
        }))
        .expect("valid");
        assert!(is_id(&req.id()));
        assert!(req.dedupe_key().starts_with(&req.id()));
        let mut other = req.clone();
        other.agent = "b".into();
        assert_ne!(req.id(), other.id());
    }
}
