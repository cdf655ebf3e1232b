//! Whole-workload benchmarks of the queue, against real repositories and the real binary.
//!
//! `cargo bench --bench hyperion` runs the full sizes and prints a table (docs/BENCHMARKS.md
//! holds the latest); `-- --quick` runs the smallest sizes only, to keep the benchmark working
//! in CI. Nothing here asserts a timing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{add_request, bin, git, median, ms, p95};

use hyperion::queue::Queue;
use hyperion::queue::store::Store;

fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    common::init_small(dir.path());
    dir
}

fn write_dir(dir: &Path, n: usize, salt: &str) -> PathBuf {
    let d = dir.join(format!("requests-{salt}"));
    std::fs::create_dir_all(&d).expect("mkdir");
    for i in 0..n {
        let r = add_request(i, salt);
        std::fs::write(
            d.join(format!("{i:06}.json")),
            serde_json::to_vec(&r).expect("json"),
        )
        .expect("write");
    }
    d
}

fn hyperion(dir: &Path, args: &[&str]) -> Duration {
    common::hyperion(dir, args).0
}

fn main() {
    // `cargo bench --bench hyperion -- validate` runs only the validation group.
    if std::env::args().skip(1).any(|a| a == "validate") {
        validate_group();
        return;
    }
    // `cargo bench --bench hyperion -- index [N...]` runs only the index group: whole-process
    // commands on queues of N requests (default 10000 100000).
    if std::env::args().skip(1).any(|a| a == "index") {
        let sizes: Vec<usize> = std::env::args()
            .skip_while(|a| a != "index")
            .skip(1)
            .filter_map(|a| a.parse().ok())
            .collect();
        index_group(if sizes.is_empty() {
            &[10_000, 100_000]
        } else {
            &sizes
        });
        return;
    }
    // `cargo bench --bench hyperion -- cycle [N [DEPTH]]` runs only N lease + complete
    // cycles, on a queue DEPTH deep (at least N; for profiling: `perf record` the bench
    // binary with these arguments).
    if std::env::args().skip(1).any(|a| a == "cycle") {
        let mut numbers = std::env::args()
            .skip_while(|a| a != "cycle")
            .skip(1)
            .map(|a| a.parse::<usize>().ok());
        let n = numbers.next().flatten().unwrap_or(2_000);
        let depth = numbers.next().flatten().unwrap_or(n).max(n);
        let r = repo();
        let d = write_dir(r.path(), depth, "a");
        hyperion(r.path(), &["enqueue", d.to_str().expect("utf-8")]);
        common::object_dirs(r.path());
        // HYPERION_BENCH_PAUSE=1: wait a second after the setup, so that a profiler can
        // attach (`perf record -p PID`) to the cycles alone.
        if std::env::var_os("HYPERION_BENCH_PAUSE").is_some() {
            eprintln!("pid {}: cycles start in 1 s", std::process::id());
            std::thread::sleep(Duration::from_secs(1));
        }
        let (done, el) = cycles(r.path(), n);
        println!(
            "lease+complete x{done}: {} per cycle, {:.0} cycles/s",
            ms(el / done.max(1) as u32),
            done as f64 / el.as_secs_f64()
        );
        return;
    }
    // `cargo bench --bench hyperion -- drain [N [FILES [check]]]` runs only one in-process
    // worker draining N one-line requests from a FILES-file repository, with the trivial check
    // when `check` is given (for profiling the apply pipeline, like `cycle`).
    if std::env::args().skip(1).any(|a| a == "drain") {
        let rest: Vec<String> = std::env::args()
            .skip_while(|a| a != "drain")
            .skip(1)
            .collect();
        let n = rest.first().and_then(|a| a.parse().ok()).unwrap_or(200);
        let files = rest
            .get(1)
            .and_then(|a| a.parse().ok())
            .unwrap_or(1_000usize)
            .max(n + 1);
        let checks = if rest.iter().any(|a| a == "check") {
            vec!["trivial".to_owned()]
        } else {
            vec![]
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let seed = common::generate(dir.path(), files);
        let bare = dir.path().join("bare.git");
        common::clone_bare(&seed, &bare);
        common::object_dirs(&bare);
        let reqs: Vec<_> = (0..n).map(|k| common::patch_request(k, &checks)).collect();
        let drained = common::drain_in_process(&bare, &reqs, || {
            if std::env::var_os("HYPERION_BENCH_PAUSE").is_some() {
                eprintln!("pid {}: the worker starts in 1 s", std::process::id());
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        let total: Duration = drained.gaps.iter().sum();
        println!(
            "drain x{n} ({files} files{}): {} per request (median {}, p95 {})",
            if checks.is_empty() {
                ""
            } else {
                ", trivial check"
            },
            ms(total / n.max(1) as u32),
            ms(median(&drained.gaps)),
            ms(p95(&drained.gaps))
        );
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let (n_enqueue, n_cycles, n_list) = if quick {
        (200, 200, 1_000)
    } else {
        (2_000, 2_000, 10_000)
    };
    println!(
        "git-hyperion queue benchmarks ({})",
        if quick { "quick" } else { "full" }
    );
    println!(
        "{:<44} {:>14} {:>14}  target",
        "workload", "median", "result"
    );

    // 1. enqueue a directory, one process, end to end.
    let r = repo();
    let d = write_dir(r.path(), n_enqueue, "a");
    let el = hyperion(r.path(), &["enqueue", d.to_str().expect("utf-8")]);
    let rate = n_enqueue as f64 / el.as_secs_f64();
    println!(
        "{:<44} {:>14} {:>10.0} req/s  >= 2000 req/s",
        format!("enqueue DIR of {n_enqueue} (process)"),
        ms(el),
        rate
    );

    // 2. one enqueue process end to end, on a queue that already holds requests.
    let mut times = Vec::new();
    for i in 0..20 {
        let f = r.path().join(format!("single-{i}.json"));
        std::fs::write(
            &f,
            serde_json::to_vec(&add_request(i, &format!("single{i}"))).expect("json"),
        )
        .expect("write");
        times.push(hyperion(r.path(), &["enqueue", f.to_str().expect("utf-8")]));
    }
    println!(
        "{:<44} {:>14} {:>14}  <= 20 ms",
        "enqueue one request (process)",
        ms(median(&times)),
        format!("p95 {}", ms(p95(&times)))
    );

    // 3. lease + complete cycles in one process, git's object directories made first.
    common::object_dirs(r.path());
    let (done, el) = cycles(r.path(), n_cycles.min(n_enqueue));
    println!(
        "{:<44} {:>14} {:>8.0} cycles/s  >= 1000/s",
        format!("lease+complete x{done} (one process)"),
        ms(el / done.max(1) as u32),
        done as f64 / el.as_secs_f64()
    );

    // 4. list over many records.
    let r2 = repo();
    let d = write_dir(r2.path(), n_list, "b");
    hyperion(r2.path(), &["enqueue", d.to_str().expect("utf-8")]);
    hyperion(r2.path(), &["list", "--format", "json"]);
    let mut times = Vec::new();
    for _ in 0..10 {
        times.push(hyperion(r2.path(), &["list", "--format", "json"]));
    }
    println!(
        "{:<44} {:>14} {:>14}  <= 50 ms",
        format!("list over {n_list} records (process)"),
        ms(median(&times)),
        format!("p95 {}", ms(p95(&times)))
    );

    validate_group();
}

/// Whole-process `list`, `list --format json`, `show`, `dequeue` and `sweep` on a
/// queue of `n` requests, with the index in place (built by a first, untimed run), for this
/// build's binary and, when `HYPERION_BENCH_BEFORE` names one, another (an older build, to
/// compare index formats): median of 5 runs and the largest resident set (`/usr/bin/time`).
fn index_group(sizes: &[usize]) {
    let mut bins = vec![("this build".to_owned(), PathBuf::from(bin()))];
    if let Some(before) = std::env::var_os("HYPERION_BENCH_BEFORE") {
        bins.insert(0, ("before".to_owned(), PathBuf::from(before)));
    }
    println!(
        "{:<12} {:>8} {:<22} {:>10} {:>10} {:>10}",
        "binary", "requests", "command", "median", "max", "max RSS"
    );
    for &n in sizes {
        let r = repo();
        let d = write_dir(r.path(), n, "ix");
        hyperion(r.path(), &["enqueue", d.to_str().expect("utf-8")]);
        std::fs::remove_dir_all(&d).expect("rm requests");
        let one = Store::discover(r.path())
            .expect("repo")
            .list()
            .expect("refs")
            .first()
            .map(|(id, _)| id.clone())
            .expect("a request");
        let git_dir = r.path().join(".git/hyperion");
        for (name, bin) in &bins {
            let _ = std::fs::remove_dir_all(git_dir.join("index"));
            let commands: [(&str, Vec<&str>); 5] = [
                ("list", vec!["list"]),
                ("list --format json", vec!["list", "--format", "json"]),
                ("show ID", vec!["show", &one]),
                ("dequeue", vec!["dequeue", "--worker", "bench"]),
                ("sweep", vec!["sweep"]),
            ];
            // The first run builds the index.
            let (built, _) = timed(bin, r.path(), &["list"]);
            println!(
                "{name:<12} {n:>8} {:<22} {:>10} {:>10} {:>10}",
                "(index build)",
                ms(built),
                "",
                ""
            );
            for (label, args) in &commands {
                let mut times = Vec::new();
                let mut rss = 0;
                for _ in 0..5 {
                    let (t, kb) = timed(bin, r.path(), args);
                    times.push(t);
                    rss = rss.max(kb);
                }
                println!(
                    "{name:<12} {n:>8} {label:<22} {:>10} {:>10} {:>7} MB",
                    ms(median(&times)),
                    ms(times.iter().copied().max().unwrap_or_default()),
                    rss / 1024
                );
            }
        }
    }
}

/// One run of `bin args` in `dir` under `/usr/bin/time`: wall time and maximum resident set
/// (KiB; 0 where `/usr/bin/time` is missing).
fn timed(bin: &Path, dir: &Path, args: &[&str]) -> (Duration, u64) {
    let time = Path::new("/usr/bin/time");
    let mut cmd = if time.exists() {
        let mut c = Command::new(time);
        c.args(["-f", "%M"]).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    let t = Instant::now();
    let out = cmd.current_dir(dir).args(args).output().expect("runs");
    let el = t.elapsed();
    assert!(
        out.status.success(),
        "{} {args:?}: {}",
        bin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let rss = String::from_utf8_lossy(&out.stderr)
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    (el, rss)
}

/// Up to `n` lease + complete cycles, one request each, in this process: how many ran and how
/// long they took.
fn cycles(dir: &Path, n: usize) -> (usize, Duration) {
    let q = Queue::open(Store::discover(dir).expect("repo")).expect("queue");
    let t = Instant::now();
    let mut done = 0;
    while done < n {
        let leased = q
            .dequeue("bench", 1, Some(Duration::from_secs(60)))
            .expect("dequeue");
        let Some(rec) = leased.first() else { break };
        let outcome = common::cycle_outcome(done % 2 == 0);
        q.complete(&rec.id, "bench", outcome).expect("complete");
        done += 1;
    }
    (done, t.elapsed())
}

/// Validation of one request as enqueue does it, a 20-file request whose patches total about
/// 1,000 lines, made by `git diff` on a real repository. Three lines, each measuring more:
/// - JSON, schema, request semantics, then everything against the target tree with the
///   default policy (`check_request` + `validate::against_target`);
/// - what `enqueue --dry-run` checks in process: the same through
///   `Queue::check_against_targets`, which also resolves the target from the settings and reads
///   its policy from the tip's tree;
/// - what a storing `enqueue` checks before it writes: that, the same check again inside
///   `Queue::enqueue`, and the risk tiers (`Queue::assess`).
fn validate_group() {
    use hyperion::request::policy::Policy;
    use hyperion::request::validate;
    let r = repo();
    let dir = r.path();
    let body = |i: usize, edit: bool| -> String {
        (0..60)
            .map(|l| {
                if edit && l % 12 == 5 {
                    format!("    let v{l} = compute({i}, {l}) + 1; // changed\n")
                } else {
                    format!("    let v{l} = compute({i}, {l});\n")
                }
            })
            .collect()
    };
    std::fs::create_dir_all(dir.join("src")).expect("mkdir");
    for i in 0..20 {
        std::fs::write(dir.join(format!("src/f{i}.rs")), body(i, false)).expect("write");
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "files"]);
    for i in 0..20 {
        std::fs::write(dir.join(format!("src/f{i}.rs")), body(i, true)).expect("write");
    }
    let diff = git(dir, &["diff"]);
    git(dir, &["checkout", "-q", "--", "src"]);
    let req = hyperion::request::patch::wrap(&diff, "BENCH-1", "bench", None, &[]).expect("a diff");
    let bytes = serde_json::to_vec(&req).expect("json");
    let tree = gix::ObjectId::from_hex(common::tree_of(dir, "HEAD").as_bytes()).expect("a tree id");
    let repo = gix::open(dir).expect("repo");
    let policy = Policy::default();
    let mut times = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        let (req, problems) = validate::check_request(&bytes);
        let req = req.expect("valid");
        let more = validate::against_target(&repo, &req, Some(tree), &policy);
        times.push(t.elapsed());
        assert!(
            problems.is_empty() && more.is_empty(),
            "{problems:?} {more:?}"
        );
    }
    println!(
        "{:<44} {:>14} {:>14}  <= 2 ms",
        format!(
            "validate {} lines, {} files",
            diff.lines().count(),
            req.changes.len()
        ),
        ms(median(&times)),
        format!("p95 {}", ms(p95(&times)))
    );

    let q = Queue::open(Store::discover(dir).expect("repo")).expect("queue");
    let one = |stored: bool| {
        let (req, problems) = validate::check_request(&bytes);
        let req = req.expect("valid");
        let mut more = q.check_against_targets(&[&req]).expect("checked");
        if stored {
            more.extend(q.check_against_targets(&[&req]).expect("checked"));
            let tiers = q.assess(&[&req]).expect("assessed");
            assert!(tiers.iter().all(|a| !a.needs_approval()), "no approval");
        }
        assert!(
            problems.is_empty() && more.iter().all(Vec::is_empty),
            "{problems:?} {more:?}"
        );
    };
    for (label, stored) in [
        ("enqueue --dry-run checks", false),
        ("enqueue checks", true),
    ] {
        let mut times = Vec::new();
        for _ in 0..300 {
            let t = Instant::now();
            one(stored);
            times.push(t.elapsed());
        }
        println!(
            "{:<44} {:>14} {:>14}",
            format!("{label}, {} files", req.changes.len()),
            ms(median(&times)),
            format!("p95 {}", ms(p95(&times)))
        );
    }
}
