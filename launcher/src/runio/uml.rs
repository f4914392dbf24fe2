//! The UML kernel as a host process: started with exactly the fds it needs, tied to the
//! launcher's life, and always stopped and reaped, whichever way the run ends.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::cmdline::CHANNEL_FD;
use crate::sandbox::Sandbox;
use crate::sentinel::Sentinel;

pub struct Spawn<'a> {
    pub kernel: &'a Path,
    pub words: &'a [String],
    /// The kernel's end of the channel socket, placed at CHANNEL_FD.
    pub channel: OwnedFd,
    /// The console log pipe: the kernel's stdout and stderr.
    pub console: OwnedFd,
    /// Where UML maps guest memory from (its TMPDIR), as the kernel process names it.
    pub memory_dir: &'a std::ffi::OsStr,
    /// The kernel's working directory: its scratch area.
    pub cwd: KernelCwd<'a>,
    /// More fds for the kernel (network transports), placed at CHANNEL_FD + 1 on.
    pub extra_fds: Vec<OwnedFd>,
    /// Confinement, applied last before exec.
    pub sandbox: Sandbox,
    /// Start the kernel without address randomization, as it would re-execute itself to have
    /// (UML 7.x).
    pub no_randomize: bool,
    /// The one host CPU the kernel and its processes stay on (`placement`), if any.
    pub cpu: Option<usize>,
}

/// Where the kernel process works, entered after its sandbox is in place (a mount namespace
/// re-binds a host folder, so it must be entered by path then).
pub enum KernelCwd<'a> {
    /// A private tmpfs, which has no path.
    Fd(BorrowedFd<'a>),
    /// A host folder.
    Path(&'a Path),
}

pub struct Uml {
    pid: Pid,
    status: Option<ExitStatus>,
    /// Kills the kernel if the launcher dies and the kernel's own shutdown hangs.
    sentinel: Option<Sentinel>,
    /// The launcher's children from before the kernel: not swept.
    spared: Vec<i32>,
}

impl Uml {
    pub fn spawn(s: Spawn) -> Result<Uml> {
        let parent = rustix::process::getpid();
        // Whatever the kernel's processes leave behind (a setsid()'d child escapes the kill of
        // the kernel's group) becomes ours when its parent dies, so it can be swept at the end.
        rustix::process::set_child_subreaper(Some(parent))
            .context("become the kernel's processes' subreaper")?;
        // Children the launcher already has (the network helpers, and whatever a wrapper that
        // exec'd sekexe left) are not the kernel's: the sweep spares them.
        let spared = children_of(parent.as_raw_nonzero().get());
        // Above every fd the child will place, so no dup2 there can clobber one still to
        // be placed.
        let high =
            |fd: &OwnedFd| rustix::io::fcntl_dupfd_cloexec(fd, 100).context("dup the kernel's fds");
        let channel = high(&s.channel)?;
        let extra_fds = s.extra_fds.iter().map(high).collect::<Result<Vec<_>>>()?;
        let channel_fd = channel.as_raw_fd();
        // Above the fds the child places, like the others (kept open until the spawn).
        let cwd_high = match s.cwd {
            KernelCwd::Fd(fd) => {
                Some(rustix::io::fcntl_dupfd_cloexec(fd, 100).context("dup the scratch folder")?)
            }
            KernelCwd::Path(_) => None,
        };
        let (cwd_fd, cwd_path) = match s.cwd {
            KernelCwd::Fd(_) => (cwd_high.as_ref().map_or(-1, |f| f.as_raw_fd()), None),
            KernelCwd::Path(p) => (
                -1,
                Some(
                    std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
                        .context("a NUL in the scratch folder's path")?,
                ),
            ),
        };
        let mut sandbox = s.sandbox;
        let extra: Vec<i32> = extra_fds.iter().map(|f| f.as_raw_fd()).collect();
        let first_free = CHANNEL_FD + 1 + extra.len() as i32;
        let no_randomize = s.no_randomize;
        let cpu = s.cpu;
        let mut cmd = Command::new(s.kernel);
        cmd.args(s.words)
            .env_clear()
            .env("TMPDIR", s.memory_dir)
            // The legacy slirp helper refuses to start without a HOME; the scratch area is a
            // private one that goes away with the run.
            .env("HOME", s.memory_dir)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                s.console.try_clone().context("dup console pipe")?,
            ))
            .stderr(Stdio::from(s.console));
        // SAFETY: runs in the forked child before exec. The launcher is single-threaded, so no
        // lock can be held by another thread; the closure makes async-signal-safe calls
        // (sigprocmask, signal, prctl, setrlimit, dup2, fcntl, getppid, close_range, _exit,
        // chdir or fchdir),
        // then applies the sandbox, whose few allocations are safe for that reason.
        unsafe {
            cmd.pre_exec(move || {
                // The launcher blocks the signals it reads from a signalfd; UML needs them all.
                let mut empty = std::mem::zeroed::<libc::sigset_t>();
                libc::sigemptyset(&mut empty);
                libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                // A session of its own from the start: no controlling terminal for a hostile
                // kernel to reach through a tty node (UML calls setsid() too, later).
                libc::setsid();
                if let Some(cpu) = cpu {
                    // Only speed depends on it (a cpuset may have changed since): go on.
                    let _ = crate::placement::stay_on(cpu);
                }
                // If the launcher dies, even by SIGKILL, the kernel gets SIGTERM: UML's
                // handler shuts it down cleanly, helpers and uml_dir entry included.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != parent.as_raw_nonzero().get() {
                    libc::_exit(125);
                }
                // A guest panic aborts UML: no core file in the run folder or anywhere.
                let no_core = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::setrlimit(libc::RLIMIT_CORE, &no_core);
                // UML 7.x turns address randomization off and, if it was on, executes itself
                // again: set here, that second exec of a 10-30 MB binary is saved. (Older
                // kernels keep randomization: they would not turn it off themselves.)
                if no_randomize {
                    let current = libc::personality(0xffff_ffff);
                    if current >= 0 {
                        libc::personality(
                            current as libc::c_ulong | libc::ADDR_NO_RANDOMIZE as libc::c_ulong,
                        );
                    }
                }
                if libc::dup2(channel_fd, CHANNEL_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                for (i, &fd) in extra.iter().enumerate() {
                    if libc::dup2(fd, CHANNEL_FD + 1 + i as i32) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // Nothing else the launcher's own caller may have leaked reaches the kernel.
                // (Marked close-on-exec rather than closed: std's own error pipe is among them.)
                if libc::syscall(
                    libc::SYS_close_range,
                    first_free,
                    u32::MAX,
                    libc::CLOSE_RANGE_CLOEXEC,
                ) != 0
                {
                    // Before Linux 5.11, or refused by a container's seccomp profile.
                    let max = libc::sysconf(libc::_SC_OPEN_MAX).clamp(3, 65536) as i32;
                    for fd in first_free..max {
                        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                    }
                }
                sandbox.apply()?;
                let entered = match &cwd_path {
                    Some(path) => libc::chdir(path.as_ptr()),
                    None => libc::fchdir(cwd_fd),
                };
                if entered != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("start the kernel {}", s.kernel.display()))?;
        // The kernel's ends (and their copies) close here: the launcher keeps only its own.
        drop((channel, extra_fds, s.channel, s.extra_fds, cwd_high));
        let pid = Pid::from_raw(child.id() as i32);
        // Without one (no pidfd before Linux 5.3), PDEATHSIG alone still ends the kernel in
        // all but the rare case where its shutdown hangs.
        let sentinel = Sentinel::start(pid).ok();
        Ok(Uml {
            pid,
            status: None,
            sentinel,
            spared,
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// The kernel's exit status once it has ended (reaps it, without blocking).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(ws) = waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                self.status = raw_status(ws);
                if self.status.is_some() {
                    // Helpers UML left behind (they share its process group) go with it.
                    let _ = killpg(self.pid, Signal::SIGKILL);
                    self.dismiss_sentinel();
                    sweep_strays(&self.spared);
                }
            }
        }
        self.status
    }

    /// Asks the kernel to shut down (UML handles SIGTERM by halting cleanly).
    pub fn terminate(&self) {
        if self.status.is_none() {
            let _ = kill(self.pid, Signal::SIGTERM);
        }
    }

    /// Kills the kernel and every helper at once.
    pub fn kill_now(&mut self) {
        if self.status.is_none() {
            // UML calls setsid(), so its group is its pid; before that, the pid alone.
            let _ = killpg(self.pid, Signal::SIGKILL);
            let _ = kill(self.pid, Signal::SIGKILL);
            if let Ok(ws) = waitpid(self.pid, None) {
                self.status = raw_status(ws);
            }
            self.dismiss_sentinel();
            sweep_strays(&self.spared);
        }
    }

    /// Once the kernel is reaped its pid may be reused: the sentinel must not act any more.
    fn dismiss_sentinel(&mut self) {
        if let Some(mut s) = self.sentinel.take() {
            s.dismiss();
        }
    }

    /// Stops the kernel if it still runs: SIGTERM, then SIGKILL after `grace`; always reaps.
    pub fn stop(&mut self, grace: Duration) {
        if self.try_wait().is_some() {
            return;
        }
        self.terminate();
        if self.wait_up_to(grace).is_none() {
            self.kill_now();
        }
    }

    /// The kernel's exit status if it ends within `limit` (reaps it).
    pub fn wait_up_to(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Uml {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(1));
    }
}

/// Kills and reaps the launcher's children that came from the kernel once it is gone:
/// processes that left its process group, reparented here (the launcher is their
/// subreaper). `spared` (children from before the kernel) are left alone, and only what was
/// killed here is reaped. Bounded: a process that forks as fast as it is killed is left after
/// a second rather than hanging the launcher.
fn sweep_strays(spared: &[i32]) {
    let me = rustix::process::getpid().as_raw_nonzero().get();
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut killed: Vec<i32> = Vec::new();
    loop {
        let strays: Vec<i32> = children_of(me)
            .into_iter()
            .filter(|pid| !spared.contains(pid))
            .collect();
        for &pid in &strays {
            if let Some(p) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
            if !killed.contains(&pid) {
                killed.push(pid);
            }
        }
        killed.retain(|&pid| {
            !matches!(
                waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)),
                Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) | Err(_)
            )
        });
        if (strays.is_empty() && killed.is_empty()) || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The pids whose parent is `parent`: from each of its threads' `children` list, which the
/// kernel keeps (CONFIG_PROC_CHILDREN), else from a scan of every process in /proc.
fn children_of(parent: i32) -> Vec<i32> {
    let listed = std::fs::read_dir(format!("/proc/{parent}/task"))
        .ok()
        .and_then(|tasks| {
            let mut pids = Vec::new();
            for task in tasks.flatten() {
                let text = std::fs::read_to_string(task.path().join("children")).ok()?;
                pids.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse::<i32>().ok()),
                );
            }
            Some(pids)
        });
    if let Some(pids) = listed {
        return pids;
    }
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // The fields after the command name (which may hold spaces and parentheses).
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok());
            ppid == Some(parent)
        })
        .collect()
}

fn raw_status(ws: WaitStatus) -> Option<ExitStatus> {
    match ws {
        WaitStatus::Exited(_, code) => Some(ExitStatus::from_raw((code & 0xff) << 8)),
        WaitStatus::Signaled(_, sig, core) => Some(ExitStatus::from_raw(
            sig as i32 | if core { 0x80 } else { 0 },
        )),
        _ => None,
    }
}

/// Describes how the kernel process ended, for error messages.
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (_, Some(libc::SIGABRT)) => "aborted (a kernel panic)".to_string(),
        (_, Some(sig)) => format!(
            "was killed by signal {sig} ({})",
            Signal::try_from(sig).map(|s| s.as_str()).unwrap_or("?")
        ),
        _ => "ended".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn how_the_kernel_ended_in_words() {
        let exited = ExitStatus::from_raw(3 << 8);
        assert_eq!(describe(exited), "exited with status 3");
        let panicked = ExitStatus::from_raw(libc::SIGABRT);
        assert_eq!(describe(panicked), "aborted (a kernel panic)");
        let killed = ExitStatus::from_raw(libc::SIGKILL);
        assert_eq!(describe(killed), "was killed by signal 9 (SIGKILL)");
    }

    #[test]
    fn wait_statuses_become_exit_statuses() {
        let pid = Pid::from_raw(1);
        let s = raw_status(WaitStatus::Exited(pid, 7)).unwrap();
        assert_eq!(s.code(), Some(7));
        let s = raw_status(WaitStatus::Signaled(pid, Signal::SIGSEGV, true)).unwrap();
        assert_eq!((s.signal(), s.core_dumped()), (Some(libc::SIGSEGV), true));
        assert_eq!(raw_status(WaitStatus::StillAlive), None);
    }

    #[test]
    fn a_child_is_found_among_the_children() {
        let mut child = Command::new("sleep").arg("5").spawn().unwrap();
        let me = std::process::id() as i32;
        assert!(children_of(me).contains(&(child.id() as i32)));
        assert!(!children_of(me).contains(&me));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
