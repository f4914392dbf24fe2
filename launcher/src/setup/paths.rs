//! Where sekexe finds its parts on the host: guest-init, the cache, the project's kernel.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::units;
use anyhow::{bail, Result};

/// The name of the guest-init binary.
pub const INIT_NAME: &str = "sekexe-init";

/// `$XDG_CACHE_HOME/sekexe`, else `~/.cache/sekexe`; `None` without a usable home.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SEKEXE_CACHE").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(xdg).join("sekexe"));
    }
    let home = std::env::var_os("HOME").filter(|d| !d.is_empty())?;
    Some(PathBuf::from(home).join(".cache").join("sekexe"))
}

/// Where kernel logs of failed runs are kept: `$XDG_STATE_HOME/sekexe/logs`, else
/// `~/.local/state/sekexe/logs`, else the cache folder's `logs` (on disk, not in the memory
/// that /dev/shm is); `None` without a home or either variable.
pub fn log_dir() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|d| !d.is_empty());
    if let Some(state) = var("XDG_STATE_HOME") {
        return Some(PathBuf::from(state).join("sekexe").join("logs"));
    }
    if let Some(home) = var("HOME") {
        return Some(PathBuf::from(home).join(".local/state/sekexe/logs"));
    }
    Some(cache_dir()?.join("logs"))
}

/// A program on the host: `PATH` first, then the system folders an unprivileged user's PATH
/// often lacks (mkfs.ext4 and modprobe live in sbin). Only executable regular files count.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let system = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(system)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The project's kernel as scripts/build-kernel leaves it.
pub fn project_kernel() -> Option<PathBuf> {
    Some(cache_dir()?.join("kernels").join("linux"))
}

/// The cache of kernels built for every user (`sekexe kernel build --system`, and
/// scripts/build-kernel as root, where scripts/test and scripts/bench build).
pub const SYSTEM_CACHE: &str = "/var/cache/sekexe";

/// The project's kernel in the system cache, laid out as in the user's.
pub fn system_kernel() -> PathBuf {
    Path::new(SYSTEM_CACHE).join("kernels").join("linux")
}

/// guest-init: `$SEKEXE_INIT` as given (tests boot other inits with it), else the first
/// static one next to the sekexe binary, in an installed `lib/sekexe`, or where cargo builds
/// it for the musl target.
pub fn guest_init() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("SEKEXE_INIT").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("SEKEXE_INIT={}: no such file", units::shown(&p));
        }
        return Ok(absolute(&p));
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    let mut candidates = vec![
        dir.join(INIT_NAME),
        dir.join("../lib/sekexe").join(INIT_NAME),
    ];
    // target/<profile>/sekexe → target/x86_64-unknown-linux-musl/<profile>/sekexe-init;
    // tests run from target/<profile>/deps.
    for base in [dir, dir.parent().unwrap_or(dir)] {
        if let (Some(profile), Some(target)) = (base.file_name(), base.parent()) {
            candidates.push(
                target
                    .join("x86_64-unknown-linux-musl")
                    .join(profile)
                    .join(INIT_NAME),
            );
        }
    }
    // A plain `cargo build` leaves a glibc sekexe-init beside sekexe: it would be found
    // first, and with --root it dies as PID 1 for want of its libraries. Skip it for the
    // static one; refuse when there is none.
    let mut dynamic = None;
    for c in &candidates {
        if c.is_file() {
            if is_static(c).unwrap_or(false) {
                return Ok(std::fs::canonicalize(c).unwrap_or_else(|_| c.clone()));
            }
            dynamic.get_or_insert(c);
        }
    }
    if let Some(d) = dynamic {
        bail!(
            "guest-init {} is not a static binary: build it for musl ('cargo build --release \
             -p sekexe-init --target x86_64-unknown-linux-musl', which scripts/build does), or \
             set SEKEXE_INIT",
            units::shown(d)
        );
    }
    bail!(
        "guest-init ({INIT_NAME}) not found next to {}: build it with \
         'cargo build --release -p sekexe-init --target x86_64-unknown-linux-musl' \
         (scripts/sekexe does it for you), or set SEKEXE_INIT",
        units::shown(&exe)
    )
}

/// A static executable has no PT_INTERP program header.
pub fn is_static(path: &Path) -> std::io::Result<bool> {
    let mut head = Vec::new();
    std::fs::File::open(path)?
        .take(64 * 1024)
        .read_to_end(&mut head)?;
    let bad = || std::io::Error::other("not a 64-bit little-endian ELF file");
    if head.len() < 64 || &head[..4] != b"\x7fELF" || head[4] != 2 || head[5] != 1 {
        return Err(bad());
    }
    let u16_at = |o: usize| u16::from_le_bytes([head[o], head[o + 1]]) as usize;
    let phoff =
        usize::try_from(u64::from_le_bytes(head[32..40].try_into().unwrap())).map_err(|_| bad())?;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    for i in 0..phnum {
        let at = i
            .checked_mul(phentsize)
            .and_then(|o| o.checked_add(phoff))
            .ok_or_else(bad)?;
        let p_type = head.get(at..at.saturating_add(4)).ok_or_else(bad)?;
        if u32::from_le_bytes(p_type.try_into().unwrap()) == 3 {
            return Ok(false); // PT_INTERP
        }
    }
    Ok(true)
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    #[test]
    fn programs_are_found_on_path_and_in_the_system_folders() {
        assert!(super::find_program("sh").is_some());
        assert!(super::find_program("no-such-program-sekexe").is_none());
        // Not a program: a folder of that name does not count.
        assert!(super::find_program("..").is_none());
    }
}
