//! Many real processes on one queue at once.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::HashMap;
use std::process::{Child, Stdio};

use common::{TestRepo, request_dir};
use serde_json::Value;

fn spawn_dequeuer(repo: &TestRepo, worker: &str, batch: usize) -> Child {
    // Each worker is a shell loop of real `git hyperion dequeue` processes until the queue
    // is empty; stdout collects every leased record.
    let script = format!(
        "while :; do out=$(\"$BIN\" dequeue --worker {worker} --batch {batch} --format json) || exit 3; \
         [ \"$out\" = \"[]\" ] && exit 0; printf '%s\\n' \"$out\"; done"
    );
    repo.command("bash")
        .arg("-c")
        .arg(script)
        .env("BIN", common::bin())
        .stdout(Stdio::piped())
        .spawn()
        .expect("bash runs")
}

#[test]
fn eight_processes_lease_each_of_500_requests_exactly_once() {
    eight_processes(None);
}

/// The same with the index out of the way: processes that do not get it at once work from the
/// refs side by side, so only the compare-and-swap on each ref keeps leases exclusive.
#[test]
fn eight_processes_racing_on_the_refs_lease_each_request_exactly_once() {
    eight_processes(Some("0ms"));
}

fn eight_processes(index_wait: Option<&str>) {
    let repo = TestRepo::new();
    if let Some(wait) = index_wait {
        repo.git(&["config", "hyperion.indexWait", wait]);
    }
    let d = request_dir(&repo, 500, "conc");
    let all: Vec<String> = repo.enqueue(&d);
    assert_eq!(all.len(), 500);
    let children: Vec<(String, Child)> = (0..8)
        .map(|w| {
            let name = format!("w{w}");
            let c = spawn_dequeuer(&repo, &name, 1 + w % 4);
            (name, c)
        })
        .collect();
    let mut owner_of: HashMap<String, String> = HashMap::new();
    let mut per_worker = Vec::new();
    for (name, child) in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{name} failed: {:?}", out.status);
        let mut n = 0;
        // One pretty-printed JSON array per dequeue call.
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let stream = serde_json::Deserializer::from_str(&text).into_iter::<Value>();
        for doc in stream {
            for r in doc.unwrap().as_array().unwrap() {
                let id = r["id"].as_str().unwrap().to_owned();
                assert_eq!(r["lease_owner"], name.as_str());
                if let Some(prev) = owner_of.insert(id.clone(), name.clone()) {
                    panic!("{id} leased twice: by {prev} and {name}");
                }
                n += 1;
            }
        }
        per_worker.push((name, n));
    }
    assert_eq!(owner_of.len(), 500, "every request leased: {per_worker:?}");
    // The refs agree: every request is leased, by the worker that reported it, once.
    let listed = repo.json(&["list"]);
    for r in listed.as_array().unwrap() {
        let id = r["id"].as_str().unwrap();
        assert_eq!(r["status"], "leased");
        assert_eq!(r["attempts"], 1, "{id} was leased more than once");
        assert_eq!(
            r["lease_owner"].as_str(),
            owner_of.get(id).map(String::as_str)
        );
    }
    assert!(
        per_worker.iter().filter(|(_, n)| *n > 0).count() >= 2,
        "work was shared: {per_worker:?}"
    );
    let doc = repo.json(&["doctor"]);
    assert_eq!(doc["findings"], serde_json::json!([]));
}
