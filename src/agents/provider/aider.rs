//! aider: `aider --message PROMPT --yes-always --no-auto-commits --analytics-log FILE`.
//!
//! Its stdout is text: a line `Tokens: … Cost: $X message, $Y session.` gives the cost,
//! errors are worded lines (`litellm.RateLimitError: …`). Tokens come from the analytics log
//! (JSONL {event, properties, time}; `message_send` has prompt_tokens, completion_tokens,
//! total_cost), read after it exited. It exits 0 even when the LLM call failed, so an error
//! line decides; startup errors exit 1. It writes `.aider*` files in the repository.

use super::{Class, Event, Invocation, Provider, classify_text, last_class, num, unparsed};

pub struct Aider;

const LOG: &str = "aider-analytics.jsonl";

impl Provider for Aider {
    fn name(&self) -> &'static str {
        "aider"
    }
    fn program(&self) -> &'static str {
        "aider"
    }
    fn args(&self, prompt: &str, inv: &Invocation) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "--message".into(),
            prompt.into(),
            "--yes-always".into(),
            "--no-auto-commits".into(),
            "--no-stream".into(),
            "--no-gitignore".into(),
            "--no-check-update".into(),
            "--analytics-log".into(),
            inv.scratch.join(LOG).to_string_lossy().into_owned(),
        ];
        if let Some(m) = &inv.model {
            a.extend(["--model".into(), m.clone()]);
        }
        a
    }
    fn env(&self) -> &'static [&'static str] {
        &[
            "ANTHROPIC_API_KEY",
            "OPENAI_API_KEY",
            "GEMINI_API_KEY",
            "OPENROUTER_API_KEY",
        ]
    }
    fn own_files(&self) -> &'static [&'static str] {
        &[".aider*"]
    }
    fn parse(&self, line: &str) -> Vec<Event> {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("Tokens:") {
            // `… Cost: $0.0012 message, $0.0345 session.`
            let session = rest
                .split("Cost:")
                .nth(1)
                .and_then(|c| c.split(',').nth(1))
                .and_then(|s| s.trim().strip_prefix('$'))
                .and_then(|s| s.split_whitespace().next())
                .and_then(|s| s.parse::<f64>().ok());
            let mut out = vec![Event::Message {
                text: trimmed.to_owned(),
            }];
            if let Some(usd) = session {
                out.push(Event::Cost { usd, total: true });
            }
            return out;
        }
        let lower = trimmed.to_ascii_lowercase();
        if (lower.contains("error") || lower.contains("exception"))
            && let Some(class) = classify_text(trimmed)
        {
            return vec![Event::Error {
                message: trimmed.to_owned(),
                class: Some(class),
            }];
        }
        unparsed(line)
    }
    fn exit(&self, status: Option<i32>, events: &[Event]) -> Option<Class> {
        match (status, last_class(events)) {
            (Some(0), None) => None,
            (_, Some(class)) => Some(class),
            (_, None) => Some(Class::Crash),
        }
    }
    fn after(&self, inv: &Invocation) -> Vec<Event> {
        let Ok(log) = std::fs::read_to_string(inv.scratch.join(LOG)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for line in log.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if v.get("event").and_then(|e| e.as_str()) != Some("message_send") {
                continue;
            }
            let props = v.get("properties").cloned().unwrap_or_default();
            out.push(Event::Usage {
                input: num(&props, &["prompt_tokens"]),
                output: num(&props, &["completion_tokens"]),
                total: false,
            });
            if let Some(usd) = props.get("total_cost").and_then(|c| c.as_f64()) {
                out.push(Event::Cost { usd, total: true });
            }
        }
        out
    }
}
