//! The run's private folder on the host, `$TMPDIR/sekexe-<uid>/run-XXXXXXXX` (0700).
//!
//! Only the launcher writes here: the request and bulk stdin (read by the guest over hostfs,
//! read-only), a lock, the disk links, and `net/` for the user-mode network helper. The kernel
//! process may read it but not change it (the sandbox); its own files live in its scratch area
//! (see `scratch`). Even so, with `--no-sandbox` or without Landlock the guest could plant
//! links, FIFOs or devices here, so every operation goes through the folder's fd, never follows
//! a link, creates only what does not exist yet, and reads nothing the guest could have made.
//! The folder is removed when the run ends unless `--keep` is given; a lock held for the run's
//! lifetime lets the next run remove folders left by a launcher that was killed.

use std::fs::{DirBuilder, File};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::units;
use anyhow::{bail, Context, Result};
use rustix::fs::{AtFlags, FileType, FlockOperation, Mode, OFlags};
use sekexe_wire::names::REQUEST_FILE;
use sekexe_wire::{Request, Status};

const LOCK_FILE: &str = "lock";
/// Run folders are `run-XXXXXXXX`; while being set up, `.new-XXXXXXXX`.
const RUN_PREFIX: &str = "run-";
const NEW_PREFIX: &str = ".new-";
/// Marks a folder kept with `--keep`, which stale-folder removal leaves alone.
const KEPT_FILE: &str = "kept";
/// In a kept folder: the status record as the launcher received it on the channel.
const STATUS_FILE: &str = "status";
/// The user-mode network helper's sockets and log (it may write there, the kernel may not).
const NET_DIR: &str = "net";

pub struct RunDir {
    path: PathBuf,
    files: Files,
    /// Held (flock) for the run's lifetime; its release marks the folder as stale.
    _lock: File,
    keep: bool,
}

/// Files the launcher makes and removes in the run folder, through the folder's fd.
pub struct Files {
    dir: OwnedFd,
}

/// `$TMPDIR/sekexe-<uid>`: private to the user, checked so that another user cannot have
/// planted it.
pub fn user_base(tmpdir: &Path) -> Result<PathBuf> {
    let uid = rustix::process::geteuid().as_raw();
    let base = tmpdir.join(format!("sekexe-{uid}"));
    match DirBuilder::new().mode(0o700).create(&base) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "cannot create {} (TMPDIR={}): set TMPDIR to a writable folder",
                    units::shown(&base),
                    units::shown(tmpdir)
                )
            })
        }
    }
    let meta = std::fs::symlink_metadata(&base)
        .with_context(|| format!("stat {}", units::shown(&base)))?;
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
        bail!(
            "{} is not a private folder of uid {uid} (owner {}, mode {:o}): remove it, or set TMPDIR elsewhere",
            units::shown(&base),
            meta.uid(),
            meta.mode() & 0o7777
        );
    }
    Ok(base)
}

/// Opens a folder without following a link at its last component.
fn open_dir(path: &Path) -> rustix::io::Result<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::RDONLY,
        Mode::empty(),
    )
}

impl Files {
    /// Creates `name` with `data`: never through a link, never over anything already there.
    pub fn create(&self, name: &str, data: &[u8]) -> Result<()> {
        let fd = rustix::fs::openat(
            &self.dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::RUSR | Mode::WUSR,
        )
        .with_context(|| {
            if rustix::fs::fstat(&self.dir).is_ok_and(|st| st.st_nlink == 0) {
                format!("create {name} in the run folder: the folder was removed during the run")
            } else if rustix::fs::statat(&self.dir, name, AtFlags::SYMLINK_NOFOLLOW).is_ok() {
                format!("create {name} in the run folder: something is there already, which only a hostile guest could have put there")
            } else {
                format!("create {name} in the run folder")
            }
        })?;
        // std's write_all retries interrupted writes.
        File::from(fd)
            .write_all(data)
            .with_context(|| format!("write {name} in the run folder (is TMPDIR full?)"))
    }

    /// Removes `name` (the entry itself, whatever it is; unlinkat never follows a link).
    pub fn remove(&self, name: &str) {
        let _ = rustix::fs::unlinkat(&self.dir, name, AtFlags::empty());
    }

    /// Removes every file whose name starts with `prefix` (a warm guest's session that ended
    /// with stdin files unread).
    pub fn remove_prefixed(&self, prefix: &str) {
        let Ok(mut dir) = rustix::fs::Dir::read_from(&self.dir) else {
            return;
        };
        let names: Vec<String> = std::iter::from_fn(|| dir.read())
            .flatten()
            .filter_map(|e| e.file_name().to_str().ok().map(str::to_string))
            .filter(|n| n.starts_with(prefix))
            .collect();
        for name in names {
            self.remove(&name);
        }
    }

    /// The folder itself, to hand to `sekexe exec` (which leaves its stdin files there).
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.dir.as_fd()
    }

    /// The folder a warm guest's launcher handed over.
    pub fn from_fd(dir: OwnedFd) -> Files {
        Files { dir }
    }
}

impl RunDir {
    /// Makes the folder under a `.new-` name and renames it to `run-` only once it is locked,
    /// so another launcher's sweep of stale folders never sees it unlocked.
    pub fn create(base: &Path) -> Result<RunDir> {
        let dir = tempfile::Builder::new()
            .prefix(NEW_PREFIX)
            .rand_bytes(8)
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir_in(base)
            .with_context(|| {
                format!(
                    "cannot create a run folder in {} (is it full?)",
                    units::shown(base)
                )
            })?;
        let new = dir.keep();
        let cleanup = |e: anyhow::Error| {
            let _ = std::fs::remove_dir_all(&new);
            e
        };
        let fd = open_dir(&new)
            .context("open the run folder")
            .map_err(cleanup)?;
        let lock = rustix::fs::openat(
            &fd,
            LOCK_FILE,
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::RUSR | Mode::WUSR,
        )
        .context("create the run lock")
        .map_err(cleanup)?;
        rustix::fs::flock(&lock, FlockOperation::LockExclusive)
            .context("lock the run folder")
            .map_err(cleanup)?;
        let name = new
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replacen(NEW_PREFIX, RUN_PREFIX, 1);
        let path = base.join(name);
        std::fs::rename(&new, &path)
            .context("name the run folder")
            .map_err(cleanup)?;
        Ok(RunDir {
            path,
            files: Files { dir: fd },
            _lock: File::from(lock),
            keep: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A handle for the files the launcher makes during the run (bulk stdin).
    pub fn files(&self) -> Result<Files> {
        Ok(Files {
            dir: rustix::io::fcntl_dupfd_cloexec(&self.files.dir, 3).context("dup")?,
        })
    }

    pub fn write_request(&self, request: &Request) -> Result<()> {
        self.files.create(REQUEST_FILE, &request.encode())
    }

    /// The folder for the user-mode network helper, made on first use.
    pub fn net_dir(&self) -> Result<PathBuf> {
        rustix::fs::mkdirat(&self.files.dir, NET_DIR, Mode::RWXU)
            .context("create the network helper's folder")?;
        Ok(self.path.join(NET_DIR))
    }

    /// Links each disk from the run folder as `disk-N` and returns the links.
    pub fn link_disks(&self, disks: &[(&Path, bool)]) -> Result<Vec<PathBuf>> {
        disks
            .iter()
            .enumerate()
            .map(|(i, (target, _))| {
                let name = format!("disk-{i}");
                rustix::fs::symlinkat(*target, &self.files.dir, name.as_str())
                    .with_context(|| format!("link {}", units::shown(target)))?;
                Ok(self.path.join(name))
            })
            .collect()
    }

    /// Keeps the folder after the run (`--keep`), with the launcher's copy of the status
    /// record the guest sent, for whoever looks into it.
    pub fn keep(&mut self, status: Option<&Status>) {
        self.keep = true;
        let _ = self.files.create(KEPT_FILE, b"");
        if let Some(status) = status {
            let _ = self.files.create(STATUS_FILE, &status.encode());
        }
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if !self.keep {
            // remove_dir_all never follows a link: a planted one goes, its target stays.
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Kills this user's processes whose command line names `folder`: what a launcher killed
/// with SIGKILL could not take down (a network helper's own child, forked before the kernel
/// connected to it).
fn kill_processes_using(folder: &Path) {
    let needle = folder.as_os_str().as_encoded_bytes();
    let me = rustix::process::getuid().as_raw();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in procs.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let owner = entry.metadata().map(|m| m.uid()).unwrap_or(u32::MAX);
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if owner == me && cmdline.windows(needle.len()).any(|w| w == needle) {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

/// How many kernel logs of failed runs are kept.
const KEEP_FAILURE_LOGS: usize = 10;

/// Saves the kernel log of a failed run as `<dir>/failed-<umid>.log` (a new file, never through
/// a link), keeps only the newest few there, and returns its path.
pub fn save_failure_log(dir: &Path, umid: &str, log: &[u8]) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", units::shown(dir)))?;
    let files = Files {
        dir: open_dir(dir).with_context(|| format!("open {}", units::shown(dir)))?,
    };
    let name = format!("failed-{umid}.log");
    files.create(&name, log)?;
    let mut logs: Vec<(SystemTime, String)> = std::fs::read_dir(dir)?
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.to_owned();
            let m = e.metadata().ok()?; // DirEntry::metadata does not follow links
            (n.starts_with("failed-") && n.ends_with(".log") && m.is_file())
                .then_some((m.modified().ok()?, n))
        })
        .collect();
    logs.sort();
    let excess = logs.len().saturating_sub(KEEP_FAILURE_LOGS);
    for (_, old) in logs.into_iter().take(excess) {
        files.remove(&old);
    }
    Ok(dir.join(name))
}

/// The state of a run folder's lock file.
#[derive(Debug, PartialEq)]
enum Lock {
    /// Its launcher is gone.
    Free,
    /// A launcher runs.
    Held,
    /// No regular lock file: a launcher died setting up, or something replaced it.
    Unusable,
}

/// Opens `dir`'s lock without following a link and without blocking (a FIFO planted there
/// must not hang us); only a regular file counts.
fn lock_state(dir: &Path) -> Lock {
    let Ok(d) = open_dir(dir) else {
        return Lock::Unusable;
    };
    let Ok(lock) = rustix::fs::openat(
        &d,
        LOCK_FILE,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return Lock::Unusable;
    };
    match rustix::fs::fstat(&lock) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {
            match rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => Lock::Free,
                Err(_) => Lock::Held,
            }
        }
        _ => Lock::Unusable,
    }
}

/// Removes run folders whose launcher is gone: their lock is free. Folders a launcher died
/// setting up (`.new-`, or without a usable lock file) go once they are a minute old.
pub fn remove_stale(base: &Path, ours: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let (is_run, is_new) = (name.starts_with(RUN_PREFIX), name.starts_with(NEW_PREFIX));
        // DirEntry::file_type does not follow links: only real folders are looked into.
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if !(is_run || is_new)
            || !is_dir
            || path == ours
            || std::fs::symlink_metadata(path.join(KEPT_FILE)).is_ok()
        {
            continue;
        }
        let old = || {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .map(|t| {
                    SystemTime::now().duration_since(t).unwrap_or_default()
                        > Duration::from_secs(60)
                })
                .unwrap_or(false)
        };
        let stale = match (is_run, lock_state(&path)) {
            (true, Lock::Free) => true,
            (true, Lock::Held) => false,
            _ => old(),
        };
        if stale {
            kill_processes_using(&path);
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            d.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        d
    }

    #[test]
    fn files_are_created_new_and_never_through_a_link() {
        let b = base();
        let run = RunDir::create(b.path()).unwrap();
        let victim = b.path().join("victim");
        std::fs::write(&victim, "original").unwrap();
        std::os::unix::fs::symlink(&victim, run.path().join("stdin-0")).unwrap();
        let files = run.files().unwrap();
        let err = files.create("stdin-0", b"data").unwrap_err();
        assert!(format!("{err:#}").contains("hostile guest"), "{err:#}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "original");
        files.create("stdin-1", b"data").unwrap();
        assert_eq!(std::fs::read(run.path().join("stdin-1")).unwrap(), b"data");
        // A FIFO at the name is refused without opening it (which would block).
        rustix::fs::mkfifoat(&files.dir, "stdin-2", Mode::RUSR | Mode::WUSR).unwrap();
        assert!(files.create("stdin-2", b"data").is_err());
        files.remove("stdin-0");
        assert!(victim.exists() && !run.path().join("stdin-0").exists());
    }

    #[test]
    fn cleanup_removes_planted_links_but_not_their_targets() {
        let b = base();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), "x").unwrap();
        let run = RunDir::create(b.path()).unwrap();
        let path = run.path().to_path_buf();
        std::os::unix::fs::symlink(outside.path(), path.join("dirlink")).unwrap();
        std::fs::create_dir(path.join("sub")).unwrap();
        std::os::unix::fs::symlink(outside.path(), path.join("sub/link")).unwrap();
        drop(run);
        assert!(!path.exists());
        assert!(outside.path().join("keep").exists());
    }

    #[test]
    fn stale_folders_go_and_planted_locks_never_block() {
        let b = base();
        let live = RunDir::create(b.path()).unwrap();
        // Another launcher that still runs: its lock is held.
        let other = RunDir::create(b.path()).unwrap();
        assert_eq!(lock_state(other.path()), Lock::Held);
        // A folder whose lock is a FIFO (a guest's, with --no-sandbox) must not hang the
        // sweep: it is left until it is old.
        let fifo_run = b.path().join("run-fifo0000");
        std::fs::create_dir(&fifo_run).unwrap();
        let d = open_dir(&fifo_run).unwrap();
        rustix::fs::mkfifoat(&d, LOCK_FILE, Mode::RUSR | Mode::WUSR).unwrap();
        assert_eq!(lock_state(&fifo_run), Lock::Unusable);
        let free_run = b.path().join("run-free0000");
        std::fs::create_dir(&free_run).unwrap();
        std::fs::write(free_run.join(LOCK_FILE), "").unwrap();
        assert_eq!(lock_state(&free_run), Lock::Free);
        remove_stale(b.path(), live.path());
        assert!(live.path().exists() && other.path().exists() && fifo_run.exists());
        assert!(!free_run.exists());
    }

    #[test]
    fn failure_logs_keep_the_newest_few_and_refuse_links() {
        let b = base();
        let logs = b.path().join("logs");
        for i in 0..KEEP_FAILURE_LOGS + 3 {
            let p = save_failure_log(&logs, &format!("u{i:02}"), b"log").unwrap();
            // Distinct, increasing times without sleeping.
            let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + i as u64);
            File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(&logs)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names.len(), KEEP_FAILURE_LOGS, "{names:?}");
        assert_eq!(names[0], "failed-u03.log", "{names:?}");
        let victim = b.path().join("victim");
        std::fs::write(&victim, "original").unwrap();
        std::os::unix::fs::symlink(&victim, logs.join("failed-x.log")).unwrap();
        assert!(save_failure_log(&logs, "x", b"log").is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "original");
    }
}
