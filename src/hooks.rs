//! Pre-apply hooks: executables the repository asks to run before a request is applied.
//!
//! They come from `hyperion.hooksDir` (a directory in git config, relative to the repository's
//! top level or absolute) or, when that is unset, from `.hyperion/hooks/pre-apply.d/` in the
//! target branch's tree — versioned with the code, like the policy. Each executable runs in
//! name order with the request (JSON, patches included) on stdin and
//! `HYPERION_REQUEST_ID`, `HYPERION_TASK_ID`, `HYPERION_AGENT`, `HYPERION_TARGET` and `GIT_DIR`
//! in its environment. The first non-zero exit refuses the request with the hook's output as
//! the reason. A hook that runs past its timeout is killed and refuses too.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gix::ObjectId;
use gix::objs::tree::EntryKind;

use crate::error::{Error, Result};
use crate::model::ChangeRequest;

/// Where hooks live in the target tree when `hyperion.hooksDir` is unset.
pub const TREE_DIR: &str = ".hyperion/hooks/pre-apply.d";

/// How long one hook may run.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Most of a hook's output kept for the refusal message.
const MESSAGE_BYTES: usize = 4096;

/// A hook that refused the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub hook: String,
    pub message: String,
}

/// Run the pre-apply hooks for `req` (id `id`) about to land on `target`, whose tree is
/// `tree`. `configured` is `hyperion.hooksDir`.
pub fn pre_apply(
    repo: &gix::Repository,
    configured: Option<&Path>,
    tree: ObjectId,
    req: &ChangeRequest,
    id: &str,
    target: &str,
) -> Result<Option<Refused>> {
    let staged;
    let (dir, hooks) = match configured {
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
    for name in hooks {
        let path = dir.join(&name);
        if let Some(message) = run_one(repo, &path, &input, req, id, target)? {
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
        .map_err(|e| Error::git(format!("cannot read tree {tree}: {e}")))?;
    let Some(entry) = root
        .lookup_entry_by_path(TREE_DIR)
        .map_err(|e| Error::git(format!("cannot read {TREE_DIR}: {e}")))?
    else {
        return Ok(None);
    };
    if !entry.mode().is_tree() {
        return Ok(None);
    }
    let dir_tree = repo
        .find_tree(entry.object_id())
        .map_err(|e| Error::git(format!("cannot read {TREE_DIR}: {e}")))?;
    let decoded = dir_tree
        .decode()
        .map_err(|e| Error::git(format!("cannot read {TREE_DIR}: {e}")))?;
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
            .map_err(|e| Error::git(format!("cannot read hook {name}: {e}")))?;
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

/// Run one hook; `Some(message)` when it refuses.
fn run_one(
    repo: &gix::Repository,
    path: &Path,
    input: &[u8],
    req: &ChangeRequest,
    id: &str,
    target: &str,
) -> Result<Option<String>> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut child = match Command::new(path)
        .current_dir(repo.workdir().unwrap_or(repo.git_dir()))
        .env("GIT_DIR", repo.git_dir())
        .env("HYPERION_REQUEST_ID", id)
        .env("HYPERION_TASK_ID", &req.task_id)
        .env("HYPERION_AGENT", &req.agent)
        .env("HYPERION_TARGET", target)
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Ok(Some(format!("hook {name} could not start: {e}"))),
    };
    let mut stdin = child.stdin.take().expect("piped");
    let data = input.to_vec();
    // A hook that does not read its input must not block us: write from a thread and ignore
    // a closed pipe.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(Error::io(format!("cannot wait for hook {name}"), e)),
        }
    };
    let _ = writer.join();
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    let text = |v: &[u8]| String::from_utf8_lossy(v).trim().to_owned();
    let mut said = text(&err);
    if said.is_empty() {
        said = text(&out);
    }
    if said.len() > MESSAGE_BYTES {
        let mut cut = said.len() - MESSAGE_BYTES;
        while !said.is_char_boundary(cut) {
            cut += 1;
        }
        // The cut may fall inside a secret, whose rest no rule would recognise.
        said = format!("…{}", crate::secrets::cut_tail_str(&said[cut..]));
    }
    match status {
        None => Ok(Some(format!(
            "hook {name} ran past {}s and was stopped",
            TIMEOUT.as_secs()
        ))),
        Some(s) if s.success() => Ok(None),
        Some(s) => {
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
