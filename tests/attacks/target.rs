//! A request's `target` is a branch, resolved in one place: no other spelling reaches
//! another ref, and a request is judged by the policy of the branch it lands on.

use serde_json::json;

use crate::harness::{Attack, adds, assert_refusal, plant, with_policy};

const DENY_SECRETS: &str = "[paths]\ndeny = [\"secrets/**\"]\n";

fn with_target(mut req: serde_json::Value, target: &str) -> serde_json::Value {
    req["target"] = json!(target);
    req
}

#[test]
fn the_full_spelling_of_a_branch_is_judged_by_that_branchs_policy() {
    let mut a = Attack::new();
    with_policy(&mut a, DENY_SECRETS);
    let req = with_target(adds("T-1", "secrets/key.txt", "x"), "refs/heads/main");
    let err = a.refused(&req, "path.denied");
    assert!(err.contains("secrets/key.txt"), "{err}");
}

#[test]
fn a_tag_is_not_a_target() {
    let a = Attack::new();
    a.repo.git(&["tag", "v1"]);
    let mut a = Attack::on(a.repo);
    a.settle();
    a.refused(
        &with_target(adds("T-1", "x.txt", "x"), "refs/tags/v1"),
        "target.not_branch",
    );
}

#[test]
fn another_requests_chain_is_not_a_target() {
    let a = Attack::new();
    let victim = a.enqueue(&adds("T-0", "victim.txt", "v"));
    let before = a.repo.hyperion_refs();
    let req = with_target(
        adds("T-1", "x.txt", "x"),
        &format!("refs/hyperion/requests/{victim}"),
    );
    let path = a.repo.write("attack.json", &req);
    let (_, err) = a.repo.fails(&["enqueue", path.to_str().unwrap()], 1);
    assert_refusal(&err, "target.not_branch");
    assert_eq!(a.repo.hyperion_refs(), before, "the victim's chain moved");
    a.untouched();
}

#[test]
fn hyperions_own_refs_head_and_remote_branches_are_not_targets() {
    let a = Attack::new();
    for target in [
        "refs/notes/hyperion",
        "refs/hyperion/requests",
        "refs/remotes/origin/main",
        "HEAD",
        "@",
        "FETCH_HEAD",
        "refs/heads",
    ] {
        let err = a.refused(
            &with_target(adds("T-1", "x.txt", "x"), target),
            "target.not_branch",
        );
        assert!(err.contains("/target"), "{target}: {err}");
    }
}

#[test]
fn names_git_would_refuse_as_branches_are_not_targets() {
    let a = Attack::new();
    for target in [
        "main..x", "-main", "ma in", "main~1", "main^", "x.lock", "a//b", "main@{0}",
    ] {
        a.refused(
            &with_target(adds("T-1", "x.txt", "x"), target),
            "target.invalid",
        );
    }
}

#[test]
fn a_target_that_does_not_exist_is_refused_with_the_closest_branch() {
    let a = Attack::new();
    a.repo.git(&["branch", "release"]);
    let mut a = Attack::on(a.repo);
    a.settle();
    let err = a.refused(
        &with_target(adds("T-1", "x.txt", "x"), "relase"),
        "target.missing",
    );
    assert!(err.contains("did you mean 'release'?"), "{err}");
}

#[test]
fn init_refuses_a_branch_that_does_not_exist() {
    let a = Attack::new();
    a.repo.git(&["branch", "-m", "main", "master"]);
    a.repo.git(&["config", "--unset", "hyperion.target"]);
    let mut a = Attack::on(a.repo);
    a.settle();
    let config = std::fs::read(a.repo.git_dir().join("config")).unwrap();
    let (_, err) = a.repo.fails(&["init", "--target", "main"], 2);
    assert_refusal(&err, "target.missing");
    assert!(err.contains("master"), "{err}");
    assert_eq!(
        std::fs::read(a.repo.git_dir().join("config")).unwrap(),
        config
    );
    let (_, err) = a.repo.fails(&["init", "--target", "refs/tags/x"], 2);
    assert_refusal(&err, "target.not_branch");
    a.untouched();
}

#[test]
fn a_configured_target_that_is_not_a_branch_stops_every_command() {
    let a = Attack::new();
    a.repo.git(&["config", "hyperion.target", "refs/tags/v1"]);
    let path = a.repo.write("req.json", &adds("T-1", "x.txt", "x"));
    for args in [
        vec!["enqueue", path.to_str().unwrap()],
        vec!["worker", "--once"],
        vec!["list"],
        vec!["rollback", "--last"],
    ] {
        let (_, err) = a.repo.fails(&args, 2);
        assert!(err.contains("hyperion.target"), "{args:?}: {err}");
        assert!(err.contains("not a branch"), "{args:?}: {err}");
    }
    a.untouched();
}

/// A chain made without `enqueue` (plumbing, a push to a server without the hook) that
/// targets a tag is parked by the worker, and the tag does not move.
#[test]
fn a_hand_made_request_for_a_tag_is_parked_by_the_worker() {
    let a = Attack::new();
    a.repo.git(&["tag", "v1"]);
    let mut a = Attack::on(a.repo);
    a.settle();
    let id = plant(
        &a.repo,
        &with_target(adds("T-1", "x.txt", "x"), "refs/tags/v1"),
    );
    a.drain();
    a.parked(&id, "target.not_branch");
    a.nothing_landed();
}

#[test]
fn a_hand_made_request_for_another_requests_chain_is_parked() {
    let a = Attack::new();
    let victim = a.enqueue(&adds("T-0", "victim.txt", "v"));
    let victim_ref = format!("refs/hyperion/requests/{victim}");
    let victim_root = a.repo.git(&["rev-parse", &victim_ref]);
    let id = plant(
        &a.repo,
        &with_target(adds("T-1", "x.txt", "x"), &victim_ref),
    );
    a.drain();
    let record = &a.repo.json(&["show", &id])["record"];
    assert_eq!(record["status"], "dead", "{record}");
    assert_eq!(record["error"]["code"], "target.not_branch");
    // The victim landed by itself, its chain is its own: enqueue, lease, land.
    let victim_history = a.repo.git(&["log", "--format=%s", &victim_ref]);
    assert_eq!(victim_history.lines().count(), 3, "{victim_history}");
    assert!(
        victim_history.lines().all(|l| l.contains(&victim)),
        "{victim_history}"
    );
    assert_ne!(a.repo.git(&["rev-parse", &victim_ref]), victim_root);
    assert_eq!(
        a.repo.json(&["show", &victim])["record"]["status"],
        "applied"
    );
}
