//! A batch is judged request by request: what an earlier request of the batch changes (the
//! policy, the hooks, the files) governs none of the others, each is validated against the
//! tree it is applied onto, and a request whose lease is lost does not land with the rest.

use std::os::unix::fs::PermissionsExt;

use crate::harness::{Attack, adds, plant, signal, with_policy, worker_paused_at};

const APPROVER: &str = "alice@example.com";

fn approve(a: &Attack, id: &str) {
    a.repo.ok_as(APPROVER, &["approve", id]);
}

fn status(a: &Attack, id: &str) -> serde_json::Value {
    a.repo.json(&["show", id])["record"].clone()
}

#[test]
fn a_policy_and_a_hook_an_earlier_request_brings_govern_no_other_request_of_its_batch() {
    let mut a = Attack::new();
    let policy =
        format!("[paths]\ndeny = [\"secrets/**\"]\n\n[approvals]\napprovers = [\"{APPROVER}\"]\n");
    with_policy(&mut a, &policy);
    let marker = a.repo.home.path().join("hook-ran");
    // Request 1, approved by a person: drops the deny rule and adds a pre-apply hook.
    let opener = a.propose("T-1", &[], |dir| {
        std::fs::write(
            dir.join(".hyperion/policy.toml"),
            format!("[approvals]\napprovers = [\"{APPROVER}\"]\n"),
        )
        .unwrap();
        let hooks = dir.join(".hyperion/hooks/pre-apply.d");
        std::fs::create_dir_all(&hooks).unwrap();
        let hook = hooks.join("mark");
        std::fs::write(&hook, format!("#!/bin/sh\ntouch '{}'\n", marker.display())).unwrap();
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    });
    assert_eq!(status(&a, &opener)["status"], "awaiting_approval");
    approve(&a, &opener);
    // Request 2 relies on it: stored by hand (enqueue would refuse it), taken in the same batch.
    let sneaky = plant(&a.repo, &adds("T-2", "secrets/key.txt", "k\n"));
    let reports = a.drain();
    assert!(
        reports
            .iter()
            .any(|r| r["id"] == opener.as_str() && r["result"] == "landed"),
        "{reports:?}"
    );
    let record = status(&a, &sneaky);
    assert_eq!(record["status"], "dead", "{record}");
    assert_eq!(record["error"]["code"], "path.denied", "{record}");
    assert!(
        !marker.exists(),
        "a hook from a request ran before the gate it changes had landed"
    );
    assert!(
        !a.repo
            .git(&["ls-tree", "-r", "--name-only", "main"])
            .contains("secrets/"),
        "the denied file landed"
    );
}

#[test]
fn a_later_request_cannot_replace_a_symlink_an_earlier_one_made() {
    let a = Attack::new();
    let link = a.propose("T-1", &[], |dir| {
        std::os::unix::fs::symlink("README.md", dir.join("l")).unwrap();
    });
    let file = a.enqueue(&adds("T-2", "l", "a file where the link is\n"));
    let reports = a.drain();
    assert!(
        reports
            .iter()
            .any(|r| r["id"] == link.as_str() && r["result"] == "landed"),
        "{reports:?}"
    );
    let record = status(&a, &file);
    assert_eq!(record["status"], "dead", "{record}");
    assert_eq!(record["error"]["code"], "operation.exists", "{record}");
    let entry = a.repo.git(&["ls-tree", "main", "l"]);
    assert!(entry.starts_with("120000 "), "{entry}");
}

#[test]
fn a_later_request_cannot_put_a_file_where_an_earlier_one_made_a_directory() {
    let a = Attack::new();
    let dir = a.enqueue(&adds("T-1", "d/f.txt", "f\n"));
    let file = a.enqueue(&adds("T-2", "d", "a file where the directory is\n"));
    a.drain();
    assert_eq!(status(&a, &dir)["status"], "applied");
    let record = status(&a, &file);
    assert_eq!(record["status"], "dead", "{record}");
    assert_eq!(record["error"]["code"], "operation.exists", "{record}");
    let tree = a.repo.git(&["ls-tree", "-r", "--name-only", "main"]);
    assert!(tree.lines().any(|l| l == "d/f.txt"), "{tree}");
}

#[test]
fn a_request_whose_lease_is_lost_before_the_landing_does_not_land_with_its_batch() {
    let a = Attack::new();
    let first = a.enqueue(&adds("T-1", "first.txt", "1\n"));
    let second = a.enqueue(&adds("T-2", "second.txt", "2\n"));
    // The worker built both and stops just before it lands them.
    let mut worker = worker_paused_at(&a.repo, "landing.chain_built", "5m");
    assert_eq!(status(&a, &first)["lease_owner"], "paused");
    // Meanwhile the first request's lease goes to another worker.
    a.repo.ok(&["release", &first, "--worker", "paused"]);
    let taken = a
        .repo
        .ok(&["dequeue", "--worker", "thief", "--lease", "5m"]);
    assert!(taken.contains(&first), "{taken}");
    signal(&worker, "CONT");
    assert!(worker.wait().unwrap().success());
    let tree = a.repo.git(&["ls-tree", "-r", "--name-only", "main"]);
    assert!(tree.contains("second.txt"), "{tree}");
    assert!(
        !tree.contains("first.txt"),
        "a request landed without its lease: {tree}"
    );
    let log = a.repo.git(&["log", "--format=%B", "main"]);
    assert_eq!(log.matches("Hyperion-Request:").count(), 1, "{log}");
    assert_eq!(status(&a, &second)["status"], "applied");
    let first = status(&a, &first);
    assert_eq!(first["status"], "leased", "{first}");
    assert_eq!(first["lease_owner"], "thief", "{first}");
}
