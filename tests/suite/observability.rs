#![allow(clippy::unwrap_used)]
//! Metrics and traces as an operator sees them: a real worker process serving `/metrics` over
//! real HTTP while it drains a queue, every scrape parsed by the Prometheus client's own strict
//! OpenMetrics parser (Python's `prometheus_client`, which `.ci/run` installs), the final
//! totals held to the queue's final state (`list --format json`); `git hyperion metrics` held to
//! the same; one request's whole path through the worker in JSON logs, joined by its id; and
//! `--metrics-addr` refusing to open the endpoint to the network unless asked.
//!
//! `HYPERION_METRICS_REQUESTS` sets the size of the drain (default 500).

use crate::common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::TestRepo;
use serde_json::{Value, json};

/// A sample: its name and labels (sorted).
type Labels = Vec<(String, String)>;
type Key = (String, Labels);

/// Parse an exposition with `prometheus_client.openmetrics.parser` (strict: a malformed line,
/// a missing `# EOF`, a counter without `_total` all fail), as (name, labels) -> value.
fn parse(exposition: &str) -> BTreeMap<Key, f64> {
    const SCRIPT: &str = r#"
import sys, json
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append([s.name, sorted(s.labels.items()), s.value])
print(json.dumps(out))
"#;
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (the parser is Python's prometheus_client)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused the exposition (pip install prometheus-client?): {}\n{exposition}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<(String, Labels, f64)> = serde_json::from_slice(&out.stdout).unwrap();
    rows.into_iter().map(|(n, l, v)| ((n, l), v)).collect()
}

/// The value of sample `name` with exactly `labels` (0 when absent: a labelled series appears
/// with its first event).
fn value(m: &BTreeMap<Key, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut l: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.sort();
    m.get(&(name.to_owned(), l)).copied().unwrap_or(0.0)
}

/// Every series of `name` by its labels.
fn series(m: &BTreeMap<Key, f64>, name: &str) -> BTreeMap<Vec<(String, String)>, f64> {
    m.iter()
        .filter(|((n, _), _)| n == name)
        .map(|((_, l), v)| (l.clone(), *v))
        .collect()
}

/// `GET /metrics` over a real TCP connection; the body of a 200 answer.
fn scrape(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains("Content-Type: application/openmetrics-text"),
        "{head}"
    );
    body.to_owned()
}

/// A worker process running until stopped, serving metrics on a port of the system's choice.
struct Running {
    child: Child,
    addr: String,
}

fn start_worker(repo: &TestRepo) -> Running {
    let mut child = repo
        .cmd()
        .args([
            "worker",
            "--id",
            "w-metrics",
            "--poll",
            "100ms",
            "--metrics-addr",
            ":0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("hyperion: serving metrics at http://") {
                let _ = tx.send(rest.trim_end_matches("/metrics").to_owned());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the worker says where it serves metrics");
    assert!(
        addr.starts_with("127.0.0.1:"),
        "a bare port is loopback: {addr}"
    );
    Running { child, addr }
}

impl Running {
    /// SIGTERM (drain and stop), and wait for it.
    fn stop(mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the worker stopped cleanly: {status:?}");
    }
}

/// Requests adding `src/f{i}.txt`; every tenth (i % 10 == 5) adds the file of request i - 5
/// again, so it dies at the worker (the file exists by then): landed and dead letters both.
fn mixed_requests(repo: &TestRepo, n: usize) -> std::path::PathBuf {
    let d = repo.home.path().join("mixed");
    std::fs::create_dir_all(&d).unwrap();
    for i in 0..n {
        let mut r = common::request(i, "m");
        if i % 10 == 5 {
            let path = format!("src/f{}.txt", i - 5);
            let patch = format!("--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+again {i}\n");
            r["changes"] = json!([{
                "path": path, "operation": "add", "patch": patch, "sha256": common::sha256(&patch)
            }]);
        }
        std::fs::write(
            d.join(format!("{i:05}.json")),
            serde_json::to_vec(&r).unwrap(),
        )
        .unwrap();
    }
    d
}

/// The queue's final state by `list --format json`: (status counts, dead by (class, code)).
#[allow(clippy::type_complexity)]
fn final_state(
    repo: &TestRepo,
) -> (
    BTreeMap<String, usize>,
    BTreeMap<(String, String), usize>,
    usize,
) {
    let list = repo.json(&["list"]);
    let mut statuses = BTreeMap::new();
    let mut dead = BTreeMap::new();
    let mut attempts = 0;
    for r in list.as_array().unwrap() {
        *statuses
            .entry(r["status"].as_str().unwrap().to_owned())
            .or_default() += 1;
        attempts += r["attempts"].as_u64().unwrap() as usize;
        if r["status"] == "dead" {
            *dead
                .entry((
                    r["dead_class"].as_str().unwrap().to_owned(),
                    r["error"]["code"].as_str().unwrap().to_owned(),
                ))
                .or_default() += 1;
        }
    }
    (statuses, dead, attempts)
}

#[test]
fn a_workers_metrics_scraped_over_http_while_it_drains_match_the_final_queue() {
    let n: usize = std::env::var("HYPERION_METRICS_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let repo = TestRepo::new();
    let dir = mixed_requests(&repo, n);
    assert_eq!(repo.enqueue(&dir).len(), n);

    let worker = start_worker(&repo);
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut scrapes = 0;
    let mut seen_midway = false;
    let mut last_done = 0.0;
    // When the queue says it is done, the worker's counters have a few seconds to say so too
    // (its reports come right after the records are written).
    let mut queue_done_at: Option<Instant> = None;
    let last = loop {
        let m = parse(&scrape(&worker.addr));
        scrapes += 1;
        let landed = value(&m, "hyperion_worker_landed_total", &[]);
        let dead: f64 = series(&m, "hyperion_worker_dead_total").values().sum();
        let done = landed + dead;
        assert!(
            done >= last_done,
            "counters only grow: {done} < {last_done}"
        );
        last_done = done;
        if done >= n as f64 {
            break m;
        }
        seen_midway = true;
        assert!(
            Instant::now() < deadline,
            "the drain took too long: {done} of {n}"
        );
        match queue_done_at {
            None if scrapes % 10 == 0 => {
                let busy = repo.ids(&["list", "--status", "pending"]).len()
                    + repo.ids(&["list", "--status", "leased"]).len();
                if busy == 0 {
                    queue_done_at = Some(Instant::now());
                }
            }
            Some(t) => assert!(
                t.elapsed() < Duration::from_secs(5),
                "the queue is drained but the worker counted {done} of {n}:\n{m:?}"
            ),
            None => {}
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        seen_midway,
        "at least one scrape while draining ({scrapes} scrapes)"
    );

    let (statuses, dead, attempts) = final_state(&repo);
    let applied = statuses.get("applied").copied().unwrap_or(0);
    let doomed = (0..n).filter(|i| i % 10 == 5).count();
    assert_eq!(applied, n - doomed, "{statuses:?}");
    assert_eq!(
        statuses.get("pending").copied().unwrap_or(0)
            + statuses.get("leased").copied().unwrap_or(0),
        0,
        "{statuses:?}"
    );
    // Totals: exactly the queue's.
    assert_eq!(
        value(&last, "hyperion_worker_landed_total", &[]),
        applied as f64
    );
    let worker_dead: BTreeMap<(String, String), usize> =
        series(&last, "hyperion_worker_dead_total")
            .into_iter()
            .map(|(l, v)| {
                let get = |k: &str| l.iter().find(|(kk, _)| kk == k).unwrap().1.clone();
                ((get("class"), get("code")), v as usize)
            })
            .collect();
    assert_eq!(worker_dead, dead);
    assert_eq!(
        value(&last, "hyperion_worker_leased_total", &[]),
        attempts as f64,
        "one lease per attempt"
    );
    assert_eq!(
        value(
            &last,
            "hyperion_worker_enqueue_to_landed_seconds_count",
            &[]
        ),
        applied as f64
    );
    assert_eq!(
        value(&last, "hyperion_worker_request_seconds_count", &[]),
        n as f64
    );
    // Applied in memory: those that landed and those the apply engine refused (the others
    // died before, at validation).
    let refused_by_apply: usize = dead
        .iter()
        .filter(|((class, _), _)| class == "apply")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        value(&last, "hyperion_worker_apply_seconds_count", &[]),
        (applied + refused_by_apply) as f64,
        "{dead:?}"
    );
    assert_eq!(series(&last, "hyperion_worker_retries_total").len(), 0);
    worker.stop();

    // `git hyperion metrics`, computed from the refs, says the same.
    let m = parse(&repo.ok(&["metrics"]));
    for (status, count) in &statuses {
        assert_eq!(
            value(&m, "hyperion_requests", &[("status", status)]),
            *count as f64,
            "{status}"
        );
    }
    assert_eq!(value(&m, "hyperion_enqueued_total", &[]), n as f64);
    assert_eq!(value(&m, "hyperion_landed_total", &[]), applied as f64);
    assert_eq!(value(&m, "hyperion_attempts_total", &[]), attempts as f64);
    for ((class, code), count) in &dead {
        assert_eq!(
            value(
                &m,
                "hyperion_dead_total",
                &[("class", class), ("code", code)]
            ),
            *count as f64
        );
    }
    assert_eq!(
        value(&m, "hyperion_enqueue_to_landed_seconds_count", &[]),
        applied as f64
    );
}

#[test]
fn metrics_of_an_empty_queue_list_every_status_at_zero() {
    let repo = TestRepo::new();
    let m = parse(&repo.ok(&["metrics"]));
    for status in [
        "awaiting_approval",
        "pending",
        "leased",
        "applied",
        "dead",
        "rolled_back",
    ] {
        assert_eq!(
            m.get(&(
                "hyperion_requests".to_owned(),
                vec![("status".to_owned(), status.to_owned())]
            )),
            Some(&0.0),
            "{status}"
        );
    }
    assert_eq!(value(&m, "hyperion_enqueued_total", &[]), 0.0);
}

#[test]
fn the_metrics_endpoint_answers_only_get_metrics() {
    let repo = TestRepo::new();
    let worker = start_worker(&repo);
    for (request, status) in [
        ("GET / HTTP/1.1\r\n\r\n", "404"),
        ("POST /metrics HTTP/1.1\r\n\r\n", "405"),
        ("\x1b[2J\0garbage\r\n\r\n", "405"),
    ] {
        let mut s = TcpStream::connect(&worker.addr).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        assert!(raw.starts_with(&format!("HTTP/1.1 {status}")), "{raw}");
    }
    // A client that sends nothing and hangs up does not stop the server.
    drop(TcpStream::connect(&worker.addr).unwrap());
    parse(&scrape(&worker.addr));
    worker.stop();
}

#[test]
fn a_metrics_address_open_to_the_network_is_refused_unless_asked_for() {
    let repo = TestRepo::new();
    let dir = common::request_dir(&repo, 1, "net");
    repo.enqueue(&dir);
    let before = repo.hyperion_refs();
    for addr in ["0.0.0.0:0", "[::]:0", "192.0.2.1:9184"] {
        let (_, err) = repo.fails(&["worker", "--drain", "--metrics-addr", addr], 2);
        assert!(err.contains("not a loopback address"), "{err}");
        assert!(err.contains("hint:"), "{err}");
    }
    let (_, err) = repo.fails(&["worker", "--drain", "--metrics-addr", "nine"], 2);
    assert!(err.contains("is not a port"), "{err}");
    // Refused before anything happened: nothing leased.
    assert_eq!(repo.hyperion_refs(), before);
    // Asked for: it serves on every address.
    let out = repo.run(&[
        "worker",
        "--drain",
        "--metrics-addr",
        "0.0.0.0:0",
        "--metrics-public",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("http://0.0.0.0:"));
}

/// The JSON log lines of a worker run (`--log-format json`, info level).
fn json_logs(stderr: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The request id an event carries: its span's, or its own field.
fn request_of(event: &Value) -> Option<&str> {
    event["span"]["request_id"]
        .as_str()
        .or(event["fields"]["request_id"].as_str())
}

#[test]
fn a_requests_whole_path_is_in_the_json_logs_joined_by_its_id_in_order() {
    let repo = TestRepo::new();
    std::fs::create_dir_all(repo.path().join(".hyperion")).unwrap();
    std::fs::write(
        repo.path().join(".hyperion/policy.toml"),
        "[checks.unit]\nrun = [\"true\"]\n",
    )
    .unwrap();
    repo.git(&["add", ".hyperion/policy.toml"]);
    repo.git(&["commit", "-q", "-m", "policy"]);
    let mut ids = Vec::new();
    for i in 0..3 {
        let mut r = common::request(i, "trace");
        r["checks"] = json!(["unit"]);
        let p = repo.write(&format!("t{i}.json"), &r);
        ids.extend(repo.enqueue(&p));
    }
    let out = repo
        .cmd()
        .env("HYPERION_LOG", "info")
        .args(["--log-format", "json", "worker", "--drain"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let logs = json_logs(&out.stderr);
    for (i, id) in ids.iter().enumerate() {
        let mine: Vec<&Value> = logs
            .iter()
            .filter(|e| request_of(e) == Some(id.as_str()))
            .collect();
        // Every event of the request's span carries its task too.
        for e in &mine {
            if e["span"]["request_id"].is_string() {
                assert_eq!(e["span"]["task_id"], format!("TASK-{i}"), "{e}");
            }
        }
        let steps: Vec<&str> = mine
            .iter()
            .filter_map(|e| e["fields"]["step"].as_str())
            .collect();
        assert_eq!(
            steps,
            ["lease", "validate", "hooks", "apply", "check", "record"],
            "{id}: {mine:#?}"
        );
        // In time order, and the transitions the queue wrote are in it too.
        let times: Vec<&str> = mine
            .iter()
            .map(|e| e["timestamp"].as_str().unwrap())
            .collect();
        let mut sorted = times.clone();
        sorted.sort();
        assert_eq!(times, sorted);
        let transitions: Vec<&str> = mine
            .iter()
            .filter(|e| e["fields"]["message"] == "transition")
            .map(|e| e["fields"]["to"].as_str().unwrap())
            .collect();
        assert_eq!(transitions, ["applied"], "{id}");
        let last = mine.last().unwrap();
        assert_eq!(last["fields"]["result"], "landed", "{last}");
        assert!(last["fields"]["commit"].is_string(), "{last}");
    }
}

#[test]
fn inspect_shows_what_a_check_printed_with_control_characters_escaped() {
    let repo = TestRepo::new();
    std::fs::create_dir_all(repo.path().join(".hyperion")).unwrap();
    // A check that tries to clear the screen of whoever reads its output, then fails.
    std::fs::write(
        repo.path().join(".hyperion/policy.toml"),
        "[checks.lint]\nrun = [\"sh\", \"-c\", \"printf '\\\\033[2Jboom\\\\n'; exit 3\"]\n",
    )
    .unwrap();
    repo.git(&["add", ".hyperion/policy.toml"]);
    repo.git(&["commit", "-q", "-m", "policy"]);
    let mut r = common::request(0, "esc");
    r["checks"] = json!(["lint"]);
    let id = repo.enqueue(&repo.write("esc.json", &r)).remove(0);
    repo.ok(&["worker", "--drain"]);

    let text = repo.ok(&["inspect", &id]);
    assert!(!text.contains('\x1b'), "{text}");
    assert!(text.contains("\\u{1b}[2Jboom"), "{text}");
    assert!(text.contains("status    dead (check)"), "{text}");
    // JSON gives the bytes as stored (escaped by JSON itself).
    let v = repo.json(&["inspect", &id]);
    let output: String = v["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["text"].as_str().unwrap())
        .collect();
    assert!(output.contains("\x1b[2Jboom"), "{v:#}");
    assert_eq!(v["findings"], json!([]));
    assert_eq!(v["index"]["agrees"], true);
    let actions: Vec<&str> = v["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["enqueue", "lease", "fail"], "{v:#}");
}

#[test]
fn inspect_finds_what_the_index_and_the_chain_disagree_on() {
    let repo = TestRepo::new();
    let id = repo
        .enqueue(&common::request_dir(&repo, 1, "drift"))
        .remove(0);
    repo.ok(&["worker", "--drain"]);
    // Someone moves the request's ref back to its root by hand: the index still has the
    // landed tip, and the chain lost its history.
    let root = repo.git(&[
        "rev-list",
        "--max-parents=0",
        &format!("refs/hyperion/requests/{id}"),
    ]);
    let tip = repo.git(&["rev-parse", &format!("refs/hyperion/requests/{id}")]);
    repo.git(&[
        "update-ref",
        &format!("refs/hyperion/requests/{id}"),
        root.trim(),
    ]);
    let v = repo.json(&["inspect", &id]);
    assert_eq!(v["index"]["agrees"], false, "{v:#}");
    assert_eq!(v["index"]["tip"], tip.trim());
    assert_eq!(v["record"]["status"], "pending");
    assert_eq!(v["chain"].as_array().unwrap().len(), 1);
    let text = repo.ok(&["inspect", &id]);
    assert!(text.contains("differs from the ref"), "{text}");
}

/// `HYPERION_LOG` takes tracing's directives: levels by module, and a value that does not
/// parse is reported (the command still runs, at `-v`'s level).
#[test]
fn log_directives_pick_modules_and_a_bad_one_is_reported() {
    let repo = TestRepo::new();
    let enqueue_logged = |directives: &str, i: usize| {
        let p = repo.write(&format!("d{i}.json"), &common::request(i, "directives"));
        let out = repo
            .cmd()
            .env("HYPERION_LOG", directives)
            .args(["--log-format", "json", "enqueue", p.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        json_logs(&out.stderr)
            .iter()
            .any(|e| e["fields"]["message"] == "enqueued")
    };
    assert!(enqueue_logged("warn,hyperion::queue=info", 0));
    assert!(!enqueue_logged("warn,hyperion::gate=info", 1));
    assert!(enqueue_logged("info", 2));
    assert!(!enqueue_logged("warn", 3));

    let p = repo.write("bad.json", &common::request(4, "directives"));
    let out = repo
        .cmd()
        .env("HYPERION_LOG", "hyperion=loud")
        .args(["enqueue", p.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("warning: HYPERION_LOG: "), "{err}");
    assert!(err.contains("hint: a level"), "{err}");
}
