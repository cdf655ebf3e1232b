#![allow(clippy::unwrap_used)]
//! Landing onto a branch a person has checked out, with real worker processes: several at
//! once, one stopped or killed between moving the checkout and moving the branch, a person
//! editing files meanwhile. The person's work survives byte for byte, the checkout ends where
//! a person understands it, and a live worker's landing is never "repaired" by another.

use crate::common;

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::TestRepo;
use serde_json::{Value, json};

/// Checks that take 1, 2 and 3 seconds.
const SLOW_POLICY: &str = "[checks.slow1]\nrun = [\"sleep\", \"1\"]\n\n[checks.slow2]\nrun = [\"sleep\", \"2\"]\n\n[checks.slow3]\nrun = [\"sleep\", \"3\"]\n";

/// Enqueue `common::request(i, salt)` (adds `src/f{i}.txt`) with `checks`; its id.
fn enqueue(repo: &TestRepo, i: usize, salt: &str, checks: &[&str]) -> String {
    let mut req = common::request(i, salt);
    req["checks"] = json!(checks);
    let p = repo.write(&format!("req-{salt}-{i}.json"), &req);
    repo.ok(&["enqueue", p.to_str().unwrap()]).trim().to_owned()
}

/// A worker process whose stdout (reports) and stderr (log) go to files in the test's home.
struct Worker {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Worker {
    fn spawn(repo: &TestRepo, name: &str, args: &[&str], env: &[(&str, &str)]) -> Worker {
        let out = repo.home.path().join(format!("{name}.out"));
        let err = repo.home.path().join(format!("{name}.err"));
        let mut cmd = repo.cmd();
        cmd.args(["worker", "--id", name, "--format", "json"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Worker {
            child: cmd.spawn().unwrap(),
            out,
            err,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn wait(&mut self) -> (Vec<Value>, String) {
        self.child.wait().unwrap();
        let reports = std::fs::read_to_string(&self.out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (reports, std::fs::read_to_string(&self.err).unwrap())
    }

    /// Wait until the worker stopped itself at its pause point (state `T` in /proc).
    fn wait_stopped(&self) {
        assert!(
            common::stopped_within(self.pid(), Duration::from_secs(60)),
            "the worker never reached its pause point: {}",
            std::fs::read_to_string(&self.err).unwrap_or_default()
        );
    }

    fn signal(&self, sig: &str) {
        common::signal(self.pid(), sig);
    }
}

/// What a person sees of a checkout: status, both diffs, the bytes of `files`.
fn view(repo: &TestRepo, files: &[&str]) -> (String, String, String, Vec<Option<Vec<u8>>>) {
    (
        repo.git(&["status", "--porcelain=v1", "--untracked-files=all"]),
        repo.git(&["diff"]),
        repo.git(&["diff", "--cached"]),
        files
            .iter()
            .map(|f| std::fs::read(repo.path().join(f)).ok())
            .collect(),
    )
}

fn rounds() -> usize {
    std::env::var("HYPERION_TEST_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

/// Issue 11b: three `worker --drain --batch-size 1` with slow checks, landing onto the branch
/// checked out in the main worktree, nobody killed. Before the landing lock, most runs left
/// the checkout with a staged revert of a commit that had just landed.
#[test]
fn three_workers_landing_onto_a_checked_out_branch_leave_it_clean_at_the_tip() {
    let repo = TestRepo::new();
    repo.commit(&[(".hyperion/policy.toml", SLOW_POLICY)], "set-up");
    repo.git(&["config", "hyperion.retryBackoff", "100ms"]);
    repo.git(&["config", "hyperion.maxAttempts", "100"]);
    let started = Instant::now();
    let mut all = Vec::new();
    for round in 0..rounds() {
        let salt = format!("r{round}");
        for i in 0..6 {
            // Three workers start together and their checks end together: their landings
            // race for the checkout.
            // (A landing that lost the race rebuilds on the new tip and runs its check again,
            // so the 3 s check comes in the later rounds only.)
            let check = ["slow1", "slow2", "slow3"][(i / 3 + round) % 2 + (round / 2).min(1)];
            all.push(enqueue(&repo, round * 6 + i, &salt, &[check]));
        }
        let mut workers: Vec<Worker> = (0..3)
            .map(|w| {
                Worker::spawn(
                    &repo,
                    &format!("w{round}-{w}"),
                    &["--drain", "--batch-size", "1"],
                    &[],
                )
            })
            .collect();
        let mut logs = String::new();
        let mut reports = Vec::new();
        for w in &mut workers {
            let (r, log) = w.wait();
            reports.extend(r);
            logs.push_str(&log);
        }
        // Requests retried after a lost race wait out a short backoff: drain them too.
        let until = Instant::now() + Duration::from_secs(30);
        while repo.statuses().iter().any(|(_, s)| s != "applied") && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(150));
            let mut w = Worker::spawn(&repo, &format!("calm{round}"), &["--drain"], &[]);
            let (r, log) = w.wait();
            reports.extend(r);
            logs.push_str(&log);
        }
        eprintln!("round {round} after {:?}", started.elapsed());
        assert!(
            !logs.contains("putting back"),
            "round {round}: a live worker's landing was repaired:\n{logs}"
        );
        for r in &reports {
            assert_ne!(
                r["code"], "land.worktree_dirty",
                "round {round}: the checkout was left dirty: {r}\n{logs}"
            );
        }
        assert_eq!(
            repo.git(&["status", "--porcelain=v1", "--untracked-files=all"]),
            "",
            "round {round}: the checkout is not clean:\n{logs}"
        );
        // The index and the files are the tip's.
        repo.git(&["diff-index", "--quiet", "--cached", "main", "--"]);
        repo.git(&["diff-files", "--quiet"]);
        for (id, s) in repo.statuses() {
            assert_eq!(s, "applied", "round {round}: {id}: {logs}");
        }
    }
    let mut landed = repo.landed_trailers();
    landed.sort();
    let n = landed.len();
    landed.dedup();
    assert_eq!(n, landed.len(), "a request landed twice");
    all.sort();
    assert_eq!(landed, all, "every request landed exactly once");
    assert!(
        !repo
            .git_dir()
            .join("hyperion/landing")
            .read_dir()
            .is_ok_and(|mut d| d.any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".json"))),
        "no landing marker is left"
    );
    eprintln!("{} rounds in {:?}", rounds(), started.elapsed());
}

/// The files of the landing tests: `a.txt` the request edits (line 2), `gone.txt` it deletes,
/// `new.txt` it adds; `b.txt`, `c.txt` it does not touch.
const A: &str = "a1\na2\na3\na4\na5\na6\na7\na8\n";

fn landing_repo() -> TestRepo {
    let repo = TestRepo::new();
    repo.commit(
        &[
            ("a.txt", A),
            ("b.txt", "b1\nb2\n"),
            ("c.txt", "c1\nc2\n"),
            ("gone.txt", "to be deleted\n"),
        ],
        "set-up",
    );
    repo.git(&["config", "hyperion.retryBackoff", "1ms"]);
    repo.git(&["config", "hyperion.maxAttempts", "100"]);
    repo
}

/// The request: edit line 2 of a.txt, delete gone.txt, add new.txt.
fn enqueue_landing(repo: &TestRepo) -> String {
    let edit = "--- a/a.txt\n+++ b/a.txt\n@@ -1,5 +1,5 @@\n a1\n-a2\n+a2 landed\n a3\n a4\n a5\n";
    let gone = "diff --git a/gone.txt b/gone.txt\ndeleted file mode 100644\n--- a/gone.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-to be deleted\n";
    let new = "diff --git a/new.txt b/new.txt\nnew file mode 100644\n--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+added by the landing\n";
    let sha = |p: &str| common::sha256(p);
    let req = json!({
        "schema": "hyperion.change-request/v1",
        "task_id": "LAND-1",
        "agent": "test-agent",
        "title": "edit a, delete gone, add new",
        "file_targets": ["**"],
        "changes": [
            {"path": "a.txt", "operation": "update", "patch": edit, "sha256": sha(edit)},
            {"path": "gone.txt", "operation": "delete", "patch": gone, "sha256": sha(gone)},
            {"path": "new.txt", "operation": "add", "patch": new, "sha256": sha(new)},
        ]
    });
    let p = repo.write("landing.json", &req);
    repo.ok(&["enqueue", p.to_str().unwrap()]).trim().to_owned()
}

/// A worker that lands one batch and stops itself at `point`, stopped there. Its lease is
/// `lease` long (a killed worker's lease must run out before its request is retried).
fn paused_worker(repo: &TestRepo, name: &str, point: &str, lease: &str) -> Worker {
    let w = Worker::spawn(
        repo,
        name,
        &["--once", "--lease", lease],
        &[("HYPERION_TEST_PAUSE_AT", point)],
    );
    w.wait_stopped();
    w
}

fn markers(repo: &TestRepo) -> usize {
    std::fs::read_dir(repo.git_dir().join("hyperion/landing"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        })
        .unwrap_or(0)
}

/// The person's edits, made in a checkout a killed worker left half-moved: files the request
/// did not touch, staged and unstaged, and a new untracked file.
fn edit_untouched(repo: &TestRepo) {
    std::fs::write(repo.path().join("b.txt"), "b1\nb2 edited, unstaged\n").unwrap();
    std::fs::write(repo.path().join("c.txt"), "c1 edited, staged\nc2\n").unwrap();
    repo.git(&["add", "c.txt"]);
    std::fs::write(
        repo.path().join("c.txt"),
        "c1 edited, staged\nc2 and more, unstaged\n",
    )
    .unwrap();
    std::fs::write(repo.path().join("u.txt"), "untracked\n").unwrap();
}

const PERSON: &[&str] = &["b.txt", "c.txt", "u.txt"];

fn person_view(repo: &TestRepo) -> (String, String, Vec<Option<Vec<u8>>>) {
    let mut args = vec!["diff", "--"];
    args.extend(PERSON);
    let unstaged = repo.git(&args);
    args.insert(1, "--cached");
    let staged = repo.git(&args);
    let (_, _, _, bytes) = view(repo, PERSON);
    (unstaged, staged, bytes)
}

/// Issue 11: a worker killed right after it moved the checkout (SIGKILL, at the pause point),
/// a person editing files meanwhile: the next landing puts the checkout back where the
/// worker found it, and every byte of the person's edits survives.
#[test]
fn a_worker_killed_after_moving_the_checkout_is_put_back_and_the_persons_edits_survive() {
    let repo = landing_repo();
    let old = repo.git(&["rev-parse", "main"]);
    let first = enqueue_landing(&repo);
    let mut doomed = paused_worker(&repo, "doomed", "landing.checkout_moved", "1s");
    // Half-moved: the branch is where it was, the checkout holds the landing.
    assert_eq!(repo.git(&["rev-parse", "main"]), old);
    assert!(repo.path().join("new.txt").exists());
    assert_eq!(markers(&repo), 1);
    let live = repo.landing_findings();
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(live[0]["code"], "land.in_progress");
    assert!(
        live[0]["message"].as_str().unwrap().contains("doomed")
            && live[0]["message"]
                .as_str()
                .unwrap()
                .contains(&format!("pid {}", doomed.pid())),
        "{live:?}"
    );
    doomed.signal("KILL");
    doomed.wait();
    let dead = repo.landing_findings();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["code"], "land.interrupted");
    assert_eq!(dead[0]["id"], "main");
    let message = dead[0]["message"].as_str().unwrap();
    assert!(
        message.contains(repo.path().to_str().unwrap()) && message.contains(old.trim()),
        "{message}"
    );

    edit_untouched(&repo);
    let before = person_view(&repo);

    // The next landing onto main: a second request.
    let second = enqueue(&repo, 1, "second", &[]);
    let mut next = Worker::spawn(&repo, "next", &["--once"], &[]);
    let (reports, log) = next.wait();
    assert!(log.contains("put the checkout back"), "{log}");
    // Put back: the branch, the index and the files the landing changed are as before it…
    assert_eq!(repo.git(&["rev-parse", "main"]), old);
    assert_eq!(
        std::fs::read_to_string(repo.path().join("a.txt")).unwrap(),
        A
    );
    assert!(repo.path().join("gone.txt").exists());
    assert!(!repo.path().join("new.txt").exists());
    // …and the person's edits are byte for byte what they were.
    assert_eq!(person_view(&repo), before);
    assert_eq!(
        repo.git(&["status", "--porcelain=v1", "--untracked-files=all"]),
        " M b.txt\nMM c.txt\n?? u.txt\n"
    );
    assert_eq!(markers(&repo), 0);
    assert!(repo.landing_findings().is_empty());
    // The checkout has the person's edits: the second request (and the first, if its lease
    // ran out meanwhile) waits (invariant 5).
    assert!(
        reports.iter().any(|r| r["id"] == second.as_str()),
        "{reports:?}"
    );
    for r in &reports {
        assert_eq!(r["code"], "land.worktree_dirty", "{reports:?}");
    }

    // The person commits their work; both requests land after it.
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "the person's work"]);
    std::thread::sleep(Duration::from_millis(1100));
    repo.ok(&["sweep"]);
    repo.ok(&["worker", "--drain"]);
    let mut landed = repo.landed_trailers();
    landed.sort();
    let mut want = vec![first, second];
    want.sort();
    assert_eq!(landed, want);
    assert_eq!(repo.git(&["status", "--porcelain"]), "");
    assert_eq!(
        repo.git(&["show", "main:b.txt"]),
        "b1\nb2 edited, unstaged\n"
    );
    assert_eq!(
        std::fs::read_to_string(repo.path().join("a.txt")).unwrap(),
        A.replace("a2\n", "a2 landed\n")
    );
}

/// The same with the person's edits touching a file the landing changed: nothing can be put
/// back without losing them, so nothing is changed, landings stop with `land.interrupted`,
/// `doctor` says what to do, and doing it (`git stash`, land, `git stash pop`) keeps both.
#[test]
fn edits_overlapping_a_killed_landing_stop_landings_and_the_documented_fix_keeps_both() {
    let repo = landing_repo();
    let old = repo.git(&["rev-parse", "main"]);
    let first = enqueue_landing(&repo);
    let mut doomed = paused_worker(&repo, "doomed", "landing.checkout_moved", "1s");
    doomed.signal("KILL");
    doomed.wait();
    edit_untouched(&repo);
    // An unstaged edit of a.txt, far from the landing's line 2.
    let a = std::fs::read_to_string(repo.path().join("a.txt")).unwrap();
    std::fs::write(
        repo.path().join("a.txt"),
        a.replace("a7\n", "a7 the person's\n"),
    )
    .unwrap();
    let everything = ["a.txt", "b.txt", "c.txt", "u.txt", "new.txt", "gone.txt"];
    let before = (view(&repo, &everything), repo.git(&["ls-files", "-s"]));

    let second = enqueue(&repo, 1, "second", &[]);
    for _ in 0..2 {
        let mut next = Worker::spawn(&repo, "next", &["--once"], &[]);
        let (reports, log) = next.wait();
        assert_eq!(reports[0]["id"], second.as_str());
        assert_eq!(reports[0]["code"], "land.interrupted", "{reports:?}\n{log}");
        let message = reports[0]["message"].as_str().unwrap();
        assert!(
            message.contains("a.txt") && message.contains("nothing was changed"),
            "{message}"
        );
        assert_eq!(
            (view(&repo, &everything), repo.git(&["ls-files", "-s"])),
            before
        );
        assert_eq!(repo.git(&["rev-parse", "main"]), old);
        assert_eq!(markers(&repo), 1);
    }
    let found = repo.landing_findings();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["code"], "land.interrupted");
    assert!(
        found[0]["message"].as_str().unwrap().contains("git stash"),
        "{found:?}"
    );
    let (_, err) = repo.fails(&["doctor"], 1);
    assert!(err.contains("doctor.problems"), "{err}");

    // What doctor and docs/storage.md say to do.
    repo.git(&["stash", "-u"]);
    std::thread::sleep(Duration::from_millis(1100));
    repo.ok(&["sweep"]);
    repo.ok(&["worker", "--drain"]);
    let mut landed = repo.landed_trailers();
    landed.sort();
    let mut want = vec![first, second];
    want.sort();
    assert_eq!(landed, want, "{}", repo.ok(&["list"]));
    assert_eq!(markers(&repo), 0);
    repo.git(&["stash", "pop"]);
    assert_eq!(
        std::fs::read_to_string(repo.path().join("a.txt")).unwrap(),
        A.replace("a2\n", "a2 landed\n")
            .replace("a7\n", "a7 the person's\n")
    );
    assert_eq!(
        std::fs::read_to_string(repo.path().join("b.txt")).unwrap(),
        "b1\nb2 edited, unstaged\n"
    );
    assert_eq!(
        std::fs::read_to_string(repo.path().join("c.txt")).unwrap(),
        "c1 edited, staged\nc2 and more, unstaged\n"
    );
    assert_eq!(
        std::fs::read_to_string(repo.path().join("u.txt")).unwrap(),
        "untracked\n"
    );
    assert!(repo.landing_findings().is_empty());
}

/// A live landing (its worker stopped, not dead, between moving the checkout and the branch)
/// is waited for, not repaired: the other worker gives up after `hyperion.landingWait` with
/// `land.busy`, changing nothing; once the first goes on, everything lands.
#[test]
fn a_live_landing_is_waited_for_and_never_repaired() {
    let repo = landing_repo();
    repo.git(&["config", "hyperion.landingWait", "1s"]);
    let first = enqueue_landing(&repo);
    let mut paused = paused_worker(&repo, "paused", "landing.checkout_moved", "5m");
    let everything = ["a.txt", "b.txt", "new.txt", "gone.txt"];
    let half_moved = (view(&repo, &everything), repo.git(&["ls-files", "-s"]));
    let second = enqueue(&repo, 1, "second", &[]);
    let started = Instant::now();
    let mut other = Worker::spawn(&repo, "other", &["--once"], &[]);
    let (reports, log) = other.wait();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(reports[0]["id"], second.as_str());
    assert_eq!(reports[0]["code"], "land.busy", "{reports:?}\n{log}");
    assert!(
        reports[0]["message"].as_str().unwrap().contains("paused"),
        "{reports:?}"
    );
    assert!(!log.contains("put the checkout back"), "{log}");
    assert_eq!(
        (view(&repo, &everything), repo.git(&["ls-files", "-s"])),
        half_moved
    );
    // A person edits a file the landing did not touch while it is paused.
    std::fs::write(repo.path().join("b.txt"), "b1\nedited during the landing\n").unwrap();
    paused.signal("CONT");
    let (reports, _) = paused.wait();
    assert_eq!(reports[0]["id"], first.as_str());
    assert_eq!(reports[0]["result"], "landed", "{reports:?}");
    assert_eq!(
        std::fs::read_to_string(repo.path().join("b.txt")).unwrap(),
        "b1\nedited during the landing\n"
    );
    assert_eq!(repo.git(&["status", "--porcelain"]), " M b.txt\n");
    repo.git(&["checkout", "--", "b.txt"]);
    repo.ok(&["worker", "--drain"]);
    let mut landed = repo.landed_trailers();
    landed.sort();
    let mut want = vec![first, second];
    want.sort();
    assert_eq!(landed, want);
    assert_eq!(repo.git(&["status", "--porcelain"]), "");
    assert_eq!(markers(&repo), 0);
}
