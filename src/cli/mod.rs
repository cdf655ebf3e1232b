//! The `git hyperion` command line: argument parsing, output, and error rendering. One file
//! per subcommand, each with an `Args` struct (its `--help`) and a `run` function.

pub mod error;

mod apply;
mod approve;
mod audit;
mod complete;
mod config;
mod dead;
mod demo;
mod dequeue;
mod doctor;
mod enqueue;
mod fetch;
mod gc;
mod heartbeat;
mod ingest;
mod init;
mod inspect;
mod list;
mod metrics;
mod plan;
mod policy;
pub mod progress;
mod push;
mod reject;
mod release;
mod remote;
mod report;
mod requeue;
mod rollback;
mod run;
mod show;
mod sweep;
mod top;
mod transcript;
mod validate;
mod verify_push;
mod watch;
mod worker;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use hyperion::queue::Queue;
use hyperion::queue::store::Store;
use hyperion::request::model::Record;
use hyperion::tui::{clip, shown_line};

use error::{CmdResult, CommandError};

/// A git-native gate for machine-made change requests.
///
/// Agents submit change requests (unified-diff patches plus metadata); hyperion stores each
/// one in the repository under refs/hyperion/requests/<id>, validates it, and workers lease,
/// apply and land it, or park it as a dead letter. `git log refs/hyperion/requests/<id>` is a
/// request's audit trail.
///
/// Exit codes: 0 done; 1 refused or failed (rejected request, wrong state, lost lease);
/// 2 usage or environment error.
#[derive(Parser, Debug)]
#[command(
    name = "git hyperion",
    bin_name = "git hyperion",
    version,
    max_term_width = 100
)]
pub struct Cli {
    /// Run as if started in PATH.
    #[arg(short = 'C', global = true, value_name = "PATH")]
    pub change_dir: Option<PathBuf>,
    /// Output format of records and reports.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// More log output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Share the queue through this git remote (default: `hyperion.remote`): `enqueue`
    /// publishes, `--fetch` and `fetch` read from it, `push` publishes to it.
    #[arg(long, global = true, value_name = "NAME")]
    pub remote: Option<String>,
    /// Show the progress of long steps (`worker`, `gc`, `doctor`) on stderr, with --format
    /// json too. By default it is shown with text output only: on a terminal as one status
    /// line redrawn in place, otherwise as a plain line every few seconds.
    #[arg(long, global = true, overrides_with = "no_progress")]
    pub progress: bool,
    /// Show no progress.
    #[arg(long, global = true, overrides_with = "progress")]
    pub no_progress: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The command line, parsed as `Cli::parse` would. The arguments of each subcommand are built
/// only for the one that runs (building all 35 was a tenth of a small `enqueue`'s CPU); a
/// command line that names none (`--help`, `help`, a typo) gets the whole tree, since what it
/// prints lists every subcommand with its summary.
pub fn parse() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut command = Cli::command();
    let names_one = args.iter().skip(1).any(|a| {
        a.to_str()
            .is_some_and(|a| a != "help" && command.find_subcommand(a).is_some())
    });
    if !names_one {
        // Each subcommand first: clap copies them into `help`'s own tree before it builds them.
        for sub in command.get_subcommands_mut() {
            sub.build();
        }
        command.build();
    }
    let mut matches = command.get_matches_from(args);
    Cli::from_arg_matches_mut(&mut matches)
        .map_err(|e| e.format(&mut Cli::command()))
        .unwrap_or_else(|e| e.exit())
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Each subcommand's arguments are built only when it runs (`defer`; see [`parse`]).
#[derive(Subcommand, Debug)]
#[command(defer = true)]
pub enum Command {
    Init(init::Args),
    Config(config::Args),
    Policy(policy::Args),
    Enqueue(enqueue::Args),
    Ingest(ingest::Args),
    Watch(watch::Args),
    Validate(validate::Args),
    Plan(plan::Args),
    List(list::Args),
    Metrics(metrics::Args),
    Report(report::Args),
    Show(show::Args),
    Inspect(inspect::Args),
    Worker(worker::Args),
    Apply(apply::Args),
    Rollback(rollback::Args),
    Dequeue(dequeue::Args),
    Fetch(fetch::Args),
    Push(push::Args),
    Heartbeat(heartbeat::Args),
    Release(release::Args),
    Complete(complete::Args),
    Sweep(sweep::Args),
    Requeue(requeue::Args),
    Approve(approve::Args),
    Reject(reject::Args),
    Dead(dead::Args),
    Top(top::Args),
    Gc(gc::Args),
    Doctor(doctor::Args),
    Audit(audit::Args),
    Demo(demo::Args),
    Run(run::Args),
    Transcript(transcript::Args),
    VerifyPush(verify_push::Args),
}

/// What every command gets: where to work and how to print.
pub struct Ctx {
    pub dir: PathBuf,
    pub format: Format,
    /// `--remote NAME`, if given.
    pub remote: Option<String>,
    /// `--progress` / `--no-progress`.
    pub progress: progress::When,
    /// The queue, opened on first use and then shared by every step of the command (opening
    /// the repository and reading its settings is most of a short command's cost).
    queue: std::cell::OnceCell<Queue>,
}

impl Ctx {
    pub fn json(&self) -> bool {
        self.format == Format::Json
    }

    /// The progress display of a long step, as `--progress` and `--format` ask.
    pub fn progress(&self) -> progress::Progress {
        progress::Progress::new(self.progress, self.json())
    }

    pub fn store(&self) -> CmdResult<Store> {
        Store::discover(&self.dir).map_err(|e| match e {
            hyperion::Error::RefStorage(_) => CommandError::from(e),
            e => CommandError::usage(e.to_string())
                .hint("run inside a git repository, or point at one with -C PATH"),
        })
    }

    /// The repository's queue, opened once per command.
    pub fn queue(&self) -> CmdResult<&Queue> {
        if let Some(q) = self.queue.get() {
            return Ok(q);
        }
        let q = Queue::open(self.store()?)?;
        Ok(self.queue.get_or_init(|| q))
    }
}

pub fn run(cli: Cli) -> CmdResult {
    // Like `git -C`: relative paths given to the command are read from PATH too.
    if let Some(d) = &cli.change_dir {
        std::env::set_current_dir(d)
            .map_err(|e| CommandError::usage(format!("cannot change to {}: {e}", d.display())))?;
    }
    let ctx = Ctx {
        dir: std::env::current_dir()
            .map_err(|e| CommandError::usage(format!("no current directory: {e}")))?,
        format: cli.format,
        remote: cli.remote,
        progress: match (cli.progress, cli.no_progress) {
            (true, _) => progress::When::Always,
            (_, true) => progress::When::Never,
            _ => progress::When::Auto,
        },
        queue: std::cell::OnceCell::new(),
    };
    match cli.command {
        Command::Init(a) => init::run(a, &ctx),
        Command::Config(a) => config::run(a, &ctx),
        Command::Policy(a) => policy::run(a, &ctx),
        Command::Enqueue(a) => enqueue::run(a, &ctx),
        Command::Ingest(a) => ingest::run(a, &ctx),
        Command::Watch(a) => watch::run(a, &ctx),
        Command::Validate(a) => validate::run(a, &ctx),
        Command::Plan(a) => plan::run(a, &ctx),
        Command::List(a) => list::run(a, &ctx),
        Command::Metrics(a) => metrics::run(a, &ctx),
        Command::Report(a) => report::run(a, &ctx),
        Command::Show(a) => show::run(a, &ctx),
        Command::Inspect(a) => inspect::run(a, &ctx),
        Command::Worker(a) => worker::run(a, &ctx),
        Command::Apply(a) => apply::run(a, &ctx),
        Command::Rollback(a) => rollback::run(a, &ctx),
        Command::Dequeue(a) => dequeue::run(a, &ctx),
        Command::Fetch(a) => fetch::run(a, &ctx),
        Command::Push(a) => push::run(a, &ctx),
        Command::Heartbeat(a) => heartbeat::run(a, &ctx),
        Command::Release(a) => release::run(a, &ctx),
        Command::Complete(a) => complete::run(a, &ctx),
        Command::Sweep(a) => sweep::run(a, &ctx),
        Command::Requeue(a) => requeue::run(a, &ctx),
        Command::Approve(a) => approve::run(a, &ctx),
        Command::Reject(a) => reject::run(a, &ctx),
        Command::Dead(a) => dead::run(a, &ctx),
        Command::Top(a) => top::run(a, &ctx),
        Command::Gc(a) => gc::run(a, &ctx),
        Command::Doctor(a) => doctor::run(a, &ctx),
        Command::Audit(a) => audit::run(a, &ctx),
        Command::Demo(a) => demo::run(a, &ctx),
        Command::Run(a) => run::run(a, &ctx),
        Command::Transcript(a) => transcript::run(a, &ctx),
        Command::VerifyPush(a) => verify_push::run(a, &ctx),
    }
}

/// Print one JSON document.
pub fn print_json<T: serde::Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("output values always serialise")
    );
}

/// Standard output for many lines: locked once and buffered, where `println!` writes each
/// line with its own system call (100,000 of them for a `list` of 100,000 requests). Flushed
/// when dropped. A failed write panics with `println!`'s own message, so that a reader that
/// went away (`list | head`) ends the process quietly as with `println!` (see `main`).
pub struct Lines(std::io::BufWriter<std::io::StdoutLock<'static>>);

impl Lines {
    pub fn new() -> Lines {
        Lines(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stdout().lock(),
        ))
    }

    /// One line (`args` and a newline).
    pub fn line(&mut self, args: std::fmt::Arguments<'_>) {
        use std::io::Write;
        if let Err(e) = self
            .0
            .write_fmt(args)
            .and_then(|()| self.0.write_all(b"\n"))
        {
            panic!("failed printing to stdout: {e}");
        }
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        use std::io::Write;
        if let Err(e) = self.0.flush()
            && !std::thread::panicking()
        {
            panic!("failed printing to stdout: {e}");
        }
    }
}

/// A JSON array printed an element at a time, as the elements are made (a batch of any size
/// without holding it): the same text as [`print_json`] of the whole array.
#[derive(Default)]
pub struct JsonArray {
    started: bool,
}

impl JsonArray {
    pub fn push<T: serde::Serialize>(&mut self, value: &T) {
        let text = serde_json::to_string_pretty(value).expect("output values always serialise");
        // Elements are indented by two spaces; a string holds no raw newline.
        let mut out = String::with_capacity(text.len() + 64);
        out.push_str(if self.started { ",\n" } else { "[\n" });
        for (i, line) in text.lines().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str("  ");
            out.push_str(line);
        }
        print!("{out}");
        self.started = true;
    }

    pub fn finish(self) {
        println!("{}", if self.started { "\n]" } else { "[]" });
    }
}

/// A timestamp as `2026-11-25T10:00:00Z`.
pub fn ts(t: jiff::Timestamp) -> String {
    t.round(jiff::Unit::Second)
        .unwrap_or(t)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Print records as a table (text) or an array (json).
pub fn print_records(ctx: &Ctx, records: &[Record]) {
    if ctx.json() {
        print_json(&records);
        return;
    }
    if records.is_empty() {
        return;
    }
    let mut out = Lines::new();
    out.line(format_args!(
        "{:<16}  {:<17}  {:>1}  {:>2}  {:<14}  {:<12}  {:<20}  TITLE",
        "ID", "STATUS", "P", "AT", "AGENT", "TASK", "UPDATED"
    ));
    for r in records {
        let status = match r.dead_class {
            Some(c) => format!("{}:{c}", r.status),
            // A stacked request whose predecessors have not all landed.
            None if !r.waiting_for.is_empty() => format!("{}:waiting", r.status),
            None => r.status.to_string(),
        };
        out.line(format_args!(
            "{:<16}  {:<17}  {:>1}  {:>2}  {:<14}  {:<12}  {:<20}  {}",
            r.id,
            status,
            r.priority,
            r.attempts,
            clip(&shown_line(&r.agent), 14),
            clip(&shown_line(&r.task_id), 12),
            ts(r.updated_at),
            shown_line(&r.title)
        ));
    }
}

/// Parse `--since`: an RFC 3339 time, a date (`2026-11-25`), or an age (`2h` = two hours ago).
pub fn parse_since(s: &str) -> CmdResult<jiff::Timestamp> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    if let Ok(d) = s.parse::<jiff::civil::Date>()
        && let Ok(z) = d.to_zoned(jiff::tz::TimeZone::UTC)
    {
        return Ok(z.timestamp());
    }
    if let Ok(age) = hyperion::duration::parse(s) {
        let age =
            jiff::SignedDuration::try_from(age).map_err(|e| CommandError::usage(e.to_string()))?;
        return Ok(jiff::Timestamp::now() - age);
    }
    Err(CommandError::usage(format!("'{s}' is not a time")).hint(
        "use an RFC 3339 time (2026-11-25T10:00:00Z), a date (2026-11-25) or an age (30m, 2h, 7d)",
    ))
}

/// Parse a duration argument such as `--lease 5m`.
pub fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    hyperion::duration::parse(s)
}
