//! Reading the queue: `list`, `show`, the history `audit` reads, and resolving an id prefix.

use gix::ObjectId;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::queue::index::Index;
use crate::request::model::HistoryEntry;
use crate::request::model::{ChangeRequest, DeadClass, Event, Record, Status};

use super::Queue;

/// Filters for [`Queue::list`].
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub status: Option<Status>,
    pub dead_class: Option<DeadClass>,
    pub agent: Option<String>,
    pub since: Option<jiff::Timestamp>,
    pub limit: Option<usize>,
}

impl Filter {
    fn matches(&self, r: &Record) -> bool {
        self.status.is_none_or(|s| r.status == s)
            && self.dead_class.is_none_or(|c| r.dead_class == Some(c))
            && self.agent.as_deref().is_none_or(|a| r.agent == a)
            && self.since.is_none_or(|t| r.updated_at >= t)
    }
}

/// Everything `show` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Details {
    pub record: Record,
    pub tip: String,
    pub history: Vec<HistoryItem>,
    pub artifacts: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HistoryItem {
    pub commit: String,
    #[serde(flatten)]
    pub event: Event,
}

impl From<HistoryEntry> for HistoryItem {
    fn from(h: HistoryEntry) -> Self {
        HistoryItem {
            commit: h.commit.to_string(),
            event: h.event,
        }
    }
}

impl Queue {
    /// Records matching `filter`, oldest first.
    pub fn list(&self, filter: &Filter) -> Result<Vec<Record>> {
        let ix = self.index()?;
        let snap = self.snapshot(ix.as_ref());
        self.done(ix)?;
        let entries = snap?.entries;
        // What a stacked request waits for, from the same read of every record (a queue
        // without one pays nothing for it).
        let stacked = entries.iter().any(|(_, r)| !r.depends_on.is_empty());
        let landed: std::collections::HashMap<&str, bool> = entries
            .iter()
            .filter(|(_, r)| stacked && r.status == Status::Applied)
            .map(|(_, r)| (r.id.as_str(), true))
            .collect();
        let waiting: Vec<Vec<String>> = entries
            .iter()
            .map(|(_, r)| match r.status {
                Status::Pending | Status::AwaitingApproval => r
                    .depends_on
                    .iter()
                    .filter(|d| landed.get(d.as_str()) != Some(&true))
                    .cloned()
                    .collect(),
                _ => Vec::new(),
            })
            .collect();
        drop(landed);
        let records: Vec<Record> = entries
            .into_iter()
            .zip(waiting)
            .map(|((_, mut r), waiting_for)| {
                r.waiting_for = waiting_for;
                r
            })
            .filter(|r| filter.matches(r))
            .collect();
        // Oldest first, ids breaking ties. The keys are sorted, not the records: a record is
        // a few hundred bytes, and moving 100,000 of them through a sort was a sixth of a
        // `list` of them.
        let mut order: Vec<(jiff::Timestamp, usize)> = records
            .iter()
            .enumerate()
            .map(|(i, r)| (r.created_at, i))
            .collect();
        order.sort_unstable_by(|a, b| (a.0, &records[a.1].id).cmp(&(b.0, &records[b.1].id)));
        if let Some(limit) = filter.limit {
            order.truncate(limit);
        }
        let mut slots: Vec<Option<Record>> = records.into_iter().map(Some).collect();
        Ok(order
            .into_iter()
            .map(|(_, i)| slots[i].take().expect("each index once"))
            .collect())
    }

    /// Record, history and artifacts of one request (`id` may be a unique prefix).
    pub fn show(&self, id: &str) -> Result<Details> {
        let (id, tip, mut record) = self.resolve(id)?;
        if matches!(record.status, Status::Pending | Status::AwaitingApproval) {
            record.waiting_for = self.waiting_for(&record)?;
        }
        let history = self.store.history(&id, tip)?;
        Ok(Details {
            record,
            tip: tip.to_string(),
            history: history.into_iter().map(HistoryItem::from).collect(),
            artifacts: self.store.artifacts(tip)?,
        })
    }

    /// What the derived index holds for `id` (its tip and record) as stored, before any
    /// reconciling with the refs: `None` when it has no entry, or when the index is busy
    /// (held by another process) or unusable.
    pub fn indexed(&self, id: &str) -> Result<Option<(ObjectId, Record)>> {
        let mut slot = self.index.borrow_mut();
        if slot.is_none() {
            *slot = Index::open(&Index::path(&self.store), self.settings.index_wait)?;
        }
        match slot.as_ref() {
            Some(ix) => ix.get(&self.store, id),
            None => Ok(None),
        }
    }

    /// The full request stored under `id`.
    pub fn request(&self, id: &str) -> Result<ChangeRequest> {
        let (id, tip, _) = self.resolve(id)?;
        self.store.read_request(&id, tip)
    }

    /// Every transition of every request since `since`, oldest first.
    pub fn audit(&self, since: Option<jiff::Timestamp>) -> Result<Vec<(String, HistoryItem)>> {
        let mut out = Vec::new();
        for (id, tip) in self.store.list()? {
            for h in self.store.history(&id, tip)? {
                if since.is_none_or(|t| h.event.at >= t) {
                    out.push((id.clone(), HistoryItem::from(h)));
                }
            }
        }
        out.sort_by(|a, b| (a.1.event.at, &a.0).cmp(&(b.1.event.at, &b.0)));
        Ok(out)
    }

    /// Find a request by id or unique prefix (at least 4 hex digits).
    pub fn resolve(&self, prefix: &str) -> Result<(String, ObjectId, Record)> {
        if prefix.len() == crate::request::model::ID_LEN {
            if let Some(tip) = self.store.tip(prefix)? {
                let r = self.store.read_record(prefix, tip)?;
                return Ok((prefix.to_owned(), tip, r));
            }
            return Err(Error::NotFound(prefix.to_owned()));
        }
        if prefix.len() < 4 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::NotFound(prefix.to_owned()));
        }
        let matches: Vec<_> = self
            .store
            .list()?
            .into_iter()
            .filter(|(id, _)| id.starts_with(prefix))
            .collect();
        match matches.as_slice() {
            [] => Err(Error::NotFound(prefix.to_owned())),
            [(id, tip)] => Ok((id.clone(), *tip, self.store.read_record(id, *tip)?)),
            many => Err(Error::Ambiguous {
                prefix: prefix.to_owned(),
                candidates: many
                    .iter()
                    .take(5)
                    .map(|(id, _)| id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// [`Queue::resolve`], refusing a request that is not in `status`.
    pub(super) fn resolve_in(
        &self,
        prefix: &str,
        status: Status,
    ) -> Result<(String, ObjectId, Record)> {
        let (id, tip, record) = self.resolve(prefix)?;
        if record.status != status {
            return Err(Error::WrongState {
                id,
                actual: record.status,
                expected: status.as_str().into(),
            });
        }
        Ok((id, tip, record))
    }
}
