//! The one hermetic environment for every process the tests and benches start (git, the
//! `git-hyperion` binary, shell scripts): no system or user git config, a home of the test's
//! own, a fixed identity and date, UTC, the C locale, and nothing inherited that points git or
//! hyperion elsewhere (`GIT_DIR` and friends, `HYPERION_LOG`, `HYPERION_ACTOR`).
//!
//! Shared as a module file, not as a crate: tests/common/mod.rs declares it, and
//! benches/common/mod.rs includes this same file with `#[path]`. A `[dev-dependencies]` crate
//! would have to depend on git-hyperion's library in turn (a dev-dependency cycle, the
//! library built twice), could not see `CARGO_BIN_EXE_git-hyperion` (cargo sets it for the
//! package's own test and bench targets only), and would be one more manifest for what is
//! a page of code. This file uses only std, so it compiles the same in both places.
//!
//! `HYPERION_PORTABLE` is left as the caller's environment has it: CI runs some tests with
//! the portable paths forced (see .ci/run), and that must reach the binary.

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The `git-hyperion` binary the tests and benches run: this build's, or the one
/// `HYPERION_BIN` names, to run the suite or a bench against an installed binary (such as the
/// statically linked one `install.sh` builds on Linux).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("HYPERION_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_git-hyperion").to_owned())
    })
}

/// The author and committer date of every commit a test or bench makes with git.
pub const DATE: &str = "2026-01-01T00:00:00Z";

/// Set the hermetic environment on `cmd`, with `HOME` at `home`. A caller that needs one of
/// the removed variables (a test of `GIT_DIR`, say) sets it after this.
pub fn hermetic<'c>(cmd: &'c mut Command, home: &Path) -> &'c mut Command {
    cmd.env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("TZ", "UTC")
        .env("LC_ALL", "C")
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.com")
        .env("GIT_AUTHOR_DATE", DATE)
        .env("GIT_COMMITTER_NAME", "Test Committer")
        .env("GIT_COMMITTER_EMAIL", "committer@example.com")
        .env("GIT_COMMITTER_DATE", DATE)
        .env_remove("HYPERION_LOG")
        .env_remove("HYPERION_ACTOR")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_COMMON_DIR")
        .env_remove("GIT_OBJECT_DIRECTORY")
        .env_remove("GIT_ALTERNATE_OBJECT_DIRECTORIES")
}

/// `program` run in `dir`, hermetic, with `HOME` at `home`.
pub fn command(program: impl AsRef<std::ffi::OsStr>, dir: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(dir);
    hermetic(&mut cmd, home);
    cmd
}

/// git run in `dir` (also its `HOME`), with `input` on its standard input; its output,
/// whether it succeeded or not.
pub fn git_output(dir: &Path, args: &[&str], input: &[u8]) -> Output {
    pipe(command("git", dir, dir).args(args), input)
}

/// git run in `dir` (also its `HOME`); panics with git's message when it fails. Its standard
/// output.
pub fn git(dir: &Path, args: &[&str]) -> String {
    String::from_utf8_lossy(&git_ok(dir, args, b"")).into_owned()
}

/// git run in `dir` with `input` on its standard input; panics with git's message when it
/// fails. Its standard output, as bytes.
pub fn git_ok(dir: &Path, args: &[&str], input: &[u8]) -> Vec<u8> {
    succeeded(&format!("git {args:?}"), git_output(dir, args, input)).stdout
}

/// `out`, when its process succeeded; panics with `what` and its standard error otherwise.
pub fn succeeded(what: &str, out: Output) -> Output {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Run `cmd` with `input` on its stdin; its output.
pub fn pipe(cmd: &mut Command, input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns");
    let mut stdin = child.stdin.take().expect("piped");
    stdin.write_all(input).expect("writes stdin");
    drop(stdin);
    child.wait_with_output().expect("waits")
}
