//! The small files sekexe keeps for itself (the kernel-config and calibration caches). Their
//! folders are the user's, but a guest run with `--no-sandbox` (or one whose rw volume covers
//! them) could have planted a link or a FIFO there: reads never follow a link, never block,
//! and take at most a cap; writes go to a new temporary file (O_EXCL, so never through a
//! link) renamed into place.

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
