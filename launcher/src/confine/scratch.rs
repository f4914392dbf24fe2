//! The kernel process's scratch area: the one place on the host it may write to besides the
//! user's rw volumes and disks. UML keeps its guest memory file there (its TMPDIR) and its
//! uml_dir (pid file).
//!
//! The guest kernel is hostile, and whatever the kernel process may write, the guest may fill.
//! So the area is a tmpfs of its own, limited to `--mem` plus [`MARGIN`] and [`MAX_FILES`]
//! files, made with the new mount API and never attached to any path: the kernel process
//! enters it through an fd (it is its working directory, named [`KERNEL_PATH`]), the launcher
//! watches it through the same fd, and it vanishes with the last fd. As root the launcher
//! makes it directly; otherwise a short-lived child makes it in a user namespace of its own and
//! hands the fd back (the kernel process itself stays in the host's namespaces, so hostfs
//! shows host files with their real owners).
//!
//! Where neither works (user namespaces disabled, a container without CAP_SYS_ADMIN), the area
//! is a folder of the run folder, with no hard limit: the launcher then measures it and ends
//! the run past the same bound, and says once that the limit is only watched.

use std::ffi::OsString;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use rustix::fs::{Mode, OFlags};
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};

use crate::units;

/// What the area may hold beyond guest memory: UML's few files, and room to notice a guest
/// that writes there before the tmpfs itself refuses.
pub const MARGIN: u64 = 64 << 20;
/// The run ends once the area holds more than `--mem` plus this.
pub const WATCH_MARGIN: u64 = 32 << 20;
/// Files the area may hold: UML needs fewer than ten.
pub const MAX_FILES: u64 = 256;
/// The run ends once the area holds more files than this.
const WATCH_FILES: u64 = 64;
// The tmpfs's hard limits leave room above the watched bound to notice the guest crossing it.
const _: () = assert!(WATCH_MARGIN < MARGIN && WATCH_FILES < MAX_FILES);
/// The kernel process's name for the area: its working directory.
pub const KERNEL_PATH: &str = "/proc/self/cwd";

pub struct Scratch {
    /// The area's root folder (a plain directory fd, not O_PATH, so fstatvfs works).
    dir: OwnedFd,
    mem: u64,
    /// The host folder, when the area is not a private tmpfs.
    host_folder: Option<PathBuf>,
    /// The layer the host withheld when it is not, for the sandbox's warning: "without ...".
    pub withheld: Option<String>,
    /// The kernel process, once started.
    kernel: std::cell::Cell<Option<i32>>,
}

/// How full the area is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    pub files: u64,
}

impl Scratch {
    /// Makes the area for a guest of `mem` bytes; `run_dir` holds the fallback folder.
    /// `SEKEXE_SCRATCH=folder` asks for the fallback (to test it; it only weakens the bound).
    pub fn create(mem: u64, run_dir: &Path) -> Result<Scratch> {
        let options = tmpfs_options(mem + MARGIN);
        let made = if std::env::var_os("SEKEXE_SCRATCH").is_some_and(|v| v == "folder") {
            Err(anyhow!("SEKEXE_SCRATCH=folder"))
        } else {
            private_tmpfs(&options)
        };
        match made {
            Ok(root) => Ok(Scratch {
                dir: reopen(&root)?,
                mem,
                host_folder: None,
                withheld: None,
                kernel: Default::default(),
            }),
            Err(e) => {
                let folder = run_dir.join("kernel");
                rustix::fs::mkdir(&folder, Mode::RWXU)
                    .with_context(|| format!("create {}", units::shown(&folder)))?;
                let dir = rustix::fs::open(
                    &folder,
                    OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::RDONLY,
                    Mode::empty(),
                )
                .with_context(|| format!("open {}", units::shown(&folder)))?;
                let withheld = format!(
                    "a private tmpfs for the kernel's files ({e:#}): they go to {}, where the guest could fill the host's memory or disk until sekexe notices (it checks 4 times a second)",
                    units::shown(&folder)
                );
                Ok(Scratch {
                    dir,
                    mem,
                    host_folder: Some(folder),
                    withheld: Some(withheld),
                    kernel: Default::default(),
                })
            }
        }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// The host folder the area is, when it is not a private tmpfs (the sandbox needs its
    /// path to bind-mount it writable).
    pub fn host_folder(&self) -> Option<&Path> {
        self.host_folder.as_deref()
    }

    /// `(TMPDIR, uml_dir)` as the kernel process names them.
    pub fn kernel_paths() -> (OsString, PathBuf) {
        (KERNEL_PATH.into(), Path::new(KERNEL_PATH).join("uml"))
    }

    pub fn usage(&self) -> Result<Usage> {
        match &self.host_folder {
            None => {
                let v = rustix::fs::fstatvfs(&self.dir).context("fstatvfs the scratch tmpfs")?;
                Ok(Usage {
                    bytes: (v.f_blocks - v.f_bfree) * v.f_frsize,
                    files: v.f_files - v.f_ffree,
                })
            }
            Some(_) => {
                let mut usage = measure(self.dir.as_fd(), WATCH_FILES + 1)?;
                // A file removed while open keeps its blocks and no name: count the kernel
                // process's own (its memory file is one).
                if let Some(pid) = self.kernel.get() {
                    let dev = rustix::fs::fstat(&self.dir)?.st_dev;
                    usage.bytes += unlinked_open_files(pid, dev)?;
                }
                Ok(usage)
            }
        }
    }

    /// The kernel process, whose open files count in a host-folder area.
    pub fn watch_kernel(&self, pid: i32) {
        self.kernel.set(Some(pid));
    }

    /// The kernel has been reaped: its pid may name another process now.
    pub fn forget_kernel(&self) {
        self.kernel.set(None);
    }

    /// `Some(why)` once the guest has made the host hold more than its bound, or once the
    /// area cannot be measured any more (a guest that hides what it writes is over it).
    pub fn overrun(&self) -> Option<String> {
        self.overrun_with(Some(self.mem))
    }

    /// The same once the kernel has exited: its memory file is gone, so whatever is left
    /// was written by the guest, and the bound is the margin alone. (A guest that fills the
    /// tmpfs faster than the checks starves its own memory and crashes the kernel: this names
    /// it.)
    pub fn overrun_after_exit(&self) -> Option<String> {
        self.overrun_with(None)
    }

    /// `mem`: the guest memory the area may hold now (none once the kernel has exited).
    fn overrun_with(&self, mem: Option<u64>) -> Option<String> {
        match self.usage() {
            Ok(usage) => match mem {
                Some(mem) => overrun(usage, mem),
                None => overrun(usage, 0).map(|why| {
                    if usage.bytes <= WATCH_MARGIN {
                        return why; // too many files
                    }
                    format!(
                        "the guest left {} MiB of its own files in the kernel's scratch area on the host, over the limit of --mem + {} MiB (guest memory aside, {} MiB); the run was stopped",
                        usage.bytes >> 20,
                        WATCH_MARGIN >> 20,
                        WATCH_MARGIN >> 20
                    )
                }),
            },
            Err(e) => Some(format!(
                "the kernel's scratch area on the host can no longer be measured ({e:#}); the run was stopped"
            )),
        }
    }
}

/// Whether a private tmpfs can be made here (for `sekexe doctor`); the error says why not.
pub fn probe() -> Result<()> {
    private_tmpfs(&tmpfs_options(MARGIN)).map(drop)
}

/// A private tmpfs: directly where this process may mount (root with CAP_SYS_ADMIN), else in
/// a user namespace (any user, root in a container without CAP_SYS_ADMIN included).
fn private_tmpfs(options: &[(&'static str, String)]) -> Result<OwnedFd> {
    if rustix::process::geteuid().is_root() {
        if let Ok(fd) = tmpfs(options) {
            return Ok(fd);
        }
    }
    in_user_namespace(options)
}

/// The pure bound check: `Some(message)` past `mem` + [`WATCH_MARGIN`] bytes or
/// [`WATCH_FILES`] files.
pub fn overrun(usage: Usage, mem: u64) -> Option<String> {
    let limit = mem + WATCH_MARGIN;
    if usage.bytes > limit {
        return Some(format!(
            "the guest made the host hold {} MiB in the kernel's scratch area, over the limit of --mem + {} MiB = {} MiB; the run was stopped",
            usage.bytes >> 20,
            WATCH_MARGIN >> 20,
            limit >> 20
        ));
    }
    if usage.files > WATCH_FILES {
        return Some(format!(
            "the guest created over {WATCH_FILES} files in the kernel's scratch area on the host (the kernel needs fewer than ten); the run was stopped"
        ));
    }
    None
}

/// The tmpfs options for an area of `size` bytes, prepared before any fork.
fn tmpfs_options(size: u64) -> [(&'static str, String); 3] {
    [
        ("size", size.to_string()),
        ("nr_inodes", MAX_FILES.to_string()),
        ("mode", "0700".to_string()),
    ]
}

/// A detached tmpfs: an fd to its root, with no path anywhere. Allocates nothing unless it
/// fails (it runs in a forked child).
fn tmpfs(options: &[(&'static str, String)]) -> Result<OwnedFd> {
    let fs = rustix::mount::fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC).context("fsopen")?;
    for (key, value) in options {
        rustix::mount::fsconfig_set_string(&fs, *key, value.as_str())
            .with_context(|| format!("tmpfs option {key}={value}"))?;
    }
    rustix::mount::fsconfig_create(&fs).context("create the tmpfs")?;
    rustix::mount::fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV,
    )
    .context("fsmount")
}

/// A plain directory fd for the mount's root (fsmount's fd is a path-only one).
fn reopen(root: &OwnedFd) -> Result<OwnedFd> {
    rustix::fs::openat(
        root,
        ".",
        OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::RDONLY,
        Mode::empty(),
    )
    .context("open the scratch tmpfs")
}

/// Makes the tmpfs in a child that enters a user and mount namespace of its own (mounting
/// needs CAP_SYS_ADMIN, which an unprivileged user has only there), and receives its fd.
fn in_user_namespace(options: &[(&'static str, String)]) -> Result<OwnedFd> {
    let (ours, theirs) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .context("socketpair")?;
    let uid_map = format!("{0} {0} 1", rustix::process::geteuid().as_raw());
    let gid_map = format!("{0} {0} 1", rustix::process::getegid().as_raw());
    // SAFETY: the launcher is single-threaded (no lock can be held by another thread); the
    // child only makes system calls and small allocations, and leaves by _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error()).context("fork");
    }
    if pid == 0 {
        drop(ours);
        let answer = child_make_tmpfs(options, &uid_map, &gid_map);
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut cmsg = SendAncillaryBuffer::new(&mut space);
        let text = match &answer {
            Ok(fd) => {
                let fds = [fd.as_fd()];
                cmsg.push(SendAncillaryMessage::ScmRights(&fds));
                let _ = rustix::net::sendmsg(
                    &theirs,
                    &[IoSlice::new(b"ok")],
                    &mut cmsg,
                    SendFlags::empty(),
                );
                String::new()
            }
            Err(e) => format!("{e:#}"),
        };
        if !text.is_empty() {
            let _ = rustix::net::send(&theirs, text.as_bytes(), SendFlags::empty());
        }
        // SAFETY: ends the forked child without running the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    drop(theirs);
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = RecvAncillaryBuffer::new(&mut space);
    let mut buf = [0u8; 512];
    let got = rustix::net::recvmsg(
        &ours,
        &mut [IoSliceMut::new(&mut buf)],
        &mut cmsg,
        RecvFlags::CMSG_CLOEXEC,
    );
    let mut fd = None;
    for msg in cmsg.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = msg {
            fd = fds.next();
        }
    }
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    match (fd, got) {
        (Some(fd), _) => Ok(fd),
        (None, Ok(msg)) => Err(anyhow!(
            "in a user namespace: {}",
            String::from_utf8_lossy(&buf[..msg.bytes])
        )),
        (None, Err(e)) => Err(anyhow!("in a user namespace: {e}")),
    }
}

/// In the forked child: a user namespace where this user is itself, with a mount namespace.
fn child_make_tmpfs(
    options: &[(&'static str, String)],
    uid_map: &str,
    gid_map: &str,
) -> Result<OwnedFd> {
    // SAFETY: unshare takes integer flags only.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) } != 0 {
        return Err(std::io::Error::last_os_error())
            .context("unshare (user namespaces are disabled, or a seccomp filter forbids them)");
    }
    for (file, text) in [
        (c"/proc/self/setgroups", "deny"),
        (c"/proc/self/uid_map", uid_map),
        (c"/proc/self/gid_map", gid_map),
    ] {
        let fd = rustix::fs::open(file, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())
            .with_context(|| format!("open {file:?}"))?;
        rustix::io::write(&fd, text.as_bytes()).with_context(|| format!("write {file:?}"))?;
    }
    tmpfs(options)
}

/// Bytes held by files process `pid` has open on device `dev` that have no name any more.
/// A process that is gone holds nothing; one whose fd table cannot be read (it made itself
/// undumpable) is an error: what it holds cannot be counted.
fn unlinked_open_files(pid: i32, dev: u64) -> Result<u64> {
    let dir = format!("/proc/{pid}/fd");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("read {dir}")),
    };
    Ok(entries
        .flatten()
        // stat follows the fd's magic link to the open file itself.
        .filter_map(|e| rustix::fs::stat(e.path()).ok())
        .filter(|st| st.st_dev == dev && st.st_nlink == 0)
        .map(|st| st.st_blocks as u64 * 512)
        .sum())
}

/// Bytes and entries beneath `dir`, never following a link; stops counting entries past
/// `max_files` (the caller has seen enough by then). A folder it cannot enter is an error:
/// what it holds cannot be counted.
fn measure(dir: BorrowedFd<'_>, max_files: u64) -> Result<Usage> {
    let mut usage = Usage { bytes: 0, files: 0 };
    let mut stack: Vec<OwnedFd> = vec![rustix::io::fcntl_dupfd_cloexec(dir, 3)?];
    while let Some(fd) = stack.pop() {
        let entries = rustix::fs::Dir::read_from(&fd).context("read the scratch folder")?;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            usage.files += 1;
            if usage.files > max_files {
                return Ok(usage);
            }
            let Ok(st) = rustix::fs::statat(&fd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            else {
                continue;
            };
            usage.bytes += st.st_blocks as u64 * 512;
            if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory {
                let sub = rustix::fs::openat(
                    &fd,
                    name,
                    OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::RDONLY,
                    Mode::empty(),
                )
                .with_context(|| format!("open {name:?} in the scratch folder"))?;
                stack.push(sub);
            }
        }
    }
    Ok(usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn the_bound_is_mem_plus_the_watch_margin_and_a_few_files() {
        let mem = 256 * MIB;
        let cases = [
            (0, 0, false),
            (mem, 8, false),
            (mem + WATCH_MARGIN, WATCH_FILES, false),
            (mem + WATCH_MARGIN + 1, 1, true),
            (0, WATCH_FILES + 1, true),
            (10 << 30, 3, true),
        ];
        for (bytes, files, over) in cases {
            let got = overrun(Usage { bytes, files }, mem);
            assert_eq!(got.is_some(), over, "{bytes} bytes, {files} files: {got:?}");
        }
        let msg = overrun(
            Usage {
                bytes: 10 << 30,
                files: 1,
            },
            mem,
        )
        .unwrap();
        assert!(msg.contains("--mem + 32 MiB = 288 MiB"), "{msg}");
    }

    #[test]
    fn measuring_a_folder_counts_bytes_and_files_without_following_links() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), vec![1u8; 64 * 1024]).unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/b"), vec![1u8; 64 * 1024]).unwrap();
        std::os::unix::fs::symlink("/usr", d.path().join("link")).unwrap();
        let dir = std::fs::File::open(d.path()).unwrap();
        let u = measure(dir.as_fd(), 100).unwrap();
        assert_eq!(u.files, 4);
        assert!(u.bytes >= 128 * 1024 && u.bytes < 1 << 20, "{u:?}");
        assert_eq!(measure(dir.as_fd(), 2).unwrap().files, 3);
    }

    #[test]
    fn files_removed_while_open_still_count() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("hidden");
        let mut f = std::fs::File::create(&path).unwrap();
        std::io::Write::write_all(&mut f, &vec![1u8; 256 * 1024]).unwrap();
        f.sync_all().unwrap();
        std::fs::remove_file(&path).unwrap();
        let dev = rustix::fs::stat(d.path()).unwrap().st_dev;
        let held = unlinked_open_files(std::process::id() as i32, dev).unwrap();
        assert!(held >= 256 * 1024, "{held}");
        drop(f);
        assert_eq!(
            unlinked_open_files(std::process::id() as i32, dev).unwrap(),
            0
        );
    }

    #[test]
    fn a_folder_that_cannot_be_entered_cannot_be_measured() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), PermissionsExt::from_mode(0o755)).unwrap();
        let sub = d.path().join("closed");
        std::fs::create_dir(&sub).unwrap();
        std::fs::set_permissions(&sub, PermissionsExt::from_mode(0o000)).unwrap();
        let dir = std::fs::File::open(d.path()).unwrap();
        // Root enters any folder: this thread alone takes another effective uid (a raw
        // setresuid changes only the calling thread), which drops its effective capabilities,
        // and takes back uid 0 (still its saved uid) after.
        let root = rustix::process::geteuid().is_root();
        let set_euid = |euid: u32| {
            // SAFETY: setresuid takes integers; -1 leaves the real and saved uids as they are.
            let rc = unsafe { libc::syscall(libc::SYS_setresuid, -1i32, euid, -1i32) };
            assert_eq!(rc, 0, "setresuid");
        };
        if root {
            set_euid(65534);
        }
        let result = measure(dir.as_fd(), 100);
        if root {
            set_euid(0);
        }
        assert!(result.is_err(), "{result:?}");
        std::fs::set_permissions(&sub, PermissionsExt::from_mode(0o700)).unwrap();
    }

    #[test]
    fn a_private_tmpfs_can_be_made_and_is_bounded() {
        // As root directly, otherwise through a user namespace; hosts that allow neither get
        // the watched folder instead (covered by the integration tests).
        let run = tempfile::tempdir().unwrap();
        let s = Scratch::create(MIB, run.path()).unwrap();
        if s.host_folder().is_some() {
            eprintln!("SKIP: no tmpfs here, the fallback folder is used");
            return;
        }
        let f = rustix::fs::openat(
            s.fd(),
            "fill",
            OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::RUSR | Mode::WUSR,
        )
        .unwrap();
        let chunk = vec![7u8; MIB as usize];
        let mut written = 0u64;
        while let Ok(n) = rustix::io::write(&f, &chunk) {
            written += n as u64;
            if written > 4 * MARGIN {
                break;
            }
        }
        assert!(written <= MIB + MARGIN, "wrote {written} bytes");
        assert!(s.overrun().is_some());
    }
}
