//! `plan`: a task request made into assignments, against the target branch's tip.
//!
//! Everything is read from the target tip's tree (resolved by [`Target`], walked with
//! [`crate::git::tree`]), never from a work tree: the files in scope, CODEOWNERS, the
//! workspace manifests and the templates. The steps:
//!
//! 1. **Scope**: every file (blobs and symlinks; no submodules) matched by one of the task's
//!    globs ([`crate::request::paths::glob_match`]); no scope is the whole tree. A glob that
//!    matches nothing is refused (`plan.scope_empty`).
//! 2. **Groups** by (domain, owners): [`domains`] from the layout, [`owners`] from CODEOWNERS.
//! 3. **Tokens**: an assignment's size is the tokens ([`tokens`], `o200k_base`) of its rendered
//!    instructions ([`render`]) plus, per file, of `=== PATH ===\n` and the file's content
//!    (a binary file, one with a NUL in its first 8000 bytes as git decides, counts only its
//!    header: an agent does not read it as text).
//! 4. **Split**: a group above the maximum is split by directory, level by level, then its
//!    files in path order, and neighbouring parts are joined again while they fit; every part
//!    is then measured exactly and halved until it fits. A single file that does not fit
//!    with the instructions is refused (`plan.file_too_large`), never silently dropped or
//!    planned above the maximum.
//! 5. **Dependencies**: an assignment whose files reference ([`refs`]) a file of another
//!    depends on it (after partitioning no two assignments share a file, the other case of
//!    the issue). **Cycles** (mutual imports between assignments) are neither merged (that
//!    rebuilds the group the maximum just split) nor refused (splitting a crate by directory
//!    makes them routinely): the assignments of a cycle keep their planning order, the
//!    edges that point forward in it are dropped, and each cycle is recorded in the plan's
//!    `cycles` with the references that were dropped, so `run` sequences the whole cycle and
//!    a person sees why.
//! 6. **Order**: assignments are numbered `<task_id>/<n>` in a topological order (ties in
//!    planning order: domain, owners, path), so every `depends_on` names an earlier one.

pub mod domains;
pub mod owners;
pub mod refs;
pub mod render;
pub mod tokens;

use std::collections::{BTreeMap, BTreeSet};

use gix::ObjectId;

use crate::agents::model::{
    Assignment, Budget, Cycle, DroppedReference, PLAN_SCHEMA_V1, Plan, TaskRequest,
};
use crate::code::Code;
use crate::error::Problem;
use crate::request::target::Target;

/// The token maximum when neither `--max-tokens` nor `hyperion.plan.maxTokens` sets one.
pub const DEFAULT_MAX_TOKENS: u64 = crate::queue::settings::DEFAULT_PLAN_MAX_TOKENS;
/// Text files above this size are refused without being counted (far above any maximum).
pub const MAX_FILE_BYTES: u64 = 32 << 20;

/// How to plan.
#[derive(Debug, Clone)]
pub struct Options {
    /// The target: `--target`, else the task's `target`, else this (the queue's default).
    pub target: Option<Target>,
    pub default_target: Target,
    pub max_tokens: u64,
    pub now: jiff::Timestamp,
    /// Threads that count tokens.
    pub jobs: usize,
}

/// A plan and what was read to make it.
#[derive(Debug, Clone)]
pub struct Planned {
    pub plan: Plan,
    /// Files in scope, and their bytes.
    pub files: usize,
    pub bytes: u64,
    /// The CODEOWNERS used, and its lines that were not rules.
    pub codeowners: Option<String>,
    pub codeowners_skipped: Vec<usize>,
    /// Where the template came from.
    pub template: String,
}

/// Why there is no plan: refused (the problem names the file, glob or template), or failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", .0.message)]
    Refused(Problem),
    #[error(transparent)]
    Failed(#[from] crate::Error),
}

impl Error {
    pub fn code(&self) -> Code {
        match self {
            Error::Refused(p) => p.code,
            Error::Failed(e) => e.code(),
        }
    }
}

impl From<Problem> for Error {
    fn from(p: Problem) -> Error {
        Error::Refused(p)
    }
}

/// One file of the target tree.
#[derive(Debug, Clone, Copy)]
struct Blob {
    id: ObjectId,
    symlink: bool,
}

/// The target tree's files, by path.
struct Tree<'r> {
    repo: &'r gix::Repository,
    files: BTreeMap<String, Blob>,
    names: BTreeSet<String>,
    dirs: BTreeSet<String>,
}

impl<'r> Tree<'r> {
    fn read(repo: &'r gix::Repository, tree: ObjectId) -> crate::Result<Tree<'r>> {
        let mut files = BTreeMap::new();
        let mut dirs = BTreeSet::new();
        for change in crate::git::tree::diff(repo, None, Some(tree))? {
            let Some((mode, id)) = change.new else {
                continue;
            };
            let path = String::from_utf8_lossy(&change.path).into_owned();
            if mode.is_tree() {
                dirs.insert(path);
            } else if mode.is_blob() || mode.is_link() {
                files.insert(
                    path,
                    Blob {
                        id,
                        symlink: mode.is_link(),
                    },
                );
            }
        }
        let names = files.keys().cloned().collect();
        Ok(Tree {
            repo,
            files,
            names,
            dirs,
        })
    }

    fn data(&self, blob: Blob) -> crate::Result<Vec<u8>> {
        self.repo
            .find_object(blob.id)
            .map(|o| o.detach().data)
            .map_err(|e| crate::Error::object(format!("cannot read blob {}", blob.id), e))
    }

    fn size(&self, blob: Blob) -> crate::Result<u64> {
        self.repo
            .find_header(blob.id)
            .map(|h| h.size())
            .map_err(|e| crate::Error::object(format!("cannot read blob {}", blob.id), e))
    }

    /// The text of a regular file at `path`, if the tree has one (lossy UTF-8).
    fn text(&self, path: &str, max: u64) -> crate::Result<Option<Result<String, u64>>> {
        match self.files.get(path) {
            Some(b) if !b.symlink => {
                let size = self.size(*b)?;
                if size > max {
                    return Ok(Some(Err(size)));
                }
                Ok(Some(Ok(
                    String::from_utf8_lossy(&self.data(*b)?).into_owned()
                )))
            }
            _ => Ok(None),
        }
    }
}

/// A file in scope with what it costs.
struct File {
    path: String,
    /// Tokens of its `=== PATH ===` block (header and content).
    tokens: u64,
    /// Tokens of its line in the file list of the instructions (an estimate's part).
    list_tokens: u64,
    /// The text it was scanned for references with (empty for a binary file).
    text: String,
}

/// Make the plan of `task`.
pub fn plan(repo: &gix::Repository, task: &TaskRequest, opts: &Options) -> Result<Planned, Error> {
    let warm = std::thread::spawn(tokens::warm_up);
    let target = match (&opts.target, &task.target) {
        (Some(t), _) => t.clone(),
        (None, Some(name)) => Target::parse(name).map_err(|p| p.at("/target"))?,
        (None, None) => opts.default_target.clone(),
    };
    let tip = target.resolve(repo).map_err(|e| match e {
        crate::request::target::Error::Refused(p) => Error::Refused(p),
        crate::request::target::Error::Failed(e) => Error::Failed(e),
    })?;
    let tree = Tree::read(repo, tip.tree)?;

    // Scope.
    let mut scope: BTreeSet<&str> = BTreeSet::new();
    if task.scope.is_empty() {
        scope.extend(tree.files.keys().map(String::as_str));
    } else {
        for (i, glob) in task.scope.iter().enumerate() {
            let mut hit = false;
            for path in tree.files.keys() {
                if crate::request::paths::glob_match(glob, path) {
                    hit = true;
                    scope.insert(path);
                }
            }
            if !hit {
                return Err(Problem::new(
                    Code::PlanScopeEmpty,
                    format!(
                        "the scope entry '{}' matches no file of {} at {}",
                        glob.escape_debug(),
                        target.name(),
                        tip.commit.to_hex_with_len(12)
                    ),
                    "correct the path or glob, or plan against the branch that has the files (--target)",
                )
                .at(format!("/scope/{i}"))
                .into());
            }
        }
    }

    // Owners and domains.
    let mut codeowners = owners::Owners::default();
    for location in owners::LOCATIONS {
        match tree.text(location, owners::MAX_BYTES as u64)? {
            Some(Ok(text)) => {
                codeowners = owners::Owners::parse(&text, location);
                break;
            }
            Some(Err(size)) => {
                return Err(Problem::new(
                    Code::PlanCodeownersTooLarge,
                    format!(
                        "{location} is {size} bytes, more than the {} read",
                        owners::MAX_BYTES
                    ),
                    "shorten CODEOWNERS (GitHub ignores one above 3 MB too)",
                )
                .at(location)
                .into());
            }
            None => {}
        }
    }
    let manifest = |path: &str| -> crate::Result<Option<String>> {
        Ok(tree.text(path, 1 << 20)?.and_then(Result::ok))
    };
    let domains = domains::Domains::detect(
        &tree.dirs,
        manifest("Cargo.toml")?.as_deref(),
        manifest("package.json")?.as_deref(),
    );

    // The template.
    let override_path = render::override_path(task.kind);
    let renderer = match tree.files.get(&override_path) {
        Some(b) if !b.symlink => {
            let size = tree.size(*b)?;
            let origin = format!("{}:{override_path}", target.name());
            if size > render::MAX_TEMPLATE as u64 {
                // Refused by `new` without reading what may be a huge blob.
                render::Renderer::new(&vec![b' '; render::MAX_TEMPLATE + 1], &origin)?
            } else {
                render::Renderer::new(&tree.data(*b)?, &origin)?
            }
        }
        _ => render::Renderer::new(
            render::builtin(task.kind).as_bytes(),
            &format!("built-in {}", task.kind.as_str()),
        )?,
    };
    let deadline = match &task.sla {
        Some(sla) => match (&sla.deadline, &sla.within) {
            (Some(d), _) => Some(*d),
            (None, Some(within)) => {
                let d = crate::duration::parse(within).map_err(|m| {
                    Problem::new(
                        Code::TaskInvalidValue,
                        m,
                        "write the duration as 30m, 2h or 3d",
                    )
                    .at("/sla/within")
                })?;
                let span = jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX);
                Some(opts.now.checked_add(span).unwrap_or(jiff::Timestamp::MAX))
            }
            (None, None) => None,
        },
        None => None,
    };

    // Read and count every file in scope.
    let _ = warm.join();
    let mut files: Vec<File> = Vec::with_capacity(scope.len());
    let mut blocks: Vec<String> = Vec::with_capacity(scope.len());
    let mut bytes = 0u64;
    for path in &scope {
        let blob = tree.files[*path];
        let size = tree.size(blob)?;
        bytes += size;
        let (block, text) = if blob.symlink {
            let target = String::from_utf8_lossy(&tree.data(blob)?).into_owned();
            (
                format!("=== {path} (symlink) ===\n{target}\n"),
                String::new(),
            )
        } else {
            if size > MAX_FILE_BYTES {
                return Err(too_large(path, None, size, opts.max_tokens).into());
            }
            let data = tree.data(blob)?;
            let probe = &data[..data.len().min(8000)];
            if probe.contains(&0) {
                (
                    format!("=== {path} (binary, {size} bytes) ===\n"),
                    String::new(),
                )
            } else {
                let text = String::from_utf8_lossy(&data).into_owned();
                (format!("=== {path} ===\n{text}\n"), text)
            }
        };
        blocks.push(block);
        files.push(File {
            path: (*path).to_owned(),
            tokens: 0,
            list_tokens: 0,
            text,
        });
    }
    let list_lines: Vec<String> = files.iter().map(|f| format!("- `{}`\n", f.path)).collect();
    let mut texts: Vec<&str> = blocks.iter().map(String::as_str).collect();
    texts.extend(list_lines.iter().map(String::as_str));
    let counts = tokens::count_all(&texts, opts.jobs);
    let n = files.len();
    for (i, f) in files.iter_mut().enumerate() {
        f.tokens = counts[i];
        f.list_tokens = counts[n + i];
    }
    drop(blocks);

    // Groups by (domain, owners), then split to the maximum.
    let mut groups: BTreeMap<(String, Vec<String>), Vec<usize>> = BTreeMap::new();
    for (i, f) in files.iter().enumerate() {
        let key = (domains.of(&f.path).to_owned(), codeowners.of(&f.path));
        groups.entry(key).or_default().push(i);
    }
    struct Part {
        files: Vec<usize>,
        domain: String,
        owners: Vec<String>,
        instructions: String,
        tokens: u64,
        part: Option<(usize, usize)>,
    }
    let mut parts: Vec<Part> = Vec::new();
    for ((domain, owners), members) in groups {
        let measurer = Measurer {
            files: &files,
            renderer: &renderer,
            task,
            deadline,
            owners: &owners,
            domain: &domain,
            max: opts.max_tokens,
        };
        let (base_text, base) = measurer.exact(&[])?;
        if base > opts.max_tokens {
            drop(base_text);
            return Err(Problem::new(
                Code::PlanInstructionsTooLarge,
                format!(
                    "the instructions alone are {base} tokens, above the maximum of {}",
                    opts.max_tokens
                ),
                "shorten the task's instructions or the template, or raise --max-tokens (hyperion.plan.maxTokens)",
            )
            .at(renderer.origin.clone())
            .into());
        }
        let split = measurer.split(members, base)?;
        let count = split.len();
        for (k, (members, instructions, tokens)) in split.into_iter().enumerate() {
            parts.push(Part {
                files: members,
                domain: domain.clone(),
                owners: owners.clone(),
                instructions,
                tokens,
                part: (count > 1).then_some((k + 1, count)),
            });
        }
    }

    // References between parts.
    let mut manifests = Vec::new();
    for path in tree.files.keys() {
        if (path == "Cargo.toml" || path.ends_with("/Cargo.toml"))
            && let Some(Ok(text)) = tree.text(path, 1 << 20)?
        {
            let dir = path
                .strip_suffix("Cargo.toml")
                .unwrap_or("")
                .trim_end_matches('/');
            manifests.push((dir.to_owned(), text));
        }
    }
    let index = refs::Index::new(&tree.names, &manifests);
    let mut owner_of: BTreeMap<&str, usize> = BTreeMap::new();
    for (p, part) in parts.iter().enumerate() {
        for &f in &part.files {
            owner_of.insert(files[f].path.as_str(), p);
        }
    }
    // edges[a] = (b, file of a, file of b it uses): a depends on b.
    let mut edges: Vec<BTreeMap<usize, (String, String)>> = vec![BTreeMap::new(); parts.len()];
    for (a, part) in parts.iter().enumerate() {
        for &f in &part.files {
            let file = &files[f];
            if file.text.is_empty() {
                continue;
            }
            for used in index.references(&file.path, &file.text) {
                if let Some(&b) = owner_of.get(used.as_str())
                    && b != a
                {
                    edges[a]
                        .entry(b)
                        .or_insert_with(|| (file.path.clone(), used.clone()));
                }
            }
        }
    }

    // Cycles: keep the planning order inside each, drop the edges that point forward.
    let sccs = strongly_connected(&edges);
    // (members, dropped edges (a, b, file of a, file of b it uses)).
    type Dropped = (usize, usize, String, String);
    let mut cycles_raw: Vec<(Vec<usize>, Vec<Dropped>)> = Vec::new();
    for comp in sccs.iter().filter(|c| c.len() > 1) {
        let members: BTreeSet<usize> = comp.iter().copied().collect();
        let mut dropped = Vec::new();
        for &a in &members {
            let forward: Vec<usize> = edges[a]
                .keys()
                .copied()
                .filter(|b| members.contains(b) && *b > a)
                .collect();
            for b in forward {
                let (f, u) = edges[a].remove(&b).expect("listed above");
                dropped.push((a, b, f, u));
            }
        }
        cycles_raw.push((members.into_iter().collect(), dropped));
    }

    // Topological order, ties in planning order.
    let order = topological(&edges);
    let mut id_of = vec![String::new(); parts.len()];
    for (n, &p) in order.iter().enumerate() {
        id_of[p] = format!("{}/{}", task.task_id, n + 1);
    }
    let total_tokens: u64 = parts.iter().map(|p| p.tokens).sum::<u64>().max(1);
    let mut assignments = Vec::with_capacity(parts.len());
    for &p in &order {
        let part = &parts[p];
        let title = match part.part {
            Some((k, m)) => format!("{} [{} {k}/{m}]", task.title, part.domain),
            None => format!("{} [{}]", task.title, part.domain),
        };
        let mut depends_on: Vec<String> = edges[p].keys().map(|b| id_of[*b].clone()).collect();
        depends_on.sort_by_key(|id| numbered(id));
        assignments.push(Assignment {
            id: id_of[p].clone(),
            title,
            kind: task.kind,
            files: part.files.iter().map(|f| files[*f].path.clone()).collect(),
            instructions: part.instructions.clone(),
            tokens: part.tokens,
            owners: part.owners.clone(),
            domain: part.domain.clone(),
            priority: task.priority,
            deadline,
            depends_on,
            budget: share(&task.budget, part.tokens, total_tokens),
            agents: task.agents.clone(),
            checks: task.checks.clone(),
        });
    }
    let cycles = cycles_raw
        .into_iter()
        .map(|(members, dropped)| {
            let mut assignments: Vec<String> = members.iter().map(|m| id_of[*m].clone()).collect();
            assignments.sort_by_key(|id| numbered(id));
            Cycle {
                assignments,
                dropped: dropped
                    .into_iter()
                    .map(|(a, b, file, uses)| DroppedReference {
                        assignment: id_of[a].clone(),
                        depends_on: id_of[b].clone(),
                        file,
                        uses,
                    })
                    .collect(),
            }
        })
        .collect();
    Ok(Planned {
        plan: Plan {
            schema: PLAN_SCHEMA_V1.to_owned(),
            task_id: task.task_id.clone(),
            title: task.title.clone(),
            kind: task.kind,
            target: target.name().to_owned(),
            base: tip.commit.to_string(),
            created_at: opts.now,
            max_tokens: opts.max_tokens,
            tokenizer: tokens::TOKENIZER.to_owned(),
            budget: task.budget.clone(),
            assignments,
            cycles,
        },
        files: n,
        bytes,
        codeowners: codeowners.source.clone(),
        codeowners_skipped: codeowners.skipped.clone(),
        template: renderer.origin.clone(),
    })
}

/// The number of `<task>/<n>`, for sorting ids.
fn numbered(id: &str) -> u64 {
    id.rsplit('/')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// An assignment's share of the task's budget: wall time and attempts are per agent run, so
/// each assignment has them whole; dollars and tokens are shared in proportion to the
/// assignment's tokens.
fn share(budget: &Budget, tokens: u64, total: u64) -> Budget {
    let fraction = tokens as f64 / total as f64;
    Budget {
        usd: budget.usd.map(|u| (u * fraction * 100.0).floor() / 100.0),
        tokens: budget
            .tokens
            .map(|t| ((t as f64 * fraction).floor() as u64).max(1)),
        wall_time: budget.wall_time.clone(),
        attempts: budget.attempts,
    }
}

fn too_large(path: &str, tokens: Option<u64>, size: u64, max: u64) -> Problem {
    let what = match tokens {
        Some(t) => format!("{t} tokens with the instructions"),
        None => format!("{size} bytes"),
    };
    Problem::new(
        Code::PlanFileTooLarge,
        format!("{path} is {what}, above the maximum of {max} tokens for one assignment"),
        "take the file out of the scope, or raise --max-tokens (hyperion.plan.maxTokens)",
    )
    .at(path.to_owned())
}

/// Measures candidate assignments of one group.
struct Measurer<'a> {
    files: &'a [File],
    renderer: &'a render::Renderer,
    task: &'a TaskRequest,
    deadline: Option<jiff::Timestamp>,
    owners: &'a [String],
    domain: &'a str,
    max: u64,
}

impl Measurer<'_> {
    /// The instructions for `members` and the assignment's exact tokens.
    fn exact(&self, members: &[usize]) -> Result<(String, u64), Error> {
        let paths: Vec<String> = members
            .iter()
            .map(|m| self.files[*m].path.clone())
            .collect();
        let text = self.renderer.render(&render::Context {
            task: self.task,
            deadline: self.deadline,
            files: &paths,
            owners: self.owners,
            domain: self.domain,
        })?;
        let content: u64 = members.iter().map(|m| self.files[*m].tokens).sum();
        let t = tokens::count(&text) + content;
        Ok((text, t))
    }

    /// `base` (the instructions without files) plus each file's list line and block.
    fn estimate(&self, base: u64, members: &[usize]) -> u64 {
        base + members
            .iter()
            .map(|m| self.files[*m].tokens + self.files[*m].list_tokens)
            .sum::<u64>()
    }

    /// Split `members` (in path order) into parts at most `max` tokens, each with its
    /// instructions and exact size.
    fn split(
        &self,
        members: Vec<usize>,
        base: u64,
    ) -> Result<Vec<(Vec<usize>, String, u64)>, Error> {
        let candidates = self.by_directory(members, 0, base);
        let mut out = Vec::new();
        let mut todo: Vec<Vec<usize>> = candidates.into_iter().rev().collect();
        while let Some(c) = todo.pop() {
            let (text, t) = self.exact(&c)?;
            if t <= self.max {
                out.push((c, text, t));
            } else if c.len() == 1 {
                let f = &self.files[c[0]];
                return Err(too_large(&f.path, Some(t), 0, self.max).into());
            } else {
                // The estimate was short: halve, keeping the order.
                let mut first = c;
                let second = first.split_off(first.len() / 2);
                todo.push(second);
                todo.push(first);
            }
        }
        Ok(out)
    }

    /// Candidate parts by estimate: the whole if it fits, else one part per directory at
    /// `depth` (files directly there form their own), each split further, neighbours joined
    /// again while they fit.
    fn by_directory(&self, members: Vec<usize>, depth: usize, base: u64) -> Vec<Vec<usize>> {
        if members.len() <= 1 || self.estimate(base, &members) <= self.max {
            return vec![members];
        }
        let mut buckets: BTreeMap<(bool, String), Vec<usize>> = BTreeMap::new();
        for m in members {
            let comps: Vec<&str> = self.files[m].path.split('/').collect();
            let key = if comps.len() > depth + 1 {
                (true, comps[depth].to_owned())
            } else {
                (false, String::new())
            };
            buckets.entry(key).or_default().push(m);
        }
        if buckets.len() == 1 {
            let ((is_dir, _), members) = buckets.into_iter().next().expect("one bucket");
            return if is_dir {
                self.by_directory(members, depth + 1, base)
            } else {
                self.by_file(members, base)
            };
        }
        let mut pieces = Vec::new();
        for ((is_dir, _), members) in buckets {
            if is_dir {
                pieces.extend(self.by_directory(members, depth + 1, base));
            } else {
                pieces.extend(self.by_file(members, base));
            }
        }
        // Join neighbours while they fit.
        let mut joined: Vec<Vec<usize>> = Vec::new();
        for piece in pieces {
            if let Some(last) = joined.last_mut() {
                let mut both = last.clone();
                both.extend(piece.iter().copied());
                if self.estimate(base, &both) <= self.max {
                    *last = both;
                    continue;
                }
            }
            joined.push(piece);
        }
        joined
    }

    /// Files in path order, filled into parts while they fit.
    fn by_file(&self, members: Vec<usize>, base: u64) -> Vec<Vec<usize>> {
        let mut out: Vec<Vec<usize>> = Vec::new();
        let mut current: Vec<usize> = Vec::new();
        let mut size = base;
        for m in members {
            let cost = self.files[m].tokens + self.files[m].list_tokens;
            if !current.is_empty() && size + cost > self.max {
                out.push(std::mem::take(&mut current));
                size = base;
            }
            current.push(m);
            size += cost;
        }
        if !current.is_empty() {
            out.push(current);
        }
        out
    }
}

/// The strongly connected components of the graph `edges` (Tarjan's algorithm, with an
/// explicit stack: a plan of thousands of assignments costs no recursion).
fn strongly_connected<V>(edges: &[BTreeMap<usize, V>]) -> Vec<Vec<usize>> {
    let n = edges.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut out = Vec::new();
    let mut next = 0;
    let succ: Vec<Vec<usize>> = edges.iter().map(|e| e.keys().copied().collect()).collect();
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        let mut work: Vec<(usize, usize)> = vec![(root, 0)];
        while let Some((v, i)) = work.pop() {
            if i == 0 {
                index[v] = next;
                low[v] = next;
                next += 1;
                stack.push(v);
                on_stack[v] = true;
            }
            if let Some(&w) = succ[v].get(i) {
                work.push((v, i + 1));
                if index[w] == usize::MAX {
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            if low[v] == index[v] {
                let mut comp = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    comp.push(w);
                    if w == v {
                        break;
                    }
                }
                comp.sort_unstable();
                out.push(comp);
            }
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
        }
    }
    out
}

/// A topological order of an acyclic `edges` (a → b: a after b), ties by index.
fn topological<V>(edges: &[BTreeMap<usize, V>]) -> Vec<usize> {
    let n = edges.len();
    let mut waiting: Vec<usize> = edges.iter().map(BTreeMap::len).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (a, e) in edges.iter().enumerate() {
        for &b in e.keys() {
            dependents[b].push(a);
        }
    }
    let mut ready: BTreeSet<usize> = (0..n).filter(|i| waiting[*i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(v) = ready.pop_first() {
        order.push(v);
        for &d in &dependents[v] {
            waiting[d] -= 1;
            if waiting[d] == 0 {
                ready.insert(d);
            }
        }
    }
    debug_assert_eq!(order.len(), n, "cycles are broken before ordering");
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(n: usize, list: &[(usize, usize)]) -> Vec<BTreeMap<usize, ()>> {
        let mut g = vec![BTreeMap::new(); n];
        for &(a, b) in list {
            g[a].insert(b, ());
        }
        g
    }

    #[test]
    fn components_and_order() {
        let g = graph(5, &[(0, 1), (1, 0), (2, 1), (3, 4)]);
        let mut c = strongly_connected(&g);
        c.sort();
        assert_eq!(c, vec![vec![0, 1], vec![2], vec![3], vec![4]]);
        let g = graph(4, &[(0, 3), (1, 0), (2, 1)]);
        assert_eq!(topological(&g), vec![3, 0, 1, 2]);
    }

    #[test]
    fn budgets_are_shared_by_size() {
        let b = Budget {
            usd: Some(10.0),
            tokens: Some(1000),
            wall_time: Some("20m".into()),
            attempts: Some(3),
        };
        let s = share(&b, 1, 4);
        assert_eq!(s.usd, Some(2.5));
        assert_eq!(s.tokens, Some(250));
        assert_eq!(s.wall_time.as_deref(), Some("20m"));
        assert_eq!(s.attempts, Some(3));
    }
}
