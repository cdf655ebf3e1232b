//! A repository's own history as patches: the commits along HEAD's first-parent line and the
//! `git diff` between two of them. The one way tests (tests/suite/stack.rs) and benches
//! (benches/everyday.rs) replay real history; shared as a module file, like [`super::hermetic`]
//! (benches/common/mod.rs includes this same file with `#[path]`).

use std::path::Path;

use super::hermetic;

/// The last `n` commits along HEAD's first-parent line in `dir`, with the one they start from:
/// up to `n + 1` commits, oldest first (fewer where the history is shorter or shallow). With
/// `no_merges`, merge commits are passed over. `None` when git fails.
pub fn first_parent(dir: &Path, n: usize, no_merges: bool) -> Option<Vec<String>> {
    let max = format!("--max-count={}", n + 1);
    let mut args = vec!["rev-list", "--first-parent"];
    if no_merges {
        args.push("--no-merges");
    }
    args.extend([max.as_str(), "HEAD"]);
    let out = hermetic::git_output(dir, &args, b"");
    if !out.status.success() {
        return None;
    }
    let mut commits: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    commits.reverse();
    Some(commits)
}

/// `git diff --full-index --binary FROM TO` in `dir`, which must succeed: a patch that
/// `git hyperion enqueue --patch` takes.
pub fn diff(dir: &Path, from: &str, to: &str) -> String {
    hermetic::git(dir, &["diff", "--full-index", "--binary", from, to])
}
