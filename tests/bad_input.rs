//! Bad input is refused with a clear error naming the field, a non-zero exit, and nothing
//! written: no ref under refs/hyperion, no object, no index.

#![allow(clippy::unwrap_used)]

mod common;

use common::{TestRepo, request, sha256};
use serde_json::{Value, json};

fn objects(repo: &TestRepo) -> String {
    repo.git(&["count-objects", "-v"])
}

/// Enqueue `bytes` and check the refusal: exit 1, `code` and `field` named, nothing written.
fn refused(repo: &TestRepo, name: &str, bytes: &[u8], code: &str, field: Option<&str>) {
    let path = repo.home.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    let objects_before = objects(repo);
    let (_, err) = repo.fails(&["enqueue", path.to_str().unwrap()], 1);
    assert!(err.starts_with("error: "), "{name}: {err}");
    assert!(
        err.contains(&format!("[{code}]")),
        "{name}: expected {code} in\n{err}"
    );
    if let Some(field) = field {
        assert!(
            err.contains(field),
            "{name}: expected field {field} in\n{err}"
        );
    }
    assert!(err.contains("hint: "), "{name}: {err}");
    let (out, _) = repo.fails(&["enqueue", "--format", "json", path.to_str().unwrap()], 1);
    let doc: Value =
        serde_json::from_str(&out).unwrap_or_else(|_| panic!("{name}: no JSON error: {out}"));
    assert!(
        doc["error"]["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["code"] == code),
        "{name}: {doc}"
    );
    let (_, err) = repo.fails(&["validate", path.to_str().unwrap()], 1);
    assert!(err.contains(code), "{name}: validate: {err}");
    assert_eq!(repo.hyperion_refs(), "", "{name}: a ref was written");
    assert_eq!(
        objects(repo),
        objects_before,
        "{name}: an object was written"
    );
    assert!(
        !repo.git_dir().join("hyperion/index").exists(),
        "{name}: the index was created"
    );
}

fn with(f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v = request(1, "bad");
    f(&mut v);
    serde_json::to_vec(&v).unwrap()
}

fn set_patch(v: &mut Value, patch: &str) {
    v["changes"][0]["patch"] = patch.into();
    v["changes"][0]["sha256"] = sha256(patch).into();
}

#[test]
fn shipped_invalid_samples_give_their_documented_codes() {
    let repo = TestRepo::new();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/invalid");
    let expected = std::fs::read_to_string(dir.join("EXPECTED")).unwrap();
    let mut n = 0;
    for line in expected
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (file, code) = line.split_once(char::is_whitespace).unwrap();
        let bytes = std::fs::read(dir.join(file)).unwrap();
        refused(&repo, file, &bytes, code.trim(), None);
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
    assert_eq!(n, on_disk, "every invalid sample is listed in EXPECTED");
}

#[test]
fn shipped_valid_samples_are_accepted() {
    // Against the repository they were made for (what `demo` builds).
    let repo = TestRepo::new();
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/base");
    std::fs::create_dir_all(repo.path().join("src")).unwrap();
    std::fs::copy(base.join("src/pager.rs"), repo.path().join("src/pager.rs")).unwrap();
    std::fs::copy(base.join("README.md"), repo.path().join("README.md")).unwrap();
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "base"]);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
    let out = repo.ok(&["validate", dir.to_str().unwrap()]);
    assert_eq!(out.lines().count(), 4, "{out}");
}

#[test]
fn corpus_of_bad_requests() {
    let repo = TestRepo::new();
    std::os::unix::fs::symlink("/tmp", repo.path().join("link")).unwrap();
    repo.git(&["add", "link"]);
    repo.git(&["commit", "-q", "-m", "a symlink"]);
    let mut cases: Vec<(&str, Vec<u8>, &str, Option<&str>)> = vec![
        ("empty-file", b"".to_vec(), "request.json_syntax", None),
        (
            "truncated",
            b"{\"schema\": \"hyperion.change-request/v1\", ".to_vec(),
            "request.json_syntax",
            None,
        ),
        ("array", b"[]".to_vec(), "request.invalid_value", None),
        (
            "string",
            b"\"hello\"".to_vec(),
            "request.invalid_value",
            None,
        ),
        (
            "trailing-garbage",
            [with(|_| {}), b"}".to_vec()].concat(),
            "request.json_syntax",
            None,
        ),
        (
            "unknown-top-field",
            with(|v| v["reviewer"] = "x".into()),
            "request.unknown_field",
            Some("/reviewer"),
        ),
        (
            "unknown-change-field",
            with(|v| v["changes"][0]["mode"] = "100755".into()),
            "request.unknown_field",
            Some("/changes/0/mode"),
        ),
        (
            "missing-task",
            with(|v| {
                v.as_object_mut().unwrap().remove("task_id");
            }),
            "request.missing_field",
            Some("/task_id"),
        ),
        (
            "missing-title",
            with(|v| {
                v.as_object_mut().unwrap().remove("title");
            }),
            "request.missing_field",
            Some("/title"),
        ),
        (
            "missing-changes",
            with(|v| {
                v.as_object_mut().unwrap().remove("changes");
            }),
            "request.missing_field",
            Some("/changes"),
        ),
        (
            "missing-file-targets",
            with(|v| {
                v.as_object_mut().unwrap().remove("file_targets");
            }),
            "request.missing_field",
            Some("/file_targets"),
        ),
        (
            "missing-sha",
            with(|v| {
                v["changes"][0].as_object_mut().unwrap().remove("sha256");
            }),
            "request.missing_field",
            Some("/changes/0/sha256"),
        ),
        (
            "empty-changes",
            with(|v| v["changes"] = json!([])),
            "request.empty_changes",
            Some("/changes"),
        ),
        (
            "wrong-schema",
            with(|v| v["schema"] = "hyperion.change-request/v2".into()),
            "request.schema_version",
            Some("/schema"),
        ),
        (
            "priority-high",
            with(|v| v["priority"] = 10.into()),
            "request.invalid_value",
            Some("/priority"),
        ),
        (
            "priority-negative",
            with(|v| v["priority"] = (-1).into()),
            "request.invalid_value",
            Some("/priority"),
        ),
        (
            "priority-string",
            with(|v| v["priority"] = "high".into()),
            "request.invalid_value",
            Some("/priority"),
        ),
        (
            "bad-kind",
            with(|v| v["kind"] = "hotfix".into()),
            "request.invalid_value",
            Some("/kind"),
        ),
        (
            "bad-operation",
            with(|v| v["changes"][0]["operation"] = "modify".into()),
            "request.invalid_value",
            Some("/changes/0/operation"),
        ),
        (
            "empty-task",
            with(|v| v["task_id"] = "".into()),
            "request.invalid_value",
            Some("/task_id"),
        ),
        (
            "control-in-title",
            with(|v| v["title"] = "a\u{7}b".into()),
            "request.invalid_value",
            Some("/title"),
        ),
        (
            "bad-base",
            with(|v| v["base"] = "HEAD~1".into()),
            "request.invalid_value",
            Some("/base"),
        ),
        (
            "bad-check-name",
            with(|v| v["checks"] = json!(["rm -rf /"])),
            "request.invalid_value",
            Some("/checks/0"),
        ),
        (
            "duplicate-checks",
            with(|v| v["checks"] = json!(["unit", "unit"])),
            "request.invalid_value",
            Some("/checks"),
        ),
        (
            "empty-file-targets",
            with(|v| v["file_targets"] = json!([])),
            "request.invalid_value",
            Some("/file_targets"),
        ),
        (
            "sha-not-hex",
            with(|v| v["changes"][0]["sha256"] = "xyz".into()),
            "request.invalid_value",
            Some("/changes/0/sha256"),
        ),
        (
            "sha-mismatch",
            with(|v| v["changes"][0]["sha256"] = sha256("other").into()),
            "request.sha256_mismatch",
            Some("/changes/0/sha256"),
        ),
        (
            "rename-without-from",
            with(|v| v["changes"][0]["operation"] = "rename".into()),
            "request.missing_field",
            Some("/changes/0/from"),
        ),
        (
            "from-without-rename",
            with(|v| v["changes"][0]["from"] = "src/x".into()),
            "request.invalid_value",
            Some("/changes/0/from"),
        ),
        (
            "empty-patch",
            with(|v| {
                v["changes"][0]["patch"] = "".into();
                v["changes"][0]["sha256"] = sha256("").into();
            }),
            "request.invalid_value",
            Some("/changes/0/patch"),
        ),
        (
            "not-a-diff",
            with(|v| set_patch(v, "just some text\n")),
            "patch.not_a_diff",
            Some("/changes/0/patch"),
        ),
        (
            "short-hunk",
            with(|v| {
                set_patch(
                    v,
                    "--- a/src/f1.txt\n+++ b/src/f1.txt\n@@ -1,3 +1,3 @@\n-old\n+new\n",
                )
            }),
            "patch.hunk_count",
            Some("/changes/0/patch"),
        ),
        (
            "long-hunk",
            with(|v| {
                set_patch(
                    v,
                    "--- a/src/f1.txt\n+++ b/src/f1.txt\n@@ -1 +1 @@\n-old\n-older\n+new\n",
                )
            }),
            "patch.hunk_count",
            None,
        ),
        (
            "bad-hunk-header",
            with(|v| {
                set_patch(
                    v,
                    "--- a/src/f1.txt\n+++ b/src/f1.txt\n@@ -x +1 @@\n-old\n+new\n",
                )
            }),
            "patch.bad_hunk_header",
            None,
        ),
        (
            "header-only",
            with(|v| set_patch(v, "--- a/src/f1.txt\n+++ b/src/f1.txt\n")),
            "patch.empty",
            None,
        ),
        (
            "two-files",
            with(|v| {
                set_patch(
                    v,
                    "--- a/src/f1.txt\n+++ b/src/f1.txt\n@@ -1 +1 @@\n-a\n+b\n--- a/src/f2.txt\n+++ b/src/f2.txt\n@@ -1 +1 @@\n-a\n+b\n",
                )
            }),
            "patch.multiple_files",
            None,
        ),
        (
            "path-mismatch",
            with(|v| v["changes"][0]["path"] = "src/other.txt".into()),
            "request.path_mismatch",
            Some("/changes/0/path"),
        ),
        (
            "operation-mismatch",
            with(|v| v["changes"][0]["operation"] = "update".into()),
            "request.operation_mismatch",
            Some("/changes/0/operation"),
        ),
        (
            "duplicate-path",
            with(|v| {
                let c = v["changes"][0].clone();
                v["changes"].as_array_mut().unwrap().push(c);
            }),
            "request.duplicate_path",
            Some("/changes/1/path"),
        ),
    ];
    cases.extend(path_cases());
    assert!(cases.len() >= 50, "{}", cases.len());
    for (name, bytes, code, field) in cases {
        refused(&repo, &format!("{name}.json"), &bytes, code, field);
    }
}

/// A request whose one change adds `path` (patch and hash made to agree).
fn adding(path: &str, targets: &[&str]) -> Vec<u8> {
    with(|v| {
        set_patch(
            v,
            &format!("--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+x\n"),
        );
        v["changes"][0]["path"] = path.into();
        v["file_targets"] = json!(targets);
    })
}

fn path_cases() -> Vec<(&'static str, Vec<u8>, &'static str, Option<&'static str>)> {
    vec![
        (
            "path-dotdot",
            adding("../outside.txt", &["**"]),
            "path.unsafe",
            Some("/changes/0/path"),
        ),
        (
            "path-inner-dotdot",
            adding("src/../../x", &["**"]),
            "path.unsafe",
            Some("/changes/0/path"),
        ),
        (
            "path-absolute",
            adding("/etc/passwd", &["**"]),
            "path.unsafe",
            Some("/changes/0/path"),
        ),
        (
            "path-dotgit",
            adding(".git/hooks/pre-commit", &["**"]),
            "path.unsafe",
            Some("/changes/0/path"),
        ),
        (
            "path-dotgit-case",
            adding(".GiT/config", &["**"]),
            "path.unsafe",
            Some("/changes/0/path"),
        ),
        (
            "path-dotgit-nested",
            adding("sub/.git/config", &["**"]),
            "path.unsafe",
            Some("/changes/0/path"),
        ),
        (
            "path-dotgit-ntfs-dot",
            adding(".git./config", &["**"]),
            "path.unsafe",
            Some("/changes/0/path"),
        ),
        (
            "path-dotgit-8dot3",
            adding("GIT~1/config", &["**"]),
            "path.unsafe",
            Some("/changes/0/path"),
        ),
        (
            "path-dotgit-hfs",
            adding(".g\u{200c}it/config", &["**"]),
            "path.unsafe",
            Some("/changes/0/path"),
        ),
        (
            "path-control",
            adding("src/a\u{1b}b.txt", &["**"]),
            "path.unsafe",
            Some("/changes/0/path"),
        ),
        (
            "path-backslash",
            adding("src\\x.txt", &["**"]),
            "path.unsafe",
            Some("/changes/0/path"),
        ),
        (
            "path-outside-targets",
            adding("docs/x.md", &["src/**"]),
            "path.outside_file_targets",
            Some("/changes/0/path"),
        ),
        (
            "file-target-escapes",
            adding("src/x.txt", &["src/**", "../**"]),
            "path.unsafe",
            Some("/file_targets/1"),
        ),
        (
            "add-existing",
            adding("README.md", &["**"]),
            "operation.exists",
            Some("/changes/0/path"),
        ),
        (
            "update-missing",
            with(|v| {
                set_patch(
                    v,
                    "--- a/src/nope.txt\n+++ b/src/nope.txt\n@@ -1 +1 @@\n-a\n+b\n",
                );
                v["changes"][0]["path"] = "src/nope.txt".into();
                v["changes"][0]["operation"] = "update".into();
            }),
            "operation.missing",
            Some("/changes/0/path"),
        ),
        (
            "delete-missing",
            with(|v| {
                set_patch(v, "--- a/src/nope.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-a\n");
                v["changes"][0]["path"] = "src/nope.txt".into();
                v["changes"][0]["operation"] = "delete".into();
            }),
            "operation.missing",
            Some("/changes/0/path"),
        ),
        (
            "through-symlink",
            adding("link/x.txt", &["**"]),
            "path.through_link",
            Some("/changes/0/path"),
        ),
        (
            "through-file",
            adding("README.md/x.txt", &["**"]),
            "path.through_link",
            Some("/changes/0/path"),
        ),
    ]
}

#[test]
fn every_problem_is_reported_not_only_the_first() {
    let repo = TestRepo::new();
    let bytes = with(|v| {
        v["bogus"] = 1.into();
        v["priority"] = 42.into();
        v["changes"][0]["sha256"] = sha256("x").into();
    });
    let p = repo.home.path().join("many.json");
    std::fs::write(&p, bytes).unwrap();
    let (out, _) = repo.fails(&["validate", "--format", "json", p.to_str().unwrap()], 1);
    let doc: Value = serde_json::from_str(&out).unwrap();
    let codes: Vec<&str> = doc[0]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap())
        .collect();
    assert!(
        codes.contains(&"request.unknown_field") && codes.contains(&"request.invalid_value"),
        "{codes:?}"
    );
}

#[test]
fn one_bad_request_in_a_directory_stores_none_of_them() {
    let repo = TestRepo::new();
    let d = common::request_dir(&repo, 3, "mixed");
    std::fs::write(d.join("99999.json"), with(|v| v["bogus"] = 1.into())).unwrap();
    let (_, err) = repo.fails(&["enqueue", d.to_str().unwrap()], 1);
    assert!(
        err.contains("99999.json") && err.contains("request.unknown_field"),
        "{err}"
    );
    assert_eq!(repo.hyperion_refs(), "");
}

#[test]
fn a_missing_file_or_patch_is_a_usage_error() {
    let repo = TestRepo::new();
    let (_, err) = repo.fails(&["enqueue", "/nonexistent/request.json"], 2);
    assert!(
        err.contains("could not read") && err.contains("hint:"),
        "{err}"
    );
    repo.fails(
        &[
            "enqueue",
            "--patch",
            "/nonexistent.diff",
            "--task",
            "T",
            "--agent",
            "a",
        ],
        2,
    );
    repo.fails(&["enqueue", "--patch", "x.diff"], 2);
    let p = repo.home.path().join("notdiff.txt");
    std::fs::write(&p, "hello\n").unwrap();
    let (_, err) = repo.fails(
        &[
            "enqueue",
            "--patch",
            p.to_str().unwrap(),
            "--task",
            "T",
            "--agent",
            "a",
        ],
        1,
    );
    assert!(err.contains("patch.not_a_diff"), "{err}");
    assert_eq!(repo.hyperion_refs(), "");
}

#[test]
fn size_limits_stop_a_runaway_agent() {
    let repo = TestRepo::new();
    let big = format!(
        "--- /dev/null\n+++ b/src/big.txt\n@@ -0,0 +1 @@\n+{}\n",
        "x".repeat(1 << 20)
    );
    let bytes = with(|v| {
        set_patch(v, &big);
        v["changes"][0]["path"] = "src/big.txt".into();
    });
    refused(
        &repo,
        "too-big.json",
        &bytes,
        "limit.change_bytes",
        Some("/changes/0/patch"),
    );
    let many = with(|v| {
        let changes: Vec<Value> = (0..501)
            .map(|i| {
                let patch = format!("--- /dev/null\n+++ b/src/m{i}.txt\n@@ -0,0 +1 @@\n+x\n");
                json!({"path": format!("src/m{i}.txt"), "operation": "add", "sha256": sha256(&patch), "patch": patch})
            })
            .collect();
        v["changes"] = changes.into();
    });
    refused(
        &repo,
        "too-many.json",
        &many,
        "limit.files",
        Some("/changes"),
    );
}
