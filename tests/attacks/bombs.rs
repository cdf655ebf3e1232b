//! Resource bombs: small patches that make large files, or make the gate read or hold large
//! ones. Each is refused at enqueue (from what the patch announces, without inflating it) or
//! parked when applied, with a `limit.*` (or patch) code, and the process that met it stays
//! small: its peak memory is measured by the kernel and held to a bound far below the bomb.

use serde_json::json;

use crate::common::{base85, binary_run_patch, deflate, deflate_run, run_blob_id};
use crate::harness::{Attack, request};

/// Peak memory a refusing `enqueue` or a parking worker may reach, in KiB. The bombs here
/// make 300 MiB; before the limits the worker peaked at about 900 MiB on the first one.
const BOUND_KIB: u64 = 160 * 1024;

const MIB: usize = 1 << 20;

/// A request changing one path with `patch`.
fn one(task: &str, path: &str, op: &str, patch: &str) -> serde_json::Value {
    request(task, &[(path, op, patch)], json!({}))
}

/// Enqueue `req` under a policy whose limits let it through, then put the default limits
/// back (the owner tightens the policy while the request waits): what the worker then meets.
fn queued_under_loose_limits(a: &mut Attack, req: &serde_json::Value) -> String {
    a.commit(&[(
        ".hyperion/policy.toml",
        "[limits]\nfile_bytes = 1073741824\ninflated_bytes = 1073741824\nfile_lines = 100000000\n",
    )]);
    let id = a.enqueue(req);
    a.repo.git(&["rm", "-q", ".hyperion/policy.toml"]);
    a.repo.git(&["commit", "-q", "-m", "default limits again"]);
    a.settle();
    id
}

/// A `delta` section changing `path` (`old` at the target) into `target_len` bytes made of
/// copies of `old`'s first 64 KiB, announcing `announced` as its result size.
fn delta_patch(path: &str, old: &[u8], target_len: usize, announced: usize) -> String {
    let varint = |mut v: usize, out: &mut Vec<u8>| {
        while v >= 0x80 {
            out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    };
    let mut d = Vec::new();
    varint(old.len(), &mut d);
    varint(announced, &mut d);
    // One byte per 64 KiB: copy from offset 0, size 0 meaning 0x10000.
    d.extend(std::iter::repeat_n(0x80u8, target_len / 0x10000));
    let mut h = gix::hash::hasher(gix::hash::Kind::Sha1);
    h.update(format!("blob {target_len}\0").as_bytes());
    for _ in 0..target_len / 0x10000 {
        h.update(&old[..0x10000]);
    }
    let new_id = h.try_finalize().unwrap();
    let old_id =
        gix::objs::compute_hash(gix::hash::Kind::Sha1, gix::object::Kind::Blob, old).unwrap();
    format!(
        "diff --git a/{path} b/{path}\nindex {old_id}..{new_id} 100644\nGIT binary patch\ndelta {}\n{}\n",
        d.len(),
        base85(&deflate(&d)),
    )
}

/// 64 KiB of binary content (NULs included).
fn binary_content() -> Vec<u8> {
    (0..0x10000u32).map(|i| (i % 251) as u8).collect()
}

#[test]
fn a_binary_literal_that_inflates_to_300_mib_is_refused_at_enqueue_without_inflating_it() {
    let a = Attack::new();
    let patch = binary_run_patch("bomb.bin", 300 * MIB, 0);
    assert!(patch.len() < 400 * 1024, "{} bytes", patch.len());
    let peak = a.refused_measured(&one("B-1", "bomb.bin", "add", &patch), "limit.file_bytes");
    assert!(peak < BOUND_KIB, "enqueue peaked at {peak} KiB");
    a.nothing_landed();
}

#[test]
fn a_queued_inflation_bomb_is_parked_by_a_worker_that_stays_small() {
    let mut a = Attack::new();
    let req = one(
        "B-2",
        "bomb.bin",
        "add",
        &binary_run_patch("bomb.bin", 300 * MIB, 0),
    );
    let id = queued_under_loose_limits(&mut a, &req);
    let (_, peak) = a.drain_measured();
    a.parked(&id, "limit.file_bytes");
    assert!(peak < BOUND_KIB, "the worker peaked at {peak} KiB");
    a.nothing_landed();
}

#[test]
fn a_delta_that_copies_its_source_into_300_mib_is_refused_at_enqueue() {
    let mut a = Attack::new();
    let old = binary_content();
    std::fs::write(a.repo.path().join("data.bin"), &old).unwrap();
    a.repo.git(&["add", "data.bin"]);
    a.repo.git(&["commit", "-q", "-m", "data"]);
    a.settle();
    let patch = delta_patch("data.bin", &old, 300 * MIB, 300 * MIB);
    assert!(patch.len() < 64 * 1024, "{} bytes", patch.len());
    let peak = a.refused_measured(
        &one("B-3", "data.bin", "update", &patch),
        "limit.file_bytes",
    );
    assert!(peak < BOUND_KIB, "enqueue peaked at {peak} KiB");
    a.nothing_landed();
}

#[test]
fn a_delta_that_announces_a_small_result_and_writes_300_mib_is_parked_early() {
    let mut a = Attack::new();
    let old = binary_content();
    std::fs::write(a.repo.path().join("data.bin"), &old).unwrap();
    a.repo.git(&["add", "data.bin"]);
    a.repo.git(&["commit", "-q", "-m", "data"]);
    a.settle();
    // Its header says 128 KiB; its copies write 300 MiB.
    let patch = delta_patch("data.bin", &old, 300 * MIB, 128 * 1024);
    let id = a.enqueue(&one("B-4", "data.bin", "update", &patch));
    let (_, peak) = a.drain_measured();
    let record = a.parked(&id, "apply.binary");
    assert!(
        record["error"]["message"]
            .as_str()
            .unwrap()
            .contains("writes more than"),
        "{record}"
    );
    assert!(peak < BOUND_KIB, "the worker peaked at {peak} KiB");
    a.nothing_landed();
}

#[test]
fn a_literal_whose_data_inflates_past_its_header_is_parked_at_the_header_size() {
    let a = Attack::new();
    // `literal 1000` over a zlib stream of 300 MiB.
    let stream = base85(&deflate_run(300 * MIB, 0));
    let patch = format!(
        "diff --git a/b.bin b/b.bin\nnew file mode 100644\nindex {}..{}\nGIT binary patch\nliteral 1000\n{stream}\n",
        "0".repeat(40),
        run_blob_id(1000, 0)
    );
    let id = a.enqueue(&one("B-5", "b.bin", "add", &patch));
    let (_, peak) = a.drain_measured();
    a.parked(&id, "apply.binary");
    assert!(peak < BOUND_KIB, "the worker peaked at {peak} KiB");
    a.nothing_landed();
}

#[test]
fn a_bomb_behind_an_unreadable_reverse_hunk_is_still_refused_at_enqueue() {
    let a = Attack::new();
    let patch = binary_run_patch("bomb.bin", 300 * MIB, 0)
        .replace("literal 0\nHcmV?d00001\n", "literal 0\n!garbage\n");
    a.refused(&one("B-6", "bomb.bin", "add", &patch), "limit.file_bytes");
    a.nothing_landed();
}

#[test]
fn small_files_that_add_up_past_the_request_total_are_refused() {
    let a = Attack::new();
    // Five files of 45 MiB, each under the 50 MiB a file may have: 225 MiB in all.
    let patches: Vec<(String, String)> = (0..5)
        .map(|i| {
            let p = format!("part{i}.bin");
            let patch = binary_run_patch(&p, 45 * MIB, i as u8);
            (p, patch)
        })
        .collect();
    let changes: Vec<(&str, &str, &str)> = patches
        .iter()
        .map(|(p, patch)| (p.as_str(), "add", patch.as_str()))
        .collect();
    let peak = a.refused_measured(&request("B-7", &changes, json!({})), "limit.inflated_bytes");
    assert!(peak < BOUND_KIB, "enqueue peaked at {peak} KiB");
    a.nothing_landed();
}

#[test]
fn a_text_patch_to_a_file_of_a_million_empty_lines_is_parked_when_applied() {
    let mut a = Attack::new();
    // 1.1 MB on disk, 1.1 million lines: each line costs the engine far more than its byte.
    a.commit(&[("blank.txt", &"\n".repeat(1_100_000))]);
    let patch = "diff --git a/blank.txt b/blank.txt\n--- a/blank.txt\n+++ b/blank.txt\n@@ -1,4 +1,4 @@\n-\n+x\n \n \n \n";
    let id = a.enqueue(&one("B-8", "blank.txt", "update", patch));
    let (_, peak) = a.drain_measured();
    a.parked(&id, "limit.file_lines");
    assert!(peak < BOUND_KIB, "the worker peaked at {peak} KiB");
    a.nothing_landed();
}

#[test]
fn a_patch_naming_a_huge_blob_as_its_preimage_is_parked_without_reading_it() {
    let mut a = Attack::new();
    // A 120 MiB file that once was in the history: its blob is still in the repository.
    a.commit(&[("old/huge.bin", &"x".repeat(120 * MIB))]);
    let huge = a
        .repo
        .git(&["rev-parse", "HEAD:old/huge.bin"])
        .trim()
        .to_owned();
    a.repo.git(&["rm", "-q", "old/huge.bin"]);
    a.repo.git(&["commit", "-q", "-m", "gone"]);
    a.settle();
    let patch = format!(
        "diff --git a/README.md b/README.md\nindex {}..{} 100644\n--- a/README.md\n+++ b/README.md\n@@ -1 +1 @@\n-hello\n+bye\n",
        &huge[..12],
        "1".repeat(12)
    );
    let id = a.enqueue(&one("B-9", "README.md", "update", &patch));
    let (_, peak) = a.drain_measured();
    a.parked(&id, "limit.file_bytes");
    assert!(peak < BOUND_KIB, "the worker peaked at {peak} KiB");
    a.nothing_landed();
}

#[test]
fn hunk_headers_that_promise_a_billion_lines_are_refused() {
    let a = Attack::new();
    let patch = "--- a/README.md\n+++ b/README.md\n@@ -1,999999999 +1,999999999 @@\n-hello\n+bye\n";
    a.refused(
        &one("B-10", "README.md", "update", patch),
        "patch.hunk_count",
    );
    a.nothing_landed();
}

#[test]
fn a_hunk_that_claims_line_a_billion_is_refused_at_enqueue() {
    let a = Attack::new();
    let patch = "--- a/README.md\n+++ b/README.md\n@@ -999999999,1 +999999999,1 @@\n-hello\n+bye\n";
    a.refused(
        &one("B-11", "README.md", "update", patch),
        "limit.file_lines",
    );
    a.nothing_landed();
}

#[test]
fn hunk_line_numbers_at_the_edge_of_the_integer_range_are_refused_not_wrapped() {
    let a = Attack::new();
    let max = u64::MAX;
    let patch =
        format!("--- a/README.md\n+++ b/README.md\n@@ -{max},1 +{max},1 @@\n-hello\n+bye\n");
    a.refused(
        &one("B-12", "README.md", "update", &patch),
        "limit.file_lines",
    );
    a.nothing_landed();
}

#[test]
fn a_hunk_header_nested_inside_another_hunk_is_refused() {
    let a = Attack::new();
    // The first hunk's counts swallow the second header as if it were a line.
    let patch = "--- a/README.md\n+++ b/README.md\n@@ -1,3 +1,3 @@\n-hello\n+bye\n@@ -1,999999 +1,999999 @@\n-hello\n+bye\n";
    a.refused(
        &one("B-13", "README.md", "update", patch),
        "patch.hunk_count",
    );
    a.nothing_landed();
}

#[test]
fn a_patch_with_more_lines_than_the_policy_allows_is_refused() {
    let mut a = Attack::new();
    a.commit(&[(".hyperion/policy.toml", "[limits]\nfile_lines = 1000\n")]);
    let content: String = (0..5000).map(|i| format!("line {i}\n")).collect();
    let req = crate::harness::adds("B-14", "many.txt", &content);
    a.refused(&req, "limit.file_lines");
    a.nothing_landed();
}

#[test]
fn hunks_that_state_lines_far_from_where_they_match_are_parked_quickly() {
    let mut a = Attack::new();
    // 500,000 distinct lines; every hunk says it is at line 2 and matches near the end, so
    // git's search walks most of the file for each. About 13,000 such hunks fit in the 1 MiB
    // a change may have: without a bound, minutes of a worker's time.
    let n = 500_000usize;
    let text: String = (0..n).map(|i| format!("l{i}\n")).collect();
    a.commit(&[("big.txt", &text)]);
    let mut patch = String::from("--- a/big.txt\n+++ b/big.txt\n");
    let mut at = n - 100_000;
    while patch.len() < 1_000_000 && at + 7 < n {
        patch.push_str("@@ -2,7 +2,7 @@\n");
        for k in 0..3 {
            patch.push_str(&format!(" l{}\n", at + k));
        }
        patch.push_str(&format!("-l{}\n+X{}\n", at + 3, at + 3));
        for k in 4..7 {
            patch.push_str(&format!(" l{}\n", at + k));
        }
        at += 7;
    }
    let id = a.enqueue(&one("B-15", "big.txt", "update", &patch));
    let started = std::time::Instant::now();
    let (_, peak) = a.drain_measured();
    let took = started.elapsed();
    a.parked(&id, "limit.hunk_search");
    assert!(
        took < std::time::Duration::from_secs(30),
        "the worker took {took:?}"
    );
    assert!(peak < BOUND_KIB, "the worker peaked at {peak} KiB");
    a.nothing_landed();
}
