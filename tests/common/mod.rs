//! What the tests share: repositories driven through the real `git` binary and the real
//! `git-hyperion` binary ([`TestRepo`]), requests, pushes to a hooked server, binary patches.
//! Every process they start runs in the one hermetic environment of [`hermetic`] (fixed
//! identities and dates, no user or system config, UTC), which the benches share too.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

pub mod forge;
pub mod hermetic;
pub mod history;
pub mod tmux;

pub use hermetic::{bin, pipe};

pub struct TestRepo {
    pub dir: tempfile::TempDir,
    pub home: tempfile::TempDir,
    pub bare: bool,
}

impl TestRepo {
    /// A repository with one commit on `main` and hyperion initialised.
    pub fn new() -> TestRepo {
        let r = TestRepo {
            dir: tempfile::tempdir().expect("temp dir"),
            home: tempfile::tempdir().expect("temp home"),
            bare: false,
        };
        r.git(&["init", "-q", "-b", "main"]);
        std::fs::write(r.path().join("README.md"), "hello\n").expect("write");
        r.git(&["add", "README.md"]);
        r.git(&["commit", "-q", "-m", "initial"]);
        r.ok(&["init"]);
        r.settle_roll_ups();
        r
    }

    /// A roll-up of small packs a command starts ends with it (`hyperion.autoDetach=false`):
    /// a test that looks at the packs, or runs `git fsck`, right after a command finds them
    /// settled. `many_small_packs_are_rolled_up` (tests/suite/cli.rs) tests the default.
    fn settle_roll_ups(&self) {
        self.git(&["config", "hyperion.autoDetach", "false"]);
    }

    /// A clone of the repository at `remote` (on `branch`, else its default one), as another
    /// machine or a CI job's checkout has it; hyperion is not set up in it.
    pub fn clone_of(remote: &Path, branch: Option<&str>) -> TestRepo {
        let r = TestRepo {
            dir: tempfile::tempdir().expect("temp dir"),
            home: tempfile::tempdir().expect("temp home"),
            bare: false,
        };
        let remote = remote.to_str().expect("utf-8 path");
        match branch {
            Some(b) => r.git(&["clone", "-q", "--branch", b, remote, "."]),
            None => r.git(&["clone", "-q", remote, "."]),
        };
        r.settle_roll_ups();
        r
    }

    /// Add `server` as this repository's remote `origin` and push `main` there (through
    /// `server`'s hooks, with git-hyperion on the PATH); hyperion's remote mode is not set up.
    pub fn publish_main_to(&self, server: &TestRepo) {
        self.git(&[
            "remote",
            "add",
            "origin",
            server.path().to_str().expect("utf-8 path"),
        ]);
        let (pushed, err) = push(self, server, &["main"]);
        assert!(pushed, "the push of main to the remote: {err}");
    }

    /// A bare repository (as on a server or CI mirror).
    pub fn bare() -> TestRepo {
        let r = TestRepo {
            dir: tempfile::tempdir().expect("temp dir"),
            home: tempfile::tempdir().expect("temp home"),
            bare: true,
        };
        r.git(&["init", "-q", "--bare", "-b", "main"]);
        r.ok(&["init", "--target", "main"]);
        r.settle_roll_ups();
        r
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn git_dir(&self) -> PathBuf {
        if self.bare {
            self.path().to_owned()
        } else {
            self.path().join(".git")
        }
    }

    /// Store `request` as a pending request WITHOUT any validation, the way a hand-made chain
    /// (plumbing, a forged push accepted by a server without the hook, a chain stored before a
    /// rule existed) puts it in the queue; its id.
    pub fn plant(&self, request: &Value) -> String {
        use hyperion::request::model::{Action, ChangeRequest, Event, Record, Status};
        let req: ChangeRequest =
            serde_json::from_value(request.clone()).expect("a request the model can hold");
        let store = hyperion::queue::store::Store::discover(self.path()).expect("a repository");
        let now = jiff::Timestamp::now();
        let record = Record::new(&req, now);
        let event = Event::new(Action::Enqueue, None, Status::Pending, "forger", now);
        store
            .create_many(&[(&req, &record, &event)])
            .expect("the request stored");
        record.id
    }

    /// The number of packs (their indexes) in the repository's object store.
    pub fn packs(&self) -> usize {
        std::fs::read_dir(self.git_dir().join("objects/pack"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".idx"))
                    .count()
            })
            .unwrap_or(0)
    }

    /// `program` run in the repository, in the [hermetic] environment with the test's home.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        hermetic::command(program, self.path(), self.home.path())
    }

    /// git run in the repository with `input` on its stdin; its output, success or not.
    pub fn git_output(&self, args: &[&str], input: &[u8]) -> Output {
        pipe(self.command("git").args(args), input)
    }

    /// git run in the repository with `input` on its stdin; panics when it fails. Its stdout,
    /// trimmed (an object id, usually).
    pub fn git_in(&self, args: &[&str], input: &[u8]) -> String {
        let out = hermetic::succeeded(&format!("git {args:?}"), self.git_output(args, input));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// git run in the repository; panics when it fails. Its stdout.
    pub fn git(&self, args: &[&str]) -> String {
        let out = hermetic::succeeded(&format!("git {args:?}"), self.git_output(args, b""));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The `git-hyperion` binary, to be run in the repository.
    pub fn cmd(&self) -> Command {
        self.command(bin())
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("git-hyperion runs")
    }

    /// Run and expect exit 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        stdout_of_success(args, self.run(args))
    }

    /// Run as `actor` (`HYPERION_ACTOR`: a person approving, say), whatever the exit code.
    pub fn run_as(&self, actor: &str, args: &[&str]) -> Output {
        self.cmd()
            .env("HYPERION_ACTOR", actor)
            .args(args)
            .output()
            .expect("git-hyperion runs")
    }

    /// Run as `actor` and expect exit 0; returns stdout.
    pub fn ok_as(&self, actor: &str, args: &[&str]) -> String {
        stdout_of_success(args, self.run_as(actor, args))
    }

    /// Run and expect exit `code`; returns (stdout, stderr).
    pub fn fails(&self, args: &[&str], code: i32) -> (String, String) {
        let out = self.run(args);
        let (o, e) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert_eq!(
            out.status.code(),
            Some(code),
            "git hyperion {args:?}\nstdout: {o}\nstderr: {e}"
        );
        (o, e)
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["--format", "json"]);
        let out = self.ok(&a);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {out}"))
    }

    /// Every request `list` shows, as (id, status).
    pub fn statuses(&self) -> Vec<(String, String)> {
        self.json(&["list"])
            .as_array()
            .expect("list prints an array")
            .iter()
            .map(|r| {
                let field = |k: &str| r[k].as_str().expect("a string").to_owned();
                (field("id"), field("status"))
            })
            .collect()
    }

    /// The request ids in the `Hyperion-Request` trailers of `main`'s commits, newest first:
    /// which requests landed, once each or not.
    pub fn landed_trailers(&self) -> Vec<String> {
        self.git(&[
            "log",
            "--format=%(trailers:key=Hyperion-Request,valueonly)",
            "main",
        ])
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
    }

    /// Every ref under refs/hyperion with its value.
    pub fn hyperion_refs(&self) -> String {
        self.git(&[
            "for-each-ref",
            "--format=%(refname) %(objectname)",
            "refs/hyperion",
        ])
    }

    /// `git hyperion enqueue PATH`; the ids it printed.
    pub fn enqueue(&self, path: &Path) -> Vec<String> {
        self.ok(&["enqueue", path.to_str().expect("utf-8 path")])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Ids of the records `args` lists (with `--format json`).
    pub fn ids(&self, args: &[&str]) -> Vec<String> {
        self.json(args)
            .as_array()
            .expect("a listing")
            .iter()
            .map(|r| r["id"].as_str().expect("an id").to_owned())
            .collect()
    }

    /// Complete `id` (leased by `worker`) as a dead letter of class apply.
    pub fn fail_apply(&self, id: &str, worker: &str) {
        self.ok(&[
            "complete",
            id,
            "--worker",
            worker,
            "--failed",
            "apply.conflict",
            "--class",
            "apply",
        ]);
    }

    /// A commit on `main` carrying `Hyperion-Request: ID`, as an external worker lands a
    /// request before `complete --landed` records it; its id.
    pub fn landing(&self, id: &str) -> String {
        let tip = self
            .git(&["rev-parse", "refs/heads/main"])
            .trim()
            .to_owned();
        let commit = self
            .git(&[
                "commit-tree",
                &format!("{tip}^{{tree}}"),
                "-p",
                &tip,
                "-m",
                &format!("land {id}\n\nHyperion-Request: {id}\n"),
            ])
            .trim()
            .to_owned();
        // Same tree as the tip: a checkout of main stays clean.
        self.git(&["update-ref", "refs/heads/main", &commit, &tip]);
        commit
    }

    /// Commit `files` (path, content) on the checked-out branch directly (a person's work,
    /// not a request), staging only them; the new commit's id.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (path, content) in files {
            let p = self.path().join(path);
            std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
            std::fs::write(&p, content).expect("write");
            self.git(&["add", "--", path]);
        }
        self.git(&["commit", "-q", "-m", message]);
        self.git(&["rev-parse", "HEAD"]).trim().to_owned()
    }

    /// Enqueue what `edit` does to the checkout, as `git diff` shows it (renames, modes and
    /// symlinks included), through `enqueue --patch` as `agent` with `checks`; the checkout
    /// is put back first. The id.
    pub fn propose(
        &self,
        task: &str,
        agent: &str,
        checks: &[&str],
        edit: impl FnOnce(&Path),
    ) -> String {
        edit(self.path());
        self.git(&["add", "-A"]);
        let diff = self.git(&["diff", "--cached", "-M", "--full-index"]);
        self.git(&["reset", "-q", "--hard"]);
        assert!(!diff.is_empty(), "the edit changed nothing");
        let patch = self.home.path().join(format!("{task}.diff"));
        std::fs::write(&patch, diff).expect("write");
        self.ok(&enqueue_patch_args(&patch, task, agent, checks, &[]))
            .trim()
            .to_owned()
    }

    /// `git hyperion enqueue --patch PATCH --task TASK --agent AGENT`, with a `--check` for each
    /// of `checks` and a `--depends-on` for each of `deps`, whatever the exit code.
    pub fn enqueue_patch(
        &self,
        patch: &Path,
        task: &str,
        agent: &str,
        checks: &[&str],
        deps: &[&str],
    ) -> Output {
        self.run(&enqueue_patch_args(patch, task, agent, checks, deps))
    }

    /// `doctor --format json`'s findings about landings (codes `land.*`).
    pub fn landing_findings(&self) -> Vec<Value> {
        let out = self.run(&["doctor", "--format", "json"]);
        let d: Value = serde_json::from_slice(&out.stdout).expect("doctor prints JSON");
        d["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .filter(|f| f["code"].as_str().expect("a code").starts_with("land."))
            .cloned()
            .collect()
    }

    pub fn write(&self, name: &str, value: &Value) -> PathBuf {
        let p = self.home.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, serde_json::to_vec_pretty(value).expect("json")).expect("write");
        p
    }
}

/// The arguments of [`TestRepo::enqueue_patch`].
fn enqueue_patch_args<'a>(
    patch: &'a Path,
    task: &'a str,
    agent: &'a str,
    checks: &[&'a str],
    deps: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "enqueue",
        "--patch",
        patch.to_str().expect("utf-8"),
        "--task",
        task,
        "--agent",
        agent,
    ];
    for c in checks {
        args.extend(["--check", c]);
    }
    for d in deps {
        args.extend(["--depends-on", d]);
    }
    args
}

pub fn sha256(s: &str) -> String {
    hyperion::request::model::sha256_hex(s.as_bytes())
}

/// The stdout of `git hyperion ARGS`, which must have exited 0.
fn stdout_of_success(args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "git hyperion {args:?} exited {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The runs a check logged to `log`, a file outside every repository, one line each:
/// `TREE VERDICT [WHAT]`, TREE the `git write-tree` of the worktree it ran on: (tree, whether
/// the verdict is `pass`). Tests compare them with the trees the target pointed at
/// (tests/suite/check_batch.rs, tests/suite/remote_worker.rs).
pub fn check_runs(log: &Path) -> Vec<(String, bool)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut fields = l.split_whitespace();
            let tree = fields.next().expect("a tree").to_owned();
            (tree, fields.next() == Some("pass"))
        })
        .collect()
}

/// A valid request adding `src/f{i}.txt`; `salt` makes it distinct.
pub fn request(i: usize, salt: &str) -> Value {
    let path = format!("src/f{i}.txt");
    let patch = format!("--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+new {salt}\n");
    json!({
        "schema": "hyperion.change-request/v1",
        "task_id": format!("TASK-{i}"),
        "agent": "test-agent",
        "title": format!("change {i} {salt}"),
        "priority": 5,
        "file_targets": ["src/**"],
        "changes": [{"path": path, "operation": "add", "patch": patch, "sha256": sha256(&patch)}]
    })
}

/// Write `n` requests into a directory and return it.
pub fn request_dir(repo: &TestRepo, n: usize, salt: &str) -> PathBuf {
    let d = repo.home.path().join(format!("reqs-{salt}"));
    std::fs::create_dir_all(&d).expect("mkdir");
    for i in 0..n {
        std::fs::write(
            d.join(format!("{i:05}.json")),
            serde_json::to_vec(&request(i, salt)).expect("json"),
        )
        .expect("write");
    }
    d
}

/// `PATH` with the directory of the binary under test first: what a server's hook
/// (hooks/pre-receive runs `git-hyperion verify-push`) needs in the pushing process's
/// environment on a file remote.
pub fn path_with_bin() -> String {
    let bin_dir = Path::new(bin()).parent().expect("the binary's directory");
    format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// A bare server with hooks/pre-receive installed (it runs `git-hyperion verify-push`).
pub fn server() -> TestRepo {
    let server = TestRepo::bare();
    let hook = Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks/pre-receive");
    std::fs::copy(hook, server.git_dir().join("hooks/pre-receive")).expect("install the hook");
    server
}

/// `git push` of `refspecs` from `client` to `server`, with git-hyperion on the PATH (as the
/// server's hook needs it); (success, stderr).
pub fn push(client: &TestRepo, server: &TestRepo, refspecs: &[&str]) -> (bool, String) {
    let mut cmd = client.command("git");
    cmd.env("PATH", path_with_bin())
        .args(["push", "-q", "--atomic"])
        .arg(server.path())
        .args(refspecs);
    let out = cmd.output().expect("git push runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What the server's hook printed, from `git push`'s stderr: its `remote: ` lines, unprefixed,
/// from the first `error:` on.
pub fn hook_output(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("remote: "))
        .skip_while(|l| !l.starts_with("error: "))
        .collect();
    lines.join("\n")
}
/// git's base85 (base85.c) of a binary hunk's deflated data, as `git diff --binary` writes
/// it: lines of at most 52 bytes, each led by its length (A–Z = 1–26, a–z = 27–52).
pub fn base85(data: &[u8]) -> String {
    const ALPHABET: &[u8; 85] =
        b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$%&()*+-;<=>?@^_`{|}~";
    let mut out = String::new();
    for line in data.chunks(52) {
        let n = line.len() as u8;
        out.push(char::from(if n <= 26 {
            b'A' + n - 1
        } else {
            b'a' + n - 27
        }));
        for group in line.chunks(4) {
            let mut word = [0u8; 4];
            word[..group.len()].copy_from_slice(group);
            let mut acc = u32::from_be_bytes(word);
            let mut digits = [0u8; 5];
            for d in digits.iter_mut().rev() {
                *d = ALPHABET[(acc % 85) as usize];
                acc /= 85;
            }
            out.push_str(std::str::from_utf8(&digits).expect("ASCII"));
        }
        out.push('\n');
    }
    out
}

/// `data`, deflated as git does (zlib, best compression).
pub fn deflate(data: &[u8]) -> Vec<u8> {
    deflate_chunks(std::iter::once(data))
}

fn deflate_chunks<'a>(chunks: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    use std::io::Write;
    let mut z = gix_zlib::stream::deflate::Write::new(Vec::new(), gix_zlib::Compression::BEST);
    for c in chunks {
        z.write_all(c).expect("deflates");
    }
    z.flush().expect("deflates");
    z.into_inner()
}

/// `len` bytes of `byte`, deflated without ever being held: about 1000:1.
pub fn deflate_run(len: usize, byte: u8) -> Vec<u8> {
    let chunk = vec![byte; 1 << 20];
    let full = len / chunk.len();
    let rest = len % chunk.len();
    deflate_chunks(std::iter::repeat_n(&chunk[..], full).chain(std::iter::once(&chunk[..rest])))
}

/// The blob id git gives `len` bytes of `byte`, hashed without holding them.
pub fn run_blob_id(len: usize, byte: u8) -> String {
    let mut h = gix::hash::hasher(gix::hash::Kind::Sha1);
    h.update(format!("blob {len}\0").as_bytes());
    let chunk = vec![byte; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        h.update(&chunk[..n]);
        left -= n;
    }
    h.try_finalize().expect("hashes").to_string()
}

/// A `git diff --binary --full-index` section that adds `path` with `len` bytes of `byte`:
/// a few hundred kilobytes of patch for hundreds of megabytes of file.
pub fn binary_run_patch(path: &str, len: usize, byte: u8) -> String {
    format!(
        "diff --git a/{path} b/{path}\nnew file mode 100644\nindex {}..{}\nGIT binary patch\nliteral {len}\n{}\nliteral 0\nHcmV?d00001\n\n",
        "0".repeat(40),
        run_blob_id(len, byte),
        base85(&deflate_run(len, byte)),
    )
}

/// The state letter of process `pid` in /proc (`R`, `S`, `T`, `Z`, …); `None` when it is
/// gone.
pub fn proc_state(pid: impl std::fmt::Display) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) STATE ...": comm may hold spaces, so look after the last ')'.
    s.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Wait up to `within` for process `pid` to be gone (or a zombie, reaped soon by whoever
/// adopted it); whether it went.
pub fn gone(pid: impl std::fmt::Display + Copy, within: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    loop {
        match proc_state(pid) {
            None | Some('Z') => return true,
            Some(_) if std::time::Instant::now() >= deadline => return false,
            Some(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
}

/// Wait up to `within` for process `pid` to stop itself (state `T` in /proc), as at a pause
/// point (`HYPERION_TEST_PAUSE_AT`, see src/git/os.rs); whether it did.
pub fn stopped_within(pid: impl std::fmt::Display + Copy, within: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    loop {
        if proc_state(pid) == Some('T') {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Wait (a minute at most) until process `pid` stopped itself at its pause point.
pub fn wait_stopped(pid: u32, what: &str) {
    assert!(
        stopped_within(pid, std::time::Duration::from_secs(60)),
        "{what} never reached its pause point"
    );
}

/// `kill -SIG PID` (`sig` with or without its dash: `TERM`, `-CONT`, `9`), which must succeed.
pub fn signal(pid: impl std::fmt::Display, sig: &str) {
    let sig = format!("-{}", sig.trim_start_matches('-'));
    let ok = Command::new("kill")
        .args([sig.as_str(), &pid.to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill {sig} {pid} failed");
}
