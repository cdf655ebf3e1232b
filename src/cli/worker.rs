use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hyperion::Code;
use hyperion::gate::checks::Stream;
use hyperion::gate::worker::{self, Disposition, Mode, Options, Progress, Report, Stop, Worker};
use hyperion::obs::metrics::WorkerMetrics;
use hyperion::obs::serve;
use hyperion::queue::{Filter, Queue};
use hyperion::request::model::Status;
use hyperion::tui::{shown, shown_line};

use super::error::{CmdResult, CommandError};
use super::{Ctx, parse_duration_arg};

/// Process the queue: lease, validate, apply, check, land.
///
/// For each leased request the worker validates it again against the target's current tip
/// and policy, runs the pre-apply hooks, applies it in memory (3-way when the target moved
/// since the patch was written), runs its checks in a pooled worktree, and lands it on the
/// target branch by compare-and-swap, with a note in refs/notes/hyperion. Failures become dead
/// letters with a class and code (validation, apply, check, environment); transient ones are
/// retried with backoff. Expired leases are swept as the worker polls, once per lease length
/// (the shorter of --lease and hyperion.leaseDuration, between 1s and 30s).
///
/// By default the worker runs until stopped. SIGINT or SIGTERM finishes the request in hand,
/// lands what the batch built, gives the rest of the batch back and stops; a second signal
/// cancels running checks and gives the request back.
///
/// In remote mode (--remote NAME or hyperion.remote) the worker shares the queue through the
/// remote: it leases by push as `dequeue` does, pushes its heartbeats, builds on the
/// remote's target tip and lands by one atomic push of the target, the records and the notes;
/// a push another machine beat is fetched, rebuilt and retried (docs/remote.md).
///
/// Output: one line per request (text) or one JSON object per line (--format json).
///
/// Progress, on stderr (see --progress): the counts so far (landed, dead, left of those
/// pending when it was first shown), the request in hand and its step (apply, check NAME
/// with its elapsed time, land), and the time since the start. On a terminal it is one line
/// redrawn in place; otherwise a plain line every few seconds; with --format json, none.
/// --follow adds each check's output.
///
/// With --metrics-addr the worker serves its live counters and histograms (Prometheus /
/// OpenMetrics text, docs/observability.md) at http://ADDR/metrics while it runs.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Process one batch (or nothing, if no request is ready) and stop.
    #[arg(long, conflicts_with = "drain")]
    once: bool,
    /// Process until no request is ready, then stop.
    #[arg(long)]
    drain: bool,
    /// Requests leased at a time; a batch lands with one update of the target branch.
    #[arg(long, value_name = "N", default_value_t = 16)]
    batch_size: usize,
    /// Run the checks of up to N requests of a batch once, on their combined tree, and bisect
    /// when it fails (default hyperion.checkBatch, 1: each request is checked on its own).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    check_batch: Option<u64>,
    /// With batched checks, check up to N trees at once while bisecting, each in a worktree
    /// slot of its own (default hyperion.checkJobs, 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    check_jobs: Option<u64>,
    /// Lease length (default hyperion.leaseDuration; at most hyperion.maxLease).
    #[arg(long, value_name = "DUR", value_parser = parse_duration_arg)]
    lease: Option<Duration>,
    /// Show what would happen to each ready request; lease, land and record nothing.
    #[arg(long)]
    dry_run: bool,
    /// Worker id (default: host, process id and a random part).
    #[arg(long, value_name = "ID")]
    id: Option<String>,
    /// Longest pause between polls of an empty queue.
    #[arg(long, value_name = "DUR", value_parser = parse_duration_arg, default_value = "2s")]
    poll: Duration,
    /// Serve live metrics at http://ADDR/metrics while running. A bare port (`9184` or
    /// `:9184`) listens on 127.0.0.1; an address that is not loopback is refused unless
    /// --metrics-public is given too (the endpoint has no authentication).
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<String>,
    /// Allow --metrics-addr to listen on an address other machines can reach.
    #[arg(long, requires = "metrics_addr")]
    metrics_public: bool,
    /// Show the output of each check as it runs, on stderr, line by line and escaped (what a
    /// check prints cannot drive the terminal): `check NAME | …`. Checks of a batch bisected
    /// on several trees at once (--check-jobs) are not followed.
    #[arg(long)]
    follow: bool,
}

pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    // Refused before anything else happens: bad input changes nothing.
    let metrics = match &args.metrics_addr {
        Some(text) => Some(serve_metrics(text, args.metrics_public)?),
        None => None,
    };
    let queue = ctx.queue()?;
    let id = args.id.clone().unwrap_or_else(worker::new_id);
    let mut w = Worker::new(queue, id.clone(), args.lease);
    if let Some(n) = args.check_batch {
        w = w.with_check_batch(n as usize);
    }
    if let Some(n) = args.check_jobs {
        w = w.with_check_jobs(n as usize);
    }
    if let Some(remote) = ctx.remote()? {
        w = w.with_remote(remote);
    }
    let json = ctx.json();
    let print = |r: &Report| print_report(r, json);

    if args.dry_run {
        let mut ready = queue.list(&Filter {
            status: Some(Status::Pending),
            ..Filter::default()
        })?;
        // A stacked request waiting for a predecessor is not ready: it would be judged on
        // top of it, which a dry run does not build.
        ready.retain(|r| r.waiting_for.is_empty());
        ready.sort_by_key(|r| r.queue_key());
        if args.once {
            ready.truncate(args.batch_size.max(1));
        }
        for r in &ready {
            let report = w.dry_run(r)?;
            print(&report);
        }
        if ready.is_empty() && !json {
            eprintln!("nothing is ready");
        }
        return Ok(());
    }

    let stop = Arc::new(Stop::default());
    watch_signals(stop.clone())?;
    if args.follow {
        w = w.with_follow(true);
    }
    let status = RefCell::new(WorkerStatus::new(
        ctx.progress(),
        if args.drain { "drain" } else { "worker" },
    ));
    let mut on_progress = |p: &Progress| {
        if let Some(m) = &metrics {
            m.progress(p);
        }
        let mut s = status.borrow_mut();
        s.event(p);
        s.show(queue, &id);
    };
    let opts = Options {
        batch: args.batch_size.max(1),
        mode: if args.once {
            Mode::Once
        } else if args.drain {
            Mode::Drain
        } else {
            Mode::Forever
        },
        poll: args.poll,
    };
    // landed, dead, to retry, given back
    let mut counts = [0usize; 4];
    let mut print_and_count = |r: &Report| {
        if let Some(m) = &metrics {
            m.report(r);
        }
        let mut s = status.borrow_mut();
        s.report(r);
        // The status line is off the screen while the report's line is printed.
        s.progress.clear();
        match r.result {
            Disposition::Landed | Disposition::Recovered => counts[0] += 1,
            Disposition::Dead => counts[1] += 1,
            Disposition::Retry => counts[2] += 1,
            Disposition::Released | Disposition::LeaseLost | Disposition::Held => counts[3] += 1,
            Disposition::WouldLand | Disposition::WouldFail => {}
        }
        print(r);
        // `left` is not counted here: the rest of the batch is recorded already, but not
        // reported yet.
        if s.left.is_some() {
            s.show(queue, &id);
        }
    };
    w.run(&opts, &stop, &mut print_and_count, &mut on_progress)?;
    // The status line goes before the summary.
    drop(status);
    if !json {
        let [landed, dead, retry, back] = counts;
        eprintln!("worker {id}: {landed} landed, {dead} dead, {retry} to retry, {back} given back");
    }
    Ok(())
}

/// Start the `/metrics` server on `text` (see `--metrics-addr`); says where on stderr.
fn serve_metrics(text: &str, public: bool) -> CmdResult<Arc<WorkerMetrics>> {
    let addr = serve::parse_addr(text, public).map_err(|e| {
        let hint = match e {
            serve::AddrError::Invalid(_) => "give a port (9184) or an address and port",
            serve::AddrError::NotLoopback(_) => {
                "scrape through a loopback address, or add --metrics-public on a trusted network"
            }
        };
        CommandError::usage(format!("--metrics-addr: {e}")).hint(hint)
    })?;
    let metrics = Arc::new(WorkerMetrics::new());
    let server = serve::Server::start(addr, metrics.clone()).map_err(|e| {
        CommandError::env(Code::EnvIo, format!("cannot serve metrics on {addr}: {e}"))
            .hint("choose another port, or stop what listens there")
    })?;
    eprintln!(
        "hyperion: serving metrics at http://{}/metrics",
        server.addr()
    );
    Ok(metrics)
}

/// First SIGINT/SIGTERM: drain. Second: abort (cancel checks, give the request back).
fn watch_signals(stop: Arc<Stop>) -> CmdResult {
    let hit = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, hit.clone())
            .map_err(|e| CommandError::env(Code::EnvIo, format!("cannot handle signals: {e}")))?;
    }
    std::thread::spawn(move || {
        let mut seen = 0;
        loop {
            std::thread::sleep(Duration::from_millis(25));
            if hit.swap(false, Ordering::SeqCst) {
                seen += 1;
                if seen == 1 {
                    stop.drain.store(true, Ordering::SeqCst);
                } else {
                    stop.abort.store(true, Ordering::SeqCst);
                }
            }
        }
    });
    Ok(())
}

/// One line (text) or one JSON object per line (json).
pub fn print_report(r: &Report, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string(r).expect("a report always serialises")
        );
        return;
    }
    let what = match r.result {
        Disposition::Landed => "landed",
        Disposition::Recovered => "recovered",
        Disposition::Dead => "dead",
        Disposition::Retry => "retry",
        Disposition::Released => "released",
        Disposition::LeaseLost => "lost",
        Disposition::Held => "held",
        Disposition::WouldLand => "would land",
        Disposition::WouldFail => "would fail",
    };
    let mut line = format!("{what:<10}  {}  {}", r.id, r.task_id);
    if let Some(c) = &r.commit {
        line.push_str(&format!("  {}", &c[..c.len().min(12)]));
    }
    if let Some(class) = r.class {
        line.push_str(&format!("  {class}"));
    }
    if let Some(code) = &r.code {
        line.push_str(&format!("  [{code}]"));
    }
    if let Some(m) = &r.message {
        // A message may quote what a request or a check brought.
        line.push_str(&format!("  {}", shown_line(m)));
    }
    line.push_str(&format!("  ({} ms)", r.duration_ms));
    println!("{line}");
}

/// What the progress of a running worker shows, from its events and reports.
struct WorkerStatus {
    progress: super::progress::Progress,
    /// `drain` or `worker`.
    label: &'static str,
    landed: usize,
    dead: usize,
    /// Requests pending or leased by this worker when first shown, and how many were done
    /// then: `left` counts down from there (counted once, when the first line is drawn on an
    /// event, never between the reports of a batch: a short drain never counts).
    left: Option<(usize, usize)>,
    /// The request in hand (or the batch), its step, and since when.
    current: String,
    step: String,
    since: Instant,
    /// The check followed, and what it wrote since its last newline, by stream.
    check: String,
    partial: [Vec<u8>; 2],
}

/// The longest line of check output shown whole; a longer one is shown in parts.
const FOLLOW_LINE: usize = 4096;

impl WorkerStatus {
    fn new(progress: super::progress::Progress, label: &'static str) -> WorkerStatus {
        WorkerStatus {
            progress,
            label,
            landed: 0,
            dead: 0,
            left: None,
            current: String::new(),
            step: String::new(),
            since: Instant::now(),
            check: String::new(),
            partial: [Vec::new(), Vec::new()],
        }
    }

    fn step(&mut self, current: String, step: String) {
        self.current = current;
        self.step = step;
        self.since = Instant::now();
    }

    fn event(&mut self, p: &Progress) {
        match p {
            Progress::Leased { id, .. } => self.step(id.clone(), "apply".into()),
            Progress::Applied { id, .. } => self.step(id.clone(), "applied".into()),
            Progress::Check { id, name } => {
                self.end_follow();
                self.check = shown_line(name);
                self.step(id.clone(), format!("check {}", self.check));
            }
            Progress::CheckBatch { requests, name, .. } => {
                self.end_follow();
                self.check = shown_line(name);
                self.step(
                    format!("{requests} request(s)"),
                    format!("check {}", self.check),
                );
            }
            Progress::Landing { requests } => {
                self.end_follow();
                self.step(format!("{requests} request(s)"), "land".into());
            }
            Progress::Rebuild { target } => {
                let step = format!("{} moved; build again", shown_line(target));
                self.step(self.current.clone(), step);
            }
            Progress::Sweep { returned } => {
                if self.progress.on() {
                    self.progress
                        .line(&format!("hyperion: swept {returned} expired lease(s)"));
                }
            }
            Progress::Tick => {}
            Progress::Output { stream, chunk, .. } => self.follow(*stream, chunk),
        }
    }

    /// `chunk` of the followed check's output: its complete lines shown, escaped.
    fn follow(&mut self, stream: Stream, chunk: &[u8]) {
        let i = usize::from(stream == Stream::Stderr);
        let mut rest = chunk;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let mut line = std::mem::take(&mut self.partial[i]);
            line.extend_from_slice(&rest[..nl]);
            self.follow_line(&line);
            rest = &rest[nl + 1..];
        }
        self.partial[i].extend_from_slice(rest);
        while self.partial[i].len() > FOLLOW_LINE {
            let line: Vec<u8> = self.partial[i].drain(..FOLLOW_LINE).collect();
            self.follow_line(&line);
        }
    }

    fn follow_line(&mut self, line: &[u8]) {
        // Control characters (escape sequences, `\r`, BEL) escaped; tabs kept.
        let text = shown(&String::from_utf8_lossy(line));
        self.progress
            .line(&format!("check {} | {text}", self.check));
    }

    /// What the followed check wrote after its last newline, shown once it ended.
    fn end_follow(&mut self) {
        for i in 0..2 {
            let line = std::mem::take(&mut self.partial[i]);
            if !line.is_empty() {
                self.follow_line(&line);
            }
        }
    }

    fn report(&mut self, r: &Report) {
        self.end_follow();
        match r.result {
            Disposition::Landed | Disposition::Recovered => self.landed += 1,
            Disposition::Dead => self.dead += 1,
            _ => {}
        }
        self.step(String::new(), String::new());
    }

    /// Draw (when due): `drain: 3 landed, 1 dead, 12 left; ID: check NAME 2.1s`.
    fn show(&mut self, queue: &Queue, worker: &str) {
        let WorkerStatus {
            progress,
            label,
            landed,
            dead,
            left,
            current,
            step,
            since,
            ..
        } = self;
        progress.update(|_| {
            let done = *landed + *dead;
            let (pending, then) = *left.get_or_insert_with(|| {
                // Those waiting and those in this worker's hands.
                let pending = queue.list(&Filter::default()).map_or(0, |all| {
                    all.iter()
                        .filter(|r| {
                            r.status == Status::Pending
                                || r.status == Status::Leased
                                    && r.lease_owner.as_deref() == Some(worker)
                        })
                        .count()
                });
                (pending, done)
            });
            let left = pending.saturating_sub(done - then);
            let mut text = format!("{label}: {landed} landed, {dead} dead, {left} left");
            if !step.is_empty() {
                text.push_str("; ");
                if !current.is_empty() {
                    text.push_str(current);
                    text.push_str(": ");
                }
                text.push_str(&format!("{step} {:.1}s", since.elapsed().as_secs_f64()));
            }
            text
        });
    }
}
