//! Remote mode: clones that share one queue through a bare repository on a file path, each a
//! "machine" driven through the real `git` and `git-hyperion` binaries.

#![allow(clippy::unwrap_used)]

use crate::common;

use common::{TestRepo, hermetic, request};
use serde_json::Value;

/// A bare repository standing for the shared remote, holding `main` of `first`.
struct Shared {
    dir: tempfile::TempDir,
}

impl Shared {
    fn path(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    /// `git` in the remote; its stdout.
    fn git(&self, args: &[&str]) -> String {
        hermetic::git(self.dir.path(), args)
    }

    fn refs(&self) -> String {
        self.git(&[
            "for-each-ref",
            "--format=%(refname) %(objectname)",
            "refs/hyperion",
        ])
    }
}

/// The first machine (with `main`) and the remote it pushed `main` to, set up with
/// `init --remote origin`.
fn first() -> (Shared, TestRepo) {
    let shared = Shared {
        dir: tempfile::tempdir().unwrap(),
    };
    shared.git(&["init", "-q", "--bare", "-b", "main"]);
    let a = TestRepo::new();
    a.git(&["remote", "add", "origin", shared.path()]);
    a.git(&["push", "-q", "origin", "main"]);
    a.ok(&["init", "--remote", "origin"]);
    (shared, a)
}

/// Another machine: a clone of the remote, set up with `init --remote origin`.
fn machine(shared: &Shared) -> TestRepo {
    let r = TestRepo::clone_of(shared.dir.path(), None);
    r.ok(&["init", "--remote", "origin"]);
    r
}

fn enqueue(repo: &TestRepo, i: usize, salt: &str) -> String {
    let f = repo.write(&format!("r-{salt}-{i}.json"), &request(i, salt));
    let ids = repo.enqueue(&f);
    assert_eq!(ids.len(), 1);
    ids[0].clone()
}

fn error_code(stdout: &str) -> String {
    let doc: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    doc["error"]["code"].as_str().unwrap().to_owned()
}

#[test]
fn enqueue_publishes_and_another_clone_sees_it_with_list_fetch() {
    let (shared, a) = first();
    let b = machine(&shared);
    let id = enqueue(&a, 1, "pub");
    let tip = a.git(&["rev-parse", &format!("refs/hyperion/requests/{id}")]);
    assert_eq!(
        shared.git(&["rev-parse", &format!("refs/hyperion/requests/{id}")]),
        tip,
        "enqueue published the request's chain"
    );

    // B does not see it until it fetches; then it does, and says how fresh its view is.
    assert!(b.ids(&["list"]).is_empty());
    let text = b.ok(&["list"]);
    assert!(text.contains("never fetched"), "{text}");
    let listed = b.ids(&["list", "--fetch"]);
    assert_eq!(listed, vec![id.clone()]);
    let text = b.ok(&["list"]);
    assert!(
        text.contains("remote origin: queue as of the last fetch"),
        "{text}"
    );
    let shown = b.json(&["show", &id]);
    assert_eq!(shown["remote"]["name"], "origin");
    assert!(shown["remote"]["fetched_at"].is_string(), "{shown}");
    assert!(
        b.git_dir().join("hyperion/last-fetch/origin").is_file(),
        "the freshness record"
    );
    // B's local chain is the remote's.
    assert_eq!(
        b.git(&["rev-parse", &format!("refs/hyperion/requests/{id}")]),
        tip
    );
}

/// The commit `id` landed as, from its record in `repo`.
fn landed_commit(repo: &TestRepo, id: &str) -> String {
    let shown = repo.json(&["show", id]);
    shown["record"]["landed_commit"]
        .as_str()
        .unwrap_or_else(|| panic!("{id} did not land: {shown}"))
        .to_owned()
}

#[test]
fn fetch_takes_in_the_notes_of_landings_other_machines_made() {
    let (shared, a) = first();
    let b = machine(&shared);
    let id = enqueue(&a, 1, "notes");
    a.ok(&["worker", "--drain"]);
    let landed = landed_commit(&a, &id);
    let notes = shared.git(&["rev-parse", "refs/notes/hyperion"]);
    assert!(b.git(&["for-each-ref", "refs/notes/hyperion"]).is_empty());

    let said = b.ok(&["fetch"]);
    assert!(said.contains("notes taken in"), "{said}");
    assert_eq!(b.git(&["rev-parse", "refs/notes/hyperion"]), notes);
    let note = b.git(&["notes", "--ref=hyperion", "show", &landed]);
    assert!(note.contains(&format!("request: {id}")), "{note}");

    // B's own notes are not rewound or replaced by an older view: a second landing on A,
    // and B, behind again, follows; a fetch with nothing new leaves them.
    let id2 = enqueue(&a, 2, "notes");
    a.ok(&["worker", "--drain"]);
    let said = b.ok(&["fetch"]);
    assert!(said.contains("notes taken in"), "{said}");
    let note = b.git(&["notes", "--ref=hyperion", "show", &landed_commit(&a, &id2)]);
    assert!(note.contains(&format!("request: {id2}")), "{note}");
    let said = b.ok(&["fetch"]);
    assert!(!said.contains("notes taken in"), "{said}");
    assert_eq!(
        b.git(&["rev-parse", "refs/notes/hyperion"]),
        shared.git(&["rev-parse", "refs/notes/hyperion"])
    );
}

#[test]
fn a_batch_enqueue_is_one_create_only_push() {
    let (shared, a) = first();
    // Count pushes with a pre-receive hook that appends a line per push.
    let log = shared.dir.path().join("pushes.log");
    let hook = shared.dir.path().join("hooks/pre-receive");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\ncat >/dev/null\necho push >> '{}'\n",
            log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = common::request_dir(&a, 5, "batch");
    let ids = a.enqueue(&d);
    assert_eq!(ids.len(), 5);
    assert_eq!(shared.refs().lines().count(), 5, "{}", shared.refs());
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 1);
}

#[test]
fn publishing_the_same_request_twice_is_idempotent() {
    let (shared, a) = first();
    let b = machine(&shared);
    let id = enqueue(&a, 1, "same");
    let before = shared.refs();
    // The same machine again: stored before, the remote already holds it.
    let (_, err) = {
        let f = a.write("again.json", &request(1, "same"));
        let out = a.run(&["enqueue", f.to_str().unwrap()]);
        assert!(out.status.success());
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert!(err.contains("1 already there"), "{err}");
    assert_eq!(shared.refs(), before);
    // Another machine that never fetched enqueues the same submission: its own chain is
    // replaced by the remote's; nothing changes there.
    assert_eq!(enqueue(&b, 1, "same"), id);
    assert_eq!(shared.refs(), before);
    assert_eq!(
        b.git(&["rev-parse", &format!("refs/hyperion/requests/{id}")]),
        a.git(&["rev-parse", &format!("refs/hyperion/requests/{id}")]),
    );
}

#[test]
fn a_different_chain_under_the_id_is_refused_with_remote_conflict() {
    let (shared, a) = first();
    let b = machine(&shared);
    // Another request's chain planted under the id the next request will have (a remote
    // without the verify-push hook takes anything).
    let other = enqueue(&b, 2, "other");
    let id = {
        let f = a.write("probe.json", &request(1, "conflict"));
        let v = a.json(&["enqueue", "--dry-run", f.to_str().unwrap()]);
        v[0]["id"].as_str().unwrap().to_owned()
    };
    let other_tip = shared.git(&["rev-parse", &format!("refs/hyperion/requests/{other}")]);
    shared.git(&[
        "update-ref",
        &format!("refs/hyperion/requests/{id}"),
        other_tip.trim(),
    ]);
    let before = shared.refs();
    let f = a.write("c.json", &request(1, "conflict"));
    let out = a.run(&["enqueue", f.to_str().unwrap(), "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(error_code(&stdout), "remote.conflict", "{stderr}");
    assert!(stderr.contains("stored in this clone's queue"), "{stderr}");
    assert!(stderr.contains("not_published: "), "{stderr}");
    // The remote is untouched; the local request is stored.
    assert_eq!(shared.refs(), before);
    assert_eq!(a.ids(&["list"]), vec![id]);
}

#[test]
fn an_unreachable_remote_is_a_clear_error_and_the_request_stays_local() {
    let (shared, a) = first();
    let gone = a.home.path().join("gone.git");
    a.git(&["remote", "add", "gone", gone.to_str().unwrap()]);
    let f = a.write("u.json", &request(1, "unreach"));
    let out = a.run(&[
        "--remote",
        "gone",
        "enqueue",
        f.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(error_code(&stdout), "remote.unreachable", "{stderr}");
    assert!(stderr.contains("not published to gone"), "{stderr}");
    assert!(stderr.contains("git hyperion push"), "{stderr}");
    // Stored locally, intact and valid; `push` publishes it later.
    let ids = a.ids(&["list"]);
    assert_eq!(ids.len(), 1);
    a.ok(&["doctor"]);
    // The remote comes back (a copy of the shared one).
    a.git(&[
        "clone",
        "-q",
        "--bare",
        shared.path(),
        gone.to_str().unwrap(),
    ]);
    let pushed = a.json(&["--remote", "gone", "push"]);
    assert_eq!(pushed["pushed"], serde_json::json!(ids));
    // An unknown remote is refused before anything is stored.
    let f = a.write("v.json", &request(2, "unreach"));
    let (_, err) = a.fails(&["--remote", "nope", "enqueue", f.to_str().unwrap()], 2);
    assert!(err.contains("[remote.missing]"), "{err}");
    assert_eq!(a.ids(&["list"]).len(), 1);
}

#[test]
fn init_remote_is_idempotent_and_its_refspecs_work_with_plain_git() {
    let (shared, a) = first();
    let config =
        |r: &TestRepo| r.git(&["config", "--get-regexp", r"^remote\.origin\.(fetch|push)"]);
    let once = config(&a);
    a.ok(&["init", "--remote", "origin"]);
    assert_eq!(config(&a), once, "a second init adds nothing");
    assert_eq!(a.git(&["config", "hyperion.remote"]).trim(), "origin");
    let (_, err) = a.fails(&["init", "--remote", "nope"], 2);
    assert!(err.contains("[remote.missing]"), "{err}");

    // Plain `git push` publishes the queue (fast-forward only), plain `git fetch` mirrors it
    // into the tracking namespace (no notes ref yet: the glob keeps fetch from failing).
    a.git(&["config", "--unset", "hyperion.remote"]);
    let id = enqueue(&a, 1, "plain");
    assert!(
        shared.refs().is_empty(),
        "not published by enqueue without a remote"
    );
    a.git(&["push", "-q", "origin"]);
    let tip = a.git(&["rev-parse", &format!("refs/hyperion/requests/{id}")]);
    assert_eq!(
        shared.git(&["rev-parse", &format!("refs/hyperion/requests/{id}")]),
        tip
    );
    let b = machine(&shared);
    b.git(&["fetch", "-q", "origin"]);
    assert_eq!(
        b.git(&[
            "rev-parse",
            &format!("refs/hyperion-remotes/origin/requests/{id}")
        ]),
        tip
    );
    // `git hyperion fetch` takes it into the queue.
    assert!(b.ids(&["list"]).is_empty());
    let fetched = b.json(&["fetch"]);
    assert_eq!(fetched["adopted"], serde_json::json!([id]));
    assert_eq!(b.ids(&["list"]), vec![id]);
    // The doctor of a clone that fetched sees nothing wrong.
    b.ok(&["doctor"]);
}

/// B leases a request and publishes the lease; A, without fetching, leases it too: their
/// chains diverge. A's push is refused (the lease on the remote's tip does not hold), and
/// A's doctor names the divergence and how to resolve it; the resolution it names works.
#[test]
fn doctor_reports_a_queue_diverged_from_the_remote() {
    let (shared, a) = first();
    let b = machine(&shared);
    let id = enqueue(&a, 1, "div");
    b.ok(&["fetch"]);
    b.ok(&["dequeue", "--worker", "wb"]);
    b.ok(&["push"]);
    // A leases it in its own queue only (remote mode off for the one command).
    a.git(&["config", "--unset", "hyperion.remote"]);
    a.ok(&["dequeue", "--worker", "wa"]);
    a.git(&["config", "hyperion.remote", "origin"]);
    let remote_tip = shared.git(&["rev-parse", &format!("refs/hyperion/requests/{id}")]);
    let (_, err) = a.fails(&["push"], 1);
    assert!(err.contains("[remote.conflict]"), "{err}");
    assert_eq!(
        shared.git(&["rev-parse", &format!("refs/hyperion/requests/{id}")]),
        remote_tip,
        "the remote keeps B's lease"
    );
    // Before fetching, A's view of the remote is the published enqueue: A is ahead.
    a.ok(&["doctor"]);
    let fetched = a.json(&["fetch"]);
    assert_eq!(fetched["diverged"], serde_json::json!([id]));
    let out = a.run(&["doctor", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let finding = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "remote.diverged")
        .unwrap_or_else(|| panic!("no divergence reported: {report}"))
        .clone();
    assert_eq!(finding["id"], id.as_str());
    let message = finding["message"].as_str().unwrap();
    // The resolution the finding names, run as written.
    let command = message
        .split('`')
        .find(|part| part.starts_with("git update-ref"))
        .unwrap();
    let args: Vec<&str> = command.split_whitespace().skip(1).collect();
    a.git(&args);
    a.ok(&["doctor"]);
    assert_eq!(a.json(&["show", &id])["record"]["lease_owner"], "wb");
}

fn spawn_dequeue(repo: &TestRepo, worker: &str, env: &[(&str, &str)]) -> std::process::Child {
    let mut cmd = repo.cmd();
    cmd.args(["dequeue", "--worker", worker, "--format", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// The ids a `dequeue --format json` printed.
fn won(child: std::process::Child) -> Vec<String> {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The lease owner of `id` on the remote: the record in its tip's message.
fn remote_owner(shared: &Shared, id: &str) -> String {
    let body = shared.git(&[
        "log",
        "-1",
        "--format=%B",
        &format!("refs/hyperion/requests/{id}"),
    ]);
    let record: Value = serde_json::from_str(body.trim().lines().last().unwrap()).unwrap();
    record["lease_owner"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A leases locally, then stops before its push; B leases and publishes; A goes on: its push
/// is refused, it reports nothing won, and its local ref is the remote's (B's lease).
#[test]
fn a_lease_another_machine_published_first_is_lost_and_put_back() {
    let (shared, a) = first();
    let b = machine(&shared);
    let id = enqueue(&a, 1, "lost");
    let paused = spawn_dequeue(
        &a,
        "wa",
        &[("HYPERION_TEST_PAUSE_AT", "remote.leased_locally")],
    );
    common::wait_stopped(paused.id(), "A's dequeue");
    assert_eq!(won(spawn_dequeue(&b, "wb", &[])), vec![id.clone()]);
    common::signal(paused.id(), "CONT");
    assert!(
        won(paused).is_empty(),
        "A did not win a request B leased first"
    );
    assert_eq!(remote_owner(&shared, &id), "wb");
    let r = format!("refs/hyperion/requests/{id}");
    assert_eq!(a.git(&["rev-parse", &r]), shared.git(&["rev-parse", &r]));
    a.ok(&["doctor"]);
}

/// Three machines race for each request, as concurrent processes, round after round: each
/// request is won exactly once, by the worker the remote records.
#[test]
fn machines_racing_for_a_lease_never_both_win() {
    let (shared, a) = first();
    let b = machine(&shared);
    let c = machine(&shared);
    for round in 0..6 {
        let id = enqueue(&a, round, "race");
        let racers =
            [(&a, "wa"), (&b, "wb"), (&c, "wc")].map(|(repo, w)| (w, spawn_dequeue(repo, w, &[])));
        let mut winners = Vec::new();
        for (w, child) in racers {
            let ids = won(child);
            assert!(ids.len() <= 1, "{ids:?}");
            if ids == [id.clone()] {
                winners.push(w);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?} all won {id}");
        assert_eq!(remote_owner(&shared, &id), winners[0]);
    }
}

/// The shipped hook (hooks/pre-receive, `verify-push`) on the remote: lease pushes are
/// checked as a server checks them.
fn install_hook(shared: &Shared) {
    let hook = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks/pre-receive");
    std::fs::copy(hook, shared.dir.path().join("hooks/pre-receive")).unwrap();
}

/// When `repo` last fetched the queue (`hyperion/last-fetch/origin`).
fn last_fetch(repo: &TestRepo) -> String {
    std::fs::read_to_string(repo.git_dir().join("hyperion/last-fetch/origin")).unwrap()
}

/// A `dequeue --format json` of `repo` as worker `w`, the hook's binary on `PATH`.
fn spawn_dequeue_hooked(repo: &TestRepo, w: &str, env: &[(&str, &str)]) -> std::process::Child {
    let path = common::path_with_bin();
    let mut env = env.to_vec();
    env.push(("PATH", &path));
    spawn_dequeue(repo, w, &env)
}

/// What a finished `dequeue --format json` won, and what it said on stderr.
fn won_and_said(child: std::process::Child) -> (Vec<String>, String) {
    let out = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{said}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    (ids, said)
}

/// Two machines lease from views of one fetch (`hyperion.leaseView` long: no fetch before
/// the lease), both the first request: B is stopped after its local lease, A leases and
/// publishes, B goes on. A's lease was made without a fetch; B's push is refused (the
/// remote's compare-and-swap), B takes the remote's state in, fetches the queue and leases
/// the next request at once. Each request is won once, by the worker the remote records;
/// the shipped hook checks every push.
#[test]
fn leases_from_stale_views_race_and_the_loser_takes_the_next_one() {
    let (shared, a) = first();
    let b = machine(&shared);
    let first_id = enqueue(&a, 1, "stale");
    let next_id = enqueue(&a, 2, "stale");
    install_hook(&shared);
    for m in [&a, &b] {
        m.git(&["config", "hyperion.leaseView", "1h"]);
        m.ok(&["fetch"]);
    }
    let a_fetched = last_fetch(&a);
    let b_fetched = last_fetch(&b);

    let paused = spawn_dequeue_hooked(
        &b,
        "wb",
        &[("HYPERION_TEST_PAUSE_AT", "remote.leased_locally")],
    );
    common::wait_stopped(paused.id(), "B's dequeue");
    // B leased from its view, without a fetch: the same view A has.
    assert_eq!(last_fetch(&b), b_fetched, "B fetched before leasing");
    let r = format!("refs/hyperion/requests/{first_id}");
    let subject = b.git(&["log", "-1", "--format=%s", &r]);
    assert!(
        subject.contains("lease") && subject.contains("by wb"),
        "B leased the first request locally: {subject}"
    );

    let (ids, _) = won_and_said(spawn_dequeue_hooked(&a, "wa", &[]));
    assert_eq!(ids, vec![first_id.clone()], "A leased the first request");
    assert_eq!(last_fetch(&a), a_fetched, "A's lease fetched nothing");
    assert_eq!(remote_owner(&shared, &first_id), "wa");

    // B's push is refused; its second round (a fresh view) stops at the same point again.
    common::signal(paused.id(), "CONT");
    common::wait_stopped(paused.id(), "B's second round");
    assert_ne!(last_fetch(&b), b_fetched, "B's view was refreshed");
    common::signal(paused.id(), "CONT");
    let (ids, said) = won_and_said(paused);
    assert_eq!(
        ids,
        vec![next_id.clone()],
        "B took the next request: {said}"
    );
    assert!(
        said.contains(&format!(
            "note: {first_id} was leased by another machine first"
        )),
        "{said}"
    );
    assert_eq!(remote_owner(&shared, &first_id), "wa", "A's lease stands");
    assert_eq!(remote_owner(&shared, &next_id), "wb");
    // B's local chain of the first request is the remote's: A's lease.
    assert_eq!(b.git(&["rev-parse", &r]), shared.git(&["rev-parse", &r]));
    b.ok(&["doctor"]);
    a.ok(&["doctor"]);
}

/// A view with nothing ready is fetched again before `dequeue` says nothing is ready: a
/// request enqueued on another machine since is leased.
#[test]
fn an_empty_view_is_fetched_again_before_nothing_is_ready() {
    let (shared, a) = first();
    install_hook(&shared);
    let b = machine(&shared);
    b.git(&["config", "hyperion.leaseView", "1h"]);
    b.ok(&["fetch"]);
    let fetched = last_fetch(&b);
    let f = a.write("r-empty.json", &request(1, "empty"));
    let out = a
        .cmd()
        .env("PATH", common::path_with_bin())
        .args(["enqueue", f.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let (ids, said) = won_and_said(spawn_dequeue_hooked(&b, "wb", &[]));
    assert_eq!(ids, vec![id.clone()], "{said}");
    assert_ne!(
        last_fetch(&b),
        fetched,
        "B fetched when its view had nothing"
    );
    assert_eq!(remote_owner(&shared, &id), "wb");
    // With nothing ready anywhere, it says so.
    let (ids, said) = won_and_said(spawn_dequeue_hooked(&b, "wb", &[]));
    assert!(ids.is_empty(), "{ids:?}");
    assert!(!said.contains("error"), "{said}");
}

/// `hyperion.leaseView 0`: every lease fetches first.
#[test]
fn lease_view_zero_fetches_before_every_lease() {
    let (_shared, a) = first();
    let id = enqueue(&a, 1, "zero");
    a.git(&["config", "hyperion.leaseView", "0"]);
    a.ok(&["fetch"]);
    let fetched = last_fetch(&a);
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(won(spawn_dequeue(&a, "wa", &[])), vec![id]);
    assert_ne!(last_fetch(&a), fetched, "a fetch before the lease");
}

/// A lease from a recent view whose push reaches no remote is taken back: `dequeue` fails
/// with `remote.unreachable` and the request is as it was in this clone, not leased here
/// alone.
#[test]
fn a_lease_from_the_view_that_reaches_no_remote_is_taken_back() {
    let (shared, a) = first();
    let id = enqueue(&a, 1, "cut");
    a.git(&["config", "hyperion.leaseView", "1h"]);
    a.ok(&["fetch"]);
    let r = format!("refs/hyperion/requests/{id}");
    let before = a.git(&["rev-parse", &r]);
    let away = shared.dir.path().with_extension("away");
    std::fs::rename(shared.dir.path(), &away).unwrap();
    let out = a.run(&["dequeue", "--worker", "wa", "--format", "json"]);
    std::fs::rename(&away, shared.dir.path()).unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(error_code(&stdout), "remote.unreachable", "{stdout}");
    assert_eq!(
        a.git(&["rev-parse", &r]),
        before,
        "the local lease was taken back"
    );
    assert_eq!(a.json(&["show", &id])["record"]["status"], "pending");
    // Reachable again, the next lease takes it.
    assert_eq!(won(spawn_dequeue(&a, "wa", &[])), vec![id.clone()]);
    assert_eq!(remote_owner(&shared, &id), "wa");
}

/// `sweep` in remote mode takes the remote's leases in and publishes what it returns: a lease
/// A took and let expire is pending again on the remote after B's sweep, and a third machine
/// leases it. With the remote unreachable, the sweep works on this clone's view and says so.
#[test]
fn sweep_in_remote_mode_fetches_the_leases_and_pushes_the_returns() {
    let (shared, a) = first();
    let b = machine(&shared);
    // Returned requests come back without waiting out a backoff.
    b.git(&["config", "hyperion.retryBackoff", "0s"]);
    let id = enqueue(&a, 1, "sweep");
    a.ok(&["dequeue", "--worker", "wa", "--lease", "1s"]);
    assert_eq!(remote_owner(&shared, &id), "wa");
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let out = b.ok(&["sweep"]);
    assert!(
        out.contains(&format!("{id} pending (lease expired)")),
        "{out}"
    );
    assert_eq!(
        remote_owner(&shared, &id),
        "",
        "the return reached the remote"
    );
    let c = machine(&shared);
    assert_eq!(won(spawn_dequeue(&c, "wc", &[])), vec![id.clone()]);

    // With the remote gone, B's sweep works on its own view and says so.
    let moved = format!("{}-moved", shared.path());
    std::fs::rename(shared.path(), &moved).unwrap();
    let out = b.run(&["sweep"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("warning: could not fetch"), "{err}");
    std::fs::rename(&moved, shared.path()).unwrap();
    b.ok(&["doctor"]);
}
