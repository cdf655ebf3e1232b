//! Codex: `codex exec --json PROMPT` (stdout: JSONL only).
//!
//! Events: `thread.started`, `turn.started`, `turn.completed` {usage}, `turn.failed`
//! {error{message}}, `item.started|updated|completed` {item{type: agent_message, reasoning,
//! command_execution, file_change, …}}, and a top-level `error` {message}. No cost, no turn
//! cap. Exit 1 on any error; a usage limit arrives as a JSONL error.

use super::{Class, Event, Invocation, Provider, classify_text, last_class, num, text, unparsed};

pub struct Codex;

impl Provider for Codex {
    fn name(&self) -> &'static str {
        "codex"
    }
    fn program(&self) -> &'static str {
        "codex"
    }
    fn args(&self, prompt: &str, inv: &Invocation) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "exec".into(),
            "--json".into(),
            "--skip-git-repo-check".into(),
            "-s".into(),
            "workspace-write".into(),
        ];
        if let Some(m) = &inv.model {
            a.extend(["-m".into(), m.clone()]);
        }
        a.push(prompt.into());
        a
    }
    fn env(&self) -> &'static [&'static str] {
        &["CODEX_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL"]
    }
    fn parse(&self, line: &str) -> Vec<Event> {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            return unparsed(line);
        };
        let error = |message: &str| Event::Error {
            message: message.to_owned(),
            class: Some(classify_text(message).unwrap_or(Class::Crash)),
        };
        match text(&v, "type") {
            "thread.started" | "turn.started" | "item.started" | "item.updated" => Vec::new(),
            "turn.completed" => vec![Event::Usage {
                input: num(&v, &["usage", "input_tokens"]),
                output: num(&v, &["usage", "output_tokens"]),
                total: false,
            }],
            "turn.failed" => {
                let e = v.get("error").cloned().unwrap_or_default();
                vec![error(text(&e, "message"))]
            }
            "error" => vec![error(text(&v, "message"))],
            "item.completed" => {
                let item = v.get("item").cloned().unwrap_or_default();
                match text(&item, "type") {
                    "agent_message" => vec![Event::Message {
                        text: text(&item, "text").to_owned(),
                    }],
                    "command_execution" => vec![Event::ToolUse {
                        name: "command".into(),
                        detail: text(&item, "command").to_owned(),
                    }],
                    "file_change" => vec![Event::ToolUse {
                        name: "file_change".into(),
                        detail: item
                            .get("changes")
                            .map(|c| c.to_string())
                            .unwrap_or_default(),
                    }],
                    "error" => vec![error(text(&item, "message"))],
                    "" => Vec::new(),
                    other => vec![Event::ToolUse {
                        name: other.to_owned(),
                        detail: String::new(),
                    }],
                }
            }
            _ => unparsed(line),
        }
    }
    fn exit(&self, status: Option<i32>, events: &[Event]) -> Option<Class> {
        match status {
            Some(0) => None,
            _ => Some(last_class(events).unwrap_or(Class::Crash)),
        }
    }
}
