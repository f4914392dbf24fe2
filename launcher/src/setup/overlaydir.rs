//! `--overlay-dir DIR`: the guest's changes to its root live in DIR/overlay.img, an ext4 image
//! attached as a block device, so they survive to the next run with the same DIR. (hostfs
//! cannot be an overlay's upper layer: it has no xattrs and overlayfs cannot make its work
//! folder there.) One run at a time per DIR: two kernels writing one ext4 image would wreck it.

use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use rustix::fs::FlockOperation;

use crate::units;

const IMAGE: &str = "overlay.img";
const LOCK: &str = "overlay.lock";
/// The image is sparse: it takes only what the guest writes, up to this.
const IMAGE_SIZE: u64 = 16 << 30;

pub struct OverlayDir {
    pub image: PathBuf,
    _lock: File,
}

impl OverlayDir {
    pub fn prepare(dir: &Path) -> Result<OverlayDir> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--overlay-dir {}: cannot create it", units::shown(dir)))?;
        // The guest writes the image's contents; with --no-sandbox an earlier guest could also
        // have replaced the lock or the image with a link: neither is followed.
        let lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(dir.join(LOCK))
            .with_context(|| {
                format!(
                    "--overlay-dir {}: cannot open its {LOCK} (not writable, or a link)",
                    units::shown(dir)
                )
            })?;
        if !lock.metadata()?.is_file() {
            bail!(
                "--overlay-dir {}: {LOCK} is not a regular file: remove it",
                units::shown(dir)
            );
        }
        if rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive).is_err() {
            bail!(
                "--overlay-dir {} is in use by another sekexe run: wait for it, or use another folder",
                units::shown(dir)
            );
        }
        let image = dir.join(IMAGE);
        match std::fs::symlink_metadata(&image) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_image(&image)?,
            Err(e) => return Err(e).with_context(|| format!("stat {}", units::shown(&image))),
            Ok(m) if m.is_file() && m.uid() == rustix::process::geteuid().as_raw() => {}
            Ok(_) => bail!(
                "--overlay-dir: {} is not a regular file of yours (a link?): remove it, or use another folder",
                units::shown(&image)
            ),
        }
        Ok(OverlayDir { image, _lock: lock })
    }
}

fn create_image(image: &Path) -> Result<()> {
    let tmp = image.with_extension("img.new");
    // A leftover of an interrupted run (or anything planted there) goes; the new one is ours.
    let _ = std::fs::remove_file(&tmp);
    let f = File::options()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .with_context(|| format!("create {}", units::shown(&tmp)))?;
    f.set_len(IMAGE_SIZE)
        .with_context(|| format!("size {}", units::shown(&tmp)))?;
    drop(f);
    let mkfs = crate::paths::find_program("mkfs.ext4").unwrap_or_else(|| "mkfs.ext4".into());
    // root_owner: the root folder of the overlay belongs to the guest's root, whoever runs this.
    let out = Command::new(mkfs)
        .args(["-q", "-F", "-L", "sekexe-overlay", "-E", "root_owner=0:0"])
        .arg(&tmp)
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            let _ = std::fs::remove_file(&tmp);
            bail!(
                "mkfs.ext4 failed on {}: {}",
                units::shown(&tmp),
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            bail!("--overlay-dir needs mkfs.ext4 ({e}): apt install e2fsprogs");
        }
    }
    std::fs::rename(&tmp, image).with_context(|| format!("rename {}", units::shown(&tmp)))
}
