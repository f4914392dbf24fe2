//! The host terminal: raw mode while attached to a guest terminal, restored on every way out
//! (normal end, errors, signals, a panic), and its size for the guest.

use std::os::fd::AsFd;
use std::sync::Mutex;

use anyhow::{Context, Result};
use rustix::termios::{self, OptionalActions, Termios};

/// The settings of stdin's terminal to restore, also reachable from the panic hook.
static SAVED: Mutex<Option<Termios>> = Mutex::new(None);

/// Raw mode on a terminal for as long as this lives.
pub struct RawMode {
    _private: (),
}

impl RawMode {
    /// Puts stdin's terminal in raw mode if it is one; `None` when it is not.
    pub fn enter() -> Result<Option<RawMode>> {
        let stdin = std::io::stdin();
        let fd = stdin.as_fd();
        if !termios::isatty(fd) {
            return Ok(None);
        }
        let saved = termios::tcgetattr(fd).context("read the terminal settings")?;
        let mut raw = saved.clone();
        raw.make_raw();
        *SAVED.lock().unwrap() = Some(saved);
        termios::tcsetattr(fd, OptionalActions::Drain, &raw).context("set raw mode")?;
        Ok(Some(RawMode { _private: () }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore();
    }
}

/// Puts the terminal back as it was, if raw mode is on.
pub fn restore() {
    if let Some(saved) = SAVED.lock().map(|mut s| s.take()).unwrap_or(None) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, &saved);
    }
}

/// Restores the terminal before a panic message is printed.
pub fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
}

/// The size of the first of stdin, stdout and stderr that is a terminal.
pub fn size() -> Option<(u16, u16)> {
    let fds = [
        std::io::stdin().as_fd().try_clone_to_owned().ok()?,
        std::io::stdout().as_fd().try_clone_to_owned().ok()?,
        std::io::stderr().as_fd().try_clone_to_owned().ok()?,
    ];
    fds.iter()
        .filter(|fd| termios::isatty(fd))
        .find_map(|fd| termios::tcgetwinsize(fd).ok())
        .filter(|ws| ws.ws_row > 0 && ws.ws_col > 0)
        .map(|ws| (ws.ws_row, ws.ws_col))
}
