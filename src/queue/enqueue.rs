//! Storing requests: the checks a request passes before it is stored (its targets, the tips it
//! is made on, its tiers), and `enqueue` itself, a chunk of requests at a time.

use serde::Serialize;

use crate::code::Code;
use crate::error::{Error, Result};
use crate::queue::store::Created;
use crate::request::model::{Action, ChangeRequest, Event, Record, Status};
use crate::request::target::{Target, Tip};

use super::Queue;
use super::depends::Base;

/// What enqueue did with one request.
#[derive(Debug, Clone, Serialize)]
pub struct Enqueued {
    pub id: String,
    /// `false` when an identical submission was already stored.
    pub created: bool,
    pub record: Record,
}

/// A request refused, named by its id and its title (redacted: a title is the agent's text).
fn rejected(req: &ChangeRequest, problems: Vec<crate::Problem>) -> Error {
    Error::Rejected {
        source_name: format!(
            "{} ({})",
            req.id(),
            crate::request::secrets::redact(&req.title)
        ),
        problems,
    }
}

impl Queue {
    /// Problems of each request against the branch it lands on, one list per request: the
    /// target must be an existing branch ([`Target`]), and the request must pass
    /// [`crate::request::validate::against_target`] with that branch's tree and the policy of its tip —
    /// never a policy the request brings. An invalid policy file fails the whole call
    /// (`policy.invalid`).
    ///
    /// A request stored already (its id has a ref) has no problem here: submitting it again
    /// stores nothing ([`Queue::enqueue`]), whatever became of it — once it landed, its patch
    /// no longer applies to the target, and the duplicate is still not an error. The id is
    /// derived from the whole content, so nothing unchecked gets in this way.
    pub fn check_against_targets(
        &self,
        reqs: &[&ChangeRequest],
    ) -> Result<Vec<Vec<crate::Problem>>> {
        let mut stored = Vec::with_capacity(reqs.len());
        for req in reqs {
            stored.push(self.store.tip(&req.id())?.is_some());
        }
        let new: Vec<&ChangeRequest> = reqs
            .iter()
            .zip(&stored)
            .filter(|(_, stored)| !**stored)
            .map(|(req, _)| *req)
            .collect();
        let mut checked = self.check_against_tips(&new, &|_| None, None)?.into_iter();
        Ok(stored
            .into_iter()
            .map(|stored| match stored {
                true => Vec::new(),
                false => checked
                    .next()
                    .expect("one list of problems per new request"),
            })
            .collect())
    }

    /// [`Queue::check_against_targets`] with some branches elsewhere than their refs say:
    /// `moved(target)` is `Some(tip)` for a branch a push about to be taken moves (`Some(None)`
    /// when it deletes it).
    ///
    /// `objects` reads the objects instead of this repository when given: during a push,
    /// the pushed branch's commits sit in git's quarantine, which a view over it sees
    /// (see `verify::quarantine_view`).
    pub fn check_against_tips(
        &self,
        reqs: &[&ChangeRequest],
        moved: &dyn Fn(&Target) -> Option<Option<gix::ObjectId>>,
        objects: Option<&gix::Repository>,
    ) -> Result<Vec<Vec<crate::Problem>>> {
        let refs = self.store.repo();
        let repo = objects.unwrap_or(refs);
        let mut tips: std::collections::HashMap<
            Target,
            std::result::Result<(Tip, crate::request::policy::Policy), crate::Problem>,
        > = std::collections::HashMap::new();
        // A request refused for its target is not judged by any branch's policy; what it
        // would store is still scanned for secrets, with the built-in rules.
        let refused = |req: &ChangeRequest, p: crate::Problem| {
            let mut problems = vec![p];
            problems.extend(
                crate::request::validate::check_policy(
                    req,
                    &crate::request::policy::Policy::default(),
                    None,
                )
                .into_iter()
                .filter(|p| p.code == Code::SecretDetected),
            );
            problems
        };
        let mut targets = Vec::with_capacity(reqs.len());
        for req in reqs {
            let target = match Target::of_request(req.target.as_deref(), &self.settings.target) {
                Ok(t) => t,
                Err(p) => {
                    targets.push(Err(p));
                    continue;
                }
            };
            if !tips.contains_key(&target) {
                let tip = match moved(&target) {
                    Some(tip) => tip,
                    None => target.tip(refs)?,
                };
                let resolved = match target.resolve_at(repo, tip) {
                    Ok(tip) => {
                        let policy = tip.policy(repo)?;
                        Ok((tip, policy))
                    }
                    Err(e) => Err(e.refusal()?),
                };
                tips.insert(target.clone(), resolved);
            }
            targets.push(Ok(target));
        }
        // Stacked requests are judged on top of their predecessors (`queue::depends`): the
        // trees built for that are looked at, never written.
        let plan = match reqs.iter().any(|r| !r.depends_on.is_empty()) {
            true => Some(self.resolve_dependencies(reqs)?),
            false => None,
        };
        crate::git::pack::scratch(repo, || {
            let bases = match &plan {
                Some(plan) => self.dependency_bases(repo, reqs, plan, &|i| match targets[i]
                    .as_ref()
                    .ok()
                    .map(|t| &tips[t])
                {
                    Some(Ok((tip, policy))) => Some((tip.tree, policy.clone())),
                    _ => None,
                })?,
                None => vec![None; reqs.len()],
            };
            let mut out = Vec::with_capacity(reqs.len());
            for (i, req) in reqs.iter().enumerate() {
                let target = match &targets[i] {
                    Ok(t) => t,
                    Err(p) => {
                        out.push(refused(req, p.clone()));
                        continue;
                    }
                };
                // A request's own changes are always judged in full; a dependency problem
                // leaves only the tree to judge them against unknown.
                let own = |policy| crate::request::validate::check_policy(req, policy, None);
                out.push(match &tips[target] {
                    Ok((tip, policy)) => match (plan.as_ref().map(|p| &p.deps[i]), &bases[i]) {
                        (Some(Err(problems)), _) => {
                            let mut all = problems.clone();
                            all.extend(own(policy));
                            all
                        }
                        (_, Some(Base::Refused(problem))) => {
                            let mut all = vec![problem.clone()];
                            all.extend(own(policy));
                            all
                        }
                        (_, Some(Base::Tree(base))) => {
                            crate::request::validate::against_target(repo, req, Some(*base), policy)
                        }
                        (_, None) => crate::request::validate::against_target(
                            repo,
                            req,
                            Some(tip.tree),
                            policy,
                        ),
                    },
                    Err(p) if req.target.is_some() => refused(req, p.clone().at("/target")),
                    Err(p) => refused(req, p.clone()),
                });
            }
            Ok(out)
        })
    }

    /// The risk tiers of each request (see [`crate::request::tiers`]), judged by its target's policy
    /// and tree as they are now, one assessment per request. A request whose target is not
    /// an existing branch is refused (`target.*`).
    pub fn assess(
        &self,
        reqs: &[&ChangeRequest],
    ) -> Result<Vec<crate::request::tiers::Assessment>> {
        let repo = self.store.repo();
        let local = self.local_gate();
        let refused = |req: &ChangeRequest, p: crate::Problem| rejected(req, vec![p]);
        let mut gates: std::collections::HashMap<Target, (Tip, crate::request::tiers::Rules)> =
            std::collections::HashMap::new();
        let mut out = Vec::with_capacity(reqs.len());
        for req in reqs {
            let target = Target::of_request(req.target.as_deref(), &self.settings.target)
                .map_err(|p| refused(req, p))?;
            if !gates.contains_key(&target) {
                let tip = match target.resolve(repo) {
                    Ok(tip) => tip,
                    Err(e) => return Err(refused(req, e.refusal()?)),
                };
                let policy = tip.policy(repo)?;
                let view = crate::request::view::CachedTree::at(repo, tip.tree);
                let rules = crate::request::tiers::Rules::new(&policy, &local, Some(&view));
                gates.insert(target.clone(), (tip, rules));
            }
            let (tip, rules) = &gates[&target];
            let view = crate::request::view::CachedTree::at(repo, tip.tree);
            out.push(rules.assess(req, Some(&view)));
        }
        Ok(out)
    }

    /// Accept validated requests. All are checked for storage in one pass; an identical
    /// submission is not stored twice and is reported with `created: false`.
    pub fn enqueue(&self, requests: &[ChangeRequest], actor: &str) -> Result<Vec<Enqueued>> {
        self.enqueue_with(requests, actor, false)
    }

    /// [`Queue::enqueue`]; a request whose id gc archived (and that was not restored) is
    /// refused (`request.archived`) unless `force`, which stores a new chain under the id.
    pub fn enqueue_with(
        &self,
        requests: &[ChangeRequest],
        actor: &str,
        force: bool,
    ) -> Result<Vec<Enqueued>> {
        let mut out = Vec::with_capacity(requests.len());
        self.enqueue_each(requests, actor, force, |e| out.push(e))?;
        Ok(out)
    }

    /// [`Queue::enqueue_with`], handing each request's outcome to `each` once its ref exists.
    /// Every request is checked before anything is written; then they are stored a chunk at a
    /// time ([`crate::queue::store::chunk`]: one pack, its refs, its index entries), so that memory
    /// holds one chunk's objects. When a chunk fails part-way, the error
    /// ([`Error::Incomplete`]) lists as stored every request of the earlier chunks too, and
    /// as not stored those of the later ones that are not in the queue.
    pub fn enqueue_each(
        &self,
        requests: &[ChangeRequest],
        actor: &str,
        force: bool,
        each: impl FnMut(Enqueued),
    ) -> Result<usize> {
        if !force {
            self.refuse_archived(requests)?;
        }
        // Refuse the whole batch, before writing anything, if one does not fit its target.
        let all: Vec<&ChangeRequest> = requests.iter().collect();
        for (req, problems) in requests.iter().zip(self.check_against_targets(&all)?) {
            if !problems.is_empty() {
                return Err(rejected(req, problems));
            }
        }
        drop(all);
        self.enqueue_checked(requests, actor, each)
    }

    /// Store `requests` that passed [`Queue::check_against_targets`] (and, unless forced,
    /// the refusal of archived ids) as [`Queue::enqueue_each`] stores them, without checking
    /// them again: for a caller that checked them itself, to report every problem of a
    /// submission at once (the CLI). A request that lands is validated again by the worker
    /// in any case.
    pub fn enqueue_checked(
        &self,
        requests: &[ChangeRequest],
        actor: &str,
        each: impl FnMut(Enqueued),
    ) -> Result<usize> {
        let all: Vec<&ChangeRequest> = requests.iter().collect();
        // Predecessors are stored before the requests that build on them, so that they are
        // also ahead of them in the queue.
        let ordered: Vec<ChangeRequest>;
        let requests = match all.iter().any(|r| !r.depends_on.is_empty()) {
            true => {
                let plan = self.resolve_dependencies(&all)?;
                ordered = plan.order.iter().map(|&i| requests[i].clone()).collect();
                &ordered[..]
            }
            false => requests,
        };
        drop(all);
        let ids: Vec<String> = requests.iter().map(ChangeRequest::id).collect();
        let chunks = requests
            .chunks(crate::queue::store::chunk())
            .map(|c| Ok(c.to_vec()));
        self.store_checked(chunks, &ids, actor, each)
    }

    /// Store requests already checked as [`Queue::enqueue_each`] checks them, a chunk at a
    /// time as `chunks` yields them (`enqueue` of a large directory checks every request
    /// first, then reads them again a chunk at a time, so that it never holds them all);
    /// `ids` are the ids of all of them, in order. When a chunk fails part-way (or cannot be
    /// had), the error ([`Error::Incomplete`]) lists as stored every request of the earlier
    /// chunks too, and as not stored those of the later ones that are not in the queue.
    pub fn store_checked(
        &self,
        chunks: impl Iterator<Item = Result<Vec<ChangeRequest>>>,
        ids: &[String],
        actor: &str,
        mut each: impl FnMut(Enqueued),
    ) -> Result<usize> {
        let mut done = 0;
        let mut stored_before: Vec<String> = Vec::new();
        for (n, chunk) in chunks.enumerate() {
            if n == 1 {
                crate::git::os::pause_point("enqueue.chunk_stored");
            }
            let stored = match chunk.and_then(|c| {
                let len = c.len();
                self.enqueue_chunk(&c, actor, &mut each)
                    .map(|ids| (ids, len))
            }) {
                Ok((ids, len)) => {
                    done += len;
                    ids
                }
                // Nothing of this command is in the queue.
                Err(e) if n == 0 && !matches!(e, Error::Incomplete { .. }) => return Err(e),
                // Some is: say exactly what, with this chunk's part and the rest.
                Err(e) => {
                    let (mut stored, mut not_stored, cause) = match e {
                        Error::Incomplete {
                            stored,
                            not_stored,
                            cause,
                        } => (stored, not_stored, cause),
                        other => (Vec::new(), Vec::new(), Box::new(other)),
                    };
                    stored_before.append(&mut stored);
                    let mut seen = std::collections::HashSet::new();
                    stored_before.retain(|id| seen.insert(id.clone()));
                    seen.extend(not_stored.iter().cloned());
                    // This chunk's requests that it did not decide on, and every later one.
                    for id in &ids[done.min(ids.len())..] {
                        if !seen.insert(id.clone()) {
                            continue;
                        }
                        if self.store.tip(id)?.is_some() {
                            stored_before.push(id.clone());
                        } else {
                            not_stored.push(id.clone());
                        }
                    }
                    return Err(Error::Incomplete {
                        stored: stored_before,
                        not_stored,
                        cause,
                    });
                }
            };
            stored_before.extend(stored);
        }
        Ok(done)
    }

    /// Store one chunk of checked requests ([`Queue::enqueue_each`]); returns their ids, each
    /// once, in order.
    fn enqueue_chunk(
        &self,
        requests: &[ChangeRequest],
        actor: &str,
        each: &mut impl FnMut(Enqueued),
    ) -> Result<Vec<String>> {
        // A request whose risk tier needs a person waits for one, out of the ready queue.
        let all: Vec<&ChangeRequest> = requests.iter().collect();
        let assessments = self.assess(&all)?;
        // The predecessors each depends on, as full ids: of this chunk or stored before.
        let depends: Vec<Vec<String>> = match all.iter().any(|r| !r.depends_on.is_empty()) {
            true => {
                let plan = self.resolve_dependencies(&all)?;
                let mut depends = Vec::with_capacity(requests.len());
                for (req, deps) in requests.iter().zip(plan.deps) {
                    match deps {
                        Ok(d) => depends.push(d),
                        Err(problems) => {
                            return Err(rejected(req, problems));
                        }
                    }
                }
                depends
            }
            false => vec![Vec::new(); requests.len()],
        };
        let mut ix = self.index()?;
        let prepared: Vec<(Record, Event)> = requests
            .iter()
            .zip(&assessments)
            .zip(depends)
            .map(|((req, assessment), depends_on)| {
                let now = self.now();
                let mut record = Record::new(req, now);
                record.depends_on = depends_on;
                // The actor is stored in the chain's first commit and its reflog, like every
                // actor: redacted.
                let mut event = Event::new(
                    Action::Enqueue,
                    None,
                    Status::Pending,
                    crate::request::secrets::redact(actor),
                    now,
                );
                if assessment.needs_approval() {
                    record.status = Status::AwaitingApproval;
                    record.approval_tiers = assessment.approval_tiers();
                    event.to = Status::AwaitingApproval;
                    event.reason = Some(format!("needs approval: {}", assessment.summary()));
                }
                (record, event)
            })
            .collect();
        // All objects first (one pack when there are more than a few), then the refs.
        let items: Vec<_> = requests
            .iter()
            .zip(&prepared)
            .map(|(req, (record, event))| (req, record, event))
            .collect();
        let created = self.store.create_many(&items);
        let created = match created {
            Ok(c) => c,
            Err(e) => {
                self.done(ix)?;
                return Err(e);
            }
        };
        let mut ids: Vec<String> = Vec::with_capacity(requests.len());
        let mut seen = std::collections::HashSet::with_capacity(requests.len());
        for ((record, _), result) in prepared.into_iter().zip(created) {
            if seen.insert(record.id.clone()) {
                ids.push(record.id.clone());
            }
            match result {
                Created::New(tip) => {
                    tracing::info!(request_id = %record.id, task_id = %record.task_id, "enqueued");
                    if let Some(ix) = ix.as_mut() {
                        ix.put(tip, &record)?;
                    }
                    each(Enqueued {
                        id: record.id.clone(),
                        created: true,
                        record,
                    });
                }
                Created::Existing(tip) => {
                    let existing = self.store.read_record(&record.id, tip)?;
                    tracing::info!(request_id = %record.id, task_id = %record.task_id, "duplicate submission");
                    each(Enqueued {
                        id: record.id.clone(),
                        created: false,
                        record: existing,
                    });
                }
            }
        }
        if let Some(ix) = ix.as_mut() {
            ix.spill();
        }
        self.done(ix)?;
        Ok(ids)
    }

    /// Refuse requests whose id gc archived and whose ref is gone: a new chain under the id
    /// would make the archived one impossible to restore.
    fn refuse_archived(&self, requests: &[ChangeRequest]) -> Result<()> {
        let problems: Vec<_> = self
            .archived_problems(requests)?
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        if problems.is_empty() {
            return Ok(());
        }
        Err(Error::Rejected {
            source_name: format!("{} archived request(s)", problems.len()),
            problems,
        })
    }

    /// A `request.archived` problem for each of `requests` (by index) whose id gc archived
    /// and whose ref is gone, with the command that restores it.
    pub fn archived_problems(
        &self,
        requests: &[ChangeRequest],
    ) -> Result<Vec<(usize, crate::error::Problem)>> {
        let ids: Vec<String> = requests.iter().map(|r| r.id()).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let dir = self.store.hyperion_dir().join("archive");
        let found = crate::queue::archive::archived(&dir, &refs)?;
        let mut problems = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            if let Some(bundle) = found.get(id)
                && self.store.tip(id)?.is_none()
            {
                let b = bundle.display();
                problems.push((i, crate::error::Problem::new(
                    Code::RequestArchived,
                    format!("request {id} was archived by gc into {b}"),
                    format!(
                        "restore it with `git fetch {b} refs/hyperion/requests/{id}:refs/hyperion/requests/{id}`; or submit it with --force to store a new chain (the archived one can then not be restored under this id)"
                    ),
                )));
            }
        }
        Ok(problems)
    }
}
