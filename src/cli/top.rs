use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use hyperion::tui::poll::{Ask, Fetching, Msg, Poller};
use hyperion::tui::state::{Action, State};
use hyperion::tui::ui;
use ratatui::crossterm::event::{self, Event, KeyEventKind};

use super::error::{CmdResult, CommandError};
use super::{Ctx, parse_duration_arg};

/// Watch the queue live: requests, their events, one request in detail.
///
/// A full-screen view of the queue, read again at the refresh rate on a thread of its own
/// (the same read as `list`): a header with the count of each status, the requests
/// (filterable by status, agent and text), the stream of what happened to them (enqueued,
/// leased by a worker, landed as a commit, dead with its class and code in red, requeued…),
/// and a detail pane with everything `inspect` reads about the selected request. `?` shows
/// the keys; `q`, Esc or Ctrl-C quits and gives the terminal back as it was.
///
/// In remote mode (`--remote NAME`, else `hyperion.remote`) the queue is fetched from the
/// remote every `--fetch-every` (as `git hyperion fetch` does), so that what other machines
/// enqueue, lease and land shows too; the status line says when it was fetched last, or why
/// the fetch failed.
///
/// Needs a terminal (80×24 is plenty; smaller works with less); for the queue as data use
/// `git hyperion list --format json`. Text from requests and checks is shown escaped.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// How often to read the queue (100ms to 1h); `+` and `-` change it while running.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration_arg)]
    refresh: Duration,
    /// In remote mode, how often to fetch the queue from the remote (1s to 1h; default
    /// 10s); `0s` never fetches (this clone's view, as `list` without `--fetch`).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    fetch_every: Option<Duration>,
}

/// How often `top` fetches in remote mode unless told.
const FETCH_EVERY: Duration = Duration::from_secs(10);

/// The refresh rates `--refresh` accepts: faster would spin on git, slower is not live.
const FASTEST: Duration = Duration::from_millis(100);
const SLOWEST: Duration = Duration::from_secs(3600);

pub fn run(args: Args, ctx: &Ctx) -> CmdResult {
    // The arguments and the repository first, then the terminal: each error before the
    // screen is taken.
    if !(FASTEST..=SLOWEST).contains(&args.refresh) {
        return Err(CommandError::usage(format!(
            "--refresh {} is out of range",
            hyperion::duration::format(args.refresh)
        ))
        .hint("use a rate from 100ms to 1h, such as 500ms, 1s or 10s"));
    }
    ctx.queue()?;
    let fetching = fetching(&args, ctx)?;
    if ctx.json() || !std::io::stdout().is_terminal() {
        return Err(CommandError::usage(
            "top is interactive and needs a terminal (its output is not one)",
        )
        .hint("for the queue as data use `git hyperion list --format json`"));
    }
    let poller = Poller::spawn(ctx.dir.clone(), args.refresh, fetching)
        .map_err(|e| CommandError::usage(format!("cannot start the poller: {e}")))?;
    // SIGTERM or SIGHUP (the ssh connection dropped) end the loop like `q`, so the terminal
    // is given back.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| CommandError::usage(format!("cannot handle signals: {e}")))?;
    }
    // Raw mode and the alternate screen; ratatui's panic hook gives the terminal back before
    // a panic is reported.
    let mut terminal = ratatui::try_init()
        .map_err(|e| CommandError::usage(format!("cannot set up the terminal: {e}")))?;
    // Keys are read on a thread of their own: crossterm's read spins, never returning, on a
    // terminal that hung up, and the loop must still see the hang-up and end.
    let (keys_tx, keys) = mpsc::channel();
    let _ = std::thread::Builder::new()
        .name("top-keys".to_owned())
        .spawn(move || {
            while let Ok(e) = event::read() {
                if keys_tx.send(e).is_err() {
                    return;
                }
            }
        });
    let result = event_loop(
        &mut terminal,
        &poller,
        &keys,
        State::new(args.refresh),
        &stop,
    );
    drop(terminal);
    let restored = ratatui::try_restore();
    let _ = ratatui::crossterm::execute!(std::io::stdout(), ratatui::crossterm::cursor::Show);
    result.map_err(|e| CommandError::usage(format!("terminal: {e}")))?;
    restored.map_err(|e| CommandError::usage(format!("cannot restore the terminal: {e}")))?;
    Ok(())
}

/// What the poller fetches before its polls: the remote in remote mode, every
/// `--fetch-every`; nothing without a remote or with `--fetch-every 0s`.
fn fetching(args: &Args, ctx: &Ctx) -> CmdResult<Option<Fetching>> {
    let remote = ctx.remote()?;
    let every = args.fetch_every;
    let Some(remote) = remote else {
        if every.is_some_and(|d| !d.is_zero()) {
            return Err(CommandError::usage(
                "--fetch-every needs remote mode: this repository shares its queue through no remote",
            )
            .hint("name one with --remote NAME, or set hyperion.remote (`git hyperion init --remote NAME`)"));
        }
        return Ok(None);
    };
    let every = every.unwrap_or(FETCH_EVERY);
    if every.is_zero() {
        return Ok(None);
    }
    if !(Duration::from_secs(1)..=SLOWEST).contains(&every) {
        return Err(CommandError::usage(format!(
            "--fetch-every {} is out of range",
            hyperion::duration::format(every)
        ))
        .hint("use a period from 1s to 1h, such as 5s or 1m, or 0s not to fetch"));
    }
    Ok(Some(Fetching {
        remote,
        every,
        actor: super::enqueue::actor(),
    }))
}

/// Draw, take what the poller sent, handle keys, until quit. Never waits on git: the poller
/// does, and its answers are taken with `try_recv`.
fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    poller: &Poller,
    keys: &mpsc::Receiver<Event>,
    mut state: State,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    // Drawn again only when something changed: what the poller sent, a key, a resize.
    let mut changed = true;
    loop {
        while let Ok(msg) = poller.rx.try_recv() {
            changed = true;
            let action = match msg {
                Msg::Snapshot { records, at } => state.snapshot(records, at),
                Msg::Fetched { remote, outcome } => {
                    state.fetched(remote, outcome);
                    None
                }
                Msg::Failed(m) => {
                    state.poll_failed(m);
                    None
                }
                Msg::Inspected { id, found } => {
                    state.inspected(&id, found);
                    None
                }
            };
            if let Some(a) = action {
                act(poller, a);
            }
        }
        if changed {
            terminal.draw(|f| ui::draw(f, &state))?;
            changed = false;
            hyperion::git::os::panic_point("top.drawn");
        }
        // A signal, or the terminal hung up (tmux killed, the ssh connection gone: the kernel
        // signals only the session's leader, and a hung-up tty answers every ioctl with EIO,
        // so it stops being a terminal).
        if stop.load(Ordering::Relaxed) || !std::io::stdout().is_terminal() {
            return Ok(());
        }
        // Wake for a key, or in time to show what the poller sent.
        match keys.recv_timeout(Duration::from_millis(50)) {
            Ok(Event::Key(k)) if k.kind != KeyEventKind::Release => {
                changed = true;
                if let Some(a) = state.key(k) {
                    if a == Action::Quit {
                        return Ok(());
                    }
                    act(poller, a);
                }
            }
            // A resize is drawn on the next turn.
            Ok(_) => changed = true,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        }
    }
}

fn act(poller: &Poller, a: Action) {
    match a {
        Action::Inspect(id) => poller.ask(Ask::Inspect(id)),
        Action::Refresh(d) => poller.ask(Ask::Refresh(d)),
        Action::PollNow => poller.ask(Ask::Now),
        Action::Quit => {}
    }
}
