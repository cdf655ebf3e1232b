//! The few things done by running the `git` binary: whole-repository operations where git's
//! own implementation is the reference (bundles for archives). Hot paths never spawn git.

use std::path::Path;
use std::process::Command;

use crate::error::{Error, Result};

fn run(git_dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(git_dir)
        .args(args)
        .output()
        .map_err(|e| Error::io("could not run git", e))?;
    if !out.status.success() {
        return Err(Error::Git(format!(
            "git {} failed: {}",
            args.first().copied().unwrap_or(""),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Write a bundle holding `refs` and everything they reach.
pub fn bundle_create(git_dir: &Path, bundle: &Path, refs: &[String]) -> Result<()> {
    let bundle = bundle.to_string_lossy();
    let mut args = vec!["bundle", "create", "-q", &*bundle];
    args.extend(refs.iter().map(String::as_str));
    run(git_dir, &args).map(|_| ())
}

/// Check that a bundle is complete and lists every one of `refs`.
pub fn bundle_verify(git_dir: &Path, bundle: &Path, refs: &[String]) -> Result<()> {
    let listed = run(
        git_dir,
        &["bundle", "list-heads", &bundle.to_string_lossy()],
    )?;
    for r in refs {
        if !listed.lines().any(|l| l.ends_with(r.as_str())) {
            return Err(Error::Git(format!(
                "archive {} lacks {r}",
                bundle.display()
            )));
        }
    }
    run(
        git_dir,
        &["bundle", "verify", "-q", &bundle.to_string_lossy()],
    )
    .map(|_| ())
}
