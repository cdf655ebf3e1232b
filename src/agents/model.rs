//! The task request (`hyperion.task-request/v1`, schemas/task-request.schema.json) and the
//! plan (`hyperion.plan/v1`) that `plan` writes and `run --plan` reads.
//!
//! Serde types only: planning lives in `plan`, running in the harness. Unknown fields are
//! refused, as in change requests, so a misspelt budget never silently means "no budget".

use serde::{Deserialize, Serialize};

/// The `schema` value of a task request.
pub const TASK_SCHEMA_V1: &str = "hyperion.task-request/v1";
/// The `schema` value of a plan.
pub const PLAN_SCHEMA_V1: &str = "hyperion.plan/v1";

/// What a person (or a bot) asks the agents to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRequest {
    pub schema: String,
    /// The task id: every request made for this task carries it as its `task_id`.
    pub task_id: String,
    pub title: String,
    /// What to do, in the words given to the agents (rendered into each assignment's
    /// instructions by the template of the task's kind).
    pub instructions: String,
    pub kind: TaskKind,
    /// Paths and globs (the policy's glob syntax) the work may touch; empty: the whole tree.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope: Vec<String>,
    /// The branch the work lands on (default: the queue's default target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default = "default_priority")]
    pub priority: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla: Option<Sla>,
    #[serde(default, skip_serializing_if = "Budget::is_empty")]
    pub budget: Budget,
    /// Providers to use, in order of preference (`claude`, `codex`, `gemini`, `aider`,
    /// `opencode`, `command`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<String>,
    /// Task ids (or request ids) this task builds on; they land first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Checks every request of the task must pass (names of the policy's `[checks.NAME]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<String>,
}

fn default_priority() -> u8 {
    crate::request::model::DEFAULT_PRIORITY
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Feature,
    Bugfix,
    Refactor,
    Docs,
    Test,
    Chore,
}

impl TaskKind {
    pub const ALL: [TaskKind; 6] = [
        TaskKind::Feature,
        TaskKind::Bugfix,
        TaskKind::Refactor,
        TaskKind::Docs,
        TaskKind::Test,
        TaskKind::Chore,
    ];

    /// The name used in files and templates (`feature`, `bugfix`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Feature => "feature",
            TaskKind::Bugfix => "bugfix",
            TaskKind::Refactor => "refactor",
            TaskKind::Docs => "docs",
            TaskKind::Test => "test",
            TaskKind::Chore => "chore",
        }
    }
}

/// When the work is due: an absolute deadline, or a duration from when the plan is made
/// (`30m`, `2h`, as [`crate::duration::parse`] reads them). Exactly one of the two.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sla {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<jiff::Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<String>,
}

/// Limits on what the agents may spend. Every field is optional: absent means no limit of
/// that kind. In a task it is the whole run's budget; in an assignment, that assignment's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Dollars, where the agent's CLI reports its cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd: Option<f64>,
    /// Input plus output tokens, as the CLI reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    /// Wall time of one agent run (`20m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_time: Option<String>,
    /// Agent runs, retries of transient failures included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
}

impl Budget {
    pub fn is_empty(&self) -> bool {
        *self == Budget::default()
    }
}

/// What `plan` makes of a task: assignments forming a DAG (`depends_on` names assignment
/// ids of the same plan; every edge points to an earlier assignment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub schema: String,
    pub task_id: String,
    pub title: String,
    pub kind: TaskKind,
    /// The target branch, resolved.
    pub target: String,
    /// The target's tip the plan was made against (full commit id).
    pub base: String,
    pub created_at: jiff::Timestamp,
    /// The largest instructions-plus-context size an assignment may have, in tokens.
    pub max_tokens: u64,
    /// The name of the tokenizer the counts were made with (e.g. `o200k_base`).
    pub tokenizer: String,
    #[serde(default, skip_serializing_if = "Budget::is_empty")]
    pub budget: Budget,
    pub assignments: Vec<Assignment>,
    /// Reference cycles between assignments (mutual imports) and how the plan sequenced
    /// them: inside a cycle the planning order is kept and the references pointing forward
    /// are dropped from `depends_on` (listed here, so a person sees why).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cycles: Vec<Cycle>,
}

/// Assignments that reference each other's files in a cycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cycle {
    /// The assignment ids of the cycle, in plan order.
    pub assignments: Vec<String>,
    /// The references the plan did not turn into `depends_on` edges.
    pub dropped: Vec<DroppedReference>,
}

/// `assignment`'s `file` uses `uses`, a file of `depends_on`, an assignment later in the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DroppedReference {
    pub assignment: String,
    pub depends_on: String,
    pub file: String,
    pub uses: String,
}

/// One agent's share of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assignment {
    /// `<task_id>/<n>`, n from 1 in plan order: the `task_id` of the request it becomes.
    pub id: String,
    pub title: String,
    pub kind: TaskKind,
    /// The files the assignment owns (repository paths, sorted). Every file of the task's
    /// scope is in exactly one assignment.
    pub files: Vec<String>,
    /// The instructions given to the agent, rendered from the kind's template.
    pub instructions: String,
    /// Tokens of `instructions` plus the files' contents.
    pub tokens: u64,
    /// Owners from CODEOWNERS (or the policy), in the file's syntax (`@team`, emails).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<String>,
    /// The repository domain (a workspace member or top-level directory).
    pub domain: String,
    pub priority: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<jiff::Timestamp>,
    /// Assignment ids of this plan that must land first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    #[serde(default, skip_serializing_if = "Budget::is_empty")]
    pub budget: Budget,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<String>,
}
