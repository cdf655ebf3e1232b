//! Throughput with slow checks: the worker checking each request on its own against batched
//! checks with bisection (`worker --check-batch N`), in the same run, on the same queue.
//!
//! `cargo bench --bench checks` enqueues 80 requests, each adding one file, into a repository
//! whose policy requires one check that sleeps 2 s and then fails when the tree it runs on
//! holds a file named `src/fail-*`: one request of every ten adds such a file (which one of
//! the ten is fixed, so every run fails the same requests). Each mode drains its own copy of
//! the queue with one in-process worker leasing 8 at a time, and prints landed requests per
//! minute, check runs and the speed-up over serial checks. The bench asserts that each mode
//! landed the same requests, that the final trees are identical, and that every tree `main`
//! pointed at after a landing passed the check on exactly that tree (the check logs the tree
//! it ran on, outside the repository).
//!
//! Options: `-- [N] [--sleep SECS] [--modes 1,8,8x8]` (requests, the check's sleep, the
//! modes to compare: `B` is `--check-batch B`, `BxJ` adds `--check-jobs J`; the first mode is
//! the baseline).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::git;
use hyperion::gate::worker::{Disposition, Mode, Options, Stop, Worker};
use hyperion::queue::Queue;
use hyperion::queue::store::Store;
use hyperion::request::model::ChangeRequest;

/// Request `i` fails the check: one of every ten, at a place in its ten that varies.
fn culprit(i: usize) -> bool {
    let decade = i / 10;
    i % 10 == (decade * 7 + 3) % 10
}

fn request(i: usize) -> ChangeRequest {
    let path = if culprit(i) {
        format!("src/fail-{i:03}.txt")
    } else {
        format!("src/ok-{i:03}.txt")
    };
    common::adding(
        path,
        &format!("request {i}"),
        format!("T-{i:03}"),
        format!("request {i}"),
        5,
    )
}

/// A repository whose policy requires `gate`: it logs the tree it runs on to `log`, sleeps
/// `sleep` seconds, and fails when the tree holds `src/fail-*`.
fn repository(dir: &Path, log: &Path, sleep: &str) {
    std::fs::create_dir_all(dir.join(".hyperion")).expect("mkdir");
    git(dir, &["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("README"), "bench\n").expect("write");
    let script = "t=$(git write-tree) || exit 9; sleep \"$CHECK_SLEEP\"; \
                  if ls src/fail-* >/dev/null 2>&1; then echo \"$t fail\" >> \"$CHECK_LOG\"; \
                  echo \"a fail-* file is in the tree\" >&2; exit 1; fi; \
                  echo \"$t pass\" >> \"$CHECK_LOG\"";
    std::fs::write(
        dir.join(".hyperion/policy.toml"),
        format!(
            "[checks]\nrequired = [\"gate\"]\n\n[checks.gate]\nrun = [\"sh\", \"-c\", {script:?}]\n\
             env = {{ CHECK_LOG = {log:?}, CHECK_SLEEP = {sleep:?} }}\n",
            log = log.to_str().expect("utf-8"),
        ),
    )
    .expect("write");
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "base"]);
    git(dir, &["config", "hyperion.maxAttempts", "1"]);
}

struct Run {
    mode: String,
    took: Duration,
    landed: BTreeSet<String>,
    dead: BTreeSet<String>,
    check_runs: usize,
    landings: usize,
    src_tree: String,
}

/// `mode`: `B` (`--check-batch B`) or `BxJ` (and `--check-jobs J`).
fn run(root: &Path, n: usize, sleep: &str, mode: &str) -> Run {
    let (check_batch, jobs) = match mode.split_once('x') {
        Some((b, j)) => (b.parse().expect("a number"), j.parse().expect("a number")),
        None => (mode.parse().expect("a number"), 1),
    };
    let dir = root.join(format!("mode-{mode}"));
    let log = root.join(format!("mode-{mode}.log"));
    repository(&dir, &log, sleep);
    let queue = Queue::open(Store::discover(&dir).expect("repo")).expect("queue");
    let reqs: Vec<ChangeRequest> = (0..n).map(request).collect();
    queue.enqueue(&reqs, "bench").expect("enqueue");
    let worker = Worker::new(&queue, format!("bench-{mode}"), None)
        .with_check_batch(check_batch)
        .with_check_jobs(jobs);
    let start = Instant::now();
    let reports = worker
        .run(
            &Options {
                batch: 8,
                mode: Mode::Drain,
                poll: Duration::from_millis(50),
            },
            &Stop::default(),
            &mut |_| {},
            &mut |_| {},
        )
        .expect("worker runs");
    let took = start.elapsed();
    let of = |d: Disposition| -> BTreeSet<String> {
        reports
            .iter()
            .filter(|r| r.result == d)
            .map(|r| r.task_id.clone())
            .collect()
    };
    let (landed, dead) = (of(Disposition::Landed), of(Disposition::Dead));
    assert_eq!(landed.len() + dead.len(), n, "every request decided");
    let runs = std::fs::read_to_string(&log).expect("the check's log");
    let passed: BTreeSet<&str> = runs
        .lines()
        .filter_map(|l| l.strip_suffix(" pass"))
        .collect();
    // Every tree main pointed at after a landing passed the check on exactly that tree.
    let reflog = git(&dir, &["reflog", "show", "--format=%H %gs", "main"]);
    let mut landings = 0;
    for line in reflog.lines().filter(|l| l.contains(" hyperion: land")) {
        let commit = line.split(' ').next().expect("a commit");
        let tree = common::tree_of(&dir, commit);
        assert!(
            passed.contains(tree.as_str()),
            "main pointed at tree {tree}, which no check passed"
        );
        landings += 1;
    }
    Run {
        mode: mode.to_owned(),
        took,
        landed,
        dead,
        check_runs: runs.lines().count(),
        landings,
        src_tree: git(&dir, &["rev-parse", "main:src"]).trim().to_owned(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
    };
    let n = args
        .iter()
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(80);
    let sleep = value("--sleep").cloned().unwrap_or_else(|| "2".into());
    let modes: Vec<String> = value("--modes")
        .map(|m| m.split(',').map(str::to_owned).collect())
        .unwrap_or_else(|| vec!["1".into(), "8".into(), "8x8".into()]);
    let root = tempfile::tempdir().expect("temp dir");
    let culprits = (0..n).filter(|i| culprit(*i)).count();
    println!(
        "{n} requests, {culprits} failing the check; the check sleeps {sleep} s; batches of 8 leased at a time"
    );
    println!(
        "{:<16} {:>9} {:>7} {:>5} {:>11} {:>9} {:>12} {:>8}",
        "batch[xjobs]",
        "time",
        "landed",
        "dead",
        "check runs",
        "landings",
        "landed/min",
        "speed-up"
    );
    let mut base: Option<(f64, String, BTreeSet<String>)> = None;
    for mode in modes {
        let r = run(root.path(), n, &sleep, &mode);
        let per_min = r.landed.len() as f64 / r.took.as_secs_f64() * 60.0;
        let speedup = match &base {
            Some((b, tree, landed)) => {
                assert_eq!(&r.src_tree, tree, "the same final tree as the baseline");
                assert_eq!(&r.landed, landed, "the same requests landed");
                per_min / b
            }
            None => {
                base = Some((per_min, r.src_tree.clone(), r.landed.clone()));
                1.0
            }
        };
        assert_eq!(r.dead.len(), culprits, "exactly the culprits died");
        println!(
            "{:<16} {:>8.1}s {:>7} {:>5} {:>11} {:>9} {:>12.1} {:>7.2}x",
            r.mode,
            r.took.as_secs_f64(),
            r.landed.len(),
            r.dead.len(),
            r.check_runs,
            r.landings,
            per_min,
            speedup
        );
    }
}
