#![allow(clippy::unwrap_used)]
//! `git hyperion top`, twice over.
//!
//! - Its state and rendering (src/tui/) as data: snapshots diffed into events, filters,
//!   selection, keys, and screens drawn into ratatui's `TestBackend`, pinned as insta
//!   snapshots (tests/snapshots/top_*.snap): the list with filters, the detail pane, the
//!   keys, 80×24 and tiny sizes, a dead letter in red (the cell's style, not only its text),
//!   hostile agent names shown escaped. The scene is a real repository drained by a real
//!   worker.
//! - The binary in a real terminal under tmux: a worker drains while `top` runs; keys are
//!   sent, the screen is read back after each, and the terminal is given back at the end.
//!   tmux must be installed (.ci/run installs it): without it this test fails.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::TestRepo;
use common::tmux::Tmux;
use hyperion::queue::Queue;
use hyperion::queue::store::Store;
use hyperion::request::model::{ChangeRequest, DeadClass, ErrorInfo, Record, Status};
use hyperion::tui::poll::{Msg, poll};
use hyperion::tui::state::{Action, Detail, State, What, diff, seed};
use hyperion::tui::ui;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::Color;

// ---------------------------------------------------------------------------------------
// The scene: a real repository, two agents, a worker's drain.

/// A check that writes terminal escapes (clear the screen, set the title, ring the bell) to
/// its stderr and fails: its output is stored as an artifact and shown in the detail pane.
const EVIL_CHECK: &str = "[checks.evil]\nrun = [\"sh\", \"-c\", \"printf '\\\\033[2J\\\\033]0;pwned\\\\007evil output\\\\n' >&2; exit 1\"]\n";

/// `alpha` adds two files (both land), `beta` adds one with the failing check (dead, class
/// check) and, after the drain, one more (pending).
fn scene() -> (TestRepo, [String; 4]) {
    let repo = TestRepo::new();
    repo.commit(
        &[(".hyperion/policy.toml", EVIL_CHECK)],
        "policy: the evil check",
    );
    repo.git(&["config", "hyperion.maxAttempts", "1"]);
    let add = |task: &str, agent: &str, path: &str, checks: &[&str]| {
        let path = path.to_owned();
        repo.propose(task, agent, checks, move |dir: &Path| {
            std::fs::create_dir_all(dir.join("src")).unwrap();
            std::fs::write(dir.join(&path), format!("{path}\n")).unwrap();
        })
    };
    let dead = add("T-1", "beta", "src/evil.txt", &["evil"]);
    let a1 = add("T-2", "alpha", "src/a.txt", &[]);
    let a2 = add("T-3", "alpha", "src/b.txt", &[]);
    repo.ok(&["worker", "--drain", "--id", "w1"]);
    let pending = add("T-4", "beta", "src/c.txt", &[]);
    (repo, [dead, a1, a2, pending])
}

fn queue(repo: &TestRepo) -> Queue {
    Queue::open(Store::discover(repo.path()).unwrap()).unwrap()
}

/// The records as the poller reads them.
fn records(q: &Queue) -> Vec<Record> {
    match poll(q) {
        Msg::Snapshot { records, .. } => records,
        other => panic!("the poll failed: {other:?}"),
    }
}

fn at(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

fn code(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

/// `state` drawn on a `w`×`h` screen.
fn render(state: &State, w: u16, h: u16) -> Buffer {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| ui::draw(f, state)).unwrap();
    t.backend().buffer().clone()
}

/// The screen as text, one line per row.
fn text(b: &Buffer) -> String {
    let mut out = String::new();
    for y in 0..b.area.height {
        let mut line = String::new();
        for x in 0..b.area.width {
            line.push_str(b[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// No cell of the screen holds a control character: nothing from a request reaches the
/// terminal as anything but text.
fn assert_no_control(b: &Buffer) {
    for y in 0..b.area.height {
        for x in 0..b.area.width {
            let s = b[(x, y)].symbol();
            assert!(
                !s.chars().any(char::is_control),
                "cell ({x}, {y}) holds {s:?}"
            );
        }
    }
}

/// Assert snapshot `name` of a screen, times and commits redacted (same widths, so the
/// columns stay as drawn).
fn snapshot(name: &str, screen: &str) {
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.add_filter(
        r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z",
        "YYYY-MM-DDThh:mm:ssZ",
    );
    settings.add_filter(r"\b\d{2}:\d{2}:\d{2}\b", "hh:mm:ss");
    settings.add_filter(
        r"\b[0-9a-f]{40}\b",
        "cccccccccccccccccccccccccccccccccccccccc",
    );
    settings.add_filter(r"landed as [0-9a-f]{12}", "landed as cccccccccccc");
    settings.add_filter(r"\(\d+ bytes\)", "(N bytes)");
    settings.bind(|| insta::assert_snapshot!(name, screen));
}

/// Where the text `needle` starts on the screen.
fn find(b: &Buffer, needle: &str) -> Option<(u16, u16)> {
    for y in 0..b.area.height {
        let mut line = String::new();
        let mut xs = Vec::new();
        for x in 0..b.area.width {
            let s = b[(x, y)].symbol();
            for _ in 0..s.len() {
                xs.push(x);
            }
            line.push_str(s);
        }
        if let Some(i) = line.find(needle) {
            return Some((xs[i], y));
        }
    }
    None
}

// ---------------------------------------------------------------------------------------
// Widget and state tests.

#[test]
fn the_list_the_stream_and_the_filters_at_80x24() {
    let (repo, [dead, a1, _a2, pending]) = scene();
    let q = queue(&repo);
    let mut s = State::new(Duration::from_secs(1));
    s.snapshot(records(&q), at("2026-12-01T10:00:00Z"));
    // Seeded with each request's last transition, oldest first.
    let whats: Vec<(&str, &What)> = s.events.iter().map(|e| (e.id.as_str(), &e.what)).collect();
    assert_eq!(whats.len(), 4, "{whats:?}");
    assert_eq!(whats[3], (pending.as_str(), &What::Enqueued));
    assert!(
        whats.iter().any(|(id, w)| *id == dead
            && matches!(
                w,
                What::Dead {
                    class: Some(DeadClass::Check),
                    ..
                }
            )),
        "{whats:?}"
    );
    let screen = render(&s, 80, 24);
    assert_no_control(&screen);
    snapshot("top_80x24", &text(&screen));

    // The dead letter's event is red, and bold.
    let (x, y) = find(&screen, "dead check").expect("the dead letter's event is shown");
    let cell = &screen[(x, y)];
    assert_eq!(cell.fg, Color::Red, "{cell:?}");
    assert!(cell.modifier.contains(ratatui::style::Modifier::BOLD));
    // A landing is not.
    let (x, y) = find(&screen, "landed as").expect("a landing is shown");
    assert_ne!(screen[(x, y)].fg, Color::Red);

    // Agent filter: `a` → alpha (agents sorted), again → beta, again → all.
    s.key(key('a'));
    assert_eq!(s.agent_filter.as_deref(), Some("alpha"));
    let t = text(&render(&s, 80, 24));
    snapshot("top_agent_alpha", &t);
    assert!(
        t.contains(&a1) && !t.contains(&dead) && !t.contains(&pending),
        "{t}"
    );
    s.key(key('a'));
    assert_eq!(s.agent_filter.as_deref(), Some("beta"));
    s.key(key('a'));
    assert_eq!(s.agent_filter, None);

    // Status filter: `s` cycles through the statuses in their order; `S` goes back.
    s.key(key('s'));
    assert_eq!(s.status_filter, Some(Status::AwaitingApproval));
    assert!(s.visible().is_empty());
    for _ in 0..3 {
        s.key(key('s'));
    }
    assert_eq!(s.status_filter, Some(Status::Applied));
    assert_eq!(s.visible().len(), 2);
    s.key(key('s'));
    assert_eq!(s.status_filter, Some(Status::Dead));
    let t = text(&render(&s, 80, 24));
    snapshot("top_status_dead", &t);
    assert_eq!(s.selected_id(), Some(dead.as_str()));
    s.key(key('c'));
    assert_eq!((s.status_filter, s.agent_filter.as_deref()), (None, None));

    // `/` filter: by task, case-insensitively; Esc while typing clears it.
    s.key(key('/'));
    for c in "t-4".chars() {
        s.key(key(c));
    }
    assert!(s.editing);
    snapshot("top_text_filter", &text(&render(&s, 80, 24)));
    s.key(code(KeyCode::Enter));
    assert!(!s.editing);
    assert_eq!(
        s.visible()
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>(),
        [pending.as_str()]
    );
    s.key(key('/'));
    s.key(code(KeyCode::Esc));
    assert_eq!(s.text_filter, "");
    assert_eq!(s.visible().len(), 4);
}

#[test]
fn the_detail_pane_shows_the_record_the_paths_the_error_and_the_artifacts() {
    let (repo, [dead, ..]) = scene();
    let q = queue(&repo);
    let mut s = State::new(Duration::from_secs(1));
    s.snapshot(records(&q), at("2026-12-01T10:00:00Z"));
    // The dead letter is the oldest: selected first.
    assert_eq!(s.selected_id(), Some(dead.as_str()));
    assert_eq!(
        s.key(code(KeyCode::Enter)),
        Some(Action::Inspect(dead.clone()))
    );
    assert!(matches!(s.detail, Some(Detail::Loading(_))));
    let found = hyperion::gate::inspect::inspect(&q, &dead)
        .map(Box::new)
        .map_err(|e| e.to_string());
    s.inspected(&dead, found);
    let screen = render(&s, 100, 40);
    assert_no_control(&screen);
    let t = text(&screen);
    snapshot("top_detail", &t);
    assert!(t.contains("src/evil.txt"), "{t}");
    // The check's escapes are shown as text.
    assert!(
        t.contains("\\u{1b}[2J\\u{1b}]0;pwned\\u{7}evil output"),
        "{t}"
    );
    let (x, y) = find(&screen, "check.failed").expect("the error is shown");
    assert_eq!(screen[(x, y)].fg, Color::Red);

    // Scrolling, then Esc closes the pane (and does not quit).
    s.key(key('j'));
    s.key(key('j'));
    assert_eq!(s.scroll, 2);
    assert_eq!(s.key(code(KeyCode::Esc)), None);
    assert!(s.detail.is_none());
    // An answer for a pane since closed is dropped.
    s.inspected(&dead, Err("late".to_owned()));
    assert!(s.detail.is_none());
    // At the top level Esc quits.
    assert_eq!(s.key(code(KeyCode::Esc)), Some(Action::Quit));
}

#[test]
fn the_keys_tiny_screens_and_refresh_steps() {
    let (repo, _) = scene();
    let q = queue(&repo);
    let mut s = State::new(Duration::from_millis(200));
    s.snapshot(records(&q), at("2026-12-01T10:00:00Z"));
    assert_eq!(s.key(key('?')), None);
    assert!(s.help);
    let help = text(&render(&s, 80, 24));
    snapshot("top_help", &help);
    // Any key closes the keys; `q` quits from there too.
    s.key(key('x'));
    assert!(!s.help);
    s.key(key('?'));
    assert_eq!(s.key(key('q')), Some(Action::Quit));
    s.help = false;

    // `+` polls less often, `-` more, along the ladder, shown in the status bar.
    assert_eq!(
        s.key(key('+')),
        Some(Action::Refresh(Duration::from_millis(500)))
    );
    assert!(text(&render(&s, 80, 24)).contains("refresh 500ms"));
    s.key(key('-'));
    s.key(key('-'));
    assert_eq!(
        s.key(key('-')),
        Some(Action::Refresh(Duration::from_millis(100)))
    );
    assert_eq!(s.refresh, Duration::from_millis(100));
    assert_eq!(
        s.key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        Some(Action::Quit)
    );

    // Every size down to nothing draws, with each pane open.
    snapshot("top_20x5", &text(&render(&s, 20, 5)));
    for (w, h) in [
        (0, 0),
        (1, 1),
        (20, 5),
        (5, 20),
        (40, 3),
        (80, 2),
        (300, 100),
    ] {
        s.help = false;
        s.detail = None;
        render(&s, w, h);
        s.help = true;
        render(&s, w, h);
        s.help = false;
        s.detail = Some(Detail::Loading("0123456789abcdef".to_owned()));
        render(&s, w, h);
    }
}

/// A request as `enqueue` would store it, at `t`, with `agent`.
fn record(i: usize, agent: &str, t: &str) -> Record {
    let mut v = common::request(i, "s");
    v["agent"] = agent.into();
    let req: ChangeRequest = serde_json::from_value(v).unwrap();
    Record::new(&req, at(t))
}

#[test]
fn snapshots_diff_into_events() {
    let t0 = "2026-12-01T10:00:00Z";
    let a = record(1, "alpha", t0);
    let b = record(2, "beta", t0);
    let old = vec![a.clone(), b.clone()];
    let mut leased = a.clone();
    leased.status = Status::Leased;
    leased.attempts = 1;
    leased.lease_owner = Some("w1".into());
    leased.updated_at = at("2026-12-01T10:00:05Z");
    let mut dead = b.clone();
    dead.status = Status::Dead;
    dead.attempts = 1;
    dead.dead_class = Some(DeadClass::Apply);
    dead.error = Some(ErrorInfo {
        code: "apply.conflict".into(),
        message: "does not apply".into(),
    });
    dead.updated_at = at("2026-12-01T10:00:03Z");
    let mut c = record(3, "gamma", "2026-12-01T10:00:04Z");
    c.status = Status::Applied;
    c.attempts = 1;
    c.landed_commit = Some("c".repeat(40));
    c.updated_at = at("2026-12-01T10:00:06Z");
    let new = vec![leased.clone(), dead.clone(), c.clone()];
    let events = diff(&old, &new, at("2026-12-01T10:00:10Z"));
    let got: Vec<(String, String)> = events
        .iter()
        .map(|e| (e.id.clone(), e.describe()))
        .collect();
    assert_eq!(
        got,
        [
            (
                dead.id.clone(),
                "dead apply [apply.conflict]: does not apply".into()
            ),
            (c.id.clone(), "enqueued".into()),
            (leased.id.clone(), "leased by w1".into()),
            (c.id.clone(), "landed as cccccccccccc".into()),
        ]
    );
    assert!(events[0].is_error() && !events[1].is_error());

    // A heartbeat (a later update, same status, owner and attempts) is no event; a lease
    // taken again is; a requeue and a request gone are.
    let mut beat = leased.clone();
    beat.updated_at = at("2026-12-01T10:00:20Z");
    beat.leased_until = Some(at("2026-12-01T10:05:20Z"));
    assert!(
        diff(
            &new,
            &[beat.clone(), dead.clone(), c.clone()],
            at("2026-12-01T10:00:21Z")
        )
        .is_empty()
    );
    let mut retaken = beat.clone();
    retaken.lease_owner = Some("w2".into());
    retaken.attempts = 2;
    let mut requeued = dead.clone();
    requeued.status = Status::Pending;
    requeued.dead_class = None;
    let events = diff(&new, &[retaken, requeued], at("2026-12-01T10:00:30Z"));
    let got: Vec<String> = events.iter().map(|e| e.describe()).collect();
    assert_eq!(
        got,
        [
            "requeued",
            "leased by w2 (attempt 2)",
            "gone from the queue"
        ]
    );

    // The seed: the most recent transitions, oldest first, at most n.
    let seeded = seed(&new, 2);
    let ids: Vec<&str> = seeded.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, [leased.id.as_str(), c.id.as_str()]);
}

#[test]
fn a_hostile_agent_name_is_shown_escaped() {
    // The schema refuses C0 controls in `agent`, but a record can come from elsewhere (a
    // pushed chain, an older version): the screen must not care.
    let t0 = "2026-12-01T10:00:00Z";
    let mut evil = record(1, "evil\x1b[2J\x1b]0;pwned\x07agent", t0);
    evil.title = "title\r\n\x1b[31mred".into();
    evil.status = Status::Dead;
    evil.dead_class = Some(DeadClass::Check);
    evil.error = Some(ErrorInfo {
        code: "check\x1b[5m.failed".into(),
        message: "\x1b]8;;http://x\x07link\u{9b}2J".into(),
    });
    let mut s = State::new(Duration::from_secs(1));
    s.snapshot(vec![evil], at(t0));
    s.key(key('a'));
    let screen = render(&s, 200, 24);
    assert_no_control(&screen);
    let t = text(&screen);
    assert!(
        t.contains("evil\\u{1b}[2J\\u{1b}]0;pwned\\u{7}agent"),
        "{t}"
    );
    assert!(t.contains("title\\r\\n\\u{1b}[31mred"), "{t}");
    assert!(t.contains("[check\\u{1b}[5m.failed]"), "{t}");
    assert!(t.contains("\\u{9b}2J"), "{t}");
}

/// A real request whose agent holds C1 controls (which the schema lets through: the 8-bit
/// CSI `\u{9b}` and DEL) is shown escaped by `top`, `list` and `show`.
#[test]
fn c1_controls_in_a_real_request_are_escaped() {
    let repo = TestRepo::new();
    let mut v = common::request(1, "c1");
    v["agent"] = "agent\u{9b}2J\u{7f}".into();
    v["title"] = "title\u{9b}31m".into();
    let p = repo.write("r.json", &v);
    let id = repo.enqueue(&p).remove(0);
    let q = queue(&repo);
    let mut s = State::new(Duration::from_secs(1));
    s.snapshot(records(&q), at("2026-12-01T10:00:00Z"));
    let screen = render(&s, 100, 24);
    assert_no_control(&screen);
    let t = text(&screen);
    assert!(t.contains("agent\\u{9b}2J\\u{7f}"), "{t}");
    let list = repo.ok(&["list"]);
    assert!(
        !list.chars().any(|c| c.is_control() && c != '\n'),
        "{list:?}"
    );
    assert!(list.contains("title\\u{9b}31m"), "{list}");
    let show = repo.ok(&["show", &id]);
    assert!(
        !show.chars().any(|c| c.is_control() && c != '\n'),
        "{show:?}"
    );
    assert!(show.contains("agent\\u{9b}2J\\u{7f}"), "{show}");
}

// ---------------------------------------------------------------------------------------
// The binary.

#[test]
fn without_a_terminal_top_refuses_and_points_at_list_json() {
    let repo = TestRepo::new();
    let (out, err) = repo.fails(&["top"], 2);
    assert_eq!(out, "");
    assert!(err.starts_with("error: top is interactive"), "{err}");
    assert!(
        err.contains("hint: ") && err.contains("list --format json"),
        "{err}"
    );
    let (out, _) = repo.fails(&["top", "--format", "json"], 2);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["error"]["code"], "usage", "{v}");
}

#[test]
fn top_in_a_real_terminal_follows_a_worker_filters_opens_a_request_and_quits() {
    let repo = TestRepo::new();
    repo.commit(
        &[(".hyperion/policy.toml", EVIL_CHECK)],
        "policy: the evil check",
    );
    repo.git(&["config", "hyperion.maxAttempts", "1"]);
    let add = |task: &str, agent: &str, path: &str, checks: &[&str]| {
        let path = path.to_owned();
        repo.propose(task, agent, checks, move |dir: &Path| {
            std::fs::create_dir_all(dir.join("src")).unwrap();
            std::fs::write(dir.join(&path), format!("{path}\n")).unwrap();
        })
    };
    let dead = add("T-1", "beta", "src/evil.txt", &["evil"]);
    let mut alpha = Vec::new();
    for i in 0..6 {
        alpha.push(add(
            &format!("A-{i}"),
            "alpha",
            &format!("src/a{i}.txt"),
            &[],
        ));
    }
    let beta_ok = add("T-2", "beta", "src/b.txt", &[]);

    let tmux = Tmux::new("hyperion-top", "top", repo.path(), repo.home.path());
    let script = format!(
        "'{}' top --refresh 200ms; echo \"top exited $?\"; \
         printf 'tty:'; stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e -icanon -e echo -e -echo | tr '\\n' ' '; echo; echo done; \
         exec sleep 600",
        common::bin()
    );
    tmux.start(100, 30, &script);
    // Before the worker: everything pending, the stream seeded with the enqueues. Each wait
    // below asks for everything the frame must show at once: a capture can fall between two
    // parts of one frame's drawing.
    tmux.wait_for("the queue", |s| {
        s.contains("pending 8") && s.contains("refresh 200ms")
    });
    assert_eq!(tmux.display("#{alternate_on}"), "1");

    // A real worker drains while top watches: the stream shows the leases, the landings and
    // the dead letter as they happen.
    let worker = repo
        .cmd()
        .args(["worker", "--drain", "--id", "w1"])
        .output()
        .unwrap();
    assert!(worker.status.success(), "{worker:?}");
    // The check's escapes did not clear the screen nor set the title.
    tmux.wait_for("the drain", |s| {
        s.contains("applied 7")
            && s.contains("dead 1")
            && s.contains("landed as")
            && s.contains("dead check [check.failed]")
            && s.contains("hyperion top")
    });
    assert!(!tmux.display("#{pane_title}").contains("pwned"));

    // `a`: alpha only.
    tmux.keys(&["a"]);
    tmux.wait_for("the agent filter: alpha's six requests, no other", |s| {
        s.contains("agent:alpha")
            && s.contains("requests 6/8")
            && alpha.iter().all(|id| s.contains(id.as_str()))
            && !s.contains(&dead)
            && !s.contains(&beta_ok)
    });
    // `a` again: beta; the dead letter is first, Enter opens it.
    tmux.keys(&["a"]);
    tmux.wait_for("beta", |s| {
        s.contains("agent:beta") && s.contains("requests 2/8")
    });
    tmux.keys(&["Enter"]);
    // The check's output is shown with its escapes spelled out, not obeyed.
    tmux.wait_for("the detail pane of the dead letter", |s| {
        s.contains("artifacts (")
            && s.contains(&format!("request {dead}"))
            && s.contains("src/evil.txt")
            && s.contains("check.failed")
            && s.contains("\\u{1b}[2J\\u{1b}]0;pwned\\u{7}evil output")
    });

    // `+`: the refresh rate steps up, live.
    tmux.keys(&["+"]);
    tmux.wait_for("the new rate", |s| s.contains("refresh 500ms"));
    // Esc closes the pane; `?` shows the keys.
    tmux.keys(&["Escape"]);
    tmux.wait_for("the list again", |s| s.contains("requests 2/8"));
    tmux.keys(&["?"]);
    tmux.wait_for("the keys", |s| {
        s.contains("keys (any key closes)") && s.contains("next / previous agent filter")
    });

    // `q` quits and gives the terminal back: the alternate screen left, cooked mode and echo
    // on, the cursor shown.
    tmux.keys(&["q"]);
    let s = tmux.wait_for("top's exit", |s| s.lines().any(|l| l == "done"));
    assert!(s.contains("top exited 0"), "{s}");
    assert!(s.contains("tty:icanon echo"), "{s}");
    assert_eq!(tmux.display("#{alternate_on}"), "0");
    assert_eq!(tmux.display("#{cursor_flag}"), "1");
    assert!(
        !s.contains("hyperion top"),
        "the alternate screen was left:\n{s}"
    );
}

/// The terminal hanging up (tmux killed, an ssh connection gone) ends `top`: the kernel
/// signals only the session's leader, and crossterm's read spins on a hung-up terminal, so
/// `top` must notice by itself rather than spin forever.
#[test]
fn top_ends_when_its_terminal_hangs_up() {
    let repo = TestRepo::new();
    let tmux = Tmux::new("hyperion-top-hup", "top", repo.path(), repo.home.path());
    let script = format!("'{}' top --refresh 300ms", common::bin());
    tmux.start(80, 24, &script);
    tmux.wait_for("top", |s| s.contains("requests 0/0"));
    let out = Command::new("pgrep")
        .args(["-f", &format!("{} top --refresh 300ms", common::bin())])
        .output()
        .unwrap();
    let pids: Vec<u32> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert!(!pids.is_empty(), "top's process was not found");
    tmux.cmd().arg("kill-server").output().unwrap();
    for pid in pids {
        assert!(
            common::gone(pid, Duration::from_secs(10)),
            "top ({pid}) still runs after its terminal hung up"
        );
    }
}

/// A panic in `top` gives the terminal back before the panic is reported (ratatui's panic
/// hook, installed by `ratatui::try_init`): the alternate screen left, the cursor shown, raw
/// mode off. The panic is made at a test hook after the first draw.
#[test]
fn a_panic_in_top_gives_the_terminal_back() {
    let repo = TestRepo::new();
    let tmux = Tmux::new("hyperion-top-panic", "top", repo.path(), repo.home.path());
    let script = format!(
        "HYPERION_TEST_PANIC_AT=top.drawn '{}' top; echo \"top exited $?\"; \
         printf 'tty:'; stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e -icanon -e echo -e -echo | tr '\\n' ' '; echo; echo done; \
         exec sleep 600",
        common::bin()
    );
    tmux.start(100, 30, &script);
    let s = tmux.wait_for("top's panic", |s| s.lines().any(|l| l == "done"));
    assert!(s.contains("top exited 101"), "{s}");
    assert!(s.contains("panicking at top.drawn"), "{s}");
    assert!(s.contains("tty:icanon echo"), "{s}");
    assert_eq!(tmux.display("#{alternate_on}"), "0");
    assert_eq!(tmux.display("#{cursor_flag}"), "1");
}

/// In remote mode `top` fetches the queue from the remote every `--fetch-every`: a request
/// another machine enqueues (and publishes) shows up without anyone running `fetch` here, and
/// the status line says when the remote was fetched. `--fetch-every` without a remote is a
/// usage error; `0s` does not fetch.
#[test]
fn top_in_remote_mode_shows_what_another_machine_enqueued() {
    let server = TestRepo::bare();
    let a = TestRepo::new();
    a.publish_main_to(&server);
    a.ok(&["init", "--remote", "origin"]);
    let b = TestRepo::clone_of(server.path(), None);

    // Without a remote yet: the flag is refused before the screen is taken.
    let (_, err) = b.fails(&["top", "--fetch-every", "2s"], 2);
    assert!(err.contains("--fetch-every needs remote mode"), "{err}");
    assert!(err.contains("hint: "), "{err}");
    b.ok(&["init", "--remote", "origin"]);
    let (_, err) = b.fails(&["top", "--fetch-every", "2h"], 2);
    assert!(err.contains("--fetch-every 2h is out of range"), "{err}");
    assert!(err.contains("hint: "), "{err}");

    let tmux = Tmux::new("hyperion-top-remote", "top", b.path(), b.home.path());
    let script = format!(
        "'{}' top --refresh 200ms --fetch-every 1s; exec sleep 600",
        common::bin()
    );
    tmux.start(100, 30, &script);
    tmux.wait_for("top, fetched once", |s| {
        s.contains("requests 0/0") && s.contains("origin ")
    });

    let f = a.write("r.json", &common::request(1, "remote-top"));
    let id = a.enqueue(&f).remove(0);
    tmux.wait_for("the other machine's request", |s| {
        s.contains("requests 1/1") && s.contains(&id) && s.contains("pending 1")
    });
    tmux.keys(&["q"]);
}
