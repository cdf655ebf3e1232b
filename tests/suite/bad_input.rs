//! Bad input is refused with a clear error naming the field, a non-zero exit, and nothing
//! written: no ref under refs/hyperion, no object, no index.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::Path;

use common::{TestRepo, request, sha256};
use serde_json::{Value, json};

use hyperion::Code;

fn objects(repo: &TestRepo) -> String {
    repo.git(&["count-objects", "-v"])
}

/// Every file and directory below `dir`, with sizes, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            out.push(format!("{} {}", e.path().display(), meta.len()));
            if meta.is_dir() {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Fake secrets the corpus uses; none may ever appear in any output or stored object.
const SECRETS: &[&str] = &[
    "AKIAQ3EGRQ7SMPLEKEY7",
    "ghp_R3alLooking7okenThatIsFake0123456789",
    "MIIEowIBAAKCAQEA7fakefakefake",
    "Sup3r-S3cret-Passw0rd",
];

/// Enqueue `bytes` and check the refusal: exit 1, `code` and `field` named, nothing written:
/// no ref, no object, no index, nothing in the work tree, HOME or next to the input file.
fn refused(repo: &TestRepo, name: &str, bytes: &[u8], code: &str, field: Option<&str>) {
    let inputs = tempfile::tempdir().unwrap();
    let path = inputs.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    let objects_before = objects(repo);
    let status_before = repo.git(&["status", "--porcelain", "--ignored"]);
    let home_before = listing(repo.home.path());
    let inputs_before = listing(inputs.path());
    let (out1, err) = repo.fails(&["enqueue", path.to_str().unwrap()], 1);
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
    let (out, err2) = repo.fails(&["enqueue", "--format", "json", path.to_str().unwrap()], 1);
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
    let (out3, err3) = repo.fails(&["validate", path.to_str().unwrap()], 1);
    assert!(err3.contains(code), "{name}: validate: {err3}");
    for text in [&out1, &err, &out, &err2, &out3, &err3] {
        for secret in SECRETS {
            assert!(
                !text.contains(secret),
                "{name}: a secret was echoed: {text}"
            );
        }
    }
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
    assert_eq!(
        repo.git(&["status", "--porcelain", "--ignored"]),
        status_before,
        "{name}: the work tree changed"
    );
    assert_eq!(
        listing(repo.home.path()),
        home_before,
        "{name}: HOME changed"
    );
    assert_eq!(
        listing(inputs.path()),
        inputs_before,
        "{name}: something was written next to the input"
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
    // A longer file to edit, a submodule (gitlink), and a policy that tightens the limits.
    std::fs::create_dir_all(repo.path().join("src")).unwrap();
    std::fs::write(repo.path().join("src/long.txt"), LONG).unwrap();
    std::fs::create_dir_all(repo.path().join(".hyperion")).unwrap();
    std::fs::write(repo.path().join(".hyperion/policy.toml"), CORPUS_POLICY).unwrap();
    repo.git(&["add", "src/long.txt", ".hyperion"]);
    let head = repo.git(&["rev-parse", "HEAD"]).trim().to_owned();
    repo.git(&[
        "update-index",
        "--add",
        "--cacheinfo",
        &format!("160000,{head},sub"),
    ]);
    repo.git(&["commit", "-q", "-m", "long file, submodule, policy"]);
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
            with(|v| v["checks"] = json!(["unit\u{7}"])),
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
    cases.extend(policy_cases());
    assert!(cases.len() >= 60, "{}", cases.len());
    let mut names = std::collections::HashSet::new();
    for (name, bytes, code, field) in cases {
        assert!(names.insert(name), "{name} twice");
        refused(&repo, &format!("{name}.json"), &bytes, code, field);
    }
    assert_eq!(
        listing(repo.home.path()),
        Vec::<String>::new(),
        "HOME stays empty"
    );
}

/// The corpus repository's policy: lower limits, denied paths, one named check.
const CORPUS_POLICY: &str = r#"[limits]
files = 3
change_bytes = 4096

[paths]
deny = ["secrets/**", "**/*.pem"]

[checks.unit]
run = ["true"]
"#;

const LONG: &str =
    "l1\nl2\nl3\nl4\nl5\nl6\nl7\nl8\nl9\nl10\nl11\nl12\nl13\nl14\nl15\nl16\nl17\nl18\nl19\nl20\n";

/// A request whose one change is `patch` on `path` with `operation`.
fn changing(path: &str, operation: &str, patch: &str) -> Vec<u8> {
    with(|v| {
        set_patch(v, patch);
        v["changes"][0]["path"] = path.into();
        v["changes"][0]["operation"] = operation.into();
        v["file_targets"] = json!(["**"]);
    })
}

fn symlink_to(target: &str) -> Vec<u8> {
    changing(
        "lnk",
        "add",
        &format!(
            "diff --git a/lnk b/lnk\nnew file mode 120000\nindex 0000000..1234567\n--- /dev/null\n+++ b/lnk\n@@ -0,0 +1 @@\n+{target}\n\\ No newline at end of file\n"
        ),
    )
}

fn adding_line(line: &str) -> Vec<u8> {
    changing(
        "src/config.txt",
        "add",
        &format!("--- /dev/null\n+++ b/src/config.txt\n@@ -0,0 +1,2 @@\n+# settings\n+{line}\n"),
    )
}

/// Cases that need the target's tree or its policy (see CORPUS_POLICY).
fn policy_cases() -> Vec<(&'static str, Vec<u8>, &'static str, Option<&'static str>)> {
    let change = |i: usize| {
        let patch = format!("--- /dev/null\n+++ b/src/m{i}.txt\n@@ -0,0 +1 @@\n+x\n");
        json!({"path": format!("src/m{i}.txt"), "operation": "add", "sha256": sha256(&patch), "patch": patch})
    };
    vec![
        (
            "context-short-before",
            changing(
                "src/long.txt",
                "update",
                "--- a/src/long.txt\n+++ b/src/long.txt\n@@ -8,3 +8,3 @@\n l8\n-l9\n+L9\n l10\n",
            ),
            "patch.min_context",
            Some("/changes/0/patch"),
        ),
        (
            "context-none-u0",
            changing(
                "src/long.txt",
                "update",
                "--- a/src/long.txt\n+++ b/src/long.txt\n@@ -9 +9 @@\n-l9\n+L9\n",
            ),
            "patch.min_context",
            Some("/changes/0/patch"),
        ),
        (
            "context-short-after",
            changing(
                "src/long.txt",
                "update",
                "--- a/src/long.txt\n+++ b/src/long.txt\n@@ -6,4 +6,4 @@\n l6\n l7\n l8\n-l9\n+L9\n",
            ),
            "patch.min_context",
            Some("/changes/0/patch"),
        ),
        (
            "deny-dir",
            adding("secrets/token.txt", &["**"]),
            "path.denied",
            Some("/changes/0/path"),
        ),
        (
            "deny-glob",
            adding("deploy/server.pem", &["**"]),
            "path.denied",
            Some("/changes/0/path"),
        ),
        (
            "deny-rename-source",
            with(|v| {
                let p = "diff --git a/secrets/a.txt b/public.txt\nsimilarity index 100%\nrename from secrets/a.txt\nrename to public.txt\n";
                set_patch(v, p);
                v["changes"][0]["path"] = "public.txt".into();
                v["changes"][0]["from"] = "secrets/a.txt".into();
                v["changes"][0]["operation"] = "rename".into();
                v["file_targets"] = json!(["**"]);
            }),
            "path.denied",
            Some("/changes/0/from"),
        ),
        (
            "symlink-absolute",
            symlink_to("/etc/passwd"),
            "path.symlink_escape",
            Some("/changes/0/patch"),
        ),
        (
            "symlink-dotdot",
            symlink_to("../../home/user/.ssh"),
            "path.symlink_escape",
            Some("/changes/0/patch"),
        ),
        (
            "symlink-dotgit",
            symlink_to(".git/hooks"),
            "path.symlink_escape",
            Some("/changes/0/patch"),
        ),
        (
            "symlink-dotgit-ntfs",
            symlink_to("src/../.GIT./config"),
            "path.symlink_escape",
            Some("/changes/0/patch"),
        ),
        (
            "gitlink-new",
            changing(
                "vendor/lib",
                "add",
                "diff --git a/vendor/lib b/vendor/lib\nnew file mode 160000\nindex 0000000..1111111111111111111111111111111111111111\n--- /dev/null\n+++ b/vendor/lib\n@@ -0,0 +1 @@\n+Subproject commit 1111111111111111111111111111111111111111\n",
            ),
            "path.gitlink",
            Some("/changes/0/patch"),
        ),
        (
            "gitlink-update",
            changing(
                "sub",
                "update",
                "--- a/sub\n+++ b/sub\n@@ -1 +1 @@\n-Subproject commit 0000000000000000000000000000000000000000\n+Subproject commit 1111111111111111111111111111111111111111\n",
            ),
            "path.gitlink",
            Some("/changes/0/patch"),
        ),
        (
            "through-submodule",
            adding("sub/x.txt", &["**"]),
            "path.through_link",
            Some("/changes/0/path"),
        ),
        (
            "below-a-new-file",
            with(|v| {
                let a = "--- /dev/null\n+++ b/src/d\n@@ -0,0 +1 @@\n+x\n";
                let b = "--- /dev/null\n+++ b/src/d/x\n@@ -0,0 +1 @@\n+x\n";
                v["changes"] = json!([
                    {"path": "src/d", "operation": "add", "patch": a, "sha256": sha256(a)},
                    {"path": "src/d/x", "operation": "add", "patch": b, "sha256": sha256(b)},
                ]);
            }),
            "path.through_link",
            Some("/changes/1/path"),
        ),
        (
            "bad-mode",
            changing(
                "src/x.sh",
                "add",
                "diff --git a/src/x.sh b/src/x.sh\nnew file mode 100777\n--- /dev/null\n+++ b/src/x.sh\n@@ -0,0 +1 @@\n+x\n",
            ),
            "patch.bad_mode",
            Some("/changes/0/patch"),
        ),
        (
            "secret-aws-key",
            adding_line("aws_key_id = AKIAQ3EGRQ7SMPLEKEY7"),
            "secret.detected",
            Some("/changes/0/patch"),
        ),
        (
            "secret-github-token",
            adding_line("token: ghp_R3alLooking7okenThatIsFake0123456789"),
            "secret.detected",
            Some("/changes/0/patch"),
        ),
        (
            "secret-private-key",
            changing(
                "src/id_rsa",
                "add",
                "--- /dev/null\n+++ b/src/id_rsa\n@@ -0,0 +1,3 @@\n+-----BEGIN RSA PRIVATE KEY-----\n+MIIEowIBAAKCAQEA7fakefakefake\n+-----END RSA PRIVATE KEY-----\n",
            ),
            "secret.detected",
            Some("/changes/0/patch"),
        ),
        (
            "secret-password",
            adding_line("password = \"Sup3r-S3cret-Passw0rd\""),
            "secret.detected",
            Some("/changes/0/patch"),
        ),
        (
            "secret-in-description",
            with(|v| v["description"] = "use AKIAQ3EGRQ7SMPLEKEY7 to deploy".into()),
            "secret.detected",
            Some("/description"),
        ),
        (
            "unknown-check",
            with(|v| v["checks"] = json!(["unit", "lint"])),
            "check.unknown",
            Some("/checks/1"),
        ),
        (
            "inline-check-not-allowed",
            with(|v| v["checks"] = json!(["rm -rf /"])),
            "check.inline_refused",
            Some("/checks/0"),
        ),
        (
            "policy-limit-files",
            with(|v| v["changes"] = (0..4).map(change).collect::<Vec<_>>().into()),
            "limit.files",
            Some("/changes"),
        ),
        (
            "policy-limit-change-bytes",
            adding_line(&"y".repeat(5000)),
            "limit.change_bytes",
            Some("/changes/0/patch"),
        ),
        (
            "rename-onto-existing",
            with(|v| {
                let p = "diff --git a/src/long.txt b/README.md\nsimilarity index 100%\nrename from src/long.txt\nrename to README.md\n";
                set_patch(v, p);
                v["changes"][0]["path"] = "README.md".into();
                v["changes"][0]["from"] = "src/long.txt".into();
                v["changes"][0]["operation"] = "rename".into();
                v["file_targets"] = json!(["**"]);
            }),
            "operation.exists",
            Some("/changes/0/path"),
        ),
        (
            "rename-from-mismatch",
            with(|v| {
                let p = "diff --git a/src/long.txt b/src/short.txt\nsimilarity index 100%\nrename from src/long.txt\nrename to src/short.txt\n";
                set_patch(v, p);
                v["changes"][0]["path"] = "src/short.txt".into();
                v["changes"][0]["from"] = "src/other.txt".into();
                v["changes"][0]["operation"] = "rename".into();
            }),
            "request.path_mismatch",
            Some("/changes/0/from"),
        ),
    ]
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
            // git's matcher would match nothing with it: said so, not "outside file_targets".
            "file-target-unclosed-set",
            adding("src/a.txt", &["src/[ab"]),
            "request.invalid_value",
            Some("/file_targets/0"),
        ),
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
    let inputs = tempfile::tempdir().unwrap();
    let p = inputs.path().join("many.json");
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

/// Every byte git stores: all objects (loose and packed) with their contents.
fn all_objects(repo: &TestRepo) -> Vec<u8> {
    let out = repo.git_output(&["cat-file", "--batch-all-objects", "--batch"], b"");
    assert!(out.status.success());
    out.stdout
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Every file below the git directory (refs, index, logs, objects), concatenated.
fn git_dir_bytes(repo: &TestRepo) -> Vec<u8> {
    let mut all = Vec::new();
    for line in listing(&repo.git_dir()) {
        let path = line.rsplit_once(' ').unwrap().0;
        if let Ok(b) = std::fs::read(path) {
            all.extend(b);
        }
    }
    all
}

#[test]
fn secrets_are_never_stored_or_echoed() {
    let repo = TestRepo::new();
    // Control: a path the policy exempts is stored, so the search below can find a secret.
    std::fs::create_dir_all(repo.path().join(".hyperion")).unwrap();
    std::fs::write(
        repo.path().join(".hyperion/policy.toml"),
        "[secrets]\nallow_paths = [\"fixtures/**\"]\n",
    )
    .unwrap();
    repo.git(&["add", ".hyperion"]);
    repo.git(&["commit", "-q", "-m", "policy"]);
    let control = "AKIAZZZZCONTROL77777Z";
    let inputs = tempfile::tempdir().unwrap();
    let fixture = inputs.path().join("fixture.json");
    std::fs::write(
        &fixture,
        changing_in(
            "fixtures/keys.txt",
            &format!("--- /dev/null\n+++ b/fixtures/keys.txt\n@@ -0,0 +1 @@\n+{control}\n"),
        ),
    )
    .unwrap();
    repo.ok(&["enqueue", fixture.to_str().unwrap()]);
    assert!(
        contains(&all_objects(&repo), control),
        "the control is stored"
    );
    let refs_before = repo.hyperion_refs();

    // A batch with one good request and one with a secret: nothing of either is stored.
    let dir = inputs.path().join("batch");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("1.json"),
        serde_json::to_vec(&request(7, "good")).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("2.json"),
        adding_line(&format!("aws = {}", SECRETS[0])),
    )
    .unwrap();
    let diff = inputs.path().join("leak.diff");
    std::fs::write(
        &diff,
        format!(
            "diff --git a/src/k.txt b/src/k.txt\nnew file mode 100644\n--- /dev/null\n+++ b/src/k.txt\n@@ -0,0 +1,2 @@\n+x\n+{}\n",
            SECRETS[1]
        ),
    )
    .unwrap();
    let runs: Vec<Vec<&str>> = vec![
        vec!["enqueue", dir.to_str().unwrap()],
        vec!["enqueue", "--format", "json", dir.to_str().unwrap()],
        vec!["enqueue", "--dry-run", dir.to_str().unwrap()],
        vec!["validate", "--format", "json", dir.to_str().unwrap()],
        vec![
            "enqueue",
            "--patch",
            diff.to_str().unwrap(),
            "--task",
            "T",
            "--agent",
            "a",
        ],
    ];
    for args in runs {
        let out = repo.run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let text = [out.stdout, out.stderr].concat();
        assert!(contains(&text, "secret.detected"), "{args:?}");
        for s in SECRETS {
            assert!(!contains(&text, s), "{args:?} echoed a secret");
        }
    }
    assert_eq!(repo.hyperion_refs(), refs_before, "no ref moved");
    let objects = all_objects(&repo);
    let files = git_dir_bytes(&repo);
    for s in SECRETS {
        assert!(!contains(&objects, s), "an object holds {s}");
        assert!(
            !contains(&files, s),
            "a file in the git directory holds {s}"
        );
    }
    assert!(
        !contains(&objects, "src/f7.txt"),
        "the good request of the refused batch is not stored either"
    );
}

fn changing_in(path: &str, patch: &str) -> Vec<u8> {
    with(|v| {
        set_patch(v, patch);
        v["changes"][0]["path"] = path.into();
        v["file_targets"] = json!(["**"]);
    })
}

/// The codes docs/errors.md documents: the first cell of every row of a table whose first
/// column is `code` (`| `land.moved` | …`, or several: `| `target.not_branch`, `target.invalid` | …`).
fn documented_codes(catalogue: &str) -> std::collections::BTreeSet<String> {
    let mut codes = std::collections::BTreeSet::new();
    let mut in_table = false;
    for line in catalogue.lines() {
        let Some(row) = line.strip_prefix('|') else {
            in_table = false;
            continue;
        };
        let first = row.split('|').next().unwrap_or_default().trim();
        if first == "code" {
            in_table = true;
            continue;
        }
        if !in_table {
            continue;
        }
        // `apply.*` names a family, not a code.
        for quoted in first.split('`').skip(1).step_by(2) {
            if !quoted.is_empty()
                && quoted
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._".contains(&b))
            {
                codes.insert(quoted.to_owned());
            }
        }
    }
    codes
}

#[test]
fn the_catalogue_documents_every_code_and_no_other() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let catalogue = std::fs::read_to_string(root.join("docs/errors.md")).unwrap();
    let documented = documented_codes(&catalogue);
    let emitted: std::collections::BTreeSet<String> =
        Code::ALL.iter().map(|c| c.as_str().to_owned()).collect();
    assert_eq!(emitted.len(), Code::ALL.len(), "a code named twice");
    let undocumented: Vec<&String> = emitted.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "codes without a row in docs/errors.md: {undocumented:?}"
    );
    let unknown: Vec<&String> = documented.difference(&emitted).collect();
    assert!(
        unknown.is_empty(),
        "docs/errors.md documents codes that are no `Code`: {unknown:?}"
    );
}
