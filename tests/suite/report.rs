#![allow(clippy::unwrap_used)]
//! `git hyperion report`: the HTML page rendered by a real browser. A repository whose worker
//! landed requests and made dead letters of two codes, from two agents; `report --html`
//! rendered by headless Chromium (its DOM after load, a screenshot, its console); the numbers
//! the charts carry in `data-*` attributes held to `report --format json`, to `list --format
//! json` and to the notes `git` shows. Hostile agent names and task ids are text in the
//! rendered page, never elements.
//!
//! Chromium is required (`.ci/run` installs it): without it these tests fail, they do not skip.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use common::TestRepo;
use serde_json::{Value, json};

/// An element of the dumped DOM: its tag and attributes (entities decoded).
#[derive(Debug)]
struct Element {
    tag: String,
    attrs: BTreeMap<String, String>,
}

impl Element {
    fn get(&self, k: &str) -> &str {
        self.attrs
            .get(k)
            .unwrap_or_else(|| panic!("{k} on {self:?}"))
    }
    fn num(&self, k: &str) -> f64 {
        self.get(k)
            .parse()
            .unwrap_or_else(|e| panic!("{k} of {self:?}: {e}"))
    }
}

/// Every start tag of serialised HTML (Chromium's `--dump-dom`: attribute values are
/// double-quoted with `"` escaped).
fn elements(dom: &str) -> Vec<Element> {
    let tag =
        regex::Regex::new(r#"<([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[^\s"'>/=]+(?:="[^"]*")?)*)\s*/?>"#)
            .unwrap();
    let attr = regex::Regex::new(r#"([^\s"'>/=]+)(?:="([^"]*)")?"#).unwrap();
    tag.captures_iter(dom)
        .map(|c| Element {
            tag: c[1].to_ascii_lowercase(),
            attrs: attr
                .captures_iter(&c[2])
                .map(|a| {
                    (
                        a[1].to_owned(),
                        a.get(2).map_or(String::new(), |v| unescape(v.as_str())),
                    )
                })
                .collect(),
        })
        .collect()
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#39;", "'")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// `chromium --headless` on `page` with `args`, in a profile of its own; its output. Fails
/// (does not skip) when Chromium is not installed.
fn chromium(repo: &TestRepo, page: &Path, args: &[&str]) -> Output {
    let profile = repo.home.path().join("chromium-profile");
    let url = format!("file://{}", page.display());
    let out = repo
        .command("timeout")
        .args([
            "120",
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(&url)
        .output()
        .expect("timeout(1) runs");
    assert!(
        out.status.success(),
        "chromium ran (apt-get install chromium; .ci/run installs it): {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    out
}

/// The DOM after load, and the page's console messages (Chromium logs each as
/// `…:CONSOLE:LINE] "message", source: …`; a page without script writes none unless
/// something went wrong, such as a load the page's policy blocked).
fn render(repo: &TestRepo, page: &Path) -> (String, Vec<String>) {
    let out = chromium(
        repo,
        page,
        &["--enable-logging=stderr", "--v=1", "--dump-dom"],
    );
    let console = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_owned)
        .collect();
    (String::from_utf8(out.stdout).unwrap(), console)
}

/// A policy with a check `unit` that fails when a file under src/ says BREAK.
fn with_policy(repo: &TestRepo) {
    repo.commit(
        &[(
            ".hyperion/policy.toml",
            "[checks.unit]\nrun = [\"sh\", \"-c\", \"sleep 0.2; ! grep -rqs BREAK src\"]\n",
        )],
        "policy",
    );
}

/// Enqueue, one at a time (so in this order): `(i, salt, agent, task)`; a request whose `i`
/// repeats an earlier one adds a file that exists by then.
fn enqueue(repo: &TestRepo, requests: &[(usize, &str, &str, &str)]) -> Vec<String> {
    store(requests, |r, n| {
        repo.enqueue(&repo.write(&format!("r{n}.json"), r))
            .remove(0)
    })
}

/// As [`enqueue`], but stored without validation ([`TestRepo::plant`]): agent names the
/// schema refuses now (`<`, `>`) may still be in a queue, stored before the rule or forged.
fn plant(repo: &TestRepo, requests: &[(usize, &str, &str, &str)]) -> Vec<String> {
    store(requests, |r, _| repo.plant(r))
}

fn store(
    requests: &[(usize, &str, &str, &str)],
    put: impl Fn(&serde_json::Value, usize) -> String,
) -> Vec<String> {
    requests
        .iter()
        .enumerate()
        .map(|(n, (i, salt, agent, task))| {
            let mut r = common::request(*i, salt);
            r["agent"] = json!(agent);
            r["task_id"] = json!(task);
            r["checks"] = json!(["unit"]);
            put(&r, n)
        })
        .collect()
}

/// Nearest-rank percentile.
fn percentile(sorted: &[f64], p: usize) -> f64 {
    sorted[(p * sorted.len()).div_ceil(100).max(1) - 1]
}

#[test]
fn the_report_rendered_by_chromium_has_the_numbers_of_list_and_its_json() {
    let repo = TestRepo::new();
    with_policy(&repo);
    enqueue(
        &repo,
        &[
            (0, "a", "alpha", "A-0"),
            (1, "a", "alpha", "A-1"),
            (2, "a", "alpha", "A-2"),
            (3, "b", "beta", "B-3"),
            (4, "BREAK", "beta", "B-4"),
            (0, "again", "beta", "B-5"),
            (1, "again", "beta", "B-6"),
        ],
    );
    repo.ok(&["worker", "--drain"]);

    let list = repo.json(&["list"]);
    let list = list.as_array().unwrap();
    let report = repo.json(&["report"]);
    let page = repo.home.path().join("out dir/report.html");
    std::fs::create_dir_all(page.parent().unwrap()).unwrap();
    repo.ok(&["report", "--html", page.to_str().unwrap()]);
    let (dom, console) = render(&repo, &page);
    assert!(console.is_empty(), "console messages: {console:#?}");
    let els = elements(&dom);
    let with = |tag: &str, class: &str| -> Vec<&Element> {
        els.iter()
            .filter(|e| e.tag == tag && e.attrs.get("class").map(String::as_str) == Some(class))
            .collect()
    };

    // The queue as `list` says: 4 landed, 3 dead of two codes, two agents.
    let applied: Vec<&Value> = list.iter().filter(|r| r["status"] == "applied").collect();
    let mut dead_by_code: BTreeMap<String, usize> = BTreeMap::new();
    for r in list.iter().filter(|r| r["status"] == "dead") {
        *dead_by_code
            .entry(r["error"]["code"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(applied.len(), 4, "{list:#?}");
    assert_eq!(dead_by_code.len(), 2, "two codes: {dead_by_code:?}");
    assert_eq!(dead_by_code.values().sum::<usize>(), 3);

    // Per hour: every bucket of the JSON, its numbers on the chart; the sums are the list's.
    let buckets = with("g", "bucket");
    assert_eq!(buckets.len(), report["buckets"].as_array().unwrap().len());
    for (g, b) in buckets.iter().zip(report["buckets"].as_array().unwrap()) {
        assert_eq!(g.get("data-hour"), b["start"].as_str().unwrap());
        assert_eq!(g.num("data-landed"), b["landed"].as_f64().unwrap());
        assert_eq!(g.num("data-dead"), b["dead"].as_f64().unwrap());
    }
    let sum = |k: &str| buckets.iter().map(|g| g.num(k)).sum::<f64>();
    assert_eq!(sum("data-landed"), applied.len() as f64);
    assert_eq!(sum("data-dead"), 3.0);
    // The bars themselves carry them too.
    let landed_bars: f64 = with("rect", "landed")
        .iter()
        .filter(|r| r.attrs.contains_key("data-hour"))
        .map(|r| r.num("data-landed"))
        .sum();
    assert_eq!(landed_bars, 4.0);

    // Latency percentiles: from created_at to updated_at of the applied records.
    let mut lat: Vec<f64> = applied
        .iter()
        .map(|r| {
            let t = |k: &str| r[k].as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
            t("updated_at")
                .duration_since(t("created_at"))
                .as_secs_f64()
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    let lat_els = with("g", "latency");
    assert_eq!(lat_els.len(), 3);
    for (e, p) in lat_els.iter().zip([50, 90, 99]) {
        assert_eq!(e.get("data-percentile"), p.to_string());
        assert_eq!(e.num("data-seconds"), percentile(&lat, p), "p{p}");
        assert_eq!(
            e.num("data-seconds"),
            report["latency"][format!("p{p}")].as_f64().unwrap()
        );
    }

    // Failure codes: the list's dead letters by code.
    let failures: BTreeMap<String, usize> = with("g", "failure")
        .iter()
        .map(|e| (e.get("data-code").to_owned(), e.num("data-count") as usize))
        .collect();
    assert_eq!(failures, dead_by_code);

    // Agents: requests, landed and dead as the list says; the success rate and attempts as
    // the JSON says.
    let agents = with("tr", "agent");
    assert_eq!(agents.len(), 2);
    for e in &agents {
        let name = e.get("data-agent");
        let mine: Vec<&Value> = list.iter().filter(|r| r["agent"] == name).collect();
        let count = |s: &str| mine.iter().filter(|r| r["status"] == s).count() as f64;
        assert_eq!(e.num("data-requests"), mine.len() as f64, "{name}");
        assert_eq!(e.num("data-landed"), count("applied"), "{name}");
        assert_eq!(e.num("data-dead"), count("dead"), "{name}");
        let attempts: u64 = mine.iter().map(|r| r["attempts"].as_u64().unwrap()).sum();
        assert_eq!(e.num("data-attempts"), attempts as f64, "{name}");
        let j = report["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["agent"] == name)
            .unwrap();
        assert_eq!(
            e.num("data-success-rate"),
            j["success_rate"].as_f64().unwrap()
        );
        assert_eq!(
            e.num("data-success-rate"),
            count("applied") / (count("applied") + count("dead"))
        );
        assert_eq!(e.num("data-check-ms"), j["check_ms"].as_f64().unwrap());
    }
    assert_eq!(
        agents
            .iter()
            .find(|e| e.get("data-agent") == "alpha")
            .unwrap()
            .num("data-success-rate"),
        1.0
    );

    // Slowest checks: what the notes on the landed commits say, as git shows them.
    let mut runs = Vec::new();
    for r in &applied {
        let note = repo.git(&[
            "notes",
            "--ref=hyperion",
            "show",
            r["landed_commit"].as_str().unwrap(),
        ]);
        for l in note.lines().filter_map(|l| l.strip_prefix("check: unit ")) {
            let ms: u64 = l
                .split(' ')
                .nth(1)
                .unwrap()
                .strip_suffix("ms")
                .unwrap()
                .parse()
                .unwrap();
            runs.push(ms);
        }
    }
    assert_eq!(runs.len(), 4, "one run of unit per landed request");
    let checks = with("g", "check");
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].get("data-check"), "unit");
    assert_eq!(checks[0].num("data-runs"), 4.0);
    assert_eq!(
        checks[0].num("data-max-ms"),
        *runs.iter().max().unwrap() as f64
    );
    assert!(
        checks[0].num("data-max-ms") >= 200.0,
        "the check sleeps 0.2 s"
    );
    assert_eq!(
        checks[0].num("data-total-ms"),
        report["checks"][0]["total_ms"].as_f64().unwrap()
    );
    assert_eq!(
        agents.iter().map(|e| e.num("data-check-ms")).sum::<f64>(),
        runs.iter().sum::<u64>() as f64
    );

    // Self-contained: no script, nothing that loads.
    for e in &els {
        assert!(
            !matches!(
                e.tag.as_str(),
                "script" | "img" | "link" | "iframe" | "object"
            ),
            "{e:?}"
        );
        assert!(
            !e.attrs.contains_key("src") && !e.attrs.contains_key("href"),
            "{e:?}"
        );
    }

    // A screenshot: a PNG of some substance.
    let shot = repo.home.path().join("report.png");
    chromium(
        &repo,
        &page,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,2000",
        ],
    );
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(png.len() > 20_000, "{} bytes", png.len());
}

#[test]
fn hostile_agent_names_and_tasks_are_text_in_the_rendered_report() {
    let repo = TestRepo::new();
    with_policy(&repo);
    let script = "<script>alert(1)</script>";
    let img = "\"><img src=x onerror=alert(2)>";
    let svg = "</text></svg><svg onload=alert(3)>";
    plant(
        &repo,
        &[
            (0, "a", script, img),
            (1, "BREAK", img, script),
            (0, "again", svg, "\u{9b}2J&amp;<b>x</b>"),
        ],
    );
    repo.ok(&["worker", "--drain"]);
    let page = repo.home.path().join("hostile.html");
    repo.ok(&["report", "--html", page.to_str().unwrap()]);

    let (dom, console) = render(&repo, &page);
    assert!(console.is_empty(), "console messages: {console:#?}");
    let els = elements(&dom);
    for e in &els {
        assert!(
            !matches!(e.tag.as_str(), "script" | "img" | "b"),
            "an element from a record: {e:?}\n{dom}"
        );
        assert!(
            !e.attrs.keys().any(|k| k.starts_with("on")),
            "an event handler from a record: {e:?}"
        );
    }
    // One svg per chart and per agent's rate bar; none from the hostile name.
    let svgs = els.iter().filter(|e| e.tag == "svg").count();
    let charts = els
        .iter()
        .filter(|e| e.tag == "svg" && e.attrs.get("class").is_some_and(|c| c == "chart"))
        .count();
    assert_eq!(svgs, charts + 3, "three agents, one rate bar each");
    // The names are there, as text and as attribute values.
    let agents: Vec<&str> = els
        .iter()
        .filter(|e| e.tag == "tr" && e.attrs.get("class").is_some_and(|c| c == "agent"))
        .map(|e| e.get("data-agent"))
        .collect();
    let mut sorted = agents.clone();
    sorted.sort();
    let mut want = vec![script, img, svg];
    want.sort();
    assert_eq!(sorted, want);
    assert!(
        dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{dom}"
    );
}

#[test]
fn report_json_and_its_refusals() {
    let repo = TestRepo::new();
    let r = repo.json(&["report", "--since", "2h"]);
    assert_eq!(r["requests"], 0);
    assert_eq!(r["bucket_secs"], 3600);
    assert!(r["buckets"].as_array().unwrap().len() >= 2);
    let (_, err) = repo.fails(&["report"], 2);
    assert!(err.contains("hint: give --html FILE"), "{err}");
    let (_, err) = repo.fails(&["report", "--format", "json", "--since", "soon"], 2);
    assert!(err.contains("'soon' is not a time"), "{err}");
    // A page that cannot be written: the old one is left as it was.
    let page = repo.home.path().join("p.html");
    std::fs::write(&page, "old").unwrap();
    let (_, err) = repo.fails(
        &[
            "report",
            "--html",
            repo.home
                .path()
                .join("no/such/dir/p.html")
                .to_str()
                .unwrap(),
        ],
        2,
    );
    assert!(err.contains("[env.io]"), "{err}");
    repo.ok(&["report", "--html", page.to_str().unwrap()]);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.ends_with("</html>\n"));
    let leftovers: Vec<_> = std::fs::read_dir(repo.home.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
