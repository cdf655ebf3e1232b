#![allow(clippy::unwrap_used)]
//! Progress of long steps (src/cli/progress.rs): a real worker, doctor and gc, run by the real
//! binary on real repositories.
//!
//! - On a terminal (tmux): one status line redrawn in place with the counts, the request in
//!   hand, the check running and its elapsed time; gone when the worker ends.
//! - Not a terminal: plain, complete `hyperion: …` lines on stderr, none on stdout.
//! - `--format json`: stdout is the JSON and nothing else; no progress unless `--progress`.
//! - `--follow`: a check's output shown as it comes, its escapes (clear screen, `\r`, OSC 52
//!   to set the clipboard, a title) escaped.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::TestRepo;
use common::tmux::Tmux;

/// `slow` sleeps (long enough for a plain line and several redraws); `spam` prints 400 lines
/// over a second or two; `evil` writes terminal escapes to both streams, a line without a
/// newline at its end last, and passes; `evil-dead` writes the same and fails.
const POLICY: &str = r#"[checks.slow]
run = ["sh", "-c", "echo starting; sleep 3; echo done sleeping"]

[checks.spam]
run = ["sh", "-c", "i=0; while [ $i -lt 400 ]; do echo line $i; i=$((i+1)); sleep 0.005; done"]

[checks.evil]
run = ["sh", "-c", "printf 'a\\033[2Jb\\rc\\033]52;c;cHduZWQ=\\007d\\n'; printf 'e\\033]0;pwned\\007f\\033[31mred\\n' >&2; sleep 1; printf 'tail\\033[Hend'"]

[checks.evil-dead]
run = ["sh", "-c", "printf 'a\\033[2Jb\\rc\\033]52;c;cHduZWQ=\\007d\\n'; printf 'e\\033]0;pwned\\007f\\033[31mred\\n' >&2; sleep 1; printf 'tail\\033[Hend'; exit 1"]
"#;

fn scene() -> TestRepo {
    let repo = TestRepo::new();
    repo.commit(
        &[(".hyperion/policy.toml", POLICY)],
        "policy: slow and evil",
    );
    repo
}

fn propose(repo: &TestRepo, task: &str, checks: &[&str]) -> String {
    let path = format!("src/{task}.txt");
    repo.propose(task, "agent", checks, move |dir: &Path| {
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(dir.join(&path), "x\n").unwrap();
    })
}

/// A command line for the shell tmux runs.
fn shell(args: &[&str]) -> String {
    let mut s = format!("'{}'", common::bin());
    for a in args {
        s.push_str(&format!(" '{a}'"));
    }
    s
}

/// The lines of stderr that are progress.
fn progress_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("hyperion: ["))
        .collect()
}

#[test]
fn a_drain_on_a_terminal_shows_the_check_and_its_elapsed_time_on_one_line_then_clears_it() {
    let repo = scene();
    let id = propose(&repo, "T-1", &["slow"]);
    let tmux = Tmux::new("hyperion-progress", "p", repo.path(), repo.home.path());
    let script = format!(
        "{}; echo \"worker exited $?\"; echo done; exec sleep 600",
        shell(&["worker", "--drain", "--id", "w1"])
    );
    tmux.start(120, 20, &script);
    // While the check runs: the counts, the request, the check and its time, redrawn in
    // place (one line, whatever the number of redraws).
    let s = tmux.wait_for("the check at 1.5 s or later", |s| {
        s.lines().any(|l| {
            l.contains(&format!(
                "drain: 0 landed, 0 dead, 1 left; {id}: check slow "
            )) && l
                .split("check slow ")
                .nth(1)
                .and_then(|t| t.trim_end().strip_suffix('s'))
                .and_then(|t| t.parse::<f64>().ok())
                .is_some_and(|t| t >= 1.5)
        })
    });
    let status: Vec<&str> = s.lines().filter(|l| l.contains("drain:")).collect();
    assert_eq!(status.len(), 1, "one status line:\n{s}");
    assert!(
        status[0].starts_with("[1s] ") || status[0].starts_with("[2s] "),
        "{s}"
    );

    let s = tmux.wait_for("the end", |s| s.lines().any(|l| l == "done"));
    assert!(s.contains("exited 0"), "{s}");
    // The status line is gone: the report and the summary are whole lines of their own.
    assert!(!s.contains("drain:"), "the status line was left:\n{s}");
    let lines: Vec<&str> = s.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("landed ") && l.contains(&id)),
        "{s}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("worker w1: 1 landed, 0 dead")),
        "{s}"
    );
}

#[test]
fn not_on_a_terminal_progress_is_plain_lines_on_stderr_and_stdout_is_the_reports() {
    let repo = scene();
    let id = propose(&repo, "T-1", &["slow"]);
    let started = Instant::now();
    let out = repo.run(&["worker", "--drain", "--id", "w1"]);
    let took = started.elapsed();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    // stdout: the report, nothing else.
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.starts_with("landed "), "{stdout}");
    // stderr: complete lines, no terminal control, a line a second at first and then one
    // every five seconds at most.
    assert!(
        !stderr.contains('\r') && !stderr.contains('\x1b'),
        "{stderr:?}"
    );
    let lines = progress_lines(&stderr);
    assert!(!lines.is_empty(), "no progress line:\n{stderr}");
    assert!(
        lines[0].starts_with(&format!(
            "hyperion: [1s] drain: 0 landed, 0 dead, 1 left; {id}: check slow "
        )),
        "{stderr}"
    );
    assert!(
        lines.len() as u64 <= 1 + took.as_secs() / 5,
        "{} lines in {took:?}:\n{stderr}",
        lines.len()
    );
    assert!(stderr.contains("worker w1: 1 landed"), "{stderr}");
}

#[test]
fn with_format_json_stdout_is_json_only_and_progress_shows_only_when_asked() {
    let repo = scene();
    propose(&repo, "T-1", &["slow"]);
    propose(&repo, "T-2", &["slow"]);
    let check = |out: std::process::Output, progress: bool| {
        assert!(out.status.success(), "{out:?}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(!stdout.is_empty());
        for line in stdout.lines() {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?} in\n{stdout}"));
            assert!(v["id"].is_string(), "{v}");
        }
        assert!(!stdout.contains("hyperion:") && !stdout.contains("drain:"));
        assert_eq!(!progress_lines(&stderr).is_empty(), progress, "{stderr}");
    };
    check(
        repo.run(&["--format", "json", "worker", "--once", "--batch-size", "1"]),
        false,
    );
    check(
        repo.run(&["--format", "json", "--progress", "worker", "--drain"]),
        true,
    );
}

#[test]
fn json_on_a_terminal_draws_nothing() {
    let repo = scene();
    propose(&repo, "T-1", &["slow"]);
    let tmux = Tmux::new("hyperion-progress-json", "p", repo.path(), repo.home.path());
    let script = format!(
        "{} > out.json; echo \"worker exited $?\"; echo done; exec sleep 600",
        shell(&["--format", "json", "worker", "--drain", "--id", "w1"])
    );
    tmux.start(120, 20, &script);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = tmux.screen();
        assert!(!s.contains("drain:") && !s.contains("check slow"), "{s}");
        if s.lines().any(|l| l == "done") {
            assert!(s.contains("exited 0"), "{s}");
            break;
        }
        assert!(Instant::now() < deadline, "{s}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = std::fs::read_to_string(repo.path().join("out.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["result"], "landed", "{v}");
}

/// What `evil` writes, as `--follow` must show it: every control character escaped, tabs
/// and text kept.
const EVIL_OUT: &str = "check evil | a\\u{1b}[2Jb\\rc\\u{1b}]52;c;cHduZWQ=\\u{7}d";
const EVIL_ERR: &str = "check evil | e\\u{1b}]0;pwned\\u{7}f\\u{1b}[31mred";
const EVIL_TAIL: &str = "check evil | tail\\u{1b}[Hend";

#[test]
fn follow_shows_a_hostile_checks_output_escaped_on_a_terminal() {
    let repo = scene();
    propose(&repo, "T-1", &["evil"]);
    let tmux = Tmux::new("hyperion-progress-evil", "p", repo.path(), repo.home.path());
    // The session waits for `go`, so that the clipboard is open to programs (OSC 52) before
    // the check runs: were its escape to reach the terminal, it would set tmux's buffer.
    let script = format!(
        "while [ ! -e go ]; do sleep 0.05; done; {}; echo \"worker exited $?\"; echo done; exec sleep 600",
        shell(&["worker", "--drain", "--follow", "--id", "w1"])
    );
    tmux.start(150, 20, &script);
    tmux.ok(&["set-option", "-s", "set-clipboard", "on"]);
    std::fs::write(repo.path().join("go"), "").unwrap();
    let s = tmux.wait_for("the end", |s| s.lines().any(|l| l == "done"));
    assert!(s.contains("exited 0"), "{s}");
    for line in [EVIL_OUT, EVIL_ERR, EVIL_TAIL] {
        assert!(s.lines().any(|l| l == line), "{line} not shown:\n{s}");
    }
    // Nothing reached the terminal: no clipboard, no title, no cleared screen (the script's
    // own lines are still above), no colour.
    assert!(
        tmux.ok(&["list-buffers"]).trim().is_empty(),
        "the clipboard was set"
    );
    assert!(!tmux.display("#{pane_title}").contains("pwned"));
    assert!(s.contains("landed "), "{s}");
    let styled = tmux.ok(&["capture-pane", "-p", "-e", "-t", "p"]);
    assert!(!styled.contains("\x1b[31m"), "{styled:?}");
}

#[test]
fn follow_without_a_terminal_writes_escaped_lines_and_no_control_byte() {
    let repo = scene();
    repo.git(&["config", "hyperion.maxAttempts", "1"]);
    // Failing: its last words are shown when it is reported dead (no landing follows).
    propose(&repo, "T-1", &["evil-dead"]);
    let out = repo.run(&["worker", "--drain", "--follow"]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with("dead "), "{stdout}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    for line in [EVIL_OUT, EVIL_ERR, EVIL_TAIL] {
        let line = line.replace("check evil |", "check evil-dead |");
        assert!(
            stderr.lines().any(|l| l == line),
            "{line} not in:\n{stderr}"
        );
    }
    assert!(
        !stderr.chars().any(|c| c.is_control() && c != '\n'),
        "{stderr:?}"
    );
    assert!(!stdout.contains("check evil-dead |"), "{stdout}");
}

#[test]
fn doctor_reindex_and_gc_report_how_far_their_passes_got() {
    let repo = TestRepo::new();
    let dir = common::request_dir(&repo, 300, "scan");
    assert_eq!(repo.enqueue(&dir).len(), 300);
    // Every update as a plain line (the default waits a second for the first).
    let run = |args: &[&str]| {
        let out = repo
            .cmd()
            .env("HYPERION_PROGRESS_EVERY", "0")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (stdout, stderr) = run(&["doctor", "--reindex"]);
    assert!(stdout.contains("300 request(s) checked"), "{stdout}");
    let lines = progress_lines(&stderr);
    for want in [
        "doctor: chains' objects checked 256/300",
        "doctor: chains' objects checked 300/300",
        "doctor: index entries checked 256/300",
        "doctor: index entries checked 300/300",
        "doctor: chains checked 256/300",
        "doctor: chains checked 300/300",
    ] {
        assert!(
            lines.iter().any(|l| l.ends_with(want)),
            "{want} not in:\n{stderr}"
        );
    }
    assert!(!stdout.contains("hyperion:"), "{stdout}");

    let (_, stderr) = run(&["gc", "--dry-run"]);
    let lines = progress_lines(&stderr);
    for want in ["gc: records read 256/300", "gc: records read 300/300"] {
        assert!(
            lines.iter().any(|l| l.ends_with(want)),
            "{want} not in:\n{stderr}"
        );
    }
    // A real gc: two requests finished (one dead, one landed) are archived.
    let ids = repo.ids(&["list"]);
    repo.ok(&["dequeue", "--worker", "w", "--batch", "2"]);
    let leased = repo.ids(&["list", "--status", "leased"]);
    repo.fail_apply(&leased[0], "w");
    let head = repo.git(&["rev-parse", "HEAD"]).trim().to_owned();
    repo.ok(&["complete", &leased[1], "--worker", "w", "--landed", &head]);
    assert_eq!(ids.len(), 300);
    let (stdout, stderr) = run(&["gc", "--older-than", "0s"]);
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    let lines = progress_lines(&stderr);
    for want in [
        "gc: records read 300/300",
        "gc: requests archived 0/2",
        "gc: requests archived 2/2",
        "gc: refs removed 2/2",
    ] {
        assert!(
            lines.iter().any(|l| l.ends_with(want)),
            "{want} not in:\n{stderr}"
        );
    }
    // JSON: the document alone, and no progress.
    let (stdout, stderr) = run(&["--format", "json", "doctor", "--reindex"]);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["requests"], 298, "{v}");
    assert!(progress_lines(&stderr).is_empty(), "{stderr}");
}

/// The session's script waits for `go`: what the pane receives is logged raw (`pipe-pane`)
/// from the first byte.
fn logged(tmux: &Tmux, repo: &TestRepo, env: &str, args: &[&str]) -> std::path::PathBuf {
    let raw = repo.home.path().join("raw.log");
    let script = format!(
        "while [ ! -e go ]; do sleep 0.05; done; {env} {}; echo \"exited $?\"; echo done; exec sleep 600",
        shell(args)
    );
    tmux.start(120, 20, &script);
    tmux.ok(&[
        "pipe-pane",
        "-t",
        "p",
        "-o",
        &format!("cat >> '{}'", raw.display()),
    ]);
    std::fs::write(repo.path().join("go"), "").unwrap();
    raw
}

#[test]
fn the_status_line_is_redrawn_at_most_ten_times_a_second_even_under_a_flood_of_output() {
    let repo = scene();
    propose(&repo, "T-1", &["spam"]);
    let tmux = Tmux::new("hyperion-progress-rate", "p", repo.path(), repo.home.path());
    let started = Instant::now();
    let raw = logged(&tmux, &repo, "", &["worker", "--drain", "--follow"]);
    let s = tmux.wait_for("the end", |s| s.lines().any(|l| l == "done"));
    let took = started.elapsed();
    assert!(s.contains("exited 0"), "{s}");
    let raw = std::fs::read(&raw).unwrap();
    let raw = String::from_utf8_lossy(&raw);
    let lines = raw.matches("check spam | line ").count();
    assert_eq!(lines, 400, "every line of output is shown");
    let draws = raw.matches("drain: ").count();
    let bound = 10 * took.as_secs() as usize + 10;
    assert!(
        (1..=bound).contains(&draws),
        "{draws} redraws in {took:?} (at most {bound})"
    );
}

#[test]
fn a_dumb_terminal_gets_plain_lines() {
    let repo = scene();
    propose(&repo, "T-1", &["slow"]);
    let tmux = Tmux::new("hyperion-progress-dumb", "p", repo.path(), repo.home.path());
    let raw = logged(&tmux, &repo, "TERM=dumb", &["worker", "--drain"]);
    let s = tmux.wait_for("the end", |s| s.lines().any(|l| l == "done"));
    assert!(
        s.lines()
            .any(|l| l.starts_with("hyperion: [1s] drain: 0 landed, 0 dead, 1 left;")),
        "{s}"
    );
    let raw = std::fs::read(&raw).unwrap();
    assert!(
        !String::from_utf8_lossy(&raw).contains("\x1b[K"),
        "a status line was drawn"
    );
}

#[test]
fn doctor_on_a_terminal_takes_its_status_line_away_before_its_report() {
    let repo = TestRepo::new();
    let dir = common::request_dir(&repo, 300, "tty");
    assert_eq!(repo.enqueue(&dir).len(), 300);
    let tmux = Tmux::new(
        "hyperion-progress-doctor",
        "p",
        repo.path(),
        repo.home.path(),
    );
    let raw = logged(&tmux, &repo, "", &["doctor", "--reindex"]);
    let s = tmux.wait_for("the end", |s| s.lines().any(|l| l == "done"));
    assert!(s.contains("exited 0"), "{s}");
    // It was drawn, and it is gone: the report starts its line.
    let raw = std::fs::read(&raw).unwrap();
    assert!(
        String::from_utf8_lossy(&raw).contains("] doctor: "),
        "no status line was drawn"
    );
    assert!(!s.contains("doctor:"), "{s}");
    assert!(s.lines().any(|l| l == "300 request(s) checked"), "{s}");
}

/// A worker's report line quotes what a request brought (here the name of a check it asks
/// for, in a request planted without validation): escaped, like the status line.
#[test]
fn a_report_quoting_a_hostile_request_is_escaped() {
    let repo = TestRepo::new();
    repo.git(&["config", "hyperion.maxAttempts", "1"]);
    let mut req = common::request(0, "hostile");
    req["checks"] = serde_json::json!(["x\u{1b}]0;pwned\u{7}\u{1b}[2Jy"]);
    let id = repo.plant(&req);
    let out = repo.run(&["worker", "--drain"]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with(&format!("dead        {id}")), "{stdout}");
    assert!(
        stdout.contains("x\\u{1b}]0;pwned\\u{7}\\u{1b}[2Jy"),
        "{stdout}"
    );
    assert!(
        !stdout.chars().any(|c| c.is_control() && c != '\n'),
        "{stdout:?}"
    );
}
