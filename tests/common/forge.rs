//! Forging request chains with git plumbing, the way an attacker (or a buggy tool) would:
//! commits in hyperion's exact form whose events and records say whatever the test wants.

#![allow(dead_code)]

use serde_json::{Value, json};

use super::TestRepo;

/// One commit of a chain: its id, event and record.
#[derive(Debug, Clone)]
pub struct Link {
    pub commit: String,
    pub event: Value,
    pub record: Value,
}

/// The ref of request `id`.
pub fn refname(id: &str) -> String {
    format!("refs/hyperion/requests/{id}")
}

/// The commit `rev` of a chain, read.
pub fn link(repo: &TestRepo, rev: &str) -> Link {
    let commit = repo.git(&["rev-parse", rev]).trim().to_owned();
    let body = repo.git(&["log", "-1", "--format=%B", &commit]);
    let paragraphs: Vec<&str> = body.trim().split("\n\n").collect();
    Link {
        commit,
        event: serde_json::from_str(paragraphs[1]).expect("an event"),
        record: serde_json::from_str(paragraphs[2]).expect("a record"),
    }
}

/// The tip of request `id`'s chain.
pub fn tip(repo: &TestRepo, id: &str) -> Link {
    link(repo, &refname(id))
}

/// A chain commit's message, in hyperion's form: summary, event, record.
pub fn message(id: &str, event: &Value, record: &Value) -> String {
    let action = event["action"].as_str().expect("an action");
    let to = event["to"].as_str().expect("a status");
    let mut s = format!("hyperion: {action} {id}");
    match event["from"].as_str() {
        Some(from) => s.push_str(&format!(" ({from} -> {to})")),
        None => s.push_str(&format!(" (-> {to})")),
    }
    if let Some(w) = event["worker"].as_str() {
        s.push_str(&format!(" by {w}"));
    }
    format!("{s}\n\n{event}\n\n{record}\n")
}

/// Commit `event` and `record` on top of `parent` (keeping its tree, or `tree`), as request
/// `id`'s next transition; the new commit.
pub fn commit(
    repo: &TestRepo,
    id: &str,
    parent: Option<&str>,
    tree: &str,
    event: &Value,
    record: &Value,
) -> String {
    let msg = repo.home.path().join("forged-message");
    std::fs::write(&msg, message(id, event, record)).expect("write");
    let mut args = vec!["commit-tree", tree, "-F", msg.to_str().expect("utf-8")];
    if let Some(p) = parent {
        args.extend(["-p", p]);
    }
    repo.git(&args).trim().to_owned()
}

/// `parent`'s tree.
pub fn tree(repo: &TestRepo, rev: &str) -> String {
    repo.git(&["rev-parse", &format!("{rev}^{{tree}}")])
        .trim()
        .to_owned()
}

/// Append a forged transition to `prev`; the new commit.
pub fn after(repo: &TestRepo, id: &str, prev: &Link, event: &Value, record: &Value) -> String {
    commit(
        repo,
        id,
        Some(&prev.commit),
        &tree(repo, &prev.commit),
        event,
        record,
    )
}

/// Point request `id`'s ref at `commit`, whatever it held.
pub fn set(repo: &TestRepo, id: &str, commit: &str) {
    repo.git(&["update-ref", &refname(id), commit]);
}

/// RFC 3339 of now plus `secs`.
pub fn at(secs: i64) -> String {
    (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(secs)).to_string()
}

/// The event and record of `worker` leasing the request of `prev` at `when` until `until`,
/// exactly as a worker writes them.
pub fn lease(prev: &Value, worker: &str, when: &str, until: &str) -> (Value, Value) {
    let t0: jiff::Timestamp = when.parse().expect("a time");
    let t1: jiff::Timestamp = until.parse().expect("a time");
    let secs = t1.duration_since(t0).as_secs().max(1);
    let event = json!({
        "action": "lease", "from": "pending", "to": "leased", "actor": format!("worker:{worker}"),
        "worker": worker, "at": when, "leased_until": until,
    });
    let mut record = prev.clone();
    record["status"] = "leased".into();
    record["lease_owner"] = worker.into();
    record["leased_until"] = until.into();
    record["lease_secs"] = secs.into();
    record["attempts"] = (prev["attempts"].as_u64().expect("attempts") + 1).into();
    record["updated_at"] = when.into();
    if let Some(o) = record.as_object_mut() {
        o.remove("not_before");
    }
    (event, record)
}

/// The event and record of `prev`'s lease holder renewing it at `when`.
pub fn heartbeat(prev: &Value, when: &str) -> (Value, Value) {
    let t0: jiff::Timestamp = when.parse().expect("a time");
    let secs = prev["lease_secs"].as_i64().expect("lease_secs");
    let until = (t0 + jiff::SignedDuration::from_secs(secs)).to_string();
    let worker = prev["lease_owner"].as_str().expect("an owner");
    let event = json!({
        "action": "heartbeat", "from": "leased", "to": "leased",
        "actor": format!("worker:{worker}"), "worker": worker, "at": when, "leased_until": until,
    });
    let mut record = prev.clone();
    record["leased_until"] = until.into();
    record["updated_at"] = when.into();
    (event, record)
}

/// The event and record of `prev`'s lease holder landing it as `commit` at `when`.
pub fn land(prev: &Value, commit: &str, when: &str) -> (Value, Value) {
    let worker = prev["lease_owner"].as_str().expect("an owner");
    let event = json!({
        "action": "land", "from": "leased", "to": "applied", "actor": format!("worker:{worker}"),
        "worker": worker, "reason": format!("landed as {commit}"), "at": when,
    });
    let mut record = prev.clone();
    record["status"] = "applied".into();
    record["landed_commit"] = commit.into();
    record["updated_at"] = when.into();
    if let Some(o) = record.as_object_mut() {
        for k in ["lease_owner", "leased_until", "lease_secs", "error"] {
            o.remove(k);
        }
    }
    (event, record)
}

/// Write `content` as a blob; its id.
pub fn blob(repo: &TestRepo, content: &[u8]) -> String {
    repo.git_in(&["hash-object", "-w", "--stdin"], content)
}

/// A tree of `entries` (`mode`, `kind`, `id`, `name`), written with `git mktree`; its id.
pub fn mktree(repo: &TestRepo, entries: &[(&str, &str, &str, &str)]) -> String {
    let listing: String = entries
        .iter()
        .map(|(mode, kind, id, name)| format!("{mode} {kind} {id}\t{name}\n"))
        .collect();
    repo.git_in(&["mktree"], listing.as_bytes())
}

/// The tree of `rev` with entry `name` replaced by (or set to) `mode kind id`.
pub fn tree_with(
    repo: &TestRepo,
    rev: &str,
    mode: &str,
    kind: &str,
    id: &str,
    name: &str,
) -> String {
    let mut entries: Vec<(String, String, String, String)> = repo
        .git(&["ls-tree", rev])
        .lines()
        .filter_map(|l| {
            let (meta, n) = l.split_once('\t')?;
            let f: Vec<&str> = meta.split(' ').collect();
            (n != name).then(|| {
                (
                    f[0].to_owned(),
                    f[1].to_owned(),
                    f[2].to_owned(),
                    n.to_owned(),
                )
            })
        })
        .collect();
    entries.push((mode.into(), kind.into(), id.into(), name.into()));
    let refs: Vec<(&str, &str, &str, &str)> = entries
        .iter()
        .map(|(a, b, c, d)| (a.as_str(), b.as_str(), c.as_str(), d.as_str()))
        .collect();
    mktree(repo, &refs)
}

/// The root commit git hyperion would write for `request` (JSON, patches included) enqueued
/// now, whatever the request holds (nothing is validated against a target): (id, commit,
/// event, record).
pub fn root(repo: &TestRepo, request: &Value) -> (String, String, Value, Value) {
    let req = hyperion::request::validate::validate_value(request)
        .expect("the request passes the schema");
    let now = jiff::Timestamp::now();
    let record =
        serde_json::to_value(hyperion::request::model::Record::new(&req, now)).expect("json");
    let event = json!({"action": "enqueue", "from": null, "to": "pending", "actor": "cli:forger", "at": now});
    let json = serde_json::to_vec_pretty(&req.without_patches()).expect("json");
    let request_blob = blob(repo, &json);
    let patches: Vec<(String, String)> = req
        .changes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            (
                format!("{:04}.patch", i + 1),
                blob(repo, c.patch.as_bytes()),
            )
        })
        .collect();
    let patch_entries: Vec<(&str, &str, &str, &str)> = patches
        .iter()
        .map(|(n, b)| ("100644", "blob", b.as_str(), n.as_str()))
        .collect();
    let changes = mktree(repo, &patch_entries);
    let tree = mktree(
        repo,
        &[
            ("100644", "blob", &request_blob, "request.json"),
            ("040000", "tree", &changes, "changes"),
        ],
    );
    let id = req.id();
    let commit = commit(repo, &id, None, &tree, &event, &record);
    (id, commit, event, record)
}
