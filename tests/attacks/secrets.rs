//! Class: secrets. Nothing matching a secret rule reaches an object, a ref, a note, the index
//! or a log: a request that carries one — in any field, any line of a patch, the decoded
//! content of a binary patch — is refused (`secret.detected`, the field named, the secret never
//! shown); output a worker captures (checks, hooks, error messages) is redacted before it is
//! stored, and the request lands or is parked as it would have been.
//!
//! Scripts that print secrets live in the test's home directory, outside the repository: a
//! policy or a hook committed to the repository would store the secret it spells. Policies
//! that must name a secret rule use `planted` ([`PLANTED_RULE`]), which finds `SECRETS[3]`
//! without spelling it.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::harness::{
    Attack, PLANTED_RULE, SECRETS, add_patch, adds, assert_no_secret_stored, request,
};

const AWS: &str = SECRETS[0];
const GITHUB: &str = SECRETS[1];
const SLACK: &str = SECRETS[2];
const PLANTED: &str = SECRETS[3];

/// An executable script in the test's home (outside the repository); its path.
fn script(a: &Attack, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = a.repo.home.path().join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// A policy check `name` that runs `script`.
fn check(name: &str, script: &Path) -> String {
    format!(
        "[checks.{name}]\nrun = [\"sh\", \"{}\"]\n",
        script.display()
    )
}

/// `request` with `checks` named.
fn with_checks(task: &str, path: &str, checks: &[&str]) -> Value {
    request(
        task,
        &[(path, "add", &add_patch(path, "hello\n"))],
        json!({ "checks": checks }),
    )
}

fn report<'r>(reports: &'r [Value], id: &str) -> &'r Value {
    reports
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no report for {id}: {reports:?}"))
}

/// Set the field at JSON pointer `pointer` of `v` (its parent must exist).
fn set(v: &mut Value, pointer: &str, value: Value) {
    let (parent, name) = pointer.rsplit_once('/').unwrap();
    v.pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .unwrap()
        .insert(name.to_owned(), value);
}

/// `git diff --cached --binary` of `path` going from `base` (absent: a new file) to `new`, made
/// in a scratch repository outside the one under attack.
fn binary_diff(path: &str, base: Option<&[u8]>, new: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| crate::common::hermetic::git(dir.path(), args);
    git(&["init", "-q"]);
    if let Some(base) = base {
        std::fs::write(dir.path().join(path), base).unwrap();
        git(&["add", path]);
        git(&["commit", "-q", "-m", "base"]);
    }
    std::fs::write(dir.path().join(path), new).unwrap();
    git(&["add", path]);
    git(&["diff", "--cached", "--binary"])
}

/// Text git takes for binary (a NUL up front), of `len` bytes of letters and digits that no
/// rule finds.
fn binary_base(len: usize) -> String {
    let mut s = String::from("\0");
    let mut x: u32 = 12345;
    while s.len() < len {
        x = x.wrapping_mul(1103515245).wrapping_add(12345);
        s.push(b"abcdefghijklmnopqrstuvwxyz0123456789 \n"[(x >> 16) as usize % 38] as char);
    }
    s
}

#[test]
fn a_secret_in_task_agent_title_or_description_is_refused_naming_the_field() {
    let mut a = Attack::new();
    a.with_policy_secret_rule();
    for (field, secret) in [
        ("task_id", AWS),
        ("agent", GITHUB),
        ("title", SLACK),
        ("description", PLANTED),
    ] {
        let mut req = adds(&format!("T-{field}"), "ok.txt", "fine\n");
        req[field] = format!("see {secret} here").into();
        let err = a.refused(&req, "secret.detected");
        assert!(err.contains(&format!("/{field}: ")), "{field}:\n{err}");
    }
    a.nothing_landed();
}

#[test]
fn a_secret_in_a_constrained_field_is_refused_by_name_not_echoed_by_the_schema_error() {
    // The schema refuses these values, and its messages quote them: the secret must be
    // reported as such, and not shown by the other problem.
    let mut a = Attack::new();
    a.with_policy_secret_rule();
    for (pointer, value) in [
        ("/kind", AWS.to_owned()),
        ("/base", GITHUB.to_owned()),
        ("/schema", PLANTED.to_owned()),
        ("/target", GITHUB.to_owned()),
        ("/priority", AWS.to_owned()),
        ("/changes/0/operation", SLACK.to_owned()),
        ("/changes/0/sha256", AWS.to_owned()),
        ("/changes/0/from", GITHUB.to_owned()),
    ] {
        let mut req = adds("T-constrained", "ok.txt", "fine\n");
        set(&mut req, pointer, value.into());
        let err = a.refused(&req, "secret.detected");
        assert!(err.contains(&format!("{pointer}: ")), "{pointer}:\n{err}");
    }
    // An unknown field whose name is the secret.
    let mut req = adds("T-name", "ok.txt", "fine\n");
    req[GITHUB] = 1.into();
    a.refused(&req, "secret.detected");
    a.nothing_landed();
}

#[test]
fn a_secret_in_a_path_a_file_target_or_a_check_name_is_refused() {
    let mut a = Attack::new();
    a.with_policy_secret_rule();
    let path = format!("notes/{AWS}.txt");
    let in_path = adds("T-path", &path, "fine\n");
    let err = a.refused(&in_path, "secret.detected");
    assert!(err.contains("/changes/0/path: "), "{err}");

    let mut in_target = adds("T-glob", "ok.txt", "fine\n");
    in_target["file_targets"] = json!(["ok.txt", format!("{PLANTED}/**")]);
    let err = a.refused(&in_target, "secret.detected");
    assert!(err.contains("/file_targets/1: "), "{err}");

    let mut in_check = adds("T-check", "ok.txt", "fine\n");
    in_check["checks"] = json!([GITHUB]);
    let err = a.refused(&in_check, "secret.detected");
    assert!(err.contains("/checks/0: "), "{err}");
    a.nothing_landed();
}

#[test]
fn a_secret_in_a_literal_binary_patch_is_refused() {
    // base85 and zlib hide the bytes from a scan of the patch text.
    let a = Attack::new();
    let content = format!("\0\u{1}header {GITHUB} trailer\0");
    let diff = binary_diff("blob.bin", None, content.as_bytes());
    assert!(diff.contains("GIT binary patch\nliteral "), "{diff}");
    assert!(!diff.contains(GITHUB));
    let req = request("T-literal", &[("blob.bin", "add", &diff)], json!({}));
    let err = a.refused(&req, "secret.detected");
    assert!(err.contains("/changes/0/patch: "), "{err}");
    a.nothing_landed();
}

#[test]
fn a_secret_split_across_the_inserts_of_a_binary_delta_is_refused() {
    // A delta inserts at most 127 bytes per instruction: 121 new bytes before the token put an
    // instruction byte inside it, so even the inflated delta does not hold it whole. Only the
    // content the delta makes from the target's file does.
    let mut a = Attack::new();
    let base = binary_base(6000);
    a.commit(&[("data.bin", &base)]);
    let mut new = base.clone().into_bytes();
    let inserted = format!("{} {AWS} ", "Q".repeat(120));
    new.splice(3000..3000, inserted.bytes());
    let diff = binary_diff("data.bin", Some(base.as_bytes()), &new);
    assert!(diff.contains("GIT binary patch\ndelta "), "{diff}");
    let req = request("T-delta", &[("data.bin", "update", &diff)], json!({}));
    let err = a.refused(&req, "secret.detected");
    assert!(err.contains("/changes/0/patch: "), "{err}");
    a.nothing_landed();
}

#[test]
fn a_secret_hidden_by_invisible_characters_is_refused() {
    let a = Attack::new();
    let split = |s: &str, at: usize, by: &str| format!("{}{by}{}", &s[..at], &s[at..]);
    let in_line = adds(
        "T-zwsp",
        "zw.txt",
        &format!("key = {}\n", split(AWS, 8, "\u{200b}")),
    );
    a.refused(&in_line, "secret.detected");
    let mut in_title = adds("T-wj", "ok.txt", "fine\n");
    in_title["title"] = format!("x {}", split(GITHUB, 6, "\u{2060}\u{feff}")).into();
    let err = a.refused(&in_title, "secret.detected");
    assert!(err.contains("/title: "), "{err}");
    a.nothing_landed();
}

#[test]
fn a_secret_in_a_context_line_the_target_does_not_hold_is_refused() {
    // Context and removed lines are stored with the patch too; only what the target's file
    // already holds may appear there (so that a person can remove a leaked secret).
    let mut a = Attack::new();
    a.commit(&[("conf.txt", "a\nb\nc\n")]);
    let patch = format!(
        "diff --git a/conf.txt b/conf.txt\n--- a/conf.txt\n+++ b/conf.txt\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n key = {AWS}\n"
    );
    let req = request("T-context", &[("conf.txt", "update", &patch)], json!({}));
    let err = a.refused(&req, "secret.detected");
    assert!(err.contains("/changes/0/patch: line 8: "), "{err}");
    a.nothing_landed();
}

#[test]
fn a_check_printing_secrets_on_stdout_and_stderr_lands_with_its_output_redacted() {
    let mut a = Attack::new();
    let leak = script(
        &a,
        "leak.sh",
        &format!("echo \"out {AWS} and {PLANTED}\"\necho \"err {GITHUB}\" >&2\n"),
    );
    a.with_policy(&check("leak", &leak));
    let id = a.enqueue(&with_checks("T-leak", "new.txt", &["leak"]));
    let reports = a.drain();
    assert_eq!(report(&reports, &id)["result"], "landed", "{reports:?}");
    let out = a.artifact(&id, "checks/leak.stdout");
    assert_eq!(
        out,
        "out [redacted aws-access-key-id] and [redacted planted]\n"
    );
    let err = a.artifact(&id, "checks/leak.stderr");
    assert_eq!(err, "err [redacted github-token]\n");
    assert_no_secret_stored(&a.repo.git_dir(), SECRETS);
}

#[test]
fn a_failing_check_that_prints_secrets_is_parked_with_its_output_redacted() {
    let mut a = Attack::new();
    let fail = script(
        &a,
        "fail.sh",
        &format!("echo \"token {SLACK}\"\necho \"{PLANTED}\" >&2\nexit 3\n"),
    );
    a.with_policy(&check("fail", &fail));
    let id = a.enqueue(&with_checks("T-fail", "new.txt", &["fail"]));
    a.drain();
    let record = a.parked(&id, "check.failed");
    assert_eq!(record["dead_class"], "check");
    assert!(
        a.artifact(&id, "checks/fail.stdout")
            .contains("[redacted slack-token]")
    );
    assert!(
        a.artifact(&id, "checks/fail.stderr")
            .contains("[redacted planted]")
    );
    a.nothing_on_branches();
}

#[test]
fn a_hook_refusal_quoting_a_secret_is_parked_with_the_message_redacted() {
    let a = Attack::new();
    let dir = a.repo.home.path().join("hooks");
    std::fs::create_dir_all(&dir).unwrap();
    script(
        &a,
        "hooks/10-guard",
        &format!("echo \"refused: {GITHUB} is not allowed\" >&2\nexit 1\n"),
    );
    a.repo
        .git(&["config", "hyperion.hooksDir", dir.to_str().unwrap()]);
    let id = a.enqueue(&adds("T-hook", "new.txt", "hello\n"));
    let reports = a.drain();
    let r = report(&reports, &id);
    assert_eq!(r["code"], "hook.refused", "{r}");
    // The report printed on stdout is redacted too: it is what a CI log keeps.
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("[redacted github-token]"),
        "{r}"
    );
    let record = a.parked(&id, "hook.refused");
    let message = record["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("refused: [redacted github-token] is not allowed"),
        "{message}"
    );
    a.nothing_landed();
}

#[test]
fn a_hook_message_cut_inside_a_secret_keeps_none_of_it() {
    // A refusal keeps the last 4096 bytes of what the hook said (src/gate/hooks.rs); here they
    // begin 10 bytes into a token.
    const KEPT: usize = 4096;
    let a = Attack::new();
    let dir = a.repo.home.path().join("hooks");
    std::fs::create_dir_all(&dir).unwrap();
    let into = 10;
    let pad = KEPT + 2 + into - 2 - GITHUB.len() - 1;
    script(
        &a,
        "hooks/10-guard",
        &format!(
            "{{ printf 'x %s\\n' '{GITHUB}'; yes padding-line | head -c {pad}; }} >&2\nexit 1\n"
        ),
    );
    a.repo
        .git(&["config", "hyperion.hooksDir", dir.to_str().unwrap()]);
    let id = a.enqueue(&adds("T-hook-cut", "new.txt", "hello\n"));
    a.drain();
    let record = a.parked(&id, "hook.refused");
    let message = record["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("hook 10-guard exited with 1: \u{2026}padding-line\n"),
        "{}",
        &message[..80]
    );
    assert_no_secret_stored(&a.repo.git_dir(), &[&GITHUB[into..]]);
    a.nothing_landed();
}

#[test]
fn a_secret_cut_by_the_output_tail_is_not_stored_in_part() {
    // The stored tail begins inside the token: what is left of it matches no rule, but is most
    // of the secret all the same.
    let tail = hyperion::gate::checks::OutputLimit::default().bytes;
    let mut a = Attack::new();
    let into = 10;
    // out = "x " TOKEN "\n" PAD; the tail starts `into` bytes into the token.
    let pad = tail + 2 + into - 2 - GITHUB.len() - 1;
    let cut = script(
        &a,
        "cut.sh",
        &format!("printf 'x %s\\n' '{GITHUB}'\nyes padding-line | head -c {pad}\n"),
    );
    a.with_policy(&check("cut", &cut));
    let id = a.enqueue(&with_checks("T-cut", "new.txt", &["cut"]));
    let reports = a.drain();
    assert_eq!(report(&reports, &id)["result"], "landed", "{reports:?}");
    let stored = a.artifact(&id, "checks/cut.stdout");
    assert!(
        stored.len() < tail && stored.starts_with("padding-line\n"),
        "{}",
        &stored[..40]
    );
    let rest = &GITHUB[into..];
    assert_no_secret_stored(&a.repo.git_dir(), &[rest]);
    assert_no_secret_stored(&a.repo.git_dir(), SECRETS);
}

#[test]
fn a_secret_written_in_pieces_is_redacted_as_the_whole_the_output_holds() {
    // Two writes with a pause between: two reads of the pipe, the token split between them.
    let mut a = Attack::new();
    let (head, rest) = AWS.split_at(9);
    let slow = script(
        &a,
        "slow.sh",
        &format!("printf 'key %s' '{head}'\nsleep 0.3\nprintf '%s end\\n' '{rest}'\n"),
    );
    a.with_policy(&check("slow", &slow));
    let id = a.enqueue(&with_checks("T-slow", "new.txt", &["slow"]));
    a.drain();
    assert_eq!(
        a.artifact(&id, "checks/slow.stdout"),
        "key [redacted aws-access-key-id] end\n"
    );
    assert_no_secret_stored(&a.repo.git_dir(), SECRETS);
}

#[test]
fn a_check_printing_the_value_of_a_workers_secret_variable_is_redacted() {
    // A plain random value that no rule recognises, but the worker has it in DEPLOY_TOKEN.
    // However the check came by it (here: a file), it is not stored.
    let value = "q8Zr2mWx7LpV4tNc";
    let mut a = Attack::new();
    let file = a.repo.home.path().join("value.txt");
    std::fs::write(&file, value).unwrap();
    let show = script(
        &a,
        "show.sh",
        &format!("echo \"deploying with $(cat '{}')\"\n", file.display()),
    );
    a.with_policy(&check("show", &show));
    let id = a.enqueue(&with_checks("T-env", "new.txt", &["show"]));
    let (reports, printed) = a.drain_with(&[], &[("DEPLOY_TOKEN", value)]);
    assert_eq!(report(&reports, &id)["result"], "landed", "{reports:?}");
    assert_eq!(
        a.artifact(&id, "checks/show.stdout"),
        "deploying with [redacted env:DEPLOY_TOKEN]\n"
    );
    assert!(!printed.contains(value), "{printed}");
    assert_no_secret_stored(&a.repo.git_dir(), &[value]);
}

#[test]
fn no_planted_secret_reaches_any_stored_byte_or_log_of_a_mixed_corpus() {
    // Accepted requests whose checks print secrets (landed, failed), one a hook refuses with a
    // secret, a clean binary one, and refused ones of every kind, enqueued and drained with
    // debug logs as text and as JSON; a dead letter requeued with a secret in its reason; a
    // worker id that is a secret. Then every object, ref, reflog, note, index and log.
    let env_value = "Vb3kQ9xR2mLp7wZt";
    let mut a = Attack::new();
    let value_file = a.repo.home.path().join("value.txt");
    std::fs::write(&value_file, env_value).unwrap();
    let ok = script(
        &a,
        "ok.sh",
        &format!(
            "echo \"{AWS} {PLANTED}\"\necho \"{GITHUB} $(cat '{}')\" >&2\n",
            value_file.display()
        ),
    );
    let bad = script(&a, "bad.sh", &format!("echo \"{SLACK}\" >&2\nexit 1\n"));
    let hooks = a.repo.home.path().join("hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    script(
        &a,
        "hooks/10-guard",
        &format!("grep -q hook-me && {{ echo \"no: {GITHUB} {PLANTED}\" >&2; exit 2; }}\nexit 0\n"),
    );
    a.repo
        .git(&["config", "hyperion.hooksDir", hooks.to_str().unwrap()]);
    a.with_policy(&format!("{}{}", check("ok", &ok), check("bad", &bad)));
    let mut printed = String::new();
    fn run(a: &Attack, printed: &mut String, args: &[&str]) -> std::process::Output {
        let out = a.repo.run(args);
        printed.push_str(&String::from_utf8_lossy(&out.stdout));
        printed.push_str(&String::from_utf8_lossy(&out.stderr));
        out
    }

    // Refused at the door, each with everything that prints it: text and JSON.
    let mut refused = [
        adds("T-r1", "a.txt", &format!("token = {GITHUB}\n")),
        adds("T-r2", &format!("{AWS}.txt"), "x\n"),
        adds("T-r3", "c.txt", &format!("{PLANTED}\n")),
        request(
            "T-r4",
            &[(
                "d.bin",
                "add",
                &binary_diff("d.bin", None, format!("\0{SLACK}\0").as_bytes()),
            )],
            json!({}),
        ),
    ];
    refused[0]["description"] = PLANTED.into();
    for (i, req) in refused.iter().enumerate() {
        let path = a.repo.write(&format!("refused-{i}.json"), req);
        for args in [
            vec!["enqueue"],
            vec!["--format", "json", "enqueue"],
            vec!["validate"],
        ] {
            let mut args = args.clone();
            args.push(path.to_str().unwrap());
            assert_eq!(
                run(&a, &mut printed, &args).status.code(),
                Some(1),
                "{args:?}"
            );
        }
    }

    // Accepted: two land, one fails its check, one is refused by the hook, one is binary.
    let bin = binary_diff("e.bin", None, b"\0clean binary\0");
    let first = [
        a.enqueue(&with_checks("T-a1", "a1.txt", &["ok"])),
        a.enqueue(&with_checks("T-a2", "a2.txt", &["bad"])),
    ];
    let (reports, logs) = a.drain_with(
        &[],
        &[("HYPERION_LOG", "debug"), ("DEPLOY_TOKEN", env_value)],
    );
    printed.push_str(&logs);
    assert_eq!(
        report(&reports, &first[0])["result"],
        "landed",
        "{reports:?}"
    );
    assert_eq!(report(&reports, &first[1])["result"], "dead", "{reports:?}");
    let mut hooked = adds("T-a3", "a3.txt", "x\n");
    hooked["title"] = "hook-me please".into();
    let second = [
        a.enqueue(&hooked),
        a.enqueue(&with_checks("T-a4", "a4.txt", &["ok"])),
        a.enqueue(&request("T-a5", &[("e.bin", "add", &bin)], json!({}))),
    ];
    let (reports, logs) = a.drain_with(
        &["--log-format", "json", "-vv"],
        &[("DEPLOY_TOKEN", env_value)],
    );
    printed.push_str(&logs);
    assert!(
        logs.contains("\"level\":\"DEBUG\""),
        "no JSON debug log:\n{logs}"
    );
    assert_eq!(
        report(&reports, &second[0])["code"],
        "hook.refused",
        "{reports:?}"
    );
    assert_eq!(
        report(&reports, &second[1])["result"],
        "landed",
        "{reports:?}"
    );
    assert_eq!(
        report(&reports, &second[2])["result"],
        "landed",
        "{reports:?}"
    );

    // A person requeues the dead letter with a secret in the reason; a worker with a secret
    // for an id is turned away.
    let reason = format!("retry with {GITHUB}");
    run(
        &a,
        &mut printed,
        &["requeue", &first[1], "--reason", &reason],
    );
    let out = run(&a, &mut printed, &["dequeue", "--worker", AWS]);
    assert_eq!(out.status.code(), Some(2));
    let (_, logs) = a.drain_with(&["-vv"], &[("DEPLOY_TOKEN", env_value)]);
    printed.push_str(&logs);
    for id in first.iter().chain(&second) {
        printed.push_str(&a.repo.ok(&["show", id, "--format", "json"]));
    }
    printed.push_str(&a.repo.ok(&["audit", "--format", "json"]));
    printed.push_str(
        &a.repo
            .git(&["log", "--all", "--notes=hyperion", "--format=%B%n%N"]),
    );

    // What was printed and stored shows the secrets were there, redacted.
    let stored = a.artifact(&first[0], "checks/ok.stderr");
    assert_eq!(
        stored,
        "[redacted github-token] [redacted env:DEPLOY_TOKEN]\n"
    );
    assert!(
        printed.contains("[redacted aws-access-key-id]"),
        "{printed}"
    );
    assert!(
        printed.contains("retry with [redacted github-token]"),
        "{printed}"
    );
    for s in SECRETS.iter().chain([&env_value]) {
        assert!(!printed.contains(s), "{s} was printed:\n{printed}");
    }
    let mut all: Vec<&str> = SECRETS.to_vec();
    all.push(env_value);
    assert_no_secret_stored(&a.repo.git_dir(), &all);
    // The planted rule is the policy's: redacting by it needs the policy, not only built-ins.
    assert!(PLANTED_RULE.contains("planted"));
}
