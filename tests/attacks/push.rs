//! Forged pushes: chains (and notes) made with git plumbing to say what git hyperion never
//! would, pushed to a server whose `pre-receive` hook runs `git hyperion verify-push`. Each is
//! refused whole with a stable code and a clear message, and the server's refs (branches,
//! tags, queue, notes) are exactly as before.

use serde_json::{Value, json};

use crate::common::forge::{self, at, refname};
use crate::common::{TestRepo, hook_output, push, request_dir, server};
use crate::harness::{
    Attack, SECRETS, add_patch, assert_no_secret_stored, assert_refusal, request,
};

/// A client with requests, and a server that took them (and `main`) honestly.
struct Scene {
    client: TestRepo,
    server: Attack,
    ids: Vec<String>,
}

impl Scene {
    fn new(n: usize) -> Scene {
        let client = TestRepo::new();
        client.git(&["config", "hyperion.retryBackoff", "0s"]);
        let ids = if n == 0 {
            Vec::new()
        } else {
            client.enqueue(&request_dir(&client, n, "attack-push"))
        };
        let server = server();
        let (ok, err) = push(
            &client,
            &server,
            &["main", "refs/hyperion/*:refs/hyperion/*"],
        );
        assert!(ok, "the honest push is taken: {err}");
        Scene {
            client,
            server: Attack::on(server),
            ids,
        }
    }

    /// Push the client's current chain of `id` (and `more` refspecs), which must be taken.
    fn publish(&mut self, id: &str, more: &[&str]) {
        let r = refname(id);
        let mut specs = vec![format!("+{r}:{r}")];
        specs.extend(more.iter().map(|s| s.to_string()));
        let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
        let (ok, err) = push(&self.client, &self.server.repo, &specs);
        assert!(ok, "an honest push is taken: {err}");
        self.server.settle();
    }

    /// Push `refspecs`, which the server's hook must refuse with `code`, changing nothing on
    /// the server and storing no planted secret there. The hook's message.
    fn refused(&self, refspecs: &[&str], code: &str) -> String {
        let server = &self.server.repo;
        let before = all_refs(server);
        let (ok, err) = push(&self.client, server, refspecs);
        assert!(!ok, "the push of {refspecs:?} was taken");
        let hook = hook_output(&err);
        assert_refusal(&hook, code);
        assert!(hook.contains("nothing was changed on the server"), "{hook}");
        assert_eq!(
            all_refs(server),
            before,
            "a refused push changed the server's refs"
        );
        self.server.untouched();
        hook
    }

    /// Forge the next transition of `id`'s client chain and point the ref at it.
    fn forge(&self, id: &str, event: &Value, record: &Value) -> String {
        let prev = forge::tip(&self.client, id);
        let c = forge::after(&self.client, id, &prev, event, record);
        forge::set(&self.client, id, &c);
        c
    }

    fn tip(&self, id: &str) -> forge::Link {
        forge::tip(&self.client, id)
    }
}

/// Every ref of `repo` with its value.
fn all_refs(repo: &TestRepo) -> String {
    repo.git(&["for-each-ref", "--format=%(refname) %(objectname)"])
}

fn force(id: &str) -> String {
    let r = refname(id);
    format!("+{r}:{r}")
}

#[test]
fn an_endless_lease_is_refused() {
    let s = Scene::new(1);
    let id = &s.ids[0];
    let root = s.tip(id);
    let (ev, rec) = forge::lease(&root.record, "squatter", &at(1), "9999-01-01T00:00:00Z");
    s.forge(id, &ev, &rec);
    let msg = s.refused(&[&force(id)], "chain.bad_lease");
    assert!(msg.contains("longer than hyperion.maxLease"), "{msg}");
}

#[test]
fn a_lease_by_a_worker_id_with_terminal_escapes_is_refused() {
    let s = Scene::new(1);
    let id = &s.ids[0];
    // `show` and `list` would print it to a person's terminal.
    let (ev, rec) = forge::lease(&s.tip(id).record, "w\u{1b}]0;owned\u{7}", &at(1), &at(301));
    s.forge(id, &ev, &rec);
    let msg = s.refused(&[&force(id)], "chain.bad_lease");
    assert!(msg.contains("no usable worker id"), "{msg}");
    assert!(
        !msg.contains('\u{1b}'),
        "the refusal prints the escape: {msg:?}"
    );
}

#[test]
fn a_heartbeat_renewing_a_lease_beyond_its_length_is_refused() {
    let mut s = Scene::new(1);
    let id = s.ids[0].clone();
    s.client.ok(&["dequeue", "--worker", "w", "--lease", "5m"]);
    s.publish(&id, &[]);
    let lease = s.tip(&id);
    let (mut ev, mut rec) = forge::heartbeat(&lease.record, &at(2));
    // Every field as a heartbeat writes it, but a year instead of five minutes.
    ev["leased_until"] = at(365 * 86400).into();
    rec["leased_until"] = ev["leased_until"].clone();
    s.forge(&id, &ev, &rec);
    let msg = s.refused(&[&force(&id)], "chain.bad_lease");
    assert!(msg.contains("not by its length (300s)"), "{msg}");
}

#[test]
fn a_heartbeat_that_changes_the_lease_owner_is_refused() {
    let mut s = Scene::new(1);
    let id = s.ids[0].clone();
    s.client.ok(&["dequeue", "--worker", "owner"]);
    s.publish(&id, &[]);
    let lease = s.tip(&id);
    let (mut ev, mut rec) = forge::heartbeat(&lease.record, &at(2));
    ev["worker"] = "thief".into();
    ev["actor"] = "worker:thief".into();
    rec["lease_owner"] = "thief".into();
    s.forge(&id, &ev, &rec);
    let msg = s.refused(&[&force(&id)], "chain.bad_lease");
    assert!(msg.contains("held by owner"), "{msg}");
}

#[test]
fn applied_with_a_commit_that_does_not_exist_is_refused() {
    let mut s = Scene::new(1);
    let id = s.ids[0].clone();
    s.client.ok(&["dequeue", "--worker", "w"]);
    s.publish(&id, &[]);
    let lease = s.tip(&id);
    let (ev, rec) = forge::land(&lease.record, &"ab".repeat(20), &at(2));
    s.forge(&id, &ev, &rec);
    let msg = s.refused(&[&force(&id)], "chain.landed");
    assert!(msg.contains("does not exist"), "{msg}");
    s.server.nothing_landed();
}

#[test]
fn applied_with_a_commit_that_is_not_on_the_target_is_refused() {
    let mut s = Scene::new(1);
    let id = s.ids[0].clone();
    s.client.ok(&["dequeue", "--worker", "w"]);
    s.publish(&id, &[]);
    // A commit that says it lands the request, on a branch of its own.
    let commit = s
        .client
        .git(&[
            "commit-tree",
            "main^{tree}",
            "-p",
            "main",
            "-m",
            &format!("landed, honest\n\nHyperion-Request: {id}\n"),
        ])
        .trim()
        .to_owned();
    s.client.git(&["update-ref", "refs/heads/side", &commit]);
    let (ev, rec) = forge::land(&s.tip(&id).record, &commit, &at(2));
    s.forge(&id, &ev, &rec);
    let msg = s.refused(&[&force(&id), "side"], "chain.landed");
    assert!(msg.contains("not on main's first-parent history"), "{msg}");
    s.server.nothing_landed();
}

#[test]
fn applied_with_a_commit_carrying_another_requests_trailer_is_refused() {
    let mut s = Scene::new(2);
    let (a, b) = (s.ids[0].clone(), s.ids[1].clone());
    s.client.ok(&["dequeue", "--worker", "w", "--batch", "2"]);
    // b lands honestly, and is pushed with main.
    let landed = s.client.landing(&b);
    s.client
        .ok(&["complete", &b, "--worker", "w", "--landed", &landed]);
    s.publish(&a, &[&force(&b), "main"]);
    // a claims b's commit.
    let (ev, rec) = forge::land(&s.tip(&a).record, &landed, &at(2));
    s.forge(&a, &ev, &rec);
    let msg = s.refused(&[&force(&a)], "chain.landed");
    assert!(msg.contains("another request's"), "{msg}");
}

#[test]
fn enqueue_fields_changed_mid_chain_are_refused() {
    let s = Scene::new(1);
    let id = &s.ids[0];
    let root = s.tip(id);
    // Jump the queue (priority, age), pass for another agent, land on another branch.
    let changes: [(&str, Value); 4] = [
        ("priority", json!(9)),
        ("created_at", json!("2000-01-01T00:00:00Z")),
        ("agent", json!("trusted-bot")),
        ("target", json!("release")),
    ];
    for (field, value) in changes {
        let (ev, mut rec) = forge::lease(&root.record, "w", &at(1), &at(301));
        rec[field] = value;
        let c = forge::after(&s.client, id, &root, &ev, &rec);
        forge::set(&s.client, id, &c);
        let msg = s.refused(&[&force(id)], "chain.field_changed");
        assert!(msg.contains(field), "{field}: {msg}");
    }
}

#[test]
fn a_push_of_refs_hyperion_requests_itself_is_refused() {
    let client = TestRepo::new();
    let s = Scene {
        server: Attack::on(server()),
        client,
        ids: Vec::new(),
    };
    // Taken, the ref would stand where every request's ref must be created.
    for name in ["refs/hyperion/requests", "refs/hyperion"] {
        let msg = s.refused(&[&format!("main:{name}")], "chain.bad_ref");
        assert!(msg.contains(name), "{msg}");
    }
    // The queue still takes requests.
    let d = request_dir(&s.client, 1, "after");
    s.client.enqueue(&d);
    let (ok, err) = push(
        &s.client,
        &s.server.repo,
        &["main", "refs/hyperion/*:refs/hyperion/*"],
    );
    assert!(ok, "{err}");
}

#[test]
fn nested_and_malformed_request_ref_names_are_refused() {
    let s = Scene::new(1);
    let id = &s.ids[0];
    let r = refname(id);
    for name in [
        format!("refs/hyperion/requests/{}/x", "0123456789abcdef"),
        format!("refs/hyperion/requests/{}", id.to_uppercase()),
        format!("refs/hyperion/requests/{}", &id[..15]),
        "refs/hyperion/requests/not-an-id".into(),
        "refs/hyperion/queue".into(),
    ] {
        let msg = s.refused(&[&format!("{r}:{name}")], "chain.bad_ref");
        assert!(msg.contains(&name), "{msg}");
    }
}

#[test]
fn a_chain_under_an_id_that_is_not_its_dedupe_key_is_refused() {
    let s = Scene::new(1);
    let victim = &s.ids[0];
    // Another request, its record made to claim the victim's id and dedupe key.
    let other = request(
        "T-squat",
        &[("src/x.txt", "add", &add_patch("src/x.txt", "x"))],
        json!({}),
    );
    let (_, own, ev, mut rec) = forge::root(&s.client, &other);
    let victim_record = s.tip(victim).record;
    rec["id"] = victim_record["id"].clone();
    rec["dedupe_key"] = victim_record["dedupe_key"].clone();
    let tree = forge::tree(&s.client, &own);
    let c = forge::commit(&s.client, victim, None, &tree, &ev, &rec);
    forge::set(&s.client, victim, &c);
    let msg = s.refused(&[&force(victim)], "chain.wrong_id");
    assert!(msg.contains(&format!("stored as {victim}")), "{msg}");
}

#[test]
fn a_chain_that_skips_enqueue_is_refused() {
    let s = Scene::new(0);
    let d = request_dir(&s.client, 1, "skip");
    let id = s.client.enqueue(&d).remove(0);
    let root = s.tip(&id);
    // A chain born leased: its root is a lease, with the payload.
    let (ev, rec) = forge::lease(&root.record, "w", &at(1), &at(301));
    let c = forge::commit(
        &s.client,
        &id,
        None,
        &forge::tree(&s.client, &root.commit),
        &ev,
        &rec,
    );
    forge::set(&s.client, &id, &c);
    let msg = s.refused(&[&force(&id)], "chain.illegal_transition");
    assert!(msg.contains("not with enqueue"), "{msg}");
}

#[test]
fn timestamps_going_back_are_refused() {
    let mut s = Scene::new(1);
    let id = s.ids[0].clone();
    s.client.ok(&["dequeue", "--worker", "w"]);
    s.publish(&id, &[]);
    // A heartbeat dated a day before the lease it renews, consistent in itself.
    let (ev, rec) = forge::heartbeat(&s.tip(&id).record, &at(-86400));
    s.forge(&id, &ev, &rec);
    let msg = s.refused(&[&force(&id)], "chain.time");
    assert!(
        msg.contains("before the time of the transition before it"),
        "{msg}"
    );
}

#[test]
fn a_transition_dated_in_the_future_is_refused() {
    let s = Scene::new(1);
    let id = &s.ids[0];
    let root = s.tip(id);
    // A lease of five minutes, taken in ten days (it would not be swept before then), and
    // one at the end of the calendar, where adding the clock's tolerance overflows.
    let end = "9999-12-30T21:58:00Z";
    for (when, until) in [
        (at(10 * 86400), at(10 * 86400 + 300)),
        (end.to_owned(), "9999-12-30T21:59:00Z".to_owned()),
    ] {
        let (ev, rec) = forge::lease(&root.record, "w", &when, &until);
        let c = forge::after(&s.client, id, &root, &ev, &rec);
        forge::set(&s.client, id, &c);
        let msg = s.refused(&[&force(id)], "chain.time");
        assert!(msg.contains("in the future"), "{msg}");
    }
}

#[test]
fn attempts_reset_without_requeue_are_refused() {
    let mut s = Scene::new(1);
    let id = s.ids[0].clone();
    s.client.ok(&["dequeue", "--worker", "w"]);
    s.client.ok(&[
        "complete",
        &id,
        "--worker",
        "w",
        "--failed",
        "check.timeout",
        "--class",
        "check",
        "--transient",
    ]);
    s.publish(&id, &[]);
    let retried = s.tip(&id);
    assert_eq!(retried.record["attempts"], 1);
    // The next lease counts from zero again: the request would never run out of attempts.
    let (ev, mut rec) = forge::lease(&retried.record, "w", &at(1), &at(301));
    rec["attempts"] = 1.into();
    s.forge(&id, &ev, &rec);
    let msg = s.refused(&[&force(&id)], "chain.record_mismatch");
    assert!(
        msg.contains("attempts is 1, the transition makes it 2"),
        "{msg}"
    );
}

#[test]
fn a_dead_letter_without_a_class_is_refused() {
    let mut s = Scene::new(1);
    let id = s.ids[0].clone();
    s.client.ok(&["dequeue", "--worker", "w"]);
    s.publish(&id, &[]);
    let lease = s.tip(&id);
    let worker = "w";
    let when = at(2);
    let ev = json!({"action": "fail", "from": "leased", "to": "dead", "actor": "worker:w",
        "worker": worker, "at": when});
    let mut rec = lease.record.clone();
    rec["status"] = "dead".into();
    rec["updated_at"] = when.into();
    for k in ["lease_owner", "leased_until", "lease_secs"] {
        rec.as_object_mut().unwrap().remove(k);
    }
    s.forge(&id, &ev, &rec);
    let msg = s.refused(&[&force(&id)], "chain.record_mismatch");
    assert!(msg.contains("needs a class and an error code"), "{msg}");
}

#[test]
fn a_note_on_a_commit_without_a_trailer_is_refused() {
    let s = Scene::new(1);
    let id = &s.ids[0];
    // The person's own commit, claimed for the queue.
    s.client.git(&[
        "notes",
        "--ref=hyperion",
        "add",
        "-m",
        &format!("request: {id}\nagent: test-agent\ncheck: unit passed 1ms"),
        "main",
    ]);
    let msg = s.refused(&["refs/notes/hyperion"], "push.notes");
    assert!(msg.contains("carries no Hyperion-Request trailer"), "{msg}");
}

#[test]
fn a_note_naming_another_request_than_its_commit_is_refused() {
    let mut s = Scene::new(2);
    let (a, b) = (s.ids[0].clone(), s.ids[1].clone());
    s.client.ok(&["dequeue", "--worker", "w", "--batch", "2"]);
    let landed = s.client.landing(&a);
    s.client
        .ok(&["complete", &a, "--worker", "w", "--landed", &landed]);
    s.publish(&a, &["main"]);
    s.client.git(&[
        "notes",
        "--ref=hyperion",
        "add",
        "-m",
        &format!("request: {b}\nagent: test-agent"),
        &landed,
    ]);
    let msg = s.refused(&["refs/notes/hyperion"], "push.notes");
    assert!(
        msg.contains(&format!("does not start with 'request: {a}'")),
        "{msg}"
    );
}

#[test]
fn a_chain_whose_request_json_is_a_symlink_or_a_tree_is_refused() {
    let s = Scene::new(0);
    let d = request_dir(&s.client, 1, "shape");
    let id = s.client.enqueue(&d).remove(0);
    let root = s.tip(&id);
    let changes = s
        .client
        .git(&["rev-parse", &format!("{}:changes", root.commit)])
        .trim()
        .to_owned();
    let link = forge::blob(&s.client, b"changes/0001.patch");
    for (mode, kind, target) in [
        ("120000", "blob", link.as_str()),
        ("040000", "tree", changes.as_str()),
    ] {
        let tree = forge::tree_with(&s.client, &root.commit, mode, kind, target, "request.json");
        let c = forge::commit(&s.client, &id, None, &tree, &root.event, &root.record);
        forge::set(&s.client, &id, &c);
        let msg = s.refused(&[&force(&id)], "chain.unreadable");
        assert!(msg.contains("request.json"), "{msg}");
    }
}

#[test]
fn a_forged_chain_carrying_a_secret_never_reaches_the_server() {
    let s = Scene::new(0);
    let leak = request(
        "T-leak",
        &[(
            "config.env",
            "add",
            &add_patch("config.env", &format!("KEY={}", SECRETS[0])),
        )],
        json!({}),
    );
    // Made with plumbing: enqueue would have refused it.
    let (id, commit, _, _) = forge::root(&s.client, &leak);
    forge::set(&s.client, &id, &commit);
    s.refused(&[&refname(&id)], "secret.detected");
    assert_no_secret_stored(&s.server.repo.git_dir(), SECRETS);
}

/// What a worker stores is redacted; a pushed chain that stores a secret anyway, in an
/// artifact or in a commit message, is refused and nothing of it reaches the server.
#[test]
fn a_pushed_chain_storing_a_secret_in_an_artifact_or_a_message_is_refused() {
    let s = Scene::new(1);
    let id = &s.ids[0];
    let root = s.tip(id);
    let git_in = |args: &[&str], input: &[u8]| s.client.git_in(args, input);
    let blob = git_in(
        &["hash-object", "-w", "--stdin"],
        format!("env:\nGITHUB_TOKEN={}\n", SECRETS[1]).as_bytes(),
    );
    let checks = git_in(
        &["mktree"],
        format!("100644 blob {blob}\tunit.stdout\n").as_bytes(),
    );
    let artifacts = git_in(
        &["mktree"],
        format!("040000 tree {checks}\tchecks\n").as_bytes(),
    );
    let mut entries = s.client.git(&["ls-tree", &root.commit]);
    entries.push_str(&format!("040000 tree {artifacts}\tartifacts\n"));
    let tree = git_in(&["mktree"], entries.as_bytes());
    let (ev, rec) = forge::lease(&root.record, "w", &at(1), &at(301));
    let c = forge::commit(&s.client, id, Some(&root.commit), &tree, &ev, &rec);
    forge::set(&s.client, id, &c);
    let msg = s.refused(&[&force(id)], "chain.secret");
    assert!(msg.contains("artifacts/checks/unit.stdout"), "{msg}");
    assert!(!msg.contains(SECRETS[1]), "{msg}");

    // The same in the event of a commit's message.
    let mut ev = ev;
    ev["actor"] = json!(format!("worker:w {}", SECRETS[0]));
    let c = forge::after(&s.client, id, &root, &ev, &rec);
    forge::set(&s.client, id, &c);
    let msg = s.refused(&[&force(id)], "chain.secret");
    assert!(msg.contains("its message"), "{msg}");
    assert!(!msg.contains(SECRETS[0]), "{msg}");
}

/// The root of a chain may carry an agent's transcript (`artifacts/transcript.jsonl`): a
/// forged root whose transcript holds a secret is refused like any other stored secret, and
/// nothing of it reaches the server.
#[test]
fn a_forged_root_whose_transcript_holds_a_secret_is_refused() {
    let s = Scene::new(0);
    let req = request(
        "T-transcript",
        &[("notes.txt", "add", &add_patch("notes.txt", "fine\n"))],
        json!({}),
    );
    let (id, clean, event, record) = forge::root(&s.client, &req);
    let line = format!(
        "{{\"at\":\"2026-12-03T00:00:00Z\",\"kind\":\"message\",\"text\":\"export AWS_SECRET={}\"}}\n",
        SECRETS[0]
    );
    let transcript = forge::blob(&s.client, line.as_bytes());
    let artifacts = forge::mktree(
        &s.client,
        &[("100644", "blob", &transcript, "transcript.jsonl")],
    );
    let mut entries = s.client.git(&["ls-tree", &clean]);
    entries.push_str(&format!("040000 tree {artifacts}\tartifacts\n"));
    let tree = s.client.git_in(&["mktree"], entries.as_bytes());
    let root = forge::commit(&s.client, &id, None, &tree, &event, &record);
    forge::set(&s.client, &id, &root);
    let msg = s.refused(&[&refname(&id)], "chain.secret");
    assert!(msg.contains("artifacts/transcript.jsonl"), "{msg}");
    assert_no_secret_stored(&s.server.repo.git_dir(), SECRETS);
}
