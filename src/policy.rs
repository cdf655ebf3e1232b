//! The repository's policy, `.hyperion/policy.toml`, read from the target branch's tip (never
//! from a request, so a request cannot loosen its own gate).
//!
//! This version reads the named checks:
//!
//! ```toml
//! [checks.unit]
//! run = ["cargo", "test", "--quiet"]
//! timeout = "10m"          # default 10m
//! env = { RUST_LOG = "warn" }
//! ```
//!
//! A request's `checks` name entries of this table. Limits, path rules, inline-command
//! allowlists and secret rules are the rest of the policy gate (issue 3, see docs/PLAN.md).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Problem, Result};

/// Where the policy lives in the target tree.
pub const PATH: &str = ".hyperion/policy.toml";

/// Default timeout of a check.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// One check the policy defines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckDef {
    pub name: String,
    pub run: Vec<String>,
    pub timeout: Duration,
    pub env: BTreeMap<String, String>,
}

/// The effective policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub checks: BTreeMap<String, CheckDef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    checks: BTreeMap<String, CheckFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckFile {
    run: Vec<String>,
    timeout: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

impl Policy {
    /// Parse a policy file; `origin` names it in problems.
    pub fn parse(text: &str, origin: &str) -> std::result::Result<Policy, Vec<Problem>> {
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let file: File = toml::from_str(text).map_err(|e| {
            let mut p = Problem::new(
                "policy.invalid",
                format!("{origin}: {}", e.message()),
                "see docs/usage.md for the policy file's format",
            );
            if let Some(span) = e.span() {
                p = p.line(line_of(span.start));
            }
            vec![p]
        })?;
        let mut checks = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, c) in file.checks {
            if c.run.is_empty() {
                problems.push(
                    Problem::new(
                        "policy.invalid",
                        format!("{origin}: check '{name}' has an empty `run`"),
                        "give the command and its arguments: run = [\"cargo\", \"test\"]",
                    )
                    .at(format!("checks.{name}.run")),
                );
                continue;
            }
            let timeout = match c.timeout.as_deref() {
                None => DEFAULT_TIMEOUT,
                Some(t) => match crate::settings::parse_duration(t) {
                    Ok(d) => d,
                    Err(m) => {
                        problems.push(
                            Problem::new(
                                "policy.invalid",
                                format!("{origin}: check '{name}': timeout: {m}"),
                                "use a duration such as 90s or 10m",
                            )
                            .at(format!("checks.{name}.timeout")),
                        );
                        continue;
                    }
                },
            };
            checks.insert(
                name.clone(),
                CheckDef {
                    name,
                    run: c.run,
                    timeout,
                    env: c.env,
                },
            );
        }
        if problems.is_empty() {
            Ok(Policy { checks })
        } else {
            Err(problems)
        }
    }

    /// The policy in `tree` (a target tip's tree), or the default when it has none.
    pub fn at_tree(repo: &gix::Repository, tree: Option<gix::ObjectId>) -> Result<Policy> {
        let Some(tree) = tree else {
            return Ok(Policy::default());
        };
        let root = repo
            .find_tree(tree)
            .map_err(|e| Error::git(format!("cannot read tree {tree}: {e}")))?;
        let Some(entry) = root
            .lookup_entry_by_path(PATH)
            .map_err(|e| Error::git(format!("cannot read {PATH}: {e}")))?
        else {
            return Ok(Policy::default());
        };
        let blob = repo
            .find_object(entry.object_id())
            .map_err(|e| Error::git(format!("cannot read {PATH}: {e}")))?;
        let text = String::from_utf8_lossy(&blob.data);
        Policy::parse(&text, PATH).map_err(|problems| Error::Config {
            key: PATH.to_owned(),
            message: problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        })
    }

    /// The definition of the check a request names.
    pub fn resolve_check(&self, name: &str) -> std::result::Result<CheckDef, Problem> {
        self.checks.get(name).cloned().ok_or_else(|| {
            Problem::new(
                "check.unknown",
                format!("no check named '{name}' in {PATH} on the target"),
                "name a check the target's policy defines",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_parse_with_defaults_and_errors_name_their_line() {
        let p = Policy::parse(
            "[checks.unit]\nrun = [\"cargo\", \"test\"]\n\n[checks.lint]\nrun = [\"true\"]\ntimeout = \"30s\"\nenv = { A = \"1\" }\n",
            PATH,
        )
        .expect("parses");
        assert_eq!(p.checks["unit"].timeout, DEFAULT_TIMEOUT);
        assert_eq!(p.checks["lint"].timeout, Duration::from_secs(30));
        assert_eq!(p.checks["lint"].env["A"], "1");
        assert!(p.resolve_check("nope").is_err());

        let e = Policy::parse("[checks.unit]\nrun = [\"x\"]\nfoo = 1\n", PATH)
            .expect_err("unknown key");
        assert_eq!(e[0].code, "policy.invalid");
        assert_eq!(e[0].line, Some(3));
        let e = Policy::parse("[checks.unit]\nrun = []\n", PATH).expect_err("empty run");
        assert_eq!(e[0].field.as_deref(), Some("checks.unit.run"));
    }
}
