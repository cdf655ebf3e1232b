//! Plumbing over gix, and the few things left to the `git` binary. Nothing here knows what a
//! change request is: refs are compared and swapped, objects written into packs, trees read
//! and edited, files recycled.
//!
//! - [`refs`]: compare-and-swap of one loose ref, reads in git's files-backend order.
//! - [`pack`]: new objects as one kept pack, safe from git's maintenance until refs exist.
//! - [`tree`]: a branch's tip, a commit's tree, editing and writing trees.
//! - [`spare`]: files kept to be written again instead of deleted and created.
//! - [`message`]: the trailers of a commit message.
//! - [`command`]: running the `git` binary where git's own implementation is the reference.
//! - [`remote`]: pushes with a lease on each ref, and fetches, through the `git` binary.
//! - [`os`]: every path that works only on Linux, each with its portable fallback.

pub mod command;
pub mod message;
pub mod os;
pub mod pack;
pub mod refs;
pub mod remote;
pub mod spare;
pub mod tree;
