//! Claude Code: `claude -p PROMPT --output-format stream-json --verbose`.
//!
//! Events: `system/init`, `assistant` (message content and per-turn usage), `user`
//! (tool results), `system/api_retry` (the CLI retrying a failed API call), and a final
//! `result` (subtype `success`, `error_max_turns`, `error_max_budget_usd`,
//! `error_during_execution`; `is_error`; `total_cost_usd`; cumulative `usage`). A failed
//! API call can arrive as subtype `success` with `is_error` true. Exit 1 on max turns.

use super::{Class, Event, Invocation, Provider, classify_text, last_class, num, text, unparsed};

pub struct Claude;

impl Provider for Claude {
    fn name(&self) -> &'static str {
        "claude"
    }
    fn program(&self) -> &'static str {
        "claude"
    }
    fn args(&self, prompt: &str, inv: &Invocation) -> Vec<String> {
        let mut a: Vec<String> = ["-p", prompt, "--output-format", "stream-json", "--verbose"]
            .map(str::to_owned)
            .into();
        a.extend(["--permission-mode".into(), "acceptEdits".into()]);
        if let Some(usd) = inv.max_usd {
            a.extend(["--max-budget-usd".into(), format!("{usd}")]);
        }
        if let Some(m) = &inv.model {
            a.extend(["--model".into(), m.clone()]);
        }
        a
    }
    fn env(&self) -> &'static [&'static str] {
        &[
            "ANTHROPIC_API_KEY",
            "CLAUDE_CODE_OAUTH_TOKEN",
            "ANTHROPIC_BASE_URL",
        ]
    }
    fn own_files(&self) -> &'static [&'static str] {
        &[".claude", "CLAUDE.local.md"]
    }
    fn parse(&self, line: &str) -> Vec<Event> {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            return unparsed(line);
        };
        match (text(&v, "type"), text(&v, "subtype")) {
            ("system", "api_retry") => {
                let error = text(&v, "error");
                let class = match error {
                    "rate_limit" => Some(Class::RateLimit),
                    "server_error" | "overloaded" => Some(Class::Overload),
                    "authentication_failed" | "billing_error" => Some(Class::Auth),
                    e => classify_text(e),
                };
                vec![Event::Error {
                    message: format!(
                        "api retry {} of {}: {error}",
                        num(&v, &["attempt"]),
                        num(&v, &["max_retries"])
                    ),
                    class,
                }]
            }
            ("system", _) => Vec::new(),
            ("assistant", _) => {
                let mut out = Vec::new();
                let message = v.get("message").cloned().unwrap_or_default();
                for c in message
                    .get("content")
                    .and_then(|c| c.as_array())
                    .into_iter()
                    .flatten()
                {
                    match text(c, "type") {
                        "text" => out.push(Event::Message {
                            text: text(c, "text").to_owned(),
                        }),
                        "tool_use" => out.push(Event::ToolUse {
                            name: text(c, "name").to_owned(),
                            detail: c.get("input").map(|i| i.to_string()).unwrap_or_default(),
                        }),
                        _ => {}
                    }
                }
                if message.get("usage").is_some() {
                    out.push(Event::Usage {
                        input: num(&message, &["usage", "input_tokens"]),
                        output: num(&message, &["usage", "output_tokens"]),
                        total: false,
                    });
                }
                out
            }
            ("user", _) => Vec::new(),
            ("result", subtype) => {
                let is_error = v.get("is_error").and_then(|b| b.as_bool()).unwrap_or(false);
                let result = text(&v, "result");
                let class = match subtype {
                    "error_max_turns" => Some(Class::MaxTurns),
                    "error_max_budget_usd" => Some(Class::Budget),
                    _ if is_error || subtype != "success" => {
                        Some(classify_text(result).unwrap_or(Class::Crash))
                    }
                    _ => None,
                };
                let mut out = Vec::new();
                if v.get("usage").is_some() {
                    out.push(Event::Usage {
                        input: num(&v, &["usage", "input_tokens"]),
                        output: num(&v, &["usage", "output_tokens"]),
                        total: true,
                    });
                }
                if let Some(usd) = v.get("total_cost_usd").and_then(|c| c.as_f64()) {
                    out.push(Event::Cost { usd, total: true });
                }
                out.push(Event::Result {
                    ok: class.is_none(),
                    text: result.to_owned(),
                    class,
                });
                out
            }
            _ => unparsed(line),
        }
    }
    fn exit(&self, status: Option<i32>, events: &[Event]) -> Option<Class> {
        let verdict = events.iter().rev().find_map(|e| match e {
            Event::Result { ok, class, .. } => Some((*ok, *class)),
            _ => None,
        });
        match (status, verdict) {
            (Some(0), Some((true, _))) => None,
            (_, Some((false, class))) => Some(class.unwrap_or(Class::Crash)),
            // No verdict: the last error said why, or it crashed.
            (_, _) => Some(last_class(events).unwrap_or(Class::Crash)),
        }
    }
}
