//! A server with hooks/pre-receive takes the chains git hyperion writes and refuses forged
//! ones, leaving its refs untouched.

#![allow(clippy::unwrap_used)]

use crate::common;

use common::{TestRepo, forge, request_dir, server};

/// `git push` of one refspec from `client` to `server`; (success, stderr).
fn push(client: &TestRepo, server: &TestRepo, refspec: &str) -> (bool, String) {
    common::push(client, server, &[refspec])
}

/// Commit `tree` on top of `parent` with `message`, as a forger would.
fn forge(repo: &TestRepo, tree: &str, parent: &str, message: &str) -> String {
    repo.git(&["commit-tree", tree, "-p", parent, "-m", message])
        .trim()
        .to_owned()
}

/// The tree of `rev` with `name` replaced by a blob holding `content`.
fn tree_with(repo: &TestRepo, rev: &str, name: &str, content: &str) -> String {
    let blob_file = repo.home.path().join("blob");
    std::fs::write(&blob_file, content).unwrap();
    let blob = repo
        .git(&["hash-object", "-w", blob_file.to_str().unwrap()])
        .trim()
        .to_owned();
    let listing: String = repo
        .git(&["ls-tree", rev])
        .lines()
        .map(|l| {
            if l.ends_with(&format!("\t{name}")) {
                format!("100644 blob {blob}\t{name}")
            } else {
                l.to_owned()
            }
        })
        .map(|l| l + "\n")
        .collect();
    repo.git_in(&["mktree"], listing.as_bytes())
}

#[test]
fn honest_chains_are_taken_and_forged_ones_refused() {
    let client = TestRepo::new();
    let server = server();
    let d = request_dir(&client, 3, "push");
    let ids = client.enqueue(&d);
    let all = "refs/hyperion/requests/*:refs/hyperion/requests/*";
    // The server judges requests by its own target branch: it must exist there.
    let (ok, err) = push(&client, &server, "main");
    assert!(ok, "{err}");
    let (ok, err) = push(&client, &server, all);
    assert!(ok, "{err}");
    assert_eq!(server.ids(&["list"]).len(), 3);

    // Transitions, including a heartbeat that replaces the previous one, push fine.
    client.ok(&["dequeue", "--worker", "w", "--batch", "2"]);
    client.ok(&["heartbeat", &ids[0], "--worker", "w"]);
    assert!(push(&client, &server, all).0);
    client.ok(&["heartbeat", &ids[0], "--worker", "w"]);
    // A landing: the commit on main and the chain's record, pushed together.
    let landed = client.landing(&ids[1]);
    client.ok(&["complete", &ids[1], "--worker", "w", "--landed", &landed]);
    let (ok, err) = common::push(&client, &server, &[&format!("+{all}"), "main"]);
    assert!(ok, "{err}");
    assert_eq!(
        server.json(&["show", &ids[1]])["record"]["status"],
        "applied"
    );

    let r = |id: &str| format!("refs/hyperion/requests/{id}");
    let before = server.hyperion_refs();
    let tip = client.git(&["rev-parse", &r(&ids[2])]).trim().to_owned();
    // The record at the tip: the last paragraph of its message.
    let record = client
        .git(&["log", "-1", "--format=%B", &tip])
        .trim()
        .rsplit("\n\n")
        .next()
        .unwrap()
        .to_owned();
    assert!(record.contains("\"status\":\"pending\""), "{record}");
    // A forger writes the exact form of a chain commit (summary, event, record).
    let message = |from: &str, to: &str| {
        format!(
            "hyperion: land {} ({from} -> {to})\n\n{{\"action\":\"land\",\"from\":\"{from}\",\"to\":\"{to}\",\"actor\":\"x\",\"at\":\"2026-01-01T00:00:00Z\"}}\n\n{}\n",
            ids[2],
            record.replace("\"pending\"", &format!("\"{to}\""))
        )
    };
    let tip_tree = client
        .git(&["rev-parse", &format!("{tip}^{{tree}}")])
        .trim()
        .to_owned();

    // 1. An illegal transition: pending straight to applied.
    let forged = forge(&client, &tip_tree, &tip, &message("pending", "applied"));
    client.git(&["update-ref", &r(&ids[2]), &forged]);
    let (ok, err) = push(&client, &server, &format!("{}:{}", r(&ids[2]), r(&ids[2])));
    assert!(!ok && err.contains("chain.illegal_transition"), "{err}");

    // 2. A payload edited after enqueue, under a legal-looking transition.
    let edited = client
        .git(&["show", &format!("{tip}:request.json")])
        .replace("change 2", "something else");
    let t = tree_with(&client, &tip, "request.json", &edited);
    let forged = forge(&client, &t, &tip, &message("pending", "dead"));
    client.git(&["update-ref", &r(&ids[2]), &forged]);
    let (ok, err) = push(&client, &server, &format!("{}:{}", r(&ids[2]), r(&ids[2])));
    assert!(!ok && err.contains("chain.payload_changed"), "{err}");

    // 3. A chain pushed under another request's id.
    let (ok, err) = push(
        &client,
        &server,
        &format!("{}:refs/hyperion/requests/0123456789abcdef", r(&ids[1])),
    );
    assert!(!ok && err.contains("chain.wrong_id"), "{err}");

    // 4. Rewriting history: the server's tip dropped.
    let root = client.git(&["rev-list", "--max-parents=0", &r(&ids[1])]);
    client.git(&["update-ref", &r(&ids[1]), root.trim()]);
    let (ok, err) = push(&client, &server, &format!("+{}:{}", r(&ids[1]), r(&ids[1])));
    assert!(!ok && err.contains("push.rewrites_history"), "{err}");

    // 5. Deleting an unfinished request.
    let (ok, err) = push(&client, &server, &format!(":{}", r(&ids[0])));
    assert!(!ok && err.contains("push.delete_unfinished"), "{err}");
    assert_eq!(
        server.hyperion_refs(),
        before,
        "refused pushes change nothing on the server"
    );

    // Deleting a finished one (as after gc) is fine.
    let (ok, err) = push(&client, &server, &format!(":{}", r(&ids[1])));
    assert!(ok, "{err}");
    assert_eq!(server.ids(&["list"]).len(), 2);
}

/// A new request is held to the server's own view of its target, as `validate` there would
/// hold it: here the server's policy denies a path the client's does not.
#[test]
fn a_new_request_is_checked_against_the_servers_target_and_policy() {
    let client = TestRepo::new();
    let server = server();
    // The server's main: the client's, plus a policy that keeps requests out of secret/.
    client.git(&["checkout", "-q", "-b", "strict"]);
    std::fs::create_dir_all(client.path().join(".hyperion")).unwrap();
    std::fs::write(
        client.path().join(".hyperion/policy.toml"),
        "[paths]\ndeny = [\"secret/**\"]\n",
    )
    .unwrap();
    client.git(&["add", "-A"]);
    client.git(&["commit", "-q", "-m", "strict policy"]);
    client.git(&["checkout", "-q", "main"]);
    let (ok, err) = push(&client, &server, "strict:refs/heads/main");
    assert!(ok, "{err}");

    let diff = "diff --git a/secret/key.txt b/secret/key.txt\nnew file mode 100644\n--- /dev/null\n+++ b/secret/key.txt\n@@ -0,0 +1 @@\n+not for agents\n";
    let patch = client.home.path().join("secret.diff");
    std::fs::write(&patch, diff).unwrap();
    let id = client
        .ok(&[
            "enqueue",
            "--patch",
            patch.to_str().unwrap(),
            "--task",
            "T-secret",
            "--agent",
            "a",
        ])
        .trim()
        .to_owned();
    let before = server.hyperion_refs();
    let r = format!("refs/hyperion/requests/{id}");
    let (ok, err) = push(&client, &server, &format!("{r}:{r}"));
    assert!(!ok, "the server's policy refuses it");
    assert!(err.contains("path.denied"), "{err}");
    assert_eq!(server.hyperion_refs(), before, "nothing was stored");
}

/// Everything the queue and the worker write — landings with their notes, a rollback,
/// heartbeats that replace each other, a release, a retry, an expired lease, a dead letter
/// and its requeue — is taken by a hooked server, and `doctor` finds nothing on either side.
#[test]
fn every_kind_of_honest_chain_is_taken_and_passes_doctor() {
    let client = TestRepo::new();
    client.git(&["config", "hyperion.retryBackoff", "0s"]);
    let server = server();
    let d = request_dir(&client, 4, "honest");
    let ids = client.enqueue(&d);
    let all = "refs/hyperion/*:refs/hyperion/*";
    assert!(common::push(&client, &server, &["main", all]).0);

    client.ok(&["dequeue", "--worker", "w", "--batch", "3"]);
    client.ok(&["heartbeat", &ids[0], "--worker", "w"]);
    client.ok(&["heartbeat", &ids[0], "--worker", "w"]);
    client.ok(&["release", &ids[0], "--worker", "w"]);
    let failed = |id: &str, extra: &[&str]| {
        let mut args = vec!["complete", id, "--worker", "w", "--failed"];
        args.extend(extra);
        client.ok(&args);
    };
    failed(
        &ids[1],
        &["check.timeout", "--class", "check", "--transient"],
    );
    failed(
        &ids[2],
        &["apply.conflict", "--class", "apply", "--message", "c"],
    );
    client.ok(&["requeue", &ids[2], "--reason", "try again"]);
    // A lease that runs out and is swept back.
    client.ok(&[
        "dequeue", "--worker", "gone", "--batch", "4", "--lease", "1s",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(
        client.json(&["sweep"])["requeued"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let (ok, err) = common::push(&client, &server, &[&format!("+{all}")]);
    assert!(ok, "{err}");

    let reports = client.run(&["worker", "--drain"]);
    assert!(reports.status.success());
    assert_eq!(client.ids(&["list", "--status", "applied"]).len(), 4);
    client.ok(&["rollback", &ids[3], "--reason", "not wanted"]);
    let (ok, err) = common::push(&client, &server, &["main", all, "refs/notes/hyperion"]);
    assert!(ok, "{err}");
    for repo in [&client, &server] {
        let doctor = repo.json(&["doctor"]);
        assert_eq!(doctor["requests"], 4);
        assert_eq!(doctor["findings"], serde_json::json!([]), "{doctor}");
    }
    assert_eq!(
        server.json(&["show", &ids[3]])["record"]["status"],
        "rolled_back"
    );
}

/// The root of `id`'s chain on `client`, and its tree with `name` set to `blob`.
fn root_with(client: &TestRepo, id: &str, name: &str, blob: &str) -> (forge::Link, String) {
    let root = forge::tip(client, id);
    let tree = forge::tree_with(client, &root.commit, "100644", "blob", blob, name);
    (root, tree)
}

/// A pushed object that would take long or much memory to read is refused from its header:
/// a request.json of 17 MiB and a patch of 65 MiB (zeros, so they travel small).
#[test]
fn oversized_blobs_are_refused_without_being_read() {
    let client = TestRepo::new();
    let server = server();
    let ids = client.enqueue(&request_dir(&client, 1, "bomb"));
    let id = &ids[0];
    let r = forge::refname(id);
    let huge_json = forge::blob(&client, &vec![b' '; 17 << 20]);
    let (root, tree) = root_with(&client, id, "request.json", &huge_json);
    let c = forge::commit(&client, id, None, &tree, &root.event, &root.record);
    forge::set(&client, id, &c);
    let start = std::time::Instant::now();
    let (ok, err) = push(&client, &server, &format!("{r}:{r}"));
    assert!(
        !ok && err.contains("chain.unreadable") && err.contains("more than"),
        "{err}"
    );
    // A patch of 65 MiB in changes/.
    let huge_patch = forge::blob(&client, &vec![b'+'; 65 << 20]);
    let changes = forge::mktree(&client, &[("100644", "blob", &huge_patch, "0001.patch")]);
    let tree = forge::tree_with(&client, &root.commit, "040000", "tree", &changes, "changes");
    let c = forge::commit(&client, id, None, &tree, &root.event, &root.record);
    forge::set(&client, id, &c);
    let (ok, err) = push(&client, &server, &format!("{r}:{r}"));
    assert!(
        !ok && err.contains("more than the 67108864 a push may carry"),
        "{err}"
    );
    eprintln!("two oversized pushes refused in {:?}", start.elapsed());
    assert_eq!(server.hyperion_refs(), "");
}

/// Commits no hyperion writes are refused: a message that is not UTF-8, an `encoding` or a
/// signature header, two parents; and a chain longer than the bound is refused after reading
/// only that many commits.
#[test]
fn hostile_chain_commits_are_refused() {
    let client = TestRepo::new();
    let server = server();
    let ids = client.enqueue(&request_dir(&client, 1, "hostile"));
    let id = &ids[0];
    let r = forge::refname(id);
    let root = forge::tip(&client, id);
    let tree = forge::tree(&client, &root.commit);
    let raw = |headers: &str, message: &[u8]| -> String {
        let mut data = format!(
            "tree {tree}\nparent {}\nauthor a <a@x> 1767225600 +0000\ncommitter a <a@x> 1767225600 +0000\n{headers}\n",
            root.commit
        )
        .into_bytes();
        data.extend_from_slice(message);
        client.git_in(
            &[
                "hash-object",
                "-t",
                "commit",
                "-w",
                "--stdin",
                "--literally",
            ],
            &data,
        )
    };
    let (ev, rec) = forge::lease(&root.record, "w", &forge::at(1), &forge::at(301));
    let good = forge::message(id, &ev, &rec);
    let mut latin1 = good.clone().into_bytes();
    latin1.extend_from_slice(b"\xe9t\xe9\n");
    let cases = [
        (raw("", &latin1), "not UTF-8"),
        (raw("encoding ISO-8859-1\n", good.as_bytes()), "header"),
        (
            raw(
                "gpgsig -----BEGIN PGP SIGNATURE-----\n x\n -----END PGP SIGNATURE-----\n",
                good.as_bytes(),
            ),
            "header",
        ),
        (raw("", good.as_bytes()), "ok"),
    ];
    assert!(
        push(&client, &server, "main").0,
        "the target branch reaches the server"
    );
    for (commit, expect) in &cases[..3] {
        forge::set(&client, id, commit);
        let (ok, err) = push(&client, &server, &format!("{r}:{r}"));
        assert!(
            !ok && err.contains("chain.unreadable") && err.contains(expect),
            "{err}"
        );
    }
    // The same commit written cleanly is taken: the refusals were for the form.
    forge::set(&client, id, &cases[3].0);
    let (ok, err) = push(&client, &server, &format!("{r}:{r}"));
    assert!(ok, "{err}");
    // A merge in a chain.
    let merge = client
        .git(&[
            "commit-tree",
            &tree,
            "-p",
            &cases[3].0,
            "-p",
            "main",
            "-m",
            &good,
        ])
        .trim()
        .to_owned();
    forge::set(&client, id, &merge);
    let (ok, err) = push(&client, &server, &format!("{r}:{r}"));
    assert!(!ok && err.contains("2 parents"), "{err}");

    // 12,000 commits on one chain, made with fast-import: refused after 10,000.
    let mut stream = String::new();
    for i in 0..12_000 {
        let from = if i == 0 {
            format!("from {}\n", root.commit)
        } else {
            String::new()
        };
        // Each commit in hyperion's form, so that only the length refuses the chain.
        stream.push_str(&format!(
            "commit {r}\ncommitter a <a@x> 1767225600 +0000\ndata {}\n{good}{from}\n",
            good.len()
        ));
    }
    client.git_in(&["fast-import", "--quiet", "--force"], stream.as_bytes());
    let start = std::time::Instant::now();
    let (ok, err) = push(&client, &server, &format!("+{r}:{r}"));
    assert!(!ok && err.contains("more than 10000 commits"), "{err}");
    eprintln!("a chain of 12,000 commits refused in {:?}", start.elapsed());
}
