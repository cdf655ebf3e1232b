//! Paths, copy and rename sources, symlink chains: every path a patch reads or writes is a
//! path of the request, and every symlink is judged where it leads in the tree it lands in.

use serde_json::{Value, json};

use crate::common::TestRepo;
use crate::harness::{Attack, add_patch, adds, plant, request};

/// Content a person keeps under a denied path. Not a secret rule's match (it is committed
/// on purpose during set-up); what must not happen is that it lands anywhere else.
const DENIED: &str = "denied-content-of-secrets-key\n";

/// A repository whose policy denies `secrets/**`, with `secrets/key` committed.
fn guarded() -> Attack {
    let mut a = Attack::new();
    a.commit(&[
        (
            ".hyperion/policy.toml",
            "[paths]\ndeny = [\"secrets/**\"]\n",
        ),
        ("secrets/key", DENIED),
        ("public/readme", "public\n"),
    ]);
    a
}

/// The patch that makes `path` a new symlink to `target`.
fn link_patch(path: &str, target: &str) -> String {
    let lines: Vec<&str> = target.split('\n').collect();
    let mut p = format!(
        "diff --git a/{path} b/{path}\nnew file mode 120000\n--- /dev/null\n+++ b/{path}\n@@ -0,0 +1,{} @@\n",
        lines.len()
    );
    for l in lines {
        p.push_str(&format!("+{l}\n"));
    }
    p.push_str("\\ No newline at end of file\n");
    p
}

/// A request that adds each `(path, target)` symlink.
fn links(task: &str, links: &[(&str, &str)], files: &[(&str, &str)]) -> Value {
    let patches: Vec<(String, String, &str)> = links
        .iter()
        .map(|(p, t)| (p.to_string(), link_patch(p, t), "add"))
        .chain(
            files
                .iter()
                .map(|(p, c)| (p.to_string(), add_patch(p, c), "add")),
        )
        .collect();
    let changes: Vec<(&str, &str, &str)> = patches
        .iter()
        .map(|(p, patch, op)| (p.as_str(), *op, patch.as_str()))
        .collect();
    request(task, &changes, json!({}))
}

/// Commit symlinks (set-up, by a person).
fn commit_links(a: &mut Attack, links: &[(&str, &str)]) {
    for (path, target) in links {
        let p = a.repo.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, &p).unwrap();
        a.repo.git(&["add", "--", path]);
    }
    a.repo.git(&["commit", "-q", "-m", "links"]);
    a.settle();
}

fn blob_id(repo: &TestRepo, rev: &str) -> String {
    repo.git(&["rev-parse", rev]).trim().to_owned()
}

// --- Reading denied content through another path ---

#[test]
fn a_copy_from_a_denied_file_is_refused() {
    let a = guarded();
    let patch = "diff --git a/secrets/key b/public/key\nsimilarity index 100%\ncopy from secrets/key\ncopy to public/key\n";
    let req = request("P-copy", &[("public/key", "add", patch)], json!({}));
    let err = a.refused(&req, "patch.copy");
    assert!(err.contains("copy from secrets/key"), "{err}");
    a.nothing_landed();
}

#[test]
fn a_patch_reading_a_denied_file_under_its_minus_header_is_refused() {
    // `---` names the denied file, `+++` and the declared path the public one: the apply
    // engine used to read the first and write the second.
    let a = guarded();
    let patch = "diff --git a/public/readme b/public/readme\n--- a/secrets/key\n+++ b/public/readme\n@@ -1 +1,2 @@\n denied-content-of-secrets-key\n+more\n";
    let req = request("P-minus", &[("public/readme", "update", patch)], json!({}));
    a.refused(&req, "patch.inconsistent_paths");
    // The same in a plain `diff -u`.
    let plain = "--- secrets/key\n+++ public/readme\n@@ -1 +1,2 @@\n denied-content-of-secrets-key\n+more\n";
    let req = request("P-plain", &[("public/readme", "update", plain)], json!({}));
    a.refused(&req, "patch.inconsistent_paths");
    a.nothing_landed();
}

#[test]
fn a_new_file_that_names_a_denied_file_as_its_old_side_is_refused() {
    let a = guarded();
    let patch = "diff --git a/public/key b/public/key\nnew file mode 100644\n--- a/secrets/key\n+++ b/public/key\n@@ -1 +1 @@\n denied-content-of-secrets-key\n";
    let req = request("P-newfrom", &[("public/key", "add", patch)], json!({}));
    a.refused(&req, "patch.bad_header");
    a.nothing_landed();
}

#[test]
fn a_rename_out_of_a_denied_directory_is_refused_whichever_field_names_it() {
    let a = guarded();
    let patch = "diff --git a/secrets/key b/public/key\nsimilarity index 100%\nrename from secrets/key\nrename to public/key\n";
    // Declared honestly.
    let mut req = request("P-ren", &[("public/key", "rename", patch)], json!({}));
    req["changes"][0]["from"] = "secrets/key".into();
    a.refused(&req, "path.denied");
    // Declared as a rename of a harmless file: the patch's headers are paths of the request.
    let mut req = request("P-ren2", &[("public/key", "rename", patch)], json!({}));
    req["changes"][0]["from"] = "public/readme".into();
    let err = a.refused(&req, "path.denied");
    assert!(err.contains("[request.path_mismatch]"), "{err}");
    a.nothing_landed();
}

#[test]
fn a_denied_path_in_another_case_or_with_hfs_ignored_code_points_is_refused() {
    // On macOS and Windows checkouts these are `secrets/key` itself.
    let a = guarded();
    a.refused(
        &adds("P-case", "SECRETS/key", "overwritten\n"),
        "path.denied",
    );
    a.refused(
        &adds("P-zwnj", "secrets\u{200c}/key", "overwritten\n"),
        "path.denied",
    );
    a.nothing_landed();
}

#[test]
fn a_binary_patch_that_names_a_stored_blob_copies_nothing() {
    // No data, only the id of the denied file's blob: the engine took any object the
    // repository had under that id.
    let a = guarded();
    let secret = blob_id(&a.repo, "HEAD:secrets/key");
    let zero = "0".repeat(40);
    let patch = format!(
        "diff --git a/public/key b/public/key\nnew file mode 100644\nindex {zero}..{secret}\nBinary files /dev/null and b/public/key differ\n"
    );
    let id = a.enqueue(&request(
        "P-blob",
        &[("public/key", "add", &patch)],
        json!({}),
    ));
    a.drain();
    a.parked(&id, "apply.binary");
    // With data that does not make that blob.
    let patch = format!(
        "diff --git a/public/key2 b/public/key2\nnew file mode 100644\nindex {zero}..{secret}\nGIT binary patch\nliteral 3\nKcmZ?wbhF\n\nliteral 0\n\n"
    );
    let id = a.enqueue(&request(
        "P-blob2",
        &[("public/key2", "add", &patch)],
        json!({}),
    ));
    a.drain();
    a.parked(&id, "apply.binary");
    a.nothing_landed();
}

// --- Symlinks followed through the tree ---

#[test]
fn a_symlink_chain_through_a_directory_link_the_request_adds_is_refused() {
    let a = Attack::new();
    let req = links(
        "P-chain",
        &[("d/l", ".."), ("x", "d/l/d/l/../../etc/passwd")],
        &[],
    );
    let err = a.refused(&req, "path.symlink_escape");
    assert!(err.contains("through d/l"), "{err}");
    a.nothing_landed();
}

#[test]
fn a_symlink_through_a_link_already_in_the_tree_is_refused() {
    let mut a = Attack::new();
    commit_links(&mut a, &[("d/l", "..")]);
    a.refused(
        &links("P-old", &[("x", "d/l/../..")], &[]),
        "path.symlink_escape",
    );
    a.refused(
        &links("P-old2", &[("y", "d/l/d/l/../../..")], &[]),
        "path.symlink_escape",
    );
    a.nothing_landed();
}

#[test]
fn a_symlink_already_in_the_tree_rerouted_by_a_new_link_is_refused() {
    // `x -> a/b/../../y` stays inside while `a/b` is a directory or missing; the request
    // makes `a/b -> ..`, harmless alone, and `x` then climbs out.
    let mut a = Attack::new();
    commit_links(&mut a, &[("x", "a/b/../../y")]);
    let err = a.refused(
        &links("P-reroute", &[("a/b", "..")], &[]),
        "path.symlink_escape",
    );
    assert!(err.contains("'x', a symlink at the target"), "{err}");
    a.nothing_landed();
}

#[test]
fn symlinks_that_loop_or_chain_deeper_than_the_kernel_follows_are_refused() {
    let a = Attack::new();
    a.refused(
        &links("P-loop", &[("a", "b"), ("b", "a")], &[]),
        "path.symlink_loop",
    );
    let chain: Vec<(String, String)> = (0..42)
        .map(|i| (format!("l{i}"), format!("l{}", i + 1)))
        .collect();
    let chain: Vec<(&str, &str)> = chain
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    a.refused(&links("P-deep", &chain, &[]), "path.symlink_loop");
    a.nothing_landed();
}

#[test]
fn a_file_written_below_a_directory_symlink_of_the_same_request_is_refused() {
    let mut a = Attack::new();
    a.commit(&[("docs/readme", "docs\n")]);
    // `d -> docs` is harmless; `d/x` would write through it.
    let req = links("P-through", &[("d", "docs")], &[("d/x", "through\n")]);
    a.refused(&req, "path.through_link");
    // And through a symlink already there.
    commit_links(&mut a, &[("e", "docs")]);
    a.refused(&adds("P-through2", "e/x", "through\n"), "path.through_link");
    a.nothing_landed();
}

#[test]
fn symlink_targets_absolute_empty_control_or_into_dotgit_in_any_spelling_are_refused() {
    let a = Attack::new();
    for (n, target) in [
        "/etc/passwd",
        "C:/Windows",
        "\\\\server\\share",
        ".git/config",
        ".GIT/hooks/pre-commit",
        ".git./config",
        ".git /config",
        "GIT~1/config",
        ".g\u{200c}it/config",
        ".git::$INDEX_ALLOCATION/config",
        "sub/../.Git",
        "",
        "a\nb",
        "a\0b",
    ]
    .iter()
    .enumerate()
    {
        let req = links(&format!("P-target-{n}"), &[("l", target)], &[]);
        a.refused(&req, "path.symlink_escape");
    }
    a.nothing_landed();
}

#[test]
fn a_file_turned_into_a_symlink_or_a_symlink_retargeted_without_a_mode_line_is_refused() {
    let mut a = Attack::new();
    a.commit(&[("f", "../../../etc/passwd")]);
    commit_links(&mut a, &[("l", "README.md")]);
    // A mode change alone: the file's content becomes the target.
    let mode = "diff --git a/f b/f\nold mode 100644\nnew mode 120000\n";
    a.refused(
        &request("P-mode", &[("f", "update", mode)], json!({})),
        "path.symlink_escape",
    );
    // A symlink's content changed, with no mode line saying it is one.
    let retarget = "diff --git a/l b/l\n--- a/l\n+++ b/l\n@@ -1 +1 @@\n-README.md\n\\ No newline at end of file\n+../../etc/passwd\n\\ No newline at end of file\n";
    a.refused(
        &request("P-retarget", &[("l", "update", retarget)], json!({})),
        "path.symlink_escape",
    );
    a.nothing_landed();
}

#[test]
fn a_symlink_moved_to_where_its_target_climbs_out_is_refused() {
    let mut a = Attack::new();
    commit_links(&mut a, &[("a/b/l", "../../README.md")]);
    let patch = "diff --git a/a/b/l b/l\nsimilarity index 100%\nrename from a/b/l\nrename to l\n";
    let mut req = request("P-move", &[("l", "rename", patch)], json!({}));
    req["changes"][0]["from"] = "a/b/l".into();
    a.refused(&req, "path.symlink_escape");
    a.nothing_landed();
}

#[test]
fn a_symlink_to_a_denied_path_is_refused() {
    let a = guarded();
    a.refused(
        &links("P-alias", &[("public/key", "../secrets/key")], &[]),
        "path.denied",
    );
    a.refused(
        &links("P-alias2", &[("public/s", "../secrets")], &[]),
        "path.denied",
    );
    a.nothing_landed();
}

#[test]
fn names_longer_than_file_systems_hold_are_refused() {
    let a = Attack::new();
    let long = "n".repeat(256);
    a.refused(
        &adds("P-name", &format!("src/{long}"), "x\n"),
        "path.too_long",
    );
    let deep = ["d"; 2048].join("/") + "x";
    a.refused(&adds("P-deep", &deep, "x\n"), "path.too_long");
    let target = "a/".repeat(2048);
    a.refused(
        &links("P-longlink", &[("l", &target)], &[]),
        "path.too_long",
    );
    a.nothing_landed();
}

// --- Chains that skipped enqueue: the worker checks again ---

#[test]
fn a_hand_made_chain_writing_into_dot_git_or_up_the_tree_is_parked_by_the_worker() {
    let a = Attack::new();
    let ids: Vec<(String, &str)> = [
        (".git/hooks/post-checkout", "path.unsafe"),
        ("a/../../outside", "path.unsafe"),
        (".GIT./config", "path.unsafe"),
        (&format!("src/{}", "n".repeat(300)), "path.too_long"),
    ]
    .iter()
    .enumerate()
    .map(|(n, (path, code))| {
        (
            plant(&a.repo, &adds(&format!("F-{n}"), path, "#!/bin/sh\n")),
            *code,
        )
    })
    .collect();
    a.drain();
    for (id, code) in &ids {
        let record = a.parked(id, code);
        // Refused by validation at lease time, before the apply engine saw it.
        assert_eq!(record["dead_class"], "validation", "{record}");
    }
    a.nothing_landed();
    assert!(!a.repo.path().join("outside").exists());
}

#[test]
fn a_hand_made_chain_whose_patch_writes_another_file_than_it_declares_is_parked() {
    let mut a = Attack::new();
    commit_links(&mut a, &[("d/l", "..")]);
    // Declares `ok.txt`; its patch adds `.github/evil`.
    let patch = add_patch(".github/evil", "x\n");
    let lying = request("F-lie", &[("ok.txt", "add", &patch)], json!({}));
    // A symlink chain out of the repository.
    let escape = links("F-link", &[("x", "d/l/d/l/../../etc")], &[]);
    let lie = plant(&a.repo, &lying);
    let link = plant(&a.repo, &escape);
    a.drain();
    assert_eq!(
        a.parked(&lie, "request.path_mismatch")["dead_class"],
        "validation"
    );
    assert_eq!(
        a.parked(&link, "path.symlink_escape")["dead_class"],
        "validation"
    );
    a.nothing_landed();
}

#[test]
fn the_apply_engine_writes_no_tree_with_an_unsafe_name_even_unvalidated() {
    // The last defense, below validation: the engine itself, given patches nobody checked.
    let a = Attack::new();
    let repo = gix::open(a.repo.path()).unwrap();
    let base = gix::ObjectId::from_hex(blob_id(&a.repo, "HEAD^{tree}").as_bytes()).unwrap();
    for (n, (path, code)) in [
        (".git/hooks/post-checkout", "path.unsafe"),
        ("a/../../x", "path.unsafe"),
        ("sub/.GIT/config", "path.unsafe"),
        (&*format!("n{}", "n".repeat(255)), "path.too_long"),
    ]
    .into_iter()
    .enumerate()
    {
        let req: hyperion::request::model::ChangeRequest =
            serde_json::from_value(adds(&format!("E-{n}"), path, "x\n")).unwrap();
        let refusal = hyperion::request::apply::apply_request(
            &repo,
            base,
            &req,
            &hyperion::request::limits::DEFAULT_LIMITS,
        )
        .map_err(|e| match e {
            hyperion::request::apply::Error::Refused(r) => r,
            hyperion::request::apply::Error::Failed(e) => panic!("{e}"),
        })
        .expect_err("refused");
        assert_eq!(refusal.code(), code, "{path}: {}", refusal.message());
    }
    a.untouched();
}

#[test]
fn a_file_or_symlink_put_where_a_denied_directory_would_be_is_refused() {
    // `config/**` covers `config` itself: a request may not make it a file or a symlink
    // (git's own matcher would not match `config`; hyperion's rule on top does).
    let mut a = Attack::new();
    a.commit(&[
        (".hyperion/policy.toml", "[paths]\ndeny = [\"config/**\"]\n"),
        ("public/readme", "public\n"),
    ]);
    a.refused(&adds("P-file", "config", "x\n"), "path.denied");
    let link = request(
        "P-link",
        &[("config", "add", &link_patch("config", "public"))],
        json!({}),
    );
    a.refused(&link, "path.denied");
    a.nothing_landed();
}

#[test]
fn a_deny_glob_git_would_read_as_matching_nothing_stops_the_gate() {
    // An unclosed `[` makes git's matcher match nothing: read as written, the entry would deny
    // nothing. The policy is refused instead, and with it every request.
    let mut a = Attack::new();
    a.commit(&[
        (
            ".hyperion/policy.toml",
            "[paths]\ndeny = [\"keys/[ab\", \"keys/**\"]\n",
        ),
        ("public/readme", "public\n"),
    ]);
    let path = a.repo.write("any.json", &adds("P-any", "keys/a", "x\n"));
    let (_, err) = a.repo.fails(&["enqueue", path.to_str().unwrap()], 2);
    assert!(err.contains("[policy.invalid_value]"), "{err}");
    assert!(err.contains("'keys/[ab': a '[' is never closed"), "{err}");
    assert_eq!(a.repo.hyperion_refs(), "", "nothing is stored");
    a.nothing_landed();
}
