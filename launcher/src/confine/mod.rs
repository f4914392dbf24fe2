//! Host confinement of the kernel process: its sandbox (Landlock, seccomp, a read-only mount
//! namespace, fewer capabilities) and its bounded private scratch area.

pub mod sandbox;
pub mod scratch;
pub mod seccomp;
