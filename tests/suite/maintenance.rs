#![allow(clippy::unwrap_used)]

//! Hyperion next to git's own maintenance: `git repack -ad`, `git gc --prune=now`, `git
//! pack-refs --all` and `git maintenance run` running while requests are stored and landed,
//! an enqueue killed between its pack and its refs, objects removed by hand, and repositories
//! whose refs git keeps as reftable.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestRepo;
use serde_json::Value;

/// `git` in the test's environment, without asserting success.
fn git_cmd(repo: &TestRepo, args: &[&str]) -> Command {
    let mut cmd = repo.command("git");
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Request files for ids `from..to`, each adding its own file.
fn requests(repo: &TestRepo, from: usize, to: usize, dir: &str) -> PathBuf {
    let d = repo.home.path().join(dir);
    std::fs::create_dir_all(&d).unwrap();
    for i in from..to {
        std::fs::write(
            d.join(format!("{i:05}.json")),
            serde_json::to_vec(&common::request(i, "maint")).unwrap(),
        )
        .unwrap();
    }
    d
}

/// The maintenance git runs by itself or at a user's hand, in a loop until `stop`: how many
/// commands of each kind completed successfully.
struct Maintenance {
    stop: Arc<AtomicBool>,
    runs: Arc<Vec<AtomicUsize>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const TASKS: [&[&str]; 4] = [
    &["repack", "-adq"],
    &["gc", "--prune=now", "--quiet"],
    &["pack-refs", "--all"],
    &["maintenance", "run", "--task=gc", "--quiet"],
];

impl Maintenance {
    fn start(repo: &TestRepo) -> Maintenance {
        let stop = Arc::new(AtomicBool::new(false));
        let runs: Arc<Vec<AtomicUsize>> =
            Arc::new((0..TASKS.len()).map(|_| AtomicUsize::new(0)).collect());
        let cmds: Vec<Command> = TASKS.iter().map(|t| git_cmd(repo, t)).collect();
        let thread = {
            let (stop, runs) = (stop.clone(), Arc::clone(&runs));
            let mut cmds = cmds;
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let k = i % cmds.len();
                    if cmds[k].status().is_ok_and(|s| s.success()) {
                        runs[k].fetch_add(1, Ordering::SeqCst);
                    }
                    i += 1;
                }
            })
        };
        Maintenance {
            stop,
            runs,
            thread: Some(thread),
        }
    }

    fn runs(&self) -> Vec<usize> {
        self.runs.iter().map(|r| r.load(Ordering::SeqCst)).collect()
    }

    fn stop(mut self) -> Vec<usize> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        self.runs()
    }
}

/// `git fsck --full` finds nothing wrong (dangling objects are not wrong).
fn fsck_clean(repo: &TestRepo) {
    let out = git_cmd(repo, &["fsck", "--full", "--no-dangling"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "git fsck: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn keeps(repo: &TestRepo) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(repo.git_dir().join("objects/pack")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "keep") {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            out.push((p, text));
        }
    }
    out
}

fn statuses(repo: &TestRepo) -> std::collections::HashMap<String, String> {
    repo.statuses().into_iter().collect()
}

fn check_ok(what: &str, out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{what} exited {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Requests stored one by one and in batches, then landed by two workers, while git's
/// maintenance repacks, prunes and packs refs all the time, and while `list`, `show` and
/// `dequeue`/`release` read: every request reported stored is there, complete, and landed
/// once; no command fails; `git fsck --full` and `doctor` find nothing.
#[test]
fn maintenance_while_storing_and_landing_loses_nothing() {
    let repo = TestRepo::new();
    let maintenance = Maintenance::start(&repo);
    let stored: Mutex<Vec<String>> = Default::default();
    let reading = AtomicBool::new(true);
    let reads = AtomicUsize::new(0);
    // A reader: list, show of a stored request, dequeue and release.
    let read_round = |repo: &TestRepo, stored: &Mutex<Vec<String>>| {
        check_ok("list", &repo.run(&["list", "--format", "json"]));
        let one = stored.lock().unwrap().last().cloned();
        if let Some(id) = one {
            check_ok("show", &repo.run(&["show", &id]));
        }
        let out = repo.run(&["dequeue", "--worker", "reader", "--format", "json"]);
        check_ok("dequeue", &out);
        let leased: Value = serde_json::from_slice(&out.stdout).unwrap();
        for r in leased.as_array().unwrap() {
            let id = r["id"].as_str().unwrap();
            check_ok("release", &repo.run(&["release", "--worker", "reader", id]));
        }
    };
    /// Stops the reader however the writing side ends: a failed assertion there would
    /// otherwise leave the scope waiting for the reader for ever.
    struct StopReading<'a>(&'a AtomicBool);
    impl Drop for StopReading<'_> {
        fn drop(&mut self) {
            self.0.store(false, Ordering::SeqCst);
        }
    }
    let (started, during_writes, extra) = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            while reading.load(Ordering::SeqCst) {
                read_round(&repo, &stored);
                reads.fetch_add(1, Ordering::SeqCst);
            }
        });
        let stop_reading = StopReading(&reading);
        let started = Instant::now();
        // One by one, then in batches.
        let single = requests(&repo, 0, 60, "single");
        let mut files: Vec<_> = std::fs::read_dir(&single)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files {
            let ids = repo.enqueue(&f);
            stored.lock().unwrap().extend(ids);
        }
        for b in 0..4 {
            let dir = requests(&repo, 100 + b * 100, 200 + b * 100, &format!("batch{b}"));
            // In chunks of 30: a pack each, joined into one before enqueue exits, all next
            // to the maintenance.
            let out = repo
                .cmd()
                .args(["enqueue", dir.to_str().unwrap()])
                .env("HYPERION_TEST_CHUNK", "30")
                .output()
                .unwrap();
            check_ok("enqueue", &out);
            let ids: Vec<String> = String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect();
            assert_eq!(ids.len(), 100);
            stored.lock().unwrap().extend(ids);
        }
        // On a loaded machine a task may not have come round twice yet (gc refuses to run
        // while another gc holds its lock): more requests are stored, in batches of 20 next to
        // the maintenance, until every task has, for two minutes at most (the counts are
        // checked below, once the workers have drained the queue).
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut extra = 0;
        while maintenance.runs().iter().any(|&n| n < 2) && Instant::now() < deadline {
            let from = 1000 + extra * 20;
            let dir = requests(&repo, from, from + 20, &format!("extra{extra}"));
            stored.lock().unwrap().extend(repo.enqueue(&dir));
            extra += 1;
        }
        let during_writes = maintenance.runs();
        // Two workers drain the queue, maintenance still going.
        let workers: Vec<Child> = (0..2)
            .map(|w| {
                repo.cmd()
                    .args([
                        "worker",
                        "--drain",
                        "--id",
                        &format!("w{w}"),
                        "--batch-size",
                        "4",
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for w in workers {
            check_ok("worker", &w.wait_with_output().unwrap());
        }
        drop(stop_reading);
        reader.join().expect("no read failed");
        (started, during_writes, extra)
    });
    // A last drain for what the reader held at the end.
    repo.ok(&["worker", "--drain", "--id", "w9"]);
    let runs = maintenance.stop();
    eprintln!(
        "maintenance runs {runs:?} ({during_writes:?} while storing), {} read rounds, {:?}",
        reads.load(Ordering::SeqCst),
        started.elapsed()
    );
    // The interleaving was real: every kind of maintenance ran several times while requests
    // were being stored.
    for (task, n) in TASKS.iter().zip(&during_writes) {
        assert!(*n >= 2, "git {task:?} ran {n} times while storing");
    }
    let stored = stored.lock().unwrap().clone();
    assert_eq!(stored.len(), 460 + 20 * extra);
    let statuses = statuses(&repo);
    for id in &stored {
        assert_eq!(
            statuses.get(id).map(String::as_str),
            Some("applied"),
            "{id} is landed"
        );
        // Its whole chain is readable.
        repo.ok(&["show", id]);
    }
    // Each landed exactly once.
    let mut landed = repo.landed_trailers();
    landed.sort();
    let n = landed.len();
    landed.dedup();
    assert_eq!(n, landed.len(), "no request landed twice");
    assert_eq!(n, stored.len());
    fsck_clean(&repo);
    let d = repo.json(&["doctor"]);
    assert_eq!(d["findings"], serde_json::json!([]), "{d}");
    assert!(keeps(&repo).is_empty(), "no keep left: {:?}", keeps(&repo));
}

fn backdate(path: &Path, by: Duration) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::SystemTime::now() - by).unwrap();
}

/// An enqueue stopped between writing its pack and creating its refs: its pack is kept (and
/// says whose it is), so `git gc --prune=now` leaves it, and once it goes on every request
/// is complete. One killed there instead leaves a keep that `doctor` removes once its writer
/// is gone and it is older than the grace period; requests stored before lose nothing.
#[test]
fn an_enqueue_stopped_or_killed_between_pack_and_refs_loses_nothing() {
    let repo = TestRepo::new();
    let before = repo.enqueue(&requests(&repo, 0, 5, "before"));

    // Stopped, gc'd, and let go on.
    let child = repo
        .cmd()
        .args(["enqueue"])
        .arg(requests(&repo, 10, 20, "paused"))
        .env("HYPERION_TEST_PAUSE_AT", "enqueue.packed")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_stopped(child.id(), "the process");
    let kept = keeps(&repo);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(
        kept[0].1.starts_with(&format!("hyperion {} ", child.id())),
        "the keep says whose it is: {:?}",
        kept[0].1
    );
    repo.git(&["gc", "--prune=now", "--quiet"]);
    repo.git(&["repack", "-adq"]);
    common::signal(child.id(), "CONT");
    let out = child.wait_with_output().unwrap();
    check_ok("enqueue", &out);
    let paused: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(paused.len(), 10);
    assert!(keeps(&repo).is_empty(), "released once the refs exist");
    fsck_clean(&repo);

    // Killed there.
    let mut child = repo
        .cmd()
        .args(["enqueue"])
        .arg(requests(&repo, 30, 40, "killed"))
        .env("HYPERION_TEST_PAUSE_AT", "enqueue.packed")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    common::wait_stopped(child.id(), "the process");
    child.kill().unwrap();
    child.wait().unwrap();
    repo.git(&["gc", "--prune=now", "--quiet"]);
    let kept = keeps(&repo);
    assert_eq!(
        kept.len(),
        1,
        "a dead writer's keep stays until it is stale"
    );
    // Not yet older than the grace period: left alone.
    let d = repo.json(&["doctor"]);
    assert_eq!(d["findings"], serde_json::json!([]), "{d}");
    assert!(kept[0].0.exists());
    backdate(&kept[0].0, Duration::from_secs(600));
    let d = repo.json(&["doctor"]);
    let findings = d["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{d}");
    assert_eq!(findings[0]["code"], "store.stale_keep");
    assert!(!kept[0].0.exists(), "doctor removed the stale keep");
    // Its objects are garbage now, and go with the next gc.
    repo.git(&["gc", "--prune=now", "--quiet"]);
    fsck_clean(&repo);
    let statuses = statuses(&repo);
    assert_eq!(statuses.len(), 15);
    for id in before.iter().chain(&paused) {
        assert_eq!(statuses[id], "pending");
        repo.ok(&["show", id]);
    }
    let d = repo.json(&["doctor"]);
    assert_eq!(d["findings"], serde_json::json!([]), "{d}");
}

/// A live writer's keep is never removed, however old; one of another tool never.
#[test]
fn keeps_of_live_writers_and_other_tools_stay() {
    let repo = TestRepo::new();
    repo.enqueue(&requests(&repo, 0, 3, "a"));
    let pack_dir = repo.git_dir().join("objects/pack");
    let mine = pack_dir.join("pack-0000000000000000000000000000000000000001.keep");
    // This test process is alive: a keep naming it is a live writer's.
    let start = std::fs::read_to_string(format!("/proc/{}/stat", std::process::id())).unwrap();
    let start = start
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(19)
        .unwrap()
        .to_owned();
    std::fs::write(
        &mine,
        format!("hyperion {} {start} 0\n", std::process::id()),
    )
    .unwrap();
    let other = pack_dir.join("pack-0000000000000000000000000000000000000002.keep");
    std::fs::write(&other, "kept by hand\n").unwrap();
    backdate(&mine, Duration::from_secs(86_400));
    backdate(&other, Duration::from_secs(86_400));
    let d = repo.json(&["doctor"]);
    assert_eq!(d["findings"], serde_json::json!([]), "{d}");
    repo.ok(&["sweep"]);
    assert!(mine.exists() && other.exists());
}

/// Remove object `id` from the repository by hand: every pack unpacked into loose objects,
/// then that one's file deleted.
fn remove_object(repo: &TestRepo, id: &str) {
    let pack_dir = repo.git_dir().join("objects/pack");
    let aside = repo.home.path().join("packs");
    std::fs::create_dir_all(&aside).unwrap();
    for e in std::fs::read_dir(&pack_dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_owned();
        std::fs::rename(&p, aside.join(&name)).unwrap();
    }
    for e in std::fs::read_dir(&aside).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "pack") {
            let status = git_cmd(repo, &["unpack-objects", "-q"])
                .stdin(std::fs::File::open(&p).unwrap())
                .status()
                .unwrap();
            assert!(status.success());
        }
    }
    let loose = repo.git_dir().join("objects").join(&id[..2]).join(&id[2..]);
    std::fs::remove_file(&loose).unwrap();
}

/// A request whose chain lost an object: `doctor` reports it (`store.missing_object`),
/// `doctor --repair` sets it aside under `refs/hyperion/lost/<id>` with what was lost, and
/// then nothing lists it or tries to lease it; the repository passes `git fsck` again.
#[test]
fn doctor_repairs_a_request_whose_object_is_missing() {
    let repo = TestRepo::new();
    let ids = repo.enqueue(&requests(&repo, 0, 2, "two"));
    let (broken, fine) = (&ids[0], &ids[1]);
    let blob = repo.git(&[
        "rev-parse",
        &format!("refs/hyperion/requests/{broken}:request.json"),
    ]);
    let blob = blob.trim();
    remove_object(&repo, blob);

    let out = repo.run(&["doctor", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let d: Value = serde_json::from_slice(&out.stdout).unwrap();
    let findings = d["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{d}");
    assert_eq!(findings[0]["code"], "store.missing_object");
    assert_eq!(findings[0]["id"], broken.as_str());
    assert!(findings[0]["message"].as_str().unwrap().contains(blob));

    let d = repo.json(&["doctor", "--repair"]);
    assert_eq!(d["set_aside"], serde_json::json!([broken]), "{d}");
    let refs = repo.hyperion_refs();
    assert!(!refs.contains(&format!("refs/hyperion/requests/{broken}")));
    assert!(refs.contains(&format!("refs/hyperion/requests/{fine}")));
    let lost: Value = serde_json::from_str(
        &repo.git(&["show", &format!("refs/hyperion/lost/{broken}:lost.json")]),
    )
    .unwrap();
    assert_eq!(lost["missing"], serde_json::json!([blob]));

    assert_eq!(statuses(&repo).keys().collect::<Vec<_>>(), vec![fine]);
    let leased = repo.ids(&["dequeue", "--worker", "w", "--batch", "5"]);
    assert_eq!(leased, vec![fine.clone()]);
    assert!(repo.ids(&["dequeue", "--worker", "w"]).is_empty());
    fsck_clean(&repo);
    let d = repo.json(&["doctor"]);
    assert_eq!(d["findings"], serde_json::json!([]), "{d}");
}

/// Every file under the git directory with its content.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// A repository whose refs git keeps as reftable is refused by every command that opens
/// the store, with `env.ref_storage`, and left exactly as it was.
#[test]
fn reftable_repositories_are_refused() {
    let repo = TestRepo::new();
    let dir = repo.home.path().join("reftable");
    std::fs::create_dir_all(&dir).unwrap();
    let git = |args: &[&str]| {
        let status = git_cmd(&repo, args).current_dir(&dir).status().unwrap();
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "-q", "--ref-format=reftable", "-b", "main"]);
    git(&["commit", "-q", "--allow-empty", "-m", "initial"]);
    let req = requests(&repo, 0, 2, "rt");
    let before = snapshot(&dir.join(".git"));
    let req = req.to_str().unwrap();
    let commands: [&[&str]; 10] = [
        &["init"],
        &["enqueue", req],
        &["dequeue", "--worker", "w"],
        &["worker", "--once"],
        &["sweep"],
        &["gc"],
        &["doctor", "--repair"],
        &["list"],
        &["requeue", "--reason", "r", "0123456789abcdef"],
        &["show", "0123456789abcdef"],
    ];
    for args in commands {
        let out = repo.cmd().current_dir(&dir).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("[env.ref_storage]"), "{args:?}: {stderr}");
        assert!(stderr.contains("reftable"), "{args:?}: {stderr}");
    }
    assert!(before == snapshot(&dir.join(".git")), "nothing changed");
}
