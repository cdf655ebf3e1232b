//! What a request may cost: the sizes of the files it changes and produces, and their lines.
//!
//! A patch is small, but what it makes need not be: a binary hunk of a few hundred kilobytes
//! inflates to hundreds of megabytes, a delta announces any result size it likes, a text patch
//! may change a file of millions of lines, and 500 small changes may each produce a large
//! file. The policy's `[limits]` bound each (`file_bytes`, `file_lines`, `inflated_bytes`).
//!
//! They are enforced twice. [`change_problems`] runs with the other checks against the target
//! (at enqueue, by `validate`, and again when a worker leases the request) and reads only what
//! is cheap: what binary hunks announce (a delta's header is the only data inflated), the hunk
//! headers' line numbers, and the sizes of the target's files from their object headers. The
//! apply engine ([`crate::request::apply`]) then holds every file to the same limits as it reads and
//! builds it, before allocating for it: what a request only reveals when applied (a delta
//! whose announced size lies, a merge result) is refused there, as a dead letter of class
//! `apply` with the same codes.

use crate::code::Code;
use crate::error::Problem;
use crate::request::binary;
use crate::request::model::{Change, Operation};
use crate::request::patch::FilePatch;
use crate::request::view::TreeView;

/// Size limits: generous enough for real work, tight enough to stop a runaway agent. The
/// policy's `[limits]` changes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub change_bytes: usize,
    pub request_bytes: usize,
    pub files: usize,
    /// The largest file a request may change or produce (what a binary patch inflates to, a
    /// text patch's result, the file at the target it changes).
    pub file_bytes: usize,
    /// The most lines of a file a text patch may change or produce.
    pub file_lines: usize,
    /// The files a request produces, added up.
    pub inflated_bytes: usize,
}

pub const DEFAULT_LIMITS: Limits = Limits {
    change_bytes: 1 << 20,
    request_bytes: 8 << 20,
    files: 500,
    file_bytes: 50 << 20,
    file_lines: 1_000_000,
    inflated_bytes: 200 << 20,
};

pub const FILE_BYTES: Code = Code::LimitFileBytes;
pub const FILE_LINES: Code = Code::LimitFileLines;
pub const INFLATED_BYTES: Code = Code::LimitInflatedBytes;
/// Not a policy limit: the apply engine's bound on searching for hunks far from where they
/// say they are (see [`crate::request::apply::search_budget`]).
pub const HUNK_SEARCH: Code = Code::LimitHunkSearch;

const HINT_FILE: &str = "large or generated files do not belong in a change request; change them by hand, or raise the limit in [limits] of the target's policy";
const HINT_TOTAL: &str =
    "split the work into several requests, or raise [limits] inflated_bytes in the target's policy";

/// Lines of `data` as git counts them (a last line without a newline counts).
pub fn count_lines(data: &[u8]) -> usize {
    let n = data.iter().filter(|&&c| c == b'\n').count();
    if data.last().is_some_and(|&c| c != b'\n') {
        n + 1
    } else {
        n
    }
}

pub fn file_bytes(what: String, size: u64, limits: &Limits) -> Problem {
    Problem::new(
        FILE_BYTES,
        format!(
            "{what} {size} bytes; a request may change or produce files of at most {} ([limits] file_bytes)",
            limits.file_bytes
        ),
        HINT_FILE,
    )
}

pub fn file_lines(what: String, lines: u64, limits: &Limits) -> Problem {
    Problem::new(
        FILE_LINES,
        format!(
            "{what} {lines} lines; a text patch may change or produce files of at most {} ([limits] file_lines)",
            limits.file_lines
        ),
        HINT_FILE,
    )
}

pub fn inflated_bytes(total: u64, limits: &Limits) -> Problem {
    Problem::new(
        INFLATED_BYTES,
        format!(
            "the request's files would total at least {total} bytes; at most {} per request ([limits] inflated_bytes)",
            limits.inflated_bytes
        ),
        HINT_TOTAL,
    )
}

/// The cheap checks of one change (its patch parsed as `f`) against the limits; adds to
/// `produced` what the change is known to produce, in bytes (for the request's total, see
/// [`total_problem`]). Lines are lines of the change's patch.
pub fn change_problems(
    f: &FilePatch,
    c: &Change,
    limits: &Limits,
    tree: Option<&dyn TreeView>,
    produced: &mut u64,
) -> Vec<Problem> {
    let mut out = Vec::new();
    let cap = limits.file_bytes as u64;
    if f.binary {
        // An unreadable section is refused when applied (`apply.binary`); here only what the
        // hunks announce counts.
        let Ok(hunks) = binary::declared(&f.text) else {
            return out;
        };
        for h in &hunks {
            let line = f.line - 1 + h.line;
            let side = if h.forward { "" } else { " (reverse)" };
            if h.size > cap {
                out.push(
                    file_bytes(format!("the binary hunk{side} announces"), h.size, limits)
                        .line(line),
                );
            }
            if h.kind == binary::HunkKind::Delta {
                if let Some(result) = h.result.filter(|&r| r > cap) {
                    out.push(
                        file_bytes(format!("the binary delta{side} produces"), result, limits)
                            .line(line),
                    );
                }
                if let Some(source) = h.source.filter(|&s| s > cap) {
                    out.push(
                        file_bytes(format!("the binary delta{side} applies to"), source, limits)
                            .line(line),
                    );
                }
            }
            if h.forward {
                *produced = produced.saturating_add(h.produces());
            }
        }
        return out;
    }
    // Text: the hunks' own line numbers and counts.
    let max_lines = limits.file_lines as u64;
    for h in &f.hunks {
        let old_end = (h.old_start as u64).saturating_add(h.old_count as u64);
        let new_end = (h.new_start as u64).saturating_add(h.new_count as u64);
        let end = old_end.max(new_end).saturating_sub(1);
        if end > max_lines {
            out.push(
                file_lines(
                    format!("the hunk reaches line {end}, so the file has at least"),
                    end,
                    limits,
                )
                .line(h.line),
            );
        }
    }
    // Bytes the hunks add and remove (without their leading `+`/`-`).
    let (mut added, mut removed) = (0u64, 0u64);
    for h in &f.hunks {
        for l in f.text[h.body.clone()].split_inclusive('\n') {
            match l.as_bytes().first() {
                Some(b'+') => added += l.len() as u64 - 1,
                Some(b'-') => removed += l.len() as u64 - 1,
                _ => {}
            }
        }
    }
    // The file the patch changes: its size at the target.
    let old_path = c.from.as_deref().unwrap_or(&c.path);
    // (A pure rename moves the blob: nothing is read or produced.)
    let target_size = if c.operation == Operation::Add || f.hunks.is_empty() {
        None
    } else {
        tree.and_then(|t| t.size(old_path))
    };
    // What the result will have: the file at the target, less what the patch removes, plus
    // what it adds (a new file: what it adds).
    let result = target_size
        .unwrap_or(0)
        .saturating_sub(removed)
        .saturating_add(added);
    if let Some(size) = target_size
        && size > cap
    {
        out.push(file_bytes(format!("'{old_path}' at the target has"), size, limits).line(f.line));
    } else if result > cap {
        out.push(file_bytes(format!("'{}' would have", c.path), result, limits).line(f.line));
    }
    if c.operation != Operation::Delete {
        *produced = produced.saturating_add(result);
    }
    out
}

/// The request's total, after [`change_problems`] of every change.
pub fn total_problem(produced: u64, limits: &Limits) -> Option<Problem> {
    (produced > limits.inflated_bytes as u64)
        .then(|| inflated_bytes(produced, limits).at("/changes"))
}
