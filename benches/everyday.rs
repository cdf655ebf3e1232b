//! The everyday path, as a person or a CI job meets it: one process per command, one request
//! at a time, timed from the process's start to its exit.
//!
//! ```text
//! cargo bench --bench everyday -- [--quick] [--commits N] [--requests N] [--files N]
//! ```
//!
//! Two workloads, each against a plain-git script doing the same work in the same run
//! ([`common::run_script`]: one reused worktree, `git checkout`, `git apply --3way --index`,
//! `git commit`, `git update-ref` with the old value):
//! - **history**: the last `--commits` first-parent commits of this repository's own history
//!   (`git diff --full-index --binary` of each against its parent), replayed in order on a bare
//!   clone of their base. Per commit: `git hyperion enqueue --patch FILE`, then
//!   `git hyperion worker --drain`. A commit the gate refuses (this repository's history holds
//!   test fixtures that look like secrets) is counted, and folded into the next request: the
//!   diff from the last landed commit. Both sides must end on the tree of the last commit.
//! - **generated**: a [`common::generate`]d repository of `--files` files; `--requests` one-line
//!   requests, each enqueued and drained alone, and `git hyperion list` after each.
//!
//! `main` is checked out nowhere (a server, a CI mirror). Nothing here asserts a timing; it
//! asserts that both sides did the same work.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Script, Stats, clone_bare, git, history, hyperion, ms, tree_of};

const USAGE: &str = "usage: cargo bench --bench everyday -- [--quick] [--commits N] \
                     [--requests N] [--files N]";

struct Args {
    quick: bool,
    commits: usize,
    requests: usize,
    files: usize,
}

fn args() -> Args {
    let mut a = Args {
        quick: false,
        commits: 120,
        requests: 60,
        files: 5_000,
    };
    let mut it = std::env::args().skip(1).filter(|x| x != "--bench");
    while let Some(arg) = it.next() {
        let mut number = || -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{arg} wants a number\n{USAGE}"))
        };
        match arg.as_str() {
            "--quick" => {
                a.quick = true;
                a.commits = 8;
                a.requests = 5;
                a.files = 1_000;
            }
            "--commits" => a.commits = number(),
            "--requests" => a.requests = number(),
            "--files" => a.files = number(),
            _ => panic!("unknown argument {arg}\n{USAGE}"),
        }
    }
    a
}

/// What one request costs a person, command by command.
struct Sequential {
    enqueue: Vec<Duration>,
    drain: Vec<Duration>,
    list: Vec<Duration>,
    /// Requests the gate refused at enqueue (folded into the next one).
    refused: usize,
}

/// Enqueue and drain each of `patches` in order, one process per command, on bare `repo`.
/// With `fold`, a patch the gate refuses is counted and not drained, and the next request is
/// `fold(from, to)`: the diff from the last landed commit (`from`, an index into the
/// history's commits, where patch `i` goes from commit `i` to `i + 1`) to the next one.
fn one_at_a_time(
    repo: &Path,
    patches: &[PathBuf],
    list: bool,
    fold: Option<&dyn Fn(usize, usize) -> PathBuf>,
) -> Sequential {
    let mut s = Sequential {
        enqueue: Vec::new(),
        drain: Vec::new(),
        list: Vec::new(),
        refused: 0,
    };
    hyperion(repo, &["init", "--target", "main"]);
    // A commit that makes a file executable waits for a person's approval (its risk tier):
    // the benchmark approves it as that person would, untimed.
    git(repo, &["config", "hyperion.approvers", "bench"]);
    // The commit the target is at, when it lags behind a refused patch.
    let mut behind: Option<usize> = None;
    for (i, p) in patches.iter().enumerate() {
        let task = format!("T-{i}");
        let folded;
        let file = match (behind, fold) {
            (Some(from), Some(fold)) => {
                folded = fold(from, i + 1);
                folded.to_str().expect("utf-8")
            }
            _ => p.to_str().expect("utf-8"),
        };
        let args = [
            "enqueue", "--patch", file, "--task", &task, "--agent", "bench",
        ];
        let (took, id) = match fold {
            Some(_) => match common::hyperion_refused(repo, &args) {
                Some(done) => done,
                None => {
                    s.refused += 1;
                    behind.get_or_insert(i);
                    continue;
                }
            },
            None => hyperion(repo, &args),
        };
        behind = None;
        s.enqueue.push(took);
        // The worker prints a `landed ID …` line for each request it landed.
        let landed = |said: &str| said.lines().any(|l| l.starts_with("landed "));
        let (mut took, mut said) = hyperion(repo, &["worker", "--drain"]);
        if !landed(&said) {
            hyperion(repo, &["approve", id.trim()]);
            (took, said) = hyperion(repo, &["worker", "--drain"]);
        }
        assert!(landed(&said), "request {i} did not land: {said}");
        s.drain.push(took);
        if list {
            s.list.push(hyperion(repo, &["list"]).0);
        }
    }
    let landed = git(repo, &["rev-list", "--count", "main"]);
    assert!(
        landed.trim().parse::<usize>().expect("a count") > s.enqueue.len(),
        "not every request landed"
    );
    s
}

/// The last `n` first-parent commits of this repository as patches against their parents,
/// with the commits (the first is the one they start from).
fn history(dir: &Path, n: usize) -> Option<(Vec<String>, Vec<PathBuf>)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"));
    let commits = history::first_parent(src, n, true).filter(|c| c.len() == n + 1)?;
    std::fs::create_dir_all(dir).expect("mkdir");
    let patches = commits
        .windows(2)
        .enumerate()
        .map(|(i, w)| {
            let p = diff(dir, &w[0], &w[1]);
            let named = dir.join(format!("{i:05}.diff"));
            std::fs::rename(&p, &named).expect("rename");
            named
        })
        .collect();
    Some((commits, patches))
}

/// `git diff --full-index --binary FROM TO` of this repository into `dir`.
fn diff(dir: &Path, from: &str, to: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"));
    let p = dir.join(format!("{from}-{to}.diff"));
    std::fs::write(&p, history::diff(src, from, to)).expect("write");
    p
}

/// `patches` through hyperion (one process per command) and through the plain-git script, each
/// on its own bare clone of `seed`; the trees of `main` they end on (hyperion's, the script's).
fn side_by_side(
    tmp: &Path,
    tag: &str,
    seed: &Path,
    patches: &[PathBuf],
    list: bool,
    fold: Option<&dyn Fn(usize, usize) -> PathBuf>,
) -> (Row, [String; 2]) {
    let hy = tmp.join(format!("{tag}-hyperion.git"));
    let sc = tmp.join(format!("{tag}-script.git"));
    clone_bare(seed, &hy);
    clone_bare(seed, &sc);
    let seq = one_at_a_time(&hy, patches, list, fold);
    let script = common::run_script(
        Script::Reused,
        &sc,
        &tmp.join(format!("{tag}-script")),
        patches,
        false,
        || {},
    );
    let trees = [tree_of(&hy, "main"), tree_of(&sc, "main")];
    (
        Row {
            name: String::new(),
            seq,
            script,
        },
        trees,
    )
}

struct Row {
    name: String,
    seq: Sequential,
    script: Vec<Duration>,
}

fn print(rows: &[Row]) {
    println!(
        "{:<34} {:>12} {:>12} {:>12} {:>14} {:>12} {:>7}",
        "workload (medians, one process each)",
        "enqueue",
        "drain",
        "list",
        "enqueue+drain",
        "git script",
        "ratio"
    );
    for r in rows {
        let both: Vec<Duration> = r
            .seq
            .enqueue
            .iter()
            .zip(&r.seq.drain)
            .map(|(a, b)| *a + *b)
            .collect();
        let list = if r.seq.list.is_empty() {
            "-".to_owned()
        } else {
            ms(Stats::of(&r.seq.list).median)
        };
        let hy = Stats::of(&both);
        let sc = Stats::of(&r.script);
        println!(
            "{:<34} {:>12} {:>12} {:>12} {:>14} {:>12} {:>6.2}x",
            r.name,
            ms(Stats::of(&r.seq.enqueue).median),
            ms(Stats::of(&r.seq.drain).median),
            list,
            ms(hy.median),
            ms(sc.median),
            sc.median.as_secs_f64() / hy.median.as_secs_f64()
        );
        println!(
            "{:<34} {:>12} {:>12} {:>12} {:>14} {:>12}",
            "  p95",
            ms(Stats::of(&r.seq.enqueue).p95),
            ms(Stats::of(&r.seq.drain).p95),
            if r.seq.list.is_empty() {
                "-".to_owned()
            } else {
                ms(Stats::of(&r.seq.list).p95)
            },
            ms(hy.p95),
            ms(sc.p95)
        );
    }
    println!(
        "(ratio: the script's median over hyperion's enqueue+drain median; above 1, hyperion is faster)"
    );
}

fn main() {
    let a = args();
    let tmp = tempfile::tempdir().expect("temp dir");
    let tmp = tmp.path();
    let mut rows = Vec::new();

    match history(&tmp.join("history-patches"), a.commits) {
        Some((commits, patches)) => {
            let seed = tmp.join("history-seed.git");
            clone_bare(Path::new(env!("CARGO_MANIFEST_DIR")), &seed);
            git(&seed, &["update-ref", "refs/heads/main", &commits[0]]);
            git(&seed, &["symbolic-ref", "HEAD", "refs/heads/main"]);
            let want = tree_of(&seed, commits.last().expect("commits"));
            let folds = tmp.join("history-folds");
            std::fs::create_dir_all(&folds).expect("mkdir");
            let fold = |from: usize, to: usize| diff(&folds, &commits[from], &commits[to]);
            let (row, trees) = side_by_side(tmp, "history", &seed, &patches, false, Some(&fold));
            if row.seq.refused > 0 && trees[0] != want {
                println!(
                    "history: the last commit was refused by the gate; hyperion ends before it"
                );
            } else {
                assert_eq!(
                    trees,
                    [want.clone(), want],
                    "(hyperion, script) end on other trees"
                );
            }
            let refused = match row.seq.refused {
                0 => String::new(),
                n => format!(", {n} refused"),
            };
            rows.push(Row {
                name: format!("history, {} commits{refused}", patches.len()),
                ..row
            });
        }
        None => println!(
            "history: skipped (this checkout has fewer than {} commits)",
            a.commits + 1
        ),
    }

    let seed = common::generate(&tmp.join("generated"), a.files);
    let patches = common::write_patches(&tmp.join("generated-patches"), 0..a.requests);
    let (row, [hy, sc]) = side_by_side(tmp, "generated", &seed, &patches, true, None);
    assert_eq!(hy, sc, "hyperion and the script end on different trees");
    rows.push(Row {
        name: format!("{} files, one-line requests", a.files),
        ..row
    });
    print(&rows);
    if a.quick {
        println!("(--quick: smallest sizes, for CI; not figures to quote)");
    }
}
