//! The signals that reach the command: the launcher passes these on as `Signal` frames, and
//! PID 1 passes these on when they are sent to it in the guest, as tini and docker-init do.
//! They ask a program to stop or act; faults, job control, SIGPIPE and SIGCHLD are not the
//! command's business. Numbers, not names, keep this crate dependency-free; each side's tests
//! check them against its own signal type.

/// SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2 and SIGTERM (Linux numbering).
pub const FORWARDED: &[u8] = &[1, 2, 3, 10, 12, 15];
