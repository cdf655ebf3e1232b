#![allow(clippy::unwrap_used)]
//! Batched checks (`worker --check-batch N`, `hyperion.checkBatch`): a batch's checks run
//! once on its combined tree and a failing batch is bisected. Real repositories, the real
//! binary, a real check that looks at the tree it runs on: it writes the tree id it saw and
//! its verdict to a log outside the repository, and fails when the tree holds a file named
//! `fail-*`. From that log: how many check runs, on which trees; from the target's reflog:
//! every tree the branch pointed at after a landing passed the checks on exactly that tree.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::TestRepo;
use common::check_runs as runs;
use serde_json::{Value, json};

/// A repository whose policy requires the check `gate`: log `TREE pass|fail` to `log`, fail
/// when the tree has a `src/fail-*` file, else sleep `sleep` seconds and pass.
fn setup(sleep: &str) -> (TestRepo, PathBuf) {
    setup_with_timeout(sleep, "10m")
}

/// [`setup`], with the check's `timeout`; a tree with a `src/slow-*` file makes the check
/// sleep 60 s first.
fn setup_with_timeout(sleep: &str, timeout: &str) -> (TestRepo, PathBuf) {
    let repo = TestRepo::new();
    let log = repo.home.path().join("checks.log");
    let script = "t=$(git write-tree) || exit 9; touch \"$CHECK_LOG.started\"; \
                  if ls src/slow-* >/dev/null 2>&1; then echo \"$t slow\" >> \"$CHECK_LOG\"; sleep 60; fi; \
                  if ls src/fail-* >/dev/null 2>&1; then echo \"$t fail\" >> \"$CHECK_LOG\"; \
                  echo \"a fail-* file is in the tree\" >&2; exit 1; fi; \
                  sleep \"$CHECK_SLEEP\"; echo \"$t pass\" >> \"$CHECK_LOG\"";
    let policy = format!(
        "[checks]\nrequired = [\"gate\"]\n\n[checks.gate]\nrun = [\"sh\", \"-c\", {script:?}]\n\
         env = {{ CHECK_LOG = {log:?}, CHECK_SLEEP = {sleep:?} }}\ntimeout = {timeout:?}\n",
        log = log.to_str().unwrap(),
    );
    repo.commit(&[(".hyperion/policy.toml", &policy)], "policy");
    repo.git(&["config", "hyperion.maxAttempts", "1"]);
    (repo, log)
}

/// The file request `i` adds: `src/fail-I.txt` for a culprit, `src/slow-I.txt` when
/// `culprits` holds 1000 + i, else `src/ok-I.txt`.
fn file_of(i: usize, culprits: &[usize]) -> String {
    if culprits.contains(&(i + 1000)) {
        format!("src/slow-{i}.txt")
    } else if culprits.contains(&i) {
        format!("src/fail-{i}.txt")
    } else {
        format!("src/ok-{i}.txt")
    }
}

/// Enqueue `n` requests (task `T-I`), each adding one file; their ids in queue order.
fn enqueue(repo: &TestRepo, n: usize, culprits: &[usize]) -> Vec<String> {
    let dir = repo.home.path().join("requests");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..n {
        let path = file_of(i, culprits);
        let patch = format!("--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+request {i}\n");
        let req = json!({
            "schema": "hyperion.change-request/v1",
            "task_id": format!("T-{i}"),
            "agent": "test-agent",
            "title": format!("request {i}"),
            "file_targets": ["src/**"],
            "changes": [{"path": path, "operation": "add", "patch": patch,
                         "sha256": common::sha256(&patch)}]
        });
        std::fs::write(
            dir.join(format!("{i:03}.json")),
            serde_json::to_vec(&req).unwrap(),
        )
        .unwrap();
    }
    let ids = repo.enqueue(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(ids.len(), n);
    ids
}

fn worker(repo: &TestRepo, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["worker", "--format", "json"];
    all.extend_from_slice(args);
    repo.ok(&all)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The trees `main` pointed at after each of hyperion's landings (its reflog).
fn landed_trees(repo: &TestRepo) -> Vec<String> {
    repo.git(&["reflog", "show", "--format=%H %gs", "main"])
        .lines()
        .filter(|l| l.contains(" hyperion: land"))
        .map(|l| {
            let commit = l.split(' ').next().unwrap();
            repo.git(&["rev-parse", &format!("{commit}^{{tree}}")])
                .trim()
                .to_owned()
        })
        .collect()
}

/// Every tree the target pointed at after a landing passed the check on exactly that tree.
fn assert_every_landing_checked(repo: &TestRepo, log: &Path) {
    let passed: BTreeSet<String> = runs(log)
        .into_iter()
        .filter(|(_, ok)| *ok)
        .map(|(t, _)| t)
        .collect();
    for tree in landed_trees(repo) {
        assert!(
            passed.contains(&tree),
            "main pointed at tree {tree}, which no check passed: {passed:?}"
        );
    }
}

/// The files under `src/` on `main`.
fn files_on_main(repo: &TestRepo) -> BTreeSet<String> {
    repo.git(&["ls-tree", "-r", "--name-only", "main", "--", "src"])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A batch of 8 with culprits at `culprits`: which land, which die, how many check runs, how
/// many landings.
fn bisect_case(culprits: &[usize], runs_expected: usize, landings_expected: usize) {
    bisect_case_with(1, culprits, runs_expected, landings_expected)
}

/// [`bisect_case`] with `jobs` trees checked at once (`--check-jobs`).
fn bisect_case_with(
    jobs: usize,
    culprits: &[usize],
    runs_expected: usize,
    landings_expected: usize,
) {
    let (repo, log) = setup("0");
    let ids = enqueue(&repo, 8, culprits);
    let jobs = jobs.to_string();
    let reports = worker(
        &repo,
        &[
            "--once",
            "--batch-size",
            "8",
            "--check-batch",
            "8",
            "--check-jobs",
            &jobs,
        ],
    );
    assert_eq!(reports.len(), 8, "{reports:?}");
    for (i, id) in ids.iter().enumerate() {
        let r = reports.iter().find(|r| r["id"] == *id).unwrap();
        if culprits.contains(&i) {
            assert_eq!(
                (
                    r["result"].as_str(),
                    r["class"].as_str(),
                    r["code"].as_str()
                ),
                (Some("dead"), Some("check"), Some("check.failed")),
                "culprit {i}: {r}"
            );
            let message = r["message"].as_str().unwrap();
            assert!(message.contains("bisected"), "{message}");
            // Its check's output is stored with it, as for a check failing on its own.
            let err = repo.git(&[
                "show",
                &format!("refs/hyperion/requests/{id}:artifacts/checks/gate.stderr"),
            ]);
            assert_eq!(err, "a fail-* file is in the tree\n");
        } else {
            assert_eq!(r["result"], "landed", "request {i}: {r}");
            let check = &r["checks"][0];
            assert_eq!(check["status"], "passed", "{r}");
            // The note says honestly what was checked: a tree holding this commit.
            let note = repo.git(&[
                "notes",
                "--ref",
                "hyperion",
                "show",
                r["commit"].as_str().unwrap(),
            ]);
            let line = format!(
                "checked: as part of a batch of {} at tree {}",
                check["batch"],
                check["tree"].as_str().unwrap()
            );
            assert!(note.contains(&line), "{note}\nwants {line}");
        }
    }
    let all = runs(&log);
    assert_eq!(
        all.len(),
        runs_expected,
        "check runs for culprits {culprits:?}: {all:?}"
    );
    assert_eq!(
        landed_trees(&repo).len(),
        landings_expected,
        "landings for culprits {culprits:?}"
    );
    assert_every_landing_checked(&repo, &log);
    let expected: BTreeSet<String> = (0..8)
        .filter(|i| !culprits.contains(i))
        .map(|i| file_of(i, culprits))
        .collect();
    assert_eq!(files_on_main(&repo), expected);
    // Landed in queue order.
    let tasks = repo.git(&[
        "log",
        "--format=%(trailers:key=Hyperion-Task,valueonly)",
        "main",
    ]);
    let tasks: Vec<&str> = tasks.lines().filter(|l| !l.is_empty()).collect();
    let wanted: Vec<String> = (0..8)
        .rev()
        .filter(|i| !culprits.contains(i))
        .map(|i| format!("T-{i}"))
        .collect();
    assert_eq!(tasks, wanted);
}

/// No culprit: one check run on the combined tree, one landing of all 8.
#[test]
fn a_passing_batch_is_checked_once_and_lands_whole() {
    bisect_case(&[], 1, 1);
}

/// Culprit 3: the batch fails (1); the first half fails (2); the first two pass (3); the
/// first three pass (4): they land, 3 dies, 4–7 are built again on the new tip and pass (5).
#[test]
fn one_culprit_is_found_by_bisection_and_the_others_land() {
    bisect_case(&[3], 5, 2);
}

/// Culprits 0 and 7: fail (1), halves down to request 0 alone (2, 3, 4); 1–7 again (5), the
/// first three (6), five (7), six (8) pass: they land, 7 dies.
#[test]
fn culprits_at_both_ends_are_both_found() {
    bisect_case(&[0, 7], 8, 1);
}

/// Every request fails: each one is found alone at the front, nothing lands. 4 + 3 + 3 + 3 +
/// 3 + 2 + 2 + 1 runs: bisection costs more than checking each one when most fail.
#[test]
fn a_batch_of_culprits_all_die_and_nothing_lands() {
    bisect_case(&[0, 1, 2, 3, 4, 5, 6, 7], 21, 0);
}

/// Eight trees at once: the first round checks every prefix of the batch (speculatively),
/// which finds the first culprit; the requests after it are checked again, every prefix of
/// them at once. More runs, fewer rounds: {none} 8 runs in 1 round, {3} 8 + 4 in 2, {0, 7}
/// 8 + 7 in 2, all 8 + 7 + … + 1 = 36 in 8.
#[test]
fn eight_jobs_check_every_prefix_at_once() {
    bisect_case_with(8, &[], 8, 1);
    bisect_case_with(8, &[3], 12, 2);
    bisect_case_with(8, &[0, 7], 15, 1);
    bisect_case_with(8, &[0, 1, 2, 3, 4, 5, 6, 7], 36, 0);
}

/// Three jobs, culprit 3: prefixes 2, 5 and 8 (2 passes), then 3 and 4 (3 passes): 0–2 land,
/// 3 dies; then 4–7 with their prefixes 1, 2 and 4 pass at once: 3 + 2 + 3 runs.
#[test]
fn three_jobs_split_the_part_in_doubt_in_four() {
    bisect_case_with(3, &[3], 8, 2);
}

/// The same queue through the serial worker (each request checked on its own) and the
/// batched one: the same requests land, the same die, the final tree is the same, and every
/// tree `main` pointed at passed the check on exactly that tree, in both.
#[test]
fn batched_checks_land_what_serial_checks_land() {
    let culprits = [3, 9, 10, 17, 22];
    let mut finals = Vec::new();
    for batched in [false, true] {
        let (repo, log) = setup("0.05");
        if batched {
            repo.git(&["config", "hyperion.checkBatch", "8"]);
        }
        let ids = enqueue(&repo, 24, &culprits);
        let reports = worker(&repo, &["--drain", "--batch-size", "8"]);
        assert_eq!(reports.len(), 24);
        for (i, id) in ids.iter().enumerate() {
            let r = reports.iter().find(|r| r["id"] == *id).unwrap();
            let want = if culprits.contains(&i) {
                "dead"
            } else {
                "landed"
            };
            assert_eq!(r["result"], want, "batched {batched}, request {i}: {r}");
            if r["result"] == "landed" {
                assert_eq!(r["checks"][0]["batch"].is_u64(), batched, "{r}");
            }
        }
        assert_every_landing_checked(&repo, &log);
        if !batched {
            assert_eq!(runs(&log).len(), 24, "serial: one run per request");
        } else {
            assert!(runs(&log).len() < 24, "{:?}", runs(&log));
        }
        // The policy names each repository's own log: compare what the requests changed.
        finals.push(repo.git(&["rev-parse", "main:src"]));
    }
    assert_eq!(finals[0], finals[1], "the same final tree");
}

/// A batch's checks outlast the lease (1s) while another process sweeps expired leases every
/// 100 ms: every lease of the batch is renewed during the checks, and nothing is lost.
fn leases_case(jobs: &str, sleep: &str, runs_expected: usize) {
    let (repo, log) = setup(sleep);
    let ids = enqueue(&repo, 8, &[3]);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sweeper = {
        let done = done.clone();
        let mut cmd = repo.cmd();
        cmd.arg("sweep");
        std::thread::spawn(move || {
            let mut sweeps = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let out = cmd.output().unwrap();
                assert!(out.status.success(), "{out:?}");
                sweeps += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            sweeps
        })
    };
    let reports = worker(
        &repo,
        &[
            "--once",
            "--batch-size",
            "8",
            "--check-batch",
            "8",
            "--check-jobs",
            jobs,
            "--lease",
            "1s",
        ],
    );
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(sweeper.join().unwrap() > 5, "the sweeper ran meanwhile");
    assert_eq!(runs(&log).len(), runs_expected);
    for (i, id) in ids.iter().enumerate() {
        let r = reports.iter().find(|r| r["id"] == *id).unwrap();
        let want = if i == 3 { "dead" } else { "landed" };
        assert_eq!(r["result"], want, "request {i}: {r}");
    }
    assert_every_landing_checked(&repo, &log);
}

/// One at a time: 4 runs of 0.4 s before the first landing, past the lease.
#[test]
fn leases_of_the_whole_batch_are_kept_through_long_batch_checks() {
    leases_case("1", "0.4", 5);
}

/// Eight at a time: two rounds of 0.7 s, past the lease.
#[test]
fn leases_are_kept_while_several_trees_are_checked_at_once() {
    leases_case("8", "0.7", 12);
}

/// `--dry-run` with batched checks still reports each request on its own (checked on its own
/// commit on the tip) and changes nothing.
#[test]
fn dry_run_with_batched_checks_checks_each_request_and_changes_nothing() {
    let (repo, log) = setup("0");
    enqueue(&repo, 4, &[1]);
    let before = repo.hyperion_refs();
    let main = repo.git(&["rev-parse", "main"]);
    let reports = worker(&repo, &["--dry-run", "--check-batch", "8"]);
    let results: Vec<&str> = reports
        .iter()
        .map(|r| r["result"].as_str().unwrap())
        .collect();
    assert_eq!(
        results,
        ["would_land", "would_fail", "would_land", "would_land"]
    );
    assert_eq!(runs(&log).len(), 4);
    assert_eq!(repo.hyperion_refs(), before);
    assert_eq!(repo.git(&["rev-parse", "main"]), main);
}

#[test]
fn a_check_batch_below_one_is_refused() {
    let (repo, _) = setup("0");
    repo.git(&["config", "hyperion.checkBatch", "0"]);
    let (_, err) = repo.fails(&["worker", "--once"], 2);
    assert!(
        err.contains("config.invalid") && err.contains("checkBatch"),
        "{err}"
    );
    repo.git(&["config", "hyperion.checkBatch", "8"]);
    repo.fails(&["worker", "--once", "--check-batch", "0"], 2);
}

/// A timeout is a failure like any other for the bisection: the request it ends on gets
/// `check.timeout`, which is transient: back to the queue with backoff while attempts are
/// left, as when it is checked alone. Culprit 2 of 4 (its file makes the check hang): the
/// batch times out (1), the first two pass (2), the first three time out (3): 0 and 1 land,
/// 2 is retried, 3 is built again and passes (4).
#[test]
fn a_timeout_is_bisected_and_retried_later() {
    let (repo, log) = setup_with_timeout("0", "1s");
    repo.git(&["config", "hyperion.maxAttempts", "2"]);
    let ids = enqueue(&repo, 4, &[1002]);
    let reports = worker(
        &repo,
        &["--once", "--batch-size", "4", "--check-batch", "4"],
    );
    let by_id = |id: &str| reports.iter().find(|r| r["id"] == id).unwrap().clone();
    for i in [0, 1, 3] {
        assert_eq!(by_id(&ids[i])["result"], "landed", "{reports:?}");
    }
    let r = by_id(&ids[2]);
    assert_eq!(
        (
            r["result"].as_str(),
            r["code"].as_str(),
            r["status"].as_str()
        ),
        (Some("retry"), Some("check.timeout"), Some("pending")),
        "{r}"
    );
    let all = runs(&log);
    let slow = all.iter().filter(|(_, ok)| !ok).count();
    assert_eq!((all.len(), slow), (4, 2), "{all:?}");
    assert_every_landing_checked(&repo, &log);
}

/// A second SIGTERM while a batch's checks run cancels them and gives every request of the
/// batch back, untouched: nothing lands, nothing is counted as an attempt.
#[test]
fn a_second_signal_during_batch_checks_gives_the_whole_batch_back() {
    let (repo, log) = setup("30");
    let ids = enqueue(&repo, 4, &[]);
    let main = repo.git(&["rev-parse", "main"]);
    let child = repo
        .cmd()
        .args([
            "worker",
            "--once",
            "--batch-size",
            "4",
            "--check-batch",
            "4",
            "--format",
            "json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = log.with_extension("log.started");
    let t = std::time::Instant::now();
    while !started.exists() {
        assert!(t.elapsed().as_secs() < 60, "the check never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    common::signal(child.id(), "TERM");
    std::thread::sleep(std::time::Duration::from_millis(300));
    common::signal(child.id(), "TERM");
    let out = child.wait_with_output().unwrap();
    assert!(t.elapsed().as_secs() < 20, "the check was not cancelled");
    assert!(out.status.success(), "{out:?}");
    let reports: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reports.len(), 4, "{reports:?}");
    for r in &reports {
        assert_eq!(r["result"], "released", "{r}");
    }
    for id in &ids {
        let record = repo.json(&["show", id]);
        assert_eq!(record["record"]["status"], "pending");
        assert_eq!(record["record"]["attempts"], 0);
    }
    assert_eq!(repo.git(&["rev-parse", "main"]), main);
    assert!(runs(&log).is_empty());
}

/// A stacked request whose predecessor is the batch's culprit does not land on top of it:
/// the bisection kills the predecessor, and the dependent, built again after it, is given
/// back (the queue then has it die with its predecessor); the independent request lands.
#[test]
fn a_dependent_of_a_culprit_does_not_land() {
    let (repo, log) = setup("0");
    let dir = repo.home.path().join("stack");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, path, depends) in [
        (0, "src/fail-0.txt", None),
        (1, "src/ok-1.txt", Some("T-0")),
        (2, "src/ok-2.txt", None),
    ] {
        let patch = format!("--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+request {i}\n");
        let mut req = json!({
            "schema": "hyperion.change-request/v1",
            "task_id": format!("T-{i}"),
            "agent": "test-agent",
            "title": format!("request {i}"),
            "file_targets": ["src/**"],
            "changes": [{"path": path, "operation": "add", "patch": patch,
                         "sha256": common::sha256(&patch)}]
        });
        if let Some(d) = depends {
            req["depends_on"] = json!([d]);
        }
        std::fs::write(
            dir.join(format!("{i:03}.json")),
            serde_json::to_vec(&req).unwrap(),
        )
        .unwrap();
    }
    let ids = repo.enqueue(&dir);
    let reports = worker(
        &repo,
        &["--once", "--batch-size", "8", "--check-batch", "8"],
    );
    let result = |id: &str| {
        reports.iter().find(|r| r["id"] == id).unwrap()["result"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        (result(&ids[0]), result(&ids[1]), result(&ids[2])),
        ("dead".into(), "released".into(), "landed".into()),
        "{reports:?}"
    );
    assert_eq!(
        files_on_main(&repo),
        BTreeSet::from(["src/ok-2.txt".to_owned()])
    );
    assert_every_landing_checked(&repo, &log);
}
