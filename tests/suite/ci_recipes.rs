//! The CI recipes of docs/ci/ cannot rot: every recipe (GitHub Actions, GitLab CI, the systemd
//! unit, the cron line) runs docs/ci/hyperion-ci.sh and nothing of hyperion's besides, and that
//! exact script is run here against a bare remote with the shipped pre-receive hook, after
//! agents pushed a good branch and one the policy refuses: the good one lands exactly once on
//! the remote's target, the refused one is recorded and stored nowhere, and running it again
//! (in a fresh CI checkout, or the same clone) changes nothing on the remote.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::TestRepo;
use serde_json::Value;

fn ci_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ci")
}

const SCRIPT: &str = "docs/ci/hyperion-ci.sh";

/// A fresh clone of the remote, as a CI job's checkout (on `branch`).
fn checkout(server: &TestRepo, branch: &str) -> TestRepo {
    TestRepo::clone_of(server.path(), Some(branch))
}

/// The shared script run in `repo` as a recipe runs it, with its report in `report`.
fn run_script(repo: &TestRepo, report: &Path, extra: &[&str]) -> Output {
    repo.command("sh")
        .env("PATH", common::path_with_bin())
        .arg(ci_dir().join("hyperion-ci.sh"))
        .args(["--remote", "origin", "--target", "main", "--report"])
        .arg(report)
        .args(extra)
        .output()
        .unwrap()
}

fn expect(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The rows of the run's ingest.json, by ref.
fn ingest_rows(report: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(report.join("ingest.json")).unwrap();
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn row<'a>(rows: &'a [Value], refname: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["ref"] == refname)
        .unwrap_or_else(|| panic!("no row for {refname}: {rows:#?}"))
}

/// The status of the remote's record of `id` (the last line of its tip's message).
fn remote_status(server: &TestRepo, id: &str) -> String {
    let body = server.git(&[
        "log",
        "-1",
        "--format=%B",
        &format!("refs/hyperion/requests/{id}"),
    ]);
    let record: Value = serde_json::from_str(body.trim().lines().last().unwrap()).unwrap();
    record["status"].as_str().unwrap().to_owned()
}

/// Every ref of the remote and where it points.
fn remote_refs(server: &TestRepo) -> String {
    server.git(&["for-each-ref", "--format=%(refname) %(objectname)"])
}

const POLICY: &str =
    "[paths]\ndeny = [\"secrets/**\"]\n\n[approvals]\napprovers = [\"alice@example.com\"]\n";
const GOOD: &str = "refs/remotes/origin/agent/claude/T-1";
const BAD: &str = "refs/remotes/origin/agent/codex/T-2";
const EVIL: &str = "agent/evil/$(touch${IFS}PWNED)";
/// A change of the policy: it waits for a person, so only the script's push publishes it.
const GATED: &str = "refs/remotes/origin/agent/aider/T-3";

#[test]
fn the_shared_script_lands_good_branches_once_and_records_refused_ones() {
    // The remote, with the hook, a policy that denies secrets/, and two agents' branches.
    let server = common::server();
    let dev = TestRepo::new();
    std::fs::create_dir_all(dev.path().join(".hyperion")).unwrap();
    std::fs::write(dev.path().join(".hyperion/policy.toml"), POLICY).unwrap();
    dev.git(&["add", ".hyperion/policy.toml"]);
    dev.git(&["commit", "-q", "-m", "policy"]);
    dev.git(&["remote", "add", "origin", server.path().to_str().unwrap()]);
    let (pushed, err) = common::push(&dev, &server, &["main"]);
    assert!(pushed, "{err}");
    dev.git(&["switch", "-q", "-c", "agent/claude/T-1", "main"]);
    dev.commit(&[("good.txt", "good\n")], "Add good");
    dev.git(&["switch", "-q", "-c", "agent/codex/T-2", "main"]);
    dev.commit(&[("secrets/key", "k\n")], "Add a key");
    dev.git(&["switch", "-q", "-c", "agent/aider/T-3", "main"]);
    dev.commit(
        &[(
            ".hyperion/policy.toml",
            &format!("{POLICY}\n[limits]\nfiles = 20\n"),
        )],
        "Raise a limit",
    );
    let (pushed, err) = common::push(
        &dev,
        &server,
        &[
            "agent/claude/T-1",
            "agent/codex/T-2",
            "agent/aider/T-3",
            // Hostile: a name that is a command if anything put it through a shell. It has
            // nothing main lacks, so it is skipped.
            &format!("main:refs/heads/{EVIL}"),
        ],
    );
    assert!(pushed, "{err}");

    // A run of the recipe: a CI checkout of the pushed agent branch.
    let ci = checkout(&server, "agent/claude/T-1");
    let report = tempfile::tempdir().unwrap();
    let out = run_script(&ci, report.path(), &[]);
    expect(&out, 0, "first run");
    let rows = ingest_rows(report.path());
    assert_eq!(rows.len(), 4, "{rows:#?}");
    let evil = row(&rows, &format!("refs/remotes/origin/{EVIL}"));
    assert_eq!(evil["result"], "skipped", "{evil:#}");
    assert!(
        !ci.path().join("PWNED").exists(),
        "a branch name ran as a command"
    );
    let good = row(&rows, GOOD);
    assert_eq!(good["result"], "queued", "{good:#}");
    let id = good["id"].as_str().unwrap().to_owned();
    let gated = row(&rows, GATED);
    assert_eq!(gated["result"], "queued", "{gated:#}");
    assert_eq!(gated["record"]["status"], "awaiting_approval", "{gated:#}");
    let gated_id = gated["id"].as_str().unwrap().to_owned();
    let bad = row(&rows, BAD);
    assert_eq!(bad["result"], "refused", "{bad:#}");
    assert_eq!(bad["problems"][0]["code"], "path.denied", "{bad:#}");
    assert!(
        bad["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("secrets/key"),
        "the record names the path: {bad:#}"
    );
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        log.contains("path.denied"),
        "the job's log has the record: {log}"
    );
    let worker = std::fs::read_to_string(report.path().join("worker.jsonl")).unwrap();
    assert!(worker.contains(&format!("\"id\":\"{id}\"")), "{worker}");

    // On the remote: the good one landed exactly once, with its record; the bad one nowhere.
    assert_eq!(server.landed_trailers(), vec![id.clone()]);
    assert_eq!(server.git(&["show", "main:good.txt"]), "good\n");
    assert!(
        server
            .git(&["ls-tree", "-r", "--name-only", "main"])
            .lines()
            .all(|p| !p.starts_with("secrets/"))
    );
    let queue = server.git(&["for-each-ref", "--format=%(refname)", "refs/hyperion/"]);
    let mut expected = vec![
        format!("refs/hyperion/requests/{id}"),
        format!("refs/hyperion/requests/{gated_id}"),
    ];
    expected.sort();
    assert_eq!(
        queue.lines().collect::<Vec<_>>(),
        expected,
        "on the remote: the good request and the one waiting for a person, not the refused one"
    );
    assert_eq!(remote_status(&server, &id), "applied");
    assert_eq!(remote_status(&server, &gated_id), "awaiting_approval");

    // Again, in a fresh checkout (the next CI run): nothing changes on the remote.
    let before = remote_refs(&server);
    let ci2 = checkout(&server, "main");
    let report2 = tempfile::tempdir().unwrap();
    let out = run_script(&ci2, report2.path(), &[]);
    expect(&out, 0, "second run, fresh checkout");
    let rows = ingest_rows(report2.path());
    assert_eq!(row(&rows, GOOD)["result"], "already_queued");
    assert_eq!(row(&rows, GOOD)["id"], id.as_str());
    assert_eq!(row(&rows, BAD)["result"], "refused");
    assert_eq!(row(&rows, GATED)["result"], "already_queued");
    assert_eq!(remote_refs(&server), before, "a second run changes nothing");

    // And in the same clone (a self-hosted runner's), strict: refused is exit 1, no change.
    let report3 = tempfile::tempdir().unwrap();
    let out = run_script(&ci, report3.path(), &["--strict"]);
    expect(&out, 1, "third run, same clone, --strict");
    assert_eq!(remote_refs(&server), before, "a third run changes nothing");
    assert_eq!(server.landed_trailers(), vec![id.clone()]);

    // The refused branch deleted on the remote: the same clone no longer sees it (pruned).
    let (pushed, err) = common::push(&dev, &server, &[":agent/codex/T-2"]);
    assert!(pushed, "{err}");
    let before = remote_refs(&server);
    let report4 = tempfile::tempdir().unwrap();
    let out = run_script(&ci, report4.path(), &["--strict"]);
    expect(&out, 0, "fourth run, the refused branch deleted");
    let rows = ingest_rows(report4.path());
    assert_eq!(rows.len(), 3, "{rows:#?}");
    assert!(rows.iter().all(|r| r["ref"] != BAD), "{rows:#?}");
    assert_eq!(remote_refs(&server), before, "a fourth run changes nothing");
    assert_eq!(server.landed_trailers(), vec![id]);
}

/// The body of every `run:` / `script:` entry of a YAML file: the entry's line and the lines
/// indented deeper below it (a block scalar or a list), comments dropped.
fn entries(yaml: &str) -> Vec<String> {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let lines: Vec<&str> = yaml.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim_start().trim_start_matches("- ");
        if t.starts_with("run:") || t.starts_with("script:") {
            let own = indent(lines[i]);
            let mut body = vec![t.to_owned()];
            i += 1;
            while i < lines.len() && (lines[i].trim().is_empty() || indent(lines[i]) > own) {
                let l = lines[i].trim();
                if !l.starts_with('#') {
                    body.push(l.to_owned());
                }
                i += 1;
            }
            out.push(body.join("\n"));
        } else {
            i += 1;
        }
    }
    out
}

/// A recipe's commands: the shared script is called, and no hyperion command is run besides
/// (a command written into a recipe is one this test does not run).
fn calls_only_the_script(name: &str, commands: &[String]) {
    assert!(!commands.is_empty(), "{name}: no commands found");
    assert!(
        commands.iter().any(|c| c.contains(SCRIPT)),
        "{name} must run {SCRIPT}: {commands:#?}"
    );
    for c in commands {
        for prefix in ["git hyperion ", "git-hyperion "] {
            for sub in [
                "init", "fetch", "ingest", "push", "worker", "enqueue", "dequeue", "sweep",
                "doctor", "watch",
            ] {
                let word = format!("{prefix}{sub}");
                assert!(
                    !c.contains(&word),
                    "{name} runs hyperion itself ({word:?}); put it in {SCRIPT}: {c}"
                );
            }
        }
    }
}

#[test]
fn every_recipe_runs_the_shared_script() {
    for name in ["github-actions.yml", "gitlab-ci.yml"] {
        let text = std::fs::read_to_string(ci_dir().join(name)).unwrap();
        calls_only_the_script(name, &entries(&text));
    }
    let unit = std::fs::read_to_string(ci_dir().join("hyperion-worker.service")).unwrap();
    let exec: Vec<String> = unit
        .lines()
        .filter(|l| l.trim_start().starts_with("ExecStart"))
        .map(str::to_owned)
        .collect();
    calls_only_the_script("hyperion-worker.service", &exec);
    let timer = std::fs::read_to_string(ci_dir().join("hyperion-worker.timer")).unwrap();
    assert!(timer.contains("[Timer]"), "{timer}");
    let cron = std::fs::read_to_string(ci_dir().join("crontab")).unwrap();
    let lines: Vec<String> = cron
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(str::to_owned)
        .collect();
    calls_only_the_script("crontab", &lines);
}

#[test]
fn the_yaml_reader_sees_a_recipe_that_stops_calling_the_script() {
    let gh = std::fs::read_to_string(ci_dir().join("github-actions.yml")).unwrap();
    let broken = gh.replace(
        "../hyperion/docs/ci/hyperion-ci.sh",
        "git hyperion worker --drain",
    );
    assert_ne!(
        broken, gh,
        "the recipe's call is where this test expects it"
    );
    let entries = entries(&broken);
    let caught = std::panic::catch_unwind(|| calls_only_the_script("broken", &entries));
    assert!(caught.is_err(), "{entries:#?}");
}

/// A host without a `pre-receive` hook takes a forged chain (a lease that never ends, which
/// would hold the request for ever): the script's fetch leaves it out and records it, the good
/// branch still lands, and the job fails at the end so that someone looks.
#[test]
fn on_a_hookless_remote_a_forged_chain_is_left_out_the_rest_lands_and_the_job_fails() {
    use common::forge;
    let server = TestRepo::bare();
    let dev = TestRepo::new();
    dev.git(&["remote", "add", "origin", server.path().to_str().unwrap()]);
    dev.git(&["switch", "-q", "-c", "agent/claude/T-1", "main"]);
    dev.commit(&[("good.txt", "good\n")], "Add good");
    // A request of the attacker's own clone, with a forged lease on top, pushed as it is.
    let id = dev
        .enqueue(&dev.write("r.json", &common::request(1, "forged")))
        .remove(0);
    let root = forge::tip(&dev, &id);
    let (ev, rec) = forge::lease(
        &root.record,
        "squatter",
        &forge::at(1),
        "9999-01-01T00:00:00Z",
    );
    let forged = forge::after(&dev, &id, &root, &ev, &rec);
    forge::set(&dev, &id, &forged);
    let r = forge::refname(&id);
    let (pushed, err) = common::push(
        &dev,
        &server,
        &["main", "agent/claude/T-1", &format!("{r}:{r}")],
    );
    assert!(pushed, "the hook-less server takes anything: {err}");

    let ci = checkout(&server, "agent/claude/T-1");
    let report = tempfile::tempdir().unwrap();
    let out = run_script(&ci, report.path(), &[]);
    expect(&out, 1, "a run next to a forged chain");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("remote.forged"), "{stderr}");
    let fetched: Value =
        serde_json::from_str(&std::fs::read_to_string(report.path().join("fetch.json")).unwrap())
            .unwrap();
    assert_eq!(fetched["refused"][0]["id"], id.as_str(), "{fetched:#}");
    assert_eq!(
        fetched["refused"][0]["problems"][0]["code"], "chain.bad_lease",
        "{fetched:#}"
    );
    // The good branch landed; the forged chain was never taken in by the job's clone.
    assert_eq!(server.git(&["show", "main:good.txt"]), "good\n");
    assert_eq!(server.landed_trailers().len(), 1);
    assert!(
        ci.git(&["for-each-ref", &r]).trim().is_empty(),
        "the forged chain was taken in"
    );
    assert_eq!(server.git(&["rev-parse", &r]).trim(), forged);
}
