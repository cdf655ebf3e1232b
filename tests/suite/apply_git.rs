#![allow(clippy::unwrap_used)]
//! The apply engine against git itself.
//!
//! - Differential: generated repositories, many requests written against one old base and
//!   processed in order; the engine must land exactly the requests `git apply --3way --index`
//!   + `git commit` lands, and end on the same tree.
//! - Replay: this project's own history, commit by commit, as `git diff --full-index --binary`
//!   requests onto the first commit's parent; every step must reproduce the real tree.
//! - Replay with commits skipped: every second (or third) commit's diff applied onto the tree
//!   built so far, by the engine and by `git apply --3way`, which must agree on every one
//!   (real conflicts, on real code).
//! - The text merge against `git merge-file` on generated files full of look-alike lines.
//! - The engine's own limits, whatever validation let through.
//! - A hunk at the end of its file, after the target grew elsewhere: accepted, landed as git
//!   lands it; short trailing context elsewhere refused.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::hermetic::{git, git_output};

use gix::ObjectId;
use hyperion::request::apply::{self, Refusal};
use hyperion::request::limits::DEFAULT_LIMITS;
use hyperion::request::patch;

/// A small deterministic generator (xorshift), so every run tests the same cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// Lines from a small vocabulary, so hunks have look-alikes elsewhere (offsets, ambiguity).
/// The engine's refusal, as a test compares it; a failure of the repository fails the test.
fn refusal_of(e: apply::Error) -> apply::Refusal {
    match e {
        apply::Error::Refused(r) => r,
        apply::Error::Failed(e) => panic!("{e}"),
    }
}

fn random_line(rng: &mut Rng) -> String {
    const WORDS: [&str; 12] = [
        "alpha",
        "beta",
        "gamma",
        "delta",
        "return x;",
        "}",
        "{",
        "",
        "let y = 1;",
        "// note",
        "fn f()",
        "x += 1;",
    ];
    WORDS[rng.below(WORDS.len())].to_owned()
}

fn random_file(rng: &mut Rng) -> String {
    let n = 5 + rng.below(40);
    let mut s = String::new();
    for i in 0..n {
        if rng.chance(60) {
            s.push_str(&format!("line {i} {}\n", rng.below(1000)));
        } else {
            s.push_str(&random_line(rng));
            s.push('\n');
        }
    }
    if rng.chance(15) {
        s.pop();
    }
    s
}

fn edit_file(rng: &mut Rng, text: &str) -> String {
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
    let edits = 1 + rng.below(3);
    for _ in 0..edits {
        let at = rng.below(lines.len() + 1);
        match rng.below(4) {
            0 if at < lines.len() => {
                lines.remove(at);
            }
            1 if at < lines.len() => {
                lines[at] = format!("changed {} {}\n", rng.below(100), random_line(rng));
            }
            _ => {
                let k = 1 + rng.below(3);
                for j in 0..k {
                    lines.insert(
                        at.min(lines.len()),
                        format!("added {j} {}\n", rng.below(100)),
                    );
                }
            }
        }
    }
    let mut s: String = lines.concat();
    // Toggle the final newline now and then.
    if rng.chance(10) {
        if s.ends_with('\n') {
            s.pop();
        } else {
            s.push('\n');
        }
    }
    s
}

struct Generated {
    _dir: tempfile::TempDir,
    repo: PathBuf,
    base: String,
    patches: Vec<String>,
}

/// A repository with `files` files at `base`, and `n` patches written against `base`.
fn generate(seed: u64, files: usize, n: usize) -> Generated {
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    let mut names = Vec::new();
    for i in 0..files {
        let name = if i % 3 == 0 {
            format!("dir{}/f{i}.txt", i % 4)
        } else {
            format!("f{i}.txt")
        };
        let p = repo.join(&name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, random_file(&mut rng)).unwrap();
        names.push(name);
    }
    // One binary file (NULs), edited by some requests: `GIT binary patch` sections.
    let blob: Vec<u8> = (0..3000).map(|_| rng.below(256) as u8).collect();
    std::fs::write(repo.join("blob.bin"), blob).unwrap();
    names.push("blob.bin".to_owned());
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "base"]);
    let base = git(&repo, &["rev-parse", "HEAD"]).trim().to_owned();
    let mut patches = Vec::new();
    for k in 0..n {
        let touched = 1 + rng.below(3);
        for _ in 0..touched {
            let name = &names[rng.below(names.len())];
            let p = repo.join(name);
            if !p.exists() {
                continue;
            }
            match rng.below(20) {
                0 => {
                    git(&repo, &["rm", "-q", "-f", name]);
                }
                1 => {
                    let to = format!("moved{k}_{}", name.replace('/', "_"));
                    git(&repo, &["mv", name, &to]);
                    if rng.chance(50) && !name.ends_with(".bin") {
                        let text = std::fs::read_to_string(repo.join(&to)).unwrap();
                        std::fs::write(repo.join(&to), edit_file(&mut rng, &text)).unwrap();
                    }
                }
                2 => {
                    let new = repo.join(format!("new{}.txt", rng.below(6)));
                    std::fs::write(new, random_file(&mut rng)).unwrap();
                }
                3 => {
                    std::fs::set_permissions(
                        &p,
                        std::os::unix::fs::PermissionsExt::from_mode(0o755),
                    )
                    .unwrap();
                }
                _ if name.ends_with(".bin") => {
                    let mut data = std::fs::read(&p).unwrap();
                    for _ in 0..1 + rng.below(20) {
                        let at = rng.below(data.len());
                        data[at] = rng.below(256) as u8;
                    }
                    if rng.chance(30) {
                        data.extend((0..rng.below(500)).map(|_| rng.below(256) as u8));
                    }
                    std::fs::write(&p, data).unwrap();
                }
                _ => {
                    let text = std::fs::read_to_string(&p).unwrap();
                    std::fs::write(&p, edit_file(&mut rng, &text)).unwrap();
                }
            }
        }
        git(&repo, &["add", "-A"]);
        let out = git_output(&repo, &["commit", "-q", "-m", &format!("edit {k}")], b"");
        if out.status.success() {
            let mut diff = git(&repo, &["diff", "--binary", &base, "HEAD"]);
            // A third of the patches lose their `index` lines: plain `diff -u` style, so only
            // direct application (offsets, exact context) can apply them.
            // (Binary sections keep theirs: git silently skips a binary section without a
            // full `index` line, where hyperion refuses it with `apply.binary`.)
            if rng.chance(33) && !diff.contains("GIT binary patch") {
                diff = diff
                    .lines()
                    .filter(|l| !l.starts_with("index "))
                    .map(|l| format!("{l}\n"))
                    .collect();
            }
            patches.push(diff);
        }
        git(&repo, &["reset", "-q", "--hard", &base]);
        git(&repo, &["clean", "-q", "-fd"]);
    }
    Generated {
        _dir: dir,
        repo,
        base,
        patches,
    }
}

/// What git does: `git apply --3way --index` + commit in one worktree, in order.
fn with_git(g: &Generated) -> (Vec<bool>, Vec<String>) {
    let wt = g.repo.parent().unwrap().join("reference");
    git(
        &g.repo,
        &[
            "worktree",
            "add",
            "-q",
            "--detach",
            wt.to_str().unwrap(),
            &g.base,
        ],
    );
    let mut landed = Vec::new();
    let mut trees = Vec::new();
    for p in &g.patches {
        let applied = git_output(&wt, &["apply", "--3way", "--index", "-"], p.as_bytes());
        let ok = applied.status.success()
            && git_output(&wt, &["commit", "-q", "-m", "request"], b"")
                .status
                .success();
        if !ok {
            git(&wt, &["reset", "-q", "--hard"]);
            git(&wt, &["clean", "-q", "-fd"]);
        }
        landed.push(ok);
        trees.push(git(&wt, &["rev-parse", "HEAD^{tree}"]).trim().to_owned());
    }
    (landed, trees)
}

/// What the engine does, in memory, in the same order.
fn with_engine(g: &Generated) -> (Vec<bool>, Vec<String>, Vec<&'static str>) {
    let repo = gix::open(&g.repo).unwrap();
    let tree_hex = git(&g.repo, &["rev-parse", &format!("{}^{{tree}}", g.base)]);
    let mut tree = ObjectId::from_hex(tree_hex.trim().as_bytes()).unwrap();
    let mut landed = Vec::new();
    let mut codes = Vec::new();
    let mut trees = Vec::new();
    for p in &g.patches {
        let sections = patch::parse(p).unwrap();
        match apply::apply_sections(&repo, tree, &sections, &DEFAULT_LIMITS).map_err(refusal_of) {
            Ok(a) => {
                tree = a.tree;
                landed.push(true);
            }
            Err(refusal) => {
                codes.push(refusal.code().as_str());
                if let Refusal::Conflict { files } = &refusal {
                    assert!(!files.is_empty());
                }
                landed.push(false);
            }
        }
        trees.push(tree.to_string());
    }
    (landed, trees, codes)
}

#[test]
fn lands_what_git_apply_3way_lands() {
    let mut totals = (0, 0, 0);
    let mut binary_landed = 0;
    // HYPERION_TEST_SEEDS=N runs N more generated repositories (for a longer local hunt).
    let extra: u64 = std::env::var("HYPERION_TEST_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let seeds = [7u64, 11, 29, 1234, 98765]
        .into_iter()
        .chain((0..extra).map(|k| 0x9e37_79b9_7f4a_7c15 ^ ((k + 1) * 2_654_435_761)));
    for seed in seeds {
        let g = generate(seed, 12, 40);
        let (git_landed, git_trees) = with_git(&g);
        let (ours, our_trees, codes) = with_engine(&g);
        for (i, (a, b)) in git_landed.iter().zip(&ours).enumerate() {
            assert_eq!(
                a, b,
                "seed {seed}: request {i}: git landed={a}, engine landed={b}\n{}",
                g.patches[i]
            );
            if git_trees[i] != our_trees[i] {
                let before = if i == 0 {
                    format!("{}^{{tree}}", g.base)
                } else {
                    git_trees[i - 1].clone()
                };
                panic!(
                    "seed {seed}: trees differ after request {i}\n--- patch\n{}\n--- git's result vs the engine's\n{}\n--- the file before\n{}",
                    g.patches[i],
                    git(&g.repo, &["diff", &git_trees[i], &our_trees[i]]),
                    git(&g.repo, &["diff", &format!("{}^{{tree}}", g.base), &before]),
                );
            }
        }
        binary_landed += ours
            .iter()
            .zip(&g.patches)
            .filter(|(l, p)| **l && p.contains("GIT binary patch"))
            .count();
        totals.0 += ours.iter().filter(|l| **l).count();
        totals.1 += ours.iter().filter(|l| !**l).count();
        totals.2 += codes.iter().filter(|c| **c == "apply.conflict").count();
    }
    // The generator must exercise both outcomes, and real conflicts, or this proves nothing.
    let (landed, refused, conflicts) = totals;
    eprintln!("landed {landed}, refused {refused}, of which 3-way conflicts {conflicts}");
    assert!(landed >= 40, "only {landed} requests landed");
    assert!(refused >= 20, "only {refused} requests were refused");
    assert!(conflicts >= 5, "only {conflicts} 3-way conflicts");
    assert!(
        binary_landed >= 3,
        "only {binary_landed} binary patches landed"
    );
}

#[test]
fn replays_this_repository_history() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let clone = dir.path().join("history.git");
    git(
        dir.path(),
        &[
            "clone",
            "-q",
            "--bare",
            "--no-local",
            src.to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    let commits: Vec<String> = git(&clone, &["rev-list", "--first-parent", "--reverse", "HEAD"])
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(
        commits.len() >= 20,
        "the project history has {} commits",
        commits.len()
    );
    let repo = gix::open(&clone).unwrap();
    // Start from the first commit's parent: nothing.
    let empty = repo.empty_tree().id;
    let mut tree: ObjectId = empty;
    let mut parent: Option<&str> = None;
    for c in &commits {
        let diff = match parent {
            Some(p) => git(&clone, &["diff", "--full-index", "--binary", p, c]),
            None => git(
                &clone,
                &["diff", "--full-index", "--binary", &empty.to_string(), c],
            ),
        };
        let sections = patch::parse(&diff).unwrap();
        let applied = apply::apply_sections(&repo, tree, &sections, &DEFAULT_LIMITS)
            .map_err(refusal_of)
            .unwrap_or_else(|r| panic!("{c}: {}", r.message()));
        let real = git(&clone, &["rev-parse", &format!("{c}^{{tree}}")]);
        assert_eq!(applied.tree.to_string(), real.trim(), "after {c}");
        tree = applied.tree;
        parent = Some(c);
    }
}

/// Replay `src`'s first-parent history keeping one commit in `step` (from `offset`): each kept
/// commit's diff against its parent, applied onto the tree built so far by `git apply --3way
/// --index` and by the engine, from the same tree each time. Returns (both landed, both
/// refused, the engine refused an empty change git applied to no effect); panics where they
/// disagree.
fn replay_skipping(src: &Path, last: usize, step: usize, offset: usize) -> (usize, usize, usize) {
    let dir = tempfile::tempdir().unwrap();
    let clone = dir.path().join("history");
    git(
        dir.path(),
        &[
            "clone",
            "-q",
            "--no-local",
            src.to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    let commits: Vec<String> = git(&clone, &["rev-list", "--first-parent", "--reverse", "HEAD"])
        .lines()
        .map(str::to_owned)
        .collect();
    // Not the root commit: every kept commit has a parent to diff against.
    let commits = &commits[1.max(commits.len().saturating_sub(last))..];
    let kept: Vec<&String> = commits.iter().skip(offset).step_by(step).collect();
    assert!(kept.len() >= 10, "only {} commits to replay", kept.len());
    git(
        &clone,
        &["checkout", "-q", "--detach", &format!("{}^", kept[0])],
    );
    let repo = gix::open(&clone).unwrap();
    let (mut landed, mut refused, mut empty) = (0, 0, 0);
    for c in kept {
        let diff = git_output(
            &clone,
            &["diff", "--full-index", "--binary", &format!("{c}^"), c],
            b"",
        )
        .stdout;
        // A request is JSON text: a diff that is not UTF-8 cannot be one.
        let Ok(diff) = String::from_utf8(diff) else {
            continue;
        };
        if diff.is_empty() {
            continue;
        }
        let tree = git(&clone, &["rev-parse", "HEAD^{tree}"]).trim().to_owned();
        let sections = patch::parse(&diff).unwrap();
        let ours = apply::apply_sections(
            &repo,
            ObjectId::from_hex(tree.as_bytes()).unwrap(),
            &sections,
            &DEFAULT_LIMITS,
        )
        .map_err(refusal_of);
        let out = git_output(
            &clone,
            &["apply", "--3way", "--index", "-"],
            diff.as_bytes(),
        );
        let git_tree = out
            .status
            .success()
            .then(|| git(&clone, &["write-tree"]).trim().to_owned());
        match (&ours, &git_tree) {
            (Ok(a), Some(t)) => {
                assert_eq!(
                    &a.tree.to_string(),
                    t,
                    "{c}: the engine and git land different trees:\n{}",
                    git(&clone, &["diff", "--stat", t, &a.tree.to_string()])
                );
                landed += 1;
            }
            (Err(_), None) => refused += 1,
            // git applies a change that is already there without complaint; the engine
            // refuses it as empty, and the tree is the same.
            (Err(Refusal::Empty), Some(t)) if *t == tree => empty += 1,
            (Ok(_), None) => panic!(
                "{c}: the engine lands what git refuses:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ),
            (Err(r), Some(_)) => panic!("{c}: git lands what the engine refuses: {}", r.message()),
        }
        if git_tree.is_some() {
            git(&clone, &["commit", "-q", "--allow-empty", "-m", "step"]);
        } else {
            git(&clone, &["reset", "-q", "--hard"]);
        }
    }
    (landed, refused, empty)
}

#[test]
fn replays_this_repository_history_with_commits_skipped_as_git_does() {
    // HYPERION_REPLAY_REPO=PATH replays another repository (the red-team report used the last
    // 300 commits of BurntSushi/ripgrep, where a Cargo.lock hunk next to the other side's
    // change was merged: HYPERION_REPLAY_LAST=300).
    let src = std::env::var_os("HYPERION_REPLAY_REPO")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).to_owned());
    let last: usize = std::env::var("HYPERION_REPLAY_LAST")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150);
    let mut totals = (0, 0, 0);
    for (step, offset) in [(2, 0), (2, 1), (3, 0)] {
        let (l, r, e) = replay_skipping(&src, last, step, offset);
        eprintln!(
            "every {step} from {offset}: {l} landed by both, {r} refused by both, {e} already there"
        );
        totals = (totals.0 + l, totals.1 + r, totals.2 + e);
    }
    let (landed, refused, _) = totals;
    // Both outcomes must occur, or the comparison proves little.
    assert!(landed >= 10, "only {landed} patches landed");
    assert!(refused >= 5, "only {refused} patches were refused");
}

/// A file of look-alike lines, like a `Cargo.lock`: blocks that differ in one or two lines.
fn lockfile(rng: &mut Rng, blocks: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..blocks {
        out.push("[[package]]".to_owned());
        out.push(format!("name = \"crate{}\"", rng.below(8)));
        out.push(format!("version = \"1.{}.0\"", rng.below(4)));
        if rng.chance(50) {
            out.push("dependencies = [".to_owned());
            out.push(format!(" \"crate{}\",", rng.below(8)));
            out.push("]".to_owned());
        }
        out.push(String::new());
    }
    out
}

/// One side's edit of `lines`: a few replaced, inserted (often whole blocks) or removed lines.
fn edit_lines(rng: &mut Rng, lines: &[String]) -> Vec<String> {
    let mut out = lines.to_vec();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(out.len() + 1);
        match rng.below(4) {
            0 if at < out.len() => {
                out.remove(at);
            }
            1 if at < out.len() => out[at] = format!("version = \"2.{}.0\"", rng.below(3)),
            2 => {
                let block = lockfile(rng, 1);
                for (k, l) in block.into_iter().enumerate() {
                    out.insert(at + k, l);
                }
            }
            _ => out.insert(at, format!(" \"crate{}\",", rng.below(8))),
        }
    }
    out
}

#[test]
fn merges_text_as_git_merge_file_does() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x5eed_cafe);
    let (mut clean, mut conflicts) = (0, 0);
    for case in 0..300 {
        let blocks = 2 + rng.below(6);
        let base = lockfile(&mut rng, blocks);
        let ours = edit_lines(&mut rng, &base);
        let theirs = edit_lines(&mut rng, &base);
        let text = |l: &[String]| {
            let mut s = l.join("\n");
            s.push('\n');
            s
        };
        let (b, o, t) = (text(&base), text(&ours), text(&theirs));
        for (name, content) in [("base", &b), ("ours", &o), ("theirs", &t)] {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let out = git_output(
            dir.path(),
            &["merge-file", "-p", "ours", "base", "theirs"],
            b"",
        );
        let git_clean = out.status.code() == Some(0);
        assert!(out.status.code().is_some_and(|c| c >= 0), "{out:?}");
        match apply::merge_text(b.as_bytes(), o.as_bytes(), t.as_bytes()) {
            apply::Merged::Clean(m) => {
                assert!(
                    git_clean,
                    "case {case}: clean here, a conflict for git\n--- base\n{b}--- ours\n{o}--- theirs\n{t}--- git\n{}",
                    String::from_utf8_lossy(&out.stdout)
                );
                assert_eq!(
                    String::from_utf8_lossy(&m),
                    String::from_utf8_lossy(&out.stdout),
                    "case {case}: another clean result than git's"
                );
                clean += 1;
            }
            apply::Merged::Conflict(_) => {
                assert!(
                    !git_clean,
                    "case {case}: a conflict here, clean for git\n--- base\n{b}--- ours\n{o}--- theirs\n{t}"
                );
                conflicts += 1;
            }
        }
    }
    eprintln!("{clean} clean, {conflicts} conflicts");
    assert!(
        clean >= 50 && conflicts >= 50,
        "{clean} clean, {conflicts} conflicts"
    );
}

/// The engine holds every file to the limits itself, whatever validation let through: the
/// same codes, before anything larger than the limit is inflated, read or built.
#[test]
fn the_engine_holds_every_file_to_the_limits() {
    use hyperion::request::limits::Limits;
    let dir = tempfile::tempdir().unwrap();
    let repo_dir = dir.path().join("repo");
    std::fs::create_dir(&repo_dir).unwrap();
    git(&repo_dir, &["init", "-q", "-b", "main"]);
    std::fs::write(repo_dir.join("small.txt"), "a\nb\nc\n").unwrap();
    std::fs::write(repo_dir.join("big.txt"), "\n".repeat(600)).unwrap();
    std::fs::write(repo_dir.join("large.txt"), "z".repeat(1200)).unwrap();
    std::fs::write(repo_dir.join("data.bin"), vec![0u8; 300]).unwrap();
    git(&repo_dir, &["add", "-A"]);
    git(&repo_dir, &["commit", "-q", "-m", "base"]);
    let base_tree = git(&repo_dir, &["rev-parse", "HEAD^{tree}"]);
    let base_tree = ObjectId::from_hex(base_tree.trim().as_bytes()).unwrap();
    let repo = gix::open(&repo_dir).unwrap();
    let limits = Limits {
        file_bytes: 1000,
        file_lines: 500,
        inflated_bytes: 1500,
        ..DEFAULT_LIMITS
    };
    let code = |diff: &str| -> &'static str {
        let sections = patch::parse(diff).unwrap();
        match apply::apply_sections(&repo, base_tree, &sections, &limits).map_err(refusal_of) {
            Ok(_) => "landed",
            Err(r) => r.code().as_str(),
        }
    };
    // A new binary file of 2000 bytes (a literal over the cap: never inflated).
    let bomb = common::binary_run_patch("bomb.bin", 2000, 0);
    assert_eq!(code(&bomb), "limit.file_bytes");
    assert_eq!(code(&common::binary_run_patch("ok.bin", 900, 0)), "landed");
    // Two files under the cap that add up past the request's total.
    let two =
        common::binary_run_patch("a.bin", 900, 1) + &common::binary_run_patch("b.bin", 900, 2);
    assert_eq!(code(&two), "limit.inflated_bytes");
    // A text patch to a file of more lines than allowed.
    assert_eq!(
        code("--- a/big.txt\n+++ b/big.txt\n@@ -1,3 +1,3 @@\n-\n+y\n \n \n"),
        "limit.file_lines"
    );
    // A text result over the cap: 3 lines become 1003 bytes.
    let long = format!(
        "--- a/small.txt\n+++ b/small.txt\n@@ -1,3 +1,3 @@\n-a\n+{}\n b\n c\n",
        "y".repeat(1000)
    );
    assert_eq!(code(&long), "limit.file_bytes");
    // A delta whose result is over the cap, from the binary file's 300 bytes.
    let old = vec![0u8; 300];
    let mut d = vec![0xac, 0x02, 0xd0, 0x0f]; // source 300, result 2000
    d.extend(std::iter::repeat_n([0x90u8, 200], 10).flatten()); // 10 copies of 200 bytes
    let old_id =
        gix::objs::compute_hash(gix::hash::Kind::Sha1, gix::object::Kind::Blob, &old).unwrap();
    let delta = format!(
        "diff --git a/data.bin b/data.bin\nindex {old_id}..{}\nGIT binary patch\ndelta {}\n{}\n",
        common::run_blob_id(2000, 0),
        d.len(),
        common::base85(&common::deflate(&d)),
    );
    assert_eq!(code(&delta), "limit.file_bytes");
    // The preimage an `index` line names, larger than the cap: not read.
    let big = git(&repo_dir, &["rev-parse", "HEAD:large.txt"]);
    let pre = format!(
        "diff --git a/small.txt b/small.txt\nindex {}..1111111 100644\n--- a/small.txt\n+++ b/small.txt\n@@ -1,3 +1,3 @@\n-a\n+A\n b\n c\n",
        &big[..10]
    );
    let sections = patch::parse(&pre).unwrap();
    let refusal = apply::apply_sections(&repo, base_tree, &sections, &limits)
        .map_err(refusal_of)
        .expect_err("the preimage is over the cap");
    assert_eq!(refusal.code(), "limit.file_bytes");
    assert!(
        refusal.message().contains("preimage"),
        "{}",
        refusal.message()
    );
    // Within the limits, the same kinds of change land.
    assert_eq!(
        code("--- a/small.txt\n+++ b/small.txt\n@@ -1,3 +1,3 @@\n-a\n+A\n b\n c\n"),
        "landed"
    );
}

/// Files of numbered lines, committed in `repo`.
fn numbered(repo: &common::TestRepo, files: &[(&str, usize)]) {
    for (name, n) in files {
        let text: String = (1..=*n).map(|i| format!("line {i}\n")).collect();
        std::fs::write(repo.path().join(name), text).unwrap();
        repo.git(&["add", name]);
    }
    repo.git(&["commit", "-q", "-m", "files"]);
}

/// The diff (`git diff ARGS`) of replacing `from` by `to` in `file`, the file put back after.
fn diff_of(repo: &common::TestRepo, file: &str, from: &str, to: &str, args: &[&str]) -> String {
    let path = repo.path().join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from));
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    let mut a = vec!["diff"];
    a.extend(args);
    let diff = repo.git(&a);
    repo.git(&["checkout", "--", file]);
    diff
}

fn enqueue_patch(repo: &common::TestRepo, name: &str, diff: &str, dry_run: bool) -> Output {
    let p = repo.home.path().join(name);
    std::fs::write(&p, diff).unwrap();
    let mut args = vec![
        "enqueue",
        "--patch",
        p.to_str().unwrap(),
        "--task",
        name,
        "--agent",
        "a",
    ];
    if dry_run {
        args.push("--dry-run");
    }
    repo.run(&args)
}

/// The report's "ends at line 80 of 81": a hunk that ended at the end of its file when the
/// patch was made is at the end of that file, however the target grew elsewhere since. The
/// gate accepts it, the worker lands it, and the result is `git apply --3way`'s.
#[test]
fn a_hunk_at_the_end_of_its_file_lands_after_the_target_grew_elsewhere_as_with_git() {
    let repo = common::TestRepo::new();
    numbered(&repo, &[("a.txt", 80), ("b.txt", 80), ("c.txt", 80)]);
    // `git diff`: 3 lines of context before, 1 after (line 80 is the last).
    let u3 = diff_of(&repo, "a.txt", "line 79\n", "LINE 79\n", &[]);
    assert!(u3.contains("@@ -76,5 +76,5 @@"), "{u3}");
    // The same without its `index` line (a plain `diff -u`): judged by the target's content.
    let plain_src = diff_of(&repo, "c.txt", "line 79\n", "LINE 79\n", &[]);
    let plain: String = plain_src
        .lines()
        .filter(|l| !l.starts_with("index "))
        .map(|l| format!("{l}\n"))
        .collect();
    // `git diff -U1` of the last line, under a policy of 1 line of context.
    let u1 = diff_of(&repo, "b.txt", "line 80\n", "LINE 80\n", &["-U1"]);
    assert!(u1.contains("@@ -79,2 +79,2 @@"), "{u1}");
    let base = repo.git(&["rev-parse", "HEAD"]).trim().to_owned();

    // The target grows elsewhere: a line at the top of each file.
    for f in ["a.txt", "b.txt", "c.txt"] {
        let p = repo.path().join(f);
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, format!("top\n{text}")).unwrap();
    }
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "grown"]);
    // The default policy (3 lines) accepts the `git diff` ones.
    for (name, diff) in [("u3-default", &u3), ("plain-default", &plain)] {
        let out = enqueue_patch(&repo, name, diff, true);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A policy of 1 line accepts all three, and the worker lands them.
    std::fs::create_dir_all(repo.path().join(".hyperion")).unwrap();
    std::fs::write(
        repo.path().join(".hyperion/policy.toml"),
        "[patch]\nmin_context = 1\n",
    )
    .unwrap();
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "policy"]);
    for (name, diff) in [("u3", &u3), ("plain", &plain), ("u1", &u1)] {
        let out = enqueue_patch(&repo, name, diff, false);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let head = repo.git(&["rev-parse", "HEAD"]).trim().to_owned();
    let drained = repo.run(&["worker", "--drain"]);
    assert!(drained.status.success(), "{drained:?}");
    let landed = repo.git(&["rev-parse", "main^{tree}"]).trim().to_owned();

    // git, on the same target, with the same patches in the same order.
    let wt = repo.home.path().join("reference");
    repo.git(&[
        "worktree",
        "add",
        "-q",
        "--detach",
        wt.to_str().unwrap(),
        &head,
    ]);
    for diff in [&u3, &plain, &u1] {
        let out = git_output(&wt, &["apply", "--3way", "--index", "-"], diff.as_bytes());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let reference = git(&wt, &["write-tree"]).trim().to_owned();
    assert_eq!(
        landed,
        reference,
        "the worker's result differs from git's:\n{}\n{}",
        repo.git(&["diff", &reference, &landed]),
        String::from_utf8_lossy(&drained.stdout)
    );
    assert_ne!(base, head);
    let a = repo.git(&["show", "main:a.txt"]);
    assert!(
        a.starts_with("top\n") && a.ends_with("LINE 79\nline 80\n"),
        "{a}"
    );
}

/// Short trailing context is accepted only at the end of the file the hunk was made from:
/// not in the middle of it, whatever the patch claims with its line numbers or its `index`
/// line.
#[test]
fn short_trailing_context_away_from_the_end_of_the_file_is_refused() {
    let repo = common::TestRepo::new();
    numbered(&repo, &[("a.txt", 80)]);
    let other: String = (1..=78).map(|i| format!("other {i}\n")).collect();
    std::fs::write(repo.path().join("short.txt"), other).unwrap();
    repo.git(&["add", "short.txt"]);
    repo.git(&["commit", "-q", "-m", "short"]);
    let short = repo.git(&["rev-parse", "HEAD:short.txt"]).trim().to_owned();
    let real = repo.git(&["rev-parse", "HEAD:a.txt"]).trim().to_owned();
    // No context after line 78 of 80.
    let hunk = "--- a/a.txt\n+++ b/a.txt\n@@ -75,4 +75,4 @@\n line 75\n line 76\n line 77\n-line 78\n+LINE 78\n";
    let cases = [
        ("without-index", hunk.to_owned()),
        (
            "with-its-preimage",
            format!(
                "diff --git a/a.txt b/a.txt\nindex {}..{} 100644\n{hunk}",
                &real[..7],
                "1".repeat(7)
            ),
        ),
        // Another blob of 78 lines named as the preimage: its last lines are not the hunk's.
        (
            "naming-another-blob",
            format!(
                "diff --git a/a.txt b/a.txt\nindex {}..{} 100644\n{hunk}",
                &short[..7],
                "1".repeat(7)
            ),
        ),
        // A blob the repository does not have: judged by the target's content.
        (
            "naming-an-unknown-blob",
            format!(
                "diff --git a/a.txt b/a.txt\nindex {}..{} 100644\n{hunk}",
                "abcdef0",
                "1".repeat(7)
            ),
        ),
    ];
    for (name, diff) in cases {
        let out = enqueue_patch(&repo, name, &diff, true);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains("[patch.min_context]"), "{name}: {err}");
        assert!(err.contains("after its last change"), "{name}: {err}");
    }
    // The same hunk one line lower ends the file and passes.
    let end = "--- a/a.txt\n+++ b/a.txt\n@@ -77,4 +77,4 @@\n line 77\n line 78\n line 79\n-line 80\n+LINE 80\n";
    let out = enqueue_patch(&repo, "at-the-end", end, true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Many hunks on a large file, each where it says it is: the engine's work grows with the
/// file and the patch, not with their product (it took 23 s when every hunk moved the rest
/// of the file along).
#[test]
fn eighteen_thousand_hunks_on_a_million_lines_apply_in_linear_time() {
    let n = 1_000_000usize;
    let content: String = (0..n).map(|i| format!("{i}\n")).collect();
    let mut patch = String::from("--- a/f\n+++ b/f\n");
    let (mut at, mut added, mut hunks) = (10usize, 0usize, 0usize);
    let mut expected: Vec<String> = content.lines().map(|l| format!("{l}\n")).collect();
    while patch.len() < 1_000_000 && at + 3 < n {
        patch.push_str(&format!(
            "@@ -{},3 +{},4 @@\n {}\n-{}\n+a\n+b\n {}\n",
            at,
            at + added,
            at - 1,
            at,
            at + 1
        ));
        expected[at] = "a\nb\n".to_owned();
        added += 1;
        at += 40;
        hunks += 1;
    }
    assert!(hunks > 15_000, "{hunks} hunks");
    let fp = patch::parse(&patch).unwrap().remove(0);
    let started = std::time::Instant::now();
    let out = apply::apply_hunks(content.as_bytes(), &fp).expect("applies");
    let took = started.elapsed();
    assert!(out == expected.concat().into_bytes(), "wrong result");
    assert!(
        took < std::time::Duration::from_secs(5),
        "{hunks} hunks took {took:?}"
    );
}
