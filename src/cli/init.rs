use hyperion::Code;
use hyperion::request::target::Target;

use super::error::{CmdResult, CommandError};
use super::{Ctx, print_json};

/// Set up hyperion in this repository.
///
/// Records the target branch in git config (`hyperion.target`) and creates
/// `$GIT_DIR/hyperion/` for derived state. Safe to run again; it changes only what you pass.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Branch that requests land on (default: the current branch, else `main`).
    #[arg(long, value_name = "BRANCH")]
    target: Option<String>,
}

pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    let store = ctx.store()?;
    let repo = store.repo();
    let current = repo
        .config_snapshot()
        .string("hyperion.target")
        .map(|s| s.to_string());
    let target = match (args.target, current) {
        (Some(t), _) => t,
        (None, Some(t)) => t,
        (None, None) => repo
            .head_name()
            .ok()
            .flatten()
            .map(|n| n.shorten().to_string())
            .unwrap_or_else(|| "main".into()),
    };
    let target = Target::parse(&target).map_err(CommandError::from_problem)?;
    // A repository with branches must name one of them; a new repository (no branch yet)
    // may name the branch its first commit will create.
    if target.tip(repo)?.is_none() && !hyperion::request::target::branches(repo)?.is_empty() {
        return Err(CommandError::from_problem(target.missing(repo)?));
    }
    let target = target.name().to_owned();
    let out = hyperion::git::command::at(store.git_dir())
        .args(["config", "hyperion.target", &target])
        .output()
        .map_err(|e| CommandError::env(Code::EnvIo, format!("could not run git: {e}")))?;
    if !out.status.success() {
        return Err(CommandError::env(
            Code::EnvGit,
            format!(
                "could not set hyperion.target: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    let dir = store.hyperion_dir();
    std::fs::create_dir_all(&dir).map_err(|e| {
        CommandError::env(
            Code::EnvIo,
            format!("could not create {}: {e}", dir.display()),
        )
    })?;
    if ctx.json() {
        print_json(&serde_json::json!({"git_dir": store.git_dir(), "target": target}));
    } else {
        println!(
            "hyperion is set up in {} (target branch: {target})",
            store.git_dir().display()
        );
        println!("next: git hyperion enqueue REQUEST.json   (or: git hyperion demo)");
    }
    Ok(())
}
