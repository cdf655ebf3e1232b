//! Pre-apply hooks: executables the repository asks to run before a request is applied.
//!
//! They come from `hyperion.hooksDir` (a directory in git config, relative to the repository's
//! top level or absolute) or, when that is unset, from `.hyperion/hooks/pre-apply.d/` in the
//! target branch's tree — versioned with the code, like the policy. Each executable runs in
//! name order with the request (JSON, patches included) on stdin, through the runner of
//! untrusted processes ([`crate::gate::untrusted`]: own process group, hard deadline
//! `hyperion.hookTimeout`, descendants killed, bounded output), with the same scrubbed
//! environment as checks plus `HYPERION_REQUEST_ID`, `HYPERION_TASK_ID`, `HYPERION_AGENT`,
//! `HYPERION_TARGET` and `GIT_DIR` (the repository, so that the hook can read its config).
//! The first non-zero exit refuses the request with the hook's output as the reason. A hook
//! that runs past its timeout is killed and refuses too.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use gix::ObjectId;
use gix::objs::tree::EntryKind;

use crate::error::{Error, Result};
use crate::request::model::ChangeRequest;

/// Where hooks live in the target tree when `hyperion.hooksDir` is unset.
pub const TREE_DIR: &str = ".hyperion/hooks/pre-apply.d";

/// Most of a hook's output kept for the refusal message.
const MESSAGE_BYTES: usize = 4096;

/// A hook that refused the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub hook: String,
    pub message: String,
}

/// Run the pre-apply hooks for `req` (id `id`) about to land on `target`, whose tree is
/// `tree`, as `settings` say (`hyperion.hooksDir`, `hookTimeout`, `checkEnv`).
pub fn pre_apply(
    repo: &gix::Repository,
    settings: &crate::queue::settings::Settings,
    tree: ObjectId,
    req: &ChangeRequest,
    id: &str,
    target: &str,
    tick: &mut dyn FnMut(),
) -> Result<Option<Refused>> {
    let staged;
    let (dir, hooks) = match settings.hooks_dir.as_deref() {
        Some(dir) => {
            let dir = match repo.workdir() {
                Some(top) if dir.is_relative() => top.join(dir),
                _ if dir.is_relative() => repo.git_dir().join(dir),
                _ => dir.to_path_buf(),
            };
            let hooks = executables_in(&dir)?;
            (dir, hooks)
        }
        None => {
            let Some(t) = stage_from_tree(repo, tree)? else {
                return Ok(None);
            };
            staged = t;
            let dir = staged.path().to_path_buf();
            let hooks = executables_in(&dir)?;
            (dir, hooks)
        }
    };
    if hooks.is_empty() {
        return Ok(None);
    }
    let input = serde_json::to_vec(req).expect("a request always serialises");
    let scratch = tempfile::Builder::new()
        .prefix("hook-scratch-")
        .tempdir_in(scratch_dir(repo)?)
        .map_err(|e| Error::io("cannot make a scratch directory for hooks", e))?;
    for name in hooks {
        let path = dir.join(&name);
        let run = Run {
            repo,
            input: &input,
            req,
            id,
            target,
            timeout: settings.hook_timeout,
            inherit: &settings.check_env,
            scratch: scratch.path(),
        };
        if let Some(message) = run.one(&path, tick)? {
            return Ok(Some(Refused {
                hook: name,
                message,
            }));
        }
    }
    Ok(None)
}

/// Executable files directly in `dir`, by name; a missing directory has none.
fn executables_in(dir: &Path) -> Result<Vec<String>> {
    use std::os::unix::fs::PermissionsExt;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("cannot read {}", dir.display()), e)),
    };
    let mut names = Vec::new();
    for e in entries.flatten() {
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
            names.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Copy the executable hooks of the target tree into a temporary directory.
fn stage_from_tree(repo: &gix::Repository, tree: ObjectId) -> Result<Option<tempfile::TempDir>> {
    use std::os::unix::fs::PermissionsExt;
    let root = repo
        .find_tree(tree)
        .map_err(|e| Error::object(format!("cannot read tree {tree}"), e))?;
    let Some(entry) = root
        .lookup_entry_by_path(TREE_DIR)
        .map_err(|e| Error::object(format!("cannot read {TREE_DIR}"), e))?
    else {
        return Ok(None);
    };
    if !entry.mode().is_tree() {
        return Ok(None);
    }
    let dir_tree = repo
        .find_tree(entry.object_id())
        .map_err(|e| Error::object(format!("cannot read {TREE_DIR}"), e))?;
    let decoded = dir_tree
        .decode()
        .map_err(|e| Error::object(format!("cannot read {TREE_DIR}"), e))?;
    let hooks: Vec<(String, ObjectId)> = decoded
        .entries
        .iter()
        .filter(|e| e.mode.kind() == EntryKind::BlobExecutable)
        .map(|e| (e.filename.to_string(), e.oid.to_owned()))
        .collect();
    if hooks.is_empty() {
        return Ok(None);
    }
    let tmp = tempfile::Builder::new()
        .prefix("hooks-")
        .tempdir_in(scratch_dir(repo)?)
        .map_err(|e| Error::io("cannot make a directory for hooks", e))?;
    for (name, id) in hooks {
        if name.contains('/') || name.starts_with('.') {
            continue;
        }
        let blob = repo
            .find_object(id)
            .map_err(|e| Error::object(format!("cannot read hook {name}"), e))?;
        let path = tmp.path().join(&name);
        std::fs::write(&path, &blob.data)
            .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)))
            .map_err(|e| Error::io(format!("cannot stage hook {name}"), e))?;
    }
    Ok(Some(tmp))
}

fn scratch_dir(repo: &gix::Repository) -> Result<PathBuf> {
    let dir = repo.common_dir().join("hyperion").join("tmp");
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    Ok(dir)
}

/// What every hook of one request runs with.
struct Run<'a> {
    repo: &'a gix::Repository,
    input: &'a [u8],
    req: &'a ChangeRequest,
    id: &'a str,
    target: &'a str,
    timeout: std::time::Duration,
    inherit: &'a [String],
    scratch: &'a Path,
}

impl Run<'_> {
    /// Run one hook; `Some(message)` when it refuses. `tick` is called while it runs (the
    /// worker renews its leases there).
    fn one(&self, path: &Path, tick: &mut dyn FnMut()) -> Result<Option<String>> {
        use crate::gate::untrusted::{self, Ended, Env, Scratch, Spec};
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let scratch = Scratch::at(self.scratch)
            .map_err(|e| Error::io("cannot prepare the hooks' scratch directory", e))?;
        let repo = self.repo;
        let mut env = Env::scrubbed(&scratch, self.inherit);
        env.set("GIT_DIR", repo.git_dir().to_string_lossy())
            .set("HYPERION_REQUEST_ID", self.id)
            .set("HYPERION_TASK_ID", &self.req.task_id)
            .set("HYPERION_AGENT", &self.req.agent)
            .set("HYPERION_TARGET", self.target);
        let argv = [path.to_string_lossy().into_owned()];
        let outcome = untrusted::run(
            &Spec {
                argv: &argv,
                cwd: repo.workdir().unwrap_or(repo.git_dir()),
                env: &env,
                stdin: Some(self.input),
                timeout: self.timeout,
                grace: untrusted::GRACE,
                keep: MESSAGE_BYTES,
                portable: false,
            },
            &AtomicBool::new(false),
            tick,
        );
        let _ = scratch.clear();
        let text = |c: &untrusted::Captured| {
            let t = String::from_utf8_lossy(&c.tail).trim().to_owned();
            // The cut may fall inside a secret, whose rest no rule would recognise.
            if c.truncated {
                format!("…{}", crate::request::secrets::cut_tail_str(&t))
            } else {
                t
            }
        };
        let mut said = text(&outcome.stderr);
        if said.is_empty() {
            said = text(&outcome.stdout);
        }
        match outcome.ended {
            Ended::SpawnFailed(why) => Ok(Some(format!("hook {name} could not start: {why}"))),
            Ended::TimedOut | Ended::Cancelled => Ok(Some(format!(
                "hook {name} ran past {} and was stopped",
                crate::duration::format(self.timeout)
            ))),
            Ended::Exited(s) if s.success() => Ok(None),
            Ended::Exited(s) => {
                let how = match s.code() {
                    Some(c) => format!("exited with {c}"),
                    None => "was killed by a signal".to_owned(),
                };
                Ok(Some(if said.is_empty() {
                    format!("hook {name} {how}")
                } else {
                    format!("hook {name} {how}: {said}")
                }))
            }
        }
    }
}
