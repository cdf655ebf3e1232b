//! git-hyperion: a git-native gate for machine-made change requests.
//!
//! The library stores change requests as commit chains under `refs/hyperion/requests/`
//! (`store`), keeps a derived index for fast queue operations (`index`), and implements the
//! queue's state machine on top (`queue`). It never prints: callers (the `git-hyperion`
//! binary) render what it returns.

pub mod apply;
pub mod archive;
pub mod binary;
pub mod budget;
pub mod checkout;
pub mod checks;
pub mod error;
pub mod git;
pub mod hooks;
pub mod index;
pub mod land;
pub mod lost;
pub mod merge;
pub mod model;
pub mod pack;
pub mod patch;
pub mod paths;
pub mod policy;
pub mod queue;
pub mod refs;
pub mod rollback;
pub mod secrets;
pub mod settings;
pub mod spare;
pub mod store;
mod sys;
pub use sys::linux_paths;
pub mod target;
pub mod tiers;
pub mod touched;
pub mod untrusted;
pub mod validate;
pub mod verify;
pub mod worker;
pub mod worktree;

pub use error::{Error, Problem, Result};

/// The version recorded in notes and `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
