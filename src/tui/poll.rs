//! `top`'s data poller: a thread of its own that reads the queue at the refresh rate and
//! inspects the requests the user opens, and sends what it read over a channel. The thread
//! that draws never waits on git: it takes what has arrived and goes on.
//!
//! Reads go through the one way of each: [`Queue::list`] (the index, or the refs when the
//! index cannot be had, as `list` reads) and [`inspect`]. Between polls the thread lets go of
//! the derived index ([`Queue::close_index`]) so a worker running beside it is not kept
//! waiting for it.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use crate::gate::inspect::{Inspection, inspect};
use crate::queue::store::Store;
use crate::queue::{Filter, Queue};
use crate::request::model::Record;

/// Fetching the queue from the remote it is shared through (remote mode), before the polls
/// that are due for it: `top` then shows what every machine did, not this clone's alone.
#[derive(Debug, Clone)]
pub struct Fetching {
    pub remote: crate::queue::remote::Remote,
    /// At most this often.
    pub every: Duration,
    /// Who the fetch's ref updates are logged as.
    pub actor: String,
}

/// What the poller sends.
#[derive(Debug)]
pub enum Msg {
    /// A fetch from `remote` ended: when, or why it failed (or what it left out).
    Fetched {
        remote: String,
        outcome: Result<jiff::Timestamp, String>,
    },
    /// Every request, as `list` reads them, and when.
    Snapshot {
        records: Vec<Record>,
        at: jiff::Timestamp,
    },
    /// A poll failed (the message, as the library said it).
    Failed(String),
    /// The answer to [`Ask::Inspect`].
    Inspected {
        id: String,
        found: Result<Box<Inspection>, String>,
    },
}

/// What the poller is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// Poll at this rate from now on.
    Refresh(Duration),
    /// Poll now.
    Now,
    /// Inspect this request.
    Inspect(String),
}

/// The poller thread's handle. Dropping it stops the thread at its next wait (a read under
/// way finishes first; nothing waits for it).
pub struct Poller {
    ask: Sender<Ask>,
    /// What the poller read, in order.
    pub rx: Receiver<Msg>,
}

impl Poller {
    /// Start polling the queue of the repository at `dir` every `every`, beginning now, and
    /// fetching it first when `fetching` says so.
    pub fn spawn(
        dir: PathBuf,
        every: Duration,
        fetching: Option<Fetching>,
    ) -> std::io::Result<Poller> {
        let (ask, asked) = mpsc::channel();
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("top-poller".to_owned())
            .spawn(move || run(dir, every, fetching, asked, tx))?;
        Ok(Poller { ask, rx })
    }

    /// Ask the poller something; the answer comes on [`Poller::rx`].
    pub fn ask(&self, a: Ask) {
        // A poller gone (it could not open the repository) has said why on `rx` already.
        let _ = self.ask.send(a);
    }
}

fn run(
    dir: PathBuf,
    mut every: Duration,
    fetching: Option<Fetching>,
    asked: Receiver<Ask>,
    tx: Sender<Msg>,
) {
    let queue = match Store::discover(&dir).and_then(Queue::open) {
        Ok(q) => q,
        Err(e) => {
            let _ = tx.send(Msg::Failed(e.to_string()));
            return;
        }
    };
    let mut fetched: Option<Instant> = None;
    loop {
        if let Some(f) = &fetching
            && fetched.is_none_or(|t| t.elapsed() >= f.every)
        {
            fetched = Some(Instant::now());
            if tx.send(fetch(&queue, f)).is_err() {
                return;
            }
        }
        if tx.send(poll(&queue)).is_err() {
            return;
        }
        let mut next = Instant::now() + every;
        loop {
            let wait = next.saturating_duration_since(Instant::now());
            match asked.recv_timeout(wait) {
                Ok(Ask::Refresh(d)) => {
                    every = d;
                    next = next.min(Instant::now() + d);
                }
                Ok(Ask::Now) | Err(RecvTimeoutError::Timeout) => break,
                Ok(Ask::Inspect(id)) => {
                    let found = inspect(&queue, &id)
                        .map(Box::new)
                        .map_err(|e| e.to_string());
                    queue.close_index();
                    if tx.send(Msg::Inspected { id, found }).is_err() {
                        return;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

/// One fetch of the queue from the remote ([`crate::queue::remote::fetch`], as `git hyperion
/// fetch` does it): when it ended, or why it failed; chains or notes it left out (forged
/// where the host runs no hook) are reported as a failure, the rest having been taken in.
pub fn fetch(queue: &Queue, f: &Fetching) -> Msg {
    let outcome = match crate::queue::remote::fetch(queue.store(), &f.remote, &f.actor) {
        Ok(got) if got.refused.is_empty() && got.notes_refused.is_empty() => {
            Ok(got.at.unwrap_or_else(jiff::Timestamp::now))
        }
        Ok(got) => Err(format!(
            "left out {} chain(s){} hyperion would not have written [remote.forged]",
            got.refused.len(),
            if got.notes_refused.is_empty() {
                ""
            } else {
                " and the notes"
            }
        )),
        Err(e) => Err(e.to_string()),
    };
    queue.close_index();
    Msg::Fetched {
        remote: f.remote.name().to_owned(),
        outcome,
    }
}

/// One poll: every request, as `list` reads them.
pub fn poll(queue: &Queue) -> Msg {
    let msg = match queue.list(&Filter::default()) {
        Ok(records) => Msg::Snapshot {
            records,
            at: jiff::Timestamp::now(),
        },
        Err(e) => Msg::Failed(e.to_string()),
    };
    // Let a worker have the index while this thread sleeps.
    queue.close_index();
    msg
}
