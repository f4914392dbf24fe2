//! Mount points for volumes the host's read-only root lacks (`-v DIR:/data` where the host has
//! no /data), as `docker run -v` makes them, without writing to the host and without an
//! overlay (which would cost the hostfs cache): a tmpfs that mirrors each folder on the way to
//! the missing one, every other entry being a bind mount of the host's own (same hostfs, same
//! cache), a link copied, or a mount of guest-init's own left for it to move in. The missing
//! folders are then made in the tmpfs, and root.rs makes it the root.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rustix::mount::{mount_bind, mount_remount, MountFlags};

use crate::mounts;

/// Mirrors host folder `src` into the tmpfs folder `dst`: entries on the way to one of
/// `missing` (absolute paths) are mirrored in turn; the rest are bound read-only.
pub fn populate(src: &Path, dst: &Path, missing: &[PathBuf]) -> Result<()> {
    let here = fs::metadata(src).with_context(|| format!("stat {}", src.display()))?;
    copy_owner_and_mode(&here, dst)?;
    let entries = fs::read_dir(src).with_context(|| format!("list {}", src.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("list {}", src.display()))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        // An entry the host removes meanwhile is simply not mirrored.
        let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
        let meta = match fs::symlink_metadata(&from) {
            Ok(m) => m,
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(e).with_context(|| format!("stat {}", from.display())),
        };
        let on_the_way: Vec<PathBuf> = missing
            .iter()
            .filter(|m| m.starts_with(&from))
            .cloned()
            .collect();
        let kind = meta.file_type();
        if kind.is_symlink() {
            let target = match fs::read_link(&from) {
                Ok(t) => t,
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(e).with_context(|| format!("readlink {}", from.display())),
            };
            std::os::unix::fs::symlink(target, &to)
                .with_context(|| format!("link {}", to.display()))?;
        } else if kind.is_dir()
            && (meta.dev() != here.dev() || mounts::is_guest_mount_target(&from))
        {
            // A mount of guest-init's own (/proc, /dev, /run, /tmp, /sys...): moved or made
            // anew later, never the host's folder.
            fs::DirBuilder::new().mode(0o755).create(&to)?;
        } else if kind.is_dir() && !on_the_way.is_empty() {
            fs::DirBuilder::new().mode(0o755).create(&to)?;
            populate(&from, &to, &on_the_way)?;
        } else {
            if kind.is_dir() {
                fs::DirBuilder::new().mode(0o755).create(&to)?;
            } else {
                fs::File::create(&to).with_context(|| format!("create {}", to.display()))?;
            }
            if let Err(e) = bind_read_only(&from, &to) {
                if from.symlink_metadata().is_ok() {
                    return Err(e);
                }
                // Gone meanwhile: no placeholder either.
                let _ = fs::remove_dir(&to).or_else(|_| fs::remove_file(&to));
            }
        }
    }
    // The missing folders that start here.
    for m in missing {
        if let Ok(rest) = m.strip_prefix(src) {
            let first = rest.components().next();
            if first.is_some_and(|c| !src.join(c).exists()) {
                fs::create_dir_all(dst.join(rest))
                    .with_context(|| format!("make the mount point {}", m.display()))?;
            }
        }
    }
    Ok(())
}

fn copy_owner_and_mode(meta: &fs::Metadata, dst: &Path) -> Result<()> {
    std::os::unix::fs::chown(dst, Some(meta.uid()), Some(meta.gid()))
        .with_context(|| format!("chown {}", dst.display()))?;
    fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))
        .with_context(|| format!("chmod {}", dst.display()))
}

fn bind_read_only(from: &Path, to: &Path) -> Result<()> {
    mount_bind(from, to).with_context(|| format!("bind {} to {}", from.display(), to.display()))?;
    // A bind takes the flags anew: keep the host's files read-only.
    mount_remount(to, MountFlags::BIND | MountFlags::RDONLY, "")
        .with_context(|| format!("make {} read-only", to.display()))
}
