//! Pushing and fetching through the `git` binary: git's transports (file paths, ssh, https,
//! credential helpers) are the reference, and a push's lease is the remote's own
//! compare-and-swap. Nothing here knows what a change request is: refs are pushed with a
//! lease on what the remote is expected to hold, and fetched into names the caller chooses.
//!
//! A push is one `git push --porcelain` (with `--atomic` when asked), whatever the number of
//! refs: its per-ref outcome is read from git's porcelain lines. A push or fetch that reached
//! no remote at all is a [`Code::RemoteUnreachable`] error with what git said.

use std::path::Path;

use gix::ObjectId;

use crate::code::Code;
use crate::error::{Error, Result};

/// What the remote must hold for a ref before a push may move it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The ref must not exist there (create-only: `--force-with-lease=REF:`).
    Absent,
    /// The ref must be at this commit (`--force-with-lease=REF:OID`).
    At(ObjectId),
}

/// One ref to push: `new` to `name` (the same name on both sides).
#[derive(Debug, Clone)]
pub struct Update {
    pub name: String,
    pub new: ObjectId,
    pub expect: Expect,
}

/// How one ref of a push ended, from git's porcelain flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Created or moved (`*`, ` `, `+`).
    Pushed,
    /// The remote held `new` already (`=`).
    UpToDate,
    /// Refused (`!`): the lease did not hold (`stale info`), the remote refused it (its
    /// hook, non-fast-forward), or another ref of an atomic push was refused
    /// (`atomic push failed`). The reason is git's.
    Rejected(String),
}

/// The outcome of each ref of a push, by name, in the order git printed them.
pub type Report = Vec<(String, Outcome)>;

/// What git said on stderr (a remote's hook speaks there), its lines joined, at most 20.
pub type Said = String;

/// Push every update to `remote` in one `git push` (all or nothing when `atomic`), each with
/// its lease. Every ref gets an outcome; an error only when no remote was reached (or git
/// said nothing the porcelain form promises).
pub fn push(
    git_dir: &Path,
    remote: &str,
    updates: &[Update],
    atomic: bool,
) -> Result<(Report, Said)> {
    if updates.is_empty() {
        return Ok((Vec::new(), Said::new()));
    }
    let mut args: Vec<String> = vec!["push".into(), "--porcelain".into()];
    if atomic {
        args.push("--atomic".into());
    }
    for u in updates {
        args.push(match u.expect {
            Expect::Absent => format!("--force-with-lease={}:", u.name),
            Expect::At(old) => format!("--force-with-lease={}:{old}", u.name),
        });
    }
    args.push("--".into());
    args.push(remote.into());
    for u in updates {
        args.push(format!("{}:{}", u.new, u.name));
    }
    // Refs on the command line, about 170 bytes each: Linux's limit for one command's
    // arguments (2 MB with the default stack) is near 10,000 refs (docs/remote.md).
    let out = crate::git::command::at(git_dir)
        .args(&args)
        .output()
        .map_err(|e| Error::io("could not run git push", e))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = parse_porcelain(&stdout);
    if report.is_empty() {
        return Err(unreachable(remote, "push", &out.stderr));
    }
    let said = String::from_utf8_lossy(&out.stderr);
    let said: Vec<&str> = said
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(20)
        .collect();
    Ok((report, said.join(" / ")))
}

/// Fetch `refspecs` from `remote` (`--prune`: tracking refs the remote no longer has are
/// removed, as `git fetch --prune` does), writing no `FETCH_HEAD`.
pub fn fetch(git_dir: &Path, remote: &str, refspecs: &[String]) -> Result<()> {
    let mut cmd = crate::git::command::at(git_dir);
    cmd.args([
        "fetch",
        "--quiet",
        "--prune",
        "--no-tags",
        "--no-write-fetch-head",
        "--",
        remote,
    ])
    .args(refspecs);
    // Another process of this clone fetching at the same time moves the same tracking refs:
    // git then fails the losing fetch ("cannot lock ref"); it is made again.
    let mut out = cmd
        .output()
        .map_err(|e| Error::io("could not run git fetch", e))?;
    for attempt in 0..4u64 {
        if out.status.success() || !String::from_utf8_lossy(&out.stderr).contains("cannot lock ref")
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10 + 20 * attempt));
        out = cmd
            .output()
            .map_err(|e| Error::io("could not run git fetch", e))?;
    }
    if !out.status.success() {
        return Err(unreachable(remote, "fetch", &out.stderr));
    }
    Ok(())
}

fn unreachable(remote: &str, what: &str, stderr: &[u8]) -> Error {
    let said = String::from_utf8_lossy(stderr);
    let said: Vec<&str> = said
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(4)
        .collect();
    Error::Remote {
        code: Code::RemoteUnreachable,
        message: format!(
            "could not {what} {}: {}",
            remote.escape_debug(),
            said.join(" / ")
        ),
    }
}

/// The ref lines of `git push --porcelain` output: `FLAG \t FROM:TO \t SUMMARY (REASON)`.
fn parse_porcelain(stdout: &str) -> Report {
    let mut out = Vec::new();
    for line in stdout.lines() {
        let mut fields = line.splitn(3, '\t');
        let (Some(flag), Some(refs), Some(summary)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Some((_, to)) = refs.split_once(':') else {
            continue;
        };
        let outcome = match flag {
            "=" => Outcome::UpToDate,
            "!" => Outcome::Rejected(
                summary
                    .split_once('(')
                    .map(|(_, r)| r.trim_end_matches(')').to_owned())
                    .unwrap_or_else(|| summary.to_owned()),
            ),
            "*" | " " | "+" | "-" => Outcome::Pushed,
            _ => continue,
        };
        out.push((to.to_owned(), outcome));
    }
    out
}

/// Add `value` to the multi-valued config `key` unless it holds it already.
pub fn config_add_once(git_dir: &Path, key: &str, value: &str) -> Result<bool> {
    let have = crate::git::command::at(git_dir)
        .args(["config", "--get-all", key])
        .output()
        .map_err(|e| Error::io("could not run git config", e))?;
    if String::from_utf8_lossy(&have.stdout)
        .lines()
        .any(|l| l == value)
    {
        return Ok(false);
    }
    crate::git::command::output(
        crate::git::command::at(git_dir).args(["config", "--add", key, value]),
        &format!("git config --add {key}"),
    )?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn porcelain_lines_become_outcomes() {
        let text = "To ../srv\n*\tabc:refs/a\t[new reference]\n=\tabc:refs/b\t[up to date]\n!\tabc:refs/c\t[rejected] (stale info)\nDone\n";
        assert_eq!(
            parse_porcelain(text),
            vec![
                ("refs/a".to_owned(), Outcome::Pushed),
                ("refs/b".to_owned(), Outcome::UpToDate),
                (
                    "refs/c".to_owned(),
                    Outcome::Rejected("stale info".to_owned())
                ),
            ]
        );
    }
}
