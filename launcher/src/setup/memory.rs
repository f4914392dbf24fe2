//! Where runs live on the host: the run folders, in `$TMPDIR` (else /dev/shm or /tmp). Guest
//! memory goes to the kernel's private scratch tmpfs (see `scratch`); only where none can be
//! made does it go to a folder here, which must then allow exec and have room for `--mem`
//! (UML maps it from an unlinked file). A tmpfs is best: memory stays in RAM.

use std::path::{Path, PathBuf};

use crate::units;
use anyhow::{bail, Result};
use rustix::fs::StatVfsMountFlags;

/// `$TMPDIR` when the user set it, else the first of /dev/shm (a tmpfs) and /tmp that is a
/// writable, exec-able folder.
pub fn choose_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("TMPDIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        check_dir(&dir, "TMPDIR=")?;
        return Ok(dir);
    }
    for dir in ["/dev/shm", "/tmp"] {
        if check_dir(Path::new(dir), "").is_ok() {
            return Ok(PathBuf::from(dir));
        }
    }
    bail!("neither /dev/shm nor /tmp can hold guest memory (writable and exec-able): set TMPDIR to a folder that is")
}

fn check_dir(dir: &Path, label: &str) -> Result<()> {
    let vfs = match rustix::fs::statvfs(dir) {
        Ok(v) => v,
        Err(e) => bail!(
            "{label}{}: {e}: set TMPDIR to an existing folder",
            units::shown(dir)
        ),
    };
    if vfs.f_flag.contains(StatVfsMountFlags::NOEXEC) {
        bail!(
            "{label}{} is mounted noexec, and UML maps guest memory from it as executable: set TMPDIR to an exec-able tmpfs, e.g. TMPDIR=/dev/shm if it is not noexec",
            units::shown(dir)
        );
    }
    if rustix::fs::access(
        dir,
        rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
    )
    .is_err()
    {
        bail!(
            "{label}{} is not writable: set TMPDIR to a writable folder",
            units::shown(dir)
        );
    }
    Ok(())
}

/// Fails when the folder cannot hold `mem` bytes: the guest would crash when it touches the
/// memory the file cannot get.
pub fn check_room(dir: &Path, mem: u64) -> Result<()> {
    let vfs = rustix::fs::statvfs(dir)?;
    let free = vfs.f_bavail.saturating_mul(vfs.f_frsize);
    if free < mem {
        bail!(
            "{} has {} MiB free, less than --mem {} MiB needs for guest memory: free some space, lower --mem, or set TMPDIR to a larger tmpfs",
            units::shown(dir),
            free >> 20,
            mem >> 20
        );
    }
    Ok(())
}

/// Whether `dir` is on a tmpfs (guest memory there stays in RAM).
pub fn is_tmpfs(dir: &Path) -> bool {
    const TMPFS_MAGIC: u64 = 0x0102_1994;
    rustix::fs::statfs(dir)
        .map(|s| s.f_type as u64 == TMPFS_MAGIC)
        .unwrap_or(false)
}
