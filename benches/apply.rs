//! Apply and land, side by side with a plain-git script doing the same work.
//!
//! On a generated repository (1,000 files with `-- --quick`, else 5,000), N requests each
//! change one line of a different file, written against the same base. hyperion's worker
//! takes them through its whole pipeline in one process (lease, validation against the target,
//! in-memory apply, commit, compare-and-swap of `main`, note, record). The script does what a
//! careful shell loop around git does with one reused worktree: checkout, `git apply --3way
//! --index`, commit, `update-ref` with the old value. Both run on identical copies of the
//! repository, in the same invocation. Nothing here asserts a timing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hyperion::queue::Queue;
use hyperion::store::Store;
use hyperion::worker::{Mode, Options, Result_, Stop, Worker};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const LINES: usize = 20;

fn file_name(i: usize) -> String {
    format!("src/m{:02}/f{i}.txt", i % 50)
}

/// A repository with `files` files; `main` is not checked out anywhere (a server, a CI
/// mirror), so landing moves only the ref.
fn generate(dir: &Path, files: usize) -> PathBuf {
    let work = dir.join("seed");
    std::fs::create_dir_all(&work).expect("mkdir");
    git(&work, &["init", "-q", "-b", "main"]);
    for i in 0..files {
        let p = work.join(file_name(i));
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        let body: String = (0..LINES).map(|l| format!("file {i} line {l}\n")).collect();
        std::fs::write(p, body).expect("write");
    }
    // A trivial check for the second workload.
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

fn blob_id(data: &str) -> String {
    gix::objs::compute_hash(
        gix::hash::Kind::Sha1,
        gix::object::Kind::Blob,
        data.as_bytes(),
    )
    .expect("hashes")
    .to_string()
}

/// Patch `k`: one line of file `k` (every request touches a different file), with the
/// `index` line `git diff` writes, so both sides can use the preimage.
fn patch(k: usize) -> String {
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

fn clone_bare(seed: &Path, to: &Path) {
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

/// Each request's share of the pipeline: the worker reports a batch's requests together when
/// it lands them, so the time from the previous burst of reports to the end of this one,
/// its lease included, is divided among the burst's requests.
fn per_request(started: Instant, at: &[Instant]) -> Vec<Duration> {
    let mut out = Vec::with_capacity(at.len());
    let mut burst_start = 0;
    let mut prev_end = started;
    for i in 0..at.len() {
        let last_of_burst =
            i + 1 == at.len() || at[i + 1].duration_since(at[i]) > Duration::from_micros(200);
        if last_of_burst {
            let k = (i + 1 - burst_start) as u32;
            let share = at[i].duration_since(prev_end) / k;
            out.extend(std::iter::repeat_n(share, k as usize));
            prev_end = at[i];
            burst_start = i + 1;
        }
    }
    out
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn p95(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[(v.len() * 95 / 100).min(v.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

struct Figures {
    hy_per: Duration,
    hy_median: Duration,
    hy_p95: Duration,
    sc_per: Duration,
}

/// Requests `range` through hyperion and through the script, on fresh copies of `seed`.
/// Let the file system forget the files the previous phase deleted. On ext4 without a
/// journal (this machine's /tmp) every file creation skips, one by one, each inode freed in
/// the last ~30 s (the kernel's `recently_deleted` check), so a phase that follows one that
/// deleted thousands of files (a clone, the script's index locks, a temporary directory) pays
/// for its predecessor. Both sides get the same pause; `--quick` skips it.
fn settle(quick: bool) {
    if !quick {
        let _ = Command::new("sync").status();
        std::thread::sleep(Duration::from_secs(31));
    }
}

fn run_pair(
    tmp: &Path,
    seed: &Path,
    range: std::ops::Range<usize>,
    check: bool,
    quick: bool,
) -> Figures {
    let n = range.len();
    let tag = if check { "check" } else { "plain" };
    let patches = tmp.join(format!("patches-{tag}"));
    std::fs::create_dir_all(&patches).expect("mkdir");
    for k in range.clone() {
        std::fs::write(patches.join(format!("{k:05}.diff")), patch(k)).expect("write");
    }
    let checks: Vec<String> = if check {
        vec!["trivial".into()]
    } else {
        Vec::new()
    };

    // hyperion: enqueue everything, then one worker drains the queue in this process.
    let hy = tmp.join(format!("hyperion-{tag}.git"));
    clone_bare(seed, &hy);
    let queue = Queue::open(Store::discover(&hy).expect("repo")).expect("queue");
    let reqs: Vec<_> = range
        .clone()
        .map(|k| {
            hyperion::patch::wrap(&patch(k), &format!("T-{k}"), "bench", None, &checks)
                .expect("wraps")
        })
        .collect();
    queue.enqueue(&reqs, "bench").expect("enqueue");
    queue.close_index().expect("close");
    if check {
        // As the script's worktree, the worker's slot exists before the clock starts (a
        // long-running worker keeps it); its first move is still a full one.
        let repo = queue.store().repo();
        let mut slot = hyperion::worktree::Pool::new(repo.common_dir())
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
    let worker = Worker::new(&queue, "bench-worker".into(), None);
    let mut at = Vec::new();
    settle(quick);
    let started = Instant::now();
    let reports = worker
        .run(
            &Options {
                id: "bench-worker".into(),
                lease: None,
                batch: 32,
                mode: Mode::Drain,
                poll: Duration::from_millis(50),
            },
            &Stop::default(),
            &mut |_| at.push(Instant::now()),
            &mut |_| {},
        )
        .expect("worker runs");
    let hy_per = started.elapsed() / n as u32;
    let per_request = per_request(started, &at);
    let landed = reports
        .iter()
        .filter(|r| r.result == Result_::Landed)
        .count();
    assert_eq!(landed, n, "every request lands: {:?}", reports.first());

    // The plain-git script: one reused worktree.
    let sc = tmp.join(format!("script-{tag}.git"));
    clone_bare(seed, &sc);
    let wt = tmp.join(format!("script-wt-{tag}"));
    git(
        &sc,
        &[
            "worktree",
            "add",
            "-q",
            "--detach",
            wt.to_str().expect("utf-8"),
            "main",
        ],
    );
    let script = format!(
        r#"set -e
cd '{wt}'
for p in '{patches}'/*.diff; do
  old=$(git rev-parse refs/heads/main)
  git checkout -q --detach "$old"
  git apply --3way --index "$p" 2>/dev/null
  {check}
  git commit -q -m "request $p"
  git update-ref refs/heads/main "$(git rev-parse HEAD)" "$old"
done
"#,
        wt = wt.display(),
        patches = patches.display(),
        check = if check { "true" } else { ":" }
    );
    settle(quick);
    let started = Instant::now();
    let st = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .status()
        .expect("bash runs");
    assert!(st.success(), "the script failed");
    let sc_per = started.elapsed() / n as u32;
    let t1 = git(&hy, &["rev-parse", "main^{tree}"]);
    let t2 = git(&sc, &["rev-parse", "main^{tree}"]);
    assert_eq!(t1, t2, "hyperion and the script end on different trees");
    Figures {
        hy_per,
        hy_median: median(per_request.clone()),
        hy_p95: p95(per_request),
        sc_per,
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (files, n, n_check) = if quick {
        (1_000, 40, 10)
    } else {
        (5_000, 400, 100)
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let seed = generate(tmp.path(), files);
    println!(
        "apply + land on a {files}-file repository ({})",
        if quick { "quick" } else { "full" }
    );
    println!(
        "{:<44} {:>12} {:>12} {:>12} {:>12} {:>8}",
        "workload", "hyperion", "median", "p95", "script", "ratio"
    );
    for (label, range, check, target) in [
        (
            format!("no checks, {n} requests"),
            0..n,
            false,
            ">= 20x, <= 1 ms",
        ),
        (
            format!("trivial check (true), {n_check} requests"),
            n..n + n_check,
            true,
            ">= 5x",
        ),
    ] {
        let f = run_pair(tmp.path(), &seed, range, check, quick);
        println!(
            "{:<44} {:>12} {:>12} {:>12} {:>12} {:>7.1}x  target {target}",
            label,
            ms(f.hy_per),
            ms(f.hy_median),
            ms(f.hy_p95),
            ms(f.sc_per),
            f.sc_per.as_secs_f64() / f.hy_per.as_secs_f64()
        );
    }
}
