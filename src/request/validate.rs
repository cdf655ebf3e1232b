//! Validation of submitted change requests: JSON syntax, schema v1, then the checks a schema
//! cannot express (patch hashes, patches that parse, duplicate paths), then everything that
//! depends on the target and its policy ([`against_target`]: limits, the paths a request
//! touches and where its symlinks lead, see [`crate::request::touched`], submodules, context, secrets,
//! checks). Every problem found is reported, not only the first, each with a stable code and
//! the field it concerns.

use serde_json::Value;

use crate::code::Code;
use crate::error::Problem;
use crate::request::limits::Limits;
use crate::request::model::{ChangeRequest, Operation, sha256_hex};
use crate::request::patch;
use crate::request::policy::Policy;
use crate::request::schema::{Rule, Rules, Schema, cleaned, quoted};
use crate::request::view::{CachedTree, TreeEntry, TreeView};

/// The schema, as shipped in `schemas/change-request.schema.json`.
pub const SCHEMA_TEXT: &str = include_str!("../../schemas/change-request.schema.json");

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
                    Code::RequestJsonSyntax,
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
    let mut problems = SCHEMA.problems(value);
    if !problems.is_empty() {
        // The request goes no further, so it is not scanned against its target's policy:
        // scan every string and field name of it here, with the built-in rules and those of
        // the policies read so far (the CLI reads the default target's first).
        problems.extend(raw_secrets(value));
        crate::request::secrets::redact_problems(&mut problems);
        problems.sort_by(|a, b| a.field.cmp(&b.field).then(a.code.cmp(&b.code)));
        problems.dedup();
        return (None, problems);
    }
    let (req, mut problems) = match serde_json::from_value::<ChangeRequest>(value.clone()) {
        Ok(req) => {
            let problems = semantic_problems(&req);
            (Some(req), problems)
        }
        Err(e) => (
            None,
            vec![Problem::new(
                Code::RequestInvalidValue,
                cleaned(&e.to_string()),
                "see schemas/change-request.schema.json",
            )],
        ),
    };
    // Messages quote paths and values of the request; a secret in one is reported (by
    // `check_policy`) but never shown.
    crate::request::secrets::redact_problems(&mut problems);
    (req, problems)
}

/// `secret.detected` for a field of the request: named, the secret never shown.
fn secret_in_field(field: &str, hit: &crate::request::secrets::Hit<'_>) -> Problem {
    Problem::new(
        Code::SecretDetected,
        format!(
            "{field} holds what looks like {} (rule {}); it is not shown here",
            hit.what, hit.rule
        ),
        "remove the secret from the request (and revoke it: it has left your machine); nothing was stored",
    )
    .at(field)
}

/// Every string and field name of a request that did not pass the schema that holds what a
/// built-in rule or a rule of a policy read so far finds ([`crate::request::secrets::known`]).
fn raw_secrets(value: &Value) -> Vec<Problem> {
    let scanner = crate::request::secrets::known();
    let mut out = Vec::new();
    walk_strings(value, &mut String::new(), &mut |field, text, is_name| {
        if let Some(hit) = scanner.find(text.as_bytes()) {
            let what = if is_name {
                format!(
                    "a field name in {}",
                    if field.is_empty() { "/" } else { field }
                )
            } else {
                field.to_owned()
            };
            let mut p = secret_in_field(&what, &hit);
            // The field of a name is the object holding it: the name itself is the secret.
            p.field = Some(if field.is_empty() {
                "/".into()
            } else {
                field.into()
            });
            out.push(p);
        }
    });
    out
}

/// Call `f(pointer, text, is_name)` for every string in `value` and every name of its objects
/// (`pointer` is then the object's).
fn walk_strings(value: &Value, pointer: &mut String, f: &mut dyn FnMut(&str, &str, bool)) {
    match value {
        Value::String(s) => f(pointer, s, false),
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let len = pointer.len();
                use std::fmt::Write;
                write!(pointer, "/{i}").expect("writing to a String cannot fail");
                walk_strings(v, pointer, f);
                pointer.truncate(len);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                f(pointer, k, true);
                let len = pointer.len();
                pointer.push('/');
                for c in k.chars() {
                    match c {
                        '~' => pointer.push_str("~0"),
                        '/' => pointer.push_str("~1"),
                        c => pointer.push(c),
                    }
                }
                walk_strings(v, pointer, f);
                pointer.truncate(len);
            }
        }
        _ => {}
    }
}

/// The validator of `schemas/change-request.schema.json`, generated at build time: no
/// process compiles the schema (nor checks it against the draft's meta-schema) at run time.
#[jsonschema::validator(path = "schemas/change-request.schema.json", methods = { is_valid = false, validate = false })]
struct Generated;

/// The change request's schema: its codes and hints, and its own two cases (an empty
/// `changes`, `from` without a rename) that jsonschema's messages would explain badly.
static SCHEMA: Schema = Schema::new(
    Generated::iter_errors,
    crate::request::model::SCHEMA_V1,
    Rules {
        unknown_field: Rule {
            code: Code::RequestUnknownField,
            hint: "remove the field; format v1 accepts only the fields in schemas/change-request.schema.json",
        },
        missing_field: Rule {
            code: Code::RequestMissingField,
            hint: "add the field; see schemas/change-request.schema.json",
        },
        schema_version: Rule {
            code: Code::RequestSchemaVersion,
            hint: "set \"schema\": \"hyperion.change-request/v1\"",
        },
        invalid_value: Rule {
            code: Code::RequestInvalidValue,
            hint: "see schemas/change-request.schema.json for the allowed values",
        },
    },
    |kind, path| {
        use jsonschema::error::ValidationErrorKind as K;
        match kind {
            K::MinItems { .. } if path == "/changes" => Some(
                Problem::new(
                    Code::RequestEmptyChanges,
                    "a request must carry at least one change",
                    "add one entry to `changes` per touched path",
                )
                .at(path),
            ),
            // A change's `from` unless it is a rename (the other `not`s are of characters,
            // see `Schema::problems`).
            K::Not { schema } if schema.get("required").is_some() => Some(
                Problem::new(
                    Code::RequestInvalidValue,
                    "`from` is only allowed with operation \"rename\"",
                    "drop `from`, or set operation to \"rename\"",
                )
                .at(format!("{path}/from")),
            ),
            _ => None,
        }
    },
);

fn limit_problems(req: &ChangeRequest, limits: &Limits) -> Vec<Problem> {
    let mut out = Vec::new();
    if req.changes.len() > limits.files {
        out.push(
            Problem::new(
                Code::LimitFiles,
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
                    Code::LimitChangeBytes,
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
                Code::LimitRequestBytes,
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
/// touches are not here but in [`check_policy`] ([`crate::request::touched`]), which a worker runs
/// again at lease time.
fn semantic_problems(req: &ChangeRequest) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, c) in req.changes.iter().enumerate() {
        let field = |f: &str| format!("/changes/{i}/{f}");
        if !seen.insert(c.path.as_str()) {
            out.push(
                Problem::new(
                    Code::RequestDuplicatePath,
                    format!("'{}' is named by more than one change", quoted(&c.path)),
                    "put all edits of one file into one change",
                )
                .at(field("path")),
            );
        }
        let actual = sha256_hex(c.patch.as_bytes());
        if actual != c.sha256 {
            out.push(
                Problem::new(
                    Code::RequestSha256Mismatch,
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
                                    Code::PatchBadMode,
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

/// Everything about a request that depends on its target and the target's policy: size
/// limits, the paths it touches (safe, not too long, within `file_targets`, not denied, the
/// ones its patches name agreeing with its `path`/`from`/`operation`: [`crate::request::touched`]),
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
            let target = root.map(|root| CachedTree::new(repo, root));
            check_policy(req, policy, target.as_ref().map(|t| t as &dyn TreeView))
        }
        Err(e) => {
            let mut out = check_policy(req, policy, None);
            out.push(Problem::new(
                Code::EnvGit,
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
    tree: Option<&dyn TreeView>,
) -> Vec<Problem> {
    let mut out = limit_problems(req, &policy.limits);
    let parsed: Vec<Option<Vec<patch::FilePatch>>> = req
        .changes
        .iter()
        .map(|c| patch::parse(&c.patch).ok())
        .collect();
    out.extend(crate::request::touched::problems(
        req, &parsed, policy, tree,
    ));
    // What the request's files add up to (see `budget`).
    let mut produced = 0u64;
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
                        Code::PathGitlink,
                        format!("'{}' is a submodule (a gitlink, mode 160000)", quoted(&c.path)),
                        "the target's policy does not let requests change submodules ([paths] allow_gitlinks)",
                    )
                    .at(field("patch")),
                );
            }
            out.extend(
                context_problems(f, c, policy.min_context, tree, policy.limits.file_bytes)
                    .into_iter()
                    .chain(crate::request::limits::change_problems(
                        f,
                        c,
                        &policy.limits,
                        tree,
                        &mut produced,
                    ))
                    .map(|p| p.at(field("patch"))),
            );
        }
        if !policy.secrets_allowed_in(&c.path) {
            let old_path = c.from.as_deref().unwrap_or(&c.path);
            let old = || tree.and_then(|t| t.blob(old_path));
            for (line, rule, what) in patch_secrets(
                &c.patch,
                file,
                policy.secrets(),
                &old,
                policy.limits.file_bytes,
            ) {
                out.push(
                    Problem::new(
                        Code::SecretDetected,
                        format!(
                            "the patch of '{}' holds what looks like {what} (rule {rule}); it is not shown here",
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
    out.extend(crate::request::limits::total_problem(
        produced,
        &policy.limits,
    ));
    out.extend(field_secrets(req, policy.secrets()));
    for (i, name) in req.checks.iter().enumerate() {
        if let Err(p) = policy.resolve_check(name) {
            out.push(p.at(format!("/checks/{i}")));
        }
    }
    crate::request::secrets::redact_problems(&mut out);
    out
}

/// `secret.detected` for every string field of the request that holds a secret: every field
/// of the request as it is stored (`request.json`), found by walking its serialised form, so
/// that a field added to the model is scanned without being named here. Patches are scanned
/// by [`patch_secrets`] instead (added lines, decoded binary content, `allow_paths`).
fn field_secrets(req: &ChangeRequest, scanner: &crate::request::secrets::Scanner) -> Vec<Problem> {
    let value = serde_json::to_value(req).expect("a ChangeRequest always serialises");
    let is_patch = |field: &str| field.starts_with("/changes/") && field.ends_with("/patch");
    // Every field at once first (a request is clean almost always), apart by a separator no
    // built-in rule matches across; field by field only when something was found.
    let mut all = Vec::new();
    walk_strings(&value, &mut String::new(), &mut |field, text, is_name| {
        if !is_name && !is_patch(field) {
            all.extend_from_slice(text.as_bytes());
            all.extend_from_slice(b"\n\0\n");
        }
    });
    if scanner.find(&all).is_none() {
        return Vec::new();
    }
    let mut out = Vec::new();
    walk_strings(&value, &mut String::new(), &mut |field, text, is_name| {
        if is_name || is_patch(field) {
            return;
        }
        if let Some(hit) = scanner.find(text.as_bytes()) {
            out.push(secret_in_field(field, &hit));
        }
    });
    out
}

/// Hunks with less context than the policy asks for, except at the start of the file (before
/// the first change) and at its end (after the last): what `git diff` writes by default always
/// passes.
///
/// The start is the hunk's own claim (`@@ -1,…` or `-0,…`), which the apply engine holds it to
/// (such a hunk must match at the top of the file). The end is judged against the file the
/// patch was made from, never by the target's line numbers (the target may have grown
/// elsewhere since): a hunk is at the end when its lines are the last lines of its preimage —
/// the blob its `index` line names, when the repository has it, at the line numbers the hunk
/// states — or, for a patch whose preimage is not known, the last lines of the file at the
/// target (by content, wherever they now are). Without either (a new target branch), short
/// trailing context is accepted.
fn context_problems(
    f: &patch::FilePatch,
    c: &crate::request::model::Change,
    min: usize,
    tree: Option<&dyn TreeView>,
    cap: usize,
) -> Vec<Problem> {
    let mut out = Vec::new();
    if min == 0 || f.binary || c.operation == Operation::Add {
        return out;
    }
    let old_path = c.from.as_deref().unwrap_or(&c.path);
    // The file the hunks are judged against, read once: (content, is it the preimage).
    let mut against: Option<Option<(Vec<u8>, bool)>> = None;
    for h in &f.hunks {
        let body = &f.text[h.body.clone()];
        if !body.lines().any(|l| l.starts_with(['+', '-'])) {
            continue;
        }
        if h.leading < min && h.old_start > 1 {
            out.push(
                Problem::new(
                    Code::PatchMinContext,
                    format!(
                        "the hunk has {} line(s) of context before its first change; the policy asks for {min} except at the start of the file",
                        h.leading
                    ),
                    "generate the patch with `git diff` (3 lines of context by default, not -U0 or -U1)",
                )
                .line(h.line),
            );
        }
        if h.trailing >= min {
            continue;
        }
        let file = against.get_or_insert_with(|| {
            let t = tree?;
            if let Some(pre) = f.old_id.as_deref().and_then(|id| t.object(id, cap)) {
                return Some((pre, true));
            }
            if t.size(old_path)? > cap as u64 {
                return None;
            }
            t.blob(old_path).map(|b| (b, false))
        });
        let Some((content, is_preimage)) = file else {
            continue;
        };
        let expected = crate::request::apply::hunk_preimage(f, h);
        let tail = last_lines(content, expected.len());
        let end = if h.old_count == 0 {
            h.old_start
        } else {
            h.old_start.saturating_add(h.old_count - 1)
        };
        let at_end = tail == expected
            && (!*is_preimage || end == crate::request::limits::count_lines(content));
        if !at_end {
            let message = if *is_preimage {
                format!(
                    "the hunk has {} line(s) of context after its last change and is not at the end of the file it was made from (it ends at line {end} of {}); the policy asks for {min} except at the end of the file",
                    h.trailing,
                    crate::request::limits::count_lines(content)
                )
            } else {
                format!(
                    "the hunk has {} line(s) of context after its last change and its lines are not the last lines of '{old_path}' at the target; the policy asks for {min} except at the end of the file",
                    h.trailing
                )
            };
            out.push(
                Problem::new(
                    Code::PatchMinContext,
                    message,
                    "generate the patch with `git diff` (3 lines of context by default, not -U0 or -U1)",
                )
                .line(h.line),
            );
        }
    }
    out
}

/// The last `n` lines of `data` (fewer if it has fewer), each with its newline.
fn last_lines(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(n);
    let mut end = data.len();
    while out.len() < n && end > 0 {
        // The line ending at `end` starts after the previous newline.
        let start = data[..end - 1]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        out.push(&data[start..end]);
        end = start;
    }
    out.reverse();
    out
}

/// Where a patch stores what looks like a secret: (1-based line in the patch, rule, what it
/// finds).
///
/// Every line of the patch is stored, so every line is scanned, not only the added ones: an
/// added line with a match is refused; a context or removed line only when what matched is
/// not in the file at the target already (`old`: the file's content there, if it exists), so
/// that a request may remove a secret a person committed; header, preamble and binary-data
/// lines are refused (a path with a secret is also reported as a field). Added lines are also
/// scanned joined, for the policy's patterns that span lines. A `GIT binary patch` section is
/// decoded (base85, zlib) and a delta applied to the file at the target — or, without one, to
/// zeros of the size it names, which keeps its inserted bytes together — and the resulting
/// content is scanned for what is not in the target's file already. For a patch that does
/// not parse, every `+` line that is not a `+++` header counts as added.
fn patch_secrets<'s>(
    text: &str,
    file: Option<&patch::FilePatch>,
    scanner: &'s crate::request::secrets::Scanner,
    old: &dyn Fn() -> Option<Vec<u8>>,
    cap: usize,
) -> Vec<(usize, &'s str, &'s str)> {
    let mut out: Vec<(usize, &str, &str)> = Vec::new();
    let old_content = std::cell::OnceCell::new();
    let in_old = |bytes: &[u8]| {
        old_content
            .get_or_init(old)
            .as_deref()
            .is_some_and(|o: &[u8]| contains(o, bytes))
    };
    // 1-based line ranges of the hunk bodies, in order.
    let bodies: Vec<std::ops::Range<usize>> = file
        .map(|f| {
            f.hunks
                .iter()
                .map(|h| {
                    let n = f.text.as_bytes()[h.body.clone()]
                        .iter()
                        .filter(|&&b| b == b'\n')
                        .count();
                    h.line + 1..h.line + 1 + n
                })
                .collect()
        })
        .unwrap_or_default();
    // Added lines (without their `+`) joined, and the other lines (body lines without their
    // prefix) joined: each scanned once, so a pattern also finds what spans lines.
    let mut added = Joined::with_capacity(text.len());
    let mut others = Joined::with_capacity(text.len());
    let mut hunk = 0;
    for (k, l) in text.lines().enumerate() {
        let line = k + 1;
        while bodies.get(hunk).is_some_and(|b| b.end <= line) {
            hunk += 1;
        }
        let in_body = bodies.get(hunk).is_some_and(|b| b.contains(&line));
        // The first byte of a hunk body line (an empty one is context whose space was lost);
        // without a parsed patch, `+` lines that are not headers count as added.
        let kind = if in_body {
            l.bytes().next().unwrap_or(b' ')
        } else if file.is_none() && l.starts_with('+') && !l.starts_with("+++ ") {
            b'+'
        } else {
            0
        };
        match kind {
            b'+' => added.push(l.get(1..).unwrap_or(""), line, kind),
            0 => others.push(l, line, kind),
            _ => others.push(l.get(1..).unwrap_or(""), line, kind),
        }
    }
    let mut report = |line: usize, rule: &'s str, what: &'s str| {
        if !out.iter().any(|(n, r, _)| *n == line && *r == rule) {
            out.push((line, rule, what));
        }
    };
    for hit in scanner.find_all(&added.text) {
        report(added.at(hit.range.start).0, hit.rule, hit.what);
    }
    for hit in scanner.find_all(&others.text) {
        let (line, kind) = others.at(hit.range.start);
        let known = matches!(kind, b' ' | b'-') && in_old(&others.text[hit.range.clone()]);
        if !known {
            report(line, hit.rule, hit.what);
        }
    }
    if let Some(f) = file.filter(|f| f.binary)
        && let Ok(bp) = crate::request::binary::parse(&f.text, cap)
    {
        let target = old_content.get_or_init(old).clone();
        let forward = decoded(&bp.forward, target.as_deref(), cap);
        let reverse = bp
            .reverse
            .as_ref()
            .map(|r| decoded(r, Some(forward.as_slice()), cap));
        for content in std::iter::once(&forward).chain(reverse.as_ref()) {
            for hit in scanner.find_all(content) {
                if !in_old(&content[hit.range.clone()])
                    && !out.iter().any(|(n, r, _)| *n == f.line && *r == hit.rule)
                {
                    out.push((f.line, hit.rule, hit.what));
                }
            }
        }
    }
    out.sort();
    out
}

/// Lines joined with `\n`, each remembered with its line number and kind.
struct Joined {
    text: Vec<u8>,
    /// (offset in `text`, 1-based line in the patch, kind).
    starts: Vec<(usize, usize, u8)>,
}

impl Joined {
    fn with_capacity(bytes: usize) -> Joined {
        Joined {
            text: Vec::with_capacity(bytes),
            starts: Vec::new(),
        }
    }

    fn push(&mut self, line: &str, number: usize, kind: u8) {
        self.starts.push((self.text.len(), number, kind));
        self.text.extend_from_slice(line.as_bytes());
        self.text.push(b'\n');
    }

    /// Line number and kind of the line holding `offset`.
    fn at(&self, offset: usize) -> (usize, u8) {
        let i = self.starts.partition_point(|(o, _, _)| *o <= offset);
        let (_, line, kind) = self.starts[i.saturating_sub(1)];
        (line, kind)
    }
}

/// Deltas naming a larger source than this are not applied to zeros (see [`decoded`]).
const MAX_ZERO_SOURCE: usize = 16 << 20;

/// The content a binary hunk makes: a literal's data, or a delta applied to `base` (the
/// content it applies to, when known). A delta that cannot be applied to `base` is applied to
/// zeros of the size it names, which keeps its inserted bytes together as the real content
/// would; failing that, its data as it is. Nothing larger than `cap` is made (the request is
/// refused for its size then: `limit.file_bytes`).
fn decoded(h: &crate::request::binary::BinaryHunk, base: Option<&[u8]>, cap: usize) -> Vec<u8> {
    if h.kind == crate::request::binary::HunkKind::Literal {
        return h.data.clone();
    }
    if let Some(b) = base
        && let Ok(v) = crate::request::binary::apply(h, b, cap)
    {
        return v;
    }
    delta_source_size(&h.data)
        .filter(|&n| n <= MAX_ZERO_SOURCE)
        .and_then(|n| crate::request::binary::apply(h, &vec![0; n], cap).ok())
        .unwrap_or_else(|| h.data.clone())
}

/// The source size a pack delta starts with (a little-endian base-128 number), as
/// gitformat-pack(5) describes it; `src/request/binary.rs` reads it the same way when it applies one.
fn delta_source_size(d: &[u8]) -> Option<usize> {
    let mut value: u64 = 0;
    for (i, b) in d.iter().take(9).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return usize::try_from(value).ok();
        }
    }
    None
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::request::secrets::Scanner;

    fn good() -> Value {
        let patch = "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n";
        serde_json::json!({
            "schema": "hyperion.change-request/v1", "task_id": "T-1", "agent": "a",
            "title": "t", "file_targets": ["x"],
            "changes": [{"path": "x", "operation": "update", "patch": patch, "sha256": sha256_hex(patch.as_bytes())}]
        })
    }

    /// Every `.json` file of `samples/DIR` that is JSON.
    pub(crate) fn samples_in(dir: &str) -> Vec<Value> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("samples")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .filter_map(|p| serde_json::from_slice(&std::fs::read(p).expect("read")).ok())
            .collect()
    }

    #[test]
    fn the_validator_generated_at_build_time_agrees_with_jsonschema() {
        let mut samples = vec![good()];
        samples.extend(samples_in("samples"));
        samples.extend(samples_in("samples/invalid"));
        assert!(samples.len() > 8, "{}", samples.len());
        crate::request::schema::assert_generated_agrees(&SCHEMA, SCHEMA_TEXT, &samples);
    }

    #[test]
    fn a_control_character_or_angle_bracket_is_named_where_it_is() {
        for (field, value) in [
            ("title", "two\nlines"),
            ("agent", "a <b>"),
            ("task_id", "t\u{1b}"),
        ] {
            let mut v = good();
            v[field] = value.into();
            let problems = validate_value(&v).expect_err("refused");
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(problems[0].code, Code::RequestInvalidValue);
            assert_eq!(
                problems[0].field.as_deref(),
                Some(format!("/{field}").as_str())
            );
            assert!(
                problems[0]
                    .message
                    .contains("holds a character not allowed here"),
                "{problems:?}"
            );
        }
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
        assert!(codes.contains(&Code::RequestUnknownField), "{codes:?}");
        assert!(codes.contains(&Code::RequestMissingField), "{codes:?}");
        assert!(codes.contains(&Code::RequestInvalidValue), "{codes:?}");
        let unknown = problems
            .iter()
            .find(|p| p.code == Code::RequestUnknownField)
            .expect("present");
        assert_eq!(unknown.field.as_deref(), Some("/bogus"));
    }

    fn codes(v: &Value) -> Vec<Code> {
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
            [Code::RequestSha256Mismatch]
        );
        assert_eq!(
            codes(&v),
            [
                Code::RequestSha256Mismatch,
                Code::PathOutsideFileTargets,
                Code::RequestPathMismatch
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
        assert!(codes(&rename(".git/config")).contains(&Code::PathUnsafe));
        let mut v = rename("secrets/key");
        v["file_targets"] = serde_json::json!(["y"]);
        assert!(codes(&v).contains(&Code::PathOutsideFileTargets));
        // A rename whose declared `from` is not the patch's.
        let mut v = rename("secrets/key");
        v["changes"][0]["from"] = "x".into();
        assert!(
            codes(&v).contains(&Code::RequestPathMismatch),
            "{:?}",
            codes(&v)
        );
        // A patch of another file than the change says, on either side.
        let patch = "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n";
        assert_eq!(
            codes(&with_patch("y", "update", patch)),
            [Code::RequestPathMismatch]
        );
        // Two files in one change.
        let two = format!("{patch}diff --git a/y b/y\n--- a/y\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n");
        let c = codes(&with_patch("x", "update", &two));
        assert!(
            c.contains(&Code::PatchMultipleFiles) && c.contains(&Code::RequestPathMismatch),
            "{c:?}"
        );
        // An operation the patch does not do.
        assert_eq!(
            codes(&with_patch("x", "add", patch)),
            [Code::RequestOperationMismatch]
        );
    }

    #[test]
    fn path_problems_are_reported_once_at_enqueue() {
        let patch = "diff --git a/.git/hooks/x b/.git/hooks/x\n--- a/.git/hooks/x\n+++ b/.git/hooks/x\n@@ -1 +1 @@\n-a\n+b\n";
        assert_eq!(
            codes(&with_patch(".git/hooks/x", "update", patch)),
            [Code::PathUnsafe]
        );
        let long = "n".repeat(256);
        let patch = format!(
            "diff --git a/{long} b/{long}\nnew file mode 100644\n--- /dev/null\n+++ b/{long}\n@@ -0,0 +1 @@\n+a\n"
        );
        assert_eq!(
            codes(&with_patch(&long, "add", &patch)),
            [Code::PathTooLong]
        );
    }

    const TOKEN: &str = "ghp_AttackTokenThatIsFake0123456789abcdef";

    /// Problems of `v` as `enqueue` finds them: the schema and semantics, then (when it
    /// passed the schema) the default policy with `tree` as the target.
    fn all_problems(v: &Value, tree: Option<&dyn TreeView>) -> Vec<Problem> {
        let (req, mut problems) = check_value(v);
        if let Some(req) = req {
            problems.extend(check_policy(&req, &Policy::default(), tree));
        }
        for p in &problems {
            assert!(
                !p.message.contains(TOKEN) && !p.field.as_deref().unwrap_or("").contains(TOKEN),
                "a problem shows the secret: {p:?}"
            );
        }
        problems
    }

    fn secret_fields(problems: &[Problem]) -> Vec<String> {
        problems
            .iter()
            .filter(|p| p.code == Code::SecretDetected)
            .map(|p| p.field.clone().unwrap_or_default())
            .collect()
    }

    /// Every string a request can carry, as the schema lists it: (JSON pointer, whether it
    /// is a list of strings). Read from the schema, not from the code under test, so that a
    /// field added to the format is tried here without anyone remembering to.
    fn string_fields_of_the_schema() -> Vec<(String, bool)> {
        let schema: Value = serde_json::from_str(SCHEMA_TEXT).expect("json");
        let is_string = |s: &Value| {
            s["type"] == "string"
                || s["const"].is_string()
                || s["enum"]
                    .as_array()
                    .is_some_and(|e| e.iter().all(Value::is_string))
        };
        let mut out = Vec::new();
        let mut visit = |props: &serde_json::Map<String, Value>, prefix: &str| {
            for (name, s) in props {
                if is_string(s) {
                    out.push((format!("{prefix}/{name}"), false));
                } else if s["type"] == "array" && is_string(&s["items"]) {
                    out.push((format!("{prefix}/{name}"), true));
                }
            }
        };
        visit(schema["properties"].as_object().expect("props"), "");
        visit(
            schema["properties"]["changes"]["items"]["properties"]
                .as_object()
                .expect("change props"),
            "/changes/0",
        );
        out
    }

    #[test]
    fn a_secret_in_any_string_field_is_refused_and_named() {
        let fields = string_fields_of_the_schema();
        assert!(fields.len() >= 14, "{fields:?}");
        for (pointer, list) in fields {
            let mut v = good();
            let slot = v.pointer_mut(pointer.rsplit_once('/').expect("parent").0);
            let name = pointer.rsplit('/').next().expect("name").to_owned();
            let value = format!("x {TOKEN} y");
            slot.and_then(Value::as_object_mut)
                .expect("parent object")
                .insert(
                    name,
                    if list {
                        serde_json::json!([value])
                    } else {
                        value.into()
                    },
                );
            let expect = if list {
                format!("{pointer}/0")
            } else {
                pointer.clone()
            };
            let problems = all_problems(&v, None);
            assert!(
                secret_fields(&problems).contains(&expect),
                "{pointer}: {problems:#?}"
            );
        }
    }

    #[test]
    fn a_secret_in_a_field_name_is_refused_and_not_shown() {
        let mut v = good();
        v[TOKEN] = 1.into();
        v["changes"][0][TOKEN] = 1.into();
        let problems = all_problems(&v, None);
        assert_eq!(
            secret_fields(&problems),
            ["/", "/changes/0"],
            "{problems:#?}"
        );
    }

    /// A target tree holding one file.
    struct OneFile(&'static str, Vec<u8>);

    impl TreeView for OneFile {
        fn entry(&self, path: &str) -> Option<TreeEntry> {
            (path == self.0).then_some(TreeEntry::File)
        }
        fn blob(&self, path: &str) -> Option<Vec<u8>> {
            (path == self.0).then(|| self.1.clone())
        }
        fn symlinks(&self) -> Vec<String> {
            Vec::new()
        }
    }

    fn update(patch: &str) -> Value {
        let mut v = good();
        v["changes"][0]["patch"] = patch.into();
        v["changes"][0]["sha256"] = sha256_hex(patch.as_bytes()).into();
        v
    }

    #[test]
    fn removing_a_committed_secret_is_allowed_claiming_one_is_not() {
        let committed = format!("a\nkey = {TOKEN}\nb\n");
        let tree = OneFile("x", committed.into_bytes());
        let removal = format!("--- a/x\n+++ b/x\n@@ -1,3 +1,2 @@\n a\n-key = {TOKEN}\n b\n");
        assert!(secret_fields(&all_problems(&update(&removal), Some(&tree))).is_empty());
        // Context that is not in the file: the patch would store it all the same.
        let other = OneFile("x", b"a\nkey = none\nb\n".to_vec());
        let claimed = format!("--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n key = {TOKEN}\n-b\n+c\n");
        assert_eq!(
            secret_fields(&all_problems(&update(&claimed), Some(&other))),
            ["/changes/0/patch"]
        );
        // Without the target's file nothing is known to be there already.
        assert_eq!(
            secret_fields(&all_problems(&update(&removal), None)),
            ["/changes/0/patch"]
        );
    }

    #[test]
    fn a_secret_outside_the_hunks_is_refused() {
        for patch in [
            format!("From: agent\nSubject: {TOKEN}\n\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n"),
            format!("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n-- \n{TOKEN}\n"),
        ] {
            let tree = OneFile("x", b"a\n".to_vec());
            let problems = all_problems(&update(&patch), Some(&tree));
            assert_eq!(
                secret_fields(&problems),
                ["/changes/0/patch"],
                "{problems:#?}"
            );
        }
    }

    #[test]
    fn a_policy_pattern_spanning_added_lines_is_found() {
        let policy = Policy::parse(
            "[secrets]\npatterns = { pair = \"corp-user: \\\\w+\\\\ncorp-pass: \\\\w+\" }\n",
            "x",
        )
        .expect("valid");
        let patch = "--- a/x\n+++ b/x\n@@ -1 +1,3 @@\n a\n+corp-user: alice\n+corp-pass: hunter2\n";
        let req = validate_value(&update(patch)).expect("valid");
        let tree = OneFile("x", b"a\n".to_vec());
        let problems = check_policy(&req, &policy, Some(&tree));
        assert_eq!(
            problems
                .iter()
                .map(|p| (p.code, p.line))
                .collect::<Vec<_>>(),
            [(Code::SecretDetected, Some(5))],
            "{problems:#?}"
        );
    }

    #[test]
    fn a_delta_is_scanned_as_the_content_it_makes() {
        use crate::request::binary::{BinaryHunk, HunkKind};
        // Inserts hold at most 127 bytes each: the token spans two of them, with an
        // instruction byte between.
        let mut data = vec![0u8, 0];
        let body = format!("{} {TOKEN}", "z".repeat(110));
        let (a, b) = body.as_bytes().split_at(127);
        for part in [a, b] {
            data.push(part.len() as u8);
            data.extend_from_slice(part);
        }
        data[1] = body.len() as u8 | 0x80;
        data.insert(2, (body.len() >> 7) as u8);
        let hunk = BinaryHunk {
            kind: HunkKind::Delta,
            size: data.len(),
            data: data.clone(),
        };
        assert!(
            Scanner::builtin().find(&data).is_none(),
            "the raw delta hides it"
        );
        let made = decoded(&hunk, None, 1 << 20);
        assert_eq!(made, body.as_bytes());
        assert!(Scanner::builtin().find(&made).is_some());
        // A delta that does not fit the content at hand is applied to zeros of its size.
        assert_eq!(decoded(&hunk, Some(b"other"), 1 << 20), body.as_bytes());
    }
}
