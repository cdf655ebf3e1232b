//! Operational settings from git config (`hyperion.*`), with their defaults.
//!
//! Versioned rules (checks, limits, path rules) live in the policy file on the target branch;
//! what is here is how this clone runs the queue.

use std::time::Duration;

use crate::error::{Error, Result};

/// One known setting: its key, default, and what it means (`git hyperion config` prints these).
pub struct Key {
    pub name: &'static str,
    pub default: &'static str,
    pub help: &'static str,
}

/// `hyperion.plan.maxTokens` when it is not set.
pub const DEFAULT_PLAN_MAX_TOKENS: u64 = 60_000;

pub const KEYS: &[Key] = &[
    Key {
        name: "hyperion.target",
        default: "main",
        help: "branch that requests land on when they name no target",
    },
    Key {
        name: "hyperion.leaseDuration",
        default: "5m",
        help: "lease length when dequeue/worker are given no --lease",
    },
    Key {
        name: "hyperion.maxLease",
        default: "1h",
        help: "longest lease anyone may ask for",
    },
    Key {
        name: "hyperion.maxAttempts",
        default: "3",
        help: "leases a request may take before it becomes a dead letter",
    },
    Key {
        name: "hyperion.retryBackoff",
        default: "30s",
        help: "base of the jittered exponential backoff between attempts",
    },
    Key {
        name: "hyperion.retention",
        default: "30d",
        help: "age after which gc archives applied, dead and rolled-back requests",
    },
    Key {
        name: "hyperion.hooksDir",
        default: ".hyperion/hooks/pre-apply.d/ in the target tree",
        help: "directory of pre-apply hooks (relative to the top level, or absolute)",
    },
    Key {
        name: "hyperion.hookTimeout",
        default: "60s",
        help: "how long one pre-apply hook may run before it is stopped (and refuses)",
    },
    Key {
        name: "hyperion.checkEnv",
        default: "(none)",
        help: "names of variables of the worker's environment that checks and hooks also get (multi-valued; PATH, LANG, LC_*, TZ always)",
    },
    Key {
        name: "hyperion.maxRebuilds",
        default: "5",
        help: "times a worker rebuilds a result when the target moved while it worked",
    },
    Key {
        name: "hyperion.checkBatch",
        default: "1",
        help: "requests whose checks run once on their combined tree (bisected when they fail); 1 checks each request on its own",
    },
    Key {
        name: "hyperion.checkJobs",
        default: "1",
        help: "trees batched checks may check at once while bisecting, each in a worktree slot of its own",
    },
    Key {
        name: "hyperion.speculate",
        default: "true",
        help: "remote mode: a worker checks its requests on top of those other workers leased before it (a merge train) and lands once they landed as it speculated; false: on the remote's tip alone",
    },
    Key {
        name: "hyperion.leaseView",
        default: "1s",
        help: "remote mode: dequeue leases from what the last fetch saw while it is younger than this, without fetching first (the push's leases are the check; a refused one fetches and leases again); 0: fetch before every lease",
    },
    Key {
        name: "hyperion.approvers",
        default: "(none)",
        help: "who may approve requests when the target's policy names no approvers (repeatable, or comma-separated)",
    },
    Key {
        name: "hyperion.indexWait",
        default: "2s",
        help: "how long to wait for the index while another process holds it",
    },
    Key {
        name: "hyperion.ingest.pattern",
        default: crate::queue::ingest::DEFAULT_PATTERN,
        help: "branches `ingest` turns into requests when given none (multi-valued; refs/heads/ or refs/remotes/ only)",
    },
    Key {
        name: "hyperion.autoDetach",
        default: "true",
        help: "a roll-up of small packs (`git repack --geometric`) a command starts goes on after it exits, as git's auto gc does; false: the command waits for it",
    },
    Key {
        name: "hyperion.remote",
        default: "(none)",
        help: "git remote the queue is shared through (remote mode: enqueue publishes, --fetch reads; see docs/remote.md)",
    },
    Key {
        name: "hyperion.plan.maxTokens",
        default: "60000",
        help: "largest assignment `plan` makes, in tokens of instructions plus file contents",
    },
    Key {
        name: "hyperion.landingWait",
        default: "10s",
        help: "how long a landing onto a checked-out branch waits for another one in progress",
    },
];

#[derive(Debug, Clone)]
pub struct Settings {
    /// `hyperion.target`: where requests that name no target land.
    pub target: crate::request::target::Target,
    pub lease: Duration,
    pub max_lease: Duration,
    pub max_attempts: u32,
    pub retry_backoff: Duration,
    pub retention: Duration,
    pub index_wait: Duration,
    pub hooks_dir: Option<std::path::PathBuf>,
    /// How long one pre-apply hook may run.
    pub hook_timeout: Duration,
    /// Variables of the worker's environment that checks and hooks get besides the allowlist
    /// (see [`check_env_name`]).
    pub check_env: Vec<String>,
    pub max_rebuilds: u32,
    /// `hyperion.checkBatch`: how many requests of a chain have their checks run once, on
    /// their combined tree (bisected when it fails); 1 checks each request's own commit.
    pub check_batch: usize,
    /// `hyperion.checkJobs`: how many trees batched checks check at once.
    pub check_jobs: usize,
    /// `hyperion.speculate`: remote workers build on the requests leased ahead of theirs
    /// (docs/remote.md, "A train without a coordinator").
    pub speculate: bool,
    /// `hyperion.leaseView`: how old the last fetch may be for `dequeue` in remote mode to
    /// lease from what it saw, without fetching first (docs/remote.md, "Leasing by push").
    pub lease_view: Duration,
    /// `hyperion.approvers`: who may approve when the policy names nobody.
    pub approvers: Vec<String>,
    pub landing_wait: Duration,
    /// `hyperion.ingest.pattern`: the refs `ingest` reads when given none, as full patterns.
    pub ingest_patterns: Vec<String>,
    /// `hyperion.autoDetach`: roll-ups of small packs outlive the command that started them.
    pub auto_detach: bool,
    /// `hyperion.plan.maxTokens`: the largest assignment `plan` makes, in tokens.
    pub plan_max_tokens: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            target: crate::request::target::Target::parse("main").expect("main is a branch name"),
            lease: Duration::from_secs(300),
            max_lease: Duration::from_secs(3600),
            max_attempts: 3,
            retry_backoff: Duration::from_secs(30),
            retention: Duration::from_secs(30 * 86400),
            index_wait: Duration::from_secs(2),
            hooks_dir: None,
            hook_timeout: Duration::from_secs(60),
            check_env: Vec::new(),
            max_rebuilds: 5,
            check_batch: 1,
            check_jobs: 1,
            speculate: true,
            lease_view: Duration::from_secs(1),
            approvers: Vec::new(),
            landing_wait: Duration::from_secs(10),
            ingest_patterns: vec![crate::queue::ingest::DEFAULT_PATTERN.to_owned()],
            auto_detach: true,
            plan_max_tokens: DEFAULT_PLAN_MAX_TOKENS,
        }
    }
}

impl Settings {
    /// Read the settings from the repository's config (all levels git reads).
    pub fn load(repo: &gix::Repository) -> Result<Settings> {
        let config = repo.config_snapshot();
        let get = |key: &str| config.string(key).map(|v| v.to_string());
        let mut s = Settings::default();
        if let Some(v) = get("hyperion.target") {
            s.target =
                crate::request::target::Target::parse(v.trim()).map_err(|p| Error::Config {
                    key: "hyperion.target".into(),
                    message: p.message,
                })?;
        }
        for v in config.strings("hyperion.approvers").unwrap_or_default() {
            for a in v.to_string().split(',') {
                let a = a.trim();
                if a.is_empty() {
                    continue;
                }
                if let Some(why) = crate::request::model::identity_problem(a) {
                    return Err(Error::Config {
                        key: "hyperion.approvers".into(),
                        message: format!("'{}' is not an identity: {why}", a.escape_debug()),
                    });
                }
                if !s.approvers.iter().any(|x| x == a) {
                    s.approvers.push(a.to_owned());
                }
            }
        }
        if let Some(v) = get("hyperion.hooksDir").filter(|v| !v.trim().is_empty()) {
            s.hooks_dir = Some(v.trim().into());
        }
        let dur = |key: &str, into: &mut Duration| -> Result<()> {
            if let Some(v) = get(key) {
                *into = crate::duration::parse(&v).map_err(|message| Error::Config {
                    key: key.into(),
                    message,
                })?;
            }
            Ok(())
        };
        dur("hyperion.leaseDuration", &mut s.lease)?;
        dur("hyperion.maxLease", &mut s.max_lease)?;
        dur("hyperion.retryBackoff", &mut s.retry_backoff)?;
        dur("hyperion.retention", &mut s.retention)?;
        dur("hyperion.indexWait", &mut s.index_wait)?;
        dur("hyperion.landingWait", &mut s.landing_wait)?;
        dur("hyperion.hookTimeout", &mut s.hook_timeout)?;
        dur("hyperion.leaseView", &mut s.lease_view)?;
        for value in config
            .plumbing()
            .strings("hyperion.checkEnv")
            .unwrap_or_default()
        {
            let value = value.to_string();
            for name in value.split(|c: char| c == ',' || c.is_whitespace()) {
                if name.is_empty() {
                    continue;
                }
                check_env_name(name).map_err(|message| Error::Config {
                    key: "hyperion.checkEnv".into(),
                    message,
                })?;
                if !s.check_env.iter().any(|n| n == name) {
                    s.check_env.push(name.to_owned());
                }
            }
        }
        let patterns: Vec<String> = config
            .plumbing()
            .strings("hyperion.ingest.pattern")
            .unwrap_or_default()
            .iter()
            .map(|v| v.to_string())
            .collect();
        if !patterns.is_empty() {
            s.ingest_patterns = patterns
                .iter()
                .map(|p| {
                    crate::queue::ingest::parse_pattern(p).map_err(|message| Error::Config {
                        key: "hyperion.ingest.pattern".into(),
                        message,
                    })
                })
                .collect::<Result<_>>()?;
        }
        let detach = config.plumbing().boolean("hyperion.autoDetach");
        if let Some(v) = detach.map_err(|e| Error::Config {
            key: "hyperion.autoDetach".into(),
            message: format!("not a boolean: {e}"),
        })? {
            s.auto_detach = v;
        }
        let speculate = config.plumbing().boolean("hyperion.speculate");
        if let Some(v) = speculate.map_err(|e| Error::Config {
            key: "hyperion.speculate".into(),
            message: format!("not a boolean: {e}"),
        })? {
            s.speculate = v;
        }
        if let Some(v) = get("hyperion.maxRebuilds") {
            s.max_rebuilds = v.trim().parse().map_err(|_| Error::Config {
                key: "hyperion.maxRebuilds".into(),
                message: format!("'{v}' is not a whole number"),
            })?;
        }
        for (key, into) in [
            ("hyperion.checkBatch", &mut s.check_batch),
            ("hyperion.checkJobs", &mut s.check_jobs),
        ] {
            if let Some(v) = get(key) {
                *into = v
                    .trim()
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| Error::Config {
                        key: key.into(),
                        message: format!("'{v}' is not a whole number of at least 1"),
                    })?;
            }
        }
        if let Some(v) = get("hyperion.plan.maxTokens") {
            s.plan_max_tokens =
                v.trim()
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| Error::Config {
                        key: "hyperion.plan.maxTokens".into(),
                        message: format!("'{v}' is not a whole number of at least 1"),
                    })?;
        }
        if let Some(v) = get("hyperion.maxAttempts") {
            s.max_attempts =
                v.trim()
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| Error::Config {
                        key: "hyperion.maxAttempts".into(),
                        message: format!("'{v}' is not a whole number of at least 1"),
                    })?;
        }
        Ok(s)
    }
}

/// Whether `name` may be passed through from the worker's environment to checks and hooks
/// (`hyperion.checkEnv`): a plain variable name, not one that points git elsewhere
/// ([`crate::git::command::REDIRECTS`], `GIT_CONFIG_KEY_n`, `GIT_CONFIG_VALUE_n`) nor one of
/// hyperion's own (`HYPERION_*`, such as the token that marks a run's processes).
pub fn check_env_name(name: &str) -> std::result::Result<(), String> {
    let plain = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !plain {
        return Err(format!(
            "'{name}' is not a variable name (letters, digits and _)"
        ));
    }
    let injects_config =
        name.starts_with("GIT_CONFIG_KEY_") || name.starts_with("GIT_CONFIG_VALUE_");
    if crate::git::command::REDIRECTS.contains(&name)
        || injects_config
        || name.starts_with("HYPERION_")
    {
        return Err(format!(
            "'{name}' cannot be passed to checks: it would point git or hyperion elsewhere"
        ));
    }
    Ok(())
}
