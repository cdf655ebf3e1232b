#![allow(clippy::unwrap_used)]
//! The check runner with real processes: pass, fail, timeout (the whole process group is gone
//! afterwards), cancellation, huge output (bounded), spawn failures, environment.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use hyperion::checks::{self, CheckCommand, CheckStatus, OutputLimit};

fn sh(name: &str, script: &str, timeout: Duration) -> CheckCommand {
    CheckCommand {
        name: name.into(),
        argv: vec!["sh".into(), "-c".into(), script.into()],
        env: BTreeMap::new(),
        timeout,
    }
}

fn run(cmd: &CheckCommand) -> checks::CheckResult {
    let dir = tempfile::tempdir().unwrap();
    checks::run(
        cmd,
        dir.path(),
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
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{grandchild}/stat"));
        match stat {
            Err(_) => break,
            Ok(s) if s.contains(") Z ") => break,
            Ok(s) => assert!(Instant::now() < deadline, "grandchild still alive: {s}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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
    };
    let r = checks::run(
        &cmd,
        dir.path(),
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
