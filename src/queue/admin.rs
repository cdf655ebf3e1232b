//! Keeping the queue: `sweep` (expired leases), `requeue`, `gc` (retention into bundles) and the
//! queue's part of `doctor`.

use std::time::Duration;

use gix::ObjectId;
use serde::Serialize;

use crate::code::Code;
use crate::error::{Error, Result};
use crate::queue::index::Index;
use crate::queue::store::Store;
use crate::request::model::{Action, DeadClass, ErrorInfo, Event, Record, Status};

use super::{ChainCheck, OnScan, Queue, SCAN_STEP, Scan, scanned};

/// What a sweep did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Swept {
    pub requeued: Vec<String>,
    pub dead: Vec<String>,
    /// Requests whose ref lock, left by a writer that died mid-update, was removed.
    pub unlocked: Vec<String>,
    /// Keep files of packs whose writer died before its refs existed, removed.
    pub unkept: Vec<String>,
    /// Expired leases that could not be swept this time (e.g. a ref lock not yet stale).
    pub skipped: Vec<Finding>,
}

/// What gc did (or would do, with `dry_run`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Collected {
    pub archived: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive: Option<String>,
    pub dry_run: bool,
}

/// One finding of `doctor`.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub id: String,
    pub code: Code,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Diagnosis {
    pub requests: usize,
    pub findings: Vec<Finding>,
    /// Index entries that disagreed with the refs before this run reconciled them.
    pub index_drift: usize,
    pub reindexed: bool,
    /// Requests whose objects were missing, set aside under `refs/hyperion/lost/` (repair).
    pub set_aside: Vec<String>,
    /// Keep files of packs whose writer died before its refs existed, removed.
    pub stale_keeps: Vec<String>,
}

impl Queue {
    /// Return expired leases to the queue, counting the attempt; past `maxAttempts` the
    /// request becomes a dead letter of class `lease`.
    pub fn sweep(&self) -> Result<Swept> {
        let mut swept = Swept::default();
        // Looking for stale locks reads the whole ref directory. A lock becomes stale only
        // after STALE_LOCK, so a process sweeping more often than that looks once per period.
        let due = self
            .locks_scanned
            .get()
            .is_none_or(|at| at.elapsed() >= crate::queue::store::STALE_LOCK);
        let stale = if due {
            self.locks_scanned.set(Some(std::time::Instant::now()));
            let common = self.store.repo().common_dir().to_owned();
            swept.unkept =
                crate::git::pack::remove_stale_keeps(&common, crate::git::pack::KEEP_GRACE)
                    .iter()
                    .filter_map(|k| k.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .collect();
            self.store.stale_locks(crate::queue::store::STALE_LOCK)?
        } else {
            Vec::new()
        };
        for id in stale {
            if self
                .store
                .remove_stale_lock(&id, crate::queue::store::STALE_LOCK)?
            {
                swept.unlocked.push(id);
            }
        }
        let mut ix = self.index()?;
        let now = self.now();
        // The index keeps the leased ones apart, read a chunk at a time; without it, every
        // record is read and the expired ones kept.
        let is_expired =
            |r: &Record| r.status == Status::Leased && r.leased_until.is_none_or(|t| t < now);
        let (mut leased_ids, mut from_refs) = match ix.as_ref() {
            Some(ix) => {
                // In the packs' order: each one's tip commit is read to build on.
                let mut leased = ix.leased();
                crate::git::pack::sort_by_location(self.store.repo(), &mut leased, |l| l.1);
                (leased.into_iter(), None)
            }
            None => (
                Vec::new().into_iter(),
                Some(
                    self.records_where(
                        None,
                        |tip, r| is_expired(&r).then_some((tip, r)),
                        &mut |_| {},
                    )?
                    .into_iter(),
                ),
            ),
        };
        // In chunks: each chunk's commits are prepared in memory and reach the disk as one pack
        // at its first ref update (a few packs for any number of requests, so no repack to
        // wait for), and memory holds one chunk's records and objects at a time.
        let mut pages = crate::git::os::PageBudget;
        loop {
            let chunk: Vec<(ObjectId, Record)> = match (&mut from_refs, ix.as_ref()) {
                (Some(records), _) => records
                    .by_ref()
                    .take(crate::queue::store::chunk())
                    .collect(),
                (None, Some(ix)) => {
                    let mut v = Vec::new();
                    for (id, _) in leased_ids.by_ref().take(crate::queue::store::chunk()) {
                        if let Some((tip, r)) = ix.get(&self.store, &id)?
                            && is_expired(&r)
                        {
                            v.push((tip, r));
                        }
                    }
                    v
                }
                (None, None) => Vec::new(),
            };
            if chunk.is_empty() {
                if leased_ids.len() == 0 {
                    break;
                }
                continue;
            }
            // The chunk's pack stays kept until its last ref moved.
            let _hold = crate::git::pack::hold();
            let mut prepared = Vec::with_capacity(chunk.len());
            for (tip, r) in chunk {
                pages.read_one();
                let (mut next, mut event) = self.expired(&r, now);
                match self.prepare(tip, &mut next, &mut event, &mut [], false) {
                    Ok(commit) => prepared.push((tip, commit, next, event)),
                    Err(e) => {
                        tracing::warn!(request_id = %r.id, error = %e, "could not sweep; will retry");
                        swept.skipped.push(Finding {
                            id: r.id,
                            code: e.code(),
                            message: e.to_string(),
                        });
                    }
                }
            }
            for (tip, commit, next, event) in prepared {
                match self.finish(&mut ix, tip, commit, &next, &event) {
                    Ok(()) => {
                        tracing::info!(request_id = %next.id, task_id = %next.task_id, to = %next.status, "swept expired lease");
                        if next.status == Status::Dead {
                            swept.dead.push(next.id);
                        } else {
                            swept.requeued.push(next.id);
                        }
                    }
                    Err(Error::Conflict { .. }) => {}
                    // Recovery must not stop at one stuck request: report it and go on.
                    Err(e) => {
                        tracing::warn!(request_id = %next.id, error = %e, "could not sweep; will retry");
                        swept.skipped.push(Finding {
                            id: next.id,
                            code: e.code(),
                            message: e.to_string(),
                        });
                    }
                }
            }
            if let Some(ix) = ix.as_mut() {
                ix.spill();
            }
        }
        self.done(ix)?;
        // Swept in the packs' order; reported in the ids'.
        swept.requeued.sort_unstable();
        swept.dead.sort_unstable();
        swept.skipped.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(swept)
    }

    /// The record and event of `r`'s expired lease being swept at `now`: back to `pending`
    /// with a backoff, or `dead` (class `lease`) on its last attempt.
    fn expired(&self, r: &Record, now: jiff::Timestamp) -> (Record, Event) {
        let mut next = r.clone();
        let owner = r.lease_owner.clone();
        next.clear_lease();
        next.updated_at = now;
        let message = format!(
            "lease held by '{}' expired (attempt {} of {})",
            owner.as_deref().unwrap_or("?"),
            r.attempts,
            self.settings.max_attempts
        );
        let mut event = Event {
            worker: owner,
            reason: Some(message.clone()),
            code: Some(Code::LeaseExpired.into()),
            ..Event::new(
                Action::Expire,
                Some(Status::Leased),
                Status::Pending,
                "sweep",
                now,
            )
        };
        if r.attempts >= self.settings.max_attempts {
            next.status = Status::Dead;
            next.dead_class = Some(DeadClass::Lease);
            next.error = Some(ErrorInfo {
                code: Code::LeaseExpired.into(),
                message,
            });
            event.to = Status::Dead;
        } else {
            next.status = Status::Pending;
            next.not_before = Some(now + self.backoff(&next));
        }
        (next, event)
    }

    /// Put dead letters back in the queue, with the reason recorded in their chains. One
    /// that was rejected, or whose risk tier needs approval by the policy now, goes back to
    /// `awaiting_approval` (an approval given before does not carry over).
    pub fn requeue(&self, ids: &[String], reason: &str, actor: &str) -> Result<Vec<Record>> {
        if reason.trim().is_empty() {
            return Err(Error::Usage("requeue needs a --reason".into()));
        }
        // Resolve every id before changing anything, so a typo changes nothing.
        let mut targets = Vec::new();
        let mut requests = Vec::new();
        let mut reasons = Vec::new();
        for id in ids {
            let (id, tip, record) = self.resolve_in(id, Status::Dead)?;
            requests.push(self.store.read_request(&id, tip)?);
            targets.push((tip, record));
            reasons.push(reason.to_owned());
        }
        // Stacked requests that died with a predecessor come back with it, and wait for it.
        let named: std::collections::HashSet<String> =
            targets.iter().map(|(_, r)| r.id.clone()).collect();
        for (dependent, on) in self.orphans_of(&named)? {
            let (id, tip, record) = self.resolve_in(&dependent, Status::Dead)?;
            requests.push(self.store.read_request(&id, tip)?);
            targets.push((tip, record));
            reasons.push(format!("{reason} (with its predecessor {on})"));
        }
        let assessments = self.assess(&requests.iter().collect::<Vec<_>>())?;
        let mut ix = self.index()?;
        let mut out = Vec::new();
        for (((tip, r), assessment), reason) in targets.into_iter().zip(assessments).zip(reasons) {
            let reason = reason.as_str();
            let now = self.now();
            let mut next = r.clone();
            let waits = r.dead_class == Some(DeadClass::Rejected) || assessment.needs_approval();
            next.status = if waits {
                Status::AwaitingApproval
            } else {
                Status::Pending
            };
            next.dead_class = None;
            next.error = None;
            next.attempts = 0;
            next.not_before = None;
            next.approved_by = None;
            next.approval_tiers = if waits {
                assessment.approval_tiers()
            } else {
                Vec::new()
            };
            next.updated_at = now;
            let mut why = reason.to_owned();
            if waits {
                let summary = assessment.summary();
                why.push_str(&if summary.is_empty() {
                    "; it was rejected, so it needs approval again".to_owned()
                } else {
                    format!("; needs approval: {summary}")
                });
            }
            let mut event = Event {
                reason: Some(why),
                ..Event::new(Action::Requeue, Some(Status::Dead), next.status, actor, now)
            };
            match self.transition(&mut ix, tip, &mut next, &mut event, &mut [], false) {
                Ok(_) => out.push(next),
                Err(e) => {
                    self.done(ix)?;
                    return Err(e);
                }
            }
        }
        self.done(ix)?;
        Ok(out)
    }

    /// Archive finished requests older than the retention into a git bundle under
    /// `$GIT_DIR/hyperion/archive/`, verify it, then remove their refs by compare-and-swap.
    /// How far it got goes to `on_scan`: the records read, then the requests archived and
    /// their refs removed.
    pub fn gc(
        &self,
        older_than: Option<Duration>,
        dry_run: bool,
        on_scan: &mut OnScan<'_>,
    ) -> Result<Collected> {
        let age = older_than.unwrap_or(self.settings.retention);
        let cutoff = self.now() - jiff::SignedDuration::try_from(age).expect("age fits");
        // Only the old ones are kept, as they are read (not every record at once).
        let ix = self.index()?;
        // A finished request that a live one depends on stays until that one is finished:
        // the queue reads its status to let it go (or die) after it.
        let mut needed = std::collections::HashSet::new();
        let old = self.records_where(
            ix.as_ref(),
            |tip, r| {
                if !r.status.is_final() {
                    needed.extend(r.depends_on);
                    return None;
                }
                (r.updated_at < cutoff).then_some((tip, r.id))
            },
            on_scan,
        );
        self.done(ix)?;
        let mut old = old?;
        old.retain(|(_, id)| !needed.contains(id));
        // Archived in the packs' order: see [`crate::git::pack::sort_by_location`].
        crate::git::pack::sort_by_location(self.store.repo(), &mut old, |(tip, _)| *tip);
        let mut collected = Collected {
            archived: {
                let mut ids: Vec<String> = old.iter().map(|(_, id)| id.clone()).collect();
                ids.sort_unstable();
                ids
            },
            archive: None,
            dry_run,
        };
        if dry_run || old.is_empty() {
            return Ok(collected);
        }
        let dir = self.store.hyperion_dir().join("archive");
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("could not create {}", dir.display()), e))?;
        let stamp = self.now().strftime("%Y%m%dT%H%M%S%.9fZ").to_string();
        let bundle = dir.join(format!("gc-{stamp}.bundle"));
        let refs: Vec<(String, ObjectId)> = old
            .iter()
            .map(|(tip, id)| (Store::ref_name(id), *tip))
            .collect();
        let total = old.len();
        on_scan(Scan {
            what: "requests archived",
            done: 0,
            total,
        });
        // Everything the refs reach is on disk before git reads it.
        self.store.persist()?;
        crate::queue::archive::bundle_create(self.store.repo(), &bundle, &refs)?;
        let heads = crate::queue::archive::bundle_heads(&bundle)?;
        drop(refs);
        // Only a ref the bundle holds at the very tip to be removed is removed (one that moved
        // since the snapshot is kept: it is no longer old, or its newer state is not archived).
        let mut doomed = Vec::with_capacity(old.len());
        let mut by_ref = std::collections::HashMap::with_capacity(old.len());
        for (tip, id) in old {
            let name = Store::ref_name(&id);
            if heads.get(&name) == Some(&tip) {
                doomed.push((name.clone(), tip));
                by_ref.insert(name, id);
            }
        }
        drop(heads);
        on_scan(Scan {
            what: "requests archived",
            done: total,
            total,
        });
        crate::git::os::pause_point("gc.bundle_verified");
        let doomed_len = doomed.len();
        let (removed_names, failed) =
            crate::queue::archive::delete_refs(self.store.repo(), &doomed);
        on_scan(Scan {
            what: "refs removed",
            done: removed_names.len(),
            total: doomed_len,
        });
        self.store.count_writes(removed_names.len());
        let mut ix = self.index()?;
        let mut archived = Vec::with_capacity(removed_names.len());
        for name in &removed_names {
            let id = by_ref.remove(name).expect("only doomed refs are removed");
            if let Some(ix) = ix.as_mut() {
                ix.remove(&id)?;
            }
            tracing::debug!(request_id = %id, archive = %bundle.display(), "archived");
            archived.push(id);
        }
        tracing::info!(requests = archived.len(), archive = %bundle.display(), "archived");
        let listed = crate::queue::archive::record(&dir, &bundle, &archived);
        archived.sort_unstable();
        if let Some(e) = failed.or(listed.err()) {
            self.done(ix)?;
            // Some refs may be gone already: say which, never "nothing was changed".
            let mut kept: Vec<String> = by_ref.into_values().collect();
            kept.sort_unstable();
            return Err(Error::GcIncomplete {
                archived,
                kept,
                bundle: bundle.display().to_string(),
                cause: Box::new(e),
            });
        }
        self.done(ix)?;
        self.store.reset_generation()?;
        collected.archived = archived;
        collected.archive = Some(bundle.display().to_string());
        Ok(collected)
    }

    /// The queue's part of `doctor`: stale keeps and locks, chains with missing objects,
    /// expired leases, the index against the refs (with `reindex`, rebuilt from them); and
    /// each chunk of chains handed to `check_chains` (the gate's chain checks: see
    /// `gate::verify::doctor`, which is the whole of `doctor`). With `repair`, a request whose
    /// chain misses objects is set aside under `refs/hyperion/lost/` ([`crate::queue::lost`])
    /// and dropped from the index.
    pub fn doctor_with(
        &self,
        reindex: bool,
        repair: bool,
        check_chains: &mut ChainCheck<'_>,
        on_scan: &mut OnScan<'_>,
    ) -> Result<Diagnosis> {
        let mut d = Diagnosis::default();
        // Keeps of packs whose writer died before its refs: their objects are garbage now.
        let common = self.store.repo().common_dir().to_owned();
        for keep in crate::git::pack::remove_stale_keeps(&common, crate::git::pack::KEEP_GRACE) {
            let name = keep
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            d.findings.push(Finding {
                id: name.clone(),
                code: Code::StoreStaleKeep,
                message: format!(
                    "a writer died between writing pack {name} and its refs; its keep file was removed"
                ),
            });
            d.stale_keeps.push(name);
        }
        // Every chain is read three times (its objects, its record, its links), a chunk of
        // requests at a time: the pages of the packs read are given back after each chunk, and
        // the findings are gathered by kind so that their order does not depend on the chunk.
        let mut refs = self.store.list()?;
        // Read in the packs' order, not the ids': see [`crate::git::pack::sort_by_location`].
        // The findings are put back in id order below.
        crate::git::pack::sort_by_location(self.store.repo(), &mut refs, |(_, tip)| *tip);
        let mut lost = Vec::new();
        let mut complete = Vec::with_capacity(refs.len());
        let mut pages = crate::git::os::PageBudget;
        let total = refs.len();
        let mut done = 0;
        for chunk in refs.chunks(crate::queue::store::chunk()) {
            for (id, tip) in chunk {
                scanned(on_scan, "chains' objects checked", done, total);
                done += 1;
                pages.read_one();
                let missing = crate::queue::lost::missing(self.store.repo(), *tip);
                if missing.is_empty() {
                    complete.push((id.clone(), *tip));
                } else {
                    lost.push((id.clone(), *tip, missing));
                }
            }
            crate::git::os::release_pack_pages();
        }
        refs = complete;
        lost.sort_by(|a, b| a.0.cmp(&b.0));
        if !lost.is_empty() {
            let mut ix = self.index()?;
            for (id, tip, missing) in lost {
                let names = missing
                    .iter()
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                let mut message = format!("its chain at {tip} misses object(s) {names}");
                if repair {
                    crate::queue::lost::set_aside(&self.store, &id, tip, &missing)?;
                    if let Some(ix) = ix.as_mut() {
                        ix.remove(&id)?;
                    }
                    message.push_str(&format!(
                        "; set aside as {}{id}",
                        crate::queue::lost::LOST_PREFIX
                    ));
                    d.set_aside.push(id.clone());
                } else {
                    message.push_str("; `git hyperion doctor --repair` sets it aside");
                }
                d.findings.push(Finding {
                    id,
                    code: Code::StoreMissingObject,
                    message,
                });
            }
            self.done(ix)?;
        }
        d.requests = refs.len() + d.set_aside.len();
        // Compare the index with the refs before reconciling it (tips only: no record read).
        let mut slot = self.index.borrow_mut();
        if slot.is_none() {
            *slot = Index::open(&Index::path(&self.store), self.settings.index_wait)?;
        }
        if let Some(ix) = slot.as_mut() {
            let by_id: std::collections::HashMap<&str, ObjectId> =
                refs.iter().map(|(id, tip)| (id.as_str(), *tip)).collect();
            let indexed = ix.tips();
            d.index_drift = indexed
                .iter()
                .filter(|(id, tip)| by_id.get(id) != Some(tip))
                .count()
                + refs.len().saturating_sub(indexed.len());
            drop((indexed, by_id));
            if reindex {
                ix.clear()?;
                d.reindexed = true;
            }
            ix.reconcile_with(&self.store, on_scan)?;
        } else if reindex {
            return Err(Error::Usage(
                "the index is held by another process; try again when it is idle".into(),
            ));
        }
        drop(slot);
        for id in self.store.stale_locks(crate::queue::store::STALE_LOCK)? {
            d.findings.push(Finding {
                id,
                code: Code::StoreStaleLock,
                message: "a writer died holding this ref's lock; `git hyperion sweep` removes it"
                    .into(),
            });
        }
        let now = self.now();
        let mut chains = Vec::new();
        let expired_from = d.findings.len();
        let total = refs.len();
        let mut done = 0;
        for chunk in refs.chunks(crate::queue::store::chunk()) {
            for (id, tip) in chunk {
                pages.read_one();
                // An unreadable record is reported by the chain checks below.
                if let Ok(record) = self.store.read_record(id, *tip)
                    && record.status == Status::Leased
                    && record.leased_until.is_some_and(|t| t < now)
                {
                    d.findings.push(Finding {
                        id: id.clone(),
                        code: Code::LeaseExpired,
                        message: "lease expired; `git hyperion sweep` returns it to the queue"
                            .into(),
                    });
                }
            }
            // The chain checks read a chunk at once: its progress is told per step within it.
            for start in (0..chunk.len()).step_by(SCAN_STEP) {
                let part = &chunk[start..(start + SCAN_STEP).min(chunk.len())];
                chains.extend(check_chains(self, part, &mut pages)?);
                done += part.len();
                on_scan(Scan {
                    what: "chains checked",
                    done,
                    total,
                });
            }
            crate::git::os::release_pack_pages();
        }
        d.findings[expired_from..].sort_by(|a, b| a.id.cmp(&b.id));
        chains.sort_by(|a, b| a.id.cmp(&b.id));
        d.findings.extend(chains);
        Ok(d)
    }
}
