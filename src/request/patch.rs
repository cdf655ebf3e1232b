//! Parsing unified diffs and git's extended diff headers.
//!
//! [`parse`] splits a diff (plain `diff -u`, `git diff`, or `git format-patch` output) into one
//! [`FilePatch`] per touched file, keeping each file's exact text, and checks hunk bodies
//! against their headers' line counts. It never panics on arbitrary input; what it cannot read
//! it reports as a [`Problem`] with the line it stopped at.

use crate::code::Code;
use crate::error::Problem;
use crate::request::model::Operation;

/// One file's part of a diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePatch {
    /// Path before the change (`None` for a new file).
    pub old_path: Option<String>,
    /// Path after the change (`None` for a deleted file).
    pub new_path: Option<String>,
    pub operation: Operation,
    /// File mode before and after, in octal: `old mode`/`new mode`, `new file mode`,
    /// `deleted file mode`; the mode at the end of an `index` line is the expected old mode.
    pub old_mode: Option<u32>,
    pub new_mode: Option<u32>,
    /// Blob ids of the `index` line (possibly abbreviated), when the diff has one.
    pub old_id: Option<String>,
    pub new_id: Option<String>,
    /// A binary section: `GIT binary patch` (with data) or `Binary files … differ` (without).
    pub binary: bool,
    pub hunks: Vec<Hunk>,
    /// The exact text of this file's section, headers included.
    pub text: String,
    /// 1-based line where the section starts in the input.
    pub line: usize,
    /// Every path the section's headers name, in order. The parser has checked that they
    /// agree: each old-side name is [`FilePatch::old_path`] (or, for a new file, the new
    /// path), each new-side name [`FilePatch::new_path`] (or, for a deleted file, the old
    /// path); a request's checks go through all of them all the same.
    pub names: Vec<Name>,
}

/// A header of a file section that names a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// The first name of `diff --git a/X b/Y`.
    GitOld,
    /// The second name of `diff --git a/X b/Y`.
    GitNew,
    /// `--- a/X`
    Minus,
    /// `+++ b/Y`
    Plus,
    /// `rename from X`
    RenameFrom,
    /// `rename to Y`
    RenameTo,
}

impl Header {
    /// Whether the header names the file as it was before the change: the path the patch
    /// reads.
    pub fn old_side(self) -> bool {
        matches!(self, Header::GitOld | Header::Minus | Header::RenameFrom)
    }

    /// How the header reads in a diff, for messages.
    pub fn label(self) -> &'static str {
        match self {
            Header::GitOld => "`diff --git a/…`",
            Header::GitNew => "`diff --git … b/…`",
            Header::Minus => "`---`",
            Header::Plus => "`+++`",
            Header::RenameFrom => "`rename from`",
            Header::RenameTo => "`rename to`",
        }
    }
}

/// One path named by a header of a file section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    pub header: Header,
    pub path: String,
    /// 1-based line of the header in the input.
    pub line: usize,
}

impl FilePatch {
    /// The path a request's `changes[].path` names: the new path, or the old one for a delete.
    pub fn path(&self) -> &str {
        self.new_path
            .as_deref()
            .or(self.old_path.as_deref())
            .unwrap_or("")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunk {
    pub old_start: usize,
    pub old_count: usize,
    pub new_start: usize,
    pub new_count: usize,
    /// 1-based line of the `@@` header in the input.
    pub line: usize,
    /// Context lines before the first and after the last changed line.
    pub leading: usize,
    pub trailing: usize,
    /// Byte range of the hunk's body (the lines after the `@@` header, `\` markers included)
    /// within [`FilePatch::text`].
    pub body: std::ops::Range<usize>,
}

const HINT_DIFF: &str = "produce the patch with `git diff` (or `diff -u`) and submit it unchanged";

/// Parse `text` into its file sections.
pub fn parse(text: &str) -> Result<Vec<FilePatch>, Problem> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut offsets = Vec::with_capacity(lines.len() + 1);
    let mut off = 0;
    for l in &lines {
        offsets.push(off);
        off += l.len();
    }
    offsets.push(off);
    let mut files = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = trim_eol(lines[i]);
        if l.starts_with("diff --git ") {
            let (fp, next) = parse_git_section(&lines, i)?;
            files.push(finish(fp, text, &offsets, i, next));
            i = next;
        } else if l.starts_with("--- ") && lines.get(i + 1).is_some_and(|n| n.starts_with("+++ ")) {
            let (fp, next) = parse_plain_section(&lines, i)?;
            files.push(finish(fp, text, &offsets, i, next));
            i = next;
        } else {
            // Preamble (a format-patch mail header, commit message) or trailing signature.
            i += 1;
        }
    }
    if files.is_empty() {
        return Err(Problem::new(
            Code::PatchNotADiff,
            "the text contains no file diff (no `diff --git` or `---`/`+++` header)",
            HINT_DIFF,
        ));
    }
    Ok(files)
}

fn finish(mut fp: FilePatch, text: &str, offsets: &[usize], start: usize, end: usize) -> FilePatch {
    fp.text = text[offsets[start]..offsets[end]].to_owned();
    fp.line = start + 1;
    // Hunk bodies were recorded as line indices of the whole input; make them byte ranges of
    // this section's text.
    for h in &mut fp.hunks {
        h.body = offsets[h.body.start] - offsets[start]..offsets[h.body.end] - offsets[start];
    }
    fp
}

fn trim_eol(l: &str) -> &str {
    l.strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(l)
}

fn empty(operation: Operation) -> FilePatch {
    FilePatch {
        old_path: None,
        new_path: None,
        operation,
        old_mode: None,
        new_mode: None,
        old_id: None,
        new_id: None,
        binary: false,
        hunks: Vec::new(),
        text: String::new(),
        line: 0,
        names: Vec::new(),
    }
}

/// The path headers of a `diff --git` section as read, before they are reconciled: each with
/// its 1-based line; `None` names `/dev/null`.
#[derive(Default)]
struct GitHeaders {
    minus: Option<(Option<String>, usize)>,
    plus: Option<(Option<String>, usize)>,
    rename_from: Option<(String, usize)>,
    rename_to: Option<(String, usize)>,
    new_file: bool,
    deleted: bool,
}

fn parse_git_section(lines: &[&str], start: usize) -> Result<(FilePatch, usize), Problem> {
    let header = trim_eol(lines[start]);
    let mut fp = empty(Operation::Update);
    let mut h = GitHeaders::default();
    let twice = |what: &str, at: usize| {
        Problem::new(
            Code::PatchBadHeader,
            format!("a second {what} header in one file section"),
            HINT_DIFF,
        )
        .line(at)
    };
    let mut i = start + 1;
    while i < lines.len() {
        let l = trim_eol(lines[i]);
        if l.starts_with("@@") || l.starts_with("diff --git ") {
            break;
        }
        if let Some(p) = l.strip_prefix("--- ") {
            if h.minus.is_some() {
                return Err(twice("`---`", i + 1));
            }
            h.minus = Some((header_path(p, "a/"), i + 1));
        } else if let Some(p) = l.strip_prefix("+++ ") {
            if h.minus.is_none() {
                return Err(Problem::new(
                    Code::PatchMissingHeader,
                    "`+++` line without a `---` line before it",
                    HINT_DIFF,
                )
                .line(i + 1));
            }
            if h.plus.is_some() {
                return Err(twice("`+++`", i + 1));
            }
            h.plus = Some((header_path(p, "b/"), i + 1));
        } else if let Some(m) = l.strip_prefix("new file mode ") {
            h.new_file = true;
            fp.new_mode = parse_mode(m);
        } else if let Some(m) = l.strip_prefix("deleted file mode ") {
            h.deleted = true;
            fp.old_mode = parse_mode(m);
        } else if let Some(m) = l.strip_prefix("old mode ") {
            fp.old_mode = parse_mode(m);
        } else if let Some(m) = l.strip_prefix("new mode ") {
            fp.new_mode = parse_mode(m);
        } else if let Some(rest) = l.strip_prefix("index ") {
            let (ids, mode) = rest.split_once(' ').unwrap_or((rest, ""));
            if let Some((a, b)) = ids.split_once("..") {
                fp.old_id = Some(a.to_owned());
                fp.new_id = Some(b.to_owned());
            }
            // The mode of an unchanged-mode diff is what the patch expects; the result keeps
            // whatever mode the file has (as git apply does).
            if let Some(m) = parse_mode(mode) {
                fp.old_mode.get_or_insert(m);
            }
        } else if let Some(p) = l.strip_prefix("rename from ") {
            if h.rename_from.is_some() {
                return Err(twice("`rename from`", i + 1));
            }
            h.rename_from = Some((unquote(p), i + 1));
        } else if let Some(p) = l.strip_prefix("rename to ") {
            if h.rename_to.is_some() {
                return Err(twice("`rename to`", i + 1));
            }
            h.rename_to = Some((unquote(p), i + 1));
        } else if l.starts_with("copy from ") || l.starts_with("copy to ") {
            // The apply engine would read the copy's content from its source: a path the
            // request does not name. Format v1 has no copy; refusing it here, where every
            // reader of a patch comes through, closes that for all of them.
            return Err(Problem::new(
                Code::PatchCopy,
                format!(
                    "`{}`: a copy reads the content of another file, and a change request has no copy operation",
                    l.escape_debug()
                ),
                "submit the new file as an `add` that carries its whole content: make the diff without copy detection (no `-C`/`--find-copies`, `diff.renames` not `copies`)",
            )
            .line(i + 1));
        } else if l == "GIT binary patch"
            || (l.starts_with("Binary files ") && l.ends_with(" differ"))
        {
            fp.binary = true;
            // The binary payload runs to the next file section.
            i += 1;
            while i < lines.len() && !trim_eol(lines[i]).starts_with("diff --git ") {
                i += 1;
            }
            break;
        } else if !(l.starts_with("similarity index ") || l.starts_with("dissimilarity index ")) {
            break;
        }
        i += 1;
    }
    let i = if fp.binary {
        i
    } else {
        parse_hunks(lines, i, &mut fp)?
    };
    reconcile(&mut fp, &header["diff --git ".len()..], start + 1, &h)?;
    Ok((fp, i))
}

fn inconsistent(message: String, line: usize) -> Problem {
    Problem::new(
        Code::PatchInconsistentPaths,
        message,
        "a file section changes one file (or renames one, with `rename from`/`rename to`); regenerate the patch with `git diff` and submit it unchanged",
    )
    .line(line)
}

/// Decide what a `diff --git` section does and to which paths, from all its headers, and
/// refuse a section whose headers disagree: what git apply calls an inconsistent file name.
/// Only a rename has an old path other than its new one; every other section reads and
/// writes one path. Fills `operation`, `old_path`, `new_path` and `names`.
fn reconcile(
    fp: &mut FilePatch,
    git_line: &str,
    line: usize,
    h: &GitHeaders,
) -> Result<(), Problem> {
    let bad = |message: &str, at: usize| {
        Err(Problem::new(Code::PatchBadHeader, message.to_owned(), HINT_DIFF).line(at))
    };
    let renamed = h.rename_from.is_some() || h.rename_to.is_some();
    fp.operation = match (h.new_file, h.deleted, renamed) {
        (false, false, false) => Operation::Update,
        (true, false, false) => Operation::Add,
        (false, true, false) => Operation::Delete,
        (false, false, true) => Operation::Rename,
        _ => {
            return bad(
                "the section combines `new file mode`, `deleted file mode` and `rename` headers",
                line,
            );
        }
    };
    let op = fp.operation;
    // `/dev/null` stands exactly where the file does not exist.
    if let Some((name, at)) = &h.minus
        && name.is_none() != (op == Operation::Add)
    {
        return bad(
            if op == Operation::Add {
                "a new file whose `---` line names a file instead of /dev/null"
            } else {
                "`--- /dev/null` in a section that does not create the file"
            },
            *at,
        );
    }
    if let Some((name, at)) = &h.plus
        && name.is_none() != (op == Operation::Delete)
    {
        return bad(
            if op == Operation::Delete {
                "a deleted file whose `+++` line names a file instead of /dev/null"
            } else {
                "`+++ /dev/null` in a section that does not delete the file"
            },
            *at,
        );
    }
    let minus = h
        .minus
        .as_ref()
        .and_then(|(n, at)| Some((n.as_ref()?, *at)));
    let plus = h.plus.as_ref().and_then(|(n, at)| Some((n.as_ref()?, *at)));
    let (old, new) = if op == Operation::Rename {
        let (Some((from, from_at)), Some((to, _))) = (&h.rename_from, &h.rename_to) else {
            return bad("a `rename from` without `rename to`, or the reverse", line);
        };
        for (side, header, expected) in [(minus, "`---`", from), (plus, "`+++`", to)] {
            if let Some((name, at)) = side
                && name != expected
            {
                return Err(inconsistent(
                    format!(
                        "the {header} line names '{}' but the rename's header names '{}'",
                        name.escape_debug(),
                        expected.escape_debug()
                    ),
                    at,
                ));
            }
        }
        if from == to {
            return bad("a rename to the same path", *from_at);
        }
        (from.clone(), to.clone())
    } else {
        let name = match (minus, plus) {
            (Some((a, _)), Some((b, at))) if a != b => {
                return Err(inconsistent(
                    format!(
                        "the `---` line names '{}' and the `+++` line '{}'; only a rename changes the path",
                        a.escape_debug(),
                        b.escape_debug()
                    ),
                    at,
                ));
            }
            (Some((a, _)), _) | (None, Some((a, _))) => a.clone(),
            (None, None) => match git_line_name(git_line) {
                Some(name) => name,
                None => {
                    return bad(
                        &format!("cannot read one path from `diff --git {git_line}`"),
                        line,
                    );
                }
            },
        };
        (name.clone(), name)
    };
    if !git_line_agrees(git_line, &old, &new) {
        return Err(inconsistent(
            format!(
                "`diff --git {}` does not name the files its other headers name ('{}', '{}')",
                git_line.escape_debug(),
                old.escape_debug(),
                new.escape_debug()
            ),
            line,
        ));
    }
    let mut names = vec![
        Name {
            header: Header::GitOld,
            path: old.clone(),
            line,
        },
        Name {
            header: Header::GitNew,
            path: new.clone(),
            line,
        },
    ];
    let headers = [
        (Header::Minus, minus),
        (Header::Plus, plus),
        (
            Header::RenameFrom,
            h.rename_from.as_ref().map(|(n, at)| (n, *at)),
        ),
        (
            Header::RenameTo,
            h.rename_to.as_ref().map(|(n, at)| (n, *at)),
        ),
    ];
    for (header, named) in headers {
        if let Some((path, at)) = named {
            names.push(Name {
                header,
                path: path.clone(),
                line: at,
            });
        }
    }
    fp.names = names;
    fp.old_path = (op != Operation::Add).then_some(old);
    fp.new_path = (op != Operation::Delete).then_some(new);
    Ok(())
}

/// The one path of a `diff --git` line whose two halves name the same file (a section
/// without rename headers), quoted or not, with or without the `a/`/`b/` prefixes.
fn git_line_name(s: &str) -> Option<String> {
    if let Some((a, b)) = split_quoted_git_header(s) {
        return (a == b).then_some(a);
    }
    // Unquoted: the halves are equal, so the split is in the middle.
    for (pa, pb) in [("a/", "b/"), ("", "")] {
        let Some(twice) = s.len().checked_sub(1 + pa.len() + pb.len()) else {
            continue;
        };
        if twice % 2 != 0 {
            continue;
        }
        let n = twice / 2;
        let a = s.get(pa.len()..pa.len() + n);
        let b = s.get(pa.len() + n + 1 + pb.len()..);
        if s.starts_with(pa)
            && s.get(pa.len() + n..pa.len() + n + 1 + pb.len()) == Some(&format!(" {pb}"))
            && a.is_some()
            && a == b
        {
            return a.map(str::to_owned);
        }
    }
    None
}

/// Whether the `diff --git` line names `old` and then `new`, each quoted or not, with the
/// `a/`/`b/` prefixes or without.
fn git_line_agrees(s: &str, old: &str, new: &str) -> bool {
    fn side<'s>(s: &'s str, prefix: &str, name: &str) -> Option<&'s str> {
        if s.starts_with('"') {
            let (q, rest) = take_quoted(s)?;
            return (q.strip_prefix(prefix) == Some(name)).then_some(rest);
        }
        s.strip_prefix(prefix)?.strip_prefix(name)
    }
    [("a/", "b/"), ("", "")].into_iter().any(|(pa, pb)| {
        side(s, pa, old)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|rest| side(rest, pb, new))
            .is_some_and(str::is_empty)
    })
}

fn parse_plain_section(lines: &[&str], start: usize) -> Result<(FilePatch, usize), Problem> {
    let old = header_path(&trim_eol(lines[start])[4..], "a/");
    let new = header_path(&trim_eol(lines[start + 1])[4..], "b/");
    let operation = match (&old, &new) {
        (None, Some(_)) => Operation::Add,
        (Some(_), None) => Operation::Delete,
        _ => Operation::Update,
    };
    let mut fp = empty(operation);
    if let (Some(a), Some(b)) = (&old, &new)
        && a != b
    {
        return Err(inconsistent(
            format!(
                "the `---` line names '{}' and the `+++` line '{}'; a plain diff changes one file in place",
                a.escape_debug(),
                b.escape_debug()
            ),
            start + 2,
        ));
    }
    for (header, name, at) in [
        (Header::Minus, &old, start + 1),
        (Header::Plus, &new, start + 2),
    ] {
        if let Some(path) = name {
            fp.names.push(Name {
                header,
                path: path.clone(),
                line: at,
            });
        }
    }
    fp.old_path = old;
    fp.new_path = new;
    if fp.old_path.is_none() && fp.new_path.is_none() {
        return Err(Problem::new(
            Code::PatchBadHeader,
            "both sides of the diff are /dev/null",
            HINT_DIFF,
        )
        .line(start + 1));
    }
    let i = parse_hunks(lines, start + 2, &mut fp)?;
    if fp.hunks.is_empty() {
        return Err(Problem::new(
            Code::PatchEmpty,
            "a file header with no hunk after it",
            HINT_DIFF,
        )
        .line(start + 1));
    }
    Ok((fp, i))
}

/// Read hunks from `i`; returns the first line after them.
fn parse_hunks(lines: &[&str], mut i: usize, fp: &mut FilePatch) -> Result<usize, Problem> {
    while i < lines.len() {
        let l = trim_eol(lines[i]);
        if !l.starts_with("@@") {
            break;
        }
        let mut hunk = parse_hunk_header(l).ok_or_else(|| {
            Problem::new(
                Code::PatchBadHunkHeader,
                format!("cannot read hunk header `{l}`"),
                HINT_DIFF,
            )
            .line(i + 1)
        })?;
        hunk.line = i + 1;
        let (mut old, mut new) = (0usize, 0usize);
        let (mut context_run, mut seen_change) = (0usize, false);
        i += 1;
        let body_start = i;
        while old < hunk.old_count || new < hunk.new_count {
            let Some(raw) = lines.get(i) else {
                return Err(hunk_count_problem(&hunk, old, new, i));
            };
            match raw.as_bytes().first() {
                // An empty line stands for an empty context line in some mailers' output.
                Some(b' ') | Some(b'\n') | Some(b'\r') => {
                    old += 1;
                    new += 1;
                    context_run += 1;
                }
                Some(b'-') | Some(b'+') => {
                    if raw.starts_with('-') {
                        old += 1;
                    } else {
                        new += 1;
                    }
                    if !seen_change {
                        hunk.leading = context_run;
                        seen_change = true;
                    }
                    context_run = 0;
                }
                Some(b'\\') => {}
                _ => return Err(hunk_count_problem(&hunk, old, new, i)),
            }
            i += 1;
        }
        if old > hunk.old_count || new > hunk.new_count {
            return Err(hunk_count_problem(&hunk, old, new, i));
        }
        while lines.get(i).is_some_and(|l| l.starts_with('\\')) {
            i += 1;
        }
        if seen_change {
            hunk.trailing = context_run;
        } else {
            hunk.leading = context_run;
        }
        hunk.body = body_start..i;
        fp.hunks.push(hunk);
    }
    Ok(i)
}

fn hunk_count_problem(h: &Hunk, old: usize, new: usize, i: usize) -> Problem {
    Problem::new(
        Code::PatchHunkCount,
        format!(
            "hunk at line {} promises -{} +{} lines but its body has -{old} +{new}",
            h.line, h.old_count, h.new_count
        ),
        "do not edit patches by hand; regenerate it with `git diff`",
    )
    .line(i + 1)
}

fn parse_hunk_header(l: &str) -> Option<Hunk> {
    let rest = l.strip_prefix("@@ -")?;
    let end = rest.find(" @@")?;
    let (old, new) = rest[..end].split_once(" +")?;
    let range = |s: &str| -> Option<(usize, usize)> {
        match s.split_once(',') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => Some((s.parse().ok()?, 1)),
        }
    };
    let (old_start, old_count) = range(old)?;
    let (new_start, new_count) = range(new)?;
    Some(Hunk {
        old_start,
        old_count,
        new_start,
        new_count,
        line: 0,
        leading: 0,
        trailing: 0,
        body: 0..0,
    })
}

/// An octal file mode as git writes it (`100644`, `100755`, `120000`, `160000`).
fn parse_mode(s: &str) -> Option<u32> {
    let s = s.trim();
    (!s.is_empty() && s.len() <= 6)
        .then(|| u32::from_str_radix(s, 8).ok())
        .flatten()
}

/// `"a/x" b/y` → (`x`, `y`): a `diff --git` line with at least one quoted path.
fn split_quoted_git_header(s: &str) -> Option<(String, String)> {
    if s.starts_with('"') {
        let (a, rest) = take_quoted(s)?;
        let rest = rest.strip_prefix(' ')?;
        let b = if rest.starts_with('"') {
            let (b, after) = take_quoted(rest)?;
            if !after.is_empty() {
                return None;
            }
            b
        } else {
            rest.to_owned()
        };
        return Some((strip_prefix_dir(&a, "a/"), strip_prefix_dir(&b, "b/")));
    }
    let pos = s.find(" \"")?;
    let (b, after) = take_quoted(&s[pos + 1..])?;
    if !after.is_empty() {
        return None;
    }
    Some((
        strip_prefix_dir(&s[..pos], "a/"),
        strip_prefix_dir(&b, "b/"),
    ))
}

fn strip_prefix_dir(p: &str, prefix: &str) -> String {
    p.strip_prefix(prefix).unwrap_or(p).to_owned()
}

/// The path of a `---`/`+++` line: `None` for `/dev/null`; timestamps after a tab dropped.
fn header_path(p: &str, prefix: &str) -> Option<String> {
    let p = p.split('\t').next().unwrap_or(p);
    let p = unquote(p.trim_end());
    if p == "/dev/null" {
        return None;
    }
    Some(strip_prefix_dir(&p, prefix))
}

fn unquote(p: &str) -> String {
    if p.starts_with('"')
        && let Some((s, _)) = take_quoted(p)
    {
        return s;
    }
    p.to_owned()
}

/// Read a C-quoted string as git writes it; returns it and the rest of the input.
fn take_quoted(s: &str) -> Option<(String, &str)> {
    let body = s.strip_prefix('"')?;
    let mut out: Vec<u8> = Vec::new();
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return Some((String::from_utf8_lossy(&out).into_owned(), &body[i + 1..])),
            b'\\' => {
                let c = *bytes.get(i + 1)?;
                i += 2;
                match c {
                    b'n' => out.push(b'\n'),
                    b't' => out.push(b'\t'),
                    b'"' => out.push(b'"'),
                    b'\\' => out.push(b'\\'),
                    b'a' => out.push(7),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'r' => out.push(b'\r'),
                    b'v' => out.push(11),
                    b'0'..=b'7' => {
                        let digits = bytes.get(i - 1..i + 2)?;
                        let v = u8::from_str_radix(std::str::from_utf8(digits).ok()?, 8).ok()?;
                        out.push(v);
                        i += 2;
                    }
                    _ => return None,
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    None
}

/// Wrap raw `git diff` / `git format-patch` output into a request: one change per file, with
/// operation and hash filled in. The title defaults to the mail subject when there is one.
pub fn wrap(
    text: &str,
    task_id: &str,
    agent: &str,
    title: Option<&str>,
    checks: &[String],
) -> Result<crate::request::model::ChangeRequest, Problem> {
    use crate::request::model::{Change, ChangeRequest, SCHEMA_V1, sha256_hex};
    let files = parse(text)?;
    let title = title
        .map(str::to_owned)
        .or_else(|| mail_subject(text))
        .unwrap_or_else(|| format!("{} file(s) from {agent}", files.len()));
    let changes: Vec<Change> = files
        .iter()
        .map(|f| Change {
            path: f.path().to_owned(),
            operation: f.operation,
            from: (f.operation == Operation::Rename)
                .then(|| f.old_path.clone().unwrap_or_default()),
            sha256: sha256_hex(f.text.as_bytes()),
            patch: f.text.clone(),
        })
        .collect();
    let mut file_targets: Vec<String> = changes.iter().map(|c| c.path.clone()).collect();
    file_targets.extend(changes.iter().filter_map(|c| c.from.clone()));
    file_targets.sort();
    file_targets.dedup();
    Ok(ChangeRequest {
        schema: SCHEMA_V1.to_owned(),
        task_id: task_id.to_owned(),
        agent: agent.to_owned(),
        title,
        description: None,
        kind: None,
        priority: crate::request::model::DEFAULT_PRIORITY,
        base: None,
        target: None,
        file_targets,
        changes,
        checks: checks.to_vec(),
        depends_on: Vec::new(),
    })
}

/// `Subject:` of a format-patch mail, without the `[PATCH …]` tag.
fn mail_subject(text: &str) -> Option<String> {
    for l in text.lines() {
        if l.starts_with("diff --git ") {
            break;
        }
        if let Some(s) = l.strip_prefix("Subject: ") {
            let s = s.trim();
            let s = match s.strip_prefix('[') {
                Some(rest) => rest.split_once(']').map(|(_, t)| t.trim()).unwrap_or(s),
                None => s,
            };
            return (!s.is_empty()).then(|| s.to_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_a_git_diff_into_files() {
        let diff = "diff --git a/x.txt b/x.txt\nindex 1111111..2222222 100644\n--- a/x.txt\n+++ b/x.txt\n@@ -1,2 +1,2 @@\n a\n-b\n+c\ndiff --git a/new.txt b/new.txt\nnew file mode 100644\nindex 0000000..3333333\n--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+hello\n";
        let files = parse(diff).expect("parses");
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].path(), "x.txt");
        assert_eq!(files[0].operation, Operation::Update);
        assert_eq!(files[1].operation, Operation::Add);
        assert_eq!(files[1].old_path, None);
        assert_eq!(files[0].text.len() + files[1].text.len(), diff.len());
    }

    #[test]
    fn renames_deletes_and_binary() {
        let diff = "diff --git a/old name.txt b/new name.txt\nsimilarity index 100%\nrename from old name.txt\nrename to new name.txt\ndiff --git a/gone b/gone\ndeleted file mode 100644\nindex 1234567..0000000\n--- a/gone\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\ndiff --git a/img.png b/img.png\nindex 1..2 100644\nGIT binary patch\nliteral 3\nKcmZ?wbhF\n\nliteral 0\n\n";
        let files = parse(diff).expect("parses");
        assert_eq!(files.len(), 3);
        assert_eq!(files[0].operation, Operation::Rename);
        assert_eq!(files[0].old_path.as_deref(), Some("old name.txt"));
        assert_eq!(files[0].new_path.as_deref(), Some("new name.txt"));
        assert_eq!(files[1].operation, Operation::Delete);
        assert_eq!(files[1].path(), "gone");
        assert!(files[2].binary);
    }

    #[test]
    fn hunk_bodies_context_and_modes() {
        let diff = "diff --git a/x b/x\nold mode 100644\nnew mode 100755\nindex 1111111..2222222\n--- a/x\n+++ b/x\n@@ -1,4 +1,4 @@\n a\n b\n-c\n+C\n d\n\\ No newline at end of file\n";
        let files = parse(diff).expect("parses");
        let f = &files[0];
        assert_eq!((f.old_mode, f.new_mode), (Some(0o100644), Some(0o100755)));
        assert_eq!(f.old_id.as_deref(), Some("1111111"));
        let h = &f.hunks[0];
        assert_eq!((h.leading, h.trailing), (2, 1));
        assert_eq!(
            &f.text[h.body.clone()],
            " a\n b\n-c\n+C\n d\n\\ No newline at end of file\n"
        );
    }

    #[test]
    fn hunk_counts_must_match() {
        let diff = "--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n";
        let err = parse(diff).expect_err("short hunk");
        assert_eq!(err.code, Code::PatchHunkCount);
    }

    #[test]
    fn format_patch_mail_and_signature_are_skipped() {
        let mail = "From 123 Mon Sep 17 00:00:00 2001\nSubject: [PATCH] fix\n\n---\n x | 2 +-\n\ndiff --git a/x b/x\nindex 1..2 100644\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n-- \n2.47.3\n\n";
        let files = parse(mail).expect("parses");
        assert_eq!(files.len(), 1);
        assert!(!files[0].text.contains("2.47.3"));
    }

    #[test]
    fn text_that_is_not_a_diff_is_refused() {
        assert_eq!(
            parse("hello\nworld\n").expect_err("not a diff").code,
            Code::PatchNotADiff
        );
        assert_eq!(parse("").expect_err("empty").code, Code::PatchNotADiff);
    }

    fn code(diff: &str) -> Code {
        parse(diff).expect_err("refused").code
    }

    #[test]
    fn copies_are_refused_wherever_they_stand() {
        let copy = "diff --git a/secrets/key b/public/key\nsimilarity index 100%\ncopy from secrets/key\ncopy to public/key\n";
        assert_eq!(code(copy), Code::PatchCopy);
        let with_hunk = "diff --git a/secrets/key b/public/key\nsimilarity index 90%\ncopy from secrets/key\ncopy to public/key\n--- a/secrets/key\n+++ b/public/key\n@@ -1 +1 @@\n-a\n+b\n";
        assert_eq!(code(with_hunk), Code::PatchCopy);
        let to_only = "diff --git a/x b/y\ncopy to y\n";
        assert_eq!(code(to_only), Code::PatchCopy);
    }

    #[test]
    fn a_section_reads_and_writes_the_paths_all_its_headers_name() {
        // Each of these would have the apply engine read one file and write another.
        for diff in [
            "diff --git a/secrets/key b/y\n--- a/secrets/key\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n",
            "diff --git a/y b/y\n--- a/secrets/key\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n",
            "diff --git a/secrets/key b/secrets/key\n--- a/y\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n",
            "--- a/secrets/key\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n",
            "diff --git a/x b/y\nrename from x\nrename to y\n--- a/secrets/key\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n",
            "diff --git a/x b/y\nrename from x\nrename to y\n--- a/x\n+++ b/z\n@@ -1 +1 @@\n-a\n+b\n",
            "diff --git a/secrets/key b/y\nrename from x\nrename to y\n",
            "diff --git a/x b/y\nold mode 100644\nnew mode 100755\n",
        ] {
            let c = parse(diff).map(|f| f[0].clone()).err().map(|p| p.code);
            assert!(
                matches!(
                    c,
                    Some(Code::PatchInconsistentPaths) | Some(Code::PatchBadHeader)
                ),
                "{diff:?} gave {c:?}"
            );
        }
        // A new file whose `---` names a file: the engine would read that file.
        let add = "diff --git a/y b/y\nnew file mode 100644\n--- a/secrets/key\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n";
        assert_eq!(code(add), Code::PatchBadHeader);
        let not_new = "diff --git a/y b/y\n--- /dev/null\n+++ b/y\n@@ -0,0 +1 @@\n+b\n";
        assert_eq!(code(not_new), Code::PatchBadHeader);
        let both = "diff --git a/y b/y\nnew file mode 100644\ndeleted file mode 100644\n";
        assert_eq!(code(both), Code::PatchBadHeader);
        let half_rename = "diff --git a/x b/y\nrename from x\n";
        assert_eq!(code(half_rename), Code::PatchBadHeader);
        let twice = "diff --git a/y b/y\n--- a/y\n--- a/y\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n";
        assert_eq!(code(twice), Code::PatchBadHeader);
    }

    #[test]
    fn every_header_name_is_recorded() {
        let diff = "diff --git a/old name b/new name\nsimilarity index 90%\nrename from old name\nrename to new name\n--- a/old name\n+++ b/new name\n@@ -1 +1 @@\n-a\n+b\n";
        let f = &parse(diff).expect("parses")[0];
        let names: Vec<(Header, &str, usize)> = f
            .names
            .iter()
            .map(|n| (n.header, n.path.as_str(), n.line))
            .collect();
        assert_eq!(
            names,
            [
                (Header::GitOld, "old name", 1),
                (Header::GitNew, "new name", 1),
                (Header::Minus, "old name", 5),
                (Header::Plus, "new name", 6),
                (Header::RenameFrom, "old name", 3),
                (Header::RenameTo, "new name", 4),
            ]
        );
        // Sections without `---`/`+++`: the name comes from the `diff --git` line alone,
        // whose halves must be equal (with spaces, quotes, or without prefixes).
        for (diff, name) in [
            (
                "diff --git a/a b b/a b\nold mode 100644\nnew mode 100755\n",
                "a b",
            ),
            (
                "diff --git x y x y\nold mode 100644\nnew mode 100755\n",
                "x y",
            ),
            (
                "diff --git \"a/t\\303\\251\" b/t\u{e9}\nnew file mode 100644\nindex 0000000..e69de29\n",
                "t\u{e9}",
            ),
            (
                "diff --git a/e b/e\nnew file mode 100644\nindex 0000000..e69de29\n",
                "e",
            ),
        ] {
            let f = &parse(diff).expect(diff)[0];
            assert_eq!(f.path(), name, "{diff:?}");
        }
        assert_eq!(
            code("diff --git a/e b/f\nnew file mode 100644\n"),
            Code::PatchBadHeader
        );
    }

    #[test]
    fn quoted_paths() {
        let diff = "diff --git \"a/t\\303\\251st\" \"b/t\\303\\251st\"\nindex 1..2 100644\n--- \"a/t\\303\\251st\"\n+++ \"b/t\\303\\251st\"\n@@ -1 +1 @@\n-a\n+b\n";
        let files = parse(diff).expect("parses");
        assert_eq!(files[0].path(), "tést");
    }
}
