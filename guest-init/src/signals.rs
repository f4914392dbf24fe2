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

/// Signals sent to PID 1 that it passes on to the command (the list both sides share, see
/// `sekexe_wire::signals`).
pub fn forwarded_to_command(signo: i32) -> bool {
    u8::try_from(signo).is_ok_and(|n| sekexe_wire::signals::FORWARDED.contains(&n))
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

#[cfg(test)]
mod tests {
    use nix::sys::signal::Signal::*;

    #[test]
    fn pid_1_passes_on_the_shared_list() {
        for sig in [SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGTERM] {
            assert!(super::forwarded_to_command(sig as i32), "{sig}");
        }
        for sig in [SIGCHLD, SIGPIPE, SIGSEGV, SIGTSTP, SIGKILL, SIGWINCH] {
            assert!(!super::forwarded_to_command(sig as i32), "{sig}");
        }
        assert!(!super::forwarded_to_command(1 << 20));
    }
}
