//! The status record: how the command ended, sent by guest-init as one `Status` frame on the
//! channel just before `End` (a frame arrives whole or not at all). A missing record means the
//! guest failed to report, and the launcher says so.

use crate::codec::{DecodeError, Decoder, Encoder};
use crate::exit::{self, ExitCode};

const MAGIC: &[u8] = b"SEKEXEST";
pub const VERSION: u32 = 3;
/// A failure message longer than this is cut (at a character boundary), so that a record
/// always fits one frame.
pub const MAX_MESSAGE: usize = 8 * 1024;

/// How the command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It exited with this status.
    Exited(u8),
    /// It was killed by this signal.
    Signaled { signal: u8, core_dumped: bool },
    /// No such command (exit 127).
    NotFound,
    /// Found, but exec failed with this errno (exit 126).
    CannotExecute { errno: i32 },
    /// guest-init could not set the guest up or run the command (exit 125).
    GuestFailed { message: String },
}

impl Outcome {
    /// How the command `command` ended, in the words every side prints; `errno_text` names an
    /// errno (this crate has no libc to ask). `None` for a guest failure, whose message is
    /// its own wording.
    pub fn describe(&self, command: &str, errno_text: impl Fn(i32) -> String) -> Option<String> {
        Some(match self {
            Outcome::Exited(code) => format!("{command} exited with status {code}"),
            Outcome::Signaled { signal, .. } => format!("{command} was killed by signal {signal}"),
            Outcome::NotFound => format!("{command}: command not found"),
            Outcome::CannotExecute { errno } => {
                format!("{command}: cannot execute: {}", errno_text(*errno))
            }
            Outcome::GuestFailed { .. } => return None,
        })
    }

    /// The launcher's exit status for this outcome.
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Exited(code) => *code,
            Outcome::Signaled { signal, .. } => exit::for_signal(*signal),
            Outcome::NotFound => ExitCode::NotFound.code(),
            Outcome::CannotExecute { .. } => ExitCode::CannotExecute.code(),
            Outcome::GuestFailed { .. } => ExitCode::Failed.code(),
        }
    }
}

/// Guest clock readings (CLOCK_BOOTTIME, nanoseconds since the kernel started) for the
/// boot timeline `--debug` prints. Zero means the step was not reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timeline {
    /// guest-init started: the kernel's own boot time.
    pub init_ns: u64,
    /// The command was executed.
    pub exec_ns: u64,
    /// The command ended.
    pub exit_ns: u64,
    /// The status was written, just before power-off.
    pub report_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub outcome: Outcome,
    pub timeline: Timeline,
    /// The kernel's calibrated loops per jiffy, when the request asked for it (else 0).
    pub lpj: u64,
}

/// `message` cut to at most [`MAX_MESSAGE`] bytes, at a character boundary.
fn cut(message: &str) -> &str {
    let mut end = message.len().min(MAX_MESSAGE);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

impl Status {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new(MAGIC, VERSION);
        match &self.outcome {
            Outcome::Exited(code) => e.u8(0).u8(*code),
            Outcome::Signaled {
                signal,
                core_dumped,
            } => e.u8(1).u8(*signal).bool(*core_dumped),
            Outcome::NotFound => e.u8(2),
            Outcome::CannotExecute { errno } => e.u8(3).u32(*errno as u32),
            Outcome::GuestFailed { message } => e.u8(4).bytes(cut(message).as_bytes()),
        };
        let t = &self.timeline;
        e.u64(t.init_ns)
            .u64(t.exec_ns)
            .u64(t.exit_ns)
            .u64(t.report_ns)
            .u64(self.lpj);
        e.finish()
    }

    pub fn decode(data: &[u8]) -> Result<Status, DecodeError> {
        let mut d = Decoder::new(data, MAGIC, VERSION)?;
        let outcome = match d.u8("outcome")? {
            0 => Outcome::Exited(d.u8("code")?),
            1 => {
                let signal = d.u8("signal")?;
                if signal == 0 || signal > 64 {
                    return Err(DecodeError::BadValue("signal"));
                }
                Outcome::Signaled {
                    signal,
                    core_dumped: d.bool("core_dumped")?,
                }
            }
            2 => Outcome::NotFound,
            3 => Outcome::CannotExecute {
                errno: d.u32("errno")? as i32,
            },
            4 => Outcome::GuestFailed {
                message: d.string("message")?,
            },
            _ => return Err(DecodeError::BadValue("outcome")),
        };
        let timeline = Timeline {
            init_ns: d.u64("init_ns")?,
            exec_ns: d.u64("exec_ns")?,
            exit_ns: d.u64("exit_ns")?,
            report_ns: d.u64("report_ns")?,
        };
        let lpj = d.u64("lpj")?;
        d.finish()?;
        Ok(Status {
            outcome,
            timeline,
            lpj,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_outcomes() -> Vec<Outcome> {
        vec![
            Outcome::Exited(0),
            Outcome::Exited(255),
            Outcome::Signaled {
                signal: 9,
                core_dumped: false,
            },
            Outcome::Signaled {
                signal: 11,
                core_dumped: true,
            },
            Outcome::NotFound,
            Outcome::CannotExecute { errno: 13 },
            Outcome::GuestFailed {
                message: "mount /proc: EPERM".into(),
            },
        ]
    }

    #[test]
    fn every_outcome_has_one_wording() {
        let errno = |e: i32| format!("errno {e}");
        let words: Vec<Option<String>> = all_outcomes()
            .iter()
            .map(|o| o.describe("cmd", errno))
            .collect();
        assert_eq!(
            words,
            [
                Some("cmd exited with status 0".to_string()),
                Some("cmd exited with status 255".to_string()),
                Some("cmd was killed by signal 9".to_string()),
                Some("cmd was killed by signal 11".to_string()),
                Some("cmd: command not found".to_string()),
                Some("cmd: cannot execute: errno 13".to_string()),
                None,
            ]
        );
    }

    #[test]
    fn a_long_message_is_cut_to_fit_one_frame() {
        let message = "é".repeat(MAX_MESSAGE); // two bytes each: the cut falls mid-character
        let s = Status {
            outcome: Outcome::GuestFailed { message },
            timeline: Timeline::default(),
            lpj: 0,
        };
        let data = s.encode();
        assert!(data.len() <= crate::frame::MAX_PAYLOAD);
        match Status::decode(&data).unwrap().outcome {
            Outcome::GuestFailed { message } => {
                assert_eq!(message.len(), MAX_MESSAGE);
                assert!(message.chars().all(|c| c == 'é'));
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn round_trips_every_outcome() {
        for outcome in all_outcomes() {
            let s = Status {
                outcome,
                timeline: Timeline {
                    init_ns: 1,
                    exec_ns: 2,
                    exit_ns: 3,
                    report_ns: 4,
                },
                lpj: 33_378_304,
            };
            assert_eq!(Status::decode(&s.encode()).unwrap(), s);
        }
    }

    #[test]
    fn every_exit_status_maps_to_itself_and_signals_to_128_plus_n() {
        for code in 0..=255u8 {
            assert_eq!(Outcome::Exited(code).exit_code(), code);
        }
        for signal in 1..=64u8 {
            let o = Outcome::Signaled {
                signal,
                core_dumped: false,
            };
            assert_eq!(o.exit_code() as u32, 128 + signal as u32);
        }
        assert_eq!(Outcome::NotFound.exit_code(), 127);
        assert_eq!(Outcome::CannotExecute { errno: 8 }.exit_code(), 126);
        assert_eq!(
            Outcome::GuestFailed {
                message: String::new()
            }
            .exit_code(),
            125
        );
    }

    #[test]
    fn rejects_impossible_signals_and_truncations() {
        let mut s = Status {
            outcome: Outcome::Signaled {
                signal: 200,
                core_dumped: false,
            },
            timeline: Timeline::default(),
            lpj: 0,
        }
        .encode();
        assert_eq!(Status::decode(&s), Err(DecodeError::BadValue("signal")));
        s = Status {
            outcome: Outcome::Exited(1),
            timeline: Timeline::default(),
            lpj: 0,
        }
        .encode();
        for len in 0..s.len() {
            assert!(Status::decode(&s[..len]).is_err());
        }
    }
}
