use hyperion::Code;
use hyperion::request::target::Target;

use super::error::{CmdResult, CommandError};
use super::{Ctx, print_json};

/// Set up hyperion in this repository.
///
/// Records the target branch in git config (`hyperion.target`) and creates
/// `$GIT_DIR/hyperion/` for derived state. Safe to run again; it changes only what you pass.
///
/// With `--remote NAME`, the queue is shared through that git remote: `hyperion.remote` is
/// set, and `remote.NAME.fetch` and `remote.NAME.push` get refspecs for the queue and the
/// notes (each once), so that plain `git fetch NAME` mirrors the remote's queue into
/// refs/hyperion-remotes/NAME/ and plain `git push NAME` pushes the queue fast-forward only.
/// Note: with `remote.NAME.push` set, `git push NAME` with no refspec pushes those refspecs
/// only; name branches to push them (`git push NAME main`). See docs/remote.md.
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
    let remote = match ctx.remote.as_deref() {
        Some(name) => Some(set_up_remote(&store, name)?),
        None => None,
    };
    let dir = store.hyperion_dir();
    std::fs::create_dir_all(&dir).map_err(|e| {
        CommandError::env(
            Code::EnvIo,
            format!("could not create {}: {e}", dir.display()),
        )
    })?;
    if ctx.json() {
        let mut doc = serde_json::json!({"git_dir": store.git_dir(), "target": target});
        if let Some((r, added)) = &remote {
            doc["remote"] = serde_json::json!({"name": r.name(), "refspecs_added": added});
        }
        print_json(&doc);
    } else {
        println!(
            "hyperion is set up in {} (target branch: {target})",
            store.git_dir().display()
        );
        if let Some((r, added)) = &remote {
            println!(
                "the queue is shared through remote {} ({added} refspec(s) added; `git hyperion fetch` brings it in)",
                r.name()
            );
        }
        println!("next: git hyperion enqueue REQUEST.json   (or: git hyperion demo)");
    }
    Ok(())
}

/// `init --remote NAME`: `hyperion.remote` and the refspecs of the queue and the notes, each
/// added once. The remote, and how many refspecs were new.
fn set_up_remote(
    store: &hyperion::queue::store::Store,
    name: &str,
) -> CmdResult<(hyperion::queue::remote::Remote, usize)> {
    use hyperion::git::remote::config_add_once;
    let remote =
        hyperion::queue::remote::Remote::named(store, name, hyperion::gate::verify::REMOTE_CHECKS)?;
    let git_dir = store.git_dir();
    let mut added = 0;
    for spec in remote.fetch_refspecs() {
        added += usize::from(config_add_once(
            git_dir,
            &format!("remote.{name}.fetch"),
            &spec,
        )?);
    }
    for spec in remote.push_refspecs() {
        added += usize::from(config_add_once(
            git_dir,
            &format!("remote.{name}.push"),
            &spec,
        )?);
    }
    hyperion::git::command::output(
        hyperion::git::command::at(git_dir).args(["config", "hyperion.remote", name]),
        "git config hyperion.remote",
    )?;
    Ok((remote, added))
}
