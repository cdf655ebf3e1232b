#![allow(clippy::unwrap_used)]
//! Workers killed with SIGKILL at random instants, then sweep and drain: no request lost, none
//! landed twice, and the branch ends on the tree an uninterrupted run ends on.

use crate::common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::TestRepo;

const REQUESTS: usize = 48;

/// A shared file of many lines; each request edits one line far from the others, so every
/// order of landing merges cleanly and ends on the same tree.
fn shared_file() -> String {
    (0..REQUESTS * 6 + 6)
        .map(|i| format!("line {i}\n"))
        .collect()
}

fn make_repo() -> TestRepo {
    let repo = TestRepo::new();
    std::fs::write(repo.path().join("shared.txt"), shared_file()).unwrap();
    repo.git(&["add", "shared.txt"]);
    repo.git(&["commit", "-q", "-m", "shared"]);
    // Killed workers leave leases behind: let them expire fast, and never turn a request
    // into a dead letter for it.
    repo.git(&["config", "hyperion.maxAttempts", "1000"]);
    repo.git(&["config", "hyperion.retryBackoff", "1ms"]);
    let dir = repo.home.path().join("patches");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..REQUESTS {
        let patch = if i % 2 == 0 {
            // A new file.
            format!("--- /dev/null\n+++ b/files/f{i}.txt\n@@ -0,0 +1 @@\n+request {i}\n")
        } else {
            // One line of the shared file, written against the original.
            let n = i * 6 + 3;
            let before: String = (n - 3..n).map(|l| format!(" line {l}\n")).collect();
            let after: String = (n + 1..n + 4).map(|l| format!(" line {l}\n")).collect();
            format!(
                "--- a/shared.txt\n+++ b/shared.txt\n@@ -{},7 +{},7 @@\n{before}-line {n}\n+line {n} edited by {i}\n{after}",
                n - 2,
                n - 2
            )
        };
        let p = dir.join(format!("{i}.diff"));
        std::fs::write(&p, patch).unwrap();
        repo.ok(&[
            "enqueue",
            "--patch",
            p.to_str().unwrap(),
            "--task",
            &format!("T-{i}"),
            "--agent",
            "crash-test",
        ]);
    }
    repo
}

/// A worker leasing `batch` requests at a time (landing each batch as one chain).
fn spawn_worker(repo: &TestRepo, batch: usize) -> Child {
    repo.cmd()
        .args(["worker", "--drain", "--lease", "1s", "--format", "json"])
        .args(["--batch-size", &batch.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn killed_workers_lose_nothing_and_land_nothing_twice() {
    // The uninterrupted run.
    let calm = make_repo();
    calm.ok(&["worker", "--drain"]);
    let calm_tree = calm.git(&["rev-parse", "main^{tree}"]);
    assert!(
        calm.statuses().iter().all(|(_, s)| s == "applied"),
        "{}",
        calm.ok(&["list", "--format", "json"])
    );

    let repo = make_repo();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let started = Instant::now();
    let mut kills = 0;
    for _round in 0..12 {
        let mut workers: Vec<Child> = (0..3)
            .map(|_| spawn_worker(&repo, [1, 2, 4][rand(3) as usize]))
            .collect();
        for w in &mut workers {
            std::thread::sleep(Duration::from_millis(rand(120)));
            let _ = w.kill(); // SIGKILL
            let _ = w.wait();
            kills += 1;
        }
        // Let the leases of the killed workers expire, then return them.
        std::thread::sleep(Duration::from_millis(1100));
        repo.ok(&["sweep"]);
        if repo.statuses().iter().all(|(_, s)| s == "applied") {
            break;
        }
    }
    assert!(kills >= 9, "only {kills} workers were killed");
    // Finish calmly: requests retried after a kill wait out their (jittered, exponential)
    // backoff, so sweep and drain until everything is in.
    let calm_until = Instant::now() + Duration::from_secs(150);
    loop {
        std::thread::sleep(Duration::from_millis(1100));
        repo.ok(&["sweep"]);
        repo.ok(&["worker", "--drain"]);
        if repo.statuses().iter().all(|(_, s)| s == "applied") || Instant::now() > calm_until {
            break;
        }
    }

    let st = repo.statuses();
    assert_eq!(st.len(), REQUESTS, "no request lost");
    for (id, s) in &st {
        assert_eq!(
            s,
            "applied",
            "{id} ended {s}: {}",
            repo.json(&["show", id])["record"]
        );
    }
    // Each request landed exactly once.
    let mut landed = repo.landed_trailers();
    landed.sort();
    let before = landed.len();
    landed.dedup();
    assert_eq!(before, landed.len(), "a request landed twice");
    assert_eq!(landed.len(), REQUESTS);
    // Each record names the commit that carries its trailer.
    for (id, _) in &st {
        let rec = repo.json(&["show", id]);
        let commit = rec["record"]["landed_commit"].as_str().unwrap().to_owned();
        let body = repo.git(&["log", "-1", "--format=%B", &commit]);
        assert!(
            body.contains(&format!("Hyperion-Request: {id}")),
            "{id}: {body}"
        );
    }
    assert_eq!(repo.git(&["rev-parse", "main^{tree}"]), calm_tree);
    assert_eq!(
        repo.git(&["status", "--porcelain"]),
        "",
        "the checkout followed"
    );
    eprintln!("{kills} workers killed in {:?}", started.elapsed());
}

/// The narrowest window: a worker moved the branch and died before recording it. The next
/// worker must find the landed commit and record it, not land the request again.
#[test]
fn a_landing_that_was_never_recorded_is_found_not_repeated() {
    let repo = TestRepo::new();
    repo.git(&["config", "hyperion.retryBackoff", "1ms"]);
    let patch = "--- a/README.md\n+++ b/README.md\n@@ -1 +1,2 @@\n hello\n+landed once\n";
    let p = repo.home.path().join("p.diff");
    std::fs::write(&p, patch).unwrap();
    let id = repo
        .ok(&[
            "enqueue",
            "--patch",
            p.to_str().unwrap(),
            "--task",
            "T-1",
            "--agent",
            "a",
        ])
        .trim()
        .to_owned();
    repo.ok(&["dequeue", "--worker", "doomed", "--lease", "1s"]);
    // What the doomed worker did before it died: the commit with the trailer, on main.
    std::fs::write(repo.path().join("README.md"), "hello\nlanded once\n").unwrap();
    repo.git(&[
        "commit",
        "-q",
        "-am",
        &format!("landed\n\nHyperion-Request: {id}\n"),
    ]);
    let landed = repo.git(&["rev-parse", "HEAD"]).trim().to_owned();
    std::thread::sleep(Duration::from_millis(1100));
    repo.ok(&["sweep"]);
    let out = repo.ok(&["worker", "--drain", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(report["result"], "recovered", "{report}");
    assert_eq!(report["commit"], landed.as_str());
    assert_eq!(
        repo.git(&["rev-parse", "main"]).trim(),
        landed,
        "not landed again"
    );
    let rec = repo.json(&["show", &id]);
    assert_eq!(rec["record"]["status"], "applied");
    assert_eq!(rec["record"]["landed_commit"], landed.as_str());
    // The note the dead worker never wrote was added.
    let note = repo.git(&["notes", "--ref", "hyperion", "show", &landed]);
    assert!(note.contains(&format!("request: {id}")), "{note}");
}
