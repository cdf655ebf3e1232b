//! Side by side (issue 5): whole workloads on generated repositories, hyperion against what a
//! team would use instead, in one invocation, on identical inputs.
//!
//! ```text
//! cargo bench --bench compare -- [--files 1k,5k,10k] [--depth 1k,10k] [--quick] [--format json]
//! ```
//!
//! Per repository size (`--files`, a [`common::generate`]d repository whose `main` is checked
//! out nowhere): validation of a request against the target; apply + land without checks and
//! with a trivial check, by hyperion's worker in process and through the CLI
//! (`git-hyperion worker --drain`, which also gives the worker's peak RSS), against a plain-git
//! script with one reused worktree ("git script") and a naive one that adds a fresh worktree
//! per request ("fresh worktree").
//!
//! Per queue depth (`--depth`, records pending in a one-file repository): enqueue in batches,
//! list, lease one at a time, lease + complete cycles and sweep of expired leases, against a
//! queue in one SQLite table (the classic design, [`sqlite::SqliteQueue`]) holding the same
//! request JSON.
//!
//! Every number is a time per operation; the ratio is the alternative's mean over hyperion's
//! (above 1: hyperion is faster). Nothing here asserts a timing; it asserts that both sides did
//! the same work (same final tree, same number of records).

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hyperion::queue::store::Store;
use hyperion::queue::{Filter, Queue};
use hyperion::request::model::ChangeRequest;
use serde_json::json;

use common::hermetic::hermetic;
use common::{Script, Stats, bin, clone_bare, git, tree_of};

const USAGE: &str = "usage: cargo bench --bench compare -- [--files 1k,5k,10k] [--depth 1k,10k] \
                     [--quick] [--format text|json]
  --files SIZES   repository sizes in files (1k, 10k, 50k, ...; repeat or list with commas;
                  `none` skips the apply workloads)
  --depth SIZES   queue depths for the queue workloads (1k, 10k, 100k, ...; `none` skips them)
  --quick         smallest sizes and few iterations (CI)
  --format json   JSON lines instead of a table";

/// Requests per enqueue call (one pack for hyperion, one transaction for SQLite).
const ENQUEUE_BATCH: usize = 500;

/// The workloads, in the order the table shows them.
const ENQUEUE: &str = "enqueue, batches of 500";
const LIST: &str = "list all records";
const LEASE: &str = "lease one at a time";
const CYCLE: &str = "lease + complete";
const SWEEP: &str = "sweep expired leases";
const VALIDATE: &str = "validate one request";
const APPLY: &str = "apply+land, no checks";
const APPLY_CHECK: &str = "apply+land, trivial check";
const APPLY_CLI: &str = "apply+land, CLI worker --drain";
const ORDER: [&str; 9] = [
    ENQUEUE,
    LIST,
    LEASE,
    CYCLE,
    SWEEP,
    VALIDATE,
    APPLY,
    APPLY_CHECK,
    APPLY_CLI,
];

/// The alternatives.
const SQLITE: &str = "sqlite";
const FLOOR: &str = "git floor";
const SCRIPT: &str = "git script";
const FRESH: &str = "fresh worktree";
const GIT_CHECK: &str = "git apply --check";

/// Operations per workload.
struct Counts {
    /// Requests through apply + land without checks (hyperion, reused-worktree script, CLI).
    apply: usize,
    /// ... with the trivial check.
    apply_check: usize,
    /// Of those, through the fresh-worktree script, up to 10k files; fewer on larger
    /// repositories, where one request takes seconds ([`fresh_count`]).
    fresh: usize,
    fresh_check: usize,
    validate: usize,
    lease: usize,
    cycles: usize,
    /// Expired leases per sweep, and sweeps.
    expired: usize,
    sweeps: usize,
    lists: usize,
    /// Rounds the apply workloads are split into, the sides taking turns.
    rounds: usize,
    /// Let the file system settle ([`common::settle`]) before the queue workloads: they
    /// follow whatever deleted files last (an earlier run's temporary directory), and on
    /// this machine's ext4 hyperion's first new files would pay for it.
    settle: bool,
}

const QUICK: Counts = Counts {
    apply: 40,
    apply_check: 10,
    fresh: 5,
    fresh_check: 3,
    validate: 20,
    lease: 100,
    cycles: 100,
    expired: 20,
    sweeps: 3,
    lists: 3,
    rounds: 2,
    settle: false,
};

const FULL: Counts = Counts {
    apply: 200,
    apply_check: 50,
    fresh: 20,
    fresh_check: 10,
    validate: 100,
    lease: 200,
    cycles: 200,
    expired: 50,
    sweeps: 5,
    lists: 10,
    rounds: 4,
    settle: true,
};

struct Plan {
    files: Vec<usize>,
    depths: Vec<usize>,
    quick: bool,
    json: bool,
    counts: &'static Counts,
}

/// One line of the table: a workload at one size, hyperion and its alternatives.
struct Row {
    workload: &'static str,
    /// Files in the repository, or records in the queue.
    scale: usize,
    hyperion: Stats,
    alternatives: Vec<(&'static str, Stats)>,
}

impl Row {
    fn at(&self) -> String {
        if self.is_queue() {
            format!("depth {}", size_label(self.scale))
        } else {
            format!("{} files", size_label(self.scale))
        }
    }

    fn is_queue(&self) -> bool {
        [ENQUEUE, LIST, LEASE, CYCLE, SWEEP].contains(&self.workload)
    }
}

/// Peak resident memory of `git-hyperion worker --drain` on one repository size.
struct Rss {
    files: usize,
    requests: usize,
    kib: u64,
    how: &'static str,
}

fn main() {
    let plan = match parse_args(std::env::args().skip(1)) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut rows = Vec::new();
    let mut rss = Vec::new();
    if plan.counts.settle && !plan.depths.is_empty() {
        progress(started, "letting the file system settle (31 s)");
        common::settle();
    }
    for &depth in &plan.depths {
        progress(started, &format!("queue depth {}", size_label(depth)));
        queue_suite(tmp.path(), depth, plan.counts, &mut rows);
    }
    for &files in &plan.files {
        progress(started, &format!("{} files", size_label(files)));
        apply_suite(tmp.path(), files, plan.counts, &mut rows, &mut rss);
    }
    rows.sort_by_key(|r| (ORDER.iter().position(|w| *w == r.workload), r.scale));
    let took = started.elapsed();
    progress(started, "done");
    if plan.json {
        print_json(&plan, &rows, &rss, took);
    } else {
        print_text(&plan, &rows, &rss, took);
    }
}

fn progress(started: Instant, what: &str) {
    eprintln!(
        "compare [{:>6.1} s] {what}",
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------
// arguments

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Plan, String> {
    let (mut files, mut depths) = (Vec::new(), Vec::new());
    let (mut no_files, mut no_depths) = (false, false);
    let (mut quick, mut json) = (false, false);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            // `cargo bench` passes this to every bench target.
            "--bench" => {}
            "--quick" => quick = true,
            "--files" => match value()?.as_str() {
                "none" => no_files = true,
                list => files.extend(sizes(list)?),
            },
            "--depth" => match value()?.as_str() {
                "none" => no_depths = true,
                list => depths.extend(sizes(list)?),
            },
            "--format" => match value()?.as_str() {
                "json" => json = true,
                "text" => json = false,
                other => return Err(format!("unknown format '{other}'")),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    let counts = if quick { &QUICK } else { &FULL };
    if files.is_empty() && !no_files {
        files = if quick {
            vec![1_000]
        } else {
            vec![1_000, 5_000, 10_000]
        };
    }
    if depths.is_empty() && !no_depths {
        depths = if quick {
            vec![1_000]
        } else {
            vec![1_000, 10_000]
        };
    }
    for v in [&mut files, &mut depths] {
        v.sort_unstable();
        v.dedup();
    }
    // One file per request, and one for the warm-up request.
    let fewest_files = counts.apply.max(counts.apply_check) + 1;
    if files.first().is_some_and(|&f| f < fewest_files) {
        return Err(format!(
            "--files must be at least {fewest_files} (one file per request)"
        ));
    }
    if depths.first().is_some_and(|&d| d < 100) {
        return Err("--depth must be at least 100".into());
    }
    Ok(Plan {
        files,
        depths,
        quick,
        json,
        counts,
    })
}

/// `1k,10k` → 1000, 10000 (`k` and `m` suffixes; plain numbers too).
fn sizes(list: &str) -> Result<Vec<usize>, String> {
    list.split(',')
        .map(|s| {
            let s = s.trim().to_ascii_lowercase();
            let (digits, unit) = match s.strip_suffix('k') {
                Some(d) => (d, 1_000),
                None => match s.strip_suffix('m') {
                    Some(d) => (d, 1_000_000),
                    None => (s.as_str(), 1),
                },
            };
            digits
                .parse::<usize>()
                .ok()
                .and_then(|n| n.checked_mul(unit))
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("'{s}' is not a size (like 1k, 10k, 50k)"))
        })
        .collect()
}

fn size_label(n: usize) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}m", n / 1_000_000)
    } else if n >= 1_000 && n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// queue workloads: hyperion's queue against a SQLite table

/// Lease of the records leased one at a time: long enough that no sweep below touches them.
const LONG_LEASE: Duration = Duration::from_secs(1800);
/// Lease of the records the sweeps expire, and the clock jump that expires them.
const SHORT_LEASE: Duration = Duration::from_secs(60);
const JUMP: Duration = Duration::from_secs(61);

fn queue_suite(tmp: &Path, depth: usize, c: &Counts, rows: &mut Vec<Row>) {
    let dir = tmp.join(format!("queue-{depth}"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    common::init_small(&dir);
    common::object_dirs(&dir);
    let q = Queue::open(Store::discover(&dir).expect("repo")).expect("queue");
    let mut db = sqlite::SqliteQueue::create(&tmp.join(format!("queue-{depth}.sqlite")));
    let mut floor = floor::GitFloor::create(&tmp.join(format!("floor-{depth}")), depth);
    // Leave most of the queue pending while leasing, whatever the depth.
    let lease = c.lease.min(depth / 4);
    let cycles = c.cycles.min(depth / 4);
    let expired = c.expired.min(depth / (4 * c.sweeps)).max(1);
    let mut push = |workload, hy: &[Duration], sq: &[Duration], fl: Option<&[Duration]>| {
        let mut alternatives = vec![(SQLITE, Stats::of(sq))];
        alternatives.extend(fl.map(|fl| (FLOOR, Stats::of(fl))));
        rows.push(Row {
            workload,
            scale: depth,
            hyperion: Stats::of(hy),
            alternatives,
        })
    };

    // Enqueue: the depth's records in batches, each batch one call (one pack for hyperion, one
    // transaction for SQLite). Samples are per request: a batch's time over its size.
    let (mut hy, mut sq) = (Vec::new(), Vec::new());
    for start in (0..depth).step_by(ENQUEUE_BATCH) {
        let batch: Vec<ChangeRequest> = (start..(start + ENQUEUE_BATCH).min(depth))
            .map(|i| common::add_request(i, "queue"))
            .collect();
        let t = Instant::now();
        let done = q.enqueue(&batch, "bench").expect("enqueue");
        hy.push(t.elapsed() / batch.len() as u32);
        assert!(done.iter().all(|e| e.created), "every request is new");
        let t = Instant::now();
        let inserted = db.enqueue(&batch);
        sq.push(t.elapsed() / batch.len() as u32);
        assert_eq!(inserted, batch.len(), "every row is new");
    }
    push(ENQUEUE, &hy, &sq, None);

    // Everything below runs on a queue opened after the enqueue, as a worker or `list` started
    // later would. (It is also needed: a repository handle sizes its table of pack indexes
    // when it opens, and past ~32 packs written since, reads through it fail with "too few
    // index slots"; each batch above wrote one pack.)
    drop(q);
    let q = Queue::open(Store::discover(&dir).expect("repo")).expect("queue");

    // List every record (hyperion: records without patches; SQLite: every column but the
    // payload), after one untimed listing each.
    let (mut hy, mut sq) = (Vec::new(), Vec::new());
    for i in 0..=c.lists {
        let t = Instant::now();
        let n = q.list(&Filter::default()).expect("list").len();
        let el = t.elapsed();
        assert_eq!(n, depth);
        if i > 0 {
            hy.push(el);
        }
        let t = Instant::now();
        let n = db.list().len();
        let el = t.elapsed();
        assert_eq!(n, depth);
        if i > 0 {
            sq.push(el);
        }
    }
    push(LIST, &hy, &sq, None);

    // hyperion's warm-up, untimed: 128 leases given back, 256 transitions. A process's first
    // 256 loose objects are new files; then they are rolled into a pack and reused (spare
    // files), as in any worker past its first minutes. (The git floor warmed up likewise.)
    for _ in 0..128.min(depth / 8) {
        let got = q.dequeue("warm-up", 1, Some(LONG_LEASE)).expect("dequeue");
        let rec = got.first().expect("a request is ready");
        q.release(&rec.id, "warm-up").expect("release");
    }

    // Lease one at a time, the queue `depth` deep; the git floor makes one transition.
    let (mut hy, mut sq, mut fl) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..lease {
        let t = Instant::now();
        let got = q.dequeue("bench", 1, Some(LONG_LEASE)).expect("dequeue");
        hy.push(t.elapsed());
        assert_eq!(got.len(), 1);
        let t = Instant::now();
        let got = db.claim("bench", LONG_LEASE);
        sq.push(t.elapsed());
        assert!(got.is_some_and(|c| !c.payload.is_empty()));
        let t = Instant::now();
        floor.transition();
        fl.push(t.elapsed());
    }
    push(LEASE, &hy, &sq, Some(&fl));

    // Lease + complete, alternately applied and failed (a dead letter); the git floor makes
    // two transitions.
    let (mut hy, mut sq, mut fl) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..cycles {
        let applied = i % 2 == 0;
        let outcome = common::cycle_outcome(applied);
        let t = Instant::now();
        let got = q.dequeue("bench", 1, Some(SHORT_LEASE)).expect("dequeue");
        let rec = got.first().expect("a request is ready");
        q.complete(&rec.id, "bench", outcome).expect("complete");
        hy.push(t.elapsed());
        let t = Instant::now();
        let job = db.claim("bench", SHORT_LEASE).expect("a job is ready");
        assert!(db.complete(&job.id, "bench", applied), "completed");
        sq.push(t.elapsed());
        let t = Instant::now();
        floor.transition();
        floor.transition();
        fl.push(t.elapsed());
    }
    push(CYCLE, &hy, &sq, Some(&fl));

    // Sweep: lease `expired` records (not timed), move the clock past their lease, sweep.
    let (mut hy, mut sq) = (Vec::new(), Vec::new());
    for _ in 0..c.sweeps {
        let got = q
            .dequeue("bench", expired, Some(SHORT_LEASE))
            .expect("dequeue");
        assert_eq!(got.len(), expired);
        q.travel(jiff::SignedDuration::try_from(JUMP).expect("fits"));
        let t = Instant::now();
        let swept = q.sweep().expect("sweep");
        hy.push(t.elapsed());
        assert_eq!(swept.requeued.len() + swept.dead.len(), expired);
        for _ in 0..expired {
            db.claim("bench", SHORT_LEASE).expect("a job is ready");
        }
        db.travel(JUMP);
        let t = Instant::now();
        let n = db.sweep(i64::from(q.settings().max_attempts));
        sq.push(t.elapsed());
        assert_eq!(n, expired);
    }
    push(SWEEP, &hy, &sq, None);
}

// ---------------------------------------------------------------------------------------------
// apply workloads: hyperion's worker against plain-git scripts

fn apply_suite(tmp: &Path, files: usize, c: &Counts, rows: &mut Vec<Row>, rss: &mut Vec<Rss>) {
    let dir = tmp.join(format!("files-{files}"));
    let seed = common::generate(&dir, files);
    let patches = common::write_patches(&dir.join("patches"), 0..c.apply.max(c.apply_check));
    let mut push = |workload, hyperion: Stats, alternatives| {
        rows.push(Row {
            workload,
            scale: files,
            hyperion,
            alternatives,
        })
    };

    // Validation of one request as enqueue does it (JSON, schema, semantics, then against the
    // target's tree and policy), against git's own check that the patch applies.
    let repo = dir.join("validate.git");
    clone_bare(&seed, &repo);
    let wt = dir.join("validate-wt");
    common::add_worktree(&repo, &wt);
    let q = Queue::open(Store::discover(&repo).expect("repo")).expect("queue");
    let (mut hy, mut gc) = (Vec::new(), Vec::new());
    for (k, p) in patches.iter().enumerate().take(c.validate) {
        let bytes = serde_json::to_vec(&common::patch_request(k, &[])).expect("json");
        let t = Instant::now();
        let (req, problems) = hyperion::request::validate::check_request(&bytes);
        let req = req.expect("a valid request");
        let more = q.check_against_targets(&[&req]).expect("validates");
        hy.push(t.elapsed());
        assert!(
            problems.is_empty() && more.iter().all(Vec::is_empty),
            "{problems:?} {more:?}"
        );
        let t = Instant::now();
        git(
            &wt,
            &["apply", "--check", "--cached", p.to_str().expect("utf-8")],
        );
        gc.push(t.elapsed());
    }
    drop(q);
    push(VALIDATE, Stats::of(&hy), vec![(GIT_CHECK, Stats::of(&gc))]);

    // Apply + land, without and with the trivial check, in rounds: each side takes the next
    // share of the requests in turn, so that a slow spell of the machine (this VM's disk has
    // them) falls on every side alike. Every side first takes one more request, `warm`, not
    // timed: what a long-running worker or script has already done (a worktree's first
    // checkout, hyperion's check slot, cold caches) is left out.
    let warm = patches.len();
    let warm_patch = common::write_patches(&dir.join("patches"), warm..warm + 1);
    let share = |n: usize, r: usize| (r * n / c.rounds)..((r + 1) * n / c.rounds);
    for check in [false, true] {
        let (n, n_fresh, tag) = if check {
            (c.apply_check, fresh_count(c.fresh_check, files, c), "check")
        } else {
            (c.apply, fresh_count(c.fresh, files, c), "plain")
        };
        let checks: Vec<String> = if check {
            vec!["trivial".into()]
        } else {
            Vec::new()
        };
        let reqs: Vec<_> = (0..n).map(|k| common::patch_request(k, &checks)).collect();
        let side = |name: &str| {
            let repo = dir.join(format!("{name}-{tag}.git"));
            clone_bare(&seed, &repo);
            (repo, dir.join(format!("{name}-{tag}")))
        };
        let (hy, _) = side("hyperion");
        common::drain_in_process(&hy, &[common::patch_request(warm, &checks)], || {});
        // The command line only without checks: the same requests through one
        // `worker --drain` process per round, whose peak RSS is read as it exits.
        let cli = (!check).then(|| {
            let (repo, _) = side("cli");
            common::drain_in_process(&repo, &[common::patch_request(warm, &checks)], || {});
            repo
        });
        let (sc, sc_scratch) = side("script");
        let (fr, fr_scratch) = side("fresh");
        for (repo, scratch, kind) in [
            (&sc, &sc_scratch, Script::Reused),
            (&fr, &fr_scratch, Script::Fresh),
        ] {
            common::run_script(kind, repo, scratch, &warm_patch, check, || {});
        }

        let (mut hy_gaps, mut reports, mut cli_gaps, mut peak) = (vec![], vec![], vec![], None);
        let (mut sc_gaps, mut fr_gaps) = (vec![], vec![]);
        for r in 0..c.rounds {
            let drained = common::drain_in_process(&hy, &reqs[share(n, r)], || {});
            hy_gaps.extend(drained.gaps);
            reports.extend(drained.reports);
            if let Some(repo) = &cli {
                let run = worker_cli(repo, &dir, &reqs[share(n, r)]);
                cli_gaps.extend(run.gaps);
                peak = peak.max(Some((run.peak_kib, run.how)));
            }
            sc_gaps.extend(common::run_script(
                Script::Reused,
                &sc,
                &sc_scratch,
                &patches[share(n, r)],
                check,
                || {},
            ));
            fr_gaps.extend(common::run_script(
                Script::Fresh,
                &fr,
                &fr_scratch,
                &patches[share(n_fresh, r)],
                check,
                || {},
            ));
        }

        // Same work: hyperion lands in queue order, one request per commit, so its k-th
        // landing is where a side that took the first k requests stops.
        let landed_tree = |k: usize| {
            let commit = reports[k - 1].commit.as_deref().expect("a landed commit");
            tree_of(&hy, commit)
        };
        assert_eq!(tree_of(&hy, "main"), landed_tree(n));
        assert_eq!(
            tree_of(&sc, "main"),
            landed_tree(n),
            "hyperion and the git script end on different trees"
        );
        assert_eq!(
            tree_of(&fr, "main"),
            landed_tree(n_fresh),
            "hyperion and the fresh-worktree script end on different trees"
        );
        let alternatives = vec![(SCRIPT, Stats::of(&sc_gaps)), (FRESH, Stats::of(&fr_gaps))];
        let workload = if check { APPLY_CHECK } else { APPLY };
        push(workload, Stats::of(&hy_gaps), alternatives.clone());
        if let (Some(repo), Some((kib, how))) = (&cli, peak) {
            assert_eq!(
                tree_of(repo, "main"),
                landed_tree(n),
                "the CLI worker and the in-process worker end on different trees"
            );
            push(APPLY_CLI, Stats::of(&cli_gaps), alternatives);
            rss.push(Rss {
                files,
                requests: n.div_ceil(c.rounds),
                kib,
                how,
            });
        }
    }
}

/// Requests through the fresh-worktree script on a `files`-file repository: `base` up to
/// 10k files, then in inverse proportion (its cost per request grows with the checkout), at
/// least one per round.
fn fresh_count(base: usize, files: usize, c: &Counts) -> usize {
    (base * 10_000 / files.max(10_000)).max(c.rounds)
}

struct CliRun {
    /// Time between report lines, the first measured from the spawn.
    gaps: Vec<Duration>,
    peak_kib: u64,
    how: &'static str,
}

/// Enqueue `reqs` in `repo` (not timed), then run `git-hyperion worker --drain --batch-size
/// 32` there, timing its report lines as they arrive, and read its peak RSS: GNU time's `%M`
/// when `/usr/bin/time` exists (exact), else the last `VmHWM` read from /proc while it ran
/// (misses a peak in its last milliseconds).
fn worker_cli(repo: &Path, scratch: &Path, reqs: &[ChangeRequest]) -> CliRun {
    Queue::open(Store::discover(repo).expect("repo"))
        .expect("queue")
        .enqueue(reqs, "bench")
        .expect("enqueue");
    let time = Path::new("/usr/bin/time");
    let use_time = time.exists();
    let rss_file = scratch.join("worker.rss");
    let err_file = scratch.join("worker.err");
    let mut cmd = if use_time {
        let mut c = Command::new(time);
        c.arg("-f").arg("%M").arg("-o").arg(&rss_file).arg(bin());
        c
    } else {
        Command::new(bin())
    };
    cmd.args([
        "--format",
        "json",
        "worker",
        "--drain",
        "--batch-size",
        "32",
    ])
    .current_dir(repo)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(std::fs::File::create(&err_file).expect("create"));
    hermetic(&mut cmd, scratch);
    let start = Instant::now();
    let mut child = cmd.spawn().expect("the worker starts");
    let poller = (!use_time).then(|| {
        let pid = child.id();
        std::thread::spawn(move || peak_hwm(pid))
    });
    let mut ends = Vec::new();
    let mut landed = 0;
    let out = child.stdout.take().expect("piped");
    for line in std::io::BufReader::new(out).lines() {
        let line = line.expect("a report line");
        ends.push(Instant::now());
        let report: serde_json::Value = serde_json::from_str(&line).expect("a JSON report");
        if report["result"] == "landed" {
            landed += 1;
        }
    }
    let status = child.wait().expect("the worker exits");
    // The process's end (closing the index, waiting for a repack it started in the
    // background) is part of its last batch.
    let exited = Instant::now();
    assert!(
        status.success(),
        "worker --drain failed: {}",
        std::fs::read_to_string(&err_file).unwrap_or_default()
    );
    assert_eq!(landed, reqs.len(), "every request lands through the CLI");
    let (peak_kib, how) = match poller {
        Some(h) => (
            h.join().expect("the poller ends"),
            "VmHWM polled every 2 ms",
        ),
        None => {
            let text = std::fs::read_to_string(&rss_file).expect("time's output");
            let kib = text
                .lines()
                .last()
                .and_then(|l| l.trim().parse().ok())
                .expect("a %M figure");
            (kib, "/usr/bin/time -f %M")
        }
    };
    let mut gaps = common::shares(start, &ends);
    if let (Some(last), Some(end)) = (gaps.last_mut(), ends.last()) {
        *last += exited.duration_since(*end);
    }
    CliRun {
        gaps,
        peak_kib,
        how,
    }
}

/// The highest `VmHWM` of process `pid` until it exits.
fn peak_hwm(pid: u32) -> u64 {
    let path = PathBuf::from(format!("/proc/{pid}/status"));
    let mut peak = 0;
    loop {
        let hwm = std::fs::read_to_string(&path).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        });
        match hwm {
            Some(v) => peak = peak.max(v),
            // Gone, or a zombie (whose memory is already released).
            None => return peak,
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

// ---------------------------------------------------------------------------------------------
// output

/// Milliseconds, with the precision the magnitude deserves.
fn num_ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1e3;
    if v < 1.0 {
        format!("{v:.3}")
    } else if v < 100.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    }
}

fn ratio(alt: &Stats, hy: &Stats) -> f64 {
    alt.mean.as_secs_f64() / hy.mean.as_secs_f64()
}

/// Growth of one workload: the smallest and largest size run, and per side the mean per
/// operation at the largest over the smallest.
struct Growth<'r> {
    first: &'r Row,
    last: &'r Row,
    sides: Vec<(&'static str, f64)>,
}

fn growth(rows: &[Row]) -> Vec<Growth<'_>> {
    ORDER
        .iter()
        .filter_map(|w| {
            let of: Vec<&Row> = rows.iter().filter(|r| r.workload == *w).collect();
            let (first, last) = (*of.first()?, *of.last()?);
            if first.scale == last.scale {
                return None;
            }
            let per = |a: &Stats, b: &Stats| b.mean.as_secs_f64() / a.mean.as_secs_f64();
            let mut sides = vec![("hyperion", per(&first.hyperion, &last.hyperion))];
            for (name, s) in &first.alternatives {
                if let Some((_, l)) = last.alternatives.iter().find(|(n, _)| n == name) {
                    sides.push((name, per(s, l)));
                }
            }
            Some(Growth { first, last, sides })
        })
        .collect()
}

/// Where the temporary repositories live: the directory and its filesystem type.
fn tmp_fs() -> (String, String) {
    let tmp = std::env::temp_dir();
    let tmp = tmp.canonicalize().unwrap_or(tmp);
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let fs = mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, at, kind) = (f.next()?, f.next()?, f.next()?);
            tmp.starts_with(at).then(|| (at.len(), kind.to_owned()))
        })
        .max()
        .map(|(_, kind)| kind)
        .unwrap_or_else(|| "?".into());
    (tmp.display().to_string(), fs)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn print_text(plan: &Plan, rows: &[Row], rss: &[Rss], took: Duration) {
    let (tmp, fs) = tmp_fs();
    println!(
        "git-hyperion side by side ({}): files {}; depth {}; {} cores; repositories in {tmp} ({fs}); took {:.0} s",
        if plan.quick { "quick" } else { "full" },
        plan.files
            .iter()
            .map(|&n| size_label(n))
            .collect::<Vec<_>>()
            .join(","),
        plan.depths
            .iter()
            .map(|&n| size_label(n))
            .collect::<Vec<_>>()
            .join(","),
        cores(),
        took.as_secs_f64()
    );
    println!(
        "Milliseconds per operation (n operations). ratio = alternative mean / hyperion mean: above 1, hyperion is faster.\n"
    );
    let header = [
        "workload",
        "at",
        "n",
        "hyperion median",
        "p95",
        "mean",
        "per s",
        "alternative (n)",
        "median",
        "p95",
        "mean",
        "ratio",
    ];
    let mut lines: Vec<Vec<String>> = Vec::new();
    for r in rows {
        for (i, (name, s)) in r.alternatives.iter().enumerate() {
            let mut line = if i == 0 {
                vec![
                    r.workload.to_owned(),
                    r.at(),
                    r.hyperion.samples.to_string(),
                    num_ms(r.hyperion.median),
                    num_ms(r.hyperion.p95),
                    num_ms(r.hyperion.mean),
                    format!("{:.0}", 1.0 / r.hyperion.mean.as_secs_f64()),
                ]
            } else {
                vec![String::new(); 7]
            };
            line.extend([
                format!("{name} ({})", s.samples),
                num_ms(s.median),
                num_ms(s.p95),
                num_ms(s.mean),
                format!("{:.2}x", ratio(s, &r.hyperion)),
            ]);
            lines.push(line);
        }
    }
    // Text columns left, numbers right; a Markdown table that also reads on a terminal.
    let numeric = |c: usize| !matches!(c, 0 | 1 | 7);
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let render = |cells: &[String]| {
        let inner: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(c, s)| {
                if numeric(c) {
                    format!("{s:>w$}", w = widths[c])
                } else {
                    format!("{s:<w$}", w = widths[c])
                }
            })
            .collect();
        format!("| {} |", inner.join(" | "))
    };
    println!("{}", render(&header.map(str::to_owned)));
    let rule: Vec<String> = widths
        .iter()
        .enumerate()
        .map(|(c, &w)| {
            if numeric(c) {
                format!("{}:", "-".repeat(w.saturating_sub(1)))
            } else {
                "-".repeat(w)
            }
        })
        .collect();
    println!("| {} |", rule.join(" | "));
    for l in &lines {
        println!("{}", render(l));
    }

    println!("\nGrowth (mean per operation at the largest size / at the smallest):");
    for g in growth(rows) {
        let sides: Vec<String> = g
            .sides
            .iter()
            .map(|(name, x)| format!("{name} {x:.2}x"))
            .collect();
        println!(
            "- {}, {} -> {}: {}",
            g.first.workload,
            g.first.at(),
            g.last.at(),
            sides.join(", ")
        );
    }

    println!("\nPeak resident memory of `git-hyperion worker --drain --batch-size 32`:");
    for r in rss {
        println!(
            "- {} files, {} requests: {:.1} MiB ({})",
            size_label(r.files),
            r.requests,
            r.kib as f64 / 1024.0,
            r.how
        );
    }
}

fn print_json(plan: &Plan, rows: &[Row], rss: &[Rss], took: Duration) {
    let (tmp, fs) = tmp_fs();
    // Microseconds are the resolution that means anything here.
    let round = |x: f64| (x * 1e3).round() / 1e3;
    let ms = |d: Duration| round(d.as_secs_f64() * 1e3);
    let stats = |s: &Stats| {
        json!({
            "n": s.samples,
            "median_ms": ms(s.median),
            "p95_ms": ms(s.p95),
            "mean_ms": ms(s.mean),
        })
    };
    let mut out = vec![json!({
        "type": "run",
        "quick": plan.quick,
        "files": plan.files,
        "depths": plan.depths,
        "cores": cores(),
        "tmp": tmp,
        "fs": fs,
        "seconds": round(took.as_secs_f64()),
    })];
    for r in rows {
        let mut alternatives = Vec::new();
        for (name, s) in &r.alternatives {
            let mut v = stats(s);
            v["name"] = json!(name);
            v["ratio"] = json!(round(ratio(s, &r.hyperion)));
            alternatives.push(v);
        }
        out.push(json!({
            "type": "row",
            "workload": r.workload,
            "at": r.at(),
            "scale": r.scale,
            "hyperion": stats(&r.hyperion),
            "alternatives": alternatives,
        }));
    }
    for g in growth(rows) {
        out.push(json!({
            "type": "growth",
            "workload": g.first.workload,
            "from": g.first.at(),
            "to": g.last.at(),
            "factors": g.sides.iter().map(|(n, x)| json!({"name": n, "factor": round(*x)})).collect::<Vec<_>>(),
        }));
    }
    for r in rss {
        out.push(json!({
            "type": "rss",
            "files": r.files,
            "requests": r.requests,
            "peak_kib": r.kib,
            "how": r.how,
        }));
    }
    for v in out {
        println!("{v}");
    }
}

// ---------------------------------------------------------------------------------------------
// the SQLite queue

/// The classic alternative: a queue in one SQLite table, as many teams would write it.
///
/// One table, an index on (status, priority, created_at) that serves the claim's ordering, WAL
/// journal with `synchronous=NORMAL` (a commit is not fsynced; a checkpoint is: durable
/// against a crash of the process, not of the machine). Claiming is one
/// `UPDATE … RETURNING` of the first ready row inside `BEGIN IMMEDIATE`; completing is one
/// `UPDATE`. Rows hold the same request JSON hyperion stores, under the same id. Times are
/// nanoseconds on a clock that [`SqliteQueue::travel`] can move, like [`Queue::travel`].
mod sqlite {
    use std::path::Path;
    use std::time::Duration;

    use hyperion::request::model::ChangeRequest;
    use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

    const SCHEMA: &str = "
        CREATE TABLE jobs (
            id           TEXT PRIMARY KEY,
            status       TEXT NOT NULL,
            priority     INTEGER NOT NULL,
            created_at   INTEGER NOT NULL,
            lease_owner  TEXT,
            leased_until INTEGER,
            attempts     INTEGER NOT NULL DEFAULT 0,
            payload      BLOB NOT NULL
        );
        CREATE INDEX jobs_ready ON jobs (status, priority DESC, created_at);";

    pub struct SqliteQueue {
        conn: Connection,
        /// The last time handed out (strictly increasing, as hyperion's).
        last: i64,
        offset: i64,
    }

    /// A leased job, with what its worker needs.
    pub struct Claimed {
        pub id: String,
        pub payload: Vec<u8>,
    }

    /// One row of a listing: every column but the payload. Decoded as a real listing would;
    /// the bench itself only counts them.
    #[allow(dead_code)]
    pub struct Listed {
        pub id: String,
        pub status: String,
        pub priority: i64,
        pub created_at: i64,
        pub lease_owner: Option<String>,
        pub leased_until: Option<i64>,
        pub attempts: i64,
    }

    fn nanos(d: Duration) -> i64 {
        i64::try_from(d.as_nanos()).expect("fits")
    }

    impl SqliteQueue {
        pub fn create(path: &Path) -> SqliteQueue {
            let conn = Connection::open(path).expect("open the database");
            let mode: String = conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
                .expect("journal mode");
            assert_eq!(mode, "wal");
            conn.execute_batch("PRAGMA synchronous = NORMAL;")
                .expect("synchronous");
            conn.execute_batch(SCHEMA).expect("schema");
            SqliteQueue {
                conn,
                last: 0,
                offset: 0,
            }
        }

        fn now(&mut self) -> i64 {
            let wall = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970");
            self.last = (nanos(wall) + self.offset).max(self.last + 1);
            self.last
        }

        pub fn travel(&mut self, by: Duration) {
            self.offset += nanos(by);
        }

        /// Insert a batch in one transaction; an id already present is not inserted again.
        pub fn enqueue(&mut self, reqs: &[ChangeRequest]) -> usize {
            let stamps: Vec<i64> = reqs.iter().map(|_| self.now()).collect();
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .expect("begin");
            let mut inserted = 0;
            {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO jobs (id, status, priority, created_at, payload)
                         VALUES (?1, 'pending', ?2, ?3, ?4)",
                    )
                    .expect("prepare");
                for (req, at) in reqs.iter().zip(stamps) {
                    let payload = serde_json::to_vec(req).expect("json");
                    inserted += insert
                        .execute(params![req.id(), req.priority, at, payload])
                        .expect("insert");
                }
            }
            tx.commit().expect("commit");
            inserted
        }

        /// Lease the first ready job: highest priority, then oldest.
        pub fn claim(&mut self, worker: &str, lease: Duration) -> Option<Claimed> {
            let until = self.now() + nanos(lease);
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .expect("begin");
            let claimed = tx
                .prepare_cached(
                    "UPDATE jobs
                     SET status = 'leased', lease_owner = ?1, leased_until = ?2,
                         attempts = attempts + 1
                     WHERE id = (SELECT id FROM jobs WHERE status = 'pending'
                                 ORDER BY priority DESC, created_at LIMIT 1)
                     RETURNING id, payload",
                )
                .expect("prepare")
                .query_row(params![worker, until], |r| {
                    Ok(Claimed {
                        id: r.get(0)?,
                        payload: r.get(1)?,
                    })
                })
                .optional()
                .expect("claim");
            tx.commit().expect("commit");
            claimed
        }

        /// Finish `worker`'s lease on `id`: applied, or a dead letter. `false` when the lease
        /// is not (or no longer) `worker`'s.
        pub fn complete(&mut self, id: &str, worker: &str, applied: bool) -> bool {
            self.conn
                .prepare_cached(
                    "UPDATE jobs SET status = ?3, lease_owner = NULL, leased_until = NULL
                     WHERE id = ?1 AND status = 'leased' AND lease_owner = ?2",
                )
                .expect("prepare")
                .execute(params![
                    id,
                    worker,
                    if applied { "applied" } else { "dead" }
                ])
                .expect("complete")
                == 1
        }

        /// Return expired leases to the queue; past `max_attempts`, they become dead.
        pub fn sweep(&mut self, max_attempts: i64) -> usize {
            let now = self.now();
            self.conn
                .prepare_cached(
                    "UPDATE jobs
                     SET status = CASE WHEN attempts >= ?2 THEN 'dead' ELSE 'pending' END,
                         lease_owner = NULL, leased_until = NULL
                     WHERE status = 'leased' AND leased_until < ?1",
                )
                .expect("prepare")
                .execute(params![now, max_attempts])
                .expect("sweep")
        }

        /// Every job, oldest first.
        pub fn list(&mut self) -> Vec<Listed> {
            let mut stmt = self
                .conn
                .prepare_cached(
                    "SELECT id, status, priority, created_at, lease_owner, leased_until, attempts
                     FROM jobs ORDER BY created_at, id",
                )
                .expect("prepare");
            stmt.query_map([], |r| {
                Ok(Listed {
                    id: r.get(0)?,
                    status: r.get(1)?,
                    priority: r.get(2)?,
                    created_at: r.get(3)?,
                    lease_owner: r.get(4)?,
                    leased_until: r.get(5)?,
                    attempts: r.get(6)?,
                })
            })
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
        }
    }
}

// ---------------------------------------------------------------------------------------------
// the floor of a queue kept in git

/// What any queue that keeps its requests as git refs and objects must do per transition,
/// and nothing else: the lower bound hyperion's lease + complete is measured against.
///
/// A transition is a new commit (one loose object) and a compare-and-swap of the request's
/// ref under git's lock protocol (take `<ref>.lock` exclusively, write it, check the ref's
/// old value, rename the lock over the ref). Files are reused the way hyperion reuses them
/// (`src/git/spare.rs`): a replaced ref file and the loose objects (rolled into a pack every 256)
/// become the next locks and temporary files, so that a steady stream of transitions neither
/// creates nor frees inodes. Left out: hashing, compressing and formatting the commit, the
/// record and event, the index, the update counter, the safety checks on reused files, the
/// pack the rolled objects go into. The object bytes are a fixed 800-byte stand-in.
mod floor {
    use std::io::Read;
    use std::os::unix::fs::FileExt;
    use std::path::{Path, PathBuf};

    pub struct GitFloor {
        refs: PathBuf,
        objects: PathBuf,
        spares: PathBuf,
        /// Reusable files, by path.
        free: Vec<PathBuf>,
        /// Loose objects written since the last roll.
        loose: Vec<PathBuf>,
        counter: u64,
        /// The ids of the refs, one per request, and the next to use.
        ids: Vec<String>,
        next: usize,
        object: Vec<u8>,
    }

    impl GitFloor {
        /// A queue directory with `depth` refs and git's 256 object directories, warmed by
        /// 600 untimed transitions: past the first roll, files are reused.
        pub fn create(dir: &Path, depth: usize) -> GitFloor {
            let refs = dir.join("refs/hyperion/requests");
            let objects = dir.join("objects");
            let spares = dir.join("spares");
            for d in [&refs, &spares] {
                std::fs::create_dir_all(d).expect("mkdir");
            }
            for i in 0..=255u8 {
                std::fs::create_dir_all(objects.join(format!("{i:02x}"))).expect("mkdir");
            }
            let ids: Vec<String> = (0..depth).map(|i| format!("{:016x}", i * 7919)).collect();
            for id in &ids {
                std::fs::write(refs.join(id), format!("{}\n", "1".repeat(40))).expect("ref");
            }
            let mut floor = GitFloor {
                refs,
                objects,
                spares,
                free: Vec::new(),
                loose: Vec::new(),
                counter: 0,
                ids,
                next: 0,
                object: vec![b'x'; 800],
            };
            for _ in 0..600 {
                floor.transition();
            }
            floor
        }

        fn name(&mut self) -> u64 {
            self.counter += 1;
            self.counter
        }

        /// A file at `dest`, reused if one is free (`exclusive`: fail if `dest` exists, as
        /// taking a lock must), else created.
        fn take(&mut self, dest: &Path, exclusive: bool) -> std::fs::File {
            if let Some(spare) = self.free.pop() {
                #[cfg(target_os = "linux")]
                {
                    let flags = if exclusive {
                        rustix::fs::RenameFlags::NOREPLACE
                    } else {
                        rustix::fs::RenameFlags::empty()
                    };
                    let cwd = rustix::fs::CWD;
                    rustix::fs::renameat_with(cwd, &spare, cwd, dest, flags).expect("take a spare");
                }
                // Elsewhere a link fails as an exclusive rename would, at one more call.
                #[cfg(not(target_os = "linux"))]
                if exclusive {
                    std::fs::hard_link(&spare, dest).expect("take a spare");
                    std::fs::remove_file(&spare).expect("take a spare");
                } else {
                    std::fs::rename(&spare, dest).expect("take a spare");
                }
                return std::fs::OpenOptions::new()
                    .write(true)
                    .open(dest)
                    .expect("open");
            }
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(dest)
                .expect("create")
        }

        /// One transition of the next request: a loose object, then its ref moved to it.
        pub fn transition(&mut self) {
            let n = self.name();
            let hex = format!("{n:040x}");
            let dir = self.objects.join(&hex[38..]);
            let tmp = dir.join(format!("tmp_obj_{n}"));
            let file = self.take(&tmp, false);
            file.write_all_at(&self.object, 0).expect("write");
            file.set_len(self.object.len() as u64).expect("truncate");
            drop(file);
            let path = dir.join(&hex[..38]);
            std::fs::rename(&tmp, &path).expect("rename");
            self.loose.push(path);
            if self.loose.len() == 256 {
                // Rolled into a pack (not written here); the files become spares.
                for path in std::mem::take(&mut self.loose) {
                    let n = self.name();
                    let spare = self.spares.join(format!("o-{n}"));
                    std::fs::rename(&path, &spare).expect("keep");
                    self.free.push(spare);
                }
            }

            let id = self.ids[self.next % self.ids.len()].clone();
            self.next += 1;
            let path = self.refs.join(&id);
            let lock = self.refs.join(format!("{id}.lock"));
            let file = self.take(&lock, true);
            let mut old = Vec::with_capacity(64);
            std::fs::File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut old))
                .expect("read the ref");
            assert_eq!(old.len(), 41, "the old value is checked");
            // As hyperion does: the block allocated before the rename (see src/git/refs.rs).
            #[cfg(target_os = "linux")]
            let _ = rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::KEEP_SIZE, 0, 41);
            file.write_all_at(format!("{hex}\n").as_bytes(), 0)
                .expect("write");
            file.set_len(41).expect("truncate");
            drop(file);
            let n = self.name();
            let spare = self.spares.join(format!("r-{n}"));
            std::fs::hard_link(&path, &spare).expect("keep");
            std::fs::rename(&lock, &path).expect("commit");
            self.free.push(spare);
        }
    }
}
