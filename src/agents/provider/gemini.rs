//! Gemini CLI: `gemini -p PROMPT -o stream-json --approval-mode auto_edit`.
//!
//! Events, each with a `timestamp`: `init`, `message` {role, content}, `tool_use`
//! {tool_name, parameters}, `tool_result`, `error` {severity, message}, `result` {status,
//! error, stats{input_tokens, output_tokens}}. No cost. Exit 0 ok, 1 error, 41 auth, 42 input,
//! 44 sandbox, 52 config, 53 turn limit, 54 tool, 55 untrusted workspace, 130 cancelled; an
//! auth failure emits no result event.

use super::{Class, Event, Invocation, Provider, classify_text, last_class, num, text, unparsed};

pub struct Gemini;

impl Provider for Gemini {
    fn name(&self) -> &'static str {
        "gemini"
    }
    fn program(&self) -> &'static str {
        "gemini"
    }
    fn args(&self, prompt: &str, inv: &Invocation) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "-p".into(),
            prompt.into(),
            "-o".into(),
            "stream-json".into(),
            "--approval-mode".into(),
            "auto_edit".into(),
        ];
        if let Some(m) = &inv.model {
            a.extend(["-m".into(), m.clone()]);
        }
        a
    }
    fn env(&self) -> &'static [&'static str] {
        &[
            "GEMINI_API_KEY",
            "GOOGLE_API_KEY",
            "GEMINI_CLI_TRUST_WORKSPACE",
        ]
    }
    fn own_files(&self) -> &'static [&'static str] {
        &[".gemini"]
    }
    fn parse(&self, line: &str) -> Vec<Event> {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            return unparsed(line);
        };
        match text(&v, "type") {
            "init" | "tool_result" => Vec::new(),
            "message" if text(&v, "role") == "user" => Vec::new(),
            "message" => vec![Event::Message {
                text: text(&v, "content").to_owned(),
            }],
            "tool_use" => vec![Event::ToolUse {
                name: text(&v, "tool_name").to_owned(),
                detail: v
                    .get("parameters")
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
            }],
            "error" => vec![Event::Error {
                message: text(&v, "message").to_owned(),
                class: classify_text(text(&v, "message")),
            }],
            "result" => {
                let ok = text(&v, "status") == "success";
                let error = match v.get("error") {
                    Some(e) if e.is_string() => e.as_str().unwrap_or_default().to_owned(),
                    Some(e) if e.is_object() => text(e, "message").to_owned(),
                    _ => String::new(),
                };
                vec![
                    Event::Usage {
                        input: num(&v, &["stats", "input_tokens"]),
                        output: num(&v, &["stats", "output_tokens"]),
                        total: true,
                    },
                    Event::Result {
                        ok,
                        class: (!ok).then(|| classify_text(&error).unwrap_or(Class::Crash)),
                        text: error,
                    },
                ]
            }
            _ => unparsed(line),
        }
    }
    fn exit(&self, status: Option<i32>, events: &[Event]) -> Option<Class> {
        match status {
            Some(0) => None,
            Some(41) => Some(Class::Auth),
            Some(42 | 44 | 52 | 55) => Some(Class::Config),
            Some(53) => Some(Class::MaxTurns),
            Some(130) => Some(Class::Cancelled),
            _ => Some(last_class(events).unwrap_or(Class::Crash)),
        }
    }
}
