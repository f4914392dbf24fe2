//! Finding the UML kernel and learning what it can do.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::units;
use anyhow::{anyhow, bail, Context, Result};

use crate::kconfig::Kconfig;
use crate::paths;

/// How a kernel was chosen, for `sekexe kernel list` and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Option,
    Env,
    Project,
    System,
    Path,
}

impl Source {
    pub fn describe(self) -> &'static str {
        match self {
            Source::Option => "given on the command line",
            Source::Env => "$SEKEXE_KERNEL",
            Source::Project => "the project's kernel in your cache (sekexe kernel build)",
            Source::System => "the project's kernel built for every user (in the system cache)",
            Source::Path => "found on PATH",
        }
    }
}

pub struct Kernel {
    pub path: PathBuf,
    pub source: Source,
    pub config: Kconfig,
}

pub const NOT_FOUND_HINT: &str = "install Debian's user-mode-linux package \
(apt install user-mode-linux), build the project's kernel with 'sekexe kernel build', \
or pass --kernel PATH";

/// Every kernel sekexe would consider, in order of preference; the first is the default.
pub fn candidates(explicit: Option<&Path>) -> Vec<(PathBuf, Source)> {
    let mut found = Vec::new();
    if let Some(p) = explicit {
        found.push((p.to_path_buf(), Source::Option));
        return found;
    }
    if let Some(p) = std::env::var_os("SEKEXE_KERNEL").filter(|p| !p.is_empty()) {
        found.push((PathBuf::from(p), Source::Env));
        return found;
    }
    if let Some(p) = paths::project_kernel().filter(|p| p.is_file()) {
        found.push((p, Source::Project));
    }
    let system = paths::system_kernel();
    if system.is_file()
        && only_root_or_we_can_change(&system)
        && !found.iter().any(|(f, _)| same_file(f, &system))
    {
        found.push((system, Source::System));
    }
    for name in ["linux.uml", "linux"] {
        if let Some(p) = which(name) {
            if !found.iter().any(|(f, _)| same_file(f, &p)) {
                found.push((p, Source::Path));
            }
        }
    }
    found
}

/// Whether only root or this user can have put the kernel at `path` there: the file (after
/// links) and every folder above it belong to one of them and are writable by no one else.
/// A kernel another user could replace is not booted by default.
fn only_root_or_we_can_change(path: &Path) -> bool {
    let me = rustix::process::geteuid().as_raw();
    let Ok(real) = std::fs::canonicalize(path) else {
        return false;
    };
    real.ancestors()
        .all(|p| std::fs::metadata(p).is_ok_and(|m| safe_owner_and_mode(m.uid(), m.mode(), me)))
}

/// Owned by root or `me`, and not writable by group or others.
fn safe_owner_and_mode(uid: u32, mode: u32, me: u32) -> bool {
    (uid == 0 || uid == me) && mode & 0o022 == 0
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn which(name: &str) -> Option<PathBuf> {
    paths::find_program(name)
}

/// Finds the kernel to boot and checks that it is a UML kernel with what sekexe requires.
pub fn select(explicit: Option<&Path>) -> Result<Kernel> {
    let (path, source) = candidates(explicit)
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no UML kernel found: {NOT_FOUND_HINT}"))?;
    // The kernel process starts in its scratch area: a relative path must not depend on that.
    let path = std::path::absolute(&path).unwrap_or(path);
    let config =
        load_config(&path).with_context(|| format!("the kernel ({})", source.describe()))?;
    let missing = config.missing_required();
    if !missing.is_empty() {
        let list: Vec<String> = missing
            .iter()
            .map(|f| {
                format!(
                    "{} (CONFIG_{}: {})",
                    f.name,
                    f.options.join(", CONFIG_"),
                    f.breaks
                )
            })
            .collect();
        bail!(
            "kernel {} lacks what sekexe requires: {}; build the project's kernel with 'sekexe kernel build'",
            units::shown(&path),
            list.join("; ")
        );
    }
    Ok(Kernel {
        path,
        source,
        config,
    })
}

/// Reads a kernel's configuration, from the cache when this very file was read before.
pub fn load_config(path: &Path) -> Result<Kconfig> {
    let meta = std::fs::metadata(path)
        .map_err(|e| anyhow!("{}: {e} ({NOT_FOUND_HINT})", units::shown(path)))?;
    if meta.is_dir() {
        bail!(
            "{} is a directory, not a UML kernel (pass the kernel binary to --kernel)",
            units::shown(path)
        );
    }
    if meta.permissions().mode() & 0o111 == 0 {
        bail!(
            "{} is not executable: a UML kernel is a program (chmod +x it)",
            units::shown(path)
        );
    }
    let mut magic = Vec::with_capacity(4);
    std::fs::File::open(path)
        .and_then(|f| f.take(4).read_to_end(&mut magic))
        .with_context(|| format!("read {}", units::shown(path)))?;
    let elf = magic == b"\x7fELF";
    if !elf {
        bail!(
            "{} is not a UML kernel (not an ELF executable)",
            units::shown(path)
        );
    }

    let cache = cache_file(path, &meta);
    let cached = cache
        .as_deref()
        .and_then(|c| crate::safefile::read_small(c, MAX_SHOWCONFIG as u64))
        .and_then(|b| String::from_utf8(b).ok());
    if let Some(text) = cached {
        return Ok(Kconfig::parse(&text));
    }
    let mut text = probe(path, "--showconfig")?;
    if !Kconfig::parse(&text).is_uml() {
        bail!(
            "{} is not a User Mode Linux kernel (its --showconfig has no CONFIG_UML=y)",
            units::shown(path)
        );
    }
    // Boot parameters are not options: `--help` lists those this kernel takes. Not knowing
    // them would cache the kernel as one without seccomp userspace: fail instead.
    let help = probe(path, "--help")?;
    text.push_str(&crate::kconfig::param_lines(&help));
    let config = Kconfig::parse(&text);
    if let Some(cache) = cache {
        // A cache that cannot be written only costs the next run 20 ms.
        let _ = crate::safefile::write_atomic(&cache, text.as_bytes());
    }
    Ok(config)
}

/// A cache entry is keyed by the file's identity and modification time, so a rebuilt kernel
/// at the same path is read again.
fn cache_file(path: &Path, meta: &std::fs::Metadata) -> Option<PathBuf> {
    let path = std::fs::canonicalize(path).ok()?;
    let identity = [
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime() as u64,
        meta.mtime_nsec() as u64,
    ]
    .map(u64::to_le_bytes);
    // The format's version first: entries of older sekexe versions lack the boot parameters.
    let mut parts: Vec<&[u8]> = vec![b"v2", path.as_os_str().as_encoded_bytes()];
    parts.extend(identity.iter().map(|b| &b[..]));
    Some(
        paths::cache_dir()?
            .join("kconfig")
            .join(format!("{:016x}", crate::cachekey::key(&parts))),
    )
}

/// The most `--showconfig` may print (a real one is about 100 KiB).
const MAX_SHOWCONFIG: usize = 4 << 20;

/// Runs `KERNEL ARG` (`--showconfig`, `--help`), bounded in time and size: whatever file the
/// user named, this cannot hang or fill memory.
fn probe(path: &Path, arg: &str) -> Result<String> {
    let mut child = Command::new(path)
        .arg(arg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env_clear()
        .spawn()
        .with_context(|| {
            format!(
                "{} is not a UML kernel: it cannot be executed",
                units::shown(path)
            )
        })?;
    let mut stdout = child.stdout.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut text = Vec::new();
    let mut buf = [0u8; 65536];
    let result = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut fds = [rustix::event::PollFd::new(
            &stdout,
            rustix::event::PollFlags::IN,
        )];
        // A timeout too large for a timespec waits for ever.
        let ts = rustix::event::Timespec::try_from(left).ok();
        match rustix::event::poll(&mut fds, ts.as_ref()) {
            Ok(0) => {
                break Err(anyhow!(
                    "{} {arg} did not finish in 5 s: not a UML kernel?",
                    units::shown(path)
                ))
            }
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => break Err(e.into()),
        }
        match stdout.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) if text.len() + n > MAX_SHOWCONFIG => {
                break Err(anyhow!(
                    "{} {arg} printed over 4 MiB: not a UML kernel",
                    units::shown(path)
                ))
            }
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e.into()),
        }
    };
    if result.is_err() {
        let _ = child.kill();
    }
    let _ = child.wait();
    result?;
    Ok(String::from_utf8_lossy(&text).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_only_root_or_we_can_change_is_trusted() {
        assert!(safe_owner_and_mode(0, 0o40755, 1000));
        assert!(safe_owner_and_mode(1000, 0o100700, 1000));
        assert!(!safe_owner_and_mode(1001, 0o40755, 1000), "another user's");
        assert!(
            !safe_owner_and_mode(0, 0o41777, 1000),
            "a folder anyone writes to"
        );
        assert!(!safe_owner_and_mode(0, 0o100775, 1000), "group-writable");
    }
}
