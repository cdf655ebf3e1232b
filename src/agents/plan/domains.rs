//! A file's domain: the part of the repository it belongs to, from the layout of the tree.
//!
//! Domains are the Cargo workspace's members (`[workspace] members` of the root Cargo.toml,
//! globs expanded against the tree, `exclude` honoured) and the npm/yarn/pnpm workspaces of
//! the root package.json (`workspaces`, an array or `{ "packages": […] }`). A file belongs to
//! the deepest member containing it; any other file to its top-level directory, and a file
//! at the root to `.`. A root that is itself the only package is no domain of its own: its
//! files fall back to their top-level directories (`src`, `tests`, `docs`).

use std::collections::BTreeSet;

use toml::de::{DeTable, DeValue};

use crate::request::paths::glob_match;

/// The domain of files at the root of the tree.
pub const ROOT: &str = ".";

#[derive(Debug, Clone, Default)]
pub struct Domains {
    /// Member directories, deepest first.
    members: Vec<String>,
}

impl Domains {
    /// The domains of a tree whose directories are `dirs`, reading the root manifests
    /// `cargo_toml` and `package_json` when the tree has them. A manifest that cannot be
    /// parsed adds no domain (it is the project's build that reports it).
    pub fn detect(
        dirs: &BTreeSet<String>,
        cargo_toml: Option<&str>,
        package_json: Option<&str>,
    ) -> Domains {
        let mut patterns = Vec::new();
        let mut excluded = Vec::new();
        if let Some(text) = cargo_toml {
            let (m, e) = cargo_members(text);
            patterns.extend(m);
            excluded.extend(e);
        }
        if let Some(text) = package_json {
            patterns.extend(npm_workspaces(text));
        }
        let mut members: Vec<String> = Vec::new();
        for pattern in &patterns {
            let pattern = pattern.trim_start_matches("./").trim_end_matches('/');
            if pattern.is_empty() || pattern == "." || pattern.split('/').any(|c| c == "..") {
                continue;
            }
            let has_glob = pattern.contains(['*', '?', '[']);
            for dir in dirs {
                let hit = if has_glob {
                    glob_match(pattern, dir)
                } else {
                    dir == pattern
                };
                if hit
                    && !excluded.iter().any(|x| x.trim_end_matches('/') == dir)
                    && !members.contains(dir)
                {
                    members.push(dir.clone());
                }
            }
        }
        members.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        Domains { members }
    }

    /// The domain of `path`.
    pub fn of<'p>(&'p self, path: &'p str) -> &'p str {
        if let Some(m) = self.members.iter().find(|m| {
            path.len() > m.len() && path.starts_with(m.as_str()) && path.as_bytes()[m.len()] == b'/'
        }) {
            return m;
        }
        match path.split_once('/') {
            Some((top, _)) => top,
            None => ROOT,
        }
    }
}

fn cargo_members(text: &str) -> (Vec<String>, Vec<String>) {
    let Ok(doc) = DeTable::parse(text) else {
        return (Vec::new(), Vec::new());
    };
    let Some(DeValue::Table(ws)) = doc.get_ref().get("workspace").map(|v| v.get_ref()) else {
        return (Vec::new(), Vec::new());
    };
    let strings = |key: &str| -> Vec<String> {
        match ws.get(key).map(|v| v.get_ref()) {
            Some(DeValue::Array(items)) => items
                .iter()
                .filter_map(|i| match i.get_ref() {
                    DeValue::String(s) => Some(s.to_string()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    };
    (strings("members"), strings("exclude"))
}

fn npm_workspaces(text: &str) -> Vec<String> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        return Vec::new();
    };
    let list = match &value["workspaces"] {
        serde_json::Value::Array(a) => a,
        serde_json::Value::Object(o) => match o.get("packages") {
            Some(serde_json::Value::Array(a)) => a,
            _ => return Vec::new(),
        },
        _ => return Vec::new(),
    };
    list.iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn workspace_members_then_top_level_directories() {
        let d = Domains::detect(
            &dirs(&[
                "crates",
                "crates/a",
                "crates/b",
                "crates/old",
                "web",
                "web/app",
                "docs",
            ]),
            Some("[workspace]\nmembers = [\"crates/*\", \".\"]\nexclude = [\"crates/old\"]\n"),
            Some(r#"{"workspaces": {"packages": ["web/*"]}}"#),
        );
        assert_eq!(d.of("crates/a/src/lib.rs"), "crates/a");
        assert_eq!(d.of("crates/old/x.rs"), "crates");
        assert_eq!(d.of("web/app/index.ts"), "web/app");
        assert_eq!(d.of("docs/x.md"), "docs");
        assert_eq!(d.of("Cargo.toml"), ROOT);
    }

    #[test]
    fn a_single_package_falls_back_to_top_level_directories() {
        let d = Domains::detect(
            &dirs(&["src", "tests"]),
            Some("[package]\nname = \"x\"\n"),
            None,
        );
        assert_eq!(d.of("src/lib.rs"), "src");
        assert_eq!(d.of("tests/a.rs"), "tests");
    }

    #[test]
    fn broken_manifests_add_nothing() {
        let d = Domains::detect(&dirs(&["a"]), Some("[workspace"), Some("{"));
        assert_eq!(d.of("a/b"), "a");
    }
}
