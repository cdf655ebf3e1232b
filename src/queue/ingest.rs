//! Pushed branches as change requests (`git hyperion ingest`).
//!
//! A branch is read, never changed: its tip, its merge-base with the target branch
//! (`git rev-parse TARGET...TIP`), and the diff between the two as git itself writes it
//! (`git diff --binary --full-index`, every option that changes its shape pinned). What comes
//! out is raw diff text plus the request's metadata (agent, task, title, checks) taken from the
//! branch's name and the tip's trailers; the caller wraps it with [`crate::request::patch::wrap`] and
//! sends it down the one path every request takes (schema, target, policy, secrets, archived
//! ids). Nothing here writes to the repository.
//!
//! Only branches (`refs/heads/…`) and remote-tracking branches (`refs/remotes/…`) are ever
//! looked at: a pattern or a ref elsewhere (`refs/hyperion/…`, tags, notes) is refused.

use std::path::Path;

use gix::ObjectId;
use gix::bstr::ByteSlice;

use crate::code::Code;
use crate::error::{Error, Problem, Result};
use crate::request::target::Tip;

/// The pattern used when neither the command line nor `hyperion.ingest.pattern` names one.
pub const DEFAULT_PATTERN: &str = "refs/heads/agent/*/*";

/// Trailers of a branch's tip commit that override what its name says.
pub const AGENT_TRAILER: &str = "Hyperion-Agent";
pub const TASK_TRAILER: &str = "Hyperion-Task";
/// A check the request asks for (repeatable).
pub const CHECK_TRAILER: &str = "Hyperion-Check";
/// 0–9.
pub const PRIORITY_TRAILER: &str = "Hyperion-Priority";

/// The namespaces ingest reads: local and remote-tracking branches.
const NAMESPACES: &[&str] = &["refs/heads/", "refs/remotes/"];

/// Longest title the schema accepts (characters).
const TITLE_MAX: usize = 300;
/// Longest description the schema accepts (characters).
const DESCRIPTION_MAX: usize = 65_536;

/// A ref or pattern as given (`agent/a/t`, `refs/heads/agent/*/*`, `refs/remotes/origin/agent/*/*`)
/// as a full pattern under `refs/heads/` or `refs/remotes/`. A name without `refs/` is a branch.
/// Refused: anything outside those namespaces, empty, or a name git would not accept even with
/// its glob characters taken out.
pub fn parse_pattern(given: &str) -> std::result::Result<String, String> {
    let shown = given.escape_debug();
    let given = given.trim();
    if given.ends_with("HEAD") && !given.contains('/') || given == "@" {
        return Err(format!(
            "'{shown}' is not a branch: name the branch itself (agent/A/T, refs/heads/…)"
        ));
    }
    let full = if given.starts_with("refs/") {
        given.to_owned()
    } else {
        format!("refs/heads/{given}")
    };
    let Some(ns) = NAMESPACES.iter().find(|ns| full.starts_with(**ns)) else {
        return Err(format!(
            "'{shown}' is outside refs/heads/ and refs/remotes/: ingest reads branches only"
        ));
    };
    let rest = &full[ns.len()..];
    // The name git would check, with every glob character made an ordinary one.
    let plain: String = rest
        .chars()
        .map(|c| {
            if matches!(c, '*' | '?' | '[' | ']') {
                'x'
            } else {
                c
            }
        })
        .collect();
    let plain = format!("{ns}{}", plain.trim_end_matches('/'));
    if rest.is_empty()
        || rest.split('/').any(|c| c == "..")
        || gix::validate::reference::name(plain.as_bytes().as_bstr()).is_err()
    {
        return Err(format!("'{shown}' is not a valid ref name or pattern"));
    }
    Ok(full)
}

/// The refs under `refs/heads/` and `refs/remotes/` that match one of `patterns` (each as
/// [`parse_pattern`] returns it: `*` within a component, `**` across, `?`, `[a-z]`; a pattern
/// without a glob character also matches everything below it), sorted by name, each once,
/// with the object it points at. Symbolic refs (`refs/remotes/origin/HEAD`) are left out.
pub fn matching(repo: &gix::Repository, patterns: &[String]) -> Result<Vec<(String, ObjectId)>> {
    let mut found = std::collections::BTreeMap::new();
    for pattern in patterns {
        let literal = pattern
            .find(['*', '?', '['])
            .map_or(pattern.as_str(), |at| &pattern[..at]);
        let prefix = match literal.rfind('/') {
            Some(at) => &literal[..=at],
            None => literal,
        };
        if !NAMESPACES.iter().any(|ns| prefix.starts_with(ns)) {
            // parse_pattern refuses these; never list refs/hyperion or anything else.
            return Err(Error::Usage(format!(
                "'{pattern}' is outside refs/heads/ and refs/remotes/"
            )));
        }
        for (name, id) in crate::git::refs::list(repo.common_dir(), prefix)? {
            if let Some(id) = id
                && crate::request::paths::glob_match(pattern, &name)
            {
                found.insert(name, id);
            }
        }
    }
    Ok(found.into_iter().collect())
}

/// What a branch is, read: everything a request needs, or why it cannot be one.
#[derive(Debug)]
pub enum Read {
    /// A diff to wrap, with its metadata.
    Diff(Branch),
    /// Nothing to ingest (the branch adds nothing to its merge-base): not an error.
    Nothing(Problem),
    /// The branch cannot become a request.
    Refused(Problem),
}

/// A branch read for ingest.
#[derive(Debug, Clone)]
pub struct Branch {
    pub refname: String,
    pub tip: ObjectId,
    /// Its merge-base with the target.
    pub base: ObjectId,
    /// `git diff --binary --full-index BASE TIP`.
    pub diff: String,
    pub agent: String,
    pub task: String,
    /// The tip's subject (clipped to the schema's 300 characters), if it has one.
    pub title: Option<String>,
    /// The tip's message below the subject, and where the request came from.
    pub description: String,
    pub checks: Vec<String>,
    pub priority: Option<u8>,
}

/// Read branch `refname` at `tip` against `target`: its merge-base, its diff (refused beyond
/// `max_bytes` without being read) and its metadata. `git_dir` is where git runs.
pub fn read(
    repo: &gix::Repository,
    git_dir: &Path,
    refname: &str,
    tip: ObjectId,
    target: &Tip,
    max_bytes: usize,
) -> Result<Read> {
    let shown = refname.escape_debug().to_string();
    if gix::validate::reference::name(refname.as_bytes().as_bstr()).is_err()
        || !NAMESPACES.iter().any(|ns| refname.starts_with(ns))
    {
        return Ok(Read::Refused(Problem::new(
            Code::IngestBadRef,
            format!("'{shown}' is not a valid branch name"),
            "push branches with names git accepts (`git check-ref-format`)",
        )));
    }
    let message = match repo.find_object(tip) {
        Ok(o) if o.kind == gix::object::Kind::Commit => o
            .into_commit()
            .message_raw()
            .map(|m| m.to_str_lossy().into_owned())
            .unwrap_or_default(),
        Ok(_) | Err(_) => {
            return Ok(Read::Refused(Problem::new(
                Code::IngestBadRef,
                format!("'{shown}' does not point at a commit ({tip})"),
                "a branch to ingest must point at a commit",
            )));
        }
    };
    // Who and what: trailers first, then the branch's name.
    let (name_agent, name_task) = agent_task_from_name(refname);
    let agent = trailer(&message, AGENT_TRAILER).or(name_agent);
    let task = trailer(&message, TASK_TRAILER).or(name_task);
    let (Some(agent), Some(task)) = (
        agent.filter(|a| !a.is_empty()),
        task.filter(|t| !t.is_empty()),
    ) else {
        return Ok(Read::Refused(Problem::new(
            Code::IngestNoAgent,
            format!("cannot tell the agent and task of '{shown}'"),
            format!(
                "name the branch agent/<agent>/<task>, or add `{AGENT_TRAILER}: NAME` and `{TASK_TRAILER}: ID` trailers to its tip commit"
            ),
        )));
    };
    let priority = match trailer(&message, PRIORITY_TRAILER) {
        None => None,
        Some(p) => match p.parse::<u8>() {
            Ok(p) if p <= 9 => Some(p),
            _ => {
                return Ok(Read::Refused(Problem::new(
                    Code::IngestBadTrailer,
                    format!(
                        "'{}: {}' is not a priority from 0 to 9",
                        PRIORITY_TRAILER,
                        p.escape_debug()
                    ),
                    "give a whole number from 0 (least urgent) to 9",
                )));
            }
        },
    };
    let checks = trailers(&message, CHECK_TRAILER);
    let (title, body) = subject_and_body(&message);

    // Where the branch left the target.
    let target_commit = target.commit.to_string();
    let tip_hex = tip.to_string();
    let range = format!("{target_commit}...{tip_hex}");
    let out = crate::git::command::run(
        git_dir,
        &["rev-parse", &range],
        b"",
        "git rev-parse (merge-base)",
    )?;
    let Some(base) = String::from_utf8_lossy(&out).lines().find_map(|l| {
        l.strip_prefix('^')
            .and_then(|h| ObjectId::from_hex(h.as_bytes()).ok())
    }) else {
        return Ok(Read::Refused(Problem::new(
            Code::IngestUnrelated,
            format!(
                "'{shown}' has no history in common with '{}'",
                target.target.name()
            ),
            "branch off the target (`git switch -c agent/A/T main`) and commit the work there",
        )));
    };
    if base == tip {
        return Ok(Read::Nothing(Problem::new(
            Code::IngestEmpty,
            format!(
                "'{shown}' has no commit that '{}' does not have",
                target.target.name()
            ),
            "commit the work on the branch, or delete a branch that was merged",
        )));
    }

    // The diff, as git writes it, with every setting that changes its shape pinned, into a
    // file: a diff larger than the policy allows is refused without being read.
    let base_hex = base.to_string();
    let mut file =
        tempfile::tempfile().map_err(|e| Error::io("could not create a temporary file", e))?;
    let out = file
        .try_clone()
        .map_err(|e| Error::io("could not create a temporary file", e))?;
    crate::git::command::run_into(
        git_dir,
        &[
            "-c",
            "core.quotePath=true",
            "-c",
            "diff.noprefix=false",
            "-c",
            "diff.mnemonicPrefix=false",
            "-c",
            "diff.suppressBlankEmpty=false",
            "diff",
            "--binary",
            "--full-index",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "--find-renames",
            "--submodule=short",
            "--diff-algorithm=myers",
            "--indent-heuristic",
            "--unified=3",
            "--src-prefix=a/",
            "--dst-prefix=b/",
            &base_hex,
            &tip_hex,
            "--",
        ],
        b"",
        out,
        "git diff",
    )?;
    let len = file
        .metadata()
        .map_err(|e| Error::io("could not read a temporary file", e))?
        .len();
    if len > max_bytes as u64 {
        return Ok(Read::Refused(Problem::new(
            Code::LimitRequestBytes,
            format!("the diff of '{shown}' is {len} bytes; the policy allows {max_bytes}"),
            "split the work into several branches",
        )));
    }
    if len == 0 {
        return Ok(Read::Nothing(Problem::new(
            Code::IngestEmpty,
            format!(
                "'{shown}' changes nothing against its merge-base with '{}'",
                target.target.name()
            ),
            "commit the work on the branch, or delete a branch that was merged",
        )));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    use std::io::{Read as _, Seek as _};
    file.seek(std::io::SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(|e| Error::io("could not read a temporary file", e))?;
    let Ok(diff) = String::from_utf8(bytes) else {
        return Ok(Read::Refused(Problem::new(
            Code::PatchNotUtf8,
            format!("the diff of '{shown}' is not UTF-8 text"),
            "text files must be UTF-8; other files are taken as binary only when git sees them so (a NUL byte, or `-diff` in .gitattributes)",
        )));
    };
    let mut description = body;
    if !description.is_empty() {
        description.push_str("\n\n");
    }
    description.push_str(&format!(
        "Ingested from commit {tip_hex} (merge-base {base_hex} with {}).",
        target.target.name()
    ));
    let description = clip(&description, DESCRIPTION_MAX);
    Ok(Read::Diff(Branch {
        refname: refname.to_owned(),
        tip,
        base,
        diff,
        agent,
        task,
        title: title.map(|t| clip(&t, TITLE_MAX)),
        description,
        checks,
        priority,
    }))
}

/// Agent and task from a branch named `agent/<agent>/<task…>` (below `refs/heads/`, or below
/// `refs/remotes/<remote>/`); the task is everything after the agent, slashes included.
pub fn agent_task_from_name(refname: &str) -> (Option<String>, Option<String>) {
    let short = if let Some(s) = refname.strip_prefix("refs/heads/") {
        s
    } else if let Some(s) = refname.strip_prefix("refs/remotes/") {
        s.split_once('/').map_or("", |(_, rest)| rest)
    } else {
        ""
    };
    match short.strip_prefix("agent/").and_then(|r| r.split_once('/')) {
        Some((agent, task)) if !agent.is_empty() && !task.is_empty() => {
            (Some(agent.to_owned()), Some(task.to_owned()))
        }
        _ => (None, None),
    }
}

/// The first non-empty value of trailer `key` (see [`crate::git::message::trailers`]).
fn trailer(message: &str, key: &str) -> Option<String> {
    trailers(message, key).into_iter().next()
}

/// Every non-empty value of trailer `key`, in order.
fn trailers(message: &str, key: &str) -> Vec<String> {
    crate::git::message::trailers(message, key)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The subject (first paragraph, lines joined by spaces, as git's `%s`) and the rest.
fn subject_and_body(message: &str) -> (Option<String>, String) {
    let message = message.trim_start_matches('\n');
    let (first, rest) = message.split_once("\n\n").unwrap_or((message, ""));
    let subject = first
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    // Control characters are refused by the schema in a title: a tab becomes a space.
    let subject: String = subject
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let subject = subject.trim().to_owned();
    (
        (!subject.is_empty()).then_some(subject),
        rest.trim().to_owned(),
    )
}

fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => s[..at].to_owned(),
        None => s.to_owned(),
    }
}

/// Apply `req` in memory onto `tip`, as a worker would, and throw the result away: a refusal
/// (a conflict with the target, a file over a limit) as a problem. `repo` must be a handle of
/// its own (its object memory is emptied).
pub fn trial_apply(
    repo: &gix::Repository,
    tip: &Tip,
    req: &crate::request::model::ChangeRequest,
    limits: &crate::request::limits::Limits,
) -> Result<Option<Problem>> {
    let result = crate::request::apply::apply_request(repo, tip.tree, req, limits);
    crate::git::pack::discard(repo);
    Ok(match result {
        Ok(_) => None,
        Err(crate::request::apply::Error::Failed(e)) => return Err(e),
        Err(crate::request::apply::Error::Refused(refusal)) => Some(Problem::new(
            refusal.code(),
            format!(
                "does not apply to '{}' at {}: {}",
                tip.target.name(),
                tip.commit,
                refusal.message()
            ),
            format!(
                "rebase the branch onto the target (`git rebase {}`), resolve the conflicts and push it again",
                tip.target.name()
            ),
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_stay_in_branches() {
        assert_eq!(parse_pattern("agent/*/*").unwrap(), "refs/heads/agent/*/*");
        assert_eq!(
            parse_pattern("refs/remotes/origin/agent/*/*").unwrap(),
            "refs/remotes/origin/agent/*/*"
        );
        for bad in [
            "refs/hyperion/*",
            "refs/hyperion/requests/*",
            "refs/tags/*",
            "refs/notes/hyperion",
            "refs/*",
            "refs/heads/",
            "refs/heads/a/../b",
            "refs/heads/a b",
            "refs/heads/a\nb",
            "HEAD",
            "",
        ] {
            assert!(parse_pattern(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn names_give_agent_and_task() {
        let at = |n| agent_task_from_name(n);
        assert_eq!(
            at("refs/heads/agent/claude/T-1"),
            (Some("claude".into()), Some("T-1".into()))
        );
        assert_eq!(
            at("refs/remotes/origin/agent/codex/feat/x"),
            (Some("codex".into()), Some("feat/x".into()))
        );
        assert_eq!(at("refs/heads/fix"), (None, None));
        assert_eq!(at("refs/heads/agent/only"), (None, None));
    }

    #[test]
    fn subject_and_trailers() {
        let m = "Fix the pager\nfor real\n\nBody text.\n\nHyperion-Check: unit\nHyperion-Check: lint\nHyperion-Agent: bot\n";
        let (s, b) = subject_and_body(m);
        assert_eq!(s.as_deref(), Some("Fix the pager for real"));
        assert!(b.starts_with("Body text."));
        assert_eq!(trailers(m, CHECK_TRAILER), vec!["unit", "lint"]);
        assert_eq!(trailer(m, AGENT_TRAILER), Some("bot".to_owned()));
    }
}
