//! The launcher's signals: blocked and read from a signalfd, so they are handled in the event
//! loop (forwarded to the guest, or ending the run) instead of killing the launcher halfway.

use anyhow::{Context, Result};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// Signals forwarded to the command in stream mode.
pub const FORWARDED: &[Signal] = &[
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

pub fn block() -> Result<SignalFd> {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(*s);
    }
    set.add(Signal::SIGCHLD);
    set.add(Signal::SIGWINCH);
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .context("sigprocmask")?;
    SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).context("signalfd")
}

pub fn drain(fd: &SignalFd) -> Vec<Signal> {
    let mut got = Vec::new();
    while let Ok(Some(info)) = fd.read_signal() {
        if let Ok(s) = Signal::try_from(info.ssi_signo as i32) {
            got.push(s);
        }
    }
    got
}
