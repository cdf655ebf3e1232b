#![allow(clippy::unwrap_used)]
//! The CLI's output as a person or a script reads it, pinned as insta snapshots
//! (tests/snapshots/): `list`, `show`, `inspect` and `dead` in text and JSON, and the errors a user meets
//! most (an invalid request file, an unknown id, a transition from the wrong state, a request
//! the policy refuses), as stderr and as the `--format json` error document.
//!
//! The repository is built the same way every run: content-derived request ids, the hermetic
//! environment's fixed identity and commit date (tests/common/hermetic.rs), a fixed actor and
//! worker id. What cannot be fixed is redacted by filters: wall-clock times (every record and
//! event is stamped with the time it happened), the ids of the commits that carry them, how
//! long a step took, and the temporary directories.
//!
//! A change of output fails here; when it is meant, `cargo insta review` (or
//! `INSTA_UPDATE=always cargo test --test suite snapshots::`) writes the new snapshots to commit.

use crate::common;

use common::TestRepo;
use serde_json::{Value, json};

/// The actor every command records (`HYPERION_ACTOR`), and the worker's id.
const ACTOR: &str = "snapshot-tester";
const WORKER: &str = "w1";

/// The requests of the scene: T-1 and T-3 both add `src/a.txt` (T-3, of higher priority,
/// lands first and T-1 dies at the worker), T-2 adds `src/b.txt` and lands, T-4 is enqueued
/// after the worker ran and waits.
fn add(task: &str, path: &str, line: &str, priority: u8) -> Value {
    let patch = format!("--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+{line}\n");
    json!({
        "schema": "hyperion.change-request/v1",
        "task_id": task,
        "agent": "test-agent",
        "title": format!("add {path}"),
        "priority": priority,
        "file_targets": ["src/**"],
        "changes": [{
            "path": path, "operation": "add", "patch": patch, "sha256": common::sha256(&patch)
        }]
    })
}

struct Scene {
    repo: TestRepo,
    /// T-1 (dead), T-2 (applied), T-3 (applied), T-4 (pending).
    ids: [String; 4],
}

impl Scene {
    fn new() -> Scene {
        let repo = TestRepo::new();
        let first = [
            add("T-1", "src/a.txt", "one", 5),
            add("T-2", "src/b.txt", "two", 3),
            add("T-3", "src/a.txt", "three", 7),
        ];
        let paths: Vec<String> = first
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let p = repo.write(&format!("r{i}.json"), r);
                p.to_str().unwrap().to_owned()
            })
            .collect();
        let mut args = vec!["enqueue"];
        args.extend(paths.iter().map(String::as_str));
        let ids = repo.ok_as(ACTOR, &args);
        let ids: Vec<&str> = ids.lines().collect();
        assert_eq!(ids.len(), 3, "{ids:?}");
        repo.ok_as(ACTOR, &["worker", "--drain", "--id", WORKER]);
        let p = repo.write("r3.json", &add("T-4", "src/c.txt", "four", 5));
        let t4 = repo.ok_as(ACTOR, &["enqueue", p.to_str().unwrap()]);
        Scene {
            ids: [ids[0], ids[1], ids[2], t4.trim()].map(str::to_owned),
            repo,
        }
    }
}

/// `run`, which must exit with `code`; a text holding the exit code, stdout (the JSON error
/// document, pretty-printed, when there is one) and stderr, for one snapshot of all three.
fn fails(repo: &TestRepo, args: &[&str], code: i32) -> String {
    let out = repo.run_as(ACTOR, args);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stdout = if stdout.is_empty() {
        stdout
    } else {
        pretty(&stdout)
    };
    format!(
        "exit {code}\n--- stdout\n{stdout}--- stderr\n{}",
        String::from_utf8(out.stderr).unwrap()
    )
}

/// A JSON error document (one line on stdout), pretty-printed, so that a snapshot's diff
/// shows the field that changed.
fn pretty(stdout: &str) -> String {
    let v: Value = serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    serde_json::to_string_pretty(&v).unwrap() + "\n"
}

/// Assert snapshot `name` of `value`, with what no run can fix redacted.
fn snapshot(repo: &TestRepo, name: &str, value: &str) {
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    // Longest first: the repository's directory may lie inside the home's or the other way.
    let mut dirs = [
        (repo.path().to_str().unwrap().to_owned(), "[REPO]"),
        (repo.home.path().to_str().unwrap().to_owned(), "[HOME]"),
    ];
    dirs.sort_by_key(|(d, _)| std::cmp::Reverse(d.len()));
    for (dir, name) in dirs {
        settings.add_filter(&regex::escape(&dir), name);
    }
    // Times of day: every record and event is stamped with the wall clock.
    settings.add_filter(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z", "[TIME]");
    // Commits of request chains and landings: their content holds those times.
    settings.add_filter(r"\b[0-9a-f]{40}\b", "[COMMIT]");
    settings.add_filter(r"\b[0-9a-f]{12}\b", "[COMMIT12]");
    // How long a step took.
    settings.add_filter(r"\(\d+ ms\)", "([N] ms)");
    settings.bind(|| insta::assert_snapshot!(name, value));
}

#[test]
fn list() {
    let s = Scene::new();
    snapshot(&s.repo, "list", &s.repo.ok_as(ACTOR, &["list"]));
    snapshot(
        &s.repo,
        "list_json",
        &s.repo.ok_as(ACTOR, &["list", "--format", "json"]),
    );
}

#[test]
fn show() {
    let s = Scene::new();
    // A landed request, a dead letter, a waiting one.
    for (i, name) in [(2, "show_applied"), (0, "show_dead"), (3, "show_pending")] {
        snapshot(&s.repo, name, &s.repo.ok_as(ACTOR, &["show", &s.ids[i]]));
    }
    snapshot(
        &s.repo,
        "show_dead_json",
        &s.repo
            .ok_as(ACTOR, &["show", &s.ids[0], "--format", "json"]),
    );
}

#[test]
fn inspect() {
    let s = Scene::new();
    // A dead letter (refused at the worker) and a landed request (with its note).
    for (i, name) in [(0, "inspect_dead"), (2, "inspect_applied")] {
        snapshot(&s.repo, name, &s.repo.ok_as(ACTOR, &["inspect", &s.ids[i]]));
    }
    snapshot(
        &s.repo,
        "inspect_applied_json",
        &s.repo
            .ok_as(ACTOR, &["inspect", &s.ids[2], "--format", "json"]),
    );
}

#[test]
fn dead() {
    let s = Scene::new();
    snapshot(&s.repo, "dead", &s.repo.ok_as(ACTOR, &["dead"]));
    snapshot(
        &s.repo,
        "dead_json",
        &s.repo.ok_as(ACTOR, &["dead", "--format", "json"]),
    );
}

#[test]
fn error_an_invalid_request_file() {
    let repo = TestRepo::new();
    let mut bad = add("T-9", "src/x.txt", "x", 5);
    bad["changes"][0]["sha256"] = json!("0".repeat(64));
    bad["priority"] = json!(200);
    bad["surprise"] = json!(true);
    let p = repo.write("bad.json", &bad);
    let p = p.to_str().unwrap();
    snapshot(
        &repo,
        "error_invalid_request",
        &fails(&repo, &["enqueue", p], 1),
    );
    snapshot(
        &repo,
        "error_invalid_request_json",
        &fails(&repo, &["enqueue", p, "--format", "json"], 1),
    );
}

#[test]
fn error_an_unknown_id() {
    let repo = TestRepo::new();
    snapshot(
        &repo,
        "error_unknown_id",
        &fails(&repo, &["show", "0123456789abcdef"], 2),
    );
    snapshot(
        &repo,
        "error_unknown_id_json",
        &fails(&repo, &["show", "0123456789abcdef", "--format", "json"], 2),
    );
}

#[test]
fn error_a_transition_from_the_wrong_state() {
    let s = Scene::new();
    let applied = &s.ids[2];
    snapshot(
        &s.repo,
        "error_wrong_state",
        &fails(&s.repo, &["requeue", applied, "--reason", "again"], 1),
    );
    snapshot(
        &s.repo,
        "error_wrong_state_json",
        &fails(
            &s.repo,
            &["requeue", applied, "--reason", "again", "--format", "json"],
            1,
        ),
    );
}

#[test]
fn error_a_request_the_policy_refuses() {
    let repo = TestRepo::new();
    std::fs::create_dir_all(repo.path().join(".hyperion")).unwrap();
    std::fs::write(
        repo.path().join(".hyperion/policy.toml"),
        "[paths]\ndeny = [\"secrets/**\"]\n",
    )
    .unwrap();
    repo.git(&["add", ".hyperion"]);
    repo.git(&["commit", "-q", "-m", "policy"]);
    let mut r = add("T-5", "secrets/key.pem", "not a key", 5);
    r["file_targets"] = json!(["**"]);
    let p = repo.write("denied.json", &r);
    let p = p.to_str().unwrap();
    snapshot(
        &repo,
        "error_policy_refuses",
        &fails(&repo, &["enqueue", p], 1),
    );
    snapshot(
        &repo,
        "error_policy_refuses_json",
        &fails(&repo, &["enqueue", p, "--format", "json"], 1),
    );
}
