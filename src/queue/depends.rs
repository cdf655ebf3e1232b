//! Stacked requests: `depends_on`, resolved at enqueue, and the tree a request is judged
//! against when it builds on requests that have not landed yet.
//!
//! A request's `depends_on` names request ids (full, or a unique prefix of at least 4 hex
//! digits) or task ids. A task id means the newest request of that task: the last one before
//! it in the same submission, else the stored one created last (whatever its status). Each entry
//! resolves to one full id, kept in the record; the request's own `request.json` keeps what
//! was submitted (so its id, the dedupe key, does not depend on the queue's state).
//!
//! This module owns the rules a dependency must follow at enqueue (it exists, is not dead,
//! lands on the same branch, forms no cycle) and the view the request is validated against:
//! the target's tip with every predecessor that has not landed applied in dependency order,
//! by the one apply engine ([`crate::request::apply`]). The policy is always the tip's: a
//! predecessor's changes to the gate count only once they have landed. What the queue does
//! with a waiting or orphaned request at lease time is in [`super::Queue::dequeue_each`].

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::code::Code;
use crate::error::{Problem, Result};
use crate::queue::Queue;
use crate::queue::index::Index;
use crate::request::model::{ChangeRequest, ErrorInfo, Record, Status};
use crate::request::policy::Policy;
use crate::request::target::Target;

/// The dependencies of one submission.
pub struct Plan {
    /// Per request of the submission (by index): the full ids of its predecessors, or why
    /// they cannot be had.
    pub deps: Vec<std::result::Result<Vec<String>, Vec<Problem>>>,
    /// The submission's indexes, each after the requests of the submission it depends on
    /// (submission order otherwise); those in a cycle are left out.
    pub order: Vec<usize>,
}

/// A predecessor as found.
enum Found {
    Batch(usize),
    Stored(String),
}

fn unknown(at: usize, message: String, hint: &'static str) -> Problem {
    Problem::new(Code::RequestDependencyUnknown, message, hint).at(format!("/depends_on/{at}"))
}

impl Queue {
    /// Resolve the `depends_on` of every request of one submission, against the submission
    /// itself and the stored requests, and check what they name (see the module docs).
    pub fn resolve_dependencies(&self, reqs: &[&ChangeRequest]) -> Result<Plan> {
        let ids: Vec<String> = reqs.iter().map(|r| r.id()).collect();
        let mut stored: Option<Vec<Record>> = None;
        let mut stored_records = |q: &Queue| -> Result<Vec<Record>> {
            if stored.is_none() {
                stored = Some(q.list(&super::Filter::default())?);
            }
            Ok(stored.clone().expect("just read"))
        };
        let mut deps = Vec::with_capacity(reqs.len());
        let mut edges: Vec<Vec<usize>> = vec![Vec::new(); reqs.len()];
        for (i, req) in reqs.iter().enumerate() {
            let mut problems = Vec::new();
            let mut resolved: Vec<String> = Vec::new();
            let own_target = Target::of_request(req.target.as_deref(), &self.settings.target);
            for (at, entry) in req.depends_on.iter().enumerate() {
                let found = match self.find_dependency(entry, i, &ids, reqs, &mut stored_records) {
                    Ok(Some(f)) => f,
                    Ok(None) => {
                        problems.push(unknown(
                            at,
                            format!("'{}' names no request id or task id in the queue or in this submission", entry.escape_debug()),
                            "name a request by its id (`git hyperion list` shows them) or by its task id; a predecessor must be enqueued before, or with, the request that builds on it",
                        ));
                        continue;
                    }
                    Err(Error::Refused(p)) => {
                        problems.push(p.at(format!("/depends_on/{at}")));
                        continue;
                    }
                    Err(Error::Failed(e)) => return Err(e),
                };
                let (dep_id, dep_target, dead) = match &found {
                    Found::Batch(j) => (ids[*j].clone(), reqs[*j].target.clone(), None),
                    Found::Stored(id) => {
                        let (_, tip, _) = self.resolve(id)?;
                        let r = self.store.read_record(id, tip)?;
                        let dead =
                            matches!(r.status, Status::Dead | Status::RolledBack).then(|| match &r
                                .error
                            {
                                Some(e) => format!("{} ({})", r.status, e.code),
                                None => r.status.to_string(),
                            });
                        (id.clone(), r.target.clone(), dead)
                    }
                };
                if dep_id == ids[i] {
                    problems.push(
                        Problem::new(
                            Code::RequestDependencyCycle,
                            format!("'{}' names the request itself", entry.escape_debug()),
                            "a request cannot depend on itself; drop the entry",
                        )
                        .at(format!("/depends_on/{at}")),
                    );
                    continue;
                }
                let dep_target = Target::of_request(dep_target.as_deref(), &self.settings.target);
                if let (Ok(a), Ok(b)) = (&own_target, &dep_target)
                    && a != b
                {
                    problems.push(
                        Problem::new(
                            Code::RequestDependencyTarget,
                            format!(
                                "'{}' is request {dep_id}, which lands on {b}; this request lands on {a}",
                                entry.escape_debug()
                            ),
                            "a request can only build on requests for the same branch; drop the entry or submit it for that branch",
                        )
                        .at(format!("/depends_on/{at}")),
                    );
                    continue;
                }
                if let Some(state) = dead {
                    problems.push(
                        Problem::new(
                            Code::RequestDependencyDead,
                            format!(
                                "'{}' is request {dep_id}, which is {state}: it will not land",
                                entry.escape_debug()
                            ),
                            "requeue the predecessor first (`git hyperion requeue ID --reason …`), or build on another request",
                        )
                        .at(format!("/depends_on/{at}")),
                    );
                    continue;
                }
                if let Found::Batch(j) = found {
                    edges[i].push(j);
                }
                if !resolved.contains(&dep_id) {
                    resolved.push(dep_id);
                }
            }
            deps.push(if problems.is_empty() {
                Ok(resolved)
            } else {
                Err(problems)
            });
        }
        // Kahn's algorithm, smallest index first: submission order wherever it is free.
        let mut indegree: Vec<usize> = edges.iter().map(Vec::len).collect();
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); reqs.len()];
        for (i, e) in edges.iter().enumerate() {
            for &j in e {
                dependents[j].push(i);
            }
        }
        let mut ready: BTreeSet<usize> = (0..reqs.len()).filter(|&i| indegree[i] == 0).collect();
        let mut order = Vec::with_capacity(reqs.len());
        while let Some(i) = ready.pop_first() {
            order.push(i);
            for &d in &dependents[i] {
                indegree[d] -= 1;
                if indegree[d] == 0 {
                    ready.insert(d);
                }
            }
        }
        if order.len() < reqs.len() {
            let placed: HashSet<usize> = order.iter().copied().collect();
            let cycle: Vec<&str> = (0..reqs.len())
                .filter(|i| !placed.contains(i))
                .map(|i| ids[i].as_str())
                .collect();
            for i in (0..reqs.len()).filter(|i| !placed.contains(i)) {
                let p = Problem::new(
                    Code::RequestDependencyCycle,
                    format!(
                        "its dependencies go round in a circle through requests {}",
                        cycle.join(", ")
                    ),
                    "requests must depend on earlier work only; drop an entry of `depends_on` to break the cycle",
                )
                .at("/depends_on");
                match &mut deps[i] {
                    Ok(_) => deps[i] = Err(vec![p]),
                    Err(ps) => ps.push(p),
                }
            }
        }
        Ok(Plan { deps, order })
    }

    /// What `entry` of request `own`'s `depends_on` names: a request id or unique prefix (of
    /// the submission or stored), else a task id. `Ok(None)`: nothing.
    fn find_dependency(
        &self,
        entry: &str,
        own: usize,
        ids: &[String],
        reqs: &[&ChangeRequest],
        stored: &mut dyn FnMut(&Queue) -> Result<Vec<Record>>,
    ) -> std::result::Result<Option<Found>, Error> {
        let hex = entry.len() >= 4
            && entry.len() <= crate::request::model::ID_LEN
            && entry
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if hex {
            let mut matches: BTreeSet<&str> = BTreeSet::new();
            let in_batch = |id: &String| id.starts_with(entry);
            matches.extend(ids.iter().filter(|id| in_batch(id)).map(String::as_str));
            let stored_ids: Vec<String> = if entry.len() == crate::request::model::ID_LEN {
                self.store
                    .tip(entry)?
                    .map(|_| entry.to_owned())
                    .into_iter()
                    .collect()
            } else {
                self.store
                    .list()?
                    .into_iter()
                    .map(|(id, _)| id)
                    .filter(|id| id.starts_with(entry))
                    .collect()
            };
            matches.extend(stored_ids.iter().map(String::as_str));
            match matches.len() {
                0 => {}
                1 => {
                    let id = *matches.first().expect("one");
                    return Ok(Some(if stored_ids.iter().any(|s| s == id) {
                        Found::Stored(id.to_owned())
                    } else {
                        Found::Batch(ids.iter().position(|x| x == id).expect("in the batch"))
                    }));
                }
                _ => {
                    let some: Vec<&str> = matches.iter().take(5).copied().collect();
                    return Err(Error::Refused(Problem::new(
                        Code::RequestDependencyUnknown,
                        format!("'{entry}' matches several requests: {}", some.join(", ")),
                        "give more digits of the id",
                    )));
                }
            }
        }
        // A task id: the submission's last request of the task before this one, else the
        // newest stored one.
        if let Some(j) = (0..own)
            .rev()
            .find(|&j| j != own && ids[j] != ids[own] && reqs[j].task_id == entry)
        {
            return Ok(Some(match self.store.tip(&ids[j])? {
                Some(_) => Found::Stored(ids[j].clone()),
                None => Found::Batch(j),
            }));
        }
        let newest = stored(self)?
            .into_iter()
            .filter(|r| r.task_id == entry && r.id != ids[own])
            .max_by_key(|r| (r.created_at, r.id.clone()));
        Ok(newest.map(|r| Found::Stored(r.id)))
    }

    /// The tree each request of a submission is judged against when it has predecessors that
    /// have not landed: its target's tip tree with them applied in dependency order (stored
    /// ones and those of the submission), by the engine and within the tip's policy's limits.
    /// `base_of(i)` gives request `i`'s tip tree and policy (`None`: no target to judge it
    /// on). `None` per request without such predecessors; a problem when a predecessor does
    /// not apply. Each predecessor is applied once, however many requests build on it.
    ///
    /// Objects the engine writes stay in memory: call it inside [`crate::git::pack::scratch`].
    pub fn dependency_bases(
        &self,
        repo: &gix::Repository,
        reqs: &[&ChangeRequest],
        plan: &Plan,
        base_of: &dyn Fn(usize) -> Option<(gix::ObjectId, Policy)>,
    ) -> Result<Vec<Option<Base>>> {
        let ids: Vec<String> = reqs.iter().map(|r| r.id()).collect();
        let by_id: HashMap<&str, usize> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        let mut graph = Graph {
            queue: self,
            reqs,
            plan,
            by_id,
            nodes: HashMap::new(),
            after: HashMap::new(),
        };
        let mut results = vec![None; reqs.len()];
        for &i in &plan.order {
            let Ok(direct) = &plan.deps[i] else { continue };
            if direct.is_empty() {
                continue;
            }
            let Some((tip_tree, policy)) = base_of(i) else {
                continue;
            };
            // Build every predecessor not built yet, each after its own.
            for id in graph.ancestors(direct, true)? {
                let deps = graph.nodes[&id].deps.clone();
                let step = graph
                    .base(repo, &deps, tip_tree, &policy)
                    .and_then(|base| graph.apply(repo, &id, base, &policy));
                graph.after.insert(id, Base::of(step)?);
            }
            results[i] = Some(Base::of(graph.base(repo, direct, tip_tree, &policy))?);
        }
        Ok(results)
    }
}

impl Queue {
    /// The dead letters that died because a request of `ids` (or, in turn, one of them)
    /// died (`request.dependency_dead`), each with the predecessor it died of, predecessors
    /// first: what `requeue` of `ids` brings back with them.
    pub fn orphans_of(&self, ids: &HashSet<String>) -> Result<Vec<(String, String)>> {
        let dead = self.list(&super::Filter {
            status: Some(Status::Dead),
            ..Default::default()
        })?;
        let mut orphans: Vec<&Record> = dead
            .iter()
            .filter(|r| {
                r.dead_class == Some(crate::request::model::DeadClass::Dependency)
                    && !ids.contains(&r.id)
            })
            .collect();
        let mut back: HashSet<String> = ids.clone();
        let mut out = Vec::new();
        loop {
            let before = out.len();
            orphans.retain(|r| match r.depends_on.iter().find(|d| back.contains(*d)) {
                Some(on) => {
                    out.push((r.id.clone(), on.clone()));
                    false
                }
                None => true,
            });
            if out.len() == before {
                break;
            }
            back.extend(out[before..].iter().map(|(id, _)| id.clone()));
        }
        Ok(out)
    }

    /// The predecessors of `r` that have not landed (as `list` and `show` report them in
    /// `waiting_for`): not `applied`, whatever else they are, or gone.
    pub fn waiting_for(&self, r: &Record) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for dep in &r.depends_on {
            let landed = match self.store.tip(dep)? {
                Some(tip) => self.store.read_record(dep, tip)?.status == Status::Applied,
                None => false,
            };
            if !landed {
                out.push(dep.clone());
            }
        }
        Ok(out)
    }
}

/// What [`Queue::dependency_bases`] has met: requests, their predecessors, what is built.
struct Graph<'a> {
    queue: &'a Queue,
    reqs: &'a [&'a ChangeRequest],
    plan: &'a Plan,
    by_id: HashMap<&'a str, usize>,
    nodes: HashMap<String, Node>,
    /// The tree once a request and all its predecessors not landed are applied.
    after: HashMap<String, Base>,
}

struct Node {
    deps: Vec<String>,
    /// On the tip already (`applied`): nothing to apply.
    landed: bool,
    /// Why it cannot be applied: refused itself in this submission, or gone.
    refused: Option<String>,
    batch: Option<usize>,
}

impl Graph<'_> {
    fn meet(&mut self, id: &str) -> Result<()> {
        if self.nodes.contains_key(id) {
            return Ok(());
        }
        let store = self.queue.store();
        let node = match store.tip(id)? {
            Some(tip) => {
                let r = store.read_record(id, tip)?;
                Node {
                    deps: r.depends_on,
                    landed: r.status == Status::Applied,
                    refused: None,
                    batch: None,
                }
            }
            None => match self.by_id.get(id) {
                Some(&j) => Node {
                    deps: self.plan.deps[j].clone().unwrap_or_default(),
                    landed: false,
                    refused: self.plan.deps[j]
                        .is_err()
                        .then(|| format!("predecessor {id} is refused itself")),
                    batch: Some(j),
                },
                None => Node {
                    deps: Vec::new(),
                    landed: false,
                    refused: Some(format!("predecessor {id} is no longer in the queue")),
                    batch: None,
                },
            },
        };
        self.nodes.insert(id.to_owned(), node);
        Ok(())
    }

    /// The predecessors of `from` (and theirs) not landed, each after its own; with
    /// `unbuilt`, only those not built yet (a built one's own are built too).
    fn ancestors(&mut self, from: &[String], unbuilt: bool) -> Result<Vec<String>> {
        let mut topo = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut stack: Vec<(String, bool)> =
            from.iter().rev().map(|d| (d.clone(), false)).collect();
        while let Some((id, expanded)) = stack.pop() {
            if expanded {
                topo.push(id);
                continue;
            }
            if !seen.insert(id.clone()) || (unbuilt && self.after.contains_key(&id)) {
                continue;
            }
            self.meet(&id)?;
            let node = &self.nodes[&id];
            if node.landed {
                continue;
            }
            stack.push((id.clone(), true));
            for d in node.deps.iter().rev() {
                if !seen.contains(d) {
                    stack.push((d.clone(), false));
                }
            }
        }
        Ok(topo)
    }

    /// The tree a request with predecessors `deps` is applied onto: the tip's, that of its
    /// one predecessor not landed, or the tip with all of them applied in order.
    fn base(
        &mut self,
        repo: &gix::Repository,
        deps: &[String],
        tip_tree: gix::ObjectId,
        policy: &Policy,
    ) -> std::result::Result<gix::ObjectId, Error> {
        let open: Vec<&String> = deps.iter().filter(|d| !self.nodes[*d].landed).collect();
        match open.as_slice() {
            [] => Ok(tip_tree),
            [one] => match &self.after[*one] {
                Base::Tree(tree) => Ok(*tree),
                Base::Refused(p) => Err(Error::Refused(p.clone())),
            },
            _ => {
                let mut tree = tip_tree;
                for id in self.ancestors(deps, false)? {
                    tree = self.apply(repo, &id, tree, policy)?;
                }
                Ok(tree)
            }
        }
    }

    /// Request `id` applied onto `tree`.
    fn apply(
        &mut self,
        repo: &gix::Repository,
        id: &str,
        tree: gix::ObjectId,
        policy: &Policy,
    ) -> std::result::Result<gix::ObjectId, Error> {
        let node = &self.nodes[id];
        let hint = "fix or requeue the predecessor, or submit this request once it has landed";
        if let Some(why) = &node.refused {
            return Err(Error::Refused(
                Problem::new(Code::RequestDependencyInvalid, why.clone(), hint).at("/depends_on"),
            ));
        }
        let stored;
        let req = match node.batch {
            Some(j) => self.reqs[j],
            None => {
                stored = self.queue.request(id)?;
                &stored
            }
        };
        match crate::request::apply::apply_request(repo, tree, req, &policy.limits) {
            Ok(a) => Ok(a.tree),
            Err(crate::request::apply::Error::Failed(e)) => Err(Error::Failed(e)),
            Err(crate::request::apply::Error::Refused(refusal)) => Err(Error::Refused(
                Problem::new(
                    Code::RequestDependencyInvalid,
                    format!(
                        "predecessor {id} does not apply onto the target with its own predecessors: {}",
                        refusal.message()
                    ),
                    hint,
                )
                .at("/depends_on"),
            )),
        }
    }
}

/// Why a predecessor could not be found or applied: the request's fault (a problem to report
/// with it) or the environment's (the submission fails).
enum Error {
    Refused(Problem),
    Failed(crate::Error),
}

impl From<crate::Error> for Error {
    fn from(e: crate::Error) -> Self {
        Error::Failed(e)
    }
}

/// The tree a request with predecessors is judged against ([`Queue::dependency_bases`]).
#[derive(Debug, Clone)]
pub enum Base {
    /// The target's tip tree with the predecessors applied.
    Tree(gix::ObjectId),
    /// A predecessor could not be found or applied: the problem the request is refused with.
    Refused(Problem),
}

impl Base {
    /// A step's outcome as the submission keeps it; a failure of the environment ends the
    /// submission.
    fn of(step: std::result::Result<gix::ObjectId, Error>) -> Result<Base> {
        match step {
            Ok(tree) => Ok(Base::Tree(tree)),
            Err(Error::Refused(p)) => Ok(Base::Refused(p)),
            Err(Error::Failed(e)) => Err(e),
        }
    }
}

/// Where a ready request stands with its predecessors, at lease time.
pub enum Readiness {
    /// Every predecessor landed, or is leased before it in this batch.
    Ready,
    /// A predecessor is still to land.
    Waiting,
    /// A predecessor died, was rolled back or is gone: the error it dies with.
    Orphaned(ErrorInfo),
}

/// What one `dequeue` knows of predecessors: those it leased, is leasing, or found dead.
#[derive(Default)]
pub struct Dequeue {
    planned: HashSet<String>,
    leased: HashSet<String>,
    dead: HashSet<String>,
}

impl Dequeue {
    /// Judge `r` (ready by its status and backoff) by its predecessors.
    pub fn judge(&self, queue: &Queue, ix: Option<&Index>, r: &Record) -> Result<Readiness> {
        let mut waiting = false;
        for dep in &r.depends_on {
            if self.planned.contains(dep) || self.leased.contains(dep) {
                continue;
            }
            let found = if self.dead.contains(dep) {
                Some(None)
            } else {
                let record = match ix {
                    Some(ix) => ix.get(queue.store(), dep)?.map(|(_, r)| r),
                    None => match queue.store().tip(dep)? {
                        Some(tip) => Some(queue.store().read_record(dep, tip)?),
                        None => None,
                    },
                };
                record.map(Some)
            };
            let why = match found {
                None => "is no longer in the queue (archived or removed)".to_owned(),
                Some(None) => "died: it depends on a request that died".to_owned(),
                Some(Some(p)) => match p.status {
                    Status::Applied => continue,
                    Status::Dead => match &p.error {
                        Some(e) => format!(
                            "died ({}, {}): {}",
                            p.dead_class.map(|c| c.as_str()).unwrap_or("?"),
                            e.code,
                            e.message
                        ),
                        None => "died".to_owned(),
                    },
                    Status::RolledBack => "was rolled back".to_owned(),
                    _ => {
                        waiting = true;
                        continue;
                    }
                },
            };
            return Ok(Readiness::Orphaned(ErrorInfo {
                code: Code::RequestDependencyDead.as_str().into(),
                message: format!("predecessor {dep} {why}"),
            }));
        }
        Ok(if waiting {
            Readiness::Waiting
        } else {
            Readiness::Ready
        })
    }

    /// `id` is about to be leased in this call.
    pub fn plan(&mut self, id: &str) {
        self.planned.insert(id.to_owned());
    }

    /// `id` was leased in this call.
    pub fn leased(&mut self, id: &str) {
        self.leased.insert(id.to_owned());
    }

    /// `id` is dying in this call: its dependents die too.
    pub fn dead(&mut self, id: &str) {
        self.dead.insert(id.to_owned());
    }

    /// Whether `r`, prepared, may be leased: no predecessor of this call lost its lease.
    pub fn may_lease(&self, r: &Record) -> bool {
        r.depends_on
            .iter()
            .all(|d| !self.planned.contains(d) || self.leased.contains(d))
    }
}
