//! The index is derived: with it deleted, busy, or out of date, every command answers the
//! same as from the refs, and `doctor --reindex` rebuilds it.

#![allow(clippy::unwrap_used)]

use crate::common;

use common::{TestRepo, request, request_dir};

/// A queue with requests in every state, and the read-only answers it gives.
fn populated() -> (TestRepo, Vec<String>) {
    let repo = TestRepo::new();
    repo.git(&["config", "hyperion.retryBackoff", "0s"]);
    let d = request_dir(&repo, 6, "ix");
    let ids: Vec<String> = repo.enqueue(&d);
    repo.ok(&["dequeue", "--worker", "w1", "--batch", "4"]);
    let landed = repo.landing(&ids[0]);
    repo.ok(&["complete", &ids[0], "--worker", "w1", "--landed", &landed]);
    repo.ok(&[
        "complete",
        &ids[1],
        "--worker",
        "w1",
        "--failed",
        "apply.conflict",
        "--class",
        "apply",
        "--message",
        "conflict in src/f1.txt",
    ]);
    repo.ok(&["release", &ids[2], "--worker", "w1"]);
    repo.ok(&["heartbeat", &ids[3], "--worker", "w1"]);
    (repo, ids)
}

fn answers(repo: &TestRepo, ids: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for args in [
        vec!["list"],
        vec!["list", "--status", "pending"],
        vec!["list", "--agent", "test-agent", "--limit", "3"],
        vec!["dead"],
        vec!["dead", "--class", "apply"],
        vec!["audit"],
    ] {
        out.push(repo.json(&args).to_string());
    }
    for id in ids {
        out.push(repo.json(&["show", id]).to_string());
    }
    let mut doctor = repo.json(&["doctor"]);
    doctor.as_object_mut().unwrap().remove("index_drift");
    out.push(doctor.to_string());
    out
}

#[test]
fn deleting_the_index_changes_no_answer_and_reindex_rebuilds_it() {
    let (repo, ids) = populated();
    let index = repo.git_dir().join("hyperion/index");
    let with_index = answers(&repo, &ids);
    assert!(index.is_dir());
    std::fs::remove_dir_all(&index).unwrap();
    assert_eq!(
        answers(&repo, &ids),
        with_index,
        "answers without the index"
    );
    let rebuilt = repo.json(&["doctor", "--reindex"]);
    assert_eq!(rebuilt["reindexed"], true);
    assert_eq!(answers(&repo, &ids), with_index, "answers after reindex");
    // A dequeue after deletion leases what it would have leased.
    std::fs::remove_dir_all(&index).unwrap();
    let leased = repo.json(&["dequeue", "--worker", "w2"]);
    assert_eq!(
        leased[0]["id"],
        ids[2].as_str(),
        "the released request is first in line"
    );
}

#[test]
fn a_damaged_index_is_rebuilt() {
    let (repo, ids) = populated();
    let with_index = answers(&repo, &ids);
    let index = repo.git_dir().join("hyperion/index");
    for entry in std::fs::read_dir(&index).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            std::fs::write(&p, b"garbage").unwrap();
        }
    }
    assert_eq!(answers(&repo, &ids), with_index);
}

#[test]
fn a_busy_index_is_answered_from_the_refs() {
    let (repo, ids) = populated();
    let with_index = answers(&repo, &ids);
    repo.git(&["config", "hyperion.indexWait", "100ms"]);
    let held = hyperion::queue::index::Index::open(
        &repo.git_dir().join("hyperion/index"),
        std::time::Duration::from_secs(5),
    )
    .unwrap()
    .expect("the test holds the index");
    let t = std::time::Instant::now();
    assert_eq!(
        answers(&repo, &ids),
        with_index,
        "answers while another process holds the index"
    );
    assert!(t.elapsed() < std::time::Duration::from_secs(20));
    // Writes go on too, straight to the refs; the index catches up once it is free.
    let leased = repo.json(&["dequeue", "--worker", "w3"]);
    assert_eq!(leased[0]["id"], ids[2].as_str());
    drop(held);
    assert_eq!(
        repo.json(&["list", "--status", "leased"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn refs_written_elsewhere_appear() {
    let (repo, _) = populated();
    repo.json(&["list"]); // the index exists and is current
    // Another clone enqueues, and we fetch its refs.
    let other = TestRepo::new();
    let f = other.write("r.json", &request(42, "elsewhere"));
    let id = other
        .ok(&["enqueue", f.to_str().unwrap()])
        .trim()
        .to_owned();
    repo.git(&[
        "fetch",
        "-q",
        other.path().to_str().unwrap(),
        "refs/hyperion/requests/*:refs/hyperion/requests/*",
    ]);
    let listed = repo.json(&["list"]);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id.as_str()),
        "fetched request listed"
    );
    assert_eq!(repo.json(&["show", &id])["record"]["status"], "pending");
    // A ref moved by plain git is reflected too: put a leased request back to its root.
    let leased = repo.json(&["list", "--status", "leased"]);
    let lid = leased[0]["id"].as_str().unwrap().to_owned();
    let root = repo
        .git(&[
            "rev-list",
            "--max-parents=0",
            &format!("refs/hyperion/requests/{lid}"),
        ])
        .trim()
        .to_owned();
    repo.git(&[
        "update-ref",
        &format!("refs/hyperion/requests/{lid}"),
        &root,
    ]);
    assert_eq!(repo.json(&["show", &lid])["record"]["status"], "pending");
    let pending = repo.json(&["list", "--status", "pending"]);
    assert!(
        pending
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == lid.as_str())
    );
    // And a deleted ref disappears.
    repo.git(&["update-ref", "-d", &format!("refs/hyperion/requests/{id}")]);
    assert!(
        !repo
            .json(&["list"])
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id.as_str())
    );
}

#[test]
fn pushing_to_a_bare_server_shares_the_queue() {
    let (repo, ids) = populated();
    let server = TestRepo::bare();
    repo.git(&[
        "push",
        "-q",
        server.path().to_str().unwrap(),
        "refs/hyperion/requests/*:refs/hyperion/requests/*",
    ]);
    let mut on_server: Vec<String> = server
        .json(&["list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let mut local = ids.clone();
    on_server.sort();
    local.sort();
    assert_eq!(on_server, local);
    assert_eq!(server.json(&["list"]), repo.json(&["list"]));
}

/// A process that keeps the index open (a worker between batches) lets go once another
/// process has found it busy and said so; that one then gets the index.
#[test]
fn a_busy_index_is_asked_for_and_handed_over() {
    let repo = TestRepo::new();
    repo.git(&["config", "hyperion.indexWait", "0s"]);
    let d = request_dir(&repo, 3, "wanted");
    repo.enqueue(&d);
    let holder =
        hyperion::queue::Queue::open(hyperion::queue::store::Store::discover(repo.path()).unwrap())
            .unwrap();
    holder.list(&Default::default()).unwrap();
    let wanted = repo.git_dir().join("hyperion/index.wanted");
    let _ = std::fs::remove_file(&wanted);
    let list = |repo: &TestRepo| {
        let out = repo
            .cmd()
            .args(["list", "--format", "json"])
            .env("HYPERION_LOG", "debug")
            .output()
            .unwrap();
        assert!(out.status.success());
        let n = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len();
        (n, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    holder.release_index_if_wanted();
    let (n, log) = list(&repo);
    assert_eq!(n, 3, "the same answer from the refs");
    assert!(log.contains("index busy"), "{log}");
    assert!(wanted.exists(), "the busy index was asked for");
    holder.release_index_if_wanted();
    let (n, log) = list(&repo);
    assert_eq!(n, 3);
    assert!(!log.contains("index busy"), "handed over: {log}");
}

/// A process that keeps the index open across operations (a worker) sees what was done
/// between two of them: by another hyperion process at once (the update counter grew by more
/// than its own updates), by plain git within a second (a full rescan re-verifies a stamp
/// adopted after own updates).
#[test]
fn a_long_lived_process_sees_what_others_did_between_its_operations() {
    use hyperion::queue::store::Store;
    use hyperion::queue::{Filter, Queue};
    use hyperion::request::model::Status;
    let repo = TestRepo::new();
    repo.git(&["config", "hyperion.indexWait", "10ms"]);
    let d = request_dir(&repo, 4, "live");
    let ids = repo.enqueue(&d);
    let q = Queue::open(Store::discover(repo.path()).unwrap()).unwrap();
    let status = |id: &str| {
        q.list(&Filter::default())
            .unwrap()
            .into_iter()
            .find(|r| r.id == id)
            .map(|r| r.status)
    };
    // Our own update, then another hyperion process's (the index is ours: it answers from
    // the refs).
    let mine = q.dequeue("w1", 1, None).unwrap().remove(0);
    let theirs = repo.ids(&["dequeue", "--worker", "w2"]).remove(0);
    assert!(ids.contains(&theirs) && theirs != mine.id);
    assert_eq!(status(&theirs), Some(Status::Leased), "seen at once");
    assert_eq!(status(&mine.id), Some(Status::Leased));
    // (Past the re-verification of that rescan's racy stamp, so that what follows does not
    // rest on it.)
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    assert_eq!(status(&mine.id), Some(Status::Leased));

    // Our own update, then plain git puts their lease back to the request's root.
    q.complete(
        &mine.id,
        "w1",
        hyperion::queue::Outcome::Failed {
            class: hyperion::request::model::DeadClass::Check,
            error: hyperion::request::model::ErrorInfo {
                code: "check.failed".into(),
                message: "test".into(),
            },
            transient: false,
            artifacts: Vec::new(),
        },
    )
    .unwrap();
    let name = format!("refs/hyperion/requests/{theirs}");
    let root = repo
        .git(&["rev-list", "--max-parents=0", &name])
        .trim()
        .to_owned();
    repo.git(&["update-ref", &name, &root]);
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    assert_eq!(
        status(&theirs),
        Some(Status::Pending),
        "seen within a second"
    );
    assert_eq!(status(&mine.id), Some(Status::Dead));
}

/// The index's files are compacted as updates pile up: first `keys` alone (the entries
/// written since its last rewrite become its base, in id order; `records` keeps its id), then
/// both (superseded records dropped, a new file id). Every answer stays the refs' answer.
#[test]
fn the_index_files_are_compacted_and_answers_stay_the_same() {
    let repo = TestRepo::new();
    let ix = repo.git_dir().join("hyperion/index");
    let header = |name: &str| {
        let data = std::fs::read(ix.join(name)).unwrap();
        let word = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().unwrap());
        (word(16), word(24), data.len())
    };
    let from_refs = |repo: &TestRepo| {
        let with_index = repo.ok(&["list", "--format", "json"]);
        std::fs::remove_dir_all(&ix).unwrap();
        let without = repo.ok(&["list", "--format", "json"]);
        assert_eq!(with_index, without, "the index answers as the refs do");
    };
    repo.enqueue(&request_dir(&repo, 300, "compact"));
    let (id0, base0, keys0) = header("keys");
    assert_eq!(base0, 300, "a new index is written whole");
    let (rid0, _, records0) = header("records");
    assert_eq!(rid0, id0);
    repo.ok(&[
        "dequeue", "--worker", "w", "--batch", "300", "--lease", "1s",
    ]);
    let (id1, base1, keys1) = header("keys");
    assert_eq!((id1, base1), (id0, 300), "keys rewritten, records kept");
    assert!(
        keys1 < keys0 * 3 / 2,
        "no superseded entries left: {keys0} → {keys1}"
    );
    let (_, _, records1) = header("records");
    assert!(records1 > records0, "the leases' records appended");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    repo.ok(&["sweep"]);
    let (id2, base2, _) = header("keys");
    let (rid2, _, records2) = header("records");
    assert_ne!(id2, id0, "both files written anew");
    assert_eq!((rid2, base2), (id2, 300));
    assert!(records2 < records1, "superseded records dropped");
    assert_eq!(repo.ids(&["list", "--status", "pending"]).len(), 300);
    from_refs(&repo);
}
