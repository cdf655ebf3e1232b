//! Property test of the queue state machine: random interleavings of every queue operation
//! from several workers (separate queue handles on one repository, as separate processes
//! have) are checked step by step against a model. Never two owners, never an illegal
//! transition, never a request in two states or lost, and leases handed out strictly by
//! priority then first in, first out.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use hyperion::Error;
use hyperion::queue::settings::Settings;
use hyperion::queue::store::Store;
use hyperion::queue::{Outcome, Queue};
use hyperion::request::model::{ChangeRequest, DeadClass, ErrorInfo, Status};
use proptest::prelude::*;

const WORKERS: usize = 3;
// Odd, while every clock move is even: no expiry falls on the instant of a check.
const LEASE_SECS: i64 = 31;
const MAX_ATTEMPTS: u32 = 3;

#[derive(Debug, Clone)]
enum Op {
    Enqueue(usize),
    Dequeue {
        w: usize,
        batch: usize,
    },
    Heartbeat {
        w: usize,
        pick: usize,
    },
    Release {
        w: usize,
        pick: usize,
    },
    Land {
        w: usize,
        pick: usize,
    },
    Fail {
        w: usize,
        pick: usize,
        transient: bool,
    },
    Sweep {
        w: usize,
    },
    Requeue {
        pick: usize,
    },
    Travel(i64),
    Close {
        w: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let w = 0..WORKERS;
    prop_oneof![
        3 => (0..8usize).prop_map(Op::Enqueue),
        3 => (w.clone(), 1..4usize).prop_map(|(w, batch)| Op::Dequeue { w, batch }),
        1 => (w.clone(), any::<usize>()).prop_map(|(w, pick)| Op::Heartbeat { w, pick }),
        1 => (w.clone(), any::<usize>()).prop_map(|(w, pick)| Op::Release { w, pick }),
        2 => (w.clone(), any::<usize>()).prop_map(|(w, pick)| Op::Land { w, pick }),
        2 => (w.clone(), any::<usize>(), any::<bool>()).prop_map(|(w, pick, transient)| Op::Fail { w, pick, transient }),
        1 => w.clone().prop_map(|w| Op::Sweep { w }),
        1 => any::<usize>().prop_map(|pick| Op::Requeue { pick }),
        1 => (0..25i64).prop_map(|n| Op::Travel(2 * n)),
        1 => w.prop_map(|w| Op::Close { w }),
    ]
}

#[derive(Debug, Clone, PartialEq)]
struct M {
    status: Status,
    owner: Option<String>,
    attempts: u32,
    dead_class: Option<DeadClass>,
    priority: u8,
    seq: usize,
    leased_until: i64,
}

fn req(k: usize) -> ChangeRequest {
    let mut v = common::request(k, "model");
    v["priority"] = ((k * 7) % 10).into();
    hyperion::request::validate::validate_value(&v).unwrap()
}

struct World {
    repo: common::TestRepo,
    queues: Vec<Queue>,
    model: BTreeMap<String, M>,
    now: i64,
    seq: usize,
}

impl World {
    fn new() -> World {
        let repo = common::TestRepo::new();
        let settings = Settings {
            lease: Duration::from_secs(LEASE_SECS as u64),
            max_attempts: MAX_ATTEMPTS,
            retry_backoff: Duration::ZERO,
            index_wait: Duration::from_millis(5),
            ..Settings::default()
        };
        let queues = (0..WORKERS)
            .map(|_| Queue::with_settings(Store::discover(repo.path()).unwrap(), settings.clone()))
            .collect();
        World {
            repo,
            queues,
            model: BTreeMap::new(),
            now: 0,
            seq: 0,
        }
    }

    fn pick(&self, pick: usize) -> Option<String> {
        if self.model.is_empty() {
            return None;
        }
        self.model.keys().nth(pick % self.model.len()).cloned()
    }

    /// Which error a worker's lease operation must get, if any.
    fn lease_check(&self, id: &str, worker: &str) -> Result<(), &'static str> {
        let m = &self.model[id];
        if m.status != Status::Leased {
            return Err("queue.wrong_state");
        }
        if m.owner.as_deref() != Some(worker) {
            return Err("queue.not_owner");
        }
        Ok(())
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Enqueue(k) => {
                let r = req(k);
                let out = self.queues[0]
                    .enqueue(std::slice::from_ref(&r), "model")
                    .unwrap();
                let known = self.model.contains_key(&r.id());
                assert_eq!(out[0].created, !known, "duplicate detection");
                if !known {
                    self.seq += 1;
                    self.model.insert(
                        r.id(),
                        M {
                            status: Status::Pending,
                            owner: None,
                            attempts: 0,
                            dead_class: None,
                            priority: r.priority,
                            seq: self.seq,
                            leased_until: 0,
                        },
                    );
                }
            }
            Op::Dequeue { w, batch } => {
                let worker = format!("w{w}");
                let mut ready: Vec<(&String, &M)> = self
                    .model
                    .iter()
                    .filter(|(_, m)| m.status == Status::Pending)
                    .collect();
                ready.sort_by_key(|(_, m)| (9 - m.priority, m.seq));
                let expected: Vec<String> = ready
                    .iter()
                    .take(batch)
                    .map(|(id, _)| (*id).clone())
                    .collect();
                let got: Vec<String> = self.queues[w]
                    .dequeue(&worker, batch, None)
                    .unwrap()
                    .into_iter()
                    .map(|r| r.id)
                    .collect();
                assert_eq!(
                    got, expected,
                    "leases go by priority, then first in, first out"
                );
                for id in got {
                    let m = self.model.get_mut(&id).unwrap();
                    m.status = Status::Leased;
                    m.owner = Some(worker.clone());
                    m.attempts += 1;
                    m.leased_until = self.now + LEASE_SECS;
                }
            }
            Op::Heartbeat { w, pick }
            | Op::Release { w, pick }
            | Op::Land { w, pick }
            | Op::Fail { w, pick, .. } => {
                let Some(id) = self.pick(pick) else { return };
                let worker = format!("w{w}");
                let q = &self.queues[w];
                // A landing names a real commit on the target, carrying the request's trailer.
                let landed =
                    if matches!(op, Op::Land { .. }) && self.lease_check(&id, &worker).is_ok() {
                        self.repo.landing(&id)
                    } else {
                        "0".repeat(40)
                    };
                let result = match *op {
                    Op::Heartbeat { .. } => q.heartbeat(&id, &worker),
                    Op::Release { .. } => q.release(&id, &worker),
                    Op::Land { .. } => q.complete(
                        &id,
                        &worker,
                        Outcome::Applied {
                            commit: landed,
                            artifacts: Vec::new(),
                        },
                    ),
                    Op::Fail { transient, .. } => q.complete(
                        &id,
                        &worker,
                        Outcome::Failed {
                            class: DeadClass::Check,
                            error: ErrorInfo {
                                code: "check.failed".into(),
                                message: "model".into(),
                            },
                            transient,
                            artifacts: vec![],
                        },
                    ),
                    _ => unreachable!(),
                };
                match (self.lease_check(&id, &worker), result) {
                    (Err(code), Err(e)) => assert_eq!(e.code(), code, "{op:?}: {e}"),
                    (Err(code), Ok(r)) => {
                        panic!("{op:?} succeeded but must fail with {code}: {r:?}")
                    }
                    (Ok(()), Err(e)) => panic!("{op:?} failed: {e}"),
                    (Ok(()), Ok(_)) => {
                        let now = self.now;
                        let m = self.model.get_mut(&id).unwrap();
                        match *op {
                            Op::Heartbeat { .. } => m.leased_until = now + LEASE_SECS,
                            Op::Release { .. } => {
                                m.status = Status::Pending;
                                m.owner = None;
                                m.attempts -= 1;
                            }
                            Op::Land { .. } => {
                                m.status = Status::Applied;
                                m.owner = None;
                            }
                            Op::Fail { transient, .. } => {
                                m.owner = None;
                                if transient && m.attempts < MAX_ATTEMPTS {
                                    m.status = Status::Pending;
                                } else {
                                    m.status = Status::Dead;
                                    m.dead_class = Some(DeadClass::Check);
                                }
                            }
                            _ => unreachable!(),
                        }
                    }
                }
            }
            Op::Sweep { w } => {
                let swept = self.queues[w].sweep().unwrap();
                let mut expected_requeued = Vec::new();
                let mut expected_dead = Vec::new();
                for (id, m) in self.model.iter_mut() {
                    if m.status == Status::Leased && m.leased_until < self.now {
                        m.owner = None;
                        if m.attempts >= MAX_ATTEMPTS {
                            m.status = Status::Dead;
                            m.dead_class = Some(DeadClass::Lease);
                            expected_dead.push(id.clone());
                        } else {
                            m.status = Status::Pending;
                            expected_requeued.push(id.clone());
                        }
                    }
                }
                let (mut r, mut d) = (swept.requeued, swept.dead);
                r.sort();
                d.sort();
                assert_eq!((r, d), (expected_requeued, expected_dead), "sweep");
                assert!(swept.skipped.is_empty());
            }
            Op::Requeue { pick } => {
                let Some(id) = self.pick(pick) else { return };
                let result = self.queues[0].requeue(std::slice::from_ref(&id), "model", "model");
                let m = self.model.get_mut(&id).unwrap();
                if m.status == Status::Dead {
                    result.unwrap();
                    m.status = Status::Pending;
                    m.attempts = 0;
                    m.dead_class = None;
                } else {
                    assert!(
                        matches!(result, Err(Error::WrongState { .. })),
                        "{result:?}"
                    );
                }
            }
            Op::Travel(secs) => {
                self.now += secs;
                for q in &self.queues {
                    q.travel(jiff::SignedDuration::from_secs(secs));
                }
            }
            Op::Close { w } => self.queues[w].close_index(),
        }
    }

    /// The refs say exactly what the model says.
    fn check(&self) {
        let store = self.queues[0].store();
        let refs = store.list().unwrap();
        let ids: Vec<&String> = refs.iter().map(|(id, _)| id).collect();
        let model_ids: Vec<&String> = self.model.keys().collect();
        assert_eq!(ids, model_ids, "every request exists once, none is lost");
        for (id, tip) in &refs {
            let r = store.read_record(id, *tip).unwrap();
            let m = &self.model[id];
            assert_eq!(
                (r.status, &r.lease_owner, r.attempts, r.dead_class),
                (m.status, &m.owner, m.attempts, m.dead_class),
                "{id}"
            );
            assert_eq!(r.lease_owner.is_some(), r.status == Status::Leased);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_interleavings_keep_the_queue_consistent(ops in proptest::collection::vec(op(), 1..40)) {
        let mut world = World::new();
        for op in &ops {
            world.apply(op);
            world.check();
        }
        // Every chain is a sequence of legal transitions ending in its record.
        for q in &world.queues {
            q.close_index();
        }
        let d = hyperion::gate::verify::doctor(&world.queues[1], false, false).unwrap();
        let broken: Vec<_> = d.findings.iter().filter(|f| f.code != "lease.expired").collect();
        prop_assert!(broken.is_empty(), "{broken:?}");
        // A handle that found the index busy wrote to the refs only; the index may lag
        // (doctor reports the drift) and one reconciliation brings it level.
        let again = hyperion::gate::verify::doctor(&world.queues[2], false, false).unwrap();
        prop_assert_eq!(again.index_drift, 0, "reconciled index agrees with the refs");
    }
}
