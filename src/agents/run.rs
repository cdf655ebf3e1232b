//! `run --plan`: every ready assignment of a plan in its own worktree, its agent run headless
//! through the harness, and what it changed submitted as a change request through the one
//! enqueue path ([`Queue::enqueue`]), which the gate then takes like any other.
//!
//! - **Bases.** An assignment without dependencies starts at the target's tip; one with
//!   dependencies starts there with its predecessors' requests applied (their patches, in
//!   plan order, committed in the worktree), and its request is made against that and
//!   `depends_on` them, so the queue validates and lands it on top of them.
//! - **Order.** An assignment starts once each of its dependencies has a request; requests are
//!   enqueued by this thread alone, as agents finish, so a dependent is never enqueued before
//!   what it depends on. An assignment whose dependency failed is not run (`blocked`).
//! - **Idempotent.** An assignment that already has a request (its id is the request's
//!   `task_id`) that is not a dead letter is not run again: its request is used.
//! - **Clean stops.** On cancel, agents are killed as process groups (the harness), every
//!   worktree is removed, and what had not been enqueued is not.
//! - **Transcripts.** A request's root commit carries `artifacts/transcript.jsonl`, redacted;
//!   an assignment that produced no request leaves its transcript in
//!   `$GIT_DIR/hyperion/agents/<assignment>/transcript.jsonl`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use serde::Serialize;

use crate::Code;
use crate::agents::harness::{self, AgentConfig, AgentRun, Shared, Totals};
use crate::agents::model::{Assignment, PLAN_SCHEMA_V1, Plan, TaskKind};
use crate::agents::provider;
use crate::agents::redact::Redactor;
use crate::error::{Error, Result};
use crate::queue::{Filter, Queue};
use crate::request::model::{Artifact, ChangeKind, ChangeRequest, Status};

/// The name of a request's transcript below `artifacts/`.
pub const TRANSCRIPT: &str = "transcript.jsonl";

/// How to run a plan.
#[derive(Debug, Clone)]
pub struct Options {
    /// Agents at once.
    pub parallel: usize,
    /// Who enqueues (the audit trail's actor).
    pub actor: String,
}

/// What happened to one assignment, as it happens.
#[derive(Debug, Clone)]
pub enum Progress {
    Skipped {
        assignment: String,
        request: String,
    },
    Started {
        assignment: String,
        provider: String,
    },
    Finished(AssignmentReport),
}

/// The end of one assignment.
#[derive(Debug, Clone, Serialize)]
pub struct AssignmentReport {
    pub assignment: String,
    pub provider: String,
    /// `enqueued`, `existing` (a request was there already), `failed`, `no_changes`,
    /// `blocked` (a dependency failed), `cancelled`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub totals: Option<Totals>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub task_id: String,
    pub assignments: Vec<AssignmentReport>,
    /// What every agent of the run spent together.
    pub totals: Totals,
    pub cancelled: bool,
}

impl Report {
    /// Whether every assignment has a request.
    pub fn ok(&self) -> bool {
        !self.cancelled
            && self
                .assignments
                .iter()
                .all(|a| matches!(a.status, "enqueued" | "existing"))
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::Agent {
        code: Code::AgentPlanInvalid,
        message: message.into(),
    }
}

/// Read a plan file's JSON, refusing what `run` cannot follow: another schema, duplicate or
/// unknown ids, a dependency that does not come earlier, an unknown provider.
pub fn parse_plan(json: &str) -> Result<Plan> {
    let plan: Plan = serde_json::from_str(json).map_err(|e| invalid(format!("not a plan: {e}")))?;
    if plan.schema != PLAN_SCHEMA_V1 {
        return Err(invalid(format!(
            "schema is '{}', not {PLAN_SCHEMA_V1}",
            plan.schema
        )));
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, a) in plan.assignments.iter().enumerate() {
        if a.id.is_empty() || a.id.len() > 200 || a.id.chars().any(char::is_control) {
            return Err(invalid(format!("assignment {}: unusable id", i + 1)));
        }
        for d in &a.depends_on {
            if !seen.contains_key(d.as_str()) {
                return Err(invalid(format!(
                    "assignment {}: depends on '{d}', which is not an earlier assignment of the plan",
                    a.id
                )));
            }
        }
        if seen.insert(&a.id, i).is_some() {
            return Err(invalid(format!("assignment id '{}' appears twice", a.id)));
        }
        for name in &a.agents {
            if provider::by_name(name).is_none() {
                return Err(Error::Agent {
                    code: Code::AgentProviderUnknown,
                    message: format!(
                        "assignment {}: no provider '{name}' (known: {})",
                        a.id,
                        provider::NAMES.join(", ")
                    ),
                });
            }
        }
    }
    if plan.assignments.is_empty() {
        return Err(invalid("the plan has no assignments"));
    }
    Ok(plan)
}

/// The harness's settings and each provider's, from git config (`hyperion.agent.*`).
pub fn settings(repo: &gix::Repository) -> Result<(harness::Settings, Redactor, String)> {
    let config = repo.config_snapshot();
    let dur = |key: &str, default: std::time::Duration| -> Result<std::time::Duration> {
        match config.string(key) {
            None => Ok(default),
            Some(v) => crate::duration::parse(&v.to_string()).map_err(|message| Error::Config {
                key: key.into(),
                message,
            }),
        }
    };
    let d = harness::Settings::default();
    let attempts = match config.string("hyperion.agent.attempts") {
        None => d.attempts,
        Some(v) => v
            .to_string()
            .parse::<u32>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| Error::Config {
                key: "hyperion.agent.attempts".into(),
                message: format!("'{v}' is not a whole number ≥ 1"),
            })?,
    };
    let settings = harness::Settings {
        watchdog: dur("hyperion.agent.watchdog", d.watchdog)?,
        backoff: dur("hyperion.agent.backoff", d.backoff)?,
        attempts,
        wall_time: dur("hyperion.agent.wallTime", d.wall_time)?,
    };
    let strings = |key: &str| -> Vec<String> {
        config
            .strings(key)
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.to_string())
            .collect()
    };
    let redactor = Redactor::new(
        &strings("hyperion.agent.redact"),
        &strings("hyperion.agent.redactEnv"),
    )
    .map_err(|message| Error::Config {
        key: "hyperion.agent.redact".into(),
        message,
    })?;
    let default = config
        .string("hyperion.agent.default")
        .map(|s| s.to_string())
        .unwrap_or_else(|| "claude".into());
    Ok((settings, redactor, default))
}

/// `hyperion.agent.<name>.*`, with `HYPERION_AGENT_<NAME>` (the program) over the config.
pub fn agent_config(repo: &gix::Repository, name: &str) -> Result<AgentConfig> {
    let config = repo.config_snapshot();
    let key = |k: &str| format!("hyperion.agent.{name}.{k}");
    let from_env = std::env::var(format!("HYPERION_AGENT_{}", name.to_ascii_uppercase()))
        .ok()
        .filter(|v| !v.is_empty());
    let command = from_env
        .or_else(|| {
            config
                .string(key("command").as_str())
                .map(|s| s.to_string())
        })
        .map(|c| c.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let min_interval = match config.string(key("minInterval").as_str()) {
        None => std::time::Duration::ZERO,
        Some(v) => crate::duration::parse(&v.to_string()).map_err(|message| Error::Config {
            key: key("minInterval"),
            message,
        })?,
    };
    Ok(AgentConfig {
        command,
        env: config
            .strings(key("env").as_str())
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.to_string())
            .collect(),
        model: config.string(key("model").as_str()).map(|s| s.to_string()),
        min_interval,
    })
}

/// A directory name for an assignment id (which is data from a file: never a path).
fn slug(id: &str) -> String {
    let clean: String = id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(48)
        .collect();
    let hash = crate::request::model::sha256_hex(id.as_bytes());
    format!("{clean}-{}", &hash[..8])
}

/// What a worker thread is given.
struct Task {
    index: usize,
    assignment: Assignment,
    provider: &'static str,
    config: AgentConfig,
    /// The target tip the worktree starts at.
    base: String,
    /// The patches of the assignment's predecessors (transitively), in plan order.
    stacked: Vec<String>,
}

/// What a worker thread hands back.
struct Done {
    index: usize,
    run: AgentRun,
    /// The diff of what the agent changed (empty: nothing), or why there is none.
    diff: std::result::Result<String, String>,
}

/// Run `plan` (see the module documentation). `progress` is called on this thread.
pub fn run_plan(
    queue: &Queue,
    plan: &Plan,
    opts: &Options,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Report> {
    let store = queue.store();
    let repo = store.repo();
    // The target's policy is read now: its secret rules redact prompts and transcripts.
    let target =
        crate::request::target::Target::of_request(Some(&plan.target), &queue.settings().target)
            .map_err(|p| invalid(format!("target: {}", p.message)))?;
    let tip = target
        .resolve(repo)
        .map_err(|e| invalid(format!("target {}: {e}", plan.target)))?;
    tip.policy(repo)?;
    let (settings, redactor, default_agent) = settings(repo)?;
    let mut configs: BTreeMap<&'static str, AgentConfig> = BTreeMap::new();
    let mut providers: Vec<&'static str> = Vec::with_capacity(plan.assignments.len());
    for a in &plan.assignments {
        let name = a
            .agents
            .first()
            .map(String::as_str)
            .unwrap_or(&default_agent);
        let p = provider::by_name(name).ok_or_else(|| Error::Agent {
            code: Code::AgentProviderUnknown,
            message: format!(
                "no provider '{name}' (hyperion.agent.default; known: {})",
                provider::NAMES.join(", ")
            ),
        })?;
        let name = p.name();
        if !configs.contains_key(name) {
            configs.insert(name, agent_config(repo, name)?);
        }
        providers.push(name);
    }

    // Requests made for this plan before: an assignment that has one is done.
    let ids: std::collections::HashSet<&str> =
        plan.assignments.iter().map(|a| a.id.as_str()).collect();
    let mut existing: HashMap<String, String> = HashMap::new();
    let mut records = queue.list(&Filter::default())?;
    records.sort_by_key(|r| r.created_at);
    for r in records {
        if ids.contains(r.task_id.as_str()) && r.status != Status::Dead {
            existing.insert(r.task_id.clone(), r.id.clone());
        }
    }

    let n = plan.assignments.len();
    let index: HashMap<&str, usize> = plan
        .assignments
        .iter()
        .enumerate()
        .map(|(i, a)| (a.id.as_str(), i))
        .collect();
    let mut reports: Vec<Option<AssignmentReport>> = vec![None; n];
    let mut request_of: Vec<Option<String>> = vec![None; n];
    for (i, a) in plan.assignments.iter().enumerate() {
        if let Some(id) = existing.get(&a.id) {
            progress(&Progress::Skipped {
                assignment: a.id.clone(),
                request: id.clone(),
            });
            request_of[i] = Some(id.clone());
            reports[i] = Some(AssignmentReport {
                assignment: a.id.clone(),
                provider: providers[i].into(),
                status: "existing",
                request: Some(id.clone()),
                totals: None,
                reason: String::new(),
            });
        }
    }

    let agents_dir = store.hyperion_dir().join("agents");
    let shared = Shared {
        settings,
        limiter: Default::default(),
        redactor,
        budget: plan.budget.clone(),
        spent: Default::default(),
        cancel,
    };
    let git_dir = store.git_dir().to_path_buf();
    let parallel = opts.parallel.max(1);
    let mut running = 0usize;
    let (task_tx, task_rx) = mpsc::channel::<Task>();
    let task_rx = std::sync::Mutex::new(task_rx);
    let (done_tx, done_rx) = mpsc::channel::<Done>();
    let result: Result<()> = std::thread::scope(|scope| {
        for _ in 0..parallel.min(n) {
            let done_tx = done_tx.clone();
            let (shared, task_rx, git_dir, agents_dir) = (&shared, &task_rx, &git_dir, &agents_dir);
            scope.spawn(move || {
                loop {
                    let task = {
                        let rx = task_rx.lock().unwrap_or_else(|e| e.into_inner());
                        rx.recv()
                    };
                    let Ok(task) = task else { return };
                    let done = work(shared, git_dir, agents_dir, task);
                    if done_tx.send(done).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        let outcome = (|| -> Result<()> {
            loop {
                // Start what is ready, as many as may run.
                if !cancel.load(Ordering::SeqCst) {
                    for i in 0..n {
                        if running >= parallel {
                            break;
                        }
                        if reports[i].is_some() || request_of[i].as_deref() == Some("") {
                            continue;
                        }
                        let a = &plan.assignments[i];
                        let deps: Vec<usize> =
                            a.depends_on.iter().map(|d| index[d.as_str()]).collect();
                        if let Some(&f) = deps.iter().find(|&&d| {
                            reports[d]
                                .as_ref()
                                .is_some_and(|r| request_of[d].is_none() && r.status != "existing")
                        }) {
                            reports[i] = Some(AssignmentReport {
                                assignment: a.id.clone(),
                                provider: providers[i].into(),
                                status: "blocked",
                                request: None,
                                totals: None,
                                reason: format!("{} has no request", plan.assignments[f].id),
                            });
                            progress(&Progress::Finished(reports[i].clone().expect("set")));
                            continue;
                        }
                        if !deps
                            .iter()
                            .all(|&d| request_of[d].as_deref().is_some_and(|r| !r.is_empty()))
                        {
                            continue;
                        }
                        let stacked = stacked_patches(queue, plan, &index, i, &request_of)?;
                        progress(&Progress::Started {
                            assignment: a.id.clone(),
                            provider: providers[i].into(),
                        });
                        // Marked as running.
                        request_of[i] = Some(String::new());
                        running += 1;
                        let task = Task {
                            index: i,
                            assignment: a.clone(),
                            provider: providers[i],
                            config: configs[providers[i]].clone(),
                            base: tip.commit.to_string(),
                            stacked,
                        };
                        if task_tx.send(task).is_err() {
                            return Err(Error::Usage("the agents' threads are gone".into()));
                        }
                    }
                }
                if running == 0 {
                    return Ok(());
                }
                let Ok(done) = done_rx.recv() else {
                    return Ok(());
                };
                running -= 1;
                let i = done.index;
                request_of[i] = None;
                let report = finish(
                    queue,
                    plan,
                    &index,
                    &request_of,
                    i,
                    providers[i],
                    done,
                    cancel,
                    &opts.actor,
                    &agents_dir,
                )?;
                request_of[i].clone_from(&report.request);
                progress(&Progress::Finished(report.clone()));
                reports[i] = Some(report);
            }
        })();
        drop(task_tx);
        outcome
    });
    result?;
    let cancelled = cancel.load(Ordering::SeqCst);
    let assignments: Vec<AssignmentReport> = reports
        .into_iter()
        .zip(&plan.assignments)
        .zip(&providers)
        .map(|((r, a), p)| {
            r.unwrap_or_else(|| AssignmentReport {
                assignment: a.id.clone(),
                provider: (*p).into(),
                status: "cancelled",
                request: None,
                totals: None,
                reason: "not started".into(),
            })
        })
        .collect();
    let mut totals = Totals::default();
    for a in &assignments {
        if let Some(t) = &a.totals {
            totals.add(t);
        }
    }
    totals.outcome = if cancelled {
        "cancelled".into()
    } else {
        String::new()
    };
    Ok(Report {
        task_id: plan.task_id.clone(),
        assignments,
        totals,
        cancelled,
    })
}

/// The patches of assignment `i`'s predecessors, transitively, in plan order, read from
/// their requests.
fn stacked_patches(
    queue: &Queue,
    plan: &Plan,
    index: &HashMap<&str, usize>,
    i: usize,
    request_of: &[Option<String>],
) -> Result<Vec<String>> {
    let mut needed = std::collections::BTreeSet::new();
    let mut stack = vec![i];
    while let Some(j) = stack.pop() {
        for d in &plan.assignments[j].depends_on {
            let d = index[d.as_str()];
            if needed.insert(d) {
                stack.push(d);
            }
        }
    }
    let mut out = Vec::new();
    for d in needed {
        let Some(id) = request_of[d].as_deref().filter(|r| !r.is_empty()) else {
            continue;
        };
        // A predecessor that has landed is in the target's tip already.
        let tip = queue
            .store()
            .tip(id)?
            .ok_or_else(|| Error::NotFound(id.to_owned()))?;
        let record = queue.store().read_record(id, tip)?;
        if record.status == Status::Applied {
            continue;
        }
        let req = queue.store().read_request(id, tip)?;
        for c in req.changes {
            out.push(c.patch);
        }
    }
    Ok(out)
}

/// On a worker thread: worktree, agent, diff, worktree gone.
fn work(shared: &Shared<'_>, git_dir: &Path, agents_dir: &Path, task: Task) -> Done {
    let provider = provider::by_name(task.provider).expect("checked before");
    let dir = agents_dir.join(slug(&task.assignment.id));
    let worktree = dir.join("worktree");
    let _ = remove_worktree(git_dir, &worktree);
    let result =
        (|| -> std::result::Result<(AgentRun, std::result::Result<String, String>), String> {
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            add_worktree(git_dir, &worktree, &task.base).map_err(|e| e.to_string())?;
            let base = stack(&worktree, &task.stacked)?;
            let prompt = prompt_of(&task.assignment);
            let job = harness::Job {
                provider: provider.as_ref(),
                config: &task.config,
                prompt: &prompt,
                cwd: &worktree,
                dir: dir.clone(),
                budget: &task.assignment.budget,
            };
            let run = harness::run(shared, &job);
            let diff = if run.failure.is_some() {
                Err(String::new())
            } else {
                diff_of(&worktree, &base, provider.own_files())
            };
            Ok((run, diff))
        })();
    let _ = remove_worktree(git_dir, &worktree);
    match result {
        Ok((run, diff)) => Done {
            index: task.index,
            run,
            diff,
        },
        Err(why) => Done {
            index: task.index,
            run: AgentRun {
                transcript: Vec::new(),
                totals: Totals {
                    outcome: "config".into(),
                    reason: why.clone(),
                    ..Totals::default()
                },
                failure: Some((provider::Class::Config, why.clone())),
            },
            diff: Err(why),
        },
    }
}

/// The prompt an agent gets: the assignment's rendered instructions, and the files it owns.
fn prompt_of(a: &Assignment) -> String {
    let mut p = a.instructions.clone();
    if !a.files.is_empty() {
        p.push_str("\n\nFiles of this assignment:\n");
        for f in &a.files {
            p.push_str("- ");
            p.push_str(f);
            p.push('\n');
        }
    }
    p
}

/// A git command in the worktree, with an identity for the commits made there.
fn git_in(worktree: &Path, args: &[&str], what: &str) -> std::result::Result<Vec<u8>, String> {
    let mut cmd = crate::git::command::in_worktree(worktree);
    cmd.args([
        "-c",
        "user.name=git-hyperion",
        "-c",
        "user.email=hyperion@localhost",
        "-c",
        "commit.gpgsign=false",
    ])
    .args(args);
    crate::git::command::output(&mut cmd, what).map_err(|e| e.to_string())
}

/// Apply the predecessors' patches in the worktree and commit them; the commit the
/// assignment's diff is made against.
fn stack(worktree: &Path, patches: &[String]) -> std::result::Result<String, String> {
    if !patches.is_empty() {
        let file = worktree.join(".git-hyperion-stack.patch");
        let mut all = String::new();
        for p in patches {
            all.push_str(p);
            if !p.ends_with('\n') {
                all.push('\n');
            }
        }
        std::fs::write(&file, all).map_err(|e| e.to_string())?;
        let path = file.to_string_lossy().into_owned();
        let applied = git_in(
            worktree,
            &["apply", "--index", "--whitespace=nowarn", &path],
            "applying the predecessors' patches",
        );
        let _ = std::fs::remove_file(&file);
        applied?;
        git_in(
            worktree,
            &[
                "commit",
                "--quiet",
                "--no-verify",
                "-m",
                "predecessors (git-hyperion)",
            ],
            "git commit",
        )?;
    }
    let head = git_in(worktree, &["rev-parse", "HEAD"], "git rev-parse")?;
    Ok(String::from_utf8_lossy(&head).trim().to_owned())
}

/// Everything the agent changed against `base` (committed or not, new files too), without
/// the files its CLI keeps for itself.
fn diff_of(worktree: &Path, base: &str, own: &[&str]) -> std::result::Result<String, String> {
    let mut add: Vec<String> = vec!["add".into(), "-A".into(), "--".into(), ".".into()];
    let excludes: Vec<String> = own
        .iter()
        .map(|p| format!(":(exclude,glob)**/{p}"))
        .chain(own.iter().map(|p| format!(":(exclude,glob){p}")))
        .chain(own.iter().map(|p| format!(":(exclude,glob){p}/**")))
        .collect();
    add.extend(excludes.iter().cloned());
    let add: Vec<&str> = add.iter().map(String::as_str).collect();
    git_in(worktree, &add, "git add")?;
    let mut diff: Vec<String> = vec![
        "diff".into(),
        "--cached".into(),
        "--binary".into(),
        "--no-color".into(),
        "--no-ext-diff".into(),
        "--no-renames".into(),
        base.into(),
        "--".into(),
        ".".into(),
    ];
    diff.extend(excludes);
    let diff: Vec<&str> = diff.iter().map(String::as_str).collect();
    let out = git_in(worktree, &diff, "git diff")?;
    String::from_utf8(out).map_err(|_| "the agent's diff is not UTF-8".to_owned())
}

/// Held while git changes the repository's list of worktrees. git does not guard that list
/// against itself: a `git worktree prune` beside a `git worktree add` takes the entry the add
/// is still writing for a stale one, and the add fails (`failed to read …/commondir`). The
/// agents of one `run` work on threads, and two `run`s may share a repository: an exclusive
/// `flock` on `$GIT_DIR/hyperion/agents/worktrees.lock` keeps them to one at a time.
fn worktree_list_lock(git_dir: &Path) -> Result<std::fs::File> {
    let dir = git_dir.join("hyperion/agents");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display().to_string(), e))?;
    let path = dir.join("worktrees.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(path.display().to_string(), e))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| Error::io(path.display().to_string(), e.into()))?;
    Ok(file)
}

/// A detached worktree of `base` at `worktree`, for one agent.
fn add_worktree(git_dir: &Path, worktree: &Path, base: &str) -> Result<()> {
    let _list = worktree_list_lock(git_dir)?;
    let wt = worktree.to_string_lossy().into_owned();
    crate::git::command::run(
        git_dir,
        &["worktree", "add", "--detach", "--quiet", &wt, base],
        b"",
        "git worktree add",
    )?;
    Ok(())
}

fn remove_worktree(git_dir: &Path, worktree: &Path) -> Result<()> {
    let _list = worktree_list_lock(git_dir)?;
    if worktree.exists() {
        let wt = worktree.to_string_lossy().into_owned();
        let _ = crate::git::command::run(
            git_dir,
            &["worktree", "remove", "--force", "--force", &wt],
            b"",
            "git worktree remove",
        );
        if worktree.exists() {
            std::fs::remove_dir_all(worktree)
                .map_err(|e| Error::io(worktree.display().to_string(), e))?;
        }
    }
    let _ = crate::git::command::run(git_dir, &["worktree", "prune"], b"", "git worktree prune");
    Ok(())
}

fn change_kind(k: TaskKind) -> ChangeKind {
    match k {
        TaskKind::Feature => ChangeKind::Feature,
        TaskKind::Bugfix => ChangeKind::Bugfix,
        TaskKind::Refactor => ChangeKind::Refactor,
        TaskKind::Docs => ChangeKind::Docs,
        TaskKind::Test | TaskKind::Chore => ChangeKind::Chore,
    }
}

/// On the main thread: make the request of a finished agent and enqueue it.
#[allow(clippy::too_many_arguments)]
fn finish(
    queue: &Queue,
    plan: &Plan,
    index: &HashMap<&str, usize>,
    request_of: &[Option<String>],
    i: usize,
    provider: &str,
    done: Done,
    cancel: &AtomicBool,
    actor: &str,
    agents_dir: &Path,
) -> Result<AssignmentReport> {
    let a = &plan.assignments[i];
    let transcript = done.run.jsonl();
    let mut report = AssignmentReport {
        assignment: a.id.clone(),
        provider: provider.into(),
        status: "failed",
        request: None,
        totals: Some(done.run.totals.clone()),
        reason: String::new(),
    };
    let keep_transcript = |report: &AssignmentReport| {
        let dir = agents_dir.join(slug(&a.id));
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(
            dir.join(TRANSCRIPT),
            crate::request::secrets::redact_bytes(&transcript),
        );
        report.clone()
    };
    if let Some((class, why)) = &done.run.failure {
        report.status = if *class == provider::Class::Cancelled {
            "cancelled"
        } else {
            "failed"
        };
        report.reason = format!("{}: {why}", class.as_str());
        return Ok(keep_transcript(&report));
    }
    if cancel.load(Ordering::SeqCst) {
        report.status = "cancelled";
        report.reason = "stopped before its request was enqueued".into();
        return Ok(keep_transcript(&report));
    }
    let diff = match done.diff {
        Ok(d) if d.trim().is_empty() => {
            report.status = "no_changes";
            report.reason = "the agent changed nothing".into();
            return Ok(keep_transcript(&report));
        }
        Ok(d) => d,
        Err(why) => {
            report.reason = why;
            return Ok(keep_transcript(&report));
        }
    };
    let req = match make_request(plan, a, provider, &diff, index, request_of) {
        Ok(r) => r,
        Err(why) => {
            report.reason = why;
            return Ok(keep_transcript(&report));
        }
    };
    let id = req.id();
    queue.store().attach_to_root(
        &id,
        vec![Artifact {
            name: TRANSCRIPT.into(),
            data: transcript.clone(),
        }],
    );
    match queue.enqueue(std::slice::from_ref(&req), actor) {
        Ok(mut e) => {
            let e = e.pop().expect("one request, one outcome");
            report.status = if e.created { "enqueued" } else { "existing" };
            report.request = Some(e.id);
            Ok(report)
        }
        Err(Error::Rejected { problems, .. }) => {
            report.reason = format!(
                "its request was refused: {}",
                problems
                    .iter()
                    .map(|p| format!("{} ({})", p.message, p.code.as_str()))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            Ok(keep_transcript(&report))
        }
        Err(e) => Err(e),
    }
}

/// The change request of assignment `a`: its diff, and its predecessors' requests as
/// `depends_on`, through the schema validation every submitted request passes.
fn make_request(
    plan: &Plan,
    a: &Assignment,
    provider: &str,
    diff: &str,
    index: &HashMap<&str, usize>,
    request_of: &[Option<String>],
) -> std::result::Result<ChangeRequest, String> {
    let mut req = crate::request::patch::wrap(diff, &a.id, provider, Some(&a.title), &a.checks)
        .map_err(|p| format!("its diff cannot be a request: {}", p.message))?;
    req.priority = a.priority.min(9);
    req.kind = Some(change_kind(a.kind));
    req.target = Some(plan.target.clone());
    req.description = Some(format!(
        "Made by {provider} for assignment {} of task {}.",
        a.id, plan.task_id
    ));
    req.depends_on = a
        .depends_on
        .iter()
        .filter_map(|d| request_of[index[d.as_str()]].clone())
        .filter(|r| !r.is_empty())
        .collect();
    let value = serde_json::to_value(&req).expect("a ChangeRequest serialises");
    let (checked, problems) = crate::request::validate::check_value(&value);
    match checked {
        Some(r) if problems.is_empty() => Ok(r),
        _ => Err(format!(
            "its request is not valid: {}",
            problems
                .iter()
                .map(|p| p.message.clone())
                .collect::<Vec<_>>()
                .join("; ")
        )),
    }
}

/// The transcript of a request, if it has one: its lines, parsed.
pub fn transcript(queue: &Queue, id: &str) -> Result<Option<(String, Vec<harness::Stamped>)>> {
    let record = queue.show(id)?.record;
    let tip = queue
        .store()
        .tip(&record.id)?
        .ok_or_else(|| Error::NotFound(id.to_owned()))?;
    let Some(bytes) = queue.store().read_artifact(&record.id, tip, TRANSCRIPT)? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes);
    let lines = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    Ok(Some((record.id, lines)))
}

/// What the agent run that made the request `id` (a full id) spent, by its transcript's
/// totals, for the report's cost per agent; `None` when it has no transcript (it was not made
/// by `run`) or no totals.
pub fn spent(queue: &Queue, id: &str) -> Result<Option<crate::obs::report::Spent>> {
    let Some(tip) = queue.store().tip(id)? else {
        return Ok(None);
    };
    let Some(bytes) = queue.store().read_artifact(id, tip, TRANSCRIPT)? else {
        return Ok(None);
    };
    // The totals are the last line: read from the end.
    let text = String::from_utf8_lossy(&bytes);
    let totals = text.lines().rev().find_map(|l| {
        match serde_json::from_str::<harness::Stamped>(l).ok()?.event {
            provider::Event::Totals(t) => Some(t),
            _ => None,
        }
    });
    Ok(totals.map(|t| crate::obs::report::Spent {
        input_tokens: t.input_tokens,
        output_tokens: t.output_tokens,
        usd: t.usd,
    }))
}

/// A transcript's totals (its last line), if it has them.
pub fn totals_of(lines: &[harness::Stamped]) -> Option<&Totals> {
    lines.iter().rev().find_map(|s| match &s.event {
        provider::Event::Totals(t) => Some(t),
        _ => None,
    })
}

/// Where transcripts of assignments that made no request are kept.
pub fn kept_transcript(hyperion_dir: &Path, assignment: &str) -> PathBuf {
    hyperion_dir
        .join("agents")
        .join(slug(assignment))
        .join(TRANSCRIPT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assignment_id_never_becomes_a_path() {
        for id in [
            "../../etc/passwd",
            "/abs/olute",
            "a/b/../../..",
            "..",
            "T-1/2",
        ] {
            let s = slug(id);
            assert!(!s.contains('/') && !s.contains(".."), "{id}: {s}");
        }
        // Ids that differ only in what is replaced do not share a directory.
        assert_ne!(slug("a/b"), slug("a.b"));
    }

    #[test]
    fn a_plan_with_a_cycle_or_a_forward_edge_is_refused() {
        let plan = |deps: &str| {
            format!(
                r#"{{"schema":"hyperion.plan/v1","task_id":"T","title":"t","kind":"chore","target":"main","base":"0","created_at":"2026-01-01T00:00:00Z","max_tokens":1,"tokenizer":"x","assignments":[{{"id":"T/1","title":"a","kind":"chore","files":[],"instructions":"i","tokens":1,"domain":"d","priority":5,"depends_on":{deps}}}]}}"#
            )
        };
        assert!(parse_plan(&plan("[]")).is_ok());
        let e = parse_plan(&plan(r#"["T/1"]"#)).unwrap_err();
        assert_eq!(e.code(), Code::AgentPlanInvalid);
        assert!(parse_plan(&plan(r#"["T/9"]"#)).is_err());
        assert!(parse_plan("{}").is_err());
    }

    /// The agents' threads add and remove their worktrees all at once, with the real git: no
    /// add fails on an entry another thread's prune took for a stale one.
    #[test]
    fn worktrees_added_and_removed_on_many_threads_all_succeed() {
        let repo = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let out = crate::git::command::in_worktree(repo.path())
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "{args:?}: {out:?}");
        };
        git(&["init", "-q", "-b", "main"]);
        git(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "base",
        ]);
        let git_dir = repo.path().join(".git");
        let failures: Vec<String> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..6)
                .map(|t| {
                    let git_dir = &git_dir;
                    s.spawn(move || {
                        let mut failures = Vec::new();
                        for round in 0..15 {
                            // Every agent's worktree has the same base name, as in `work`.
                            let wt = git_dir.join(format!("hyperion/agents/a{t}/worktree"));
                            std::fs::create_dir_all(wt.parent().unwrap()).unwrap();
                            if let Err(e) = add_worktree(git_dir, &wt, "HEAD") {
                                failures.push(format!("thread {t} round {round}: {e}"));
                            }
                            remove_worktree(git_dir, &wt).unwrap();
                        }
                        failures
                    })
                })
                .collect();
            threads
                .into_iter()
                .flat_map(|t| t.join().unwrap())
                .collect()
        });
        assert!(failures.is_empty(), "{failures:#?}");
    }
}
