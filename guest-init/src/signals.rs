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

/// Runs `f` with no signal blocked, for std's posix_spawn, which leaves the child the
/// caller's signal mask: the command must start with none blocked. For PID 1, a signal with
/// the default action is discarded when it is not blocked, both one already queued for the
/// signalfd and one arriving while the mask is open. So the queued ones are raised again
/// afterwards, and SIGCHLD always (the command may have ended already); only a signal sent to
/// PID 1 during the spawn itself is lost.
pub fn with_none_blocked<T>(f: impl FnOnce() -> T) -> T {
    let pending = pending();
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
        for sig in pending.iter().chain([Signal::SIGCHLD]) {
            let _ = nix::sys::signal::raise(sig);
        }
    }
    result
}

/// The signals queued for this process and not yet read.
fn pending() -> SigSet {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigpending writes a whole sigset_t into the buffer it is given, which is one.
    if unsafe { libc::sigpending(set.as_mut_ptr()) } != 0 {
        return SigSet::empty();
    }
    // SAFETY: initialised by the successful sigpending above, so it holds only valid signals.
    unsafe { SigSet::from_sigset_t_unchecked(set.assume_init()) }
}
