//! Apply and land, side by side with a plain-git script doing the same work.
//!
//! On a generated repository (1,000 files with `-- --quick`, else 5,000), N requests each
//! change one line of a different file, written against the same base. hyperion's worker
//! takes them through its whole pipeline in one process (lease, validation against the target,
//! in-memory apply, commit, compare-and-swap of `main`, note, record). The script does what a
//! careful shell loop around git does with one reused worktree: checkout, `git apply --3way
//! --index`, commit, `update-ref` with the old value. Both run on identical copies of the
//! repository, in the same invocation. Nothing here asserts a timing.
//! (`benches/compare.rs` runs this and more, at several sizes and against more alternatives.)

mod common;

use std::path::Path;

use common::{Script, Stats, clone_bare, ms, tree_of};

struct Figures {
    hyperion: Stats,
    script: Stats,
}

/// Requests `range` through hyperion and through the script, on fresh copies of `seed`.
/// `--quick` runs without the pauses of [`common::settle`].
fn run_pair(
    tmp: &Path,
    seed: &Path,
    range: std::ops::Range<usize>,
    check: bool,
    pause: fn(),
) -> Figures {
    let tag = if check { "check" } else { "plain" };
    let patches = common::write_patches(&tmp.join(format!("patches-{tag}")), range.clone());
    let checks: Vec<String> = if check {
        vec!["trivial".into()]
    } else {
        Vec::new()
    };

    // hyperion: enqueue everything, then one worker drains the queue in this process.
    let hy = tmp.join(format!("hyperion-{tag}.git"));
    clone_bare(seed, &hy);
    let reqs: Vec<_> = range.map(|k| common::patch_request(k, &checks)).collect();
    let drained = common::drain_in_process(&hy, &reqs, pause);

    // The plain-git script: one reused worktree.
    let sc = tmp.join(format!("script-{tag}.git"));
    clone_bare(seed, &sc);
    let script = common::run_script(
        Script::Reused,
        &sc,
        &tmp.join(format!("script-{tag}")),
        &patches,
        check,
        pause,
    );
    assert_eq!(
        tree_of(&hy, "main"),
        tree_of(&sc, "main"),
        "hyperion and the script end on different trees"
    );
    Figures {
        hyperion: Stats::of(&drained.gaps),
        script: Stats::of(&script),
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
    let seed = common::generate(tmp.path(), files);
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
        let pause: fn() = if quick { || {} } else { common::settle };
        let f = run_pair(tmp.path(), &seed, range, check, pause);
        println!(
            "{:<44} {:>12} {:>12} {:>12} {:>12} {:>7.1}x  target {target}",
            label,
            ms(f.hyperion.mean),
            ms(f.hyperion.median),
            ms(f.hyperion.p95),
            ms(f.script.mean),
            f.script.mean.as_secs_f64() / f.hyperion.mean.as_secs_f64()
        );
    }
}
