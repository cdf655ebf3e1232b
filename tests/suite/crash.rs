//! Processes killed with SIGKILL at random points of their transitions: afterwards every
//! request is in a legal state, none is missing, and a sweep and drain finish the queue.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{TestRepo, request_dir};
use serde_json::Value;

/// A small deterministic generator, so a failure can be replayed from its seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn spawn(repo: &TestRepo, args: &[String]) -> Child {
    repo.cmd()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn")
}

/// Put every dead letter back. A ref still locked by a killed writer refuses (changing
/// nothing) until a sweep clears the lock, so a failure here is retried later.
fn requeue_dead(repo: &TestRepo, reason: &str) {
    let dead = repo.ids(&["dead"]);
    if dead.is_empty() {
        return;
    }
    let mut args = vec!["requeue"];
    args.extend(dead.iter().map(String::as_str));
    args.extend(["--reason", reason]);
    let _ = repo.run(&args);
}

fn check_invariants(repo: &TestRepo, expected: &[String], round: usize) {
    let doctor = repo.json(&["doctor"]);
    for f in doctor["findings"].as_array().unwrap() {
        let code = f["code"].as_str().unwrap();
        assert!(
            code == "lease.expired" || code == "store.stale_lock",
            "round {round}: {f}"
        );
    }
    let listed = repo.json(&["list"]);
    let mut ids: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    assert_eq!(
        ids, expected,
        "round {round}: a request is missing or extra"
    );
    for r in listed.as_array().unwrap() {
        match r["status"].as_str().unwrap() {
            "leased" => assert!(
                r["lease_owner"].is_string() && r["leased_until"].is_string(),
                "{r}"
            ),
            "pending" | "applied" | "dead" => assert!(r.get("lease_owner").is_none(), "{r}"),
            other => panic!("round {round}: unexpected status {other}"),
        }
    }
    // The same answers from the refs alone: the index is derived.
    let index = repo.git_dir().join("hyperion/index");
    let with_index = listed;
    std::fs::remove_dir_all(&index).unwrap();
    assert_eq!(
        repo.json(&["list"]),
        with_index,
        "round {round}: index and refs disagree"
    );
}

#[test]
fn sigkill_during_transitions_loses_nothing() {
    let repo = TestRepo::new();
    repo.git(&["config", "hyperion.maxAttempts", "1000"]);
    repo.git(&["config", "hyperion.retryBackoff", "0s"]);
    let d = request_dir(&repo, 40, "crash");
    let mut expected: Vec<String> = repo.enqueue(&d);
    expected.sort();
    let seed = std::env::var("HYPERION_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9e3779b97f4a7c15u64);
    let mut rng = Rng(seed);
    let start = Instant::now();
    let mut kills = 0;
    let mut round = 0;
    while round < 40 && start.elapsed() < Duration::from_secs(25) {
        round += 1;
        let leased: Vec<String> = repo
            .json(&["list", "--status", "leased"])
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{} {}",
                    r["id"].as_str().unwrap(),
                    r["lease_owner"].as_str().unwrap()
                )
            })
            .collect();
        let mut children = Vec::new();
        for k in 0..6 {
            let args: Vec<String> = match (k, rng.below(4)) {
                (0 | 1, _) => vec![
                    "dequeue".into(),
                    "--worker".into(),
                    format!("w{k}"),
                    "--batch".into(),
                    "8".into(),
                    "--lease".into(),
                    "1s".into(),
                ],
                (2, _) => vec!["sweep".into()],
                (_, choice) if !leased.is_empty() => {
                    let pick = &leased[rng.below(leased.len() as u64) as usize];
                    let (id, owner) = pick.split_once(' ').unwrap();
                    match choice {
                        0 => vec!["release".into(), id.into(), "--worker".into(), owner.into()],
                        1 => vec![
                            "heartbeat".into(),
                            id.into(),
                            "--worker".into(),
                            owner.into(),
                        ],
                        2 => vec![
                            "complete".into(),
                            id.into(),
                            "--worker".into(),
                            owner.into(),
                            "--failed".into(),
                            "check.timeout".into(),
                            "--class".into(),
                            "check".into(),
                            "--transient".into(),
                        ],
                        _ => vec![
                            "complete".into(),
                            id.into(),
                            "--worker".into(),
                            owner.into(),
                            "--failed".into(),
                            "apply.conflict".into(),
                            "--class".into(),
                            "apply".into(),
                        ],
                    }
                }
                _ => vec!["enqueue".into(), d.to_str().unwrap().into()],
            };
            children.push(spawn(&repo, &args));
        }
        std::thread::sleep(Duration::from_micros(rng.below(25_000)));
        for mut c in children {
            if c.try_wait().unwrap().is_none() {
                c.kill().unwrap(); // SIGKILL
                kills += 1;
            }
            c.wait().unwrap();
        }
        check_invariants(&repo, &expected, round);
        // Requeue dead letters now and then, so the queue keeps moving.
        if rng.below(3) == 0 {
            requeue_dead(&repo, "crash test");
        }
    }
    assert!(kills > 0, "no process was killed mid-flight");
    eprintln!("{round} rounds, {kills} processes killed");

    // Recovery: expired leases and stale locks are swept, then everything drains.
    std::thread::sleep(Duration::from_millis(1100));
    requeue_dead(&repo, "drain");
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        repo.ok(&["sweep"]);
        let leased = repo.json(&[
            "dequeue", "--worker", "drain", "--batch", "50", "--lease", "2s",
        ]);
        for r in leased.as_array().unwrap() {
            let id = r["id"].as_str().unwrap();
            let landed = repo.landing(id);
            // A ref still locked by a killed writer refuses until sweep clears the lock.
            let _ = repo.run(&["complete", id, "--worker", "drain", "--landed", &landed]);
        }
        let all = repo.json(&["list"]);
        requeue_dead(&repo, "drain");
        if all
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "applied")
        {
            break;
        }
        assert!(Instant::now() < deadline, "the queue did not drain: {all}");
        std::thread::sleep(Duration::from_millis(300));
    }
    check_invariants(&repo, &expected, round + 1);
    let value: Value = repo.json(&["list", "--status", "applied"]);
    assert_eq!(value.as_array().unwrap().len(), expected.len());
}
