//! Path rules for what a request may touch: safe repository paths, and `file_targets` globs.
//!
//! A path is refused if it could escape the work tree or reach git's own files on any
//! platform git supports: `..` and absolute paths, a `.git` component compared the way git's
//! `core.protectNTFS`/`core.protectHFS` compare it (case-insensitively, ignoring trailing dots
//! and spaces, the 8.3 short name `git~1`, and the Unicode code points HFS+ ignores), and NUL,
//! control characters or backslashes.

/// Why a path is not acceptable, or `None` when it is.
pub fn unsafe_reason(path: &str) -> Option<&'static str> {
    if path.is_empty() {
        return Some("the path is empty");
    }
    if path.starts_with('/') {
        return Some("absolute paths are not allowed");
    }
    if path.chars().any(|c| c.is_control()) {
        return Some("the path contains NUL or a control character");
    }
    if path.contains('\\') {
        return Some("backslashes are not allowed in paths");
    }
    if path.len() >= 2 && path.as_bytes()[1] == b':' && path.as_bytes()[0].is_ascii_alphabetic() {
        return Some("drive-letter paths are not allowed");
    }
    for component in path.split('/') {
        match component {
            "" => return Some("the path has an empty component (`//` or a trailing `/`)"),
            "." | ".." => return Some("`.` and `..` components are not allowed"),
            c if is_dotgit(c) => return Some("paths inside `.git` are not allowed"),
            _ => {}
        }
    }
    None
}

/// Whether a path component names `.git` on some filesystem git supports.
pub fn is_dotgit(component: &str) -> bool {
    // HFS+ ignores these code points when comparing names.
    let stripped: String = component
        .chars()
        .filter(|c| {
            !matches!(
                *c,
                '\u{200c}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{206a}'..='\u{206f}' | '\u{feff}'
            )
        })
        .collect();
    // NTFS ignores trailing dots and spaces, and accepts `::$INDEX_ALLOCATION` stream names.
    let base = stripped.split(':').next().unwrap_or("");
    let trimmed = base.trim_end_matches(['.', ' ']);
    let lower = trimmed.to_ascii_lowercase();
    lower == ".git" || lower == "git~1"
}

/// Whether `path` matches the glob `pattern`: `*` matches within one path component, `**`
/// matches any number of components, `?` one character, `[abc]`/`[a-z]`/`[!a]` one of a set.
/// A pattern without a glob character also matches everything below it (`src` ⊇ `src/x`).
///
/// Both pattern and path may come from a request, so matching takes time proportional to
/// their lengths' product at worst, never exponential: a `*` (or `**`) only ever backtracks to
/// the most recent one.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let pat: Vec<&str> = pattern.trim_end_matches('/').split('/').collect();
    let parts: Vec<&str> = path.split('/').collect();
    if !pattern.contains(['*', '?', '[']) {
        return parts.len() >= pat.len() && parts[..pat.len()] == pat[..];
    }
    wildcard(
        &pat,
        &parts,
        |p| *p == "**",
        |p, s| match_one(p.as_bytes(), s.as_bytes()),
    )
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters (spaces and `/`
/// included), `?` one character and `[…]` one of a set. For command allowlists.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    match_one(pattern.as_bytes(), text.as_bytes())
}

/// The classic two-pointer wildcard match over tokens: `is_star` tokens match any run,
/// `one` matches a single token against a single item.
fn wildcard<P, S>(
    pat: &[P],
    items: &[S],
    is_star: impl Fn(&P) -> bool,
    one: impl Fn(&P, &S) -> bool,
) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut resume: Option<(usize, usize)> = None;
    while si < items.len() {
        if pi < pat.len() && is_star(&pat[pi]) {
            pi += 1;
            resume = Some((pi, si));
        } else if pi < pat.len() && one(&pat[pi], &items[si]) {
            pi += 1;
            si += 1;
        } else if let Some((p, s)) = resume {
            // Let the last star swallow one more item and try again from there.
            pi = p;
            si = s + 1;
            resume = Some((p, s + 1));
        } else {
            return false;
        }
    }
    pat[pi..].iter().all(is_star)
}

/// One glob token of a component pattern: a literal byte, `?`, `*`, or a `[…]` set.
enum Token<'a> {
    Byte(u8),
    Any,
    Star,
    Set { negate: bool, set: &'a [u8] },
}

fn tokens(p: &[u8]) -> Vec<Token<'_>> {
    let mut out = Vec::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            b'*' => out.push(Token::Star),
            b'?' => out.push(Token::Any),
            b'[' => {
                if let Some(end) = p[i + 1..]
                    .iter()
                    .position(|&b| b == b']')
                    .map(|e| i + 1 + e)
                {
                    let mut set = &p[i + 1..end];
                    let negate = matches!(set.first(), Some(b'!') | Some(b'^'));
                    if negate {
                        set = &set[1..];
                    }
                    out.push(Token::Set { negate, set });
                    i = end + 1;
                    continue;
                }
                out.push(Token::Byte(b'['));
            }
            b => out.push(Token::Byte(b)),
        }
        i += 1;
    }
    out
}

/// Glob match within one component.
fn match_one(p: &[u8], s: &[u8]) -> bool {
    let toks = tokens(p);
    wildcard(
        &toks,
        s,
        |t| matches!(t, Token::Star),
        |t, &c| match t {
            Token::Byte(b) => *b == c,
            Token::Any => true,
            Token::Star => false,
            Token::Set { negate, set } => {
                let mut hit = false;
                let mut i = 0;
                while i < set.len() {
                    if i + 2 < set.len() && set[i + 1] == b'-' {
                        hit |= (set[i]..=set[i + 2]).contains(&c);
                        i += 3;
                    } else {
                        hit |= set[i] == c;
                        i += 1;
                    }
                }
                hit != *negate
            }
        },
    )
}

/// Why a symlink at `link` pointing to `target` is not acceptable, or `None` when it stays
/// inside the repository and out of `.git`. The check is lexical: `..` is resolved against the
/// link's directory; backslashes count as separators (they are on Windows).
pub fn symlink_target_reason(link: &str, target: &str) -> Option<&'static str> {
    if target.is_empty() {
        return Some("has an empty target");
    }
    if target.chars().any(|c| c.is_control()) {
        return Some("has NUL, a newline or a control character in its target");
    }
    let b = target.as_bytes();
    if b[0] == b'/' || b[0] == b'\\' || (b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic())
    {
        return Some("points to an absolute path");
    }
    let mut depth = link.split('/').count() as isize - 1;
    for component in target.split(['/', '\\']) {
        match component {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return Some("points outside the repository");
                }
            }
            c if is_dotgit(c) => return Some("points into `.git`"),
            _ => depth += 1,
        }
    }
    None
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
        assert!(glob_match("f[.txt", "f[.txt"));
        assert!(glob_match("**/x/**", "a/b/x/c"));
        assert!(!glob_match("**/x/*", "a/b/x/c/d"));
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
    fn command_wildcards() {
        assert!(wildcard_match("cargo test*", "cargo test --all"));
        assert!(wildcard_match("cargo test*", "cargo test"));
        assert!(!wildcard_match("cargo test*", "cargo build"));
        assert!(wildcard_match("make ?", "make x"));
    }

    #[test]
    fn symlink_targets() {
        for (link, target) in [
            ("l", "/etc/passwd"),
            ("l", "../x"),
            ("a/b/l", "../../../x"),
            ("a/l", "x/../../../y"),
            ("l", ".git/config"),
            ("l", "sub/.GIT/hooks"),
            ("l", "..\\x"),
            ("l", "C:/x"),
            ("l", ""),
            ("l", "a\nb"),
        ] {
            assert!(
                symlink_target_reason(link, target).is_some(),
                "{link} -> {target:?} must be refused"
            );
        }
        for (link, target) in [
            ("l", "x"),
            ("a/b/l", "../../x"),
            ("a/l", "./y/../z"),
            ("l", ".gitignore"),
        ] {
            assert_eq!(
                symlink_target_reason(link, target),
                None,
                "{link} -> {target}"
            );
        }
    }
}
