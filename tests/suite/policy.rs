//! The policy file: read from the target branch's tip (never from the request), checked with
//! line-precise errors, shown by `config` with its origin, and enforced at enqueue.

#![allow(clippy::unwrap_used)]

use crate::common;

use common::{TestRepo, request, sha256};
use serde_json::{Value, json};

fn commit_policy(repo: &TestRepo, text: &str) {
    repo.commit(&[(".hyperion/policy.toml", text)], "policy");
}

/// A request adding `n` files.
fn files(n: usize, salt: &str) -> Value {
    let mut v = request(1, salt);
    v["changes"] = (0..n)
        .map(|i| {
            let patch = format!("--- /dev/null\n+++ b/src/{salt}{i}.txt\n@@ -0,0 +1 @@\n+x\n");
            json!({"path": format!("src/{salt}{i}.txt"), "operation": "add", "patch": patch, "sha256": sha256(&patch)})
        })
        .collect::<Vec<_>>()
        .into();
    v
}

const BROKEN: &str = "# a policy with mistakes\n[limits]\nfiles = 0\nfiels = 3\n\n[checks.unit]\nrun = []\ntimeout = \"soon\"\n\n[paths]\ndeny = [\"../x\"]\n[extra]\n";

#[test]
fn policy_check_reports_every_problem_with_its_line() {
    let repo = TestRepo::new();
    let f = repo.home.path().join("policy.toml");
    std::fs::write(&f, BROKEN).unwrap();
    let (out, err) = repo.fails(&["policy", "check", f.to_str().unwrap()], 1);
    assert_eq!(out, "");
    let origin = f.display().to_string();
    for (line, code) in [
        (3, "policy.invalid_value"),
        (4, "policy.unknown_key"),
        (7, "policy.invalid_value"),
        (8, "policy.invalid_value"),
        (11, "policy.invalid_value"),
        (12, "policy.unknown_key"),
    ] {
        let prefix = format!("error: {origin}:{line}: ");
        assert!(
            err.lines()
                .any(|l| l.starts_with(&prefix) && l.ends_with(&format!("[{code}]"))),
            "no {code} at line {line}:\n{err}"
        );
    }
    assert!(err.contains("unknown key 'fiels' in [limits]"), "{err}");
    assert!(err.contains("[policy.invalid]"), "{err}");

    let (out, _) = repo.fails(
        &["policy", "check", "--format", "json", f.to_str().unwrap()],
        1,
    );
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["valid"], false);
    let lines: Vec<u64> = doc["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [3, 4, 7, 8, 11, 12]);

    std::fs::write(&f, "[limits]\nfiles = = 1\n").unwrap();
    let (_, err) = repo.fails(&["policy", "check", f.to_str().unwrap()], 1);
    assert!(
        err.starts_with(&format!("error: {origin}:2: not valid TOML"))
            && err.contains("[policy.syntax]"),
        "{err}"
    );
    std::fs::write(&f, "[limits]\nfiles = 10\n").unwrap();
    let out = repo.ok(&["policy", "check", f.to_str().unwrap()]);
    assert!(out.starts_with(&format!("ok {origin}")), "{out}");
    repo.fails(&["policy", "check", "/nonexistent/policy.toml"], 2);
}

#[test]
fn policy_check_reads_the_target_tip_or_a_revision() {
    let repo = TestRepo::new();
    let out = repo.ok(&["policy", "check"]);
    assert!(out.contains("default policy applies"), "{out}");
    commit_policy(&repo, "[checks.unit]\nrun = [\"true\"]\n");
    let out = repo.ok(&["policy", "check"]);
    assert_eq!(
        out.trim(),
        "ok main:.hyperion/policy.toml (1 named check(s))"
    );
    let out = repo.ok(&["policy", "check", "--rev", "HEAD~1"]);
    assert!(out.contains("default policy applies"), "{out}");
    // A broken policy on another branch: only that revision fails.
    repo.git(&["checkout", "-q", "-b", "broken"]);
    commit_policy(&repo, BROKEN);
    repo.git(&["checkout", "-q", "main"]);
    repo.ok(&["policy", "check"]);
    let (_, err) = repo.fails(&["policy", "check", "--rev", "broken"], 1);
    assert!(
        err.contains("error: broken:.hyperion/policy.toml:4: unknown key 'fiels'"),
        "{err}"
    );
    repo.fails(&["policy", "check", "--rev", "no-such-branch"], 2);
}

#[test]
fn config_shows_where_every_value_comes_from() {
    let repo = TestRepo::new();
    commit_policy(
        &repo,
        "[limits]\nfiles = 7\n\n[checks.unit]\nrun = [\"cargo\", \"test\"]\ntimeout = \"2m\"\n",
    );
    repo.git(&["config", "hyperion.maxAttempts", "5"]);
    let global = repo.home.path().join("global.gitconfig");
    std::fs::write(&global, "[hyperion]\n\tretention = 9d\n").unwrap();
    let out = repo
        .cmd()
        .env("GIT_CONFIG_GLOBAL", &global)
        .args(["config", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = |k: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == k)
            .unwrap_or_else(|| panic!("no row {k}: {rows}"))
            .clone()
    };
    let max = row("hyperion.maxAttempts");
    assert_eq!(max["value"], "5");
    assert!(
        max["origin"].as_str().unwrap().starts_with("local"),
        "{max}"
    );
    let ret = row("hyperion.retention");
    assert_eq!(ret["value"], "9d");
    assert!(
        ret["origin"].as_str().unwrap().starts_with("global"),
        "{ret}"
    );
    assert!(
        ret["origin"].as_str().unwrap().contains("global.gitconfig"),
        "{ret}"
    );
    assert_eq!(row("hyperion.maxLease")["origin"], "default");
    let origin = "policy:main:.hyperion/policy.toml";
    assert_eq!(row("policy.limits.files")["value"], "7");
    assert_eq!(row("policy.limits.files")["origin"], origin);
    assert_eq!(row("policy.limits.change_bytes")["origin"], "default");
    assert_eq!(
        row("policy.checks.unit.run")["value"],
        "[\"cargo\",\"test\"]"
    );
    assert_eq!(row("policy.checks.unit.timeout")["value"], "2m");
    assert_eq!(row("policy.checks.unit.timeout")["origin"], origin);
    assert_eq!(row("policy.patch.min_context")["value"], "3");
    assert_eq!(row("policy.patch.min_context")["origin"], "default");

    let text = repo.ok(&["config"]);
    let line = text
        .lines()
        .find(|l| l.starts_with("policy.limits.files "))
        .unwrap();
    assert!(line.contains(" 7 ") && line.contains(origin), "{line}");

    // A policy that cannot be read makes config fail with its code, naming file and line.
    commit_policy(&repo, "[limits]\nfiles = \"many\"\n");
    let (_, err) = repo.fails(&["config"], 2);
    assert!(
        err.contains("main:.hyperion/policy.toml:2:") && err.contains("[policy.invalid]"),
        "{err}"
    );
}

#[test]
fn a_policy_committed_on_the_target_tightens_and_loosens_enqueue() {
    let repo = TestRepo::new();
    let f = repo.write("three.json", &files(3, "a"));
    repo.ok(&["enqueue", "--dry-run", f.to_str().unwrap()]);
    commit_policy(&repo, "[limits]\nfiles = 2\n");
    let (_, err) = repo.fails(&["enqueue", f.to_str().unwrap()], 1);
    assert!(
        err.contains("[limit.files]") && err.contains("at most 2 files"),
        "{err}"
    );
    let (_, err) = repo.fails(&["validate", f.to_str().unwrap()], 1);
    assert!(err.contains("limit.files"), "{err}");
    assert_eq!(repo.hyperion_refs(), "");

    // The policy can raise a default limit too: a 1.5 MiB patch passes with a higher one.
    let mut big = request(2, "big");
    let patch = format!(
        "--- /dev/null\n+++ b/src/big.txt\n@@ -0,0 +1 @@\n+{}\n",
        "x".repeat(3 << 19)
    );
    big["changes"][0] = json!({"path": "src/big.txt", "operation": "add", "sha256": sha256(&patch), "patch": patch});
    let b = repo.write("big.json", &big);
    let (_, err) = repo.fails(&["enqueue", b.to_str().unwrap()], 1);
    assert!(err.contains("[limit.change_bytes]"), "{err}");
    commit_policy(&repo, "[limits]\nchange_bytes = 4194304\n");
    repo.ok(&["enqueue", b.to_str().unwrap()]);
}

#[test]
fn a_request_cannot_bring_its_own_policy() {
    let repo = TestRepo::new();
    commit_policy(&repo, "[limits]\nfiles = 1\n");
    // Two changes, one of which rewrites the policy to allow ten files.
    let mut v = files(1, "p");
    let patch = "--- a/.hyperion/policy.toml\n+++ b/.hyperion/policy.toml\n@@ -1,2 +1,2 @@\n [limits]\n-files = 1\n+files = 10\n";
    v["changes"].as_array_mut().unwrap().push(json!({
        "path": ".hyperion/policy.toml", "operation": "update", "patch": patch, "sha256": sha256(patch)
    }));
    v["file_targets"] = json!(["src/**", ".hyperion/policy.toml"]);
    let f = repo.write("sneaky.json", &v);
    let (_, err) = repo.fails(&["enqueue", f.to_str().unwrap()], 1);
    assert!(err.contains("[limit.files]"), "{err}");
    assert_eq!(repo.hyperion_refs(), "");
}

#[test]
fn an_invalid_policy_on_the_target_refuses_every_enqueue() {
    let repo = TestRepo::new();
    commit_policy(&repo, "[limits]\nfiles = 10\nmax_files = 3\n");
    let f = repo.write("r.json", &request(1, "x"));
    let (out, err) = repo.fails(&["enqueue", "--format", "json", f.to_str().unwrap()], 2);
    assert!(
        err.contains("[policy.invalid]") && err.contains("main:.hyperion/policy.toml:3:"),
        "{err}"
    );
    assert!(err.contains("hint: `git hyperion policy check`"), "{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["error"]["code"], "policy.invalid");
    assert_eq!(doc["error"]["problems"][0]["code"], "policy.unknown_key");
    assert_eq!(doc["error"]["problems"][0]["line"], 3);
    repo.fails(&["validate", f.to_str().unwrap()], 2);
    assert_eq!(repo.hyperion_refs(), "");
}

#[test]
fn each_target_branch_has_its_own_policy() {
    let repo = TestRepo::new();
    repo.git(&["branch", "release"]);
    repo.git(&["checkout", "-q", "release"]);
    commit_policy(&repo, "[paths]\ndeny = [\"src/**\"]\n");
    repo.git(&["checkout", "-q", "main"]);
    let mut v = request(1, "t");
    let f = repo.write("main.json", &v);
    repo.ok(&["enqueue", "--dry-run", f.to_str().unwrap()]);
    v["target"] = "release".into();
    let f = repo.write("release.json", &v);
    let (_, err) = repo.fails(&["enqueue", f.to_str().unwrap()], 1);
    assert!(
        err.contains("[path.denied]") && err.contains("release:.hyperion/policy.toml"),
        "{err}"
    );
}

#[test]
fn named_checks_and_allowed_inline_commands() {
    let repo = TestRepo::new();
    commit_policy(
        &repo,
        "[checks]\nallow_inline = true\ninline_allow = [\"cargo test*\", \"make check\"]\n\n[checks.unit]\nrun = [\"cargo\", \"test\"]\n",
    );
    let with_checks = |name: &str, checks: Value| {
        let mut v = request(1, name);
        v["checks"] = checks;
        repo.write(&format!("{name}.json"), &v)
    };
    for (name, checks) in [
        ("named", json!(["unit"])),
        ("inline", json!(["cargo test --workspace", "make check"])),
    ] {
        let f = with_checks(name, checks);
        repo.ok(&["enqueue", "--dry-run", f.to_str().unwrap()]);
    }
    for (name, checks, code) in [
        (
            "not-allowed",
            json!(["cargo build"]),
            "check.inline_refused",
        ),
        (
            "shell",
            json!(["cargo test && curl x"]),
            "check.inline_refused",
        ),
        ("no-such-name", json!(["lint"]), "check.inline_refused"),
    ] {
        let f = with_checks(name, checks);
        let (_, err) = repo.fails(&["enqueue", f.to_str().unwrap()], 1);
        assert!(
            err.contains(&format!("[{code}] /checks/0")),
            "{name}: {err}"
        );
    }
}

#[test]
fn git_diff_output_passes_the_default_minimum_context() {
    // Edits at the very start and end of a file, where git writes less context.
    let repo = TestRepo::new();
    let text: String = (1..=30).map(|i| format!("line {i}\n")).collect();
    std::fs::write(repo.path().join("f.txt"), &text).unwrap();
    repo.git(&["add", "f.txt"]);
    repo.git(&["commit", "-q", "-m", "f"]);
    let edited = text
        .replace("line 1\n", "LINE 1\n")
        .replace("line 15\n", "LINE 15\n")
        .replace("line 30\n", "line 30\nline 31\n");
    std::fs::write(repo.path().join("f.txt"), edited).unwrap();
    let diff = repo.git(&["diff"]);
    repo.git(&["checkout", "f.txt"]);
    assert_eq!(diff.matches("\n@@ ").count(), 3, "{diff}");
    let p = repo.home.path().join("edge.diff");
    std::fs::write(&p, &diff).unwrap();
    let args = [
        "enqueue",
        "--dry-run",
        "--patch",
        p.to_str().unwrap(),
        "--task",
        "T",
        "--agent",
        "a",
    ];
    repo.ok(&args);
    // The same edits with one line of context are refused, each hunk named by its line.
    let u1 = repo.home.path().join("u1.diff");
    std::fs::write(
        repo.path().join("f.txt"),
        text.replace("line 15\n", "LINE 15\n"),
    )
    .unwrap();
    std::fs::write(&u1, repo.git(&["diff", "-U1"])).unwrap();
    repo.git(&["checkout", "f.txt"]);
    let (_, err) = repo.fails(
        &[
            "enqueue",
            "--patch",
            u1.to_str().unwrap(),
            "--task",
            "T",
            "--agent",
            "a",
        ],
        1,
    );
    assert!(
        err.contains("[patch.min_context] /changes/0/patch: line 5:"),
        "{err}"
    );
    // A policy may lower the minimum.
    commit_policy(&repo, "[patch]\nmin_context = 1\n");
    repo.ok(&[
        "enqueue",
        "--dry-run",
        "--patch",
        u1.to_str().unwrap(),
        "--task",
        "T",
        "--agent",
        "a",
    ]);
}

#[test]
fn the_shipped_sample_policy_is_valid_and_enforced() {
    let repo = TestRepo::new();
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/policy.toml");
    let out = repo.ok(&["policy", "check", sample.to_str().unwrap()]);
    assert!(out.contains("(2 named check(s))"), "{out}");
    commit_policy(&repo, &std::fs::read_to_string(&sample).unwrap());
    let mut v = request(1, "s");
    v["checks"] = json!(["unit", "fmt", "cargo test --doc"]);
    let f = repo.write("ok.json", &v);
    repo.ok(&["enqueue", "--dry-run", f.to_str().unwrap()]);
    v["file_targets"] = json!(["**"]);
    let patch = "--- /dev/null\n+++ b/.github/workflows/ci.yml\n@@ -0,0 +1 @@\n+on: push\n";
    v["changes"][0] = json!({"path": ".github/workflows/ci.yml", "operation": "add", "patch": patch, "sha256": sha256(patch)});
    let f = repo.write("ci.json", &v);
    let (_, err) = repo.fails(&["enqueue", f.to_str().unwrap()], 1);
    assert!(err.contains("[path.denied]"), "{err}");
}

#[test]
fn a_secret_rule_added_after_enqueue_parks_the_request_when_it_is_leased() {
    // Accepted under the old policy; the worker judges it by the new one at lease time.
    let repo = TestRepo::new();
    let corp = "corp_0123456789abcdef";
    let mut req = request(1, "corp");
    req["title"] = format!("deploy with {corp}").into();
    let f = repo.write("corp.json", &req);
    let id = repo.enqueue(&f)[0].clone();
    commit_policy(
        &repo,
        "[secrets]\npatterns = { corp = \"corp_[0-9a-f]{16}\" }\n",
    );
    let out = repo.run(&["worker", "--drain", "--format", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["id"], id.as_str());
    assert_eq!(report["result"], "dead", "{report}");
    assert_eq!(report["class"], "validation", "{report}");
    assert_eq!(report["code"], "secret.detected", "{report}");
    let shown = repo.json(&["show", &id]);
    let message = shown["record"]["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("/title holds what looks like"),
        "{message}"
    );
    for text in [message, &String::from_utf8_lossy(&out.stdout)] {
        assert!(!text.contains(corp), "{text}");
    }
}
