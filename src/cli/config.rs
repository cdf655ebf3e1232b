use std::process::Command;

use hyperion::settings::KEYS;

use super::error::{CmdResult, CommandError};
use super::{Ctx, print_json};

/// Show every hyperion setting, its effective value and where it comes from.
///
/// Settings are read from git config at every level git reads (system, global, local,
/// worktree); a setting that is set nowhere shows its default. Change one with
/// `git config hyperion.<name> VALUE`.
#[derive(clap::Args, Debug)]
pub struct Args {}

#[derive(serde::Serialize)]
struct Row {
    key: &'static str,
    value: String,
    origin: String,
    help: &'static str,
}

pub fn run(_args: Args, ctx: &Ctx) -> CmdResult {
    let store = ctx.store()?;
    // Validate first, so a bad value is reported with its key.
    hyperion::settings::Settings::load(store.repo())?;
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(store.git_dir())
        .args([
            "config",
            "--show-origin",
            "--show-scope",
            "--get-regexp",
            r"^hyperion\.",
        ])
        .output()
        .map_err(|e| CommandError::env("env.io", format!("could not run git: {e}")))?;
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
            key: k.name,
            value,
            origin,
            help: k.help,
        });
    }
    if ctx.json() {
        print_json(&rows);
    } else {
        for r in &rows {
            println!(
                "{:<24} {:<10} {:<40} # {}",
                r.key, r.value, r.origin, r.help
            );
        }
    }
    Ok(())
}
