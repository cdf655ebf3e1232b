//! What the harness redacts: the prompt before anything is sent to an agent, and every line
//! an agent writes before it is stored. The rules are the gate's own
//! ([`crate::request::secrets::redactor`]: the built-in rules, every policy's secret rules
//! this process has read — the target's is read before a run starts — and secret-looking
//! environment values), plus the patterns of `hyperion.agent.redact` and the values of the
//! variables named by `hyperion.agent.redactEnv`.

use std::borrow::Cow;
use std::collections::BTreeSet;

use crate::request::secrets::{Rule, Scanner};

/// Redacts with the gate's rules and the harness's own.
#[derive(Debug)]
pub struct Redactor {
    extra: Option<Scanner>,
}

impl Redactor {
    /// The gate's rules plus `patterns` (regular expressions) and the values of the variables
    /// named in `env_names` (when set and not empty). A pattern that does not compile is an
    /// error naming it.
    pub fn new(patterns: &[String], env_names: &[String]) -> Result<Redactor, String> {
        let mut rules = Vec::new();
        for (i, p) in patterns.iter().enumerate() {
            let rule = Rule::new(format!("agent.redact.{}", i + 1), "a configured pattern", p)
                .map_err(|e| format!("hyperion.agent.redact '{p}': {e}"))?;
            rules.push(rule);
        }
        for name in env_names {
            let Ok(value) = std::env::var(name) else {
                continue;
            };
            let lines: Vec<String> = value
                .lines()
                .map(str::trim)
                .filter(|l| l.len() >= 4)
                .map(regex::escape)
                .collect();
            if lines.is_empty() {
                continue;
            }
            let rule = Rule::new(
                format!("env:{name}"),
                format!("the value of {name}"),
                &lines.join("|"),
            )
            .map_err(|e| format!("hyperion.agent.redactEnv {name}: {e}"))?;
            rules.push(rule);
        }
        let extra = (!rules.is_empty()).then(|| Scanner::new(&all_builtin_names(), rules));
        Ok(Redactor { extra })
    }

    /// `text` with every match replaced by `[redacted RULE]`, and how many matches there were.
    pub fn redact(&self, text: &str) -> (String, usize) {
        let mut count = 0;
        let first = crate::request::secrets::redactor();
        count += first.find_all(text.as_bytes()).len();
        let mut out = match first.redact_str(text) {
            Cow::Borrowed(t) => t.to_owned(),
            Cow::Owned(t) => t,
        };
        if let Some(extra) = &self.extra {
            count += extra.find_all(out.as_bytes()).len();
            if let Cow::Owned(t) = extra.redact_str(&out) {
                out = t;
            }
        }
        (out, count)
    }

    /// [`Redactor::redact`], the text alone.
    pub fn text(&self, text: &str) -> String {
        self.redact(text).0
    }
}

/// The built-in rules, disabled in the harness's own scanner (the gate's redactor has them).
fn all_builtin_names() -> BTreeSet<String> {
    Scanner::builtin()
        .names()
        .into_iter()
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_patterns_and_named_variables_are_redacted() {
        // A variable every test process has: its value is redacted like a secret's.
        let path = std::env::var("PATH").expect("PATH is set");
        let r = Redactor::new(&["ticket-[0-9]{4}".into()], &["PATH".into()]).expect("valid");
        let key = format!("AKIA{}", "Z7Q3R5T1V9X2B4D6");
        let (out, n) = r.redact(&format!("see ticket-1234 and {path} and {key}"));
        assert!(!out.contains("ticket-1234"), "{out}");
        assert!(!out.contains(&path), "{out}");
        assert!(!out.contains(&key), "{out}");
        assert!(n >= 3, "{n}");
        assert!(Redactor::new(&["(".into()], &[]).is_err());
    }
}
