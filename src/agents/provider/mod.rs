//! Providers: one adapter per agent CLI, behind [`Provider`], each mapping its CLI's output to
//! one event model ([`Event`]) and its failures to classes ([`Class`]).
//!
//! An adapter knows how to call its CLI headless (arguments, the variables it needs), how to
//! read one line of its output, and what its exit status means. It runs nothing itself: the
//! harness ([`crate::agents::harness`]) spawns the CLI, bounded like any untrusted program,
//! and feeds the adapter the CLI's stdout line by line while it runs.

use serde::{Deserialize, Serialize};

mod aider;
mod claude;
mod codex;
mod command;
mod gemini;
mod opencode;

/// Why an agent run failed. Transient classes are retried with backoff; the others are not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// The API's rate limit or usage limit (transient).
    RateLimit,
    /// The API is overloaded or failed on its side (5xx; transient).
    Overload,
    /// The network failed (transient).
    Network,
    /// Missing or refused credentials.
    Auth,
    /// The CLI refused its configuration or input.
    Config,
    /// The CLI's turn limit was reached.
    MaxTurns,
    /// A budget (USD, tokens, wall time, attempts) ran out; the harness or the CLI stopped it.
    Budget,
    /// Silent for longer than the watchdog allows; killed.
    Watchdog,
    /// Exited in a way its CLI does not document (a signal, an unknown status).
    Crash,
    /// Stopped by the person running it (Ctrl-C).
    Cancelled,
}

impl Class {
    /// Whether a retry may succeed.
    pub fn transient(self) -> bool {
        matches!(self, Class::RateLimit | Class::Overload | Class::Network)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Class::RateLimit => "rate_limit",
            Class::Overload => "overload",
            Class::Network => "network",
            Class::Auth => "auth",
            Class::Config => "config",
            Class::MaxTurns => "max_turns",
            Class::Budget => "budget",
            Class::Watchdog => "watchdog",
            Class::Crash => "crash",
            Class::Cancelled => "cancelled",
        }
    }
}

/// One thing an agent did or reported, whatever its CLI: what a transcript holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// Text the agent wrote.
    Message { text: String },
    /// A tool the agent used (a shell command, an edit).
    ToolUse {
        name: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        detail: String,
    },
    /// Tokens used: `total` when the CLI reports its running total, else this step's.
    Usage {
        input: u64,
        output: u64,
        #[serde(default)]
        total: bool,
    },
    /// Dollars spent: `total` when the CLI reports its running total, else this step's.
    Cost {
        usd: f64,
        #[serde(default)]
        total: bool,
    },
    /// Something went wrong; `class` when the CLI says what.
    Error {
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        class: Option<Class>,
    },
    /// The harness started the CLI (attempt `attempt`).
    Start { provider: String, program: String },
    /// The harness stopped the CLI before it ended (a budget, the watchdog, Ctrl-C).
    Stop { class: Class, reason: String },
    /// The CLI ended: its exit status (none: a signal), what the harness made of it, and the
    /// end of its stderr.
    End {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        class: Option<Class>,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        stderr: String,
    },
    /// A transient failure: the next attempt starts after this many milliseconds.
    Retry { after_ms: u64 },
    /// What the prompt lost to redaction before it was sent (matches replaced).
    Redacted { count: usize },
    /// The last line of a transcript: what the whole run spent and how it ended.
    Totals(crate::agents::harness::Totals),
    /// The CLI's own verdict on the run.
    Result {
        ok: bool,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        class: Option<Class>,
    },
}

impl Event {
    /// The failure class this event announces, if any.
    pub fn class(&self) -> Option<Class> {
        match self {
            Event::Error { class, .. } => *class,
            Event::Result {
                ok: false, class, ..
            } => *class,
            _ => None,
        }
    }
}

/// What one call of a CLI is given besides the prompt.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    /// The prompt, also written to this file (for CLIs and scripts that read it from one).
    pub prompt_file: std::path::PathBuf,
    /// A scratch directory of this run, outside the worktree (logs a CLI writes).
    pub scratch: std::path::PathBuf,
    /// The assignment's dollar budget, for CLIs that enforce one themselves.
    pub max_usd: Option<f64>,
    /// `hyperion.agent.<name>.model`.
    pub model: Option<String>,
}

/// One agent CLI.
pub trait Provider: Send + Sync {
    /// The provider's name (`claude`, `codex`, …), used in settings and as the requests' agent.
    fn name(&self) -> &'static str;
    /// The program run when `hyperion.agent.<name>.command` does not name another.
    fn program(&self) -> &'static str;
    /// The arguments after the program.
    fn args(&self, prompt: &str, inv: &Invocation) -> Vec<String>;
    /// Variables of hyperion's environment the CLI gets (its credentials and settings).
    fn env(&self) -> &'static [&'static str];
    /// The events one line of the CLI's stdout holds (empty when it holds none).
    fn parse(&self, line: &str) -> Vec<Event>;
    /// What an exit status means, given the events read: `None` for success.
    fn exit(&self, status: Option<i32>, events: &[Event]) -> Option<Class>;
    /// Files and directories the CLI writes in the worktree for itself (pathspec globs),
    /// kept out of the request.
    fn own_files(&self) -> &'static [&'static str] {
        &[]
    }
    /// Events read after the CLI exited (from a log it wrote), if it has any.
    fn after(&self, _inv: &Invocation) -> Vec<Event> {
        Vec::new()
    }
}

/// Every provider's name.
pub const NAMES: &[&str] = &["claude", "codex", "gemini", "aider", "opencode", "command"];

/// The provider named `name` (`claude-code` is read as `claude`).
pub fn by_name(name: &str) -> Option<Box<dyn Provider>> {
    Some(match name {
        "claude" | "claude-code" => Box::new(claude::Claude),
        "codex" => Box::new(codex::Codex),
        "gemini" => Box::new(gemini::Gemini),
        "aider" => Box::new(aider::Aider),
        "opencode" => Box::new(opencode::Opencode),
        "command" => Box::new(command::Script),
        _ => return None,
    })
}

/// The class an error's text suggests: how the CLIs word transient failures.
pub fn classify_text(text: &str) -> Option<Class> {
    let t = text.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| t.contains(w));
    if has(&["max turns", "max_turns", "turn limit", "maxsessionturns"]) {
        Some(Class::MaxTurns)
    } else if has(&[
        "rate limit",
        "rate_limit",
        "ratelimit",
        "429",
        "too many requests",
        "usage limit",
        "quota",
    ]) {
        Some(Class::RateLimit)
    } else if has(&[
        "overload",
        "529",
        "503",
        "502",
        "500",
        "server_error",
        "server error",
        "unavailable",
    ]) {
        Some(Class::Overload)
    } else if has(&[
        "network",
        "timed out",
        "timeout",
        "econnreset",
        "connection",
        "dns",
        "stream disconnected",
    ]) {
        Some(Class::Network)
    } else if has(&[
        "auth",
        "api key",
        "api_key",
        "401",
        "403",
        "unauthorized",
        "forbidden",
        "login",
        "billing",
    ]) {
        Some(Class::Auth)
    } else {
        None
    }
}

/// `value[key]` as text, or empty.
fn text<'v>(value: &'v serde_json::Value, key: &str) -> &'v str {
    value.get(key).and_then(|v| v.as_str()).unwrap_or_default()
}

/// `value` at the path of keys as a number, or 0.
fn num(value: &serde_json::Value, path: &[&str]) -> u64 {
    let mut v = value;
    for k in path {
        match v.get(k) {
            Some(x) => v = x,
            None => return 0,
        }
    }
    v.as_u64().unwrap_or(0)
}

/// A line that is not the JSON the CLI documents: kept as text, so nothing is lost.
fn unparsed(line: &str) -> Vec<Event> {
    if line.trim().is_empty() {
        Vec::new()
    } else {
        vec![Event::Message {
            text: line.to_owned(),
        }]
    }
}

/// The last class any event announced.
fn last_class(events: &[Event]) -> Option<Class> {
    events.iter().rev().find_map(Event::class)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_classified_as_the_clis_word_them() {
        assert_eq!(
            classify_text("429 Too Many Requests"),
            Some(Class::RateLimit)
        );
        assert_eq!(classify_text("Overloaded"), Some(Class::Overload));
        assert_eq!(classify_text("invalid api key"), Some(Class::Auth));
        assert_eq!(classify_text("it went fine"), None);
        assert!(Class::RateLimit.transient() && !Class::Auth.transient());
    }
}
