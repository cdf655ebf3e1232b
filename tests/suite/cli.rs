//! End-to-end behaviour of each command, through the real binary on real repositories.

#![allow(clippy::unwrap_used)]

use crate::common;

use common::{TestRepo, request, request_dir};
use serde_json::Value;

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect()
}

#[test]
fn enqueue_prints_the_id_and_is_idempotent() {
    let repo = TestRepo::new();
    let f = repo.write("r.json", &request(1, "a"));
    let id = repo.ok(&["enqueue", f.to_str().unwrap()]).trim().to_owned();
    assert_eq!(id.len(), 16);
    let refs = repo.hyperion_refs();
    let out = repo.run(&["enqueue", f.to_str().unwrap()]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), id);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already enqueued"));
    assert_eq!(repo.hyperion_refs(), refs, "a duplicate changes no ref");
    assert_eq!(
        repo.git(&[
            "rev-list",
            "--count",
            &format!("refs/hyperion/requests/{id}")
        ])
        .trim(),
        "1"
    );
    let stored = repo.git(&["show", &format!("refs/hyperion/requests/{id}:request.json")]);
    assert!(stored.contains("\"task_id\": \"TASK-1\""));
    let patch = repo.git(&[
        "show",
        &format!("refs/hyperion/requests/{id}:changes/0001.patch"),
    ]);
    assert_eq!(
        patch,
        request(1, "a")["changes"][0]["patch"].as_str().unwrap()
    );
}

/// A duplicate is accepted whatever became of the stored request: once it landed, its patch
/// (adding a file) no longer applies to the target, and submitting it again is still exit 0,
/// the same id, nothing stored — not a validation error. A request differing in one byte is
/// a new request and is checked in full (the file exists now: refused).
#[test]
fn a_landed_request_submitted_again_is_a_duplicate() {
    let repo = TestRepo::new();
    let f = repo.write("r.json", &request(1, "a"));
    let id = repo.ok(&["enqueue", f.to_str().unwrap()]).trim().to_owned();
    repo.ok(&["worker", "--drain"]);
    assert_eq!(repo.json(&["show", &id])["record"]["status"], "applied");
    let refs = repo.hyperion_refs();
    let out = repo.run(&["enqueue", f.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), id);
    assert!(stderr.contains("already enqueued (applied)"), "{stderr}");
    assert_eq!(repo.hyperion_refs(), refs, "a duplicate changes no ref");
    let mut other = request(1, "a");
    other["title"] = "change 1 a, again".into();
    let g = repo.write("other.json", &other);
    let (_, err) = repo.fails(&["enqueue", g.to_str().unwrap()], 1);
    assert!(err.contains("operation."), "{err}");
    assert_eq!(repo.hyperion_refs(), refs);
}

#[test]
fn a_directory_is_enqueued_in_name_order_and_stdin_works() {
    let repo = TestRepo::new();
    let d = request_dir(&repo, 5, "dir");
    let printed: Vec<String> = repo.enqueue(&d);
    assert_eq!(printed.len(), 5);
    assert_eq!(
        ids(&repo.json(&["list"])),
        printed,
        "list is in enqueue order"
    );
    let out = common::pipe(
        repo.cmd().args(["enqueue", "-"]),
        &serde_json::to_vec(&request(9, "stdin")).unwrap(),
    );
    assert!(out.status.success());
    assert_eq!(repo.json(&["list"]).as_array().unwrap().len(), 6);
}

#[test]
fn dequeue_takes_priority_first_then_first_in_first_out() {
    let repo = TestRepo::new();
    let mut expected = Vec::new();
    for (i, prio) in [(0, 5), (1, 9), (2, 5), (3, 1), (4, 9)] {
        let mut r = request(i, "p");
        r["priority"] = prio.into();
        let f = repo.write(&format!("{i}.json"), &r);
        expected.push((
            prio,
            repo.ok(&["enqueue", f.to_str().unwrap()]).trim().to_owned(),
        ));
    }
    let order: Vec<String> = [1, 4, 0, 2, 3]
        .iter()
        .map(|&i| expected[i].1.clone())
        .collect();
    let leased = repo.json(&["dequeue", "--worker", "w1", "--batch", "2"]);
    assert_eq!(ids(&leased), order[..2]);
    assert_eq!(leased[0]["status"], "leased");
    assert_eq!(leased[0]["lease_owner"], "w1");
    assert_eq!(leased[0]["attempts"], 1);
    let leased = repo.json(&["dequeue", "--worker", "w2", "--batch", "10"]);
    assert_eq!(ids(&leased), order[2..]);
    assert_eq!(
        repo.json(&["dequeue", "--worker", "w3"]),
        serde_json::json!([])
    );
}

#[test]
fn only_the_owner_may_heartbeat_release_or_complete() {
    let repo = TestRepo::new();
    let f = repo.write("r.json", &request(1, "own"));
    let id = repo.ok(&["enqueue", f.to_str().unwrap()]).trim().to_owned();
    repo.ok(&["dequeue", "--worker", "w1", "--lease", "1m"]);
    let before = repo.hyperion_refs();
    for args in [
        vec!["heartbeat", &id, "--worker", "w2"],
        vec!["release", &id, "--worker", "w2"],
        vec![
            "complete",
            &id,
            "--worker",
            "w2",
            "--landed",
            "0123456789abcdef0123456789abcdef01234567",
        ],
    ] {
        let (_, err) = repo.fails(&args, 1);
        assert!(
            err.contains("error:") && err.contains("queue.not_owner") && err.contains("hint:"),
            "{err}"
        );
    }
    assert_eq!(
        repo.hyperion_refs(),
        before,
        "refused commands change nothing"
    );
    let hb = repo.json(&["heartbeat", &id, "--worker", "w1"]);
    assert_eq!(hb["status"], "leased");
    let hb2 = repo.json(&["heartbeat", &id, "--worker", "w1"]);
    assert!(hb2["leased_until"].as_str() >= hb["leased_until"].as_str());
    // Heartbeats replace each other: enqueue, lease, one heartbeat.
    assert_eq!(
        repo.git(&[
            "rev-list",
            "--count",
            &format!("refs/hyperion/requests/{id}")
        ])
        .trim(),
        "3"
    );
    let rel = repo.json(&["release", &id, "--worker", "w1"]);
    assert_eq!(rel["status"], "pending");
    assert_eq!(rel["attempts"], 0);
    assert!(rel.get("lease_owner").is_none());
    let (_, err) = repo.fails(&["heartbeat", &id, "--worker", "w1"], 1);
    assert!(err.contains("queue.wrong_state"), "{err}");
}

#[test]
fn completion_lands_fails_or_retries() {
    let repo = TestRepo::new();
    repo.git(&["config", "hyperion.maxAttempts", "2"]);
    repo.git(&["config", "hyperion.retryBackoff", "1s"]);
    let d = request_dir(&repo, 3, "c");
    let all: Vec<String> = repo.enqueue(&d);
    repo.ok(&["dequeue", "--worker", "w", "--batch", "3"]);
    let head = repo.git(&["rev-parse", "HEAD"]).trim().to_owned();
    let r = repo.json(&["complete", &all[0], "--worker", "w", "--landed", &head]);
    assert_eq!(r["status"], "applied");
    assert_eq!(r["landed_commit"], head.as_str());
    let r = repo.json(&[
        "complete",
        &all[1],
        "--worker",
        "w",
        "--failed",
        "apply.conflict",
        "--class",
        "apply",
        "--message",
        "hunk 1 conflicts",
    ]);
    assert_eq!(r["status"], "dead");
    assert_eq!(r["dead_class"], "apply");
    assert_eq!(r["error"]["code"], "apply.conflict");
    let r = repo.json(&[
        "complete",
        &all[2],
        "--worker",
        "w",
        "--failed",
        "check.timeout",
        "--class",
        "check",
        "--transient",
    ]);
    assert_eq!(
        r["status"], "pending",
        "a transient failure with attempts left is retried"
    );
    assert!(r["not_before"].is_string());
    assert_eq!(
        repo.json(&["dequeue", "--worker", "w"]),
        serde_json::json!([]),
        "backoff holds it back"
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let again = repo.json(&["dequeue", "--worker", "w"]);
    assert_eq!(ids(&again), [all[2].clone()]);
    assert_eq!(again[0]["attempts"], 2);
    let r = repo.json(&[
        "complete",
        &all[2],
        "--worker",
        "w",
        "--failed",
        "check.timeout",
        "--class",
        "check",
        "--transient",
    ]);
    assert_eq!(r["status"], "dead", "out of attempts");
    let dead = repo.json(&["dead", "--class", "check"]);
    assert_eq!(ids(&dead), [all[2].clone()]);
    let (_, err) = repo.fails(
        &["complete", &all[0], "--worker", "w", "--landed", &head],
        1,
    );
    assert!(err.contains("queue.wrong_state"));
}

#[test]
fn sweep_requeues_expired_leases_and_dead_letters_past_max_attempts() {
    let repo = TestRepo::new();
    repo.git(&["config", "hyperion.maxAttempts", "2"]);
    repo.git(&["config", "hyperion.retryBackoff", "0s"]);
    let f = repo.write("r.json", &request(1, "sweep"));
    let id = repo.ok(&["enqueue", f.to_str().unwrap()]).trim().to_owned();
    repo.ok(&["dequeue", "--worker", "w1", "--lease", "1s"]);
    assert_eq!(
        repo.json(&["sweep"])["requeued"],
        serde_json::json!([]),
        "not expired yet"
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(
        repo.json(&["sweep"])["requeued"],
        serde_json::json!([id.clone()])
    );
    let r = repo.json(&["show", &id]);
    assert_eq!(r["record"]["status"], "pending");
    assert_eq!(r["record"]["attempts"], 1);
    assert_eq!(r["history"][0]["action"], "expire");
    repo.ok(&["dequeue", "--worker", "w2", "--lease", "1s"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(
        repo.json(&["sweep"])["dead"],
        serde_json::json!([id.clone()])
    );
    let r = repo.json(&["show", &id]);
    assert_eq!(r["record"]["dead_class"], "lease");
    assert_eq!(r["record"]["error"]["code"], "lease.expired");
}

#[test]
fn requeue_needs_a_dead_letter_and_a_reason_and_records_it() {
    let repo = TestRepo::new();
    let d = request_dir(&repo, 2, "rq");
    let all: Vec<String> = repo.enqueue(&d);
    repo.ok(&["dequeue", "--worker", "w", "--batch", "1"]);
    repo.fail_apply(&all[0], "w");
    let before = repo.hyperion_refs();
    let (_, err) = repo.fails(&["requeue", &all[0], &all[1], "--reason", "retry"], 1);
    assert!(err.contains("queue.wrong_state"), "{err}");
    assert_eq!(repo.hyperion_refs(), before, "one bad id changes nothing");
    repo.fails(&["requeue", &all[0]], 2);
    repo.fails(&["requeue", "ffffffffffffffff", "--reason", "x"], 2);
    let r = repo.json(&["requeue", &all[0][..8], "--reason", "base rebased"]);
    assert_eq!(r[0]["status"], "pending");
    assert_eq!(r[0]["attempts"], 0);
    let h = repo.json(&["show", &all[0]]);
    assert_eq!(h["history"][0]["action"], "requeue");
    assert_eq!(h["history"][0]["reason"], "base rebased");
}

#[test]
fn history_is_the_git_log_of_the_chain() {
    let repo = TestRepo::new();
    let f = repo.write("r.json", &request(1, "h"));
    let id = repo.ok(&["enqueue", f.to_str().unwrap()]).trim().to_owned();
    repo.ok(&["dequeue", "--worker", "w1"]);
    repo.ok(&["release", &id, "--worker", "w1"]);
    let show = repo.json(&["show", &id]);
    let commits: Vec<String> = repo
        .git(&[
            "log",
            "--format=%H",
            &format!("refs/hyperion/requests/{id}"),
        ])
        .lines()
        .map(str::to_owned)
        .collect();
    let hist: Vec<String> = show["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["commit"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(hist, commits);
    let subjects = repo.git(&[
        "log",
        "--format=%s",
        &format!("refs/hyperion/requests/{id}"),
    ]);
    assert!(
        subjects.starts_with(&format!("hyperion: release {id} (leased -> pending) by w1")),
        "{subjects}"
    );
    let audit = repo.json(&["audit"]);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["enqueue", "lease", "release"]);
    repo.git(&["fsck", "--strict", "--no-dangling"]);
}

#[test]
fn list_filters() {
    let repo = TestRepo::new();
    let d = request_dir(&repo, 4, "lf");
    let all: Vec<String> = repo.enqueue(&d);
    let mut other = request(7, "lf");
    other["agent"] = "other-agent".into();
    let f = repo.write("o.json", &other);
    let oid = repo.ok(&["enqueue", f.to_str().unwrap()]).trim().to_owned();
    repo.ok(&["dequeue", "--worker", "w", "--batch", "1"]);
    assert_eq!(
        ids(&repo.json(&["list", "--status", "leased"])),
        [all[0].clone()]
    );
    assert_eq!(ids(&repo.json(&["list", "--agent", "other-agent"])), [oid]);
    assert_eq!(
        repo.json(&["list", "--limit", "2"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        repo.json(&["list", "--since", "2h"])
            .as_array()
            .unwrap()
            .len(),
        5
    );
    assert_eq!(
        repo.json(&["list", "--since", "2999-01-01"])
            .as_array()
            .unwrap()
            .len(),
        0
    );
    repo.fails(&["list", "--status", "bogus"], 2);
    repo.fails(&["list", "--since", "yesterday-ish"], 2);
    let text = repo.ok(&["list"]);
    assert!(text.starts_with("ID "), "{text}");
    // Oldest first, ids breaking ties; the text lists the same order as the JSON.
    let listed = repo.json(&["list"]);
    let keys: Vec<(jiff::Timestamp, String)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let at = r["created_at"].as_str().unwrap().parse().unwrap();
            (at, r["id"].as_str().unwrap().to_owned())
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    let text_ids: Vec<&str> = text
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    let json_ids: Vec<&str> = keys.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(text_ids, json_ids);
}

#[test]
fn wraps_raw_git_diff_and_format_patch_output() {
    let repo = TestRepo::new();
    std::fs::write(repo.path().join("a.txt"), "one\ntwo\n").unwrap();
    std::fs::write(repo.path().join("gone.txt"), "bye\n").unwrap();
    std::fs::write(repo.path().join("old.txt"), "moving\n").unwrap();
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "files"]);
    std::fs::write(repo.path().join("a.txt"), "one\n2\n").unwrap();
    std::fs::write(repo.path().join("new.txt"), "fresh\n").unwrap();
    repo.git(&["rm", "-q", "gone.txt"]);
    repo.git(&["mv", "old.txt", "moved.txt"]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "Rework files"]);
    let diff = repo.git(&["diff", "-M", "HEAD~1", "HEAD"]);
    let fp = repo.git(&["format-patch", "-1", "--stdout", "-M", "HEAD"]);
    // The patches go to a target that does not have them yet.
    repo.git(&["reset", "-q", "--hard", "HEAD~1"]);
    // The check named below must be defined by the target's policy.
    std::fs::create_dir_all(repo.path().join(".hyperion")).unwrap();
    std::fs::write(
        repo.path().join(".hyperion/policy.toml"),
        "[checks.unit]\nrun = [\"true\"]\n",
    )
    .unwrap();
    repo.git(&["add", ".hyperion"]);
    repo.git(&["commit", "-q", "-m", "policy"]);
    let p = repo.home.path().join("x.diff");
    std::fs::write(&p, &diff).unwrap();
    let id = repo
        .ok(&[
            "enqueue",
            "--patch",
            p.to_str().unwrap(),
            "--task",
            "T-9",
            "--agent",
            "aider",
            "--check",
            "unit",
        ])
        .trim()
        .to_owned();
    let req = repo.json(&["show", &id, "--patch"])["request"].clone();
    let ops: Vec<(String, String)> = req["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["path"].as_str().unwrap().to_owned(),
                c["operation"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        ops,
        [
            ("a.txt".into(), "update".into()),
            ("gone.txt".into(), "delete".into()),
            ("moved.txt".into(), "rename".into()),
            ("new.txt".into(), "add".into())
        ]
    );
    assert_eq!(req["changes"][2]["from"], "old.txt");
    assert_eq!(req["checks"], serde_json::json!(["unit"]));
    std::fs::write(&p, &fp).unwrap();
    let id2 = repo
        .ok(&[
            "enqueue",
            "--patch",
            p.to_str().unwrap(),
            "--task",
            "T-10",
            "--agent",
            "aider",
        ])
        .trim()
        .to_owned();
    let shown = repo.json(&["show", &id2]);
    assert_eq!(
        shown["record"]["title"], "Rework files",
        "the mail subject becomes the title"
    );
    // The wrapped patches still apply where they were made.
    let req2 = repo.json(&["show", &id2, "--patch"])["request"].clone();

    for c in req2["changes"].as_array().unwrap() {
        let f = repo.home.path().join("one.patch");
        std::fs::write(&f, c["patch"].as_str().unwrap()).unwrap();
        repo.git(&["apply", "--check", f.to_str().unwrap()]);
    }
}

#[test]
fn gc_archives_into_a_restorable_bundle() {
    let repo = TestRepo::new();
    let d = request_dir(&repo, 3, "gc");
    let all: Vec<String> = repo.enqueue(&d);
    repo.ok(&["dequeue", "--worker", "w", "--batch", "2"]);
    repo.fail_apply(&all[0], "w");
    let head = repo.git(&["rev-parse", "HEAD"]).trim().to_owned();
    repo.ok(&["complete", &all[1], "--worker", "w", "--landed", &head]);
    let before = repo.hyperion_refs();
    let dry = repo.json(&["gc", "--older-than", "0s", "--dry-run"]);
    assert_eq!(dry["archived"].as_array().unwrap().len(), 2);
    assert_eq!(repo.hyperion_refs(), before, "a dry run changes nothing");
    assert_eq!(
        repo.json(&["gc"])["archived"],
        serde_json::json!([]),
        "nothing is 30 days old"
    );
    let done = repo.json(&["gc", "--older-than", "0s"]);
    let bundle = done["archive"].as_str().unwrap().to_owned();
    assert_eq!(
        ids(&repo.json(&["list"])),
        [all[2].clone()],
        "only the pending one is left"
    );
    repo.git(&[
        "fetch",
        "-q",
        &bundle,
        "refs/hyperion/requests/*:refs/hyperion/requests/*",
    ]);
    assert_eq!(
        repo.hyperion_refs(),
        before,
        "the bundle restores every archived chain"
    );
    assert_eq!(
        repo.json(&["list"]).as_array().unwrap().len(),
        3,
        "restored requests are indexed again"
    );
}

#[test]
fn works_in_a_bare_repository() {
    let repo = TestRepo::bare();
    // Requests land on an existing branch: give main a first commit.
    let tree = repo.git(&["mktree"]);
    let commit = repo.git(&["commit-tree", "-m", "initial", tree.trim()]);
    repo.git(&["update-ref", "refs/heads/main", commit.trim()]);
    let d = request_dir(&repo, 3, "bare");
    let all: Vec<String> = repo.enqueue(&d);
    assert_eq!(ids(&repo.json(&["list"])), all);
    assert_eq!(
        ids(&repo.json(&["dequeue", "--worker", "ci", "--batch", "3"])),
        all
    );
    repo.ok(&["doctor"]);
    assert!(repo.git_dir().join("hyperion/index").is_dir());
}

#[test]
fn doctor_config_and_demo() {
    let repo = TestRepo::new();
    let d = request_dir(&repo, 2, "doc");
    repo.ok(&["enqueue", d.to_str().unwrap()]);
    let doc = repo.json(&["doctor"]);
    assert_eq!(doc["requests"], 2);
    assert_eq!(doc["findings"], serde_json::json!([]));
    repo.git(&["config", "hyperion.leaseDuration", "7m"]);
    let cfg = repo.json(&["config"]);
    let lease = cfg
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "hyperion.leaseDuration")
        .unwrap();
    assert_eq!(lease["value"], "7m");
    assert!(
        lease["origin"].as_str().unwrap().starts_with("local"),
        "{lease}"
    );
    let max = cfg
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "hyperion.maxLease")
        .unwrap();
    assert_eq!(max["origin"], "default");
    repo.git(&["config", "hyperion.maxAttempts", "many"]);
    let (_, err) = repo.fails(&["list"], 2);
    assert!(
        err.contains("hyperion.maxAttempts") && err.contains("config.invalid"),
        "{err}"
    );
    repo.git(&["config", "--unset", "hyperion.maxAttempts"]);
    let demo_dir = repo.home.path().join("demo");
    let out = repo.ok(&["demo", "--dir", demo_dir.to_str().unwrap()]);
    assert!(out.contains("request.unknown_field"), "{out}");
    assert!(out.contains("git log refs/hyperion/requests/"), "{out}");
    // End to end: three samples land, the conflicting one is a dead letter, the last landing
    // is rolled back.
    assert_eq!(out.matches("landed as ").count(), 3, "{out}");
    assert!(out.contains("dead:apply"), "{out}");
    assert!(out.contains("rolled_back"), "{out}");
    let log = common::hermetic::git(&demo_dir, &["log", "--format=%s", "main"]);
    assert_eq!(
        log.lines().count(),
        5,
        "base, three landings, one revert: {log}"
    );
    let (_, err) = repo.fails(&["demo", "--dir", "/proc/hyperion-demo/x"], 2);
    assert!(
        err.contains("[env.io]"),
        "an unwritable place is an environment error: {err}"
    );
    repo.fails(&["demo", "--dir", demo_dir.to_str().unwrap()], 2);
}

#[test]
fn lease_length_is_bounded_and_worker_ids_are_checked() {
    let repo = TestRepo::new();
    let f = repo.write("r.json", &request(1, "lease"));
    repo.ok(&["enqueue", f.to_str().unwrap()]);
    let before = repo.hyperion_refs();
    let (_, err) = repo.fails(&["dequeue", "--worker", "w", "--lease", "2h"], 2);
    assert!(err.contains("hyperion.maxLease"), "{err}");
    repo.fails(&["dequeue", "--worker", "w", "--lease", "soon"], 2);
    repo.fails(&["dequeue", "--worker", "two words"], 2);
    assert_eq!(repo.hyperion_refs(), before);
    repo.git(&["config", "hyperion.maxLease", "3h"]);
    repo.ok(&["dequeue", "--worker", "w", "--lease", "2h"]);
}

#[test]
fn outside_a_repository_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::hermetic::command(common::bin(), dir.path(), dir.path())
        .env("GIT_CEILING_DIRECTORIES", dir.path().parent().unwrap())
        .args(["list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: ") && err.contains("hint:"), "{err}");
}

#[test]
fn dash_c_and_git_dir_pick_the_repository_like_git_does() {
    let repo = TestRepo::new();
    let f = repo.write("r.json", &request(1, "dashc"));
    // -C: relative paths are read from the new directory, as with `git -C`.
    std::fs::copy(&f, repo.path().join("local.json")).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let id = {
        let out = common::hermetic::command(common::bin(), elsewhere.path(), elsewhere.path())
            .args(["-C", repo.path().to_str().unwrap(), "enqueue", "local.json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    // GIT_DIR: `git --git-dir=X hyperion …` works on X.
    let out = common::hermetic::command(common::bin(), elsewhere.path(), elsewhere.path())
        .env("GIT_DIR", repo.git_dir())
        .args(["list", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["id"], id.as_str());
}

#[test]
fn absurd_durations_are_refused_not_panicked_on() {
    let repo = TestRepo::new();
    for args in [
        vec!["list", "--since", "99999999999999w"],
        vec!["gc", "--older-than", "1000000w"],
        vec![
            "dequeue",
            "--worker",
            "w",
            "--lease",
            "18446744073709551615s",
        ],
    ] {
        let (_, err) = repo.fails(&args, 2);
        assert!(err.starts_with("error"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    repo.git(&["config", "hyperion.maxLease", "99999999999w"]);
    let (_, err) = repo.fails(&["list"], 2);
    assert!(err.contains("hyperion.maxLease"), "{err}");
}

#[test]
fn patch_options_need_patch() {
    let repo = TestRepo::new();
    let f = repo.write("r.json", &request(1, "opts"));
    repo.fails(&["enqueue", f.to_str().unwrap(), "--task", "T"], 2);
    repo.fails(&["enqueue", f.to_str().unwrap(), "--check", "unit"], 2);
    assert_eq!(repo.hyperion_refs(), "");
}

#[test]
fn a_large_batch_is_written_as_one_pack_that_git_reads() {
    let repo = TestRepo::new();
    let d = request_dir(&repo, 40, "pack");
    let mut copy = request(3, "pack");
    copy["title"] = "change 3 pack".into();
    std::fs::write(
        d.join("00003-again.json"),
        serde_json::to_vec(&copy).unwrap(),
    )
    .unwrap();
    let ids: Vec<String> = repo.enqueue(&d);
    assert_eq!(ids.len(), 41);
    assert_eq!(
        ids[3], ids[4],
        "a repeat within the batch is the same request"
    );
    let counts = repo.git(&["count-objects", "-v"]);
    assert!(counts.contains("packs: 1"), "{counts}");
    let packs: Vec<_> = std::fs::read_dir(repo.git_dir().join("objects/pack"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "idx"))
        .collect();
    let verify = repo.git(&["verify-pack", "-v", packs[0].to_str().unwrap()]);
    assert!(
        verify.contains("commit") && verify.contains("tree") && verify.contains("blob"),
        "{verify}"
    );
    repo.git(&["fsck", "--strict", "--no-dangling"]);
    assert_eq!(repo.json(&["list"]).as_array().unwrap().len(), 40);
    let id = &ids[0];
    let shown = repo.json(&["show", id, "--patch"]);
    assert_eq!(
        shown["request"]["changes"][0]["patch"],
        request(0, "pack")["changes"][0]["patch"]
    );
    // The queue works on packed chains as on loose ones.
    repo.ok(&["dequeue", "--worker", "w", "--batch", "40"]);
    repo.ok(&["release", id, "--worker", "w"]);
    repo.git(&["fsck", "--strict", "--no-dangling"]);
}

#[test]
fn logs_are_quiet_by_default_and_json_lines_with_ids_on_request() {
    let repo = TestRepo::new();
    let f = repo.write("r.json", &request(1, "log"));
    let out = repo.run(&["enqueue", f.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "quiet by default: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let out = repo.run(&["-v", "--log-format", "json", "dequeue", "--worker", "w7"]);
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not a JSON line: {l}")))
        .collect();
    let leased = lines
        .iter()
        .find(|l| l["fields"]["message"] == "leased")
        .expect("a lease event");
    assert_eq!(leased["fields"]["request_id"], id.as_str());
    assert_eq!(leased["fields"]["task_id"], "TASK-1");
    assert_eq!(leased["fields"]["worker"], "w7");
    let out = repo.run(&["-v", "release", &id, "--worker", "w7"]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("transition") && text.contains(&id) && text.contains("w7"),
        "{text}"
    );
}

/// The overview (`--help`, `help`) lists every subcommand with its summary, though a
/// subcommand's arguments are built only when it runs; each subcommand's own help has its
/// usage and the global options, whether asked as `SUB --help` or `help SUB`.
#[test]
fn help_lists_every_subcommand_with_its_summary() {
    let repo = TestRepo::new();
    let mut names = Vec::new();
    for args in [&["--help"][..], &["help"]] {
        let text = repo.ok(args);
        let listed: Vec<&str> = text
            .lines()
            .skip_while(|l| *l != "Commands:")
            .skip(1)
            .take_while(|l| !l.is_empty())
            .filter(|l| !l.starts_with("    "))
            .collect();
        assert!(listed.len() >= 30, "{text}");
        for line in &listed {
            let (name, summary) = line.trim().split_once(' ').unwrap_or((line.trim(), ""));
            assert!(!summary.trim().is_empty(), "{name} has no summary: {text}");
            if args == ["--help"] && name != "help" {
                names.push(name.to_owned());
            }
        }
    }
    for name in &names {
        for args in [vec![name.as_str(), "--help"], vec!["help", name.as_str()]] {
            let text = repo.ok(&args);
            assert!(
                text.contains(&format!("Usage: git hyperion {name}")),
                "{args:?}: {text}"
            );
            assert!(text.contains("--format <FORMAT>"), "{args:?}: {text}");
        }
    }
}

/// `git hyperion list | head`: a reader that goes away ends the command quietly (as SIGPIPE
/// would), not with a panic message.
#[test]
fn a_closed_pipe_ends_output_quietly() {
    let repo = TestRepo::new();
    // More than a pipe holds (64 KiB), in both formats: the reader leaves after one byte.
    repo.enqueue(&request_dir(&repo, 800, "pipe"));
    for format in ["text", "json"] {
        let script = "\"$BIN\" list --format \"$FORMAT\" 2>\"$ERR\" | head -c 1 >/dev/null; echo \"${PIPESTATUS[0]}\"";
        let err = repo.home.path().join("err.txt");
        let out = repo
            .command("bash")
            .arg("-c")
            .arg(script)
            .env("BIN", common::bin())
            .env("ERR", &err)
            .env("FORMAT", format)
            .output()
            .unwrap();
        let status = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let stderr = std::fs::read_to_string(&err).unwrap();
        assert!(!stderr.contains("panicked"), "{format}: {stderr}");
        assert_eq!(status, "141", "{format}: {stderr}");
    }
}

/// Every batch of new objects becomes a pack, and the small packs hyperion wrote are joined
/// in process (geometrically, once eight would be joined): many commands leave few packs, no
/// `git repack` runs, and the repository stays whole.
#[test]
fn small_packs_are_joined_in_process() {
    let repo = TestRepo::new();
    let log = repo.git_dir().join("hyperion/repack.log");
    let mut most = 0;
    for i in 0..45 {
        // Two requests per call: one pack each.
        let d = repo.home.path().join(format!("batch-{i}"));
        std::fs::create_dir_all(&d).unwrap();
        for k in 0..2 {
            let r = request(1000 + i * 2 + k, &format!("pk{i}"));
            std::fs::write(d.join(format!("{k}.json")), r.to_string()).unwrap();
        }
        repo.ok(&["enqueue", d.to_str().unwrap()]);
        most = most.max(repo.packs());
    }
    assert!(most < 16, "small packs were joined: {most} at most");
    assert!(!log.exists(), "no git repack ran");
    assert_eq!(repo.json(&["list"]).as_array().unwrap().len(), 90);
    repo.git(&["fsck", "--strict", "--no-dangling"]);
}

/// Once 40 packs exist that a join leaves alone (git's own here), the small ones are rolled
/// up (`git repack --geometric`), and the repository stays whole. By default
/// (`hyperion.autoDetach`) the repack goes on after the command that started it, as git's
/// auto gc does, its messages in `hyperion/repack.log`; with `hyperion.autoDetach=false` the
/// command waits for it.
#[test]
fn many_small_packs_are_rolled_up() {
    for detach in [true, false] {
        let repo = TestRepo::new();
        repo.git(&["config", "hyperion.autoDetach", &detach.to_string()]);
        let log = repo.git_dir().join("hyperion/repack.log");
        let base = repo.git_dir().join("objects/pack/pack");
        for i in 0..40 {
            let id = repo.git_in(
                &["hash-object", "-w", "--stdin"],
                format!("blob {i}\n").as_bytes(),
            );
            repo.git_in(
                &["pack-objects", "-q", base.to_str().unwrap()],
                format!("{}\n", id.trim()).as_bytes(),
            );
        }
        assert!(repo.packs() >= 40);
        repo.ok(&["enqueue", request_dir(&repo, 2, "roll").to_str().unwrap()]);
        if detach {
            assert!(log.exists(), "a detached repack writes hyperion/repack.log");
            // The repack started by this command may still run: wait for its lock.
            let lock = std::fs::File::open(repo.git_dir().join("hyperion/repack.lock"))
                .expect("the repack's lock file");
            rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockShared)
                .expect("the repack ends");
        } else {
            assert!(
                !log.exists(),
                "only a detached repack writes hyperion/repack.log"
            );
        }
        assert!(
            repo.packs() < 40,
            "small packs were rolled up: {}",
            repo.packs()
        );
        assert_eq!(repo.json(&["list"]).as_array().unwrap().len(), 2);
        repo.git(&["fsck", "--strict", "--no-dangling"]);
    }
}

/// Chains written before records moved into commit messages keep their record in
/// `state.json`: they are read as before, and their first new transition drops the stale file.
#[test]
fn a_chain_with_its_record_in_state_json_is_still_read() {
    let repo = TestRepo::new();
    let d = request_dir(&repo, 1, "old");
    let id = repo.enqueue(&d).remove(0);
    let r = format!("refs/hyperion/requests/{id}");
    let tip = repo.git(&["rev-parse", &r]).trim().to_owned();
    let message = repo.git(&["log", "-1", "--format=%B", &tip]);
    let mut parts: Vec<&str> = message.trim().split("\n\n").collect();
    assert_eq!(parts.len(), 3, "summary, event, record: {message}");
    let record = parts.pop().unwrap().to_owned();
    // The old layout: the record as state.json in the tree, the message without it.
    let state = repo.home.path().join("state.json");
    std::fs::write(&state, format!("{record}\n")).unwrap();
    let blob = repo.git(&["hash-object", "-w", state.to_str().unwrap()]);
    let mut listing = repo.git(&["ls-tree", &tip]);
    listing.push_str(&format!("100644 blob {}\tstate.json\n", blob.trim()));
    let tree = repo.git_in(&["mktree"], listing.as_bytes());
    let old_message = parts.join("\n\n");
    let old = repo.git(&["commit-tree", &tree, "-m", &old_message]);
    repo.git(&["update-ref", &r, old.trim(), &tip]);
    repo.ok(&["doctor", "--reindex"]);

    let shown = repo.json(&["show", &id]);
    assert_eq!(shown["record"]["status"], "pending");
    let leased = repo.json(&["dequeue", "--worker", "w", "--batch", "1"]);
    assert_eq!(leased[0]["id"], id.as_str());
    let files = repo.git(&["ls-tree", "--name-only", &r]);
    assert!(!files.contains("state.json"), "{files}");
    assert_eq!(repo.json(&["show", &id])["record"]["status"], "leased");
    // The mixed chain (old root, new lease) is one git hyperion wrote.
    assert_eq!(repo.json(&["doctor"])["findings"], serde_json::json!([]));
}
