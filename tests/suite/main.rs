//! The end-to-end suite: real repositories, the real `git` binary and the real `git-hyperion`
//! binary, one module per area. One test binary rather than one per file: the suite links
//! once, and its tests share the cores instead of each file waiting for its slowest test.
//! The attacks on the gate are their own binary (`tests/attacks/`).
//!
//! Run one area with a filter on its module path: `cargo test --release --test suite --
//! worker::` (a filter is a substring: `worker::` also matches `remote_worker::`; add
//! `--skip remote_worker::`, or name the test in full with `--exact`).

#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

mod agents;
mod apply_git;
mod bad_input;
mod binary;
mod chains;
mod check_batch;
mod checkout_landing;
mod checks;
mod ci_recipes;
mod cli;
mod concurrency;
mod crash;
mod dry_run;
mod index;
mod index_faults;
mod ingest;
mod maintenance;
mod observability;
mod patch_props;
mod plan;
mod policy;
mod progress;
mod push;
mod queue_model;
mod remote;
mod remote_worker;
mod report;
mod scale;
mod snapshots;
mod stack;
mod tiers;
mod top;
mod worker;
mod worker_crash;
mod worktree;
