//! `command`: any program (`hyperion.agent.command.command`). It gets the prompt in the file
//! named by `HYPERION_PROMPT_FILE` (and nothing on stdin), works in its current directory,
//! and may report events as JSON lines in hyperion's own event model
//! (`{"type":"cost","usd":0.1,"total":true}`); any other line is a message. Exit 0: done;
//! 75 (`EX_TEMPFAIL`): a transient failure, retried; anything else: the last error's class,
//! else a crash.

use super::{Class, Event, Invocation, Provider, last_class, unparsed};

pub struct Script;

impl Provider for Script {
    fn name(&self) -> &'static str {
        "command"
    }
    fn program(&self) -> &'static str {
        "hyperion-agent"
    }
    fn args(&self, _prompt: &str, _inv: &Invocation) -> Vec<String> {
        Vec::new()
    }
    fn env(&self) -> &'static [&'static str] {
        &[]
    }
    fn parse(&self, line: &str) -> Vec<Event> {
        match serde_json::from_str::<Event>(line) {
            Ok(e) => vec![e],
            Err(_) => unparsed(line),
        }
    }
    fn exit(&self, status: Option<i32>, events: &[Event]) -> Option<Class> {
        match status {
            Some(0) => None,
            Some(75) => Some(
                last_class(events)
                    .filter(|c| c.transient())
                    .unwrap_or(Class::Overload),
            ),
            _ => Some(last_class(events).unwrap_or(Class::Crash)),
        }
    }
}
