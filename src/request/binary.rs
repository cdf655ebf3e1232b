//! Reading and applying the `GIT binary patch` blocks of `git diff --binary`.
//!
//! [`parse`] turns the text of one binary file section (see [`crate::request::patch::FilePatch::text`])
//! into its forward hunk and, when present, the reverse one, each inflated; [`apply`] makes the
//! new content from a hunk and the old content; [`declared`] reads only what the hunks announce
//! (their sizes, and a delta's result size) without inflating them. None touches a repository,
//! and none panics on arbitrary input: what they cannot read they report as a [`Problem`].
//!
//! A few hundred kilobytes of patch can announce and inflate to hundreds of megabytes (zlib
//! compresses a run of one byte about 1000:1). So every function that produces data takes a
//! cap: a hunk that announces more is refused before anything is inflated (`limit.file_bytes`),
//! inflating stops at the announced size, and a delta's result is bounded by the size it
//! announces and by the cap before a byte of it is written.
//!
//! The format, as git writes it:
//!
//! ```text
//! GIT binary patch
//! literal 12          (or `delta 12`: the inflated size of the hunk's data)
//! <base85 lines>      first char: decoded bytes on the line (A–Z = 1–26, a–z = 27–52)
//!                     a blank line ends the hunk; the reverse hunk may follow
//! ```
//!
//! The decoded bytes are one zlib stream. A `literal` hunk inflates to the file itself; a
//! `delta` hunk to a pack delta (gitformat-pack(5), "Deltified representation") against the
//! other side's content.

use crate::code::Code;
use crate::error::Problem;

/// What a hunk's inflated data is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HunkKind {
    /// The whole content of the result.
    Literal,
    /// A pack delta against the content the hunk applies to.
    Delta,
}

/// One `literal`/`delta` hunk, inflated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryHunk {
    pub kind: HunkKind,
    /// The inflated size the hunk header announces (always `data.len()`).
    pub size: usize,
    /// The inflated data.
    pub data: Vec<u8>,
}

/// A binary file section: the hunk from old to new and, when the diff carries it, the hunk
/// from new back to old.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryPatch {
    pub forward: BinaryHunk,
    pub reverse: Option<BinaryHunk>,
}

const HINT_NO_DATA: &str =
    "produce the patch with `git diff --binary` so that it carries the file's content";
const HINT_CORRUPT: &str =
    "do not edit or re-wrap binary patches; regenerate it with `git diff --binary`";
const HINT_MISMATCH: &str =
    "the file changed since the patch was made; regenerate it against the current target";

/// Git's base85 alphabet (base85.c), in digit order.
const ALPHABET: &[u8; 85] =
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$%&()*+-;<=>?@^_`{|}~";

/// Digit value + 1 of each byte in [`ALPHABET`], 0 for bytes outside it.
const DIGITS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        t[ALPHABET[i] as usize] = i as u8 + 1;
        i += 1;
    }
    t
};

/// Upper bound on output buffer growth per inflate step.
const CHUNK: usize = 64 * 1024;

/// The code of a hunk or a result larger than the cap.
pub const TOO_LARGE: Code = Code::LimitFileBytes;

fn corrupt(message: impl Into<String>) -> Problem {
    Problem::new(Code::PatchBinaryCorrupt, message, HINT_CORRUPT)
}

fn too_large(what: &str, size: u64, cap: usize) -> Problem {
    Problem::new(
        TOO_LARGE,
        format!("{what} {size} bytes, more than the {cap} a file may have ([limits] file_bytes)"),
        "large binary files do not belong in a change request; add them by hand, or raise [limits] file_bytes in the target's policy",
    )
}

/// What one hunk announces, read without inflating it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Declared {
    pub kind: HunkKind,
    /// The size its header announces (of the file, or of the delta).
    pub size: u64,
    /// For a delta, the sizes of its source and of its result that its own header announces
    /// (`None` when the delta is too short to hold them; applying it fails).
    pub source: Option<u64>,
    pub result: Option<u64>,
    /// Whether this is the forward hunk (the reverse one follows it).
    pub forward: bool,
    /// 1-based line of the hunk header within the section.
    pub line: usize,
}

impl Declared {
    /// The size of the file the hunk produces, as far as it announces it.
    pub fn produces(&self) -> u64 {
        match self.kind {
            HunkKind::Literal => self.size,
            HunkKind::Delta => self.result.unwrap_or(0),
        }
    }
}

fn trim_eol(l: &str) -> &str {
    l.strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(l)
}

/// Parse the text of one file section (headers included) and inflate its binary hunks, none
/// to more than `cap` bytes.
///
/// Problems carry the 1-based line within `section`: `patch.binary_no_data` for the
/// `Binary files … differ` form, `patch.binary_corrupt` for anything unreadable,
/// `limit.file_bytes` for a hunk that announces more than `cap` bytes (nothing of it is
/// inflated then).
pub fn parse(section: &str, cap: usize) -> Result<BinaryPatch, Problem> {
    let (lines, start) = hunks_start(section)?;
    let mut i = start;
    let Some(forward) = read_hunk(&lines, &mut i)? else {
        return Err(no_hunk(i));
    };
    let forward = forward.inflate(cap)?;
    // Whatever follows the reverse hunk (a mail signature, say) is not ours to judge.
    let reverse = match read_hunk(&lines, &mut i)? {
        Some(h) => Some(h.inflate(cap)?),
        None => None,
    };
    Ok(BinaryPatch { forward, reverse })
}

/// The forward hunk only, inflated to at most `cap` bytes: what applying needs. The reverse
/// hunk is not inflated (nor checked).
pub fn parse_forward(section: &str, cap: usize) -> Result<BinaryHunk, Problem> {
    let (lines, start) = hunks_start(section)?;
    let mut i = start;
    match read_hunk(&lines, &mut i)? {
        Some(h) => h.inflate(cap),
        None => Err(no_hunk(i)),
    }
}

/// What the section's hunks announce, forward first, without inflating more than a delta's
/// header: cheap enough to run on every submitted request.
pub fn declared(section: &str) -> Result<Vec<Declared>, Problem> {
    let (lines, start) = hunks_start(section)?;
    let mut i = start;
    let mut out = Vec::with_capacity(2);
    while out.len() < 2 {
        // An unreadable reverse hunk does not hide what the forward one announces.
        let h = match read_hunk(&lines, &mut i) {
            Ok(Some(h)) => h,
            Ok(None) => break,
            Err(e) if out.is_empty() => return Err(e),
            Err(_) => break,
        };
        let sizes = match h.kind {
            HunkKind::Literal => None,
            HunkKind::Delta => delta_sizes(&h.deflated),
        };
        out.push(Declared {
            kind: h.kind,
            size: h.size as u64,
            source: sizes.map(|(s, _)| s),
            result: sizes.map(|(_, t)| t),
            forward: out.is_empty(),
            line: h.header_line,
        });
    }
    if out.is_empty() {
        return Err(no_hunk(i));
    }
    Ok(out)
}

fn no_hunk(i: usize) -> Problem {
    corrupt("`GIT binary patch` is not followed by a `literal` or `delta` line").line(i + 1)
}

/// The section's lines and the index of the line after `GIT binary patch`.
fn hunks_start(section: &str) -> Result<(Vec<&str>, usize), Problem> {
    let lines: Vec<&str> = section.split_inclusive('\n').map(trim_eol).collect();
    let Some(start) = lines.iter().position(|l| *l == "GIT binary patch") else {
        if let Some(i) = lines
            .iter()
            .position(|l| l.starts_with("Binary files ") && l.ends_with(" differ"))
        {
            return Err(Problem::new(
                Code::PatchBinaryNoData,
                format!("`{}` carries no data to apply", lines[i]),
                HINT_NO_DATA,
            )
            .line(i + 1));
        }
        return Err(corrupt("the section has no `GIT binary patch` line"));
    };
    Ok((lines, start + 1))
}

/// One hunk as written: its header and its data, base85-decoded but still deflated.
struct RawHunk {
    kind: HunkKind,
    size: usize,
    header_line: usize,
    deflated: Vec<u8>,
}

impl RawHunk {
    fn inflate(self, cap: usize) -> Result<BinaryHunk, Problem> {
        if self.size > cap {
            let what = match self.kind {
                HunkKind::Literal => "the binary file announces",
                HunkKind::Delta => "the binary delta announces",
            };
            return Err(too_large(what, self.size as u64, cap).line(self.header_line));
        }
        let data = if self.size == 0 && self.deflated.is_empty() {
            Vec::new()
        } else {
            inflate(&self.deflated, self.size).map_err(|m| corrupt(m).line(self.header_line))?
        };
        Ok(BinaryHunk {
            kind: self.kind,
            size: self.size,
            data,
        })
    }
}

/// Read one hunk starting at `lines[*i]`; `None` if that line is not a hunk header. Leaves `*i`
/// after the blank line that ends the hunk.
fn read_hunk(lines: &[&str], i: &mut usize) -> Result<Option<RawHunk>, Problem> {
    let Some(header) = lines.get(*i) else {
        return Ok(None);
    };
    let (kind, size) = if let Some(s) = header.strip_prefix("literal ") {
        (HunkKind::Literal, s)
    } else if let Some(s) = header.strip_prefix("delta ") {
        (HunkKind::Delta, s)
    } else {
        return Ok(None);
    };
    let header_line = *i + 1;
    let size: usize = (!size.is_empty() && size.bytes().all(|b| b.is_ascii_digit()))
        .then(|| size.parse().ok())
        .flatten()
        .ok_or_else(|| corrupt(format!("cannot read the size in `{header}`")).line(header_line))?;
    *i += 1;
    let mut deflated = Vec::new();
    // The end of the section ends the hunk too (a lost trailing blank line); a hunk cut short
    // anywhere else fails the inflate or the size check.
    while let Some(l) = lines.get(*i) {
        *i += 1;
        if l.is_empty() {
            break;
        }
        decode_line(l, &mut deflated).map_err(|m| corrupt(m).line(*i))?;
    }
    Ok(Some(RawHunk {
        kind,
        size,
        header_line,
        deflated,
    }))
}

/// The source and result sizes a deflated delta starts with, inflating only its first bytes.
fn delta_sizes(deflated: &[u8]) -> Option<(u64, u64)> {
    // Two varints of at most 10 bytes each.
    let mut head = [0u8; 20];
    let mut z = gix_zlib::Decompress::new();
    let mut filled = 0usize;
    let mut consumed = 0usize;
    while filled < head.len() {
        let (in_before, out_before) = (z.total_in(), z.total_out());
        let status = z
            .decompress(
                deflated.get(consumed..).unwrap_or_default(),
                &mut head[filled..],
                gix_zlib::FlushDecompress::None,
            )
            .ok()?;
        let read = usize::try_from(z.total_in() - in_before).ok()?;
        let written = usize::try_from(z.total_out() - out_before).ok()?;
        consumed += read;
        filled += written;
        if matches!(status, gix_zlib::Status::StreamEnd) || (read == 0 && written == 0) {
            break;
        }
    }
    let head = &head[..filled];
    let mut pos = 0;
    let source = varint(head, &mut pos).ok()?;
    let target = varint(head, &mut pos).ok()?;
    Some((source, target))
}

/// Decode one base85 line (length char + data) and append its bytes to `out`.
fn decode_line(line: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let bytes = line.as_bytes();
    let len = match bytes.first().copied().unwrap_or(0) {
        c @ b'A'..=b'Z' => usize::from(c - b'A') + 1,
        c @ b'a'..=b'z' => usize::from(c - b'a') + 27,
        _ => {
            return Err(format!(
                "a base85 line must start with a length character A–Z or a–z: `{}`",
                line.chars().take(20).collect::<String>()
            ));
        }
    };
    let body = &bytes[1..];
    let groups = len.div_ceil(4);
    if body.len() != groups * 5 {
        return Err(format!(
            "a base85 line of {len} bytes must have {} characters after its length, not {}",
            groups * 5,
            body.len()
        ));
    }
    let mut decoded = Vec::with_capacity(groups * 4);
    for group in body.chunks_exact(5) {
        let mut acc: u32 = 0;
        for &c in group {
            let digit = DIGITS[usize::from(c)]
                .checked_sub(1)
                .ok_or_else(|| format!("`{}` is not a base85 character", char::from(c)))?;
            acc = acc
                .checked_mul(85)
                .and_then(|a| a.checked_add(u32::from(digit)))
                .ok_or_else(|| "a base85 group overflows 32 bits".to_owned())?;
        }
        decoded.extend_from_slice(&acc.to_be_bytes());
    }
    out.extend_from_slice(&decoded[..len]);
    Ok(())
}

/// Inflate one zlib stream that must yield exactly `size` bytes.
fn inflate(input: &[u8], size: usize) -> Result<Vec<u8>, String> {
    let mut z = gix_zlib::Decompress::new();
    // `size` comes from the patch: do not trust it for an allocation up front.
    let mut out = Vec::with_capacity(size.min(CHUNK));
    let mut buf = vec![0u8; CHUNK];
    let mut consumed = 0usize;
    loop {
        let (in_before, out_before) = (z.total_in(), z.total_out());
        let status = z
            .decompress(
                input.get(consumed..).unwrap_or_default(),
                &mut buf,
                gix_zlib::FlushDecompress::None,
            )
            .map_err(|e| format!("the data is not a valid zlib stream ({e})"))?;
        let read = usize::try_from(z.total_in() - in_before).unwrap_or(usize::MAX);
        let written = usize::try_from(z.total_out() - out_before).unwrap_or(usize::MAX);
        consumed = consumed.saturating_add(read);
        let chunk = buf.get(..written).unwrap_or_default();
        if out.len().saturating_add(chunk.len()) > size {
            return Err(format!(
                "the data inflates to more than the {size} bytes the hunk header announces"
            ));
        }
        out.extend_from_slice(chunk);
        match status {
            gix_zlib::Status::StreamEnd => break,
            _ if read == 0 && written == 0 => {
                return Err("the zlib stream is cut short".to_owned());
            }
            _ => {}
        }
    }
    if out.len() != size {
        return Err(format!(
            "the data inflates to {} bytes, but the hunk header announces {size}",
            out.len()
        ));
    }
    Ok(out)
}

/// Produce the new content from `old` (ignored for a [`HunkKind::Literal`] hunk), at most `cap`
/// bytes of it.
///
/// `patch.binary_mismatch` when a delta was made against content of another size than `old`;
/// `patch.binary_corrupt` when the delta itself is unreadable (bad opcode, a copy outside
/// `old`, a result of another size than it announces); `limit.file_bytes` when the result
/// would be larger than `cap` (refused before it is built).
pub fn apply(hunk: &BinaryHunk, old: &[u8], cap: usize) -> Result<Vec<u8>, Problem> {
    match hunk.kind {
        HunkKind::Literal if hunk.data.len() > cap => Err(too_large(
            "the binary file has",
            hunk.data.len() as u64,
            cap,
        )),
        HunkKind::Literal => Ok(hunk.data.clone()),
        HunkKind::Delta => apply_delta(&hunk.data, old, cap),
    }
}

/// [`apply`], consuming the hunk: a literal's data becomes the result without a copy.
pub fn apply_owned(hunk: BinaryHunk, old: &[u8], cap: usize) -> Result<Vec<u8>, Problem> {
    match hunk.kind {
        HunkKind::Literal if hunk.data.len() <= cap => Ok(hunk.data),
        _ => apply(&hunk, old, cap),
    }
}

/// A little-endian base-128 size, as a delta's header holds.
fn varint(d: &[u8], pos: &mut usize) -> Result<u64, Problem> {
    let mut value: u64 = 0;
    let mut shift = 0u32;
    loop {
        let b = *d
            .get(*pos)
            .ok_or_else(|| corrupt("the delta ends inside its header"))?;
        *pos += 1;
        if shift > 63 || (shift > 0 && u64::from(b & 0x7f) >> (64 - shift) != 0) {
            return Err(corrupt("a size in the delta header overflows 64 bits"));
        }
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
    }
}

fn apply_delta(d: &[u8], old: &[u8], cap: usize) -> Result<Vec<u8>, Problem> {
    let mut pos = 0;
    let source = varint(d, &mut pos)?;
    let target = varint(d, &mut pos)?;
    if source != old.len() as u64 {
        return Err(Problem::new(
            Code::PatchBinaryMismatch,
            format!(
                "the delta was made against {source} bytes, but the file has {}",
                old.len()
            ),
            HINT_MISMATCH,
        ));
    }
    let target = match usize::try_from(target) {
        Ok(t) if t <= cap => t,
        _ => {
            return Err(too_large(
                "the binary delta's result announces",
                target,
                cap,
            ));
        }
    };
    // Every byte of the result comes from `old` or the delta, but copies may repeat: bound the
    // up-front allocation, not the result.
    let mut out = Vec::with_capacity(target.min(old.len().saturating_add(d.len())));
    while let Some(&op) = d.get(pos) {
        pos += 1;
        if op & 0x80 != 0 {
            // Copy: bits 0–3 select offset bytes, bits 4–6 size bytes, least significant first.
            let mut offset: usize = 0;
            let mut size: usize = 0;
            for bit in 0..7 {
                if op & (1 << bit) == 0 {
                    continue;
                }
                let b = usize::from(
                    *d.get(pos)
                        .ok_or_else(|| corrupt("the delta ends inside a copy instruction"))?,
                );
                pos += 1;
                if bit < 4 {
                    offset |= b << (8 * bit);
                } else {
                    size |= b << (8 * (bit - 4));
                }
            }
            if size == 0 {
                size = 0x10000;
            }
            let end = offset.checked_add(size).filter(|&e| e <= old.len());
            let Some(end) = end else {
                return Err(corrupt(format!(
                    "the delta copies bytes {offset}..{} of a {}-byte source",
                    offset as u128 + size as u128,
                    old.len()
                )));
            };
            if out.len() + size > target {
                return Err(corrupt(format!(
                    "the delta writes more than the {target} bytes it announces"
                )));
            }
            out.extend_from_slice(&old[offset..end]);
        } else if op != 0 {
            let n = usize::from(op);
            let bytes = d
                .get(pos..pos + n)
                .ok_or_else(|| corrupt("the delta ends inside an insert instruction"))?;
            pos += n;
            if out.len() + n > target {
                return Err(corrupt(format!(
                    "the delta writes more than the {target} bytes it announces"
                )));
            }
            out.extend_from_slice(bytes);
        } else {
            return Err(corrupt("the delta holds the reserved instruction 0"));
        }
    }
    if out.len() != target {
        return Err(corrupt(format!(
            "the delta produces {} bytes, but announces {target}",
            out.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(kind: HunkKind, data: &[u8]) -> BinaryHunk {
        BinaryHunk {
            kind,
            size: data.len(),
            data: data.to_vec(),
        }
    }

    #[test]
    fn copies_and_inserts() {
        // source 5, target 7: copy 3 bytes from offset 1, insert "xyz", copy 1 from offset 0.
        let d = [
            5,
            7,
            0x80 | 0x01 | 0x10,
            1,
            3,
            3,
            b'x',
            b'y',
            b'z',
            0x80 | 0x10,
            1,
        ];
        let out = apply(&delta(HunkKind::Delta, &d), b"abcde", usize::MAX).expect("applies");
        assert_eq!(out, b"bcdxyza");
    }

    #[test]
    fn copy_size_zero_means_64k() {
        let old = vec![7u8; 0x10000];
        // source 0x10000 = varint 80 80 04; target the same.
        let d = [0x80, 0x80, 0x04, 0x80, 0x80, 0x04, 0x80];
        assert_eq!(
            apply(&delta(HunkKind::Delta, &d), &old, usize::MAX).expect("applies"),
            old
        );
    }

    #[test]
    fn delta_errors() {
        let code = |d: &[u8], old: &[u8]| {
            apply(&delta(HunkKind::Delta, d), old, 1 << 20)
                .expect_err("refused")
                .code
        };
        assert_eq!(code(&[4, 1, 1, b'x'], b"abc"), Code::PatchBinaryMismatch);
        assert_eq!(code(&[3, 1, 0], b"abc"), Code::PatchBinaryCorrupt);
        assert_eq!(code(&[3, 2, 0x91, 2, 2], b"abc"), Code::PatchBinaryCorrupt);
        assert_eq!(code(&[3, 1, 2, b'x'], b"abc"), Code::PatchBinaryCorrupt);
        assert_eq!(code(&[3, 2, 1, b'x'], b"abc"), Code::PatchBinaryCorrupt);
        assert_eq!(code(&[3], b"abc"), Code::PatchBinaryCorrupt);
        assert_eq!(
            code(
                &[
                    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f
                ],
                b""
            ),
            Code::PatchBinaryCorrupt
        );
    }

    #[test]
    fn base85_lines() {
        let mut out = Vec::new();
        // "0000" is 0u32 for 5 zero digits.
        decode_line("A00000", &mut out).expect("decodes");
        assert_eq!(out, [0]);
        assert!(decode_line("A0000", &mut out).is_err());
        assert!(decode_line("!00000", &mut out).is_err());
        assert!(decode_line("A0000\"", &mut out).is_err());
        // 85^5 - 1 overflows u32.
        assert!(decode_line("D~~~~~", &mut out).is_err());
    }
}
