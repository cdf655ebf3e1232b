//! Landing onto a branch a person has checked out: workers killed or stopped half-way, a
//! person editing meanwhile, markers and locks planted by hand. A live landing is waited for,
//! never repaired; an interrupted one is put back only where that is provably what the worker
//! wrote, else everything stays as it is and landings stop with a stable code; a marker never
//! makes git run anywhere but in a checkout git itself lists.

use std::path::Path;
use std::process::Child;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::TestRepo;
use crate::harness::{
    Attack, adds, assert_refusal, landing_file, plant_marker, request, signal, work_once,
    worker_paused_at,
};

const A: &str = "a1\na2\na3\na4\na5\na6\na7\na8\n";
const MAIN: &str = "refs/heads/main";

/// A repository with `a.txt`, `b.txt` and `gone.txt` on `main`, checked out; retries fast,
/// landings wait 1 s for one another.
fn target() -> Attack {
    let mut a = Attack::new();
    for (k, v) in [
        ("hyperion.retryBackoff", "1ms"),
        ("hyperion.maxAttempts", "100"),
        ("hyperion.landingWait", "1s"),
    ] {
        a.repo.git(&["config", k, v]);
    }
    a.commit(&[
        ("a.txt", A),
        ("b.txt", "b1\nb2\n"),
        ("gone.txt", "to be deleted\n"),
    ]);
    a
}

/// Edits line 2 of a.txt, deletes gone.txt, adds new.txt.
fn landing() -> Value {
    let edit = "--- a/a.txt\n+++ b/a.txt\n@@ -1,5 +1,5 @@\n a1\n-a2\n+a2 landed\n a3\n a4\n a5\n";
    let gone = "diff --git a/gone.txt b/gone.txt\ndeleted file mode 100644\n--- a/gone.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-to be deleted\n";
    let new = "diff --git a/new.txt b/new.txt\nnew file mode 100644\n--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+added by the landing\n";
    request(
        "LAND-1",
        &[
            ("a.txt", "update", edit),
            ("gone.txt", "delete", gone),
            ("new.txt", "add", new),
        ],
        json!({}),
    )
}

fn other(n: usize) -> Value {
    adds(&format!("LAND-{n}"), &format!("f{n}.txt"), "more\n")
}

fn tip(repo: &TestRepo) -> String {
    repo.git(&["rev-parse", "main"]).trim().to_owned()
}

fn read(repo: &TestRepo, f: &str) -> Option<String> {
    std::fs::read_to_string(repo.path().join(f)).ok()
}

/// A worker killed (SIGKILL) at `point` of landing `landing()`.
fn kill_at(a: &Attack, point: &str) -> String {
    let id = a.enqueue(&landing());
    let mut w = worker_paused_at(&a.repo, point, "1s");
    signal(&w, "KILL");
    w.wait().unwrap();
    id
}

/// A commit on a side branch with a.txt changed to `content` (set-up, before the snapshot).
fn side_commit(a: &mut Attack, content: &str) -> String {
    let repo = &a.repo;
    repo.git(&["switch", "-q", "-c", "side"]);
    std::fs::write(repo.path().join("a.txt"), content).unwrap();
    repo.git(&["commit", "-q", "-am", "side"]);
    let id = tip_of(repo, "side");
    repo.git(&["switch", "-q", "main"]);
    a.settle();
    id
}

fn tip_of(repo: &TestRepo, branch: &str) -> String {
    repo.git(&["rev-parse", branch]).trim().to_owned()
}

fn marker(old: &str, new: &str, worktree: &Path) -> String {
    json!({
        "target": MAIN, "old": old, "new": new, "worktrees": [worktree],
        "worker": "planted", "pid": 1, "started_at": "2026-01-01T00:00:00Z"
    })
    .to_string()
}

fn only_code(reports: &[Value], code: &str) {
    assert!(!reports.is_empty());
    for r in reports {
        assert_eq!(r["code"], code, "{reports:?}");
        assert!(!r["message"].as_str().unwrap_or("").is_empty(), "{r}");
    }
}

/// `git status`, both diffs and `ls-files -s` of a repository (not the one under attack).
fn state_of(dir: &Path) -> String {
    let git = |args: &[&str]| {
        let out = crate::common::hermetic::git_output(dir, args, b"");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    [
        git(&["status", "--porcelain=v1", "--untracked-files=all"]),
        git(&["diff"]),
        git(&["diff", "--cached"]),
        git(&["ls-files", "-s"]),
        git(&["rev-parse", "HEAD"]),
        std::fs::read_to_string(dir.join("a.txt")).unwrap_or_default(),
    ]
    .join("\n---\n")
}

#[test]
fn a_landing_killed_before_it_moved_the_checkout_leaves_nothing_to_put_back() {
    let a = target();
    let first = kill_at(&a, "landing.marker_written");
    // The marker is written, the checkout and the branch are as they were.
    assert!(landing_file(&a.repo, MAIN, "json").exists());
    a.untouched();
    a.nothing_landed();
    let found = a.repo.landing_findings();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["code"], "land.interrupted");
    std::thread::sleep(Duration::from_millis(1100));
    let second = a.enqueue(&other(2));
    let reports = a.drain();
    for id in [&first, &second] {
        assert!(
            reports
                .iter()
                .any(|r| r["id"] == id.as_str() && r["result"] == "landed"),
            "{reports:?}"
        );
    }
    assert_eq!(a.repo.git(&["status", "--porcelain"]), "");
    assert!(!landing_file(&a.repo, MAIN, "json").exists());
}

#[test]
fn a_landing_killed_after_it_moved_the_checkout_is_put_back_keeping_the_persons_edits() {
    let a = target();
    kill_at(&a, "landing.checkout_moved");
    // Half-moved: the landing's changes sit in the checkout, the branch has not moved.
    assert_eq!(
        read(&a.repo, "new.txt").as_deref(),
        Some("added by the landing\n")
    );
    std::fs::write(a.repo.path().join("b.txt"), "b1\nmine, staged\n").unwrap();
    a.repo.git(&["add", "b.txt"]);
    std::fs::write(a.repo.path().join("b.txt"), "b1\nmine, staged\nmine, not\n").unwrap();
    std::fs::write(a.repo.path().join("mine.txt"), "untracked\n").unwrap();
    let staged = a.repo.git(&["diff", "--cached", "--", "b.txt"]);
    let unstaged = a.repo.git(&["diff", "--", "b.txt"]);
    a.enqueue(&other(2));
    let (reports, log) = work_once(&a.repo);
    assert!(log.contains("put the checkout back"), "{log}");
    // The person's edits make the checkout dirty: the new landing waits for them.
    only_code(&reports, "land.worktree_dirty");
    a.nothing_landed();
    // Exactly what the worker wrote was taken back; nothing of the person's.
    assert_eq!(read(&a.repo, "a.txt").as_deref(), Some(A));
    assert_eq!(
        read(&a.repo, "gone.txt").as_deref(),
        Some("to be deleted\n")
    );
    assert_eq!(read(&a.repo, "new.txt"), None);
    assert_eq!(
        read(&a.repo, "b.txt").as_deref(),
        Some("b1\nmine, staged\nmine, not\n")
    );
    assert_eq!(read(&a.repo, "mine.txt").as_deref(), Some("untracked\n"));
    assert_eq!(a.repo.git(&["diff", "--cached"]), staged);
    assert_eq!(a.repo.git(&["diff"]), unstaged);
    assert!(a.repo.landing_findings().is_empty());
}

#[test]
fn edits_to_the_files_a_killed_landing_changed_stop_landings_and_change_nothing() {
    let mut a = target();
    kill_at(&a, "landing.checkout_moved");
    let landed_a = read(&a.repo, "a.txt").unwrap();
    std::fs::write(
        a.repo.path().join("a.txt"),
        landed_a.replace("a7\n", "a7 staged by me\n"),
    )
    .unwrap();
    a.repo.git(&["add", "a.txt"]);
    std::fs::write(
        a.repo.path().join("a.txt"),
        landed_a.replace("a7\n", "a7 staged by me\n") + "a9 not staged\n",
    )
    .unwrap();
    let mine = read(&a.repo, "a.txt");
    a.settle();
    a.enqueue(&other(2));
    let (reports, log) = work_once(&a.repo);
    only_code(&reports, "land.interrupted");
    assert!(
        reports[0]["message"].as_str().unwrap().contains("a.txt"),
        "{reports:?}"
    );
    assert!(!log.contains("put the checkout back"), "{log}");
    a.untouched();
    a.nothing_landed();
    assert_eq!(read(&a.repo, "a.txt"), mine);
    assert!(landing_file(&a.repo, MAIN, "json").exists());
    let found = a.repo.landing_findings();
    assert_eq!(found[0]["code"], "land.interrupted", "{found:?}");
    let (_, err) = a.repo.fails(&["doctor"], 1);
    assert!(err.contains("[doctor.problems]"), "{err}");
}

#[test]
fn an_untracked_file_where_the_put_back_would_write_is_never_overwritten() {
    let mut a = target();
    kill_at(&a, "landing.checkout_moved");
    // The landing deleted gone.txt; the person made a file of their own there.
    assert_eq!(read(&a.repo, "gone.txt"), None);
    std::fs::write(a.repo.path().join("gone.txt"), "my own file\n").unwrap();
    a.settle();
    a.enqueue(&other(2));
    let (reports, _) = work_once(&a.repo);
    only_code(&reports, "land.interrupted");
    assert!(
        reports[0]["message"].as_str().unwrap().contains("gone.txt"),
        "{reports:?}"
    );
    a.untouched();
    a.nothing_landed();
    assert_eq!(read(&a.repo, "gone.txt").as_deref(), Some("my own file\n"));
}

#[test]
fn a_stopped_landing_is_waited_for_and_never_repaired() {
    let mut a = target();
    let first = a.enqueue(&landing());
    let mut paused = worker_paused_at(&a.repo, "landing.checkout_moved", "5m");
    a.settle();
    // The paused landing let go of the queue's index before it took the checkout: the other
    // commands use it rather than wait `hyperion.indexWait` and answer from the refs.
    let out = a
        .repo
        .cmd()
        .args(["list"])
        .env("HYPERION_LOG", "debug")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(!log.contains("index busy"), "{log}");
    let second = a.enqueue(&other(2));
    let (reports, log) = work_once(&a.repo);
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0]["id"], second.as_str());
    only_code(&reports, "land.busy");
    assert!(!log.contains("put the checkout back"), "{log}");
    a.untouched();
    a.nothing_landed();
    let found = a.repo.landing_findings();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["code"], "land.in_progress");
    assert!(
        found[0]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("pid {}", paused.id())),
        "{found:?}"
    );
    // doctor does not count a live landing as a problem.
    a.repo.ok(&["doctor"]);
    signal(&paused, "CONT");
    assert!(paused.wait().unwrap().success());
    let landed = a.repo.git(&["log", "-1", "--format=%B", "main"]);
    assert!(landed.contains(&first), "{landed}");
    assert_eq!(a.repo.git(&["status", "--porcelain"]), "");
}

#[test]
fn a_rollback_waits_for_a_live_landing_and_changes_nothing() {
    let mut a = target();
    let earlier = a.enqueue(&other(2));
    a.drain();
    a.enqueue(&landing());
    let mut paused = worker_paused_at(&a.repo, "landing.checkout_moved", "5m");
    a.settle();
    let (_, err) = a
        .repo
        .fails(&["rollback", &earlier, "--reason", "attack"], 1);
    assert_refusal(&err, "land.busy");
    a.untouched();
    signal(&paused, "CONT");
    assert!(paused.wait().unwrap().success());
    a.repo
        .ok(&["rollback", &earlier, "--reason", "after the landing"]);
    assert_eq!(a.repo.git(&["status", "--porcelain"]), "");
}

#[test]
fn a_marker_planted_with_a_live_holder_makes_landings_wait_and_changes_nothing() {
    let mut a = target();
    let new = side_commit(&mut a, "planted\n");
    let old = tip(&a.repo);
    plant_marker(&a.repo, MAIN, &marker(&old, &new, a.repo.path()));
    // A live process holds the landing lock (flock(1) from util-linux).
    let lock = landing_file(&a.repo, MAIN, "lock");
    let mut holder: Child = std::process::Command::new("flock")
        .arg("--close")
        .arg(&lock)
        .args(["sleep", "60"])
        .spawn()
        .unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while a
        .repo
        .landing_findings()
        .iter()
        .all(|f| f["code"] != "land.in_progress")
    {
        assert!(
            std::time::Instant::now() < until,
            "flock never took the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let id = a.enqueue(&other(2));
    let reports = a.drain();
    only_code(&reports, "land.busy");
    a.untouched();
    a.nothing_landed();
    holder.kill().unwrap();
    holder.wait().unwrap();
    // Its holder gone, the marker names a move the checkout shows no sign of: forgotten.
    std::thread::sleep(Duration::from_millis(20));
    let reports = a.drain();
    assert!(
        reports
            .iter()
            .any(|r| r["id"] == id.as_str() && r["result"] == "landed"),
        "{reports:?}"
    );
    assert_eq!(read(&a.repo, "a.txt").as_deref(), Some(A));
    assert!(!landing_file(&a.repo, MAIN, "json").exists());
}

#[test]
fn a_marker_planted_with_a_dead_holder_never_reverts_the_persons_edits() {
    let mut a = target();
    let new = side_commit(&mut a, "planted\n");
    let old = tip(&a.repo);
    plant_marker(&a.repo, MAIN, &marker(&old, &new, a.repo.path()));
    std::fs::write(a.repo.path().join("a.txt"), "the person's a\n").unwrap();
    a.settle();
    a.enqueue(&other(2));
    let reports = a.drain();
    only_code(&reports, "land.interrupted");
    a.untouched();
    a.nothing_landed();
    assert_eq!(read(&a.repo, "a.txt").as_deref(), Some("the person's a\n"));
}

#[test]
fn a_marker_pointing_outside_the_repository_never_runs_git_there() {
    let mut a = target();
    let new = side_commit(&mut a, "planted\n");
    let old = tip(&a.repo);
    // Elsewhere, a repository at `new`, where `read-tree -u -m NEW OLD` would succeed.
    let elsewhere = tempfile::tempdir().unwrap();
    let outside = elsewhere.path().join("victim");
    a.repo.git(&[
        "clone",
        "-q",
        a.repo.path().to_str().unwrap(),
        outside.to_str().unwrap(),
    ]);
    let victim = |args: &[&str]| {
        assert!(
            crate::common::hermetic::git_output(&outside, args, b"")
                .status
                .success()
        )
    };
    victim(&["checkout", "-q", &new]);
    let before = state_of(&outside);
    assert!(before.contains("planted"));
    plant_marker(&a.repo, MAIN, &marker(&old, &new, &outside));
    let id = a.enqueue(&other(2));
    let out = a.repo.run(&["worker", "--drain", "--format", "json"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("not a checkout of the branch"), "{log}");
    assert_eq!(state_of(&outside), before, "git ran outside the repository");
    // The marker concerned no checkout of main: the landing went ahead.
    let landed = a.repo.git(&["log", "-1", "--format=%B", "main"]);
    assert!(landed.contains(&id), "{landed}");
    assert_eq!(a.repo.git(&["status", "--porcelain"]), "");
    assert!(!landing_file(&a.repo, MAIN, "json").exists());
}

#[test]
fn an_unreadable_marker_stops_landings_and_changes_nothing() {
    let a = target();
    plant_marker(&a.repo, MAIN, "{\"target\": \"refs/heads/main\", \"old\":");
    a.enqueue(&other(2));
    let reports = a.drain();
    only_code(&reports, "land.interrupted");
    a.untouched();
    a.nothing_landed();
    let found = a.repo.landing_findings();
    assert_eq!(found[0]["code"], "land.interrupted", "{found:?}");
    a.repo.fails(&["doctor"], 1);
}

#[test]
fn a_marker_naming_another_branch_stops_landings_and_changes_nothing() {
    let mut a = target();
    let new = side_commit(&mut a, "planted\n");
    let old = tip(&a.repo);
    let text = marker(&old, &new, a.repo.path()).replace(MAIN, "refs/heads/side");
    plant_marker(&a.repo, MAIN, &text);
    a.enqueue(&other(2));
    let reports = a.drain();
    only_code(&reports, "land.interrupted");
    assert!(
        reports[0]["message"]
            .as_str()
            .unwrap()
            .contains("refs/heads/side"),
        "{reports:?}"
    );
    a.untouched();
    a.nothing_landed();
}

#[test]
fn a_marker_naming_commits_the_repository_lacks_changes_nothing() {
    let a = target();
    let old = tip(&a.repo);
    let missing = "0123456789abcdef0123456789abcdef01234567";
    plant_marker(&a.repo, MAIN, &marker(&old, missing, a.repo.path()));
    a.enqueue(&other(2));
    let reports = a.drain();
    only_code(&reports, "land.interrupted");
    a.untouched();
    a.nothing_landed();
}

#[test]
fn a_stale_index_lock_in_the_checkout_is_never_removed() {
    let mut a = target();
    let lock = a.repo.git_dir().join("index.lock");
    std::fs::write(&lock, b"").unwrap();
    let ok = std::process::Command::new("touch")
        .args(["-d", "1 minute ago"])
        .arg(&lock)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    a.settle();
    a.enqueue(&other(2));
    let reports = a.drain();
    only_code(&reports, "land.worktree_locked");
    assert!(lock.exists(), "the person's index.lock was removed");
    a.untouched();
    a.nothing_landed();
    let found = a.repo.landing_findings();
    assert!(
        found.iter().any(|f| f["code"] == "land.index_lock"),
        "{found:?}"
    );
}

#[test]
fn a_landing_killed_in_a_linked_worktree_is_put_back_there() {
    let mut a = target();
    // The main worktree is on another branch; main is checked out in a linked worktree.
    a.repo.git(&["switch", "-q", "-c", "elsewhere"]);
    let home = tempfile::tempdir().unwrap();
    let wt = home.path().join("linked");
    a.repo
        .git(&["worktree", "add", "-q", wt.to_str().unwrap(), "main"]);
    a.settle();
    kill_at(&a, "landing.checkout_moved");
    assert!(wt.join("new.txt").exists(), "the linked checkout was moved");
    std::fs::write(wt.join("b.txt"), "b1\nedited in the linked worktree\n").unwrap();
    a.enqueue(&other(2));
    let (reports, log) = work_once(&a.repo);
    assert!(log.contains("put the checkout back"), "{log}");
    only_code(&reports, "land.worktree_dirty");
    assert!(!wt.join("new.txt").exists());
    assert_eq!(std::fs::read_to_string(wt.join("a.txt")).unwrap(), A);
    assert_eq!(
        std::fs::read_to_string(wt.join("b.txt")).unwrap(),
        "b1\nedited in the linked worktree\n"
    );
    a.nothing_landed();
    // The main worktree, on its own branch, never moved.
    a.untouched();
}

#[test]
fn a_person_committing_in_a_half_moved_checkout_keeps_their_commit() {
    let a = target();
    kill_at(&a, "landing.checkout_moved");
    // The person commits what they see, the landing's changes included, and more.
    std::fs::write(a.repo.path().join("b.txt"), "b1\nmine\n").unwrap();
    a.repo.git(&["commit", "-q", "-am", "the person's commit"]);
    let theirs = tip(&a.repo);
    std::thread::sleep(Duration::from_millis(1100));
    let (reports, log) = work_once(&a.repo);
    assert!(!log.contains("put the checkout back"), "{log}");
    // Their commit stays; the checkout is left as they made it.
    assert_eq!(
        a.repo
            .git(&["rev-list", "--count", &format!("{theirs}..main")]),
        a.repo.git(&[
            "rev-list",
            "--count",
            "--first-parent",
            &format!("{theirs}..main")
        ]),
    );
    a.repo
        .git(&["merge-base", "--is-ancestor", &theirs, "main"]);
    assert_eq!(read(&a.repo, "b.txt").as_deref(), Some("b1\nmine\n"));
    assert_eq!(a.repo.git(&["status", "--porcelain"]), "");
    // Its changes are already there: the request does not land a second time.
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0]["status"], "dead", "{reports:?}");
    let log = a.repo.git(&["log", "--format=%B", "main"]);
    assert!(!log.contains("Hyperion-Request"), "{log}\n{reports:?}");
    // Nothing is pending: doctor has nothing to say, the next landing drops the marker.
    assert!(a.repo.landing_findings().is_empty());
    let id = a.enqueue(&other(2));
    let (reports, log) = work_once(&a.repo);
    assert_eq!(reports[0]["id"], id.as_str());
    assert_eq!(reports[0]["result"], "landed", "{reports:?}");
    assert!(!log.contains("put the checkout back"), "{log}");
    a.repo
        .git(&["merge-base", "--is-ancestor", &theirs, "main"]);
    assert_eq!(read(&a.repo, "b.txt").as_deref(), Some("b1\nmine\n"));
    assert!(!landing_file(&a.repo, MAIN, "json").exists());
}
