use std::path::PathBuf;

use hyperion::request::policy::Policy;

use super::enqueue::{check_targets, load_sources};
use super::error::{CmdResult, CommandError};
use super::{Ctx, print_json};

/// Check requests without storing anything, reporting every problem found.
///
/// Inside a repository, each request is also checked against its target branch and the policy
/// there (`.hyperion/policy.toml`): operations must fit the files, and the policy's limits,
/// path rules, checks and secret rules apply. Outside one, the default policy applies.
///
/// Prints `ok ID SOURCE` for each valid request. Exits 1 if any request is refused.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Request files, directories of them, or `-` for stdin.
    #[arg(value_name = "FILE|DIR|-", required = true)]
    sources: Vec<PathBuf>,
}

pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    super::enqueue::read_default_policy(ctx);
    let loaded = load_sources(&args.sources)?;
    let checked = if ctx.store().is_ok() {
        check_targets(loaded, ctx)?
    } else {
        let policy = Policy::default();
        loaded
            .into_iter()
            .map(|(source, req, mut problems)| match req {
                Some(req) => {
                    problems.extend(hyperion::request::validate::check_policy(
                        &req, &policy, None,
                    ));
                    if problems.is_empty() {
                        (source, Ok(req))
                    } else {
                        (source, Err(problems))
                    }
                }
                None => (source, Err(problems)),
            })
            .collect()
    };
    let mut problems = Vec::new();
    let mut rows = Vec::new();
    for (source, r) in checked {
        match r {
            Ok(req) => {
                rows.push(serde_json::json!({"source": source, "id": req.id(), "valid": true}))
            }
            Err(ps) => {
                rows.push(serde_json::json!({"source": source, "valid": false, "problems": ps}));
                problems.extend(ps.into_iter().map(|p| (source.clone(), p)));
            }
        }
    }
    if ctx.json() {
        print_json(&rows);
    } else {
        for r in &rows {
            if r["valid"] == true {
                println!(
                    "ok {} {}",
                    r["id"].as_str().unwrap_or(""),
                    r["source"].as_str().unwrap_or("")
                );
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        let mut e = CommandError::rejected(problems);
        e.message = e.message.replace("nothing was enqueued", "refused");
        e.hints.retain(|h| !h.starts_with("nothing was stored"));
        // The JSON document above already carries the problems.
        e.json_printed = ctx.json();
        Err(e)
    }
}
