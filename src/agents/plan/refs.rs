//! References between files: which files of the tree a file uses, from its module and import
//! statements, for Rust, Python and JavaScript/TypeScript.
//!
//! This is a scanner, not a parser: it reads lines (or, for Rust paths, the text after
//! `crate::`, `super::` and a workspace crate's name) with patterns that run in linear time,
//! and keeps only references that resolve to a file the tree has. What it misses (macros,
//! dynamic imports with computed names, `#[path]`) only loses an ordering edge; what it
//! finds in a comment or a string adds one, which orders more than needed and never less.
//!
//! - Rust: `mod name;` (to `name.rs` or `name/mod.rs` beside the module), `crate::a::b`,
//!   `super::a`, `self::a`, and `other_crate::a` for a package of the tree (by its
//!   `[package] name` or `[lib] name`), each resolved to the longest module path that is a
//!   file; a package's tests, benches and examples use its library as a crate.
//! - Python: `import a.b`, `from a.b import c` (tried as `a/b/c.py` first), and relative
//!   `from .x import y`, resolved from the file's package, the root, and `src/`.
//! - JS/TS: `import … from './x'`, `import './x'`, `export … from './x'`, `require('./x')`,
//!   `import('./x')` with relative specifiers, trying the extensions and `index` files the
//!   resolvers do (and `.ts` for a `.js` specifier, as TypeScript does).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use regex::Regex;

/// What is known of the tree: its files, and its Rust packages.
pub struct Index<'t> {
    files: &'t BTreeSet<String>,
    /// Crate name (`_` for `-`) → its library's module root (`crates/a/src`).
    crates: BTreeMap<String, String>,
    /// Package directory (`""` for the root) → its library's module root.
    packages: Vec<(String, String)>,
}

impl<'t> Index<'t> {
    /// An index of `files`, with the Rust packages whose manifests `manifests` holds
    /// (`(directory, Cargo.toml text)`).
    pub fn new(files: &'t BTreeSet<String>, manifests: &[(String, String)]) -> Index<'t> {
        let mut crates = BTreeMap::new();
        let mut packages = Vec::new();
        for (dir, text) in manifests {
            let Ok(doc) = toml::de::DeTable::parse(text) else {
                continue;
            };
            let doc = doc.get_ref();
            let field = |table: &str, key: &str| -> Option<String> {
                match doc.get(table)?.get_ref() {
                    toml::de::DeValue::Table(t) => match t.get(key)?.get_ref() {
                        toml::de::DeValue::String(s) => Some(s.to_string()),
                        _ => None,
                    },
                    _ => None,
                }
            };
            let Some(name) = field("package", "name") else {
                continue;
            };
            let lib_path = field("lib", "path").unwrap_or_else(|| "src/lib.rs".to_owned());
            let lib_file = join(dir, &lib_path);
            let Some(root) = lib_file.rsplit_once('/').map(|(d, _)| d.to_owned()) else {
                continue;
            };
            let root = if lib_file.contains('/') {
                root
            } else {
                String::new()
            };
            let lib_name = field("lib", "name").unwrap_or_else(|| name.replace('-', "_"));
            crates.insert(lib_name, root.clone());
            packages.push((dir.clone(), root));
        }
        // The deepest module root first: a file belongs to the innermost package.
        packages.sort_by_key(|p| std::cmp::Reverse(p.1.len()));
        Index {
            files,
            crates,
            packages,
        }
    }

    fn has(&self, path: &str) -> bool {
        self.files.contains(path)
    }

    /// The files of the tree `path` refers to (never `path` itself), sorted.
    pub fn references(&self, path: &str, text: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let ext = path.rsplit_once('.').map_or("", |(_, e)| e);
        match ext {
            "rs" => self.rust(path, text, &mut out),
            "py" | "pyi" => self.python(path, text, &mut out),
            "js" | "jsx" | "mjs" | "cjs" | "ts" | "tsx" | "mts" | "cts" => {
                self.javascript(path, text, &mut out)
            }
            _ => {}
        }
        out.remove(path);
        out
    }

    fn rust(&self, path: &str, text: &str, out: &mut BTreeSet<String>) {
        static MOD: OnceLock<Regex> = OnceLock::new();
        static PATHS: OnceLock<Regex> = OnceLock::new();
        let module_decl = MOD.get_or_init(|| {
            Regex::new(r"(?m)^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+([A-Za-z_][A-Za-z0-9_]*)\s*;")
                .expect("a valid pattern")
        });
        let paths = PATHS.get_or_init(|| {
            Regex::new(r"\b([A-Za-z_][A-Za-z0-9_]*)::(\{[^;]*?\}|[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*)")
                .expect("a valid pattern")
        });
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        let file = path.rsplit('/').next().unwrap_or(path);
        // Where `mod x;` looks: beside lib.rs/main.rs/mod.rs, else in the directory named
        // after the file.
        let child_dir = if matches!(file, "lib.rs" | "main.rs" | "mod.rs") || !self.is_module(path)
        {
            dir.to_owned()
        } else {
            join(dir, file.trim_end_matches(".rs"))
        };
        for c in module_decl.captures_iter(text) {
            let name = &c[1];
            for cand in [
                join(&child_dir, &format!("{name}.rs")),
                join(&child_dir, &format!("{name}/mod.rs")),
            ] {
                if self.has(&cand) {
                    out.insert(cand);
                    break;
                }
            }
        }
        let own_root = self.module_root(path);
        let own_module = own_root.as_ref().and_then(|r| module_of(r, path));
        for c in paths.captures_iter(text) {
            let head = &c[1];
            let (root, base): (String, Vec<String>) = match head {
                "crate" => match &own_root {
                    Some(r) if own_module.is_some() => (r.clone(), Vec::new()),
                    _ => continue,
                },
                "self" | "super" => match (&own_root, &own_module) {
                    (Some(r), Some(m)) => {
                        let mut m = m.clone();
                        if head == "super" {
                            m.pop();
                        }
                        (r.clone(), m)
                    }
                    _ => continue,
                },
                name => match self.crates.get(name) {
                    Some(r) => (r.clone(), Vec::new()),
                    None => continue,
                },
            };
            let tail = &c[2];
            let items: Vec<&str> = if let Some(inner) = tail.strip_prefix('{') {
                split_top_level(inner.trim_end_matches('}'))
            } else {
                vec![tail]
            };
            for item in items {
                let segs: Vec<String> = item
                    .split("::")
                    .map(|s| s.trim().to_owned())
                    .take_while(|s| {
                        !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    })
                    .collect();
                let mut full = base.clone();
                full.extend(segs);
                if let Some(f) = self.resolve_module(&root, &full) {
                    out.insert(f);
                }
            }
        }
    }

    /// Whether `path` is a module of a package's library or binary (under its `src`), as
    /// opposed to a test, bench or example, which is a crate of its own.
    fn is_module(&self, path: &str) -> bool {
        self.module_root(path).is_some()
    }

    /// The module root (`src`) of the package whose library `path` is part of.
    fn module_root(&self, path: &str) -> Option<String> {
        self.packages
            .iter()
            .find(|(_, root)| root.is_empty() || path.starts_with(&format!("{root}/")))
            .map(|(_, root)| root.clone())
    }

    /// The file of the longest prefix of `module` (below `root`) that is one.
    fn resolve_module(&self, root: &str, module: &[String]) -> Option<String> {
        for n in (1..=module.len()).rev() {
            let rel = module[..n].join("/");
            for cand in [
                join(root, &format!("{rel}.rs")),
                join(root, &format!("{rel}/mod.rs")),
            ] {
                if self.has(&cand) {
                    return Some(cand);
                }
            }
        }
        None
    }

    fn python(&self, path: &str, text: &str, out: &mut BTreeSet<String>) {
        static IMPORT: OnceLock<Regex> = OnceLock::new();
        static FROM: OnceLock<Regex> = OnceLock::new();
        let import = IMPORT.get_or_init(|| {
            Regex::new(r"(?m)^[ \t]*import[ \t]+([A-Za-z0-9_., \t]+)").expect("a valid pattern")
        });
        let from = FROM.get_or_init(|| {
            Regex::new(r"(?m)^[ \t]*from[ \t]+(\.*)([A-Za-z0-9_.]*)[ \t]+import[ \t]+\(?([A-Za-z0-9_, \t]+)")
                .expect("a valid pattern")
        });
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        let top = path.split_once('/').map_or("", |(t, _)| t);
        let roots: Vec<String> = {
            let mut r = vec![
                String::new(),
                "src".to_owned(),
                top.to_owned(),
                join(top, "src"),
            ];
            r.dedup();
            r
        };
        let try_module = |base: &str, module: &str, out: &mut BTreeSet<String>| -> bool {
            let rel = module.replace('.', "/");
            let stem = join(base, &rel);
            for cand in [format!("{stem}.py"), format!("{stem}/__init__.py")] {
                if self.has(&cand) {
                    out.insert(cand);
                    return true;
                }
            }
            false
        };
        for c in import.captures_iter(text) {
            for part in c[1].split(',') {
                let module = part.split_whitespace().next().unwrap_or("");
                if module.is_empty() {
                    continue;
                }
                for root in &roots {
                    if try_module(root, module, out) {
                        break;
                    }
                }
            }
        }
        for c in from.captures_iter(text) {
            let dots = c[1].len();
            let module = &c[2];
            let names: Vec<&str> = c[3]
                .split(',')
                .filter_map(|n| n.split_whitespace().next())
                .collect();
            let bases: Vec<String> = if dots > 0 {
                let mut base = dir.to_owned();
                for _ in 1..dots {
                    base = base
                        .rsplit_once('/')
                        .map_or(String::new(), |(d, _)| d.to_owned());
                }
                vec![base]
            } else {
                roots.clone()
            };
            for base in &bases {
                let mut found = false;
                for name in &names {
                    let sub = if module.is_empty() {
                        name.to_string()
                    } else {
                        format!("{module}.{name}")
                    };
                    found |= try_module(base, &sub, out);
                }
                if !module.is_empty() {
                    found |= try_module(base, module, out);
                }
                if found {
                    break;
                }
            }
        }
    }

    fn javascript(&self, path: &str, text: &str, out: &mut BTreeSet<String>) {
        static SPEC: OnceLock<Regex> = OnceLock::new();
        let spec = SPEC.get_or_init(|| {
            Regex::new(
                r#"(?:\bfrom\s*|\bimport\s*\(?\s*|\brequire\s*\(\s*)['"](\.{1,2}/[^'"\n]*|\.{1,2})['"]"#,
            )
            .expect("a valid pattern")
        });
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        for c in spec.captures_iter(text) {
            let Some(target) = normalize(dir, &c[1]) else {
                continue;
            };
            let mut candidates = vec![target.clone()];
            for ext in [
                "ts", "tsx", "d.ts", "js", "jsx", "mjs", "cjs", "mts", "cts", "json",
            ] {
                candidates.push(format!("{target}.{ext}"));
            }
            for ext in ["ts", "tsx", "js", "jsx", "mjs", "cjs"] {
                candidates.push(join(&target, &format!("index.{ext}")));
            }
            // TypeScript: `./x.js` names the source `./x.ts`.
            for (js, ts) in [
                (".js", ".ts"),
                (".js", ".tsx"),
                (".mjs", ".mts"),
                (".cjs", ".cts"),
            ] {
                if let Some(stem) = target.strip_suffix(js) {
                    candidates.push(format!("{stem}{ts}"));
                }
            }
            if let Some(found) = candidates.into_iter().find(|c| self.has(c)) {
                out.insert(found);
            }
        }
    }
}

/// `a/b` from `dir` and `rel`; `None` for a path leaving the tree.
fn normalize(dir: &str, rel: &str) -> Option<String> {
    let mut parts: Vec<&str> = if dir.is_empty() {
        Vec::new()
    } else {
        dir.split('/').collect()
    };
    for seg in rel.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    Some(parts.join("/"))
}

fn join(dir: &str, rest: &str) -> String {
    if dir.is_empty() {
        rest.to_owned()
    } else {
        format!("{dir}/{rest}")
    }
}

/// The module path of a file below `root`: `src/a/b.rs` → `[a, b]`, `src/a/mod.rs` → `[a]`,
/// `src/lib.rs` → `[]`.
fn module_of(root: &str, path: &str) -> Option<Vec<String>> {
    let rel = if root.is_empty() {
        path
    } else {
        path.strip_prefix(root)?.strip_prefix('/')?
    };
    let rel = rel.strip_suffix(".rs")?;
    let mut segs: Vec<String> = rel.split('/').map(str::to_owned).collect();
    if segs.len() == 1 && matches!(segs[0].as_str(), "lib" | "main") {
        return Some(Vec::new());
    }
    if segs.last().is_some_and(|s| s == "mod") {
        segs.pop();
    }
    Some(segs)
}

/// The items of a `use` group, split at its top-level commas (`a::{b, c}, d` → two).
fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s[start..].trim());
    out.into_iter()
        .map(|item| {
            item.split('{')
                .next()
                .unwrap_or(item)
                .trim_end_matches("::")
        })
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn refs(
        tree: &BTreeSet<String>,
        manifests: &[(&str, &str)],
        path: &str,
        text: &str,
    ) -> Vec<String> {
        let m: Vec<(String, String)> = manifests
            .iter()
            .map(|(d, t)| (d.to_string(), t.to_string()))
            .collect();
        Index::new(tree, &m)
            .references(path, text)
            .into_iter()
            .collect()
    }

    #[test]
    fn rust_mods_crate_paths_groups_and_other_crates() {
        let tree = files(&[
            "Cargo.toml",
            "src/lib.rs",
            "src/git/mod.rs",
            "src/git/refs.rs",
            "src/queue.rs",
            "src/queue/store.rs",
            "src/code.rs",
            "tests/a.rs",
        ]);
        let m = [(
            "",
            "[package]\nname = \"git-hyperion\"\n[lib]\nname = \"hyperion\"\n",
        )];
        assert_eq!(
            refs(
                &tree,
                &m,
                "src/lib.rs",
                "pub mod git;\nmod queue;\nmod nothing;\n"
            ),
            ["src/git/mod.rs", "src/queue.rs"]
        );
        assert_eq!(
            refs(
                &tree,
                &m,
                "src/queue.rs",
                "pub mod store;\nuse crate::{code::Code, git::refs::{read, write}};\n"
            ),
            ["src/code.rs", "src/git/refs.rs", "src/queue/store.rs"]
        );
        assert_eq!(
            refs(
                &tree,
                &m,
                "src/queue/store.rs",
                "use super::X; fn f() { crate::git::refs::read(); }"
            ),
            ["src/git/refs.rs", "src/queue.rs"]
        );
        assert_eq!(
            refs(
                &tree,
                &m,
                "tests/a.rs",
                "use hyperion::queue::store::Store;\nuse std::io;\n"
            ),
            ["src/queue/store.rs"]
        );
    }

    #[test]
    fn python_absolute_relative_and_package_imports() {
        let tree = files(&[
            "app/__init__.py",
            "app/models.py",
            "app/views.py",
            "app/util/__init__.py",
            "app/util/text.py",
            "main.py",
        ]);
        assert_eq!(
            refs(
                &tree,
                &[],
                "main.py",
                "import app.models, os\nfrom app.util import text\n"
            ),
            // Importing from a package runs its __init__ too.
            ["app/models.py", "app/util/__init__.py", "app/util/text.py"]
        );
        assert_eq!(
            refs(
                &tree,
                &[],
                "app/views.py",
                "from .models import User\nfrom . import util\nfrom ..main import run\n"
            ),
            ["app/models.py", "app/util/__init__.py", "main.py"]
        );
    }

    #[test]
    fn js_and_ts_relative_specifiers() {
        let tree = files(&[
            "web/src/a.ts",
            "web/src/b.tsx",
            "web/src/lib/index.ts",
            "web/src/c.js",
            "web/x.json",
        ]);
        let text = "import { b } from './b';\nimport lib from \"./lib\";\nconst c = require('./c.js');\nexport * from './a.js';\nimport x from '../x.json';\nimport React from 'react';\nconst y = import('../../../etc/passwd');\n";
        assert_eq!(
            refs(&tree, &[], "web/src/main.ts", text),
            [
                "web/src/a.ts",
                "web/src/b.tsx",
                "web/src/c.js",
                "web/src/lib/index.ts",
                "web/x.json"
            ]
        );
    }
}
