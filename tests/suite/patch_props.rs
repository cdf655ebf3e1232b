//! Property tests of the patch parser and the request parser, with git as the reference:
//! arbitrary input never panics, and every diff git writes for random edits of a random
//! repository (and that `git apply --check` accepts) is accepted by hyperion's whole
//! validation with the default policy. What hyperion refuses always carries a code.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::Path;

use hyperion::request::patch;
use hyperion::request::policy::Policy;
use hyperion::request::validate;
use proptest::prelude::*;
use serde_json::Value;

fn git(dir: &Path, args: &[&str]) -> std::process::Output {
    common::hermetic::git_output(dir, args, b"")
}

/// Lines that make diffs interesting: repeats, blanks, lines that look like diff syntax.
fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("}".to_owned()),
        Just("    return x;".to_owned()),
        Just("--- not a header".to_owned()),
        Just("+++ nor this".to_owned()),
        Just("@@ -1 +1 @@ text".to_owned()),
        Just("\\ backslash".to_owned()),
        "[a-z]{1,8}( [a-z]{1,8}){0,3}",
    ]
}

#[derive(Debug, Clone)]
struct File {
    lines: Vec<String>,
    final_newline: bool,
}

fn file() -> impl Strategy<Value = File> {
    (
        prop::collection::vec(line(), 0..40),
        prop::bool::weighted(0.85),
    )
        .prop_map(|(lines, final_newline)| File {
            lines,
            final_newline,
        })
}

impl File {
    fn text(&self) -> String {
        let mut t = self.lines.join("\n");
        if self.final_newline && !self.lines.is_empty() {
            t.push('\n');
        }
        t
    }
}

#[derive(Debug, Clone)]
enum LineOp {
    Insert(usize, String),
    Remove(usize),
    Replace(usize, String),
}

fn line_ops() -> impl Strategy<Value = Vec<LineOp>> {
    prop::collection::vec(
        prop_oneof![
            (any::<usize>(), line()).prop_map(|(i, l)| LineOp::Insert(i, l)),
            any::<usize>().prop_map(LineOp::Remove),
            (any::<usize>(), line()).prop_map(|(i, l)| LineOp::Replace(i, l)),
        ],
        1..6,
    )
}

#[derive(Debug, Clone)]
enum Edit {
    Keep,
    Modify(Vec<LineOp>, bool),
    Delete,
    Rename(Vec<LineOp>),
    Chmod,
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        2 => Just(Edit::Keep),
        5 => (line_ops(), prop::bool::weighted(0.1)).prop_map(|(ops, flip)| Edit::Modify(ops, flip)),
        1 => Just(Edit::Delete),
        1 => prop::collection::vec(
            (any::<usize>(), line()).prop_map(|(i, l)| LineOp::Replace(i, l)),
            0..2
        )
        .prop_map(Edit::Rename),
        1 => Just(Edit::Chmod),
    ]
}

const NAMES: &[&str] = &[
    "a.txt",
    "src/lib.rs",
    "src/deep/mod.rs",
    "docs/read me.md",
    "caf\u{e9}.txt",
    "x",
];
const NEW_NAMES: &[&str] = &["new.txt", "src/new.rs", "n/e/w.txt"];

#[derive(Debug, Clone)]
struct Scenario {
    files: Vec<Option<File>>,
    edits: Vec<Edit>,
    new_files: Vec<Option<File>>,
    new_symlink: Option<usize>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        prop::collection::vec(prop::option::weighted(0.7, file()), NAMES.len()),
        prop::collection::vec(edit(), NAMES.len()),
        prop::collection::vec(prop::option::weighted(0.3, file()), NEW_NAMES.len()),
        prop::option::weighted(0.2, 0..NAMES.len()),
    )
        .prop_map(|(files, edits, new_files, new_symlink)| Scenario {
            files,
            edits,
            new_files,
            new_symlink,
        })
}

fn apply_ops(f: &mut File, ops: &[LineOp]) {
    for op in ops {
        let n = f.lines.len();
        match op {
            LineOp::Insert(i, l) => f.lines.insert(i % (n + 1), l.clone()),
            LineOp::Remove(i) if n > 0 => {
                f.lines.remove(i % n);
            }
            LineOp::Replace(i, l) if n > 0 => f.lines[i % n] = l.clone(),
            _ => {}
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// Build the repository, make the edits, and return the diffs git writes for them.
fn diffs(dir: &Path, s: &Scenario) -> Vec<String> {
    common::hermetic::git(dir, &["init", "-q", "-b", "main"]);
    common::hermetic::git(dir, &["config", "core.quotePath", "true"]);
    let mut present = Vec::new();
    for (name, f) in NAMES.iter().zip(&s.files) {
        if let Some(f) = f {
            write(dir, name, &f.text());
            present.push(*name);
        }
    }
    std::fs::write(dir.join("keep"), "so the first commit is never empty\n").unwrap();
    common::hermetic::git(dir, &["add", "-A"]);
    common::hermetic::git(dir, &["commit", "-q", "-m", "base"]);
    for (i, (name, f)) in NAMES.iter().zip(&s.files).enumerate() {
        let Some(f) = f else { continue };
        let mut f = f.clone();
        match &s.edits[i] {
            Edit::Keep => {}
            Edit::Modify(ops, flip) => {
                apply_ops(&mut f, ops);
                if *flip {
                    f.final_newline = !f.final_newline;
                }
                write(dir, name, &f.text());
            }
            Edit::Delete => common::hermetic::git(dir, &["rm", "-q", name]).truncate(0),
            Edit::Rename(ops) => {
                let to = format!("moved/{i}-{}", name.rsplit('/').next().unwrap());
                std::fs::create_dir_all(dir.join("moved")).unwrap();
                common::hermetic::git(dir, &["mv", name, &to]);
                apply_ops(&mut f, ops);
                write(dir, &to, &f.text());
            }
            Edit::Chmod => {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o755))
                    .unwrap();
            }
        }
    }
    for (name, f) in NEW_NAMES.iter().zip(&s.new_files) {
        if let Some(f) = f {
            write(dir, name, &f.text());
        }
    }
    if let Some(i) = s.new_symlink
        && !present.is_empty()
    {
        // A relative symlink to a file of the base, from a new directory.
        let target = format!("../{}", present[i % present.len()]);
        std::fs::create_dir_all(dir.join("links")).unwrap();
        std::os::unix::fs::symlink(target, dir.join("links/l")).unwrap();
    }
    common::hermetic::git(dir, &["add", "-A"]);
    let out = vec![
        common::hermetic::git(dir, &["diff", "--cached", "-M"]),
        common::hermetic::git(dir, &["diff", "--cached", "-M", "--full-index"]),
    ];
    common::hermetic::git(dir, &["reset", "-q", "--hard", "HEAD"]);
    common::hermetic::git(dir, &["clean", "-q", "-fdx"]);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, max_shrink_iters: 100, ..ProptestConfig::default() })]

    #[test]
    fn git_diffs_of_random_edits_are_accepted(s in scenario()) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let diffs = diffs(dir, &s);
        let repo = gix::open(dir).unwrap();
        let tree = gix::ObjectId::from_hex(common::hermetic::git(dir, &["rev-parse", "HEAD^{tree}"]).trim().as_bytes()).unwrap();
        let policy = Policy::default();
        for diff in diffs.iter().filter(|d| !d.is_empty()) {
            let file = dir.join(".git/check.diff");
            std::fs::write(&file, diff).unwrap();
            let applies = git(dir, &["apply", "--check", file.to_str().unwrap()]).status.success();
            prop_assert!(applies, "git does not apply its own diff:\n{diff}");
            let req = patch::wrap(diff, "T-1", "prop", None, &[]);
            prop_assert!(req.is_ok(), "wrap refused {:?}:\n{diff}", req.err());
            let value = serde_json::to_value(req.unwrap()).unwrap();
            let (req, mut problems) = validate::check_value(&value);
            if let Some(req) = &req {
                problems.extend(validate::against_target(&repo, req, Some(tree), &policy));
            }
            for p in &problems {
                prop_assert!(p.code.as_str().contains('.'), "a problem without a code: {p:?}");
            }
            prop_assert!(req.is_some() && problems.is_empty(), "refused: {problems:#?}\n{diff}");
        }
    }

    #[test]
    fn the_patch_parser_never_panics_on_arbitrary_text(text in "(?s).{0,400}") {
        check_parse(&text);
    }

    #[test]
    fn the_patch_parser_never_panics_on_diff_like_text(
        lines in prop::collection::vec(prop_oneof![
            Just("diff --git a/x b/x".to_owned()),
            Just("diff --git \"a/q\\\"x\" b/y".to_owned()),
            Just("--- a/x".to_owned()),
            Just("+++ b/x".to_owned()),
            Just("--- /dev/null".to_owned()),
            Just("+++ /dev/null".to_owned()),
            Just("new file mode 120000".to_owned()),
            Just("deleted file mode 160000".to_owned()),
            Just("old mode 100644".to_owned()),
            Just("new mode 99999999999".to_owned()),
            Just("rename from a".to_owned()),
            Just("rename to \"b\\303".to_owned()),
            Just("index 123..456 100644".to_owned()),
            Just("GIT binary patch".to_owned()),
            Just("\\ No newline at end of file".to_owned()),
            "@@ -[0-9]{1,3}(,[0-9]{1,2})? \\+[0-9]{1,3}(,[0-9]{1,2})? @@.{0,5}",
            "@@ -18446744073709551615,18446744073709551615 \\+1 @@",
            "[ +-][a-z /.]{0,10}",
            ".{0,12}",
        ], 0..30),
        crlf in any::<bool>(),
    ) {
        let eol = if crlf { "\r\n" } else { "\n" };
        check_parse(&lines.join(eol));
    }

    #[test]
    fn the_request_parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let (req, problems) = validate::check_request(&bytes);
        prop_assert!(req.is_some() || !problems.is_empty());
    }

    #[test]
    fn the_request_parser_never_panics_on_near_requests(v in near_request()) {
        let bytes = serde_json::to_vec(&v).unwrap();
        let (req, problems) = validate::check_request(&bytes);
        if let Some(req) = &req {
            problems.iter().for_each(|p| assert!(p.code.as_str().contains('.')));
            validate::check_policy(req, &Policy::default(), None);
        } else {
            prop_assert!(!problems.is_empty());
        }
    }
}

/// Parse, and when that succeeds run the whole request validation on the result.
fn check_parse(text: &str) {
    match patch::parse(text) {
        Ok(files) => {
            for f in &files {
                for h in &f.hunks {
                    assert!(h.body.end <= f.text.len());
                }
            }
            if let Ok(req) = patch::wrap(text, "T", "a", None, &["unit".into()]) {
                let value = serde_json::to_value(&req).unwrap();
                let (req, _) = validate::check_value(&value);
                if let Some(req) = req {
                    validate::check_policy(&req, &Policy::default(), None);
                }
            }
        }
        Err(p) => assert!(p.code.as_str().starts_with("patch."), "{p:?}"),
    }
}

/// Requests with random values in the right places (and some in the wrong ones).
fn near_request() -> impl Strategy<Value = Value> {
    let scalar = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
        Just(Value::from(
            "--- /dev/null\n+++ b/src/x\n@@ -0,0 +1 @@\n+x\n"
        )),
        Just(Value::from("src/**")),
        Just(Value::from("../x")),
    ];
    let value = scalar.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let fields = [
        "schema",
        "task_id",
        "agent",
        "title",
        "description",
        "kind",
        "priority",
        "base",
        "target",
        "file_targets",
        "changes",
        "checks",
        "path",
    ];
    prop::collection::vec((prop::sample::select(fields.to_vec()), value), 0..8).prop_map(|pairs| {
        let patch = "--- /dev/null\n+++ b/src/x\n@@ -0,0 +1 @@\n+x\n";
        let mut v = serde_json::json!({
            "schema": "hyperion.change-request/v1", "task_id": "T", "agent": "a", "title": "t",
            "file_targets": ["src/**"],
            "changes": [{"path": "src/x", "operation": "add", "patch": patch,
                         "sha256": hyperion::request::model::sha256_hex(patch.as_bytes())}]
        });
        for (k, val) in pairs {
            if k != "path" {
                v[k] = val;
            } else if let Some(change) = v["changes"].get_mut(0).filter(|c| c.is_object()) {
                change["path"] = val;
            }
        }
        v
    })
}
