//! Confinement of the kernel process on the host. The guest kernel is treated as hostile: guest
//! root can remount hostfs read-write, escape a hostfs prefix with `..`, and, if it exploits the
//! kernel, run any code in the UML process. So the boundary is what the host enforces on that
//! process, set up between fork and exec:
//!
//! 1. As host root only: a private mount namespace in which every host mount is read-only but
//!    the writable paths, and a capability bounding set reduced to file access (no mount, module,
//!    raw I/O, network admin, reboot, setuid... powers).
//! 2. Landlock: read and execute everywhere, write only beneath the writable places (the
//!    kernel's scratch area, rw volumes, rw disk files); no TCP unless the network mode needs
//!    it; no abstract unix sockets or signals outside the kernel's own processes. The run
//!    folder, where the launcher leaves the request and stdin, is read-only to it.
//! 3. seccomp, always: no socket() at all unless the network mode needs it (the network
//!    comes as a connected fd, the kernel's own pipes are socketpairs), and then only stream
//!    and seqpacket pairs (a datagram pair, or a raw one, which unix sockets make a datagram
//!    pair, could send to any named socket); never unix stream sockets unless it must.
//!    Landlock up to ABI 7 does not govern naming a host unix socket (connecting to the
//!    user's systemd, D-Bus, Docker or ssh-agent socket, or sending a datagram to /dev/log),
//!    and a connected stream or seqpacket pair cannot name one. Also no
//!    io_uring (a way around seccomp), no System V or POSIX IPC (new objects outlive the run,
//!    existing ones are others'), no handle-based opens, no keyrings, no limits, priorities
//!    or CPU placement of other processes (Landlock has no hook for them). And when the user
//!    gave the run no writable folder: chmod, chown, utimes and xattr calls fail, since
//!    Landlock does not cover them.
//! 4. No host terminal: Landlock's read rule covers every host path but those in /dev of
//!    terminals (the pts folder, ptmx, every tty driver's devices, consoles), input devices
//!    and network devices, so the kernel process can neither read the keys typed into the
//!    user's terminals nor write to them, nor read frames off a TAP device the user owns. As
//!    root, every mount but /dev's is also nodev in its namespace (a chroot's /dev elsewhere
//!    opens nothing); as another user, terminal file systems outside /dev make the
//!    confinement partial (run.rs).
//!
//! Each layer is best effort where the host lacks it, and says so.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use landlock::{
    Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, PathFd, RestrictionStatus,
    Ruleset, RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use rustix::thread::CapabilitySet;

/// The newest Landlock ABI sekexe knows how to use.
const BEST_ABI: ABI = ABI::V6;

/// Capabilities the kernel process keeps when sekexe runs as root: enough to reach every file
/// as root would (subject to Landlock and the read-only mounts), nothing else.
const KEPT_CAPS: &[u32] = &[
    0, // CAP_CHOWN
    1, // CAP_DAC_OVERRIDE
    2, // CAP_DAC_READ_SEARCH
    3, // CAP_FOWNER
    4, // CAP_FSETID
];
const CAP_NET_ADMIN: u32 = 12;

/// What the kernel process may do on the host.
pub struct Plan {
    /// Folders it may write beneath, by path (rw volumes; the scratch folder when it is one).
    pub writable: Vec<PathBuf>,
    /// Folders it may write beneath that have no path (the scratch tmpfs).
    pub writable_fds: Vec<OwnedFd>,
    /// The user gave it folders to write (rw volumes): their files' modes and times may change.
    pub user_writable: bool,
    /// Files it may write (rw disks, the overlay image): content only.
    pub writable_files: Vec<PathBuf>,
    /// The network mode needs TCP from the kernel process itself (legacy slirp).
    pub allow_tcp: bool,
    /// The network mode attaches a tap device (root may need CAP_NET_ADMIN for it).
    pub net_admin: bool,
    /// The sockets it may make.
    pub sockets: Sockets,
    /// Layers set up elsewhere that this host withheld (the scratch tmpfs), said in the
    /// same warning as the sandbox's own.
    pub withheld: Vec<String>,
}

/// Which sockets a confined process may make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sockets {
    /// Connected unix stream or seqpacket pairs only (socketpair): no socket(), so nothing
    /// that can name a host socket. The kernel process's network, when it has one, is an
    /// fd connected by the launcher.
    PairsOnly,
    /// Any family but unix stream (the tap transport's packet socket; slirp4netns, the NAT).
    AnyButUnixStream,
    /// Any socket (the legacy slirp, the kernel's own child; slirp4netns's port-forward API).
    Any,
}

/// A sandbox ready to be applied in the child.
pub struct Sandbox {
    landlock: Option<RulesetCreated>,
    seccomp: Option<seccompiler::BpfProgram>,
    mounts: Option<ReadOnlyMounts>,
    drop_caps: Vec<u32>,
    /// Root: clear the inheritable and ambient capability sets before exec.
    clear_inheritable: bool,
    /// What was set up, for --debug.
    pub summary: Vec<String>,
    /// A warning for the user, printed once.
    pub warning: Option<String>,
}

/// The Landlock ABI version this host kernel offers, `None` when it has none.
pub fn abi_version() -> Option<i32> {
    landlock_abi().ok()
}

/// The Landlock ABI version this host offers, or why it offers none.
pub fn landlock_abi() -> Result<i32, &'static str> {
    // SAFETY: landlock_create_ruleset with a NULL attribute, size 0 and the VERSION flag only
    // queries the ABI version; it touches no memory.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            1u32, // LANDLOCK_CREATE_RULESET_VERSION
        )
    };
    if v > 0 {
        return Ok(v as i32);
    }
    let errno = std::io::Error::last_os_error().raw_os_error();
    Err(landlock_reason(errno, under_seccomp_filter()))
}

impl Sandbox {
    /// No confinement (`--no-sandbox`).
    pub fn none() -> Sandbox {
        Sandbox {
            landlock: None,
            seccomp: None,
            mounts: None,
            drop_caps: Vec::new(),
            clear_inheritable: false,
            summary: vec!["off (--no-sandbox)".into()],
            warning: None,
        }
    }

    /// Prepares everything that allocates or opens files, in the parent.
    pub fn prepare(plan: &Plan) -> Result<Sandbox> {
        let mut summary = Vec::new();
        // Layers this host withholds, said together in one warning.
        let mut missing: Vec<String> = plan.withheld.clone();
        let mut writable: Vec<String> = Vec::new();
        if !plan.writable_fds.is_empty() {
            writable.push("its private scratch tmpfs".into());
        }
        writable.extend(plan.writable.iter().map(|p| p.display().to_string()));
        writable.extend(
            plan.writable_files
                .iter()
                .map(|p| format!("{} (contents)", p.display())),
        );

        let mut landlock_missing = None;
        let landlock = match landlock_abi() {
            Ok(abi) => {
                let ruleset = landlock_ruleset(plan).context("prepare the Landlock ruleset")?;
                summary.push(format!(
                    "landlock ABI {abi}: read and execute anywhere but terminals and /dev/net, write only beneath {}{}",
                    writable.join(", "),
                    if plan.allow_tcp { "" } else { "; no TCP" }
                ));
                Some(ruleset)
            }
            Err(why) => {
                missing.push(format!(
                    "Landlock ({why}): the guest can write wherever you can, and the bound on what it makes the host hold does not apply"
                ));
                landlock_missing = Some(why);
                None
            }
        };

        summary.push(
            match plan.sockets {
                Sockets::PairsOnly => "seccomp: no sockets but connected unix pairs (no inet, packet or netlink, nothing that names a host socket)",
                Sockets::AnyButUnixStream => "seccomp: no unix stream sockets",
                Sockets::Any => "seccomp: any socket",
            }
            .into(),
        );
        summary.push("seccomp: no io_uring, IPC objects, keyrings or handle-based opens".into());
        if !plan.user_writable {
            summary.push("seccomp: chmod, chown, utimes and xattr calls denied".into());
        }
        let seccomp = Some(kernel_filter(!plan.user_writable, plan.sockets)?);

        let root = rustix::process::geteuid().is_root();
        let mut mounts_missing = None;
        let (mounts, drop_caps) = if root {
            let effective = rustix::thread::capabilities(None)
                .map(|c| c.effective)
                .unwrap_or(CapabilitySet::empty());
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            let mounts = match mount_namespace_absence(effective, seccomp_filtered(&status)) {
                None => {
                    let mut writable = plan.writable.clone();
                    writable.extend(plan.writable_files.iter().cloned());
                    let mounts = ReadOnlyMounts::plan(&writable)?;
                    summary.push(format!(
                        "mount namespace: {} host mounts read-only",
                        mounts.read_only.len()
                    ));
                    Some(mounts)
                }
                Some(why) => {
                    mounts_missing = Some(why);
                    missing.push(format!(
                        "a mount namespace ({why}): host mounts are not made read-only{}",
                        if landlock.is_some() {
                            " (Landlock still keeps its writes out of them)"
                        } else {
                            ""
                        }
                    ));
                    None
                }
            };
            let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
                .unwrap_or(40);
            let drop = caps_to_drop(last, bounding_set(&status), plan.net_admin);
            if drop.is_empty() || effective.contains(CapabilitySet::SETPCAP) {
                summary.push("capabilities: only file access kept".into());
                (mounts, drop)
            } else {
                missing.push(format!(
                    "a smaller capability set (no CAP_SETPCAP here to drop {} capabilities): the kernel process keeps this root's capabilities",
                    drop.len()
                ));
                (mounts, Vec::new())
            }
        } else {
            (None, Vec::new())
        };
        if let (Some(no_landlock), Some(no_mounts)) = (landlock_missing, mounts_missing) {
            // Root's writes would then be stopped by nothing: refuse rather than run open.
            bail!(
                "as root here, neither Landlock ({no_landlock}) nor a mount namespace ({no_mounts}) can keep the kernel process from writing wherever root can: give sekexe one of them (in Docker: --cap-add SYS_ADMIN, or Docker 23+), run it as another user, or accept that with --no-sandbox"
            );
        }
        let mut warnings = Vec::new();
        if !missing.is_empty() {
            warnings.push(format!(
                "this host withholds {} of the kernel's confinement: without {}",
                if missing.len() == 1 {
                    "a layer"
                } else {
                    "layers"
                },
                missing.join("; without ")
            ));
        }
        if plan.sockets == Sockets::Any {
            warnings.push("this network mode needs unix stream sockets in the kernel's confinement: a hostile guest kernel could connect to your unix sockets (--net user avoids it)".into());
        }
        if !missing.is_empty() {
            warnings.push("see 'sekexe doctor'".into());
        }
        Ok(Sandbox {
            landlock,
            seccomp,
            mounts,
            drop_caps,
            clear_inheritable: root,
            summary,
            warning: (!warnings.is_empty()).then(|| warnings.join("; ")),
        })
    }

    /// Applies the sandbox to the calling process. For the forked child, before exec: the
    /// launcher is single-threaded, so the little allocation the layers do is safe here.
    pub fn apply(&mut self) -> std::io::Result<()> {
        if let Some(mounts) = &self.mounts {
            mounts.apply()?;
        }
        if self.clear_inheritable {
            // Root's exec grants the inheritable set (and the ambient one) besides the
            // bounding set: some container runtimes fill it, which would bring dropped
            // capabilities back.
            let mut sets = rustix::thread::capabilities(None)?;
            sets.inheritable = CapabilitySet::empty();
            rustix::thread::set_capabilities(None, sets)?;
            rustix::thread::clear_ambient_capability_set()?;
        }
        for &cap in &self.drop_caps {
            let one = rustix::thread::CapabilitySet::from_bits_retain(1 << cap);
            rustix::thread::remove_capability_from_bounding_set(one)?;
        }
        if let Some(ruleset) = self.landlock.take() {
            let status: RestrictionStatus = ruleset
                .restrict_self()
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            if status.ruleset == RulesetStatus::NotEnforced {
                // Prepared as supported, so this means the host refused it: do not run open.
                return Err(std::io::Error::other("Landlock was not enforced"));
            }
        }
        if let Some(filter) = &self.seccomp {
            seccompiler::apply_filter(filter).map_err(|e| std::io::Error::other(e.to_string()))?;
        }
        Ok(())
    }
}

/// Whether this process runs under a seccomp filter (a container's, a sandbox's): then a
/// layer the kernel offers may still be refused, and is probed before it is counted on.
fn under_seccomp_filter() -> bool {
    seccomp_filtered(&std::fs::read_to_string("/proc/self/status").unwrap_or_default())
}

/// The same, from /proc/self/status text.
fn seccomp_filtered(status: &str) -> bool {
    status_field(status, "Seccomp:").is_some_and(|v| v != "0")
}

fn status_field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(str::trim)
}

/// The capability bounding set, from /proc/self/status text; all capabilities when unknown.
fn bounding_set(status: &str) -> u64 {
    status_field(status, "CapBnd:")
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .unwrap_or(!0)
}

/// The capabilities up to `last` to drop from a bounding set: every one it holds but file
/// access (and network admin for a tap device). Dropping needs CAP_SETPCAP, so those it
/// lacks already are left alone.
fn caps_to_drop(last: u32, bounding: u64, net_admin: bool) -> Vec<u32> {
    (0..=last.min(63))
        .filter(|c| bounding & (1 << c) != 0)
        .filter(|c| !(KEPT_CAPS.contains(c) || net_admin && *c == CAP_NET_ADMIN))
        .collect()
}

/// Why root cannot give the kernel process a mount namespace of its own, `None` when it can.
fn mount_namespace_absence(effective: CapabilitySet, filtered: bool) -> Option<&'static str> {
    if !effective.contains(CapabilitySet::SYS_ADMIN) {
        return Some("no CAP_SYS_ADMIN here, as in a container");
    }
    if (filtered || under_apparmor_profile()) && !can_make_read_only_mounts() {
        return Some(
            "a seccomp filter or AppArmor profile on sekexe forbids it, as in a container",
        );
    }
    None
}

/// Whether an AppArmor profile confines this process (Docker's default one denies mount).
fn under_apparmor_profile() -> bool {
    [
        "/proc/self/attr/apparmor/current",
        "/proc/self/attr/current",
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .is_some_and(|label| {
        let label = label.trim().trim_end_matches('\0');
        !label.is_empty() && label != "unconfined" && !label.starts_with("unconfined ")
    })
}

/// Why root here cannot give the kernel process a mount namespace (for `sekexe doctor`).
pub fn mount_namespace_absence_here() -> Option<&'static str> {
    let effective = rustix::thread::capabilities(None)
        .map(|c| c.effective)
        .unwrap_or(CapabilitySet::empty());
    mount_namespace_absence(effective, under_seccomp_filter())
}

/// Tries, in a short-lived child, what the mount layer does first: a mount namespace of its
/// own, no propagation back, and a read-only remount.
fn can_make_read_only_mounts() -> bool {
    let null = std::ptr::null::<libc::c_char>();
    // SAFETY: the child only makes raw system calls (unshare, mount, _exit) on constant
    // strings before it ends, which is safe after fork even in a threaded process; the parent
    // reaps it by its pid.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            let ok = libc::unshare(libc::CLONE_NEWNS) == 0
                && libc::mount(
                    null,
                    c"/".as_ptr(),
                    null,
                    libc::MS_REC | libc::MS_SLAVE,
                    null.cast(),
                ) == 0
                && libc::mount(
                    null,
                    c"/".as_ptr(),
                    null,
                    libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
                    null.cast(),
                ) == 0;
            libc::_exit(if ok { 0 } else { 1 });
        }
        if pid < 0 {
            return false;
        }
        let mut status = 0;
        while libc::waitpid(pid, &mut status, 0) < 0 {
            if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                return false;
            }
        }
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
    }
}

/// Why Landlock is missing, from the errno of its ABI query.
fn landlock_reason(errno: Option<i32>, filtered: bool) -> &'static str {
    match errno {
        Some(libc::EOPNOTSUPP) => "turned off in this host kernel: add landlock to its lsm= boot option",
        Some(libc::EPERM) | Some(libc::ENOSYS) if filtered => {
            "a seccomp filter on sekexe forbids it, as in a container whose profile predates Landlock"
        }
        _ => "not in this host kernel, which predates 5.13 or was built without it",
    }
}

fn landlock_ruleset(plan: &Plan) -> Result<RulesetCreated> {
    let read = AccessFs::from_read(BEST_ABI);
    let all = AccessFs::from_all(BEST_ABI);
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)?;
    if !plan.allow_tcp {
        ruleset = ruleset.handle_access(AccessNet::from_all(BEST_ABI))?;
    }
    let ruleset = ruleset.scope(Scope::from_all(BEST_ABI))?;
    // Read anywhere but the host's terminals: "/" itself is listable, its entries and those
    // of /dev but the terminal devices are readable.
    let mut created = ruleset
        .create()?
        .add_rule(PathBeneath::new(PathFd::new("/")?, AccessFs::ReadDir))?;
    for path in readable_roots() {
        // Something that vanished or cannot be opened stays unreadable: no harm.
        if let Ok(fd) = PathFd::new(&path) {
            created = created.add_rule(PathBeneath::new(fd, read))?;
        }
    }
    for dir in &plan.writable {
        let fd = PathFd::new(dir).with_context(|| format!("open {}", dir.display()))?;
        created = created.add_rule(PathBeneath::new(fd, all))?;
    }
    for fd in &plan.writable_fds {
        created = created.add_rule(PathBeneath::new(fd.as_fd(), all))?;
    }
    for file in &plan.writable_files {
        let fd = PathFd::new(file).with_context(|| format!("open {}", file.display()))?;
        created = created.add_rule(PathBeneath::new(fd, AccessFs::from_file(BEST_ABI)))?;
    }
    // Device files the kernel process opens for writing. Not the pty UML would open at boot
    // to probe SIGIO (it logs that the probe failed, and needs no pty after). The TUN device
    // only for the tap transport: with it, any persistent TAP device you own would put the
    // guest's frames on the host's network.
    let tun = if plan.net_admin {
        &["/dev/net/tun"][..]
    } else {
        &[]
    };
    for dev in ["/dev/null", "/dev/zero"].iter().chain(tun) {
        if let Ok(fd) = PathFd::new(dev) {
            let access = AccessFs::from_file(BEST_ABI) | AccessFs::ReadDir;
            created = created.add_rule(PathBeneath::new(fd, access))?;
        }
    }
    Ok(created)
}

/// The paths the read rule covers: every entry of `/` but /dev, and every entry of /dev but
/// the terminals, input devices and network devices; no links (what they point to is covered
/// or left out on its own).
fn readable_roots() -> Vec<PathBuf> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let majors = withheld_majors(&read("/proc/tty/drivers"), &read("/proc/devices"));
    let mut roots: Vec<PathBuf> = std::fs::read_dir("/")
        .into_iter()
        .flatten()
        .flatten()
        // The type from the folder itself: no stat of each entry (a dead network mount
        // would hang here).
        .filter(|e| e.file_type().is_ok_and(|t| !t.is_symlink()))
        .map(|e| e.path())
        .filter(|p| p != Path::new("/dev"))
        .collect();
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    roots.extend(
        std::fs::read_dir("/dev")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                // Not links: /dev/stdin would be the launcher's own terminal.
                let meta = e.metadata().ok().filter(|m| !m.file_type().is_symlink())?;
                let major = meta
                    .file_type()
                    .is_char_device()
                    .then(|| rustix::fs::major(meta.rdev()));
                (!is_withheld(&e.path(), major, &majors)).then(|| e.path())
            }),
    );
    roots
}

/// Character-device majors withheld from reading: every terminal driver the host has
/// (`/proc/tty/drivers`), input devices, hidraw, usbmon and virtual-console memory
/// (`/proc/devices`), and the kernel's fixed terminal majors (devices.txt: 2 and 3 BSD ptys,
/// 4 tty and serial, 5 tty/console/ptmx, 7 vcs, 13 input, 136-143 pts, 166 ACM, 188 USB
/// serial, 204 low-density serial, 229 hvc) in case /proc says less.
fn withheld_majors(tty_drivers: &str, devices: &str) -> std::collections::BTreeSet<u32> {
    let mut majors: std::collections::BTreeSet<u32> = [2, 3, 4, 5, 7, 13, 166, 188, 204, 229]
        .into_iter()
        .chain(136..=143)
        .collect();
    // "name  /dev/node  major  minors  type"
    majors.extend(
        tty_drivers
            .lines()
            .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u32>().ok()),
    );
    // "Character devices:" then "major name" lines, up to "Block devices:".
    let chars = devices.split("Block devices:").next().unwrap_or("");
    majors.extend(chars.lines().filter_map(|l| {
        let (major, name) = l.trim().split_once(' ')?;
        let name = name.trim();
        let input = matches!(name, "input" | "hidraw" | "usbmon" | "vcs" | "vcsu");
        let terminal = name.contains("tty") || matches!(name, "pts" | "ptm" | "/dev/console");
        (input || terminal).then(|| major.parse::<u32>().ok())?
    }));
    majors
}

/// Whether a /dev entry is withheld from reading: the network devices (reading the TUN
/// device is enough to sniff a persistent TAP device you own; `--net tap` gets its own
/// rule), the pts and input folders, and character devices of the withheld majors.
fn is_withheld(
    path: &Path,
    char_major: Option<u32>,
    majors: &std::collections::BTreeSet<u32>,
) -> bool {
    path.file_name()
        .is_some_and(|n| n == "pts" || n == "net" || n == "input")
        || char_major.is_some_and(|m| majors.contains(&m))
}

/// Mount points of terminal file systems (devpts, devtmpfs) outside /dev, from mountinfo
/// text: the read rule cannot leave them out (a chroot's bind of /dev, a container's).
pub fn terminal_mounts_outside_dev(mountinfo: &str) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let fstype = after.split(' ').next()?;
            let point = String::from_utf8_lossy(&unescape(before.split(' ').nth(4)?)).into_owned();
            let in_dev = point == "/dev" || point.starts_with("/dev/");
            (matches!(fstype, "devpts" | "devtmpfs") && !in_dev).then_some(point)
        })
        .collect()
}

/// What the kernel process may not do beyond Landlock's rules (see the module doc); with
/// `metadata`, the file-metadata calls Landlock lets through too.
fn kernel_filter(with_metadata: bool, sockets: Sockets) -> Result<seccompiler::BpfProgram> {
    kernel_filter_for(with_metadata, sockets, memfd_exec_works())
}

/// Whether this host makes executable memfds (Linux 6.3+). Where it does not, Linux 7.x
/// makes its userspace stub executable with fchmod(fd, 0500) instead.
fn memfd_exec_works() -> bool {
    const MFD_EXEC: libc::c_uint = 0x10;
    // SAFETY: memfd_create with a static name and integer flags; the fd is closed at once.
    let fd = unsafe { libc::memfd_create(c"sekexe-probe".as_ptr(), MFD_EXEC | libc::MFD_CLOEXEC) };
    if fd < 0 {
        return false;
    }
    // SAFETY: closes the fd just made, which nothing else holds.
    unsafe { libc::close(fd) };
    true
}

fn kernel_filter_for(
    with_metadata: bool,
    sockets: Sockets,
    memfd_exec: bool,
) -> Result<seccompiler::BpfProgram> {
    const SOCK_TYPE_MASK: u64 = 0xf; // the type without SOCK_NONBLOCK / SOCK_CLOEXEC
    let metadata: &[i64] = &[
        libc::SYS_chmod,
        libc::SYS_fchmodat,
        452, // fchmodat2
        libc::SYS_chown,
        libc::SYS_fchown,
        libc::SYS_lchown,
        libc::SYS_fchownat,
        libc::SYS_utime,
        libc::SYS_utimes,
        libc::SYS_futimesat,
        libc::SYS_utimensat,
        libc::SYS_setxattr,
        libc::SYS_lsetxattr,
        libc::SYS_fsetxattr,
        libc::SYS_removexattr,
        libc::SYS_lremovexattr,
        libc::SYS_fremovexattr,
        463, // setxattrat
        466, // removexattrat
    ];
    let escapes: &[i64] = &[
        libc::SYS_io_uring_setup,
        // System V and POSIX IPC: new objects would outlive the run; existing ones (their ids
        // are in /proc/sysvipc) are other programs' shared state.
        libc::SYS_shmget,
        libc::SYS_shmat,
        libc::SYS_shmdt,
        libc::SYS_shmctl,
        libc::SYS_msgget,
        libc::SYS_msgsnd,
        libc::SYS_msgrcv,
        libc::SYS_msgctl,
        libc::SYS_semget,
        libc::SYS_semop,
        libc::SYS_semtimedop,
        libc::SYS_semctl,
        libc::SYS_mq_open,
        libc::SYS_open_by_handle_at,
        // The user's kernel keyrings (Kerberos tickets, other secrets).
        libc::SYS_add_key,
        libc::SYS_keyctl,
        libc::SYS_request_key,
    ];
    let mut deny = crate::seccomp::Deny::with_errno(libc::EPERM).calls(escapes);
    // Limits, priorities and CPU placement of other processes: Landlock has no hook for them,
    // and RLIMIT_CPU kills. The kernel process may set its own (pid or who 0).
    for (nr, target_arg) in [
        (libc::SYS_prlimit64, 0),
        (libc::SYS_setpriority, 1),
        (libc::SYS_ioprio_set, 1),
        (libc::SYS_sched_setaffinity, 0),
        (libc::SYS_sched_setscheduler, 0),
        (libc::SYS_sched_setparam, 0),
        (libc::SYS_sched_setattr, 0),
    ] {
        deny = deny.call_unless_arg(nr, target_arg, 0)?;
    }
    let unix_type = |kind: libc::c_int| {
        [
            (0, u64::from(u32::MAX), libc::AF_UNIX as u64),
            (1, SOCK_TYPE_MASK, kind as u64),
        ]
    };
    match sockets {
        Sockets::PairsOnly => {
            // Pairs of stream or seqpacket sockets only: they ignore or refuse an address. A
            // datagram pair (SOCK_DGRAM, or SOCK_RAW, which unix sockets turn into one) could
            // sendto() a named socket; other types are refused by the kernel anyway.
            deny = deny.calls(&[libc::SYS_socket]).call_unless_arg(
                libc::SYS_socketpair,
                0,
                libc::AF_UNIX as u64,
            )?;
            for kind in 0..=SOCK_TYPE_MASK as libc::c_int {
                if kind != libc::SOCK_STREAM && kind != libc::SOCK_SEQPACKET {
                    deny = deny.call_when_all(libc::SYS_socketpair, &unix_type(kind))?;
                }
            }
        }
        Sockets::AnyButUnixStream => {
            deny = deny.call_when_all(libc::SYS_socket, &unix_type(libc::SOCK_STREAM))?;
        }
        Sockets::Any => {}
    }
    if with_metadata {
        deny = deny.calls(metadata);
        deny = if memfd_exec {
            deny.calls(&[libc::SYS_fchmod])
        } else {
            // Only where Linux 7.x needs it for its stub (hosts before 6.3): that one mode.
            deny.call_unless_arg(libc::SYS_fchmod, 1, 0o500)?
        };
    }
    deny.build()
}

/// The host's mounts, to be made read-only in a private mount namespace.
struct ReadOnlyMounts {
    /// Mount points with the flags to keep (nosuid, nodev, noexec, atime).
    read_only: Vec<(CString, libc::c_ulong)>,
    /// Writable paths with the flags their bind mount gets.
    writable: Vec<(CString, libc::c_ulong)>,
}

impl ReadOnlyMounts {
    fn plan(writable: &[PathBuf]) -> Result<ReadOnlyMounts> {
        let text = std::fs::read_to_string("/proc/self/mountinfo").context("read mountinfo")?;
        let cstr = |p: &Path| CString::new(p.as_os_str().as_bytes()).context("NUL in a path");
        if !root_is_a_mount(&text) {
            bail!(
                "the sandbox's mount layer needs / to be a mount point, and here it is not (a chroot?): \
                 bind-mount the new root onto itself before entering it (mount --bind DIR DIR), \
                 or run with --no-sandbox"
            );
        }
        Ok(ReadOnlyMounts {
            read_only: with_nodev(parse_mountinfo(&text))
                .into_iter()
                .filter_map(|(p, f)| Some((CString::new(p).ok()?, f)))
                .collect(),
            // Writable folders lose devices and setuid too (a bind remount sets every flag
            // anew); writable files keep them (an rw --disk may be a block device).
            writable: writable
                .iter()
                .map(|p| {
                    let keep = if p.is_dir() {
                        libc::MS_NODEV | libc::MS_NOSUID
                    } else {
                        0
                    };
                    Ok((cstr(p)?, keep))
                })
                .collect::<Result<_>>()?,
        })
    }

    fn apply(&self) -> std::io::Result<()> {
        let check = |rc: libc::c_int| {
            if rc == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        };
        let null = std::ptr::null::<libc::c_char>();
        // SAFETY: (all calls below) unshare and mount take integer flags and NUL-terminated
        // strings that live in `self` for the duration of the calls.
        unsafe {
            check(libc::unshare(libc::CLONE_NEWNS))?;
            // Nothing done here reaches the host's namespace.
            check(libc::mount(
                null,
                c"/".as_ptr(),
                null,
                libc::MS_REC | libc::MS_SLAVE,
                null.cast(),
            ))?;
            for (target, keep) in &self.read_only {
                // Some mounts (a filesystem the kernel refuses to remount) stay as they are;
                // Landlock still keeps writes out of them.
                let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | keep;
                libc::mount(null, target.as_ptr(), null, flags, null.cast());
            }
            for (dir, keep) in &self.writable {
                check(libc::mount(
                    dir.as_ptr(),
                    dir.as_ptr(),
                    null,
                    libc::MS_BIND,
                    null.cast(),
                ))?;
                check(libc::mount(
                    null,
                    dir.as_ptr(),
                    null,
                    libc::MS_REMOUNT | libc::MS_BIND | keep,
                    null.cast(),
                ))?;
            }
        }
        Ok(())
    }
}

/// Whether this process's root is a mount point (not in a chroot of a plain folder), from
/// /proc/self/mountinfo text, which shows mount points relative to the root.
fn root_is_a_mount(mountinfo: &str) -> bool {
    mountinfo.lines().any(|l| l.split(' ').nth(4) == Some("/"))
}

/// Mount points and their per-mount flags worth keeping, from /proc/self/mountinfo text.
fn parse_mountinfo(text: &str) -> Vec<(Vec<u8>, libc::c_ulong)> {
    let mut mounts = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.len() < 6 {
            continue;
        }
        let mut flags = 0;
        for opt in fields[5].split(',') {
            flags |= match opt {
                "nosuid" => libc::MS_NOSUID,
                "nodev" => libc::MS_NODEV,
                "noexec" => libc::MS_NOEXEC,
                "noatime" => libc::MS_NOATIME,
                "nodiratime" => libc::MS_NODIRATIME,
                "relatime" => libc::MS_RELATIME,
                _ => 0,
            };
        }
        mounts.push((unescape(fields[4]), flags));
    }
    mounts
}

/// Adds `nodev` to every mount but /dev's own (and those beneath it, which a container may
/// bind one by one; Landlock's rules cover /dev): device nodes elsewhere (a chroot's or a
/// container's /dev, a second devpts) open nothing, though root keeps DAC override. Where
/// /dev is no mount of its own, the mount that holds it keeps its devices.
fn with_nodev(mut mounts: Vec<(Vec<u8>, libc::c_ulong)>) -> Vec<(Vec<u8>, libc::c_ulong)> {
    let in_dev = |p: &[u8]| p == b"/dev" || p.starts_with(b"/dev/");
    let dev_is_mount = mounts.iter().any(|(p, _)| p == b"/dev");
    for (p, flags) in &mut mounts {
        if !(in_dev(p) || !dev_is_mount && p.as_slice() == b"/") {
            *flags |= libc::MS_NODEV;
        }
    }
    mounts
}

/// mountinfo escapes space, tab, newline and backslash as octal `\NNN`.
fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_capabilities_the_bounding_set_holds_are_dropped() {
        // Docker's default set: chown, dac_override, fowner, fsetid, kill, setgid, setuid,
        // setpcap, net_bind_service, net_raw, sys_chroot, mknod, audit_write, setfcap.
        let status = "Name:\tsekexe\nCapBnd:\t00000000a80425fb\nSeccomp:\t2\n";
        let bounding = bounding_set(status);
        assert_eq!(bounding, 0xa80425fb);
        assert_eq!(
            caps_to_drop(40, bounding, false),
            vec![5, 6, 7, 8, 10, 13, 18, 27, 29, 31]
        );
        // A host root holds them all: everything but file access goes, and net admin only
        // without a tap device.
        let all = caps_to_drop(40, bounding_set("CapBnd:\t000001ffffffffff\n"), false);
        assert_eq!(all.len(), 41 - KEPT_CAPS.len());
        assert!(all.contains(&CAP_NET_ADMIN));
        assert!(!caps_to_drop(40, !0, true).contains(&CAP_NET_ADMIN));
        // Unknown: assume all held, so the drop is attempted rather than skipped.
        assert_eq!(bounding_set("Name:\tx\n"), !0);
        assert!(seccomp_filtered(status));
        assert!(!seccomp_filtered("Seccomp:\t0\n"));
    }

    #[test]
    fn a_missing_landlock_is_explained_by_its_errno() {
        let has = |errno, filtered, word: &str| {
            let why = landlock_reason(errno, filtered);
            assert!(why.contains(word), "{errno:?} {filtered}: {why}");
        };
        has(Some(libc::EOPNOTSUPP), false, "lsm=");
        has(Some(libc::EPERM), true, "seccomp filter");
        has(Some(libc::ENOSYS), true, "seccomp filter");
        has(Some(libc::ENOSYS), false, "5.13");
    }

    #[test]
    fn root_without_cap_sys_admin_gets_no_mount_namespace() {
        let why = mount_namespace_absence(CapabilitySet::CHOWN | CapabilitySet::SETPCAP, true);
        assert!(why.unwrap().contains("CAP_SYS_ADMIN"));
    }

    #[test]
    fn a_chroot_of_a_plain_folder_has_no_root_mount() {
        let host = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                    23 22 0:5 / /proc rw shared:2 - proc proc rw\n";
        assert!(root_is_a_mount(host));
        // In a chroot of /srv/r, only the mounts inside it show, relative to it.
        let chroot = "40 22 0:5 / /proc rw shared:2 - proc proc rw\n";
        assert!(!root_is_a_mount(chroot));
    }

    #[test]
    fn mountinfo_gives_mount_points_with_their_flags() {
        let text = "22 27 0:21 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw\n\
                    27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
                    30 27 0:30 / /mnt/with\\040space rw,noatime - tmpfs tmpfs rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m[0].0, b"/proc");
        assert_eq!(
            m[0].1,
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RELATIME
        );
        assert_eq!(m[1], (b"/".to_vec(), libc::MS_RELATIME));
        assert_eq!(m[2].0, b"/mnt/with space");
        assert_eq!(m[2].1, libc::MS_NOATIME);
    }

    /// Runs `probe` in a forked child under the kernel filter (any socket but unix stream);
    /// its exit status.
    fn under_kernel_filter(metadata: bool, probe: fn() -> bool) -> bool {
        under_filter(
            kernel_filter(metadata, Sockets::AnyButUnixStream).unwrap(),
            probe,
        )
    }

    fn under_filter(filter: seccompiler::BpfProgram, probe: fn() -> bool) -> bool {
        // SAFETY: the child only applies the prepared filter (prctl/seccomp) and makes raw
        // system calls, then leaves by _exit: nothing that needs the allocator's locks.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0);
            if pid == 0 {
                let ok = seccompiler::apply_filter(&filter).is_ok() && probe();
                libc::_exit(if ok { 0 } else { 1 });
            }
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
        }
    }

    fn fails_with(rc: libc::c_long, errno: i32) -> bool {
        rc == -1 && std::io::Error::last_os_error().raw_os_error() == Some(errno)
    }

    #[test]
    fn any_but_unix_stream_denies_unix_stream_sockets_only() {
        assert!(under_kernel_filter(false, || {
            // SAFETY: raw system calls with integer or static string arguments in the
            // forked child; fds they open close at its exit.
            unsafe {
                let stream = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
                fails_with(stream as _, libc::EPERM)
            }
        }));
        assert!(under_kernel_filter(false, || {
            // SAFETY: raw system calls with integer or static string arguments in the
            // forked child; fds they open close at its exit.
            unsafe {
                // The tap transport's packet socket and the NAT's inet ones are of this kind.
                let mut pair = [0; 2];
                libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0) >= 0
                    && libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0) >= 0
                    && libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, pair.as_mut_ptr()) == 0
                    && libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) >= 0
            }
        }));
        assert!(under_kernel_filter(false, || {
            // SAFETY: raw system calls with integer or static string arguments in the
            // forked child; fds they open close at its exit.
            unsafe {
                fails_with(
                    libc::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600) as _,
                    libc::EPERM,
                ) && fails_with(libc::syscall(libc::SYS_io_uring_setup, 8, 0), libc::EPERM)
                    // The x32 number of socket(): refused, not ENOSYS nor a socket.
                    && fails_with(
                        libc::syscall(
                            libc::SYS_socket | 0x4000_0000,
                            libc::AF_UNIX,
                            libc::SOCK_STREAM,
                            0,
                        ),
                        libc::EPERM,
                    )
            }
        }));
        // chmod is denied only with the metadata rules.
        assert!(under_kernel_filter(true, || {
            // SAFETY: raw system calls with integer or static string arguments in the
            // forked child; fds they open close at its exit.
            unsafe { fails_with(libc::chmod(c"/".as_ptr(), 0o755) as _, libc::EPERM) }
        }));
        assert!(under_kernel_filter(false, || {
            // SAFETY: raw system calls with integer or static string arguments in the
            // forked child; fds they open close at its exit.
            unsafe {
                !fails_with(
                    libc::chmod(c"/nonexistent-sekexe".as_ptr(), 0o755) as _,
                    libc::EPERM,
                )
            }
        }));
    }

    #[test]
    fn pairs_only_leaves_no_way_to_name_a_host_socket() {
        let pairs_only = || kernel_filter(false, Sockets::PairsOnly).unwrap();
        assert!(under_filter(pairs_only(), || {
            // SAFETY: raw system calls with integer arguments in the forked child; fds they
            // open close at its exit.
            unsafe {
                let mut pair = [0; 2];
                let families = [
                    libc::AF_UNIX,
                    libc::AF_INET,
                    libc::AF_INET6,
                    libc::AF_PACKET,
                    libc::AF_NETLINK,
                    libc::AF_VSOCK,
                ];
                families.iter().all(|&family| {
                    [libc::SOCK_STREAM, libc::SOCK_DGRAM, libc::SOCK_SEQPACKET]
                        .iter()
                        .all(|&kind| fails_with(libc::socket(family, kind, 0) as _, libc::EPERM))
                        && (family == libc::AF_UNIX
                            || fails_with(
                                libc::socketpair(family, libc::SOCK_STREAM, 0, pair.as_mut_ptr())
                                    as _,
                                libc::EPERM,
                            ))
                }) && [libc::SOCK_DGRAM, libc::SOCK_RAW, libc::SOCK_RDM]
                    .iter()
                    .all(|&kind| {
                        fails_with(
                            libc::socketpair(
                                libc::AF_UNIX,
                                kind | libc::SOCK_CLOEXEC,
                                0,
                                pair.as_mut_ptr(),
                            ) as _,
                            libc::EPERM,
                        )
                    })
            }
        }));
        assert!(under_filter(pairs_only(), || {
            // SAFETY: as above.
            unsafe {
                // What UML uses: stream pairs (its helpers, seccomp userspace's stub) and
                // seqpacket ones.
                let mut pair = [0; 2];
                libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, pair.as_mut_ptr()) == 0
                    && libc::socketpair(
                        libc::AF_UNIX,
                        libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                        0,
                        pair.as_mut_ptr(),
                    ) == 0
            }
        }));
    }

    #[test]
    fn terminals_input_and_network_devices_are_withheld_from_reading() {
        let dev = |name: &str| PathBuf::from("/dev").join(name);
        let drivers = "/dev/tty /dev/tty 5 0 system:/dev/tty\n\
                       ttyGS /dev/ttyGS 239 0-3 serial\n\
                       pty_slave /dev/pts 136 0-1048575 pty:slave\n";
        let devices = "Character devices:\n  1 mem\n  4 tty\n 13 input\n245 hidraw\n\
                       250 ttyTHS\n251 pps\n\nBlock devices:\n  8 sd\n";
        let majors = withheld_majors(drivers, devices);
        for m in [5, 136, 239, 13, 245, 250, 4, 7, 188] {
            assert!(majors.contains(&m), "{m}");
        }
        for m in [1, 8, 251] {
            assert!(!majors.contains(&m), "{m}");
        }
        for name in ["pts", "net", "input"] {
            assert!(is_withheld(&dev(name), None, &majors), "{name}");
        }
        for (name, major) in [("tty", 5), ("ptmx", 5), ("ttyGS0", 239), ("hidraw0", 245)] {
            assert!(is_withheld(&dev(name), Some(major), &majors), "{name}");
        }
        for (name, major) in [("null", Some(1)), ("urandom", Some(1)), ("shm", None)] {
            assert!(!is_withheld(&dev(name), major, &majors), "{name}");
        }
        // On this machine: /dev/null is readable, no terminal is, nor any link.
        let roots = readable_roots();
        assert!(roots.contains(&dev("null")) && roots.contains(&PathBuf::from("/usr")));
        assert!(!roots.iter().any(|p| p == &dev("pts")
            || p == &dev("ptmx")
            || p == &dev("tty")
            || p == &dev("stdin")
            || p == Path::new("/dev")));
    }

    #[test]
    fn terminal_file_systems_outside_dev_are_found() {
        let text = "24 27 0:6 / /dev rw - devtmpfs devtmpfs rw\n\
                    26 24 0:24 / /dev/pts rw - devpts devpts rw\n\
                    40 27 0:24 / /srv/chroot/dev/pts rw - devpts devpts rw\n\
                    41 27 0:6 / /srv/chroot\\040x/dev rw - devtmpfs devtmpfs rw\n\
                    42 27 0:30 / /srv/data rw - ext4 /dev/vdb rw\n";
        assert_eq!(
            terminal_mounts_outside_dev(text),
            ["/srv/chroot/dev/pts", "/srv/chroot x/dev"]
        );
    }

    #[test]
    fn every_mount_but_the_one_holding_dev_is_nodev() {
        let m = |p: &str| (p.as_bytes().to_vec(), 0);
        let with = with_nodev(vec![
            m("/"),
            m("/dev"),
            m("/dev/null"),
            m("/srv"),
            m("/devx"),
        ]);
        let flags: Vec<bool> = with.iter().map(|(_, f)| f & libc::MS_NODEV != 0).collect();
        assert_eq!(flags, [true, false, false, true, true]);
        // A root without a /dev mount keeps its devices.
        let with = with_nodev(vec![m("/"), m("/devices"), m("/srv")]);
        let flags: Vec<bool> = with.iter().map(|(_, f)| f & libc::MS_NODEV != 0).collect();
        assert_eq!(flags, [false, true, true]);
    }

    #[test]
    fn fchmod_is_allowed_only_for_the_stub_and_only_without_executable_memfds() {
        // SAFETY: (both probes) raw system calls on fds the child opens; they close at its
        // exit.
        let probe = || unsafe {
            let fd = libc::open(c"/".as_ptr(), libc::O_RDONLY);
            let mut p = [0; 2];
            fd >= 0
                && fails_with(libc::fchmod(fd, 0o755) as _, libc::EPERM)
                && libc::pipe(p.as_mut_ptr()) == 0
                && libc::fchmod(p[0], 0o500) == 0
        };
        assert!(under_filter(
            kernel_filter_for(true, Sockets::AnyButUnixStream, false).unwrap(),
            probe
        ));
        assert!(under_filter(
            kernel_filter_for(true, Sockets::AnyButUnixStream, true).unwrap(),
            // SAFETY: as above.
            || unsafe {
                let mut p = [0; 2];
                libc::pipe(p.as_mut_ptr()) == 0
                    && fails_with(libc::fchmod(p[0], 0o500) as _, libc::EPERM)
            }
        ));
    }

    #[test]
    fn other_processes_limits_keyrings_and_ipc_objects_are_out_of_reach() {
        assert!(under_kernel_filter(false, || {
            // SAFETY: raw system calls with integer arguments or pointers to locals, in the
            // forked child.
            unsafe {
                let parent = libc::getppid();
                let mut lim = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                let set: libc::cpu_set_t = std::mem::zeroed();
                // Its own limits and priority: allowed.
                libc::syscall(libc::SYS_prlimit64, 0, libc::RLIMIT_NOFILE, 0usize, &mut lim) == 0
                    && libc::setpriority(libc::PRIO_PROCESS, 0, 1) == 0
                    // Another process's: refused.
                    && fails_with(
                        libc::syscall(libc::SYS_prlimit64, parent, libc::RLIMIT_CPU, &lim, 0usize),
                        libc::EPERM,
                    )
                    && fails_with(
                        libc::setpriority(libc::PRIO_PROCESS, parent as libc::id_t, 5) as _,
                        libc::EPERM,
                    )
                    && fails_with(
                        libc::sched_setaffinity(parent, std::mem::size_of_val(&set), &set)
                            as _,
                        libc::EPERM,
                    )
                    && fails_with(
                        libc::syscall(libc::SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -4, 0),
                        libc::EPERM,
                    )
                    && fails_with(libc::shmat(0, std::ptr::null(), 0) as _, libc::EPERM)
                    && fails_with(libc::msgctl(0, libc::IPC_RMID, std::ptr::null_mut()) as _, libc::EPERM)
            }
        }));
    }
}
