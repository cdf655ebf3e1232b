//! The one place where failures become `error:` / `hint:` lines and exit codes.
//!
//! Exit codes: 0 done; 1 the thing asked for was refused or failed (rejected request, wrong
//! state, lost lease); 2 usage or environment error.

use std::io::Write;

use hyperion::tui::{clip, shown, shown_line};
use hyperion::{Code, Error, Problem};

/// The most characters of one problem's line on a terminal (the JSON document has it whole).
const PROBLEM_WIDTH: usize = 400;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The request or queue state refused what was asked: exit 1.
    Refused,
    /// Bad usage, bad config, missing repository: exit 2.
    Usage,
    /// The environment failed (git, disk): exit 2.
    Environment,
}

#[derive(Debug)]
pub struct CommandError {
    pub kind: Kind,
    pub code: Code,
    pub message: String,
    pub hints: Vec<String>,
    /// Every problem, for rejected requests (one source each).
    pub problems: Vec<(String, Problem)>,
    /// The command already printed its JSON document; print only the text on stderr.
    pub json_printed: bool,
    /// Named lists of ids (what a batch stopped part-way stored, and what not): one line per
    /// id on stderr, one array each in the JSON document.
    pub lists: Box<[(&'static str, Vec<String>)]>,
}

impl CommandError {
    pub fn usage(message: impl Into<String>) -> CommandError {
        CommandError {
            kind: Kind::Usage,
            code: Code::Usage,
            message: message.into(),
            hints: Vec::new(),
            problems: Vec::new(),
            json_printed: false,
            lists: Box::default(),
        }
    }

    /// The environment failed (git not runnable, a file that cannot be written): exit 2.
    pub fn env(code: Code, message: impl Into<String>) -> CommandError {
        CommandError {
            kind: Kind::Environment,
            code,
            message: message.into(),
            hints: Vec::new(),
            problems: Vec::new(),
            json_printed: false,
            lists: Box::default(),
        }
    }

    pub fn refused(code: Code, message: impl Into<String>) -> CommandError {
        CommandError {
            kind: Kind::Refused,
            code,
            message: message.into(),
            hints: Vec::new(),
            problems: Vec::new(),
            json_printed: false,
            lists: Box::default(),
        }
    }

    /// A bad argument described by a library problem (its code and hint): exit 2.
    pub fn from_problem(p: Problem) -> CommandError {
        CommandError {
            code: p.code,
            ..CommandError::usage(p.message)
        }
        .hint(p.hint)
    }

    /// The same error with another code.
    pub fn code(mut self, code: Code) -> CommandError {
        self.code = code;
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> CommandError {
        self.hints.push(hint.into());
        self
    }

    /// Requests refused by validation, each problem tagged with the source it came from.
    pub fn rejected(problems: Vec<(String, Problem)>) -> CommandError {
        let n_sources = {
            let mut s: Vec<&str> = problems.iter().map(|(s, _)| s.as_str()).collect();
            s.dedup();
            s.len()
        };
        let first = problems
            .first()
            .map(|(_, p)| p.code)
            .unwrap_or(Code::RequestInvalid);
        let mut hints: Vec<String> = Vec::new();
        for (_, p) in &problems {
            if !hints.iter().any(|h| *h == p.hint) {
                hints.push(p.hint.to_string());
            }
        }
        hints.push("nothing was stored; fix the request and submit it again".into());
        CommandError {
            kind: Kind::Refused,
            code: first,
            message: format!(
                "{} problem(s) in {n_sources} request(s); nothing was enqueued",
                problems.len()
            ),
            hints,
            problems,
            json_printed: false,
            lists: Box::default(),
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self.kind {
            Kind::Refused => 1,
            Kind::Usage | Kind::Environment => 2,
        }
    }

    /// Render to stderr; with `json`, also print the error document on stdout for scripts.
    pub fn render(&self, json: bool) {
        // Messages may quote a request, a process's output or git's: redacted as a whole, and
        // shown escaped (a field named with a terminal escape must not drive the terminal,
        // nor a newline in it forge a line of ours); a problem is one line, cut at
        // PROBLEM_WIDTH characters (a value quoted back is the submitter's, of any size).
        let mut text = format!("error: {} [{}]\n", shown(&self.message), self.code);
        for (source, p) in &self.problems {
            let line = shown_line(&format!("{source}: {p}"));
            text.push_str(&format!("  {}\n", clip(&line, PROBLEM_WIDTH)));
        }
        for (name, ids) in self.lists.iter() {
            for id in ids {
                text.push_str(&format!("{name}: {}\n", shown_line(id)));
            }
        }
        for h in &self.hints {
            text.push_str(&format!("hint: {}\n", shown(h)));
        }
        let _ = std::io::stderr()
            .lock()
            .write_all(hyperion::request::secrets::redact(&text).as_bytes());
        if json && !self.json_printed {
            println!(
                "{}",
                hyperion::request::secrets::redact(&self.document().to_string())
            );
        }
    }

    /// The JSON error document (see docs/errors.md), not yet redacted.
    pub fn document(&self) -> serde_json::Value {
        let mut doc = serde_json::json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "hints": self.hints,
                "problems": self.problems.iter().map(|(source, p)| {
                    let mut v = serde_json::to_value(p).expect("a Problem serialises");
                    v["source"] = source.clone().into();
                    v
                }).collect::<Vec<_>>(),
            }
        });
        for (name, ids) in self.lists.iter() {
            doc["error"][*name] = serde_json::json!(ids);
        }
        doc
    }
}

impl From<Error> for CommandError {
    fn from(e: Error) -> CommandError {
        let kind = if e.is_refusal() {
            Kind::Refused
        } else {
            match &e {
                Error::NotFound(_)
                | Error::Ambiguous { .. }
                | Error::Usage(_)
                | Error::Config { .. }
                | Error::Remote {
                    code: Code::RemoteMissing,
                    ..
                } => Kind::Usage,
                _ => Kind::Environment,
            }
        };
        let hint = match &e {
            Error::NotFound(_) => Some("`git hyperion list` shows the requests and their ids"),
            Error::Ambiguous { .. } => Some("give more digits of the id"),
            Error::WrongState { .. } => Some("`git hyperion show ID` shows its state and history"),
            Error::NotOwner { .. } => {
                Some("only the worker holding the lease may do this; check --worker")
            }
            Error::Conflict { .. } => Some(
                "another process changed the request first; nothing was changed by this command",
            ),
            Error::Config { .. } => {
                Some("fix the value with `git config`; `git hyperion config` lists every setting")
            }
            Error::Corrupt { .. } => Some("run `git hyperion doctor` to see what is wrong"),
            Error::Approval { problem, .. } => Some(&*problem.hint),
            Error::Policy { .. } => Some(
                "`git hyperion policy check` lists every problem; fix .hyperion/policy.toml on the target branch",
            ),
            Error::RefStorage(_) => Some(
                "git hyperion stores requests as loose refs and `packed-refs`; use it in a repository made with the default `git init` (ref format `files`); nothing was changed",
            ),
            Error::Incomplete { .. } => Some(
                "the requests listed as stored are in the queue, the others are not; fix the cause and submit them again (a request already stored is not stored twice)",
            ),
            Error::GcIncomplete { .. } => Some(
                "the requests listed as archived are in the bundle and gone from the queue; the ones listed as kept are still in the queue; fix the cause and run `git hyperion gc` again",
            ),
            Error::Remote { code, .. } => match code {
                Code::RemoteMissing => Some(
                    "add it with `git remote add NAME URL`, or name one `git remote` lists (--remote NAME, hyperion.remote)",
                ),
                Code::RemoteUnreachable => Some(
                    "nothing was published; check the remote's URL, the network and your access, then run `git hyperion push`",
                ),
                Code::RemoteConflict => Some(
                    "another machine's transition reached the remote first; `git hyperion fetch` takes the remote's state, `git hyperion doctor` shows what diverged",
                ),
                _ => Some("read the remote's message; nothing was published"),
            },
            Error::Git(_) | Error::Io { .. } => {
                Some("check the repository and disk; nothing was changed by this command")
            }
            _ => None,
        };
        let problems = match &e {
            Error::Rejected {
                source_name,
                problems,
            } => problems
                .iter()
                .map(|p| (source_name.clone(), p.clone()))
                .collect(),
            Error::Policy { origin, problems } => problems
                .iter()
                .map(|p| (origin.clone(), p.clone()))
                .collect(),
            _ => Vec::new(),
        };
        let lists = match &e {
            Error::Incomplete {
                stored, not_stored, ..
            } => vec![
                ("stored", stored.clone()),
                ("not_stored", not_stored.clone()),
            ],
            Error::GcIncomplete { archived, kept, .. } => {
                vec![("archived", archived.clone()), ("kept", kept.clone())]
            }
            _ => Vec::new(),
        };
        CommandError {
            kind,
            lists: lists.into(),
            code: e.code(),
            message: e.to_string(),
            hints: hint.map(str::to_owned).into_iter().collect(),
            problems,
            json_printed: false,
        }
    }
}

pub type CmdResult<T = ()> = Result<T, CommandError>;
