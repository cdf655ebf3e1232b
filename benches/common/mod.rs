//! What the bench targets share: the tests' hermetic git runner, timing statistics, generated
//! repositories, patches and requests, and both sides of the apply + land comparison —
//! hyperion's worker in process, and shell scripts doing the same work with plain git.
//!
//! Nothing here asserts a timing; the helpers assert only that the work was done (every
//! request landed, every git command succeeded).

// Each bench target compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hyperion::gate::worker::{Disposition, Mode, Options, Report, Stop, Worker};
use hyperion::queue::Queue;
use hyperion::queue::store::Store;
use hyperion::request::model::{Change, ChangeRequest, Operation, SCHEMA_V1, sha256_hex};

// ---------------------------------------------------------------------------------------------
// git

/// The tests' hermetic environment (git's configuration, identity and date fixed, so runs do
/// not depend on the machine's settings): the same file, not a copy.
#[path = "../../tests/common/hermetic.rs"]
pub mod hermetic;

/// The tests' replay of a repository's own history as patches: the same file, not a copy.
#[path = "../../tests/common/history.rs"]
pub mod history;

pub use hermetic::{bin, git};

/// Run `git-hyperion ARGS` in `repo` as its own process (actor `bench`); how long it took,
/// start to exit, and what it printed. Panics when it fails.
pub fn hyperion(repo: &Path, args: &[&str]) -> (Duration, String) {
    match run(repo, args) {
        (took, Some(0), out) => (took, out),
        (_, _, said) => panic!("git-hyperion {args:?} failed: {said}"),
    }
}

/// [`hyperion`], but a refusal by the gate (exit 1) is `None` instead of a panic.
pub fn hyperion_refused(repo: &Path, args: &[&str]) -> Option<(Duration, String)> {
    match run(repo, args) {
        (took, Some(0), out) => Some((took, out)),
        (_, Some(1), _) => None,
        (_, _, said) => panic!("git-hyperion {args:?} failed: {said}"),
    }
}

/// `git-hyperion ARGS` in `repo`, timed: how long, its exit code, and its stdout (with its
/// stderr after it when it failed).
fn run(repo: &Path, args: &[&str]) -> (Duration, Option<i32>, String) {
    let t = Instant::now();
    let out = hermetic::command(bin(), repo, repo)
        .args(args)
        .env("HYPERION_ACTOR", "bench")
        .output()
        .expect("git-hyperion runs");
    let took = t.elapsed();
    let mut said = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        said.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    (took, out.status.code(), said)
}

/// The tree id of `rev` in `repo`.
pub fn tree_of(repo: &Path, rev: &str) -> String {
    git(repo, &["rev-parse", &format!("{rev}^{{tree}}")])
        .trim()
        .to_owned()
}

pub fn clone_bare(seed: &Path, to: &Path) {
    git(
        seed.parent().expect("parent"),
        &[
            "clone",
            "-q",
            "--bare",
            "--no-local",
            seed.to_str().expect("utf-8"),
            to.to_str().expect("utf-8"),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// statistics

pub fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

pub fn p95(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[(v.len() * 95 / 100).min(v.len() - 1)]
}

pub fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// Median, 95th percentile and mean of per-operation timings.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub median: Duration,
    pub p95: Duration,
    /// Sum over count: when the samples are the gaps between completions, the whole run
    /// divided by its operations (the inverse of throughput).
    pub mean: Duration,
    pub samples: usize,
}

impl Stats {
    pub fn of(samples: &[Duration]) -> Stats {
        assert!(!samples.is_empty(), "no samples");
        Stats {
            median: median(samples),
            p95: p95(samples),
            mean: samples.iter().sum::<Duration>() / samples.len() as u32,
            samples: samples.len(),
        }
    }
}

/// Each request's share of a worker's run: the worker reports a batch's requests together when
/// it lands them, so the time from the previous burst of reports to the end of this one (its
/// lease included) is divided among the burst's requests. The sum is the whole run.
pub fn shares(start: Instant, ends: &[Instant]) -> Vec<Duration> {
    let mut out = Vec::with_capacity(ends.len());
    let mut burst_start = 0;
    let mut prev_end = start;
    for i in 0..ends.len() {
        let last_of_burst =
            i + 1 == ends.len() || ends[i + 1].duration_since(ends[i]) > Duration::from_micros(200);
        if last_of_burst {
            let k = (i + 1 - burst_start) as u32;
            let share = ends[i].duration_since(prev_end) / k;
            out.extend(std::iter::repeat_n(share, k as usize));
            prev_end = ends[i];
            burst_start = i + 1;
        }
    }
    out
}

/// A linked worktree of `repo` at `wt`, detached at `main`.
pub fn add_worktree(repo: &Path, wt: &Path) {
    git(
        repo,
        &[
            "worktree",
            "add",
            "-q",
            "--detach",
            wt.to_str().expect("utf-8"),
            "main",
        ],
    );
}

/// The outcome of one lease + complete cycle: landed, or a dead letter of class `check`.
pub fn cycle_outcome(applied: bool) -> hyperion::queue::Outcome {
    use hyperion::queue::Outcome;
    use hyperion::request::model::{DeadClass, ErrorInfo};
    if applied {
        Outcome::Applied {
            commit: "0".repeat(40),
            artifacts: Vec::new(),
        }
    } else {
        Outcome::Failed {
            class: DeadClass::Check,
            error: ErrorInfo {
                code: "check.failed".into(),
                message: "bench".into(),
            },
            transient: false,
            artifacts: Vec::new(),
        }
    }
}

/// Create git's 256 loose-object directories (`objects/00` … `objects/ff`) in `repo`'s git
/// directory, as a repository that has stored loose objects since its last `gc` has them.
/// Queue transitions write loose objects; in a fresh repository (here, one whose objects
/// are all packed) the first object into each directory also creates the directory, which
/// on this machine's ext4 costs as much as a few transitions (a new inode, see [`settle`]).
/// Timed phases that should show the steady cost call this first; the docs report the cold
/// one apart.
pub fn object_dirs(repo: &Path) {
    let common = git(
        repo,
        &["rev-parse", "--path-format=absolute", "--git-common-dir"],
    );
    let objects = PathBuf::from(common.trim()).join("objects");
    for i in 0..=255u8 {
        std::fs::create_dir_all(objects.join(format!("{i:02x}"))).expect("mkdir");
    }
}

/// Let the file system forget the files an earlier phase deleted. On ext4 without a journal
/// (this machine's /tmp) every file creation skips, one by one, each inode freed in the last
/// ~30 s (the kernel's `recently_deleted` check), so a phase that follows one that deleted
/// thousands of files (a clone, a script's index locks, a temporary directory) pays for its
/// predecessor. Both sides get the same pause.
pub fn settle() {
    let _ = Command::new("sync").status();
    std::thread::sleep(Duration::from_secs(31));
}

// ---------------------------------------------------------------------------------------------
// generated repositories and requests

/// Lines per generated file.
pub const LINES: usize = 20;

pub fn file_name(i: usize) -> String {
    format!("src/m{:02}/f{i}.txt", i % 50)
}

/// A repository with `files` files of [`LINES`] lines each and a policy with one trivial
/// check (`trivial`: `true`), made in `dir/seed`. Clone it bare for each side: `main` is then
/// checked out nowhere (a server, a CI mirror), so landing moves only the ref.
pub fn generate(dir: &Path, files: usize) -> PathBuf {
    let work = dir.join("seed");
    std::fs::create_dir_all(&work).expect("mkdir");
    git(&work, &["init", "-q", "-b", "main"]);
    for i in 0..files {
        let p = work.join(file_name(i));
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        let body: String = (0..LINES).map(|l| format!("file {i} line {l}\n")).collect();
        std::fs::write(p, body).expect("write");
    }
    std::fs::create_dir_all(work.join(".hyperion")).expect("mkdir");
    std::fs::write(
        work.join(".hyperion/policy.toml"),
        "[checks.trivial]\nrun = [\"true\"]\n",
    )
    .expect("write");
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "base"]);
    work
}

/// A one-file repository in `dir` (already existing), for queue workloads.
pub fn init_small(dir: &Path) {
    git(dir, &["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("README"), "bench\n").expect("write");
    git(dir, &["add", "README"]);
    git(dir, &["commit", "-q", "-m", "init"]);
}

fn blob_id(data: &str) -> String {
    gix::objs::compute_hash(
        gix::hash::Kind::Sha1,
        gix::object::Kind::Blob,
        data.as_bytes(),
    )
    .expect("hashes")
    .to_string()
}

/// Patch `k` against a [`generate`]d repository: one line of file `k` (every patch touches a
/// different file), with the `index` line `git diff` writes, so both hyperion and
/// `git apply --3way` can use the preimage.
pub fn patch(k: usize) -> String {
    let name = file_name(k);
    let l = LINES / 2;
    let old: String = (0..LINES).map(|x| format!("file {k} line {x}\n")).collect();
    let new = old.replace(
        &format!("file {k} line {l}\n"),
        &format!("file {k} line {l} changed\n"),
    );
    format!(
        "diff --git a/{name} b/{name}\nindex {}..{} 100644\n--- a/{name}\n+++ b/{name}\n@@ -{},7 +{},7 @@\n{}-file {k} line {l}\n+file {k} line {l} changed\n{}",
        &blob_id(&old)[..7],
        &blob_id(&new)[..7],
        l - 2,
        l - 2,
        (l - 3..l)
            .map(|x| format!(" file {k} line {x}\n"))
            .collect::<String>(),
        (l + 1..l + 4)
            .map(|x| format!(" file {k} line {x}\n"))
            .collect::<String>()
    )
}

/// Patch `k` as a request, as `git hyperion enqueue --patch` would make it.
pub fn patch_request(k: usize, checks: &[String]) -> ChangeRequest {
    hyperion::request::patch::wrap(&patch(k), &format!("T-{k}"), "bench", None, checks)
        .expect("wraps")
}

/// Patches `range` as files `dir/NNNNN.diff`, in order.
pub fn write_patches(dir: &Path, range: std::ops::Range<usize>) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).expect("mkdir");
    range
        .map(|k| {
            let p = dir.join(format!("{k:05}.diff"));
            std::fs::write(&p, patch(k)).expect("write");
            p
        })
        .collect()
}

/// Request `i` of a queue workload: it adds one new file, so any number of them fit the
/// one-file repository of [`init_small`]. `salt` makes distinct sets.
pub fn add_request(i: usize, salt: &str) -> ChangeRequest {
    adding(
        format!("src/f{i}.txt"),
        &format!("new {i} {salt}"),
        format!("TASK-{i}"),
        format!("change {i}"),
        (i % 10) as u8,
    )
}

/// A request adding the file `path` (under `src/`) whose one line is `line`, with the task
/// id, title and priority given: the one way the bench targets build an adding request.
pub fn adding(
    path: String,
    line: &str,
    task_id: String,
    title: String,
    priority: u8,
) -> ChangeRequest {
    let patch = format!("--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+{line}\n");
    ChangeRequest {
        schema: SCHEMA_V1.into(),
        task_id,
        agent: "bench".into(),
        title,
        description: None,
        kind: None,
        priority,
        base: None,
        target: None,
        file_targets: vec!["src/**".into()],
        changes: vec![Change {
            path,
            operation: Operation::Add,
            from: None,
            sha256: sha256_hex(patch.as_bytes()),
            patch,
        }],
        checks: vec![],
        depends_on: vec![],
    }
}

// ---------------------------------------------------------------------------------------------
// apply + land: hyperion's side

/// A worker's run: every request's report and its share of the time.
pub struct Drained {
    /// Each request's share of the run (see [`shares`]).
    pub gaps: Vec<Duration>,
    pub reports: Vec<Report>,
}

/// Enqueue `reqs` in `repo` (not timed), then drain the queue with one in-process worker,
/// leasing 32 at a time. Asserts that every request landed. `pause` runs just before the
/// clock starts.
pub fn drain_in_process(repo: &Path, reqs: &[ChangeRequest], pause: fn()) -> Drained {
    let queue = Queue::open(Store::discover(repo).expect("repo")).expect("queue");
    queue.enqueue(reqs, "bench").expect("enqueue");
    queue.close_index();
    if reqs.iter().any(|r| !r.checks.is_empty()) {
        // Like the scripts' worktree, the check slot exists before the clock starts (a
        // long-running worker keeps it); the worker's first move is still a full one.
        let repo = queue.store().repo();
        let mut slot = hyperion::gate::worktree::Pool::new(repo.common_dir())
            .acquire(repo.git_dir())
            .expect("slot");
        let main = repo
            .find_reference("refs/heads/main")
            .expect("main")
            .into_fully_peeled_id()
            .expect("peeled")
            .detach();
        slot.checkout(repo, main).expect("checkout");
    }
    pause();
    let worker = Worker::new(&queue, "bench-worker".into(), None);
    let mut ends = Vec::with_capacity(reqs.len());
    // `HYPERION_BENCH_OBS=1`: as `worker --metrics-addr` runs, live metrics fed from every
    // report and step and a log subscriber at the default level (warnings), to measure what
    // observability costs.
    let obs = std::env::var_os("HYPERION_BENCH_OBS").is_some_and(|v| v == "1");
    let metrics = obs.then(hyperion::obs::metrics::WorkerMetrics::new);
    if obs {
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_writer(std::io::sink)
            .try_init();
    }
    let start = Instant::now();
    let reports = worker
        .run(
            &Options {
                batch: 32,
                mode: Mode::Drain,
                poll: Duration::from_millis(50),
            },
            &Stop::default(),
            &mut |r| {
                if let Some(m) = &metrics {
                    m.report(r);
                }
                ends.push(Instant::now());
            },
            &mut |p| {
                if let Some(m) = &metrics {
                    m.progress(p);
                }
            },
        )
        .expect("worker runs");
    // The run's end (a repack it started in the background, which it waits for) is part of
    // its last batch.
    let finished = Instant::now();
    let landed = reports
        .iter()
        .filter(|r| r.result == Disposition::Landed)
        .count();
    assert_eq!(
        landed,
        reqs.len(),
        "every request lands: {:?}",
        reports.first()
    );
    let mut gaps = shares(start, &ends);
    if let (Some(last), Some(end)) = (gaps.last_mut(), ends.last()) {
        *last += finished.duration_since(*end);
    }
    Drained { gaps, reports }
}

// ---------------------------------------------------------------------------------------------
// apply + land: the plain-git scripts

/// How a script gets a working tree for each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// One worktree, added before the run and reused: per request `git checkout --detach`
    /// of the current `main`, `git apply --3way --index`, the check, `git commit`,
    /// `git update-ref main NEW OLD`.
    Reused,
    /// A fresh `git worktree add` per request, the same steps, then `git worktree remove`.
    Fresh,
}

/// Run `script` over `patches`, in order, on bare repository `repo`, with worktrees under
/// `scratch` (the reused one is added by the first call, not timed, and kept for later calls);
/// `check` runs `/bin/true` in the worktree before committing (a process, as hyperion's check
/// is). Returns the gap before each request's completion, taken by the script itself (bash's
/// `$EPOCHREALTIME`, no process per timestamp).
pub fn run_script(
    script: Script,
    repo: &Path,
    scratch: &Path,
    patches: &[PathBuf],
    check: bool,
    pause: fn(),
) -> Vec<Duration> {
    std::fs::create_dir_all(scratch).expect("mkdir");
    let list = scratch.join("patches.list");
    let names: String = patches
        .iter()
        .map(|p| format!("{}\n", p.display()))
        .collect();
    std::fs::write(&list, names).expect("write");
    let check = if check { "/bin/true" } else { ":" };
    // `one PATCH` takes one request from `main` to `main`.
    let one = match script {
        Script::Reused => {
            let wt = scratch.join("wt");
            if !wt.exists() {
                add_worktree(repo, &wt);
            }
            format!(
                r#"cd '{wt}'
one() {{
  old=$(git rev-parse refs/heads/main)
  git checkout -q --detach "$old"
  git apply --3way --index "$1" 2>/dev/null
  {check}
  git commit -q -m "request $1"
  git update-ref refs/heads/main "$(git rev-parse HEAD)" "$old"
}}"#,
                wt = wt.display(),
            )
        }
        Script::Fresh => format!(
            r#"cd '{repo}'
n=0
one() {{
  n=$((n + 1))
  wt='{scratch}'/wt-$n
  old=$(git rev-parse refs/heads/main)
  git worktree add -q --detach "$wt" "$old"
  git -C "$wt" apply --3way --index "$1" 2>/dev/null
  (cd "$wt" && {check})
  git -C "$wt" commit -q -m "request $1"
  git update-ref refs/heads/main "$(git -C "$wt" rev-parse HEAD)" "$old"
  git worktree remove --force "$wt"
}}"#,
            repo = repo.display(),
            scratch = scratch.display(),
        ),
    };
    let body = format!(
        r#"set -euo pipefail
{one}
echo "$EPOCHREALTIME"
while IFS= read -r p; do one "$p"; echo "$EPOCHREALTIME"; done < '{list}'
"#,
        list = list.display(),
    );
    pause();
    let out = hermetic::command("bash", scratch, scratch)
        .arg("-c")
        .arg(body)
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "the {script:?} script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stamps: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().parse().expect("an $EPOCHREALTIME stamp"))
        .collect();
    assert_eq!(stamps.len(), patches.len() + 1, "one stamp per request");
    stamps
        .windows(2)
        .map(|w| Duration::from_secs_f64((w[1] - w[0]).max(0.0)))
        .collect()
}
