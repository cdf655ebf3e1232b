//! Stacked requests (`depends_on`): a request that builds on requests not landed yet is
//! validated on top of them, waits for them visibly, lands after them (in one chain when they
//! share a batch), and dies with them; cycles, unknown names, other branches and dead
//! predecessors are refused at enqueue; a dependency opens no way around the gate. And this
//! repository's history, a few hundred commits, enqueued at once as one stack and drained.

use crate::common;

use std::path::PathBuf;

use common::TestRepo;
use hyperion::request::model::ChangeRequest;
use serde_json::Value;

/// Commits on a side branch `work` (one per edit, from `main`), as diffs each against the one
/// before; the checkout is back on `main` afterwards, unchanged.
fn series(repo: &TestRepo, edits: &[&[(&str, Option<&str>)]]) -> Vec<PathBuf> {
    series_on(repo, "work", edits)
}

fn series_on(repo: &TestRepo, branch: &str, edits: &[&[(&str, Option<&str>)]]) -> Vec<PathBuf> {
    repo.git(&["checkout", "-q", "-b", branch]);
    let mut prev = repo.git(&["rev-parse", "HEAD"]).trim().to_owned();
    let mut out = Vec::new();
    for (i, files) in edits.iter().enumerate() {
        for (path, content) in *files {
            let p = repo.path().join(path);
            match content {
                Some(c) => {
                    std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
                    std::fs::write(&p, c).expect("write");
                }
                None => std::fs::remove_file(&p).expect("rm"),
            }
        }
        repo.git(&["add", "-A"]);
        repo.git(&["commit", "-q", "-m", &format!("step {i}")]);
        let now = repo.git(&["rev-parse", "HEAD"]).trim().to_owned();
        let diff = repo.git(&["diff", "--full-index", "--binary", &prev, &now]);
        let file = repo.home.path().join(format!("{branch}-{i}.diff"));
        std::fs::write(&file, diff).expect("write");
        out.push(file);
        prev = now;
    }
    repo.git(&["checkout", "-q", "main"]);
    out
}

fn id_of(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "enqueue failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn record(repo: &TestRepo, id: &str) -> Value {
    repo.json(&["show", id])["record"].clone()
}

fn tree(repo: &TestRepo, rev: &str) -> String {
    repo.git(&["rev-parse", &format!("{rev}^{{tree}}")])
        .trim()
        .to_owned()
}

#[test]
fn a_request_editing_a_file_its_predecessor_adds_is_accepted_waits_and_lands_after_it() {
    let repo = TestRepo::new();
    let p = series(
        &repo,
        &[
            &[("lib/a.txt", Some("one\ntwo\nthree\n"))],
            &[("lib/a.txt", Some("one\n2\nthree\n"))],
        ],
    );
    // Against the tip alone, the second does not fit: the file is not there yet.
    let out = repo.enqueue_patch(&p[1], "T-2", "agent", &[], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("operation.missing"));

    let a = id_of(repo.enqueue_patch(&p[0], "T-1", "agent", &[], &[]));
    // By task id (the newest request of the task).
    let b = id_of(repo.enqueue_patch(&p[1], "T-2", "agent", &[], &["T-1"]));
    assert_eq!(record(&repo, &b)["depends_on"], serde_json::json!([a]));

    // Visible: waiting, in list (text and JSON) and show.
    let listed = repo.json(&["list"]);
    let row = |id: &str| {
        listed
            .as_array()
            .expect("array")
            .iter()
            .find(|r| r["id"] == id)
            .expect("listed")
            .clone()
    };
    assert_eq!(row(&b)["status"], "pending");
    assert_eq!(row(&b)["waiting_for"], serde_json::json!([a]));
    assert!(row(&a).get("waiting_for").is_none());
    let text = repo.ok(&["list"]);
    let line = text.lines().find(|l| l.starts_with(&b)).expect("a row");
    assert!(line.contains("pending:waiting"), "{text}");
    let shown = repo.ok(&["show", &b]);
    assert!(shown.contains(&format!("waiting   for {a}")), "{shown}");
    // Not ready, so not in a dry run either.
    let dry = repo.ok(&["worker", "--dry-run", "--format", "json"]);
    assert!(dry.contains(&a) && !dry.contains(&b), "{dry}");

    // Only the predecessor can be had; the dependent waits, also for `apply`.
    let leased = repo.json(&["dequeue", "--worker", "w1", "--batch", "1"]);
    let leased: Vec<&str> = leased
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["id"].as_str().expect("id"))
        .collect();
    assert_eq!(leased, vec![a.as_str()]);
    assert!(
        repo.json(&["dequeue", "--worker", "w2"])
            .as_array()
            .expect("array")
            .is_empty()
    );
    let (_, err) = repo.fails(&["apply", &b], 1);
    assert!(
        err.contains("queue.wrong_state") && err.contains(&a),
        "{err}"
    );
    repo.ok(&["release", &a, "--worker", "w1"]);

    // One worker run lands both, the dependent on top of its predecessor.
    repo.ok(&["worker", "--drain", "--batch-size", "1"]);
    let ra = record(&repo, &a);
    let rb = record(&repo, &b);
    assert_eq!(ra["status"], "applied");
    assert_eq!(rb["status"], "applied");
    let ca = ra["landed_commit"].as_str().expect("landed");
    let cb = rb["landed_commit"].as_str().expect("landed");
    assert_eq!(repo.git(&["rev-parse", &format!("{cb}^")]).trim(), ca);
    assert_eq!(tree(&repo, "main"), tree(&repo, "work"));
    assert!(record(&repo, &b).get("waiting_for").is_none());
}

#[test]
fn predecessors_in_the_same_batch_land_in_one_chain_in_order() {
    let repo = TestRepo::new();
    let p = series(
        &repo,
        &[
            &[("a.txt", Some("a\n"))],
            &[("a.txt", Some("a\nb\n"))],
            &[("a.txt", Some("a\nb\nc\n")), ("z.txt", Some("z\n"))],
        ],
    );
    // The dependents first, at a higher priority: the queue still hands them out after.
    let a = id_of(repo.enqueue_patch(&p[0], "S-1", "agent", &[], &[]));
    let b = id_of(repo.enqueue_patch(&p[1], "S-2", "agent", &[], &[&a[..6]]));
    let c = id_of(repo.enqueue_patch(&p[2], "S-3", "agent", &[], &[&b]));
    let before = repo.git(&["rev-parse", "main"]).trim().to_owned();
    let out = repo.ok(&["worker", "--once", "--batch-size", "8"]);
    assert_eq!(
        out.lines().filter(|l| l.starts_with("landed ")).count(),
        3,
        "{out}"
    );
    // One compare-and-swap: main moved once, across a chain a <- b <- c.
    let moves = repo.git(&["reflog", "--format=%H", "main"]);
    assert_eq!(moves.lines().count(), 2, "{moves}");
    let commit = |id: &str| {
        record(&repo, id)["landed_commit"]
            .as_str()
            .expect("landed")
            .to_owned()
    };
    let (ca, cb, cc) = (commit(&a), commit(&b), commit(&c));
    assert_eq!(repo.git(&["rev-parse", &format!("{ca}^")]).trim(), before);
    assert_eq!(repo.git(&["rev-parse", &format!("{cb}^")]).trim(), ca);
    assert_eq!(repo.git(&["rev-parse", &format!("{cc}^")]).trim(), cb);
    assert_eq!(tree(&repo, "main"), tree(&repo, "work"));
}

#[test]
fn when_a_predecessor_dies_its_dependents_die_with_the_code_and_requeue_brings_them_back() {
    let repo = TestRepo::new();
    let p = series(
        &repo,
        &[
            &[("a.txt", Some("a\n"))],
            &[("a.txt", Some("a\nb\n"))],
            &[("a.txt", Some("a\nb\nc\n"))],
        ],
    );
    let a = id_of(repo.enqueue_patch(&p[0], "D-1", "agent", &[], &[]));
    let b = id_of(repo.enqueue_patch(&p[1], "D-2", "agent", &[], &["D-1"]));
    let c = id_of(repo.enqueue_patch(&p[2], "D-3", "agent", &[], &["D-2"]));
    let leased = repo.json(&["dequeue", "--worker", "w1"]);
    assert_eq!(leased[0]["id"], a.as_str());
    repo.fail_apply(&a, "w1");
    // The next worker finds both dependents orphaned: dead letters naming their predecessor.
    repo.ok(&["worker", "--drain"]);
    for (id, on) in [(&b, &a), (&c, &b)] {
        let r = record(&repo, id);
        assert_eq!(r["status"], "dead", "{r}");
        assert_eq!(r["dead_class"], "dependency");
        assert_eq!(r["error"]["code"], "request.dependency_dead");
        let message = r["error"]["message"].as_str().expect("message");
        assert!(message.contains(on.as_str()), "{message}");
    }
    let dead = repo.ok(&["dead", "--class", "dependency"]);
    assert!(dead.contains(&b) && dead.contains(&c), "{dead}");
    // The chain records it as a `cancel`, which doctor accepts.
    let history = repo.json(&["show", &b])["history"].clone();
    assert_eq!(history[0]["action"], "cancel");
    repo.ok(&["doctor"]);
    // A dependent of a dead request is refused at enqueue.
    let q = series_after(&repo, &p);
    let out = repo.enqueue_patch(&q, "D-4", "agent", &[], &[&c]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("request.dependency_dead"));

    // Requeue of the predecessor brings its orphans back; they wait, then land in order.
    let back = repo.json(&["requeue", &a, "--reason", "fixed the base"]);
    assert_eq!(back.as_array().expect("array").len(), 3, "{back}");
    assert_eq!(record(&repo, &c)["waiting_for"], serde_json::json!([b]));
    repo.ok(&["worker", "--drain"]);
    for id in [&a, &b, &c] {
        assert_eq!(record(&repo, id)["status"], "applied");
    }
    assert_eq!(tree(&repo, "main"), tree(&repo, "work~1"));
}

#[test]
fn a_dependent_in_the_batch_of_a_predecessor_that_fails_does_not_land_without_it() {
    let repo = TestRepo::new();
    let p = series(
        &repo,
        &[&[("a.txt", Some("a\n"))], &[("b.txt", Some("b\n"))]],
    );
    let a = id_of(repo.enqueue_patch(&p[0], "F-1", "agent", &[], &[]));
    // The dependent would apply on its own: only its declared order holds it back.
    let b = id_of(repo.enqueue_patch(&p[1], "F-2", "agent", &[], &["F-1"]));
    // The predecessor no longer applies: main got its own a.txt meanwhile.
    repo.commit(&[("a.txt", "theirs\n")], "a.txt elsewhere");
    let main = repo.git(&["rev-parse", "main"]);
    repo.run(&["worker", "--drain", "--batch-size", "8"]);
    let ra = record(&repo, &a);
    assert_eq!(ra["status"], "dead");
    assert_ne!(ra["dead_class"], "dependency");
    let rb = record(&repo, &b);
    assert_eq!(rb["status"], "dead", "{rb}");
    assert_eq!(rb["dead_class"], "dependency");
    assert_eq!(rb["error"]["code"], "request.dependency_dead");
    assert_eq!(repo.git(&["rev-parse", "main"]), main, "nothing landed");
}

#[test]
fn gc_keeps_a_landed_predecessor_while_a_request_still_depends_on_it() {
    let repo = TestRepo::new();
    let p = series(
        &repo,
        &[
            &[("a.txt", Some("a\n"))],
            &[("a.txt", Some("a\nb\n")), ("run.sh", Some("#!/bin/sh\n"))],
        ],
    );
    let a = id_of(repo.enqueue_patch(&p[0], "K-1", "agent", &[], &[]));
    repo.ok(&["worker", "--drain"]);
    assert_eq!(record(&repo, &a)["status"], "applied");
    // A gate change (an executable file): it waits for a person, live, depending on `a`.
    let diff = std::fs::read_to_string(&p[1])
        .expect("read")
        .replace("new file mode 100644", "new file mode 100755");
    let exec = repo.home.path().join("exec.diff");
    std::fs::write(&exec, diff).expect("write");
    let b = id_of(repo.enqueue_patch(&exec, "K-2", "agent", &[], &[&a]));
    assert_eq!(record(&repo, &b)["status"], "awaiting_approval");
    repo.ok(&["gc", "--older-than", "0s"]);
    assert!(
        repo.hyperion_refs().contains(&a),
        "the predecessor of a live request is kept"
    );
    repo.git(&["config", "hyperion.approvers", "boss"]);
    repo.ok_as("boss", &["approve", &b]);
    repo.ok(&["worker", "--drain"]);
    assert_eq!(record(&repo, &b)["status"], "applied");
}

/// One more diff on top of `work` (for a request that names a dead predecessor).
fn series_after(repo: &TestRepo, _prev: &[PathBuf]) -> PathBuf {
    repo.git(&["checkout", "-q", "work"]);
    std::fs::write(repo.path().join("a.txt"), "a\nb\nc\nd\n").expect("write");
    repo.git(&["commit", "-q", "-am", "step 4"]);
    let diff = repo.git(&["diff", "--full-index", "work~1", "work"]);
    repo.git(&["checkout", "-q", "main"]);
    let file = repo.home.path().join("step4.diff");
    std::fs::write(&file, diff).expect("write");
    file
}

/// A request (format v1) of `diff`, as `enqueue --patch` would wrap it, with `edit` applied.
fn request(diff: &str, task: &str, edit: impl FnOnce(&mut ChangeRequest)) -> ChangeRequest {
    let mut req =
        hyperion::request::patch::wrap(diff, task, "agent", Some(task), &[]).expect("wraps");
    edit(&mut req);
    req
}

fn write_request(repo: &TestRepo, name: &str, req: &ChangeRequest) -> PathBuf {
    repo.write(name, &serde_json::to_value(req).expect("serialises"))
}

#[test]
fn cycles_unknown_names_other_branches_are_refused_and_nothing_is_stored() {
    let repo = TestRepo::new();
    repo.git(&["branch", "other"]);
    let p = series(
        &repo,
        &[&[("a.txt", Some("a\n"))], &[("b.txt", Some("b\n"))]],
    );
    let d0 = std::fs::read_to_string(&p[0]).expect("read");
    let d1 = std::fs::read_to_string(&p[1]).expect("read");
    let refs = repo.hyperion_refs();
    let refused = |args: &[&str], code: &str| {
        let mut a = args.to_vec();
        a.extend(["--format", "json"]);
        let (out, err) = repo.fails(&a, 1);
        assert!(err.contains(&format!("[{code}]")), "{err}");
        assert!(err.contains("hint:"), "{err}");
        let doc: Value = serde_json::from_str(&out).expect("an error document");
        assert!(
            doc["error"]["problems"]
                .as_array()
                .expect("problems")
                .iter()
                .any(|p| p["code"] == code
                    && p["field"].as_str().unwrap_or("").starts_with("/depends_on")),
            "{doc}"
        );
        assert_eq!(repo.hyperion_refs(), refs, "nothing is stored");
    };

    // Unknown: neither an id nor a task.
    let x = write_request(
        &repo,
        "x.json",
        &request(&d0, "X", |r| r.depends_on = vec!["NO-SUCH-TASK".into()]),
    );
    refused(
        &["enqueue", x.to_str().expect("utf-8")],
        "request.dependency_unknown",
    );
    let x = write_request(
        &repo,
        "x.json",
        &request(&d0, "X", |r| r.depends_on = vec!["0123456789abcdef".into()]),
    );
    refused(
        &["enqueue", x.to_str().expect("utf-8")],
        "request.dependency_unknown",
    );

    // A cycle of two, through id prefixes (ids are content hashes, so it takes a search):
    // X names Y's prefix, Y names X's.
    let y = request(&d1, "Y", |r| r.depends_on = vec!["aaaa".into()]);
    let py = y.id()[..4].to_owned();
    let mut n = 0u32;
    let x = loop {
        let x = request(&d0, "X", |r| {
            r.depends_on = vec![py.clone()];
            r.title = format!("X {n}");
        });
        if x.id().starts_with("aaaa") {
            break x;
        }
        n += 1;
    };
    let dir = repo.home.path().join("cycle");
    std::fs::create_dir_all(&dir).expect("mkdir");
    write_request(&repo, "cycle/1.json", &x);
    write_request(&repo, "cycle/2.json", &y);
    refused(
        &["enqueue", dir.to_str().expect("utf-8")],
        "request.dependency_cycle",
    );
    let (out, err) = repo.fails(&["validate", dir.to_str().expect("utf-8")], 1);
    assert!(
        format!("{out}{err}").contains("request.dependency_cycle"),
        "{out}{err}"
    );

    // Another branch: the predecessor lands on `other`.
    let on_other = request(&d0, "O", |r| r.target = Some("other".into()));
    let o = repo.enqueue(&write_request(&repo, "o.json", &on_other));
    let refs = repo.hyperion_refs();
    let dep = write_request(
        &repo,
        "dep.json",
        &request(&d1, "P", |r| r.depends_on = vec![o[0].clone()]),
    );
    let (_, err) = repo.fails(&["enqueue", dep.to_str().expect("utf-8")], 1);
    assert!(err.contains("request.dependency_target"), "{err}");
    assert_eq!(repo.hyperion_refs(), refs, "nothing is stored");
}

#[test]
fn a_dependency_opens_no_way_around_the_policy_or_the_paths() {
    let repo = TestRepo::new();
    std::fs::create_dir_all(repo.path().join(".hyperion")).expect("mkdir");
    std::fs::write(
        repo.path().join(".hyperion/policy.toml"),
        "[paths]\ndeny = [\"secret/**\"]\n",
    )
    .expect("write");
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "policy"]);
    // The predecessor loosens the policy; the dependent writes where the tip's policy denies.
    let p = series(
        &repo,
        &[
            &[(".hyperion/policy.toml", Some("[paths]\ndeny = []\n"))],
            &[("secret/key.txt", Some("mine\n"))],
        ],
    );
    repo.git(&["config", "hyperion.approvers", "boss"]);
    let a = id_of(repo.enqueue_patch(&p[0], "G-1", "agent", &[], &[]));
    assert_eq!(record(&repo, &a)["status"], "awaiting_approval");
    let out = repo.enqueue_patch(&p[1], "G-2", "agent", &[], &[&a]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("path.denied"), "{err}");

    // Its own file_targets still bind it, whatever the predecessor touches.
    let q = series_on(
        &repo,
        "more",
        &[
            &[("lib/x.txt", Some("x\n"))],
            &[("lib/x.txt", Some("y\n")), ("bin/run", Some("sh\n"))],
        ],
    );
    let b = id_of(repo.enqueue_patch(&q[0], "G-3", "agent", &[], &[]));
    let d = std::fs::read_to_string(&q[1]).expect("read");
    let narrow = request(&d, "G-4", |r| {
        r.depends_on = vec![b.clone()];
        r.file_targets = vec!["lib/**".into()];
    });
    let f = write_request(&repo, "narrow.json", &narrow);
    let (_, err) = repo.fails(&["enqueue", f.to_str().expect("utf-8")], 1);
    assert!(
        err.contains("request.file_targets") || err.contains("file_target"),
        "{err}"
    );
}

// --- the history of a real repository, enqueued at once as one stack ---

/// How many commits the history test replays: `HYPERION_STACK_COMMITS` (default 80 in CI; 300
/// and more on request), from `HYPERION_STACK_REPO` (default: this repository).
fn history_size() -> (PathBuf, usize) {
    let n = std::env::var("HYPERION_STACK_COMMITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(80);
    let src = std::env::var_os("HYPERION_STACK_REPO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    (src, n)
}

#[test]
fn a_history_of_consecutive_commits_enqueued_at_once_as_a_stack_drains_to_the_real_tree() {
    let (src, n) = history_size();
    let started = std::time::Instant::now();
    let commits = common::history::first_parent(&src, n, false).unwrap_or_default();
    if commits.len() < 2 {
        eprintln!(
            "skipped: {} has no history here (a shallow clone?)",
            src.display()
        );
        return;
    }
    let base = commits[0].clone();
    let newest = commits.last().expect("commits").clone();

    // Each commit a request on the one before (by task id); a commit the gate refuses by its
    // own rules (the secret scanner: one commit of this repository adds an AWS-looking test
    // key, a later one removes it) goes into the request of the next commit instead, so that
    // the stack still ends on the real tree.
    let policy = hyperion::request::policy::Policy::default();
    let source = gix::open(&src).expect("a repository");
    let hex = |h: &str| gix::ObjectId::from_hex(h.as_bytes()).expect("an id");
    let dir = tempfile::tempdir().expect("temp dir");
    let requests = dir.path().join("requests");
    std::fs::create_dir_all(&requests).expect("mkdir");
    let mut from = base.clone();
    let mut prev_task: Option<String> = None;
    let mut stored = 0;
    let mut folded = Vec::new();
    let mut empty = 0;
    for (i, c) in commits[1..].iter().enumerate() {
        let diff = common::history::diff(&src, &from, c);
        if diff.is_empty() {
            // A commit that changes no file (a tag, an empty commit): nothing to land.
            empty += 1;
            continue;
        }
        let task = format!("H-{i:04}");
        let Ok(mut req) = hyperion::request::patch::wrap(&diff, &task, "history", Some(&task), &[])
        else {
            folded.push(c.clone());
            continue;
        };
        // Judged as the gate judges it: against the tree it is applied onto.
        let onto = hyperion::git::tree::tree_of(&source, hex(&from)).expect("a tree");
        let problems =
            hyperion::request::validate::against_target(&source, &req, Some(onto), &policy);
        if !problems.is_empty() {
            folded.push(format!("{} ({})", &c[..10], problems[0].code));
            continue;
        }
        req.depends_on = prev_task.iter().cloned().collect();
        let path = requests.join(format!("{i:05}.json"));
        std::fs::write(&path, serde_json::to_vec(&req).expect("json")).expect("write");
        stored += 1;
        prev_task = Some(task);
        from = c.clone();
    }
    assert!(stored > 1, "nothing to replay");
    // Refused to the end: the stack ends on the last commit the gate takes.
    let last = from.clone();

    // A bare repository at the base, as on a server.
    let repo = TestRepo {
        dir: tempfile::tempdir().expect("temp dir"),
        home: tempfile::tempdir().expect("temp home"),
        bare: true,
    };
    repo.git(&["init", "-q", "--bare", "-b", "main"]);
    repo.git(&[
        "fetch",
        "-q",
        src.to_str().expect("utf-8"),
        &format!("{newest}:refs/heads/history"),
    ]);
    repo.git(&["update-ref", "refs/heads/main", &base]);
    repo.git(&["update-ref", "-d", "refs/heads/history"]);
    repo.ok(&["init", "--target", "main"]);
    repo.git(&["config", "hyperion.approvers", "replay"]);
    let prepared = started.elapsed();

    // All at once: one process, every request validated on top of the ones before it.
    let t = std::time::Instant::now();
    let ids = repo.enqueue(&requests);
    let enqueue = t.elapsed();
    assert_eq!(ids.len(), stored);
    // Changes to the gate (an executable file, the policy) wait for a person, as they would.
    let t = std::time::Instant::now();
    for id in repo.ids(&["list", "--status", "awaiting_approval"]) {
        repo.ok_as("replay", &["approve", &id]);
    }
    let approve = t.elapsed();
    let t = std::time::Instant::now();
    repo.ok(&["worker", "--drain"]);
    let drain = t.elapsed();

    let statuses = repo.statuses();
    let not_landed: Vec<_> = statuses.iter().filter(|(_, s)| s != "applied").collect();
    assert!(not_landed.is_empty(), "not landed: {not_landed:?}");
    assert_eq!(
        tree(&repo, "main"),
        common::hermetic::git(&src, &["rev-parse", &format!("{last}^{{tree}}")]).trim(),
        "main ends on the tree of the last commit"
    );
    eprintln!(
        "history: {} commits from {} as {stored} requests ({empty} empty, {} folded into the next: \
         {folded:?}); prepare {prepared:.1?}, enqueue {enqueue:.1?}, approve {approve:.1?}, \
         drain {drain:.1?}",
        commits.len() - 1,
        src.display(),
        folded.len()
    );
}
