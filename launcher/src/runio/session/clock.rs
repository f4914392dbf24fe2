//! `--timeout` as a pure clock: given the time, which step is due. The session acts on it.

use std::time::{Duration, Instant};

use crate::config::Timeout;

/// After the timeout's SIGKILL and shutdown request, a guest that has not ended by then is
/// considered hung, and its kernel is killed.
pub const UNRESPONSIVE_WAIT: Duration = Duration::from_secs(5);

/// A step of `--timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `--timeout` expired: send the command SIGTERM (the run now exits 124).
    Terminate,
    /// `--kill-after` passed too: SIGKILL the command and ask the guest to shut down.
    Kill,
    /// The guest did not end after that either: kill its kernel.
    GiveUp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Armed,
    Terminated,
    Killed,
    Done,
}

pub struct TimeoutClock {
    timeout: Option<Timeout>,
    start: Instant,
    stage: Stage,
}

impl TimeoutClock {
    /// A clock for `timeout` counted from `start` (the kernel's start); none without one.
    pub fn new(timeout: Option<Timeout>, start: Instant) -> TimeoutClock {
        TimeoutClock {
            timeout,
            start,
            stage: Stage::Armed,
        }
    }

    /// When the next step is due, if any.
    pub fn next_due(&self) -> Option<Instant> {
        let t = self.timeout?;
        let at = self.start + t.after;
        match self.stage {
            Stage::Armed => Some(at),
            Stage::Terminated => Some(at + t.kill_after),
            Stage::Killed => Some(at + t.kill_after + UNRESPONSIVE_WAIT),
            Stage::Done => None,
        }
    }

    /// The step due at `now`, if any; each step is given once, in order.
    pub fn due(&mut self, now: Instant) -> Option<Action> {
        if now < self.next_due()? {
            return None;
        }
        let (action, next) = match self.stage {
            Stage::Armed => (Action::Terminate, Stage::Terminated),
            Stage::Terminated => (Action::Kill, Stage::Killed),
            Stage::Killed => (Action::GiveUp, Stage::Done),
            Stage::Done => return None,
        };
        self.stage = next;
        Some(action)
    }

    pub fn timeout(&self) -> Option<Timeout> {
        self.timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn without_a_timeout_nothing_is_ever_due() {
        let t0 = Instant::now();
        let mut c = TimeoutClock::new(None, t0);
        assert_eq!(c.next_due(), None);
        assert_eq!(c.due(t0 + 1_000_000 * S), None);
    }

    #[test]
    fn the_steps_come_once_each_in_order_at_their_times() {
        let t0 = Instant::now();
        let timeout = Timeout {
            after: 10 * S,
            kill_after: 2 * S,
        };
        let mut c = TimeoutClock::new(Some(timeout), t0);
        let table = [
            (0, None, Some(10)),
            (9, None, Some(10)),
            (10, Some(Action::Terminate), Some(12)),
            (10, None, Some(12)),
            (11, None, Some(12)),
            (12, Some(Action::Kill), Some(17)),
            (16, None, Some(17)),
            (17, Some(Action::GiveUp), None),
            (1000, None, None),
        ];
        for (at, action, next) in table {
            assert_eq!(c.due(t0 + at * S), action, "at {at} s");
            assert_eq!(c.next_due(), next.map(|n| t0 + n * S), "after {at} s");
        }
    }

    #[test]
    fn a_late_check_takes_one_step_at_a_time() {
        // A loop that wakes late catches up one step per call: no step is skipped (the
        // SIGTERM is always sent before the SIGKILL).
        let t0 = Instant::now();
        let timeout = Timeout {
            after: S,
            kill_after: S,
        };
        let mut c = TimeoutClock::new(Some(timeout), t0);
        let late = t0 + 100 * S;
        assert_eq!(c.due(late), Some(Action::Terminate));
        assert_eq!(c.due(late), Some(Action::Kill));
        assert_eq!(c.due(late), Some(Action::GiveUp));
        assert_eq!(c.due(late), None);
    }
}
