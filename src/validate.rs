//! Validation of submitted change requests: JSON syntax, schema v1, then the checks a schema
//! cannot express (patch hashes, patch/path agreement, duplicate paths). Every problem found is
//! reported, not only the first, each with a stable code and the field it concerns.

use std::sync::OnceLock;

use serde_json::Value;

use crate::error::Problem;
use crate::model::{ChangeRequest, Operation, sha256_hex};
use crate::patch;
use crate::paths;

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
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        vec![
            Problem::new(
                "request.json_syntax",
                format!("not valid JSON: {e}"),
                "the request must be one JSON object (see schemas/change-request.schema.json)",
            )
            .line(e.line()),
        ]
    })?;
    validate_value(&value)
}

/// Validate an already parsed JSON value.
pub fn validate_value(value: &Value) -> Result<ChangeRequest, Vec<Problem>> {
    let mut problems = schema_problems(value);
    if !problems.is_empty() {
        problems.sort_by(|a, b| a.field.cmp(&b.field).then(a.code.cmp(b.code)));
        problems.dedup();
        return Err(problems);
    }
    let req: ChangeRequest = serde_json::from_value(value.clone()).map_err(|e| {
        vec![Problem::new(
            "request.invalid_value",
            e.to_string(),
            "see schemas/change-request.schema.json",
        )]
    })?;
    let problems = semantic_problems(&req);
    if problems.is_empty() {
        Ok(req)
    } else {
        Err(problems)
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

/// Size limits: generous enough for real work, tight enough to stop a runaway agent. (The
/// policy file will be able to change them.)
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

fn semantic_problems(req: &ChangeRequest) -> Vec<Problem> {
    let mut out = limit_problems(req, &DEFAULT_LIMITS);
    for (i, pattern) in req.file_targets.iter().enumerate() {
        if let Some(reason) = paths::unsafe_reason(pattern.trim_end_matches("/**")) {
            out.push(
                Problem::new(
                    "path.unsafe",
                    format!("file target '{pattern}': {reason}"),
                    "file targets are globs relative to the repository root, inside it",
                )
                .at(format!("/file_targets/{i}")),
            );
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (i, c) in req.changes.iter().enumerate() {
        let field = |f: &str| format!("/changes/{i}/{f}");
        let named = [("path", Some(&c.path)), ("from", c.from.as_ref())];
        for (name, p) in named {
            let Some(p) = p else { continue };
            if let Some(reason) = paths::unsafe_reason(p) {
                out.push(
                    Problem::new(
                        "path.unsafe",
                        format!("'{}': {reason}", p.escape_debug()),
                        "a change may touch only ordinary paths inside the work tree",
                    )
                    .at(field(name)),
                );
            } else if !req.file_targets.iter().any(|g| paths::glob_match(g, p)) {
                out.push(
                    Problem::new(
                        "path.outside_file_targets",
                        format!("'{p}' matches none of the request's file_targets"),
                        "add a glob for it to `file_targets`, or leave the file alone",
                    )
                    .at(field(name)),
                );
            }
        }
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
            Ok(files) if files.len() != 1 => out.push(
                Problem::new(
                    "patch.multiple_files",
                    format!(
                        "the patch touches {} files; a change holds one",
                        files.len()
                    ),
                    "split the diff into one change per file (`enqueue --patch` does this)",
                )
                .at(field("patch")),
            ),
            Ok(files) => {
                let f = &files[0];
                if f.path() != c.path {
                    out.push(
                        Problem::new(
                            "request.path_mismatch",
                            format!(
                                "the change names '{}' but its patch touches '{}'",
                                c.path,
                                f.path()
                            ),
                            "make `path` the path the patch touches",
                        )
                        .at(field("path")),
                    );
                }
                if f.operation != c.operation {
                    out.push(
                        Problem::new(
                            "request.operation_mismatch",
                            format!(
                                "operation is {:?} but the patch is {:?}",
                                c.operation, f.operation
                            )
                            .to_lowercase(),
                            "make `operation` say what the patch does",
                        )
                        .at(field("operation")),
                    );
                }
                if c.operation == Operation::Rename && f.old_path.as_deref() != c.from.as_deref() {
                    out.push(
                        Problem::new(
                            "request.path_mismatch",
                            format!(
                                "the change renames from '{}' but its patch from '{}'",
                                c.from.as_deref().unwrap_or(""),
                                f.old_path.as_deref().unwrap_or("")
                            ),
                            "make `from` the old path of the rename",
                        )
                        .at(field("from")),
                    );
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

/// Checks against the target branch's tree: each operation must fit what is there (`add` a
/// path that does not exist, `update`/`delete` one that does, `rename` from one that does to
/// one that does not), and no path may lie below a symlink or a submodule.
pub fn tree_problems(
    req: &ChangeRequest,
    lookup: &dyn Fn(&str) -> Option<TreeEntry>,
) -> Vec<Problem> {
    let mut out = Vec::new();
    for (i, c) in req.changes.iter().enumerate() {
        let field = |f: &str| format!("/changes/{i}/{f}");
        for (name, p) in [("path", Some(&c.path)), ("from", c.from.as_ref())] {
            let Some(p) = p else { continue };
            let mut prefix = String::new();
            for comp in p.split('/').collect::<Vec<_>>().iter().rev().skip(1).rev() {
                if !prefix.is_empty() {
                    prefix.push('/');
                }
                prefix.push_str(comp);
                match lookup(&prefix) {
                    Some(TreeEntry::Symlink)
                    | Some(TreeEntry::Submodule)
                    | Some(TreeEntry::File) => {
                        out.push(
                            Problem::new(
                                "path.through_link",
                                format!("'{p}' lies below '{prefix}', which is not a directory at the target"),
                                "a change cannot write through a symlink, a submodule or a file",
                            )
                            .at(field(name)),
                        );
                        break;
                    }
                    _ => {}
                }
            }
        }
        let exists =
            |p: &str| matches!(lookup(p), Some(TreeEntry::File) | Some(TreeEntry::Symlink));
        let missing = |p: &str, name: &str, what: &str| {
            Problem::new(
                "operation.missing",
                format!("'{p}' does not exist at the target, so it cannot be {what}"),
                "the target moved on; regenerate the patch against the current target",
            )
            .at(field(name))
        };
        let present = |p: &str, name: &str| {
            Problem::new(
                "operation.exists",
                format!("'{p}' already exists at the target"),
                "use operation \"update\" for an existing file, or regenerate the patch",
            )
            .at(field(name))
        };
        match c.operation {
            Operation::Add if lookup(&c.path).is_some() => out.push(present(&c.path, "path")),
            Operation::Update if !exists(&c.path) => out.push(missing(&c.path, "path", "updated")),
            Operation::Delete if !exists(&c.path) => out.push(missing(&c.path, "path", "deleted")),
            Operation::Rename => {
                if let Some(from) = &c.from
                    && !exists(from)
                {
                    out.push(missing(from, "from", "renamed"));
                }
                if lookup(&c.path).is_some() {
                    out.push(present(&c.path, "path"));
                }
            }
            _ => {}
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

    #[test]
    fn hash_and_path_must_agree_with_the_patch() {
        let mut v = good();
        v["changes"][0]["sha256"] = "0".repeat(64).into();
        v["changes"][0]["path"] = "y".into();
        let codes: Vec<_> = validate_value(&v)
            .expect_err("invalid")
            .iter()
            .map(|p| p.code)
            .collect();
        assert_eq!(
            codes,
            [
                "path.outside_file_targets",
                "request.sha256_mismatch",
                "request.path_mismatch"
            ]
        );
    }
}
