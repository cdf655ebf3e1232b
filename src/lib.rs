//! git-hyperion: a git-native gate for machine-made change requests.
//!
//! The crate is built in layers; each imports only the layers below it:
//!
//! - `cli`, in the binary (`src/cli/`): commands and their output.
//! - [`tui`]: what a terminal shows: the one escaping of hostile text for it, and `top`'s
//!   state, rendering (into a ratatui frame, never to the terminal) and background poller.
//! - [`agents`]: the orchestrator and the agent harness: task requests, plans, agents run
//!   headless, their work submitted as change requests.
//! - [`obs`]: observability: Prometheus metrics of the queue (from its records) and of a
//!   running worker (from its event stream), and the `/metrics` endpoint.
//! - [`gate`]: after the lease: the worker's pipeline, untrusted checks and hooks, check
//!   worktrees, landing, rollback, the verification of pushed chains, and `inspect` (all
//!   that is stored about one request).
//! - [`queue`]: the state machine over refs: the request store, the derived index, settings,
//!   the queue's operations (storing, leases and transitions, sweep/gc/doctor, reads),
//!   retention and repair, and what comes in: pushed branches and spooled request files.
//! - [`request`]: what a change request is and whether it may land: format, patches, paths,
//!   limits, policy and tiers, secrets, validation, the in-memory apply engine.
//! - [`git`]: plumbing that knows nothing of requests: ref compare-and-swap, kept packs, trees,
//!   spawning git, and the operating system's fast paths with their portable fallbacks.
//! - [`error`]: the error type every layer returns, each error with a stable [`code`]
//!   ([`Code`], the catalogue of docs/errors.md); [`duration`]: durations as people write them.
//!
//! The library never prints: callers (the `git-hyperion` binary) render what it returns.

pub mod agents;
pub mod code;
pub mod duration;
pub mod error;
pub mod gate;
pub mod git;
pub mod obs;
pub mod queue;
pub mod request;
pub mod tui;

pub use code::Code;
pub use error::{Error, Problem, Result};
pub use git::os::linux_paths;

/// The version recorded in notes and `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
