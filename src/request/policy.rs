//! The policy: versioned rules read from `.hyperion/policy.toml` in the target branch's tree
//! (never from a request, so a request cannot loosen its own gate), with defaults when the file
//! is absent. docs/policy.md describes the file.
//!
//! This module parses and holds the rules; `validate::against_target` applies them to a
//! request. Parsing reports every problem with its line, and refuses unknown keys, so a typo in
//! the policy never silently turns a rule off.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use crate::code::Code;
use crate::error::{Error, Problem, Result};
use crate::request::limits::{DEFAULT_LIMITS, Limits};

/// Where the policy lives in the target branch's tree.
pub const POLICY_PATH: &str = ".hyperion/policy.toml";

const DEFAULT_MIN_CONTEXT: usize = 3;
const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(600);

/// A check a worker runs: a named one from `[checks.NAME]`, or an allowed inline command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckDef {
    /// The check's name, or the command line itself for an inline command.
    pub name: String,
    /// Program and arguments, run without a shell in the work tree's root.
    pub run: Vec<String>,
    pub timeout: Duration,
    /// Variables added to the check's environment.
    pub env: BTreeMap<String, String>,
}

/// A risk tier declared by `[[tiers]]`: what puts a request in it, and what that asks for.
/// `tiers` applies them (with the built-in tiers) to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    pub name: String,
    /// Globs of paths (a change's path or rename source) that put a request in the tier.
    pub paths: Vec<String>,
    /// What a change does that puts a request in the tier.
    pub operations: Vec<TierOperation>,
    /// A request that adds and removes at least this many lines in all is in the tier.
    pub min_changed_lines: Option<usize>,
    /// A request that changes at least this many files is in the tier.
    pub min_files: Option<usize>,
    /// A request that names any of these checks is in the tier.
    pub checks: Vec<String>,
    /// Whether a request in the tier waits for a person's approval.
    pub approval: bool,
    /// Who may approve (identities, see docs/policy.md); empty: `[approvals] approvers`.
    pub approvers: Vec<String>,
    /// Checks every request in the tier runs, whatever it names.
    pub required_checks: Vec<String>,
    /// Line of the `[[tiers]]` header in the policy file (0 for a built-in tier).
    pub line: usize,
}

impl Tier {
    /// Whether the tier has no condition at all (it then takes every request).
    pub fn matches_everything(&self) -> bool {
        self.paths.is_empty()
            && self.operations.is_empty()
            && self.min_changed_lines.is_none()
            && self.min_files.is_none()
            && self.checks.is_empty()
    }
}

/// What a change does, as a tier's `operations` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TierOperation {
    Add,
    Update,
    Delete,
    Rename,
    /// The mode of an existing file changes (the executable bit, file to symlink, …).
    Mode,
    /// The result is an executable file where there was none (a new one, or a mode change).
    Executable,
    /// The change adds, changes, removes or makes a symlink.
    Symlink,
    /// A binary change (`GIT binary patch`).
    Binary,
}

impl TierOperation {
    pub const ALL: [TierOperation; 8] = [
        TierOperation::Add,
        TierOperation::Update,
        TierOperation::Delete,
        TierOperation::Rename,
        TierOperation::Mode,
        TierOperation::Executable,
        TierOperation::Symlink,
        TierOperation::Binary,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TierOperation::Add => "add",
            TierOperation::Update => "update",
            TierOperation::Delete => "delete",
            TierOperation::Rename => "rename",
            TierOperation::Mode => "mode",
            TierOperation::Executable => "executable",
            TierOperation::Symlink => "symlink",
            TierOperation::Binary => "binary",
        }
    }

    pub fn parse(s: &str) -> Option<TierOperation> {
        TierOperation::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// A secret pattern: a name (shown in errors), what it finds, and the expression.
pub use crate::request::secrets::Rule as SecretRule;

/// The effective policy of one target.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `REV:.hyperion/policy.toml` (or the file given to `policy check`); `None` for the
    /// defaults.
    pub origin: Option<String>,
    pub limits: Limits,
    /// Lines of context a hunk must have before its first and after its last change, except
    /// at the start and the end of the file.
    pub min_context: usize,
    /// Globs of paths no request may touch.
    pub deny: Vec<String>,
    pub allow_gitlinks: bool,
    pub checks: BTreeMap<String, CheckDef>,
    pub allow_inline: bool,
    /// Globs (`*` matches anything) an inline command must match.
    pub inline_allow: Vec<String>,
    pub inline_timeout: Duration,
    /// Paths whose added lines are not scanned for secrets.
    pub secret_allow_paths: Vec<String>,
    /// Built-in secret rules turned off by name.
    pub secret_disabled: BTreeSet<String>,
    /// Secret rules added by the policy.
    pub secret_rules: Vec<SecretRule>,
    /// Checks every request runs, whatever it names (`[checks] required`).
    pub required_checks: Vec<String>,
    /// Who may approve requests of a tier that names no approvers (`[approvals] approvers`).
    pub approvers: Vec<String>,
    /// The tiers of `[[tiers]]`, in file order (the built-in ones are in `tiers`).
    pub tiers: Vec<Tier>,
    /// The scanner of the rules above, built on first use.
    secret_scanner: OnceLock<crate::request::secrets::Scanner>,
    /// Keys the file set (`limits.files`, `checks.unit`, …); the others are defaults.
    set: BTreeSet<String>,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            origin: None,
            limits: DEFAULT_LIMITS,
            min_context: DEFAULT_MIN_CONTEXT,
            deny: Vec::new(),
            allow_gitlinks: false,
            checks: BTreeMap::new(),
            allow_inline: false,
            inline_allow: Vec::new(),
            inline_timeout: DEFAULT_CHECK_TIMEOUT,
            secret_allow_paths: Vec::new(),
            secret_disabled: BTreeSet::new(),
            secret_rules: Vec::new(),
            required_checks: Vec::new(),
            approvers: Vec::new(),
            tiers: Vec::new(),
            secret_scanner: OnceLock::new(),
            set: BTreeSet::new(),
        }
    }
}

/// The built-in secret rules (see [`crate::request::secrets::BUILTIN`]).
pub use crate::request::secrets::BUILTIN as BUILTIN_SECRETS;

impl Policy {
    /// Parse a policy file's text. `origin` names it in the policy (`main:.hyperion/policy.toml`
    /// or a file path). `Err` carries every problem, each with its 1-based line.
    pub fn parse(text: &str, origin: &str) -> std::result::Result<Policy, Vec<Problem>> {
        let mut p = Parser {
            lines: line_starts(text),
            problems: Vec::new(),
            required: Vec::new(),
        };
        let doc = match DeTable::parse(text) {
            Ok(doc) => doc,
            Err(e) => {
                let line = e.span().map(|s| p.line(s.start)).unwrap_or(1);
                return Err(vec![
                    Problem::new(
                        Code::PolicySyntax,
                        format!("not valid TOML: {}", e.message()),
                        "fix the TOML syntax; `git hyperion policy check FILE` checks a file before you commit it",
                    )
                    .line(line),
                ]);
            }
        };
        let mut policy = Policy {
            origin: Some(origin.to_owned()),
            ..Policy::default()
        };
        for (key, value) in doc.get_ref().iter() {
            let line = p.line(key.span().start);
            match (key.get_ref().as_ref(), value.get_ref()) {
                ("limits", DeValue::Table(t)) => p.limits(t, &mut policy),
                ("patch", DeValue::Table(t)) => p.patch(t, &mut policy),
                ("paths", DeValue::Table(t)) => p.paths(t, &mut policy),
                ("checks", DeValue::Table(t)) => p.checks(t, &mut policy),
                ("secrets", DeValue::Table(t)) => p.secrets(t, &mut policy),
                ("approvals", DeValue::Table(t)) => p.approvals(t, &mut policy),
                ("tiers", DeValue::Array(items)) => p.tiers(items, &mut policy),
                ("tiers", _) => p.invalid(
                    line,
                    "`tiers` must be an array of tables: write each as [[tiers]]".into(),
                ),
                ("limits" | "patch" | "paths" | "checks" | "secrets" | "approvals", _) => {
                    p.invalid(line, format!("`{}` must be a table", key.get_ref()))
                }
                (other, _) => p.unknown(line, "", other, SECTIONS),
            }
        }
        p.required_defined(&policy);
        if p.problems.is_empty() {
            Ok(policy)
        } else {
            p.problems.sort_by_key(|x| x.line);
            Err(p.problems)
        }
    }

    /// The policy in `tree` (the target tip's tree), or the defaults when there is no tree or
    /// no policy file in it. An invalid file is an error (`policy.invalid`).
    pub fn at_tree(repo: &gix::Repository, tree: Option<gix::ObjectId>) -> Result<Policy> {
        let rev = tree
            .map(|t| t.to_hex_with_len(12).to_string())
            .unwrap_or_default();
        Policy::load(repo, tree, &rev)
    }

    /// Like [`Policy::at_tree`], naming the policy `REV:.hyperion/policy.toml` (REV is usually
    /// the target branch).
    pub fn load(repo: &gix::Repository, tree: Option<gix::ObjectId>, rev: &str) -> Result<Policy> {
        let Some(tree) = tree else {
            return Ok(Policy::default());
        };
        let Some(text) = read_policy_text(repo, tree)? else {
            return Ok(Policy::default());
        };
        let origin = format!("{rev}:{POLICY_PATH}");
        let text = String::from_utf8(text).map_err(|_| Error::Policy {
            origin: origin.clone(),
            problems: vec![Problem::new(
                Code::PolicySyntax,
                "the policy file is not UTF-8 text",
                "save the policy file as UTF-8",
            )],
        })?;
        Policy::parse(&text, &origin).map_err(|problems| Error::Policy { origin, problems })
    }

    /// The check a request names: a `[checks.NAME]` definition, or an inline command when
    /// the policy allows inline commands and one of its `inline_allow` globs matches.
    pub fn resolve_check(&self, name: &str) -> std::result::Result<CheckDef, Problem> {
        if let Some(def) = self.checks.get(name) {
            return Ok(def.clone());
        }
        let looks_like_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        let from = self.origin.as_deref().unwrap_or("the default policy");
        if !self.allow_inline {
            return Err(if looks_like_name {
                Problem::new(
                    Code::CheckUnknown,
                    format!("no check named '{name}' is defined in {from}"),
                    "name a check defined as [checks.NAME] in the target's .hyperion/policy.toml; `git hyperion config` lists them",
                )
            } else {
                Problem::new(
                    Code::CheckInlineRefused,
                    format!(
                        "'{name}' is not a defined check, and {from} does not allow inline commands"
                    ),
                    "name a check defined in the policy, or allow inline commands there ([checks] allow_inline, inline_allow)",
                )
            });
        }
        if name.contains([
            ';', '|', '&', '$', '`', '<', '>', '(', ')', '\'', '"', '\\', '*', '?', '~', '{', '}',
        ]) || name.chars().any(char::is_control)
        {
            return Err(Problem::new(
                Code::CheckInlineRefused,
                format!(
                    "the inline command '{name}' contains shell syntax; inline commands run without a shell"
                ),
                "write the command as plain words, or define a named check in the policy",
            ));
        }
        if !self
            .inline_allow
            .iter()
            .any(|g| crate::request::paths::wildcard_match(g, name))
        {
            return Err(Problem::new(
                Code::CheckInlineRefused,
                format!(
                    "the inline command '{name}' matches none of the inline_allow globs of {from}"
                ),
                "use a command the policy allows, or a named check",
            ));
        }
        Ok(CheckDef {
            name: name.to_owned(),
            run: name.split_whitespace().map(str::to_owned).collect(),
            timeout: self.inline_timeout,
            env: BTreeMap::new(),
        })
    }

    /// The secret rules of this policy: the built-in ones it does not disable, and its own.
    /// Every secret scan of a request goes through it.
    pub fn secrets(&self) -> &crate::request::secrets::Scanner {
        self.secret_scanner.get_or_init(|| {
            crate::request::secrets::Scanner::new(&self.secret_disabled, self.secret_rules.clone())
        })
    }

    /// The rule `text` breaks, if it holds what looks like a secret: the rule's name and what
    /// it finds. Never returns (or keeps) the matched text.
    pub fn find_secret(&self, text: &str) -> Option<(&str, &str)> {
        self.secrets()
            .find(text.as_bytes())
            .map(|h| (h.rule, h.what))
    }

    /// Whether `path`'s added lines are exempt from the secret scan.
    pub fn secrets_allowed_in(&self, path: &str) -> bool {
        self.secret_allow_paths
            .iter()
            .any(|g| crate::request::paths::glob_match(g, path))
    }

    /// Every effective setting as (key, value, set by the file?), for `git hyperion config`.
    /// Values are rendered as in the file (durations as `10m`, lists as JSON arrays).
    pub fn settings(&self) -> Vec<(String, String, bool)> {
        let mut rows = vec![
            (
                "limits.change_bytes".to_owned(),
                self.limits.change_bytes.to_string(),
            ),
            (
                "limits.request_bytes".to_owned(),
                self.limits.request_bytes.to_string(),
            ),
            ("limits.files".to_owned(), self.limits.files.to_string()),
            (
                "limits.file_bytes".to_owned(),
                self.limits.file_bytes.to_string(),
            ),
            (
                "limits.file_lines".to_owned(),
                self.limits.file_lines.to_string(),
            ),
            (
                "limits.inflated_bytes".to_owned(),
                self.limits.inflated_bytes.to_string(),
            ),
            ("patch.min_context".to_owned(), self.min_context.to_string()),
            ("paths.deny".to_owned(), json(&self.deny)),
            (
                "paths.allow_gitlinks".to_owned(),
                self.allow_gitlinks.to_string(),
            ),
            (
                "checks.allow_inline".to_owned(),
                self.allow_inline.to_string(),
            ),
            ("checks.inline_allow".to_owned(), json(&self.inline_allow)),
            (
                "checks.inline_timeout".to_owned(),
                crate::duration::format(self.inline_timeout),
            ),
        ];
        for (name, def) in &self.checks {
            rows.push((format!("checks.{name}.run"), json(&def.run)));
            rows.push((
                format!("checks.{name}.timeout"),
                crate::duration::format(def.timeout),
            ));
            if !def.env.is_empty() {
                rows.push((format!("checks.{name}.env"), json(&def.env)));
            }
        }
        rows.push(("checks.required".to_owned(), json(&self.required_checks)));
        rows.push(("approvals.approvers".to_owned(), json(&self.approvers)));
        for tier in effective(self) {
            rows.push((format!("tiers.{}", tier.name), describe(&tier)));
        }
        let active: Vec<&str> = BUILTIN_SECRETS
            .iter()
            .map(|(n, _, _)| *n)
            .filter(|n| !self.secret_disabled.contains(*n))
            .chain(self.secret_rules.iter().map(|r| r.name.as_str()))
            .collect();
        rows.push(("secrets.rules".to_owned(), json(&active)));
        rows.push(("secrets.rules".to_owned(), json(&self.secrets().names())));
        rows.push((
            "secrets.allow_paths".to_owned(),
            json(&self.secret_allow_paths),
        ));
        rows.into_iter()
            .map(|(k, v)| {
                let set = self.is_set(&k);
                (k, v, set)
            })
            .collect()
    }

    /// Whether the file set `key` (or a table it belongs to, for check definitions).
    pub fn is_set(&self, key: &str) -> bool {
        if self.set.contains(key) {
            return true;
        }
        if key == "secrets.rules" {
            return self.set.contains("secrets.disable") || self.set.contains("secrets.patterns");
        }
        // checks.NAME.run → checks.NAME
        key.strip_prefix("checks.")
            .and_then(|rest| rest.rsplit_once('.'))
            .is_some_and(|(name, _)| self.set.contains(&format!("checks.{name}")))
    }
}

/// `v` without repeats, first occurrences kept in order.
fn dedup(v: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    v.into_iter().filter(|x| seen.insert(x.clone())).collect()
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn read_policy_text(repo: &gix::Repository, tree: gix::ObjectId) -> Result<Option<Vec<u8>>> {
    let tree = repo
        .find_tree(tree)
        .map_err(|e| Error::object(format!("could not read the target's tree {tree}"), e))?;
    let entry = tree
        .lookup_entry_by_path(POLICY_PATH)
        .map_err(|e| Error::object(format!("could not look up {POLICY_PATH}"), e))?;
    let Some(entry) = entry else { return Ok(None) };
    if !entry.mode().is_blob() {
        // A directory, symlink or submodule named policy.toml is no policy; say so rather than
        // fall back to the defaults.
        return Err(Error::Policy {
            origin: POLICY_PATH.to_owned(),
            problems: vec![Problem::new(
                Code::PolicySyntax,
                format!("{POLICY_PATH} is not a regular file"),
                "make the policy a regular file in the target branch",
            )],
        });
    }
    let object = entry
        .object()
        .map_err(|e| Error::object(format!("could not read {POLICY_PATH}"), e))?;
    Ok(Some(object.detach().data))
}

const SECTIONS: &[&str] = &[
    "limits",
    "patch",
    "paths",
    "checks",
    "secrets",
    "approvals",
    "[[tiers]]",
];
const HINT_POLICY: &str = "see docs/policy.md for the keys and their values";

/// Collects problems while walking the parsed document.
struct Parser {
    lines: Vec<usize>,
    problems: Vec<Problem>,
    /// Check names the policy requires (`[checks] required`, a tier's `required_checks`),
    /// with their lines: each must be a `[checks.NAME]`, which may come later in the file.
    required: Vec<(String, usize, String)>,
}

type Entry<'a, 'i> = (
    &'a toml::Spanned<std::borrow::Cow<'i, str>>,
    &'a toml::Spanned<DeValue<'i>>,
);

impl Parser {
    fn line(&self, offset: usize) -> usize {
        self.lines.partition_point(|&start| start <= offset).max(1)
    }

    fn invalid(&mut self, line: usize, message: String) {
        self.problems
            .push(Problem::new(Code::PolicyInvalidValue, message, HINT_POLICY).line(line));
    }

    fn unknown(&mut self, line: usize, section: &str, key: &str, known: &[&str]) {
        let message = if section.is_empty() {
            format!("unknown section [{key}]; known: {}", known.join(", "))
        } else {
            format!(
                "unknown key '{key}' in [{section}]; known: {}",
                known.join(", ")
            )
        };
        self.problems.push(
            Problem::new(
                Code::PolicyUnknownKey,
                message,
                "remove it or fix its spelling; unknown keys are refused so a typo cannot turn a rule off",
            )
            .line(line),
        );
    }

    fn entries<'a, 'i>(&self, t: &'a DeTable<'i>) -> Vec<Entry<'a, 'i>> {
        t.iter().collect()
    }

    fn uint(&mut self, (k, v): Entry<'_, '_>, section: &str, min: u64, max: u64) -> Option<u64> {
        let line = self.line(v.span().start);
        let n = match v.get_ref() {
            DeValue::Integer(i) => u64::from_str_radix(i.as_str(), i.radix()).ok(),
            _ => None,
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                let range = if max >= u64::MAX >> 1 {
                    format!("of at least {min}")
                } else {
                    format!("from {min} to {max}")
                };
                self.invalid(
                    line,
                    format!("{section}.{} must be a whole number {range}", k.get_ref()),
                );
                None
            }
        }
    }

    fn boolean(&mut self, (k, v): Entry<'_, '_>, section: &str) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                let line = self.line(v.span().start);
                self.invalid(
                    line,
                    format!("{section}.{} must be true or false", k.get_ref()),
                );
                None
            }
        }
    }

    fn string(&mut self, (k, v): Entry<'_, '_>, what: &str) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) if !s.is_empty() => Some(s.to_string()),
            _ => {
                let line = self.line(v.span().start);
                self.invalid(
                    line,
                    format!("{what}{} must be a non-empty string", k.get_ref()),
                );
                None
            }
        }
    }

    fn strings(&mut self, (k, v): Entry<'_, '_>, what: &str) -> Option<Vec<String>> {
        let line = self.line(v.span().start);
        let DeValue::Array(items) = v.get_ref() else {
            self.invalid(
                line,
                format!("{what}{} must be an array of strings", k.get_ref()),
            );
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(s) if !s.is_empty() => out.push(s.to_string()),
                _ => {
                    let line = self.line(item.span().start);
                    self.invalid(
                        line,
                        format!(
                            "{what}{}: every item must be a non-empty string",
                            k.get_ref()
                        ),
                    );
                    return None;
                }
            }
        }
        Some(out)
    }

    fn duration(&mut self, (k, v): Entry<'_, '_>, what: &str) -> Option<Duration> {
        let line = self.line(v.span().start);
        let parsed = match v.get_ref() {
            DeValue::String(s) => crate::duration::parse(s),
            DeValue::Integer(i) => i
                .as_str()
                .parse::<u64>()
                .map(Duration::from_secs)
                .map_err(|_| "not a duration".to_owned()),
            _ => Err("must be a duration such as \"10m\"".to_owned()),
        };
        match parsed {
            Ok(d) if d >= Duration::from_secs(1) => Some(d),
            Ok(_) => {
                self.invalid(line, format!("{what}{} must be at least 1s", k.get_ref()));
                None
            }
            Err(m) => {
                self.invalid(line, format!("{what}{}: {m}", k.get_ref()));
                None
            }
        }
    }

    fn globs(&mut self, entry: Entry<'_, '_>, what: &str) -> Option<Vec<String>> {
        let line = self.line(entry.1.span().start);
        let globs = self.strings(entry, what)?;
        for g in &globs {
            let reason = crate::request::paths::unsafe_reason(g.trim_end_matches("/**"))
                .map(|r| r.to_string())
                .or_else(|| crate::request::paths::glob_problem(g));
            if let Some(reason) = reason {
                self.invalid(
                    line,
                    format!("{what}{}: '{g}': {reason}", entry.0.get_ref()),
                );
            }
        }
        Some(globs)
    }

    fn limits(&mut self, t: &DeTable<'_>, policy: &mut Policy) {
        const KEYS: &[&str] = &[
            "change_bytes",
            "request_bytes",
            "files",
            "file_bytes",
            "file_lines",
            "inflated_bytes",
        ];
        for e in self.entries(t) {
            let key = e.0.get_ref().as_ref();
            let max = u64::MAX >> 1;
            let slot = match key {
                "change_bytes" => &mut policy.limits.change_bytes,
                "request_bytes" => &mut policy.limits.request_bytes,
                "files" => &mut policy.limits.files,
                "file_bytes" => &mut policy.limits.file_bytes,
                "file_lines" => &mut policy.limits.file_lines,
                "inflated_bytes" => &mut policy.limits.inflated_bytes,
                other => {
                    let line = self.line(e.0.span().start);
                    self.unknown(line, "limits", other, KEYS);
                    continue;
                }
            };
            if let Some(n) = self.uint(e, "limits", 1, max) {
                *slot = usize::try_from(n).unwrap_or(usize::MAX);
                policy.set.insert(format!("limits.{key}"));
            }
        }
    }

    fn patch(&mut self, t: &DeTable<'_>, policy: &mut Policy) {
        for e in self.entries(t) {
            match e.0.get_ref().as_ref() {
                "min_context" => {
                    if let Some(n) = self.uint(e, "patch", 0, 100) {
                        policy.min_context = n as usize;
                        policy.set.insert("patch.min_context".into());
                    }
                }
                other => {
                    let line = self.line(e.0.span().start);
                    self.unknown(line, "patch", other, &["min_context"]);
                }
            }
        }
    }

    fn paths(&mut self, t: &DeTable<'_>, policy: &mut Policy) {
        for e in self.entries(t) {
            match e.0.get_ref().as_ref() {
                "deny" => {
                    if let Some(g) = self.globs(e, "paths.") {
                        policy.deny = g;
                        policy.set.insert("paths.deny".into());
                    }
                }
                "allow_gitlinks" => {
                    if let Some(b) = self.boolean(e, "paths") {
                        policy.allow_gitlinks = b;
                        policy.set.insert("paths.allow_gitlinks".into());
                    }
                }
                other => {
                    let line = self.line(e.0.span().start);
                    self.unknown(line, "paths", other, &["deny", "allow_gitlinks"]);
                }
            }
        }
    }

    fn approvals(&mut self, t: &DeTable<'_>, policy: &mut Policy) {
        for e in self.entries(t) {
            match e.0.get_ref().as_ref() {
                "approvers" => {
                    if let Some(v) = self.approver_list(e, "approvals.") {
                        policy.approvers = v;
                        policy.set.insert("approvals.approvers".into());
                    }
                }
                other => {
                    let line = self.line(e.0.span().start);
                    self.unknown(line, "approvals", other, &["approvers"]);
                }
            }
        }
    }

    /// A non-empty list of approver identities.
    fn approver_list(&mut self, entry: Entry<'_, '_>, what: &str) -> Option<Vec<String>> {
        let line = self.line(entry.1.span().start);
        let list = self.strings(entry, what)?;
        if list.is_empty() {
            self.invalid(
                line,
                format!(
                    "{what}{} must name at least one approver (leave the key out for the default)",
                    entry.0.get_ref()
                ),
            );
            return None;
        }
        for a in &list {
            if crate::request::model::identity_problem(a).is_some() {
                self.invalid(
                    line,
                    format!(
                        "{what}{}: '{}' is not an identity (1-256 characters, no control characters, not blank)",
                        entry.0.get_ref(),
                        a.escape_debug()
                    ),
                );
                return None;
            }
        }
        Some(dedup(list.iter().map(|a| a.trim().to_owned()).collect()))
    }

    fn tiers(&mut self, items: &[toml::Spanned<DeValue<'_>>], policy: &mut Policy) {
        for item in items {
            let line = self.line(item.span().start);
            let DeValue::Table(t) = item.get_ref() else {
                self.invalid(line, "each [[tiers]] entry must be a table".into());
                continue;
            };
            if let Some(tier) = self.tier(t, line) {
                if policy.tiers.iter().any(|x| x.name == tier.name) {
                    self.invalid(
                        line,
                        format!("tier '{}' is declared more than once", tier.name),
                    );
                    continue;
                }
                policy.set.insert(format!("tiers.{}", tier.name));
                policy.tiers.push(tier);
            }
        }
    }

    fn tier(&mut self, t: &DeTable<'_>, line: usize) -> Option<Tier> {
        const KEYS: &[&str] = &[
            "name",
            "description",
            "paths",
            "operations",
            "min_changed_lines",
            "min_files",
            "checks",
            "approval",
            "approvers",
            "required_checks",
        ];
        let mut ok = true;
        let mut name = None;
        let mut tier = Tier {
            name: String::new(),
            paths: Vec::new(),
            operations: Vec::new(),
            min_changed_lines: None,
            min_files: None,
            checks: Vec::new(),
            approval: false,
            approvers: Vec::new(),
            required_checks: Vec::new(),
            line,
        };
        let mut required_lines = Vec::new();
        for e in self.entries(t) {
            let key = e.0.get_ref().as_ref();
            let value_line = self.line(e.1.span().start);
            match key {
                "name" => match self.string(e, "tiers.") {
                    Some(n) => name = Some(n),
                    None => ok = false,
                },
                "description" => ok &= self.string(e, "tiers.").is_some(),
                "paths" => match self.globs(e, "tiers.") {
                    Some(g) => tier.paths = g,
                    None => ok = false,
                },
                "operations" => match self.strings(e, "tiers.") {
                    Some(ops) => {
                        for op in ops {
                            match TierOperation::parse(&op) {
                                Some(o) if !tier.operations.contains(&o) => tier.operations.push(o),
                                Some(_) => {}
                                None => {
                                    let known: Vec<&str> =
                                        TierOperation::ALL.iter().map(|o| o.as_str()).collect();
                                    self.invalid(
                                        value_line,
                                        format!(
                                            "tiers.operations: no operation '{op}' (known: {})",
                                            known.join(", ")
                                        ),
                                    );
                                    ok = false;
                                }
                            }
                        }
                    }
                    None => ok = false,
                },
                "min_changed_lines" => match self.uint(e, "tiers", 1, u64::MAX >> 1) {
                    Some(n) => tier.min_changed_lines = Some(n as usize),
                    None => ok = false,
                },
                "min_files" => match self.uint(e, "tiers", 1, u64::MAX >> 1) {
                    Some(n) => tier.min_files = Some(n as usize),
                    None => ok = false,
                },
                "checks" => match self.strings(e, "tiers.") {
                    Some(c) => tier.checks = dedup(c),
                    None => ok = false,
                },
                "approval" => match self.boolean(e, "tiers") {
                    Some(b) => tier.approval = b,
                    None => ok = false,
                },
                "approvers" => match self.approver_list(e, "tiers.") {
                    Some(a) => tier.approvers = a,
                    None => ok = false,
                },
                "required_checks" => match self.strings(e, "tiers.") {
                    Some(c) => {
                        required_lines.extend(c.iter().map(|n| (n.clone(), value_line)));
                        tier.required_checks = dedup(c);
                    }
                    None => ok = false,
                },
                other => {
                    let l = self.line(e.0.span().start);
                    self.unknown(l, "[tiers]", other, KEYS);
                    ok = false;
                }
            }
        }
        let Some(name) = name else {
            self.invalid(line, "each [[tiers]] entry needs a `name`".into());
            return None;
        };
        if name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            self.invalid(
                line,
                format!(
                    "tier name '{name}' may use only letters, digits, `_`, `.` and `-` (at most 64)"
                ),
            );
            return None;
        }
        if name == GATE {
            self.invalid(
                line,
                format!(
                    "tier '{name}' is built in and cannot be redefined: changes to the gate always need approval; set [approvals] approvers to choose who gives it"
                ),
            );
            return None;
        }
        if !tier.approval && tier.required_checks.is_empty() {
            self.invalid(
                line,
                format!("tier '{name}' has no effect: set `approval = true` or `required_checks`"),
            );
            ok = false;
        }
        if !tier.approval && !tier.approvers.is_empty() {
            self.invalid(
                line,
                format!("tier '{name}' names approvers but does not ask for approval"),
            );
            ok = false;
        }
        for (check, l) in required_lines {
            self.required
                .push((check, l, format!("tier '{name}' required_checks")));
        }
        tier.name = name;
        ok.then_some(tier)
    }

    /// Every required check must be a named check: a requirement that names nothing would
    /// silently require nothing.
    fn required_defined(&mut self, policy: &Policy) {
        for (name, line, what) in std::mem::take(&mut self.required) {
            if !policy.checks.contains_key(&name) {
                self.invalid(
                    line,
                    format!("{what}: '{name}' is not a check defined as [checks.{name}]"),
                );
            }
        }
    }

    fn checks(&mut self, t: &DeTable<'_>, policy: &mut Policy) {
        for e in self.entries(t) {
            let key = e.0.get_ref().as_ref();
            match (key, e.1.get_ref()) {
                ("allow_inline", _) => {
                    if let Some(b) = self.boolean(e, "checks") {
                        policy.allow_inline = b;
                        policy.set.insert("checks.allow_inline".into());
                    }
                }
                ("inline_allow", _) => {
                    if let Some(v) = self.strings(e, "checks.") {
                        policy.inline_allow = v;
                        policy.set.insert("checks.inline_allow".into());
                    }
                }
                ("inline_timeout", _) => {
                    if let Some(d) = self.duration(e, "checks.") {
                        policy.inline_timeout = d;
                        policy.set.insert("checks.inline_timeout".into());
                    }
                }
                ("required", _) => {
                    let line = self.line(e.1.span().start);
                    if let Some(v) = self.strings(e, "checks.") {
                        for name in &v {
                            self.required
                                .push((name.clone(), line, "checks.required".into()));
                        }
                        policy.required_checks = dedup(v);
                        policy.set.insert("checks.required".into());
                    }
                }
                (name, DeValue::Table(def)) => {
                    let line = self.line(e.0.span().start);
                    if let Some(def) = self.check_def(name, def, line) {
                        policy.set.insert(format!("checks.{name}"));
                        policy.checks.insert(name.to_owned(), def);
                    }
                }
                (other, _) => {
                    let line = self.line(e.0.span().start);
                    self.unknown(
                        line,
                        "checks",
                        other,
                        &[
                            "allow_inline",
                            "inline_allow",
                            "inline_timeout",
                            "required",
                            "[checks.NAME] tables",
                        ],
                    );
                }
            }
        }
    }

    fn check_def(&mut self, name: &str, t: &DeTable<'_>, line: usize) -> Option<CheckDef> {
        let what = format!("checks.{name}.");
        let mut ok = true;
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            self.invalid(
                line,
                format!(
                    "check name '{name}' may use only letters, digits, `_`, `.` and `-` (at most 64)"
                ),
            );
            ok = false;
        }
        let mut def = CheckDef {
            name: name.to_owned(),
            run: Vec::new(),
            timeout: DEFAULT_CHECK_TIMEOUT,
            env: BTreeMap::new(),
        };
        for e in self.entries(t) {
            match e.0.get_ref().as_ref() {
                "run" => match self.strings(e, &what) {
                    Some(run) if !run.is_empty() => def.run = run,
                    Some(_) => {
                        let l = self.line(e.1.span().start);
                        self.invalid(l, format!("{what}run must name a program"));
                        ok = false;
                    }
                    None => ok = false,
                },
                "timeout" => match self.duration(e, &what) {
                    Some(d) => def.timeout = d,
                    None => ok = false,
                },
                "description" => ok &= self.string(e, &what).is_some(),
                "env" => {
                    let l = self.line(e.1.span().start);
                    let DeValue::Table(vars) = e.1.get_ref() else {
                        self.invalid(l, format!("{what}env must be a table of strings"));
                        ok = false;
                        continue;
                    };
                    for var in self.entries(vars) {
                        let k = var.0.get_ref().as_ref();
                        let valid_name = !k.is_empty()
                            && !k.starts_with(|c: char| c.is_ascii_digit())
                            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                        let l = self.line(var.0.span().start);
                        if !valid_name {
                            self.invalid(l, format!("{what}env: '{k}' is not a variable name"));
                            ok = false;
                        }
                        match var.1.get_ref() {
                            DeValue::String(v) => {
                                def.env.insert(k.to_owned(), v.to_string());
                            }
                            _ => {
                                self.invalid(l, format!("{what}env.{k} must be a string"));
                                ok = false;
                            }
                        }
                    }
                }
                other => {
                    let l = self.line(e.0.span().start);
                    self.unknown(
                        l,
                        &format!("checks.{name}"),
                        other,
                        &["run", "timeout", "env", "description"],
                    );
                    ok = false;
                }
            }
        }
        if def.run.is_empty() && ok {
            self.invalid(
                line,
                format!("[checks.{name}] needs `run`, e.g. run = [\"cargo\", \"test\"]"),
            );
            ok = false;
        }
        ok.then_some(def)
    }

    fn secrets(&mut self, t: &DeTable<'_>, policy: &mut Policy) {
        for e in self.entries(t) {
            match e.0.get_ref().as_ref() {
                "allow_paths" => {
                    if let Some(g) = self.globs(e, "secrets.") {
                        policy.secret_allow_paths = g;
                        policy.set.insert("secrets.allow_paths".into());
                    }
                }
                "disable" => {
                    let line = self.line(e.1.span().start);
                    if let Some(names) = self.strings(e, "secrets.") {
                        for n in &names {
                            if !BUILTIN_SECRETS.iter().any(|(b, _, _)| b == n) {
                                let known: Vec<&str> =
                                    BUILTIN_SECRETS.iter().map(|(b, _, _)| *b).collect();
                                self.invalid(
                                    line,
                                    format!(
                                        "secrets.disable: no built-in rule '{n}' (built-in: {})",
                                        known.join(", ")
                                    ),
                                );
                            }
                        }
                        policy.secret_disabled = names.into_iter().collect();
                        policy.set.insert("secrets.disable".into());
                    }
                }
                "patterns" => {
                    let line = self.line(e.1.span().start);
                    let DeValue::Table(rules) = e.1.get_ref() else {
                        self.invalid(
                            line,
                            "secrets.patterns must be a table of NAME = \"regex\"".into(),
                        );
                        continue;
                    };
                    for r in self.entries(rules) {
                        let name = r.0.get_ref().to_string();
                        let Some(expr) = self.string(r, "secrets.patterns.") else {
                            continue;
                        };
                        let what = format!("a match of the policy's secret pattern '{name}'");
                        match SecretRule::new(name.clone(), what, &expr) {
                            Ok(rule) => {
                                // Output is redacted by every rule this process has seen.
                                crate::request::secrets::register(&rule);
                                policy.secret_rules.push(rule);
                            }
                            Err(err) => {
                                let l = self.line(r.1.span().start);
                                let first = err.to_string();
                                let first = first.lines().last().unwrap_or("").trim().to_owned();
                                self.invalid(
                                    l,
                                    format!("secrets.patterns.{name} is not a valid regular expression: {first}"),
                                );
                            }
                        }
                    }
                    policy.set.insert("secrets.patterns".into());
                }
                other => {
                    let line = self.line(e.0.span().start);
                    self.unknown(
                        line,
                        "secrets",
                        other,
                        &["allow_paths", "disable", "patterns"],
                    );
                }
            }
        }
    }
}

/// Byte offsets where each line starts.
fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

/// The built-in tier of hyperion's own gate.
pub const GATE: &str = "gate";
/// The built-in tier of hooks, CI definitions and executable bits (replaceable).
pub const SENSITIVE: &str = "sensitive";

/// Paths of the `gate` tier, besides the check programs and the local hook directories.
pub const GATE_PATHS: &[&str] = &[".hyperion/**"];

/// Paths of the built-in `sensitive` tier: what runs on a developer's machine or in CI when a
/// commit arrives there.
pub const SENSITIVE_PATHS: &[&str] = &[
    ".githooks/**",
    ".husky/**",
    ".lefthook/**",
    "lefthook.yml",
    ".lefthook.yml",
    ".pre-commit-config.yaml",
    ".github/workflows/**",
    ".github/actions/**",
    ".github/CODEOWNERS",
    "CODEOWNERS",
    "docs/CODEOWNERS",
    ".gitlab-ci.yml",
    ".gitlab/**",
    ".circleci/**",
    "Jenkinsfile",
    ".travis.yml",
    ".drone.yml",
    ".buildkite/**",
    "azure-pipelines.yml",
    ".azure-pipelines/**",
    "bitbucket-pipelines.yml",
    ".gitmodules",
];

/// The tiers in force under `policy`: `gate`, then `sensitive` (unless the policy declares
/// its own), then the policy's, in file order.
pub fn effective(policy: &Policy) -> Vec<Tier> {
    let mut out = vec![gate_tier(policy)];
    if !policy.tiers.iter().any(|t| t.name == SENSITIVE) {
        out.push(Tier {
            name: SENSITIVE.to_owned(),
            paths: SENSITIVE_PATHS.iter().map(|s| (*s).to_owned()).collect(),
            operations: vec![TierOperation::Executable],
            min_changed_lines: None,
            min_files: None,
            checks: Vec::new(),
            approval: true,
            approvers: Vec::new(),
            required_checks: Vec::new(),
            line: 0,
        });
    }
    out.extend(policy.tiers.iter().cloned());
    out
}

fn gate_tier(policy: &Policy) -> Tier {
    let mut paths: Vec<String> = GATE_PATHS.iter().map(|s| (*s).to_owned()).collect();
    for p in check_programs(policy) {
        if !paths.contains(&p) {
            paths.push(p);
        }
    }
    Tier {
        name: GATE.to_owned(),
        paths,
        operations: Vec::new(),
        min_changed_lines: None,
        min_files: None,
        checks: Vec::new(),
        approval: true,
        approvers: Vec::new(),
        required_checks: Vec::new(),
        line: 0,
    }
}

/// Repository paths the policy's named checks run: every word of `run` that holds a `/` and
/// is a safe relative path (`./ci/test.sh`, `scripts/lint.py`). A request that changed one
/// would change what its own check does.
fn check_programs(policy: &Policy) -> Vec<String> {
    let mut out = Vec::new();
    for def in policy.checks.values() {
        for word in &def.run {
            if !word.contains('/') {
                continue;
            }
            if let Some(p) = crate::request::paths::clean_relative(word)
                && !out.contains(&p)
            {
                out.push(p);
            }
        }
    }
    out
}

/// A one-line description of a tier, for `git hyperion config`.
pub fn describe(tier: &Tier) -> String {
    let mut v = serde_json::Map::new();
    if !tier.paths.is_empty() {
        v.insert("paths".into(), tier.paths.clone().into());
    }
    if !tier.operations.is_empty() {
        let ops: Vec<&str> = tier.operations.iter().map(|o| o.as_str()).collect();
        v.insert("operations".into(), ops.into());
    }
    if let Some(n) = tier.min_changed_lines {
        v.insert("min_changed_lines".into(), n.into());
    }
    if let Some(n) = tier.min_files {
        v.insert("min_files".into(), n.into());
    }
    if !tier.checks.is_empty() {
        v.insert("checks".into(), tier.checks.clone().into());
    }
    v.insert("approval".into(), tier.approval.into());
    if !tier.approvers.is_empty() {
        v.insert("approvers".into(), tier.approvers.clone().into());
    }
    if !tier.required_checks.is_empty() {
        v.insert(
            "required_checks".into(),
            tier.required_checks.clone().into(),
        );
    }
    serde_json::Value::Object(v).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_empty() {
        let p = Policy::parse("", "x").expect("valid");
        assert_eq!(p.min_context, 3);
        assert_eq!(p.limits.files, DEFAULT_LIMITS.files);
        assert!(p.settings().iter().all(|(_, _, set)| !set));
    }

    #[test]
    fn a_full_policy() {
        let text = r#"
[limits]
files = 2_0
change_bytes = 0x1000

[patch]
min_context = 1

[paths]
deny = ["secrets/**", "**/*.pem"]
allow_gitlinks = true

[checks]
allow_inline = true
inline_allow = ["cargo test*"]

[checks.unit]
run = ["cargo", "test"]
timeout = "2m"
env = { RUST_BACKTRACE = "1" }

[secrets]
allow_paths = ["tests/fixtures/**"]
disable = ["generic-password"]
patterns = { corp = "corp_[a-z0-9]{16}" }
"#;
        let p = Policy::parse(text, "main:.hyperion/policy.toml").expect("valid");
        assert_eq!(p.limits.files, 20);
        assert_eq!(p.limits.change_bytes, 4096);
        assert_eq!(p.limits.request_bytes, DEFAULT_LIMITS.request_bytes);
        assert_eq!(p.min_context, 1);
        assert!(p.allow_gitlinks);
        let unit = p.resolve_check("unit").expect("defined");
        assert_eq!(unit.run, ["cargo", "test"]);
        assert_eq!(unit.timeout, Duration::from_secs(120));
        assert_eq!(unit.env["RUST_BACKTRACE"], "1");
        let inline = p.resolve_check("cargo test --all").expect("allowed");
        assert_eq!(inline.run, ["cargo", "test", "--all"]);
        assert_eq!(
            p.resolve_check("cargo build")
                .expect_err("not allowed")
                .code,
            Code::CheckInlineRefused
        );
        assert_eq!(
            p.resolve_check("cargo test; rm -rf /")
                .expect_err("shell")
                .code,
            Code::CheckInlineRefused
        );
        assert_eq!(
            p.find_secret("x corp_0123456789abcdef y").map(|r| r.0),
            Some("corp")
        );
        assert_eq!(p.find_secret("password = \"hunter2hunter2\""), None);
        let settings = p.settings();
        let row = |k: &str| settings.iter().find(|r| r.0 == k).expect(k).clone();
        assert!(row("limits.files").2);
        assert!(!row("limits.request_bytes").2);
        assert!(row("checks.unit.run").2);
        assert_eq!(row("checks.unit.timeout").1, "2m");
    }

    #[test]
    fn problems_carry_their_lines() {
        let text =
            "[limits]\nfiles = 0\nbogus = 1\n\n[checks.unit]\ntimeout = \"5 parsecs\"\n[wat]\n";
        let problems = Policy::parse(text, "x").expect_err("invalid");
        let got: Vec<(usize, Code)> = problems
            .iter()
            .map(|p| (p.line.expect("line"), p.code))
            .collect();
        assert_eq!(
            got,
            [
                (2, Code::PolicyInvalidValue),
                (3, Code::PolicyUnknownKey),
                (6, Code::PolicyInvalidValue),
                (7, Code::PolicyUnknownKey)
            ],
            "{problems:#?}"
        );
        let syntax = Policy::parse("[limits]\nfiles = = 3\n", "x").expect_err("syntax");
        assert_eq!(
            (syntax[0].code, syntax[0].line),
            (Code::PolicySyntax, Some(2))
        );
    }

    #[test]
    fn tiers_approvals_and_required_checks() {
        let text = r#"
[checks]
required = ["unit", "unit"]

[checks.unit]
run = ["cargo", "test"]

[approvals]
approvers = ["alice@example.com", " bob@example.com "]

[[tiers]]
name = "deploy"
description = "production configuration"
paths = ["deploy/**"]
operations = ["delete", "executable"]
min_changed_lines = 400
min_files = 30
checks = ["release"]
approval = true
approvers = ["carol@example.com"]
required_checks = ["unit"]

[[tiers]]
name = "tests-only"
required_checks = ["unit"]
"#;
        let p = Policy::parse(text, "x").expect("valid");
        assert_eq!(p.required_checks, ["unit"]);
        assert_eq!(p.approvers, ["alice@example.com", "bob@example.com"]);
        assert_eq!(p.tiers.len(), 2);
        let t = &p.tiers[0];
        assert_eq!(t.name, "deploy");
        assert_eq!(
            t.operations,
            [TierOperation::Delete, TierOperation::Executable]
        );
        assert_eq!((t.min_changed_lines, t.min_files), (Some(400), Some(30)));
        assert!(t.approval && t.approvers == ["carol@example.com"]);
        assert_eq!(t.line, 11);
        assert!(!p.tiers[1].approval);
        let settings = p.settings();
        let row = |k: &str| settings.iter().find(|r| r.0 == k).expect(k).clone();
        assert!(row("checks.required").2);
        assert!(row("tiers.deploy").2);
        assert!(!row("tiers.gate").2, "the built-in tiers are defaults");
        assert!(row("tiers.sensitive").1.contains(".github/workflows/**"));
    }

    #[test]
    fn tier_mistakes_carry_their_lines() {
        let text = "[checks]\nrequired = [\"nope\"]\n\n[[tiers]]\nname = \"gate\"\napproval = true\n\n[[tiers]]\nname = \"x\"\noperations = [\"chmod\"]\napproval = true\n\n[[tiers]]\nname = \"quiet\"\npaths = [\"a/**\"]\n\n[[tiers]]\nname = \"y\"\napproval = true\napprovers = []\nwat = 1\n\n[approvals]\napprovers = [\"\\u0007\"]\n\n[[tiers]]\npaths = [\"../x\"]\n";
        let problems = Policy::parse(text, "x").expect_err("invalid");
        let got: Vec<(usize, Code)> = problems
            .iter()
            .map(|p| (p.line.expect("line"), p.code))
            .collect();
        assert_eq!(
            got,
            [
                (2, Code::PolicyInvalidValue),
                (4, Code::PolicyInvalidValue),
                (10, Code::PolicyInvalidValue),
                (13, Code::PolicyInvalidValue),
                (20, Code::PolicyInvalidValue),
                (21, Code::PolicyUnknownKey),
                (24, Code::PolicyInvalidValue),
                (26, Code::PolicyInvalidValue),
                (27, Code::PolicyInvalidValue),
            ],
            "{problems:#?}"
        );
        assert!(
            problems[0]
                .message
                .contains("'nope' is not a check defined")
        );
        assert!(problems[1].message.contains("built in"));
        let twice =
            "[[tiers]]\nname = \"a\"\napproval = true\n[[tiers]]\nname = \"a\"\napproval = true\n";
        let problems = Policy::parse(twice, "x").expect_err("twice");
        assert!(
            problems[0].message.contains("more than once"),
            "{problems:#?}"
        );
        let not_array = "tiers = 3\n";
        assert_eq!(
            Policy::parse(not_array, "x").expect_err("x")[0].code,
            Code::PolicyInvalidValue
        );
    }

    #[test]
    fn unknown_checks_and_inline_commands_by_default() {
        let p = Policy::default();
        assert_eq!(
            p.resolve_check("unit").expect_err("x").code,
            Code::CheckUnknown
        );
        assert_eq!(
            p.resolve_check("cargo test").expect_err("x").code,
            Code::CheckInlineRefused
        );
    }

    #[test]
    fn builtin_secrets() {
        let p = Policy::default();
        for (line, rule) in [
            ("-----BEGIN OPENSSH PRIVATE KEY-----", "private-key"),
            ("-----BEGIN RSA PRIVATE KEY-----", "private-key"),
            ("key_id = AKIAIOSFODNN7EXAMPLE", "aws-access-key-id"),
            (
                "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "aws-secret-access-key",
            ),
            (
                "token: ghp_0123456789abcdefghijklmnopqrstuvwxyzAB",
                "github-token",
            ),
            ("glpat-abcdefghij0123456789", "gitlab-token"),
            ("xoxb-1234567890-abcdefghij", "slack-token"),
            ("let password = \"s3cr3t-value\";", "generic-password"),
            ("API_KEY: 'abcdefgh12345'", "generic-password"),
        ] {
            assert_eq!(p.find_secret(line).map(|r| r.0), Some(rule), "{line}");
        }
        for line in [
            "fn password_is_valid(p: &str) -> bool {",
            "password = \"${PASSWORD}\"",
            "password = \"short\"",
            "let token = get_token();",
            "AKIA is a prefix",
            "-----BEGIN PUBLIC KEY-----",
        ] {
            assert_eq!(p.find_secret(line), None, "{line}");
        }
    }
}
