//! Starting the command: its own session, the request's user, environment and working
//! directory, and either three pipes (stream mode) or a pseudo-terminal (TTY mode).

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result};
use nix::unistd::Pid;
use rustix::fs::{Mode, OFlags};
use rustix::pipe::PipeFlags;
use sekexe_wire::names::DEFAULT_PATH;
use sekexe_wire::{Outcome, Request};

use crate::log::Log;

/// The running command and guest-init's ends of its streams.
pub struct Command {
    pub pid: Pid,
    /// Where the command's stdin comes from: a pipe's write end, or the pty master.
    pub stdin: Option<OwnedFd>,
    /// Its stdout (or the pty master, which carries both output streams).
    pub stdout: Option<OwnedFd>,
    /// Its stderr; none in TTY mode.
    pub stderr: Option<OwnedFd>,
    /// TTY mode: the pty master, for window-size changes.
    pub pty: Option<OwnedFd>,
}

pub fn command(req: &Request, log: &mut Log) -> Result<Command, Outcome> {
    let fail = |e: anyhow::Error| Outcome::GuestFailed {
        message: format!("{e:#}"),
    };
    let argv0 = OsStr::from_bytes(&req.argv[0]);
    let path_var = req
        .env
        .iter()
        .find_map(|e| e.strip_prefix(b"PATH="))
        .unwrap_or(DEFAULT_PATH.as_bytes());
    let program = resolve(&req.argv[0], path_var)?;
    let mut cmd = std::process::Command::new(program);
    cmd.arg0(argv0)
        .args(req.argv[1..].iter().map(|a| OsStr::from_bytes(a)))
        .env_clear()
        .current_dir(OsStr::from_bytes(&req.cwd));
    for entry in &req.env {
        // validate() guarantees an '=' after the first byte.
        let eq = entry.iter().skip(1).position(|&b| b == b'=').unwrap() + 1;
        cmd.env(
            OsStr::from_bytes(&entry[..eq]),
            OsStr::from_bytes(&entry[eq + 1..]),
        );
    }
    if req.uid != 0 || req.gid != 0 {
        cmd.uid(req.uid).gid(req.gid);
    }

    let ours = if req.tty {
        attach_pty(&mut cmd, req).map_err(fail)?
    } else {
        attach_pipes(&mut cmd).map_err(fail)?
    };
    let spawned = if req.tty {
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe calls (sigprocmask, setsid, ioctl); it allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                // guest-init blocks every signal; the command starts with none blocked.
                let mut empty = std::mem::zeroed::<libc::sigset_t>();
                libc::sigemptyset(&mut empty);
                libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
                // A session of its own with the terminal as its controlling one: job control
                // and Ctrl-C work as on the host.
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.spawn()
    } else {
        // Its own process group, so signals from the launcher reach all of it as a
        // terminal's Ctrl-C would. (guest-init has no controlling terminal, so neither has
        // the command, as with a session of its own.) Without a pre-exec closure or a user
        // change, std spawns with posix_spawn, which musl does with CLONE_VM|CLONE_VFORK: no
        // copy of guest-init's address space, which under UML means one host process fewer
        // to create and fill.
        cmd.process_group(0);
        crate::signals::with_none_blocked(|| cmd.spawn())
    };
    match spawned {
        Ok(child) => {
            log.step(&format!(
                "executed {}",
                String::from_utf8_lossy(&req.argv[0])
            ));
            let pid = Pid::from_raw(child.id() as i32);
            // The child is reaped by the one waitpid(-1) loop, never through `Child`.
            drop(child);
            Ok(Command { pid, ..ours })
        }
        Err(e) => Err(match e.raw_os_error() {
            Some(libc::ENOENT) => Outcome::NotFound,
            Some(errno) => Outcome::CannotExecute { errno },
            None => fail(anyhow::Error::new(e).context("spawn")),
        }),
    }
}

/// Finds the program as a shell does: a name with a slash is taken as it is; otherwise the
/// first executable regular file of that name in PATH, skipping folders that cannot be
/// searched. 127 when there is none; 126 when the only match is not executable.
pub fn resolve(name: &[u8], path_var: &[u8]) -> Result<PathBuf, Outcome> {
    if name.contains(&b'/') {
        return Ok(PathBuf::from(OsStr::from_bytes(name)));
    }
    let mut denied = false;
    for dir in path_var.split(|&b| b == b':') {
        let dir = if dir.is_empty() { b".".as_slice() } else { dir };
        let candidate = Path::new(OsStr::from_bytes(dir)).join(OsStr::from_bytes(name));
        match std::fs::metadata(&candidate) {
            Ok(m) if m.is_file() => {
                if rustix::fs::access(&candidate, rustix::fs::Access::EXEC_OK).is_ok() {
                    return Ok(candidate);
                }
                denied = true;
            }
            _ => {}
        }
    }
    Err(if denied {
        Outcome::CannotExecute {
            errno: libc::EACCES,
        }
    } else {
        Outcome::NotFound
    })
}

fn nonblocking(fd: &OwnedFd) -> Result<()> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    rustix::fs::fcntl_setfl(fd, flags | OFlags::NONBLOCK)?;
    Ok(())
}

fn attach_pipes(cmd: &mut std::process::Command) -> Result<Command> {
    let (in_r, in_w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC).context("pipe")?;
    let (out_r, out_w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC).context("pipe")?;
    let (err_r, err_w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC).context("pipe")?;
    for fd in [&in_w, &out_r, &err_r] {
        nonblocking(fd)?;
    }
    cmd.stdin(Stdio::from(in_r))
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w));
    Ok(Command {
        pid: Pid::from_raw(0),
        stdin: Some(in_w),
        stdout: Some(out_r),
        stderr: Some(err_r),
        pty: None,
    })
}

fn attach_pty(cmd: &mut std::process::Command, req: &Request) -> Result<Command> {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
        .context("open /dev/ptmx")?;
    grantpt(&master).context("grantpt")?;
    unlockpt(&master).context("unlockpt")?;
    let name = ptsname(&master, Vec::new()).context("ptsname")?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("open {name:?}"))?;
    if req.rows > 0 && req.cols > 0 {
        set_winsize(&master, req.rows, req.cols)?;
    }
    nonblocking(&master)?;
    cmd.stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave));
    Ok(Command {
        pid: Pid::from_raw(0),
        stdin: Some(master.try_clone()?),
        stdout: Some(master.try_clone()?),
        stderr: None,
        pty: Some(master),
    })
}

/// Sets the terminal size; the kernel sends SIGWINCH to the terminal's foreground group.
pub fn set_winsize(master: &OwnedFd, rows: u16, cols: u16) -> Result<()> {
    let ws = rustix::termios::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(master, ws)
        .with_context(|| format!("TIOCSWINSZ on pty {}", master.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_follows_path_like_a_shell() {
        let dir = std::env::temp_dir().join(format!("sekexe-resolve-{}", std::process::id()));
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(a.join("tool"), "").unwrap(); // not executable
        std::fs::write(b.join("tool"), "").unwrap();
        std::fs::set_permissions(
            b.join("tool"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(a.join("plain"), "").unwrap();
        let path = format!("/nonexistent:{}:{}", a.display(), b.display());

        assert_eq!(resolve(b"tool", path.as_bytes()), Ok(b.join("tool")));
        assert_eq!(
            resolve(b"plain", path.as_bytes()),
            Err(Outcome::CannotExecute {
                errno: libc::EACCES
            })
        );
        assert_eq!(resolve(b"missing", path.as_bytes()), Err(Outcome::NotFound));
        assert_eq!(resolve(b"./x", b""), Ok(PathBuf::from("./x")));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
