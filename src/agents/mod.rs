//! Agents in, gated changes out: the orchestrator and the agent harness.
//!
//! This layer sits above [`crate::gate`]: it turns a task request into a plan of assignments
//! (`plan`), runs agents headless on them through provider adapters, and submits what they
//! changed as change requests, which the gate then takes like any other. It never lands
//! anything itself: whatever an agent produces reaches a branch only through the queue.
//!
//! - [`model`]: the task request (`hyperion.task-request/v1`) and the plan
//!   (`hyperion.plan/v1`) as they are read and written, with no behaviour beyond serde.
//! - [`task`]: reading and checking a task request.
//! - [`plan`]: a task made into assignments against the target tip (owners, domains,
//!   token sizes, templates, dependencies).
//! - [`provider`]: one adapter per agent CLI behind one trait, mapping its output to one
//!   event model and its failures to classes.
//! - [`harness`]: one agent run safely: process group, scrubbed environment, redaction,
//!   budgets enforced while it runs, watchdog, retries, the stamped transcript.
//! - [`redact`]: what prompts and transcripts are redacted with.
//! - [`run`]: a plan's assignments in worktrees, their diffs enqueued as change requests.

pub mod harness;
pub mod model;
pub mod plan;
pub mod provider;
pub mod redact;
pub mod run;
pub mod task;
