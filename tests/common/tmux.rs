//! A real terminal for the tests: a tmux server of the test's own (`-L SOCKET`), one session
//! running a shell command, its screen read back as text. Killed when the test ends, failing
//! or not. tmux must be installed (.ci/run installs it): without it these tests fail.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Tmux {
    socket: String,
    session: String,
    home: std::path::PathBuf,
    dir: std::path::PathBuf,
}

impl Tmux {
    /// A server on `socket` (made unique per process here) for session `session`, its
    /// commands run hermetic in `dir` with `HOME` at `home`. Nothing runs until [`Tmux::start`].
    pub fn new(socket: &str, session: &str, dir: &Path, home: &Path) -> Tmux {
        Tmux {
            socket: format!("{socket}-{}", std::process::id()),
            session: session.to_owned(),
            home: home.to_owned(),
            dir: dir.to_owned(),
        }
    }

    /// Start the session: `script` run by the shell in a `width`×`height` terminal.
    pub fn start(&self, width: u16, height: u16, script: &str) {
        let (w, h) = (width.to_string(), height.to_string());
        self.ok(&[
            "new-session",
            "-d",
            "-s",
            &self.session,
            "-x",
            &w,
            "-y",
            &h,
            script,
        ]);
    }

    pub fn cmd(&self) -> Command {
        let mut c = super::hermetic::command("tmux", &self.dir, &self.home);
        c.args(["-L", &self.socket]);
        c
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self
            .cmd()
            .args(args)
            .output()
            .expect("tmux runs (install it: apt-get install tmux; .ci/run does)");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The screen as text (escapes that reached tmux are interpreted, not shown).
    pub fn screen(&self) -> String {
        self.ok(&["capture-pane", "-p", "-t", &self.session])
    }

    pub fn keys(&self, keys: &[&str]) {
        let mut a = vec!["send-keys", "-t", self.session.as_str()];
        a.extend(keys);
        self.ok(&a);
    }

    /// The screen once `ok` holds for it, within 30 s; panics with the last screen if never.
    pub fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "never saw {what}; the screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A tmux format (`#{alternate_on}`, `#{cursor_flag}`, `#{pane_title}`) for the pane.
    pub fn display(&self, format: &str) -> String {
        self.ok(&["display-message", "-p", "-t", &self.session, format])
            .trim()
            .to_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}
