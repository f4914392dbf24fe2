//! A warm guest's folder on the host: `$TMPDIR/sekexe-<uid>/guests/NAME/` (0700, in the user's
//! private run base). Only launchers write here, never the guest (its kernel process cannot
//! reach it): `lock` (held by the guest's launcher for its whole life: a free lock is a guest
//! that is gone), `control` (the socket `sekexe exec`, `ls` and `stop` connect to), `state`
//! (what `exec` and `ls` need to know), `console.log` (the kernel console, bounded) and, once
//! the kernel died, `dead` (why). Reads still never follow a link, never block and take at
//! most a cap (`safefile`).

use std::fs::{DirBuilder, File};

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rustix::fs::{FileType, FlockOperation, Mode, OFlags};
use sekexe_wire::names::{decode_param, encode_param};

use crate::{memory, rundir, safefile, units};

pub const CONTROL: &str = "control";
const LOCK: &str = "lock";
const STATE: &str = "state";
pub const CONSOLE_LOG: &str = "console.log";
const DEAD: &str = "dead";
/// The state file is small; anything larger was not written by a launcher.
const STATE_MAX: u64 = 1 << 20;

/// The folder that holds the user's warm guests.
pub fn guests_dir() -> Result<PathBuf> {
    let base = rundir::user_base(&memory::choose_dir()?)?;
    let dir = base.join("guests");
    match DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("create {}", units::shown(&dir))),
    }
    Ok(dir)
}

/// Checks a guest's name: it names a folder and shows in `ls`.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        bail!("--name {name:?}: use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-'");
    }
    Ok(())
}

/// What `exec` and `ls` learn of a guest from its launcher.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct State {
    /// The guest's launcher.
    pub pid: u32,
    pub kernel: PathBuf,
    /// Seconds since the epoch when it started.
    pub started: u64,
    /// `--root`, if any: `exec` finds the working directory there.
    pub root: Option<PathBuf>,
    /// `-v` as given to `start`, with absolute paths: `exec` shows its working directory
    /// through them as `run` does.
    pub volumes: Vec<String>,
}

impl State {
    pub fn encode(&self) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        let path = |p: &Path| encode_param(p.as_os_str().as_bytes());
        let mut out = format!(
            "pid={}\nkernel={}\nstarted={}\n",
            self.pid,
            path(&self.kernel),
            self.started
        );
        if let Some(root) = &self.root {
            out.push_str(&format!("root={}\n", path(root)));
        }
        for v in &self.volumes {
            out.push_str(&format!("volume={}\n", encode_param(v.as_bytes())));
        }
        out.into_bytes()
    }

    pub fn decode(data: &[u8]) -> Option<State> {
        use std::os::unix::ffi::OsStringExt;
        let text = std::str::from_utf8(data).ok()?;
        let mut state = State::default();
        let path =
            |v: &str| decode_param(v).map(|b| PathBuf::from(std::ffi::OsString::from_vec(b)));
        for line in text.lines() {
            let (key, value) = line.split_once('=')?;
            match key {
                "pid" => state.pid = value.parse().ok()?,
                "kernel" => state.kernel = path(value)?,
                "started" => state.started = value.parse().ok()?,
                "root" => state.root = Some(path(value)?),
                "volume" => state
                    .volumes
                    .push(String::from_utf8(decode_param(value)?).ok()?),
                _ => {}
            }
        }
        (state.pid > 0).then_some(state)
    }
}

/// One guest's folder.
pub struct GuestDir {
    pub name: String,
    pub path: PathBuf,
}

/// Whether a guest's launcher still holds its folder.
#[derive(Debug, PartialEq)]
pub enum Liveness {
    Up,
    /// Its launcher is gone; the text says why when the kernel died.
    Gone(Option<String>),
}

impl GuestDir {
    pub fn at(guests: &Path, name: &str) -> GuestDir {
        GuestDir {
            name: name.to_string(),
            path: guests.join(name),
        }
    }

    /// Makes the folder of a new guest and takes its lock, which the launcher holds for the
    /// guest's life. A folder a gone guest left is replaced.
    pub fn create(guests: &Path, name: &str) -> Result<(GuestDir, File)> {
        let dir = GuestDir::at(guests, name);
        if std::fs::symlink_metadata(&dir.path).is_ok() {
            if dir.liveness() == Liveness::Up {
                bail!("a warm guest named {name} is running: stop it (sekexe stop {name}) or choose another --name");
            }
            dir.remove();
        }
        // Made and locked under a hidden name, then named: no one ever sees it unlocked (and
        // takes it for a gone guest's), and of two `start`s with one name, one wins.
        let new = tempfile::Builder::new()
            .prefix(".new-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir_in(guests)
            .with_context(|| format!("create a folder in {}", units::shown(guests)))?
            .keep();
        let made = (|| {
            let lock = rustix::fs::open(
                new.join(LOCK),
                OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::RUSR | Mode::WUSR,
            )
            .context("create the guest's lock")?;
            rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive)
                .context("lock the guest's folder")?;
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                &new,
                rustix::fs::CWD,
                &dir.path,
                rustix::fs::RenameFlags::NOREPLACE,
            )
            .map_err(|_| anyhow::anyhow!("a warm guest named {name} is running: stop it (sekexe stop {name}) or choose another --name"))?;
            Ok(File::from(lock))
        })();
        match made {
            Ok(lock) => Ok((dir, lock)),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&new);
                Err(e)
            }
        }
    }

    /// Up while its launcher holds the lock.
    pub fn liveness(&self) -> Liveness {
        let lock = rustix::fs::open(
            self.path.join(LOCK),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        );
        let held = lock.is_ok_and(|fd| {
            rustix::fs::fstat(&fd)
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile)
                && rustix::fs::flock(&fd, FlockOperation::NonBlockingLockShared).is_err()
        });
        if held {
            return Liveness::Up;
        }
        let why = safefile::read_small(&self.path.join(DEAD), 4096)
            .map(|b| String::from_utf8_lossy(&b).trim().to_string());
        Liveness::Gone(why)
    }

    pub fn state(&self) -> Option<State> {
        State::decode(&safefile::read_small(&self.path.join(STATE), STATE_MAX)?)
    }

    pub fn write_state(&self, state: &State) -> Result<()> {
        safefile::write_atomic(&self.path.join(STATE), &state.encode())
    }

    /// Records why the kernel died, for the next `ls` or `exec` to say.
    pub fn write_dead(&self, why: &str) {
        let _ = safefile::write_atomic(&self.path.join(DEAD), why.as_bytes());
    }

    pub fn control(&self) -> PathBuf {
        self.path.join(CONTROL)
    }

    pub fn console_log(&self) -> PathBuf {
        self.path.join(CONSOLE_LOG)
    }

    /// Removes the folder (never through a link).
    pub fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The user's guests, by name; folders of gone guests included.
pub fn list(guests: &Path) -> Vec<GuestDir> {
    let Ok(entries) = std::fs::read_dir(guests) else {
        return Vec::new();
    };
    let mut out: Vec<GuestDir> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| check_name(n).is_ok())
        .map(|n| GuestDir::at(guests, &n))
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// A name no guest has: `guest-1`, `guest-2`, ...
pub fn free_name(guests: &Path) -> String {
    (1..)
        .map(|i| format!("guest-{i}"))
        .find(|n| {
            let d = GuestDir::at(guests, n);
            std::fs::symlink_metadata(&d.path).is_err() || d.liveness() != Liveness::Up
        })
        .expect("some name is free")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_words() {
        for ok in ["ci", "build-1", "a.b_c", "G9"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "..", "a b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_state_round_trips_with_any_path() {
        let state = State {
            pid: 42,
            kernel: PathBuf::from("/k/linux 7=x"),
            started: 1_700_000_000,
            root: Some(PathBuf::from("/r\nx")),
            volumes: vec!["/a b:/c:rw".into()],
        };
        assert_eq!(State::decode(&state.encode()), Some(state));
        assert_eq!(State::decode(b"garbage"), None);
        assert_eq!(State::decode(b"pid=0\n"), None);
    }

    #[test]
    fn a_guest_is_up_while_its_lock_is_held_and_gone_after() {
        let guests = tempfile::tempdir().unwrap();
        let (dir, lock) = GuestDir::create(guests.path(), "g").unwrap();
        assert_eq!(dir.liveness(), Liveness::Up);
        assert!(GuestDir::create(guests.path(), "g").is_err());
        assert_eq!(free_name(guests.path()), "guest-1");
        drop(lock);
        dir.write_dead("the kernel was killed");
        assert_eq!(
            dir.liveness(),
            Liveness::Gone(Some("the kernel was killed".into()))
        );
        // A gone guest's name is free again.
        let (_again, _lock) = GuestDir::create(guests.path(), "g").unwrap();
        assert_eq!(list(guests.path()).len(), 1);
    }
}
