use hyperion::Code;
use hyperion::queue::settings::KEYS;

use super::error::{CmdResult, CommandError};
use super::{Ctx, print_json};

/// Show every hyperion setting, its effective value and where it comes from.
///
/// Settings are read from git config at every level git reads (system, global, local,
/// worktree); a setting that is set nowhere shows its default. Change one with
/// `git config hyperion.<name> VALUE`.
///
/// The rules of the target branch's policy follow as `policy.*` rows, with the origin
/// `policy:BRANCH:.hyperion/policy.toml` for values the file sets and `default` for the rest.
#[derive(clap::Args, Debug)]
pub struct Args {}

#[derive(serde::Serialize)]
struct Row {
    key: String,
    value: String,
    origin: String,
    help: String,
}

pub fn run(_args: Args, ctx: &Ctx) -> CmdResult {
    let store = ctx.store()?;
    // Validate first, so a bad value is reported with its key.
    let settings = hyperion::queue::settings::Settings::load(store.repo())?;
    let out = hyperion::git::command::at(store.git_dir())
        .args([
            "config",
            "--show-origin",
            "--show-scope",
            "--get-regexp",
            r"^hyperion\.",
        ])
        .output()
        .map_err(|e| CommandError::env(Code::EnvIo, format!("could not run git: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut rows = Vec::new();
    for k in KEYS {
        let lower = k.name.to_ascii_lowercase();
        // Later lines win, as in git.
        let found = text
            .lines()
            .rev()
            .filter_map(|l| {
                let mut parts = l.splitn(3, '\t');
                let scope = parts.next()?;
                let origin = parts.next()?;
                let rest = parts.next()?;
                let (key, value) = rest.split_once(' ').unwrap_or((rest, ""));
                (key == lower).then(|| (format!("{scope} ({origin})"), value.to_owned()))
            })
            .next();
        let (origin, value) = found.unwrap_or_else(|| ("default".into(), k.default.to_owned()));
        rows.push(Row {
            key: k.name.to_owned(),
            value,
            origin,
            help: k.help.to_owned(),
        });
    }
    rows.extend(policy_rows(&store, &settings.target)?);
    if ctx.json() {
        print_json(&rows);
    } else {
        let w = |f: fn(&Row) -> usize| rows.iter().map(f).max().unwrap_or(0);
        let (wk, wv, wo) = (
            w(|r| r.key.len()),
            w(|r| r.value.chars().count().min(30)),
            w(|r| r.origin.len()),
        );
        for r in &rows {
            println!(
                "{:<wk$} {:<wv$} {:<wo$} # {}",
                r.key, r.value, r.origin, r.help
            );
        }
    }
    Ok(())
}

/// The effective policy of `target` as rows: a value the policy file sets has the origin
/// `policy:TARGET:.hyperion/policy.toml`, the others `default`.
fn policy_rows(
    store: &hyperion::queue::store::Store,
    target: &hyperion::request::target::Target,
) -> CmdResult<Vec<Row>> {
    let repo = store.repo();
    let policy = match target.resolve(repo) {
        Ok(tip) => tip.policy(repo)?,
        Err(e) => {
            e.refusal()?;
            hyperion::request::policy::Policy::default()
        }
    };
    let origin = policy
        .origin
        .as_ref()
        .map(|o| format!("policy:{o}"))
        .unwrap_or_default();
    Ok(policy
        .settings()
        .into_iter()
        .map(|(key, value, set)| Row {
            help: policy_help(&key),
            key: format!("policy.{key}"),
            value,
            origin: if set {
                origin.clone()
            } else {
                "default".to_owned()
            },
        })
        .collect())
}

fn policy_help(key: &str) -> String {
    let fixed = match key {
        "limits.change_bytes" => "largest patch of one change, in bytes",
        "limits.request_bytes" => "largest total of a request's patches, in bytes",
        "limits.files" => "most changes (files) in one request",
        "limits.file_bytes" => "largest file a request may change or produce, in bytes",
        "limits.file_lines" => "most lines of a file a text patch may change or produce",
        "limits.inflated_bytes" => "largest total of the files a request produces, in bytes",
        "patch.min_context" => "context lines a hunk needs, except at the start/end of a file",
        "paths.deny" => "globs of paths no request may touch",
        "paths.allow_gitlinks" => "whether requests may change submodules",
        "checks.allow_inline" => "whether requests may name inline commands as checks",
        "checks.inline_allow" => "globs an inline command must match",
        "checks.inline_timeout" => "timeout of an inline command",
        "secrets.rules" => "secret rules applied to added lines",
        "secrets.allow_paths" => "globs of paths not scanned for secrets",
        _ => "",
    };
    if !fixed.is_empty() {
        return fixed.to_owned();
    }
    match key.strip_prefix("checks.").and_then(|k| k.rsplit_once('.')) {
        Some((name, "run")) => format!("check '{name}': program and arguments"),
        Some((name, "timeout")) => format!("check '{name}': timeout"),
        Some((name, "env")) => format!("check '{name}': environment"),
        _ => String::new(),
    }
}
