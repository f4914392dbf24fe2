//! A small process that makes sure the kernel dies with the launcher.
//!
//! The kernel gets SIGTERM when the launcher dies (PDEATHSIG), and UML's handler shuts it down
//! cleanly. But that handler runs the kernel's exit calls, which can hang (UML's own source
//! says so: it resets the handler so that a second signal kills it), and a SIGKILLed launcher
//! is not there to send one. The sentinel is: a fork of the launcher that holds a pidfd of the
//! kernel and the read end of a pipe only the launcher can write. When the launcher ends
//! normally it says so on the pipe first, and the sentinel leaves. When the pipe reaches its
//! end without that word, the launcher is gone: the sentinel gives the kernel half a second to
//! end, then kills it and its process group.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use rustix::process::{pidfd_open, PidfdFlags};

/// How long a kernel whose launcher died gets to shut down by itself.
const GRACE: Duration = Duration::from_millis(500);

pub struct Sentinel {
    pid: Pid,
    /// The launcher's end of the pipe; writing to it dismisses the sentinel.
    pipe: Option<OwnedFd>,
}

impl Sentinel {
    /// Starts the sentinel for the kernel process `kernel` (a child of the launcher).
    pub fn start(kernel: Pid) -> Result<Sentinel> {
        let kernel_fd = pidfd_open(
            rustix::process::Pid::from_raw(kernel.as_raw()).context("kernel pid")?,
            PidfdFlags::empty(),
        )
        .context("pidfd_open for the kernel process")?;
        let (read, write) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).context("pipe")?;
        // Above the standard fds, so the child's dup2s onto 0 and 1 cannot clobber them.
        let high = |fd: OwnedFd| rustix::io::fcntl_dupfd_cloexec(&fd, 3).context("dup");
        let (read, kernel_fd) = (high(read)?, high(kernel_fd)?);
        let (read_fd, kernel_raw, write_fd) =
            (read.as_raw_fd(), kernel_fd.as_raw_fd(), write.as_raw_fd());
        // SAFETY: the launcher is single-threaded, so the child cannot inherit a lock held by
        // another thread; it only makes async-signal-safe calls (prctl, dup2, open, close_range,
        // poll, read, kill, _exit) and never returns into Rust code.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::last_os_error()).context("fork the sentinel");
        }
        if pid == 0 {
            // SAFETY: as above; `watch` never returns.
            unsafe { watch(read_fd, write_fd, kernel_raw, kernel.as_raw()) }
        }
        drop((read, kernel_fd));
        Ok(Sentinel {
            pid: Pid::from_raw(pid),
            pipe: Some(write),
        })
    }

    /// The kernel is reaped: the sentinel leaves, and is reaped in turn.
    pub fn dismiss(&mut self) {
        if let Some(pipe) = self.pipe.take() {
            let _ = rustix::io::write(&pipe, b"x");
            drop(pipe);
            let _ = waitpid(self.pid, None);
        }
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        self.dismiss();
    }
}

/// The sentinel's life, in the forked child.
///
/// # Safety
/// Only in the child of a fork of a single-threaded process.
unsafe fn watch(pipe: i32, pipe_writer: i32, kernel_fd: i32, kernel: i32) -> ! {
    // Our copy of the launcher's end must go, or the pipe never reports the launcher's end.
    libc::close(pipe_writer);
    // Told apart from its launcher in ps and pgrep (same command line otherwise).
    libc::prctl(libc::PR_SET_NAME, c"sekexe-sentinel".as_ptr());
    // Keep only the pipe (0) and the pidfd (1): holding the launcher's stdout or the console
    // pipe open would keep their readers waiting for an end.
    libc::dup2(pipe, 0);
    libc::dup2(kernel_fd, 1);
    let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
    if null >= 0 {
        libc::dup2(null, 2);
    }
    if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) != 0 {
        // Before Linux 5.9, or refused by a container's seccomp profile.
        let max = libc::sysconf(libc::_SC_OPEN_MAX).clamp(3, 65536) as i32;
        for fd in 3..max {
            libc::close(fd);
        }
    }
    // The launcher's signal mask is inherited: signals meant for it (Ctrl-C on the terminal
    // reaches the whole process group) stay blocked here.
    let mut fds = [
        libc::pollfd {
            fd: 0,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: 1,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        if libc::poll(fds.as_mut_ptr(), 2, -1) < 0 {
            if *libc::__errno_location() == libc::EINTR {
                continue;
            }
            libc::_exit(0);
        }
        if fds[1].revents != 0 {
            // The kernel has ended.
            libc::_exit(0);
        }
        if fds[0].revents != 0 {
            let mut byte = 0u8;
            let n = libc::read(0, (&mut byte as *mut u8).cast(), 1);
            if n != 0 {
                // Dismissed (or an error reading: nothing is known, so do nothing).
                libc::_exit(0);
            }
            break;
        }
    }
    // The launcher is gone without dismissing us: the kernel has GRACE to end by itself.
    let mut kernel_only = [libc::pollfd {
        fd: 1,
        events: libc::POLLIN,
        revents: 0,
    }];
    let mut ready = libc::poll(kernel_only.as_mut_ptr(), 1, GRACE.as_millis() as i32);
    while ready < 0 && *libc::__errno_location() == libc::EINTR {
        ready = libc::poll(kernel_only.as_mut_ptr(), 1, GRACE.as_millis() as i32);
    }
    if ready <= 0 {
        // The pidfd names this very process, whatever happened to its pid: the kill cannot
        // hit anyone else. Its group (UML calls setsid: the group's id is its pid) holds the
        // guest's processes; once the leader is gone, a still-running member keeps the id
        // from being reused.
        libc::syscall(libc::SYS_pidfd_send_signal, 1, libc::SIGKILL, 0usize, 0u32);
        libc::kill(-kernel, libc::SIGKILL);
    }
    libc::_exit(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Child, Command};
    use std::time::Instant;

    fn kernel_stand_in() -> (Child, Pid) {
        let child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = Pid::from_raw(child.id() as i32);
        (child, pid)
    }

    /// The child's end within `limit`, if it ended.
    fn ended_within(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    #[test]
    fn a_launcher_gone_without_a_word_gets_its_kernel_killed_after_the_grace() {
        let (mut kernel, pid) = kernel_stand_in();
        let mut sentinel = Sentinel::start(pid).unwrap();
        // The launcher "dies": its end of the pipe closes without the word.
        drop(sentinel.pipe.take());
        let started = Instant::now();
        let status = ended_within(&mut kernel, Duration::from_secs(10)).expect("killed");
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert!(started.elapsed() >= GRACE / 2, "{:?}", started.elapsed());
        let _ = waitpid(sentinel.pid, None);
    }

    #[test]
    fn a_dismissed_sentinel_leaves_the_kernel_alone() {
        let (mut kernel, pid) = kernel_stand_in();
        let mut sentinel = Sentinel::start(pid).unwrap();
        sentinel.dismiss();
        assert!(ended_within(&mut kernel, GRACE * 3).is_none());
        kernel.kill().unwrap();
        kernel.wait().unwrap();
    }

    #[test]
    fn a_kernel_that_ends_by_itself_sends_the_sentinel_away() {
        let mut kernel = Command::new("true").spawn().unwrap();
        let pid = Pid::from_raw(kernel.id() as i32);
        let sentinel = Sentinel::start(pid).unwrap();
        kernel.wait().unwrap();
        // The sentinel notices through its pidfd and leaves without a word from us.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match nix::sys::wait::waitpid(sentinel.pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG))
            {
                Ok(nix::sys::wait::WaitStatus::StillAlive) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => break,
                other => panic!("the sentinel did not leave: {other:?}"),
            }
        }
        std::mem::forget(sentinel); // already reaped: its Drop must not wait again
    }
}
