//! The one reaper: a single `waitpid(-1)` loop tells the command from adopted orphans.

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use sekexe_wire::Outcome;

/// How long leftover processes get between SIGTERM and SIGKILL once the command has ended.
pub const LEFTOVER_GRACE: Duration = Duration::from_millis(1000);
/// How long to wait for SIGKILLed processes to disappear before giving up on them.
pub const KILL_WAIT: Duration = Duration::from_secs(5);

/// Reaps every child that has ended. Returns the command's outcome if `main` was among them,
/// and whether any child is left.
pub fn reap(main: Option<Pid>) -> (Option<Outcome>, bool) {
    let mut outcome = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return (outcome, true),
            Ok(status) => {
                if status.pid().is_some() && status.pid() == main {
                    outcome = outcome_of(status);
                }
            }
            Err(Errno::EINTR) => continue,
            // ECHILD: nobody is left.
            Err(_) => return (outcome, false),
        }
    }
}

fn outcome_of(status: WaitStatus) -> Option<Outcome> {
    match status {
        WaitStatus::Exited(_, code) => Some(Outcome::Exited(code as u8)),
        WaitStatus::Signaled(_, signal, core_dumped) => Some(Outcome::Signaled {
            signal: signal as i32 as u8,
            core_dumped,
        }),
        _ => None,
    }
}

/// Sends `signal` to every process but PID 1; false when there was none.
pub fn signal_all(signal: Signal) -> bool {
    kill(Pid::from_raw(-1), signal).is_ok()
}

/// Terminates every process left, outside the relay (when the command never started):
/// SIGTERM, a grace period, SIGKILL.
pub fn terminate_leftovers(signals: &SignalFd) {
    if !signal_all(Signal::SIGTERM) {
        reap(None);
        return;
    }
    if wait_until_none_left(signals, LEFTOVER_GRACE) {
        return;
    }
    signal_all(Signal::SIGKILL);
    wait_until_none_left(signals, KILL_WAIT);
}

fn wait_until_none_left(signals: &SignalFd, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let (_, left) = reap(None);
        if !left {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        let wait = (deadline - now).min(Duration::from_millis(50));
        let mut fds = [rustix::event::PollFd::new(
            signals,
            rustix::event::PollFlags::IN,
        )];
        let ts = rustix::event::Timespec::try_from(wait).ok();
        let _ = rustix::event::poll(&mut fds, ts.as_ref());
        crate::signals::drain(signals);
    }
}
