#![allow(clippy::unwrap_used)]
//! Risk tiers, approvals and required checks end to end: real repositories, the real binary,
//! real workers.

use crate::common;

use std::path::Path;
use std::process::Output;

use common::TestRepo;
use serde_json::Value;

const ALICE: &str = "alice@example.com";

fn write(root: &Path, path: &str, content: &str) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

fn record(repo: &TestRepo, id: &str) -> Value {
    repo.json(&["show", id])["record"].clone()
}

fn history(repo: &TestRepo, id: &str) -> Vec<Value> {
    repo.json(&["show", id])["history"]
        .as_array()
        .unwrap()
        .clone()
}

fn drain(repo: &TestRepo) -> Vec<Value> {
    repo.ok(&["worker", "--drain", "--format", "json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn main_tip(repo: &TestRepo) -> String {
    repo.git(&["rev-parse", "main"]).trim().to_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The must-show flow: a request touching the policy waits, visibly; a worker leaves
/// it alone; a person who is not an allowed approver is refused and changes nothing; the
/// allowed approver's approval is recorded with its actor, and the request lands.
#[test]
fn a_policy_change_waits_until_an_allowed_approver_approves_it_then_lands() {
    let repo = TestRepo::new();
    repo.commit(
        &[(
            ".hyperion/policy.toml",
            "[approvals]\napprovers = [\"alice@example.com\"]\n",
        )],
        "set-up",
    );
    let id = repo.propose("T-1", "claude", &[], |root| {
        write(
            root,
            ".hyperion/policy.toml",
            "[approvals]\napprovers = [\"alice@example.com\"]\n\n[limits]\nfiles = 20\n",
        )
    });
    // Visible while it waits: list --status, show, the enqueue event's reason.
    assert_eq!(
        repo.ids(&["list", "--status", "awaiting_approval"]),
        std::slice::from_ref(&id)
    );
    assert!(repo.ids(&["list", "--status", "pending"]).is_empty());
    let text = repo.ok(&["list"]);
    assert!(text.contains(&format!("{id}  awaiting_approval")), "{text}");
    let r = record(&repo, &id);
    assert_eq!(r["status"], "awaiting_approval");
    assert_eq!(r["approval_tiers"], serde_json::json!(["gate"]));
    let h = history(&repo, &id);
    assert_eq!(h[0]["to"], "awaiting_approval");
    assert!(
        h[0]["reason"]
            .as_str()
            .unwrap()
            .contains("'.hyperion/policy.toml' matches '.hyperion/**'"),
        "{h:?}"
    );
    let shown = repo.ok(&["show", &id]);
    assert!(shown.contains("approval  needed for tier gate"), "{shown}");
    // Not in the ready queue: neither dequeue nor a worker takes it.
    let before = main_tip(&repo);
    assert_eq!(
        repo.json(&["dequeue", "--worker", "w"]),
        serde_json::json!([])
    );
    assert!(drain(&repo).is_empty());
    assert_eq!(main_tip(&repo), before);
    // Anyone else is refused, and nothing changes.
    let chain = repo.hyperion_refs();
    let out = repo.run_as("mallory@example.com", &["approve", &id]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: ") && err.contains("[approval.not_allowed]"),
        "{err}"
    );
    assert!(
        err.contains("'mallory@example.com' may not approve tier gate"),
        "{err}"
    );
    assert!(err.contains("hint: "), "{err}");
    assert_eq!(repo.hyperion_refs(), chain);
    // The allowed approver: recorded as the actor of the transition.
    let out = repo.run_as(ALICE, &["approve", &id, "--reason", "raises a limit"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r = record(&repo, &id);
    assert_eq!(r["status"], "pending");
    assert_eq!(r["approved_by"], ALICE);
    let h = history(&repo, &id);
    assert_eq!(
        (&h[0]["action"], &h[0]["from"], &h[0]["to"], &h[0]["actor"]),
        (
            &Value::from("approve"),
            &Value::from("awaiting_approval"),
            &Value::from("pending"),
            &Value::from(ALICE)
        )
    );
    assert!(
        h[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("raises a limit")
    );
    let author = repo.git(&[
        "log",
        "-1",
        "--format=%an",
        &format!("refs/hyperion/requests/{id}"),
    ]);
    assert_eq!(author.trim(), ALICE);
    let reports = drain(&repo);
    assert_eq!(reports[0]["result"], "landed", "{reports:?}");
    let policy = repo.git(&["show", "main:.hyperion/policy.toml"]);
    assert!(policy.contains("files = 20"), "{policy}");
    // Approving again is refused: it no longer waits.
    let out = repo.run_as(ALICE, &["approve", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("[queue.wrong_state]"));
}

#[test]
fn the_approver_is_git_user_email_without_hyperion_actor_and_someone_must_be_named() {
    let repo = TestRepo::new();
    let id = repo.propose("T-1", "claude", &[], |root| {
        write(root, ".hyperion/hooks/pre-apply.d/10-ok", "#!/bin/sh\n")
    });
    // No identity at all: a usage error, nothing changed.
    let chain = repo.hyperion_refs();
    let (_, err) = repo.fails(&["approve", &id], 2);
    assert!(
        err.contains("[usage]") && err.contains("user.email"),
        "{err}"
    );
    // An identity, but neither the policy nor the config names approvers.
    repo.git(&["config", "user.email", ALICE]);
    let (_, err) = repo.fails(&["approve", &id], 1);
    assert!(err.contains("[approval.no_approvers]"), "{err}");
    assert!(err.contains("hyperion.approvers"), "{err}");
    assert_eq!(repo.hyperion_refs(), chain);
    // The clone's approvers of last resort.
    repo.git(&[
        "config",
        "hyperion.approvers",
        "bob@example.com, alice@example.com",
    ]);
    repo.ok(&["approve", &id]);
    assert_eq!(record(&repo, &id)["approved_by"], ALICE);
    assert_eq!(drain(&repo)[0]["result"], "landed");
}

#[test]
fn reject_parks_a_waiting_request_and_requeue_brings_it_back_to_waiting() {
    let repo = TestRepo::new();
    repo.git(&["config", "hyperion.approvers", ALICE]);
    let id = repo.propose("T-1", "claude", &[], |root| {
        write(root, ".github/workflows/ci.yml", "on: push\n")
    });
    assert_eq!(
        record(&repo, &id)["approval_tiers"],
        serde_json::json!(["sensitive"])
    );
    // A reason is required.
    let out = repo.run_as("bob@example.com", &["reject", &id, "--reason", " "]);
    assert_eq!(out.status.code(), Some(2));
    let out = repo.run_as(
        "bob@example.com",
        &["reject", &id, "--reason", "CI stays with people"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let r = record(&repo, &id);
    assert_eq!(
        (&r["status"], &r["dead_class"]),
        (&Value::from("dead"), &Value::from("rejected"))
    );
    assert_eq!(r["error"]["code"], "approval.rejected");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("CI stays with people")
    );
    assert_eq!(
        repo.ids(&["dead", "--class", "rejected"]),
        std::slice::from_ref(&id)
    );
    let h = history(&repo, &id);
    assert_eq!(
        (&h[0]["action"], &h[0]["actor"]),
        (&Value::from("reject"), &Value::from("bob@example.com"))
    );
    // Rejecting what does not wait is refused.
    let out = repo.run_as("bob@example.com", &["reject", &id, "--reason", "again"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("[queue.wrong_state]"));
    // Requeue: back to waiting, not to the queue.
    let out = repo.ok(&["requeue", &id, "--reason", "reconsider"]);
    assert!(out.contains("awaiting_approval again"), "{out}");
    assert_eq!(record(&repo, &id)["status"], "awaiting_approval");
    assert!(drain(&repo).is_empty());
    repo.run_as(ALICE, &["approve", &id]);
    assert_eq!(drain(&repo)[0]["result"], "landed");
}

#[test]
fn a_rejected_request_waits_again_after_requeue_even_when_no_tier_needs_approval_any_more() {
    let repo = TestRepo::new();
    repo.git(&["config", "hyperion.approvers", ALICE]);
    let id = repo.propose("T-1", "claude", &[], |root| {
        write(root, ".gitlab-ci.yml", "stages: []\n")
    });
    let out = repo.run_as(ALICE, &["reject", &id, "--reason", "no"]);
    assert!(out.status.success());
    // The policy drops the built-in tier; the rejection still stands in the way.
    repo.commit(
        &[(
            ".hyperion/policy.toml",
            "[checks.t]\nrun = [\"true\"]\n[[tiers]]\nname = \"sensitive\"\nrequired_checks = [\"t\"]\n",
        )], "set-up");
    repo.ok(&["requeue", &id, "--reason", "policy relaxed"]);
    assert_eq!(record(&repo, &id)["status"], "awaiting_approval");
    assert!(drain(&repo).is_empty());
}

#[test]
fn requeue_of_a_dead_letter_whose_tier_needs_approval_waits_for_a_new_approval() {
    let repo = TestRepo::new();
    repo.git(&["config", "hyperion.approvers", ALICE]);
    repo.commit(&[("run.sh", "echo hi\n")], "set-up");
    let id = repo.propose("T-1", "claude", &[], |root| {
        let p = root.join("run.sh");
        let mut perm = std::fs::metadata(&p).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&p, perm).unwrap();
    });
    let r = record(&repo, &id);
    assert_eq!(r["status"], "awaiting_approval");
    assert!(
        history(&repo, &id)[0]["reason"]
            .as_str()
            .unwrap()
            .contains("'run.sh' becomes executable")
    );
    repo.run_as(ALICE, &["approve", &id]);
    // Someone removes run.sh meanwhile: the request no longer fits and dies.
    repo.git(&["rm", "-q", "run.sh"]);
    repo.git(&["commit", "-q", "-m", "drop run.sh"]);
    let reports = drain(&repo);
    assert_eq!(reports[0]["result"], "dead", "{reports:?}");
    repo.ok(&["requeue", &id, "--reason", "try again"]);
    let r = record(&repo, &id);
    assert_eq!(
        r["status"], "awaiting_approval",
        "the old approval does not carry over"
    );
    assert!(r.get("approved_by").is_none(), "{r}");
}

#[test]
fn a_request_naming_no_checks_still_runs_the_required_ones_and_dies_when_they_fail() {
    let repo = TestRepo::new();
    repo.commit(
        &[(
            ".hyperion/policy.toml",
            "[checks]\nrequired = [\"unit\"]\n\n[checks.unit]\nrun = [\"sh\", \"-c\", \"test -f ok.txt || { echo no ok.txt >&2; exit 3; }\"]\n\n[checks.lint]\nrun = [\"true\"]\n",
        )], "set-up");
    let bad = repo.propose("T-1", "claude", &[], |root| write(root, "bad.txt", "x\n"));
    let reports = drain(&repo);
    assert_eq!(reports[0]["result"], "dead", "{reports:?}");
    assert_eq!(reports[0]["code"], "check.failed");
    assert_eq!(reports[0]["checks"][0]["name"], "unit");
    let r = record(&repo, &bad);
    assert_eq!(
        (&r["dead_class"], &r["error"]["code"]),
        (&Value::from("check"), &Value::from("check.failed"))
    );
    let stderr = repo.git(&[
        "show",
        &format!("refs/hyperion/requests/{bad}:artifacts/checks/unit.stderr"),
    ]);
    assert!(stderr.contains("no ok.txt"));
    // Naming another check does not drop the required one: both run, required first.
    let good = repo.propose("T-2", "claude", &["lint"], |root| {
        write(root, "ok.txt", "x\n")
    });
    let reports = drain(&repo);
    assert_eq!(reports[0]["result"], "landed", "{reports:?}");
    let names: Vec<&str> = reports[0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["unit", "lint"]);
    let note = repo.git(&["notes", "--ref=hyperion", "show", "main"]);
    assert!(
        note.contains("check: unit passed") && note.contains("check: lint passed"),
        "{note}"
    );
    assert_eq!(record(&repo, &good)["status"], "applied");
}

#[test]
fn a_tier_adds_its_required_checks_and_may_need_approval_by_size() {
    let repo = TestRepo::new();
    repo.commit(
        &[(
            ".hyperion/policy.toml",
            "[checks.migrations]\nrun = [\"sh\", \"-c\", \"echo checked migrations\"]\n\n[[tiers]]\nname = \"db\"\npaths = [\"db/**\"]\nrequired_checks = [\"migrations\"]\n\n[[tiers]]\nname = \"large\"\nmin_files = 3\napproval = true\napprovers = [\"alice@example.com\"]\n",
        )], "set-up");
    let db = repo.propose("T-1", "claude", &[], |root| {
        write(root, "db/001.sql", "create table t;\n")
    });
    assert_eq!(record(&repo, &db)["status"], "pending");
    let large = repo.propose("T-2", "claude", &[], |root| {
        for f in ["a", "b", "c"] {
            write(root, &format!("src/{f}.txt"), "x\n");
        }
    });
    let r = record(&repo, &large);
    assert_eq!(
        (&r["status"], &r["approval_tiers"]),
        (
            &Value::from("awaiting_approval"),
            &serde_json::json!(["large"])
        )
    );
    let reports = drain(&repo);
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0]["checks"][0]["name"], "migrations");
    assert_eq!(reports[0]["result"], "landed");
    // The tier's own approvers: the clone's fallback does not widen them.
    repo.git(&["config", "hyperion.approvers", "bob@example.com"]);
    let out = repo.run_as("bob@example.com", &["approve", &large]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("[approval.not_allowed]"));
    let out = repo.run_as(ALICE, &["approve", &large]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(drain(&repo)[0]["result"], "landed");
}

#[test]
fn config_shows_the_tiers_in_force_and_policy_check_refuses_a_tier_that_does_nothing() {
    let repo = TestRepo::new();
    repo.commit(
        &[(
            ".hyperion/policy.toml",
            "[approvals]\napprovers = [\"alice@example.com\"]\n",
        )],
        "set-up",
    );
    let out = repo.ok(&["config"]);
    assert!(out.contains("policy.tiers.gate"), "{out}");
    assert!(out.contains("policy.tiers.sensitive"), "{out}");
    assert!(out.contains("policy.approvals.approvers"), "{out}");
    let f = repo.home.path().join("p.toml");
    std::fs::write(&f, "[[tiers]]\nname = \"x\"\npaths = [\"a/**\"]\n").unwrap();
    let (_, err) = repo.fails(&["policy", "check", f.to_str().unwrap()], 1);
    assert!(err.contains(":1: tier 'x' has no effect"), "{err}");
}

#[test]
fn apply_of_a_waiting_request_is_refused_and_its_dry_run_says_why() {
    let repo = TestRepo::new();
    let id = repo.propose("T-1", "claude", &[], |root| {
        write(root, ".husky/pre-commit", "npm test\n")
    });
    let (_, err) = repo.fails(&["apply", &id], 1);
    assert!(err.contains("[queue.wrong_state]"), "{err}");
    let (out, _) = repo.fails(&["apply", &id, "--dry-run", "--format", "json"], 1);
    let report: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(report["code"], "approval.required", "{report}");
    assert_eq!(record(&repo, &id)["status"], "awaiting_approval");
}
