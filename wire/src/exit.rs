//! sekexe's exit codes, the same as `timeout`, `env` and `docker run` use.
//!
//! | code    | meaning                                           |
//! |---------|---------------------------------------------------|
//! | 0-123   | the command's own exit status                     |
//! | 124     | `--timeout` expired                               |
//! | 125     | sekexe itself or the guest failed                 |
//! | 126     | the command was found but could not be executed   |
//! | 127     | the command was not found                         |
//! | 128+N   | the command was killed by signal N                |
//!
//! A command may itself exit with 124-255; sekexe passes that status through unchanged, as
//! `timeout` and `env` do.

/// The exit codes sekexe gives itself; any other value is the command's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    TimedOut = 124,
    Failed = 125,
    CannotExecute = 126,
    NotFound = 127,
}

/// Killed by signal N exits with `SIGNAL_BASE + N`.
pub const SIGNAL_BASE: u8 = 128;

impl ExitCode {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// The status a shell reports for a process killed by `signal`.
pub fn for_signal(signal: u8) -> u8 {
    SIGNAL_BASE.saturating_add(signal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_timeout_env_and_docker() {
        assert_eq!(ExitCode::TimedOut.code(), 124);
        assert_eq!(ExitCode::Failed.code(), 125);
        assert_eq!(ExitCode::CannotExecute.code(), 126);
        assert_eq!(ExitCode::NotFound.code(), 127);
        assert_eq!(for_signal(9), 137);
        assert_eq!(for_signal(15), 143);
    }
}
