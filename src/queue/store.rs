//! The source of truth: change requests as commit chains under `refs/hyperion/requests/<id>`.
//!
//! Every chain commit's tree holds the payload (`request.json`, `changes/NNNN.patch`) and any
//! `artifacts/`; its message is a one-line summary, the JSON [`Event`] and the JSON record
//! (chains written by earlier versions keep the record as `state.json` in the tree, which is
//! still read). [`Store::transition`] is the only code that moves a request ref, and it
//! does so by compare-and-swap against the tip the caller read. This module knows nothing of
//! the queue's rules; it stores what it is given, atomically.

use std::path::{Path, PathBuf};

use gix::ObjectId;
use gix::bstr::ByteSlice;
use gix::objs::tree::{Entry, EntryKind};
use gix::refs::Target;
use gix::refs::transaction::{Change, PreviousValue, RefEdit, RefLog};

use crate::error::{Error, Result};
use crate::git::refs::Swap;
use crate::request::model::{Artifact, ChangeRequest, Event, HistoryEntry, Record};

/// Refuse a repository whose refs git keeps in another format than loose files and
/// `packed-refs` (`extensions.refStorage = reftable`): a ref hyperion wrote there would be a
/// file git never reads, and its objects would be pruned by the next gc.
fn refuse_foreign_ref_storage(repo: &gix::Repository) -> Result<()> {
    let config = repo.config_snapshot();
    let Some(format) = config.string("extensions.refStorage") else {
        return Ok(());
    };
    let format = format.to_string();
    if format.eq_ignore_ascii_case("files") {
        return Ok(());
    }
    Err(Error::RefStorage(format!(
        "{} keeps its refs as {format} (extensions.refStorage); git hyperion cannot store requests there",
        repo.git_dir().display()
    )))
}

/// Where request chains live.
pub const REQUESTS_PREFIX: &str = "refs/hyperion/requests/";

/// Requests handled per chunk by the commands that handle any number at once (enqueue of a
/// directory, a batch lease, sweep, doctor, gc): each chunk's objects go into one pack, its
/// refs are updated, and memory holds one chunk at a time. Tests make it small
/// (`HYPERION_TEST_CHUNK`) to run many chunks over few requests.
const CHUNK: usize = 10_000;

/// The chunk size ([`CHUNK`], or `HYPERION_TEST_CHUNK` when set to a positive number).
pub fn chunk() -> usize {
    static SIZE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *SIZE.get_or_init(|| {
        std::env::var("HYPERION_TEST_CHUNK")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n: &usize| n > 0)
            .unwrap_or(CHUNK)
    })
}

/// One transition to perform: the record it produces, the event that explains it, and the
/// tip it must replace.
#[derive(Debug)]
pub struct Transition<'a> {
    pub expected_tip: ObjectId,
    pub record: &'a Record,
    pub event: &'a Event,
    pub artifacts: &'a [Artifact],
    /// Rewrite the tip instead of appending (used for heartbeats, so the chain stays short):
    /// the new commit's parent is the tip's parent. Still a compare-and-swap against the tip.
    pub replace_tip: bool,
}

/// Outcome of storing one request ([`Store::create_many`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    New(ObjectId),
    /// The same submission is already stored under this id.
    Existing(ObjectId),
}

pub struct Store {
    repo: gix::Repository,
    /// Request refs this process has moved (see [`Store::generation`]).
    writes: std::cell::Cell<u64>,
    /// The update counter, opened for appending on first use.
    generation_file: std::cell::RefCell<Option<std::fs::File>>,
    /// What this process knows of recent chain commits (see [`Store::tip_info`]).
    tips: std::cell::RefCell<std::collections::HashMap<ObjectId, std::rc::Rc<TipInfo>>>,
    /// Artifacts the root commit of a chain about to be created carries (an agent's
    /// transcript), by request id; see [`Store::attach_to_root`].
    root_artifacts: std::cell::RefCell<std::collections::HashMap<String, Vec<Artifact>>>,
}

/// The parts of a chain commit a transition needs. Commits never change, so this is kept by
/// id: a transition reads what the one before it wrote without going to the disk.
struct TipInfo {
    tree: ObjectId,
    parent: Option<ObjectId>,
    /// The record in the message; `None` for a chain from before records moved there, whose
    /// record (`state.json`) is in the tree.
    record: Option<Record>,
}

/// At most this many commits are remembered; then the memory starts over.
const TIPS_KEPT: usize = 1024;

impl Store {
    /// Open the repository containing `path` (bare or not).
    pub fn discover(path: &Path) -> Result<Store> {
        // Workers add packs while others read: room for many more pack indexes than are on
        // disk now (the default sizes the table from what is there at open time).
        let options = |trust| {
            <gix::open::Options as gix::sec::trust::DefaultForLevel>::default_for_level(trust)
                .object_store_slots(gix::odb::store::init::Slots::AsNeededByDiskState {
                    multiplier: 2.0,
                    minimum: 1024,
                })
        };
        let repo = gix::ThreadSafeRepository::discover_with_environment_overrides_opts(
            path,
            Default::default(),
            gix::sec::trust::Mapping {
                full: options(gix::sec::Trust::Full),
                reduced: options(gix::sec::Trust::Reduced),
            },
        )
        .map_err(|e| Error::Usage(format!("not a git repository: {} ({e})", path.display())))?;
        let repo: gix::Repository = repo.into();
        refuse_foreign_ref_storage(&repo)?;
        Ok(Store::from_repo(repo))
    }

    /// Wrap an opened repository. Its object memory is switched on: new objects stay in
    /// memory until a ref is about to point at them ([`crate::git::pack::persist`]), so that one
    /// step of work reaches the disk as one pack.
    pub fn from_repo(mut repo: gix::Repository) -> Store {
        repo.object_cache_size_if_unset(8 * 1024 * 1024);
        repo.objects.enable_object_memory();
        Store {
            repo,
            writes: std::cell::Cell::new(0),
            generation_file: std::cell::RefCell::new(None),
            tips: Default::default(),
            root_artifacts: Default::default(),
        }
    }

    pub fn repo(&self) -> &gix::Repository {
        &self.repo
    }

    pub fn git_dir(&self) -> &Path {
        self.repo.git_dir()
    }

    /// `hyperion/` in the common git dir (shared by all worktrees): the home of derived
    /// state (index, worktrees, archives).
    pub fn hyperion_dir(&self) -> PathBuf {
        self.repo.common_dir().join("hyperion")
    }

    pub fn ref_name(id: &str) -> String {
        format!("{REQUESTS_PREFIX}{id}")
    }

    /// The tip of a request's chain, if it exists.
    pub fn tip(&self, id: &str) -> Result<Option<ObjectId>> {
        crate::git::refs::read(&self.repo, &Store::ref_name(id))
    }

    /// All request refs and their tips, sorted by id.
    pub fn list(&self) -> Result<Vec<(String, ObjectId)>> {
        let mut out = Vec::new();
        for (name, oid) in crate::git::refs::list(self.repo.common_dir(), REQUESTS_PREFIX)? {
            if let (Some(id), Some(oid)) = (name.strip_prefix(REQUESTS_PREFIX), oid) {
                out.push((id.to_owned(), oid));
            }
        }
        Ok(out)
    }

    /// Store new requests: for each, a root commit with the payload and its first record, its
    /// objects written with all the others (one pack when there are more than a few), then its
    /// ref created. Idempotent: an id whose ref already exists with the same dedupe key gives
    /// [`Created::Existing`] without writing anything for it.
    pub fn create_many(&self, items: &[(&ChangeRequest, &Record, &Event)]) -> Result<Vec<Created>> {
        // One pack for all, kept until the last ref exists.
        let _hold = crate::git::pack::hold();
        let mut out: Vec<Option<Created>> = vec![None; items.len()];
        let mut planned: Vec<(usize, ObjectId)> = Vec::new();
        let mut in_batch: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for (i, (req, record, event)) in items.iter().enumerate() {
            if let Some(tip) = self.tip(&record.id)? {
                out[i] = Some(self.existing(&record.id, tip, record)?);
            } else if in_batch.insert(record.id.as_str()) {
                let commit = self.root_objects(req, record, event)?;
                planned.push((i, commit));
            }
        }
        // All of them in one pack, before the first ref points at any.
        self.persist()?;
        crate::git::os::pause_point("enqueue.packed");
        for (n, &(i, commit)) in planned.iter().enumerate() {
            let (_, record, event) = items[i];
            match self.create_ref(record, event, commit) {
                Ok(created) => out[i] = Some(created),
                // Some refs exist now: say exactly which (already there or created) and which not.
                Err(cause) => {
                    let id = |&(i, _): &(usize, ObjectId)| items[i].1.id.clone();
                    let mut stored: Vec<String> = (0..items.len())
                        .filter(|&j| out[j].is_some())
                        .map(|j| items[j].1.id.clone())
                        .collect();
                    stored.dedup();
                    return Err(Error::Incomplete {
                        stored,
                        not_stored: planned[n..].iter().map(id).collect(),
                        cause: Box::new(cause),
                    });
                }
            }
        }
        // Repeats of a request within the batch are duplicates of its first occurrence.
        for (i, (_, record, _)) in items.iter().enumerate() {
            if out[i].is_none() {
                let tip = self
                    .tip(&record.id)?
                    .ok_or_else(|| Error::NotFound(record.id.clone()))?;
                out[i] = Some(Created::Existing(tip));
            }
        }
        Ok(out
            .into_iter()
            .map(|c| c.expect("every item was decided"))
            .collect())
    }

    /// Store `artifacts` (redacted, like every artifact) in the root commit of request `id`'s
    /// chain when the next enqueue creates it: what the agent harness records of the run that
    /// produced the request (`artifacts/transcript.jsonl`). A request that already exists
    /// keeps its chain as it is.
    pub fn attach_to_root(&self, id: &str, artifacts: Vec<Artifact>) {
        self.root_artifacts
            .borrow_mut()
            .insert(id.to_owned(), artifacts);
    }

    /// The root commit of a new chain and everything below it.
    fn root_objects(
        &self,
        req: &ChangeRequest,
        record: &Record,
        event: &Event,
    ) -> Result<ObjectId> {
        let mut entries = Vec::with_capacity(4);
        let request_json = serde_json::to_vec_pretty(&req.without_patches())
            .expect("a ChangeRequest always serialises");
        entries.push(blob_entry("request.json", self.write_blob(&request_json)?));
        let mut patches = Vec::with_capacity(req.changes.len());
        for (i, c) in req.changes.iter().enumerate() {
            patches.push(blob_entry(
                &patch_file_name(i),
                self.write_blob(c.patch.as_bytes())?,
            ));
        }
        entries.push(tree_entry("changes", self.write_tree(patches)?));
        let attached = self.root_artifacts.borrow_mut().remove(&record.id);
        let mut tree = self.write_tree(entries)?;
        if let Some(artifacts) = attached.filter(|a| !a.is_empty()) {
            let mut editor = self.repo.edit_tree(tree).map_err(|e| {
                Error::object(format!("could not store the artifacts of {}", record.id), e)
            })?;
            for a in artifacts {
                let data = crate::request::secrets::redact_bytes(&a.data);
                let blob = self.write_blob(&data)?;
                let path = format!("artifacts/{}", a.name);
                editor
                    .upsert(path.as_str(), EntryKind::Blob, blob)
                    .map_err(|e| Error::object(format!("{}: artifact {}", record.id, a.name), e))?;
            }
            tree = editor
                .write()
                .map_err(|e| {
                    Error::object(format!("could not store the artifacts of {}", record.id), e)
                })?
                .detach();
        }
        self.write_object(&commit_object(tree, None, &record.id, event, record))
    }

    /// Write the objects held in memory (see [`crate::git::pack::persist`]).
    pub fn persist(&self) -> Result<usize> {
        crate::git::pack::persist(&self.repo)
    }

    /// Forget the objects held in memory (a dry run's).
    pub fn discard(&self) {
        crate::git::pack::discard(&self.repo)
    }

    fn create_ref(&self, record: &Record, event: &Event, commit: ObjectId) -> Result<Created> {
        let id = &record.id;
        let name = Store::ref_name(id);
        match self.set_ref(&name, None, commit, event)? {
            Swap::Done => {
                self.wrote();
                Ok(Created::New(commit))
            }
            Swap::Moved { now: Some(tip) } => self.existing(id, tip, record),
            Swap::Moved { now: None } => Err(Error::git(format!("could not create {name}"))),
        }
    }

    fn existing(&self, id: &str, tip: ObjectId, record: &Record) -> Result<Created> {
        let existing = self.read_record(id, tip)?;
        if existing.dedupe_key == record.dedupe_key {
            Ok(Created::Existing(tip))
        } else {
            Err(Error::Corrupt {
                id: id.to_owned(),
                message: "a different request already uses this id".into(),
            })
        }
    }

    /// Perform one transition by compare-and-swap. Fails with [`Error::Conflict`] when the
    /// ref no longer points at `t.expected_tip`; nothing is changed then.
    pub fn transition(&self, t: Transition<'_>) -> Result<ObjectId> {
        let id = t.record.id.clone();
        let (expected, event) = (t.expected_tip, t.event);
        let commit = self.prepare(t)?;
        self.commit_transition(&id, expected, commit, event)?;
        Ok(commit)
    }

    /// The objects of a transition (in memory until persisted), without moving the ref: the
    /// first half of [`Store::transition`], so that many can be prepared and then written as
    /// one pack before their refs move one by one ([`Store::commit_transition`]).
    pub fn prepare(&self, t: Transition<'_>) -> Result<ObjectId> {
        let id = &t.record.id;
        let tip = self.tip_info(t.expected_tip)?;
        let parent = if t.replace_tip {
            tip.parent
        } else {
            Some(t.expected_tip)
        };
        // The record travels in the commit message: the tree stays the tip's (one object per
        // transition), but for a chain from before that change, whose stale `state.json` goes.
        let mut tree = tip.tree;
        if tip.record.is_none() {
            let mut entries = self.tree_entries(tip.tree)?;
            let before = entries.len();
            entries.retain(|e| e.filename != "state.json");
            if entries.len() != before {
                tree = self.write_tree(entries)?;
            }
        }
        if !t.artifacts.is_empty() {
            // Nested names (`checks/unit.stdout`, `conflicts/src/lib.rs`) become directories.
            let mut editor = self
                .repo
                .edit_tree(tree)
                .map_err(|e| Error::object(format!("could not store the artifacts of {id}"), e))?;
            for a in t.artifacts {
                let blob = self.write_blob(&a.data)?;
                let path = format!("artifacts/{}", a.name);
                editor
                    .upsert(path.as_str(), EntryKind::Blob, blob)
                    .map_err(|e| Error::object(format!("{id}: artifact {}", a.name), e))?;
            }
            tree = editor
                .write()
                .map_err(|e| Error::object(format!("could not store the artifacts of {id}"), e))?
                .detach();
        }
        let commit = self.write_object(&commit_object(tree, parent, id, t.event, t.record))?;
        self.remember(
            commit,
            TipInfo {
                tree,
                parent,
                record: Some(t.record.clone()),
            },
        );
        Ok(commit)
    }

    /// Tree, first parent and record of chain commit `oid`, from memory when this process
    /// wrote or read it recently.
    fn tip_info(&self, oid: ObjectId) -> Result<std::rc::Rc<TipInfo>> {
        if let Some(info) = self.tips.borrow().get(&oid) {
            return Ok(info.clone());
        }
        let commit = self.find_commit(oid)?;
        let tree = commit
            .tree_id()
            .map_err(|e| Error::object(format!("commit {oid}"), e))?
            .detach();
        let parent = commit.parent_ids().next().map(|p| p.detach());
        let record = parse_record(&commit.message_raw_sloppy().to_str_lossy());
        Ok(self.remember(
            oid,
            TipInfo {
                tree,
                parent,
                record,
            },
        ))
    }

    fn remember(&self, oid: ObjectId, info: TipInfo) -> std::rc::Rc<TipInfo> {
        let info = std::rc::Rc::new(info);
        let mut tips = self.tips.borrow_mut();
        if tips.len() >= TIPS_KEPT {
            tips.clear();
        }
        tips.insert(oid, info.clone());
        info
    }

    /// Move request `id`'s ref from `expected` to `commit` (made by [`Store::prepare`]).
    pub fn commit_transition(
        &self,
        id: &str,
        expected: ObjectId,
        commit: ObjectId,
        event: &Event,
    ) -> Result<()> {
        self.cas(&Store::ref_name(id), expected, commit, event)
    }

    /// Count one request-ref update: one byte appended to `hyperion/generation`. Its size
    /// changes with every update any hyperion process makes, exactly, which file times (that
    /// advance in coarse ticks) cannot promise; the index uses it to tell its own writes from
    /// everyone else's.
    fn wrote(&self) {
        let n = self.writes.get() + 1;
        self.writes.set(n);
        let dir = self.repo.common_dir().join("hyperion");
        let path = dir.join("generation");
        let mut slot = self.generation_file.borrow_mut();
        if slot.is_none() {
            let open = || {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
            };
            *slot = open()
                .or_else(|_| {
                    std::fs::create_dir_all(&dir)?;
                    open()
                })
                .map_err(|e| tracing::warn!(error = %e, "could not open the update counter"))
                .ok();
        }
        let Some(file) = slot.as_mut() else {
            // The ref already moved; a missed count only costs readers a rescan.
            return;
        };
        if let Err(e) = std::io::Write::write_all(file, b".") {
            tracing::warn!(error = %e, "could not count a ref update");
        }
        // `gc` starts a fresh file (a new inode) when it grows large; a long-lived process
        // notices and reopens.
        if n.is_multiple_of(64) && !same_file(file, &path) {
            *slot = None;
        }
    }

    /// Replace the update counter with an empty file (a new inode, which every reader treats
    /// as a change), so it does not grow without bound. Called by `gc`.
    pub fn reset_generation(&self) -> Result<()> {
        let dir = self.repo.common_dir().join("hyperion");
        let path = dir.join("generation");
        if std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) < 1 << 16 {
            return Ok(());
        }
        let tmp = dir.join(format!("generation.{}", std::process::id()));
        std::fs::write(&tmp, b"")
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| Error::io(format!("could not reset {}", path.display()), e))?;
        *self.generation_file.borrow_mut() = None;
        Ok(())
    }

    /// Count `n` request-ref updates made outside [`Store`]'s own transitions (`gc`'s removals).
    pub fn count_writes(&self, n: usize) {
        for _ in 0..n {
            self.wrote();
        }
    }

    /// How many request-ref updates this process has made.
    pub fn own_writes(&self) -> u64 {
        self.writes.get()
    }

    /// (size, inode) of the update counter: changes whenever any hyperion process moves a
    /// request ref.
    pub fn generation(&self) -> Option<(u64, u64)> {
        let m = std::fs::metadata(self.repo.common_dir().join("hyperion/generation")).ok()?;
        #[cfg(unix)]
        let ino = std::os::unix::fs::MetadataExt::ino(&m);
        #[cfg(not(unix))]
        let ino = 0;
        Some((m.len(), ino))
    }

    /// Lock files of request refs older than `min_age`: left by a writer that died between
    /// taking a ref's lock and committing it (a SIGKILL in that instant).
    pub fn stale_locks(&self, min_age: std::time::Duration) -> Result<Vec<String>> {
        let dir = self.repo.common_dir().join(REQUESTS_PREFIX);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("could not read {}", dir.display()), e)),
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".lock")
                && crate::git::os::is_older_than(&e.path(), min_age)
            {
                out.push(id.to_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Remove `id`'s ref lock if it is older than `min_age`. The lock is first moved aside and
    /// checked again, and put back if it turns out to be a live writer's fresh lock.
    pub fn remove_stale_lock(&self, id: &str, min_age: std::time::Duration) -> Result<bool> {
        let lock = self
            .repo
            .common_dir()
            .join(format!("{REQUESTS_PREFIX}{id}.lock"));
        Ok(crate::git::refs::remove_stale_lock(&lock, min_age))
    }

    /// Remove a request's ref, only if it still points at `expected` (retention).
    pub fn delete(&self, id: &str, expected: ObjectId) -> Result<()> {
        let name = Store::ref_name(id);
        let edit = RefEdit {
            change: Change::Delete {
                expected: PreviousValue::MustExistAndMatch(Target::Object(expected)),
                log: RefLog::AndReference,
            },
            name: name
                .as_str()
                .try_into()
                .map_err(|e| Error::object(format!("not a ref name: {name}"), e))?,
            deref: false,
        };
        self.persist()?;
        let result = self.repo.edit_reference(edit).map_err(|e| {
            if self.tip(id).ok().flatten() != Some(expected) {
                Error::Conflict {
                    id: id.to_owned(),
                    what: "its ref moved while it was being archived".into(),
                }
            } else {
                Error::object(format!("could not delete {name}"), e)
            }
        });
        result?;
        self.wrote();
        Ok(())
    }

    /// The first parent of chain commit `oid` (`None` for a root).
    pub fn parent_of(&self, oid: ObjectId) -> Result<Option<ObjectId>> {
        Ok(self.tip_info(oid)?.parent)
    }

    /// Whether `ancestor` is `tip` or on its first-parent line (a chain is one line of
    /// commits, at most [`crate::gate`]'s 10,000 long: walked, not searched).
    pub fn descends(&self, tip: ObjectId, ancestor: ObjectId) -> Result<bool> {
        let mut at = Some(tip);
        let mut steps = 0;
        while let Some(oid) = at {
            if oid == ancestor {
                return Ok(true);
            }
            steps += 1;
            if steps > 10_000 {
                return Ok(false);
            }
            at = self.parent_of(oid)?;
        }
        Ok(false)
    }

    /// Point request `id`'s ref at `new`, a chain fetched from a remote, only if it is still
    /// at `expected` (`None`: absent). `Ok(false)` when it moved meanwhile; nothing changed.
    /// The chain is not checked here: [`crate::queue::remote::Remote::adopt`] checks it first.
    pub fn adopt(
        &self,
        id: &str,
        expected: Option<ObjectId>,
        new: ObjectId,
        actor: &str,
    ) -> Result<bool> {
        let moved = crate::git::refs::cas(
            &self.repo,
            &Store::ref_name(id),
            expected,
            new,
            &crate::git::refs::LogLine {
                name: actor,
                email: "hyperion@localhost",
                at: jiff::Timestamp::now(),
                message: "hyperion: fetch",
            },
        )?;
        if moved.done() {
            self.wrote();
        }
        Ok(moved.done())
    }

    /// The record stored at `tip`.
    pub fn read_record(&self, id: &str, tip: ObjectId) -> Result<Record> {
        if let Some(record) = &self.tip_info(tip)?.record {
            return Ok(record.clone());
        }
        let data = self.read_path(id, tip, "state.json")?;
        serde_json::from_slice(&data).map_err(|e| Error::Corrupt {
            id: id.to_owned(),
            message: format!("state.json: {e}"),
        })
    }

    /// The full request (patches included) stored at `tip`.
    pub fn read_request(&self, id: &str, tip: ObjectId) -> Result<ChangeRequest> {
        let data = self.read_path(id, tip, "request.json")?;
        let mut req: ChangeRequest = serde_json::from_slice(&data).map_err(|e| Error::Corrupt {
            id: id.to_owned(),
            message: format!("request.json: {e}"),
        })?;
        for (i, c) in req.changes.iter_mut().enumerate() {
            let patch = self.read_path(id, tip, &format!("changes/{}", patch_file_name(i)))?;
            c.patch = String::from_utf8(patch).map_err(|_| Error::Corrupt {
                id: id.to_owned(),
                message: format!("changes/{} is not UTF-8", patch_file_name(i)),
            })?;
        }
        Ok(req)
    }

    /// Names of the artifacts stored at `tip`.
    pub fn artifacts(&self, tip: ObjectId) -> Result<Vec<String>> {
        let tree = self
            .find_commit(tip)?
            .tree_id()
            .map_err(|e| Error::object(format!("could not read the tree of {tip}"), e))?
            .detach();
        let entries = self.tree_entries(tree)?;
        let mut out = Vec::new();
        if let Some(e) = entries.iter().find(|e| e.filename == "artifacts") {
            self.list_files(e.oid, "artifacts/", &mut out)?;
        }
        Ok(out)
    }

    /// The artifact `name` (below `artifacts/`) at `tip`, if it has one.
    pub fn read_artifact(&self, id: &str, tip: ObjectId, name: &str) -> Result<Option<Vec<u8>>> {
        let path = format!("artifacts/{name}");
        if !self.artifacts(tip)?.contains(&path) {
            return Ok(None);
        }
        self.read_path(id, tip, &path).map(Some)
    }

    fn list_files(&self, tree: ObjectId, prefix: &str, out: &mut Vec<String>) -> Result<()> {
        for e in self.tree_entries(tree)? {
            let path = format!("{prefix}{}", e.filename);
            if e.mode.is_tree() {
                self.list_files(e.oid, &format!("{path}/"), out)?;
            } else {
                out.push(path);
            }
        }
        Ok(())
    }

    /// The chain from `tip` back to the root, newest first.
    pub fn history(&self, id: &str, tip: ObjectId) -> Result<Vec<HistoryEntry>> {
        let mut out = Vec::new();
        let mut next = Some(tip);
        while let Some(oid) = next {
            let commit = self.find_commit(oid)?;
            let message = commit.message_raw_sloppy().to_str_lossy().into_owned();
            let event = parse_event(&message).ok_or_else(|| Error::Corrupt {
                id: id.to_owned(),
                message: format!("commit {oid} carries no hyperion event"),
            })?;
            out.push(HistoryEntry { commit: oid, event });
            next = commit.parent_ids().next().map(|p| p.detach());
        }
        Ok(out)
    }

    /// The event of the tip commit alone.
    pub fn history_head(&self, tip: ObjectId) -> Result<Option<Event>> {
        let commit = self.find_commit(tip)?;
        Ok(parse_event(&commit.message_raw_sloppy().to_str_lossy()))
    }

    /// The file at `path` in the tree of `tip` (a patch, an artifact, `state.json`).
    pub fn read_path(&self, id: &str, tip: ObjectId, path: &str) -> Result<Vec<u8>> {
        let commit = self.find_commit(tip)?;
        let tree = commit
            .tree()
            .map_err(|e| Error::object(format!("could not read the tree of {tip}"), e))?;
        let entry = tree
            .lookup_entry_by_path(path)
            .map_err(|e| Error::object(format!("could not look up {path} in {tip}"), e))?
            .ok_or_else(|| Error::Corrupt {
                id: id.to_owned(),
                message: format!("{path} is missing from {tip}"),
            })?;
        let blob = self
            .repo
            .find_blob(entry.object_id())
            .map_err(|e| Error::object(format!("could not read {path} of {tip}"), e))?;
        Ok(blob.data.clone())
    }

    fn find_commit(&self, oid: ObjectId) -> Result<gix::Commit<'_>> {
        self.repo
            .find_commit(oid)
            .map_err(|e| Error::object(format!("could not read commit {oid}"), e))
    }

    fn tree_entries(&self, tree: ObjectId) -> Result<Vec<Entry>> {
        let tree = self
            .repo
            .find_tree(tree)
            .map_err(|e| Error::object(format!("could not read tree {tree}"), e))?;
        let decoded = tree
            .decode()
            .map_err(|e| Error::object(format!("could not decode tree {}", tree.id), e))?;
        Ok(decoded
            .entries
            .iter()
            .map(|e| Entry {
                mode: e.mode,
                filename: e.filename.to_owned(),
                oid: e.oid.to_owned(),
            })
            .collect())
    }

    pub(crate) fn write_blob(&self, data: &[u8]) -> Result<ObjectId> {
        crate::git::pack::write_object(&self.repo, gix::objs::Kind::Blob, data)
    }

    fn write_tree(&self, mut entries: Vec<Entry>) -> Result<ObjectId> {
        use gix::objs::WriteTo;
        entries.sort();
        let mut buf = Vec::new();
        gix::objs::Tree { entries }
            .write_to(&mut buf)
            .map_err(|e| Error::object("could not write a tree", e))?;
        crate::git::pack::write_object(&self.repo, gix::objs::Kind::Tree, &buf)
    }

    /// Write a chain's commit to the object memory. Unlike `Repository::write_object`,
    /// without first looking for it on disk (a `stat` and a lookup in every pack index): a
    /// chain's commit carries its event's time and its parent, so it is new but for a rare
    /// duplicate enqueue within one second, whose second copy is harmless.
    fn write_object(&self, object: &gix::objs::Commit) -> Result<ObjectId> {
        use gix::objs::WriteTo;
        let mut buf = Vec::with_capacity(object.size() as usize);
        object
            .write_to(&mut buf)
            .map_err(|e| Error::object("could not write a commit", e))?;
        crate::git::pack::write_object(&self.repo, gix::objs::Kind::Commit, &buf)
    }

    /// Move `name` from `expected` to `new`, atomically, or report a conflict.
    fn cas(&self, name: &str, expected: ObjectId, new: ObjectId, event: &Event) -> Result<()> {
        let id = name.strip_prefix(REQUESTS_PREFIX).unwrap_or(name);
        match self.set_ref(name, Some(expected), new, event)? {
            Swap::Done => {
                self.wrote();
                Ok(())
            }
            Swap::Moved { now } => Err(Error::Conflict {
                id: id.to_owned(),
                what: match now {
                    Some(tip) => format!("its tip moved from {expected} to {tip}"),
                    None => "its ref was removed".into(),
                },
            }),
        }
    }

    fn set_ref(
        &self,
        name: &str,
        expected: Option<ObjectId>,
        new: ObjectId,
        event: &Event,
    ) -> Result<Swap> {
        crate::git::refs::cas(
            &self.repo,
            name,
            expected,
            new,
            &crate::git::refs::LogLine {
                name: &event.actor,
                email: "hyperion@localhost",
                at: event.at,
                message: &format!("hyperion: {}", event.action.as_str()),
            },
        )
    }
}

/// A ref lock older than this was left by a dead writer.
pub const STALE_LOCK: std::time::Duration = crate::git::refs::STALE_LOCK;

#[cfg(unix)]
fn same_file(file: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &std::fs::File, _: &Path) -> bool {
    true
}

/// `0001.patch` for the first change.
pub fn patch_file_name(index: usize) -> String {
    format!("{:04}.patch", index + 1)
}

/// The event in a chain commit's message. See [`parse_message`].
pub fn parse_event(message: &str) -> Option<Event> {
    parse_message(message).map(|(event, _)| event)
}

/// The record in a chain commit's message, if the commit carries one: chains written before
/// records moved into messages keep theirs in `state.json` in the tree. See
/// [`parse_message`].
pub fn parse_record(message: &str) -> Option<Record> {
    parse_message(message).and_then(|(_, record)| record)
}

/// The event and record of a chain commit, read only from a message of exactly the form
/// [`commit_object`] writes: the summary line the event gives, then the event as one line of
/// JSON, then the record as one line of JSON (absent in chains written before records moved
/// into messages), each paragraph separated by one blank line, ending in one newline.
/// Anything else — a landed commit whose description holds JSON paragraphs, a message with
/// trailers or extra text — is not a chain commit, however much of it looks like one.
pub fn parse_message(message: &str) -> Option<(Event, Option<Record>)> {
    let body = message.strip_suffix('\n')?;
    let mut paragraphs = body.split("\n\n");
    let (summary, event) = (paragraphs.next()?, paragraphs.next()?);
    let record = paragraphs.next();
    if paragraphs.next().is_some()
        || [summary, event]
            .iter()
            .chain(&record)
            .any(|p| p.contains('\n'))
    {
        return None;
    }
    let event: Event = serde_json::from_str(event).ok()?;
    // The id is the summary's third word; the summary must be the one the event gives.
    let id = summary.split(' ').nth(2)?;
    if event.summary(id) != summary {
        return None;
    }
    let record = match record {
        Some(text) => {
            let record: Record = serde_json::from_str(text).ok()?;
            if record.id != id {
                return None;
            }
            Some(record)
        }
        None => None,
    };
    Some((event, record))
}

fn signature(actor: &str, at: jiff::Timestamp) -> gix::actor::Signature {
    gix::actor::Signature {
        name: actor.into(),
        email: "hyperion@localhost".into(),
        time: gix::date::Time {
            seconds: at.as_second(),
            offset: 0,
        },
    }
}

/// A chain commit: authored and committed by the event's actor at the event's time; the
/// message is the summary line and the event as JSON.
fn commit_object(
    tree: ObjectId,
    parent: Option<ObjectId>,
    id: &str,
    event: &Event,
    record: &Record,
) -> gix::objs::Commit {
    let sig = signature(&event.actor, event.at);
    let record = &record.to_store();
    let message = format!(
        "{}\n\n{}\n\n{}\n",
        event.summary(id),
        serde_json::to_string(event).expect("an Event always serialises"),
        serde_json::to_string(record).expect("a Record always serialises")
    );
    gix::objs::Commit {
        tree,
        parents: parent.into_iter().collect(),
        author: sig.clone(),
        committer: sig,
        encoding: None,
        message: message.into(),
        extra_headers: Vec::new(),
    }
}

fn blob_entry(name: &str, oid: ObjectId) -> Entry {
    Entry {
        mode: EntryKind::Blob.into(),
        filename: name.into(),
        oid,
    }
}

fn tree_entry(name: &str, oid: ObjectId) -> Entry {
    Entry {
        mode: EntryKind::Tree.into(),
        filename: name.into(),
        oid,
    }
}
