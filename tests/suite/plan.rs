//! `git hyperion plan` on real trees: this repository with a CODEOWNERS committed on top, a
//! multi-language tree (Rust workspace, Python package, TypeScript) built here, and, when
//! `HYPERION_PLAN_REPO` names a local clone, that repository. Every plan is held to the same
//! properties: no assignment above the token maximum (recounted here with the tokenizer),
//! every file in scope in exactly one assignment, every dependency pointing to an earlier
//! assignment, references between assignments ordered, cycles reported. Then bad input:
//! tasks that are not JSON or not valid, unknown targets, hostile templates, files too large.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::TestRepo;
use hyperion::agents::plan::tokens;
use serde_json::{Value, json};

fn task(repo: &TestRepo, name: &str, value: Value) -> String {
    repo.write(name, &value).display().to_string()
}

fn basic(id: &str, kind: &str, scope: &[&str]) -> Value {
    json!({
        "schema": "hyperion.task-request/v1",
        "task_id": id,
        "title": format!("task {id}"),
        "instructions": "Do the thing, carefully.",
        "kind": kind,
        "scope": scope,
    })
}

/// The files of `branch` in `repo`, as git lists them (blobs and symlinks).
fn tree_files(dir: &Path, branch: &str) -> Vec<String> {
    let out = std::process::Command::new("git")
        .args(["-C"])
        .arg(dir)
        .args([
            "ls-tree",
            "-r",
            "-z",
            "--format=%(objectmode) %(path)",
            branch,
        ])
        .output()
        .expect("git runs");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .split('\0')
        .filter(|l| !l.is_empty() && !l.starts_with("160000"))
        .map(|l| l.split_once(' ').unwrap().1.to_owned())
        .collect()
}

fn blob(dir: &Path, branch: &str, path: &str) -> Vec<u8> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["cat-file", "blob", &format!("{branch}:{path}")])
        .output()
        .expect("git runs");
    assert!(out.status.success(), "{path}");
    out.stdout
}

/// The properties every plan has; returns assignment index by file.
fn check_plan(
    plan: &Value,
    dir: &Path,
    branch: &str,
    in_scope: &[String],
) -> BTreeMap<String, usize> {
    assert_eq!(plan["schema"], "hyperion.plan/v1");
    assert_eq!(plan["tokenizer"], "o200k_base");
    let max = plan["max_tokens"].as_u64().unwrap();
    let assignments = plan["assignments"].as_array().unwrap();
    assert!(!assignments.is_empty());
    let mut owner: BTreeMap<String, usize> = BTreeMap::new();
    let task_id = plan["task_id"].as_str().unwrap();
    for (i, a) in assignments.iter().enumerate() {
        assert_eq!(
            a["id"],
            format!("{task_id}/{}", i + 1),
            "ids follow plan order"
        );
        let tokens = a["tokens"].as_u64().unwrap();
        assert!(
            tokens <= max,
            "{} has {tokens} tokens, above {max}",
            a["id"]
        );
        // The size is the tokenizer's count of the instructions and the files' blocks.
        let mut recount = tokens::count(a["instructions"].as_str().unwrap());
        for f in a["files"].as_array().unwrap() {
            let f = f.as_str().unwrap();
            assert!(
                owner.insert(f.to_owned(), i).is_none(),
                "{f} is in two assignments"
            );
            let data = blob(dir, branch, f);
            let block = if data[..data.len().min(8000)].contains(&0) {
                format!("=== {f} (binary, {} bytes) ===\n", data.len())
            } else {
                let mode = tree_mode(dir, branch, f);
                if mode == "120000" {
                    format!(
                        "=== {f} (symlink) ===\n{}\n",
                        String::from_utf8_lossy(&data)
                    )
                } else {
                    format!("=== {f} ===\n{}\n", String::from_utf8_lossy(&data))
                }
            };
            recount += tokens::count(&block);
        }
        assert_eq!(recount, tokens, "{}: tokens as counted", a["id"]);
        for d in a["depends_on"].as_array().into_iter().flatten() {
            let n: usize = d
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert!(n < i + 1, "{} depends on the later {d}", a["id"]);
        }
    }
    let planned: BTreeSet<&String> = owner.keys().collect();
    let wanted: BTreeSet<&String> = in_scope.iter().collect();
    assert_eq!(
        planned, wanted,
        "every file in scope in exactly one assignment"
    );
    owner
}

fn tree_mode(dir: &Path, branch: &str, path: &str) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["ls-tree", branch, "--", path])
        .output()
        .expect("git runs");
    String::from_utf8_lossy(&out.stdout)
        .split(' ')
        .next()
        .unwrap_or("")
        .to_owned()
}

fn depends(plan: &Value, a: usize) -> Vec<usize> {
    plan["assignments"][a]["depends_on"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            d.as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .parse::<usize>()
                .unwrap()
                - 1
        })
        .collect()
}

/// This repository's committed tree on `main` of a fresh test repository.
fn this_repository() -> TestRepo {
    let repo = TestRepo::new();
    let src = env!("CARGO_MANIFEST_DIR");
    repo.git(&["fetch", "-q", "--no-tags", src, "HEAD"]);
    repo.git(&["checkout", "-q", "-f", "-B", "main", "FETCH_HEAD"]);
    repo
}

#[test]
fn plan_of_this_repository_with_codeowners() {
    let repo = this_repository();
    repo.commit(
        &[(
            ".github/CODEOWNERS",
            "# test owners\n* @core\n/docs/ @docs-team\n/src/git/ @git-team\n*.md @writers\n",
        )],
        "test: CODEOWNERS",
    );
    let path = task(&repo, "task.json", basic("SELF-1", "refactor", &[]));
    // 30,000 tokens, or more when one file of this repository (with the instructions around
    // it) needs more: the test is of splitting and owners, not of this repository's sizes.
    let largest = tree_files(repo.path(), "main")
        .iter()
        .filter_map(|f| std::fs::read_to_string(repo.path().join(f)).ok())
        .map(|text| tokens::count(&text))
        .max()
        .unwrap_or(0);
    let max_tokens = (largest + 4_000).max(30_000).to_string();
    let started = std::time::Instant::now();
    let plan = repo.json(&["plan", &path, "--max-tokens", &max_tokens]);
    eprintln!(
        "plan of this repository: {} ms, {} assignments",
        started.elapsed().as_millis(),
        plan["assignments"].as_array().unwrap().len()
    );
    let files = tree_files(repo.path(), "main");
    let owner = check_plan(&plan, repo.path(), "main", &files);
    let a = &plan["assignments"];
    let owners_of = |f: &str| a[owner[f]]["owners"].clone();
    assert_eq!(owners_of("src/git/refs.rs"), json!(["@git-team"]));
    assert_eq!(
        owners_of("docs/usage.md"),
        json!(["@writers"]),
        "the last match wins"
    );
    assert_eq!(
        owners_of("docs/../Cargo.toml".trim_start_matches("docs/../")),
        json!(["@core"])
    );
    assert_eq!(a[owner["src/lib.rs"]]["domain"], "src");
    assert_eq!(a[owner["tests/suite/plan.rs"]]["domain"], "tests");
    // Split below the maximum: the sources alone are far above it.
    assert!(a.as_array().unwrap().len() > 10);
    // A test of the library waits for the assignment holding the library code it uses.
    let t = owner["tests/suite/plan.rs"];
    let lib = owner["src/agents/plan/tokens.rs"];
    assert!(
        depends(&plan, t).contains(&lib) || lib == t,
        "tests/suite/plan.rs uses src/agents/plan/tokens.rs: {:?}",
        depends(&plan, t)
    );
    // Text form: the table and the dependency list.
    let text = repo.ok(&["plan", &path, "--max-tokens", &max_tokens]);
    assert!(text.contains("owners from .github/CODEOWNERS"), "{text}");
    assert!(text.contains("dependencies:"), "{text}");
    assert!(text.contains("SELF-1/1 "), "{text}");
}

#[test]
fn shipped_task_samples_plan_on_this_repository() {
    let repo = this_repository();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/tasks");
    let files = tree_files(repo.path(), "main");
    for name in [
        "01-feature-plan.json",
        "02-docs-usage.json",
        "03-refactor-budget.json",
    ] {
        let sample = dir.join(name).display().to_string();
        let plan = repo.json(&["plan", &sample, "--target", "main"]);
        let task: Value = serde_json::from_slice(&std::fs::read(dir.join(name)).unwrap()).unwrap();
        let scope: Vec<String> = files
            .iter()
            .filter(|f| {
                task["scope"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|g| hyperion::request::paths::glob_match(g.as_str().unwrap(), f))
            })
            .cloned()
            .collect();
        check_plan(&plan, repo.path(), "main", &scope);
        if name.starts_with("03") {
            let budgets: Vec<f64> = plan["assignments"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["budget"]["usd"].as_f64().unwrap())
                .collect();
            assert!(budgets.iter().sum::<f64>() <= 12.5, "{budgets:?}");
            assert_eq!(plan["assignments"][0]["budget"]["attempts"], 3);
            assert_eq!(plan["assignments"][0]["deadline"], "2027-01-15T17:00:00Z");
        }
    }
}

/// A Rust workspace, a Python package and a TypeScript app, with owners that cut across
/// references, and a directory large enough to be split.
fn multi_language(repo: &TestRepo) {
    let mut files: Vec<(String, String)> = vec![
        ("Cargo.toml".into(), "[workspace]\nmembers = [\"crates/*\"]\n".into()),
        ("crates/core/Cargo.toml".into(), "[package]\nname = \"core-lib\"\nversion = \"0.1.0\"\n".into()),
        ("crates/core/src/lib.rs".into(), "pub mod shapes;\npub fn area() -> f64 { shapes::unit() }\n".into()),
        ("crates/core/src/shapes.rs".into(), "pub fn unit() -> f64 { 1.0 }\n".into()),
        ("crates/cli/Cargo.toml".into(), "[package]\nname = \"cli\"\nversion = \"0.1.0\"\n[dependencies]\ncore-lib = { path = \"../core\" }\n".into()),
        ("crates/cli/src/main.rs".into(), "use core_lib::shapes::unit;\nfn main() { println!(\"{}\", unit()); }\n".into()),
        ("package.json".into(), "{\"private\": true, \"workspaces\": [\"web\"]}\n".into()),
        ("web/package.json".into(), "{\"name\": \"web\"}\n".into()),
        ("web/src/a.ts".into(), "import { b } from './b';\nexport const a = () => b();\n".into()),
        ("web/src/b.ts".into(), "import { a } from './a.js';\nexport const b = () => 1;\nexport const c = () => a();\n".into()),
        ("py/app/__init__.py".into(), "".into()),
        ("py/app/models.py".into(), "class User:\n    pass\n".into()),
        ("py/app/views.py".into(), "from .models import User\n\ndef show(u: User) -> str:\n    return str(u)\n".into()),
        ("CODEOWNERS".into(), "* @everyone\n/web/src/a.ts @web-a\n/web/src/b.ts @web-b\n/py/app/views.py @views\n/crates/cli/ @cli\n".into()),
    ];
    for i in 0..24 {
        let body: String = (0..60)
            .map(|j| {
                format!("def f{j}(x):\n    return x * {i} + {j}  # generated helper {i}-{j}\n")
            })
            .collect();
        files.push((format!("py/gen/part{}/mod{i:02}.py", i % 3), body));
    }
    for (path, body) in &files {
        let p = repo.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "multi-language tree"]);
}

#[test]
fn plan_of_a_multi_language_tree() {
    let repo = TestRepo::new();
    multi_language(&repo);
    let path = task(&repo, "task.json", basic("ML-1", "feature", &[]));
    let plan = repo.json(&["plan", &path, "--max-tokens", "4000"]);
    let files = tree_files(repo.path(), "main");
    let owner = check_plan(&plan, repo.path(), "main", &files);
    let a = &plan["assignments"];
    let idx = |f: &str| owner[f];
    // Domains: workspace members, else top-level directories.
    assert_eq!(a[idx("crates/core/src/lib.rs")]["domain"], "crates/core");
    assert_eq!(a[idx("crates/cli/src/main.rs")]["domain"], "crates/cli");
    assert_eq!(a[idx("web/src/a.ts")]["domain"], "web");
    assert_eq!(a[idx("py/app/views.py")]["domain"], "py");
    assert_eq!(a[idx("Cargo.toml")]["domain"], ".");
    // Rust: the cli crate uses core's module; Python: views imports models.
    assert!(
        depends(&plan, idx("crates/cli/src/main.rs")).contains(&idx("crates/core/src/shapes.rs"))
    );
    assert!(depends(&plan, idx("py/app/views.py")).contains(&idx("py/app/models.py")));
    // The generated package was split, by directory, below the maximum.
    let gen_parts: BTreeSet<usize> = files
        .iter()
        .filter(|f| f.starts_with("py/gen/"))
        .map(|f| idx(f))
        .collect();
    assert!(gen_parts.len() >= 3, "{gen_parts:?}");
    // a.ts and b.ts import each other across owners: a cycle, reported and sequenced.
    let cycles = plan["cycles"].as_array().expect("a cycle is reported");
    let (ia, ib) = (idx("web/src/a.ts"), idx("web/src/b.ts"));
    let ids = |i: usize| a[i]["id"].clone();
    assert!(
        cycles.iter().any(|c| {
            let m = c["assignments"].as_array().unwrap();
            m.contains(&ids(ia)) && m.contains(&ids(ib))
        }),
        "{cycles:?}"
    );
    assert!(depends(&plan, ia).contains(&ib) ^ depends(&plan, ib).contains(&ia));
    let text = repo.ok(&["plan", &path, "--max-tokens", "4000"]);
    assert!(text.contains("cycle: "), "{text}");
    assert!(text.contains("not waited for: "), "{text}");
}

/// `HYPERION_PLAN_REPO=/path/to/clone cargo test --release --test suite -- --nocapture
/// plan::a_fetched_project`: the same properties on a real project (its checked-out branch), with
/// `HYPERION_PLAN_MAX_TOKENS` (default 60000) and `HYPERION_PLAN_SCOPE` (globs, comma-separated).
#[test]
fn a_fetched_project() {
    let Ok(dir) = std::env::var("HYPERION_PLAN_REPO") else {
        eprintln!("HYPERION_PLAN_REPO not set: skipped");
        return;
    };
    let repo = TestRepo::new();
    repo.git(&["fetch", "-q", "--no-tags", &dir, "HEAD"]);
    repo.git(&["update-ref", "refs/heads/main", "FETCH_HEAD"]);
    let max = std::env::var("HYPERION_PLAN_MAX_TOKENS").unwrap_or_else(|_| "60000".into());
    // HYPERION_PLAN_SCOPE: comma-separated globs (a vendored bundle above any maximum is
    // `plan.file_too_large`, by design).
    let scope_env = std::env::var("HYPERION_PLAN_SCOPE").unwrap_or_default();
    let scope: Vec<&str> = scope_env.split(',').filter(|s| !s.is_empty()).collect();
    let path = task(&repo, "task.json", basic("EXT-1", "refactor", &scope));
    let started = std::time::Instant::now();
    let out = repo.run(&["plan", &path, "--max-tokens", &max, "--format", "json"]);
    let elapsed = started.elapsed();
    if !out.status.success() {
        panic!("plan failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let files: Vec<String> = tree_files(repo.path(), "main")
        .into_iter()
        .filter(|f| {
            scope.is_empty()
                || scope
                    .iter()
                    .any(|g| hyperion::request::paths::glob_match(g, f))
        })
        .collect();
    check_plan(&plan, repo.path(), "main", &files);
    let edges: usize = plan["assignments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["depends_on"].as_array().map_or(0, Vec::len))
        .sum();
    eprintln!(
        "{dir}: {} files, {} assignments, {edges} dependencies, {} cycles, plan {} ms",
        files.len(),
        plan["assignments"].as_array().unwrap().len(),
        plan["cycles"].as_array().map_or(0, Vec::len),
        elapsed.as_millis()
    );
}

fn refs_and_status(repo: &TestRepo) -> (String, String) {
    (
        repo.git(&["for-each-ref"]),
        repo.git(&["status", "--porcelain", "--ignored"]),
    )
}

fn refused(repo: &TestRepo, args: &[&str], exit: i32, code: &str) -> String {
    let before = refs_and_status(repo);
    let (_, err) = repo.fails(args, exit);
    assert!(err.contains(&format!("[{code}]")), "{args:?}: {err}");
    assert!(err.contains("hint: "), "{err}");
    assert_eq!(refs_and_status(repo), before, "{args:?} changed nothing");
    err
}

#[test]
fn shipped_invalid_tasks_give_their_documented_codes() {
    let repo = TestRepo::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/tasks/invalid");
    let expected = std::fs::read_to_string(dir.join("EXPECTED")).unwrap();
    let mut n = 0;
    for line in expected
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (file, code) = line.split_once(char::is_whitespace).unwrap();
        let path = dir.join(file).display().to_string();
        let err = refused(&repo, &["plan", &path], 1, code.trim());
        assert!(err.contains("nothing was planned"), "{err}");
        n += 1;
    }
    let on_disk = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "json")
        })
        .count();
    assert_eq!(n, on_disk, "every invalid task is listed in EXPECTED");
}

#[test]
fn unknown_targets_and_empty_scopes_are_refused() {
    let repo = TestRepo::new();
    let path = task(&repo, "t.json", basic("T", "docs", &[]));
    let err = refused(
        &repo,
        &["plan", &path, "--target", "mian"],
        2,
        "target.missing",
    );
    assert!(err.contains("did you mean 'main'"), "{err}");
    refused(
        &repo,
        &["plan", &path, "--target", "refs/tags/v1"],
        2,
        "target.not_branch",
    );
    let mut t = basic("T", "docs", &[]);
    t["target"] = json!("nope");
    let path2 = task(&repo, "t2.json", t);
    refused(&repo, &["plan", &path2], 2, "target.missing");
    let path3 = task(
        &repo,
        "t3.json",
        basic("T", "docs", &["README.md", "nothing/**"]),
    );
    let err = refused(&repo, &["plan", &path3], 1, "plan.scope_empty");
    assert!(err.contains("/scope/1"), "{err}");
    refused(&repo, &["plan", "missing.json"], 2, "usage");
}

#[test]
fn a_file_above_the_maximum_is_refused_by_name() {
    let repo = TestRepo::new();
    let big: String = (0..3000)
        .map(|i| format!("line {i} of a long file\n"))
        .collect();
    repo.commit(&[("big.txt", &big), ("small.txt", "small\n")], "big");
    let path = task(&repo, "t.json", basic("T", "chore", &[]));
    let err = refused(
        &repo,
        &["plan", &path, "--max-tokens", "5000"],
        1,
        "plan.file_too_large",
    );
    assert!(err.contains("big.txt"), "{err}");
    // With room, the same task plans.
    repo.ok(&["plan", &path, "--max-tokens", "60000"]);
    let err = refused(
        &repo,
        &["plan", &path, "--max-tokens", "20"],
        1,
        "plan.instructions_too_large",
    );
    assert!(err.contains("tokens"), "{err}");
    // The configured maximum applies without the flag.
    repo.git(&["config", "hyperion.plan.maxTokens", "5000"]);
    refused(&repo, &["plan", &path], 1, "plan.file_too_large");
    repo.git(&["config", "hyperion.plan.maxTokens", "lots"]);
    refused(&repo, &["plan", &path], 2, "config.invalid");
}

#[test]
fn templates_come_from_the_target_tree_and_hostile_ones_are_bounded() {
    let repo = TestRepo::new();
    let path = task(&repo, "t.json", basic("T", "docs", &[]));
    // A template only in the work tree is not used.
    std::fs::create_dir_all(repo.path().join(".hyperion/templates")).unwrap();
    std::fs::write(
        repo.path().join(".hyperion/templates/docs.md.j2"),
        "WORKTREE {{ task.title }}",
    )
    .unwrap();
    let plan = repo.json(&["plan", &path]);
    assert!(
        !plan["assignments"][0]["instructions"]
            .as_str()
            .unwrap()
            .contains("WORKTREE")
    );
    // Committed on the target, it is.
    repo.commit(
        &[(
            ".hyperion/templates/docs.md.j2",
            "Custom {{ task.title }}: {{ assignment.files|join(', ') }}",
        )],
        "template",
    );
    let plan = repo.json(&["plan", &path]);
    assert_eq!(
        plan["assignments"][0]["instructions"], "Custom task T: README.md",
        "the root's files are one assignment, .hyperion's another"
    );
    for (template, code) in [
        // Endless loops: recursion over the files, and 24^6 steps over the instructions'
        // characters (fuel).
        (
            "{% for f in assignment.files recursive %}{{ loop(assignment.files) }}{% endfor %}",
            "plan.template_limit",
        ),
        (
            &format!(
                "{}{}",
                "{% for c in task.instructions %}".repeat(6),
                "{% endfor %}".repeat(6)
            ),
            "plan.template_limit",
        ),
        // Huge output: 24^4 times a 200-byte line.
        (
            &format!(
                "{}{}{}",
                "{% for c in task.instructions %}".repeat(4),
                "y".repeat(200),
                "{% endfor %}".repeat(4)
            ),
            "plan.template_limit",
        ),
        // Memory: strings built by doubling.
        (
            "{% set s = task.instructions ~ task.instructions %}{{ s }}",
            "plan.template_invalid",
        ),
        (
            "{% set s %}{{ task.instructions }}{% endset %}",
            "plan.template_invalid",
        ),
        // No loader, no filesystem.
        ("{% include '/etc/passwd' %}", "plan.template_invalid"),
        ("{% for x in", "plan.template_invalid"),
    ] {
        repo.commit(
            &[(".hyperion/templates/docs.md.j2", template)],
            "hostile template",
        );
        let started = std::time::Instant::now();
        let err = refused(&repo, &["plan", &path], 1, code);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{template}: bounded in time"
        );
        assert!(err.contains(".hyperion/templates/docs.md.j2"), "{err}");
        if template.contains("yyyy") {
            assert!(err.contains("output passed"), "{err}");
        }
        if template.matches("for c in").count() == 6 {
            assert!(err.contains("fuel"), "{err}");
        }
        assert!(!err.contains("root:"), "{err}");
    }
}

#[test]
fn the_plan_is_the_same_for_the_same_tree() {
    let repo = TestRepo::new();
    multi_language(&repo);
    let path = task(
        &repo,
        "task.json",
        basic("ML-2", "test", &["py/**", "web/**"]),
    );
    let mut a = repo.json(&["plan", &path, "--max-tokens", "4000"]);
    let mut b = repo.json(&["plan", &path, "--max-tokens", "4000"]);
    a["created_at"] = Value::Null;
    b["created_at"] = Value::Null;
    assert_eq!(a, b);
    // The plan reads back as the type `run --plan` reads.
    let typed: hyperion::agents::model::Plan = serde_json::from_value({
        let mut v = repo.json(&["plan", &path, "--max-tokens", "4000"]);
        v["created_at"] = json!("2026-01-01T00:00:00Z");
        v
    })
    .unwrap();
    assert!(typed.assignments.iter().all(|x| {
        x.files
            .iter()
            .all(|f| f.starts_with("py/") || f.starts_with("web/"))
    }));
}
