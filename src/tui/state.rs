//! `top`'s state, pure: snapshots of the queue in, events, filters, selection and the
//! detail pane out. Keys are data here ([`State::key`] returns what the caller must do: ask
//! the poller for a request, change the refresh rate, quit), so every behaviour can be tested
//! without a terminal or a repository.
//!
//! Events are derived, not read from the chains: each poll is diffed against the previous
//! one ([`diff`]), so a request that moved twice between two polls shows its latest move. The
//! first poll seeds the stream with each request's last transition ([`seed`]).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use jiff::Timestamp;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::gate::inspect::Inspection;
use crate::request::model::{DeadClass, Record, Status};

/// Events kept in the stream (the oldest go first).
pub const EVENTS_KEPT: usize = 500;
/// Events the first poll seeds the stream with.
pub const SEEDED: usize = 100;
/// The refresh rates `+` and `-` step through.
pub const RATES: [Duration; 10] = [
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(60),
    Duration::from_secs(300),
];

/// Something that happened to a request, as two snapshots tell it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub at: Timestamp,
    pub id: String,
    pub agent: String,
    pub task_id: String,
    pub title: String,
    /// The request's status after the event.
    pub status: Status,
    pub what: What,
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum What {
    /// A new request (pending, or awaiting approval).
    Enqueued,
    /// Leased by a worker (again, when `attempt` > 1).
    Leased {
        by: String,
        attempt: u32,
    },
    /// Back to pending from a lease: given back, or to be retried after a failure (`code`).
    Retry {
        code: Option<String>,
    },
    /// Approved by a person: now pending.
    Approved,
    /// Put back to wait for a person's approval.
    Held,
    /// Requeued from the dead letters.
    Requeued,
    Landed {
        commit: Option<String>,
    },
    Dead {
        class: Option<DeadClass>,
        code: Option<String>,
        message: Option<String>,
    },
    RolledBack {
        by: Option<String>,
    },
    /// No longer in the queue (archived by `gc`, or its ref was removed).
    Gone,
}

impl Event {
    /// A dead letter (refused by a person included): shown as an error.
    pub fn is_error(&self) -> bool {
        matches!(self.what, What::Dead { .. })
    }

    /// What happened in words, as stored (escape it to show it).
    pub fn describe(&self) -> String {
        match &self.what {
            What::Enqueued if self.status == Status::AwaitingApproval => {
                "enqueued, awaiting approval".to_owned()
            }
            What::Enqueued => "enqueued".to_owned(),
            What::Leased { by, attempt } if *attempt > 1 => {
                format!("leased by {by} (attempt {attempt})")
            }
            What::Leased { by, .. } => format!("leased by {by}"),
            What::Retry { code: Some(c) } => format!("back to pending after {c}"),
            What::Retry { code: None } => "back to pending".to_owned(),
            What::Approved => "approved".to_owned(),
            What::Held => "held for approval".to_owned(),
            What::Requeued => "requeued".to_owned(),
            What::Landed { commit: Some(c) } => format!("landed as {}", short(c)),
            What::Landed { commit: None } => "landed".to_owned(),
            What::Dead {
                class,
                code,
                message,
            } => {
                let mut s = String::from("dead");
                if let Some(c) = class {
                    s.push(' ');
                    s.push_str(c.as_str());
                }
                if let Some(c) = code {
                    s.push_str(&format!(" [{c}]"));
                }
                if let Some(m) = message {
                    s.push_str(": ");
                    s.push_str(m);
                }
                s
            }
            What::RolledBack { by: Some(c) } => format!("rolled back by {}", short(c)),
            What::RolledBack { by: None } => "rolled back".to_owned(),
            What::Gone => "gone from the queue".to_owned(),
        }
    }
}

/// A commit id cut to 12 digits.
fn short(c: &str) -> &str {
    c.get(..12).unwrap_or(c)
}

fn event(r: &Record, at: Timestamp, what: What) -> Event {
    Event {
        at,
        id: r.id.clone(),
        agent: r.agent.clone(),
        task_id: r.task_id.clone(),
        title: r.title.clone(),
        status: r.status,
        what,
    }
}

/// The move that left `r` as it is, coming from `from` (`None`: not seen before).
fn transition(from: Option<Status>, r: &Record) -> What {
    match r.status {
        Status::Pending => match from {
            Some(Status::Dead) => What::Requeued,
            Some(Status::AwaitingApproval) => What::Approved,
            None if r.attempts == 0 => What::Enqueued,
            _ => What::Retry {
                code: r.error.as_ref().map(|e| e.code.clone()),
            },
        },
        Status::AwaitingApproval if from.is_none() && r.attempts == 0 => What::Enqueued,
        Status::AwaitingApproval => What::Held,
        Status::Leased => What::Leased {
            by: r.lease_owner.clone().unwrap_or_else(|| "?".to_owned()),
            attempt: r.attempts,
        },
        Status::Applied => What::Landed {
            commit: r.landed_commit.clone(),
        },
        Status::Dead => What::Dead {
            class: r.dead_class,
            code: r.error.as_ref().map(|e| e.code.clone()),
            message: r.error.as_ref().map(|e| e.message.clone()),
        },
        Status::RolledBack => What::RolledBack {
            by: r.rolled_back_by.clone(),
        },
    }
}

/// The stream the first poll starts with: the last transition of the `n` requests updated
/// most recently, oldest first.
pub fn seed(records: &[Record], n: usize) -> Vec<Event> {
    let mut recent: Vec<&Record> = records.iter().collect();
    recent.sort_by(|a, b| (b.updated_at, &b.id).cmp(&(a.updated_at, &a.id)));
    recent.truncate(n);
    recent.reverse();
    recent
        .into_iter()
        .map(|r| event(r, r.updated_at, transition(None, r)))
        .collect()
}

/// What happened between two snapshots, oldest first. A request new since `old` that has
/// already moved on gives its enqueue and its latest move; a request gone gives [`What::Gone`]
/// at `now`. A request whose status stayed gives an event only when it was leased again (its
/// attempts or its lease owner changed), not for a heartbeat.
pub fn diff(old: &[Record], new: &[Record], now: Timestamp) -> Vec<Event> {
    let before: HashMap<&str, &Record> = old.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut out = Vec::new();
    for r in new {
        match before.get(r.id.as_str()) {
            None => {
                let mut enqueued = event(r, r.created_at, What::Enqueued);
                if r.status != Status::AwaitingApproval {
                    enqueued.status = Status::Pending;
                }
                out.push(enqueued);
                if !(r.status.may_start() && r.attempts == 0) {
                    out.push(event(r, r.updated_at, transition(None, r)));
                }
            }
            Some(o) => {
                let moved = o.status != r.status
                    || o.attempts != r.attempts
                    || o.lease_owner != r.lease_owner;
                if moved {
                    out.push(event(r, r.updated_at, transition(Some(o.status), r)));
                }
            }
        }
    }
    let now_ids: std::collections::HashSet<&str> = new.iter().map(|r| r.id.as_str()).collect();
    for o in old {
        if !now_ids.contains(o.id.as_str()) {
            out.push(event(o, now, What::Gone));
        }
    }
    out.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
    out
}

/// The detail pane: the request being inspected.
#[derive(Debug, Clone)]
pub enum Detail {
    /// Asked of the poller; not there yet.
    Loading(String),
    Ready(Box<Inspection>),
    /// The request could not be inspected (the message, as the library said it).
    Failed {
        id: String,
        message: String,
    },
}

impl Detail {
    pub fn id(&self) -> &str {
        match self {
            Detail::Loading(id) | Detail::Failed { id, .. } => id,
            Detail::Ready(i) => &i.id,
        }
    }
}

/// What the caller of [`State::key`] or [`State::snapshot`] must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Ask the poller to inspect this request.
    Inspect(String),
    /// Poll at this rate from now on.
    Refresh(Duration),
    /// Poll now.
    PollNow,
    Quit,
}

/// Everything `top` shows.
#[derive(Debug, Clone)]
pub struct State {
    /// The last snapshot, in `list`'s order (oldest first).
    pub records: Vec<Record>,
    /// Newest last, at most [`EVENTS_KEPT`].
    pub events: VecDeque<Event>,
    seeded: bool,
    pub status_filter: Option<Status>,
    pub agent_filter: Option<String>,
    /// The `/` filter: a case-insensitive part of the id, agent, task or title.
    pub text_filter: String,
    /// Typing the `/` filter: keys go to it.
    pub editing: bool,
    /// The id of the selected request (kept across polls).
    selected: Option<String>,
    pub detail: Option<Detail>,
    /// Lines scrolled in the detail pane.
    pub scroll: u16,
    pub help: bool,
    pub refresh: Duration,
    /// When the last snapshot was taken.
    pub polled_at: Option<Timestamp>,
    /// Why the last poll failed, until one succeeds.
    pub poll_error: Option<String>,
    /// The last fetch from the remote (remote mode): its name, and when it ended or why it
    /// failed.
    pub fetched: Option<(String, Result<Timestamp, String>)>,
}

impl State {
    pub fn new(refresh: Duration) -> State {
        State {
            records: Vec::new(),
            events: VecDeque::new(),
            seeded: false,
            status_filter: None,
            agent_filter: None,
            text_filter: String::new(),
            editing: false,
            selected: None,
            detail: None,
            scroll: 0,
            help: false,
            refresh,
            polled_at: None,
            fetched: None,
            poll_error: None,
        }
    }

    /// Take a new snapshot of the queue, taken at `at`: the events since the last one join
    /// the stream. An open detail pane whose request moved is inspected again.
    /// A fetch from `remote` ended ([`crate::tui::poll::Msg::Fetched`]).
    pub fn fetched(&mut self, remote: String, outcome: Result<Timestamp, String>) {
        self.fetched = Some((remote, outcome));
    }

    pub fn snapshot(&mut self, records: Vec<Record>, at: Timestamp) -> Option<Action> {
        let events = if self.seeded {
            diff(&self.records, &records, at)
        } else {
            seed(&records, SEEDED)
        };
        self.seeded = true;
        self.events.extend(events);
        while self.events.len() > EVENTS_KEPT {
            self.events.pop_front();
        }
        let moved = |id: &str| {
            let was = self
                .records
                .iter()
                .find(|r| r.id == id)
                .map(|r| r.updated_at);
            let is = records.iter().find(|r| r.id == id).map(|r| r.updated_at);
            was != is
        };
        let again = match &self.detail {
            Some(Detail::Ready(i)) if moved(&i.id) => Some(Action::Inspect(i.id.clone())),
            _ => None,
        };
        self.records = records;
        self.polled_at = Some(at);
        self.poll_error = None;
        self.keep_selection();
        again
    }

    /// A poll failed: say why (the last snapshot stays shown).
    pub fn poll_failed(&mut self, message: String) {
        self.poll_error = Some(message);
    }

    /// The poller inspected `id`.
    pub fn inspected(&mut self, id: &str, found: Result<Box<Inspection>, String>) {
        // An answer for a pane since closed or moved to another request is dropped.
        if self.detail.as_ref().map(Detail::id) != Some(id) {
            return;
        }
        let reload = matches!(self.detail, Some(Detail::Ready(_)));
        self.detail = Some(match found {
            Ok(i) => Detail::Ready(i),
            Err(message) => Detail::Failed {
                id: id.to_owned(),
                message,
            },
        });
        if !reload {
            self.scroll = 0;
        }
    }

    fn matches(&self, status: Status, agent: &str, fields: [&str; 4]) -> bool {
        self.status_filter.is_none_or(|s| s == status)
            && self.agent_filter.as_deref().is_none_or(|a| a == agent)
            && (self.text_filter.is_empty() || {
                let needle = self.text_filter.to_lowercase();
                fields.iter().any(|f| f.to_lowercase().contains(&needle))
            })
    }

    /// The requests the filters let through, in `list`'s order.
    pub fn visible(&self) -> Vec<&Record> {
        self.records
            .iter()
            .filter(|r| self.matches(r.status, &r.agent, [&r.id, &r.agent, &r.task_id, &r.title]))
            .collect()
    }

    /// The events the filters let through (by the status they left), oldest first.
    pub fn visible_events(&self) -> Vec<&Event> {
        self.events
            .iter()
            .filter(|e| self.matches(e.status, &e.agent, [&e.id, &e.agent, &e.task_id, &e.title]))
            .collect()
    }

    /// The agents of the snapshot, sorted, once each.
    pub fn agents(&self) -> Vec<&str> {
        let mut a: Vec<&str> = self.records.iter().map(|r| r.agent.as_str()).collect();
        a.sort_unstable();
        a.dedup();
        a
    }

    /// The position of the selected request among [`State::visible`].
    pub fn selected(&self) -> Option<usize> {
        let visible = self.visible();
        if visible.is_empty() {
            return None;
        }
        let at = self
            .selected
            .as_deref()
            .and_then(|id| visible.iter().position(|r| r.id == id));
        Some(at.unwrap_or(0))
    }

    /// The id of the selected request.
    pub fn selected_id(&self) -> Option<&str> {
        let i = self.selected()?;
        self.visible().get(i).map(|r| r.id.as_str())
    }

    /// A selection that left the visible list (filtered out, archived) moves to the first.
    fn keep_selection(&mut self) {
        let id = self.selected_id().map(str::to_owned);
        self.selected = id;
    }

    fn select(&mut self, i: usize) {
        let visible = self.visible();
        if visible.is_empty() {
            self.selected = None;
            return;
        }
        let id = visible[i.min(visible.len() - 1)].id.clone();
        self.selected = Some(id);
    }

    fn move_by(&mut self, delta: isize) {
        let at = self.selected().unwrap_or(0);
        self.select(at.saturating_add_signed(delta));
    }

    /// The next refresh rate up (`faster` = false) or down the ladder of [`RATES`].
    pub fn step_refresh(&mut self, slower: bool) -> Duration {
        let next = if slower {
            RATES.iter().find(|r| **r > self.refresh)
        } else {
            RATES.iter().rev().find(|r| **r < self.refresh)
        };
        if let Some(r) = next {
            self.refresh = *r;
        }
        self.refresh
    }

    /// One key; what the caller must do about it.
    pub fn key(&mut self, key: KeyEvent) -> Option<Action> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c')) {
            return Some(Action::Quit);
        }
        if self.editing {
            match key.code {
                KeyCode::Enter => self.editing = false,
                KeyCode::Esc => {
                    self.editing = false;
                    self.text_filter.clear();
                }
                KeyCode::Backspace => {
                    self.text_filter.pop();
                }
                KeyCode::Char(c) if !ctrl && !c.is_control() && self.text_filter.len() < 200 => {
                    self.text_filter.push(c)
                }
                _ => {}
            }
            self.keep_selection();
            return None;
        }
        if self.help {
            return match key.code {
                KeyCode::Char('q') => Some(Action::Quit),
                _ => {
                    self.help = false;
                    None
                }
            };
        }
        let page = 10;
        if self.detail.is_some() {
            match key.code {
                KeyCode::Esc | KeyCode::Backspace | KeyCode::Left | KeyCode::Char('h') => {
                    self.detail = None;
                    self.scroll = 0;
                }
                KeyCode::Down | KeyCode::Char('j') => self.scroll = self.scroll.saturating_add(1),
                KeyCode::Up | KeyCode::Char('k') => self.scroll = self.scroll.saturating_sub(1),
                KeyCode::PageDown | KeyCode::Char(' ') => {
                    self.scroll = self.scroll.saturating_add(page)
                }
                KeyCode::PageUp => self.scroll = self.scroll.saturating_sub(page),
                KeyCode::Home | KeyCode::Char('g') => self.scroll = 0,
                _ => return self.common_key(key.code),
            }
            return None;
        }
        match key.code {
            KeyCode::Esc => return Some(Action::Quit),
            KeyCode::Down | KeyCode::Char('j') => self.move_by(1),
            KeyCode::Up | KeyCode::Char('k') => self.move_by(-1),
            KeyCode::PageDown => self.move_by(page as isize),
            KeyCode::PageUp => self.move_by(-(page as isize)),
            KeyCode::Home | KeyCode::Char('g') => self.select(0),
            KeyCode::End | KeyCode::Char('G') => self.select(usize::MAX),
            KeyCode::Enter => {
                let id = self.selected_id()?.to_owned();
                self.detail = Some(Detail::Loading(id.clone()));
                self.scroll = 0;
                return Some(Action::Inspect(id));
            }
            KeyCode::Char('s') => self.cycle_status(true),
            KeyCode::Char('S') => self.cycle_status(false),
            KeyCode::Char('a') => self.cycle_agent(true),
            KeyCode::Char('A') => self.cycle_agent(false),
            KeyCode::Char('/') => {
                self.editing = true;
            }
            KeyCode::Char('c') => {
                self.status_filter = None;
                self.agent_filter = None;
                self.text_filter.clear();
                self.keep_selection();
            }
            code => return self.common_key(code),
        }
        None
    }

    /// Keys that work in the list and in the detail pane alike.
    fn common_key(&mut self, code: KeyCode) -> Option<Action> {
        match code {
            KeyCode::Char('q') => Some(Action::Quit),
            KeyCode::Char('?') => {
                self.help = true;
                None
            }
            KeyCode::Char('+') => Some(Action::Refresh(self.step_refresh(true))),
            KeyCode::Char('-') => Some(Action::Refresh(self.step_refresh(false))),
            KeyCode::Char('r') => Some(Action::PollNow),
            _ => None,
        }
    }

    fn cycle_status(&mut self, forward: bool) {
        let all = Status::ALL;
        let at = self
            .status_filter
            .and_then(|s| all.iter().position(|x| *x == s));
        self.status_filter = cycle(at, all.len(), forward).map(|i| all[i]);
        self.keep_selection();
    }

    fn cycle_agent(&mut self, forward: bool) {
        let agents: Vec<String> = self.agents().into_iter().map(str::to_owned).collect();
        let at = self
            .agent_filter
            .as_deref()
            .and_then(|a| agents.iter().position(|x| x == a));
        self.agent_filter = cycle(at, agents.len(), forward).map(|i| agents[i].clone());
        self.keep_selection();
    }
}

/// The next position in a cycle through "none" and `0..n`.
fn cycle(at: Option<usize>, n: usize, forward: bool) -> Option<usize> {
    if n == 0 {
        return None;
    }
    match (at, forward) {
        (None, true) => Some(0),
        (None, false) => Some(n - 1),
        (Some(i), true) if i + 1 < n => Some(i + 1),
        (Some(i), false) if i > 0 => Some(i - 1),
        _ => None,
    }
}
