//! `git hyperion ingest` (pushed branches become requests) and `git hyperion watch` (request
//! files dropped into a spool directory), end to end: real git, real repositories, the built
//! binary in real processes. Every refusal is checked to store nothing.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{TestRepo, request, signal};
use serde_json::Value;

// ---------------------------------------------------------------------------------------
// ingest

/// A branch `name` off `from` with `files` written and committed with `message`; back on
/// main afterwards (the checkout stays clean).
fn branch(repo: &TestRepo, name: &str, from: &str, files: &[(&str, &str)], message: &str) {
    repo.git(&["switch", "-q", "-c", name, from]);
    for (path, content) in files {
        let p = repo.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
        repo.git(&["add", path]);
    }
    repo.git(&["commit", "-q", "--allow-empty", "-m", message]);
    repo.git(&["switch", "-q", "main"]);
}

/// Commit a policy on main.
fn policy(repo: &TestRepo, text: &str) {
    std::fs::create_dir_all(repo.path().join(".hyperion")).unwrap();
    std::fs::write(repo.path().join(".hyperion/policy.toml"), text).unwrap();
    repo.git(&["add", ".hyperion/policy.toml"]);
    repo.git(&["commit", "-q", "-m", "policy"]);
}

/// `ingest ARGS --format json` with its exit code expected; the rows by ref.
fn ingest(repo: &TestRepo, args: &[&str], code: i32) -> Vec<Value> {
    let mut a = vec!["ingest"];
    a.extend(args);
    a.extend(["--format", "json"]);
    let out = repo.run(&a);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(code),
        "ingest {args:?}\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("ingest printed no one JSON document ({e}): {stdout}"));
    v.as_array().expect("an array").clone()
}

fn row<'a>(rows: &'a [Value], refname: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["ref"] == refname)
        .unwrap_or_else(|| panic!("no row for {refname}: {rows:#?}"))
}

fn codes(row: &Value) -> Vec<String> {
    row["problems"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| p["code"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Everything a person's clone has that ingest must not touch: branches, HEAD, the
/// checkout's state.
fn user_state(repo: &TestRepo) -> String {
    format!(
        "{}\n{}\n{}",
        repo.git(&[
            "for-each-ref",
            "--format=%(refname) %(objectname)",
            "refs/heads"
        ]),
        repo.git(&["symbolic-ref", "HEAD"]),
        repo.git(&["status", "--porcelain", "--untracked-files=all"]),
    )
}

#[test]
fn agent_branches_become_requests_once() {
    let repo = TestRepo::new();
    branch(
        &repo,
        "agent/claude/T-1",
        "main",
        &[("README.md", "hello\nworld\n"), ("src/new.txt", "new\n")],
        "Greet the world\n\nA longer explanation.",
    );
    let before = user_state(&repo);

    let rows = ingest(&repo, &[], 0);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let r = row(&rows, "refs/heads/agent/claude/T-1");
    assert_eq!(r["result"], "queued");
    let id = r["id"].as_str().unwrap().to_owned();
    assert_eq!(r["record"]["agent"], "claude");
    assert_eq!(r["record"]["task_id"], "T-1");
    assert_eq!(r["record"]["title"], "Greet the world");
    assert_eq!(repo.statuses(), vec![(id.clone(), "pending".to_owned())]);
    let refs = repo.hyperion_refs();

    // The same tip again: nothing new, reported as already queued.
    let rows = ingest(&repo, &[], 0);
    let r = row(&rows, "refs/heads/agent/claude/T-1");
    assert_eq!(r["result"], "already_queued");
    assert_eq!(r["id"], id.as_str());
    assert_eq!(repo.hyperion_refs(), refs);
    let text = repo.ok(&["ingest"]);
    assert!(text.contains(&format!("already  {id}")), "{text}");

    // The request is what git's diff says, and it lands.
    let show = repo.json(&["show", &id, "--patch"]);
    let paths: Vec<&str> = show["request"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["README.md", "src/new.txt"]);
    repo.ok(&["worker", "--drain"]);
    assert_eq!(repo.landed_trailers(), vec![id.clone()]);
    assert_eq!(
        repo.git(&["show", "main:README.md"]),
        "hello\nworld\n",
        "landed as the branch had it"
    );

    // After it landed the branch no longer fits the target (its file exists now), and it is
    // still the same request: already queued, not refused and not stored again.
    let rows = ingest(&repo, &[], 0);
    let r = row(&rows, "refs/heads/agent/claude/T-1");
    assert_eq!(r["result"], "already_queued");
    assert_eq!(r["record"]["status"], "applied");
    assert_eq!(repo.statuses().len(), 1);
    // Branches, HEAD and the checkout as they were (main moved by the landing only).
    let after = user_state(&repo);
    let strip_main = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with("refs/heads/main "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip_main(&after), strip_main(&before));
}

#[test]
fn trailers_name_agent_task_checks_and_priority() {
    let repo = TestRepo::new();
    policy(&repo, "[checks.unit]\nrun = [\"true\"]\n");
    branch(
        &repo,
        "feature/pager",
        "main",
        &[("pager.txt", "pages\n")],
        "Add a pager\n\nHyperion-Agent: codex\nHyperion-Task: TASK-7\nHyperion-Check: unit\nHyperion-Priority: 8",
    );
    // The name says one thing, the trailers win.
    branch(
        &repo,
        "agent/wrong/WRONG",
        "main",
        &[("other.txt", "x\n")],
        "Other\n\nHyperion-Agent: right\nHyperion-Task: RIGHT",
    );
    // Neither name nor trailers.
    branch(&repo, "fix", "main", &[("fix.txt", "x\n")], "Fix");
    let rows = ingest(&repo, &["feature/pager", "agent/wrong/WRONG"], 0);
    let r = row(&rows, "refs/heads/feature/pager");
    assert_eq!(r["result"], "queued", "{r:#}");
    assert_eq!(r["record"]["agent"], "codex");
    assert_eq!(r["record"]["task_id"], "TASK-7");
    assert_eq!(r["record"]["priority"], 8);
    let id = r["id"].as_str().unwrap();
    let show = repo.json(&["show", id, "--patch"]);
    assert_eq!(show["request"]["checks"], serde_json::json!(["unit"]));
    let r = row(&rows, "refs/heads/agent/wrong/WRONG");
    assert_eq!(r["record"]["agent"], "right");
    assert_eq!(r["record"]["task_id"], "RIGHT");

    let refs = repo.hyperion_refs();
    let rows = ingest(&repo, &["fix"], 1);
    assert_eq!(codes(row(&rows, "refs/heads/fix")), ["ingest.no_agent"]);
    assert_eq!(repo.hyperion_refs(), refs, "nothing stored for it");

    branch(
        &repo,
        "agent/a/bad-priority",
        "main",
        &[("p.txt", "x\n")],
        "P\n\nHyperion-Priority: 12",
    );
    let rows = ingest(&repo, &["agent/a/bad-priority"], 1);
    assert_eq!(
        codes(row(&rows, "refs/heads/agent/a/bad-priority")),
        ["ingest.bad_trailer"]
    );
    assert_eq!(repo.hyperion_refs(), refs);
}

/// Every kind of bad branch is refused with its code and nothing is stored for it; a good
/// branch beside them is stored all the same; the exit is 1.
#[test]
fn bad_branches_are_refused_and_store_nothing() {
    let repo = TestRepo::new();
    policy(
        &repo,
        "[paths]\ndeny = [\"secrets/**\"]\n\n[limits]\nrequest_bytes = 4000\n",
    );
    std::fs::write(repo.path().join("shared.txt"), "one\ntwo\nthree\n").unwrap();
    repo.git(&["add", "shared.txt"]);
    repo.git(&["commit", "-q", "-m", "shared"]);
    let fork = repo.git(&["rev-parse", "HEAD"]).trim().to_owned();
    // The target moves on after the agents branched off.
    std::fs::write(repo.path().join("shared.txt"), "one\nTWO (main)\nthree\n").unwrap();
    repo.git(&["commit", "-q", "-am", "main edits shared"]);

    branch(
        &repo,
        "agent/ok/T-1",
        &fork,
        &[("ok.txt", "fine\n")],
        "Good",
    );
    branch(
        &repo,
        "agent/bad/denied",
        &fork,
        &[("secrets/key.txt", "k\n")],
        "Denied",
    );
    branch(
        &repo,
        "agent/bad/conflict",
        &fork,
        &[("shared.txt", "one\nTWO (branch)\nthree\n")],
        "Conflicting",
    );
    let big: String = (0..400).map(|i| format!("line {i}\n")).collect();
    branch(&repo, "agent/bad/huge", &fork, &[("big.txt", &big)], "Huge");
    branch(&repo, "agent/bad/empty", "main", &[], "Nothing");
    // No history in common with main.
    repo.git(&["switch", "-q", "--orphan", "agent/bad/unrelated"]);
    std::fs::write(repo.path().join("z.txt"), "z\n").unwrap();
    repo.git(&["add", "z.txt"]);
    repo.git(&["commit", "-q", "-m", "Unrelated"]);
    repo.git(&["switch", "-q", "-f", "main"]);
    // A ref name git would never make, written by hand (as a hostile server-side tool could).
    let good_tip = repo.git(&["rev-parse", "agent/ok/T-1"]);
    let odd = repo.git_dir().join("refs/heads/agent/bad/a..b");
    std::fs::write(&odd, &good_tip).unwrap();
    let before = user_state(&repo);

    let rows = ingest(&repo, &[], 1);
    assert_eq!(row(&rows, "refs/heads/agent/ok/T-1")["result"], "queued");
    let expect = [
        ("refs/heads/agent/bad/denied", "path.denied"),
        ("refs/heads/agent/bad/conflict", "apply.conflict"),
        ("refs/heads/agent/bad/huge", "limit.request_bytes"),
        ("refs/heads/agent/bad/unrelated", "ingest.unrelated"),
        ("refs/heads/agent/bad/a..b", "ingest.bad_ref"),
    ];
    for (name, code) in expect {
        let r = row(&rows, name);
        assert_eq!(r["result"], "refused", "{name}: {r:#}");
        assert!(codes(r).contains(&code.to_owned()), "{name}: {r:#}");
        assert!(r.get("id").is_none() || r["id"].is_null() || r["result"] != "queued");
    }
    let r = row(&rows, "refs/heads/agent/bad/empty");
    assert_eq!(r["result"], "skipped");
    assert_eq!(codes(r), ["ingest.empty"]);
    // Only the good branch is in the queue.
    let statuses = repo.statuses();
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    assert_eq!(statuses[0].0, row(&rows, "refs/heads/agent/ok/T-1")["id"]);
    assert_eq!(user_state(&repo), before, "branches and checkout untouched");

    // The text form names every refused branch with its problems, as enqueue prints them.
    let (out, err) = repo.fails(&["ingest"], 1);
    assert!(
        out.contains("refused  -                 refs/heads/agent/bad/conflict"),
        "{out}"
    );
    assert!(
        err.contains("refs/heads/agent/bad/denied: [path.denied]"),
        "{err}"
    );
    assert!(err.contains("problem(s) in 5 branch(es)"), "{err}");

    // A skipped branch alone is not a failure.
    repo.ok(&["ingest", "agent/bad/empty"]);
}

/// Every kind of change git's diff can carry — edits, a new file, a delete, a rename with an
/// edit, a mode change, a symlink, binary content — lands so that the target's tree is the
/// branch's tree.
#[test]
fn what_lands_is_the_branch_tree() {
    let repo = TestRepo::new();
    let lines: String = (0..30).map(|i| format!("line {i}\n")).collect();
    std::fs::write(repo.path().join("old.txt"), &lines).unwrap();
    std::fs::write(repo.path().join("gone.txt"), "bye\n").unwrap();
    std::fs::write(repo.path().join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::write(repo.path().join("blob.bin"), [0u8, 1, 2, 3, 255, 0, 7]).unwrap();
    repo.git(&["add", "."]);
    repo.git(&["commit", "-q", "-m", "files"]);

    repo.git(&["switch", "-q", "-c", "agent/k/all"]);
    repo.git(&["mv", "old.txt", "new.txt"]);
    let edited = lines.replace("line 15\n", "line fifteen\n");
    std::fs::write(repo.path().join("new.txt"), edited).unwrap();
    repo.git(&["rm", "-q", "gone.txt"]);
    repo.git(&["update-index", "--chmod=+x", "run.sh"]);
    std::fs::write(repo.path().join("README.md"), "hello\nagain\n").unwrap();
    std::os::unix::fs::symlink("README.md", repo.path().join("link")).unwrap();
    let mut bin: Vec<u8> = (0..=255u8).collect();
    bin.extend([0u8; 64]);
    std::fs::write(repo.path().join("blob.bin"), &bin).unwrap();
    std::fs::write(repo.path().join("added.bin"), [9u8, 0, 9, 0]).unwrap();
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "All kinds of change"]);
    repo.git(&["switch", "-q", "main"]);

    let rows = ingest(&repo, &[], 0);
    assert_eq!(
        row(&rows, "refs/heads/agent/k/all")["result"],
        "queued",
        "{rows:#?}"
    );
    let report = repo.ok(&["worker", "--drain"]);
    assert!(report.starts_with("landed"), "{report}");
    assert_eq!(
        repo.git(&["rev-parse", "main^{tree}"]),
        repo.git(&["rev-parse", "agent/k/all^{tree}"])
    );
}

/// A secret in a branch — in a file, in the tip's message (which becomes the description),
/// in the branch's name (which becomes the task) — refuses it like any request, stores
/// nothing, and is never printed.
#[test]
fn secrets_in_branches_are_refused_and_not_shown() {
    let repo = TestRepo::new();
    // Put together at run time: this file's own history is replayed through hyperion by the
    // everyday benchmark, whose gate would refuse a key written out here.
    let key = format!("AKIA{}", "Q3EGRQ7SMPLEKEY7");
    let key = key.as_str();
    branch(
        &repo,
        "agent/s/in-file",
        "main",
        &[("deploy.cfg", &format!("aws_key_id = {key}\n"))],
        "Deploy config",
    );
    branch(
        &repo,
        "agent/s/in-message",
        "main",
        &[("notes.txt", "notes\n")],
        &format!("Notes\n\nuse {key} to deploy"),
    );
    branch(
        &repo,
        &format!("agent/s/{key}"),
        "main",
        &[("n.txt", "n\n")],
        "Named",
    );
    let out = repo.run(&["ingest", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        !stdout.contains(key) && !stderr.contains(key),
        "{stdout}\n{stderr}"
    );
    let rows: Vec<Value> = serde_json::from_str::<Value>(&stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(rows.len(), 3, "{rows:#?}");
    for r in &rows {
        assert_eq!(r["result"], "refused", "{r:#}");
        assert!(codes(r).contains(&"secret.detected".to_owned()), "{r:#}");
    }
    assert_eq!(repo.hyperion_refs(), "");
}

/// The conflict is found against the target as it is now: the same branch is taken once
/// the target no longer conflicts. (A branch that merely forked from an older target is
/// fine: its diff is taken from the merge-base.)
#[test]
fn a_branch_off_an_older_target_is_taken_from_its_merge_base() {
    let repo = TestRepo::new();
    let fork = repo.git(&["rev-parse", "HEAD"]).trim().to_owned();
    std::fs::write(repo.path().join("main.txt"), "main\n").unwrap();
    repo.git(&["add", "main.txt"]);
    repo.git(&["commit", "-q", "-m", "main moves"]);
    branch(&repo, "agent/a/T", &fork, &[("b.txt", "b\n")], "B");
    let rows = ingest(&repo, &[], 0);
    let id = row(&rows, "refs/heads/agent/a/T")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let show = repo.json(&["show", &id, "--patch"]);
    let changes = show["request"]["changes"].as_array().unwrap();
    assert_eq!(
        changes.len(),
        1,
        "only the branch's own change: {changes:#?}"
    );
    assert_eq!(changes[0]["path"], "b.txt");
}

/// Patterns and refs outside branches are refused before anything is read; the setting
/// holds several patterns and is shown by `config`.
#[test]
fn patterns_stay_in_branches_and_the_setting_is_honoured() {
    let repo = TestRepo::new();
    branch(&repo, "agent/a/T-1", "main", &[("a.txt", "a\n")], "A");
    branch(
        &repo,
        "bots/b",
        "main",
        &[("b.txt", "b\n")],
        "B\n\nHyperion-Agent: bot\nHyperion-Task: T-2",
    );
    // A ref under refs/hyperion that looks like a branch worth taking.
    let tip = repo.git(&["rev-parse", "bots/b"]).trim().to_owned();
    repo.git(&["update-ref", "refs/hyperion/agent/x/y", &tip]);
    for bad in [
        "refs/hyperion/*",
        "refs/hyperion/**",
        "refs/tags/*",
        "refs/notes/hyperion",
        "refs/*",
        "agent/../x",
    ] {
        let (_, err) = repo.fails(&["ingest", bad], 2);
        assert!(err.contains("[usage]"), "{bad}: {err}");
    }
    assert_eq!(repo.statuses().len(), 0);

    repo.git(&["config", "hyperion.ingest.pattern", "refs/hyperion/*"]);
    let (_, err) = repo.fails(&["ingest"], 2);
    assert!(err.contains("[config.invalid]"), "{err}");
    repo.git(&["config", "--unset-all", "hyperion.ingest.pattern"]);

    repo.git(&[
        "config",
        "--add",
        "hyperion.ingest.pattern",
        "refs/heads/bots/*",
    ]);
    repo.git(&["config", "--add", "hyperion.ingest.pattern", "agent/*/*"]);
    let config = repo.ok(&["config"]);
    assert!(config.contains("hyperion.ingest.pattern"), "{config}");
    let rows = ingest(&repo, &[], 0);
    let names: Vec<&str> = rows.iter().map(|r| r["ref"].as_str().unwrap()).collect();
    assert_eq!(names, ["refs/heads/agent/a/T-1", "refs/heads/bots/b"]);
    assert!(rows.iter().all(|r| r["result"] == "queued"), "{rows:#?}");

    // Only the configured patterns: the default one no longer applies alone.
    repo.git(&["config", "--unset-all", "hyperion.ingest.pattern"]);
    repo.git(&["config", "hyperion.ingest.pattern", "refs/heads/bots/*"]);
    let rows = ingest(&repo, &[], 0);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["ref"], "refs/heads/bots/b");
}

/// On a server: branches pushed to a bare repository are ingested there; `--dry-run` stores
/// nothing; `--target` takes the diff against, and names, another branch.
#[test]
fn pushed_branches_in_a_bare_repository() {
    let server = TestRepo::bare();
    let client = TestRepo::new();
    let url = server.path().to_str().unwrap().to_owned();
    client.git(&["branch", "-q", "release"]);
    branch(
        &client,
        "agent/push/T-3",
        "main",
        &[("p.txt", "pushed\n")],
        "Pushed work",
    );
    client.git(&["push", "-q", &url, "main", "release", "agent/push/T-3"]);

    let rows = ingest(&server, &["--dry-run"], 0);
    assert_eq!(row(&rows, "refs/heads/agent/push/T-3")["result"], "valid");
    assert_eq!(server.hyperion_refs(), "", "a dry run stores nothing");

    let rows = ingest(&server, &[], 0);
    let r = row(&rows, "refs/heads/agent/push/T-3");
    assert_eq!(r["result"], "queued");
    assert!(r["record"].get("target").is_none(), "{r:#}");

    let rows = ingest(&server, &["--target", "release"], 0);
    let r = row(&rows, "refs/heads/agent/push/T-3");
    assert_eq!(r["result"], "queued", "another target, another request");
    assert_eq!(r["record"]["target"], "release");
    assert_eq!(server.statuses().len(), 2);
    server.ok(&["worker", "--drain"]);
    assert_eq!(
        server.git(&["show", "release:p.txt"]),
        "pushed\n",
        "landed on the target it names"
    );
}

/// Remote-tracking branches (a CI clone that fetched the agents' branches) are read too,
/// with agent and task from the name after the remote.
#[test]
fn remote_tracking_branches_are_ingested() {
    let repo = TestRepo::new();
    branch(&repo, "agent/r/T-9", "main", &[("r.txt", "r\n")], "R");
    let tip = repo.git(&["rev-parse", "agent/r/T-9"]).trim().to_owned();
    repo.git(&["update-ref", "refs/remotes/origin/agent/r/T-9", &tip]);
    repo.git(&["branch", "-q", "-D", "agent/r/T-9"]);
    let rows = ingest(&repo, &["refs/remotes/origin/agent/*/*"], 0);
    let r = row(&rows, "refs/remotes/origin/agent/r/T-9");
    assert_eq!(r["record"]["agent"], "r");
    assert_eq!(r["record"]["task_id"], "T-9");
}

/// The branch checked out with uncommitted work: ingest takes what is committed, and
/// leaves the work tree and the index as they were.
#[test]
fn a_checked_out_branch_with_uncommitted_work_is_read_not_touched() {
    let repo = TestRepo::new();
    branch(
        &repo,
        "agent/me/T",
        "main",
        &[("c.txt", "committed\n")],
        "C",
    );
    repo.git(&["switch", "-q", "agent/me/T"]);
    std::fs::write(repo.path().join("c.txt"), "uncommitted\n").unwrap();
    std::fs::write(repo.path().join("untracked.txt"), "u\n").unwrap();
    repo.git(&["add", "c.txt"]);
    std::fs::write(repo.path().join("c.txt"), "dirty on top\n").unwrap();
    let before = user_state(&repo);
    let rows = ingest(&repo, &[], 0);
    let id = row(&rows, "refs/heads/agent/me/T")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let show = repo.json(&["show", &id, "--patch"]);
    let patch = show["request"]["changes"][0]["patch"].as_str().unwrap();
    assert!(patch.contains("+committed"), "{patch}");
    assert!(
        !patch.contains("uncommitted") && !patch.contains("dirty"),
        "{patch}"
    );
    assert_eq!(user_state(&repo), before);
    assert_eq!(
        std::fs::read_to_string(repo.path().join("c.txt")).unwrap(),
        "dirty on top\n"
    );
}

// ---------------------------------------------------------------------------------------
// watch

fn spool(repo: &TestRepo) -> PathBuf {
    let d = repo.home.path().join("spool");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Make `path` look written a minute ago.
fn age(path: &Path) {
    let ok = std::process::Command::new("touch")
        .args(["-h", "-d", "1 minute ago"])
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn dir_arg(d: &Path) -> &str {
    d.to_str().unwrap()
}

#[test]
fn watch_once_takes_good_files_rejects_bad_ones_and_stores_duplicates_once() {
    let repo = TestRepo::new();
    let d = spool(&repo);
    let good = serde_json::to_vec(&request(1, "w")).unwrap();
    std::fs::write(d.join("a-good.json"), &good).unwrap();
    // The same request again, formatted differently.
    std::fs::write(
        d.join("b-dup.json"),
        serde_json::to_vec_pretty(&request(1, "w")).unwrap(),
    )
    .unwrap();
    std::fs::write(d.join("c-bad.json"), b"{\"schema\": ").unwrap();
    let mut unknown = request(2, "w");
    unknown["reviewer"] = "x".into();
    std::fs::write(
        d.join("d-unknown.json"),
        serde_json::to_vec(&unknown).unwrap(),
    )
    .unwrap();
    // Not taken: hidden, temporary, not *.json.
    std::fs::write(d.join(".e-hidden.json"), &good).unwrap();
    std::fs::write(d.join("f.json.tmp"), &good).unwrap();
    std::fs::write(d.join("g.txt"), &good).unwrap();
    for n in names(&d) {
        age(&d.join(n));
    }

    let (out, err) = repo.fails(&["watch", dir_arg(&d), "--once"], 1);
    assert!(err.contains("[watch.rejected]"), "{err}");
    assert!(err.contains("c-bad.json: [request.json_syntax]"), "{err}");
    assert!(out.contains("already "), "{out}");
    assert_eq!(names(&d.join("done")), ["a-good.json", "b-dup.json"]);
    assert_eq!(
        names(&d.join("rejected")),
        [
            "c-bad.json",
            "c-bad.json.error.json",
            "d-unknown.json",
            "d-unknown.json.error.json"
        ]
    );
    let doc: Value =
        serde_json::from_slice(&std::fs::read(d.join("rejected/c-bad.json.error.json")).unwrap())
            .unwrap();
    assert_eq!(doc["error"]["code"], "request.json_syntax");
    assert_eq!(doc["error"]["problems"][0]["source"], "c-bad.json");
    let doc: Value = serde_json::from_slice(
        &std::fs::read(d.join("rejected/d-unknown.json.error.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(doc["error"]["problems"][0]["code"], "request.unknown_field");
    // The rejected file is kept byte for byte.
    assert_eq!(
        std::fs::read(d.join("rejected/c-bad.json")).unwrap(),
        b"{\"schema\": "
    );
    // One request; the files that are not taken are where they were.
    assert_eq!(repo.statuses().len(), 1);
    for n in [".e-hidden.json", "f.json.tmp", "g.txt"] {
        assert!(d.join(n).exists(), "{n} was taken");
    }

    // Nothing left to do: exit 0. The same file dropped again: already queued, done/ keeps
    // both under distinct names.
    repo.ok(&["watch", dir_arg(&d), "--once"]);
    std::fs::write(d.join("a-good.json"), &good).unwrap();
    age(&d.join("a-good.json"));
    let out = repo.ok(&["watch", dir_arg(&d), "--once", "--format", "json"]);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["result"], "already_queued");
    assert_eq!(
        names(&d.join("done")),
        ["a-good-1.json", "a-good.json", "b-dup.json"]
    );
    assert_eq!(repo.statuses().len(), 1);
}

/// A file still being written is left where it is — too fresh, or (on Linux) still open in
/// its writer — and taken once it is complete.
#[test]
fn half_written_files_wait_until_complete() {
    let repo = TestRepo::new();
    let d = spool(&repo);
    let full = serde_json::to_vec(&request(3, "half")).unwrap();
    let (first, rest) = full.split_at(full.len() / 2);
    let path = d.join("half.json");
    let mut writer = std::fs::File::create(&path).unwrap();
    use std::io::Write;
    writer.write_all(first).unwrap();
    writer.flush().unwrap();

    // Fresh: left alone.
    repo.ok(&["watch", dir_arg(&d), "--once"]);
    assert!(path.exists());
    assert_eq!(names(&d.join("rejected")), Vec::<String>::new());

    // Old, but still open in its writer: on Linux, left alone too.
    if cfg!(target_os = "linux") && std::env::var_os("HYPERION_PORTABLE").is_none() {
        age(&path);
        repo.ok(&["watch", dir_arg(&d), "--once"]);
        assert!(path.exists(), "a file open in its writer was taken");
        assert_eq!(names(&d.join("rejected")), Vec::<String>::new());
    }

    writer.write_all(rest).unwrap();
    drop(writer);
    age(&path);
    let out = repo.ok(&["watch", dir_arg(&d), "--once"]);
    assert!(out.starts_with("queued "), "{out}");
    assert_eq!(names(&d.join("done")), ["half.json"]);
    assert_eq!(repo.statuses().len(), 1);
}

/// A symbolic link named *.json is rejected without being followed: a request file outside
/// the spool is not read through it.
#[test]
fn links_and_odd_files_are_rejected_unread() {
    let repo = TestRepo::new();
    let d = spool(&repo);
    let outside = repo.home.path().join("outside.json");
    std::fs::write(&outside, serde_json::to_vec(&request(4, "link")).unwrap()).unwrap();
    std::os::unix::fs::symlink(&outside, d.join("link.json")).unwrap();
    std::fs::create_dir(d.join("dir.json")).unwrap();
    let (_, err) = repo.fails(&["watch", dir_arg(&d), "--once"], 1);
    assert!(err.contains("link.json: [watch.unreadable]"), "{err}");
    assert_eq!(repo.statuses().len(), 0, "the link was followed");
    assert!(outside.exists());
    assert!(d.join("dir.json").is_dir(), "directories are left alone");
    assert_eq!(
        names(&d.join("rejected")),
        ["link.json", "link.json.error.json"]
    );
}

fn spawn_watch(
    repo: &TestRepo,
    d: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> std::process::Child {
    let mut cmd = repo.cmd();
    cmd.args(["watch", dir_arg(d)])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("watch runs")
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running `watch` takes a file dropped (written, then renamed in) while it runs, refuses a
/// second watcher on the same directory, and stops cleanly on SIGTERM.
#[test]
fn a_running_watch_takes_dropped_files_and_stops_on_sigterm() {
    let repo = TestRepo::new();
    let d = spool(&repo);
    let mut child = spawn_watch(
        &repo,
        &d,
        &["--interval", "100ms", "--settle", "200ms"],
        &[],
    );
    wait_for("the spool's subdirectories", || d.join("done").is_dir());
    // One watcher per directory.
    let (_, err) = repo.fails(&["watch", dir_arg(&d), "--once"], 2);
    assert!(err.contains("another `git hyperion watch`"), "{err}");

    let tmp = d.join(".drop.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(&request(5, "live")).unwrap()).unwrap();
    std::fs::rename(&tmp, d.join("live.json")).unwrap();
    wait_for("live.json in done/", || d.join("done/live.json").exists());
    assert_eq!(repo.statuses().len(), 1);

    signal(child.id(), "-TERM");
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "watch ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("1 queued") && stderr.contains("(stopped)"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("live.json"));
}

/// Killed between storing a file's request and moving the file: the next run finds the
/// file where it was taken to, reports its request as already queued and moves it to
/// done/. One request, one file in done/.
#[test]
fn killed_between_store_and_move_the_file_is_taken_once() {
    let repo = TestRepo::new();
    let d = spool(&repo);
    std::fs::write(
        d.join("k.json"),
        serde_json::to_vec(&request(6, "kill")).unwrap(),
    )
    .unwrap();
    age(&d.join("k.json"));
    let child = spawn_watch(
        &repo,
        &d,
        &["--once"],
        &[("HYPERION_TEST_PAUSE_AT", "enqueue.watch_stored")],
    );
    common::wait_stopped(child.id(), "watch");
    signal(child.id(), "-KILL");
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert_eq!(repo.statuses().len(), 1, "stored before the kill");
    assert_eq!(names(&d.join(".work")), ["k.json"]);
    assert!(!d.join("k.json").exists());

    let out = repo.ok(&["watch", dir_arg(&d), "--once"]);
    assert!(out.starts_with("already "), "{out}");
    assert_eq!(names(&d.join("done")), ["k.json"]);
    assert_eq!(names(&d.join(".work")), Vec::<String>::new());
    assert_eq!(repo.statuses().len(), 1);
    repo.ok(&["doctor"]);
}

#[test]
fn watch_needs_an_existing_directory() {
    let repo = TestRepo::new();
    let missing = repo.home.path().join("nope");
    let (_, err) = repo.fails(&["watch", dir_arg(&missing), "--once"], 2);
    assert!(err.contains("cannot watch"), "{err}");
    assert!(!missing.exists());
}
