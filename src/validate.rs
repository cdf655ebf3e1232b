//! Validation of submitted change requests: JSON syntax, schema v1, then the checks a schema
//! cannot express (patch hashes, patches that parse, duplicate paths), then everything that
//! depends on the target and its policy ([`against_target`]: limits, the paths a request
//! touches and where its symlinks lead, see [`crate::touched`], submodules, context, secrets,
//! checks). Every problem found is reported, not only the first, each with a stable code and
//! the field it concerns.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

use crate::error::Problem;
use crate::model::{ChangeRequest, Operation, sha256_hex};
use crate::patch;
use crate::policy::Policy;

/// The schema, as shipped in `schemas/change-request.schema.json`.
pub const SCHEMA_TEXT: &str = include_str!("../schemas/change-request.schema.json");

fn validator() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| {
        let schema: Value = serde_json::from_str(SCHEMA_TEXT).expect("the shipped schema is JSON");
        jsonschema::draft202012::new(&schema).expect("the shipped schema is valid")
    })
}

/// Parse and validate one request. `Err` carries every problem found.
pub fn parse_request(bytes: &[u8]) -> Result<ChangeRequest, Vec<Problem>> {
    into_result(check_request(bytes))
}

/// Validate an already parsed JSON value.
pub fn validate_value(value: &Value) -> Result<ChangeRequest, Vec<Problem>> {
    into_result(check_value(value))
}

fn into_result(
    (req, problems): (Option<ChangeRequest>, Vec<Problem>),
) -> Result<ChangeRequest, Vec<Problem>> {
    match req {
        Some(req) if problems.is_empty() => Ok(req),
        _ => Err(problems),
    }
}

/// Like [`parse_request`], but keeps the request whenever it passed the schema, even with
/// problems, so that a caller can also check it against its target and report every problem
/// at once.
pub fn check_request(bytes: &[u8]) -> (Option<ChangeRequest>, Vec<Problem>) {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(value) => check_value(&value),
        Err(e) => (
            None,
            vec![
                Problem::new(
                    "request.json_syntax",
                    format!("not valid JSON: {e}"),
                    "the request must be one JSON object (see schemas/change-request.schema.json)",
                )
                .line(e.line()),
            ],
        ),
    }
}

/// Like [`validate_value`], keeping the request whenever it passed the schema.
pub fn check_value(value: &Value) -> (Option<ChangeRequest>, Vec<Problem>) {
    let mut problems = schema_problems(value);
    if !problems.is_empty() {
        problems.sort_by(|a, b| a.field.cmp(&b.field).then(a.code.cmp(b.code)));
        problems.dedup();
        return (None, problems);
    }
    match serde_json::from_value::<ChangeRequest>(value.clone()) {
        Ok(req) => {
            let problems = semantic_problems(&req);
            (Some(req), problems)
        }
        Err(e) => (
            None,
            vec![Problem::new(
                "request.invalid_value",
                e.to_string(),
                "see schemas/change-request.schema.json",
            )],
        ),
    }
}

fn schema_problems(value: &Value) -> Vec<Problem> {
    use jsonschema::error::ValidationErrorKind as K;
    let mut out = Vec::new();
    for e in validator().iter_errors(value) {
        let path = e.instance_path().to_string();
        let at = if path.is_empty() {
            "/".to_owned()
        } else {
            path.clone()
        };
        let p = match e.kind() {
            K::AdditionalProperties { unexpected } => {
                for name in unexpected {
                    out.push(
                        Problem::new(
                            "request.unknown_field",
                            format!("unknown field '{name}'"),
                            "remove the field; format v1 accepts only the fields in schemas/change-request.schema.json",
                        )
                        .at(format!("{}/{name}", path)),
                    );
                }
                continue;
            }
            K::Required { property } => {
                let name = property.as_str().unwrap_or("?");
                Problem::new(
                    "request.missing_field",
                    format!("missing required field '{name}'"),
                    "add the field; see schemas/change-request.schema.json",
                )
                .at(format!("{}/{name}", path))
            }
            K::MinItems { .. } if path == "/changes" => Problem::new(
                "request.empty_changes",
                "a request must carry at least one change",
                "add one entry to `changes` per touched path",
            )
            .at(at),
            K::Constant { .. } if path == "/schema" => Problem::new(
                "request.schema_version",
                format!(
                    "unsupported schema {}; this version reads {}",
                    value["schema"],
                    crate::model::SCHEMA_V1
                ),
                "set \"schema\": \"hyperion.change-request/v1\"",
            )
            .at(at),
            K::Not { .. } => Problem::new(
                "request.invalid_value",
                "`from` is only allowed with operation \"rename\"",
                "drop `from`, or set operation to \"rename\"",
            )
            .at(format!("{path}/from")),
            _ => Problem::new(
                "request.invalid_value",
                e.to_string(),
                "see schemas/change-request.schema.json for the allowed values",
            )
            .at(at),
        };
        out.push(p);
    }
    out
}

/// Size limits: generous enough for real work, tight enough to stop a runaway agent. The
/// policy's `[limits]` changes them.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub change_bytes: usize,
    pub request_bytes: usize,
    pub files: usize,
}

pub const DEFAULT_LIMITS: Limits = Limits {
    change_bytes: 1 << 20,
    request_bytes: 8 << 20,
    files: 500,
};

fn limit_problems(req: &ChangeRequest, limits: &Limits) -> Vec<Problem> {
    let mut out = Vec::new();
    if req.changes.len() > limits.files {
        out.push(
            Problem::new(
                "limit.files",
                format!(
                    "{} changes; at most {} files per request",
                    req.changes.len(),
                    limits.files
                ),
                "split the work into several requests",
            )
            .at("/changes"),
        );
    }
    let mut total = 0;
    for (i, c) in req.changes.iter().enumerate() {
        total += c.patch.len();
        if c.patch.len() > limits.change_bytes {
            out.push(
                Problem::new(
                    "limit.change_bytes",
                    format!(
                        "the patch is {} bytes; at most {} per change",
                        c.patch.len(),
                        limits.change_bytes
                    ),
                    "generated or vendored files do not belong in a change request",
                )
                .at(format!("/changes/{i}/patch")),
            );
        }
    }
    if total > limits.request_bytes {
        out.push(
            Problem::new(
                "limit.request_bytes",
                format!(
                    "the patches total {total} bytes; at most {} per request",
                    limits.request_bytes
                ),
                "split the work into several requests",
            )
            .at("/changes"),
        );
    }
    out
}

/// File modes git writes in diffs.
const MODES: [u32; 4] = [0o100644, 0o100755, 0o120000, 0o160000];

/// The checks of a request's own content that a schema cannot express: patch hashes, patches
/// that parse, file modes git records, one change per path. The checks of the paths it
/// touches are not here but in [`check_policy`] ([`crate::touched`]), which a worker runs
/// again at lease time.
fn semantic_problems(req: &ChangeRequest) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, c) in req.changes.iter().enumerate() {
        let field = |f: &str| format!("/changes/{i}/{f}");
        if !seen.insert(c.path.as_str()) {
            out.push(
                Problem::new(
                    "request.duplicate_path",
                    format!("'{}' is named by more than one change", c.path),
                    "put all edits of one file into one change",
                )
                .at(field("path")),
            );
        }
        let actual = sha256_hex(c.patch.as_bytes());
        if actual != c.sha256 {
            out.push(
                Problem::new(
                    "request.sha256_mismatch",
                    format!("sha256 of the patch is {actual}, the request says {}", c.sha256),
                    "compute the hash over the exact patch text (`sha256sum`), after any re-encoding",
                )
                .at(field("sha256")),
            );
        }
        match patch::parse(&c.patch) {
            Err(p) => out.push(p.at(field("patch"))),
            Ok(files) => {
                for f in &files {
                    for m in [f.old_mode, f.new_mode].into_iter().flatten() {
                        if !MODES.contains(&m) {
                            out.push(
                                Problem::new(
                                    "patch.bad_mode",
                                    format!("file mode {m:o} is not one git records (100644, 100755, 120000, 160000)"),
                                    "regenerate the patch with `git diff`",
                                )
                                .at(field("patch"))
                                .line(f.line),
                            );
                        }
                    }
                }
            }
        }
    }
    out
}

/// What a path is in the target tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeEntry {
    File,
    Symlink,
    Dir,
    Submodule,
}

/// Read access to the target branch's tree, for the checks that depend on it.
pub trait TargetTree {
    /// What `path` is at the target, if anything.
    fn entry(&self, path: &str) -> Option<TreeEntry>;
    /// The content of the blob at `path` (a file or a symlink's target).
    fn blob(&self, path: &str) -> Option<Vec<u8>>;
    /// The path of every symlink in the tree. Reads the whole tree: asked only about a
    /// request that makes a symlink.
    fn symlinks(&self) -> Vec<String>;
}

/// The target's tree as [`against_target`] reads it: each directory on a path looked up is
/// read once, however many checks ask, and searched without being decoded. A request's checks look its paths up
/// several times, and in a directory of thousands of files every reading of it inflated and
/// copied the whole tree again.
struct Target<'repo> {
    repo: &'repo gix::Repository,
    /// Directories by path (`""`: the root), as read (entries are found in the encoded tree,
    /// without decoding the others); `None`: not a directory there.
    dirs: std::cell::RefCell<HashMap<String, Option<std::rc::Rc<Vec<u8>>>>>,
}

impl<'repo> Target<'repo> {
    fn new(repo: &'repo gix::Repository, root: Vec<u8>) -> Self {
        let dirs = HashMap::from([(String::new(), Some(std::rc::Rc::new(root)))]);
        Target {
            repo,
            dirs: std::cell::RefCell::new(dirs),
        }
    }

    /// The encoded tree of directory `dir`, if there is one.
    fn dir(&self, dir: &str) -> Option<std::rc::Rc<Vec<u8>>> {
        let known = self.dirs.borrow().get(dir).cloned();
        if let Some(known) = known {
            return known;
        }
        let tree = self.find(dir).and_then(|(mode, id)| {
            let tree = mode.is_tree().then(|| self.repo.find_tree(id).ok())??;
            Some(std::rc::Rc::new(tree.detach().data))
        });
        self.dirs.borrow_mut().insert(dir.to_owned(), tree.clone());
        tree
    }

    /// The mode and id of the entry at `path`.
    fn find(&self, path: &str) -> Option<(gix::objs::tree::EntryMode, gix::ObjectId)> {
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        if name.is_empty() {
            return None;
        }
        let dir = self.dir(parent)?;
        gix::objs::TreeRefIter::from_bytes(&dir, self.repo.object_hash())
            .filter_map(Result::ok)
            .find(|e| e.filename == name.as_bytes())
            .map(|e| (e.mode, e.oid.to_owned()))
    }
}

impl TargetTree for Target<'_> {
    fn entry(&self, path: &str) -> Option<TreeEntry> {
        let (mode, _) = self.find(path)?;
        Some(if mode.is_tree() {
            TreeEntry::Dir
        } else if mode.is_link() {
            TreeEntry::Symlink
        } else if mode.is_commit() {
            TreeEntry::Submodule
        } else {
            TreeEntry::File
        })
    }

    fn blob(&self, path: &str) -> Option<Vec<u8>> {
        let (mode, id) = self.find(path)?;
        if !mode.is_blob_or_symlink() {
            return None;
        }
        Some(self.repo.find_object(id).ok()?.detach().data)
    }

    fn symlinks(&self) -> Vec<String> {
        let mut out = Vec::new();
        let Some(root) = self.dir("") else {
            return out;
        };
        let mut stack = vec![(String::new(), root.as_ref().clone())];
        while let Some((dir, data)) = stack.pop() {
            for e in gix::objs::TreeRefIter::from_bytes(&data, self.repo.object_hash())
                .filter_map(Result::ok)
            {
                let name = String::from_utf8_lossy(e.filename);
                let path = if dir.is_empty() {
                    name.into_owned()
                } else {
                    format!("{dir}/{name}")
                };
                if e.mode.is_link() {
                    out.push(path);
                } else if e.mode.is_tree()
                    && let Ok(tree) = self.repo.find_tree(e.oid.to_owned())
                {
                    stack.push((path, tree.detach().data));
                }
            }
        }
        out
    }
}

/// Everything about a request that depends on its target and the target's policy: size
/// limits, the paths it touches (safe, not too long, within `file_targets`, not denied, the
/// ones its patches name agreeing with its `path`/`from`/`operation`: [`crate::touched`]),
/// minimum hunk context, gitlinks, checks, secrets, and (with a tree) operations against the
/// files there, paths below symlinks, and where its symlinks lead in that tree plus its own
/// changes. Run at enqueue, by `validate`, and again by a worker at lease time, with the
/// policy read from the same tree (`Policy::load`): a request that reached the queue without
/// enqueue's checks is held to the same path rules before it is applied. `target_tree` is the
/// tree the request will be applied onto, `None` when the target branch does not exist yet;
/// the checks that need its files are skipped then.
pub fn against_target(
    repo: &gix::Repository,
    req: &ChangeRequest,
    target_tree: Option<gix::ObjectId>,
    policy: &Policy,
) -> Vec<Problem> {
    let root = target_tree
        .map(|id| repo.find_tree(id).map(|t| t.detach().data))
        .transpose();
    match root {
        Ok(root) => {
            let target = root.map(|root| Target::new(repo, root));
            check_policy(req, policy, target.as_ref().map(|t| t as &dyn TargetTree))
        }
        Err(e) => {
            let mut out = check_policy(req, policy, None);
            out.push(Problem::new(
                "env.git",
                format!("could not read the target's tree: {e}"),
                "check the repository; nothing was stored",
            ));
            out
        }
    }
}

/// [`against_target`] without a repository: `tree` gives the target's files, if known.
pub fn check_policy(
    req: &ChangeRequest,
    policy: &Policy,
    tree: Option<&dyn TargetTree>,
) -> Vec<Problem> {
    let mut out = limit_problems(req, &policy.limits);
    let parsed: Vec<Option<Vec<patch::FilePatch>>> = req
        .changes
        .iter()
        .map(|c| patch::parse(&c.patch).ok())
        .collect();
    out.extend(crate::touched::problems(req, &parsed, policy, tree));
    for (i, c) in req.changes.iter().enumerate() {
        let field = |f: &str| format!("/changes/{i}/{f}");
        let file = match &parsed[i] {
            Some(files) if files.len() == 1 => files.first(),
            _ => None,
        };
        if let Some(f) = file {
            let submodule = tree.is_some_and(|t| {
                [Some(&c.path), c.from.as_ref()]
                    .into_iter()
                    .flatten()
                    .any(|p| t.entry(p) == Some(TreeEntry::Submodule))
            });
            let gitlink = f.old_mode == Some(0o160000) || f.new_mode == Some(0o160000);
            if (gitlink || submodule) && !policy.allow_gitlinks {
                out.push(
                    Problem::new(
                        "path.gitlink",
                        format!("'{}' is a submodule (a gitlink, mode 160000)", c.path),
                        "the target's policy does not let requests change submodules ([paths] allow_gitlinks)",
                    )
                    .at(field("patch")),
                );
            }
            out.extend(
                context_problems(f, c, policy.min_context, tree)
                    .into_iter()
                    .map(|p| p.at(field("patch"))),
            );
        }
        if !policy.secrets_allowed_in(&c.path) {
            for (line, rule, what) in added_secrets(&c.patch, file, policy) {
                out.push(
                    Problem::new(
                        "secret.detected",
                        format!(
                            "the patch of '{}' adds what looks like {what} (rule {rule}); it is not shown here",
                            c.path
                        ),
                        "remove the secret from the change (and revoke it: it has left your machine); nothing was stored",
                    )
                    .at(field("patch"))
                    .line(line),
                );
            }
        }
    }
    for (name, text) in [
        ("title", Some(&req.title)),
        ("description", req.description.as_ref()),
    ] {
        let Some(text) = text else { continue };
        if let Some((rule, what)) = text.lines().find_map(|l| policy.find_secret(l)) {
            out.push(
                Problem::new(
                    "secret.detected",
                    format!("the {name} contains what looks like {what} (rule {rule}); it is not shown here"),
                    "remove the secret from the request (and revoke it); nothing was stored",
                )
                .at(format!("/{name}")),
            );
        }
    }
    for (i, name) in req.checks.iter().enumerate() {
        if let Err(p) = policy.resolve_check(name) {
            out.push(p.at(format!("/checks/{i}")));
        }
    }
    out
}

/// Hunks with less context than the policy asks for, except at the start of the file (before
/// the first change) and at its end (after the last): what `git diff` writes by default always
/// passes. The end of the file is known from the target's blob; without one, short trailing
/// context is accepted.
fn context_problems(
    f: &patch::FilePatch,
    c: &crate::model::Change,
    min: usize,
    tree: Option<&dyn TargetTree>,
) -> Vec<Problem> {
    let mut out = Vec::new();
    if min == 0 || f.binary || c.operation == Operation::Add {
        return out;
    }
    let old_path = c.from.as_deref().unwrap_or(&c.path);
    let mut old_len: Option<Option<usize>> = None;
    for h in &f.hunks {
        let body = &f.text[h.body.clone()];
        if !body.lines().any(|l| l.starts_with(['+', '-'])) {
            continue;
        }
        if h.leading < min && h.old_start > 1 {
            out.push(
                Problem::new(
                    "patch.min_context",
                    format!(
                        "the hunk has {} line(s) of context before its first change; the policy asks for {min} except at the start of the file",
                        h.leading
                    ),
                    "generate the patch with `git diff` (3 lines of context by default, not -U0 or -U1)",
                )
                .line(h.line),
            );
        }
        if h.trailing < min {
            let len = *old_len.get_or_insert_with(|| {
                tree.and_then(|t| t.blob(old_path)).map(|b| count_lines(&b))
            });
            let end = if h.old_count == 0 {
                h.old_start
            } else {
                h.old_start + h.old_count - 1
            };
            if let Some(len) = len
                && end < len
            {
                out.push(
                    Problem::new(
                        "patch.min_context",
                        format!(
                            "the hunk has {} line(s) of context after its last change and ends at line {end} of {len}; the policy asks for {min} except at the end of the file",
                            h.trailing
                        ),
                        "generate the patch with `git diff` (3 lines of context by default, not -U0 or -U1) against the current target",
                    )
                    .line(h.line),
                );
            }
        }
    }
    out
}

fn count_lines(b: &[u8]) -> usize {
    let n = b.iter().filter(|&&c| c == b'\n').count();
    if b.last().is_some_and(|&c| c != b'\n') {
        n + 1
    } else {
        n
    }
}

/// Added lines that look like secrets: (1-based line in the patch, rule, what it finds). For a
/// patch that does not parse, every `+` line that is not a `+++` header is scanned.
fn added_secrets<'p>(
    text: &str,
    file: Option<&patch::FilePatch>,
    policy: &'p Policy,
) -> Vec<(usize, &'p str, &'p str)> {
    let mut out = Vec::new();
    match file {
        Some(f) => {
            for h in &f.hunks {
                for (k, l) in f.text[h.body.clone()].lines().enumerate() {
                    if let Some(added) = l.strip_prefix('+')
                        && let Some((rule, what)) = policy.find_secret(added)
                    {
                        out.push((h.line + 1 + k, rule, what));
                    }
                }
            }
        }
        None => {
            for (k, l) in text.lines().enumerate() {
                if let Some(added) = l.strip_prefix('+')
                    && !l.starts_with("+++ ")
                    && let Some((rule, what)) = policy.find_secret(added)
                {
                    out.push((k + 1, rule, what));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Value {
        let patch = "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n";
        serde_json::json!({
            "schema": "hyperion.change-request/v1", "task_id": "T-1", "agent": "a",
            "title": "t", "file_targets": ["x"],
            "changes": [{"path": "x", "operation": "update", "patch": patch, "sha256": sha256_hex(patch.as_bytes())}]
        })
    }

    #[test]
    fn a_good_request_passes() {
        validate_value(&good()).expect("valid");
    }

    #[test]
    fn every_problem_is_reported() {
        let mut v = good();
        v["bogus"] = 1.into();
        v["priority"] = 12.into();
        v.as_object_mut().expect("object").remove("title");
        let problems = validate_value(&v).expect_err("invalid");
        let codes: Vec<_> = problems.iter().map(|p| p.code).collect();
        assert!(codes.contains(&"request.unknown_field"), "{codes:?}");
        assert!(codes.contains(&"request.missing_field"), "{codes:?}");
        assert!(codes.contains(&"request.invalid_value"), "{codes:?}");
        let unknown = problems
            .iter()
            .find(|p| p.code == "request.unknown_field")
            .expect("present");
        assert_eq!(unknown.field.as_deref(), Some("/bogus"));
    }

    fn codes(v: &Value) -> Vec<&'static str> {
        let (req, mut problems) = check_value(v);
        if let Some(req) = &req {
            problems.extend(check_policy(req, &Policy::default(), None));
        }
        problems.iter().map(|p| p.code).collect()
    }

    #[test]
    fn hash_and_path_must_agree_with_the_patch() {
        let mut v = good();
        v["changes"][0]["sha256"] = "0".repeat(64).into();
        v["changes"][0]["path"] = "y".into();
        // The hash is the request's own business; the path is judged with the target's
        // checks, which a worker runs again at lease time.
        assert_eq!(
            validate_value(&v)
                .expect_err("invalid")
                .iter()
                .map(|p| p.code)
                .collect::<Vec<_>>(),
            ["request.sha256_mismatch"]
        );
        assert_eq!(
            codes(&v),
            [
                "request.sha256_mismatch",
                "path.outside_file_targets",
                "request.path_mismatch"
            ]
        );
    }

    fn with_patch(path: &str, op: &str, patch: &str) -> Value {
        let mut v = good();
        v["file_targets"] = serde_json::json!(["**"]);
        v["changes"][0] = serde_json::json!({
            "path": path, "operation": op, "patch": patch, "sha256": sha256_hex(patch.as_bytes())
        });
        v
    }

    #[test]
    fn every_name_in_the_patch_is_a_path_of_the_request() {
        // The old side of a rename is checked like its new side: unsafe, outside the file
        // targets, denied.
        let rename = |from: &str| {
            let patch = format!(
                "diff --git a/{from} b/y\nsimilarity index 100%\nrename from {from}\nrename to y\n"
            );
            let mut v = with_patch("y", "rename", &patch);
            v["changes"][0]["from"] = from.into();
            v
        };
        assert!(codes(&rename(".git/config")).contains(&"path.unsafe"));
        let mut v = rename("secrets/key");
        v["file_targets"] = serde_json::json!(["y"]);
        assert!(codes(&v).contains(&"path.outside_file_targets"));
        // A rename whose declared `from` is not the patch's.
        let mut v = rename("secrets/key");
        v["changes"][0]["from"] = "x".into();
        assert!(
            codes(&v).contains(&"request.path_mismatch"),
            "{:?}",
            codes(&v)
        );
        // A patch of another file than the change says, on either side.
        let patch = "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n";
        assert_eq!(
            codes(&with_patch("y", "update", patch)),
            ["request.path_mismatch"]
        );
        // Two files in one change.
        let two = format!("{patch}diff --git a/y b/y\n--- a/y\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n");
        let c = codes(&with_patch("x", "update", &two));
        assert!(
            c.contains(&"patch.multiple_files") && c.contains(&"request.path_mismatch"),
            "{c:?}"
        );
        // An operation the patch does not do.
        assert_eq!(
            codes(&with_patch("x", "add", patch)),
            ["request.operation_mismatch"]
        );
    }

    #[test]
    fn path_problems_are_reported_once_at_enqueue() {
        let patch = "diff --git a/.git/hooks/x b/.git/hooks/x\n--- a/.git/hooks/x\n+++ b/.git/hooks/x\n@@ -1 +1 @@\n-a\n+b\n";
        assert_eq!(
            codes(&with_patch(".git/hooks/x", "update", patch)),
            ["path.unsafe"]
        );
        let long = "n".repeat(256);
        let patch = format!(
            "diff --git a/{long} b/{long}\nnew file mode 100644\n--- /dev/null\n+++ b/{long}\n@@ -0,0 +1 @@\n+a\n"
        );
        assert_eq!(codes(&with_patch(&long, "add", &patch)), ["path.too_long"]);
    }
}
