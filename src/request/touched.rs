//! The paths a request touches, and every rule about them.
//!
//! [`touched`] lists every path a change reads or writes: its `path` and `from`, and each path
//! its patch's headers name (`diff --git a/X b/Y`, `---`, `+++`, `rename from`/`rename to`;
//! the parser refuses copies). Every check on paths goes through that list: safety and
//! length ([`paths::check`]), `file_targets`, the policy's `[paths] deny`, and agreement with
//! the change's declared `path`, `from` and `operation`, so that no request reads or writes
//! a path that was not checked.
//!
//! [`problems`] also judges the request against the tree it will be applied onto plus its own
//! changes: each operation fits what is there, nothing is written through a symlink, a
//! submodule or a file, and every symlink the request makes, and every symlink already there
//! that would lead through one it makes, resolves ([`paths::resolve_link`]) inside the
//! repository, outside `.git` and its denied paths, in at most 40 steps.
//!
//! It runs inside [`crate::request::validate::against_target`]: at enqueue, and again when a worker
//! leases the request, so that a request that reached the queue some other way (a chain made
//! by hand, a forged push) is held to the same rules before anything of it is applied.

use std::collections::{HashMap, HashSet};

use crate::code::Code;
use crate::error::Problem;
use crate::request::model::{Change, ChangeRequest, Operation};
use crate::request::patch::{FilePatch, Header};
use crate::request::paths::{self, Node};
use crate::request::policy::Policy;
use crate::request::view::{TreeEntry, TreeView};

/// One path a change reads or writes, and where the request names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touched<'r> {
    pub path: &'r str,
    /// JSON pointer of the field that holds it: the change's `path` or `from`, or its `patch`.
    pub field: String,
    /// For a name in the patch: its header and 1-based line.
    pub header: Option<(Header, usize)>,
}

/// Every path change `i` reads or writes: `path`, `from`, then the names of each file section
/// of its patch (`files`, as parsed; empty when it does not parse).
pub fn touched<'r>(i: usize, c: &'r Change, files: &'r [FilePatch]) -> Vec<Touched<'r>> {
    let mut out = vec![Touched {
        path: &c.path,
        field: format!("/changes/{i}/path"),
        header: None,
    }];
    if let Some(from) = &c.from {
        out.push(Touched {
            path: from,
            field: format!("/changes/{i}/from"),
            header: None,
        });
    }
    for f in files {
        for n in &f.names {
            out.push(Touched {
                path: &n.path,
                field: format!("/changes/{i}/patch"),
                header: Some((n.header, n.line)),
            });
        }
    }
    out
}

/// Every problem with the paths of `req`: see the module docs. `parsed[i]` is change `i`'s
/// patch as parsed (`None` when it does not parse: that is reported elsewhere). `tree` is the
/// tree the request will be applied onto, when there is one.
pub fn problems(
    req: &ChangeRequest,
    parsed: &[Option<Vec<FilePatch>>],
    policy: &Policy,
    tree: Option<&dyn TreeView>,
) -> Vec<Problem> {
    let mut out = Vec::new();
    for (i, pattern) in req.file_targets.iter().enumerate() {
        if let Err(r) = paths::check(pattern.trim_end_matches("/**")) {
            out.push(
                Problem::new(
                    r.code,
                    format!("file target '{}': {}", shown(pattern), r.reason),
                    "file targets are globs relative to the repository root, inside it",
                )
                .at(format!("/file_targets/{i}")),
            );
        } else if let Some(why) = paths::glob_problem(pattern) {
            out.push(
                Problem::new(
                    Code::RequestInvalidValue,
                    format!("file target '{}': {why}", shown(pattern)),
                    "file targets are globs with git's rules (as in .gitignore)",
                )
                .at(format!("/file_targets/{i}")),
            );
        }
    }
    let origin = policy.origin.as_deref().unwrap_or("the default policy");
    let mut all_safe = true;
    for (i, c) in req.changes.iter().enumerate() {
        let files: &[FilePatch] = parsed.get(i).and_then(Option::as_deref).unwrap_or(&[]);
        let list = touched(i, c, files);
        let mut seen = HashSet::new();
        for t in list.iter().filter(|t| seen.insert(t.path)) {
            let at = |p: Problem| match t.header {
                Some((_, line)) => p.at(t.field.clone()).line(line),
                None => p.at(t.field.clone()),
            };
            if let Err(r) = paths::check(t.path) {
                all_safe = false;
                out.push(at(Problem::new(
                    r.code,
                    format!("'{}': {}", shown(t.path), r.reason),
                    "a change may touch only ordinary paths inside the work tree",
                )));
                continue;
            }
            if !req
                .file_targets
                .iter()
                .any(|g| paths::glob_match(g, t.path))
            {
                out.push(at(Problem::new(
                    Code::PathOutsideFileTargets,
                    format!("'{}' matches none of the request's file_targets", t.path),
                    "add a glob for it to `file_targets`, or leave the file alone",
                )));
            }
            if let Some(g) = paths::first_covering(&policy.deny, t.path) {
                out.push(at(Problem::new(
                    Code::PathDenied,
                    format!("'{}' matches the deny rule '{g}' of {origin}", t.path),
                    "the target's policy does not let requests touch this path; leave it to a person",
                )));
            }
        }
        if files.len() > 1 {
            out.push(
                Problem::new(
                    Code::PatchMultipleFiles,
                    format!(
                        "the patch touches {} files; a change holds one",
                        files.len()
                    ),
                    "split the diff into one change per file (`enqueue --patch` does this)",
                )
                .at(format!("/changes/{i}/patch")),
            );
        }
        out.extend(agreement(i, c, files));
    }
    out.extend(through_files(req));
    if !all_safe {
        // Unsafe paths are reported; they are not looked up or followed.
        return out;
    }
    if let Some(t) = tree {
        out.extend(against_tree(req, t));
    }
    out.extend(symlinks(req, parsed, policy, tree));
    out
}

/// A path as a message shows it: escaped, and cut short when long.
fn shown(p: &str) -> String {
    let mut s: String = p.escape_debug().to_string();
    if s.len() > 120 {
        let mut end = 100;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str(&format!("… ({} bytes)", p.len()));
    }
    s
}

/// The names in the patch must be the paths the change declares: the old side its `from`
/// (or its `path`), the new side its `path`; and the patch must do what `operation` says.
fn agreement(i: usize, c: &Change, files: &[FilePatch]) -> Vec<Problem> {
    let mut out = Vec::new();
    let old = c.from.as_deref().unwrap_or(&c.path);
    let mut reported = HashSet::new();
    for f in files {
        for n in &f.names {
            let (expected, field) = if n.header.old_side() && c.from.is_some() {
                (old, "from")
            } else if n.header.old_side() {
                (old, "path")
            } else {
                (c.path.as_str(), "path")
            };
            if n.path != expected && reported.insert(field) {
                out.push(
                    Problem::new(
                        Code::RequestPathMismatch,
                        format!(
                            "the change's `{field}` is '{}' but its patch's {} header names '{}'",
                            shown(expected),
                            n.header.label(),
                            shown(&n.path)
                        ),
                        "make `path` (and a rename's `from`) the paths the patch touches",
                    )
                    .at(format!("/changes/{i}/{field}"))
                    .line(n.line),
                );
            }
        }
        if f.operation != c.operation {
            out.push(
                Problem::new(
                    Code::RequestOperationMismatch,
                    format!(
                        "operation is {:?} but the patch is {:?}",
                        c.operation, f.operation
                    )
                    .to_lowercase(),
                    "make `operation` say what the patch does",
                )
                .at(format!("/changes/{i}/operation")),
            );
        }
    }
    out
}

/// A path below a file or symlink that another change of the same request creates or keeps.
fn through_files(req: &ChangeRequest) -> Vec<Problem> {
    let mut out = Vec::new();
    let files: HashSet<&str> = req
        .changes
        .iter()
        .filter(|c| c.operation != Operation::Delete)
        .map(|c| c.path.as_str())
        .collect();
    for (i, c) in req.changes.iter().enumerate() {
        if let Some(prefix) = prefixes(&c.path).find(|p| files.contains(p)) {
            out.push(
                Problem::new(
                    Code::PathThroughLink,
                    format!(
                        "'{}' lies below '{prefix}', which another change of this request makes a file or a symlink",
                        c.path
                    ),
                    "a change cannot write through a symlink, and a path cannot be both a file and a directory",
                )
                .at(format!("/changes/{i}/path")),
            );
        }
    }
    out
}

/// The proper prefixes of `path`, shortest first: `a`, `a/b` for `a/b/c`.
fn prefixes(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(end, _)| &path[..end])
}

/// Each operation fits what the target has (`add` a path that does not exist, `update` and
/// `delete` one that does, `rename` from one that does to one that does not), and no path
/// lies below a symlink, a submodule or a file there.
fn against_tree(req: &ChangeRequest, tree: &dyn TreeView) -> Vec<Problem> {
    let mut out = Vec::new();
    for (i, c) in req.changes.iter().enumerate() {
        let field = |f: &str| format!("/changes/{i}/{f}");
        for (name, p) in [("path", Some(&c.path)), ("from", c.from.as_ref())] {
            let Some(p) = p else { continue };
            for prefix in prefixes(p) {
                match tree.entry(prefix) {
                    Some(TreeEntry::Dir) => {}
                    None => break,
                    Some(_) => {
                        out.push(
                            Problem::new(
                                Code::PathThroughLink,
                                format!("'{p}' lies below '{prefix}', which is not a directory at the target"),
                                "a change cannot write through a symlink, a submodule or a file",
                            )
                            .at(field(name)),
                        );
                        break;
                    }
                }
            }
        }
        let exists = |p: &str| {
            matches!(
                tree.entry(p),
                Some(TreeEntry::File) | Some(TreeEntry::Symlink)
            )
        };
        let missing = |p: &str, name: &str, what: &str| {
            Problem::new(
                Code::OperationMissing,
                format!("'{p}' does not exist at the target, so it cannot be {what}"),
                "the target moved on; regenerate the patch against the current target",
            )
            .at(field(name))
        };
        let present = |p: &str, name: &str| {
            Problem::new(
                Code::OperationExists,
                format!("'{p}' already exists at the target"),
                "use operation \"update\" for an existing file, or regenerate the patch",
            )
            .at(field(name))
        };
        match c.operation {
            Operation::Add if tree.entry(&c.path).is_some() => out.push(present(&c.path, "path")),
            Operation::Update if !exists(&c.path) => out.push(missing(&c.path, "path", "updated")),
            Operation::Delete if !exists(&c.path) => out.push(missing(&c.path, "path", "deleted")),
            Operation::Rename => {
                if let Some(from) = &c.from
                    && !exists(from)
                {
                    out.push(missing(from, "from", "renamed"));
                }
                if tree.entry(&c.path).is_some() {
                    out.push(present(&c.path, "path"));
                }
            }
            _ => {}
        }
    }
    out
}

/// What a change leaves at its path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Planned {
    File,
    /// A symlink to this target, when known (`None`: the content it keeps is not readable
    /// without the target's tree).
    Link(Option<String>),
}

/// The tree a request's symlinks are resolved in: the target's tree with the request's
/// changes on top, as the apply engine will write it.
struct View<'a> {
    tree: Option<&'a dyn TreeView>,
    /// Paths the request changes: what it leaves there, `None` for a path it removes.
    changed: HashMap<&'a str, Option<Planned>>,
    /// Directories the request's new paths lie in.
    dirs: HashSet<&'a str>,
}

impl View<'_> {
    fn node(&self, path: &str) -> Node {
        match self.changed.get(path) {
            Some(Some(Planned::Link(Some(t)))) => return Node::Link(t.clone()),
            // A symlink whose target is unknown is followed no further.
            Some(Some(_)) => return Node::Other,
            Some(None) if !self.dirs.contains(path) => return Node::Missing,
            _ => {}
        }
        if self.dirs.contains(path) {
            return Node::Dir;
        }
        let Some(tree) = self.tree else {
            return Node::Missing;
        };
        match tree.entry(path) {
            Some(TreeEntry::Dir) => Node::Dir,
            Some(TreeEntry::Symlink) => match tree.blob(path) {
                Some(b) => Node::Link(String::from_utf8_lossy(&b).into_owned()),
                None => Node::Other,
            },
            Some(TreeEntry::File) | Some(TreeEntry::Submodule) => Node::Other,
            None => Node::Missing,
        }
    }
}

/// What the apply engine will leave at `c.path`: the new mode, or the kind of the file it
/// reads from (`from`, or `path`); for a symlink, its target: the patch applied to what the
/// target has (empty for a new file), or for a change without hunks what the target has.
/// `Err` for a symlink given as binary data, whose target cannot be judged.
fn planned(c: &Change, f: &FilePatch, tree: Option<&dyn TreeView>) -> Result<Planned, ()> {
    let old_path = c.from.as_deref().unwrap_or(&c.path);
    let old_entry = match c.operation {
        Operation::Add => None,
        _ => tree.and_then(|t| t.entry(old_path)),
    };
    let link = match f.new_mode {
        Some(m) => m == 0o120000,
        None => old_entry == Some(TreeEntry::Symlink),
    };
    if !link {
        return Ok(Planned::File);
    }
    if f.binary {
        return Err(());
    }
    let before = match old_entry {
        Some(_) => tree.and_then(|t| t.blob(old_path)),
        None if c.operation == Operation::Add => Some(Vec::new()),
        None => None,
    };
    if f.hunks.is_empty() {
        return Ok(Planned::Link(
            before.map(|b| String::from_utf8_lossy(&b).into_owned()),
        ));
    }
    let after = before
        .and_then(|b| crate::request::apply::apply_hunks(&b, f).ok())
        .unwrap_or_else(|| postimage(f));
    Ok(Planned::Link(Some(
        String::from_utf8_lossy(&after).into_owned(),
    )))
}

/// The lines a patch's hunks leave, newlines exactly as they will be: for a symlink patch
/// that does not apply as it stands (the engine may still merge it), what it writes.
fn postimage(f: &FilePatch) -> Vec<u8> {
    let mut out = Vec::new();
    for h in &f.hunks {
        let body = &f.text.as_bytes()[h.body.clone()];
        let lines: Vec<&[u8]> = body.split_inclusive(|b| *b == b'\n').collect();
        for (k, l) in lines.iter().enumerate() {
            let Some((&tag, rest)) = l.split_first() else {
                continue;
            };
            if !matches!(tag, b'+' | b' ') {
                continue;
            }
            let no_eol = lines.get(k + 1).is_some_and(|n| n.first() == Some(&b'\\'));
            out.extend_from_slice(if no_eol {
                rest.strip_suffix(b"\n").unwrap_or(rest)
            } else {
                rest
            });
        }
    }
    out
}

/// Every symlink the request makes or changes, resolved in the target's tree plus the
/// request's changes; and when it makes any, every symlink the target has, since it may now
/// lead through one of them.
fn symlinks(
    req: &ChangeRequest,
    parsed: &[Option<Vec<FilePatch>>],
    policy: &Policy,
    tree: Option<&dyn TreeView>,
) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut view = View {
        tree,
        changed: HashMap::new(),
        dirs: HashSet::new(),
    };
    // (change, path) of each symlink the request leaves with a known target.
    let mut links: Vec<(usize, &str)> = Vec::new();
    for (i, c) in req.changes.iter().enumerate() {
        let Some([f]) = parsed.get(i).and_then(Option::as_deref) else {
            continue;
        };
        if c.operation == Operation::Rename
            && let Some(from) = &c.from
        {
            view.changed.insert(from, None);
        }
        if c.operation == Operation::Delete {
            view.changed.insert(&c.path, None);
            continue;
        }
        view.dirs.extend(prefixes(&c.path));
        match planned(c, f, tree) {
            Ok(p) => {
                if p != Planned::File {
                    links.push((i, &c.path));
                }
                view.changed.insert(&c.path, Some(p));
            }
            Err(()) => {
                view.changed.insert(&c.path, Some(Planned::Link(None)));
                out.push(
                    Problem::new(
                        Code::PathSymlinkEscape,
                        format!("'{}' would be a symlink given as binary data, whose target cannot be judged", c.path),
                        "a symlink's target is text: make the diff without `--binary` for it",
                    )
                    .at(format!("/changes/{i}/patch")),
                );
            }
        }
    }
    if links.is_empty() {
        return out;
    }
    let node = |p: &str| view.node(p);
    let origin = policy.origin.as_deref().unwrap_or("the default policy");
    let denied = |p: &str| paths::first_covering(&policy.deny, p);
    for &(i, path) in &links {
        let Some(Some(Planned::Link(Some(target)))) = view.changed.get(path) else {
            continue;
        };
        let r = paths::resolve_link(path, target, &node);
        let via = match r.hops.len() {
            0 | 1 => String::new(),
            _ => format!(" (through {})", r.hops[1..].join(", ")),
        };
        let problem = match r.result {
            Err(fault) => Problem::new(
                fault.code(),
                format!(
                    "'{path}' would be a symlink to '{}'{via}, which {}",
                    shown(target),
                    fault.reason()
                ),
                "a symlink may lead only to a relative path inside the repository, outside .git, through at most 40 symlinks",
            ),
            Ok(to) => match denied(&to) {
                Some(g) => Problem::new(
                    Code::PathDenied,
                    format!(
                        "'{path}' would be a symlink to '{to}'{via}, which matches the deny rule '{g}' of {origin}"
                    ),
                    "the target's policy does not let requests touch this path, nor point a symlink at it",
                ),
                None => continue,
            },
        };
        out.push(problem.at(format!("/changes/{i}/patch")));
    }
    // Symlinks already at the target that would now lead through one the request makes.
    let Some(t) = tree else { return out };
    let made: HashMap<&str, usize> = links.iter().map(|&(i, p)| (p, i)).collect();
    for existing in t.symlinks() {
        if view.changed.contains_key(existing.as_str()) {
            continue;
        }
        let Node::Link(target) = view.node(&existing) else {
            continue;
        };
        let r = paths::resolve_link(&existing, &target, &node);
        let Some((hop, &i)) = r.hops[1..]
            .iter()
            .find_map(|h| made.get_key_value(h.as_str()))
        else {
            continue;
        };
        let why = match r.result {
            Err(fault) => (fault.code(), fault.reason().to_owned()),
            Ok(to) => match denied(&to) {
                Some(g) => (
                    Code::PathDenied,
                    format!("leads to '{to}', which matches the deny rule '{g}' of {origin}"),
                ),
                None => continue,
            },
        };
        out.push(
            Problem::new(
                why.0,
                format!(
                    "'{existing}', a symlink at the target, would lead through '{hop}', which this change makes a symlink, and then {}",
                    why.1
                ),
                "a symlink may lead only to a relative path inside the repository, outside .git, through at most 40 symlinks",
            )
            .at(format!("/changes/{i}/patch")),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::model::sha256_hex;

    fn change(path: &str, op: Operation, from: Option<&str>, patch: &str) -> Change {
        Change {
            path: path.to_owned(),
            operation: op,
            from: from.map(str::to_owned),
            patch: patch.to_owned(),
            sha256: sha256_hex(patch.as_bytes()),
        }
    }

    #[test]
    fn every_path_a_change_reads_or_writes_is_listed_with_where_it_is_named() {
        let patch = "diff --git a/old b/new\nsimilarity index 90%\nrename from old\nrename to new\n--- a/old\n+++ b/new\n@@ -1 +1 @@\n-a\n+b\n";
        let c = change("new", Operation::Rename, Some("old"), patch);
        let files = crate::request::patch::parse(patch).expect("parses");
        let list: Vec<_> = touched(3, &c, &files)
            .into_iter()
            .map(|t| (t.path, t.field, t.header))
            .collect();
        let p = "/changes/3/patch".to_owned();
        assert_eq!(
            list,
            [
                ("new", "/changes/3/path".to_owned(), None),
                ("old", "/changes/3/from".to_owned(), None),
                ("old", p.clone(), Some((Header::GitOld, 1))),
                ("new", p.clone(), Some((Header::GitNew, 1))),
                ("old", p.clone(), Some((Header::Minus, 5))),
                ("new", p.clone(), Some((Header::Plus, 6))),
                ("old", p.clone(), Some((Header::RenameFrom, 3))),
                ("new", p, Some((Header::RenameTo, 4))),
            ]
        );
    }

    #[test]
    fn a_symlink_patch_is_judged_by_the_target_it_leaves() {
        // A target with a trailing newline (no `\ No newline` marker) keeps it.
        let patch =
            "diff --git a/l b/l\nnew file mode 120000\n--- /dev/null\n+++ b/l\n@@ -0,0 +1 @@\n+x\n";
        let c = change("l", Operation::Add, None, patch);
        let f = &crate::request::patch::parse(patch).expect("parses")[0];
        assert_eq!(
            planned(&c, f, None),
            Ok(Planned::Link(Some("x\n".to_owned())))
        );
        let patch = "diff --git a/l b/l\nnew file mode 120000\n--- /dev/null\n+++ b/l\n@@ -0,0 +1 @@\n+x\n\\ No newline at end of file\n";
        let f = &crate::request::patch::parse(patch).expect("parses")[0];
        assert_eq!(
            planned(&c, f, None),
            Ok(Planned::Link(Some("x".to_owned())))
        );
        // A hunk that does not apply still counts by what it writes.
        let patch = "diff --git a/l b/l\nnew file mode 120000\n--- /dev/null\n+++ b/l\n@@ -0,0 +1,2 @@\n+a\n+../..\n\\ No newline at end of file\n";
        let f = &crate::request::patch::parse(patch).expect("parses")[0];
        assert_eq!(postimage(f), b"a\n../..");
    }
}
