//! A real terminal for the tests that need one.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::*;

/// A real terminal: a tmux server of the test's own (its own socket), one pane running a
/// shell command, driven with send-keys and read with capture-pane.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `command` (run by /bin/sh) in a `cols` x `rows` pane.
    pub fn start(command: &str, cols: u16, rows: u16) -> Tmux {
        assert!(
            Command::new("tmux")
                .arg("-V")
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false),
            "tmux is missing: scripts/setup --tests installs it"
        );
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let socket = format!(
            "sekexe-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let t = Tmux { socket };
        let status = t
            .cmd()
            .args([
                "new-session",
                "-d",
                "-x",
                &cols.to_string(),
                "-y",
                &rows.to_string(),
            ])
            .arg(command)
            .status()
            .unwrap();
        assert!(status.success(), "tmux new-session failed");
        // Keep the pane after the command ends, so its last output can still be read.
        t.cmd()
            .args(["set-option", "-g", "remain-on-exit", "on"])
            .status()
            .unwrap();
        t
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"]);
        c
    }

    /// Sends keys as tmux names them (`"C-c"`, `"Enter"`) or literal text with `literal`.
    pub fn keys(&self, keys: &[&str]) {
        let status = self.cmd().arg("send-keys").args(keys).status().unwrap();
        assert!(status.success());
    }

    /// Types `text` literally, then Enter.
    pub fn line(&self, text: &str) {
        let status = self.cmd().args(["send-keys", "-l", text]).status().unwrap();
        assert!(status.success());
        self.keys(&["Enter"]);
    }

    pub fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-J"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen satisfies `pred`; fails the test with the screen after `limit`.
    pub fn wait_for(&self, what: &str, limit: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.screen();
            if pred(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `text` is on the screen.
    pub fn wait_text(&self, text: &str) -> String {
        self.wait_for(text, RUN_TIMEOUT, |s| s.contains(text))
    }

    pub fn resize(&self, cols: u16, rows: u16) {
        let status = self
            .cmd()
            .args([
                "resize-window",
                "-x",
                &cols.to_string(),
                "-y",
                &rows.to_string(),
            ])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

/// Quotes a string for /bin/sh.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The sekexe command line, as shell text, with the test's kernel and TMPDIR.
pub fn sekexe_shell_command(scratch: &Scratch, args: &str) -> String {
    let kernel = test_kernel()
        .map(|k| format!("SEKEXE_KERNEL={} ", sh_quote(&k.to_string_lossy())))
        .unwrap_or_default();
    format!(
        "{kernel}TMPDIR={} {} {args}",
        sh_quote(&scratch.path().to_string_lossy()),
        sh_quote(&sekexe_bin().to_string_lossy())
    )
}
