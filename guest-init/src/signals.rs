//! PID 1's signals: all blocked from the first instant and read from a signalfd. Blocked, not
//! ignored, because ignored dispositions are inherited by the command and blocked ones are
//! reset before exec.

use anyhow::{Context, Result};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

pub fn block_all() -> Result<SignalFd> {
    let all = SigSet::all();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&all), None)
        .context("sigprocmask")?;
    SignalFd::with_flags(&all, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).context("signalfd")
}

/// Signals received by PID 1 that the relay handles: SIGCHLD means "reap"; the rest are
/// forwarded to the command, as tini and docker-init do. Returns the numbers read.
pub fn drain(fd: &SignalFd) -> Vec<i32> {
    let mut got = Vec::new();
    while let Ok(Some(info)) = fd.read_signal() {
        got.push(info.ssi_signo as i32);
    }
    got
}

pub fn is_child(signo: i32) -> bool {
    signo == Signal::SIGCHLD as i32
}
