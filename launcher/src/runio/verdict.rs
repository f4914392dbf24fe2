//! How a run ended, in one pure function: from what the session saw (an interruption, the
//! guest's status record, the timeout) to the exit status and what the user is told. No I/O
//! here, so every path is table-tested.

use sekexe_wire::{ExitCode, Outcome, Status};

use crate::session::Interruption;

/// What the session saw when the kernel was gone.
pub struct Ending<'a> {
    pub interruption: Option<&'a Interruption>,
    /// The guest's status record: none, one, or one that did not decode.
    pub status: Option<&'a Result<Status, String>>,
    /// `--timeout` expired.
    pub timed_out: bool,
    /// The command's name, for messages.
    pub command: &'a str,
}

/// The exit status and what to tell the user.
#[derive(Debug, PartialEq, Eq)]
pub struct Verdict {
    pub code: u8,
    /// A line for stderr (without the `sekexe: ` prefix).
    pub message: Option<String>,
    /// The guest or its kernel failed: show the console's last lines and keep its log.
    pub show_console: bool,
    /// No status came back, and nothing else explains why: the caller diagnoses the cause
    /// from the kernel's console and exit (it has them), then shows the console.
    pub unreported: bool,
    /// sekexe or the guest failed (the 125 is not the command's own).
    pub failed: bool,
}

impl Verdict {
    fn code(code: u8) -> Verdict {
        Verdict {
            code,
            message: None,
            show_console: false,
            unreported: false,
            failed: false,
        }
    }

    fn said(code: u8, message: String) -> Verdict {
        Verdict {
            message: Some(message),
            ..Verdict::code(code)
        }
    }

    fn failed(code: u8, message: String) -> Verdict {
        Verdict {
            show_console: true,
            failed: true,
            ..Verdict::said(code, message)
        }
    }
}

pub fn decide(e: &Ending<'_>) -> Verdict {
    let failed = ExitCode::Failed.code();
    match e.interruption {
        Some(Interruption::Signal(sig)) => {
            return Verdict::said(
                sekexe_wire::exit::for_signal(*sig as i32 as u8),
                format!("stopped by {} before the guest finished", sig.as_str()),
            )
        }
        Some(Interruption::Unresponsive) => {
            return Verdict {
                failed: false,
                ..Verdict::failed(
                    ExitCode::TimedOut.code(),
                    "the guest stopped responding after --timeout; its kernel was killed".into(),
                )
            }
        }
        Some(Interruption::Setup(why)) => {
            return Verdict {
                failed: true,
                ..Verdict::said(failed, why.clone())
            }
        }
        Some(Interruption::Protocol(why)) => {
            return Verdict::failed(failed, format!("the run was stopped: {why}"))
        }
        Some(Interruption::Hostile(why)) => return Verdict::failed(failed, why.clone()),
        Some(Interruption::Lost(why)) => {
            return Verdict {
                failed: true,
                ..Verdict::said(failed, why.clone())
            }
        }
        None => {}
    }
    if e.timed_out {
        return Verdict::code(ExitCode::TimedOut.code());
    }
    let errno_text = |errno: i32| nix::errno::Errno::from_raw(errno).desc().to_string();
    match e.status {
        Some(Ok(status)) => match &status.outcome {
            o @ (Outcome::Exited(_) | Outcome::Signaled { .. }) => Verdict::code(o.exit_code()),
            o @ (Outcome::NotFound | Outcome::CannotExecute { .. }) => Verdict::said(
                o.exit_code(),
                o.describe(e.command, errno_text).unwrap_or_default(),
            ),
            Outcome::GuestFailed { message } => {
                Verdict::failed(failed, format!("the guest failed: {message}"))
            }
        },
        Some(Err(why)) => Verdict::failed(failed, why.clone()),
        None => Verdict {
            unreported: true,
            ..Verdict::failed(
                failed,
                "the guest ended without reporting the command's status".into(),
            )
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;
    use sekexe_wire::status::Timeline;

    /// Signals that can interrupt a run.
    const STOPPERS: [Signal; 2] = [Signal::SIGINT, Signal::SIGTERM];

    fn status(outcome: Outcome) -> Result<Status, String> {
        Ok(Status {
            outcome,
            timeline: Timeline::default(),
            lpj: 0,
        })
    }

    fn decide_for(
        interruption: Option<Interruption>,
        status: Option<Result<Status, String>>,
        timed_out: bool,
    ) -> Verdict {
        decide(&Ending {
            interruption: interruption.as_ref(),
            status: status.as_ref(),
            timed_out,
            command: "cmd",
        })
    }

    #[test]
    fn every_exit_status_passes_through_unchanged() {
        for code in 0..=255u8 {
            let v = decide_for(None, Some(status(Outcome::Exited(code))), false);
            assert_eq!(v, Verdict::code(code), "exit {code}");
        }
    }

    #[test]
    fn every_signal_is_128_plus_n() {
        for signal in 1..=64u8 {
            for core_dumped in [false, true] {
                let v = decide_for(
                    None,
                    Some(status(Outcome::Signaled {
                        signal,
                        core_dumped,
                    })),
                    false,
                );
                assert_eq!(v, Verdict::code(128 + signal), "signal {signal}");
            }
        }
    }

    #[test]
    fn every_ending_has_its_code_and_words() {
        let f = || Some(status(Outcome::Exited(3)));
        #[rustfmt::skip]
        let table: Vec<(Verdict, u8, Option<&str>, bool)> = vec![
            (decide_for(None, Some(status(Outcome::NotFound)), false), 127, Some("cmd: command not found"), false),
            (decide_for(None, Some(status(Outcome::CannotExecute { errno: libc::EACCES })), false), 126, Some("cmd: cannot execute: Permission denied"), false),
            (decide_for(None, Some(status(Outcome::GuestFailed { message: "mount /proc".into() })), false), 125, Some("the guest failed: mount /proc"), true),
            (decide_for(None, Some(Err("the guest's status record is malformed: x".into())), false), 125, Some("the guest's status record is malformed: x"), true),
            (decide_for(None, None, false), 125, Some("the guest ended without reporting the command's status"), true),
            // --timeout: 124 whatever the command did, once the guest reported or not.
            (decide_for(None, f(), true), 124, None, false),
            (decide_for(None, None, true), 124, None, false),
            (decide_for(Some(Interruption::Unresponsive), f(), true), 124, Some("the guest stopped responding after --timeout; its kernel was killed"), true),
            (decide_for(Some(Interruption::Setup("port 80 is taken".into())), f(), false), 125, Some("port 80 is taken"), false),
            (decide_for(Some(Interruption::Protocol("bad frame".into())), f(), false), 125, Some("the run was stopped: bad frame"), true),
            (decide_for(Some(Interruption::Hostile("over the limit".into())), f(), false), 125, Some("over the limit"), true),
        ];
        for (i, (v, code, message, console)) in table.into_iter().enumerate() {
            assert_eq!(v.code, code, "row {i}: {v:?}");
            assert_eq!(v.message.as_deref(), message, "row {i}: {v:?}");
            assert_eq!(v.show_console, console, "row {i}: {v:?}");
            // Every 125 here is sekexe's or the guest's, none the command's.
            assert_eq!(v.failed, code == 125, "row {i}: {v:?}");
        }
        // A command's own 125 is not a failure of sekexe's, even when something interrupts
        // the run only after it reported.
        assert!(!decide_for(None, Some(status(Outcome::Exited(125))), false).failed);
        for sig in STOPPERS {
            // A signal that stopped the run wins over a status the guest may have sent.
            let v = decide_for(Some(Interruption::Signal(sig)), f(), true);
            assert_eq!(v.code, 128 + sig as i32 as u8);
            assert!(v.message.unwrap().contains(sig.as_str()));
        }
        assert!(decide_for(None, None, false).unreported);
        assert!(!decide_for(None, f(), false).unreported);
    }
}
