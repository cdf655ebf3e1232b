//! Risk tiers: which tiers a request falls in and why, whether it must wait for a person's
//! approval and who may give it, and the checks it must pass.
//!
//! The rules are the target tip's policy (`[[tiers]]`, `[approvals]`, `[checks] required`,
//! see docs/policy.md) plus two built-in tiers:
//!
//! - `gate`, hyperion's own gate: `.hyperion/**`, the programs of the policy's checks named by
//!   a path, and this clone's hook directories (`hyperion.hooksDir`, `core.hooksPath`) when
//!   they lie in the work tree. It always needs approval and cannot be redefined or turned
//!   off: changes to the gate land only with a person's approval (design invariant 6).
//! - `sensitive`: hook and CI definitions and executable-bit changes. It needs approval unless
//!   the policy declares a tier of that name, which replaces it.
//!
//! Paths are compared the way the most forgiving file system would compare them (ASCII case,
//! trailing dots and spaces, the code points HFS+ ignores, 8.3 short names), so another
//! spelling of a tier's path is in the tier too. A path that is an ancestor of a tier's path
//! (a file or symlink where the tier's directory would be), a symlink pointing into a tier's
//! path, and (for the built-in tiers) a path that a symlink inside the tier points to, are in
//! the tier as well.
//!
//! This module decides nothing about state: `queue` puts a request that needs approval in
//! `awaiting_approval` and checks approvers, and the worker asks `Queue::at_lease` again with the
//! policy as it is then. It never prints and never changes the repository.

use std::collections::BTreeSet;

use crate::code::Code;
use crate::error::Problem;
use crate::request::model::HistoryEntry;
use crate::request::model::same_identity;
use crate::request::model::{Action, ChangeRequest, Operation, Status};
use crate::request::paths::clean_relative;
use crate::request::policy::{GATE, Policy, Tier, TierOperation, effective};
use crate::request::view::TreeView;

/// Most entries read below one tier directory when looking for symlinks in it.
const WALK_LIMIT: usize = 4096;

/// What this clone's configuration adds to the policy: paths that are part of the gate here,
/// and the approvers of last resort.
#[derive(Debug, Clone, Default)]
pub struct Local {
    /// `hyperion.hooksDir` and `core.hooksPath`, when they lie inside the work tree: hooks
    /// that run from the checkout, which a landed request would change.
    pub gate_paths: Vec<String>,
    /// `hyperion.approvers`: who may approve when the policy names nobody.
    pub approvers: Vec<String>,
}

impl Local {
    /// `hooks_dir` is `hyperion.hooksDir`, `approvers` `hyperion.approvers`.
    pub fn load(
        repo: &gix::Repository,
        hooks_dir: Option<&std::path::Path>,
        approvers: &[String],
    ) -> Local {
        let mut gate_paths = Vec::new();
        let hooks_path = repo
            .config_snapshot()
            .string("core.hooksPath")
            .map(|v| v.to_string());
        let dirs = hooks_dir
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .chain(hooks_path);
        for dir in dirs {
            let dir = dir.trim().to_owned();
            let relative = match (std::path::Path::new(&dir).is_absolute(), repo.workdir()) {
                (false, _) => Some(dir),
                (true, Some(top)) => std::path::Path::new(&dir)
                    .strip_prefix(top)
                    .ok()
                    .map(|r| r.to_string_lossy().into_owned()),
                (true, None) => None,
            };
            if let Some(p) = relative.as_deref().and_then(clean_relative)
                && !gate_paths.contains(&p)
            {
                gate_paths.push(p);
            }
        }
        Local {
            gate_paths,
            approvers: approvers.to_vec(),
        }
    }
}

/// A tier's path glob, folded for comparison.
#[derive(Debug, Clone)]
struct Glob {
    /// As the policy (or the built-in list) writes it; for messages.
    text: String,
    folded: String,
    /// The folded components before the first one with a wildcard.
    literal: Vec<String>,
    /// The symlink through which this glob reaches the tier, for globs derived from one.
    via: Option<String>,
}

impl Glob {
    fn new(text: &str, via: Option<String>) -> Glob {
        let folded = fold(text.trim_end_matches('/'));
        let literal = folded
            .split('/')
            .take_while(|c| !c.contains(['*', '?', '[']))
            .map(str::to_owned)
            .collect();
        Glob {
            text: text.to_owned(),
            folded,
            literal,
            via,
        }
    }

    /// Whether `path` is in this glob's reach: it matches, or it is an ancestor of the
    /// glob's literal part (a file or symlink standing where the tier's directory would be),
    /// in any spelling a file system might take for it.
    fn hits(&self, path: &str) -> bool {
        let folded = fold(path);
        if self.hits_folded(&folded) {
            return true;
        }
        // 8.3 short names: a component such as `HYPERI~1` may be `.hyperion` on Windows.
        let comps: Vec<&str> = folded.split('/').collect();
        if !comps.iter().any(|c| c.contains('~')) {
            return false;
        }
        let mut replaced = Vec::with_capacity(comps.len());
        let mut any = false;
        for (i, c) in comps.iter().enumerate() {
            match self.literal.get(i) {
                Some(long) if is_short_name_of(c, long) => {
                    replaced.push(long.as_str());
                    any = true;
                }
                _ => replaced.push(c),
            }
        }
        any && self.hits_folded(&replaced.join("/"))
    }

    fn hits_folded(&self, folded: &str) -> bool {
        if crate::request::paths::glob_match(&self.folded, folded) {
            return true;
        }
        let comps: Vec<&str> = folded.split('/').collect();
        comps.len() < self.literal.len() && comps.iter().zip(&self.literal).all(|(a, b)| a == b)
    }
}

/// `path` folded the way a case-insensitive file system compares names: ASCII lower case,
/// without the code points HFS+ ignores, without trailing dots and spaces (NTFS), per
/// component.
fn fold(path: &str) -> String {
    path.split('/')
        .map(|c| {
            let kept: String = c
                .chars()
                .filter(|ch| {
                    !matches!(
                        *ch,
                        '\u{200c}'..='\u{200f}'
                            | '\u{202a}'..='\u{202e}'
                            | '\u{206a}'..='\u{206f}'
                            | '\u{feff}'
                    )
                })
                .collect();
            let trimmed = if kept.chars().all(|ch| ch == '.') {
                kept.as_str()
            } else {
                kept.trim_end_matches(['.', ' '])
            };
            trimmed.to_ascii_lowercase()
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether `short` (folded) has the shape of a Windows 8.3 short name of `long` (folded):
/// up to six leading characters of the name without its leading dots, `~`, digits, and
/// optionally a dot and up to three leading characters of the extension.
fn is_short_name_of(short: &str, long: &str) -> bool {
    let Some((base, rest)) = short.split_once('~') else {
        return false;
    };
    let (digits, ext) = match rest.split_once('.') {
        Some((d, e)) => (d, Some(e)),
        None => (rest, None),
    };
    if base.is_empty()
        || base.len() > 6
        || digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || ext.is_some_and(|e| e.is_empty() || e.len() > 3)
        || long.contains(['*', '?', '['])
    {
        return false;
    }
    let name = long.trim_start_matches('.');
    let (long_base, long_ext) = match name.rsplit_once('.') {
        Some((b, e)) if !b.is_empty() => (b, Some(e)),
        _ => (name, None),
    };
    let squeeze = |s: &str| -> String { s.chars().filter(|c| !matches!(c, '.' | ' ')).collect() };
    squeeze(long_base).starts_with(base)
        && match ext {
            None => true,
            Some(e) => long_ext.is_some_and(|le| le.starts_with(e)),
        }
}

/// Where a symlink at `link` pointing to `target` points, as a path from the top of the work
/// tree (`""` for the top itself); `None` when it leaves the repository or is absolute.
fn resolve_link(link: &str, target: &str) -> Option<String> {
    if target.starts_with(['/', '\\']) {
        return None;
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for comp in target.split(['/', '\\']) {
        match comp {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

/// The rules of one target, prepared once for many requests.
pub struct Rules {
    tiers: Vec<(Tier, Vec<Glob>)>,
    default_approvers: Vec<String>,
    default_from: &'static str,
    required_checks: Vec<String>,
}

impl Rules {
    /// The tiers of `policy` with this clone's `local` additions, against the target's
    /// `tree` (`None` when the target branch does not exist yet).
    pub fn new(policy: &Policy, local: &Local, tree: Option<&dyn TreeView>) -> Rules {
        let mut tiers = Vec::new();
        for mut tier in effective(policy) {
            let builtin = tier.line == 0;
            if tier.name == GATE {
                for p in &local.gate_paths {
                    if !tier.paths.contains(p) {
                        tier.paths.push(p.clone());
                    }
                }
            }
            let mut globs: Vec<Glob> = tier.paths.iter().map(|p| Glob::new(p, None)).collect();
            if builtin && let Some(tree) = tree {
                globs.extend(derived_globs(&globs, tree));
            }
            tiers.push((tier, globs));
        }
        let (default_approvers, default_from) = if !policy.approvers.is_empty() {
            (
                policy.approvers.clone(),
                "[approvals] approvers of the policy",
            )
        } else {
            (local.approvers.clone(), "git config hyperion.approvers")
        };
        Rules {
            tiers,
            default_approvers,
            default_from,
            required_checks: policy.required_checks.clone(),
        }
    }

    /// The tiers `req` falls in, each with the first reason found, against the target's
    /// `tree`.
    pub fn assess(&self, req: &ChangeRequest, tree: Option<&dyn TreeView>) -> Assessment {
        let facts: Vec<Facts> = req.changes.iter().map(|c| facts(c, tree)).collect();
        let lines: usize = facts.iter().map(|f| f.lines).sum();
        let mut out = Vec::new();
        for (tier, globs) in &self.tiers {
            if let Some(reason) = reason(tier, globs, req, &facts, lines) {
                let (approvers, from) = if tier.approvers.is_empty() {
                    (self.default_approvers.clone(), self.default_from)
                } else {
                    (tier.approvers.clone(), "the tier's approvers")
                };
                out.push(Matched {
                    name: tier.name.clone(),
                    approval: tier.approval,
                    approvers,
                    approvers_from: from.to_owned(),
                    required_checks: tier.required_checks.clone(),
                    reason,
                });
            }
        }
        Assessment {
            tiers: out,
            required_checks: self.required_checks.clone(),
        }
    }
}

/// Globs that reach a built-in tier through a symlink in the target tree: a symlink inside
/// the tier (or standing for one of its directories) makes what it points to part of the
/// tier, since whatever reads the tier's files on disk reads through it.
fn derived_globs(globs: &[Glob], tree: &dyn TreeView) -> Vec<Glob> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for g in globs {
        if g.literal.is_empty() {
            continue;
        }
        // Look the directory up as the glob spells it (the tree's own spelling may differ
        // only in case, which `fold` ignores when matching; symlinks are found by exact name).
        let lit_text: Vec<&str> = g
            .text
            .trim_end_matches('/')
            .split('/')
            .take(g.literal.len())
            .collect();
        let dir = lit_text.join("/");
        for (link, target) in tree.links_around(&dir, WALK_LIMIT) {
            let Some(resolved) = resolve_link(&link, &target) else {
                continue;
            };
            let link_folded = fold(&link);
            let link_comps = link_folded.split('/').count();
            let derived = if link_comps < g.literal.len() {
                // An ancestor of the tier's directory is a symlink: the directory lives
                // where it points.
                let rest: Vec<&str> = g
                    .text
                    .trim_end_matches('/')
                    .split('/')
                    .skip(link_comps)
                    .collect();
                join(&resolved, &rest.join("/"))
            } else if g.hits(&link) {
                resolved
            } else {
                continue;
            };
            if seen.insert(derived.clone()) {
                out.push(Glob::new(&derived, Some(link.clone())));
            }
        }
    }
    out
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a}/{b}"),
    }
}

/// What one change does, as the tiers look at it.
struct Facts {
    paths: Vec<String>,
    ops: BTreeSet<TierOperation>,
    /// Where the change's symlink points (resolved from the top), when the result is one.
    link: Option<String>,
    /// Lines added and removed.
    lines: usize,
}

fn facts(c: &crate::request::model::Change, tree: Option<&dyn TreeView>) -> Facts {
    let mut paths = vec![c.path.clone()];
    if let Some(from) = &c.from {
        paths.push(from.clone());
    }
    let mut ops = BTreeSet::new();
    ops.insert(match c.operation {
        Operation::Add => TierOperation::Add,
        Operation::Update => TierOperation::Update,
        Operation::Delete => TierOperation::Delete,
        Operation::Rename => TierOperation::Rename,
    });
    let file = crate::request::patch::parse(&c.patch)
        .ok()
        .filter(|f| f.len() == 1)
        .and_then(|f| f.into_iter().next());
    let Some(f) = file else {
        // Validation refuses such a patch; judged by what can be seen.
        return Facts {
            paths,
            ops,
            link: None,
            lines: c.patch.lines().count(),
        };
    };
    let old_path = c.from.as_deref().unwrap_or(&c.path);
    // What is at the target decides, not what the patch claims was there.
    let current = match c.operation {
        Operation::Add => None,
        _ => tree.and_then(|t| t.mode(old_path)).or(f.old_mode),
    };
    let result = match c.operation {
        Operation::Delete => None,
        _ => f.new_mode.or(current).or(Some(0o100644)),
    };
    if current.is_some() && result.is_some() && current != result {
        ops.insert(TierOperation::Mode);
    }
    if result == Some(0o100755) && current != Some(0o100755) {
        ops.insert(TierOperation::Executable);
    }
    if current == Some(0o120000) || result == Some(0o120000) {
        ops.insert(TierOperation::Symlink);
    }
    if f.binary {
        ops.insert(TierOperation::Binary);
    }
    let link = if result == Some(0o120000) {
        let target = if f.hunks.is_empty() {
            tree.and_then(|t| t.link_target(old_path))
        } else {
            let mut lines = Vec::new();
            for h in &f.hunks {
                for l in f.text[h.body.clone()].lines() {
                    if let Some(rest) = l.strip_prefix('+').or_else(|| l.strip_prefix(' ')) {
                        lines.push(rest);
                    }
                }
            }
            Some(lines.join("\n"))
        };
        target.and_then(|t| resolve_link(&c.path, &t))
    } else {
        None
    };
    let lines = if f.binary {
        f.text.lines().count()
    } else {
        f.hunks
            .iter()
            .map(|h| {
                f.text[h.body.clone()]
                    .lines()
                    .filter(|l| l.starts_with(['+', '-']))
                    .count()
            })
            .sum()
    };
    Facts {
        paths,
        ops,
        link,
        lines,
    }
}

/// Why `req` is in `tier`, or `None` when it is not.
fn reason(
    tier: &Tier,
    globs: &[Glob],
    req: &ChangeRequest,
    facts: &[Facts],
    lines: usize,
) -> Option<String> {
    if tier.matches_everything() {
        return Some("the tier takes every request".into());
    }
    for f in facts {
        for g in globs {
            let through = |g: &Glob| match &g.via {
                Some(l) => format!(" (through the symlink '{l}' in the target)"),
                None => String::new(),
            };
            if let Some(p) = f.paths.iter().find(|p| g.hits(p)) {
                return Some(format!("'{p}' matches '{}'{}", g.text, through(g)));
            }
            if let Some(target) = &f.link
                && g.hits(target)
            {
                return Some(format!(
                    "'{}' is a symlink to '{target}', which matches '{}'{}",
                    f.paths[0],
                    g.text,
                    through(g)
                ));
            }
        }
        if let Some(op) = tier.operations.iter().find(|o| f.ops.contains(o)) {
            let what = match op {
                TierOperation::Add => "is added",
                TierOperation::Update => "is updated",
                TierOperation::Delete => "is deleted",
                TierOperation::Rename => "is renamed",
                TierOperation::Mode => "changes its mode",
                TierOperation::Executable => "becomes executable",
                TierOperation::Symlink => "is or becomes a symlink",
                TierOperation::Binary => "is a binary change",
            };
            return Some(format!("'{}' {what}", f.paths[0]));
        }
    }
    if let Some(n) = tier.min_changed_lines
        && lines >= n
    {
        return Some(format!("it changes {lines} lines (at least {n})"));
    }
    if let Some(n) = tier.min_files
        && req.changes.len() >= n
    {
        return Some(format!(
            "it changes {} files (at least {n})",
            req.changes.len()
        ));
    }
    if let Some(c) = req.checks.iter().find(|c| tier.checks.contains(c)) {
        return Some(format!("it names the check '{c}'"));
    }
    None
}

/// One tier a request falls in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    pub name: String,
    pub approval: bool,
    /// Who may approve it (resolved: the tier's, else the policy's, else `hyperion.approvers`).
    pub approvers: Vec<String>,
    /// Where `approvers` come from, for messages.
    pub approvers_from: String,
    pub required_checks: Vec<String>,
    /// The first reason the request is in the tier.
    pub reason: String,
}

/// The tiers a request falls in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assessment {
    pub tiers: Vec<Matched>,
    /// The policy's `[checks] required`.
    pub required_checks: Vec<String>,
}

impl Assessment {
    pub fn needs_approval(&self) -> bool {
        self.tiers.iter().any(|t| t.approval)
    }

    /// Names of the tiers that need approval.
    pub fn approval_tiers(&self) -> Vec<String> {
        self.tiers
            .iter()
            .filter(|t| t.approval)
            .map(|t| t.name.clone())
            .collect()
    }

    /// `tier gate: '.hyperion/policy.toml' matches '.hyperion/**'; tier …`, for the tiers
    /// that need approval.
    pub fn summary(&self) -> String {
        self.tiers
            .iter()
            .filter(|t| t.approval)
            .map(|t| format!("tier {}: {}", t.name, t.reason))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Whether `actor` may approve: an allowed approver of every tier that needs approval.
    /// The problem names the tiers that stand in the way.
    pub fn check_approver(&self, actor: &str) -> std::result::Result<(), Problem> {
        let mut nobody = Vec::new();
        let mut refused = Vec::new();
        for t in self.tiers.iter().filter(|t| t.approval) {
            if t.approvers.is_empty() {
                nobody.push(t.name.as_str());
            } else if !t.approvers.iter().any(|a| same_identity(a, actor)) {
                refused.push(format!(
                    "tier {} (approvers from {}: {})",
                    t.name,
                    t.approvers_from,
                    t.approvers.join(", ")
                ));
            }
        }
        if !nobody.is_empty() {
            return Err(Problem::new(
                Code::ApprovalNoApprovers,
                format!(
                    "nobody may approve tier {}: neither the tier, the policy's [approvals] approvers nor git config hyperion.approvers name anyone",
                    nobody.join(", ")
                ),
                "name approvers in the target's .hyperion/policy.toml ([approvals] approvers, or the tier's approvers), or set git config hyperion.approvers",
            ));
        }
        if !refused.is_empty() {
            return Err(Problem::new(
                Code::ApprovalNotAllowed,
                format!("'{actor}' may not approve {}", refused.join("; ")),
                "ask an allowed approver; your identity is HYPERION_ACTOR, else git config user.email",
            ));
        }
        Ok(())
    }

    /// The checks the request must pass: the policy's required ones, then its tiers', then
    /// the ones it names, each once. A request can add checks; it cannot remove a required
    /// one.
    pub fn checks(&self, req: &ChangeRequest) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let all = self
            .required_checks
            .iter()
            .chain(self.tiers.iter().flat_map(|t| t.required_checks.iter()))
            .chain(req.checks.iter());
        for c in all {
            if !out.contains(c) {
                out.push(c.clone());
            }
        }
        out
    }
}

/// The checks `req` must pass under `policy` (required by the policy and by its tiers, plus
/// its own), judged against the target's `tree`. See [`Assessment::checks`].
pub fn effective_checks(
    policy: &Policy,
    local: &Local,
    tree: Option<&dyn TreeView>,
    req: &ChangeRequest,
) -> Vec<String> {
    Rules::new(policy, local, tree)
        .assess(req, tree)
        .checks(req)
}

/// The approval that lets a request in `assessment` go on, found in its `history` (newest
/// first): an `approve` event since it last entered the queue or `awaiting_approval`
/// (`enqueue`, `requeue`, `hold`, `reject`), by an actor allowed now. `Ok(None)` when no tier
/// needs approval; `Err` says what is missing.
pub fn valid_approval(
    history: &[HistoryEntry],
    assessment: &Assessment,
) -> std::result::Result<Option<String>, String> {
    if !assessment.needs_approval() {
        return Ok(None);
    }
    let mut approvals = Vec::new();
    for h in history {
        let e = &h.event;
        if matches!(
            e.action,
            Action::Enqueue | Action::Requeue | Action::Hold | Action::Reject
        ) || e.to == Status::AwaitingApproval
        {
            break;
        }
        if e.action == Action::Approve
            && e.from == Some(Status::AwaitingApproval)
            && e.to == Status::Pending
        {
            approvals.push(e.actor.as_str());
        }
    }
    let Some(newest) = approvals.first() else {
        return Err(format!(
            "it needs approval ({}) and has none since it was last queued",
            assessment.summary()
        ));
    };
    let mut why = String::new();
    for actor in &approvals {
        match assessment.check_approver(actor) {
            Ok(()) => return Ok(Some((*actor).to_owned())),
            Err(p) if actor == newest => why = p.message,
            Err(_) => {}
        }
    }
    Err(format!(
        "its approval does not hold under the current policy: {why}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::policy::SENSITIVE;
    use std::collections::HashMap;

    /// A tree as a map of path → (mode, symlink target).
    #[derive(Default)]
    struct Fake(HashMap<String, (u32, String)>);

    impl Fake {
        fn with(mut self, path: &str, mode: u32, target: &str) -> Fake {
            self.0.insert(path.into(), (mode, target.into()));
            self
        }
    }

    impl TreeView for Fake {
        fn entry(&self, path: &str) -> Option<crate::request::view::TreeEntry> {
            use crate::request::view::TreeEntry;
            Some(match self.0.get(path)?.0 {
                0o120000 => TreeEntry::Symlink,
                0o040000 => TreeEntry::Dir,
                0o160000 => TreeEntry::Submodule,
                _ => TreeEntry::File,
            })
        }
        fn blob(&self, path: &str) -> Option<Vec<u8>> {
            self.0.get(path).map(|e| e.1.clone().into_bytes())
        }
        fn symlinks(&self) -> Vec<String> {
            let mut out: Vec<String> = (self.0.iter())
                .filter(|(_, e)| e.0 == 0o120000)
                .map(|(p, _)| p.clone())
                .collect();
            out.sort();
            out
        }
        fn mode(&self, path: &str) -> Option<u32> {
            self.0.get(path).map(|e| e.0)
        }
    }

    fn change(path: &str, op: &str, patch: &str) -> serde_json::Value {
        serde_json::json!({"path": path, "operation": op, "patch": patch,
            "sha256": crate::request::model::sha256_hex(patch.as_bytes())})
    }

    fn req(changes: Vec<serde_json::Value>, checks: &[&str]) -> ChangeRequest {
        serde_json::from_value(serde_json::json!({
            "schema": crate::request::model::SCHEMA_V1, "task_id": "T", "agent": "a", "title": "t",
            "file_targets": ["**"], "changes": changes, "checks": checks,
        }))
        .expect("a request")
    }

    fn add(path: &str) -> serde_json::Value {
        change(
            path,
            "add",
            &format!(
                "diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+x\n"
            ),
        )
    }

    fn tiers_of(policy: &str, r: &ChangeRequest, tree: Option<&dyn TreeView>) -> Vec<String> {
        let p = Policy::parse(policy, "t").expect("valid policy");
        Rules::new(&p, &Local::default(), tree)
            .assess(r, tree)
            .tiers
            .into_iter()
            .map(|t| t.name)
            .collect()
    }

    #[test]
    fn the_gate_in_every_spelling() {
        for path in [
            ".hyperion/policy.toml",
            ".Hyperion/policy.toml",
            ".HYPERION/hooks/pre-apply.d/x",
            ".hyperion./policy.toml",
            ".hyperion /policy.toml",
            ".hyper\u{200c}ion/policy.toml",
            "HYPERI~1/policy.toml",
            "hyperi~2/POLICY~1.TOM",
            ".hyperion",
        ] {
            assert_eq!(
                tiers_of("", &req(vec![add(path)], &[]), None),
                [GATE],
                "{path:?}"
            );
        }
        for path in [
            "hyperion/policy.toml",
            "src/.hyperion.rs",
            "docs/x~1.md",
            "a.hyperion/x",
        ] {
            assert!(
                tiers_of("", &req(vec![add(path)], &[]), None).is_empty(),
                "{path:?}"
            );
        }
    }

    #[test]
    fn renames_count_both_paths_and_ancestors_stand_for_the_directory() {
        let patch = "diff --git a/x b/.hyperion/policy.toml\nsimilarity index 100%\nrename from x\nrename to .hyperion/policy.toml\n";
        let mut c = change(".hyperion/policy.toml", "rename", patch);
        c["from"] = "x".into();
        assert_eq!(tiers_of("", &req(vec![c], &[]), None), [GATE]);
        // A file named `.github` where `.github/workflows/` would be.
        assert_eq!(
            tiers_of("", &req(vec![add(".github")], &[]), None),
            [SENSITIVE]
        );
    }

    #[test]
    fn executable_bits_are_judged_by_the_target_not_the_patch() {
        let lying = "diff --git a/run.sh b/run.sh\nold mode 100755\nnew mode 100755\nindex 1111111..2222222\n--- a/run.sh\n+++ b/run.sh\n@@ -1 +1 @@\n-a\n+b\n";
        let tree = Fake::default().with("run.sh", 0o100644, "");
        let r = req(vec![change("run.sh", "update", lying)], &[]);
        assert_eq!(tiers_of("", &r, Some(&tree)), [SENSITIVE]);
        let honest_tree = Fake::default().with("run.sh", 0o100755, "");
        assert!(tiers_of("", &r, Some(&honest_tree)).is_empty());
        let new_exec =
            "diff --git a/t b/t\nnew file mode 100755\n--- /dev/null\n+++ b/t\n@@ -0,0 +1 @@\n+x\n";
        assert_eq!(
            tiers_of("", &req(vec![change("t", "add", new_exec)], &[]), None),
            [SENSITIVE]
        );
    }

    #[test]
    fn symlinks_into_a_tier_and_out_of_one() {
        let link = |path: &str, target: &str| {
            change(
                path,
                "add",
                &format!(
                    "diff --git a/{path} b/{path}\nnew file mode 120000\n--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+{target}\n\\ No newline at end of file\n"
                ),
            )
        };
        assert_eq!(
            tiers_of(
                "",
                &req(vec![link("docs/p", "../.hyperion/policy.toml")], &[]),
                None
            ),
            [GATE]
        );
        assert_eq!(
            tiers_of("", &req(vec![link("docs/g", "../.github")], &[]), None),
            [SENSITIVE]
        );
        assert!(tiers_of("", &req(vec![link("docs/r", "../README.md")], &[]), None).is_empty());
        // A hook in the target that is a symlink makes its target part of the tier.
        let tree = Fake::default()
            .with(".husky/pre-commit", 0o120000, "../scripts/pc.sh")
            .with("scripts/pc.sh", 0o100644, "");
        let patch = "--- a/scripts/pc.sh\n+++ b/scripts/pc.sh\n@@ -1 +1 @@\n-a\n+b\n";
        let r = req(vec![change("scripts/pc.sh", "update", patch)], &[]);
        assert_eq!(tiers_of("", &r, Some(&tree)), [SENSITIVE]);
        assert!(tiers_of("", &r, None).is_empty());
        // The gate's directory itself a symlink: its target is the gate.
        let tree = Fake::default().with(".hyperion", 0o120000, "config/gate");
        assert_eq!(
            tiers_of(
                "",
                &req(vec![add("config/gate/policy.toml")], &[]),
                Some(&tree)
            ),
            [GATE]
        );
    }

    #[test]
    fn declared_tiers_and_their_conditions() {
        let policy = r#"
[checks.unit]
run = ["./ci/unit.sh"]
[checks.deploy]
run = ["true"]
[approvals]
approvers = ["Alice@example.com"]
[[tiers]]
name = "sensitive"
paths = ["deploy/**"]
approval = true
approvers = ["bob@example.com"]
[[tiers]]
name = "big"
min_changed_lines = 3
min_files = 2
approval = true
[[tiers]]
name = "deletes"
operations = ["delete"]
required_checks = ["unit"]
[[tiers]]
name = "deployers"
checks = ["deploy"]
approval = true
"#;
        // Executable bits are no longer in the replaced `sensitive`.
        let exec =
            "diff --git a/t b/t\nnew file mode 100755\n--- /dev/null\n+++ b/t\n@@ -0,0 +1 @@\n+x\n";
        assert!(tiers_of(policy, &req(vec![change("t", "add", exec)], &[]), None).is_empty());
        assert_eq!(
            tiers_of(policy, &req(vec![add("deploy/x")], &[]), None),
            ["sensitive"]
        );
        assert_eq!(
            tiers_of(policy, &req(vec![add("a"), add("b")], &[]), None),
            ["big"]
        );
        assert_eq!(
            tiers_of(policy, &req(vec![add("a")], &["deploy"]), None),
            ["deployers"]
        );
        // The check's program is part of the gate.
        assert_eq!(
            tiers_of(policy, &req(vec![add("ci/unit.sh")], &[]), None),
            [GATE]
        );
        let del = "diff --git a/a b/a\ndeleted file mode 100644\n--- a/a\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n";
        let r = req(vec![change("a", "delete", del)], &[]);
        let p = Policy::parse(policy, "t").expect("valid");
        let a = Rules::new(&p, &Local::default(), None).assess(&r, None);
        assert_eq!(a.tiers[0].name, "deletes");
        assert!(!a.needs_approval());
        assert_eq!(a.checks(&r), ["unit"]);
        // Approvers: the tier's own, else the policy's default; identities compare without case.
        let gate = req(vec![add(".hyperion/x")], &[]);
        let a = Rules::new(&p, &Local::default(), None).assess(&gate, None);
        assert!(a.check_approver("alice@EXAMPLE.com").is_ok());
        assert_eq!(
            a.check_approver("bob@example.com")
                .expect_err("not allowed")
                .code,
            Code::ApprovalNotAllowed
        );
        let both = req(vec![add(".hyperion/x"), add("deploy/y")], &[]);
        let a = Rules::new(&p, &Local::default(), None).assess(&both, None);
        assert!(a.check_approver("alice@example.com").is_err());
        assert!(a.check_approver("bob@example.com").is_err());
    }

    #[test]
    fn required_checks_come_first_and_cannot_be_dropped() {
        let p = Policy::parse(
            "[checks]\nrequired = [\"unit\"]\n[checks.unit]\nrun = [\"true\"]\n[checks.lint]\nrun = [\"true\"]\n",
            "t",
        )
        .expect("valid");
        for (named, want) in [
            (vec![], vec!["unit"]),
            (vec!["lint"], vec!["unit", "lint"]),
            (vec!["lint", "unit"], vec!["unit", "lint"]),
        ] {
            let r = req(vec![add("a")], &named);
            assert_eq!(effective_checks(&p, &Local::default(), None, &r), want);
        }
    }

    #[test]
    fn nobody_may_approve_without_approvers() {
        let r = req(vec![add(".hyperion/x")], &[]);
        let a = Rules::new(&Policy::default(), &Local::default(), None).assess(&r, None);
        assert_eq!(
            a.check_approver("anyone").expect_err("nobody").code,
            Code::ApprovalNoApprovers
        );
        let local = Local {
            gate_paths: vec!["scripts/hooks".into()],
            approvers: vec!["carol".into()],
        };
        let rules = Rules::new(&Policy::default(), &local, None);
        assert!(rules.assess(&r, None).check_approver("carol").is_ok());
        let hook = req(vec![add("scripts/hooks/pre-commit")], &[]);
        assert_eq!(rules.assess(&hook, None).approval_tiers(), [GATE]);
    }

    #[test]
    fn short_names() {
        assert!(is_short_name_of("hyperi~1", ".hyperion"));
        assert!(is_short_name_of("github~12", ".github"));
        assert!(is_short_name_of("policy~1.tom", "policy.toml"));
        assert!(!is_short_name_of("hyperx~1", ".hyperion"));
        assert!(!is_short_name_of("hyperion~1", ".hyperion"));
        assert!(!is_short_name_of("hyperi~", ".hyperion"));
    }
}
