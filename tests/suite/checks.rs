#![allow(clippy::unwrap_used)]
//! The check runner with real processes: pass, fail, timeout (the whole process group is gone
//! afterwards), cancellation, huge output (bounded), spawn failures, environment.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use hyperion::gate::checks::{self, CheckCommand, CheckStatus, OutputLimit};

use crate::common;

fn sh(name: &str, script: &str, timeout: Duration) -> CheckCommand {
    CheckCommand {
        name: name.into(),
        argv: vec!["sh".into(), "-c".into(), script.into()],
        env: BTreeMap::new(),
        timeout,
        inherit: Vec::new(),
    }
}

fn run(cmd: &CheckCommand) -> checks::CheckResult {
    let dir = tempfile::tempdir().unwrap();
    checks::run(
        cmd,
        dir.path(),
        &dir.path().join(".scratch"),
        OutputLimit::default(),
        &AtomicBool::new(false),
        &mut || {},
    )
}

#[test]
fn pass_and_fail() {
    let r = run(&sh("ok", "echo fine", Duration::from_secs(10)));
    assert_eq!(r.status, CheckStatus::Passed);
    assert_eq!(r.stdout.tail, b"fine\n");
    let r = run(&sh("bad", "echo oops >&2; exit 3", Duration::from_secs(10)));
    assert_eq!(
        r.status,
        CheckStatus::Failed {
            exit_code: Some(3),
            signal: None
        }
    );
    assert_eq!(r.stderr.render(), "oops\n");
    let r = run(&sh("killed", "kill -9 $$", Duration::from_secs(10)));
    assert_eq!(
        r.status,
        CheckStatus::Failed {
            exit_code: None,
            signal: Some(9)
        }
    );
}

#[test]
fn a_timeout_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    let script = format!("sleep 100 & echo $! > '{}'; sleep 100", pidfile.display());
    let started = Instant::now();
    let r = checks::run(
        &sh("slow", &script, Duration::from_millis(300)),
        dir.path(),
        &dir.path().join(".scratch"),
        OutputLimit::default(),
        &AtomicBool::new(false),
        &mut || {},
    );
    assert_eq!(r.status, CheckStatus::TimedOut);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let grandchild: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The background sleep (same process group) is gone: no such process, or a zombie
    // reaped by init a moment later.
    assert!(
        common::gone(grandchild, Duration::from_secs(2)),
        "grandchild still alive: {:?}",
        common::proc_state(grandchild)
    );
}

#[test]
fn a_check_ignoring_sigterm_is_killed_after_the_grace() {
    let r = run(&sh(
        "stubborn",
        "trap '' TERM; sleep 100",
        Duration::from_millis(200),
    ));
    assert_eq!(r.status, CheckStatus::TimedOut);
    assert!(r.duration < checks::GRACE + Duration::from_secs(2));
}

#[test]
fn cancellation_from_another_thread() {
    let dir = tempfile::tempdir().unwrap();
    let cancel = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(200));
            cancel.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let r = checks::run(
            &sh("long", "sleep 100", Duration::from_secs(100)),
            dir.path(),
            &dir.path().join(".scratch"),
            OutputLimit::default(),
            &cancel,
            &mut || {},
        );
        assert_eq!(r.status, CheckStatus::Cancelled);
        assert!(r.duration < Duration::from_secs(5));
    });
}

#[test]
fn huge_output_keeps_a_bounded_tail() {
    let dir = tempfile::tempdir().unwrap();
    let r = checks::run(
        &sh(
            "loud",
            "yes 0123456789 | head -c 200000000; echo THE-END",
            Duration::from_secs(60),
        ),
        dir.path(),
        &dir.path().join(".scratch"),
        OutputLimit { bytes: 4096 },
        &AtomicBool::new(false),
        &mut || {},
    );
    assert_eq!(r.status, CheckStatus::Passed);
    assert_eq!(r.stdout.total_bytes, 200_000_000 + 8);
    assert_eq!(r.stdout.tail.len(), 4096);
    assert!(r.stdout.truncated);
    assert!(r.stdout.tail.ends_with(b"THE-END\n"));
    assert!(
        r.stdout
            .render()
            .starts_with("[… 199995912 bytes omitted …]")
    );
}

#[test]
fn spawn_failures_environment_and_ticks() {
    let r = run(&CheckCommand {
        name: "missing".into(),
        argv: vec!["/no/such/program".into()],
        env: BTreeMap::new(),
        timeout: Duration::from_secs(5),
        inherit: Vec::new(),
    });
    assert!(
        matches!(&r.status, CheckStatus::SpawnFailed(m) if m.contains("/no/such/program")),
        "{:?}",
        r.status
    );

    let dir = tempfile::tempdir().unwrap();
    let mut env = BTreeMap::new();
    env.insert("MY_VAR".to_owned(), "42".to_owned());
    let mut ticks = 0;
    let cmd = CheckCommand {
        name: "envy".into(),
        argv: vec![
            "sh".into(),
            "-c".into(),
            "echo \"$MY_VAR ${GIT_DIR:-unset} $HYPERION_CHECK $(pwd)\"; sleep 2.5".into(),
        ],
        env,
        timeout: Duration::from_secs(10),
        inherit: Vec::new(),
    };
    let r = checks::run(
        &cmd,
        dir.path(),
        &dir.path().join(".scratch"),
        OutputLimit::default(),
        &AtomicBool::new(false),
        &mut || ticks += 1,
    );
    assert_eq!(r.status, CheckStatus::Passed);
    let line = String::from_utf8(r.stdout.tail).unwrap();
    let cwd = dir.path().canonicalize().unwrap();
    assert_eq!(line.trim(), format!("42 unset envy {}", cwd.display()));
    assert!(ticks >= 2, "tick was called {ticks} times in 2.5 s");
}

fn pid_in(file: &std::path::Path) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(pid) = std::fs::read_to_string(file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "{} never written",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Kill what a test left running on purpose (the portable path does not).
fn cleanup(pid: i32) {
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
}

/// The case: a check whose grandchild calls `setsid` and keeps stdout open held the
/// worker until the grandchild exited (40 s, or forever). The run ends as soon as the check
/// exits, and the grandchild, which left the process group, is found and killed.
#[cfg(target_os = "linux")]
#[test]
fn a_detached_grandchild_holding_the_pipes_does_not_hold_the_check() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    let script = format!(
        "setsid sh -c 'echo $$ > {p}; exec sleep 1000' & \
         while [ ! -s {p} ]; do sleep 0.01; done; echo started",
        p = pidfile.display()
    );
    let r = checks::run(
        &sh("detach", &script, Duration::from_secs(60)),
        dir.path(),
        &dir.path().join(".scratch"),
        OutputLimit::default(),
        &AtomicBool::new(false),
        &mut || {},
    );
    let grandchild = pid_in(&pidfile);
    assert_eq!(r.status, CheckStatus::Passed, "{r:?}");
    assert_eq!(r.stdout.render(), "started\n");
    assert!(r.duration < Duration::from_secs(1), "{:?}", r.duration);
    assert!(
        r.killed
            .iter()
            .any(|k| k.pid == grandchild as u32 && k.name == "sleep"),
        "{:?}",
        r.killed
    );
    assert!(!r.output_cut);
    assert!(
        common::gone(grandchild, Duration::from_secs(2)),
        "still running"
    );
}

/// A check that never exits, whose detached grandchild ignores SIGTERM: at the deadline the
/// group gets SIGTERM, after the grace SIGKILL, and the grandchild goes too; the run is over
/// within the timeout, the grace and the wait for the killed.
#[cfg(target_os = "linux")]
#[test]
fn a_check_that_never_exits_is_stopped_with_its_detached_children() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    let script = format!(
        "setsid sh -c 'trap \"\" TERM; echo $$ > {p}; while :; do sleep 1; done' & \
         trap '' TERM; while :; do sleep 1; done",
        p = pidfile.display()
    );
    let timeout = Duration::from_millis(300);
    let r = checks::run(
        &sh("forever", &script, timeout),
        dir.path(),
        &dir.path().join(".scratch"),
        OutputLimit::default(),
        &AtomicBool::new(false),
        &mut || {},
    );
    let grandchild = pid_in(&pidfile);
    assert_eq!(r.status, CheckStatus::TimedOut);
    assert!(
        r.duration >= timeout + checks::GRACE
            && r.duration < timeout + checks::GRACE + Duration::from_secs(2),
        "{:?}",
        r.duration
    );
    assert!(
        r.killed.iter().any(|k| k.pid == grandchild as u32),
        "{:?}",
        r.killed
    );
    assert!(
        common::gone(grandchild, Duration::from_secs(2)),
        "still running"
    );
}

/// Where descendants cannot be found (the portable path, forced here), the time bound holds
/// all the same: output is read for a grace period after the program exited, then the run
/// ends and says its output was cut.
#[test]
fn the_portable_path_stops_reading_a_grace_after_the_program_exited() {
    use hyperion::gate::untrusted::{self, Ended, Env, Scratch, Spec};
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    let scratch = Scratch::at(&dir.path().join(".scratch")).unwrap();
    let env = Env::scrubbed(&scratch, &[]);
    let argv = [
        "sh".to_owned(),
        "-c".to_owned(),
        format!(
            "setsid sh -c 'echo $$ > {p}; exec sleep 1000' & \
         while [ ! -s {p} ]; do sleep 0.01; done; echo started",
            p = pidfile.display()
        ),
    ];
    let grace = Duration::from_millis(300);
    let started = Instant::now();
    let r = untrusted::run(
        &Spec {
            argv: &argv,
            cwd: dir.path(),
            env: &env,
            stdin: None,
            timeout: Duration::from_secs(60),
            grace,
            keep: 1024,
            portable: true,
        },
        &AtomicBool::new(false),
        &mut || {},
    );
    let took = started.elapsed();
    let grandchild = pid_in(&pidfile);
    cleanup(grandchild);
    assert!(matches!(r.ended, Ended::Exited(s) if s.success()), "{r:?}");
    assert_eq!(r.stdout.render(), "started\n");
    assert!(r.output_cut, "the grandchild still held the pipe");
    assert!(r.killed.is_empty());
    assert!(
        took >= grace && took < grace + Duration::from_secs(1),
        "{took:?}"
    );
}

/// Run as a child, alone in its process: a descendant that cleared its environment (no run
/// token) and detached is still found, because it started after the check and no other run
/// is going on.
#[cfg(target_os = "linux")]
#[test]
fn alone_env_cleared() {
    if std::env::var_os("HYPERION_TEST_ALONE").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    let script = format!(
        "env -i setsid sh -c 'echo $$ > {p}; exec sleep 1000' & \
         while [ ! -s {p} ]; do sleep 0.01; done; echo started",
        p = pidfile.display()
    );
    let r = run(&sh("cleared", &script, Duration::from_secs(60)));
    let grandchild = pid_in(&pidfile);
    assert_eq!(r.status, CheckStatus::Passed);
    assert!(r.duration < Duration::from_secs(1), "{:?}", r.duration);
    assert!(
        common::gone(grandchild, Duration::from_secs(2)),
        "still running"
    );
    assert!(r.killed.iter().any(|k| k.pid == grandchild as u32));
    println!("alone: ok");
}

#[cfg(target_os = "linux")]
#[test]
fn a_detached_descendant_that_cleared_its_environment_is_found_too() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "checks::alone_env_cleared",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HYPERION_TEST_ALONE", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("alone: ok"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The input is written while the program reads it, and a program that does not read it is
/// not waited for.
#[test]
fn input_is_fed_without_blocking() {
    use hyperion::gate::untrusted::{self, Ended, Env, Scratch, Spec};
    let dir = tempfile::tempdir().unwrap();
    let scratch = Scratch::at(&dir.path().join(".scratch")).unwrap();
    let env = Env::scrubbed(&scratch, &[]);
    let input = vec![b'x'; 3 << 20];
    let run = |script: &str| {
        let argv = ["sh".to_owned(), "-c".to_owned(), script.to_owned()];
        untrusted::run(
            &Spec {
                argv: &argv,
                cwd: dir.path(),
                env: &env,
                stdin: Some(&input),
                timeout: Duration::from_secs(30),
                grace: Duration::from_secs(1),
                keep: 1024,
                portable: false,
            },
            &AtomicBool::new(false),
            &mut || {},
        )
    };
    let r = run("wc -c");
    assert!(matches!(r.ended, Ended::Exited(s) if s.success()));
    assert_eq!(r.stdout.render().trim(), (3 << 20).to_string());
    let r = run("echo ignored");
    assert!(matches!(r.ended, Ended::Exited(s) if s.success()), "{r:?}");
    assert!(r.duration < Duration::from_secs(2), "{:?}", r.duration);
}

/// Nothing of the worker's environment reaches the program but the allowlist and the names
/// it is given; `HOME` and `TMPDIR` are the scratch directories, emptied afterwards.
#[test]
fn the_environment_is_the_allowlist_and_the_scratch_is_emptied() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path().join(".scratch");
    let mut cmd = sh(
        "env",
        "echo leftover > \"$HOME/.gitconfig\"; mkdir -p \"$TMPDIR/d\"; chmod 500 \"$TMPDIR/d\"; \
         env",
        Duration::from_secs(10),
    );
    cmd.inherit = vec!["CARGO_MANIFEST_DIR".into(), "HYPERION_NOT_SET".into()];
    let r = checks::run(
        &cmd,
        dir.path(),
        &scratch,
        OutputLimit::default(),
        &AtomicBool::new(false),
        &mut || {},
    );
    assert_eq!(r.status, CheckStatus::Passed, "{r:?}");
    let out = r.stdout.render();
    let names: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    // What sh adds itself: PWD, SHLVL, _ (and OLDPWD in some shells).
    let allowed = [
        "PATH",
        "LANG",
        "TZ",
        "HOME",
        "TMPDIR",
        "HYPERION_CHECK",
        "HYPERION_RUN",
        "HYPERION_LOG",
        "GIT_CEILING_DIRECTORIES",
        "CARGO_MANIFEST_DIR",
        "PWD",
        "OLDPWD",
        "SHLVL",
        "_",
    ];
    for n in &names {
        assert!(
            allowed.contains(n) || n.starts_with("LC_"),
            "{n} reached the check:\n{out}"
        );
    }
    assert!(names.contains(&"CARGO_MANIFEST_DIR"));
    assert!(out.contains(&format!("HOME={}", scratch.join("home").display())));
    assert!(out.contains(&format!("TMPDIR={}", scratch.join("tmp").display())));
    for d in ["home", "tmp"] {
        assert_eq!(
            std::fs::read_dir(scratch.join(d)).unwrap().count(),
            0,
            "{d} was emptied"
        );
    }
}

#[test]
fn names_passed_to_checks_are_plain_and_redirect_nothing() {
    use hyperion::queue::settings::check_env_name;
    assert!(check_env_name("CARGO_HOME").is_ok());
    assert!(check_env_name("_X1").is_ok());
    for bad in [
        "GIT_DIR",
        "GIT_CONFIG_PARAMETERS",
        "GIT_CONFIG_KEY_0",
        "HYPERION_RUN",
        "HYPERION_LOG",
        "A-B",
        "1X",
        "",
        "A=B",
    ] {
        assert!(check_env_name(bad).is_err(), "{bad}");
    }
}

/// `hyperion.checkEnv` naming a variable that would point git elsewhere is bad input: the
/// worker stops before doing anything, with the code and a hint, and changes nothing.
#[test]
fn a_check_env_setting_that_names_a_git_redirect_is_refused() {
    let repo = common::TestRepo::new();
    let before = repo.hyperion_refs();
    for bad in ["GIT_DIR", "PATH GIT_WORK_TREE", "NOT-A-NAME"] {
        repo.git(&["config", "hyperion.checkEnv", bad]);
        let (_, err) = repo.fails(&["worker", "--drain"], 2);
        assert!(err.starts_with("error: "), "{err}");
        assert!(err.contains("hyperion.checkEnv"), "{err}");
        assert!(err.contains("[config.invalid]"), "{err}");
        assert!(err.contains("hint: "), "{err}");
    }
    repo.git(&["config", "hyperion.checkEnv", "CARGO_HOME, RUSTUP_HOME"]);
    repo.ok(&["worker", "--drain"]);
    assert_eq!(repo.hyperion_refs(), before);
}

/// A check that puts a link in place of its scratch directory (or of `HOME`) does not make
/// hyperion empty what the link points at.
#[test]
fn a_scratch_directory_replaced_by_a_link_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let precious = dir.path().join("precious");
    for d in ["home", "tmp"] {
        std::fs::create_dir_all(precious.join(d)).unwrap();
        std::fs::write(precious.join(d).join("keep"), "keep\n").unwrap();
    }
    let scratch = dir.path().join("slot.scratch");
    for script in [
        format!(
            "r=$(dirname \"$HOME\") && rm -rf \"$r\" && ln -s '{}' \"$r\"",
            precious.display()
        ),
        format!(
            "rm -rf \"$HOME\" && ln -s '{}/home' \"$HOME\"",
            precious.display()
        ),
    ] {
        let r = checks::run(
            &sh("link", &script, Duration::from_secs(10)),
            dir.path(),
            &scratch,
            OutputLimit::default(),
            &AtomicBool::new(false),
            &mut || {},
        );
        assert_eq!(r.status, CheckStatus::Passed, "{r:?}");
        for d in ["home", "tmp"] {
            assert!(
                precious.join(d).join("keep").exists(),
                "{script}: {d} emptied"
            );
        }
        assert!(std::fs::symlink_metadata(&scratch).unwrap().is_dir());
        assert!(
            std::fs::symlink_metadata(scratch.join("home"))
                .unwrap()
                .is_dir()
        );
    }
}

/// The environment of a check passes on only the names `hyperion.checkEnv` may hold, however
/// the list was built (a library caller's `Settings`, not only git config): a git redirect and
/// one of hyperion's own variables set in the worker's environment and named in the list do
/// not reach the program. The test runs itself again with those variables set.
#[test]
fn a_redirecting_name_in_the_inherit_list_is_not_passed() {
    use hyperion::gate::untrusted::{Env, Scratch};
    const NAME: &str = "a_redirecting_name_in_the_inherit_list_is_not_passed";
    if std::env::var_os("HYPERION_TEST_PASSED_ON").is_none() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", &format!("checks::{NAME}"), "--nocapture"])
            .env("GIT_NAMESPACE", "elsewhere")
            .env("HYPERION_TEST_PASSED_ON", "x")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("1 passed"),
            "the test did not run again: {text}"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let scratch = Scratch::at(&dir.path().join(".scratch")).unwrap();
    let names = [
        "PATH".to_owned(),
        "GIT_NAMESPACE".to_owned(),
        "HYPERION_TEST_PASSED_ON".to_owned(),
    ];
    let env = Env::scrubbed(&scratch, &names);
    assert!(env.get("PATH").is_some());
    assert_eq!(env.get("GIT_NAMESPACE"), None, "a redirect passed");
    assert_eq!(
        env.get("HYPERION_TEST_PASSED_ON"),
        None,
        "one of hyperion's own passed"
    );
}
