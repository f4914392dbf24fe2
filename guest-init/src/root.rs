//! Another root for the command: the host's `/` (or `--root DIR`) with a writable overlay on
//! top (`--overlay`, `--overlay-dir`), or `--root DIR` as it is. guest-init itself keeps
//! running from the host root it started in, the way fxe executes a binary across mount
//! namespaces: DIR needs no guest-init of its own.

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rustix::mount::{mount, mount_move, MountFlags};
use sekexe_wire::{Overlay, Request};

use crate::log::Log;
use crate::modules;
use crate::mounts::{self, ensure_dir};
use crate::points;

/// Scratch space for the pieces of the new root, on the early /tmp tmpfs of the old one.
const WORK: &str = "/tmp/.sekexe-root";

/// Whether the request asks for a root other than the host's read-only `/`: another root, an
/// overlay, or mount points for volumes that the read-only root lacks.
pub fn wanted(req: &Request) -> bool {
    req.overlay != Overlay::None || !req.root.is_empty() || !missing_mount_points(req).is_empty()
}

/// The volumes' guest folders that the host's read-only root lacks (outside the folders the
/// guest covers with its own tmpfs, where they can simply be made), as `docker run -v`
/// would create them. Only for the host's own root without an overlay.
pub fn missing_mount_points(req: &Request) -> Vec<PathBuf> {
    if req.overlay != Overlay::None || !req.root.is_empty() {
        return Vec::new();
    }
    req.volumes
        .iter()
        .map(|v| PathBuf::from(OsStr::from_bytes(&v.guest)))
        .filter(|p| sekexe_wire::names::guest_tmpfs_over(p).is_none() && !p.is_dir())
        .collect()
}

/// Builds the new root and makes it the root of guest-init (and so of the command): /proc,
/// /dev and /run (with the exchange folder) move along; the old root is detached.
pub fn switch(req: &Request, log: &mut Log) -> Result<()> {
    let work = Path::new(WORK);
    let overlaid = req.overlay != Overlay::None;
    let lower = if req.root.is_empty() && !overlaid {
        PathBuf::from("/")
    } else {
        // The host's / again, for an overlay: a mount of its own, without the cache.
        let host = if req.root.is_empty() {
            Path::new("/")
        } else {
            Path::new(OsStr::from_bytes(&req.root))
        };
        let lower = work.join("lower");
        let mounted = if overlaid {
            mounts::mount_hostfs_lower(host, &lower)
        } else {
            mounts::mount_hostfs(host, &lower, true)
        };
        mounted.with_context(|| {
            if req.root.is_empty() {
                "the overlay's lower layer (the host's /)".to_string()
            } else {
                format!("--root {}", host.display())
            }
        })?;
        lower
    };
    let missing = missing_mount_points(req);
    let new_root = match &req.overlay {
        Overlay::None if !missing.is_empty() => {
            let top = work.join("points");
            ensure_dir(&top)?;
            mount("tmpfs", &top, "tmpfs", MountFlags::empty(), c"mode=0755")
                .context("mount the tmpfs for the volumes' mount points")?;
            points::populate(Path::new("/"), &top, &missing)?;
            // Read-only like the host's root it stands for.
            rustix::mount::mount_remount(&top, MountFlags::RDONLY, "")
                .context("make the mount points' tmpfs read-only")?;
            log.step(&format!(
                "mount points made for {}",
                missing
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            top
        }
        Overlay::None => lower,
        Overlay::Tmpfs => {
            let upper = work.join("upper");
            ensure_dir(&upper)?;
            mount("tmpfs", &upper, "tmpfs", MountFlags::empty(), c"mode=0755")
                .context("mount the overlay's tmpfs")?;
            overlay(&lower, &upper, work)?
        }
        Overlay::Disk(dev) => {
            let upper = work.join("upper");
            let dev = Path::new("/dev").join(OsStr::from_bytes(dev));
            ensure_dir(&upper)?;
            mount(&dev, &upper, "ext4", MountFlags::empty(), c"")
                .with_context(|| format!("mount the --overlay-dir image ({})", dev.display()))?;
            overlay(&lower, &upper, work)?
        }
    };
    log.step(&format!("new root assembled at {}", new_root.display()));
    for dir in ["proc", "dev", "run"] {
        let target = new_root.join(dir);
        ensure_dir(&target).with_context(|| {
            format!("the new root has no /{dir}, and it is read-only (add --overlay, or create {dir}/ in it)")
        })?;
        mount_move(Path::new("/").join(dir), &target).with_context(|| format!("move /{dir}"))?;
    }
    // pivot_root(".", "."): the new root on top, the old one detached beneath it.
    rustix::process::chdir(&new_root).context("chdir to the new root")?;
    rustix::process::pivot_root(".", ".").context("pivot_root")?;
    rustix::mount::unmount(".", rustix::mount::UnmountFlags::DETACH)
        .context("detach the old root")?;
    rustix::process::chdir("/").context("chdir /")?;
    log.step("switched to the new root");
    Ok(())
}

/// Mounts an overlay of `upper/data` over `lower` at `work/merged`.
fn overlay(lower: &Path, upper: &Path, work: &Path) -> Result<PathBuf> {
    modules::ensure_filesystem("overlay")?;
    let (data, scratch, merged) = (upper.join("data"), upper.join("work"), work.join("merged"));
    for d in [&data, &scratch, &merged] {
        ensure_dir(d)?;
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        escape(lower),
        escape(&data),
        escape(&scratch)
    );
    let options = CString::new(options).context("NUL in a path")?;
    mount(
        "overlay",
        &merged,
        "overlay",
        MountFlags::empty(),
        options.as_c_str(),
    )
    .context("mount the overlay (CONFIG_OVERLAY_FS missing?)")?;
    Ok(merged)
}

/// Overlay options separate with ',' and ':' and escape with '\\'.
fn escape(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        if matches!(c, ',' | ':' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_options_are_escaped() {
        assert_eq!(escape(Path::new("/a,b:c\\d")), "/a\\,b\\:c\\\\d");
    }
}
