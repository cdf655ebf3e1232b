//! What every attack case asserts, in one place.

#![allow(dead_code)]

use std::path::Path;

use serde_json::{Value, json};

use crate::common::hermetic::git_output;
use crate::common::{TestRepo, sha256};

/// Secrets planted by the corpus. They look real to the built-in rules (and to the policy
/// rule `planted` that [`Attack::with_policy_secret_rule`] adds) but are fake.
pub const SECRETS: &[&str] = &[
    "AKIAQ3EGRQ7ATTACKKEY",
    "ghp_AttackTokenThatIsFake0123456789abcdef",
    "xoxb-1234567890-attack-slack-token",
    "hyperion-planted-secret-0xC0FFEE",
];

/// What a person's repository looked like before an attack: every branch and tag with its
/// commit, `HEAD`, and the checkout's status and tracked content.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    refs: String,
    head: String,
    status: String,
    tracked: String,
}

impl Snapshot {
    pub fn take(repo: &TestRepo) -> Snapshot {
        let refs = repo.git(&[
            "for-each-ref",
            "--format=%(refname) %(objectname)",
            "refs/heads",
            "refs/tags",
        ]);
        let head = std::fs::read_to_string(repo.git_dir().join("HEAD")).unwrap();
        let (status, tracked) = if repo.bare {
            (String::new(), String::new())
        } else {
            (
                repo.git(&["status", "--porcelain=v1", "--untracked-files=all"]),
                // Content of the work tree as git would commit it, staged or not.
                repo.git(&["ls-files", "-s", "--", "."]) + &repo.git(&["diff", "--stat", "HEAD"]),
            )
        };
        Snapshot {
            refs,
            head,
            status,
            tracked,
        }
    }
}

/// A repository under attack.
pub struct Attack {
    pub repo: TestRepo,
    before: Snapshot,
}

impl Attack {
    /// A fresh repository (one commit on `main`, hyperion initialised), snapshot taken.
    pub fn new() -> Attack {
        Attack::on(TestRepo::new())
    }

    /// `repo` as it is now, snapshot taken.
    pub fn on(repo: TestRepo) -> Attack {
        let before = Snapshot::take(&repo);
        Attack { repo, before }
    }

    /// Commit `files` on `main` (set-up, before the attack), and take the snapshot again.
    pub fn commit(&mut self, files: &[(&str, &str)]) -> &mut Attack {
        self.repo.commit(files, "set-up");
        self.before = Snapshot::take(&self.repo);
        self
    }

    /// Take the snapshot again (after set-up the test did by hand).
    pub fn settle(&mut self) {
        self.before = Snapshot::take(&self.repo);
    }

    /// Enqueue `request` (a JSON value) and expect a refusal with `code`: exit 1, `error:`,
    /// `hint:`, the code in brackets; then everything untouched and no secret stored.
    pub fn refused(&self, request: &Value, code: &str) -> String {
        let path = self.repo.write(
            &format!("attack-{}.json", sha256(&request.to_string())),
            request,
        );
        let (_, err) = self.repo.fails(&["enqueue", path.to_str().unwrap()], 1);
        assert_refusal(&err, code);
        assert!(
            self.repo
                .hyperion_refs()
                .lines()
                .all(|l| !l.starts_with("refs/hyperion/requests/")),
            "a refused request was stored: {}",
            self.repo.hyperion_refs()
        );
        self.untouched();
        err
    }

    /// Enqueue `request`, which must be accepted; its id.
    pub fn enqueue(&self, request: &Value) -> String {
        let path = self.repo.write(
            &format!("req-{}.json", sha256(&request.to_string())),
            request,
        );
        let out = self.repo.ok(&["enqueue", path.to_str().unwrap()]);
        out.lines().next().unwrap().trim().to_owned()
    }

    /// Run the worker until the queue is empty; its reports.
    pub fn drain(&self) -> Vec<Value> {
        let out = self.repo.run(&["worker", "--drain", "--format", "json"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// After a drain: `id` is a dead letter with `code` (and nothing of it landed).
    pub fn parked(&self, id: &str, code: &str) -> Value {
        let shown = self.repo.json(&["show", id]);
        let record = &shown["record"];
        assert_eq!(record["status"], "dead", "{id} was not parked: {shown}");
        assert_eq!(record["error"]["code"], code, "{shown}");
        assert!(
            !record["error"]["message"].as_str().unwrap_or("").is_empty(),
            "{shown}"
        );
        self.untouched();
        record.clone()
    }

    /// Branches, tags, `HEAD` and the checkout are as the snapshot has them, and no planted
    /// secret is stored.
    pub fn untouched(&self) {
        assert_eq!(
            Snapshot::take(&self.repo),
            self.before,
            "the attack changed the repository"
        );
        assert_no_secret_stored(self.repo.git_dir().as_path(), SECRETS);
    }

    /// No commit reachable from any branch carries a `Hyperion-Request` trailer: nothing
    /// landed.
    pub fn nothing_landed(&self) {
        let log = self
            .repo
            .git(&["log", "--all", "--format=%B", "--branches", "--tags"]);
        assert!(
            !log.contains("Hyperion-Request:"),
            "something landed:\n{log}"
        );
    }
}

/// `stderr` is a refusal with `code`: `error:` first, the code in brackets, a hint.
pub fn assert_refusal(stderr: &str, code: &str) {
    assert!(stderr.starts_with("error: "), "not an error: {stderr}");
    assert!(
        stderr.contains(&format!("[{code}]")),
        "expected [{code}] in:\n{stderr}"
    );
    assert!(stderr.contains("hint: "), "no hint in:\n{stderr}");
    for s in SECRETS {
        assert!(!stderr.contains(s), "the refusal shows a secret:\n{stderr}");
    }
}

/// No byte sequence of `secrets` anywhere in `git_dir`: every object decompressed (loose,
/// packed, unreachable), and every other file raw (refs, logs, index, config, the derived
/// index, worktree slots, artifacts).
pub fn assert_no_secret_stored(git_dir: &Path, secrets: &[&str]) {
    let out = git_output(
        git_dir,
        &["cat-file", "--batch-all-objects", "--batch", "--unordered"],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for s in secrets {
        assert!(
            !contains(&out.stdout, s.as_bytes()),
            "secret {s} is stored in an object of {}",
            git_dir.display()
        );
    }
    let mut stack = vec![git_dir.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() {
                let data = std::fs::read(&p).unwrap_or_default();
                for s in secrets {
                    assert!(
                        !contains(&data, s.as_bytes()),
                        "secret {s} is stored in {}",
                        p.display()
                    );
                }
            }
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A request changing `changes` (each `(path, operation, patch)`), with `file_targets` that
/// allow everything; `extra` fields are merged in (and may override).
pub fn request(task: &str, changes: &[(&str, &str, &str)], extra: Value) -> Value {
    let changes: Vec<Value> = changes
        .iter()
        .map(|(path, op, patch)| {
            json!({"path": path, "operation": op, "patch": patch, "sha256": sha256(patch)})
        })
        .collect();
    let mut v = json!({
        "schema": "hyperion.change-request/v1",
        "task_id": task,
        "agent": "attacker",
        "title": format!("attack {task}"),
        "file_targets": ["**"],
        "changes": changes,
    });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, val) in e {
            o.insert(k.clone(), val.clone());
        }
    }
    v
}

/// The patch that adds `path` with `content` (lines, each ending in a newline).
pub fn add_patch(path: &str, content: &str) -> String {
    let lines: Vec<&str> = content.lines().collect();
    let mut p = format!(
        "diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n@@ -0,0 +1,{} @@\n",
        lines.len()
    );
    for l in lines {
        p.push('+');
        p.push_str(l);
        p.push('\n');
    }
    p
}

/// A request adding one file.
pub fn adds(task: &str, path: &str, content: &str) -> Value {
    request(task, &[(path, "add", &add_patch(path, content))], json!({}))
}

/// Store `request` as a pending request WITHOUT any validation ([`TestRepo::plant`]); its id.
pub fn plant(repo: &TestRepo, request: &Value) -> String {
    repo.plant(request)
}

/// Write `policy` as `.hyperion/policy.toml` on `main` (set-up).
pub fn with_policy(attack: &mut Attack, policy: &str) {
    attack.commit(&[(".hyperion/policy.toml", policy)]);
}

impl Attack {
    /// The record of `id` (the `record` of `show --format json`).
    pub fn record(&self, id: &str) -> Value {
        self.repo.json(&["show", id])["record"].clone()
    }

    /// Enqueue what `edit` does to the checkout, as `git diff` shows it (renames, modes and
    /// symlinks included), through `enqueue --patch`, naming `checks`; the checkout is put
    /// back first. The id.
    pub fn propose(&self, task: &str, checks: &[&str], edit: impl FnOnce(&Path)) -> String {
        self.repo.propose(task, "attacker", checks, edit)
    }

    /// After a drain: `id` awaits approval (it was never landed), everything untouched.
    pub fn waits(&self, id: &str) -> Value {
        let record = self.record(id);
        assert_eq!(
            record["status"], "awaiting_approval",
            "{id} does not wait: {record}"
        );
        assert!(
            !record["approval_tiers"].as_array().unwrap().is_empty(),
            "{record}"
        );
        self.nothing_landed();
        self.untouched();
        record
    }
}

/// The policy rule `planted`: it finds `SECRETS[3]` (and whatever else has its shape) without
/// spelling it, so the policy file that holds it stores no secret.
pub const PLANTED_RULE: &str =
    "[secrets]\npatterns = { planted = \"hyperion-planted-secret-0x[0-9A-F]+\" }\n";

impl Attack {
    /// Commit a policy holding the rule `planted` ([`PLANTED_RULE`]).
    pub fn with_policy_secret_rule(&mut self) -> &mut Attack {
        self.with_policy("")
    }

    /// Commit a policy holding the rule `planted` and `more` (more TOML: checks, limits…).
    pub fn with_policy(&mut self, more: &str) -> &mut Attack {
        let text = format!("{PLANTED_RULE}\n{more}");
        self.commit(&[(".hyperion/policy.toml", &text)])
    }

    /// Run `git hyperion worker --drain --format json` with `args` before the subcommand
    /// (`--log-format json`, `-vv`) and `env` added; its reports, and everything it printed
    /// (stdout, then stderr: the logs).
    pub fn drain_with(&self, args: &[&str], env: &[(&str, &str)]) -> (Vec<Value>, String) {
        let mut cmd = self.repo.cmd();
        cmd.args(args)
            .args(["worker", "--drain", "--format", "json"]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let reports = stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        (reports, stdout + &String::from_utf8_lossy(&out.stderr))
    }

    /// The artifact `name` stored on `id`'s chain (e.g. `checks/unit.stdout`).
    pub fn artifact(&self, id: &str, name: &str) -> String {
        self.repo.git(&[
            "show",
            &format!("refs/hyperion/requests/{id}:artifacts/{name}"),
        ])
    }

    /// No commit reachable from a branch or a tag carries a `Hyperion-Request` trailer. Like
    /// [`Attack::nothing_landed`], without `--all`, which also walks the `HEAD`s of the
    /// worker's pooled worktrees, where a request whose check failed is still checked out.
    pub fn nothing_on_branches(&self) {
        let log = self
            .repo
            .git(&["log", "--format=%B", "--branches", "--tags"]);
        assert!(
            !log.contains("Hyperion-Request:"),
            "something landed:\n{log}"
        );
    }
}

// Landing onto a checked-out branch (tests/attacks/landing.rs).

/// A `worker --once` with a `lease` that stops itself (SIGSTOP) at the pause point `point`
/// (`HYPERION_TEST_PAUSE_AT`); returned once it is stopped there.
#[allow(clippy::zombie_processes)] // the caller waits for it (or kills it)
pub fn worker_paused_at(repo: &TestRepo, point: &str, lease: &str) -> std::process::Child {
    let child = repo
        .cmd()
        .args(["worker", "--once", "--id", "paused", "--lease", lease])
        .env("HYPERION_TEST_PAUSE_AT", point)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        crate::common::stopped_within(child.id(), std::time::Duration::from_secs(60)),
        "the worker never reached {point}"
    );
    child
}

/// `kill -SIG PID`.
pub fn signal(child: &std::process::Child, sig: &str) {
    crate::common::signal(child.id(), sig);
}

/// Where a landing onto `refname` keeps its marker (`.json`) and its lock (`.lock`): the
/// first 16 hex digits of the sha256 of the ref name (docs/storage.md).
pub fn landing_file(repo: &TestRepo, refname: &str, ext: &str) -> std::path::PathBuf {
    let key = sha256(refname);
    repo.git_dir()
        .join("hyperion/landing")
        .join(format!("{}.{ext}", &key[..16]))
}

/// Plant a landing marker for `refname` by hand.
pub fn plant_marker(repo: &TestRepo, refname: &str, text: &str) {
    let p = landing_file(repo, refname, "json");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// `worker --once --format json`: its reports and its log.
pub fn work_once(repo: &TestRepo) -> (Vec<Value>, String) {
    let out = repo.run(&["worker", "--once", "--format", "json"]);
    (
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What a process running in the repository's name could change in its git directory
/// besides branches and tags: the config, every ref but hyperion's own (whose chains the
/// worker moves), the hooks, `info/`, `HEAD`.
#[derive(Debug, PartialEq, Eq)]
pub struct SharedGit {
    config: Vec<u8>,
    refs: String,
    hooks: Vec<(String, Vec<u8>)>,
    info: Vec<(String, Vec<u8>)>,
    head: Vec<u8>,
}

impl SharedGit {
    pub fn take(repo: &TestRepo) -> SharedGit {
        let git_dir = repo.git_dir();
        let listing = |dir: &Path| {
            let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
                .map(|d| {
                    d.flatten()
                        .map(|e| {
                            (
                                e.file_name().to_string_lossy().into_owned(),
                                std::fs::read(e.path()).unwrap_or_default(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        };
        let refs = repo
            .git(&["for-each-ref", "--format=%(refname) %(objectname)"])
            .lines()
            .filter(|l| !l.starts_with("refs/hyperion/") && !l.starts_with("refs/notes/hyperion "))
            .collect::<Vec<_>>()
            .join("\n");
        SharedGit {
            config: std::fs::read(git_dir.join("config")).unwrap(),
            refs,
            hooks: listing(&git_dir.join("hooks")),
            info: listing(&git_dir.join("info")),
            head: std::fs::read(git_dir.join("HEAD")).unwrap(),
        }
    }
}

impl Attack {
    /// Run the worker until the queue is empty, with `vars` added to its environment; its
    /// reports and how long it ran.
    pub fn drain_with_env(&self, vars: &[(&str, &str)]) -> (Vec<Value>, std::time::Duration) {
        let started = std::time::Instant::now();
        let mut cmd = self.repo.cmd();
        cmd.args(["worker", "--drain", "--format", "json"]);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let took = started.elapsed();
        let reports = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (reports, took)
    }
}

/// Run `cmd` to its end; its output and its peak resident memory in KiB (the kernel's
/// `ru_maxrss` of exactly this child, from `wait4`).
#[allow(unsafe_code)]
pub fn run_measured(mut cmd: std::process::Command) -> (std::process::Output, u64) {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    let child = cmd.spawn().unwrap();
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is plain integers, valid when zeroed; `pid` is our child, not reaped
    // yet (std reaps only in `wait`, never called on it), and both pointers are valid for
    // writes for the duration of the call.
    let (reaped, usage) = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        let r = libc::wait4(pid, &mut status, 0, &mut usage);
        (r, usage)
    };
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    drop(child);
    let output = std::process::Output {
        status: std::process::ExitStatus::from_raw(status),
        stdout: std::fs::read(&out).unwrap(),
        stderr: std::fs::read(&err).unwrap(),
    };
    (output, u64::try_from(usage.ru_maxrss).unwrap_or(0))
}

impl Attack {
    /// [`Attack::refused`], also returning the peak memory of `enqueue` in KiB.
    pub fn refused_measured(&self, request: &Value, code: &str) -> u64 {
        let path = self.repo.write(
            &format!("attack-{}.json", sha256(&request.to_string())),
            request,
        );
        let mut cmd = self.repo.cmd();
        cmd.args(["enqueue", path.to_str().unwrap()]);
        let (out, peak) = run_measured(cmd);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert_refusal(&String::from_utf8_lossy(&out.stderr), code);
        assert!(
            self.repo
                .hyperion_refs()
                .lines()
                .all(|l| !l.starts_with("refs/hyperion/requests/")),
            "a refused request was stored"
        );
        self.untouched();
        peak
    }

    /// [`Attack::drain`], also returning the worker's peak memory in KiB.
    pub fn drain_measured(&self) -> (Vec<Value>, u64) {
        let mut cmd = self.repo.cmd();
        cmd.args(["worker", "--drain", "--format", "json"]);
        let (out, peak) = run_measured(cmd);
        let reports = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (reports, peak)
    }
}
