//! Kernel modules. Debian's UML kernel keeps them in /usr/lib/uml/modules/<release>; modprobe
//! looks in /lib/modules/<release>, on the read-only host root. guest-init shows the former at
//! the latter, so `modprobe loop` and the kernel's own module requests just work.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rustix::mount::{mount, mount_bind, MountFlags};

use crate::log::Log;
use crate::mounts::ensure_dir;

fn release() -> Option<String> {
    let u = rustix::system::uname();
    u.release().to_str().ok().map(str::to_string)
}

/// The kernel's own module folder, if it ships one.
fn shipped() -> Option<PathBuf> {
    let dir = Path::new(sekexe_wire::names::UML_MODULES_DIR).join(release()?);
    dir.is_dir().then_some(dir)
}

pub fn setup(log: &mut Log) -> Result<()> {
    let (Some(src), Some(rel)) = (shipped(), release()) else {
        return Ok(());
    };
    let modules = Path::new("/lib/modules");
    let target = modules.join(&rel);
    if target.is_dir() {
        return Ok(());
    }
    if modules.is_dir() {
        // The host's own modules are no use to this kernel: cover them.
        mount(
            "tmpfs",
            modules,
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            c"mode=0755",
        )
        .context("mount tmpfs on /lib/modules")?;
    } else if std::fs::create_dir_all(&target).is_err() {
        // No /lib/modules and a read-only root: a thin overlay on /usr/lib makes room.
        usr_lib_overlay()?;
    }
    ensure_dir(&target)?;
    mount_bind(&src, &target)
        .with_context(|| format!("bind {} on {}", src.display(), target.display()))?;
    let nodes = static_nodes(&target.join("modules.devname"));
    log.step(&format!(
        "modules of {rel} at {}; {nodes} static device nodes",
        target.display()
    ));
    Ok(())
}

/// Creates the device nodes of modules that are not loaded yet (as `kmod static-nodes` and
/// udev do): opening /dev/loop-control then loads the loop module on demand.
fn static_nodes(devname: &Path) -> usize {
    let Ok(text) = std::fs::read_to_string(devname) else {
        return 0;
    };
    parse_devname(&text)
        .into_iter()
        .filter(|n| {
            let path = Path::new("/dev").join(&n.name);
            if path.exists() {
                return false;
            }
            if let Some(parent) = path.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let kind = if n.block {
                rustix::fs::FileType::BlockDevice
            } else {
                rustix::fs::FileType::CharacterDevice
            };
            let dev = rustix::fs::makedev(n.major, n.minor);
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &path,
                kind,
                rustix::fs::Mode::from_raw_mode(0o660),
                dev,
            )
            .is_ok()
        })
        .count()
}

#[derive(Debug, PartialEq)]
struct Node {
    name: String,
    block: bool,
    major: u32,
    minor: u32,
}

/// modules.devname lines: `module devname c|bMAJOR:MINOR`.
fn parse_devname(text: &str) -> Vec<Node> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let [_, name, spec] = f.as_slice() else {
                return None;
            };
            let (kind, numbers) = spec.split_at(1);
            let (major, minor) = numbers.split_once(':')?;
            if name.contains("..") || name.starts_with('/') {
                return None;
            }
            Some(Node {
                name: name.to_string(),
                block: kind == "b",
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
            })
        })
        .collect()
}

fn usr_lib_overlay() -> Result<()> {
    ensure_filesystem("overlay")?;
    let scratch = Path::new("/run/.sekexe-usrlib");
    ensure_dir(scratch)?;
    mount("tmpfs", scratch, "tmpfs", MountFlags::empty(), c"mode=0755")?;
    for d in ["data", "work"] {
        ensure_dir(&scratch.join(d))?;
    }
    mount(
        "overlay",
        "/usr/lib",
        "overlay",
        MountFlags::empty(),
        c"lowerdir=/usr/lib,upperdir=/run/.sekexe-usrlib/data,workdir=/run/.sekexe-usrlib/work",
    )
    .context("overlay /usr/lib to make room for /lib/modules")
}

/// Makes sure the kernel knows file system `name`, loading its module if it is one.
pub fn ensure_filesystem(name: &str) -> Result<()> {
    let known = |n: &str| {
        std::fs::read_to_string("/proc/filesystems")
            .map(|t| t.lines().any(|l| l.split_whitespace().last() == Some(n)))
            .unwrap_or(false)
    };
    if known(name) {
        return Ok(());
    }
    let Some(src) = shipped() else {
        bail!(
            "the kernel has no {name} file system (CONFIG_{}=y missing?)",
            name.to_uppercase()
        );
    };
    let ko = src.join(format!("kernel/fs/{name}fs/{name}.ko"));
    let ko = if ko.exists() {
        ko
    } else {
        src.join(format!("kernel/fs/{name}/{name}.ko"))
    };
    load(&ko)?;
    if !known(name) {
        bail!(
            "loaded {} but the kernel still has no {name} file system",
            ko.display()
        );
    }
    Ok(())
}

/// finit_module: loads a module file without modprobe (which needs /lib/modules).
fn load(ko: &Path) -> Result<()> {
    let f = std::fs::File::open(ko).with_context(|| format!("open {}", ko.display()))?;
    match rustix::system::finit_module(&f, c"", 0) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("load {}", ko.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devname_lines() {
        let text = "# Device nodes to trigger on-demand module loading.\n\
                    loop loop-control c10:237\nfuse fuse c10:229\nbtrfs btrfs-control c10:234\n\
                    tun net/tun c10:200\nbad ../escape c1:1\nnot a line\n";
        let nodes = parse_devname(text);
        assert_eq!(nodes.len(), 4);
        assert_eq!(
            nodes[0],
            Node {
                name: "loop-control".into(),
                block: false,
                major: 10,
                minor: 237
            }
        );
        assert_eq!(nodes[3].name, "net/tun");
    }
}
