#![allow(clippy::unwrap_used)]
//! The worktree pool on real repositories: incremental checkout, cleaning, slots held by
//! processes (freed when one is killed), repair of a slot deleted by hand.

use crate::common;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::TestRepo;
use hyperion::gate::worktree::{Moved, Pool, Slot};

/// How a slot nothing touched since its last move moves: in process where its directories
/// are watched (Linux), else with git (`HYPERION_PORTABLE`, other systems).
fn untouched(moved: &Moved) -> bool {
    if hyperion::linux_paths() {
        matches!(moved, Moved::Incremental { .. })
    } else {
        *moved == Moved::Full
    }
}

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
        .args([
            "--exact",
            "worktree::holder",
            "--nocapture",
            "--test-threads=1",
        ])
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
    let git_in_slot = |args: &[&str]| common::hermetic::git(&p, args);
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
        assert!(untouched(&moved), "to commit {i}: {moved:?}");
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
    assert!(untouched(
        &slot.checkout(&gix_repo, oid(&commits[3])).unwrap()
    ));
}

/// A file that becomes a directory (and back) is left to git: the tree diff gives such a path
/// as two changes, and a move in process would have to order them itself.
#[test]
fn a_file_that_becomes_a_directory_is_moved_by_git() {
    let repo = TestRepo::new();
    let one = commit(&repo, &[("x", "a file\n"), ("keep.txt", "k\n")], "one");
    std::fs::remove_file(repo.path().join("x")).unwrap();
    let two = commit(&repo, &[("x/y.txt", "now a directory\n")], "two");
    let gix_repo = gix::open(repo.git_dir()).unwrap();
    let pool = Pool::new(&repo.git_dir());
    let mut slot = pool.acquire(&repo.git_dir()).unwrap();
    let p = slot.path().to_path_buf();
    assert_eq!(slot.checkout(&gix_repo, oid(&one)).unwrap(), Moved::Full);
    for (to, expect) in [(&two, "x/y.txt"), (&one, "x"), (&two, "x/y.txt")] {
        assert_eq!(slot.checkout(&gix_repo, oid(to)).unwrap(), Moved::Full);
        assert!(p.join(expect).is_file(), "{expect}");
        let git_in_slot = |args: &[&str]| common::hermetic::git(&p, args);
        assert_eq!(git_in_slot(&["rev-parse", "HEAD"]).trim(), to.as_str());
        assert_eq!(
            git_in_slot(&["status", "--porcelain", "--untracked-files=all"]),
            ""
        );
    }
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
    let slot_git = slot.git_dir();
    assert_eq!(slot.checkout(&gix_repo, oid(&a)).unwrap(), Moved::Full);
    if !hyperion::linux_paths() {
        // Without directory watches every move is full: git writes new files, and a reader
        // keeps what it opened.
        let reader = std::fs::File::open(p.join("f.txt")).unwrap();
        assert_eq!(slot.checkout(&gix_repo, oid(&b)).unwrap(), Moved::Full);
        assert_eq!(
            std::fs::read_to_string(p.join("f.txt")).unwrap(),
            "two, longer\n"
        );
        let mut seen = String::new();
        std::io::Read::read_to_string(&mut &reader, &mut seen).unwrap();
        assert_eq!(seen, "one\n", "the reader keeps what it opened");
        return;
    }
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
    assert!(untouched(&slot.checkout(&gix_repo, oid(&b)).unwrap()));
    repo.git(&["-C", &p, "rm", "-q", "--cached", "d/g.txt"]);
    assert!(!repo.git(&["-C", &p, "status", "--porcelain"]).is_empty());
    assert!(untouched(&slot.checkout(&gix_repo, oid(&a)).unwrap()));
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
    assert!(untouched(&slot.checkout(&gix_repo, oid(&b)).unwrap()));
    drop(slot);
    std::fs::write(p.join("f.txt"), "scribbled\n").unwrap();
    let mut slot = acquire_again(&pool, &repo.git_dir(), &p);
    assert_eq!(slot.checkout(&gix_repo, oid(&a)).unwrap(), Moved::Full);
    assert_eq!(std::fs::read_to_string(p.join("f.txt")).unwrap(), "one\n");
}

/// What a check could change in the shared repository through its directory: config, refs,
/// hooks, `HEAD`, the work tree's status.
fn shared_state(repo: &TestRepo) -> (Vec<u8>, String, String, Vec<u8>, String) {
    let hooks = std::fs::read_dir(repo.git_dir().join("hooks"))
        .map(|d| {
            let mut v: Vec<String> = d
                .flatten()
                .map(|e| {
                    format!(
                        "{} {:?}",
                        e.file_name().to_string_lossy(),
                        std::fs::read(e.path()).ok()
                    )
                })
                .collect();
            v.sort();
            v.join("\n")
        })
        .unwrap_or_default();
    (
        std::fs::read(repo.git_dir().join("config")).unwrap(),
        repo.git(&["for-each-ref", "--format=%(refname) %(objectname)"]),
        hooks,
        std::fs::read(repo.git_dir().join("HEAD")).unwrap(),
        repo.git(&["worktree", "list", "--porcelain"]),
    )
}

/// Run `script` with `sh` in the slot at `dir`, as a check would (git finds the slot's
/// repository from its directory).
fn in_slot(dir: &std::path::Path, script: &str) {
    let out = common::hermetic::command("sh", dir, dir)
        .args(["-c", script])
        .env("GIT_CEILING_DIRECTORIES", dir.parent().unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{script}: {out:?}");
}

/// The issue's case: a check that set `hyperion.hooksDir` and created a branch changed the
/// shared repository (slots were linked worktrees, sharing config, refs and hooks). A slot is
/// a repository of its own: whatever git does in it stays there, and the next move puts the
/// slot's repository back as hyperion wrote it.
#[test]
fn git_run_in_a_slot_cannot_change_the_shared_repository() {
    let repo = TestRepo::new();
    let a = commit(&repo, &[("f.txt", "one\n")], "a");
    let b = commit(&repo, &[("f.txt", "two\n")], "b");
    let before = shared_state(&repo);
    let gix_repo = gix::open(repo.git_dir()).unwrap();
    let mut slot = Pool::new(&repo.git_dir()).acquire(&repo.git_dir()).unwrap();
    let p = slot.path().to_path_buf();
    slot.checkout(&gix_repo, oid(&a)).unwrap();
    let pristine = std::fs::read(slot.git_dir().join("config")).unwrap();
    in_slot(
        &p,
        "git config hyperion.hooksDir /tmp/evil && git config core.hooksPath /tmp/evil && \
         git branch evil && git update-ref refs/heads/main HEAD && \
         mkdir -p .git/hooks && printf '#!/bin/sh\\nexit 0\\n' > .git/hooks/pre-commit && \
         echo '[alias] st = !touch pwned' >> .git/config && \
         git -c user.name=x -c user.email=x@x commit -q --allow-empty -m evil && \
         git tag evil-tag && git reflog expire --all",
    );
    assert_eq!(shared_state(&repo), before, "the shared repository changed");
    // The next move: the slot's repository is as hyperion writes it, at `b`, clean.
    let moved = slot.checkout(&gix_repo, oid(&b)).unwrap();
    assert!(untouched(&moved), "{moved:?}");
    assert_eq!(
        std::fs::read(slot.git_dir().join("config")).unwrap(),
        pristine
    );
    let git_in = |args: &[&str]| repo.git(&[&["-C", p.to_str().unwrap()][..], args].concat());
    assert_eq!(git_in(&["for-each-ref"]), "", "no ref in the slot");
    assert!(!slot.git_dir().join("hooks").exists());
    assert_eq!(git_in(&["rev-parse", "HEAD"]).trim(), b);
    assert_eq!(git_in(&["status", "--porcelain"]), "");
    assert_eq!(shared_state(&repo), before);
}

/// Other spellings of the same attack: the slot's `.git` replaced by a link to the shared git
/// directory, by a `gitdir:` file naming it, or removed (git would then find the shared
/// repository above the slot, were it not for `GIT_CEILING_DIRECTORIES`). The next move
/// rebuilds the slot's repository without writing through any of them.
#[test]
fn a_slot_whose_git_directory_was_replaced_is_rebuilt_without_following_it() {
    let repo = TestRepo::new();
    let a = commit(&repo, &[("f.txt", "one\n")], "a");
    let b = commit(&repo, &[("f.txt", "two\n"), ("g.txt", "g\n")], "b");
    let gix_repo = gix::open(repo.git_dir()).unwrap();
    let mut slot = Pool::new(&repo.git_dir()).acquire(&repo.git_dir()).unwrap();
    let p = slot.path().to_path_buf();
    let shared = repo.git_dir();
    let attacks = [
        format!("rm -rf .git && ln -s '{}' .git", shared.display()),
        format!("rm -rf .git && echo 'gitdir: {}' > .git", shared.display()),
        "rm -rf .git".to_owned(),
        format!(
            "rm .git/config && ln -s '{}' .git/config && rm .git/index && ln -s '{}' .git/index",
            shared.join("config").display(),
            shared.join("config").display()
        ),
        "chmod 000 .git/refs".to_owned(),
    ];
    let mut at = &a;
    for attack in &attacks {
        slot.checkout(&gix_repo, oid(at)).unwrap();
        let before = shared_state(&repo);
        in_slot(&p, attack);
        if attack == "rm -rf .git" {
            // git run in the slot now would find the shared repository above it, were it not
            // for `GIT_CEILING_DIRECTORIES`, which checks get.
            let out = common::hermetic::command("git", &p, &p)
                .args(["config", "hyperion.hooksDir", "/tmp/evil"])
                .env("GIT_CEILING_DIRECTORIES", p.parent().unwrap())
                .output()
                .unwrap();
            assert!(!out.status.success(), "git found a repository: {out:?}");
        }
        // (A link or `gitdir:` file naming the shared repository is that repository for git
        // run in the slot: a check writing the shared repository by its path, which nothing
        // short of a namespace stops. What matters here is that the move does not write
        // through it.)
        at = if at == &a { &b } else { &a };
        slot.checkout(&gix_repo, oid(at)).unwrap();
        assert_eq!(shared_state(&repo), before, "{attack}");
        let meta = std::fs::symlink_metadata(slot.git_dir()).unwrap();
        assert!(meta.is_dir(), "{attack}");
        let status = repo.git(&["-C", p.to_str().unwrap(), "status", "--porcelain"]);
        assert_eq!(status, "", "{attack}");
        let head = repo.git(&["-C", p.to_str().unwrap(), "rev-parse", "HEAD"]);
        assert_eq!(head.trim(), at.as_str(), "{attack}");
    }
}

/// Slots made by earlier versions were linked worktrees registered in the shared repository:
/// taking one makes it a repository of its own and removes the registration.
#[test]
fn an_old_linked_worktree_slot_becomes_a_repository_of_its_own() {
    let repo = TestRepo::new();
    let a = commit(&repo, &[("f.txt", "one\n")], "a");
    let old = repo.git_dir().join("hyperion/worktrees/hyperion-0");
    std::fs::create_dir_all(old.parent().unwrap()).unwrap();
    repo.git(&["worktree", "add", "-q", "--detach", old.to_str().unwrap()]);
    repo.git(&["worktree", "lock", old.to_str().unwrap()]);
    assert!(repo.git(&["worktree", "list"]).contains("hyperion-0"));
    let gix_repo = gix::open(repo.git_dir()).unwrap();
    let mut slot = Pool::new(&repo.git_dir()).acquire(&repo.git_dir()).unwrap();
    assert_eq!(slot.path(), old.as_path());
    slot.checkout(&gix_repo, oid(&a)).unwrap();
    assert!(std::fs::symlink_metadata(slot.git_dir()).unwrap().is_dir());
    assert!(!repo.git(&["worktree", "list"]).contains("hyperion-0"));
    assert!(!repo.git_dir().join("worktrees/hyperion-0").exists());
    assert_eq!(
        repo.git(&["-C", old.to_str().unwrap(), "status", "--porcelain"]),
        ""
    );
}

/// The commit under check exists only in memory until it lands (or never, in a dry run):
/// the slot gets it in its own pack, so git in the slot reads it, and the shared repository
/// does not get it.
#[test]
fn git_in_a_slot_reads_the_commit_under_check_which_the_shared_repository_lacks() {
    use gix::objs::Write as _;
    let repo = TestRepo::new();
    let a = commit(&repo, &[("f.txt", "one\n")], "a");
    let mut gix_repo = gix::open(repo.git_dir()).unwrap();
    gix_repo.objects.enable_object_memory();
    let blob = gix_repo
        .objects
        .write_buf(gix::objs::Kind::Blob, b"in memory\n")
        .unwrap();
    let base = gix_repo
        .find_commit(oid(&a))
        .unwrap()
        .tree_id()
        .unwrap()
        .detach();
    let mut tree: gix::objs::Tree = gix_repo.find_tree(base).unwrap().decode().unwrap().into();
    tree.entries.push(gix::objs::tree::Entry {
        mode: gix::objs::tree::EntryKind::Blob.into(),
        filename: "mem.txt".into(),
        oid: blob,
    });
    tree.entries.sort();
    let tree = gix_repo.objects.write(&tree).unwrap();
    let sig = gix::actor::Signature {
        name: "t".into(),
        email: "t@t".into(),
        time: gix::date::Time::new(0, 0),
    };
    let c = |msg: &str, parent: gix::ObjectId| gix::objs::Commit {
        tree,
        parents: vec![parent].into(),
        author: sig.clone(),
        committer: sig.clone(),
        encoding: None,
        message: msg.into(),
        extra_headers: Vec::new(),
    };
    let c1 = gix_repo.objects.write(&c("one", oid(&a))).unwrap();
    let c2 = gix_repo.objects.write(&c("two", c1)).unwrap();
    let mut slot = Pool::new(&repo.git_dir()).acquire(&repo.git_dir()).unwrap();
    let p = slot.path().to_str().unwrap().to_owned();
    for (commit, full, subject) in [(c1, true, "one"), (c2, !hyperion::linux_paths(), "two")] {
        let moved = slot.checkout(&gix_repo, commit).unwrap();
        assert_eq!(moved == Moved::Full, full, "{moved:?}");
        assert_eq!(
            repo.git(&["-C", &p, "log", "--format=%s", "-1"]).trim(),
            subject
        );
        assert_eq!(repo.git(&["-C", &p, "status", "--porcelain"]), "");
        assert_eq!(repo.git(&["-C", &p, "show", "HEAD:mem.txt"]), "in memory\n");
        repo.git(&["-C", &p, "fsck", "--connectivity-only", "--no-dangling"]);
    }
    let missing = repo.git_output(&["cat-file", "-e", &c2.to_string()], b"");
    assert!(
        !missing.status.success(),
        "the shared repository got the commit"
    );
    assert_eq!(gix_repo.objects.num_objects_in_memory(), 4, "memory kept");
}

/// A check that replaces its whole slot by a link to the person's checkout: the next move
/// must not take that checkout's `.git` for the slot's repository (and rebuild it, deleting
/// it), nor write its index and `HEAD`.
#[test]
fn a_slot_replaced_by_a_link_is_not_followed() {
    let repo = TestRepo::new();
    let a = commit(&repo, &[("f.txt", "one\n")], "a");
    let b = commit(&repo, &[("f.txt", "two\n")], "b");
    let gix_repo = gix::open(repo.git_dir()).unwrap();
    let mut slot = Pool::new(&repo.git_dir()).acquire(&repo.git_dir()).unwrap();
    let p = slot.path().to_path_buf();
    slot.checkout(&gix_repo, oid(&a)).unwrap();
    let before = shared_state(&repo);
    let status = repo.git(&["status", "--porcelain"]);
    std::fs::remove_dir_all(&p).unwrap();
    std::os::unix::fs::symlink(repo.path(), &p).unwrap();
    slot.checkout(&gix_repo, oid(&b)).unwrap();
    assert!(std::fs::symlink_metadata(&p).unwrap().is_dir());
    assert!(
        repo.git_dir().join("objects").exists(),
        "the repository is there"
    );
    assert_eq!(shared_state(&repo), before);
    assert_eq!(repo.git(&["status", "--porcelain"]), status);
    assert_eq!(
        repo.git(&["-C", p.to_str().unwrap(), "rev-parse", "HEAD"])
            .trim(),
        b
    );
}

/// Run as a child: move slot 0 of the repository in HYPERION_TEST_FRESH (`GIT_DIR:COMMIT`) as
/// a process that remembers nothing of it.
#[test]
fn fresh_mover() {
    let Ok(arg) = std::env::var("HYPERION_TEST_FRESH") else {
        return;
    };
    let (dir, hex) = arg.rsplit_once(':').unwrap();
    let git_dir = std::path::PathBuf::from(dir);
    let gix_repo = gix::open(&git_dir).unwrap();
    // The first slot, which the test's process let go of: a child another test thread of that
    // process is starting holds a copy of its lock until it execs, so it may be busy a moment.
    let mut slot = (0..500)
        .find_map(|_| {
            let slot = Pool::new(&git_dir).acquire(&git_dir).unwrap();
            if slot.path().ends_with("hyperion-0") {
                return Some(slot);
            }
            drop(slot);
            std::thread::sleep(std::time::Duration::from_millis(10));
            None
        })
        .expect("slot hyperion-0 is free");
    slot.checkout(&gix_repo, oid(hex)).unwrap();
    println!("moved");
}

/// A slot git cannot use (here: a corrupt index, found by a process that does not hold the
/// one hyperion wrote) is made anew rather than failing every request after it.
#[test]
fn a_slot_git_cannot_read_is_made_anew() {
    let repo = TestRepo::new();
    let a = commit(&repo, &[("f.txt", "one\n"), ("d/g.txt", "g\n")], "a");
    let b = commit(&repo, &[("f.txt", "two\n")], "b");
    let gix_repo = gix::open(repo.git_dir()).unwrap();
    let mut slot = Pool::new(&repo.git_dir()).acquire(&repo.git_dir()).unwrap();
    let p = slot.path().to_path_buf();
    slot.checkout(&gix_repo, oid(&a)).unwrap();
    drop(slot);
    std::fs::write(p.join(".git/index"), b"DIRC garbage").unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "worktree::fresh_mover",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            "HYPERION_TEST_FRESH",
            format!("{}:{b}", repo.git_dir().display()),
        )
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("moved"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = p.to_str().unwrap();
    assert_eq!(repo.git(&["-C", p, "status", "--porcelain"]), "");
    assert_eq!(repo.git(&["-C", p, "rev-parse", "HEAD"]).trim(), b);
}
