//! Who owns a file: the target tree's CODEOWNERS, in GitHub's and GitLab's syntax.
//!
//! The file is the first of `.github/CODEOWNERS`, `CODEOWNERS`, `docs/CODEOWNERS`,
//! `.gitlab/CODEOWNERS` that the tree has (GitHub's order, then GitLab's own directory). Each
//! line is `PATTERN OWNER…`; `#` starts a comment; the **last** matching line wins, and a
//! matching line without owners leaves the file unowned. GitLab's `[Section]` (and
//! `^[Optional]`, `[Section][2]`) headers start a section that is evaluated on its own, its
//! default owners (`[Docs] @docs`) applying to its lines without owners; the owners of every
//! section's last match are combined.
//!
//! Patterns are gitignore-style and evaluated with the repository's one glob matcher
//! ([`crate::request::paths::glob_match`], git's `wildmatch`) after a translation: a pattern
//! holding no `/` except a trailing one matches at any depth (`*.rs` is `**/*.rs`), others are
//! anchored at the root; a pattern matching a directory covers everything below it, except
//! that a last component `*` matches only a directory's direct files (`docs/*`, GitHub's
//! documented rule, which differs from gitignore's).

use crate::request::paths::glob_match;

/// Where CODEOWNERS may live, in the order they are looked for.
pub const LOCATIONS: [&str; 4] = [
    ".github/CODEOWNERS",
    "CODEOWNERS",
    "docs/CODEOWNERS",
    ".gitlab/CODEOWNERS",
];

/// The largest CODEOWNERS read (GitHub ignores files above 3 MB).
pub const MAX_BYTES: usize = 3 << 20;

#[derive(Debug, Clone, Default)]
pub struct Owners {
    /// Where the rules came from (`.github/CODEOWNERS`), if anywhere.
    pub source: Option<String>,
    sections: Vec<Vec<Rule>>,
    /// Lines that are not rules (a pattern with `!`, `[` left open…), 1-based: skipped.
    pub skipped: Vec<usize>,
}

#[derive(Debug, Clone)]
struct Rule {
    /// The translated pattern, for [`glob_match`].
    glob: String,
    /// Only a directory's direct entries (a last component `*`).
    direct_only: bool,
    owners: Vec<String>,
}

impl Owners {
    /// Parse CODEOWNERS text (see the module docs); lines that cannot be rules are skipped
    /// and listed in [`Owners::skipped`].
    pub fn parse(text: &str, source: &str) -> Owners {
        let mut o = Owners {
            source: Some(source.to_owned()),
            sections: vec![Vec::new()],
            skipped: Vec::new(),
        };
        let mut defaults: Vec<String> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let header = line.strip_prefix('^').unwrap_or(line);
            if header.starts_with('[') {
                // `[Name]`, `[Name][2]`, then optional default owners.
                let Some(close) = header.find(']') else {
                    o.skipped.push(i + 1);
                    continue;
                };
                let mut rest = &header[close + 1..];
                if rest.starts_with('[')
                    && let Some(c) = rest.find(']')
                {
                    rest = &rest[c + 1..];
                }
                defaults = owner_words(rest);
                o.sections.push(Vec::new());
                continue;
            }
            let (pattern, rest) = split_pattern(line);
            let Some(rule) = translate(&pattern) else {
                o.skipped.push(i + 1);
                continue;
            };
            let mut owners = owner_words(rest);
            if owners.is_empty() && o.sections.len() > 1 {
                owners = defaults.clone();
            }
            let (glob, direct_only) = rule;
            o.sections
                .last_mut()
                .expect("there is always a section")
                .push(Rule {
                    glob,
                    direct_only,
                    owners,
                });
        }
        o
    }

    /// The owners of `path`, sorted and without duplicates (empty: unowned).
    pub fn of(&self, path: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for section in &self.sections {
            if let Some(rule) = section.iter().rev().find(|r| r.matches(path)) {
                out.extend(rule.owners.iter().cloned());
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

impl Rule {
    fn matches(&self, path: &str) -> bool {
        if glob_match(&self.glob, path) {
            return true;
        }
        if self.direct_only {
            return false;
        }
        // A pattern that names a directory covers what is below it.
        let mut dir = path;
        while let Some((parent, _)) = dir.rsplit_once('/') {
            if glob_match(&self.glob, parent) {
                return true;
            }
            dir = parent;
        }
        false
    }
}

/// The pattern of a line (`\ ` escapes a space, `\#` a hash) and the rest of the line.
fn split_pattern(line: &str) -> (String, &str) {
    let mut pattern = String::new();
    let mut chars = line.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, n)) => pattern.push(n),
                None => pattern.push('\\'),
            },
            c if c.is_whitespace() => return (pattern, &line[i..]),
            c => pattern.push(c),
        }
    }
    (pattern, "")
}

/// Owners: `@user`, `@org/team`, emails; anything else on the line (a trailing comment) ends
/// the list.
fn owner_words(rest: &str) -> Vec<String> {
    rest.split_whitespace()
        .take_while(|w| !w.starts_with('#'))
        .filter(|w| w.starts_with('@') || w.contains('@'))
        .map(str::to_owned)
        .collect()
}

/// A CODEOWNERS pattern as a glob of [`glob_match`] and whether it is direct-only, or `None`
/// for what CODEOWNERS does not allow (negation) or cannot match (a `..` component).
fn translate(pattern: &str) -> Option<(String, bool)> {
    if pattern.is_empty() || pattern.starts_with('!') {
        return None;
    }
    let body = pattern.trim_end_matches('/');
    let anchored = body.contains('/');
    let body = body.trim_start_matches('/');
    if body.is_empty() {
        // `/`: the whole tree.
        return Some(("**".to_owned(), false));
    }
    if body.split('/').any(|c| c.is_empty() || c == "..") {
        return None;
    }
    let glob = if anchored {
        body.to_owned()
    } else {
        format!("**/{body}")
    };
    let direct_only = body == "*" && anchored || body.ends_with("/*");
    Some((glob, direct_only))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owners(text: &str, path: &str) -> Vec<String> {
        Owners::parse(text, "CODEOWNERS").of(path)
    }

    #[test]
    fn the_last_matching_line_wins() {
        let text = "* @all\n*.rs @rust\n/src/git/ @git-team\n";
        assert_eq!(owners(text, "README.md"), ["@all"]);
        assert_eq!(owners(text, "tests/a.rs"), ["@rust"]);
        assert_eq!(owners(text, "src/git/refs.rs"), ["@git-team"]);
        assert_eq!(owners(text, "src/lib.rs"), ["@rust"]);
    }

    #[test]
    fn unanchored_names_match_at_any_depth_anchored_ones_at_the_root() {
        let text = "apps/ @apps\n/build/ @build\ndocs/* @docs\n";
        assert_eq!(owners(text, "x/apps/y/z.js"), ["@apps"]);
        assert_eq!(owners(text, "build/out.txt"), ["@build"]);
        assert!(owners(text, "src/build/out.txt").is_empty());
        // GitHub: `docs/*` owns docs' direct files, not deeper ones.
        assert_eq!(owners(text, "docs/a.md"), ["@docs"]);
        assert!(owners(text, "docs/deep/a.md").is_empty());
    }

    #[test]
    fn a_line_without_owners_unowns_and_comments_are_ignored() {
        let text = "# owners\n* @all # everyone\n/vendor/\n";
        assert_eq!(owners(text, "a"), ["@all"]);
        assert!(owners(text, "vendor/lib.c").is_empty());
    }

    #[test]
    fn gitlab_sections_combine_and_give_default_owners() {
        let text = "* @all\n[Docs] @docs-team\n*.md\n^[Backend][2] @be\n/src/ @core\n";
        assert_eq!(owners(text, "src/a.md"), ["@all", "@core", "@docs-team"]);
        assert_eq!(owners(text, "x.txt"), ["@all"]);
    }

    #[test]
    fn negations_and_escapes() {
        let o = Owners::parse(
            "!secret @x\n\\#file @hash\nmy\\ file @space\n",
            "CODEOWNERS",
        );
        assert_eq!(o.skipped, [1]);
        assert_eq!(o.of("#file"), ["@hash"]);
        assert_eq!(o.of("a/my file"), ["@space"]);
    }
}
