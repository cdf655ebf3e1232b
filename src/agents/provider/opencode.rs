//! opencode: `opencode run --format json PROMPT`.
//!
//! JSON lines {type, timestamp, sessionID, part}: `step_start`, `text`, `reasoning`,
//! `tool_use`, `step_finish` {part.cost, part.tokens{input, output}}, `error`, `done`
//! {rejected[]}. Exit 1 on error; an auto-rejected permission exits 0 with empty output.

use super::{Class, Event, Invocation, Provider, classify_text, last_class, num, text, unparsed};

pub struct Opencode;

impl Provider for Opencode {
    fn name(&self) -> &'static str {
        "opencode"
    }
    fn program(&self) -> &'static str {
        "opencode"
    }
    fn args(&self, prompt: &str, inv: &Invocation) -> Vec<String> {
        let mut a: Vec<String> = vec!["run".into(), "--format".into(), "json".into()];
        if let Some(m) = &inv.model {
            a.extend(["-m".into(), m.clone()]);
        }
        a.push(prompt.into());
        a
    }
    fn env(&self) -> &'static [&'static str] {
        &["ANTHROPIC_API_KEY", "OPENAI_API_KEY", "OPENCODE_CONFIG"]
    }
    fn own_files(&self) -> &'static [&'static str] {
        &[".opencode"]
    }
    fn parse(&self, line: &str) -> Vec<Event> {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            return unparsed(line);
        };
        let part = v.get("part").cloned().unwrap_or_default();
        match text(&v, "type") {
            "step_start" | "reasoning" => Vec::new(),
            "text" => vec![Event::Message {
                text: text(&part, "text").to_owned(),
            }],
            "tool_use" => vec![Event::ToolUse {
                name: text(&part, "tool").to_owned(),
                detail: part.get("state").map(|s| s.to_string()).unwrap_or_default(),
            }],
            "step_finish" => {
                let mut out = vec![Event::Usage {
                    input: num(&part, &["tokens", "input"]),
                    output: num(&part, &["tokens", "output"]),
                    total: false,
                }];
                if let Some(usd) = part.get("cost").and_then(|c| c.as_f64()) {
                    out.push(Event::Cost { usd, total: false });
                }
                out
            }
            "error" => {
                let e = v.get("error").cloned().unwrap_or_default();
                let message = match e.as_str() {
                    Some(s) => s.to_owned(),
                    None => text(&e, "message").to_owned(),
                };
                vec![Event::Error {
                    class: Some(classify_text(&message).unwrap_or(Class::Crash)),
                    message,
                }]
            }
            "done" => {
                let rejected = v
                    .get("rejected")
                    .and_then(|r| r.as_array())
                    .is_some_and(|r| !r.is_empty());
                vec![Event::Result {
                    ok: !rejected,
                    text: if rejected {
                        "permission requests were rejected".into()
                    } else {
                        String::new()
                    },
                    class: rejected.then_some(Class::Config),
                }]
            }
            _ => unparsed(line),
        }
    }
    fn exit(&self, status: Option<i32>, events: &[Event]) -> Option<Class> {
        match status {
            Some(0) => last_class(events)
                .filter(|_| matches!(events.last(), Some(Event::Result { ok: false, .. }))),
            _ => Some(last_class(events).unwrap_or(Class::Crash)),
        }
    }
}
