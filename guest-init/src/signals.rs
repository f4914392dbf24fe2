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

/// Signals received by PID 1. Returns the numbers read; SIGCHLD means "reap".
pub fn drain(fd: &SignalFd) -> Vec<i32> {
    let mut got = Vec::new();
    while let Ok(Some(info)) = fd.read_signal() {
        got.push(info.ssi_signo as i32);
    }
    got
}

/// Signals sent to PID 1 that it passes on to the command, as tini and docker-init do: the
/// ones that ask a program to stop or act. Faults, job control, SIGPIPE (guest-init's own) and
/// SIGCHLD are not the command's business.
pub fn forwarded_to_command(signo: i32) -> bool {
    [
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGTERM,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ]
    .iter()
    .any(|s| *s as i32 == signo)
}

/// Runs `f` with no signal blocked, for std's posix_spawn: unlike its fork path, it leaves the
/// child the caller's signal mask, and the command must start with none blocked. While the
/// mask is open, a signal for PID 1 with the default action is dropped by the kernel, not
/// queued; the one that matters, SIGCHLD (the command may have ended already), is raised again
/// afterwards so the signalfd sees it (blocked signals are queued even for PID 1). A SIGTERM
/// or SIGINT sent to PID 1 within that millisecond is lost.
pub fn with_none_blocked<T>(f: impl FnOnce() -> T) -> T {
    let mut old = SigSet::empty();
    let opened = nix::sys::signal::sigprocmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::empty()),
        Some(&mut old),
    )
    .is_ok();
    let result = f();
    if opened {
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
        let _ = nix::sys::signal::raise(Signal::SIGCHLD);
    }
    result
}
