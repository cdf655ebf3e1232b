#![allow(clippy::unwrap_used)]
//! The worker, `apply` and `rollback` end to end: real repositories, the real binary.

use crate::common;

use common::TestRepo;
use serde_json::Value;

/// Change `file` in the checkout with `edit`, take `git diff`, undo it, enqueue the diff.
fn enqueue_edit(repo: &TestRepo, task: &str, file: &str, content: &str) -> String {
    let path = repo.path().join(file);
    let existed = path.exists();
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(&path, content).unwrap();
    let diff = if existed {
        let d = repo.git(&["diff", "--", file]);
        repo.git(&["checkout", "-q", "--", file]);
        d
    } else {
        repo.git(&["add", "-N", file]);
        let d = repo.git(&["diff", "--", file]);
        repo.git(&["rm", "-q", "--cached", file]);
        std::fs::remove_file(&path).unwrap();
        d
    };
    assert!(!diff.is_empty(), "no diff for {file}");
    let patch = repo.home.path().join(format!("{task}.diff"));
    std::fs::write(&patch, diff).unwrap();
    repo.ok(&[
        "enqueue",
        "--patch",
        patch.to_str().unwrap(),
        "--task",
        task,
        "--agent",
        "claude",
        "--title",
        &format!("{task}: {file}"),
    ])
    .trim()
    .to_owned()
}

/// `worker --drain --format json`: one report per line.
fn drain(repo: &TestRepo) -> Vec<Value> {
    repo.ok(&["worker", "--drain", "--format", "json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn record(repo: &TestRepo, id: &str) -> Value {
    repo.json(&["show", id])
}

fn tip(repo: &TestRepo) -> String {
    repo.git(&["rev-parse", "main"]).trim().to_owned()
}

#[test]
fn lands_with_author_trailers_note_and_brings_the_checkout_along() {
    let repo = TestRepo::new();
    let id = enqueue_edit(&repo, "T-1", "README.md", "hello\nworld\n");
    let reports = drain(&repo);
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0]["result"], "landed");
    let commit = reports[0]["commit"].as_str().unwrap().to_owned();
    assert_eq!(tip(&repo), commit);

    let meta = repo.git(&["log", "-1", "--format=%an|%ae|%cn|%P", "main"]);
    let parts: Vec<&str> = meta.trim().split('|').collect();
    assert_eq!(parts[0], "claude", "authored as the agent");
    assert!(parts[1].ends_with("@agents.hyperion.invalid"));
    assert_eq!(
        parts[2], "Test Committer",
        "committed as the worker's identity"
    );
    let body = repo.git(&["log", "-1", "--format=%B", "main"]);
    assert!(body.starts_with("T-1: README.md\n"), "{body}");
    assert!(body.contains(&format!("Hyperion-Request: {id}")), "{body}");
    assert!(body.contains("Hyperion-Task: T-1"), "{body}");
    assert_eq!(
        repo.git(&["rev-parse", "main~1^{tree}"]).trim(),
        repo.git(&["rev-parse", "main~1^{tree}"]).trim()
    );

    let note = repo.git(&["notes", "--ref", "hyperion", "show", &commit]);
    assert!(note.contains(&format!("request: {id}")), "{note}");
    assert!(note.contains("agent: claude"), "{note}");
    assert!(note.contains("version: git-hyperion "), "{note}");

    // The checkout of main was brought along and is clean.
    assert_eq!(
        std::fs::read_to_string(repo.path().join("README.md")).unwrap(),
        "hello\nworld\n"
    );
    assert_eq!(repo.git(&["status", "--porcelain"]), "");

    let r = record(&repo, &id);
    assert_eq!(r["record"]["status"], "applied");
    assert_eq!(r["record"]["landed_commit"], commit.as_str());
}

#[test]
fn a_dirty_checkout_refuses_landing_and_changes_nothing() {
    let repo = TestRepo::new();
    repo.commit(&[("other.txt", "one\n")], "edit other.txt");
    let id = enqueue_edit(&repo, "T-1", "README.md", "hello\nthere\n");
    std::fs::write(repo.path().join("other.txt"), "local work\n").unwrap();
    let before = tip(&repo);
    let out = repo.ok(&["worker", "--once", "--format", "json"]);
    let report: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(report["result"], "retry", "{report}");
    assert_eq!(report["code"], "land.worktree_dirty");
    assert_eq!(tip(&repo), before, "main did not move");
    assert_eq!(
        std::fs::read_to_string(repo.path().join("other.txt")).unwrap(),
        "local work\n"
    );
    assert_eq!(
        std::fs::read_to_string(repo.path().join("README.md")).unwrap(),
        "hello\n"
    );
    let r = record(&repo, &id);
    assert_eq!(r["record"]["status"], "pending");
    assert_eq!(r["record"]["error"]["code"], "land.worktree_dirty");
}

#[test]
fn a_conflict_becomes_a_dead_letter_with_its_artifacts() {
    let repo = TestRepo::new();
    let base = "a\nb\nc\nd\ne\nf\ng\n";
    repo.commit(&[("f.txt", base)], "edit f.txt");
    let first = enqueue_edit(&repo, "T-1", "f.txt", "a\nb\nc\nONE\ne\nf\ng\n");
    let second = enqueue_edit(&repo, "T-2", "f.txt", "a\nb\nc\nTWO\ne\nf\ng\n");
    let reports = drain(&repo);
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[0]["id"], first.as_str());
    assert_eq!(reports[0]["result"], "landed");
    assert_eq!(reports[1]["result"], "dead");
    assert_eq!(reports[1]["class"], "apply");
    assert_eq!(reports[1]["code"], "apply.conflict");

    let shown = record(&repo, &second);
    assert_eq!(shown["record"]["status"], "dead");
    assert_eq!(shown["record"]["dead_class"], "apply");
    let artifacts: Vec<&str> = shown["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        artifacts.iter().any(|a| a.ends_with("conflict.json")),
        "{artifacts:?}"
    );
    assert!(
        artifacts.iter().any(|a| a.ends_with("conflicts/f.txt")),
        "{artifacts:?}"
    );
    let chain = format!("refs/hyperion/requests/{second}");
    let report: Value =
        serde_json::from_str(&repo.git(&["show", &format!("{chain}:artifacts/conflict.json")]))
            .unwrap();
    assert_eq!(report["files"][0]["path"], "f.txt");
    assert!(report["files"][0]["base"].is_string());
    let merged = repo.git(&["show", &format!("{chain}:artifacts/conflicts/f.txt")]);
    assert!(merged.contains("<<<<<<<") && merged.contains("ONE") && merged.contains("TWO"));
    // main holds the first request only.
    assert_eq!(repo.git(&["show", "main:f.txt"]), "a\nb\nc\nONE\ne\nf\ng\n");
}

#[test]
fn changes_made_since_are_merged_and_offsets_found() {
    let repo = TestRepo::new();
    let base: String = (1..=30).map(|i| format!("line {i}\n")).collect();
    repo.commit(&[("f.txt", &base)], "edit f.txt");
    let edited = base.replace("line 25\n", "line twenty-five\n");
    let id = enqueue_edit(&repo, "T-1", "f.txt", &edited);
    // Someone inserts lines at the top meanwhile.
    repo.commit(&[("f.txt", &format!("header\n\n{base}"))], "edit f.txt");
    let reports = drain(&repo);
    assert_eq!(reports[0]["result"], "landed", "{:?}", reports[0]);
    assert_eq!(reports[0]["files"][0]["method"], "merged");
    assert_eq!(
        repo.git(&["show", "main:f.txt"]),
        format!("header\n\n{edited}")
    );
    assert_eq!(record(&repo, &id)["record"]["status"], "applied");
}

#[test]
fn revalidation_at_lease_time_makes_a_validation_dead_letter() {
    let repo = TestRepo::new();
    let id = enqueue_edit(&repo, "T-1", "new.txt", "fresh\n");
    // The target changed after enqueue: the file now exists.
    repo.commit(&[("new.txt", "someone else's\n")], "edit new.txt");
    let before = tip(&repo);
    let reports = drain(&repo);
    assert_eq!(reports[0]["result"], "dead");
    assert_eq!(reports[0]["class"], "validation");
    let message = reports[0]["message"].as_str().unwrap();
    assert!(
        message.contains("new.txt") && message.contains("main"),
        "{message}"
    );
    assert_eq!(tip(&repo), before);
    let r = record(&repo, &id)["record"].clone();
    assert_eq!(r["dead_class"], "validation");
    assert!(r["error"]["message"].as_str().unwrap().contains("new.txt"));
}

#[test]
fn a_patch_already_on_the_target_is_refused_as_empty() {
    let repo = TestRepo::new();
    let base: String = (1..=10).map(|i| format!("line {i}\n")).collect();
    repo.commit(&[("f.txt", &base)], "edit f.txt");
    let edited = base.replace("line 5\n", "line five\n");
    enqueue_edit(&repo, "T-1", "f.txt", &edited);
    repo.commit(&[("f.txt", &edited)], "edit f.txt");
    let reports = drain(&repo);
    assert_eq!(reports[0]["result"], "dead");
    assert_eq!(reports[0]["code"], "apply.empty");
}

#[test]
fn pre_apply_hooks_from_the_tree_refuse_with_their_message() {
    use std::os::unix::fs::PermissionsExt;
    let repo = TestRepo::new();
    let hook = repo.path().join(".hyperion/hooks/pre-apply.d/10-guard");
    std::fs::create_dir_all(hook.parent().unwrap()).unwrap();
    std::fs::write(
        &hook,
        "#!/bin/sh\ninput=$(cat)\ncase \"$input\" in\n  *secret.txt*) echo \"no secrets, request $HYPERION_REQUEST_ID\" >&2; exit 3 ;;\nesac\nexit 0\n",
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    repo.git(&["add", "."]);
    repo.git(&["commit", "-q", "-m", "hooks"]);

    let bad = enqueue_edit(&repo, "T-1", "secret.txt", "x\n");
    let good = enqueue_edit(&repo, "T-2", "fine.txt", "y\n");
    let reports = drain(&repo);
    let by_id = |id: &str| reports.iter().find(|r| r["id"] == id).unwrap().clone();
    let b = by_id(&bad);
    assert_eq!(b["result"], "dead");
    assert_eq!(b["class"], "validation");
    assert_eq!(b["code"], "hook.refused");
    let m = b["message"].as_str().unwrap();
    assert!(m.contains("10-guard") && m.contains("exited with 3"), "{m}");
    assert!(m.contains(&format!("no secrets, request {bad}")), "{m}");
    assert_eq!(by_id(&good)["result"], "landed");
}

#[test]
fn hooks_dir_from_config_gets_the_request_on_stdin() {
    use std::os::unix::fs::PermissionsExt;
    let repo = TestRepo::new();
    let dir = repo.home.path().join("hooks");
    std::fs::create_dir_all(&dir).unwrap();
    let seen = repo.home.path().join("seen.json");
    let hook = dir.join("record");
    std::fs::write(
        &hook,
        format!("#!/bin/sh\ncat > '{}'\nexit 0\n", seen.display()),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    repo.git(&["config", "hyperion.hooksDir", dir.to_str().unwrap()]);
    enqueue_edit(&repo, "T-9", "x.txt", "x\n");
    let reports = drain(&repo);
    assert_eq!(reports[0]["result"], "landed");
    let input: Value = serde_json::from_slice(&std::fs::read(&seen).unwrap()).unwrap();
    assert_eq!(input["task_id"], "T-9");
    assert!(
        input["changes"][0]["patch"]
            .as_str()
            .unwrap()
            .contains("+x")
    );
}

#[test]
fn apply_lands_one_request_and_dry_run_changes_nothing() {
    let repo = TestRepo::new();
    let first = enqueue_edit(&repo, "T-1", "a.txt", "a\n");
    let second = enqueue_edit(&repo, "T-2", "b.txt", "b\n");
    let refs = repo.hyperion_refs();
    let before = tip(&repo);
    let out = repo.json(&["apply", &second, "--dry-run"]);
    assert_eq!(out["result"], "would_land");
    assert_eq!(repo.hyperion_refs(), refs, "dry run recorded nothing");
    assert_eq!(tip(&repo), before, "dry run landed nothing");

    let out = repo.json(&["apply", &second]);
    assert_eq!(out["result"], "landed");
    assert_eq!(record(&repo, &second)["record"]["status"], "applied");
    assert_eq!(record(&repo, &first)["record"]["status"], "pending");
    // A request that is not pending cannot be applied again.
    let (_, err) = repo.fails(&["apply", &second], 1);
    assert!(err.contains("queue.wrong_state"), "{err}");
}

#[test]
fn rollback_of_the_last_and_an_older_request_and_a_refused_one() {
    let repo = TestRepo::new();
    repo.commit(&[("c.txt", "1\n2\n3\n4\n5\n")], "edit c.txt");
    let r1 = enqueue_edit(&repo, "T-1", "a.txt", "a\n");
    let r2 = enqueue_edit(&repo, "T-2", "b.txt", "b\n");
    let r3 = enqueue_edit(&repo, "T-3", "README.md", "hello\nmore\n");
    let r4 = enqueue_edit(&repo, "T-4", "c.txt", "1\n2\nthree\n4\n5\n");
    drain(&repo);

    // --last: r4 is the most recent.
    let dry = repo.json(&["rollback", "--last", "--dry-run"]);
    assert_eq!(dry["plan"]["id"], r4.as_str());
    // Someone edits the line r4 changed: its revert now conflicts.
    repo.commit(&[("c.txt", "1\n2\nTHREE!\n4\n5\n")], "edit c.txt");
    let before = tip(&repo);
    let refs = repo.hyperion_refs();
    let (_, err) = repo.fails(&["rollback", &r4], 1);
    assert!(
        err.contains("rollback.conflict") && err.contains("c.txt"),
        "{err}"
    );
    assert_eq!(tip(&repo), before, "a refused rollback changes nothing");
    assert_eq!(repo.hyperion_refs(), refs);
    assert_eq!(record(&repo, &r4)["record"]["status"], "applied");

    // --last skips nothing it should not: r4 is still the last applied.
    repo.fails(&["rollback", "--last"], 1);
    // An older one: r3 (README) reverts cleanly on top of everything since.
    repo.ok(&["rollback", &r3, "--reason", "broke the docs"]);
    assert_eq!(repo.git(&["show", "main:README.md"]), "hello\n");
    let rec = record(&repo, &r3)["record"].clone();
    assert_eq!(rec["status"], "rolled_back");
    let body = repo.git(&["log", "-1", "--format=%B", "main"]);
    assert!(body.starts_with("Revert \"T-3: README.md\""), "{body}");
    assert!(body.contains("Reason: broke the docs"), "{body}");
    assert!(body.contains(&format!("Hyperion-Rollback: {r3}")), "{body}");
    // The oldest: r1's file goes away, r2's stays.
    repo.ok(&["rollback", &r1]);
    let files = repo.git(&["ls-tree", "--name-only", "main"]);
    assert!(
        !files.contains("a.txt") && files.contains("b.txt"),
        "{files}"
    );
    assert_eq!(record(&repo, &r2)["record"]["status"], "applied");
    // Rolling back twice is refused.
    let (_, err) = repo.fails(&["rollback", &r1], 1);
    assert!(err.contains("rollback.not_applied"), "{err}");
    // The checkout followed every landing and rollback.
    assert_eq!(repo.git(&["status", "--porcelain"]), "");
}

#[test]
fn a_bare_repository_lands_without_any_checkout() {
    let repo = TestRepo::bare();
    // Seed main in the bare repository from a scratch clone.
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let run = |args: &[&str]| {
        common::hermetic::git(s, args);
    };
    run(&["init", "-q", "-b", "main"]);
    std::fs::write(s.join("f.txt"), "one\n").unwrap();
    run(&["add", "."]);
    run(&["commit", "-q", "-m", "init"]);
    run(&["push", "-q", repo.path().to_str().unwrap(), "main"]);
    let patch = "diff --git a/f.txt b/f.txt\n--- a/f.txt\n+++ b/f.txt\n@@ -1 +1,2 @@\n one\n+two\n";
    let p = repo.home.path().join("p.diff");
    std::fs::write(&p, patch).unwrap();
    repo.ok(&[
        "enqueue",
        "--patch",
        p.to_str().unwrap(),
        "--task",
        "T",
        "--agent",
        "a",
    ]);
    let reports = drain(&repo);
    assert_eq!(reports[0]["result"], "landed", "{:?}", reports[0]);
    assert_eq!(repo.git(&["show", "main:f.txt"]), "one\ntwo\n");
}

#[test]
fn checks_run_in_a_pooled_worktree_and_decide() {
    let repo = TestRepo::new();
    repo.commit(
        &[(
            ".hyperion/policy.toml",
            "[checks.pass]\nrun = [\"sh\", \"-c\", \"test -f f.txt && echo saw f.txt\"]\n\n[checks.fail]\nrun = [\"sh\", \"-c\", \"echo broken >&2; exit 4\"]\n\n[checks.slow]\nrun = [\"sleep\", \"30\"]\ntimeout = \"1s\"\n",
        )],
        "edit .hyperion/policy.toml",
    );
    repo.git(&["config", "hyperion.maxAttempts", "1"]);
    let with_checks = |task: &str, file: &str, check: &str| {
        let id = enqueue_edit(&repo, task, file, "content\n");
        // Re-enqueue the same patch with a check named (enqueue --check).
        let patch = repo.home.path().join(format!("{task}.diff"));
        repo.git(&["update-ref", "-d", &format!("refs/hyperion/requests/{id}")]);
        repo.ok(&["doctor", "--reindex"]);
        repo.ok(&[
            "enqueue",
            "--patch",
            patch.to_str().unwrap(),
            "--task",
            task,
            "--agent",
            "claude",
            "--check",
            check,
        ])
        .trim()
        .to_owned()
    };
    let good = with_checks("T-1", "f.txt", "pass");
    let bad = with_checks("T-2", "g.txt", "fail");
    let slow = with_checks("T-3", "h.txt", "slow");
    // A check the policy does not define is refused at enqueue already.
    let patch = repo.home.path().join("T-1.diff");
    let (_, err) = repo.fails(
        &[
            "enqueue",
            "--patch",
            patch.to_str().unwrap(),
            "--task",
            "T-9",
            "--agent",
            "a",
            "--check",
            "nope",
        ],
        1,
    );
    assert!(err.contains("check.unknown"), "{err}");
    let reports = drain(&repo);
    let by_id = |id: &str| reports.iter().find(|r| r["id"] == id).unwrap().clone();

    let g = by_id(&good);
    assert_eq!(g["result"], "landed", "{g}");
    assert_eq!(g["checks"][0]["status"], "passed");
    let commit = g["commit"].as_str().unwrap();
    let note = repo.git(&["notes", "--ref", "hyperion", "show", commit]);
    assert!(note.contains("check: pass passed"), "{note}");
    let out = repo.git(&[
        "show",
        &format!("refs/hyperion/requests/{good}:artifacts/checks/pass.stdout"),
    ]);
    assert_eq!(out, "saw f.txt\n", "the check saw the request's result");

    let b = by_id(&bad);
    assert_eq!(
        (
            b["result"].as_str(),
            b["class"].as_str(),
            b["code"].as_str()
        ),
        (Some("dead"), Some("check"), Some("check.failed")),
        "{b}"
    );
    let err = repo.git(&[
        "show",
        &format!("refs/hyperion/requests/{bad}:artifacts/checks/fail.stderr"),
    ]);
    assert_eq!(err, "broken\n");

    let s = by_id(&slow);
    assert_eq!(s["code"], "check.timeout", "{s}");
    assert_eq!(s["class"], "check");
    assert!(s["duration_ms"].as_u64().unwrap() < 10_000);

    // Only the good one landed; the user's checkout is untouched and clean.
    assert_eq!(repo.git(&["show", "main:f.txt"]), "content\n");
    assert_eq!(repo.git(&["rev-list", "--count", "main"]).trim(), "3");
    assert_eq!(repo.git(&["status", "--porcelain"]), "");
}

#[test]
fn the_shipped_pre_apply_hook_guards_protected_paths_and_agents() {
    let repo = TestRepo::new();
    let dir = repo.home.path().join("hooks");
    std::fs::create_dir_all(&dir).unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks/pre-apply");
    std::fs::copy(&src, dir.join("10-guard")).unwrap();
    repo.git(&["config", "hyperion.hooksDir", dir.to_str().unwrap()]);
    repo.git(&["config", "--add", "hyperion.protectedPath", "deploy/"]);
    let blocked = enqueue_edit(&repo, "T-1", "deploy/prod.yml", "x\n");
    // The example once parsed the JSON with sed: a `,` or `}` in a path split it, and the
    // path escaped the protected-path test.
    let comma = enqueue_edit(&repo, "T-4", "deploy/a,b.yml", "x\n");
    let brace = enqueue_edit(&repo, "T-5", "deploy/x}y.yml", "x\n");
    let fine = enqueue_edit(&repo, "T-2", "src/ok.txt", "y\n");
    let reports = drain(&repo);
    let by_id = |id: &str| reports.iter().find(|r| r["id"] == id).unwrap().clone();
    for (id, path) in [
        (&blocked, "deploy/prod.yml"),
        (&comma, "deploy/a,b.yml"),
        (&brace, "deploy/x}y.yml"),
    ] {
        let b = by_id(id);
        assert_eq!(b["code"], "hook.refused", "{b}");
        let m = b["message"].as_str().unwrap();
        assert!(
            m.contains(&format!("\"{path}\", under the protected path deploy/")),
            "{b}"
        );
    }
    assert_eq!(by_id(&fine)["result"], "landed");
    // An allowlist without the agent refuses everything.
    repo.git(&["config", "--add", "hyperion.allowedAgent", "someone-else"]);
    let other = enqueue_edit(&repo, "T-3", "src/more.txt", "z\n");
    let reports = drain(&repo);
    assert_eq!(reports[0]["id"], other.as_str());
    assert!(
        reports[0]["message"]
            .as_str()
            .unwrap()
            .contains("not in hyperion.allowedAgent")
    );
}

/// A batch lands as one chain: one move of the branch for all its requests, each its own
/// commit in order; a request that conflicts with one before it in the batch is a dead letter
/// and the others land all the same.
#[test]
fn a_batch_lands_as_one_chain_with_one_branch_update() {
    let repo = TestRepo::new();
    repo.commit(&[("shared.txt", "line\n")], "edit shared.txt");
    let a = enqueue_edit(&repo, "T-1", "a.txt", "a\n");
    let s1 = enqueue_edit(&repo, "T-2", "shared.txt", "first\n");
    let s2 = enqueue_edit(&repo, "T-3", "shared.txt", "second\n");
    let b = enqueue_edit(&repo, "T-4", "b.txt", "b\n");
    let before = tip(&repo);
    let reflog_before = repo.git(&["reflog", "show", "main"]).lines().count();
    let reports: Vec<Value> = repo
        .ok(&["worker", "--once", "--batch-size", "8", "--format", "json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reports.len(), 4, "{reports:?}");
    for id in [&a, &s1, &b] {
        assert_eq!(record(&repo, id)["record"]["status"], "applied", "{id}");
    }
    let dead = record(&repo, &s2);
    assert_eq!(dead["record"]["status"], "dead");
    assert_eq!(dead["record"]["dead_class"], "apply");
    // Three commits, in queue order, on top of the old tip; the branch moved once.
    let log = repo.git(&[
        "log",
        "--format=%(trailers:key=Hyperion-Task,valueonly)",
        &format!("{before}..main"),
    ]);
    let tasks: Vec<&str> = log.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(tasks, ["T-4", "T-2", "T-1"]);
    let reflog = repo.git(&["reflog", "show", "--format=%gs", "main"]);
    assert_eq!(reflog.lines().count(), reflog_before + 1, "{reflog}");
    assert_eq!(reflog.lines().next().unwrap(), "hyperion: land 3 requests");
    // Each landed request's record names its own commit, and each has its note.
    for id in [&a, &s1, &b] {
        let commit = record(&repo, id)["record"]["landed_commit"]
            .as_str()
            .unwrap()
            .to_owned();
        let note = repo.git(&["notes", "--ref", "hyperion", "show", &commit]);
        assert!(note.contains(&format!("request: {id}")), "{note}");
    }
    // The checkout came along to the chain's end.
    assert_eq!(repo.git(&["status", "--porcelain"]), "");
    assert_eq!(
        std::fs::read_to_string(repo.path().join("shared.txt")).unwrap(),
        "first\n"
    );
    assert!(repo.path().join("a.txt").exists() && repo.path().join("b.txt").exists());
}

/// When the branch moves while a batch is being built (here: a pre-apply hook commits, as a
/// person pushing at that moment would), the compare-and-swap fails and the whole chain is
/// built again on the new tip; nothing of the other commit is lost.
#[test]
fn a_branch_moved_during_the_batch_makes_the_chain_rebuild_on_it() {
    use std::os::unix::fs::PermissionsExt;
    let repo = TestRepo::new();
    let x = enqueue_edit(&repo, "T-1", "x.txt", "x\n");
    let y = enqueue_edit(&repo, "T-2", "y.txt", "y\n");
    let dir = repo.home.path().join("hooks");
    std::fs::create_dir_all(&dir).unwrap();
    let flag = repo.home.path().join("moved");
    let hook = dir.join("move-main");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\ncat > /dev/null\n[ -e '{flag}' ] && exit 0\ntouch '{flag}'\n\
             cd '{repo}' && unset GIT_DIR GIT_INDEX_FILE GIT_WORK_TREE\n\
             echo other > other.txt && git add other.txt && \
             git -c user.name=P -c user.email=p@example.com commit -q -m 'meanwhile'\n",
            flag = flag.display(),
            repo = repo.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    repo.git(&["config", "hyperion.hooksDir", dir.to_str().unwrap()]);
    let reports = drain(&repo);
    assert!(flag.exists(), "the hook moved main");
    assert_eq!(reports.len(), 2, "{reports:?}");
    for r in &reports {
        assert_eq!(r["result"], "landed", "{r}");
    }
    let subjects = repo.git(&["log", "--format=%s", "-3", "main"]);
    let subjects: Vec<&str> = subjects.lines().collect();
    assert_eq!(subjects[2], "meanwhile", "{subjects:?}");
    for id in [&x, &y] {
        let commit = record(&repo, id)["record"]["landed_commit"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            repo.git(&["merge-base", "--is-ancestor", &commit, "main"])
                .is_empty()
        );
    }
    assert_eq!(repo.git(&["status", "--porcelain"]), "");
    assert!(repo.path().join("other.txt").exists());
}

/// A lock on the target branch left by a writer that died (older than 5 s) does not stop
/// landing: it is cleared, as hyperion's request-ref locks are.
#[test]
fn a_stale_lock_on_the_target_left_by_a_dead_writer_is_cleared() {
    let repo = TestRepo::new();
    let id = enqueue_edit(&repo, "T-1", "a.txt", "a\n");
    let lock = repo.git_dir().join("refs/heads/main.lock");
    std::fs::write(&lock, "").unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(30);
    std::fs::File::options()
        .write(true)
        .open(&lock)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let reports = drain(&repo);
    assert_eq!(reports[0]["result"], "landed", "{reports:?}");
    assert!(!lock.exists());
    assert_eq!(record(&repo, &id)["record"]["status"], "applied");

    // A fresh lock (a live writer) is waited for, then reported, never removed.
    let second = enqueue_edit(&repo, "T-2", "b.txt", "b\n");
    std::fs::write(&lock, "").unwrap();
    let reports = drain(&repo);
    assert_eq!(reports[0]["result"], "retry", "{reports:?}");
    assert!(lock.exists(), "a live writer's lock stays");
    assert_eq!(record(&repo, &second)["record"]["status"], "pending");
    std::fs::remove_file(&lock).unwrap();
}

/// A worker started with a short `--lease` sweeps expired leases within that lease, not
/// every 30 s (what the default lease of 5 min gives): a request whose holder died lands
/// soon after the holder's lease ends.
#[test]
fn a_worker_with_a_short_lease_sweeps_a_dead_holders_lease_soon_after_it_ends() {
    use std::time::{Duration, Instant};
    let repo = TestRepo::new();
    repo.git(&["config", "hyperion.retryBackoff", "0s"]);
    let id = enqueue_edit(&repo, "T-1", "notes/a.txt", "a\n");
    // The holder leases it for a second and dies without a word.
    repo.ok(&["dequeue", "--worker", "dead", "--lease", "1s"]);
    let started = Instant::now();
    let mut worker = repo
        .cmd()
        .args(["worker", "--lease", "2s", "--poll", "100ms"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let landed = loop {
        if record(&repo, &id)["record"]["status"] == "applied" {
            break Some(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(20) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    common::signal(worker.id(), "TERM");
    worker.wait().unwrap();
    let landed = landed.expect("the request never landed: its expired lease was not swept");
    // The lease ends after 1 s; sweeps come every 2 s.
    assert!(landed < Duration::from_secs(10), "landed after {landed:?}");
}
