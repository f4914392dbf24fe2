//! The small files sekexe keeps for itself (the kernel-config and calibration caches, the CPU
//! counter). Their folders are the user's, but a guest run with `--no-sandbox` (or one whose
//! rw volume covers them) could have planted a link or a FIFO there: reads never follow a
//! link, never block, and take at most a cap; writes go to a new temporary file (O_EXCL, so
//! never through a link) renamed into place; an update in place takes a lock it never waits
//! for.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, Result};
use rustix::fs::{FileType, Mode, OFlags};

/// The contents of `path` if it is a regular file of at most `max` bytes.
pub fn read_small(path: &Path, max: u64) -> Option<Vec<u8>> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let st = rustix::fs::fstat(&fd).ok()?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile || st.st_size as u64 > max {
        return None;
    }
    let mut data = Vec::new();
    std::fs::File::from(fd)
        .take(max + 1)
        .read_to_end(&mut data)
        .ok()?;
    (data.len() as u64 <= max).then_some(data)
}

/// Changes the small file `path` in place under an exclusive lock: `change` gets its first
/// `max` bytes (nothing for a new file) and returns its new contents; returns the old ones.
/// None when it is not a regular file, or someone else holds the lock (never waited for:
/// a guest that took over its kernel can read, and so lock, the user's files).
pub fn update_locked(
    path: &Path,
    max: u64,
    change: impl FnOnce(&[u8]) -> Vec<u8>,
) -> Option<Vec<u8>> {
    use std::io::Seek;
    let fd = rustix::fs::open(
        path,
        OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::RUSR | Mode::WUSR,
    )
    .ok()?;
    let st = rustix::fs::fstat(&fd).ok()?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return None;
    }
    rustix::fs::flock(&fd, rustix::fs::FlockOperation::NonBlockingLockExclusive).ok()?;
    let mut f = std::fs::File::from(fd);
    let mut old = Vec::new();
    (&f).take(max).read_to_end(&mut old).ok()?;
    let new = change(&old);
    f.set_len(0).ok()?;
    f.rewind().ok()?;
    f.write_all(&new).ok()?;
    Some(old)
}

/// Replaces `path` with `data` at once: readers see the old file or the new one.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().context("a file in a folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(data)?;
    tmp.persist(path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_update_never_follows_a_link_opens_a_fifo_or_waits() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("n");
        let add = |old: &[u8]| [old, b"x"].concat();
        assert_eq!(update_locked(&file, 8, add).unwrap(), b"");
        assert_eq!(update_locked(&file, 8, add).unwrap(), b"x");
        assert_eq!(std::fs::read(&file).unwrap(), b"xx");
        let holder = std::fs::File::open(&file).unwrap();
        rustix::fs::flock(&holder, rustix::fs::FlockOperation::LockExclusive).unwrap();
        assert_eq!(
            update_locked(&file, 8, add),
            None,
            "locked elsewhere: no wait"
        );
        drop(holder);
        let link = d.path().join("link");
        std::os::unix::fs::symlink(d.path().join("elsewhere"), &link).unwrap();
        assert_eq!(update_locked(&link, 8, add), None);
        assert!(!d.path().join("elsewhere").exists());
        let fifo = d.path().join("fifo");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, Mode::RUSR | Mode::WUSR).unwrap();
        assert_eq!(update_locked(&fifo, 8, add), None);
    }

    #[test]
    fn links_fifos_and_large_files_are_not_read() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("f");
        std::fs::write(&file, "12345").unwrap();
        assert_eq!(read_small(&file, 5).unwrap(), b"12345");
        assert_eq!(read_small(&file, 4), None, "over the cap");
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(read_small(&link, 100), None);
        let fifo = d.path().join("fifo");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, Mode::RUSR | Mode::WUSR).unwrap();
        assert_eq!(read_small(&fifo, 100), None, "and without blocking");
    }

    #[test]
    fn writes_replace_a_planted_link_instead_of_following_it() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, "original").unwrap();
        let cache = d.path().join("sub/cache");
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::os::unix::fs::symlink(&victim, &cache).unwrap();
        write_atomic(&cache, b"new").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"original");
        assert_eq!(read_small(&cache, 10).unwrap(), b"new");
    }
}
