//! Path rules for what a request may touch: safe repository paths, `file_targets` globs, and
//! where a symlink leads.
//!
//! A path is refused if it could escape the work tree or reach git's own files on any
//! platform git supports: `..` and absolute paths, a `.git` component compared the way git's
//! `core.protectNTFS`/`core.protectHFS` compare it (case-insensitively, ignoring trailing dots
//! and spaces, the 8.3 short name `git~1`, and the Unicode code points HFS+ ignores), and NUL,
//! control characters or backslashes. It is also refused if a file system could not hold it:
//! git itself stores any length in a tree, but a checkout of a longer name fails, and with it
//! every later checkout in the same work tree.
//!
//! A symlink is judged by following it ([`resolve_link`]) through the tree it will be part of,
//! the way the kernel would: each symlink met on the way is expanded, up to a depth.

use std::collections::VecDeque;

use crate::code::Code;

/// Longest path component, in bytes: `NAME_MAX` of ext4, xfs, btrfs and APFS (255 bytes) and
/// NTFS (255 UTF-16 units, never more than the UTF-8 bytes).
pub const MAX_COMPONENT_BYTES: usize = 255;

/// Longest path, in bytes: Linux's `PATH_MAX` is 4096 bytes with the terminating NUL. Also
/// the longest symlink target `symlink(2)` accepts.
pub const MAX_PATH_BYTES: usize = 4095;

/// Most symlinks followed while resolving one: Linux's limit before `ELOOP`.
pub const MAX_LINK_DEPTH: usize = 40;

/// Why a path is refused: a stable code and the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// `path.unsafe` or `path.too_long`.
    pub code: Code,
    pub reason: &'static str,
}

const fn unsafe_path(reason: &'static str) -> Refused {
    Refused {
        code: Code::PathUnsafe,
        reason,
    }
}

/// Whether `path` may be touched by a request: `Err` says why not.
pub fn check(path: &str) -> Result<(), Refused> {
    if path.is_empty() {
        return Err(unsafe_path("the path is empty"));
    }
    if path.starts_with('/') {
        return Err(unsafe_path("absolute paths are not allowed"));
    }
    if path.chars().any(|c| c.is_control()) {
        return Err(unsafe_path("the path contains NUL or a control character"));
    }
    if path.contains('\\') {
        return Err(unsafe_path("backslashes are not allowed in paths"));
    }
    if path.len() >= 2 && path.as_bytes()[1] == b':' && path.as_bytes()[0].is_ascii_alphabetic() {
        return Err(unsafe_path("drive-letter paths are not allowed"));
    }
    let mut long_component = false;
    for component in path.split('/') {
        match component {
            "" => {
                return Err(unsafe_path(
                    "the path has an empty component (`//` or a trailing `/`)",
                ));
            }
            "." | ".." => return Err(unsafe_path("`.` and `..` components are not allowed")),
            c if is_dotgit(c) => return Err(unsafe_path("paths inside `.git` are not allowed")),
            c => long_component |= c.len() > MAX_COMPONENT_BYTES,
        }
    }
    if long_component {
        return Err(Refused {
            code: Code::PathTooLong,
            reason: "a component of the path is longer than 255 bytes, more than file systems hold (NAME_MAX)",
        });
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(Refused {
            code: Code::PathTooLong,
            reason: "the path is longer than 4095 bytes, more than file systems hold (PATH_MAX)",
        });
    }
    Ok(())
}

/// Why a path is not acceptable, or `None` when it is (see [`check`]).
pub fn unsafe_reason(path: &str) -> Option<&'static str> {
    check(path).err().map(|r| r.reason)
}

/// The first of `paths` that [`check`] refuses, with why: for a last look at the paths of a
/// tree about to be written.
pub fn first_refused<'p>(paths: impl IntoIterator<Item = &'p str>) -> Option<(&'p str, Refused)> {
    paths
        .into_iter()
        .find_map(|p| check(p).err().map(|r| (p, r)))
}

/// The code points HFS+ ignores when it compares names.
fn hfs_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{200c}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{206a}'..='\u{206f}' | '\u{feff}'
    )
}

/// Whether a path component names `.git` on some filesystem git supports.
pub fn is_dotgit(component: &str) -> bool {
    let stripped: String = component.chars().filter(|c| !hfs_ignorable(*c)).collect();
    // NTFS ignores trailing dots and spaces, and accepts `::$INDEX_ALLOCATION` stream names.
    let base = stripped.split(':').next().unwrap_or("");
    let trimmed = base.trim_end_matches(['.', ' ']);
    let lower = trimmed.to_ascii_lowercase();
    lower == ".git" || lower == "git~1"
}

/// Whether `path` matches the glob `pattern`, with git's own glob rules (gix-glob's port of
/// git's `wildmatch`, as for `.gitignore` and pathspecs): `*` matches within one path
/// component, `**` as a whole component matches any number of them, `?` one byte, `[abc]`,
/// `[a-z]`, `[!a]` one of a set, `\` makes the next character literal. Two rules of
/// hyperion's on top: a pattern without a glob character also matches everything below it
/// (`src` covers `src/x`), and `dir/**` covers `dir` itself, as `**` may be no component at
/// all everywhere else (`a/**/b` matches `a/b`).
///
/// Both pattern and path may come from a request: git's matcher gives up early where no
/// later star can help (polynomial, never exponential) and stops at a depth of 64 stars, where
/// it answers "no match". Globs with more than 32 stars are refused before they are used,
/// the policy's when it is read and a request's `file_targets` at validation
/// ([`glob_problem`]).
pub fn glob_match(pattern: &str, path: &str) -> bool {
    use gix::glob::{wildmatch, wildmatch::Mode};
    let pattern = pattern.trim_end_matches('/');
    if !pattern.contains(GLOB_CHARS) {
        return path
            .strip_prefix(pattern)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    }
    let matches = |p: &str| wildmatch(p.into(), path.into(), Mode::NO_MATCH_SLASH_LITERAL);
    matches(pattern) || pattern.strip_suffix("/**").is_some_and(matches)
}

/// The characters that make a pattern a glob rather than a path.
const GLOB_CHARS: [char; 4] = ['*', '?', '[', '\\'];

/// Why a glob (of the policy file, or a request's `file_targets`) cannot be used as written,
/// if it cannot: a `[` that no `]` closes (git's matcher would match nothing with it, so a
/// `[paths] deny` entry would deny nothing), a trailing `\`, or more stars than the matcher
/// follows.
pub fn glob_problem(pattern: &str) -> Option<String> {
    let bytes = pattern.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if i + 1 == bytes.len() => {
                return Some("it ends with a lone '\\' (write '\\\\' for a backslash)".into());
            }
            b'\\' => i += 1,
            b'[' => {
                // A set: an optional `!` or `^`, then a `]` counts as a member, not the end.
                let mut j = i + 1;
                if matches!(bytes.get(j), Some(b'!' | b'^')) {
                    j += 1;
                }
                if bytes.get(j) == Some(&b']') {
                    j += 1;
                }
                while j < bytes.len() && bytes[j] != b']' {
                    if bytes[j] == b'\\' {
                        j += 1;
                    }
                    j += 1;
                }
                if j >= bytes.len() {
                    return Some(
                        "a '[' is never closed by ']' (write '\\[' for a literal bracket)".into(),
                    );
                }
                i = j;
            }
            _ => {}
        }
        i += 1;
    }
    if pattern.matches('*').count() > MAX_GLOB_STARS {
        return Some(format!("it has more than {MAX_GLOB_STARS} '*'"));
    }
    None
}

/// Stars a policy glob may hold: git's matcher stops following them at a depth of 64.
const MAX_GLOB_STARS: usize = 32;

/// The first of `globs` that covers `path` on some file system a checkout may live on: as
/// written, or with both sides case-folded and without the code points HFS+ ignores, since
/// on macOS and Windows `SECRETS/key` is the file `secrets/key`. For the policy's
/// `[paths] deny`, where matching too much only refuses more.
pub fn first_covering<'g>(globs: &'g [String], path: &str) -> Option<&'g str> {
    if globs.is_empty() {
        return None;
    }
    let fold = |s: &str| -> String {
        s.chars()
            .filter(|c| !hfs_ignorable(*c))
            .flat_map(char::to_lowercase)
            .collect()
    };
    let folded = fold(path);
    globs
        .iter()
        .find(|g| glob_match(g, path) || glob_match(&fold(g), &folded))
        .map(String::as_str)
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters (spaces and `/`
/// included), `?` one character and `[…]` one of a set (git's `wildmatch` without its path
/// rules). For command allowlists.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    use gix::glob::{wildmatch, wildmatch::Mode};
    wildmatch(pattern.into(), text.into(), Mode::empty())
}

/// What a path is in the tree a symlink is resolved in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir,
    /// A symlink and its target.
    Link(String),
    /// A file or a submodule: nothing to follow.
    Other,
    Missing,
}

/// Why a symlink is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkFault {
    Empty,
    Control,
    TooLong,
    Absolute,
    Outside,
    DotGit,
    /// More than [`MAX_LINK_DEPTH`] symlinks on the way: a loop, or a chain as bad as one.
    Loop,
}

impl LinkFault {
    pub fn code(self) -> Code {
        match self {
            LinkFault::TooLong => Code::PathTooLong,
            LinkFault::Loop => Code::PathSymlinkLoop,
            _ => Code::PathSymlinkEscape,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            LinkFault::Empty => "has an empty target",
            LinkFault::Control => "has NUL, a newline or a control character in its target",
            LinkFault::TooLong => "has a target longer than 4095 bytes (PATH_MAX)",
            LinkFault::Absolute => "points to an absolute path",
            LinkFault::Outside => "leads outside the repository",
            LinkFault::DotGit => "leads into `.git`",
            LinkFault::Loop => "leads through more than 40 symlinks (a loop)",
        }
    }
}

/// Where a symlink leads, or why it is refused; with the symlinks followed on the way, the
/// link itself first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub result: Result<String, LinkFault>,
    pub hops: Vec<String>,
}

fn target_fault(target: &str) -> Option<LinkFault> {
    let b = target.as_bytes();
    if b.is_empty() {
        Some(LinkFault::Empty)
    } else if target.chars().any(|c| c.is_control()) {
        Some(LinkFault::Control)
    } else if b.len() > MAX_PATH_BYTES {
        Some(LinkFault::TooLong)
    } else if b[0] == b'/'
        || b[0] == b'\\'
        || (b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic())
    {
        Some(LinkFault::Absolute)
    } else {
        None
    }
}

/// Follow the symlink at `link` to `target` through a tree described by `node`, as the kernel
/// would in a checkout of it: `..` goes to the real parent of where the walk is (after a
/// symlink, the parent of where that led), each symlink met is expanded, at most
/// [`MAX_LINK_DEPTH`] of them. Backslashes count as separators (they are on Windows). Below
/// a path that is missing or not a directory the rest is followed lexically: whatever is
/// created there later is judged when it is.
///
/// Refused: an empty target or one with control characters, longer than `PATH_MAX`, absolute,
/// leading out of the repository or into `.git` (any spelling [`is_dotgit`] knows), or
/// through too many symlinks. `node` is asked only about paths whose every parent is a
/// directory, so a hostile target costs time linear in its length.
pub fn resolve_link(link: &str, target: &str, node: &dyn Fn(&str) -> Node) -> Resolution {
    let mut hops = vec![link.to_owned()];
    let result = follow(link, target, node, &mut hops);
    Resolution { result, hops }
}

fn follow(
    link: &str,
    target: &str,
    node: &dyn Fn(&str) -> Node,
    hops: &mut Vec<String>,
) -> Result<String, LinkFault> {
    // Where the walk is: `here`, its components' end offsets, and how many of them are known
    // to be directories (below the first that is not, nothing is looked up).
    let mut here = String::new();
    let mut ends: Vec<usize> = Vec::new();
    let mut real = 0;
    let push = |here: &mut String, ends: &mut Vec<usize>, c: &str| {
        if !here.is_empty() {
            here.push('/');
        }
        here.push_str(c);
        ends.push(here.len());
    };
    let pop = |here: &mut String, ends: &mut Vec<usize>| -> bool {
        if ends.pop().is_none() {
            return false;
        }
        here.truncate(ends.last().copied().unwrap_or(0));
        true
    };
    if let Some((dir, _)) = link.rsplit_once('/') {
        for c in dir.split('/') {
            push(&mut here, &mut ends, c);
        }
        // The link's own directories: the caller has made sure they are directories.
        real = ends.len();
    }
    if let Some(fault) = target_fault(target) {
        return Err(fault);
    }
    let mut pending: VecDeque<String> = target.split(['/', '\\']).map(str::to_owned).collect();
    let mut followed = 0;
    while let Some(c) = pending.pop_front() {
        match c.as_str() {
            "" | "." => {}
            ".." => {
                if !pop(&mut here, &mut ends) {
                    return Err(LinkFault::Outside);
                }
                real = real.min(ends.len());
            }
            c if is_dotgit(c) => return Err(LinkFault::DotGit),
            c => {
                let looked_up = real == ends.len();
                push(&mut here, &mut ends, c);
                if !looked_up {
                    continue;
                }
                match node(&here) {
                    Node::Dir => real += 1,
                    Node::Link(next) => {
                        followed += 1;
                        if followed > MAX_LINK_DEPTH {
                            return Err(LinkFault::Loop);
                        }
                        hops.push(here.clone());
                        pop(&mut here, &mut ends);
                        if let Some(fault) = target_fault(&next) {
                            return Err(fault);
                        }
                        for part in next.split(['/', '\\']).rev() {
                            pending.push_front(part.to_owned());
                        }
                    }
                    Node::Other | Node::Missing => {}
                }
            }
        }
    }
    Ok(here)
}

/// `p` as a path relative to the top of the work tree (`./` and trailing `/` dropped), if it
/// is a safe one.
pub fn clean_relative(p: &str) -> Option<String> {
    let mut s = p.trim();
    while let Some(rest) = s.strip_prefix("./") {
        s = rest;
    }
    let s = s.trim_end_matches('/');
    (unsafe_reason(s).is_none()).then(|| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dangerous_paths_are_refused() {
        for p in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "./a",
            "a//b",
            "a/",
            ".git/config",
            ".GIT/hooks/x",
            "sub/.git/x",
            ".git./x",
            ".git /x",
            "git~1/x",
            ".g\u{200c}it/x",
            ".git::$INDEX_ALLOCATION/x",
            "a\0b",
            "a\nb",
            "a\\b",
            "C:/x",
        ] {
            assert!(unsafe_reason(p).is_some(), "{p:?} must be refused");
        }
        for p in [
            "src/main.rs",
            ".gitignore",
            ".github/workflows/ci.yml",
            "a/.gitkeep",
            "git/x",
            "docs/.git-blame-ignore-revs",
        ] {
            assert_eq!(unsafe_reason(p), None, "{p:?} is fine");
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("src/**", "src/a/b.rs"));
        assert!(glob_match("src/**", "src/a.rs"));
        assert!(!glob_match("src/**", "srcx/a.rs"));
        assert!(glob_match("src/*.rs", "src/a.rs"));
        assert!(!glob_match("src/*.rs", "src/a/b.rs"));
        assert!(glob_match("**/*.md", "README.md"));
        assert!(glob_match("**/*.md", "docs/x/y.md"));
        assert!(glob_match("tests/**", "tests/a"));
        assert!(glob_match("docs/*.md", "docs/usage.md"));
        assert!(glob_match("src", "src/a/b"));
        assert!(glob_match("README.md", "README.md"));
        assert!(!glob_match("README.md", "README.mdx"));
        assert!(glob_match("f[0-9].txt", "f7.txt"));
        assert!(!glob_match("f[!0-9].txt", "f7.txt"));
        assert!(glob_match("f?.txt", "f7.txt"));
        assert!(!glob_match("*.rs", "src/a.rs"));
        assert!(glob_match("f[ab]*.txt", "fbx.txt"));
        assert!(
            !glob_match("f[.txt", "f[.txt"),
            "git's matcher: an unclosed set"
        );
        assert!(glob_match("f\\[.txt", "f[.txt"));
        assert!(glob_match("src/**", "src"), "dir/** covers dir");
        assert!(glob_match("src/*/**", "src/a"));
        assert!(!glob_match("src/**", "srcx"));
        assert!(glob_match("a/**/b", "a/b"));
        assert!(glob_match("a/**/b", "a/x/y/b"));
        assert!(glob_match("src/", "src/a"));
        assert!(!glob_match("src", "srcx/a"));
        assert!(glob_match("f[]]", "f]"));
        assert!(glob_match("f[[:digit:]]", "f7"));
        assert!(glob_match("**/x/**", "a/b/x/c"));
        assert!(!glob_match("**/x/*", "a/b/x/c/d"));
    }

    #[test]
    fn policy_globs_git_would_misread_are_named() {
        for bad in ["secrets[", "a/[!x", "x\\", &"*".repeat(33)] {
            assert!(glob_problem(bad).is_some(), "{bad:?}");
        }
        for good in [
            "secrets/**",
            "f[]]",
            "f[!]]x",
            "[[:alpha:]]*",
            "a\\[",
            "**/*.pem",
        ] {
            assert_eq!(glob_problem(good), None, "{good:?}");
        }
    }

    #[test]
    fn hostile_globs_take_linear_time() {
        let path = "a/".repeat(2000) + "c";
        let pattern = "**/a/".repeat(12) + "b";
        let t = std::time::Instant::now();
        assert!(!glob_match(&pattern, &path));
        let name = "a".repeat(4000);
        assert!(!glob_match(&("*a".repeat(20) + "b"), &name));
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn deny_globs_cover_every_spelling_of_a_path() {
        let deny = vec!["secrets/**".to_owned(), "*.PEM".to_owned()];
        for p in [
            "secrets/key",
            "SECRETS/key",
            "Secrets/a/b",
            "secrets\u{200c}/key",
            "x.pem",
        ] {
            assert!(first_covering(&deny, p).is_some(), "{p:?}");
        }
        for p in ["secret/key", "public/secrets", "a/x.pem"] {
            assert_eq!(first_covering(&deny, p), None, "{p:?}");
        }
        assert_eq!(first_covering(&[], "secrets/key"), None);
    }

    #[test]
    fn command_wildcards() {
        assert!(wildcard_match("cargo test*", "cargo test --all"));
        assert!(wildcard_match("cargo test*", "cargo test"));
        assert!(!wildcard_match("cargo test*", "cargo build"));
        assert!(wildcard_match("make ?", "make x"));
    }

    /// Resolve against a tree given as (path, node) pairs; anything else is missing.
    fn resolve(tree: &[(&str, Node)], link: &str, target: &str) -> Resolution {
        let lookup = |p: &str| {
            tree.iter()
                .find(|(q, _)| *q == p)
                .map(|(_, n)| n.clone())
                .unwrap_or(Node::Missing)
        };
        resolve_link(link, target, &lookup)
    }

    fn link(t: &str) -> Node {
        Node::Link(t.to_owned())
    }

    #[test]
    fn symlink_targets_alone() {
        for (l, target, fault) in [
            ("l", "/etc/passwd", LinkFault::Absolute),
            ("l", "../x", LinkFault::Outside),
            ("a/b/l", "../../../x", LinkFault::Outside),
            ("a/l", "x/../../../y", LinkFault::Outside),
            ("l", ".git/config", LinkFault::DotGit),
            ("l", "sub/.GIT/hooks", LinkFault::DotGit),
            ("l", ".git./x", LinkFault::DotGit),
            ("l", "GIT~1/config", LinkFault::DotGit),
            ("l", ".g\u{200c}it", LinkFault::DotGit),
            ("l", "..\\x", LinkFault::Outside),
            ("l", "\\\\server\\share", LinkFault::Absolute),
            ("l", "C:/x", LinkFault::Absolute),
            ("l", "", LinkFault::Empty),
            ("l", "a\nb", LinkFault::Control),
            ("l", "a\0b", LinkFault::Control),
        ] {
            assert_eq!(
                resolve(&[], l, target).result,
                Err(fault),
                "{l} -> {target:?}"
            );
        }
        let long = "a/".repeat(2048);
        assert_eq!(resolve(&[], "l", &long).result, Err(LinkFault::TooLong));
        for (l, target, to) in [
            ("l", "x", "x"),
            ("a/b/l", "../../x", "x"),
            ("a/l", "./y/../z", "a/z"),
            ("l", ".gitignore", ".gitignore"),
            ("a/l", "..", ""),
        ] {
            assert_eq!(
                resolve(&[], l, target).result,
                Ok(to.to_owned()),
                "{l} -> {target}"
            );
        }
    }

    #[test]
    fn symlink_chains_are_followed_through_the_tree() {
        // `d/l -> ..` is harmless alone; through it, `..` climbs from the root.
        let tree = [("d", Node::Dir), ("d/l", link(".."))];
        let r = resolve(&tree, "x", "d/l/d/l/../../etc/passwd");
        assert_eq!(r.result, Err(LinkFault::Outside));
        assert_eq!(r.hops, ["x", "d/l", "d/l"]);
        // Lexically the same target stays inside: only the tree tells.
        assert!(resolve(&[], "x", "d/l/d/l/../../etc/passwd").result.is_ok());
        // A link to a link that leaves.
        let tree = [("up", link("../..")), ("a", Node::Dir)];
        assert_eq!(
            resolve(&tree, "a/x", "../up").result,
            Err(LinkFault::Outside)
        );
        // A link to a link into .git, and to an absolute one.
        let tree = [("g", link(".GIT")), ("abs", link("/etc"))];
        assert_eq!(
            resolve(&tree, "x", "g/config").result,
            Err(LinkFault::DotGit)
        );
        assert_eq!(resolve(&tree, "x", "abs").result, Err(LinkFault::Absolute));
        // A link to a directory, then down: resolved where it leads.
        let tree = [("s", Node::Dir), ("s/t", Node::Dir), ("to", link("s/t"))];
        assert_eq!(resolve(&tree, "x", "to/../u").result, Ok("s/u".to_owned()));
        // Loops, and chains deeper than the kernel follows.
        let tree = [("a", link("b")), ("b", link("a"))];
        assert_eq!(resolve(&tree, "x", "a").result, Err(LinkFault::Loop));
        let tree = [("self", link("self"))];
        assert_eq!(resolve(&tree, "x", "self").result, Err(LinkFault::Loop));
        let chain: Vec<(String, Node)> = (0..41)
            .map(|i| (format!("l{i}"), link(&format!("l{}", i + 1))))
            .collect();
        let chain: Vec<(&str, Node)> = chain.iter().map(|(p, n)| (p.as_str(), n.clone())).collect();
        assert_eq!(resolve(&chain, "x", "l1").result, Ok("l41".to_owned()));
        assert_eq!(resolve(&chain, "x", "l0").result, Err(LinkFault::Loop));
    }

    #[test]
    fn hostile_symlink_targets_take_linear_time() {
        // Deep missing directories and 40 links each expanding to a long target.
        let deep = "a/".repeat(2000);
        let tree: Vec<(String, Node)> = (0..40)
            .map(|i| {
                (
                    format!("l{i}"),
                    link(&format!("{deep}../../../{}", "../".repeat(2000))),
                )
            })
            .collect();
        let tree: Vec<(&str, Node)> = tree.iter().map(|(p, n)| (p.as_str(), n.clone())).collect();
        let t = std::time::Instant::now();
        let _ = resolve(&tree, "x", &format!("{deep}{}", "../".repeat(1000)));
        let _ = resolve(&tree, "x", "l0/l1/l2");
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn long_paths_are_refused_with_their_own_code() {
        let name = "n".repeat(MAX_COMPONENT_BYTES);
        assert_eq!(check(&name), Ok(()));
        assert_eq!(
            check(&format!("{name}n")).map_err(|r| r.code),
            Err(Code::PathTooLong)
        );
        let path = ["d"; 2048].join("/");
        assert_eq!(path.len(), MAX_PATH_BYTES);
        assert_eq!(check(&path), Ok(()));
        assert_eq!(
            check(&format!("{path}x")).map_err(|r| r.code),
            Err(Code::PathTooLong)
        );
        // Multi-byte names count in bytes.
        assert_eq!(
            check(&"é".repeat(128)).map_err(|r| r.code),
            Err(Code::PathTooLong)
        );
        // An unsafe long path is unsafe first.
        assert_eq!(
            check(&format!("../{name}n")).map_err(|r| r.code),
            Err(Code::PathUnsafe)
        );
    }
}
