//! Checks and hooks: bounded in time, unable to change the shared repository through their
//! slot, blind to the worker's environment.
//!
//! The check's command is the policy's (trusted), but what it runs is the request's code (a
//! `check.sh`, a Makefile): each case's check does what such code could. Every check ends in
//! failure, so that the request is parked (`check.failed`, `check.timeout`) and nothing lands;
//! what the case verifies is what the check could not do meanwhile.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Attack, SECRETS, SharedGit, add_patch, adds, request, with_policy};

/// How long the worker may take beyond a check's timeout: the grace between SIGTERM and
/// SIGKILL (2 s), the wait for the killed (1 s), and a generous allowance for a loaded
/// machine.
const SLACK: Duration = Duration::from_secs(8);

/// A repository whose policy is `policy`, requests dead at their first failure.
fn attack_with(policy: &str) -> Attack {
    let mut a = Attack::new();
    with_policy(&mut a, policy);
    a.repo.git(&["config", "hyperion.maxAttempts", "1"]);
    a
}

/// A request adding `src/<task>.txt` that names `check`.
fn checked(task: &str, check: &str) -> Value {
    let mut r = adds(task, &format!("src/{task}.txt"), "content\n");
    r["checks"] = json!([check]);
    r
}

/// The tail of a check's output as stored with the request.
fn artifact(a: &Attack, id: &str, name: &str) -> String {
    a.repo.git(&[
        "show",
        &format!("refs/hyperion/requests/{id}:artifacts/checks/{name}"),
    ])
}

fn pid_in(file: &Path) -> i32 {
    std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .trim()
        .parse()
        .unwrap()
}

/// Whether process `pid` is gone (or a zombie) within a few seconds; killed if not.
fn gone(pid: i32) -> bool {
    let went = crate::common::gone(pid, Duration::from_secs(3));
    if !went {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
    went
}

/// The issue's case: a check's grandchild called `setsid` and kept the output pipes open;
/// the worker waited for them 40 s (forever when it never exits). It moves on as soon as the
/// check exits, and the grandchild is killed.
#[test]
fn a_check_whose_detached_grandchild_holds_the_pipes_does_not_hold_the_worker() {
    let home = tempfile::tempdir().unwrap();
    let pid = home.path().join("grandchild.pid");
    let a = attack_with(&format!(
        "[checks.detach]\nrun = [\"sh\", \"-c\", '''setsid sh -c 'echo $$ > {p}; exec sleep 1000' & \
         while [ ! -s {p} ]; do sleep 0.01; done; echo started; exit 1''']\n",
        p = pid.display()
    ));
    let id = a.enqueue(&checked("T-detach", "detach"));
    let (_, took) = a.drain_with_env(&[]);
    let record = a.parked(&id, "check.failed");
    a.nothing_landed();
    assert!(took < SLACK, "the worker was held {took:?}");
    let grandchild = pid_in(&pid);
    assert!(
        gone(grandchild),
        "the detached grandchild {grandchild} still runs"
    );
    let message = record["error"]["message"].as_str().unwrap();
    assert!(message.contains("sleep"), "the kill is reported: {message}");
    assert_eq!(artifact(&a, &id, "detach.stdout"), "started\n");
}

/// A check that never exits and ignores SIGTERM, with a detached child that ignores it too:
/// stopped at its timeout (SIGTERM, grace, SIGKILL to the group and to the child).
#[test]
fn a_check_that_never_exits_is_stopped_at_its_timeout_with_its_detached_children() {
    let home = tempfile::tempdir().unwrap();
    let pid = home.path().join("grandchild.pid");
    let a = attack_with(&format!(
        "[checks.forever]\nrun = [\"sh\", \"-c\", '''setsid sh -c 'trap \"\" TERM; echo $$ > {p}; \
         while :; do sleep 1; done' & trap '' TERM; while :; do sleep 1; done''']\ntimeout = \"1s\"\n",
        p = pid.display()
    ));
    let id = a.enqueue(&checked("T-forever", "forever"));
    let (_, took) = a.drain_with_env(&[]);
    a.parked(&id, "check.timeout");
    a.nothing_landed();
    assert!(
        took < Duration::from_secs(1) + SLACK,
        "the worker was held {took:?}"
    );
    assert!(gone(pid_in(&pid)), "the detached child still runs");
}

/// The issue's case: a failing check set `hyperion.hooksDir` (and with it what runs before
/// every later request) in the shared repository. Its `git config` now writes its slot's
/// repository.
#[test]
fn a_check_running_git_config_changes_no_shared_setting() {
    let a = attack_with(
        "[checks.conf]\nrun = [\"sh\", \"-c\", '''git config hyperion.hooksDir /tmp/evil-hooks && \
         git config core.hooksPath /tmp/evil-hooks && git config --add hyperion.allowedAgent attacker && \
         git config --get hyperion.hooksDir; exit 1''']\n",
    );
    let before = SharedGit::take(&a.repo);
    let id = a.enqueue(&checked("T-conf", "conf"));
    a.drain_with_env(&[]);
    a.parked(&id, "check.failed");
    a.nothing_landed();
    assert_eq!(
        artifact(&a, &id, "conf.stdout"),
        "/tmp/evil-hooks\n",
        "git ran"
    );
    assert_eq!(
        SharedGit::take(&a.repo),
        before,
        "the shared repository changed"
    );
}

/// The issue's case: a check created a branch in the shared repository. Worse, one that
/// moves `main` to the commit under check would land it past the gate.
#[test]
fn a_check_creating_branches_or_moving_main_changes_no_shared_ref() {
    let a = attack_with(
        "[checks.refs]\nrun = [\"sh\", \"-c\", '''git branch evil && git tag evil-tag && \
         git update-ref refs/heads/main HEAD && git update-ref refs/evil HEAD && \
         git for-each-ref --format='%(refname)'; exit 1''']\n",
    );
    let before = SharedGit::take(&a.repo);
    let id = a.enqueue(&checked("T-refs", "refs"));
    a.drain_with_env(&[]);
    a.parked(&id, "check.failed");
    a.nothing_landed();
    let listed = artifact(&a, &id, "refs.stdout");
    assert!(listed.contains("refs/heads/evil"), "git ran: {listed}");
    assert_eq!(
        SharedGit::take(&a.repo),
        before,
        "the shared repository changed"
    );
}

/// Another spelling: the git directory found the way git finds it (`--git-common-dir`), its
/// hooks and config written as files, not through `git config`.
#[test]
fn a_check_writing_hooks_and_config_files_into_its_git_directory_changes_nothing_shared() {
    let a = attack_with(
        "[checks.files]\nrun = [\"sh\", \"-c\", '''d=$(git rev-parse --git-common-dir) && \
         mkdir -p \"$d/hooks\" && printf '#!/bin/sh\\nexit 0\\n' > \"$d/hooks/pre-receive\" && \
         chmod +x \"$d/hooks/pre-receive\" && printf '[core]\\n\\thooksPath = /tmp/evil\\n' >> \"$d/config\" && \
         mkdir -p \"$d/info\" && echo '*' > \"$d/info/exclude\" && ls \"$d/hooks\"; exit 1''']\n",
    );
    let before = SharedGit::take(&a.repo);
    let id = a.enqueue(&checked("T-files", "files"));
    a.drain_with_env(&[]);
    a.parked(&id, "check.failed");
    a.nothing_landed();
    assert_eq!(
        artifact(&a, &id, "files.stdout"),
        "pre-receive\n",
        "it wrote"
    );
    assert_eq!(
        SharedGit::take(&a.repo),
        before,
        "the shared repository changed"
    );
}

/// Another spelling: with its slot's `.git` gone, git run in the check would search the
/// directories above — the slot lies inside the shared git directory, which git would take
/// for a repository. `GIT_CEILING_DIRECTORIES` stops the search at the slot.
#[test]
fn a_check_that_removed_its_git_directory_does_not_find_the_shared_one() {
    let a = attack_with(
        "[checks.climb]\nrun = [\"sh\", \"-c\", '''rm -rf .git; \
         git config hyperion.hooksDir /tmp/evil-hooks; git branch evil; \
         git update-ref refs/heads/main $(git rev-parse HEAD); git rev-parse --git-dir; exit 1''']\n",
    );
    let before = SharedGit::take(&a.repo);
    let id = a.enqueue(&checked("T-climb", "climb"));
    a.drain_with_env(&[]);
    a.parked(&id, "check.failed");
    a.nothing_landed();
    assert!(
        artifact(&a, &id, "climb.stderr").contains("not a git repository"),
        "git found a repository"
    );
    assert_eq!(
        SharedGit::take(&a.repo),
        before,
        "the shared repository changed"
    );
}

/// The slot's `.git` replaced by a link to the shared git directory (found relative to the
/// slot). The check itself could write there by path anyway (docs/usage.md says so); what
/// must not happen is that the worker's next move of the slot writes its index and `HEAD`
/// through the link — into the person's checkout.
#[test]
fn a_slot_git_directory_linked_to_the_shared_one_is_not_written_through() {
    let a = attack_with(
        "[checks.link]\nrun = [\"sh\", \"-c\", '''if [ -f evil.marker ]; then \
         rm -rf .git && ln -s \"$(cd ../../.. && pwd)\" .git; fi; exit 1''']\n",
    );
    let mut first = request(
        "T-link",
        &[("evil.marker", "add", &add_patch("evil.marker", "x\n"))],
        json!({}),
    );
    first["checks"] = json!(["link"]);
    let first = a.enqueue(&first);
    a.drain_with_env(&[]);
    a.parked(&first, "check.failed");
    // Only now, once the check made the link: what the next move would write through.
    let before = SharedGit::take(&a.repo);
    let second = a.enqueue(&checked("T-after", "link"));
    a.drain_with_env(&[]);
    a.parked(&second, "check.failed");
    a.nothing_landed();
    assert_eq!(
        SharedGit::take(&a.repo),
        before,
        "the shared repository changed"
    );
}

/// Two requests together: the first's code poisons its slot — the slot repository's config
/// (an fsmonitor command git runs on `git status`), `HOME/.gitconfig`, a file in the work
/// tree written by a detached process after the check ended — and the second's check must
/// start from a clean slot.
#[test]
fn a_check_that_poisons_its_slot_does_not_reach_the_next_request() {
    let home = tempfile::tempdir().unwrap();
    let marker = home.path().join("fsmonitor-ran");
    let a = attack_with("[checks.script]\nrun = [\"sh\", \"check.sh\"]\n");
    let poison = format!(
        "git config core.fsmonitor 'touch {m}'\n\
         printf '[core]\\n\\tfsmonitor = touch {m}\\n' > \"$HOME/.gitconfig\"\n\
         setsid sh -c 'sleep 1; echo late > evil.txt' > /dev/null 2>&1 &\n\
         exit 1\n",
        m = marker.display()
    );
    let mut bad = request(
        "T-poison",
        &[("check.sh", "add", &add_patch("check.sh", &poison))],
        json!({}),
    );
    bad["checks"] = json!(["script"]);
    let inspect = "test \"$(git config --get core.fsmonitor)\" = false || exit 7\n\
                   test ! -e \"$HOME/.gitconfig\" || exit 7\n\
                   git status --porcelain --untracked-files=all\n\
                   test -z \"$(git status --porcelain --untracked-files=all)\" || exit 7\n\
                   exit 3\n";
    let mut next = request(
        "T-next",
        &[("check.sh", "add", &add_patch("check.sh", inspect))],
        json!({}),
    );
    next["checks"] = json!(["script"]);
    let bad = a.enqueue(&bad);
    a.drain_with_env(&[]);
    a.parked(&bad, "check.failed");
    // Time for the detached writer, had it survived.
    std::thread::sleep(Duration::from_millis(1500));
    let next = a.enqueue(&next);
    a.drain_with_env(&[]);
    let record = a.parked(&next, "check.failed");
    a.nothing_landed();
    let message = record["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("exit 3"),
        "the slot was poisoned: {message}"
    );
    assert!(!marker.exists(), "the planted fsmonitor command ran");
}

/// A worker killed while its check runs leaves the slot as the check made it (here: its
/// repository's config poisoned, a branch, a stray file); the next worker, a new process,
/// finds the slot's repository changed and rebuilds it before the next check runs.
#[test]
fn a_slot_poisoned_when_the_worker_died_mid_check_is_rebuilt_by_the_next_worker() {
    let home = tempfile::tempdir().unwrap();
    let ready = home.path().join("poisoned");
    let a = attack_with("[checks.script]\nrun = [\"sh\", \"check.sh\"]\n");
    let poison = format!(
        "git config core.pager 'exit 9' && git config alias.st '!exit 9' && git branch evil\n\
         echo stray > stray.txt\n\
         echo $$ > {r}\n\
         exec sleep 1000\n",
        r = ready.display()
    );
    let mut bad = request(
        "T-crash",
        &[("check.sh", "add", &add_patch("check.sh", &poison))],
        json!({}),
    );
    bad["checks"] = json!(["script"]);
    let bad = a.enqueue(&bad);
    let mut worker = a
        .repo
        .cmd()
        .args(["worker", "--once", "--lease", "2s", "--format", "json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready.exists()
        || std::fs::read_to_string(&ready)
            .unwrap_or_default()
            .trim()
            .is_empty()
    {
        assert!(Instant::now() < deadline, "the check never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    worker.kill().unwrap();
    worker.wait().unwrap();
    // The dead worker's check lives on (its parent is gone); end it as an operator would.
    let check = pid_in(&ready);
    let _ = std::process::Command::new("kill")
        .args(["-9", &check.to_string()])
        .status();
    // Its lease runs out and it is swept back; the next request goes first (priority 9).
    std::thread::sleep(Duration::from_millis(2200));
    a.repo.ok(&["sweep"]);
    let inspect = "test -z \"$(git config --get alias.st)\" || exit 7\n\
                   test -z \"$(git config --get core.pager)\" || exit 7\n\
                   test -z \"$(git for-each-ref)\" || exit 7\n\
                   test -z \"$(git status --porcelain --untracked-files=all)\" || exit 7\n\
                   exit 3\n";
    let mut next = request(
        "T-after-crash",
        &[("check.sh", "add", &add_patch("check.sh", inspect))],
        json!({"priority": 9}),
    );
    next["checks"] = json!(["script"]);
    let next = a.enqueue(&next);
    let out = a
        .repo
        .run(&["worker", "--once", "--batch-size", "1", "--format", "json"]);
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains(&next), "{out}");
    let record = a.parked(&next, "check.failed");
    a.nothing_landed();
    let message = record["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("exit 3"),
        "the slot was poisoned: {message}"
    );
    assert_ne!(bad, next);
}

/// A token exported in the worker's environment (a CI secret, a forge token) does not reach
/// a check: a check that prints its environment would store it with the request.
#[test]
fn a_check_does_not_see_a_token_in_the_workers_environment() {
    let a = attack_with(
        "[checks.env]\nrun = [\"sh\", \"-c\", '''env; env | grep -q 'ghp_' && exit 7; \
         test -n \"${GITHUB_TOKEN:-}${AWS_SECRET_ACCESS_KEY:-}\" && exit 7; exit 3''']\n",
    );
    let id = a.enqueue(&checked("T-env", "env"));
    let (_, took) = a.drain_with_env(&[
        ("GITHUB_TOKEN", SECRETS[1]),
        ("AWS_SECRET_ACCESS_KEY", SECRETS[3]),
    ]);
    let record = a.parked(&id, "check.failed");
    a.nothing_landed();
    let message = record["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("exit 3"),
        "the check saw a token: {message}"
    );
    let env = artifact(&a, &id, "env.stdout");
    assert!(
        env.contains("HOME="),
        "the check printed its environment: {env}"
    );
    assert!(took < SLACK);
}

/// Run the worker until the queue is empty, with `vars` added to its environment, as a user
/// without privileges: when the tests run as root, as `nobody` (`setpriv`), the repository
/// lent to it meanwhile — a root process reads every process's `/proc` files, whatever they
/// allow.
fn drain_unprivileged(a: &Attack, vars: &[(&str, &str)]) {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n");
    if !root {
        a.drain_with_env(vars);
        return;
    }
    let dirs = [a.repo.path(), a.repo.home.path()];
    let chown = |owner: &str| {
        for d in dirs {
            let ok = std::process::Command::new("chown")
                .args(["-R", owner])
                .arg(d)
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown {owner} {}", d.display());
        }
    };
    chown("65534:65534");
    let mut cmd = a.repo.command("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(crate::common::bin())
        .args(["worker", "--drain", "--format", "json"]);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    chown("0:0");
    assert!(out.status.success(), "{out:?}");
}

/// Another way to the same token: the worker's own environment, read through `/proc` by its
/// child, which runs as the same user. The worker makes itself undumpable, which makes its
/// `/proc` files its own (and `ptrace` impossible) for other processes of that user.
#[test]
fn a_check_cannot_read_the_token_from_the_workers_proc_files() {
    let a = attack_with(
        r#"[checks.proc]
run = ["sh", "-c", '''
id -u
for f in /proc/[0-9]*/environ; do grep -qa ghp_ "$f" 2>/dev/null && echo "$f" && exit 7; done
grep -qa ghp_ /proc/$PPID/cmdline /proc/$PPID/mem 2>/dev/null && exit 7
exit 3''']
"#,
    );
    let id = a.enqueue(&checked("T-proc", "proc"));
    drain_unprivileged(&a, &[("GITHUB_TOKEN", SECRETS[1])]);
    let record = a.parked(&id, "check.failed");
    a.nothing_landed();
    let message = record["error"]["message"].as_str().unwrap();
    let uid = artifact(&a, &id, "proc.stdout");
    assert!(
        message.contains("exit 3"),
        "the check (uid {uid}) found the token: {message}"
    );
    assert_ne!(
        uid.trim(),
        "0",
        "the check ran as root, which reads everything"
    );
}

/// The same for a pre-apply hook, whose output becomes the refusal message stored with the
/// request.
#[test]
fn a_pre_apply_hook_does_not_see_a_token_in_the_workers_environment() {
    use std::os::unix::fs::PermissionsExt;
    let a = Attack::new();
    let dir = a.repo.home.path().join("hooks");
    std::fs::create_dir_all(&dir).unwrap();
    let hook = dir.join("10-env");
    std::fs::write(
        &hook,
        "#!/bin/sh\ncat > /dev/null\nenv >&2\nenv | grep -q 'ghp_' && exit 7\n\
         test -n \"${GITHUB_TOKEN:-}\" && exit 7\nexit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    a.repo
        .git(&["config", "hyperion.hooksDir", dir.to_str().unwrap()]);
    let id = a.enqueue(&adds("T-hook-env", "src/h.txt", "h\n"));
    a.drain_with_env(&[("GITHUB_TOKEN", SECRETS[1])]);
    let record = a.parked(&id, "hook.refused");
    a.nothing_landed();
    let message = record["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("exited with 3"),
        "the hook saw a token: {message}"
    );
    assert!(message.contains("HYPERION_REQUEST_ID="), "{message}");
}

/// A pre-apply hook that never exits (and leaves a detached child) is stopped at
/// `hyperion.hookTimeout` and refuses; the worker moves on.
#[test]
fn a_pre_apply_hook_that_never_exits_is_stopped_at_its_timeout() {
    use std::os::unix::fs::PermissionsExt;
    let a = Attack::new();
    let home = tempfile::tempdir().unwrap();
    let pid = home.path().join("child.pid");
    let dir = a.repo.home.path().join("hooks");
    std::fs::create_dir_all(&dir).unwrap();
    let hook = dir.join("10-hang");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nsetsid sh -c 'echo $$ > {p}; exec sleep 1000' &\ntrap '' TERM\n\
             while :; do sleep 1; done\n",
            p = pid.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    a.repo
        .git(&["config", "hyperion.hooksDir", dir.to_str().unwrap()]);
    a.repo.git(&["config", "hyperion.hookTimeout", "1s"]);
    let id = a.enqueue(&adds("T-hook-hang", "src/h.txt", "h\n"));
    let (_, took) = a.drain_with_env(&[]);
    let record = a.parked(&id, "hook.refused");
    a.nothing_landed();
    let message = record["error"]["message"].as_str().unwrap();
    assert!(message.contains("ran past 1s"), "{message}");
    assert!(
        took < Duration::from_secs(1) + SLACK,
        "the worker was held {took:?}"
    );
    assert!(gone(pid_in(&pid)), "the hook's detached child still runs");
}
