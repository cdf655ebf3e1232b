//! Binary patches made by the real `git diff --binary` parse and apply to exactly the blobs git
//! has at the other side, in both directions; broken ones are refused with stable codes and
//! never a panic.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::LazyLock;

use crate::common;

use hyperion::Code;
use hyperion::request::binary::{self, BinaryHunk, HunkKind};
use proptest::prelude::*;

/// A cap above every file here: the limits have tests of their own below.
const CAP: usize = 64 << 20;

const CODES: [Code; 4] = [
    Code::PatchBinaryNoData,
    Code::PatchBinaryCorrupt,
    Code::PatchBinaryMismatch,
    Code::LimitFileBytes,
];

fn git(dir: &Path, args: &[&str]) -> Vec<u8> {
    common::hermetic::git_ok(dir, args, b"")
}

/// Deterministic pseudo-random bytes (xorshift64*), with NULs sprinkled in so git sees binary.
fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|i| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let b = (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8;
            if i % 61 == 0 { 0 } else { b }
        })
        .collect()
}

/// A repository with commits `A` and `B` (tags) that change binary files in every way.
struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn blob(&self, rev: &str, path: &str) -> Vec<u8> {
        git(self.path(), &["cat-file", "blob", &format!("{rev}:{path}")])
    }

    fn diff(&self, binary: bool) -> String {
        let mut args = vec!["diff", "--full-index", "--no-renames"];
        if binary {
            args.push("--binary");
        }
        args.extend(["A", "B"]);
        String::from_utf8(git(self.path(), &args)).expect("binary diffs are ASCII")
    }
}

fn write(dir: &Path, name: &str, content: &[u8]) {
    std::fs::write(dir.join(name), content).unwrap();
}

fn repo() -> Repo {
    let r = Repo {
        dir: tempfile::tempdir().unwrap(),
    };
    let d = r.path();
    git(d, &["init", "-q", "-b", "main"]);
    // Before: (name, content).
    let before: Vec<(&str, Vec<u8>)> = vec![
        ("empty.bin", Vec::new()),
        ("one.bin", vec![0]),
        ("hundred.bin", bytes(1, 100)),
        ("mid.bin", bytes(2, 70 * 1024)),
        ("big.bin", bytes(3, 1024 * 1024)),
        ("rewrite.bin", bytes(4, 70 * 1024)),
        ("gone.bin", bytes(5, 3000)),
        ("shrink.bin", bytes(6, 70 * 1024)),
        ("grow.bin", bytes(7, 100)),
    ];
    for (name, content) in &before {
        write(d, name, content);
    }
    git(d, &["add", "-A"]);
    git(d, &["commit", "-q", "-m", "A"]);
    git(d, &["tag", "A"]);

    write(d, "empty.bin", &bytes(8, 500));
    write(d, "one.bin", &[0, 1]);
    let mut hundred = bytes(1, 100);
    hundred[50] ^= 0xff;
    write(d, "hundred.bin", &hundred);
    // A small edit in the middle and an insertion: git emits a delta.
    let mut mid = bytes(2, 70 * 1024);
    mid[35_000] ^= 0x55;
    mid.splice(40_000..40_000, bytes(9, 300));
    write(d, "mid.bin", &mid);
    // Edits at both ends and in the middle of 1 MiB: copies of 64 KiB (size byte 0) and more.
    let mut big = bytes(3, 1024 * 1024);
    big[10] = 1;
    big[512 * 1024] ^= 0x0f;
    big.truncate(1000 * 1024);
    big.extend(bytes(10, 777));
    write(d, "big.bin", &big);
    write(d, "rewrite.bin", &bytes(11, 70 * 1024));
    std::fs::remove_file(d.join("gone.bin")).unwrap();
    write(d, "shrink.bin", &[]);
    let mut grow = bytes(7, 100);
    grow.extend(bytes(12, 100 * 1024));
    write(d, "grow.bin", &grow);
    write(d, "new.bin", &bytes(13, 5000));
    write(d, "new-tiny.bin", &[0]);
    git(d, &["add", "-A"]);
    git(d, &["commit", "-q", "-m", "B"]);
    git(d, &["tag", "B"]);
    r
}

static REPO: LazyLock<Repo> = LazyLock::new(repo);

fn kind_name(h: &BinaryHunk) -> &'static str {
    match h.kind {
        HunkKind::Literal => "literal",
        HunkKind::Delta => "delta",
    }
}

#[test]
fn every_section_of_a_real_binary_diff_applies_both_ways() {
    let r = &*REPO;
    let diff = r.diff(true);
    let files = hyperion::request::patch::parse(&diff).expect("git's diff parses");
    assert_eq!(files.len(), 11, "one section per changed file");
    let (mut literals, mut deltas) = (0, 0);
    for f in &files {
        assert!(f.binary, "{} is a binary section", f.path());
        let old = match &f.old_path {
            Some(p) => r.blob("A", p),
            None => Vec::new(),
        };
        let new = match &f.new_path {
            Some(p) => r.blob("B", p),
            None => Vec::new(),
        };
        let patch = binary::parse(&f.text, CAP)
            .unwrap_or_else(|p| panic!("{}: {p}\n{}", f.path(), &f.text));
        assert_eq!(patch.forward.size, patch.forward.data.len());
        let got = binary::apply(&patch.forward, &old, CAP)
            .unwrap_or_else(|p| panic!("{} ({}): {p}", f.path(), kind_name(&patch.forward)));
        assert!(
            got == new,
            "{}: forward result differs from B's blob",
            f.path()
        );
        let reverse = patch
            .reverse
            .as_ref()
            .unwrap_or_else(|| panic!("{}: git writes a reverse hunk", f.path()));
        let back = binary::apply(reverse, &new, CAP)
            .unwrap_or_else(|p| panic!("{} reverse ({}): {p}", f.path(), kind_name(reverse)));
        assert!(
            back == old,
            "{}: reverse result differs from A's blob",
            f.path()
        );
        for h in [&patch.forward, reverse] {
            match h.kind {
                HunkKind::Literal => literals += 1,
                HunkKind::Delta => deltas += 1,
            }
        }
    }
    // Both forms were really exercised, in both directions' worth of hunks.
    assert!(literals >= 4, "literal hunks: {literals}");
    assert!(deltas >= 4, "delta hunks: {deltas}");
}

#[test]
fn format_patch_mail_sections_apply_despite_the_signature() {
    let r = &*REPO;
    let mail = String::from_utf8(git(
        r.path(),
        &[
            "format-patch",
            "--stdout",
            "--full-index",
            "--binary",
            "--no-renames",
            "A..B",
        ],
    ))
    .unwrap();
    let files = hyperion::request::patch::parse(&mail).unwrap();
    assert_eq!(files.len(), 11);
    // The last section runs to the end of the mail, signature included.
    assert!(files.last().unwrap().text.contains("\n-- \n"));
    for f in &files {
        let old = f
            .old_path
            .as_ref()
            .map_or_else(Vec::new, |p| r.blob("A", p));
        let new = f
            .new_path
            .as_ref()
            .map_or_else(Vec::new, |p| r.blob("B", p));
        let patch = binary::parse(&f.text, CAP).unwrap();
        assert!(
            binary::apply(&patch.forward, &old, CAP).unwrap() == new,
            "{}",
            f.path()
        );
        assert!(binary::apply(patch.reverse.as_ref().unwrap(), &new, CAP).unwrap() == old);
    }
}

/// The section of `diff` for `path`.
fn section(diff: &str, path: &str) -> String {
    hyperion::request::patch::parse(diff)
        .unwrap()
        .into_iter()
        .find(|f| f.path() == path)
        .unwrap()
        .text
}

#[test]
fn a_diff_without_binary_data_is_refused_with_its_line() {
    let text = section(&REPO.diff(false), "mid.bin");
    let err = binary::parse(&text, CAP).expect_err("no data");
    assert_eq!(err.code, Code::PatchBinaryNoData);
    let line = text
        .lines()
        .position(|l| l.starts_with("Binary files "))
        .unwrap();
    assert_eq!(err.line, Some(line + 1));
}

fn lines_of(text: &str) -> Vec<String> {
    text.lines().map(str::to_owned).collect()
}

fn join(lines: &[String]) -> String {
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

#[test]
fn corrupt_binary_patches_name_the_line() {
    let text = section(&REPO.diff(true), "mid.bin");
    let lines = lines_of(&text);
    let header = lines.iter().position(|l| l == "GIT binary patch").unwrap() + 1;
    let first_data = header + 1;

    // A bad length character.
    let mut l = lines.clone();
    l[first_data].replace_range(0..1, "!");
    let err = binary::parse(&join(&l), CAP).expect_err("bad length char");
    assert_eq!(
        (err.code, err.line),
        (Code::PatchBinaryCorrupt, Some(first_data + 1))
    );

    // A length character that does not match the line's data.
    let mut l = lines.clone();
    l[first_data].replace_range(0..1, "A");
    let err = binary::parse(&join(&l), CAP).expect_err("length mismatch");
    assert_eq!(
        (err.code, err.line),
        (Code::PatchBinaryCorrupt, Some(first_data + 1))
    );

    // A character outside the alphabet.
    let mut l = lines.clone();
    l[first_data].replace_range(3..4, "\"");
    let err = binary::parse(&join(&l), CAP).expect_err("bad char");
    assert_eq!(
        (err.code, err.line),
        (Code::PatchBinaryCorrupt, Some(first_data + 1))
    );

    // A valid character in the wrong place: the zlib stream (or its checksum) breaks; the
    // problem is reported at the hunk header.
    let mut l = lines.clone();
    let c = if l[first_data + 1].as_bytes()[10] == b'0' {
        "1"
    } else {
        "0"
    };
    l[first_data + 1].replace_range(10..11, c);
    let err = binary::parse(&join(&l), CAP).expect_err("bad zlib");
    assert_eq!(
        (err.code, err.line),
        (Code::PatchBinaryCorrupt, Some(header + 1))
    );

    // A size that the data does not inflate to.
    let mut l = lines.clone();
    let (kind, size) = l[header]
        .clone()
        .split_once(' ')
        .map(|(k, s)| (k.to_owned(), s.to_owned()))
        .unwrap();
    let size: usize = size.parse().unwrap();
    l[header] = format!("{kind} {}", size + 1);
    let err = binary::parse(&join(&l), CAP).expect_err("size mismatch");
    assert_eq!(
        (err.code, err.line),
        (Code::PatchBinaryCorrupt, Some(header + 1))
    );
    l[header] = format!("{kind} x{size}");
    let err = binary::parse(&join(&l), CAP).expect_err("bad size");
    assert_eq!(err.code, Code::PatchBinaryCorrupt);

    // A data line lost: the stream is cut short.
    let mut l = lines.clone();
    l.remove(first_data + 1);
    assert_eq!(
        binary::parse(&join(&l), CAP).expect_err("lost line").code,
        Code::PatchBinaryCorrupt
    );

    // No hunk after `GIT binary patch`.
    let err = binary::parse(&join(&lines[..header]), CAP).expect_err("no hunk");
    assert_eq!(
        (err.code, err.line),
        (Code::PatchBinaryCorrupt, Some(header + 1))
    );
}

#[test]
fn a_delta_against_another_file_is_a_mismatch() {
    let r = &*REPO;
    let patch = binary::parse(&section(&r.diff(true), "mid.bin"), CAP).unwrap();
    assert_eq!(patch.forward.kind, HunkKind::Delta);
    let mut old = r.blob("A", "mid.bin");
    old.push(0);
    let err = binary::apply(&patch.forward, &old, CAP).expect_err("wrong source");
    assert_eq!(err.code, Code::PatchBinaryMismatch);
    // Same size, different content: git's format cannot tell; the result is still the right
    // size (blob ids in the `index` line are what catch this).
    let old = vec![0u8; old.len() - 1];
    assert_eq!(
        binary::apply(&patch.forward, &old, CAP).unwrap().len(),
        r.blob("B", "mid.bin").len()
    );
    // A literal ignores the old content.
    let patch = binary::parse(&section(&r.diff(true), "rewrite.bin"), CAP).unwrap();
    assert_eq!(patch.forward.kind, HunkKind::Literal);
    assert_eq!(
        binary::apply(&patch.forward, b"anything", CAP).unwrap(),
        r.blob("B", "rewrite.bin")
    );
}

#[test]
fn every_truncation_of_a_real_patch_is_handled() {
    let text = section(&REPO.diff(true), "hundred.bin") + &section(&REPO.diff(true), "mid.bin");
    let mut ends: Vec<usize> = text.match_indices('\n').map(|(i, _)| i + 1).collect();
    ends.extend((0..text.len()).step_by(7));
    for end in ends {
        let cut = &text[..end];
        match binary::parse(cut, CAP) {
            Ok(p) => {
                // Only a cut after the forward hunk's end (or within trailing text) succeeds,
                // and what it yields is still a complete forward hunk.
                assert_eq!(p.forward.data.len(), p.forward.size);
            }
            Err(e) => assert!(CODES.contains(&e.code), "{e}"),
        }
    }
}

#[test]
fn declared_sizes_are_read_without_inflating_and_match_the_blobs() {
    let r = &*REPO;
    let diff = r.diff(true);
    let files = hyperion::request::patch::parse(&diff).unwrap();
    let mut deltas = 0;
    for f in &files {
        let len =
            |rev: &str, p: &Option<String>| p.as_ref().map_or(0, |p| r.blob(rev, p).len()) as u64;
        let (old, new) = (len("A", &f.old_path), len("B", &f.new_path));
        let d = binary::declared(&f.text).unwrap();
        assert_eq!(d.len(), 2, "{}", f.path());
        assert!(d[0].forward && !d[1].forward);
        assert_eq!(d[0].produces(), new, "{}", f.path());
        assert_eq!(d[1].produces(), old, "{}", f.path());
        if d[0].kind == HunkKind::Delta {
            deltas += 1;
            assert_eq!(d[0].source, Some(old), "{}", f.path());
            assert_eq!(d[0].result, Some(new), "{}", f.path());
        }
        // What parse inflates is what the headers announce.
        let p = binary::parse(&f.text, CAP).unwrap();
        assert_eq!(p.forward.size as u64, d[0].size);
    }
    assert!(deltas >= 2, "deltas: {deltas}");
}

#[test]
fn a_hunk_that_announces_more_than_the_cap_is_refused_before_it_is_inflated() {
    // 300 MiB of zeros in under 400 KB of patch: the bomb of the red-team report.
    let len = 300 << 20;
    let text = common::binary_run_patch("bomb.bin", len, 0);
    assert!(text.len() < 400 << 10, "{} bytes", text.len());
    let d = binary::declared(&text).unwrap();
    assert_eq!(d[0].produces(), len as u64);
    let header = text
        .lines()
        .position(|l| l.starts_with("literal "))
        .unwrap()
        + 1;
    for err in [
        binary::parse(&text, 50 << 20).expect_err("over the cap"),
        binary::parse_forward(&text, 50 << 20).expect_err("over the cap"),
    ] {
        assert_eq!((err.code, err.line), (Code::LimitFileBytes, Some(header)));
    }
    // Refused before inflating: with the data cut after its first line, the answer is the
    // same (inflating would have found the stream cut short).
    let cut: String = text
        .lines()
        .take(header + 1)
        .map(|l| format!("{l}\n"))
        .collect();
    let err = binary::parse_forward(&cut, 50 << 20).expect_err("over the cap");
    assert_eq!(err.code, Code::LimitFileBytes);
    assert_eq!(
        binary::parse_forward(&cut, len).expect_err("cut").code,
        Code::PatchBinaryCorrupt
    );
}

#[test]
fn data_that_inflates_past_its_announced_size_is_refused() {
    // A header that announces 1000 bytes over a stream of 10 MiB: inflating stops early.
    let stream = common::base85(&common::deflate_run(10 << 20, b'x'));
    let text = format!("GIT binary patch\nliteral 1000\n{stream}\n");
    let err = binary::parse_forward(&text, CAP).expect_err("lies");
    assert_eq!(err.code, Code::PatchBinaryCorrupt);
    assert!(err.message.contains("more than the 1000 bytes"), "{err}");
}

#[test]
fn a_delta_result_above_the_cap_is_refused_before_it_is_built() {
    let (text, _, old) = &*DELTA;
    let p = binary::parse(text, CAP).unwrap();
    let result = REPO.blob("B", "mid.bin").len();
    assert_eq!(
        binary::apply(&p.forward, old, result).unwrap().len(),
        result
    );
    let err = binary::apply(&p.forward, old, result - 1).expect_err("over the cap");
    assert_eq!(err.code, Code::LimitFileBytes);
    // A forged delta: 3 bytes of source, a result announced as 1 TiB, built by copying the
    // source over and over. Refused from its header, not after a terabyte of copies.
    let mut d = vec![3];
    let mut size = 1u64 << 40;
    while size >= 0x80 {
        d.push((size as u8 & 0x7f) | 0x80);
        size >>= 7;
    }
    d.push(size as u8);
    d.extend(std::iter::repeat_n([0x90, 3], 1000).flatten());
    let hunk = BinaryHunk {
        kind: HunkKind::Delta,
        size: d.len(),
        data: d,
    };
    let err = binary::apply(&hunk, b"abc", 50 << 20).expect_err("over the cap");
    assert_eq!(err.code, Code::LimitFileBytes);
    // Without a cap, the same delta is refused only after its copies, for falling short of
    // what it announces.
    let err = binary::apply(&hunk, b"abc", usize::MAX).expect_err("short");
    assert_eq!(err.code, Code::PatchBinaryCorrupt);
}

#[test]
fn a_literal_above_the_cap_is_refused_when_applied() {
    let hunk = BinaryHunk {
        kind: HunkKind::Literal,
        size: 10,
        data: vec![0; 10],
    };
    assert_eq!(binary::apply(&hunk, b"", 10).unwrap().len(), 10);
    assert_eq!(
        binary::apply(&hunk, b"", 9).expect_err("over").code,
        Code::LimitFileBytes
    );
    assert_eq!(
        binary::apply_owned(hunk, b"", 9).expect_err("over").code,
        Code::LimitFileBytes
    );
}

/// A real section whose forward hunk is a delta, and the blob it applies to.
static DELTA: LazyLock<(String, Vec<u8>, Vec<u8>)> = LazyLock::new(|| {
    let text = section(&REPO.diff(true), "mid.bin");
    let p = binary::parse(&text, CAP).unwrap();
    (text, p.forward.data, REPO.blob("A", "mid.bin"))
});

const BASE85: &[u8] =
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$%&()*+-;<=>?@^_`{|}~";

fn check(r: Result<impl Sized, hyperion::Problem>) {
    if let Err(e) = r {
        assert!(CODES.contains(&e.code), "{e}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics_on_arbitrary_text(s in ".*") {
        check(binary::parse(&s, CAP));
        check(binary::parse(&format!("GIT binary patch\n{s}"), CAP));
    }

    #[test]
    fn parse_never_panics_on_hunk_shaped_text(
        kind in prop::sample::select(vec!["literal", "delta"]),
        size in 0usize..2000,
        lines in prop::collection::vec(
            (0u8..60, prop::collection::vec(prop::sample::select(BASE85.to_vec()), 0..70)),
            0..6,
        ),
        tail in ".{0,20}",
    ) {
        let mut text = format!("diff --git a/x b/x\nGIT binary patch\n{kind} {size}\n");
        for (len, data) in lines {
            let c = if len < 26 { b'A' + len } else { b'a' + (len - 26) % 30 };
            text.push(char::from(c));
            text.push_str(std::str::from_utf8(&data).unwrap());
            text.push('\n');
        }
        text.push_str(&tail);
        check(binary::parse(&text, CAP));
    }

    #[test]
    fn parse_never_panics_on_mutated_real_patches(
        edits in prop::collection::vec((any::<prop::sample::Index>(), prop::sample::select(
            BASE85.iter().copied().chain(*b"\n \r").collect::<Vec<u8>>()
        )), 1..4),
    ) {
        let mut b = DELTA.0.clone().into_bytes();
        for (at, c) in edits {
            let i = at.index(b.len());
            b[i] = c;
        }
        let text = String::from_utf8(b).unwrap();
        if let Ok(p) = binary::parse(&text, CAP) {
            check(binary::apply(&p.forward, &DELTA.2, CAP));
        }
    }

    #[test]
    fn apply_never_panics_on_arbitrary_deltas(
        data in prop::collection::vec(any::<u8>(), 0..64),
        old in prop::collection::vec(any::<u8>(), 0..64),
        size_header in any::<bool>(),
    ) {
        let mut d = Vec::new();
        if size_header {
            // Get past the source size check so the instructions are exercised.
            d.push(old.len() as u8);
        }
        d.extend(data);
        let hunk = BinaryHunk { kind: HunkKind::Delta, size: d.len(), data: d };
        check(binary::apply(&hunk, &old, CAP));
    }

    #[test]
    fn apply_never_panics_on_mutated_real_deltas(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut d = DELTA.1.clone();
        for (at, b) in edits {
            let i = at.index(d.len());
            d[i] = b;
        }
        d.truncate(cut.index(d.len() + 1));
        let hunk = BinaryHunk { kind: HunkKind::Delta, size: d.len(), data: d };
        check(binary::apply(&hunk, &DELTA.2, CAP));
    }
}
