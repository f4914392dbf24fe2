//! The guest's filesystems. The early ones are a table, each row with its failure policy; the
//! host's `/` is already the root (hostfs, read-only), so everything writable is a tmpfs.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use rustix::mount::{mount, MountFlags};

use sekexe_wire::names::guest_tmpfs_over;
use sekexe_wire::Volume;

use crate::log::Log;

#[derive(Clone, Copy)]
enum Policy {
    /// The guest is unusable without it; the text says what the kernel probably lacks.
    Required(&'static str),
    /// Useful, but a kernel or host without it still runs commands.
    BestEffort,
}

struct Row {
    fstype: &'static str,
    target: &'static str,
    flags: MountFlags,
    data: &'static str,
    policy: Policy,
}

const NOSUID_NODEV: MountFlags = MountFlags::NOSUID.union(MountFlags::NODEV);

/// The first rows: what the channel needs (/proc, /dev).
const BASE_ROWS: usize = 2;
/// The next ones: /run for the exchange folder, /tmp as scratch space for another root.
const SCRATCH_ROWS: usize = 4;

const EARLY: &[Row] = &[
    Row {
        fstype: "proc",
        target: "/proc",
        flags: NOSUID_NODEV.union(MountFlags::NOEXEC),
        data: "",
        policy: Policy::Required("CONFIG_PROC_FS missing?"),
    },
    Row {
        fstype: "devtmpfs",
        target: "/dev",
        flags: MountFlags::NOSUID,
        data: "mode=0755",
        policy: Policy::Required("CONFIG_DEVTMPFS missing?"),
    },
    Row {
        fstype: "tmpfs",
        target: "/run",
        flags: NOSUID_NODEV,
        data: "mode=0755",
        policy: Policy::Required("CONFIG_TMPFS missing?"),
    },
    Row {
        fstype: "tmpfs",
        target: "/tmp",
        flags: NOSUID_NODEV,
        data: "mode=1777",
        policy: Policy::Required("CONFIG_TMPFS missing?"),
    },
    Row {
        fstype: "sysfs",
        target: "/sys",
        flags: NOSUID_NODEV.union(MountFlags::NOEXEC),
        data: "",
        policy: Policy::Required("CONFIG_SYSFS missing?"),
    },
    Row {
        fstype: "devpts",
        target: "/dev/pts",
        flags: MountFlags::NOSUID.union(MountFlags::NOEXEC),
        data: "newinstance,ptmxmode=0666,mode=0620,gid=5",
        policy: Policy::Required("CONFIG_UNIX98_PTYS missing?"),
    },
    Row {
        fstype: "tmpfs",
        target: "/dev/shm",
        flags: NOSUID_NODEV,
        data: "mode=1777",
        policy: Policy::BestEffort,
    },
    Row {
        fstype: "tmpfs",
        target: "/var/tmp",
        flags: NOSUID_NODEV,
        data: "mode=1777",
        policy: Policy::BestEffort,
    },
];

/// The usual /dev links that devtmpfs does not create.
const DEV_LINKS: &[(&str, &str)] = &[
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
];

/// /proc and /dev, which the channel needs; the kernel may have mounted /dev already.
pub fn mount_base(log: &mut Log) -> Result<()> {
    mount_rows(&EARLY[..BASE_ROWS], log)
}

/// /run and /tmp, before the request is read.
pub fn mount_scratch(log: &mut Log) -> Result<()> {
    mount_rows(&EARLY[BASE_ROWS..SCRATCH_ROWS], log)
}

/// Everything else in the table (the scratch rows again, for a new root), and the usual /dev
/// links.
pub fn mount_rest(log: &mut Log) -> Result<()> {
    mount_rows(&EARLY[BASE_ROWS..], log)?;
    for (target, link) in DEV_LINKS {
        let _ = std::os::unix::fs::symlink(target, link);
    }
    Ok(())
}

fn mount_rows(rows: &[Row], log: &mut Log) -> Result<()> {
    for row in rows {
        match mount_row(row) {
            Ok(true) => log.step(&format!("mounted {} on {}", row.fstype, row.target)),
            Ok(false) => log.step(&format!("{} already mounted", row.target)),
            Err(e) => match row.policy {
                Policy::Required(hint) => return Err(e.context(hint)),
                Policy::BestEffort => log.error(&format!("skipped {}: {e:#}", row.target)),
            },
        }
    }
    Ok(())
}

/// Mounts a row; `Ok(false)` when something is already mounted there (the kernel mounts
/// devtmpfs itself when built with CONFIG_DEVTMPFS_MOUNT).
fn mount_row(row: &Row) -> Result<bool> {
    let target = Path::new(row.target);
    ensure_dir(target)?;
    if is_mountpoint(target) {
        return Ok(false);
    }
    let data = CString::new(row.data).expect("no NUL in mount options");
    mount(row.fstype, target, row.fstype, row.flags, data.as_c_str())
        .with_context(|| format!("mount -t {} {}", row.fstype, row.target))?;
    Ok(true)
}

/// A folder that is the root of its own filesystem (its device differs from its parent's).
fn is_mountpoint(path: &Path) -> bool {
    let parent = path.parent().unwrap_or(Path::new("/"));
    match (std::fs::metadata(path), std::fs::metadata(parent)) {
        (Ok(a), Ok(b)) => a.dev() != b.dev(),
        _ => false,
    }
}

pub fn ensure_dir(path: &Path) -> Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(path).with_context(|| {
        format!(
            "mkdir {} (the folder must exist in the root filesystem)",
            path.display()
        )
    })
}

/// Mounts the host folder `host` at `target` over hostfs.
pub fn mount_hostfs(host: &Path, target: &Path, read_only: bool) -> Result<()> {
    ensure_dir(target)?;
    let data = CString::new(host.as_os_str().as_bytes())
        .map_err(|_| anyhow!("host path {} contains a NUL byte", host.display()))?;
    let mut flags = NOSUID_NODEV;
    if read_only {
        flags |= MountFlags::RDONLY;
    }
    mount("none", target, "hostfs", flags, data.as_c_str())
        .with_context(|| format!("mount -t hostfs {} on {}", host.display(), target.display()))
}

/// Whether hostfs caches in this boot: the launcher passes `hostfs.cache_ms=` only to a
/// kernel with the project's patch, and only when `--fs-cache` is not 0.
fn hostfs_caches() -> bool {
    std::fs::read("/proc/cmdline").is_ok_and(|c| {
        c.split(|b| b.is_ascii_whitespace())
            .any(|w| w.starts_with(b"hostfs.cache_ms=") && w != b"hostfs.cache_ms=0")
    })
}

/// Mounts the host folder `host` at `target`, read-only, for an overlay's lower layer: without
/// the project kernel's hostfs cache (its `nocache` option), because overlayfs turns a name
/// the cache stops vouching for (a file the host replaced) into ESTALE, where an uncached
/// hostfs keeps serving it. Without the cache in this boot, a plain mount: only the patched
/// hostfs knows `nocache`, and a kernel whose hostfs has the old mount API would take any
/// option for part of the host path.
pub fn mount_hostfs_lower(host: &Path, target: &Path) -> Result<()> {
    use rustix::mount::{
        fsconfig_create, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, move_mount,
        FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags,
    };
    if !hostfs_caches() {
        return mount_hostfs(host, target, true);
    }
    ensure_dir(target)?;
    let fs = fsopen("hostfs", FsOpenFlags::FSOPEN_CLOEXEC).context("fsopen hostfs")?;
    fsconfig_set_flag(&fs, "nocache").context("hostfs option nocache")?;
    let what = || {
        format!(
            "mount -t hostfs -o nocache {} on {}",
            host.display(),
            target.display()
        )
    };
    fsconfig_set_string(&fs, "hostfs", host).with_context(what)?;
    fsconfig_create(&fs).with_context(what)?;
    let mnt = fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_RDONLY
            | MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV,
    )
    .with_context(what)?;
    move_mount(
        &mnt,
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .with_context(what)
}

/// When the working directory lies under a folder the guest covers with a fresh tmpfs (a run
/// started in /tmp/project, say), shows the host's folder there again, read-only, so the
/// command starts where the caller stood.
pub fn keep_cwd_visible(cwd: &[u8], volumes: &[Volume], log: &mut Log) -> Result<()> {
    let cwd = Path::new(std::ffi::OsStr::from_bytes(cwd));
    // A working directory in a volume is the volume's.
    let in_volume = volumes
        .iter()
        .any(|v| cwd.starts_with(std::ffi::OsStr::from_bytes(&v.guest)));
    if !in_volume && guest_tmpfs_over(cwd).is_some() {
        mount_hostfs(cwd, cwd, true)?;
        log.step(&format!(
            "host folder {} shown at the same path",
            cwd.display()
        ));
        return Ok(());
    }
    if !cwd.is_dir() {
        bail!(
            "the working directory {} does not exist in the guest",
            cwd.display()
        );
    }
    Ok(())
}

/// Whether guest-init mounts a file system of its own at `path` (/proc, /sys, /tmp...).
pub fn is_guest_mount_target(path: &Path) -> bool {
    EARLY.iter().any(|r| Path::new(r.target) == path)
}

/// Shows each `-v` host folder at its guest path, read-only unless asked otherwise.
pub fn mount_volumes(volumes: &[Volume], log: &mut Log) -> Result<()> {
    for v in volumes {
        let host = Path::new(std::ffi::OsStr::from_bytes(&v.host));
        let guest = Path::new(std::ffi::OsStr::from_bytes(&v.guest));
        if !guest.is_dir() && std::fs::create_dir_all(guest).is_err() {
            bail!(
                "volume {}: {} does not exist in the guest's read-only root; pick an existing folder, or add --overlay",
                host.display(),
                guest.display()
            );
        }
        mount_hostfs(host, guest, !v.writable)?;
        let mode = if v.writable { "rw" } else { "ro" };
        log.step(&format!(
            "volume {} on {} ({mode})",
            host.display(),
            guest.display()
        ));
    }
    Ok(())
}

pub fn set_hostname(name: &[u8]) -> Result<()> {
    if name.is_empty() {
        return Ok(());
    }
    nix::unistd::sethostname(std::ffi::OsStr::from_bytes(name)).context("sethostname")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_folders_hidden_by_a_tmpfs_are_the_ones_the_launcher_knows() {
        // The launcher warns about paths under these (a command or working directory the
        // guest cannot see): the shared list must be exactly the tmpfs rows guest-init mounts.
        let mut rows: Vec<&str> = super::EARLY
            .iter()
            .filter(|r| r.fstype == "tmpfs")
            .map(|r| r.target)
            .collect();
        let mut shared = sekexe_wire::names::GUEST_TMPFS_DIRS.to_vec();
        rows.sort();
        shared.sort();
        assert_eq!(rows, shared);
    }
}
