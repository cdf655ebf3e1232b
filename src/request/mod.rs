//! What a change request is, and whether it may land: its format, its patches, the paths it
//! touches, the limits it must stay within, the policy and risk tiers of its target, secrets,
//! and the in-memory apply engine. Everything here is a pure judgement over a request and the
//! target's tree; nothing changes a repository.
//!
//! - [`model`]: change requests, queue records, transition events, error codes.
//! - [`patch`], [`binary`]: unified diffs and `GIT binary patch` blocks.
//! - [`target`]: the one place a target name becomes a branch.
//! - [`paths`], [`touched`]: which paths a request names, and the rules about them.
//! - [`limits`]: what a request may cost (files, lines, inflated sizes).
//! - [`policy`], [`tiers`]: the target's rules; which tiers a request falls in.
//! - [`secrets`]: the one scanner for secrets, and redaction.
//! - [`view`]: read-only views of the tree a request is judged against.
//! - [`schema`]: the shipped JSON Schemas compiled, and their errors as problems (task
//!   requests' too); names and values quoted into messages escaped and cut.
//! - [`validate`]: schema, then everything that depends on the target.
//! - [`apply`], [`merge`]: patches onto a tree, with git's 3-way fallback.

pub mod apply;
pub mod binary;
pub mod limits;
pub mod merge;
pub mod model;
pub mod patch;
pub mod paths;
pub mod policy;
pub mod schema;
pub mod secrets;
pub mod target;
pub mod tiers;
pub mod touched;
pub mod validate;
pub mod view;
