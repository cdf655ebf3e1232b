//! `doctor` holds the chains of a local repository to the rules a server's `verify-push`
//! holds pushed ones to (one checker, two object readers): chains planted with plumbing —
//! as a fetch from a careless remote or a hand edit would leave them — are reported, each
//! with its code, and doctor exits 1 with `doctor.problems`.

#![allow(clippy::unwrap_used)]

use crate::common;

use serde_json::Value;

use common::forge::{self, at};
use common::{TestRepo, request_dir};

/// The codes doctor reports for `id`.
fn codes(doctor: &Value, id: &str) -> Vec<String> {
    doctor["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["id"] == id)
        .map(|f| f["code"].as_str().unwrap().to_owned())
        .collect()
}

/// Doctor's JSON report and text output; it must exit 1.
fn doctor(repo: &TestRepo) -> (Value, String) {
    let (out, err) = repo.fails(&["doctor", "--format", "json"], 1);
    let json: Value = serde_json::from_str(&out).unwrap();
    assert!(err.contains("[doctor.problems]"), "{err}");
    let (text, err) = repo.fails(&["doctor"], 1);
    // (The index may warn first about a ref it cannot read.)
    assert!(
        err.lines().any(|l| l.starts_with("error: ")) && err.contains("hint: "),
        "{err}"
    );
    (json, text)
}

#[test]
fn doctor_reports_every_forged_chain_with_its_code() {
    let repo = TestRepo::new();
    let ids = repo.enqueue(&request_dir(&repo, 6, "doctor"));
    repo.ok(&["dequeue", "--worker", "w", "--batch", "2"]);
    let honest = ids[5].clone();

    // 0: an endless lease on a pending request.
    let root = forge::tip(&repo, &ids[2]);
    let (ev, rec) = forge::lease(&root.record, "squatter", &at(1), "9000-01-01T00:00:00Z");
    forge::set(
        &repo,
        &ids[2],
        &forge::after(&repo, &ids[2], &root, &ev, &rec),
    );
    // 1: applied as a commit that does not exist.
    let lease = forge::tip(&repo, &ids[0]);
    let (ev, rec) = forge::land(&lease.record, &"cd".repeat(20), &at(2));
    forge::set(
        &repo,
        &ids[0],
        &forge::after(&repo, &ids[0], &lease, &ev, &rec),
    );
    // 2: applied as the person's own commit on main, which carries no trailer.
    let lease = forge::tip(&repo, &ids[1]);
    let head = repo.git(&["rev-parse", "main"]).trim().to_owned();
    let (ev, rec) = forge::land(&lease.record, &head, &at(2));
    forge::set(
        &repo,
        &ids[1],
        &forge::after(&repo, &ids[1], &lease, &ev, &rec),
    );
    // 3: its priority raised by a later commit.
    let root = forge::tip(&repo, &ids[3]);
    let (ev, mut rec) = forge::lease(&root.record, "w", &at(1), &at(301));
    rec["priority"] = 9.into();
    forge::set(
        &repo,
        &ids[3],
        &forge::after(&repo, &ids[3], &root, &ev, &rec),
    );
    // 4: a transition from the future.
    let root = forge::tip(&repo, &ids[4]);
    let (ev, rec) = forge::lease(&root.record, "w", &at(86400), &at(86700));
    forge::set(
        &repo,
        &ids[4],
        &forge::after(&repo, &ids[4], &root, &ev, &rec),
    );
    // A ref that is not a request's.
    repo.git(&["update-ref", "refs/hyperion/requests/not-an-id", "main"]);

    let (json, text) = doctor(&repo);
    assert_eq!(codes(&json, &ids[2]), ["chain.bad_lease"], "{json}");
    assert_eq!(codes(&json, &ids[0]), ["chain.landed"], "{json}");
    assert_eq!(codes(&json, &ids[1]), ["chain.landed"], "{json}");
    assert_eq!(codes(&json, &ids[3]), ["chain.field_changed"], "{json}");
    assert_eq!(codes(&json, &ids[4]), ["chain.time"], "{json}");
    assert_eq!(codes(&json, "not-an-id"), ["chain.bad_ref"], "{json}");
    assert!(codes(&json, &honest).is_empty(), "{json}");
    for id in &ids[..5] {
        assert!(text.contains(&format!("{id}  [chain.")), "{text}");
    }
    // Doctor reports; it changes no chain.
    assert_eq!(forge::tip(&repo, &ids[3]).record["priority"], 9);
}

#[test]
fn doctor_reports_a_rewritten_payload_and_an_illegal_step() {
    let repo = TestRepo::new();
    let ids = repo.enqueue(&request_dir(&repo, 2, "doctor2"));
    // The patch replaced after enqueue, under an honest-looking lease.
    let root = forge::tip(&repo, &ids[0]);
    let patch = forge::blob(
        &repo,
        b"--- /dev/null\n+++ b/src/evil.txt\n@@ -0,0 +1 @@\n+evil\n",
    );
    let changes = forge::mktree(&repo, &[("100644", "blob", &patch, "0001.patch")]);
    let tree = forge::tree_with(&repo, &root.commit, "040000", "tree", &changes, "changes");
    let (ev, rec) = forge::lease(&root.record, "w", &at(1), &at(301));
    let c = forge::commit(&repo, &ids[0], Some(&root.commit), &tree, &ev, &rec);
    forge::set(&repo, &ids[0], &c);
    // Pending straight to applied.
    let root = forge::tip(&repo, &ids[1]);
    let mut lease = root.clone();
    lease.record["lease_owner"] = "w".into();
    let (mut ev, rec) = forge::land(&lease.record, &"ef".repeat(20), &at(1));
    ev["from"] = "pending".into();
    forge::set(
        &repo,
        &ids[1],
        &forge::after(&repo, &ids[1], &root, &ev, &rec),
    );

    let (json, _) = doctor(&repo);
    assert_eq!(codes(&json, &ids[0]), ["chain.payload_changed"], "{json}");
    assert!(
        codes(&json, &ids[1]).contains(&"chain.illegal_transition".to_owned()),
        "{json}"
    );
}
