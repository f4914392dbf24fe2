//! The guest's network on the host side: which UML transport, which helper process, and the
//! port forwards.
//!
//! - `user` (default): slirp4netns (libslirp, the stack QEMU uses) speaking UML's vector `bess`
//!   transport over a unix socket in the run folder; port forwards through its API socket.
//!   With `--net-restrict` a seccomp filter denies it every IPv4 and IPv6 socket: the guest
//!   keeps DHCP and nothing else.
//! - `slirp[:PATH]`: the legacy slirp binary through UML's old `ethN=slirp` transport.
//! - `vde:SWITCH`: vde_plug joins an existing vde_switch to a socket pair the kernel uses with
//!   the vector `fd` transport.
//! - `tap:IFACE`: an existing TAP device, with the vector `tap` transport.
//!
//! The helpers are the launcher's children, killed with it (PDEATHSIG) or at the end.
//!
//! Parsing and checking the options is `options`; the port-forward client is `forward`; this
//! module finds and runs the helpers and renders the kernel's network words.

mod forward;
mod options;

pub use forward::{advance as advance_forwards, Forwarder};
pub use options::*;

use std::fs::File;
use std::io::Read;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::rundir::RunDir;
use crate::sandbox::{Plan, Sandbox, Sockets};
use crate::units;

/// The address slirp's DHCP server gives the first (and only) guest.
pub const USER_GUEST_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
/// How long a helper may take to get ready.
const HELPER_READY: Duration = Duration::from_secs(5);

/// The helper `--net user` runs: slirp4netns (`sekexe doctor` checks for it too).
pub fn find_user_backend() -> Result<PathBuf> {
    find(
        Path::new("slirp4netns"),
        "--net user needs it: apt install slirp4netns, or use --net none",
    )
}

/// Where a helper binary is, or the message that says how to get it.
fn find(program: &Path, install: &str) -> Result<PathBuf> {
    if program.components().count() > 1 {
        if program.is_file() {
            return Ok(program.to_path_buf());
        }
        bail!("{} not found ({install})", units::shown(program));
    }
    program
        .to_str()
        .and_then(crate::paths::find_program)
        .ok_or_else(|| anyhow!("{} not found ({install})", units::shown(program)))
}

/// The network of one run: kernel parameters, fds for the kernel, helper processes.
pub struct Network {
    pub words: Vec<String>,
    /// Passed to the kernel, in order, from fd `first_fd` on (the transports' fds).
    pub fds: Vec<OwnedFd>,
    /// Also passed to the kernel after those, unnamed: helpers' lifelines.
    pub kernel_keeps: Vec<OwnedFd>,
    helpers: Vec<Child>,
    /// slirp4netns's API socket, for port forwards.
    pub api: Option<PathBuf>,
    /// The kernel process itself needs TCP (the legacy slirp runs as its child).
    pub kernel_tcp: bool,
    /// The kernel opens a TAP device.
    pub tap: bool,
    /// The sockets the kernel process makes itself (Mode::kernel_sockets).
    pub kernel_sockets: Sockets,
    /// The helper's log, as the launcher created it.
    log: Option<File>,
}

impl Network {
    pub fn none() -> Network {
        Network {
            words: Vec::new(),
            fds: Vec::new(),
            kernel_keeps: Vec::new(),
            helpers: Vec::new(),
            api: None,
            kernel_tcp: false,
            tap: false,
            kernel_sockets: Sockets::PairsOnly,
            log: None,
        }
    }

    /// Starts what the mode needs, before the kernel (which connects to it at boot).
    pub fn start(
        cfg: &NetConfig,
        run_dir: &RunDir,
        first_fd: i32,
        sandboxed: bool,
    ) -> Result<Network> {
        let mut net = Network::none();
        net.kernel_sockets = cfg.mode.kernel_sockets();
        match &cfg.mode {
            Mode::None => {}
            Mode::User => net.start_slirp4netns(cfg, run_dir, first_fd, sandboxed)?,
            Mode::Slirp(program) => {
                let install = "apt install slirp, or use --net user";
                let slirp = match program {
                    Some(p) => find(p, install)?,
                    // Debian's plain `slirp` emulates a serial line and passes no packet from
                    // UML's transport here (measured); its `slirp-fullbolt` build does, and is
                    // what the original sekexe shipped.
                    None => find(Path::new("slirp-fullbolt"), install)
                        .or_else(|_| find(Path::new("slirp"), install))?,
                };
                net.words.push(format!("eth0=slirp,,{}", word(&slirp)?));
                net.kernel_tcp = true;
            }
            Mode::Vde(switch) => net.start_vde_plug(switch, first_fd)?,
            Mode::Tap(name) => {
                check_tap(name)?;
                net.words.push(format!("vec0:transport=tap,ifname={name}"));
                net.tap = true;
            }
        }
        Ok(net)
    }

    fn start_slirp4netns(
        &mut self,
        cfg: &NetConfig,
        run_dir: &RunDir,
        first_fd: i32,
        sandboxed: bool,
    ) -> Result<()> {
        let program = find_user_backend()?;
        // Its own folder, the only one it may write: the kernel may not write there, and it
        // may not write the rest of the run folder.
        let dir = run_dir.net_dir()?;
        let bess = dir.join("net.sock");
        let api = dir.join("api.sock");
        let log = dir.join("slirp4netns.log");
        for p in [&bess, &api] {
            // sockaddr_un holds 107 bytes.
            if p.as_os_str().len() > 100 {
                bail!("the run folder path {} is too long for a unix socket: set TMPDIR to a shorter path", units::shown(run_dir.path()));
            }
        }
        // slirp4netns ends when this pipe does: its write end goes to the kernel process (and
        // so to all its processes), so the helper outlives the kernel by nothing, even when the
        // launcher is killed. (A parent-death signal would kill it while the kernel still shuts
        // down, and UML then spins on its dead network peer.)
        let (exit_r, exit_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        const EXIT_FD: i32 = 3;
        let exit_raw = exit_r.as_raw_fd();
        let mut cmd = Command::new(&program);
        cmd.arg("--target-type=bess")
            .arg(format!("--exit-fd={EXIT_FD}"));
        if !cfg.forwards.is_empty() {
            cmd.arg("--api-socket").arg(&api);
        }
        if cfg.restrict {
            cmd.arg("--disable-host-loopback");
        }
        // Made here, new, and read back later through this fd, never by path.
        let log_file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(&log)
            .context("create the network helper's log")?;
        cmd.arg(&bess)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file.try_clone()?)
            // slirp4netns forks a child that waits for the kernel's connection: its own
            // group lets both be killed together.
            .process_group(0);
        // libslirp parses every packet the guest sends: confine it like the kernel, but with
        // TCP (it is the NAT).
        let mut sandbox = if sandboxed {
            Some(Sandbox::prepare(&Plan {
                writable: vec![dir.clone()],
                writable_fds: Vec::new(),
                user_writable: false,
                writable_files: Vec::new(),
                allow_tcp: true,
                net_admin: false,
                // It is the NAT: inet sockets are its job; its port-forward API is a unix
                // stream socket.
                sockets: if cfg.forwards.is_empty() {
                    Sockets::AnyButUnixStream
                } else {
                    Sockets::Any
                },
                // The kernel's sandbox already said what this host withholds.
                withheld: Vec::new(),
            })?)
        } else {
            None
        };
        let restrict = if cfg.restrict {
            Some(no_inet_filter()?)
        } else {
            None
        };
        // SAFETY: runs in the forked child before exec; the launcher is single-threaded, and
        // the calls are dup2 and the sandbox's (see Sandbox::apply).
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(exit_raw, EXIT_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(s) = sandbox.as_mut() {
                    s.apply()?;
                }
                if let Some(f) = &restrict {
                    seccompiler::apply_filter(f)
                        .map_err(|e| std::io::Error::other(e.to_string()))?;
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("start {}", units::shown(&program)))?;
        drop(exit_r);
        self.helpers.push(child);
        self.log = Some(log_file);
        self.kernel_keeps.push(exit_w);
        // Connected here and handed over, so the kernel process never names a socket (its
        // confinement forbids it): the fd transport carries the same one-frame-per-packet
        // seqpacket stream as UML's bess transport.
        let link = self.connect_when_listening(&bess, "slirp4netns")?;
        self.hand_over(link, first_fd);
        if !cfg.forwards.is_empty() {
            self.api = Some(api);
        }
        Ok(())
    }

    fn start_vde_plug(&mut self, switch: &Path, first_fd: i32) -> Result<()> {
        let program = find(
            Path::new("vde_plug"),
            "--net vde needs it: apt install vdeplug",
        )?;
        if !switch.exists() {
            bail!(
                "--net vde:{}: no such vde_switch socket (start one with vde_switch -s PATH)",
                units::shown(switch)
            );
        }
        let (ours, theirs) = rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::SEQPACKET,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )?;
        const PLUG_FD: i32 = 3;
        let raw = theirs.as_raw_fd();
        let mut cmd = Command::new(&program);
        cmd.args(["--descr", "sekexe"])
            .arg(format!("seqpacket://{PLUG_FD}"))
            .arg(switch)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: runs in the forked child before exec and only makes async-signal-safe calls
        // (dup2, fcntl). No parent-death signal: vde_plug ends when the kernel closes its end
        // of the pair, and the kernel must not lose its network while it shuts down.
        unsafe {
            cmd.pre_exec(move || {
                if raw == PLUG_FD {
                    libc::fcntl(PLUG_FD, libc::F_SETFD, 0);
                } else if libc::dup2(raw, PLUG_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("start {}", units::shown(&program)))?;
        drop(theirs);
        // vde_plug exits at once when it cannot join the switch.
        std::thread::sleep(Duration::from_millis(20));
        if let Some(status) = child.try_wait()? {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            bail!(
                "vde_plug could not join {} ({status}): {}",
                units::shown(switch),
                err.trim()
            );
        }
        self.helpers.push(child);
        self.hand_over(ours, first_fd);
        Ok(())
    }

    /// Gives the kernel `link`, a connected packet stream, as its network (UML's fd
    /// transport): it becomes the kernel's fd `first_fd` + its place among `fds`.
    fn hand_over(&mut self, link: OwnedFd, first_fd: i32) {
        self.words.push(format!(
            "vec0:transport=fd,fd={}",
            first_fd + self.fds.len() as i32
        ));
        self.fds.push(link);
    }

    /// A seqpacket connection to the helper's socket at `path`, once it listens (it binds
    /// before it listens: until then a connection is refused).
    fn connect_when_listening(&mut self, path: &Path, name: &str) -> Result<OwnedFd> {
        let addr = rustix::net::SocketAddrUnix::new(path).context("the helper's socket path")?;
        let deadline = Instant::now() + HELPER_READY;
        loop {
            let link = rustix::net::socket_with(
                rustix::net::AddressFamily::UNIX,
                rustix::net::SocketType::SEQPACKET,
                rustix::net::SocketFlags::CLOEXEC,
                None,
            )
            .context("make the network link")?;
            match rustix::net::connect(&link, &addr) {
                Ok(()) => return Ok(link),
                Err(rustix::io::Errno::NOENT | rustix::io::Errno::CONNREFUSED) => {}
                Err(e) => return Err(e).with_context(|| format!("connect to {name}")),
            }
            if let Some(status) = self
                .helpers
                .last_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("{name} ended at once ({status}): {}", self.helper_log());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{name} did not start within {} s: {}",
                    HELPER_READY.as_secs(),
                    self.helper_log()
                );
            }
            std::thread::sleep(Duration::from_micros(250));
        }
    }

    /// The last lines a helper wrote, for error messages.
    pub fn helper_log(&self) -> String {
        use std::os::unix::fs::FileExt;
        let Some(log) = &self.log else {
            return String::new();
        };
        let mut buf = vec![0u8; 64 * 1024];
        let n = log.read_at(&mut buf, 0).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .join(" / ")
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for h in &mut self.helpers {
            // The helper's group, with any child it forked (slirp4netns does); vde_plug has
            // none and shares ours, so it gets a plain kill.
            if let Some(pid) = rustix::process::Pid::from_raw(h.id() as i32) {
                if rustix::process::getpgid(Some(pid)) == Ok(pid) {
                    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                }
            }
            let _ = h.kill();
            let _ = h.wait();
        }
    }
}

/// The kernel attaches to the TAP device itself; a refusal there only shows as a dead link in
/// the guest, so check what can be checked first.
fn check_tap(name: &str) -> Result<()> {
    let dev = Path::new("/sys/class/net").join(name);
    if !dev.exists() {
        bail!("--net tap:{name}: no such interface (create it with: ip tuntap add dev {name} mode tap user $(id -u))");
    }
    if !dev.join("tun_flags").exists() {
        bail!("--net tap:{name}: not a TAP device");
    }
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
    {
        bail!("--net tap:{name}: cannot open /dev/net/tun ({e}): it needs read-write access for you (Debian's default mode is 0666)");
    }
    Ok(())
}

/// A plain word for the kernel command line.
fn word(path: &Path) -> Result<String> {
    match path.to_str() {
        Some(s)
            if s.chars()
                .all(|c| c.is_ascii_graphic() && !matches!(c, ',' | '"')) =>
        {
            Ok(s.to_string())
        }
        _ => bail!(
            "{} cannot go on the kernel command line: set TMPDIR to a plain path",
            units::shown(path)
        ),
    }
}

/// For --net-restrict: no IPv4 or IPv6 socket for the helper, so nothing the guest sends can
/// leave it (outside hosts, the host's own services, DNS).
fn no_inet_filter() -> Result<seccompiler::BpfProgram> {
    crate::seccomp::Deny::with_errno(libc::EACCES)
        .call_when_first_arg(
            libc::SYS_socket,
            &[libc::AF_INET as u64, libc::AF_INET6 as u64],
        )?
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_restrict_filter_compiles() {
        assert!(!no_inet_filter().unwrap().is_empty());
    }
}
