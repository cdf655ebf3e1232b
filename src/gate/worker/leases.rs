//! Keeping a worker's leases alive: every request of the batch it holds is renewed (a
//! heartbeat) every third of its lease, at least every 100 ms, from wherever the worker
//! waits — between requests, while checks run, while hooks run — so that a live worker does
//! not lose a lease even at the shortest lease (1s). In remote mode the renewals of one round
//! are published in one push, each with a lease on the remote's tip; a request another
//! machine took meanwhile is lost here like an expired local lease.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use crate::queue::Queue;

/// Renewals come at most this often, whatever the lease.
const FLOOR: Duration = Duration::from_millis(100);

/// How often a lease of `lease` is renewed: a third of it, at least [`FLOOR`].
pub fn renew_every(lease: Duration) -> Duration {
    (lease / 3).max(FLOOR)
}

/// The requests a worker holds leases on, and when they were last renewed.
#[derive(Default)]
pub struct Leases {
    /// (id, how often it is renewed).
    held: RefCell<Vec<(String, Duration)>>,
    last: Cell<Option<Instant>>,
    /// The remote the renewals are pushed to (remote mode).
    pub remote: Option<crate::queue::remote::Remote>,
}

impl Leases {
    /// Hold `ids`, leased (just now) for `lease` each.
    pub fn hold(&self, ids: impl IntoIterator<Item = (String, Duration)>) {
        self.held.borrow_mut().extend(ids);
        if self.last.get().is_none() {
            self.last.set(Some(Instant::now()));
        }
    }

    /// Hold nothing any more (the batch was recorded).
    pub fn clear(&self) {
        self.held.borrow_mut().clear();
        self.last.set(None);
    }

    /// Renew every held lease if a renewal is due. Returns the ids whose lease turned out to
    /// be gone (swept and maybe taken by another worker); they are held no more.
    pub fn renew_if_due(&self, queue: &Queue, worker: &str) -> Vec<String> {
        let every = match self.held.borrow().iter().map(|(_, e)| *e).min() {
            Some(e) => e,
            None => return Vec::new(),
        };
        if self.last.get().is_some_and(|t| t.elapsed() < every) {
            return Vec::new();
        }
        self.last.set(Some(Instant::now()));
        let mut lost = Vec::new();
        let ids: Vec<String> = self
            .held
            .borrow()
            .iter()
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            match queue.heartbeat(&id, worker) {
                Ok(_) => {}
                Err(e) if super::lease_gone(&e) => {
                    tracing::warn!(request_id = %id, worker, error = %e, "lease lost");
                    lost.push(id);
                }
                // A renewal that failed for another reason is tried again at the next one.
                Err(e) => tracing::warn!(request_id = %id, worker, error = %e, "heartbeat failed"),
            }
        }
        if let Some(remote) = &self.remote {
            let renewed: Vec<String> = self
                .held
                .borrow()
                .iter()
                .map(|(id, _)| id.clone())
                .filter(|id| !lost.contains(id))
                .collect();
            let actor = format!("worker:{worker}");
            match crate::queue::remote::publish(queue.store(), remote, &renewed, &actor) {
                Ok(gone) => {
                    for id in gone {
                        tracing::warn!(request_id = %id, worker, "lease lost on the remote");
                        lost.push(id);
                    }
                }
                // Not published: the remote's lease may run out; the landing push finds out.
                Err(e) => tracing::warn!(worker, error = %e, "could not push the heartbeats"),
            }
        }
        if !lost.is_empty() {
            self.held.borrow_mut().retain(|(id, _)| !lost.contains(id));
        }
        lost
    }
}
