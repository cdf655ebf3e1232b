//! The gate attacked the way a hostile agent, a forged push or a crash would attack it.
//!
//! Every case plants an attack and asserts the same things: the request is refused (exit 1,
//! `error:` + `hint:` + a stable code) or parked as a dead letter with a stable code, nothing
//! of it landed, the user's branches, tags and checkout are untouched, and no planted secret
//! is stored anywhere in `.git` (every object decompressed, every other file byte for byte).
//!
//! One module per class of attack; `harness` holds what they share.

#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

mod bombs;
mod harness;

mod adopt;
mod batch;
mod injection;
mod landing;
mod paths;
mod procs;
mod push;
mod secrets;
mod target;
mod tiers;
