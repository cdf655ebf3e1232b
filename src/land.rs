//! Landing: the commit a request becomes, the compare-and-swap that puts it on the target
//! branch, the note that records who made it, and finding it again after a crash.
//!
//! The target branch moves only from the tip the commit was built on. When the branch is
//! checked out in a worktree, that worktree is brought along the way `git push` does with
//! `receive.denyCurrentBranch=updateInstead`: only when it is clean, and before the branch
//! moves, so a dirty or conflicting checkout refuses the landing and nothing changes.

use std::path::{Path, PathBuf};
use std::process::Command;

use gix::ObjectId;
use gix::bstr::ByteSlice;

use crate::error::{Error, Result};
use crate::model::ChangeRequest;

/// Where notes on landed commits live.
pub const NOTES_REF: &str = "refs/notes/hyperion";
/// The trailer that ties a landed commit to its request.
pub const TRAILER_REQUEST: &str = "Hyperion-Request";
pub const TRAILER_TASK: &str = "Hyperion-Task";
/// The trailer of a rollback's revert commit.
pub const TRAILER_ROLLBACK: &str = "Hyperion-Rollback";

/// A name and e-mail for a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub name: String,
    pub email: String,
}

impl Person {
    fn signature(&self, at: jiff::Timestamp) -> gix::actor::Signature {
        gix::actor::Signature {
            name: self.name.as_str().into(),
            email: self.email.as_str().into(),
            time: gix::date::Time {
                seconds: at.as_second(),
                offset: 0,
            },
        }
    }
}

/// Who commits: git's committer identity (`user.name`/`user.email`, `GIT_COMMITTER_*`), or
/// `git-hyperion <hyperion@localhost>` when none is configured.
pub fn committer(repo: &gix::Repository) -> Person {
    match repo.committer() {
        Some(Ok(sig)) => Person {
            name: sig.name.to_str_lossy().into_owned(),
            email: sig.email.to_str_lossy().into_owned(),
        },
        _ => Person {
            name: "git-hyperion".into(),
            email: "hyperion@localhost".into(),
        },
    }
}

/// The author of a request's commit: the agent that wrote it.
pub fn author(agent: &str) -> Person {
    let local: String = agent
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+') {
                c
            } else {
                '-'
            }
        })
        .collect();
    Person {
        name: agent.to_owned(),
        email: format!("{local}@agents.hyperion.invalid"),
    }
}

/// The commit a ref points at, if it exists.
pub fn read_tip(repo: &gix::Repository, name: &str) -> Result<Option<ObjectId>> {
    let Some(mut r) = repo
        .try_find_reference(name)
        .map_err(|e| Error::git(format!("cannot read {name}: {e}")))?
    else {
        return Ok(None);
    };
    let id = r
        .peel_to_id()
        .map_err(|e| Error::git(format!("cannot resolve {name}: {e}")))?;
    Ok(Some(id.detach()))
}

/// The tree of `commit`.
pub fn tree_of(repo: &gix::Repository, commit: ObjectId) -> Result<ObjectId> {
    repo.find_commit(commit)
        .and_then(|c| c.tree_id().map(|t| t.detach()))
        .map_err(|e| Error::git(format!("cannot read the tree of {commit}: {e}")))
}

/// An editor of the tree `base`, for [`write_tree`].
pub fn edit_tree(repo: &gix::Repository, base: ObjectId) -> Result<gix::objs::tree::Editor<'_>> {
    let root: gix::objs::Tree = repo
        .find_tree(base)
        .and_then(|t| t.decode().map(Into::into))
        .map_err(|e| Error::git(format!("cannot read the tree {base}: {e}")))?;
    Ok(gix::objs::tree::Editor::new(
        root,
        &repo.objects,
        repo.object_hash(),
    ))
}

/// Write the trees `editor` changed into the repository's object memory, and return the
/// root's id. Unlike gix's own tree editor, this does not look up every entry of every
/// written tree in the object database first (in a directory of 1,000 files, 1,000 lookups
/// through every pack index, the largest cost of a request on a large repository): the
/// entries are what the tree held plus blobs hyperion just wrote, at paths validated when
/// the request was (see `crate::paths`).
pub fn write_tree(
    repo: &gix::Repository,
    editor: &mut gix::objs::tree::Editor<'_>,
) -> Result<ObjectId> {
    let mut buf = Vec::new();
    editor.write(|tree| {
        use gix::objs::WriteTo;
        buf.clear();
        tree.write_to(&mut buf)
            .map_err(|e| Error::git(format!("cannot write a tree: {e}")))?;
        gix::objs::Write::write_buf(&repo.objects, gix::objs::Kind::Tree, &buf)
            .map_err(|e| Error::git(format!("cannot write a tree: {e}")))
    })
}

/// The message of a request's commit: title, description, trailers.
pub fn message(req: &ChangeRequest, id: &str) -> String {
    let mut m = req.title.trim().to_owned();
    m.push_str("\n\n");
    if let Some(d) = req
        .description
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        m.push_str(d);
        m.push_str("\n\n");
    }
    m.push_str(&format!("{TRAILER_REQUEST}: {id}\n"));
    m.push_str(&format!("{TRAILER_TASK}: {}\n", one_line(&req.task_id)));
    m
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// Write a commit object (no ref moves).
#[allow(clippy::too_many_arguments)]
pub fn write_commit(
    repo: &gix::Repository,
    tree: ObjectId,
    parents: &[ObjectId],
    author: &Person,
    authored: jiff::Timestamp,
    committer: &Person,
    committed: jiff::Timestamp,
    message: &str,
) -> Result<ObjectId> {
    let commit = gix::objs::Commit {
        tree,
        parents: parents.iter().copied().collect(),
        author: author.signature(authored),
        committer: committer.signature(committed),
        encoding: None,
        message: message.into(),
        extra_headers: Vec::new(),
    };
    repo.write_object(&commit)
        .map(|id| id.detach())
        .map_err(|e| Error::git(format!("cannot write a commit: {e}")))
}

/// Why the target branch did not move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotMoved {
    /// It no longer points at the commit the result was built on.
    Moved { now: Option<ObjectId> },
    /// It is checked out in a worktree with changes.
    Dirty { worktree: PathBuf },
    /// The checked-out worktree could not be brought along.
    Checkout { worktree: PathBuf, message: String },
}

impl NotMoved {
    pub fn code(&self) -> &'static str {
        match self {
            NotMoved::Moved { .. } => "land.moved",
            NotMoved::Dirty { .. } => "land.worktree_dirty",
            NotMoved::Checkout { .. } => "land.worktree_update",
        }
    }

    pub fn message(&self, target: &str) -> String {
        match self {
            NotMoved::Moved { now: Some(now) } => format!("{target} moved to {now} meanwhile"),
            NotMoved::Moved { now: None } => format!("{target} was deleted meanwhile"),
            NotMoved::Dirty { worktree } => format!(
                "{target} is checked out in {} and that worktree has uncommitted changes",
                worktree.display()
            ),
            NotMoved::Checkout { worktree, message } => format!(
                "could not bring the checkout of {target} in {} along: {message}",
                worktree.display()
            ),
        }
    }
}

/// Move `name` from `old` to `new` by compare-and-swap, bringing along a clean worktree that
/// has it checked out.
pub fn advance(
    repo: &gix::Repository,
    name: &str,
    old: ObjectId,
    new: ObjectId,
    reflog: &str,
    who: &Person,
) -> Result<std::result::Result<(), NotMoved>> {
    // A checkout brought along reads the new commits with git itself.
    crate::pack::persist(repo)?;
    // Moved already: say so (a checkout of the moved branch would look dirty against `old`).
    let now = read_tip(repo, name)?;
    if now != Some(old) {
        return Ok(Err(NotMoved::Moved { now }));
    }
    let checkouts = checkouts(repo, name);
    let mut updated: Vec<&Path> = Vec::new();
    for wt in &checkouts {
        let marker = marker_path(repo, wt);
        finish_interrupted(repo, name, wt, &marker);
        match bring_along(wt, old, new, &marker) {
            Ok(()) => updated.push(wt),
            Err(refusal) => {
                for done in updated {
                    // Put back what was already moved; best effort, it was clean before.
                    let _ = read_tree(done, new, old);
                }
                return Ok(Err(refusal));
            }
        }
    }
    let result = crate::refs::cas(
        repo,
        name,
        Some(old),
        new,
        &crate::refs::LogLine {
            name: &who.name,
            email: &who.email,
            at: jiff::Timestamp::now(),
            message: reflog,
        },
    );
    let failed = match result {
        Ok(Ok(())) => None,
        Ok(Err(moved)) => Some(Ok(Err(NotMoved::Moved { now: moved.now }))),
        Err(e) => Some(Err(e)),
    };
    if let Some(failed) = failed {
        for done in &updated {
            let _ = read_tree(done, new, old);
            let _ = std::fs::remove_file(marker_path(repo, done));
        }
        return failed;
    }
    for done in &updated {
        let _ = std::fs::remove_file(marker_path(repo, done));
    }
    Ok(Ok(()))
}

/// Where a landing records, while it moves a checkout, which move it is making: a worker
/// killed between moving the checkout and moving the branch leaves it behind, and the next
/// landing puts the checkout back (see [`finish_interrupted`]).
fn marker_path(repo: &gix::Repository, wt: &Path) -> PathBuf {
    let key = crate::model::sha256_hex(wt.to_string_lossy().as_bytes());
    repo.common_dir()
        .join("hyperion")
        .join("landing")
        .join(&key[..16])
}

/// Repair a checkout a killed worker left half-moved. The marker is written only after the
/// checkout was found clean, so the checkout holds nothing of the user's: if the branch moved
/// (the landing completed) the checkout is already right; if not, it goes back to the branch.
fn finish_interrupted(repo: &gix::Repository, name: &str, wt: &Path, marker: &Path) {
    let Ok(text) = std::fs::read_to_string(marker) else {
        return;
    };
    let ids: Vec<ObjectId> = text
        .split_whitespace()
        .filter_map(|h| ObjectId::from_hex(h.as_bytes()).ok())
        .collect();
    if let ([old, new], Ok(Some(tip))) = (ids.as_slice(), read_tip(repo, name))
        && tip == *old
    {
        remove_stale_index_lock(wt);
        tracing::warn!(worktree = %wt.display(), "putting back a checkout a killed worker left half-moved");
        let index_is_new = git_in(wt)
            .args(["diff-index", "--quiet", "--cached", &new.to_string(), "--"])
            .status()
            .is_ok_and(|s| s.success());
        if !(index_is_new && read_tree(wt, *new, *old).is_ok()) {
            let _ = git_in(wt)
                .args(["read-tree", "-u", "--reset", &old.to_string()])
                .output();
        }
    }
    let _ = std::fs::remove_file(marker);
}

/// Worktrees of this repository whose HEAD is the branch `name`.
pub fn checkouts(repo: &gix::Repository, name: &str) -> Vec<PathBuf> {
    let common = repo.common_dir();
    let wanted = format!("ref: {name}");
    let head_is = |head: &Path| std::fs::read_to_string(head).is_ok_and(|s| s.trim_end() == wanted);
    let mut out = Vec::new();
    let bare = repo
        .config_snapshot()
        .boolean("core.bare")
        .unwrap_or(repo.is_bare());
    if !bare && head_is(&common.join("HEAD")) {
        let main = repo
            .config_snapshot()
            .string("core.worktree")
            .map(|p| common.join(p.to_str_lossy().as_ref()))
            .or_else(|| common.parent().map(Path::to_path_buf));
        if let Some(main) = main {
            out.push(main);
        }
    }
    if let Ok(entries) = std::fs::read_dir(common.join("worktrees")) {
        for e in entries.flatten() {
            let dir = e.path();
            if !head_is(&dir.join("HEAD")) {
                continue;
            }
            if let Ok(gitdir) = std::fs::read_to_string(dir.join("gitdir"))
                && let Some(wt) = Path::new(gitdir.trim()).parent()
            {
                out.push(wt.to_path_buf());
            }
        }
    }
    out
}

fn git_in(worktree: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(worktree)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_COMMON_DIR")
        .stdin(std::process::Stdio::null());
    cmd
}

/// receive-pack's `updateInstead`: refresh, require no changes, then a two-way checkout.
fn bring_along(
    wt: &Path,
    old: ObjectId,
    new: ObjectId,
    marker: &Path,
) -> std::result::Result<(), NotMoved> {
    let run = |args: &[&str]| -> std::result::Result<bool, NotMoved> {
        git_in(wt)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .map_err(|e| NotMoved::Checkout {
                worktree: wt.to_path_buf(),
                message: format!("cannot run git: {e}"),
            })
    };
    if !run(&["update-index", "-q", "--ignore-submodules", "--refresh"])? {
        // A worker killed while git held the checkout's index leaves `index.lock` behind,
        // and every later landing would see a dirty checkout. A lock that old is no live
        // git's: remove it and try once more.
        remove_stale_index_lock(wt);
        run(&["update-index", "-q", "--ignore-submodules", "--refresh"])?;
    }
    let clean = run(&["diff-files", "--quiet", "--ignore-submodules", "--"])?
        && run(&[
            "diff-index",
            "--quiet",
            "--cached",
            "--ignore-submodules",
            &old.to_string(),
            "--",
        ])?;
    if !clean {
        return Err(NotMoved::Dirty {
            worktree: wt.to_path_buf(),
        });
    }
    let written = marker
        .parent()
        .map(std::fs::create_dir_all)
        .unwrap_or(Ok(()))
        .and_then(|()| std::fs::write(marker, format!("{old} {new}\n")));
    if let Err(e) = written {
        return Err(NotMoved::Checkout {
            worktree: wt.to_path_buf(),
            message: format!("cannot write {}: {e}", marker.display()),
        });
    }
    let result = read_tree(wt, old, new);
    if result.is_err() {
        let _ = std::fs::remove_file(marker);
    }
    result
}

fn remove_stale_index_lock(wt: &Path) {
    let Ok(out) = git_in(wt)
        .args(["rev-parse", "--git-path", "index.lock"])
        .output()
    else {
        return;
    };
    let rel = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if rel.is_empty() {
        return;
    }
    let lock = wt.join(rel);
    let old = std::fs::metadata(&lock)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age >= crate::store::STALE_LOCK);
    if old {
        tracing::warn!(lock = %lock.display(), "removing an index lock left by a killed process");
        let _ = std::fs::remove_file(&lock);
    }
}

fn read_tree(wt: &Path, from: ObjectId, to: ObjectId) -> std::result::Result<(), NotMoved> {
    let out = git_in(wt)
        .args(["read-tree", "-u", "-m", &from.to_string(), &to.to_string()])
        .output()
        .map_err(|e| NotMoved::Checkout {
            worktree: wt.to_path_buf(),
            message: format!("cannot run git: {e}"),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NotMoved::Checkout {
            worktree: wt.to_path_buf(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// The value of `key` in the trailers of a commit message.
pub fn trailer<'m>(message: &'m str, key: &str) -> Option<&'m str> {
    message.lines().rev().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}

/// Find the commit that landed request `id` on the first-parent history of `tip`, looking no
/// further back than commits made before `since` (the request's creation, less a margin for
/// clocks that disagree).
pub fn find_landed(
    repo: &gix::Repository,
    tip: ObjectId,
    key: &str,
    id: &str,
    since: jiff::Timestamp,
) -> Result<Option<ObjectId>> {
    // Commits are roughly in time order; a few with skewed clocks must not end the search,
    // so it ends after a run of commits all older than the horizon.
    let horizon = since.as_second() - 3600;
    let mut next = Some(tip);
    let mut seen = 0usize;
    let mut old_run = 0usize;
    while let Some(c) = next {
        let commit = repo
            .find_commit(c)
            .map_err(|e| Error::git(format!("cannot read commit {c}: {e}")))?;
        let decoded = commit
            .decode()
            .map_err(|e| Error::git(format!("cannot decode commit {c}: {e}")))?;
        if trailer(&decoded.message.to_str_lossy(), key) == Some(id) {
            return Ok(Some(c));
        }
        if decoded.committer().map(|s| s.seconds()).unwrap_or(0) < horizon {
            old_run += 1;
            if old_run >= 64 {
                return Ok(None);
            }
        } else {
            old_run = 0;
        }
        seen += 1;
        if seen > 100_000 {
            return Ok(None);
        }
        next = decoded.parents().next();
    }
    Ok(None)
}

/// Whether `commit` is on the first-parent history of `tip`.
pub fn on_first_parent_line(
    repo: &gix::Repository,
    tip: ObjectId,
    commit: ObjectId,
) -> Result<bool> {
    let mut next = Some(tip);
    while let Some(c) = next {
        if c == commit {
            return Ok(true);
        }
        next = repo
            .find_commit(c)
            .map_err(|e| Error::git(format!("cannot read commit {c}: {e}")))?
            .parent_ids()
            .next()
            .map(|p| p.detach());
    }
    Ok(false)
}

/// The note of a landed commit, if there is one.
pub fn read_note(repo: &gix::Repository, commit: ObjectId) -> Result<Option<String>> {
    let Some(tip) = read_tip(repo, NOTES_REF)? else {
        return Ok(None);
    };
    let tree = repo
        .find_tree(tree_of(repo, tip)?)
        .map_err(|e| Error::git(format!("cannot read the notes tree: {e}")))?;
    let hex = commit.to_string();
    for path in [format!("{}/{}", &hex[..2], &hex[2..]), hex.clone()] {
        if let Some(entry) = tree
            .lookup_entry_by_path(path.as_str())
            .map_err(|e| Error::git(format!("cannot read the notes tree: {e}")))?
        {
            let blob = repo
                .find_object(entry.object_id())
                .map_err(|e| Error::git(format!("cannot read a note: {e}")))?;
            return Ok(Some(String::from_utf8_lossy(&blob.data).into_owned()));
        }
    }
    Ok(None)
}

/// Add (or replace) the note on `commit` in `refs/notes/hyperion`, by compare-and-swap on the
/// notes ref, retried while other workers add theirs.
pub fn add_note(repo: &gix::Repository, commit: ObjectId, text: &str, who: &Person) -> Result<()> {
    add_notes(repo, &[(commit, text.to_owned())], who)
}

/// [`add_note`] for many commits in one notes commit.
pub fn add_notes(repo: &gix::Repository, notes: &[(ObjectId, String)], who: &Person) -> Result<()> {
    if notes.is_empty() {
        return Ok(());
    }
    let mut blobs = Vec::with_capacity(notes.len());
    for (commit, text) in notes {
        let blob = repo
            .write_blob(text.as_bytes())
            .map_err(|e| Error::git(format!("cannot write a note: {e}")))?
            .detach();
        blobs.push((commit.to_string(), blob));
    }
    for attempt in 0..50u32 {
        let tip = read_tip(repo, NOTES_REF)?;
        let base_tree = match tip {
            Some(t) => tree_of(repo, t)?,
            None => repo.empty_tree().id,
        };
        let mut editor = edit_tree(repo, base_tree)?;
        for (hex, blob) in &blobs {
            // A note git wrote without fan-out for the same commit would shadow ours.
            editor
                .remove(hex.split('/'))
                .map_err(|e| Error::git(format!("cannot edit the notes tree: {e}")))?;
            let path = format!("{}/{}", &hex[..2], &hex[2..]);
            editor
                .upsert(path.split('/'), gix::objs::tree::EntryKind::Blob, *blob)
                .map_err(|e| Error::git(format!("cannot edit the notes tree: {e}")))?;
        }
        let tree = write_tree(repo, &mut editor)?;
        let now = jiff::Timestamp::now();
        let parents: Vec<ObjectId> = tip.into_iter().collect();
        let note_commit = write_commit(
            repo,
            tree,
            &parents,
            who,
            now,
            who,
            now,
            "Notes added by 'git hyperion'\n",
        )?;
        let moved = crate::refs::cas(
            repo,
            NOTES_REF,
            tip,
            note_commit,
            &crate::refs::LogLine {
                name: &who.name,
                email: &who.email,
                at: now,
                message: "hyperion: note",
            },
        )?;
        if moved.is_ok() {
            return Ok(());
        }
        // Another worker added its notes first: edit on top of theirs.
        std::thread::sleep(std::time::Duration::from_millis(u64::from(attempt % 4)));
    }
    Err(Error::git(format!(
        "could not update {NOTES_REF}: too many concurrent writers"
    )))
}
