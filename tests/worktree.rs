#![allow(clippy::unwrap_used)]
//! The worktree pool on real repositories: incremental checkout, cleaning, slots held by
//! processes (freed when one is killed), repair of a slot deleted by hand.

mod common;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::TestRepo;
use hyperion::worktree::{Moved, Pool, Slot};

fn oid(hex: &str) -> gix::ObjectId {
    gix::ObjectId::from_hex(hex.as_bytes()).unwrap()
}

fn commit(repo: &TestRepo, files: &[(&str, &str)], msg: &str) -> String {
    for (name, content) in files {
        let p = repo.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", msg]);
    repo.git(&["rev-parse", "HEAD"]).trim().to_owned()
}

/// Take the slot at `path` again. Its lock may stay held for a moment after it was let go: a
/// process another test thread is starting holds copies of every descriptor from its fork to
/// its exec, and the pool then hands out the next slot.
fn acquire_again(pool: &Pool, git_dir: &std::path::Path, path: &std::path::Path) -> Slot {
    for _ in 0..500 {
        let slot = pool.acquire(git_dir).unwrap();
        if slot.path() == path {
            return slot;
        }
        drop(slot);
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("{} is not free again", path.display());
}

#[test]
fn a_slot_moves_between_commits_touching_only_what_differs() {
    let repo = TestRepo::new();
    let a = commit(
        &repo,
        &[
            ("keep.txt", "same\n"),
            ("change.txt", "one\n"),
            (".gitignore", "cache/\n"),
        ],
        "a",
    );
    let b = commit(&repo, &[("change.txt", "two\n"), ("new/x.txt", "x\n")], "b");
    let pool = Pool::new(&repo.git_dir());
    let gix_repo = gix::open(repo.git_dir()).unwrap();
    let mut slot = pool.acquire(&repo.git_dir()).unwrap();
    assert!(
        slot.path()
            .starts_with(repo.git_dir().join("hyperion/worktrees"))
    );
    assert_eq!(slot.checkout(&gix_repo, oid(&a)).unwrap(), Moved::Full);
    let p = slot.path().to_path_buf();
    assert_eq!(
        std::fs::read_to_string(p.join("change.txt")).unwrap(),
        "one\n"
    );
    let keep = std::fs::metadata(p.join("keep.txt")).unwrap();
    // What a check might leave behind.
    std::fs::write(p.join("change.txt"), "scribbled\n").unwrap();
    std::fs::write(p.join("stray.txt"), "untracked\n").unwrap();
    std::fs::create_dir_all(p.join("cache")).unwrap();
    std::fs::write(p.join("cache/build.o"), "ignored\n").unwrap();
    std::thread::sleep(Duration::from_millis(20));

    assert_eq!(
        slot.checkout(&gix_repo, oid(&b)).unwrap(),
        Moved::Full,
        "a scribbled slot is checked out fully"
    );
    assert_eq!(
        std::fs::read_to_string(p.join("change.txt")).unwrap(),
        "two\n"
    );
    assert_eq!(std::fs::read_to_string(p.join("new/x.txt")).unwrap(), "x\n");
    assert!(!p.join("stray.txt").exists(), "untracked files are removed");
    assert!(
        p.join("cache/build.o").exists(),
        "ignored files (caches) survive"
    );
    let keep2 = std::fs::metadata(p.join("keep.txt")).unwrap();
    assert_eq!(
        keep.ino(),
        keep2.ino(),
        "an unchanged file is not rewritten"
    );
    assert_eq!(keep.mtime_nsec(), keep2.mtime_nsec());
    // The user's checkout is untouched.
    assert_eq!(repo.git(&["status", "--porcelain"]), "");
    assert_eq!(repo.git(&["rev-parse", "HEAD"]).trim(), b);
}

#[test]
fn slots_held_at_once_differ_and_a_deleted_slot_is_rebuilt() {
    let repo = TestRepo::new();
    let a = commit(&repo, &[("f.txt", "f\n")], "a");
    let pool = Pool::new(&repo.git_dir());
    let s1 = pool.acquire(&repo.git_dir()).unwrap();
    let s2 = pool.acquire(&repo.git_dir()).unwrap();
    assert_ne!(s1.path(), s2.path());
    let first = s1.path().to_path_buf();
    drop(s1);
    drop(s2);
    std::fs::remove_dir_all(&first).unwrap();
    let mut again = acquire_again(&pool, &repo.git_dir(), &first);
    again
        .checkout(&gix::open(repo.git_dir()).unwrap(), oid(&a))
        .unwrap();
    assert_eq!(std::fs::read_to_string(first.join("f.txt")).unwrap(), "f\n");
}

/// Run as a child: hold slot 0 of the repository in HYPERION_TEST_HOLD and sleep.
#[test]
fn holder() {
    let Ok(dir) = std::env::var("HYPERION_TEST_HOLD") else {
        return;
    };
    let git_dir = std::path::PathBuf::from(dir);
    let _slot = Pool::new(&git_dir).acquire(&git_dir).unwrap();
    println!("holding");
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_slot_of_a_killed_process_is_free_again() {
    use std::io::BufRead;
    let repo = TestRepo::new();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "holder", "--nocapture", "--test-threads=1"])
        .env("HYPERION_TEST_HOLD", repo.git_dir())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("holding") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the holder died");
    }
    let pool = Pool::new(&repo.git_dir());
    let other = pool.acquire(&repo.git_dir()).unwrap();
    assert!(other.path().ends_with("hyperion-1"), "slot 0 is held");
    drop(other);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let freed = pool.acquire(&repo.git_dir()).unwrap();
    assert!(
        freed.path().ends_with("hyperion-0"),
        "{}",
        freed.path().display()
    );
}

/// A slot nobody touched moves in process; after every move its files, index and HEAD are
/// exactly what `git checkout` would leave: git sees a clean checkout of the commit.
#[test]
fn an_untouched_slot_moves_in_process_and_git_agrees() {
    use std::os::unix::fs::PermissionsExt;
    let repo = TestRepo::new();
    let mut commits = vec![commit(
        &repo,
        &[
            ("a.txt", "a\n"),
            ("dir/b.txt", "b\n"),
            ("dir/deep/c.txt", "c\n"),
            ("gone/d.txt", "d\n"),
            (".gitignore", "cache/\n"),
        ],
        "one",
    )];
    // Edits, additions in new directories, a removed directory, an executable, a symlink,
    // a rename, a file where a symlink was.
    std::fs::remove_dir_all(repo.path().join("gone")).unwrap();
    commits.push(commit(
        &repo,
        &[
            ("a.txt", "a2\n"),
            ("new/sub/e.txt", "e\n"),
            ("run.sh", "#!/bin/sh\n"),
        ],
        "two",
    ));
    std::fs::set_permissions(
        repo.path().join("run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("a.txt", repo.path().join("link")).unwrap();
    std::fs::rename(
        repo.path().join("dir/b.txt"),
        repo.path().join("dir/b2.txt"),
    )
    .unwrap();
    commits.push(commit(&repo, &[], "three"));
    std::fs::remove_file(repo.path().join("link")).unwrap();
    commits.push(commit(&repo, &[("link", "now a file\n")], "four"));

    let gix_repo = gix::open(repo.git_dir()).unwrap();
    let pool = Pool::new(&repo.git_dir());
    let mut slot = pool.acquire(&repo.git_dir()).unwrap();
    let p = slot.path().to_path_buf();
    let git_in_slot = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .current_dir(&p)
            .args(args)
            .env_remove("GIT_DIR")
            .env_remove("GIT_INDEX_FILE")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(
        slot.checkout(&gix_repo, oid(&commits[0])).unwrap(),
        Moved::Full
    );
    // A cache directory a check made (ignored): not watched, kept.
    std::fs::create_dir_all(p.join("cache")).unwrap();
    assert_eq!(
        slot.checkout(&gix_repo, oid(&commits[0])).unwrap(),
        Moved::Full
    );
    std::fs::write(p.join("cache/obj"), "built\n").unwrap();
    // Forwards and backwards through every pair.
    let order = [1, 2, 3, 0, 3, 1, 0, 2];
    for &i in &order {
        let moved = slot.checkout(&gix_repo, oid(&commits[i])).unwrap();
        assert!(
            matches!(moved, Moved::Incremental { .. }),
            "to commit {i}: {moved:?}"
        );
        assert_eq!(git_in_slot(&["rev-parse", "HEAD"]).trim(), commits[i]);
        assert_eq!(
            git_in_slot(&["status", "--porcelain", "--untracked-files=all"]),
            "",
            "to commit {i}"
        );
        // The index matches HEAD's tree exactly, stat data included (no refresh needed).
        assert_eq!(git_in_slot(&["diff-index", "--cached", "HEAD"]), "");
        assert_eq!(git_in_slot(&["diff-files"]), "", "stat data is fresh");
        let listed = git_in_slot(&["ls-files", "-s"]);
        let tree = repo.git(&["ls-tree", "-r", &commits[i]]);
        assert_eq!(listed.lines().count(), tree.lines().count());
        assert!(p.join("cache/obj").exists(), "ignored files survive");
    }
    assert!(!p.join("gone").exists(), "emptied directories go");

    // Anything that touches the slot makes the next move a full one, which cleans it.
    std::fs::write(p.join("a.txt"), "scribbled\n").unwrap();
    std::fs::write(p.join("dir/stray.txt"), "stray\n").unwrap();
    assert_eq!(
        slot.checkout(&gix_repo, oid(&commits[1])).unwrap(),
        Moved::Full
    );
    assert_eq!(std::fs::read_to_string(p.join("a.txt")).unwrap(), "a2\n");
    assert!(!p.join("dir/stray.txt").exists());
    assert_eq!(git_in_slot(&["status", "--porcelain"]), "");
    assert!(matches!(
        slot.checkout(&gix_repo, oid(&commits[3])).unwrap(),
        Moved::Incremental { .. }
    ));
}

/// An in-process move writes a changed file over itself and replaces the index and `HEAD` by
/// exchange with a companion, so a steady stream of moves makes and frees no file — but a
/// file someone has open is replaced, never written under its reader.
#[test]
fn moves_reuse_files_but_not_one_someone_has_open() {
    let repo = TestRepo::new();
    let a = commit(&repo, &[("f.txt", "one\n"), ("g.txt", "g\n")], "a");
    let b = commit(&repo, &[("f.txt", "two, longer\n")], "b");
    let gix_repo = gix::open(repo.git_dir()).unwrap();
    let mut slot = Pool::new(&repo.git_dir()).acquire(&repo.git_dir()).unwrap();
    let p = slot.path().to_path_buf();
    let slot_git = repo
        .git_dir()
        .join("worktrees")
        .join(p.file_name().unwrap());
    assert_eq!(slot.checkout(&gix_repo, oid(&a)).unwrap(), Moved::Full);
    // A file is known by its inode and its birth time (a freed inode number is soon reused).
    let id = |m: std::fs::Metadata| (m.ino(), m.created().ok());
    let inodes = || {
        let ino = |path: std::path::PathBuf| id(std::fs::metadata(path).unwrap());
        let pair = |name: &str| {
            let mut v = [
                ino(slot_git.join(name)),
                ino(slot_git.join(format!("{name}.hyperion-spare"))),
            ];
            v.sort();
            v
        };
        (ino(p.join("f.txt")), pair("index"), pair("HEAD"))
    };
    // Two moves make the companions; after that the files are the same ones. (A move may
    // make a new file while another thread of this test binary spawns a process, which then
    // holds a copy of every descriptor: try a few times.)
    slot.checkout(&gix_repo, oid(&b)).unwrap();
    slot.checkout(&gix_repo, oid(&a)).unwrap();
    let kept = (0..50).any(|i| {
        let before = inodes();
        let to = if i % 2 == 0 { &b } else { &a };
        let moved = slot.checkout(&gix_repo, oid(to)).unwrap();
        assert!(
            matches!(moved, Moved::Incremental { files: 1 }),
            "{moved:?}"
        );
        inodes() == before
    });
    assert!(kept, "a steady stream of moves reuses its files");
    let now = repo.git(&["-C", p.to_str().unwrap(), "rev-parse", "HEAD"]);
    let (next, content) = if now.trim() == a {
        (&b, "two, longer\n")
    } else {
        (&a, "one\n")
    };
    let reader = std::fs::File::open(p.join("f.txt")).unwrap();
    let before = std::fs::read_to_string(p.join("f.txt")).unwrap();
    slot.checkout(&gix_repo, oid(next)).unwrap();
    assert_eq!(std::fs::read_to_string(p.join("f.txt")).unwrap(), content);
    assert_ne!(id(reader.metadata().unwrap()), inodes().0, "a new file");
    let mut seen = String::new();
    std::io::Read::read_to_string(&mut &reader, &mut seen).unwrap();
    assert_eq!(seen, before, "the reader keeps what it opened");
    let status = repo.git(&["-C", p.to_str().unwrap(), "status", "--porcelain"]);
    assert_eq!(status, "");
}

/// The index a move writes is the slot's whole truth: a check that changed the index without
/// touching a file (`git rm --cached`) finds it put back by the next in-process move, and git
/// reads every index hyperion writes (version 2, checked by `git status` and `ls-files`).
#[test]
fn a_move_puts_back_an_index_a_check_changed() {
    let repo = TestRepo::new();
    let a = commit(&repo, &[("f.txt", "one\n"), ("d/g.txt", "g\n")], "a");
    let b = commit(&repo, &[("f.txt", "two\n")], "b");
    let gix_repo = gix::open(repo.git_dir()).unwrap();
    let mut slot = Pool::new(&repo.git_dir()).acquire(&repo.git_dir()).unwrap();
    let p = slot.path().to_str().unwrap().to_owned();
    assert_eq!(slot.checkout(&gix_repo, oid(&a)).unwrap(), Moved::Full);
    assert!(matches!(
        slot.checkout(&gix_repo, oid(&b)).unwrap(),
        Moved::Incremental { .. }
    ));
    repo.git(&["-C", &p, "rm", "-q", "--cached", "d/g.txt"]);
    assert!(!repo.git(&["-C", &p, "status", "--porcelain"]).is_empty());
    assert!(matches!(
        slot.checkout(&gix_repo, oid(&a)).unwrap(),
        Moved::Incremental { .. }
    ));
    assert_eq!(repo.git(&["-C", &p, "status", "--porcelain"]), "");
    assert_eq!(
        repo.git(&["-C", &p, "ls-files", "-s"]),
        repo.git(&[
            "ls-tree",
            "-r",
            "--format=%(objectmode) %(objectname) 0\t%(path)",
            &a
        ])
    );
}

/// A slot this process lets go of and takes again keeps moving in process, unless something
/// touched it in between.
#[test]
fn a_slot_taken_again_by_the_same_process_remembers_what_it_holds() {
    let repo = TestRepo::new();
    let a = commit(&repo, &[("f.txt", "one\n")], "a");
    let b = commit(&repo, &[("f.txt", "two\n")], "b");
    let gix_repo = gix::open(repo.git_dir()).unwrap();
    let pool = Pool::new(&repo.git_dir());
    let mut slot = pool.acquire(&repo.git_dir()).unwrap();
    let p = slot.path().to_path_buf();
    assert_eq!(slot.checkout(&gix_repo, oid(&a)).unwrap(), Moved::Full);
    drop(slot);
    let mut slot = acquire_again(&pool, &repo.git_dir(), &p);
    assert!(matches!(
        slot.checkout(&gix_repo, oid(&b)).unwrap(),
        Moved::Incremental { .. }
    ));
    drop(slot);
    std::fs::write(p.join("f.txt"), "scribbled\n").unwrap();
    let mut slot = acquire_again(&pool, &repo.git_dir(), &p);
    assert_eq!(slot.checkout(&gix_repo, oid(&a)).unwrap(), Moved::Full);
    assert_eq!(std::fs::read_to_string(p.join("f.txt")).unwrap(), "one\n");
}
