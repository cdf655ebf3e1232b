//! Library errors, each with a stable [`Code`] (docs/errors.md is the catalogue).
//!
//! The CLI maps these to `error:` / `hint:` lines and exit codes in one place
//! (`cli::error`); the library only describes what went wrong.

use serde::Serialize;

pub use crate::code::Code;

/// One problem found in a submitted request. Validation collects all of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Stable error code, e.g. `request.unknown_field`.
    pub code: Code,
    /// JSON pointer of the offending field (`/changes/0/sha256`) or a path in the repository.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// 1-based line in the patch, when the problem is inside one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub message: String,
    pub hint: std::borrow::Cow<'static, str>,
}

impl Problem {
    pub fn new(
        code: Code,
        message: impl Into<String>,
        hint: impl Into<std::borrow::Cow<'static, str>>,
    ) -> Problem {
        Problem {
            code,
            field: None,
            line: None,
            message: message.into(),
            hint: hint.into(),
        }
    }

    pub fn at(mut self, field: impl Into<String>) -> Problem {
        self.field = Some(field.into());
        self
    }

    pub fn line(mut self, line: usize) -> Problem {
        self.line = Some(line);
        self
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] ", self.code)?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        f.write_str(&self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request was refused; nothing was stored.
    #[error("{source_name}: request refused: {}", .problems.first().map(|p| p.to_string()).unwrap_or_default())]
    Rejected {
        source_name: String,
        problems: Vec<Problem>,
    },
    #[error("no request matches '{0}'")]
    NotFound(String),
    #[error("'{prefix}' matches more than one request ({candidates})")]
    Ambiguous { prefix: String, candidates: String },
    #[error("request {id} is {actual}, but this needs it {expected}")]
    WrongState {
        id: String,
        actual: crate::request::model::Status,
        expected: String,
    },
    #[error("request {id} is leased by '{owner}', not by '{worker}'")]
    NotOwner {
        id: String,
        owner: String,
        worker: String,
    },
    #[error("request {id} changed under us: {what}")]
    Conflict { id: String, what: String },
    /// An approval was refused: the actor may not approve, or nobody may (the problem says).
    #[error("cannot approve {id}: {}", .problem.message)]
    Approval { id: String, problem: Box<Problem> },
    #[error("invalid value for {key}: {message}")]
    Config { key: String, message: String },
    #[error("{0}")]
    Usage(String),
    /// The policy file of the target cannot be read: every problem, each with its line.
    #[error("invalid policy: {}", policy_summary(origin, problems))]
    Policy {
        origin: String,
        problems: Vec<Problem>,
    },
    #[error("request {id} is stored in a form this version cannot read: {message}")]
    Corrupt { id: String, message: String },
    #[error("git: {0}")]
    Git(String),
    /// The repository keeps its refs in a format hyperion does not write (reftable).
    #[error("{0}")]
    RefStorage(String),
    /// A batch stopped part-way: `stored` are in the queue, `not_stored` are not.
    #[error(
        "{} of {} request(s) stored, {} not: {cause}",
        stored.len(),
        stored.len() + not_stored.len(),
        not_stored.len()
    )]
    Incomplete {
        stored: Vec<String>,
        not_stored: Vec<String>,
        cause: Box<Error>,
    },
    /// `gc` stopped part-way: `archived` are in `bundle` and gone from the queue, `kept` are
    /// in the bundle too but still in the queue.
    #[error(
        "gc stopped part-way: {} of {} request(s) archived into {bundle} and removed, {} kept: {cause}",
        archived.len(),
        archived.len() + kept.len(),
        kept.len()
    )]
    GcIncomplete {
        archived: Vec<String>,
        kept: Vec<String>,
        bundle: String,
        cause: Box<Error>,
    },
    /// A plan or an agent's settings cannot be used (`agent.*`); nothing ran.
    #[error("{message}")]
    Agent { code: Code, message: String },
    /// Pushing to or fetching from a remote failed or was refused; the code says how.
    #[error("{message}")]
    Remote { code: Code, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing git's objects (through gix) failed: what was being done, and gix's
    /// error kept as the source.
    #[error("git: {context}: {source}")]
    Object {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl Error {
    /// The stable code of this error.
    pub fn code(&self) -> Code {
        match self {
            Error::Rejected { problems, .. } => problems
                .first()
                .map(|p| p.code)
                .unwrap_or(Code::RequestInvalid),
            Error::NotFound(_) => Code::RequestNotFound,
            Error::Ambiguous { .. } => Code::RequestAmbiguousId,
            Error::WrongState { .. } => Code::QueueWrongState,
            Error::NotOwner { .. } => Code::QueueNotOwner,
            Error::Conflict { .. } => Code::QueueConflict,
            Error::Approval { problem, .. } => problem.code,
            Error::Config { .. } => Code::ConfigInvalid,
            Error::Usage(_) => Code::Usage,
            Error::Policy { .. } => Code::PolicyInvalid,
            Error::Corrupt { .. } => Code::StoreCorrupt,
            Error::Git(_) | Error::Object { .. } => Code::EnvGit,
            Error::RefStorage(_) => Code::EnvRefStorage,
            Error::Incomplete { .. } => Code::StoreIncomplete,
            Error::GcIncomplete { .. } => Code::StoreGcIncomplete,
            Error::Io { .. } => Code::EnvIo,
            Error::Remote { code, .. } => *code,
            Error::Agent { code, .. } => *code,
        }
    }

    /// Whether the error is about the request or queue state (exit 1) rather than the
    /// environment or usage (exit 2).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Error::Rejected { .. }
                | Error::WrongState { .. }
                | Error::NotOwner { .. }
                | Error::Conflict { .. }
                | Error::Approval { .. }
                | Error::Remote {
                    code: Code::RemoteConflict | Code::RemoteRejected | Code::RemoteDiverged,
                    ..
                }
        )
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub fn git(e: impl std::fmt::Display) -> Error {
        Error::Git(e.to_string())
    }

    /// [`Error::Object`]: `context` says what was being done, `source` is gix's error.
    pub fn object(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::Object {
            context: context.into(),
            source: Box::new(source),
        }
    }
}

/// `ORIGIN:LINE: message`, like a compiler, plus how many more problems there are.
fn policy_summary(origin: &str, problems: &[Problem]) -> String {
    let Some(first) = problems.first() else {
        return origin.to_owned();
    };
    let at = match first.line {
        Some(line) => format!("{origin}:{line}"),
        None => origin.to_owned(),
    };
    let more = match problems.len() {
        1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    };
    format!("{at}: {}{more}", first.message)
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_error_keeps_gix_s_error_as_its_source() {
        let dir = tempfile::tempdir().expect("temp dir");
        crate::git::command::text(dir.path(), &["init", "-q"]).expect("git init");
        let repo = gix::open(dir.path()).expect("open");
        let missing = gix::ObjectId::from_hex(&[b'1'; 40]).expect("hex");
        let e = crate::git::tree::tree_of(&repo, missing).expect_err("no such commit");
        assert!(matches!(e, Error::Object { .. }), "{e:?}");
        assert_eq!(e.code(), Code::EnvGit);
        let source = std::error::Error::source(&e).expect("gix's error is kept");
        assert_eq!(
            e.to_string(),
            format!("git: cannot read the tree of {missing}: {source}")
        );
    }
}
