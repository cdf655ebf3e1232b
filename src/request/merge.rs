//! git's 3-way merge of text, with the rules `git apply --3way` merges by.
//!
//! `git apply --3way` merges a file with git's low-level merge and its default options: xdiff's
//! Myers diff of the base against each side, *without* the indent heuristic (that heuristic is
//! only the default for diff output), at the "zealous" level and in the `merge` conflict style.
//! A gate must be at least as conservative as git, so this module decides clean or conflicted
//! exactly as git does, and writes the same clean result:
//!
//! - each side's changes are the hunks of a Myers diff against the base, their ambiguous
//!   placements settled by sliding as git does without a heuristic (down as far as possible,
//!   or to line up with a change on the other side);
//! - a change of one side and a change of the other conflict when their ranges in the base
//!   overlap **or touch** (no unchanged base line between them): an insertion right before,
//!   after or inside a range the other side changed is a conflict; the same change made by
//!   both sides is not;
//! - a conflict whose two sides end up with the same lines is resolved (git's "zealous" level);
//!   otherwise the lines both sides agree on are moved out of the conflict, which is reported
//!   with `<<<<<<< ours` / `=======` / `>>>>>>> theirs` markers.
//!
//! (gix-merge's text driver, used before, places insertions with the indent heuristic: in a
//! `Cargo.lock` that moved a new block one line away from the other side's change, and a merge
//! that git calls a conflict came out clean.)

use std::ops::Range;

use imara_diff::{Algorithm, Diff, InternedInput, NoSliderHeuristic, Token};

/// The result of a 3-way content merge.
pub enum Merged {
    Clean(Vec<u8>),
    /// Merged text with conflict markers (empty for binary content).
    Conflict(Vec<u8>),
}

/// git's 3-way merge of file contents (the `merge` conflict style, labels `ours`/`theirs`);
/// binary content (a NUL in the first 8000 bytes) always conflicts, as git's binary driver
/// does.
pub fn merge_text(base: &[u8], ours: &[u8], theirs: &[u8]) -> Merged {
    if is_binary(base) || is_binary(ours) || is_binary(theirs) {
        return Merged::Conflict(Vec::new());
    }
    let mut input = InternedInput::new(lines(base), lines(ours));
    let ours_t = std::mem::take(&mut input.after);
    input.update_after(lines(theirs));
    let theirs_t = std::mem::take(&mut input.after);
    let text = Text {
        interner: &input.interner,
        base: &input.before,
        ours: &ours_t,
        theirs: &theirs_t,
    };
    let n = input.interner.num_tokens();
    let d1 = hunks(text.base, text.ours, n);
    let d2 = hunks(text.base, text.theirs, n);
    // Only one side changed anything: that side is the result.
    if d1.is_empty() {
        return Merged::Clean(theirs.to_vec());
    }
    if d2.is_empty() {
        return Merged::Clean(ours.to_vec());
    }
    let mut regions = combine(&text, &d1, &d2);
    refine(&text, &mut regions, n);
    simplify(&mut regions);
    let conflicted = regions.iter().any(|r| r.take == Take::Conflict);
    let out = render(&text, &regions);
    if conflicted {
        Merged::Conflict(out)
    } else {
        Merged::Clean(out)
    }
}

/// git's test for binary content: a NUL in the first 8000 bytes.
pub fn is_binary(data: &[u8]) -> bool {
    data[..data.len().min(8000)].contains(&0)
}

fn lines(data: &[u8]) -> imara_diff::sources::ByteLines<'_> {
    imara_diff::sources::byte_lines(data)
}

/// The three files as interned lines.
struct Text<'a> {
    interner: &'a imara_diff::Interner<&'a [u8]>,
    base: &'a [Token],
    ours: &'a [Token],
    theirs: &'a [Token],
}

/// The changed ranges of a diff from `before` to `after`: Myers, sliders settled without a
/// heuristic (removals first, so that additions line up with them), as git's merge does.
fn hunks(before: &[Token], after: &[Token], num_tokens: u32) -> Vec<imara_diff::Hunk> {
    let mut diff = Diff::default();
    diff.compute_with(Algorithm::Myers, before, after, num_tokens);
    diff.postprocess_with(before, after, NoSliderHeuristic);
    diff.hunks().collect()
}

/// What the merge takes for a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Take {
    /// Only our side changed it: our lines (already in `ours`).
    Ours,
    /// Only their side changed it: their lines.
    Theirs,
    /// Both changed it differently.
    Conflict,
    /// Both made the same change: our lines.
    Same,
}

/// One region of the merge: where it is in the base, in ours and in theirs (line indices).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Region {
    take: Take,
    base: Range<i64>,
    ours: Range<i64>,
    theirs: Range<i64>,
}

fn range(r: &Range<u32>) -> Range<i64> {
    i64::from(r.start)..i64::from(r.end)
}

/// Walk both sides' hunks in base order. A hunk that ends before the other side's next hunk
/// begins, with at least one base line between them, is taken alone; hunks that overlap or
/// touch form a conflict (unless they are the same change). A region that touches the previous
/// one in our or their lines joins it, and becomes a conflict if the two were taken from
/// different sides.
fn combine(text: &Text<'_>, d1: &[imara_diff::Hunk], d2: &[imara_diff::Hunk]) -> Vec<Region> {
    let mut out: Vec<Region> = Vec::new();
    let (mut a, mut b) = (d1.iter().peekable(), d2.iter().peekable());
    while let (Some(x), Some(y)) = (a.peek(), b.peek()) {
        let (xb, xa) = (range(&x.before), range(&x.after));
        let (yb, ya) = (range(&y.before), range(&y.after));
        if xb.end < yb.start {
            // Their lines at this base position are the base's, shifted by their changes so
            // far (those before `y`).
            let t = ya.start - yb.start + xb.start;
            append(
                &mut out,
                Take::Ours,
                xb.clone(),
                xa,
                t..t + (xb.end - xb.start),
            );
            a.next();
            continue;
        }
        if yb.end < xb.start {
            let o = xa.start - xb.start + yb.start;
            append(
                &mut out,
                Take::Theirs,
                yb.clone(),
                o..o + (yb.end - yb.start),
                ya,
            );
            b.next();
            continue;
        }
        let same = xb == yb
            && xa.end - xa.start == ya.end - ya.start
            && text.ours[to_usize(&xa)] == text.theirs[to_usize(&ya)];
        if !same {
            // The conflict spans both hunks: each side's range grows by what the other
            // side's hunk covers beyond its own, at the start and at the end.
            let start = xb.start.min(yb.start);
            let end = xb.end.max(yb.end);
            let ours = xa.start - (xb.start - start)..xa.end + (end - xb.end);
            let theirs = ya.start - (yb.start - start)..ya.end + (end - yb.end);
            append(&mut out, Take::Conflict, start..end, ours, theirs);
        }
        // Step past whichever hunk ends first (both when they end together).
        let (x_end, y_end) = (xb.end, yb.end);
        if x_end >= y_end {
            b.next();
        }
        if y_end >= x_end {
            a.next();
        }
    }
    let (nb, no, nt) = (
        text.base.len() as i64,
        text.ours.len() as i64,
        text.theirs.len() as i64,
    );
    for x in a {
        let (xb, xa) = (range(&x.before), range(&x.after));
        let t = xb.start + nt - nb;
        append(
            &mut out,
            Take::Ours,
            xb.clone(),
            xa,
            t..t + (xb.end - xb.start),
        );
    }
    for y in b {
        let (yb, ya) = (range(&y.before), range(&y.after));
        let o = yb.start + no - nb;
        append(
            &mut out,
            Take::Theirs,
            yb.clone(),
            o..o + (yb.end - yb.start),
            ya,
        );
    }
    out
}

fn append(
    out: &mut Vec<Region>,
    take: Take,
    base: Range<i64>,
    ours: Range<i64>,
    theirs: Range<i64>,
) {
    if let Some(last) = out.last_mut()
        && (ours.start <= last.ours.end || theirs.start <= last.theirs.end)
    {
        if last.take != take {
            last.take = Take::Conflict;
        }
        last.base.end = base.end;
        last.ours.end = ours.end;
        last.theirs.end = theirs.end;
        return;
    }
    out.push(Region {
        take,
        base,
        ours,
        theirs,
    });
}

fn to_usize(r: &Range<i64>) -> Range<usize> {
    usize::try_from(r.start).unwrap_or(0)..usize::try_from(r.end).unwrap_or(0)
}

/// git's "zealous" level: diff our lines of each conflict against theirs. Identical → the
/// conflict is resolved; otherwise only the differing runs remain conflicts (a conflict with
/// an empty side is left as it is).
fn refine(text: &Text<'_>, regions: &mut Vec<Region>, num_tokens: u32) {
    let mut i = 0;
    while i < regions.len() {
        let r = regions[i].clone();
        if r.take != Take::Conflict || r.ours.is_empty() || r.theirs.is_empty() {
            i += 1;
            continue;
        }
        let ours = &text.ours[to_usize(&r.ours)];
        let theirs = &text.theirs[to_usize(&r.theirs)];
        let parts = hunks(ours, theirs, num_tokens);
        if parts.is_empty() {
            regions[i].take = Take::Same;
            i += 1;
            continue;
        }
        let pieces: Vec<Region> = parts
            .iter()
            .map(|h| Region {
                take: Take::Conflict,
                // The base range of a refined piece is not used in the `merge` style.
                base: r.base.clone(),
                ours: r.ours.start + i64::from(h.before.start)
                    ..r.ours.start + i64::from(h.before.end),
                theirs: r.theirs.start + i64::from(h.after.start)
                    ..r.theirs.start + i64::from(h.after.end),
            })
            .collect();
        let n = pieces.len();
        regions.splice(i..=i, pieces);
        i += n;
    }
}

/// Conflicts with at most 3 unchanged lines between them become one conflict (git shows the
/// few lines twice rather than a run of tiny conflicts).
fn simplify(regions: &mut Vec<Region>) {
    let mut i = 0;
    while i + 1 < regions.len() {
        let (m, next) = (&regions[i], &regions[i + 1]);
        if m.take == Take::Conflict
            && next.take == Take::Conflict
            && next.ours.start - m.ours.end <= 3
        {
            let next = regions.remove(i + 1);
            let m = &mut regions[i];
            m.ours.end = next.ours.end;
            m.theirs.end = next.theirs.end;
            m.base.end = m.base.end.max(next.base.end);
        } else {
            i += 1;
        }
    }
}

/// The merged text: our file, with their changes and the conflicts put in.
fn render(text: &Text<'_>, regions: &[Region]) -> Vec<u8> {
    let mut out = Vec::new();
    let copy = |out: &mut Vec<u8>, side: &[Token], r: Range<i64>| {
        for t in &side[to_usize(&r)] {
            out.extend_from_slice(text.interner[*t]);
        }
    };
    let mut at = 0i64;
    for r in regions {
        match r.take {
            Take::Same => continue,
            Take::Ours => copy(&mut out, text.ours, at..r.ours.end),
            Take::Theirs => {
                copy(&mut out, text.ours, at..r.ours.start);
                copy(&mut out, text.theirs, r.theirs.clone());
            }
            Take::Conflict => {
                copy(&mut out, text.ours, at..r.ours.start);
                let nl: &[u8] = if crlf(text, r) { b"\r\n" } else { b"\n" };
                let side = |out: &mut Vec<u8>, tokens: &[Token], range: Range<i64>| {
                    copy(out, tokens, range.clone());
                    if !range.is_empty() && !out.ends_with(b"\n") {
                        out.extend_from_slice(nl);
                    }
                };
                out.extend_from_slice(b"<<<<<<< ours");
                out.extend_from_slice(nl);
                side(&mut out, text.ours, r.ours.clone());
                out.extend_from_slice(b"=======");
                out.extend_from_slice(nl);
                side(&mut out, text.theirs, r.theirs.clone());
                out.extend_from_slice(b">>>>>>> theirs");
                out.extend_from_slice(nl);
            }
        }
        at = r.ours.end;
    }
    copy(&mut out, text.ours, at..text.ours.len() as i64);
    out
}

/// Whether conflict markers end in CRLF: when the lines before the conflict on both sides,
/// and the base's first line, do (git's rule).
fn crlf(text: &Text<'_>, r: &Region) -> bool {
    let ends_crlf = |side: &[Token], i: i64| -> Option<bool> {
        let i = usize::try_from(i).ok()?;
        let line: &[u8] = text.interner[*side.get(i)?];
        if i + 1 < side.len() || line.ends_with(b"\n") {
            return Some(line.ends_with(b"\r\n"));
        }
        // The last line without a newline: the line before it decides.
        let prev: &[u8] = text.interner[*side.get(i.checked_sub(1)?)?];
        Some(prev.ends_with(b"\r\n"))
    };
    let before = |side: &[Token], start: i64| ends_crlf(side, (start - 1).max(0));
    // Undecided (`None`) is passed on to the next witness; the base's first line decides last.
    before(text.ours, r.ours.start) != Some(false)
        && before(text.theirs, r.theirs.start) != Some(false)
        && ends_crlf(text.base, 0) == Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merge(base: &str, ours: &str, theirs: &str) -> (bool, String) {
        match merge_text(base.as_bytes(), ours.as_bytes(), theirs.as_bytes()) {
            Merged::Clean(o) => (true, String::from_utf8(o).expect("utf-8")),
            Merged::Conflict(o) => (false, String::from_utf8(o).expect("utf-8")),
        }
    }

    #[test]
    fn separate_changes_merge() {
        let (clean, out) = merge("a\nb\nc\nd\ne\n", "A\nb\nc\nd\ne\n", "a\nb\nc\nd\nE\n");
        assert!(clean);
        assert_eq!(out, "A\nb\nc\nd\nE\n");
    }

    #[test]
    fn adjacent_changes_conflict() {
        // Ours changes line 2, theirs line 3: no unchanged line between them.
        let (clean, out) = merge("a\nb\nc\nd\n", "a\nB\nc\nd\n", "a\nb\nC\nd\n");
        assert!(!clean, "{out}");
        // An insertion right after a changed line, too.
        let (clean, _) = merge("a\nb\nc\n", "a\nB\nc\n", "a\nb\nnew\nc\n");
        assert!(!clean);
    }

    #[test]
    fn the_same_change_on_both_sides_is_clean() {
        let (clean, out) = merge("a\nb\nc\n", "a\nB\nc\nx\n", "a\nB\nc\n");
        assert!(clean);
        assert_eq!(out, "a\nB\nc\nx\n");
    }

    #[test]
    fn conflicts_are_marked_and_refined() {
        let (clean, out) = merge("a\nb\nc\n", "a\nsame\nours\nc\n", "a\nsame\ntheirs\nc\n");
        assert!(!clean);
        assert_eq!(
            out,
            "a\nsame\n<<<<<<< ours\nours\n=======\ntheirs\n>>>>>>> theirs\nc\n"
        );
    }

    #[test]
    fn an_insertion_is_not_slid_away_from_a_change_next_to_it() {
        // Their block could be placed one line earlier (it ends with the line it follows);
        // git places it right before the lines ours changed, and calls that a conflict.
        let base = "x\n\n[[package]]\nname = \"b\"\nv = 1\n";
        let ours = "x\n\n[[package]]\nname = \"c\"\nv = 2\n";
        let theirs = "x\n\n[[package]]\nname = \"a\"\n\n[[package]]\nname = \"b\"\nv = 1\n";
        let (clean, _) = merge(base, ours, theirs);
        assert!(!clean);
    }
}
