//! After the lease: what a worker does with a request it holds, and the checks on what
//! others pushed.
//!
//! - [`worker`]: the pipeline (lease, validate again, hooks, apply, checks, land, record).
//! - [`untrusted`], [`checks`], [`hooks`]: running what hyperion does not trust, bounded.
//! - [`worktree`]: the pooled check slots.
//! - [`land`]: the landing commit, the compare-and-swap onto the target, notes, and a
//!   person's checkout of that branch.
//! - [`rollback`]: revert commits for landed requests.
//! - [`verify`]: checking chains pushed to a server, and local ones for `doctor`.

pub mod checks;
pub mod hooks;
pub mod inspect;
pub mod land;
pub mod rollback;
pub mod untrusted;
pub mod verify;
pub mod worker;
pub mod worktree;
