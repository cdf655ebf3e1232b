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
fn is_dotgit(component: &str) -> bool {
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
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let pat: Vec<&str> = pattern.trim_end_matches('/').split('/').collect();
    let parts: Vec<&str> = path.split('/').collect();
    if !pattern.contains(['*', '?', '[']) {
        return parts.len() >= pat.len() && parts[..pat.len()] == pat[..];
    }
    match_components(&pat, &parts)
}

fn match_components(pat: &[&str], parts: &[&str]) -> bool {
    match pat.split_first() {
        None => parts.is_empty(),
        Some((&"**", rest)) => (0..=parts.len()).any(|skip| match_components(rest, &parts[skip..])),
        Some((p, rest)) => match parts.split_first() {
            Some((first, tail)) => {
                match_one(p.as_bytes(), first.as_bytes()) && match_components(rest, tail)
            }
            None => false,
        },
    }
}

/// Glob match within one component.
fn match_one(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|i| match_one(&p[1..], &s[i..])),
        Some(b'?') => !s.is_empty() && match_one(&p[1..], &s[1..]),
        Some(b'[') => {
            let Some(end) = p.iter().skip(1).position(|&b| b == b']').map(|i| i + 1) else {
                return s.first() == Some(&b'[') && match_one(&p[1..], &s[1..]);
            };
            let Some(&c) = s.first() else { return false };
            let mut set = &p[1..end];
            let negate = matches!(set.first(), Some(b'!') | Some(b'^'));
            if negate {
                set = &set[1..];
            }
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
            hit != negate && match_one(&p[end + 1..], &s[1..])
        }
        Some(&b) => s.first() == Some(&b) && match_one(&p[1..], &s[1..]),
    }
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
    }
}
