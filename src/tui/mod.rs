//! What a terminal shows: text from requests made safe for it, and `git hyperion top`'s
//! state, rendering and data poller.
//!
//! - [`shown`] and [`shown_line`]: the one escaping of hostile text (a request's fields, an
//!   event's actor, a check's output, a path) before it reaches a terminal. `inspect` prints
//!   through it, `top` renders through it.
//! - [`state`]: `top`'s state, pure: the diff of two snapshots of the queue into events, the
//!   filters, the selection, the keys. No terminal, no git: testable as data.
//! - [`ui`]: the state drawn into a ratatui `Frame` (a buffer: a test renders it with
//!   ratatui's `TestBackend`).
//! - [`poll`]: the background thread that reads the queue (`Queue::list`, as `list` does)
//!   and inspects a request (`gate::inspect`), so the thread that draws never waits on git.
//!
//! Nothing here writes to a terminal: the binary's `top` command owns it (raw mode, the
//! alternate screen, the keys), and the library still never prints.

pub mod poll;
pub mod state;
pub mod ui;

/// `s` with every control character but newline and tab escaped (`\u{1b}`): what a request,
/// an event or a check wrote cannot drive the terminal. For text shown as lines.
pub fn shown(s: &str) -> String {
    escaped(s, |c| c == '\n' || c == '\t')
}

/// `s` as one line of a terminal: every control character escaped, newline and tab too. For a
/// field in a table cell or a one-line message.
pub fn shown_line(s: &str) -> String {
    escaped(s, |_| false)
}

/// `s` cut to at most `n` characters (`n` ≥ 1), the last one `…` when it was cut: a long
/// name in a table column or a chart's label.
pub fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut c: String = s.chars().take(n - 1).collect();
        c.push('…');
        c
    }
}

fn escaped(s: &str, keep: impl Fn(char) -> bool) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() && !keep(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        let hostile = "a\x1b[2Jb\x07c\u{9b}31md\r\ne\tf";
        assert_eq!(shown(hostile), "a\\u{1b}[2Jb\\u{7}c\\u{9b}31md\\r\ne\tf");
        assert_eq!(
            shown_line(hostile),
            "a\\u{1b}[2Jb\\u{7}c\\u{9b}31md\\r\\ne\\tf"
        );
        assert!(!shown_line(hostile).chars().any(char::is_control));
        assert_eq!(shown_line("plain, ünïcode"), "plain, ünïcode");
    }
}
