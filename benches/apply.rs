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

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (files, n) = if quick { (1_000, 40) } else { (5_000, 400) };
    let tmp = tempfile::tempdir().expect("temp dir");
    let seed = generate(tmp.path(), files);
    let patches = tmp.path().join("patches");
    std::fs::create_dir_all(&patches).expect("mkdir");
    for k in 0..n {
        std::fs::write(patches.join(format!("{k:05}.diff")), patch(k)).expect("write");
    }
    println!(
        "apply + land, {n} requests on a {files}-file repository ({})",
        if quick { "quick" } else { "full" }
    );

    // hyperion: enqueue everything, then one worker process drains the queue.
    let hy = tmp.path().join("hyperion.git");
    clone_bare(&seed, &hy);
    let store = Store::discover(&hy).expect("repo");
    let queue = Queue::open(store).expect("queue");
    let reqs: Vec<_> = (0..n)
        .map(|k| {
            hyperion::patch::wrap(&patch(k), &format!("T-{k}"), "bench", None, &[]).expect("wraps")
        })
        .collect();
    queue.enqueue(&reqs, "bench").expect("enqueue");
    queue.close_index().expect("close");
    let worker = Worker::new(&queue, "bench-worker".into(), None);
    let mut per_request = Vec::new();
    let started = Instant::now();
    let mut last = started;
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
            &mut |_| {
                // Time between consecutive reports: each request's share of the pipeline,
                // its batch's lease included.
                let now = Instant::now();
                per_request.push(now - last);
                last = now;
            },
            &mut |_| {},
        )
        .expect("worker runs");
    let hy_total = started.elapsed();
    let landed = reports
        .iter()
        .filter(|r| r.result == Result_::Landed)
        .count();
    assert_eq!(landed, n, "every request lands");
    let hy_per = hy_total / n as u32;
    if std::env::args().any(|a| a == "--hyperion-only") {
        println!("hyperion: {} per request", ms(hy_per));
        return;
    }

    // The plain-git script: one reused worktree.
    let sc = tmp.path().join("script.git");
    clone_bare(&seed, &sc);
    let wt = tmp.path().join("script-wt");
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
  git commit -q -m "request $p"
  git update-ref refs/heads/main "$(git rev-parse HEAD)" "$old"
done
"#,
        wt = wt.display(),
        patches = patches.display()
    );
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
    let sc_total = started.elapsed();
    let sc_per = sc_total / n as u32;

    // Same result: the two branches hold the same tree.
    let t1 = git(&hy, &["rev-parse", "main^{tree}"]);
    let t2 = git(&sc, &["rev-parse", "main^{tree}"]);
    assert_eq!(t1, t2, "hyperion and the script end on different trees");

    println!("{:<52} {:>12} {:>12}", "workload", "per request", "p95");
    println!(
        "{:<52} {:>12} {:>12}",
        "hyperion worker, whole pipeline (median between reports)",
        ms(median(per_request.clone())),
        ms(p95(per_request))
    );
    println!(
        "{:<52} {:>12}",
        "hyperion worker, wall time / requests",
        ms(hy_per)
    );
    println!(
        "{:<52} {:>12}",
        "plain-git script (checkout, apply --3way, commit, update-ref)",
        ms(sc_per)
    );
    println!(
        "speed-up: {:.1}x (target >= 20x; target per request <= 1 ms)",
        sc_per.as_secs_f64() / hy_per.as_secs_f64()
    );
}
