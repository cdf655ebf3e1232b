//! The agent harness and `run`: every provider against a fake CLI that speaks its documented
//! headless interface (tests/fake-agents/fake_agent.py; no network, no keys), and `run --plan`
//! end to end through the gate.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use common::TestRepo;
use hyperion::agents::harness::{self, AgentConfig, AgentRun, Job, Settings, Shared};
use hyperion::agents::model::Budget;
use hyperion::agents::provider::{self, Class, Event};
use hyperion::agents::redact::Redactor;
use serde_json::{Value, json};

const PROVIDERS: &[&str] = &["claude", "codex", "gemini", "aider", "opencode", "command"];

fn fake() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-agents/fake_agent.py")
}

/// Built at run time, so that no secret scanner finds it in this file.
fn leak() -> String {
    format!("AKIA{}", "Z7Q3R5T1V9X2B4D6")
}

struct Run {
    run: AgentRun,
    took: Duration,
    /// What the fake CLI recorded of its calls.
    calls: Vec<Value>,
    work: PathBuf,
    _dir: tempfile::TempDir,
}

fn settings() -> Settings {
    Settings {
        watchdog: Duration::from_secs(3),
        backoff: Duration::from_millis(100),
        attempts: 3,
        wall_time: Duration::from_secs(60),
    }
}

/// Run `provider`'s fake CLI once through the harness, in a fresh directory.
fn agent(provider: &str, prompt: &str, budget: Budget, patterns: &[String]) -> Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).expect("mkdir");
    let cancel = AtomicBool::new(false);
    let shared = Shared {
        settings: settings(),
        limiter: Default::default(),
        redactor: Redactor::new(patterns, &[]).expect("patterns"),
        budget: Budget::default(),
        spent: Default::default(),
        cancel: &cancel,
    };
    let p = provider::by_name(provider).expect("known provider");
    let config = AgentConfig {
        command: vec![
            "python3".into(),
            fake().to_string_lossy().into_owned(),
            provider.into(),
        ],
        ..AgentConfig::default()
    };
    let job = Job {
        provider: p.as_ref(),
        config: &config,
        prompt,
        cwd: &work,
        dir: dir.path().join("job"),
        budget: &budget,
    };
    let started = Instant::now();
    let run = harness::run(&shared, &job);
    let took = started.elapsed();
    let calls = std::fs::read_to_string(dir.path().join("fake-log/calls.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("fake logs JSON"))
        .collect();
    Run {
        run,
        took,
        calls,
        work,
        _dir: dir,
    }
}

fn class(r: &Run) -> Option<Class> {
    r.run.failure.as_ref().map(|f| f.0)
}

fn jsonl(r: &Run) -> String {
    String::from_utf8(r.run.jsonl()).expect("utf-8")
}

#[test]
fn every_provider_succeeds_with_an_edit_and_reports_what_it_spent() {
    for p in PROVIDERS {
        let r = agent(
            p,
            "Do it. SCENARIO=success EDIT=notes.txt",
            Budget::default(),
            &[],
        );
        assert_eq!(r.run.failure, None, "{p}: {}", jsonl(&r));
        let edited = std::fs::read_to_string(r.work.join("notes.txt")).expect("edited");
        assert_eq!(edited, format!("made by {p}\n"));
        assert_eq!(r.run.totals.attempts, 1, "{p}");
        assert_eq!(r.run.totals.outcome, "done");
        assert!(r.run.totals.tokens() >= 150, "{p}: {:?}", r.run.totals);
        if matches!(*p, "claude" | "aider" | "opencode" | "command") {
            assert!(
                r.run.totals.usd.is_some_and(|u| u > 0.0),
                "{p}: {:?}",
                r.run.totals
            );
        }
        // Stdin is closed: the CLI read nothing and did not wait.
        assert_eq!(r.calls.len(), 1, "{p}");
        assert_eq!(r.calls[0]["stdin"], "", "{p}");
        // Every line is a stamped event; the last one the totals.
        let text = jsonl(&r);
        let last: Value = serde_json::from_str(text.lines().last().expect("lines")).expect("json");
        assert_eq!(last["type"], "totals", "{p}");
        assert!(
            text.lines()
                .all(|l| serde_json::from_str::<Value>(l).unwrap()["at"].is_string())
        );
        assert!(text.contains("\"type\":\"message\""), "{p}: {text}");
    }
}

#[test]
fn the_environment_is_scrubbed_to_what_the_provider_needs() {
    let r = agent("claude", "SCENARIO=success", Budget::default(), &[]);
    let env: Vec<&str> = r.calls[0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    // cargo sets these for the test process; the agent does not get them.
    assert!(!env.iter().any(|v| v.starts_with("CARGO")), "{env:?}");
    assert!(env.contains(&"HYPERION_PROMPT_FILE"), "{env:?}");
    assert!(!env.contains(&"CARGO_MANIFEST_DIR"), "{env:?}");
}

#[test]
fn max_turns_is_a_permanent_failure_not_retried() {
    for p in PROVIDERS {
        let r = agent(p, "SCENARIO=max_turns", Budget::default(), &[]);
        assert_eq!(class(&r), Some(Class::MaxTurns), "{p}: {}", jsonl(&r));
        assert_eq!(r.run.totals.attempts, 1, "{p}");
        assert_eq!(r.calls.len(), 1, "{p}");
    }
}

#[test]
fn a_budget_exceeded_mid_run_kills_the_agent_and_says_why() {
    for p in PROVIDERS {
        // Each stops at what its CLI reports while it runs: tokens, dollars, or (Gemini
        // reports usage only at the end) wall time.
        let (budget, scenario) = match *p {
            "gemini" => (
                Budget {
                    wall_time: Some("1s".into()),
                    ..Budget::default()
                },
                "slow",
            ),
            "aider" => (
                Budget {
                    usd: Some(0.35),
                    ..Budget::default()
                },
                "budget",
            ),
            _ => (
                Budget {
                    tokens: Some(400),
                    ..Budget::default()
                },
                "budget",
            ),
        };
        let r = agent(p, &format!("SCENARIO={scenario}"), budget, &[]);
        assert_eq!(class(&r), Some(Class::Budget), "{p}: {}", jsonl(&r));
        // The fake would run 10 s or more; it was stopped long before.
        assert!(r.took < Duration::from_secs(6), "{p}: {:?}", r.took);
        assert_eq!(r.run.totals.attempts, 1, "{p}");
        let reason = &r.run.failure.as_ref().unwrap().1;
        assert!(
            reason.contains("budget") || reason.contains("wall time"),
            "{p}: {reason}"
        );
        assert!(jsonl(&r).contains("\"type\":\"end\""), "{p}");
    }
}

#[test]
fn a_rate_limit_is_retried_after_a_backoff_then_succeeds() {
    for p in PROVIDERS {
        let r = agent(p, "SCENARIO=ratelimit EDIT=f.txt", Budget::default(), &[]);
        assert_eq!(r.run.failure, None, "{p}: {}", jsonl(&r));
        assert_eq!(r.run.totals.attempts, 2, "{p}");
        assert_eq!(r.calls.len(), 2, "{p}");
        let retries: Vec<u64> = r
            .run
            .transcript
            .iter()
            .filter_map(|s| match s.event {
                Event::Retry { after_ms } => Some(after_ms),
                _ => None,
            })
            .collect();
        // Backoff base 100 ms, jittered to 50–100 %.
        assert_eq!(retries.len(), 1, "{p}");
        assert!((50..=100).contains(&retries[0]), "{p}: {retries:?}");
        assert!(r.took >= Duration::from_millis(50), "{p}");
        assert!(std::fs::read_to_string(r.work.join("f.txt")).is_ok(), "{p}");
    }
}

#[test]
fn a_silent_agent_is_killed_by_the_watchdog() {
    // Each provider's agent is silent for the whole watchdog (3 s): all of them at once.
    let runs: Vec<_> = std::thread::scope(|s| {
        let runs: Vec<_> = PROVIDERS
            .iter()
            .map(|p| s.spawn(move || agent(p, "SCENARIO=hang", Budget::default(), &[])))
            .collect();
        runs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (p, r) in PROVIDERS.iter().zip(runs) {
        assert_eq!(class(&r), Some(Class::Watchdog), "{p}: {}", jsonl(&r));
        assert!(r.took < Duration::from_secs(12), "{p}: {:?}", r.took);
        assert_eq!(r.run.totals.attempts, 1, "{p}");
    }
}

#[test]
fn a_crash_fails_without_retry_and_keeps_its_stderr() {
    for p in PROVIDERS {
        let r = agent(p, "SCENARIO=crash", Budget::default(), &[]);
        assert_eq!(class(&r), Some(Class::Crash), "{p}: {}", jsonl(&r));
        assert_eq!(r.calls.len(), 1, "{p}");
        assert!(jsonl(&r).contains("something broke"), "{p}");
    }
}

#[test]
fn a_secret_in_the_prompt_never_reaches_the_cli() {
    for p in PROVIDERS {
        let prompt = format!(
            "Use key {} and ticket hush-4711. SCENARIO=success EDIT=x.txt",
            leak()
        );
        let r = agent(p, &prompt, Budget::default(), &["hush-[0-9]+".into()]);
        assert_eq!(r.run.failure, None, "{p}");
        let call = r.calls[0].to_string();
        assert!(!call.contains(&leak()), "{p}: {call}");
        assert!(!call.contains("hush-4711"), "{p}: {call}");
        assert!(call.contains("[redacted"), "{p}: {call}");
        // The prompt file too.
        let t = jsonl(&r);
        assert!(t.contains("\"type\":\"redacted\",\"count\":2"), "{p}: {t}");
    }
}

#[test]
fn a_secret_in_the_agents_output_is_redacted_in_the_transcript() {
    for p in PROVIDERS {
        let r = agent(p, "SCENARIO=leak EDIT=x.txt", Budget::default(), &[]);
        assert_eq!(r.run.failure, None, "{p}: {}", jsonl(&r));
        let t = jsonl(&r);
        assert!(!t.contains(&leak()), "{p}: {t}");
        assert!(t.contains("[redacted"), "{p}: {t}");
    }
}

// ---- run --plan, end to end -------------------------------------------------------------

fn assignment(n: usize, agent: &str, deps: &[usize], instructions: &str) -> Value {
    json!({
        "id": format!("T-7/{n}"),
        "title": format!("part {n}"),
        "kind": "feature",
        "files": [format!("parts/p{n}.txt")],
        "instructions": instructions,
        "tokens": 100,
        "domain": "parts",
        "priority": 5,
        "depends_on": deps.iter().map(|d| format!("T-7/{d}")).collect::<Vec<_>>(),
        "agents": [agent],
    })
}

fn plan(repo: &TestRepo, assignments: Vec<Value>) -> PathBuf {
    let base = repo.git(&["rev-parse", "main"]).trim().to_owned();
    repo.write(
        "PLAN.json",
        &json!({
            "schema": "hyperion.plan/v1",
            "task_id": "T-7",
            "title": "six parts",
            "kind": "feature",
            "target": "main",
            "base": base,
            "created_at": "2026-01-01T00:00:00Z",
            "max_tokens": 8000,
            "tokenizer": "o200k_base",
            "assignments": assignments,
        }),
    )
}

fn configure_fakes(repo: &TestRepo) {
    let fake = fake();
    for p in PROVIDERS {
        repo.git(&[
            "config",
            &format!("hyperion.agent.{p}.command"),
            &format!("python3 {} {p}", fake.display()),
        ]);
    }
    // Generous: on a loaded machine a fake CLI may take seconds to start.
    repo.git(&["config", "hyperion.agent.watchdog", "60s"]);
    repo.git(&["config", "hyperion.agent.backoff", "100ms"]);
}

fn six_assignments() -> Vec<Value> {
    // 1 and 2 first; 3 builds on 1 (edits the file 1 adds); 4 on 1 and 2; 5 on 3; 6 on 4, 5.
    vec![
        assignment(
            1,
            "claude",
            &[],
            "Add part 1. SCENARIO=success EDIT=parts/p1.txt",
        ),
        assignment(
            2,
            "codex",
            &[],
            "Add part 2. SCENARIO=ratelimit EDIT=parts/p2.txt",
        ),
        assignment(
            3,
            "gemini",
            &[1],
            "Extend part 1. SCENARIO=success EDIT=parts/p1.txt",
        ),
        assignment(
            4,
            "aider",
            &[1, 2],
            "Add part 4. SCENARIO=success EDIT=parts/p4.txt",
        ),
        assignment(
            5,
            "opencode",
            &[3],
            "Add part 5. SCENARIO=leak EDIT=parts/p5.txt",
        ),
        assignment(
            6,
            "command",
            &[4, 5],
            "Extend part 4. SCENARIO=success EDIT=parts/p4.txt",
        ),
    ]
}

#[test]
fn run_with_three_parallel_agents_enqueues_in_dependency_order_and_lands_everything() {
    let repo = TestRepo::new();
    configure_fakes(&repo);
    let plan = plan(&repo, six_assignments());
    let plan = plan.to_string_lossy().into_owned();
    let report = repo.json(&["run", "--plan", &plan, "--parallel", "3", "--drain"]);
    let assignments = report["assignments"].as_array().unwrap();
    assert_eq!(assignments.len(), 6, "{report:#}");
    let mut request_of = std::collections::HashMap::new();
    for a in assignments {
        assert_eq!(a["status"], "enqueued", "{report:#}");
        request_of.insert(
            a["assignment"].as_str().unwrap().to_owned(),
            a["request"].as_str().unwrap().to_owned(),
        );
    }
    // Totals: the run's and each agent's.
    assert!(
        report["totals"]["usd"].as_f64().unwrap() > 0.0,
        "{report:#}"
    );
    assert!(
        report["totals"]["input_tokens"].as_u64().unwrap() > 0,
        "{report:#}"
    );
    assert_eq!(
        report["totals"]["attempts"], 7,
        "one rate limit retried: {report:#}"
    );

    // Every request landed, each after those it depends on.
    let list = repo.json(&["list"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 6);
    for r in list {
        assert_eq!(r["status"], "applied", "{r:#}");
    }
    let record = |a: &str| -> Value {
        let d = repo.json(&["show", &request_of[a]]);
        d["record"].clone()
    };
    for (a, deps) in [
        ("T-7/3", vec!["T-7/1"]),
        ("T-7/4", vec!["T-7/1", "T-7/2"]),
        ("T-7/5", vec!["T-7/3"]),
        ("T-7/6", vec!["T-7/4", "T-7/5"]),
    ] {
        let r = record(a);
        let depends: Vec<&str> = r["depends_on"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for d in deps {
            assert!(
                depends.contains(&request_of[d].as_str()),
                "{a} depends on {d}: {r:#}"
            );
            let dr = record(d);
            assert!(dr["created_at"].as_str() <= r["created_at"].as_str());
        }
    }
    // The target holds every agent's work, stacked as the plan says.
    let p1 = repo.git(&["show", "main:parts/p1.txt"]);
    assert_eq!(p1, "made by claude\nmade by gemini\n");
    let p4 = repo.git(&["show", "main:parts/p4.txt"]);
    assert_eq!(p4, "made by aider\nmade by command\n");
    // The CLIs' own files stayed out.
    let tree = repo.git(&["ls-tree", "-r", "--name-only", "main"]);
    assert!(
        !tree.contains(".aider") && !tree.contains(".claude"),
        "{tree}"
    );

    // Transcripts: stored in the chain, redacted, with totals.
    for (a, id) in &request_of {
        let t = repo.json(&["transcript", id]);
        let t = t.as_array().unwrap();
        assert_eq!(t.last().unwrap()["type"], "totals", "{a}");
        assert!(t.iter().any(|e| e["type"] == "start"), "{a}");
    }
    // `report`'s cost per agent is what the transcripts of its requests say they spent.
    let mut spent = std::collections::BTreeMap::<String, (u64, u64)>::new();
    for r in list {
        let t = repo.json(&["transcript", r["id"].as_str().unwrap()]);
        let totals = t.as_array().unwrap().last().unwrap().clone();
        let e = spent
            .entry(r["agent"].as_str().unwrap().to_owned())
            .or_default();
        e.0 += totals["input_tokens"].as_u64().unwrap();
        e.1 += totals["output_tokens"].as_u64().unwrap();
    }
    assert!(spent.values().any(|(i, _)| *i > 0), "{spent:?}");
    let costs: std::collections::BTreeMap<String, (u64, u64)> = repo.json(&["report"])["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["agent"].as_str().unwrap().to_owned(),
                (
                    a["input_tokens"].as_u64().unwrap(),
                    a["output_tokens"].as_u64().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(costs, spent);
    let t5 = repo.ok(&["transcript", &request_of["T-7/5"]]);
    assert!(t5.contains("[redacted") && !t5.contains(&leak()), "{t5}");
    let raw = repo.git(&[
        "show",
        &format!(
            "refs/hyperion/requests/{}:artifacts/transcript.jsonl",
            request_of["T-7/5"]
        ),
    ]);
    assert!(!raw.contains(&leak()));
    let shown = repo.ok(&["show", &request_of["T-7/1"]]);
    assert!(
        shown.contains("agent ") && shown.contains("tokens"),
        "{shown}"
    );
    // Chains with transcripts are chains doctor accepts.
    repo.ok(&["doctor"]);
    // No worktree left behind.
    let worktrees = repo.git(&["worktree", "list"]);
    assert_eq!(worktrees.lines().count(), 1, "{worktrees}");

    // Again: nothing is run, nothing duplicated.
    let again = repo.json(&["run", "--plan", &plan, "--parallel", "3"]);
    for a in again["assignments"].as_array().unwrap() {
        assert_eq!(a["status"], "existing", "{again:#}");
        assert_eq!(
            a["request"].as_str().unwrap(),
            request_of[a["assignment"].as_str().unwrap()]
        );
    }
    assert_eq!(repo.json(&["list"]).as_array().unwrap().len(), 6);
}

#[test]
fn a_failed_assignment_blocks_its_dependents_and_a_second_run_retries_only_what_failed() {
    let repo = TestRepo::new();
    configure_fakes(&repo);
    let plan = plan(
        &repo,
        vec![
            assignment(1, "command", &[], "SCENARIO=success EDIT=parts/p1.txt"),
            assignment(2, "claude", &[], "SCENARIO=max_turns"),
            assignment(3, "command", &[2], "SCENARIO=success EDIT=parts/p3.txt"),
        ],
    );
    let plan = plan.to_string_lossy().into_owned();
    let out = repo.run(&["run", "--plan", &plan, "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    let status: Vec<&str> = report["assignments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_str().unwrap())
        .collect();
    assert_eq!(status, ["enqueued", "failed", "blocked"], "{report:#}");
    assert!(
        report["assignments"][1]["reason"]
            .as_str()
            .unwrap()
            .starts_with("max_turns")
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("agent.failed"));
    // The failed agent's transcript is kept outside the queue.
    let kept = repo.git_dir().join("hyperion/agents");
    let found = std::fs::read_dir(&kept)
        .unwrap()
        .flatten()
        .any(|e| e.path().join("transcript.jsonl").exists());
    assert!(found);
    let again = repo.run(&["run", "--plan", &plan, "--format", "json"]);
    let report: Value = serde_json::from_slice(&again.stdout).expect("json");
    assert_eq!(report["assignments"][0]["status"], "existing", "{report:#}");
    assert_eq!(repo.json(&["list"]).as_array().unwrap().len(), 1);
}

/// What an agent says when it fails reaches `run`'s summary and progress lines escaped, and
/// the progress lines follow `--progress`/`--no-progress` as every long step's do (by default:
/// shown in text, not with `--format json`).
#[test]
fn an_agents_failure_reaches_the_terminal_escaped_and_progress_follows_its_switches() {
    let repo = TestRepo::new();
    configure_fakes(&repo);
    let plan = plan(
        &repo,
        vec![assignment(1, "command", &[], "SCENARIO=escapes")],
    );
    let plan = plan.to_string_lossy().into_owned();
    let out = repo.run(&["run", "--plan", &plan]);
    assert_eq!(out.status.code(), Some(1));
    for (what, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !bytes.contains(&0x1b),
            "{what} holds a raw escape: {text:?}"
        );
        assert!(text.contains("fell over \\u{1b}]0;pwned"), "{what}: {text}");
    }
    let progress = |args: &[&str]| {
        let out = repo.run(args);
        String::from_utf8_lossy(&out.stderr).contains(": command started")
    };
    assert!(progress(&["run", "--plan", &plan]));
    assert!(!progress(&["--no-progress", "run", "--plan", &plan]));
    assert!(!progress(&["run", "--plan", &plan, "--format", "json"]));
    assert!(progress(&[
        "--progress",
        "run",
        "--plan",
        &plan,
        "--format",
        "json"
    ]));
}

#[test]
fn a_plan_run_cannot_follow_is_refused_before_anything_runs() {
    let repo = TestRepo::new();
    configure_fakes(&repo);
    let bad_dep = plan(
        &repo,
        vec![
            assignment(1, "command", &[2], "x"),
            assignment(2, "command", &[], "y"),
        ],
    );
    let (_, err) = repo.fails(&["run", "--plan", bad_dep.to_str().unwrap()], 2);
    assert!(
        err.contains("agent.plan_invalid") || err.contains("not an earlier"),
        "{err}"
    );
    let unknown = plan(&repo, vec![assignment(1, "nobody", &[], "x")]);
    let (_, err) = repo.fails(&["run", "--plan", unknown.to_str().unwrap()], 2);
    assert!(err.contains("no provider 'nobody'"), "{err}");
    let (_, err) = repo.fails(&["run", "NO-SUCH-TASK.json"], 2);
    assert!(err.contains("could not read NO-SUCH-TASK.json"), "{err}");
    assert!(repo.json(&["list"]).as_array().unwrap().is_empty());
    assert!(!repo.git_dir().join("hyperion/agents").exists());
}

/// A real agent, when its CLI and key are there: `HYPERION_SMOKE_AGENT=claude cargo test
/// --release --test suite agents::real_agent_smoke -- --ignored` (docs/agents.md).
#[test]
#[ignore = "needs a real agent CLI and its key"]
fn real_agent_smoke() {
    let Ok(name) = std::env::var("HYPERION_SMOKE_AGENT") else {
        eprintln!("HYPERION_SMOKE_AGENT not set: skipped");
        return;
    };
    let p = provider::by_name(&name).expect("a known provider");
    if p.env().iter().all(|v| std::env::var_os(v).is_none()) {
        eprintln!("none of {:?} is set: skipped", p.env());
        return;
    }
    let repo = TestRepo::new();
    let plan = plan(
        &repo,
        vec![assignment(
            1,
            &name,
            &[],
            "Create the file parts/p1.txt holding the single line `hello`. Change nothing else.",
        )],
    );
    let report = repo.json(&["run", "--plan", plan.to_str().unwrap(), "--drain"]);
    assert_eq!(report["assignments"][0]["status"], "enqueued", "{report:#}");
}

/// `run TASK.json` plans the task as `plan` would and runs the plan: one request per
/// assignment, with the assignment's id as its task id, landed by `--drain`.
#[test]
fn a_task_request_is_planned_and_run() {
    let repo = TestRepo::new();
    configure_fakes(&repo);
    repo.commit(&[("notes/a.md", "first\n")], "notes");
    let task = repo.write(
        "TASK.json",
        &json!({
            "schema": "hyperion.task-request/v1",
            "task_id": "T-8",
            "title": "extend the notes",
            "instructions": "SCENARIO=success EDIT=notes/a.md",
            "kind": "docs",
            "scope": ["notes/**"],
            "agents": ["command"],
        }),
    );
    repo.ok(&["run", task.to_str().unwrap(), "--drain"]);
    let list = repo.json(&["list"]);
    let records = list.as_array().unwrap();
    assert_eq!(records.len(), 1, "{list}");
    assert_eq!(records[0]["task_id"], "T-8/1");
    assert_eq!(records[0]["status"], "applied");
    let notes = repo.git(&["show", "main:notes/a.md"]);
    assert!(
        notes.starts_with("first\n") && notes.lines().count() > 1,
        "{notes}"
    );
}

/// Ctrl-C (SIGINT to `run` alone, as a terminal sends it to the foreground job; the agents
/// are in process groups of their own) stops every agent, removes the worktrees and
/// enqueues nothing: the run exits non-zero with nothing half done.
#[test]
fn ctrl_c_stops_the_agents_removes_their_worktrees_and_enqueues_nothing() {
    let repo = TestRepo::new();
    configure_fakes(&repo);
    let log = repo.home.path().join("fake-agents-log");
    repo.git(&[
        "config",
        "hyperion.agent.command.command",
        &format!(
            "env FAKE_AGENT_LOG={} python3 {} command",
            log.display(),
            fake().display()
        ),
    ]);
    let plan = plan(
        &repo,
        vec![
            assignment(1, "command", &[], "SCENARIO=slow EDIT=parts/p1.txt"),
            assignment(2, "command", &[], "SCENARIO=slow EDIT=parts/p2.txt"),
        ],
    );
    let mut child = repo
        .cmd()
        .args(["run", "--plan", plan.to_str().unwrap(), "--parallel", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run starts");
    let calls = log.join("calls.jsonl");
    let pids = |()| -> Vec<u64> {
        std::fs::read_to_string(&calls)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok()?["pid"].as_u64())
            .collect()
    };
    let started = Instant::now();
    while pids(()).len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the two agents did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let agents = pids(());
    assert!(
        agents
            .iter()
            .all(|p| Path::new(&format!("/proc/{p}")).exists())
    );
    common::signal(child.id(), "INT");
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "run did not stop on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "an interrupted run exits non-zero");
    // The agents are gone (reaped once their parent is): none is left running.
    let gone = Instant::now();
    while agents
        .iter()
        .any(|p| Path::new(&format!("/proc/{p}")).exists())
    {
        assert!(
            gone.elapsed() < Duration::from_secs(10),
            "an agent outlived the interrupted run: {agents:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(repo.json(&["list"]).as_array().unwrap().is_empty());
    let worktrees = repo.git(&["worktree", "list", "--porcelain"]);
    assert_eq!(
        worktrees
            .lines()
            .filter(|l| l.starts_with("worktree "))
            .count(),
        1,
        "{worktrees}"
    );
    let agents_dir = repo.git_dir().join("hyperion/agents");
    let left: Vec<_> = std::fs::read_dir(&agents_dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().join("worktree").exists())
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "worktrees left: {left:?}");
}
