//! Parsing unified diffs and git's extended diff headers.
//!
//! [`parse`] splits a diff (plain `diff -u`, `git diff`, or `git format-patch` output) into one
//! [`FilePatch`] per touched file, keeping each file's exact text, and checks hunk bodies
//! against their headers' line counts. It never panics on arbitrary input; what it cannot read
//! it reports as a [`Problem`] with the line it stopped at.

use crate::error::Problem;
use crate::model::Operation;

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
            "patch.not_a_diff",
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
    }
}

fn parse_git_section(lines: &[&str], start: usize) -> Result<(FilePatch, usize), Problem> {
    let header = trim_eol(lines[start]);
    let mut fp = empty(Operation::Update);
    let (a, b) = split_git_header(&header["diff --git ".len()..]).ok_or_else(|| {
        Problem::new(
            "patch.bad_header",
            format!("cannot read the paths of `{header}`"),
            HINT_DIFF,
        )
        .line(start + 1)
    })?;
    fp.old_path = Some(a);
    fp.new_path = Some(b);
    let mut i = start + 1;
    let mut saw_minus = false;
    while i < lines.len() {
        let l = trim_eol(lines[i]);
        if l.starts_with("@@") || l.starts_with("diff --git ") {
            break;
        }
        if let Some(p) = l.strip_prefix("--- ") {
            saw_minus = true;
            fp.old_path = header_path(p, "a/");
        } else if let Some(p) = l.strip_prefix("+++ ") {
            if !saw_minus {
                return Err(Problem::new(
                    "patch.missing_header",
                    "`+++` line without a `---` line before it",
                    HINT_DIFF,
                )
                .line(i + 1));
            }
            fp.new_path = header_path(p, "b/");
        } else if let Some(m) = l.strip_prefix("new file mode ") {
            fp.operation = Operation::Add;
            fp.old_path = None;
            fp.new_mode = parse_mode(m);
        } else if let Some(m) = l.strip_prefix("deleted file mode ") {
            fp.operation = Operation::Delete;
            fp.new_path = None;
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
            fp.operation = Operation::Rename;
            fp.old_path = Some(unquote(p));
        } else if let Some(p) = l.strip_prefix("rename to ") {
            fp.operation = Operation::Rename;
            fp.new_path = Some(unquote(p));
        } else if let Some(p) = l.strip_prefix("copy from ") {
            fp.old_path = Some(unquote(p));
        } else if let Some(p) = l.strip_prefix("copy to ") {
            fp.operation = Operation::Add;
            fp.new_path = Some(unquote(p));
        } else if l == "GIT binary patch"
            || (l.starts_with("Binary files ") && l.ends_with(" differ"))
        {
            fp.binary = true;
            // The binary payload runs to the next file section.
            i += 1;
            while i < lines.len() && !trim_eol(lines[i]).starts_with("diff --git ") {
                i += 1;
            }
            return Ok((fp, i));
        } else if !(l.starts_with("similarity index ") || l.starts_with("dissimilarity index ")) {
            break;
        }
        i += 1;
    }
    let i = parse_hunks(lines, i, &mut fp)?;
    if fp.operation == Operation::Add && fp.new_path.is_none() {
        return Err(
            Problem::new("patch.bad_header", "a new file without a path", HINT_DIFF)
                .line(start + 1),
        );
    }
    Ok((fp, i))
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
    fp.old_path = old;
    fp.new_path = new;
    if fp.old_path.is_none() && fp.new_path.is_none() {
        return Err(Problem::new(
            "patch.bad_header",
            "both sides of the diff are /dev/null",
            HINT_DIFF,
        )
        .line(start + 1));
    }
    let i = parse_hunks(lines, start + 2, &mut fp)?;
    if fp.hunks.is_empty() {
        return Err(Problem::new(
            "patch.empty",
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
                "patch.bad_hunk_header",
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
        "patch.hunk_count",
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

/// `a/x b/y` → (`x`, `y`), handling quoted paths and paths with spaces when both sides agree.
fn split_git_header(s: &str) -> Option<(String, String)> {
    if s.starts_with('"') {
        let (a, rest) = take_quoted(s)?;
        let rest = rest.strip_prefix(' ')?;
        let b = if rest.starts_with('"') {
            take_quoted(rest)?.0
        } else {
            rest.to_owned()
        };
        return Some((strip_prefix_dir(&a, "a/"), strip_prefix_dir(&b, "b/")));
    }
    if let Some(pos) = s.find(" \"") {
        let b = take_quoted(&s[pos + 1..])?.0;
        return Some((
            strip_prefix_dir(&s[..pos], "a/"),
            strip_prefix_dir(&b, "b/"),
        ));
    }
    // Unquoted: the two halves are equal for a non-rename; find the split that makes them so.
    let bytes = s.as_bytes();
    for (idx, _) in s.match_indices(" b/") {
        let (a, b) = (&s[..idx], &s[idx + 1..]);
        if a.strip_prefix("a/") == b.strip_prefix("b/") {
            return Some((strip_prefix_dir(a, "a/"), strip_prefix_dir(b, "b/")));
        }
    }
    let idx = s.rfind(" b/").or_else(|| s.find(' '))?;
    let _ = bytes;
    Some((
        strip_prefix_dir(&s[..idx], "a/"),
        strip_prefix_dir(&s[idx + 1..], "b/"),
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
) -> Result<crate::model::ChangeRequest, Problem> {
    use crate::model::{Change, ChangeRequest, SCHEMA_V1, sha256_hex};
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
        priority: crate::model::DEFAULT_PRIORITY,
        base: None,
        target: None,
        file_targets,
        changes,
        checks: checks.to_vec(),
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
        assert_eq!(err.code, "patch.hunk_count");
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
            "patch.not_a_diff"
        );
        assert_eq!(parse("").expect_err("empty").code, "patch.not_a_diff");
    }

    #[test]
    fn quoted_paths() {
        let diff = "diff --git \"a/t\\303\\251st\" \"b/t\\303\\251st\"\nindex 1..2 100644\n--- \"a/t\\303\\251st\"\n+++ \"b/t\\303\\251st\"\n@@ -1 +1 @@\n-a\n+b\n";
        let files = parse(diff).expect("parses");
        assert_eq!(files[0].path(), "tést");
    }
}
