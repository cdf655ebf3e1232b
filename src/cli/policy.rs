use hyperion::tui::shown_line;
use std::path::PathBuf;

use hyperion::Code;
use hyperion::Error;
use hyperion::request::policy::{POLICY_PATH, Policy};

use super::error::{CmdResult, CommandError};
use super::{Ctx, print_json};

/// Work with the policy file, `.hyperion/policy.toml` in the target branch's tree.
///
/// The policy holds the versioned rules every request must pass: size limits, minimum hunk
/// context, denied paths, submodules, named checks and inline commands, secret rules. It is
/// always read from the target branch's tip, never from a request. See docs/policy.md.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    Check(CheckArgs),
}

/// Check a policy file and report every problem with its line.
///
/// Without arguments, checks the policy at the tip of the target branch (`hyperion.target`);
/// with --rev, the one in that commit's tree; with FILE, a file in the working copy, to check
/// it before committing it. Unknown keys are refused. Prints `ok ORIGIN` when the policy is
/// valid; exits 1 when it is not.
#[derive(clap::Args, Debug)]
struct CheckArgs {
    /// A policy file to check (e.g. the working copy's .hyperion/policy.toml).
    #[arg(value_name = "FILE", conflicts_with = "rev")]
    file: Option<PathBuf>,
    /// Check the policy in this revision's tree (branch, tag or commit).
    #[arg(long, value_name = "REV")]
    rev: Option<String>,
}

pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    match args.command {
        Sub::Check(a) => check(a, ctx),
    }
}

fn check(args: CheckArgs, ctx: &Ctx) -> CmdResult {
    let (origin, result) = match &args.file {
        Some(path) => {
            let origin = path.display().to_string();
            let bytes = std::fs::read(path).map_err(|e| {
                CommandError::usage(format!("could not read {origin}: {e}"))
                    .hint("pass the path of a policy file, e.g. .hyperion/policy.toml")
            })?;
            let result = match String::from_utf8(bytes) {
                Ok(text) => Policy::parse(&text, &origin).map(Some),
                Err(_) => Err(vec![hyperion::Problem::new(
                    Code::PolicySyntax,
                    "the policy file is not UTF-8 text",
                    "save the policy file as UTF-8",
                )]),
            };
            (origin, result)
        }
        None => {
            let store = ctx.store()?;
            let repo = store.repo();
            let (rev, tree) = match &args.rev {
                Some(rev) => (rev.clone(), tree_of(store.git_dir(), rev)?),
                None => {
                    let target = hyperion::queue::settings::Settings::load(repo)?.target;
                    match target.resolve(repo) {
                        Ok(tip) => (target.to_string(), tip.tree),
                        Err(e) => {
                            e.refusal()?;
                            return report_defaults(
                                ctx,
                                target.name(),
                                "the branch does not exist yet",
                            );
                        }
                    }
                }
            };
            let origin = format!("{rev}:{POLICY_PATH}");
            match Policy::load(repo, Some(tree), &rev) {
                Ok(p) if p.origin.is_none() => {
                    return report_defaults(ctx, &rev, "it has no policy file");
                }
                Ok(p) => (origin, Ok(Some(p))),
                Err(Error::Policy { problems, .. }) => (origin, Err(problems)),
                Err(e) => return Err(e.into()),
            }
        }
    };
    match result {
        Ok(policy) => {
            let checks = policy.as_ref().map_or(0, |p| p.checks.len());
            if ctx.json() {
                print_json(
                    &serde_json::json!({"origin": origin, "valid": true, "problems": [], "checks": checks}),
                );
            } else {
                println!("ok {origin} ({checks} named check(s))");
            }
            Ok(())
        }
        Err(problems) => {
            if ctx.json() {
                print_json(
                    &serde_json::json!({"origin": origin, "valid": false, "problems": problems}),
                );
            } else {
                for p in &problems {
                    match p.line {
                        Some(line) => {
                            eprintln!(
                                "error: {origin}:{line}: {} [{}]",
                                shown_line(&p.message),
                                p.code
                            )
                        }
                        None => {
                            eprintln!("error: {origin}: {} [{}]", shown_line(&p.message), p.code)
                        }
                    }
                }
            }
            let mut e = CommandError::refused(
                Code::PolicyInvalid,
                format!("{origin}: {} problem(s)", problems.len()),
            )
            .hint("see docs/policy.md for every key and its values");
            e.json_printed = ctx.json();
            Err(e)
        }
    }
}

fn report_defaults(ctx: &Ctx, rev: &str, why: &str) -> CmdResult {
    if ctx.json() {
        print_json(
            &serde_json::json!({"origin": null, "rev": rev, "valid": true, "problems": [], "checks": 0}),
        );
    } else {
        println!("ok {rev}: {why}; the default policy applies");
    }
    Ok(())
}

/// The tree of `rev`, by git's own rules for revisions; an unknown revision is a usage
/// error.
fn tree_of(git_dir: &std::path::Path, rev: &str) -> CmdResult<gix::ObjectId> {
    let spec = format!("{rev}^{{tree}}");
    let out = hyperion::git::command::at(git_dir)
        .args([
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &spec,
        ])
        .output()
        .map_err(|e| CommandError::env(Code::EnvIo, format!("could not run git: {e}")))?;
    if !out.status.success() {
        return Err(
            CommandError::usage(format!("'{rev}' names no commit or tree"))
                .hint("give a branch, tag or commit id"),
        );
    }
    let hex = String::from_utf8_lossy(&out.stdout);
    gix::ObjectId::from_hex(hex.trim().as_bytes())
        .map_err(|e| CommandError::env(Code::EnvGit, format!("git rev-parse printed '{hex}': {e}")))
}
