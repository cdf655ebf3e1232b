#![allow(clippy::unwrap_used)]
//! The apply engine against git itself.
//!
//! - Differential: generated repositories, many requests written against one old base and
//!   processed in order; the engine must land exactly the requests `git apply --3way --index`
//!   + `git commit` lands, and end on the same tree.
//! - Replay: this project's own history, commit by commit, as `git diff --full-index --binary`
//!   requests onto the first commit's parent; every step must reproduce the real tree.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gix::ObjectId;
use hyperion::apply::{self, Refusal};
use hyperion::patch;

fn git_at(dir: &Path, args: &[&str], input: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("HOME", dir)
        .env("LC_ALL", "C")
        .env("GIT_AUTHOR_NAME", "A")
        .env("GIT_AUTHOR_EMAIL", "a@example.com")
        .env("GIT_COMMITTER_NAME", "C")
        .env("GIT_COMMITTER_EMAIL", "c@example.com")
        .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("git runs");
    if let Some(data) = input {
        child.stdin.take().unwrap().write_all(data).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_at(dir, args, None);
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

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
        let out = git_at(&repo, &["commit", "-q", "-m", &format!("edit {k}")], None);
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
        let applied = git_at(
            &wt,
            &["apply", "--3way", "--index", "-"],
            Some(p.as_bytes()),
        );
        let ok = applied.status.success()
            && git_at(&wt, &["commit", "-q", "-m", "request"], None)
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
        match apply::apply_sections(&repo, tree, &sections).unwrap() {
            Ok(a) => {
                tree = a.tree;
                landed.push(true);
            }
            Err(refusal) => {
                codes.push(refusal.code());
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
        let applied = apply::apply_sections(&repo, tree, &sections)
            .unwrap()
            .unwrap_or_else(|r| panic!("{c}: {}", r.message()));
        let real = git(&clone, &["rev-parse", &format!("{c}^{{tree}}")]);
        assert_eq!(applied.tree.to_string(), real.trim(), "after {c}");
        tree = applied.tree;
        parent = Some(c);
    }
}
