//! The run's private exchange folder on the host, `$TMPDIR/sekexe-<uid>/run-XXXXXX` (0700).
//!
//! It holds the request (launcher to guest), the status record (guest to launcher) and the
//! kernel's uml_dir (its mconsole socket and pid file). The guest mounts it over hostfs. It is
//! removed when the run ends unless `--keep` is given; a lock held for the run's lifetime lets
//! the next run remove folders left by a launcher that was killed.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::units;
use anyhow::{bail, Context, Result};
use rustix::fs::FlockOperation;
use sekexe_wire::names::{REQUEST_FILE, STATUS_FILE};
use sekexe_wire::{Request, Status};

const LOCK_FILE: &str = "lock";
/// Run folders are `run-XXXXXXXX`; while being set up, `.new-XXXXXXXX`.
const RUN_PREFIX: &str = "run-";
const NEW_PREFIX: &str = ".new-";
/// Marks a folder kept with `--keep`, which stale-folder removal leaves alone.
const KEPT_FILE: &str = "kept";
const UML_DIR: &str = "uml";

pub struct RunDir {
    path: PathBuf,
    /// Held (flock) for the run's lifetime; its release marks the folder as stale.
    _lock: File,
    keep: bool,
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

impl RunDir {
    /// Makes the folder under a `.new-` name and renames it to `run-` only once it is locked,
    /// so another launcher's sweep of stale folders never sees it unlocked.
    pub fn create(base: &Path) -> Result<RunDir> {
        let dir = tempfile::Builder::new()
            .prefix(NEW_PREFIX)
            .rand_bytes(8)
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
        let lock = File::create(new.join(LOCK_FILE))
            .context("create the run lock")
            .map_err(cleanup)?;
        rustix::fs::flock(&lock, FlockOperation::LockExclusive)
            .context("lock the run folder")
            .map_err(cleanup)?;
        DirBuilder::new()
            .mode(0o700)
            .create(new.join(UML_DIR))
            .context("create uml_dir")
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
            _lock: lock,
            keep: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn uml_dir(&self) -> PathBuf {
        self.path.join(UML_DIR)
    }

    pub fn write_request(&self, request: &Request) -> Result<()> {
        let path = self.path.join(REQUEST_FILE);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("create {}", units::shown(&path)))?;
        f.write_all(&request.encode())
            .with_context(|| format!("write {} (is TMPDIR full?)", units::shown(&path)))
    }

    /// Links each disk from the run folder as `disk-N` and returns the links.
    pub fn link_disks(&self, disks: &[(&Path, bool)]) -> Result<Vec<PathBuf>> {
        disks
            .iter()
            .enumerate()
            .map(|(i, (target, _))| {
                let link = self.path.join(format!("disk-{i}"));
                std::os::unix::fs::symlink(target, &link)
                    .with_context(|| format!("link {}", units::shown(target)))?;
                Ok(link)
            })
            .collect()
    }

    /// The status record, `None` when the guest did not write one.
    pub fn read_status(&self) -> Result<Option<Status>> {
        let path = self.path.join(STATUS_FILE);
        match std::fs::read(&path) {
            Ok(data) => Status::decode(&data).map(Some).with_context(|| {
                format!(
                    "the guest's status record {} is malformed",
                    units::shown(&path)
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("read {}", units::shown(&path))),
        }
    }

    /// Keeps the folder after the run (`--keep`).
    pub fn keep(&mut self) {
        self.keep = true;
        let _ = File::create(self.path.join(KEPT_FILE));
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if !self.keep {
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
            // SAFETY: kill has no memory preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// How many kernel logs of failed runs are kept in the user's folder.
const KEEP_FAILURE_LOGS: usize = 10;

/// Saves the kernel log of a failed run as `<base>/failed-<umid>.log`, keeping only the newest
/// few, and returns its path.
pub fn save_failure_log(base: &Path, umid: &str, log: &[u8]) -> Result<PathBuf> {
    let path = base.join(format!("failed-{umid}.log"));
    std::fs::write(&path, log).with_context(|| format!("write {}", units::shown(&path)))?;
    let mut logs: Vec<(SystemTime, PathBuf)> = std::fs::read_dir(base)?
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("failed-") && n.ends_with(".log")
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    logs.sort();
    let excess = logs.len().saturating_sub(KEEP_FAILURE_LOGS);
    for (_, old) in logs.into_iter().take(excess) {
        let _ = std::fs::remove_file(old);
    }
    Ok(path)
}

/// Removes run folders whose launcher is gone: their lock is free. Folders a launcher died
/// setting up (`.new-`, or without a lock file) go once they are a minute old.
pub fn remove_stale(base: &Path, ours: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let (is_run, is_new) = (name.starts_with(RUN_PREFIX), name.starts_with(NEW_PREFIX));
        if !(is_run || is_new) || path == ours || path.join(KEPT_FILE).exists() {
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
        let stale = match File::open(path.join(LOCK_FILE)) {
            Ok(lock) if is_run => {
                rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive).is_ok()
            }
            _ => old(),
        };
        if stale {
            kill_processes_using(&path);
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}
