//! The launcher's signals: blocked and read from a signalfd, so they are handled in the event
//! loop (forwarded to the guest, or ending the run) instead of killing the launcher halfway.

use anyhow::{Context, Result};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// Whether `sig` is passed on to the command (the list both sides share).
pub fn forwarded(sig: Signal) -> bool {
    sekexe_wire::signals::FORWARDED.contains(&(sig as i32 as u8))
}

pub fn block() -> Result<SignalFd> {
    let mut set = SigSet::empty();
    for &n in sekexe_wire::signals::FORWARDED {
        set.add(Signal::try_from(i32::from(n)).context("a forwarded signal")?);
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

#[cfg(test)]
mod tests {
    use nix::sys::signal::Signal;

    #[test]
    fn the_shared_numbers_are_the_signals_meant() {
        use Signal::*;
        let named: Vec<Signal> = sekexe_wire::signals::FORWARDED
            .iter()
            .map(|&n| Signal::try_from(i32::from(n)).unwrap())
            .collect();
        assert_eq!(named, [SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGTERM]);
        assert!(super::forwarded(SIGTERM) && !super::forwarded(SIGWINCH));
    }
}
