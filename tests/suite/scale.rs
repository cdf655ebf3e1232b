#![allow(clippy::unwrap_used)]
//! Many requests at once: sweep of many expired leases, gc of more finished requests than fit
//! on a command line, gc's ref transactions, and a gc killed part-way.

use crate::common;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use common::{TestRepo, request_dir, wait_stopped};

/// `n` requests, all leased with a 1s lease that has run out, none swept yet; with
/// `hyperion.maxAttempts=1` a sweep makes every one a dead letter.
fn expired(n: usize, salt: &str) -> (TestRepo, Vec<String>) {
    let repo = TestRepo::new();
    repo.git(&["config", "hyperion.maxAttempts", "1"]);
    let ids = repo.enqueue(&request_dir(&repo, n, salt));
    assert_eq!(ids.len(), n);
    let leased = repo.json(&[
        "dequeue",
        "--worker",
        "w",
        "--batch",
        &n.to_string(),
        "--lease",
        "1s",
    ]);
    assert_eq!(leased.as_array().unwrap().len(), n);
    std::thread::sleep(Duration::from_millis(1100));
    (repo, ids)
}

/// [`expired`], swept: every one a dead letter, which gc may archive.
fn dead_letters(n: usize, salt: &str) -> (TestRepo, Vec<String>) {
    let (repo, ids) = expired(n, salt);
    let swept = repo.json(&["sweep"]);
    assert_eq!(swept["dead"].as_array().unwrap().len(), n, "{swept}");
    (repo, ids)
}

/// Request refs and their tips.
fn refs(repo: &TestRepo) -> BTreeMap<String, String> {
    repo.hyperion_refs()
        .lines()
        .filter(|l| l.starts_with("refs/hyperion/requests/"))
        .map(|l| {
            let (name, oid) = l.split_once(' ').unwrap();
            (name.to_owned(), oid.to_owned())
        })
        .collect()
}

/// The archives gc wrote.
fn bundles(repo: &TestRepo) -> Vec<std::path::PathBuf> {
    let dir = repo.git_dir().join("hyperion/archive");
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "bundle"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The request refs of a repository of its own that fetched them from `bundle` (a strict
/// fetch, then `git fsck --strict`), after `git bundle verify` in `repo`. In `repo` itself
/// git could find the objects without the bundle's pack.
fn fetched_elsewhere(repo: &TestRepo, bundle: &std::path::Path) -> BTreeMap<String, String> {
    let bundle = bundle.to_str().unwrap();
    repo.git(&["bundle", "verify", "-q", bundle]);
    let elsewhere = TestRepo::bare();
    elsewhere.git(&[
        "-c",
        "transfer.fsckObjects=true",
        "fetch",
        "-q",
        bundle,
        "refs/hyperion/requests/*:refs/hyperion/requests/*",
    ]);
    elsewhere.git(&["fsck", "--strict", "--no-dangling"]);
    refs(&elsewhere)
}

/// The documented restore: fetch every request ref back from a bundle.
fn restore(repo: &TestRepo, bundle: &std::path::Path) {
    repo.git(&[
        "fetch",
        "-q",
        bundle.to_str().unwrap(),
        "refs/hyperion/requests/*:refs/hyperion/requests/*",
    ]);
}

/// More expired leases than one pack of loose-object roll-ups holds are swept in one chunk:
/// one new pack, not one per few hundred objects (and so no repack to wait for). Then gc of
/// all of them as dead letters, with a stack limit that leaves git's command line 128 KiB: the
/// ref names alone take more, so gc passes none of them as arguments.
#[test]
fn many_expired_leases_are_swept_in_one_pack_and_gc_passes_no_ref_on_a_command_line() {
    let n = 3600;
    let (repo, ids) = expired(n, "big");
    let before = repo.packs();
    let swept = repo.json(&["sweep"]);
    assert_eq!(swept["dead"].as_array().unwrap().len(), n, "{swept}");
    assert!(
        repo.packs() <= before + 1,
        "sweep wrote {} packs for {n} requests",
        repo.packs() - before
    );
    let names: usize = refs(&repo).keys().map(|r| r.len() + 1).sum();
    assert!(names > 128 * 1024, "{names} bytes of ref names");
    let tips = refs(&repo);

    // `ulimit -s 512`: the kernel then allows 128 KiB of arguments and environment.
    let out = repo
        .command("sh")
        .args([
            "-c",
            "ulimit -s 512 && exec \"$0\" gc --older-than 0s",
            common::bin(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let archived = String::from_utf8_lossy(&out.stdout).lines().count();
    assert_eq!(archived, n);
    assert!(refs(&repo).is_empty());
    assert!(repo.ids(&["list"]).is_empty());
    // Everything comes back from the archive, at the same tips.
    restore(&repo, &bundles(&repo)[0]);
    assert_eq!(refs(&repo), tips);
    let mut back = repo.ids(&["list"]);
    back.sort();
    let mut ids = ids;
    ids.sort();
    assert_eq!(back, ids);
}

/// With packed refs, gc removes refs itself, chunk by chunk (here 40 at a time, through the
/// test-only chunk size), with no `git update-ref` (which would create a lock file per ref):
/// the packed lines go, nothing older comes back. A ref that moved after the archive was
/// written is kept, and the rest of its chunk still goes.
#[test]
fn gc_removes_packed_refs_and_keeps_one_that_moved() {
    let n = 200;
    let (repo, ids) = dead_letters(n, "packed");
    repo.git(&["pack-refs", "--all"]);
    let trace = repo.home.path().join("trace");
    let gc = repo
        .cmd()
        .args(["gc", "--older-than", "0s"])
        .env("HYPERION_TEST_CHUNK", "40")
        .env("HYPERION_TEST_PAUSE_AT", "gc.bundle_verified")
        .env("GIT_TRACE", &trace)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_stopped(gc.id(), "gc");
    // Between the archive and the removal, one request goes back to the queue.
    let moved = &ids[57];
    repo.ok(&["requeue", moved, "--reason", "again"]);
    let moved_tip = refs(&repo)[&format!("refs/hyperion/requests/{moved}")].clone();
    common::signal(gc.id(), "CONT");
    let out = gc.wait_with_output().unwrap();
    assert!(out.status.success());
    let archived: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(archived.len(), n - 1);
    assert!(!archived.contains(&moved.as_str()));
    let left = refs(&repo);
    assert_eq!(
        left.into_iter().collect::<Vec<_>>(),
        vec![(format!("refs/hyperion/requests/{moved}"), moved_tip)]
    );
    let packed = std::fs::read_to_string(repo.git_dir().join("packed-refs")).unwrap();
    // Only the moved request's line can be left (its loose file shadows it).
    assert!(
        packed.matches("refs/hyperion/requests/").count() <= 1,
        "{packed}"
    );
    // gc runs no git process at all (the trace file is made by the first one).
    let trace = std::fs::read_to_string(trace).unwrap_or_default();
    assert!(!trace.contains("update-ref"), "{trace}");
    assert_eq!(
        repo.ids(&["list", "--status", "pending"]),
        vec![moved.clone()]
    );
    repo.git(&["fsck", "--no-dangling"]);
}

/// `git repack` with deltas (`-adf`, which users' maintenance may run) while gc is between
/// walking its first chunk of chains and copying their entries: the pack the walk found
/// those objects in is deleted under it, and the later chunks find theirs stored as deltas.
/// The archive still holds every chain whole: a strict fetch of it into a repository of its
/// own gives every tip gc archived.
#[test]
fn gc_with_a_repack_between_its_walk_and_its_copy_archives_every_chain_whole() {
    let n = 60;
    let (repo, _) = dead_letters(n, "repacked");
    let before = refs(&repo);
    let gc = gc_stopped_at(&repo, 10, "gc.first_chunk_walked");
    let old_packs = repo.packs();
    repo.git(&["repack", "-adfq", "--window=250", "--depth=50"]);
    assert_eq!(repo.packs(), 1, "{old_packs} packs became one");
    assert!(chain_objects_stored_as_deltas(&repo) > 10);
    common::signal(gc.id(), "CONT");
    let out = gc.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), n);
    assert!(refs(&repo).is_empty());
    let bundle = bundles(&repo);
    assert_eq!(fetched_elsewhere(&repo, &bundle[0]), before);
    repo.git(&["fsck", "--no-dangling"]);
}

/// `gc --older-than 0s` working `chunk` requests at a time, stopped at pause point `point`
/// (its output piped).
fn gc_stopped_at(repo: &TestRepo, chunk: usize, point: &str) -> std::process::Child {
    let gc = repo
        .cmd()
        .args(["gc", "--older-than", "0s"])
        .env("HYPERION_TEST_CHUNK", chunk.to_string())
        .env("HYPERION_TEST_PAUSE_AT", point)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_stopped(gc.id(), "gc");
    gc
}

/// How many objects the request chains reach are stored as deltas in the repository's one
/// pack.
fn chain_objects_stored_as_deltas(repo: &TestRepo) -> usize {
    let pack_dir = repo.git_dir().join("objects/pack");
    let idx = std::fs::read_dir(&pack_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "idx"))
        .unwrap();
    let verify = repo.git(&["verify-pack", "-v", idx.to_str().unwrap()]);
    // `ID TYPE SIZE PACKED OFFSET DEPTH BASE` for an object stored as a delta.
    let deltas: std::collections::HashSet<&str> = verify
        .lines()
        .filter(|l| l.split_whitespace().count() == 7)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    repo.git(&["rev-list", "--objects", "--glob=refs/hyperion/requests"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|id| deltas.contains(id))
        .count()
}

/// gc next to `git pack-refs --all` in a loop (which moves refs into `packed-refs` and
/// deletes their files while gc deletes them too): every finished request is archived and
/// gone, as git sees it and as hyperion does; none comes back once the packing stops (a
/// packed line outliving its ref's file would); the pending requests are untouched.
#[test]
fn gc_next_to_git_pack_refs_loses_nothing_and_brings_nothing_back() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let n = 600;
    let (repo, _) = dead_letters(n, "racing");
    let pending = repo.enqueue(&request_dir(&repo, 20, "racing-pending"));
    let before = refs(&repo);
    let stop = Arc::new(AtomicBool::new(false));
    let packs = Arc::new(AtomicUsize::new(0));
    let packer = {
        let (stop, packs) = (stop.clone(), packs.clone());
        let mut cmd = repo.command("git");
        cmd.args(["pack-refs", "--all"])
            .current_dir(repo.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if cmd.status().is_ok_and(|s| s.success()) {
                    packs.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };
    while packs.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let at_start = packs.load(Ordering::SeqCst);
    let out = repo
        .cmd()
        .args(["gc", "--older-than", "0s"])
        .env("HYPERION_TEST_CHUNK", "25")
        .output()
        .unwrap();
    let during = packs.load(Ordering::SeqCst) - at_start;
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::SeqCst);
    packer.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(during > 0, "git pack-refs ran while gc removed refs");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), n);
    let pending_refs: BTreeMap<String, String> = before
        .into_iter()
        .filter(|(name, _)| pending.iter().any(|id| name.ends_with(id.as_str())))
        .collect();
    assert_eq!(pending_refs.len(), 20);
    assert_eq!(refs(&repo), pending_refs);
    let mut listed = repo.ids(&["list"]);
    listed.sort();
    let mut pending = pending;
    pending.sort();
    assert_eq!(listed, pending);
    repo.git(&["fsck", "--no-dangling"]);
    let doctor = repo.json(&["doctor"]);
    assert_eq!(
        doctor["findings"].as_array().map(Vec::len),
        Some(0),
        "{doctor}"
    );
}

/// gc killed (SIGKILL) after its first ref transaction: some refs are gone, every one of them
/// is in the verified archive, and the documented restore brings all of them back at the
/// tips they had. A second gc finishes the job.
#[test]
fn gc_killed_part_way_loses_nothing() {
    let n = 120;
    let (repo, _) = dead_letters(n, "crash");
    let tips = refs(&repo);
    let mut gc = gc_stopped_at(&repo, 50, "gc.chunk_removed");
    gc.kill().unwrap();
    gc.wait().unwrap();
    let left = refs(&repo);
    assert_eq!(left.len(), n - 50, "one transaction of 50 went through");
    for (name, tip) in &left {
        assert_eq!(&tips[name], tip);
    }
    let archive = bundles(&repo);
    assert_eq!(archive.len(), 1);
    restore(&repo, &archive[0]);
    assert_eq!(refs(&repo), tips);
    // The index catches up with refs that came back behind its back.
    assert_eq!(repo.ids(&["list"]).len(), n);
    let again = repo.ok(&["gc", "--older-than", "0s"]);
    assert_eq!(again.lines().count(), n);
    assert!(refs(&repo).is_empty());
}

/// A worker with the shortest lease (1s) and a batch whose checks and hooks take longer than
/// that, while another process sweeps every 100 ms: every lease of the batch is renewed in
/// time (those waiting their turn too), so nothing is swept and everything lands.
#[test]
fn a_live_worker_with_a_1s_lease_loses_no_lease_to_slow_checks_and_hooks() {
    use std::os::unix::fs::PermissionsExt;
    let repo = TestRepo::new();
    std::fs::create_dir_all(repo.path().join(".hyperion")).unwrap();
    std::fs::write(
        repo.path().join(".hyperion/policy.toml"),
        "[checks.slow]\nrun = [\"sleep\", \"1.5\"]\n",
    )
    .unwrap();
    repo.git(&["add", ".hyperion/policy.toml"]);
    repo.git(&["commit", "-q", "-m", "policy"]);
    let hooks = repo.home.path().join("hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    let hook = hooks.join("slow");
    std::fs::write(&hook, "#!/bin/sh\ncat >/dev/null\nsleep 1.2\n").unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    repo.git(&["config", "hyperion.hooksDir", hooks.to_str().unwrap()]);
    let dir = repo.home.path().join("slow-reqs");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..3 {
        let mut r = common::request(i, "slow");
        r["checks"] = serde_json::json!(["slow"]);
        std::fs::write(
            dir.join(format!("{i}.json")),
            serde_json::to_vec(&r).unwrap(),
        )
        .unwrap();
    }
    let ids = repo.enqueue(&dir);
    let worker = repo
        .cmd()
        .args([
            "worker",
            "--once",
            "--batch-size",
            "3",
            "--lease",
            "1s",
            "--format",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = worker.id();
    let mut sweeps = 0;
    while !matches!(common::proc_state(pid), None | Some('Z')) {
        let swept = repo.json(&["sweep"]);
        assert_eq!(swept["requeued"], serde_json::json!([]), "{swept}");
        assert_eq!(swept["dead"], serde_json::json!([]), "{swept}");
        sweeps += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = worker.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(sweeps > 20, "the batch took {sweeps} sweeps");
    let reports: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reports.len(), 3);
    for r in &reports {
        assert_eq!(r["result"], "landed", "{r}");
    }
    for id in &ids {
        let shown = repo.json(&["show", id]);
        assert!(!shown.to_string().contains("lease.expired"), "{shown}");
    }
}

/// An enqueue that stops part-way (here: the ref of the third of five requests is locked by
/// another writer, so storing it fails after the first two refs were created) says exactly
/// which requests were stored and which were not, in text and JSON, with its own code, and
/// never that nothing changed. Submitting the same batch again stores the rest.
#[test]
fn an_enqueue_stopped_part_way_says_what_was_stored_and_what_not() {
    let repo = TestRepo::new();
    let dir = request_dir(&repo, 5, "part");
    let planned = repo.ids(&["enqueue", "--dry-run", dir.to_str().unwrap()]);
    assert_eq!(planned.len(), 5);
    let refs_dir = repo.git_dir().join("refs/hyperion/requests");
    std::fs::create_dir_all(&refs_dir).unwrap();
    let lock = refs_dir.join(format!("{}.lock", planned[2]));
    std::fs::write(&lock, "").unwrap();

    let out = repo
        .cmd()
        .args(["enqueue", dir.to_str().unwrap(), "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("[store.incomplete]"), "{stderr}");
    assert!(!stderr.contains("nothing was changed"), "{stderr}");
    for id in &planned[..2] {
        assert!(stderr.contains(&format!("stored: {id}\n")), "{stderr}");
    }
    for id in &planned[2..] {
        assert!(stderr.contains(&format!("not_stored: {id}\n")), "{stderr}");
    }
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["code"], "store.incomplete");
    assert_eq!(doc["error"]["stored"], serde_json::json!(planned[..2]));
    assert_eq!(doc["error"]["not_stored"], serde_json::json!(planned[2..]));
    // What it said is what is there.
    let mut stored: Vec<String> = refs(&repo)
        .keys()
        .map(|r| r.trim_start_matches("refs/hyperion/requests/").to_owned())
        .collect();
    stored.sort();
    let mut said = planned[..2].to_vec();
    said.sort();
    assert_eq!(stored, said);

    std::fs::remove_file(&lock).unwrap();
    let again = repo.json(&["enqueue", dir.to_str().unwrap()]);
    let created: Vec<bool> = again
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["created"].as_bool().unwrap())
        .collect();
    assert_eq!(created, [false, false, true, true, true]);
    assert_eq!(refs(&repo).len(), 5);
}

/// Submitting a request again after gc archived it is refused (`request.archived`) with the
/// restore command as hint, and the documented restore then works; `--force` stores a new
/// chain instead.
#[test]
fn an_archived_request_is_refused_again_until_restored_or_forced() {
    let (repo, ids) = dead_letters(2, "archived");
    let tips = refs(&repo);
    let dir = repo.home.path().join("reqs-archived");
    repo.ok(&["gc", "--older-than", "0s"]);
    assert!(refs(&repo).is_empty());

    let (_, err) = repo.fails(&["enqueue", dir.to_str().unwrap()], 1);
    assert!(err.contains("[request.archived]"), "{err}");
    for id in &ids {
        assert!(
            err.contains(&format!("request {id} was archived by gc")),
            "{err}"
        );
    }
    assert!(refs(&repo).is_empty(), "nothing was stored");
    // The hint's command restores the archived chain.
    let restore_cmd = err
        .lines()
        .find_map(|l| l.split_once("restore it with `git ")?.1.split_once('`'))
        .map(|(cmd, _)| cmd.to_owned())
        .unwrap_or_else(|| panic!("no restore command in {err}"));
    let args: Vec<&str> = restore_cmd.split(' ').collect();
    repo.git(&args);
    assert_eq!(refs(&repo).len(), 1);
    assert!(
        tips.values()
            .any(|t| refs(&repo).values().next() == Some(t))
    );

    // --force stores a new chain for the one still archived.
    let forced = repo.json(&["enqueue", "--force", dir.to_str().unwrap()]);
    let created: Vec<bool> = forced
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["created"].as_bool().unwrap())
        .collect();
    assert_eq!(created.iter().filter(|c| **c).count(), 1, "{forced}");
    assert_eq!(refs(&repo).len(), 2);
}

/// Run `args` in `repo` with the chunk size of every many-request command set to `chunk`
/// (`None`: the real one); stdout.
fn chunked(repo: &TestRepo, chunk: Option<&str>, args: &[&str]) -> String {
    let mut cmd = repo.cmd();
    cmd.args(args);
    if let Some(n) = chunk {
        cmd.env("HYPERION_TEST_CHUNK", n);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} (chunk {chunk:?}) failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The ids of a JSON array of records, in order.
fn ids_of(json: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

/// (id, code) of each doctor finding, in order.
fn findings(doc: &serde_json::Value) -> Vec<(String, String)> {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap().to_owned();
            (s("id"), s("code"))
        })
        .collect()
}

/// Enqueue of a directory, a batch lease, doctor, sweep and gc work a chunk of requests at a
/// time; with chunks of 3 (over 11 requests and a repeat of one of them) every one of them
/// gives what one chunk gives: the same ids in the same order, the same statuses, findings,
/// dead letters and archive, which restores every request at its tip, and leave as many packs.
#[test]
fn commands_in_many_chunks_give_what_one_chunk_gives() {
    let n = 11;
    let mut runs = Vec::new();
    for chunk in [None, Some("3")] {
        let repo = TestRepo::new();
        repo.git(&["config", "hyperion.maxAttempts", "1"]);
        let dir = request_dir(&repo, n, "chunks");
        // The same request again, in a later chunk: a duplicate, stored once.
        std::fs::copy(dir.join("00001.json"), dir.join("00009b.json")).unwrap();
        let run = |args: &[&str]| chunked(&repo, chunk, args);
        let mut packs = vec![repo.packs()];
        let enqueued = run(&["enqueue", dir.to_str().unwrap()]);
        packs.push(repo.packs());
        let enqueued: Vec<String> = enqueued.lines().map(str::to_owned).collect();
        assert_eq!(enqueued.len(), n + 1);
        assert_eq!(enqueued[1], enqueued[10]);
        let leased = ids_of(&run(&[
            "dequeue", "--worker", "w", "--batch", "8", "--lease", "1s", "--format", "json",
        ]));
        assert_eq!(leased.len(), 8);
        packs.push(repo.packs());
        std::thread::sleep(Duration::from_millis(1100));
        // Two refs that are no request's, in different chunks: chain findings of doctor.
        for bad in ["bad-ref", "zzz-ref"] {
            repo.git(&[
                "update-ref",
                &format!("refs/hyperion/requests/{bad}"),
                "main",
            ]);
        }
        // It finds problems: it says so in its exit status, and lists them.
        let mut cmd = repo.cmd();
        cmd.args(["doctor", "--format", "json"]);
        if let Some(n) = chunk {
            cmd.env("HYPERION_TEST_CHUNK", n);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        let doctor: serde_json::Value = serde_json::Deserializer::from_slice(&out.stdout)
            .into_iter()
            .next()
            .unwrap()
            .unwrap();
        for bad in ["bad-ref", "zzz-ref"] {
            repo.git(&["update-ref", "-d", &format!("refs/hyperion/requests/{bad}")]);
        }
        let swept: serde_json::Value =
            serde_json::from_str(&run(&["sweep", "--format", "json"])).unwrap();
        assert_eq!(swept["dead"].as_array().unwrap().len(), 8, "{swept}");
        packs.push(repo.packs());
        let statuses = repo.statuses();
        // The index rebuilt from the refs, a chunk of records written at a time, lists the same.
        run(&["doctor", "--reindex"]);
        assert_eq!(repo.statuses(), statuses, "after doctor --reindex");
        let tips = refs(&repo);
        let archived: Vec<String> = run(&["gc", "--older-than", "0s"])
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(archived.len(), 8);
        assert_eq!(refs(&repo).len(), n - 8);
        let bundle = bundles(&repo);
        assert_eq!(bundle.len(), 1);
        let back = fetched_elsewhere(&repo, &bundle[0]);
        assert_eq!(back.len(), 8);
        assert!(back.iter().all(|(name, tip)| tips.get(name) == Some(tip)));
        restore(&repo, &bundle[0]);
        assert_eq!(refs(&repo), tips, "the archive restores every tip");
        runs.push((
            enqueued,
            leased,
            doctor["requests"].clone(),
            findings(&doctor),
            swept["dead"].clone(),
            statuses,
            archived,
            packs,
        ));
    }
    let (one, many) = (&runs[0], &runs[1]);
    assert_eq!(one.0, many.0, "enqueue");
    assert_eq!(one.1, many.1, "dequeue --batch");
    assert_eq!(one.2, many.2, "doctor: requests");
    assert_eq!(one.3, many.3, "doctor: findings");
    assert_eq!(
        one.3.iter().filter(|(_, c)| c == "lease.expired").count(),
        8
    );
    assert_eq!(
        one.3.iter().filter(|(_, c)| c == "chain.bad_ref").count(),
        2
    );
    assert_eq!(one.4, many.4, "sweep");
    assert_eq!(one.5, many.5, "statuses");
    assert_eq!(one.6, many.6, "gc");
    // A command leaves one pack however many chunks it wrote (they are joined): object
    // lookups search as many pack indexes at any size of queue.
    assert_eq!(one.7, many.7, "packs after enqueue, dequeue and sweep");
}

/// An enqueue whose third chunk fails part-way (the ref of its second request is locked by
/// another writer) has stored the first two chunks and the first request of the third: the
/// error lists exactly those as stored, and the rest, later chunks included, as not stored;
/// what was stored was printed before it. Submitting again stores the rest.
#[test]
fn an_enqueue_failing_in_a_later_chunk_reports_the_earlier_chunks_stored() {
    let repo = TestRepo::new();
    let dir = request_dir(&repo, 11, "later");
    let planned = repo.ids(&["enqueue", "--dry-run", dir.to_str().unwrap()]);
    assert_eq!(planned.len(), 11);
    let refs_dir = repo.git_dir().join("refs/hyperion/requests");
    std::fs::create_dir_all(&refs_dir).unwrap();
    let lock = refs_dir.join(format!("{}.lock", planned[7]));
    std::fs::write(&lock, "").unwrap();

    let out = repo
        .cmd()
        .args(["enqueue", dir.to_str().unwrap()])
        .env("HYPERION_TEST_CHUNK", "3")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("[store.incomplete]"), "{stderr}");
    let listed = |key: &str| -> Vec<String> {
        stderr
            .lines()
            .filter_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(listed("stored"), planned[..7], "{stderr}");
    assert_eq!(listed("not_stored"), planned[7..], "{stderr}");
    let printed: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(printed, planned[..6], "the stored chunks are printed");
    let mut stored: Vec<String> = refs(&repo)
        .keys()
        .map(|r| r.trim_start_matches("refs/hyperion/requests/").to_owned())
        .collect();
    stored.sort();
    let mut said = planned[..7].to_vec();
    said.sort();
    assert_eq!(stored, said);

    std::fs::remove_file(&lock).unwrap();
    let again = chunked(&repo, Some("3"), &["enqueue", dir.to_str().unwrap()]);
    assert_eq!(again.lines().collect::<Vec<_>>(), planned);
    assert_eq!(refs(&repo).len(), 11);
}

/// The spare files in the repository's pool.
fn spares(repo: &TestRepo) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(repo.git_dir().join("hyperion/spares"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

/// gc keeps the file of every loose ref it removes as a spare (so that the removal frees no
/// disk block): after it, the pool holds at least one file per removed ref, each with no
/// other name; and `gc --trim-spares` deletes what is beyond the 4,096 kept.
#[test]
fn gc_keeps_the_files_of_removed_refs_as_spares_and_trim_gives_the_rest_back() {
    use std::os::unix::fs::MetadataExt;
    let n = 40;
    let (repo, _) = dead_letters(n, "spares");
    let before = spares(&repo).len();
    assert_eq!(repo.ok(&["gc", "--older-than", "0s"]).lines().count(), n);
    assert!(refs(&repo).is_empty());
    let after = spares(&repo);
    assert!(
        after.len() >= before + n,
        "{before} spares before gc, {} after removing {n} refs",
        after.len()
    );
    for s in &after {
        assert_eq!(std::fs::metadata(s).unwrap().nlink(), 1, "{}", s.display());
    }
    // Beyond 4,096 spares, trimming deletes the rest (plain files stand for spares here).
    let dir = repo.git_dir().join("hyperion/spares");
    for i in 0..(4200 - after.len()) {
        std::fs::write(dir.join(format!("r-test-{i}")), "x").unwrap();
    }
    let trimmed = repo.json(&["gc", "--trim-spares"]);
    assert_eq!(trimmed["trimmed"], 104, "{trimmed}");
    assert_eq!(spares(&repo).len(), 4096);
    let again = repo.json(&["gc", "--trim-spares"]);
    assert_eq!(again["trimmed"], 0, "{again}");
}

/// After a gc that removed refs, the spares beyond 4,096 are trimmed: by a process of its own
/// that outlives gc (`hyperion.autoDetach`, the default), or before gc exits when it is off.
#[test]
fn gc_trims_spares_beyond_what_is_kept_detached_or_before_it_exits() {
    let fill = |repo: &TestRepo| {
        let dir = repo.git_dir().join("hyperion/spares");
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..4300 {
            std::fs::write(dir.join(format!("r-test-{i}")), "x").unwrap();
        }
    };
    // The tests' repositories set hyperion.autoDetach=false.
    let (repo, _) = dead_letters(6, "trim");
    fill(&repo);
    assert_eq!(repo.ok(&["gc", "--older-than", "0s"]).lines().count(), 6);
    assert_eq!(spares(&repo).len(), 4096, "trimmed before gc exited");
    assert!(!repo.git_dir().join("hyperion/trim.log").exists());

    let (repo, _) = dead_letters(6, "trim-detached");
    repo.git(&["config", "hyperion.autoDetach", "true"]);
    fill(&repo);
    assert_eq!(repo.ok(&["gc", "--older-than", "0s"]).lines().count(), 6);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while spares(&repo).len() > 4096 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} spares left 20 s after gc",
            spares(&repo).len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(repo.git_dir().join("hyperion/trim.log").exists());
}

/// A gc that meets another writer's lock on one of the refs stops there with an error: the
/// refs before it are gone (each in the archive, restorable at its tip), the rest keep their
/// tips, and no ref that is left has its file set aside as a spare (one more name for it
/// would let a writer taking spares afterwards write into a live ref). Writers taking spares
/// afterwards (new requests, transitions) leave every left ref at its tip; doctor is clean;
/// a second gc, the lock gone, finishes.
#[test]
fn refs_whose_removal_failed_are_never_overwritten_through_their_spares() {
    use std::os::unix::fs::MetadataExt;
    let n = 30;
    let (repo, ids) = dead_letters(n, "stuck");
    let tips = refs(&repo);
    // A live writer's lock (fresh: not taken for a dead writer's) on one of the refs.
    let lock = repo
        .git_dir()
        .join(format!("refs/hyperion/requests/{}.lock", ids[7]));
    std::fs::write(&lock, "").unwrap();
    let out = repo
        .cmd()
        .args(["gc", "--older-than", "0s", "--format", "json"])
        .env("HYPERION_TEST_CHUNK", "100")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "gc went through a held lock");
    let left = refs(&repo);
    let held = format!("refs/hyperion/requests/{}", ids[7]);
    assert_eq!(left.get(&held), tips.get(&held));
    assert!(left.len() < n);
    // The error says what was removed and what stays, never "nothing was changed".
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("[store.gc_incomplete]"), "{stderr}");
    assert!(!stderr.contains("nothing was changed"), "{stderr}");
    assert!(stderr.contains(&format!("kept: {}", ids[7])), "{stderr}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["code"], "store.gc_incomplete");
    let listed = |key: &str| -> Vec<String> {
        let mut v: Vec<String> = doc["error"][key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| format!("refs/hyperion/requests/{}", v.as_str().unwrap()))
            .collect();
        v.sort();
        v
    };
    let mut gone: Vec<String> = tips
        .keys()
        .filter(|name| !left.contains_key(*name))
        .cloned()
        .collect();
    gone.sort();
    assert_eq!(listed("archived"), gone);
    for id in &gone {
        let id = id.trim_start_matches("refs/hyperion/requests/");
        assert!(stderr.contains(&format!("archived: {id}")), "{stderr}");
    }
    let kept = listed("kept");
    assert!(kept.contains(&held), "{kept:?}");
    assert!(kept.iter().all(|name| left.contains_key(name)), "{kept:?}");
    for (name, tip) in &left {
        assert_eq!(tips.get(name), Some(tip));
        let links = std::fs::metadata(repo.git_dir().join(name))
            .unwrap()
            .nlink();
        assert_eq!(links, 1, "{name} was set aside though it stays");
    }
    std::fs::remove_file(&lock).unwrap();
    // Writers taking spares: new requests, and transitions of the old ones.
    repo.enqueue(&request_dir(&repo, 2 * n, "after"));
    let requeued = format!("refs/hyperion/requests/{}", ids[7]);
    repo.ok(&["requeue", &ids[7], "--reason", "again"]);
    let mut now = refs(&repo);
    assert_ne!(now.remove(&requeued), tips.get(&requeued).cloned());
    for (name, tip) in &left {
        if *name != requeued {
            assert_eq!(now.get(name), Some(tip), "{name} was overwritten");
        }
    }
    repo.ok(&["doctor"]);
    // What the failed gc removed is in its archive, at the tips it had.
    let gone: Vec<&String> = tips
        .keys()
        .filter(|name| !left.contains_key(*name))
        .collect();
    let bundle = bundles(&repo)[0].clone();
    repo.git(&[
        "fetch",
        "-q",
        bundle.to_str().unwrap(),
        "refs/hyperion/requests/*:refs/restored/*",
    ]);
    for name in gone {
        let restored = name.replace("refs/hyperion/requests/", "refs/restored/");
        assert_eq!(repo.git(&["rev-parse", &restored]).trim(), tips[name]);
    }
}

/// gc copies the objects hyperion stored whole into its archive as they are, and writes the
/// others whole: here every object of the chains sits in a pack git made with deltas
/// (`git repack -adf`, which users' maintenance runs), or loose (unpacked by hand). Either
/// way the archive passes `git bundle verify` and a strict fetch into a repository of its
/// own, and restores every request at its tip.
#[test]
fn gc_archives_chains_git_repacked_as_deltas_or_left_loose() {
    for layout in ["deltas", "loose"] {
        let (repo, _) = dead_letters(30, layout);
        // Requests gc keeps, whose objects git packs among the others: an entry copied as it
        // is could not keep a delta's base at its distance.
        let pending = repo.enqueue(&request_dir(&repo, 10, &format!("{layout}-pending")));
        repo.git(&["repack", "-adfq", "--window=250", "--depth=50"]);
        let pack_dir = repo.git_dir().join("objects/pack");
        let packs: Vec<_> = std::fs::read_dir(&pack_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "pack"))
            .collect();
        assert_eq!(packs.len(), 1, "{layout}");
        if layout == "deltas" {
            let in_chains = chain_objects_stored_as_deltas(&repo);
            assert!(
                in_chains > 10,
                "the test needs chains stored as deltas: {in_chains}"
            );
        } else {
            let aside = repo.home.path().join("aside.pack");
            std::fs::rename(&packs[0], &aside).unwrap();
            std::fs::remove_file(packs[0].with_extension("idx")).unwrap();
            let out = repo
                .command("git")
                .args(["unpack-objects", "-q"])
                .stdin(std::fs::File::open(&aside).unwrap())
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            assert_eq!(repo.packs(), 0);
        }
        let all = refs(&repo);
        let archived = repo.ok(&["gc", "--older-than", "0s"]);
        assert_eq!(archived.lines().count(), 30, "{layout}");
        assert_eq!(refs(&repo).len(), pending.len());
        let tips: BTreeMap<String, String> = all
            .iter()
            .filter(|(name, _)| !pending.iter().any(|p| name.ends_with(p.as_str())))
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect();
        let bundle = bundles(&repo);
        assert_eq!(fetched_elsewhere(&repo, &bundle[0]), tips, "{layout}");
        restore(&repo, &bundle[0]);
        assert_eq!(refs(&repo), all, "{layout}");
    }
}
