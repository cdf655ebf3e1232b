//! Running one agent on one assignment, safely: the harness.
//!
//! - **Bounded like any untrusted program** ([`crate::gate::untrusted`]): its own process
//!   group, killed as a group; stdin `/dev/null`; a scrubbed environment holding only what
//!   its provider needs ([`Provider::env`], `hyperion.agent.<name>.env`), with `HOME` and
//!   `TMPDIR` in a scratch directory.
//! - **Redacted**: the prompt before it is sent, every line the agent writes before it is
//!   parsed and stored ([`crate::agents::redact`]).
//! - **Every event stamped** with its time and attempt: the transcript.
//! - **Budgets enforced while it runs**: dollars and tokens after every event that reports
//!   them (the assignment's, and the run's across all agents), wall time as the deadline,
//!   attempts before each start; on exceeding, the agent is killed and the reason recorded.
//! - **A watchdog** kills an agent that wrote nothing for `hyperion.agent.watchdog`.
//! - **Retries** with jittered exponential backoff, for transient failures only; a rate limit
//!   holds back every agent of that provider in the run ([`Limiter`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::agents::model::Budget;
use crate::agents::provider::{Class, Event, Invocation, Provider};
use crate::agents::redact::Redactor;
use crate::gate::untrusted;

/// The longest line of agent output kept whole; longer ones are cut.
const MAX_LINE: usize = 1 << 20;
/// The longest a transcript grows; later events are counted, not stored.
pub const MAX_TRANSCRIPT: usize = 16 << 20;
/// The most of an agent's stderr kept in its `end` event.
const STDERR_KEPT: usize = 4096;
/// The longest pause between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// How the harness runs agents (git config `hyperion.agent.*`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Kill an agent that wrote nothing for this long (`hyperion.agent.watchdog`, 10m).
    pub watchdog: Duration,
    /// Base of the backoff between attempts (`hyperion.agent.backoff`, 5s).
    pub backoff: Duration,
    /// Attempts per assignment when its budget names none (`hyperion.agent.attempts`, 3).
    pub attempts: u32,
    /// Wall time of one agent run when its budget names none (`hyperion.agent.wallTime`, 1h).
    pub wall_time: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            watchdog: Duration::from_secs(600),
            backoff: Duration::from_secs(5),
            attempts: 3,
            wall_time: Duration::from_secs(3600),
        }
    }
}

/// One provider's settings (`hyperion.agent.<name>.*`).
#[derive(Debug, Clone, Default)]
pub struct AgentConfig {
    /// The program and any leading arguments (`.command`, or `HYPERION_AGENT_<NAME>`).
    pub command: Vec<String>,
    /// More variables the CLI gets (`.env`, repeatable).
    pub env: Vec<String>,
    /// `.model`.
    pub model: Option<String>,
    /// Least time between two starts of this provider within a run (`.minInterval`).
    pub min_interval: Duration,
}

/// What an agent, or a run, spent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Dollars, when the CLI reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd: Option<f64>,
    pub attempts: u32,
    pub wall_ms: u64,
    /// `done`, or the failure class.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub outcome: String,
    /// Why it failed, in words.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

impl Totals {
    pub fn tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }

    /// Add `other`'s spending (not its outcome).
    pub fn add(&mut self, other: &Totals) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.usd = match (self.usd, other.usd) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
        };
        self.attempts += other.attempts;
        self.wall_ms += other.wall_ms;
    }
}

/// One line of a transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stamped {
    pub at: jiff::Timestamp,
    pub attempt: u32,
    #[serde(flatten)]
    pub event: Event,
}

/// Starts per provider, shared by every agent of a run: a least interval between starts,
/// and after a rate limit, a pause for all of them.
#[derive(Debug, Default)]
pub struct Limiter {
    next: Mutex<HashMap<String, Instant>>,
}

impl Limiter {
    /// Wait for this provider's next slot (and take it); false when cancelled meanwhile.
    pub fn acquire(&self, provider: &str, interval: Duration, cancel: &AtomicBool) -> bool {
        loop {
            let wait = {
                let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                let at = next.get(provider).copied().unwrap_or(now);
                if at <= now {
                    next.insert(provider.to_owned(), now + interval);
                    return true;
                }
                at - now
            };
            if !sleep(wait.min(Duration::from_millis(100)), cancel) {
                return false;
            }
        }
    }

    /// Hold every start of `provider` back for `pause`.
    pub fn hold(&self, provider: &str, pause: Duration) {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let until = Instant::now() + pause;
        let e = next.entry(provider.to_owned()).or_insert(until);
        *e = (*e).max(until);
    }
}

/// What the agents of one run share.
pub struct Shared<'a> {
    pub settings: Settings,
    pub limiter: Limiter,
    pub redactor: Redactor,
    /// The whole run's budget.
    pub budget: Budget,
    /// What the run's agents spent so far (updated while they run).
    pub spent: Mutex<Totals>,
    /// Set on Ctrl-C: every agent stops.
    pub cancel: &'a AtomicBool,
}

/// One agent to run.
pub struct Job<'a> {
    pub provider: &'a dyn Provider,
    pub config: &'a AgentConfig,
    /// The prompt, not redacted yet.
    pub prompt: &'a str,
    /// Where it works (the assignment's worktree).
    pub cwd: &'a Path,
    /// A directory of this job's own, outside the worktree (scratch home, logs).
    pub dir: PathBuf,
    pub budget: &'a Budget,
}

/// How an agent's run ended.
#[derive(Debug, Clone)]
pub struct AgentRun {
    pub transcript: Vec<Stamped>,
    pub totals: Totals,
    /// `None`: done; else why not.
    pub failure: Option<(Class, String)>,
}

impl AgentRun {
    /// The transcript as JSONL, its last line the totals.
    pub fn jsonl(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for s in &self.transcript {
            let line = serde_json::to_string(s).expect("events serialise");
            if out.len() + line.len() > MAX_TRANSCRIPT {
                break;
            }
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
        }
        let last = Stamped {
            at: jiff::Timestamp::now(),
            attempt: self.totals.attempts,
            event: Event::Totals(self.totals.clone()),
        };
        out.extend_from_slice(
            serde_json::to_string(&last)
                .expect("totals serialise")
                .as_bytes(),
        );
        out.push(b'\n');
        out
    }
}

/// Run `job` to the end: attempts, retries, budgets, watchdog. Never fails: what went wrong is
/// in [`AgentRun::failure`] and the transcript.
pub fn run(shared: &Shared<'_>, job: &Job<'_>) -> AgentRun {
    let mut run = AgentRun {
        transcript: Vec::new(),
        totals: Totals::default(),
        failure: None,
    };
    let (prompt, redactions) = shared.redactor.redact(job.prompt);
    if redactions > 0 {
        stamp(
            &mut run.transcript,
            0,
            Event::Redacted { count: redactions },
        );
    }
    let max_attempts = job
        .budget
        .attempts
        .unwrap_or(shared.settings.attempts)
        .max(1);
    let wall = match job.budget.wall_time.as_deref().map(crate::duration::parse) {
        Some(Ok(d)) => d,
        _ => shared.settings.wall_time,
    };
    let started = Instant::now();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        if let Some(why) = run_attempts_exceeded(shared, attempt, max_attempts) {
            run.failure = Some((Class::Budget, why));
            break;
        }
        if !shared
            .limiter
            .acquire(job.provider.name(), job.config.min_interval, shared.cancel)
        {
            run.failure = Some((Class::Cancelled, "stopped before it started".into()));
            break;
        }
        shared
            .spent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .attempts += 1;
        run.totals.attempts = attempt;
        let failure = one_attempt(shared, job, &prompt, attempt, wall, &mut run);
        match failure {
            None => {
                run.failure = None;
                break;
            }
            Some((class, why)) if class.transient() && attempt < max_attempts => {
                let delay = backoff(shared.settings.backoff, attempt);
                if class == Class::RateLimit {
                    shared.limiter.hold(job.provider.name(), delay);
                }
                stamp(
                    &mut run.transcript,
                    attempt,
                    Event::Retry {
                        after_ms: delay.as_millis() as u64,
                    },
                );
                run.failure = Some((class, why));
                if !sleep(delay, shared.cancel) {
                    run.failure = Some((Class::Cancelled, "stopped while waiting to retry".into()));
                    break;
                }
            }
            Some((class, why)) if class.transient() => {
                run.failure = Some((
                    class,
                    format!("{why} (after {attempt} attempt(s), the most its budget allows)"),
                ));
                break;
            }
            Some(f) => {
                run.failure = Some(f);
                break;
            }
        }
    }
    run.totals.wall_ms = started.elapsed().as_millis() as u64;
    match &run.failure {
        None => run.totals.outcome = "done".into(),
        Some((class, why)) => {
            run.totals.outcome = class.as_str().into();
            run.totals.reason = shared.redactor.text(why);
        }
    }
    run
}

fn run_attempts_exceeded(shared: &Shared<'_>, attempt: u32, max: u32) -> Option<String> {
    if attempt > max {
        return Some(format!("attempts budget of {max} used"));
    }
    let spent = shared.spent.lock().unwrap_or_else(|e| e.into_inner());
    match shared.budget.attempts {
        Some(limit) if spent.attempts >= limit => {
            Some(format!("the run's attempts budget of {limit} is used"))
        }
        _ => None,
    }
}

/// What one attempt is doing, shared by the callbacks of [`untrusted::run_observed`].
struct Live {
    partial: Vec<u8>,
    events: Vec<Event>,
    last_output: Instant,
    stop: Option<(Class, String)>,
    /// Tokens and dollars of this attempt: sums of steps, and the CLI's running totals.
    step_in: u64,
    step_out: u64,
    total_in: u64,
    total_out: u64,
    step_usd: f64,
    total_usd: Option<f64>,
    any_usd: bool,
    /// What of this attempt was added to the run's totals so far.
    reported: Totals,
}

impl Live {
    fn now(&self) -> Totals {
        Totals {
            input_tokens: self.step_in.max(self.total_in),
            output_tokens: self.step_out.max(self.total_out),
            usd: self
                .any_usd
                .then(|| self.step_usd.max(self.total_usd.unwrap_or(0.0))),
            ..Totals::default()
        }
    }
}

fn one_attempt(
    shared: &Shared<'_>,
    job: &Job<'_>,
    prompt: &str,
    attempt: u32,
    wall: Duration,
    run: &mut AgentRun,
) -> Option<(Class, String)> {
    let provider = job.provider;
    let logs = job.dir.join("log");
    let scratch = match std::fs::create_dir_all(&logs)
        .and_then(|()| untrusted::Scratch::at(&job.dir.join("scratch")))
    {
        Ok(s) => s,
        Err(e) => {
            return Some((
                Class::Config,
                format!("cannot prepare {}: {e}", job.dir.display()),
            ));
        }
    };
    let _ = scratch.clear();
    let prompt_file = logs.join("prompt.txt");
    if let Err(e) = std::fs::write(&prompt_file, prompt) {
        return Some((Class::Config, format!("cannot write the prompt: {e}")));
    }
    let inv = Invocation {
        prompt_file: prompt_file.clone(),
        scratch: logs.clone(),
        max_usd: job.budget.usd,
        model: job.config.model.clone(),
    };
    let mut argv: Vec<String> = if job.config.command.is_empty() {
        vec![provider.program().to_owned()]
    } else {
        job.config.command.clone()
    };
    argv.extend(provider.args(prompt, &inv));
    let inherit: Vec<String> = provider
        .env()
        .iter()
        .map(|s| (*s).to_owned())
        .chain(job.config.env.iter().cloned())
        .collect();
    let mut env = untrusted::Env::scrubbed(&scratch, &inherit);
    env.set("HYPERION_PROMPT_FILE", prompt_file.to_string_lossy());
    stamp(
        &mut run.transcript,
        attempt,
        Event::Start {
            provider: provider.name().into(),
            program: argv[0].clone(),
        },
    );
    let spec = untrusted::Spec {
        argv: &argv,
        cwd: job.cwd,
        env: &env,
        stdin: None,
        timeout: wall,
        grace: untrusted::GRACE,
        keep: STDERR_KEPT,
        portable: false,
    };
    let live = RefCell::new(Live {
        partial: Vec::new(),
        events: Vec::new(),
        last_output: Instant::now(),
        stop: None,
        step_in: 0,
        step_out: 0,
        total_in: 0,
        total_out: 0,
        step_usd: 0.0,
        total_usd: None,
        any_usd: false,
        reported: Totals::default(),
    });
    let transcript = RefCell::new(std::mem::take(&mut run.transcript));
    let stop_now = AtomicBool::new(false);
    let stop = |l: &mut Live, class: Class, why: String| {
        if l.stop.is_none() {
            l.stop = Some((class, why));
            stop_now.store(true, Ordering::SeqCst);
        }
    };
    let line = |raw: &[u8]| {
        let text = String::from_utf8_lossy(raw);
        let text = shared.redactor.text(text.trim_end_matches(['\n', '\r']));
        let events = provider.parse(&text);
        let mut l = live.borrow_mut();
        for e in events {
            account(&mut l, &e);
            stamp(&mut transcript.borrow_mut(), attempt, e.clone());
            l.events.push(e);
        }
        // The run's totals move with this attempt's.
        let now = l.now();
        let delta = Totals {
            input_tokens: now.input_tokens - l.reported.input_tokens,
            output_tokens: now.output_tokens - l.reported.output_tokens,
            usd: now.usd.map(|u| u - l.reported.usd.unwrap_or(0.0)),
            ..Totals::default()
        };
        l.reported = now.clone();
        let run_spent = {
            let mut spent = shared.spent.lock().unwrap_or_else(|e| e.into_inner());
            spent.add(&delta);
            spent.clone()
        };
        let mine = {
            let mut m = run.totals.clone();
            m.add(&now);
            m
        };
        if let Some(why) = over(job.budget, &mine, "its") {
            stop(&mut l, Class::Budget, why);
        } else if let Some(why) = over(&shared.budget, &run_spent, "the run's") {
            stop(&mut l, Class::Budget, why);
        }
    };
    let on_stdout = |chunk: &[u8]| {
        live.borrow_mut().last_output = Instant::now();
        let mut rest = chunk;
        while let Some(nl) = memchr::memchr(b'\n', rest) {
            let mut whole = std::mem::take(&mut live.borrow_mut().partial);
            whole.extend_from_slice(&rest[..nl]);
            line(&whole);
            rest = &rest[nl + 1..];
        }
        let full = {
            let mut l = live.borrow_mut();
            l.partial.extend_from_slice(rest);
            l.partial.len() > MAX_LINE
        };
        if full {
            let whole = std::mem::take(&mut live.borrow_mut().partial);
            line(&whole);
        }
    };
    let mut tick = || {
        let mut l = live.borrow_mut();
        if shared.cancel.load(Ordering::SeqCst) {
            stop(&mut l, Class::Cancelled, "stopped (Ctrl-C)".into());
        } else if l.last_output.elapsed() >= shared.settings.watchdog {
            let why = format!(
                "silent for {}: stopped by the watchdog",
                crate::duration::format(shared.settings.watchdog)
            );
            stop(&mut l, Class::Watchdog, why);
        }
    };
    let outcome = untrusted::run_observed(&spec, &stop_now, &mut tick, &mut |stream, chunk| {
        if stream == untrusted::Stream::Stdout {
            on_stdout(chunk)
        }
    });
    let rest = std::mem::take(&mut live.borrow_mut().partial);
    if !rest.is_empty() {
        line(&rest);
    }
    let mut live = live.into_inner();
    let mut transcript = transcript.into_inner();
    for e in provider.after(&inv) {
        account(&mut live, &e);
        stamp(&mut transcript, attempt, e.clone());
        live.events.push(e);
    }
    let status = match &outcome.ended {
        untrusted::Ended::Exited(s) => s.code(),
        _ => None,
    };
    // A tail cut short loses its partial first line: it may begin inside a secret.
    let stderr = crate::request::secrets::cut_tail(&outcome.stderr.tail, outcome.stderr.truncated);
    let stderr = shared.redactor.text(&String::from_utf8_lossy(stderr));
    let failure = match (&outcome.ended, live.stop.take()) {
        (_, Some(stopped)) => {
            stamp(
                &mut transcript,
                attempt,
                Event::Stop {
                    class: stopped.0,
                    reason: stopped.1.clone(),
                },
            );
            Some(stopped)
        }
        (untrusted::Ended::TimedOut, None) => Some((
            Class::Budget,
            format!(
                "wall time of {} used: stopped",
                crate::duration::format(wall)
            ),
        )),
        (untrusted::Ended::SpawnFailed(why), None) => {
            Some((Class::Config, format!("cannot start {}: {why}", argv[0])))
        }
        (untrusted::Ended::Cancelled, None) => Some((Class::Cancelled, "stopped".into())),
        (untrusted::Ended::Exited(_), None) => provider.exit(status, &live.events).map(|class| {
            // A crash that says why on stderr: its words may tell a transient failure.
            let class = match class {
                Class::Crash => crate::agents::provider::classify_text(&stderr).unwrap_or(class),
                c => c,
            };
            let why = live
                .events
                .iter()
                .rev()
                .find_map(|e| match e {
                    Event::Error { message, .. } => Some(message.clone()),
                    Event::Result {
                        ok: false, text, ..
                    } if !text.is_empty() => Some(text.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| match status {
                    Some(s) => format!("{} exited with status {s}", provider.name()),
                    None => format!("{} was killed by a signal", provider.name()),
                });
            (class, why)
        }),
    };
    stamp(
        &mut transcript,
        attempt,
        Event::End {
            status,
            class: failure.as_ref().map(|f| f.0),
            stderr: stderr.trim().to_owned(),
        },
    );
    let spent = live.now();
    run.totals.input_tokens += spent.input_tokens;
    run.totals.output_tokens += spent.output_tokens;
    if let Some(usd) = spent.usd {
        run.totals.usd = Some(run.totals.usd.unwrap_or(0.0) + usd);
    }
    run.transcript = transcript;
    failure
}

/// Count an event's tokens and dollars.
fn account(l: &mut Live, e: &Event) {
    match *e {
        Event::Usage {
            input,
            output,
            total: false,
        } => {
            l.step_in += input;
            l.step_out += output;
        }
        Event::Usage {
            input,
            output,
            total: true,
        } => {
            l.total_in = l.total_in.max(input);
            l.total_out = l.total_out.max(output);
        }
        Event::Cost { usd, total } => {
            l.any_usd = true;
            if total {
                l.total_usd = Some(l.total_usd.unwrap_or(0.0).max(usd));
            } else {
                l.step_usd += usd;
            }
        }
        _ => {}
    }
}

/// Why `spent` exceeds `budget`, if it does.
fn over(budget: &Budget, spent: &Totals, whose: &str) -> Option<String> {
    if let (Some(limit), Some(usd)) = (budget.usd, spent.usd)
        && usd > limit
    {
        return Some(format!(
            "{whose} budget of ${limit} exceeded (${usd:.4} spent): stopped"
        ));
    }
    if let Some(limit) = budget.tokens
        && spent.tokens() > limit
    {
        return Some(format!(
            "{whose} budget of {limit} tokens exceeded ({} used): stopped",
            spent.tokens()
        ));
    }
    None
}

fn stamp(transcript: &mut Vec<Stamped>, attempt: u32, event: Event) {
    transcript.push(Stamped {
        at: jiff::Timestamp::now(),
        attempt,
        event,
    });
}

/// Jittered exponential backoff before attempt `attempt + 1`: base × 2^(attempt−1), capped,
/// then a random 50–100 % of that.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let capped = exp.min(MAX_BACKOFF);
    let seed = crate::request::model::sha256_hex(
        format!(
            "{}:{attempt}:{:?}:{:?}",
            crate::git::os::pid(),
            Instant::now(),
            std::thread::current().id()
        )
        .as_bytes(),
    );
    let frac = u64::from_str_radix(&seed[..4], 16).unwrap_or(0) as f64 / 65535.0;
    capped.mul_f64(0.5 + 0.5 * frac)
}

/// Sleep `d`, waking early when cancelled; false when cancelled.
fn sleep(d: Duration, cancel: &AtomicBool) -> bool {
    let end = Instant::now() + d;
    loop {
        if cancel.load(Ordering::SeqCst) {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_jittered_within_half_to_whole() {
        let base = Duration::from_millis(100);
        for attempt in 1..5 {
            let d = backoff(base, attempt);
            let full = base * (1 << (attempt - 1));
            assert!(d >= full / 2 && d <= full, "{attempt}: {d:?}");
        }
        assert!(backoff(Duration::from_secs(100), 20) <= MAX_BACKOFF);
    }

    #[test]
    fn budgets_say_which_ran_out() {
        let b = Budget {
            usd: Some(1.0),
            tokens: Some(100),
            ..Budget::default()
        };
        let mut t = Totals {
            usd: Some(0.5),
            input_tokens: 50,
            ..Totals::default()
        };
        assert_eq!(over(&b, &t, "its"), None);
        t.output_tokens = 60;
        assert!(over(&b, &t, "its").unwrap().contains("100 tokens"));
        t.usd = Some(1.5);
        assert!(over(&b, &t, "its").unwrap().contains("$1"));
    }
}
