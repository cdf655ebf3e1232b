//! Landing: the commit a request becomes, the compare-and-swap that puts it on the target
//! branch, the note that records who made it, and finding it again after a crash.
//!
//! The target branch moves only from the tip the commit was built on. When the branch is
//! checked out in a worktree, that worktree is brought along the way `git push` does with
//! `receive.denyCurrentBranch=updateInstead`: only when it is clean, and before the branch
//! moves, so a dirty or conflicting checkout refuses the landing and nothing changes. That
//! part, with the lock it holds and the recovery of a landing interrupted half-way, is
//! `crate::gate::land::checkout`'s.

pub mod checkout;

use std::path::PathBuf;
use std::time::Duration;

use gix::ObjectId;
use gix::bstr::ByteSlice;

use crate::code::Code;
use crate::error::{Error as Failure, Result};
pub use crate::gate::land::checkout::Holder;
use crate::gate::land::checkout::Landing;
use crate::git::tree::{edit_tree, read_tip, tree_of, write_tree};
use crate::request::model::ChangeRequest;

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
///
/// Resolved as gix's `Repository::committer` resolves it (name and email each on their own:
/// `committer.*` with `GIT_COMMITTER_*` over it, then `user.*` with `EMAIL` for the email,
/// then gitoxide's fallbacks), from the configuration alone: gix's also works out the
/// committer's and the author's time, and the local time zone that needs is found by
/// walking the system's zoneinfo directory, a millisecond of every worker's start for a
/// time hyperion takes from elsewhere. A test holds the two to the same answer.
pub fn committer(repo: &gix::Repository) -> Person {
    let config = repo.config_snapshot();
    let first = |keys: &[&str]| {
        keys.iter()
            .find_map(|key| config.string(*key))
            .map(|v| v.to_str_lossy().into_owned())
    };
    let name = first(&[
        "committer.name",
        "user.name",
        "gitoxide.committer.nameFallback",
    ]);
    let email = first(&[
        "committer.email",
        "user.email",
        "gitoxide.user.emailFallback",
        "gitoxide.committer.emailFallback",
    ]);
    match (name, email) {
        (Some(name), Some(email)) => Person { name, email },
        _ => Person {
            name: "git-hyperion".into(),
            email: "hyperion@localhost".into(),
        },
    }
}

/// The author of a request's commit: the agent that wrote it. The schema refuses agent
/// names git cannot hold in a signature (`<`, `>`, control characters); one stored before
/// (or planted) has them replaced by `-`, so that its commit can be written at all rather
/// than failing at every attempt.
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
    let name = agent
        .chars()
        .map(|c| {
            if matches!(c, '<' | '>') || c.is_control() {
                '-'
            } else {
                c
            }
        })
        .collect();
    Person {
        name,
        email: format!("{local}@agents.hyperion.invalid"),
    }
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
    use gix::objs::WriteTo;
    let mut buf = Vec::new();
    commit
        .write_to(&mut buf)
        .map_err(|e| Failure::git(format!("cannot write a commit: {e}")))?;
    crate::git::pack::write_object(repo, gix::objs::Kind::Commit, &buf)
}

/// The commit `commit` again with `parent` as its only parent: the same tree, author,
/// committer and message (its trailers). A speculating remote worker moves the commits it
/// checked on top of requests leased ahead of its own onto the target commit that landed
/// them (docs/remote.md): the trees, which passed the checks, do not change.
pub fn reparent(repo: &gix::Repository, commit: ObjectId, parent: ObjectId) -> Result<ObjectId> {
    let found = repo
        .find_commit(commit)
        .map_err(|e| Failure::git(format!("cannot read the commit {commit}: {e}")))?;
    let mut owned = found
        .decode()
        .and_then(|c| c.into_owned())
        .map_err(|e| Failure::git(format!("cannot read the commit {commit}: {e}")))?;
    owned.parents = [parent].into_iter().collect();
    use gix::objs::WriteTo;
    let mut buf = Vec::new();
    owned
        .write_to(&mut buf)
        .map_err(|e| Failure::git(format!("cannot write a commit: {e}")))?;
    crate::git::pack::write_object(repo, gix::objs::Kind::Commit, &buf)
}

/// Why the target branch did not move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocked {
    /// It no longer points at the commit the result was built on.
    Moved { now: Option<ObjectId> },
    /// It is checked out in a worktree with changes.
    Dirty { worktree: PathBuf },
    /// The checked-out worktree could not be brought along.
    Checkout { worktree: PathBuf, message: String },
    /// Another landing onto the branch (its lock held by a live process) did not finish
    /// within `hyperion.landingWait`.
    Busy { holder: String, waited: Duration },
    /// A landing interrupted after it moved a checkout could not be put back, or its marker
    /// cannot be trusted: nothing was changed, and landings onto the branch wait for a person.
    Interrupted {
        worktree: Option<PathBuf>,
        message: String,
    },
    /// A git process (or a dead one) holds the checkout's `index.lock`.
    Locked {
        worktree: PathBuf,
        lock: PathBuf,
        age: Duration,
    },
}

impl Blocked {
    pub fn code(&self) -> Code {
        match self {
            Blocked::Moved { .. } => Code::LandMoved,
            Blocked::Dirty { .. } => Code::LandWorktreeDirty,
            Blocked::Checkout { .. } => Code::LandWorktreeUpdate,
            Blocked::Busy { .. } => Code::LandBusy,
            Blocked::Interrupted { .. } => Code::LandInterrupted,
            Blocked::Locked { .. } => Code::LandWorktreeLocked,
        }
    }

    pub fn message(&self, target: &str) -> String {
        match self {
            Blocked::Moved { now: Some(now) } => format!("{target} moved to {now} meanwhile"),
            Blocked::Moved { now: None } => format!("{target} was deleted meanwhile"),
            Blocked::Dirty { worktree } => format!(
                "{target} is checked out in {} and that worktree has uncommitted changes",
                worktree.display()
            ),
            Blocked::Checkout { worktree, message } => format!(
                "could not bring the checkout of {target} in {} along: {message}",
                worktree.display()
            ),
            Blocked::Busy { holder, waited } => format!(
                "another landing onto {target} is in progress ({holder}) and did not finish within {}",
                crate::duration::format(Duration::from_millis(waited.as_millis() as u64))
            ),
            Blocked::Interrupted { message, .. } => message.clone(),
            Blocked::Locked {
                worktree,
                lock,
                age,
            } => format!(
                "{target} is checked out in {} and git's lock {} exists ({}s old): a git command is running there, or one was killed",
                worktree.display(),
                lock.display(),
                age.as_secs()
            ),
        }
    }
}

/// Why a landing did not happen: blocked (the branch did not move, with a code of its own:
/// [`Blocked::code`]), or failed (git, the disk).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", .0.message("the target"))]
    Blocked(Blocked),
    #[error(transparent)]
    Failed(#[from] Failure),
}

impl From<Blocked> for Error {
    fn from(b: Blocked) -> Error {
        Error::Blocked(b)
    }
}

impl Error {
    /// The stable code (docs/errors.md).
    pub fn code(&self) -> Code {
        match self {
            Error::Blocked(b) => b.code(),
            Error::Failed(e) => e.code(),
        }
    }
}

/// What a person does about a landing that did not move the branch, by [`Blocked::code`].
pub fn hint(code: Code) -> &'static str {
    match code {
        Code::LandWorktreeDirty => "commit or stash the changes in that worktree and retry",
        Code::LandWorktreeUpdate => {
            "look at the worktree named in the message (an untracked file in the way?) and retry"
        }
        Code::LandBusy => {
            "another landing is in progress; retry, or see `git hyperion doctor` if it never ends"
        }
        Code::LandInterrupted => {
            "see `git hyperion doctor`: in that checkout, `git stash`, let the landing happen, `git stash pop` (docs/storage.md)"
        }
        Code::LandWorktreeLocked => {
            "if no git command runs in that worktree, remove the index.lock named, and retry"
        }
        Code::LandMoved => "retry; the target moved meanwhile",
        _ => "retry",
    }
}

/// Move `name` from `old` to `new` by compare-and-swap, bringing along a clean worktree that
/// has it checked out (see [`crate::gate::land::checkout`]: the landing lock, the marker, recovery of an
/// interrupted landing).
pub fn advance(
    repo: &gix::Repository,
    name: &str,
    old: ObjectId,
    new: ObjectId,
    reflog: &str,
    who: &Person,
    holder: &Holder<'_>,
) -> Result<(), Error> {
    // A checkout brought along reads the new commits with git itself.
    crate::git::pack::persist(repo)?;
    // Moved already: say so (a checkout of the moved branch would look dirty against `old`).
    let now = read_tip(repo, name)?;
    if now != Some(old) {
        return Err(Blocked::Moved { now }.into());
    }
    let mut landing = Landing::begin(repo, name, holder)?;
    if let Some(landing) = &mut landing {
        // Under the lock: the landing this one waited for may have moved the branch.
        let now = read_tip(repo, name)?;
        if now != Some(old) {
            return Err(Blocked::Moved { now }.into());
        }
        landing.bring_along(old, new)?;
    }
    let result = crate::git::refs::cas(
        repo,
        name,
        Some(old),
        new,
        &crate::git::refs::LogLine {
            name: &who.name,
            email: &who.email,
            at: jiff::Timestamp::now(),
            message: reflog,
        },
    );
    let failed = match result {
        Ok(crate::git::refs::Swap::Done) => None,
        Ok(crate::git::refs::Swap::Moved { now }) => Some(Error::Blocked(Blocked::Moved { now })),
        Err(e) => Some(Error::Failed(e)),
    };
    match (failed, landing) {
        (None, Some(landing)) => landing.finish(),
        (None, None) => {}
        (Some(failed), landing) => {
            if let Some(mut landing) = landing {
                landing.put_back_all(old, new);
            }
            return Err(failed);
        }
    }
    Ok(())
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
            .map_err(|e| Failure::git(format!("cannot read commit {c}: {e}")))?;
        let decoded = commit
            .decode()
            .map_err(|e| Failure::git(format!("cannot decode commit {c}: {e}")))?;
        if crate::git::message::trailer(&decoded.message.to_str_lossy(), key) == Some(id) {
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

/// The note of a landed commit, if there is one.
pub fn read_note(repo: &gix::Repository, commit: ObjectId) -> Result<Option<String>> {
    let Some(tip) = read_tip(repo, NOTES_REF)? else {
        return Ok(None);
    };
    let tree = repo
        .find_tree(tree_of(repo, tip)?)
        .map_err(|e| Failure::git(format!("cannot read the notes tree: {e}")))?;
    let hex = commit.to_string();
    for path in [format!("{}/{}", &hex[..2], &hex[2..]), hex.clone()] {
        if let Some(entry) = tree
            .lookup_entry_by_path(path.as_str())
            .map_err(|e| Failure::git(format!("cannot read the notes tree: {e}")))?
        {
            let blob = repo
                .find_object(entry.object_id())
                .map_err(|e| Failure::git(format!("cannot read a note: {e}")))?;
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
    let blobs = note_blobs(repo, notes)?;
    for attempt in 0..50u32 {
        let tip = read_tip(repo, NOTES_REF)?;
        let now = jiff::Timestamp::now();
        let note_commit = notes_commit(repo, tip, &blobs, who)?;
        let moved = crate::git::refs::cas(
            repo,
            NOTES_REF,
            tip,
            note_commit,
            &crate::git::refs::LogLine {
                name: &who.name,
                email: &who.email,
                at: now,
                message: "hyperion: note",
            },
        )?;
        if moved.done() {
            return Ok(());
        }
        // Another worker added its notes first: edit on top of theirs.
        std::thread::sleep(std::time::Duration::from_millis(u64::from(attempt % 4)));
    }
    Err(Failure::git(format!(
        "could not update {NOTES_REF}: too many concurrent writers"
    )))
}

/// The blobs of `notes`, by the hex id of the commit each is on.
pub fn note_blobs(
    repo: &gix::Repository,
    notes: &[(ObjectId, String)],
) -> Result<Vec<(String, ObjectId)>> {
    let mut blobs = Vec::with_capacity(notes.len());
    for (commit, text) in notes {
        let blob = crate::git::pack::write_object(repo, gix::objs::Kind::Blob, text.as_bytes())?;
        blobs.push((commit.to_string(), blob));
    }
    Ok(blobs)
}

/// A notes commit on `parent` (a tip of `refs/notes/hyperion`; `None`: the first) adding
/// (or replacing) the notes `blobs` (from [`note_blobs`]). No ref is moved: [`add_notes`]
/// moves the local notes ref to it, remote mode pushes it with the landing.
pub fn notes_commit(
    repo: &gix::Repository,
    parent: Option<ObjectId>,
    blobs: &[(String, ObjectId)],
    who: &Person,
) -> Result<ObjectId> {
    let base_tree = match parent {
        Some(t) => tree_of(repo, t)?,
        None => repo.empty_tree().id,
    };
    let mut editor = edit_tree(repo, base_tree)?;
    for (hex, blob) in blobs {
        // A note git wrote without fan-out for the same commit would shadow ours.
        editor
            .remove(hex.split('/'))
            .map_err(|e| Failure::git(format!("cannot edit the notes tree: {e}")))?;
        let path = format!("{}/{}", &hex[..2], &hex[2..]);
        editor
            .upsert(path.split('/'), gix::objs::tree::EntryKind::Blob, *blob)
            .map_err(|e| Failure::git(format!("cannot edit the notes tree: {e}")))?;
    }
    let tree = write_tree(repo, &mut editor)?;
    let now = jiff::Timestamp::now();
    let parents: Vec<ObjectId> = parent.into_iter().collect();
    write_commit(
        repo,
        tree,
        &parents,
        who,
        now,
        who,
        now,
        "Notes added by 'git hyperion'\n",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`committer`] names whom gix's `Repository::committer` names, for every way of
    /// configuring one (each key alone and over the others), and falls back where gix has
    /// no complete committer.
    #[test]
    fn the_committer_is_gixs_without_its_clock() {
        let keys = [
            "committer.name",
            "committer.email",
            "user.name",
            "user.email",
            "gitoxide.user.emailFallback",
            "gitoxide.committer.nameFallback",
            "gitoxide.committer.emailFallback",
        ];
        let dir = tempfile::tempdir().expect("temp dir");
        crate::git::command::text(dir.path(), &["init", "-q"]).expect("git init");
        let path = dir.path().join(".git/config");
        let base = std::fs::read_to_string(&path).expect("config");
        // Every subset of the keys, each set to a value naming its key.
        for mask in 0u32..(1 << keys.len()) {
            let mut config = String::new();
            for (i, key) in keys.iter().enumerate() {
                if mask & (1 << i) != 0 {
                    let (section, name) = key.rsplit_once('.').expect("a dotted key");
                    let (section, sub) = match section.split_once('.') {
                        Some((s, sub)) => (s, format!(" \"{sub}\"")),
                        None => (section, String::new()),
                    };
                    config.push_str(&format!("[{section}{sub}]\n\t{name} = v-{key}\n"));
                }
            }
            std::fs::write(&path, format!("{base}{config}")).expect("config");
            let repo = gix::open_opts(dir.path(), gix::open::Options::isolated()).expect("open");
            let theirs = match repo.committer() {
                Some(Ok(sig)) => (sig.name.to_string(), sig.email.to_string()),
                _ => ("git-hyperion".into(), "hyperion@localhost".into()),
            };
            let ours = committer(&repo);
            assert_eq!((ours.name, ours.email), theirs, "keys set: {config}");
        }
    }

    #[test]
    fn only_the_last_paragraph_holds_trailers() {
        let key = TRAILER_REQUEST;
        assert_eq!(
            crate::git::message::trailer(
                "t\n\nbody\n\nHyperion-Request: aa\nHyperion-Task: x\n",
                key
            ),
            Some("aa")
        );
        // A description naming another request, above the real trailers.
        assert_eq!(
            crate::git::message::trailer(
                "t\n\nHyperion-Request: bb\n\nHyperion-Request: aa\nHyperion-Task: x\n",
                key
            ),
            Some("aa")
        );
        // A commit a person wrote, mentioning a request in its body.
        assert_eq!(
            crate::git::message::trailer("fix\n\nHyperion-Request: bb\n\nSigned-off-by: p\n", key),
            None
        );
    }

    #[test]
    fn a_description_cannot_put_a_trailer_after_hyperions() {
        let req: ChangeRequest = serde_json::from_value(serde_json::json!({
            "schema": crate::request::model::SCHEMA_V1,
            "task_id": "t",
            "agent": "a",
            "title": "x",
            "description": "text\n\nHyperion-Request: bbbbbbbbbbbbbbbb\n\n",
            "file_targets": [],
            "changes": [],
        }))
        .expect("a request");
        let m = message(&req, "aaaaaaaaaaaaaaaa");
        assert_eq!(
            crate::git::message::trailer(&m, TRAILER_REQUEST),
            Some("aaaaaaaaaaaaaaaa")
        );
    }
}
