//! A server with hooks/pre-receive takes the chains git hyperion writes and refuses forged
//! ones, leaving its refs untouched.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{TestRepo, request_dir, server};

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
    let out = common::pipe(
        Command::new("git")
            .current_dir(repo.path())
            .args(["mktree"]),
        listing.as_bytes(),
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
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
