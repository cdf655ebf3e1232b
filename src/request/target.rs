//! Where a request lands: the one place a target name becomes a branch.
//!
//! A target is a local branch and nothing else: `main` or its full spelling
//! `refs/heads/main`, by git's rules for branch names. Every path that needs a target — enqueue
//! and `validate`, the worker, `verify-push`, `rollback`, `init`, `config`, `policy check` —
//! goes through [`Target::parse`] and [`Target::resolve`], so that a request is judged by the
//! policy of the very branch it lands on. A name that would reach another ref (a tag,
//! `refs/hyperion/…`, `HEAD`, a remote-tracking branch) is refused, never mapped.

use gix::ObjectId;
use gix::bstr::ByteSlice;

use crate::code::Code;
use crate::error::{Error as Failure, Problem, Result};
use crate::request::policy::Policy;

const BRANCH_PREFIX: &str = "refs/heads/";

/// Serialise a target as its branch name (for `#[serde(serialize_with)]`).
pub fn serialize_name<S: serde::Serializer>(
    t: &Target,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(t.name())
}

/// A branch that requests land on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// `refs/heads/<name>`.
    refname: String,
}

impl Target {
    /// A target from its name as a request, git config or the command line gives it: a branch
    /// name (`main`, `release/2.x`) or its full ref name (`refs/heads/main`). Anything else is
    /// refused (`target.not_branch`, `target.invalid`).
    pub fn parse(name: &str) -> std::result::Result<Target, Problem> {
        let shown = name.escape_debug();
        let short = match name.strip_prefix(BRANCH_PREFIX) {
            Some(short) => short,
            None if name.starts_with("refs/") || is_special(name) => {
                return Err(Problem::new(
                    Code::TargetNotBranch,
                    format!("the target '{shown}' is not a branch"),
                    "requests land on local branches only: name one such as \"main\" (or \"refs/heads/main\")",
                ));
            }
            None => name,
        };
        let refname = format!("{BRANCH_PREFIX}{short}");
        let valid = !short.is_empty()
            && !short.starts_with('-')
            && !is_special(short)
            && gix::validate::reference::branch_name(refname.as_bytes().as_bstr()).is_ok();
        if !valid {
            return Err(Problem::new(
                Code::TargetInvalid,
                format!("'{shown}' is not a valid branch name"),
                "a target is a branch name by git's rules (see `git check-ref-format --branch`)",
            ));
        }
        Ok(Target { refname })
    }

    /// The target a request names, or `default` (the repository's `hyperion.target`) when
    /// it names none. A refusal names the field `/target`.
    pub fn of_request(
        requested: Option<&str>,
        default: &Target,
    ) -> std::result::Result<Target, Problem> {
        match requested {
            Some(name) => Target::parse(name).map_err(|p| p.at("/target")),
            None => Ok(default.clone()),
        }
    }

    /// The branch name (`main`).
    pub fn name(&self) -> &str {
        &self.refname[BRANCH_PREFIX.len()..]
    }

    /// The full ref name (`refs/heads/main`).
    pub fn refname(&self) -> &str {
        &self.refname
    }

    /// The commit the branch points at, if it exists.
    pub fn tip(&self, repo: &gix::Repository) -> Result<Option<ObjectId>> {
        crate::git::tree::read_tip(repo, &self.refname)
    }

    /// The branch as it is now: its tip and tree. A branch that does not exist is refused
    /// (`target.missing`) with the closest existing names as a hint.
    pub fn resolve(&self, repo: &gix::Repository) -> Result<Tip, Error> {
        self.resolve_at(repo, self.tip(repo)?)
    }

    /// [`Target::resolve`] with the branch at `tip` (`None`: it does not exist) instead of
    /// where its ref points: what a push about to be taken makes of it.
    pub fn resolve_at(&self, repo: &gix::Repository, tip: Option<ObjectId>) -> Result<Tip, Error> {
        let Some(commit) = tip else {
            return Err(Error::Refused(self.missing(repo)?));
        };
        let tree = crate::git::tree::tree_of(repo, commit)?;
        Ok(Tip {
            target: self.clone(),
            commit,
            tree,
        })
    }

    /// The refusal of a branch that does not exist, with a did-you-mean hint.
    pub fn missing(&self, repo: &gix::Repository) -> Result<Problem> {
        let branches = branches(repo)?;
        let mut close: Vec<(f64, &str)> = branches
            .iter()
            .map(|b| (strsim::jaro_winkler(b, self.name()), b.as_str()))
            .filter(|(score, _)| *score >= 0.8)
            .collect();
        close.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
        let hint = match close.first() {
            Some((_, best)) => format!("did you mean '{best}'?"),
            None if branches.is_empty() => {
                "the repository has no branch yet: commit to the target branch first".to_owned()
            }
            None => format!(
                "name an existing branch: {}",
                branches
                    .iter()
                    .take(8)
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        Ok(Problem::new(
            Code::TargetMissing,
            format!("the target branch '{}' does not exist", self.name()),
            hint,
        ))
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A target branch at one commit: what a request is judged by and applied onto.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tip {
    pub target: Target,
    pub commit: ObjectId,
    pub tree: ObjectId,
}

impl Tip {
    /// The policy in force for this target: `.hyperion/policy.toml` of this commit's tree,
    /// never of anything a request brings.
    pub fn policy(&self, repo: &gix::Repository) -> Result<Policy> {
        Policy::load(repo, Some(self.tree), self.target.name())
    }
}

/// Names git gives a meaning of their own, which are never branches of a request.
fn is_special(name: &str) -> bool {
    matches!(
        name,
        "HEAD" | "@" | "FETCH_HEAD" | "ORIG_HEAD" | "MERGE_HEAD" | "CHERRY_PICK_HEAD"
    )
}

/// The local branches, by short name.
pub fn branches(repo: &gix::Repository) -> Result<Vec<String>> {
    Ok(crate::git::refs::list(repo.common_dir(), BRANCH_PREFIX)?
        .into_iter()
        .filter_map(|(name, _)| name.strip_prefix(BRANCH_PREFIX).map(str::to_owned))
        .collect())
}

/// Why a target branch cannot be resolved: refused (`target.missing`, the problem with its
/// did-you-mean hint), or failed (git).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", .0.message)]
    Refused(Problem),
    #[error(transparent)]
    Failed(#[from] Failure),
}

impl Error {
    /// The stable code (docs/errors.md).
    pub fn code(&self) -> Code {
        match self {
            Error::Refused(p) => p.code,
            Error::Failed(e) => e.code(),
        }
    }

    /// The refusal, for a caller that reports it or goes on without the branch; a failure
    /// goes on as the caller's own error.
    pub fn refusal(self) -> Result<Problem> {
        match self {
            Error::Refused(p) => Ok(p),
            Error::Failed(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_branch_name_and_its_full_spelling_are_the_same_target() {
        assert_eq!(Target::parse("main").unwrap().refname(), "refs/heads/main");
        assert_eq!(
            Target::parse("refs/heads/main").unwrap(),
            Target::parse("main").unwrap()
        );
        assert_eq!(Target::parse("release/2.x").unwrap().name(), "release/2.x");
    }

    #[test]
    fn anything_but_a_branch_is_refused() {
        for name in [
            "refs/tags/v1",
            "refs/hyperion/requests/abc",
            "refs/notes/hyperion",
            "refs/remotes/origin/main",
            "refs/heads",
            "refs/heads/",
            "HEAD",
            "@",
            "FETCH_HEAD",
        ] {
            let p = Target::parse(name).unwrap_err();
            assert!(
                matches!(p.code, Code::TargetNotBranch | Code::TargetInvalid),
                "{name}: {p}"
            );
        }
    }

    #[test]
    fn names_git_refuses_are_refused() {
        for name in [
            "",
            "-main",
            "a..b",
            "a b",
            "a~1",
            "a^",
            "a:b",
            "a?",
            "a*",
            "a[",
            "a\\b",
            "a.lock",
            "a/",
            "/a",
            "a//b",
            ".a",
            "a/.b",
            "a@{1}",
            "refs/heads/HEAD",
            "x\ny",
            "x\0y",
            "main.",
        ] {
            assert!(Target::parse(name).is_err(), "{name:?} was accepted");
        }
    }
}
