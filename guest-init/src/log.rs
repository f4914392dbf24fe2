//! guest-init's own messages. Errors always go to the kernel console, which the launcher keeps
//! and shows when a run fails. With `--debug` every step is also sent over the channel as a
//! `Log` frame stamped with the guest clock; steps taken before the request is read (and so
//! before guest-init knows whether to report them) wait in memory.

use std::io::Write;

use sekexe_wire::GuestFrame;

use crate::channel::Channel;
use crate::clock;

pub struct Log {
    pending: Vec<String>,
    /// `None` until the request says whether `--debug` is on.
    debug: Option<bool>,
}

impl Log {
    pub fn new() -> Self {
        Log {
            pending: Vec::new(),
            debug: None,
        }
    }

    /// Records a step.
    pub fn step(&mut self, text: &str) {
        if self.debug != Some(false) {
            let line = format!("[{:>7} ms] {text}", clock::ms(clock::boottime_ns()));
            self.pending.push(line);
        }
    }

    pub fn set_debug(&mut self, on: bool) {
        self.debug = Some(on);
        if !on {
            self.pending = Vec::new();
        }
    }

    pub fn is_debug(&self) -> bool {
        self.debug == Some(true)
    }

    /// Sends the recorded steps, once `--debug` is known to be on.
    pub fn flush(&mut self, channel: &mut Channel) {
        if self.is_debug() {
            for line in self.pending.drain(..) {
                channel.send(GuestFrame::Log(line.as_bytes()));
            }
        }
    }

    /// An error worth keeping: on the kernel console, and in the debug log.
    pub fn error(&mut self, text: &str) {
        console(text);
        self.step(text);
    }
}

/// Writes a line to the kernel console: guest-init's stderr is /dev/console, which the
/// launcher keeps and shows when a run fails.
pub fn console(text: &str) {
    let _ = writeln!(std::io::stderr(), "sekexe-init: {text}");
}
