//! Fault injection into the derived index: whatever state its files are in (truncated,
//! overwritten, missing, of the wrong kind, unreadable, deleted while processes work), every
//! command exits 0, answers as a clean rebuild from the refs does, and does so in bounded time.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::{TestRepo, request_dir};

/// Well under a few seconds per command at this size, even on a loaded machine.
const BOUND: Duration = Duration::from_secs(5);

/// A small deterministic generator (xorshift64*), so that each seed damages the same way.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn index_dir(repo: &TestRepo) -> PathBuf {
    repo.git_dir().join("hyperion/index")
}

/// A queue with pending, leased and landed requests, its index written.
fn fixture(n: usize) -> (TestRepo, Vec<String>) {
    let repo = TestRepo::new();
    let ids = repo.enqueue(&request_dir(&repo, n, "faults"));
    repo.ok(&["dequeue", "--worker", "w1", "--batch", "2"]);
    let landed = repo.landing(&ids[0]);
    repo.ok(&["complete", &ids[0], "--worker", "w1", "--landed", &landed]);
    repo.ok(&["list"]);
    assert!(
        index_dir(&repo).join("keys").is_file(),
        "the index is written"
    );
    (repo, ids)
}

/// Run a command in `dir` (the repository or a copy of it), checking exit 0 and the bound.
fn timed(repo: &TestRepo, dir: &Path, args: &[&str], bound: Duration) -> Output {
    let t = Instant::now();
    let out = repo.cmd().current_dir(dir).args(args).output().unwrap();
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "git hyperion {args:?} exited {:?}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took < bound, "git hyperion {args:?} took {took:?}");
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A copy of the repository without its index: what a clean rebuild answers.
fn pristine(repo: &TestRepo) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", repo.path().display()))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(ok.success());
    let _ = std::fs::remove_dir_all(copy.path().join(".git/hyperion/index"));
    copy
}

/// Each command, after `damage` is done to the index again: the read commands answer as a
/// clean rebuild does, the writing ones do what they do on a clean rebuild, and in the end
/// the index agrees with the refs.
fn every_command(repo: &TestRepo, ids: &[String], damage: &mut dyn FnMut(&Path)) {
    let ix = index_dir(repo);
    let here = repo.path().to_owned();
    let clean = pristine(repo);
    let reads: [Vec<&str>; 5] = [
        vec!["list"],
        vec!["list", "--format", "json"],
        vec!["list", "--status", "pending", "--format", "json"],
        vec!["show", &ids[1]],
        vec!["show", &ids[3], "--format", "json"],
    ];
    for args in &reads {
        damage(&ix);
        let got = stdout(&timed(repo, &here, args, BOUND));
        let want = stdout(&timed(repo, clean.path(), args, BOUND));
        assert_eq!(got, want, "{args:?} after damage");
    }
    for args in [vec!["doctor"], vec!["doctor", "--reindex"], vec!["sweep"]] {
        damage(&ix);
        timed(repo, &here, &args, BOUND);
    }
    // A dequeue leases what a clean rebuild leases.
    damage(&ix);
    let lease = ["dequeue", "--worker", "w2", "--format", "json"];
    let got: serde_json::Value =
        serde_json::from_str(&stdout(&timed(repo, &here, &lease, BOUND))).unwrap();
    let want: serde_json::Value =
        serde_json::from_str(&stdout(&timed(repo, clean.path(), &lease, BOUND))).unwrap();
    assert_eq!(got[0]["id"], want[0]["id"], "dequeue after damage");
    assert!(got[0]["id"].is_string());
    damage(&ix);
    let more = request_dir(repo, 2, "more");
    let added = stdout(&timed(
        repo,
        &here,
        &["enqueue", more.to_str().unwrap()],
        BOUND,
    ));
    assert_eq!(added.lines().count(), 2);
    damage(&ix);
    timed(repo, &here, &["worker", "--drain"], 4 * BOUND);
    damage(&ix);
    let listed = stdout(&timed(repo, &here, &["list", "--format", "json"], BOUND));
    let keys = std::fs::read(ix.join("keys")).unwrap_or_default();
    assert!(
        keys.starts_with(b"hyperion-index/"),
        "the damaged index was rebuilt, not merely avoided"
    );
    let _ = std::fs::remove_dir_all(&ix);
    let from_refs = stdout(&timed(repo, &here, &["list", "--format", "json"], BOUND));
    assert_eq!(
        listed, from_refs,
        "the index agrees with the refs at the end"
    );
    let statuses: Vec<serde_json::Value> = serde_json::from_str(&from_refs).unwrap();
    assert!(
        statuses.iter().all(|r| r["status"] != "pending"),
        "the worker drained the queue"
    );
}

fn files(ix: &Path) -> Vec<PathBuf> {
    ["keys", "records"].iter().map(|n| ix.join(n)).collect()
}

#[test]
fn truncation_at_random_lengths() {
    for seed in [1u64, 2, 3] {
        let (repo, ids) = fixture(6);
        let mut rng = Rng(seed * 0x9e37_79b9_7f4a_7c15);
        every_command(&repo, &ids, &mut |ix| {
            for f in files(ix) {
                if let Ok(len) = std::fs::metadata(&f).map(|m| m.len()) {
                    let keep = rng.below(len);
                    let file = std::fs::OpenOptions::new().write(true).open(&f).unwrap();
                    file.set_len(keep).unwrap();
                }
            }
        });
    }
}

#[test]
fn random_bytes_at_random_offsets() {
    for seed in [11u64, 12, 13, 14] {
        let (repo, ids) = fixture(6);
        let mut rng = Rng(seed * 0x9e37_79b9_7f4a_7c15);
        every_command(&repo, &ids, &mut |ix| {
            for f in files(ix) {
                let Ok(mut data) = std::fs::read(&f) else {
                    continue;
                };
                if data.is_empty() {
                    continue;
                }
                for _ in 0..1 + rng.below(8) {
                    let at = rng.below(data.len() as u64) as usize;
                    data[at] = rng.next() as u8;
                }
                std::fs::write(&f, &data).unwrap();
            }
        });
    }
}

#[test]
fn a_file_where_the_index_directory_should_be() {
    let (repo, ids) = fixture(6);
    every_command(&repo, &ids, &mut |ix| {
        let _ = std::fs::remove_dir_all(ix);
        let _ = std::fs::remove_file(ix);
        std::fs::write(ix, b"not a directory").unwrap();
    });
}

#[test]
fn directories_where_files_should_be() {
    let (repo, ids) = fixture(6);
    let mut round = 0;
    every_command(&repo, &ids, &mut |ix| {
        round += 1;
        let name = ["keys", "records", "lock"][round % 3];
        let p = ix.join(name);
        if p.is_file() {
            std::fs::remove_file(&p).unwrap();
        }
        std::fs::create_dir_all(p.join("inside")).unwrap();
    });
}

/// Reads that fail: a file without permissions (which root reads anyway), and, for anyone,
/// a file whose reads fail with an I/O error (`/proc/self/mem` at offset 0: EIO).
#[test]
fn unreadable_files() {
    use std::os::unix::fs::PermissionsExt;
    let (repo, ids) = fixture(6);
    let mut round = 0;
    every_command(&repo, &ids, &mut |ix| {
        round += 1;
        let p = ix.join(["keys", "records"][round % 2]);
        if round % 4 < 2 {
            if p.is_file() {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
            }
        } else {
            let _ = std::fs::remove_file(&p);
            std::os::unix::fs::symlink("/proc/self/mem", &p).unwrap();
        }
    });
    // (The I/O error is real: reading the file fails.)
    let p = index_dir(&repo).join("keys");
    let _ = std::fs::remove_file(&p);
    std::os::unix::fs::symlink("/proc/self/mem", &p).unwrap();
    assert!(std::fs::read(&p).is_err());
}

#[test]
fn the_wrong_version() {
    let (repo, ids) = fixture(6);
    every_command(&repo, &ids, &mut |ix| {
        for f in files(ix) {
            if let Ok(mut data) = std::fs::read(&f)
                && data.len() > 15
            {
                data[15] = b'9';
                std::fs::write(&f, &data).unwrap();
            }
        }
    });
}

/// Deletes the index directory every few milliseconds until `done`.
fn keep_deleting(
    ix: PathBuf,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut n = 0;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            if std::fs::remove_dir_all(&ix).is_ok() {
                n += 1;
            }
            std::thread::sleep(Duration::from_millis(3));
        }
        n
    })
}

#[test]
fn deleting_the_index_while_a_worker_drains_and_while_enqueue_runs() {
    let repo = TestRepo::new();
    let ix = index_dir(&repo);
    let ids = repo.enqueue(&request_dir(&repo, 12, "drained"));
    for args in [vec!["worker", "--drain"], vec!["enqueue"]] {
        let mut args = args;
        // Requests for other files than the drained ones.
        let late = tempfile::tempdir().unwrap();
        let big = late.path().to_owned();
        for i in 0..300 {
            let r = common::request(1000 + i, "late");
            std::fs::write(big.join(format!("{i:03}.json")), r.to_string()).unwrap();
        }
        if args == ["enqueue"] {
            args.push(big.to_str().unwrap());
        }
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let deleter = keep_deleting(ix.clone(), done.clone());
        let out = repo.cmd().args(&args).output().unwrap();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let deleted = deleter.join().unwrap();
        assert!(
            out.status.success(),
            "{args:?} with the index deleted under it: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(deleted > 0, "the index was deleted while {args:?} ran");
        let listed = repo.ok(&["list", "--format", "json"]);
        let _ = std::fs::remove_dir_all(&ix);
        assert_eq!(repo.ok(&["list", "--format", "json"]), listed, "{args:?}");
    }
    for id in &ids {
        assert_eq!(
            repo.json(&["show", id])["record"]["status"],
            "applied",
            "{id}"
        );
    }
    assert_eq!(repo.ids(&["list", "--status", "pending"]).len(), 300);
}

/// `doctor --reindex` rebuilding a damaged index stops at once on SIGTERM, and the index it
/// leaves behind is rebuilt by the next command.
#[test]
fn reindex_of_a_damaged_index_stops_on_sigterm() {
    let (repo, ids) = fixture(6);
    let want = repo.ok(&["list", "--format", "json"]);
    std::fs::write(index_dir(&repo).join("keys"), b"garbage").unwrap();
    let mut child = repo
        .cmd()
        .args(["doctor", "--reindex"])
        .env("HYPERION_TEST_PAUSE_AT", "reconcile_index")
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(
        common::stopped_within(pid, BOUND),
        "doctor --reindex reached the rebuild"
    );
    let kill = |sig: &str| common::signal(pid, sig);
    kill("-TERM");
    kill("-CONT");
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < BOUND, "doctor --reindex ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(5));
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(15), "{status:?}");
    let out = timed(&repo, repo.path(), &["list", "--format", "json"], BOUND);
    assert_eq!(stdout(&out), want);
    timed(&repo, repo.path(), &["show", &ids[2]], BOUND);
}
