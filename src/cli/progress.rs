//! Progress of long steps (`worker`, `gc`, `doctor`, `run`) on stderr: what the library reports
//! through the callbacks a command passes in (`gate::worker::Progress`, `queue::Scan`),
//! shown one of three ways.
//!
//! - **A status line** when stderr is a terminal (and `TERM` is not `dumb`): one line redrawn
//!   in place (`\r`, the text, clear to the end of the line), at most ten times a second and
//!   only when it changed, cut to the terminal's width; cleared before any other line is
//!   printed ([`Progress::clear`], [`Progress::line`]) and at the end.
//! - **Plain lines** otherwise (a CI log, a file): a complete `hyperion: …` line once the step
//!   has run a second, then at most one every five seconds (`HYPERION_PROGRESS_EVERY`). A
//!   command that ends within a second prints none.
//! - **Nothing** with `--no-progress`, and by default with `--format json` (`--progress` asks
//!   for it there too). Progress never goes to stdout: a JSON document there stays whole.
//!
//! The text given here is shown as is: whatever in it came from a request or a check must
//! have gone through `tui::shown_line` first. No colours are used, so `NO_COLOR` has nothing
//! to turn off.
//!
//! Cost: [`Progress::update`] takes a closure that makes the text, called only when a line is
//! due; between lines an update is a clock read (no system call), so reporting every request
//! is free.
//!
//! Not indicatif: one status line, a plain-line fallback and a clear are all this needs, and
//! crossterm (already in the build through ratatui) gives the terminal's width; indicatif
//! (0.18) would add `console`, `portable-atomic` and `unit-prefix` to the build for bars,
//! spinners and multi-bars hyperion does not draw, and its own draw thread and rate limiting
//! would still need the plain-line and JSON rules above.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// `--progress` / `--no-progress` / neither.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum When {
    /// Text output: shown (a status line on a terminal, plain lines otherwise); JSON: not.
    Auto,
    Always,
    Never,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Mode {
    Off,
    Line,
    Plain,
}

/// The fastest redraw of the status line.
const REDRAW: Duration = Duration::from_millis(100);
/// The first plain line, after the step has run this long (or `HYPERION_PROGRESS_EVERY`
/// when that is shorter).
const PLAIN_FIRST: Duration = Duration::from_secs(1);
/// Between two plain lines, unless `HYPERION_PROGRESS_EVERY` says otherwise.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// The time between two plain lines: `HYPERION_PROGRESS_EVERY` (a duration: `30s`, `1m`, `0`
/// for every update) or [`PLAIN_EVERY`].
fn plain_every() -> Duration {
    std::env::var("HYPERION_PROGRESS_EVERY")
        .ok()
        .and_then(|v| hyperion::duration::parse(&v).ok())
        .unwrap_or(PLAIN_EVERY)
}

pub struct Progress {
    mode: Mode,
    started: Instant,
    /// When the next line may be written.
    due: Instant,
    /// Between two plain lines.
    every: Duration,
    /// The status line is on the screen.
    shown: bool,
    /// The text of the status line on the screen.
    last: String,
    /// Columns the status line may take.
    width: usize,
}

impl Progress {
    /// Progress as `when` and the output format ask, on this process's stderr.
    pub fn new(when: When, json: bool) -> Progress {
        let tty = std::io::stderr().is_terminal();
        let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
        let mode = match when {
            When::Never => Mode::Off,
            When::Auto if json => Mode::Off,
            _ if tty && !dumb => Mode::Line,
            _ => Mode::Plain,
        };
        let width = match mode {
            Mode::Line => ratatui::crossterm::terminal::size().map_or(80, |(w, _)| w as usize),
            _ => 0,
        };
        let started = Instant::now();
        let every = match mode {
            Mode::Plain => plain_every(),
            _ => REDRAW,
        };
        Progress {
            mode,
            started,
            due: match mode {
                Mode::Plain => started + PLAIN_FIRST.min(every),
                _ => started,
            },
            every,
            shown: false,
            last: String::new(),
            // The last column stays free: a terminal that wraps there would scroll.
            width: width.saturating_sub(1).max(20),
        }
    }

    /// Whether anything is shown at all (a caller may skip work that only progress needs).
    pub fn on(&self) -> bool {
        self.mode != Mode::Off
    }

    /// Since the step started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Show the state `status` makes, if a line is due (see the module documentation).
    pub fn update(&mut self, status: impl FnOnce(&Progress) -> String) {
        if self.mode == Mode::Off {
            return;
        }
        let now = Instant::now();
        if now < self.due {
            return;
        }
        let text = format!("[{}] {}", clock(self.elapsed()), status(self));
        match self.mode {
            Mode::Line => {
                self.due = now + self.every;
                if self.shown && text == self.last {
                    return;
                }
                let cut: String = text.chars().take(self.width).collect();
                // One write: the line never shows half drawn.
                let _ = std::io::stderr().write_all(format!("\r{cut}\x1b[K").as_bytes());
                self.shown = true;
                self.last = text;
            }
            Mode::Plain => {
                self.due = now + self.every;
                eprintln!("hyperion: {text}");
            }
            Mode::Off => {}
        }
    }

    /// Take the status line off the screen (before something else is printed, on stdout or
    /// stderr); the next [`Progress::update`] that is due draws it again (a check printing
    /// a line every millisecond under `--follow` does not make it redraw faster).
    pub fn clear(&mut self) {
        if self.shown {
            let _ = std::io::stderr().write_all(b"\r\x1b[K");
            self.shown = false;
        }
    }

    /// Print `text` as a line of its own on stderr, above the status line: `worker --follow`'s
    /// lines of check output (escaped by the caller).
    pub fn line(&mut self, text: &str) {
        self.clear();
        eprintln!("{text}");
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}

/// `7s`, `2m05s`, `1h02m`: an elapsed time at a glance.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// What a pass over the requests got through: `chains checked 512/2000`.
pub fn scanned(scan: &hyperion::queue::Scan) -> String {
    format!("{} {}/{}", scan.what, scan.done, scan.total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks() {
        assert_eq!(clock(Duration::from_millis(7_900)), "7s");
        assert_eq!(clock(Duration::from_secs(125)), "2m05s");
        assert_eq!(clock(Duration::from_secs(3_720)), "1h02m");
    }
}
