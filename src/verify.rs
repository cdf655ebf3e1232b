//! Checking pushed request chains, for a server's `pre-receive` hook.
//!
//! A server that shares a queue must not take a chain a client forged: a request that would
//! be refused at enqueue, an id that is not its dedupe key, a transition the lifecycle does
//! not allow, a record that disagrees with its events, a payload edited after enqueue, or
//! history rewritten. Objects are read through `git cat-file --batch`, because during
//! `pre-receive` the pushed objects sit in git's quarantine, which only git itself sees.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use crate::error::{Error, Problem, Result};
use crate::model::{Action, Record, Status};
use crate::store::{REQUESTS_PREFIX, parse_event, parse_record, patch_file_name};

/// Objects read by a `git cat-file --batch` process.
pub struct CatFile {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl CatFile {
    pub fn start(git_dir: &Path) -> Result<CatFile> {
        let mut child = Command::new("git")
            .arg("--git-dir")
            .arg(git_dir)
            .args(["cat-file", "--batch"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io("could not run git cat-file", e))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        Ok(CatFile {
            child,
            stdin,
            stdout,
        })
    }

    /// (kind, content) of `rev`, or `None` if it does not exist.
    pub fn get(&mut self, rev: &str) -> Result<Option<(String, Vec<u8>)>> {
        let io = |e| Error::io("git cat-file", e);
        writeln!(self.stdin, "{rev}").map_err(io)?;
        self.stdin.flush().map_err(io)?;
        let mut header = String::new();
        self.stdout.read_line(&mut header).map_err(io)?;
        let fields: Vec<&str> = header.split_whitespace().collect();
        if fields.len() != 3 {
            return Ok(None);
        }
        let size: usize = fields[2]
            .parse()
            .map_err(|_| Error::Git(format!("bad cat-file header: {header}")))?;
        let mut data = vec![0; size + 1];
        self.stdout.read_exact(&mut data).map_err(io)?;
        data.pop();
        Ok(Some((fields[1].to_owned(), data)))
    }

    fn blob(&mut self, rev: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.get(rev)?.filter(|(k, _)| k == "blob").map(|(_, d)| d))
    }
}

impl Drop for CatFile {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct ChainCommit {
    id: String,
    parent: Option<String>,
    tree: String,
    message: String,
}

fn read_commit(cat: &mut CatFile, id: &str) -> Result<Option<ChainCommit>> {
    let Some((kind, data)) = cat.get(id)? else {
        return Ok(None);
    };
    if kind != "commit" {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&data);
    let (headers, message) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut tree = String::new();
    let mut parent = None;
    for line in headers.lines() {
        if let Some(t) = line.strip_prefix("tree ") {
            tree = t.to_owned();
        } else if let Some(p) = line.strip_prefix("parent ") {
            if parent.is_some() {
                return Ok(None); // chains are linear
            }
            parent = Some(p.to_owned());
        }
    }
    Ok(Some(ChainCommit {
        id: id.to_owned(),
        parent,
        tree,
        message: message.to_owned(),
    }))
}

const ZERO: &str = "0000000000000000000000000000000000000000";

/// A chain commit's record: in its message, or (chains written before records moved there)
/// `state.json` in its tree.
fn record_of(cat: &mut CatFile, c: &ChainCommit) -> Result<Option<Record>> {
    if let Some(r) = parse_record(&c.message) {
        return Ok(Some(r));
    }
    Ok(cat
        .blob(&format!("{}:state.json", c.tree))?
        .and_then(|s| serde_json::from_slice(&s).ok()))
}

/// Check one pushed update of `refname` from `old` to `new` (all-zero ids for create and
/// delete, as `pre-receive` gives them). Returns every problem found.
pub fn check_update(
    cat: &mut CatFile,
    queue: &crate::queue::Queue,
    old: &str,
    new: &str,
    refname: &str,
) -> Result<Vec<Problem>> {
    let Some(id) = refname.strip_prefix(REQUESTS_PREFIX) else {
        return Ok(Vec::new());
    };
    let problem = |code: &'static str, message: String| {
        vec![
            Problem::new(
                code,
                message,
                "push only chains written by git hyperion; fetch and retry if the request moved",
            )
            .at(refname.to_owned()),
        ]
    };
    if new == ZERO {
        // Deleting a chain loses its history: only finished requests, as `gc` does.
        let record = match read_commit(cat, old)? {
            Some(c) => record_of(cat, &c)?,
            None => None,
        };
        return Ok(match record {
            Some(r) if r.status.is_final() => Vec::new(),
            _ => problem(
                "push.delete_unfinished",
                format!("{id} is not finished; its chain may not be deleted"),
            ),
        });
    }
    // Walk the new chain down to its root.
    let mut chain = Vec::new();
    let mut next = Some(new.to_owned());
    while let Some(c) = next {
        if chain.len() > 100_000 {
            return Ok(problem(
                "push.bad_chain",
                "the chain is implausibly long".into(),
            ));
        }
        let Some(commit) = read_commit(cat, &c)? else {
            return Ok(problem(
                "push.bad_chain",
                format!("{c} is not a linear chain commit"),
            ));
        };
        next = commit.parent.clone();
        chain.push(commit);
    }
    chain.reverse();
    let mut out = Vec::new();
    // The root: a request that passes validation, stored under its own id, pending.
    let root = &chain[0];
    let request = reassemble(cat, &root.tree)?;
    match request.map(|v| crate::validate::validate_value(&v)) {
        None => out.extend(problem(
            "push.bad_chain",
            "the root lacks request.json or a patch".into(),
        )),
        Some(Err(ps)) => out.extend(ps),
        Some(Ok(req)) if req.id() != id => out.extend(problem(
            "push.wrong_id",
            format!(
                "the request's id is {}, but it was pushed as {id}",
                req.id()
            ),
        )),
        // A new request is held to what `validate` checks against its target here: the
        // target's tree and this repository's policy for it.
        Some(Ok(req)) if old == ZERO => {
            for p in queue.check_against_targets(&[&req])?.into_iter().flatten() {
                out.push(p.at(refname.to_owned()));
            }
        }
        Some(Ok(_)) => {}
    }
    // The payload: request.json and the changes/ tree, byte for byte.
    let payload = |cat: &mut CatFile, tree: &str| -> Result<Vec<Option<Vec<u8>>>> {
        Ok(vec![
            cat.blob(&format!("{tree}:request.json"))?,
            cat.get(&format!("{tree}:changes"))?.map(|(_, d)| d),
        ])
    };
    let root_payload = payload(cat, &root.tree)?;
    let mut previous: Option<Status> = None;
    for c in &chain {
        let event = parse_event(&c.message);
        let record = record_of(cat, c)?;
        let (Some(event), Some(record)) = (event, record) else {
            out.extend(problem(
                "push.bad_chain",
                format!("{} lacks its event or its record", c.id),
            ));
            break;
        };
        if record.id != id || record.status != event.to {
            out.extend(problem(
                "push.bad_chain",
                format!("{}: its record disagrees with its event", c.id),
            ));
        }
        let legal = match previous {
            None => {
                event.from.is_none()
                    && event.to == Status::Pending
                    && event.action == Action::Enqueue
            }
            Some(p) => event.from == Some(p) && p.may_become(event.to),
        };
        if !legal {
            out.extend(problem(
                "push.illegal_transition",
                format!(
                    "{}: {:?} -> {} does not follow {:?}",
                    c.id, event.from, event.to, previous
                ),
            ));
        }
        if payload(cat, &c.tree)? != root_payload {
            out.extend(problem(
                "push.payload_changed",
                format!(
                    "{}: the request or its patches were changed after enqueue",
                    c.id
                ),
            ));
        }
        previous = Some(event.to);
    }
    // An update must extend the chain the server has (a heartbeat may replace the tip).
    if old != ZERO && !chain.iter().any(|c| c.id == old) {
        let replaced = match read_commit(cat, old)? {
            Some(o) => {
                let heartbeat =
                    parse_event(&o.message).is_some_and(|e| e.action == Action::Heartbeat);
                heartbeat
                    && o.parent.is_some()
                    && chain.iter().any(|c| Some(&c.id) == o.parent.as_ref())
            }
            None => false,
        };
        if !replaced {
            out.extend(problem(
                "push.rewrites_history",
                format!("the push drops {old} from {id}'s chain"),
            ));
        }
    }
    Ok(out)
}

/// The full request stored in a root tree, as JSON, with patches put back.
fn reassemble(cat: &mut CatFile, tree: &str) -> Result<Option<serde_json::Value>> {
    let Some(json) = cat.blob(&format!("{tree}:request.json"))? else {
        return Ok(None);
    };
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&json) else {
        return Ok(None);
    };
    let n = value["changes"].as_array().map_or(0, Vec::len);
    for i in 0..n {
        let Some(patch) = cat.blob(&format!("{tree}:changes/{}", patch_file_name(i)))? else {
            return Ok(None);
        };
        value["changes"][i]["patch"] = String::from_utf8_lossy(&patch).into_owned().into();
    }
    Ok(Some(value))
}

/// Check every update `pre-receive` was given (`old new ref` lines); problems by ref.
pub fn check_push(
    queue: &crate::queue::Queue,
    lines: &str,
) -> Result<HashMap<String, Vec<Problem>>> {
    let mut cat = CatFile::start(queue.store().git_dir())?;
    let mut out = HashMap::new();
    for line in lines.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [old, new, refname] = parts[..] else {
            continue;
        };
        let problems = check_update(&mut cat, queue, old, new, refname)?;
        if !problems.is_empty() {
            out.insert(refname.to_owned(), problems);
        }
    }
    Ok(out)
}
