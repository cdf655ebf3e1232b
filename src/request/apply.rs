//! The in-memory apply engine: a request's patches onto a tree, without a checkout.
//!
//! It lands what `git apply --3way` lands. For each file section:
//!
//! - a change to an existing file whose preimage blob (the `index` line) is in the repository
//!   is a 3-way merge of that preimage, the file at the target and the patched preimage — with
//!   git's trivial resolutions first (target unchanged → the patched preimage, no difference →
//!   the target's file) and git's text merge otherwise ([`crate::request::merge`]: the same conflicts
//!   `git apply --3way` reports, adjacent changes included);
//! - without the preimage (a plain `diff -u`, a foreign repository), or for new files, deletes
//!   and pure renames, the hunks are applied directly: each hunk is searched for at its stated
//!   line and then alternately before and after it, its context matching exactly, never over
//!   lines an earlier hunk produced, anchored to the file's start or end when the hunk is;
//! - binary sections (`GIT binary patch`) need the exact preimage, as git requires.
//!
//! Every file is held to the policy's `[limits]` ([`crate::request::limits`]) as it is read and built:
//! a blob's size is read from its header before the blob is, binary data is inflated no
//! further than the cap, and each result is counted against the request's total.
//!
//! The result is a new tree (objects written to the repository, nothing referenced yet), or a
//! [`Refusal`] that says why, with the artifacts a person needs (for a conflict: a JSON report
//! and each file with conflict markers).

use std::collections::HashMap;

use gix::ObjectId;
use gix::objs::tree::EntryKind;
use serde::Serialize;

use crate::code::Code;
use crate::error::{Error as Failure, Problem, Result};
use crate::request::limits;
use crate::request::limits::Limits;
pub use crate::request::merge::{Merged, merge_text};
use crate::request::model::Artifact;
use crate::request::model::ChangeRequest;
use crate::request::patch::{self, FilePatch, Hunk};

/// How one file was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The target still had the preimage: the patch applied as written.
    Exact,
    /// Hunks applied directly, some at an offset from their stated lines.
    Direct,
    /// A clean 3-way merge with changes made on the target since the patch was written.
    Merged,
    /// Already present on the target (both sides made the same change).
    AlreadyApplied,
    Binary,
    Deleted,
}

/// One file of an applied request.
#[derive(Debug, Clone, Serialize)]
pub struct FileApplied {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub method: Method,
}

/// A request applied to a tree.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    /// The tree the request was applied to.
    #[serde(serialize_with = "ser_id")]
    pub base_tree: ObjectId,
    /// The resulting tree (written to the object database).
    #[serde(serialize_with = "ser_id")]
    pub tree: ObjectId,
    pub files: Vec<FileApplied>,
}

/// One conflicted file of a 3-way merge.
#[derive(Debug, Clone, Serialize)]
pub struct ConflictFile {
    pub path: String,
    /// The preimage the patch was written against.
    #[serde(serialize_with = "ser_opt_id")]
    pub base: Option<ObjectId>,
    /// The file at the target.
    #[serde(serialize_with = "ser_opt_id")]
    pub ours: Option<ObjectId>,
    /// The patched preimage.
    #[serde(serialize_with = "ser_opt_id")]
    pub theirs: Option<ObjectId>,
    /// 1-based, inclusive line ranges of the conflict regions in `merged`.
    pub regions: Vec<(usize, usize)>,
    /// The merged file with conflict markers (empty when the file is binary).
    #[serde(skip)]
    pub merged: Vec<u8>,
}

fn ser_id<S: serde::Serializer>(id: &ObjectId, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(id)
}

fn ser_opt_id<S: serde::Serializer>(
    id: &Option<ObjectId>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match id {
        Some(id) => s.collect_str(id),
        None => s.serialize_none(),
    }
}

/// Why a request does not apply. Each has a stable code (docs/errors.md).
#[derive(Debug, Clone)]
pub enum Refusal {
    /// 3-way merges left conflicts.
    Conflict { files: Vec<ConflictFile> },
    /// A hunk's context is nowhere in the file, and no 3-way merge was possible.
    DoesNotApply {
        path: String,
        hunk: usize,
        line: usize,
        message: String,
    },
    /// A file the patch changes or deletes is not at the target.
    Missing { path: String },
    /// A file the patch creates (or renames to) is already at the target.
    Exists { path: String },
    /// A binary patch whose preimage is not the file at the target, or without data.
    Binary { path: String, message: String },
    /// The request changes nothing at the target.
    Empty,
    /// The stored patch cannot be read (it passed validation once; the parser refuses now).
    BadPatch { path: String, message: String },
    /// A path the result would hold is one no request may write (`crate::request::paths::check`):
    /// validation refuses it first; this is the last look before a tree is written.
    UnsafePath {
        path: String,
        refused: crate::request::paths::Refused,
    },
    /// A file is larger, or has more lines, than the policy's `[limits]` allow, or the
    /// request's files add up to more (`limit.file_bytes`, `limit.file_lines`,
    /// `limit.inflated_bytes`).
    Limit {
        path: String,
        code: Code,
        message: String,
    },
}

impl Refusal {
    pub fn code(&self) -> Code {
        match self {
            Refusal::Conflict { .. } => Code::ApplyConflict,
            Refusal::DoesNotApply { .. } => Code::ApplyDoesNotApply,
            Refusal::Missing { .. } => Code::ApplyMissing,
            Refusal::Exists { .. } => Code::ApplyExists,
            Refusal::Binary { .. } => Code::ApplyBinary,
            Refusal::Empty => Code::ApplyEmpty,
            Refusal::BadPatch { .. } => Code::ApplyBadPatch,
            Refusal::UnsafePath { refused, .. } => refused.code,
            Refusal::Limit { code, .. } => *code,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Refusal::Conflict { files } => {
                let names: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
                format!("3-way merge left conflicts in {}", names.join(", "))
            }
            Refusal::DoesNotApply {
                path,
                hunk,
                line,
                message,
            } => format!("{path}: hunk #{hunk} (patch line {line}) does not apply: {message}"),
            Refusal::Missing { path } => format!("{path}: not at the target, nothing to change"),
            Refusal::Exists { path } => format!("{path}: already exists at the target"),
            Refusal::Binary { path, message } => format!("{path}: {message}"),
            Refusal::Empty => "the request changes nothing at the target".to_owned(),
            Refusal::BadPatch { path, message } => format!("{path}: unreadable patch: {message}"),
            Refusal::UnsafePath { path, refused } => {
                format!("'{}': {}", path.escape_debug(), refused.reason)
            }
            Refusal::Limit { path, message, .. } => format!("{path}: {message}"),
        }
    }

    /// What to store with the dead letter: for a conflict, `conflict.json` and every merged
    /// file with markers under `conflicts/`.
    pub fn artifacts(&self) -> Vec<Artifact> {
        let Refusal::Conflict { files } = self else {
            return Vec::new();
        };
        let report = serde_json::json!({
            "code": self.code(),
            "message": self.message(),
            "files": files,
        });
        let mut out = vec![Artifact {
            name: "conflict.json".to_owned(),
            data: serde_json::to_vec_pretty(&report).expect("a report always serialises"),
        }];
        for f in files {
            if !f.merged.is_empty() {
                out.push(Artifact {
                    name: format!("conflicts/{}", f.path),
                    data: f.merged.clone(),
                });
            }
        }
        out
    }
}

/// A file in the tree being built: its mode and blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    kind: EntryKind,
    id: ObjectId,
}

/// Why a request did not apply: refused, its own fault, with a code of its own (a dead
/// letter of class `apply`), or failed (the repository cannot be read or written).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", .0.message())]
    Refused(Refusal),
    #[error(transparent)]
    Failed(#[from] Failure),
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Error {
        Error::Refused(r)
    }
}

impl Error {
    /// The stable code (docs/errors.md).
    pub fn code(&self) -> Code {
        match self {
            Error::Refused(r) => r.code(),
            Error::Failed(e) => e.code(),
        }
    }
}

/// Apply `req`'s patches to `base_tree`: [`Error::Refused`] is the request's own fault,
/// [`Error::Failed`] an environment failure (the repository cannot be read or written).
pub fn apply_request(
    repo: &gix::Repository,
    base_tree: ObjectId,
    req: &ChangeRequest,
    limits: &Limits,
) -> Result<Applied, Error> {
    let mut sections = Vec::new();
    for change in &req.changes {
        match patch::parse(&change.patch) {
            Ok(files) => sections.extend(files),
            Err(p) => {
                return Err(Error::Refused(Refusal::BadPatch {
                    path: change.path.clone(),
                    message: p.to_string(),
                }));
            }
        }
    }
    apply_sections(repo, base_tree, &sections, limits)
}

/// Apply parsed file sections to `base_tree`, in order, within `limits`.
pub fn apply_sections(
    repo: &gix::Repository,
    base_tree: ObjectId,
    sections: &[FilePatch],
    limits: &Limits,
) -> Result<Applied, Error> {
    let mut engine = Engine {
        repo,
        base: repo
            .find_tree(base_tree)
            .map_err(|e| Failure::git(format!("cannot read tree {base_tree}: {e}")))?,
        overlay: HashMap::new(),
        limits: *limits,
        produced: 0,
    };
    let mut files = Vec::with_capacity(sections.len());
    let mut conflicts = Vec::new();
    for fp in sections {
        match engine.file(fp)? {
            FileOutcome::Done(f) => files.push(f),
            FileOutcome::Conflict(c) => conflicts.push(c),
        }
    }
    if !conflicts.is_empty() {
        return Err(Error::Refused(Refusal::Conflict { files: conflicts }));
    }
    if let Some((path, refused)) =
        crate::request::paths::first_refused(engine.overlay.keys().map(String::as_str))
    {
        return Err(Error::Refused(Refusal::UnsafePath {
            path: path.to_owned(),
            refused,
        }));
    }
    let tree = engine.write_tree(base_tree)?;
    if tree == base_tree {
        return Err(Error::Refused(Refusal::Empty));
    }
    Ok(Applied {
        base_tree,
        tree,
        files,
    })
}

enum FileOutcome {
    Done(FileApplied),
    Conflict(ConflictFile),
}

struct Engine<'r> {
    repo: &'r gix::Repository,
    base: gix::Tree<'r>,
    /// Paths changed so far: `None` = removed.
    overlay: HashMap<String, Option<Entry>>,
    limits: Limits,
    /// Bytes of the files produced so far (for `limits.inflated_bytes`).
    produced: u64,
}

/// Return the refusal, if there is one.
macro_rules! refuse_if {
    ($e:expr) => {
        if let Some(refusal) = $e {
            return Err(Error::Refused(refusal));
        }
    };
}

const AT_TARGET: &str = "the file at the target has";

fn limit(path: &str, p: Problem) -> Refusal {
    Refusal::Limit {
        path: path.to_owned(),
        code: p.code,
        message: p.message,
    }
}

fn git_err(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure::git(format!("{what}: {e}"))
}

impl<'r> Engine<'r> {
    fn lookup(&self, path: &str) -> Result<Option<Entry>> {
        if let Some(e) = self.overlay.get(path) {
            return Ok(*e);
        }
        let entry = self
            .base
            .lookup_entry_by_path(path)
            .map_err(|e| git_err(&format!("cannot look up {path}"), e))?;
        Ok(entry.and_then(|e| {
            let kind = e.mode().kind();
            (kind != EntryKind::Tree).then(|| Entry {
                kind,
                id: e.object_id(),
            })
        }))
    }

    /// A blob the engine needs whole, if it is within `limits.file_bytes`: its size is read
    /// from its header before anything is allocated for it.
    fn read(&self, path: &str, what: &str, id: ObjectId) -> Result<Vec<u8>, Error> {
        let size = self
            .repo
            .find_header(id)
            .map_err(|e| git_err(&format!("cannot read blob {id}"), e))?
            .size();
        if size > self.limits.file_bytes as u64 {
            return Err(Error::Refused(limit(
                path,
                limits::file_bytes(what.to_owned(), size, &self.limits),
            )));
        }
        Ok(self.blob(id)?)
    }

    /// Text the engine splits into lines must have at most `limits.file_lines` of them.
    fn lines_within(&self, path: &str, what: &str, text: &[u8]) -> Option<Refusal> {
        let n = limits::count_lines(text);
        (n > self.limits.file_lines).then(|| {
            limit(
                path,
                limits::file_lines(what.to_owned(), n as u64, &self.limits),
            )
        })
    }

    /// Count a produced file against `limits.file_bytes` and the request's total.
    fn charge(&mut self, path: &str, size: u64) -> Option<Refusal> {
        if size > self.limits.file_bytes as u64 {
            return Some(limit(
                path,
                limits::file_bytes("the result has".to_owned(), size, &self.limits),
            ));
        }
        self.produced = self.produced.saturating_add(size);
        (self.produced > self.limits.inflated_bytes as u64)
            .then(|| limit(path, limits::inflated_bytes(self.produced, &self.limits)))
    }

    fn blob(&self, id: ObjectId) -> Result<Vec<u8>> {
        let obj = self
            .repo
            .find_object(id)
            .map_err(|e| git_err(&format!("cannot read blob {id}"), e))?;
        Ok(obj.detach().data)
    }

    fn write_blob(&self, data: &[u8]) -> Result<ObjectId> {
        crate::git::pack::write_object(self.repo, gix::objs::Kind::Blob, data)
    }

    /// The preimage blob named by the patch's `index` line, if the repository has it. The
    /// file at the target (`current`) is usually that blob, and is taken when its id starts
    /// with the abbreviation: the search through every pack index and loose-object directory
    /// that an abbreviation otherwise needs (to rule out a second match) re-reads the pack
    /// directory each time, which with many packs was a fifth of a request's time.
    fn preimage_id(&self, fp: &FilePatch, current: Option<ObjectId>) -> Option<ObjectId> {
        let hex = fp.old_id.as_deref()?;
        if let Some(cur) = current
            && hex.len() >= 7
            && cur
                .to_hex()
                .to_string()
                .starts_with(&hex.to_ascii_lowercase())
        {
            return Some(cur);
        }
        crate::git::tree::find_blob_id(self.repo, hex)
    }

    fn file(&mut self, fp: &FilePatch) -> Result<FileOutcome, Error> {
        let old_path = fp.old_path.as_deref();
        let new_path = fp.new_path.as_deref();
        let path = fp.path().to_owned();
        // What is at the target now.
        let current = match old_path {
            Some(p) => match self.lookup(p)? {
                Some(e) => Some(e),
                None => return Err(Error::Refused(Refusal::Missing { path: p.to_owned() })),
            },
            None => None,
        };
        if let Some(np) = new_path
            && old_path != Some(np)
            && let Some(existing) = self.lookup(np)?
        {
            // git merges a new file onto an existing one with an empty base; a rename onto
            // an existing path is refused.
            if old_path.is_some() || fp.binary {
                return Err(Error::Refused(Refusal::Exists {
                    path: np.to_owned(),
                }));
            }
            return self.add_onto_existing(fp, np, existing);
        }
        let kind = match fp.new_mode {
            Some(m) => match kind_of_mode(m) {
                Some(k) => k,
                None => {
                    return Err(Error::Refused(Refusal::BadPatch {
                        path,
                        message: format!("unsupported file mode {m:o}"),
                    }));
                }
            },
            None => current.map(|e| e.kind).unwrap_or(EntryKind::Blob),
        };
        if kind == EntryKind::Commit || current.is_some_and(|c| c.kind == EntryKind::Commit) {
            return Err(Error::Refused(Refusal::BadPatch {
                path,
                message: "submodule (gitlink) changes are not applied".to_owned(),
            }));
        }
        if let (Some(cur), Some(expected)) = (current, fp.old_mode.and_then(kind_of_mode))
            && is_link(cur.kind) != is_link(expected)
        {
            return Err(Error::Refused(Refusal::DoesNotApply {
                path,
                hunk: 0,
                line: fp.line,
                message:
                    "the file at the target is not of the type the patch expects (symlink vs file)"
                        .to_owned(),
            }));
        }
        if fp.binary {
            return self.binary(fp, current, kind);
        }
        let is_delete = new_path.is_none();
        if !is_delete
            && fp.hunks.is_empty()
            && let Some(cur) = current
        {
            // A pure rename or mode change: the blob stays as it is, unread.
            self.put(fp, kind, cur.id);
            return Ok(FileOutcome::Done(FileApplied {
                path,
                from: rename_from(fp),
                method: Method::Direct,
            }));
        }
        let ours = match current {
            Some(e) => self.read(&path, AT_TARGET, e.id)?,
            None => Vec::new(),
        };
        refuse_if!(self.lines_within(&path, AT_TARGET, &ours));

        let mut method = Method::Direct;
        let mut result: Option<Vec<u8>> = None;
        // 3-way first, as `git apply --3way` does, when the preimage is known.
        if !is_delete
            && old_path.is_some()
            && let Some(pre_id) = self.preimage_id(fp, current.map(|e| e.id))
        {
            let read_pre;
            let pre: &[u8] = if current.is_some_and(|e| e.id == pre_id) {
                &ours
            } else {
                read_pre = self.read(&path, "the patch's preimage has", pre_id)?;
                refuse_if!(self.lines_within(&path, "the patch's preimage has", &read_pre));
                &read_pre
            };
            if let Ok(post) = apply_hunks(pre, fp) {
                let ours_id = current.map(|e| e.id).expect("old path exists");
                let post_id = gix::objs::compute_hash(
                    self.repo.object_hash(),
                    gix::object::Kind::Blob,
                    &post,
                )
                .map_err(|e| git_err("cannot hash a blob", e))?;
                if pre_id == ours_id {
                    method = Method::Exact;
                    result = Some(post);
                } else if pre_id == post_id || ours_id == post_id {
                    method = Method::AlreadyApplied;
                    result = Some(ours.clone());
                } else {
                    match self.merge(pre, &ours, &post) {
                        Merged::Clean(out) => {
                            method = Method::Merged;
                            result = Some(out);
                        }
                        Merged::Conflict(merged) => {
                            let theirs = self.write_blob(&post)?;
                            let regions = conflict_regions(&merged);
                            return Ok(FileOutcome::Conflict(ConflictFile {
                                path,
                                base: Some(pre_id),
                                ours: Some(ours_id),
                                theirs: Some(theirs),
                                regions,
                                merged,
                            }));
                        }
                    }
                }
            }
        }
        let result = match result {
            Some(r) => r,
            None => match apply_hunks(&ours, fp) {
                Ok(r) => r,
                Err(f) if f.gave_up => {
                    return Err(Error::Refused(Refusal::Limit {
                        path,
                        code: limits::HUNK_SEARCH,
                        message: format!(
                            "hunk #{} (patch line {}) is far from the line it states, and the search for the file's hunks passed {} line comparisons",
                            f.hunk + 1,
                            fp.hunks[f.hunk].line,
                            search_budget(limits::count_lines(&ours))
                        ),
                    }));
                }
                Err(f) => {
                    return Err(Error::Refused(Refusal::DoesNotApply {
                        path,
                        hunk: f.hunk + 1,
                        line: fp.hunks[f.hunk].line,
                        message: "its context is not in the file at the target".to_owned(),
                    }));
                }
            },
        };
        if is_delete {
            if !result.is_empty() {
                return Err(Error::Refused(Refusal::DoesNotApply {
                    path,
                    hunk: fp.hunks.len(),
                    line: fp.line,
                    message: "the file at the target has lines the deletion does not remove"
                        .to_owned(),
                }));
            }
            if let Some(p) = old_path {
                self.overlay.insert(p.to_owned(), None);
            }
            return Ok(FileOutcome::Done(FileApplied {
                path,
                from: None,
                method: Method::Deleted,
            }));
        }
        refuse_if!(self.charge(&path, result.len() as u64));
        refuse_if!(self.lines_within(&path, "the result has", &result));
        let id = self.write_blob(&result)?;
        self.put(fp, kind, id);
        Ok(FileOutcome::Done(FileApplied {
            path,
            from: rename_from(fp),
            method,
        }))
    }

    /// A new file where one exists: git's 3-way merge with an empty base.
    fn add_onto_existing(
        &mut self,
        fp: &FilePatch,
        path: &str,
        existing: Entry,
    ) -> Result<FileOutcome, Error> {
        let post = match apply_hunks(&[], fp) {
            Ok(p) => p,
            Err(f) => {
                return Err(Error::Refused(Refusal::DoesNotApply {
                    path: path.to_owned(),
                    hunk: f.hunk + 1,
                    line: fp.hunks[f.hunk].line,
                    message: "a new file's hunk must start at line 0".to_owned(),
                }));
            }
        };
        let ours = self.read(path, AT_TARGET, existing.id)?;
        refuse_if!(self.lines_within(path, AT_TARGET, &ours));
        if ours == post {
            return Ok(FileOutcome::Done(FileApplied {
                path: path.to_owned(),
                from: None,
                method: Method::AlreadyApplied,
            }));
        }
        match self.merge(&[], &ours, &post) {
            Merged::Clean(out) => {
                refuse_if!(self.charge(path, out.len() as u64));
                let id = self.write_blob(&out)?;
                let kind = fp.new_mode.and_then(kind_of_mode).unwrap_or(existing.kind);
                self.put(fp, kind, id);
                Ok(FileOutcome::Done(FileApplied {
                    path: path.to_owned(),
                    from: None,
                    method: Method::Merged,
                }))
            }
            Merged::Conflict(merged) => {
                let theirs = self.write_blob(&post)?;
                Ok(FileOutcome::Conflict(ConflictFile {
                    path: path.to_owned(),
                    base: None,
                    ours: Some(existing.id),
                    theirs: Some(theirs),
                    regions: conflict_regions(&merged),
                    merged,
                }))
            }
        }
    }

    fn binary(
        &mut self,
        fp: &FilePatch,
        current: Option<Entry>,
        kind: EntryKind,
    ) -> Result<FileOutcome, Error> {
        let path = fp.path().to_owned();
        let refuse = |message: String| {
            Err(Error::Refused(Refusal::Binary {
                path: path.clone(),
                message,
            }))
        };
        let full = |s: Option<&str>| {
            s.filter(|s| s.len() == 40)
                .and_then(|s| ObjectId::from_hex(s.as_bytes()).ok())
        };
        let (Some(old_id), Some(new_id)) = (full(fp.old_id.as_deref()), full(fp.new_id.as_deref()))
        else {
            return refuse(
                "a binary patch needs the full `index` line (`git diff --binary --full-index`)"
                    .to_owned(),
            );
        };
        let ours_id = current.map(|e| e.id);
        match ours_id {
            Some(id) if id != old_id => {
                // git's trivial 3-way resolutions; anything else is a binary conflict.
                if id == new_id {
                    return Ok(FileOutcome::Done(FileApplied {
                        path,
                        from: rename_from(fp),
                        method: Method::AlreadyApplied,
                    }));
                }
                return Ok(FileOutcome::Conflict(ConflictFile {
                    path,
                    base: Some(old_id),
                    ours: Some(id),
                    theirs: Some(new_id),
                    regions: Vec::new(),
                    merged: Vec::new(),
                }));
            }
            _ => {}
        }
        if fp.new_path.is_none() {
            if let Some(p) = fp.old_path.as_deref() {
                self.overlay.insert(p.to_owned(), None);
            }
            return Ok(FileOutcome::Done(FileApplied {
                path,
                from: None,
                method: Method::Deleted,
            }));
        }
        let cap = self.limits.file_bytes;
        let refuse_problem = |p: Problem| {
            if p.code.as_str().starts_with("limit.") {
                Err(Error::Refused(limit(&path, p)))
            } else {
                refuse(p.message)
            }
        };
        // The content comes from the patch's data, never from an object the repository
        // happens to have under the promised id (that would land any blob, a denied file's or
        // one from history, at a path of the request). Only the forward hunk is inflated, to
        // at most the cap; a delta's source is read only for a delta.
        let hunk = match crate::request::binary::parse_forward(&fp.text, cap) {
            Ok(h) => h,
            Err(p) => return refuse_problem(p),
        };
        let old = match current {
            Some(e) if hunk.kind == crate::request::binary::HunkKind::Delta => {
                self.read(&path, AT_TARGET, e.id)?
            }
            _ => Vec::new(),
        };
        let data = match crate::request::binary::apply_owned(hunk, &old, cap) {
            Ok(d) => d,
            Err(p) => return refuse_problem(p),
        };
        drop(old);
        refuse_if!(self.charge(&path, data.len() as u64));
        // Hashed before it is written: a result that is not the promised blob is not stored.
        let id = gix::objs::compute_hash(self.repo.object_hash(), gix::object::Kind::Blob, &data)
            .map_err(|e| git_err("cannot hash a blob", e))?;
        if id != new_id {
            return refuse(format!(
                "the binary patch produces {id}, not the {new_id} it promises"
            ));
        }
        let id = self.write_blob(&data)?;
        self.put(fp, kind, id);
        Ok(FileOutcome::Done(FileApplied {
            path,
            from: rename_from(fp),
            method: Method::Binary,
        }))
    }

    fn put(&mut self, fp: &FilePatch, kind: EntryKind, id: ObjectId) {
        if let (Some(old), Some(new)) = (fp.old_path.as_deref(), fp.new_path.as_deref())
            && old != new
            && fp.operation == crate::request::model::Operation::Rename
        {
            self.overlay.insert(old.to_owned(), None);
        }
        if let Some(new) = fp.new_path.as_deref() {
            self.overlay
                .insert(new.to_owned(), Some(Entry { kind, id }));
        }
    }

    fn merge(&self, base: &[u8], ours: &[u8], theirs: &[u8]) -> Merged {
        merge_text(base, ours, theirs)
    }

    /// Write the base tree with every change of the overlay.
    fn write_tree(&self, base_tree: ObjectId) -> Result<ObjectId> {
        if self.overlay.is_empty() {
            return Ok(base_tree);
        }
        let mut editor = crate::git::tree::edit_tree(self.repo, base_tree)?;
        // Removals first, so that a file replaced by a directory (or the reverse) works.
        let mut paths: Vec<(&String, &Option<Entry>)> = self.overlay.iter().collect();
        paths.sort_by_key(|(p, e)| (e.is_some(), p.as_str()));
        for (path, entry) in paths {
            match entry {
                None => {
                    editor
                        .remove(path.split('/'))
                        .map_err(|e| git_err(&format!("cannot remove {path}"), e))?;
                }
                Some(e) => {
                    editor
                        .upsert(path.split('/'), e.kind, e.id)
                        .map_err(|err| git_err(&format!("cannot write {path}"), err))?;
                }
            }
        }
        crate::git::tree::write_tree(self.repo, &mut editor)
    }
}

fn rename_from(fp: &FilePatch) -> Option<String> {
    (fp.operation == crate::request::model::Operation::Rename)
        .then(|| fp.old_path.clone())
        .flatten()
}

fn kind_of_mode(mode: u32) -> Option<EntryKind> {
    match mode {
        0o100644 | 0o100664 => Some(EntryKind::Blob),
        0o100755 => Some(EntryKind::BlobExecutable),
        0o120000 => Some(EntryKind::Link),
        0o160000 => Some(EntryKind::Commit),
        _ => None,
    }
}

fn is_link(kind: EntryKind) -> bool {
    kind == EntryKind::Link
}

/// Line ranges between `<<<<<<<` and `>>>>>>>` markers.
fn conflict_regions(merged: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, line) in merged.split(|b| *b == b'\n').enumerate() {
        if line.starts_with(b"<<<<<<< ") || line == b"<<<<<<<" {
            start = Some(i + 1);
        } else if (line.starts_with(b">>>>>>> ") || line == b">>>>>>>")
            && let Some(s) = start.take()
        {
            out.push((s, i + 1));
        }
    }
    out
}

/// Where direct application failed: the 0-based hunk, and whether it was not found or the
/// search for it ran out of its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HunkFailure {
    pub hunk: usize,
    /// The search gave up: more line comparisons than [`search_budget`] allows.
    pub gave_up: bool,
}

/// Line comparisons the search for a file's hunks may make: 16 per line of the file and 4M
/// more. A hunk is looked for from the line it states outwards, over the whole file (git's
/// search); patches made against the file find each hunk within a few lines, and one that
/// does not apply fails at its first missing hunk, after one pass over the file. Hunks that
/// each state a line far from where they match would make it quadratic: 5,000 of them in
/// 260 KB of patch kept a worker busy for 27 s on a file of 500,000 lines.
pub fn search_budget(lines: usize) -> usize {
    lines.saturating_mul(16).saturating_add(1 << 22)
}

/// One line of the image being patched.
#[derive(Clone, Copy)]
struct Line<'a> {
    text: &'a [u8],
    /// Produced by an earlier hunk: later hunks may not match it.
    patched: bool,
}

/// The image being patched, as a gap buffer: hunks come mostly in order, so each line
/// crosses the gap about once, where replacing lines in one vector moved the whole tail for
/// every hunk (18,000 hunks on a file of a million lines took 23 s).
struct Image<'a> {
    /// Lines before the gap.
    left: Vec<Line<'a>>,
    /// Lines after the gap, the last line first.
    right: Vec<Line<'a>>,
}

impl<'a> Image<'a> {
    fn len(&self) -> usize {
        self.left.len() + self.right.len()
    }

    fn get(&self, i: usize) -> Line<'a> {
        match i.checked_sub(self.left.len()) {
            None => self.left[i],
            Some(k) => self.right[self.right.len() - 1 - k],
        }
    }

    /// Replace `remove` lines at `at` by `insert`.
    fn replace(&mut self, at: usize, remove: usize, insert: impl Iterator<Item = Line<'a>>) {
        while self.left.len() > at {
            let l = self.left.pop().expect("not empty");
            self.right.push(l);
        }
        while self.left.len() < at {
            let l = self.right.pop().expect("`at` is within the image");
            self.left.push(l);
        }
        for _ in 0..remove {
            self.right.pop();
        }
        self.left.extend(insert);
    }

    fn lines(&self) -> impl Iterator<Item = &Line<'a>> {
        self.left.iter().chain(self.right.iter().rev())
    }
}

/// Apply `fp`'s hunks to `content` directly, with git's rules (see the module docs).
pub fn apply_hunks(content: &[u8], fp: &FilePatch) -> std::result::Result<Vec<u8>, HunkFailure> {
    let mut right: Vec<Line<'_>> = content
        .split_inclusive(|b| *b == b'\n')
        .map(|text| Line {
            text,
            patched: false,
        })
        .collect();
    right.reverse();
    let mut image = Image {
        left: Vec::with_capacity(right.len()),
        right,
    };
    let mut budget = search_budget(image.len());
    let mut pre: Vec<&[u8]> = Vec::new();
    let mut post: Vec<&[u8]> = Vec::new();
    for (n, hunk) in fp.hunks.iter().enumerate() {
        pre.clear();
        post.clear();
        images(&fp.text.as_bytes()[hunk.body.clone()], &mut pre, &mut post);
        let at = match find_pos(&image, &pre, hunk, &mut budget) {
            Found::At(at) => at,
            Found::Nowhere => {
                return Err(HunkFailure {
                    hunk: n,
                    gave_up: false,
                });
            }
            Found::GaveUp => {
                return Err(HunkFailure {
                    hunk: n,
                    gave_up: true,
                });
            }
        };
        image.replace(
            at,
            pre.len(),
            post.iter().map(|text| Line {
                text,
                patched: true,
            }),
        );
    }
    let len = image.lines().map(|l| l.text.len()).sum();
    let mut out = Vec::with_capacity(len);
    for l in image.lines() {
        out.extend_from_slice(l.text);
    }
    Ok(out)
}

/// The lines hunk `h` of `fp` expects to find (context and removed lines).
pub fn hunk_preimage<'a>(fp: &'a FilePatch, h: &Hunk) -> Vec<&'a [u8]> {
    let (mut pre, mut post) = (Vec::new(), Vec::new());
    images(&fp.text.as_bytes()[h.body.clone()], &mut pre, &mut post);
    pre
}

/// Split a hunk body into the lines it expects (`pre`) and the lines it leaves (`post`). A
/// line followed by `\ No newline at end of file` loses its newline.
fn images<'a>(body: &'a [u8], pre: &mut Vec<&'a [u8]>, post: &mut Vec<&'a [u8]>) {
    let lines: Vec<&[u8]> = body.split_inclusive(|b| *b == b'\n').collect();
    for (i, raw) in lines.iter().enumerate() {
        let Some(&tag) = raw.first() else { continue };
        let no_eol = lines.get(i + 1).is_some_and(|n| n.first() == Some(&b'\\'));
        let text: &[u8] = match tag {
            b'\n' => raw,
            b' ' | b'-' | b'+' => &raw[1..],
            _ => continue,
        };
        let text = if no_eol {
            text.strip_suffix(b"\n").unwrap_or(text)
        } else {
            text
        };
        match tag {
            b' ' | b'\n' => {
                pre.push(text);
                post.push(text);
            }
            b'-' => pre.push(text),
            b'+' => post.push(text),
            _ => {}
        }
    }
}

enum Found {
    At(usize),
    Nowhere,
    GaveUp,
}

/// git's search: start at the hunk's stated position (or the anchor), then alternately one
/// line further back and one further forward; each line compared is taken from `budget`.
fn find_pos(image: &Image<'_>, pre: &[&[u8]], hunk: &Hunk, budget: &mut usize) -> Found {
    let match_beginning = hunk.old_start <= 1;
    let match_end = hunk.trailing == 0;
    let mut line = if match_beginning {
        0
    } else if match_end {
        image.len().saturating_sub(pre.len())
    } else {
        hunk.new_start.saturating_sub(1)
    };
    // A hunk longer than the file anchored at the end: the subtraction would be negative.
    if match_end && !match_beginning && pre.len() > image.len() {
        line = image.len();
    }
    line = line.min(image.len());
    let (mut back, mut fwd) = (line, line);
    let mut current = line;
    let mut i = 0usize;
    loop {
        let (found, compared) = matches_at(image, pre, current, match_beginning, match_end);
        if found {
            return Found::At(current);
        }
        match budget.checked_sub(compared.max(1)) {
            Some(left) => *budget = left,
            None => return Found::GaveUp,
        }
        loop {
            if back == 0 && fwd == image.len() {
                return Found::Nowhere;
            }
            if i & 1 == 1 {
                if back == 0 {
                    i += 1;
                    continue;
                }
                back -= 1;
                current = back;
            } else {
                if fwd == image.len() {
                    i += 1;
                    continue;
                }
                fwd += 1;
                current = fwd;
            }
            break;
        }
        i += 1;
    }
}

/// Whether `pre` is at `at`, and how many lines were compared to tell.
fn matches_at(
    image: &Image<'_>,
    pre: &[&[u8]],
    at: usize,
    match_beginning: bool,
    match_end: bool,
) -> (bool, usize) {
    if pre.len() + at > image.len() {
        return (false, 0);
    }
    if match_end && pre.len() + at != image.len() {
        return (false, 0);
    }
    if match_beginning && at != 0 {
        return (false, 0);
    }
    let n = pre.len();
    for (k, want) in pre.iter().enumerate() {
        let have = image.get(at + k);
        if have.patched {
            return (false, k + 1);
        }
        if have.text == *want {
            continue;
        }
        // git compares the hunk's bytes as one buffer: a last expected line without its
        // newline also matches a longer line whose rest is whitespace (never at the end).
        let last = k + 1 == n;
        if last
            && !match_end
            && !want.ends_with(b"\n")
            && have.text.starts_with(want)
            && have.text[want.len()..].iter().all(u8::is_ascii_whitespace)
        {
            continue;
        }
        return (false, k + 1);
    }
    (true, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(diff: &str) -> FilePatch {
        patch::parse(diff).expect("parses").remove(0)
    }

    #[test]
    fn applies_at_an_offset() {
        let f = fp("--- a/x\n+++ b/x\n@@ -2,3 +2,3 @@\n b\n-c\n+C\n d\n");
        let out = apply_hunks(b"new\nnew2\na\nb\nc\nd\ne\n", &f).expect("applies");
        assert_eq!(out, b"new\nnew2\na\nb\nC\nd\ne\n");
    }

    #[test]
    fn context_must_match_exactly() {
        let f = fp("--- a/x\n+++ b/x\n@@ -2,3 +2,3 @@\n b\n-c\n+C\n d\n");
        assert_eq!(
            apply_hunks(b"a\nb\nc \nd\n", &f).expect_err("no match"),
            HunkFailure {
                hunk: 0,
                gave_up: false
            }
        );
    }

    #[test]
    fn anchored_hunks_and_missing_newlines() {
        // No trailing context: must match at the end of the file.
        let f = fp("--- a/x\n+++ b/x\n@@ -2,2 +2,2 @@\n b\n-c\n\\ No newline at end of file\n+C\n");
        assert_eq!(apply_hunks(b"a\nb\nc", &f).expect("applies"), b"a\nb\nC\n");
        assert!(apply_hunks(b"a\nb\nc\n", &f).is_err());
        // A new file from nothing.
        let f =
            fp("--- /dev/null\n+++ b/x\n@@ -0,0 +1,2 @@\n+a\n+b\n\\ No newline at end of file\n");
        assert_eq!(apply_hunks(b"", &f).expect("applies"), b"a\nb");
    }

    #[test]
    fn later_hunks_do_not_match_patched_lines() {
        // The second hunk's preimage (`x`) appears only in what the first hunk added.
        let f = fp("--- a/f\n+++ b/f\n@@ -1,2 +1,3 @@\n a\n+x\n b\n@@ -3,2 +4,2 @@\n c\n-x\n+y\n");
        assert!(apply_hunks(b"a\nb\nc\nz\n", &f).is_err());
    }

    #[test]
    fn conflict_regions_are_found() {
        let m = b"a\n<<<<<<< ours\nb\n=======\nc\n>>>>>>> theirs\nd\n";
        assert_eq!(conflict_regions(m), vec![(2, 6)]);
    }
}
