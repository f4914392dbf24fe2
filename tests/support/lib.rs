//! Test support: runs the real `sekexe` binary against a real kernel, each run with its own
//! TMPDIR (on tmpfs, like real use) and a hard timeout, optionally as an unprivileged user,
//! and checks that nothing is left behind.
//!
//! Environment:
//! - `SEKEXE_BIN`: the launcher to test (default: target/release/sekexe, built by
//!   scripts/build; tests fail, never skip, when it is missing).
//! - `SEKEXE_TEST_KERNEL`: the kernel to boot (default: sekexe's own choice).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod forward;
mod procs;
mod run;
mod scratch;
mod through_exec;
mod tmux;

pub use forward::*;
pub use procs::*;
pub use run::*;
pub use scratch::*;
pub use through_exec::*;
pub use tmux::*;

/// The unprivileged user tests drop to when they run as root.
pub const NOBODY: u32 = 65534;
/// Default hard limit for one sekexe run in a test.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(90);

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn sekexe_bin() -> PathBuf {
    let bin = std::env::var_os("SEKEXE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/release/sekexe"));
    assert!(
        bin.is_file(),
        "{} is missing: run scripts/build (or scripts/test), or set SEKEXE_BIN",
        bin.display()
    );
    bin
}

pub fn test_kernel() -> Option<OsString> {
    std::env::var_os("SEKEXE_TEST_KERNEL").filter(|k| !k.is_empty())
}
