#![allow(clippy::unwrap_used)]
//! Dry runs change nothing: `worker --dry-run` and `apply --dry-run` over requests with
//! checks (that run git in their slot, commit there, leave files) and a pre-apply hook leave
//! every file of the repository's git directory as it was — but the derived caches
//! docs/storage.md names (the index under `hyperion/index/`, the check slots under
//! `hyperion/worktrees/`) — and nothing `git fsck --strict` or `git gc` complains about.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{TestRepo, sha256};
use serde_json::{Value, json};

/// Every file under `git_dir` with a digest of its content, but the derived caches.
fn files(git_dir: &Path) -> BTreeMap<String, String> {
    let derived = ["hyperion/index/", "hyperion/worktrees/"];
    let mut out = BTreeMap::new();
    let mut stack = vec![git_dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            let rel = p
                .strip_prefix(git_dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if derived.iter().any(|d| format!("{rel}/").starts_with(d)) {
                continue;
            }
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                stack.push(p);
            } else {
                let data = std::fs::read(&p).unwrap_or_default();
                out.insert(rel, sha256(&String::from_utf8_lossy(&data)));
            }
        }
    }
    out
}

fn git_quiet(repo: &TestRepo, args: &[&str]) -> (bool, String) {
    let out = repo.git_output(args, b"");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn request(i: usize) -> Value {
    let path = format!("src/f{i}.txt");
    let patch = format!("--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+line {i}\n");
    json!({
        "schema": "hyperion.change-request/v1",
        "task_id": format!("T-{i}"),
        "agent": "a",
        "title": format!("add {path}"),
        "file_targets": ["src/**"],
        "changes": [{"path": path, "operation": "add", "patch": patch, "sha256": sha256(&patch)}],
        "checks": ["busy"]
    })
}

#[test]
fn dry_runs_with_checks_and_hooks_leave_the_repository_as_it_was() {
    use std::os::unix::fs::PermissionsExt;
    let repo = TestRepo::new();
    std::fs::create_dir_all(repo.path().join(".hyperion/hooks/pre-apply.d")).unwrap();
    std::fs::write(
        repo.path().join(".hyperion/policy.toml"),
        "[checks.busy]\nrun = [\"sh\", \"-c\", \"git status --porcelain && git log -1 --format=%s \
         && echo made > made.txt && git add made.txt && \
         git -c user.name=c -c user.email=c@c commit -q -m in-slot && \
         git update-ref refs/heads/side HEAD && git gc -q && echo $HOME > \\\"$TMPDIR/x\\\"\"]\n",
    )
    .unwrap();
    let hook = repo.path().join(".hyperion/hooks/pre-apply.d/10-read");
    std::fs::write(&hook, "#!/bin/sh\ncat > /dev/null\nexit 0\n").unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    repo.git(&["add", "."]);
    repo.git(&["commit", "-q", "-m", "policy and hook"]);
    let ids: Vec<String> = (0..3)
        .map(|i| {
            let p = repo.write(&format!("r{i}.json"), &request(i));
            repo.enqueue(&p)[0].clone()
        })
        .collect();
    // Whatever `init`, enqueue and a first look made, before the dry runs.
    repo.ok(&["list"]);
    let before = files(&repo.git_dir());

    for _ in 0..2 {
        let out = repo.ok(&["worker", "--dry-run", "--format", "json"]);
        let reports: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(reports.len(), 3, "{out}");
        for r in &reports {
            assert_eq!(r["result"], "would_land", "{r}");
            assert_eq!(r["checks"][0]["status"], "passed", "{r}");
        }
    }
    let r = repo.json(&["apply", &ids[1], "--dry-run"]);
    assert_eq!(r["result"], "would_land", "{r}");

    let after = files(&repo.git_dir());
    let changed: Vec<_> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    assert!(changed.is_empty(), "the dry runs changed {changed:?}");
    let (ok, err) = git_quiet(&repo, &["fsck", "--strict", "--no-progress"]);
    assert!(ok && !err.contains("error"), "fsck: {err}");
    let (ok, err) = git_quiet(&repo, &["gc", "--prune=now", "-q"]);
    assert!(ok && err.trim().is_empty(), "gc: {err}");
    let (ok, err) = git_quiet(&repo, &["fsck", "--strict", "--no-progress"]);
    assert!(ok && !err.contains("error"), "fsck after gc: {err}");

    // The slots still serve a real run after the shared repository was collected.
    let out = repo.ok(&["worker", "--drain", "--format", "json"]);
    for l in out.lines() {
        let r: Value = serde_json::from_str(l).unwrap();
        assert_eq!(r["result"], "landed", "{r}");
    }
    assert_eq!(repo.git(&["status", "--porcelain"]), "");
    let (ok, err) = git_quiet(&repo, &["fsck", "--strict", "--no-progress"]);
    assert!(ok && !err.contains("error"), "fsck after landing: {err}");
}
