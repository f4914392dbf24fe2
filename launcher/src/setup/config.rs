//! Turns the command-line options and the caller's environment into a validated run
//! configuration. Everything a user can get wrong is caught here, with a message naming the
//! fix, before anything is created on the host.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::cli::RunArgs;
use crate::net::{self, NetConfig};
use crate::units;
use sekexe_wire::names::guest_tmpfs_over;
use sekexe_wire::Cgroups;

/// `--mem` when not given (the CLI's default text says the same).
pub const DEFAULT_MEM: u64 = 256 << 20;
/// `--fs-cache` when not given: as long as virtiofs (cache=auto) trusts attributes;
/// opens check the host whatever it is.
pub const DEFAULT_FS_CACHE: Duration = Duration::from_secs(1);

/// The guest needs at least this much memory to boot (Debian's 6.1 kernel sometimes fails
/// to allocate its memory map at 32-36M; nothing below 40M is reliable).
pub const MIN_MEM: u64 = 64 << 20;

/// `--mem`: a size the guest can boot with (clap calls this).
pub fn parse_mem(text: &str) -> Result<u64, String> {
    let mem = units::parse_size(text)?;
    if mem < MIN_MEM {
        return Err(format!(
            "too small, the guest needs at least {}M to boot",
            MIN_MEM >> 20
        ));
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    if let Some(total) = mem_total(&meminfo).filter(|&t| mem > t) {
        // The guest kernel's page map alone takes 1/64 of --mem, touched at boot.
        return Err(format!(
            "more than this host's {}M of memory: give at most that",
            units::to_mib(total)
        ));
    }
    Ok(mem)
}

/// MemTotal from /proc/meminfo text, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    kib.checked_mul(1024)
}
pub use sekexe_wire::names::DEFAULT_PATH;

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub argv: Vec<Vec<u8>>,
    pub env: Vec<Vec<u8>>,
    pub cwd: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub tty: bool,
    pub mem: u64,
    pub kernel: Option<PathBuf>,
    pub userspace: crate::userspace::UserspaceArg,
    pub cpus: u32,
    /// `--fs-cache`, and whether the user gave it.
    pub fs_cache: Duration,
    pub fs_cache_given: bool,
    /// Keep a one-CPU guest's kernel on one host CPU (not `--no-pin`).
    pub pin: bool,
    pub keep: bool,
    pub debug: bool,
    pub hostname: String,
    pub timeout: Option<Timeout>,
    pub kernel_args: Vec<String>,
    pub full_boot: bool,
    pub debug_shell: bool,
    pub sandbox: bool,
    pub cgroups: Cgroups,
    pub overlay: OverlayChoice,
    pub root: Option<PathBuf>,
    pub volumes: Vec<VolumeSpec>,
    pub disks: Vec<DiskSpec>,
    pub net: NetConfig,
}

/// `--overlay` or `--overlay-dir`.
#[derive(Debug, Clone, PartialEq)]
pub enum OverlayChoice {
    None,
    Tmpfs,
    Dir(PathBuf),
}

/// One `-v HOST[:GUEST][:ro|rw]`.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeSpec {
    pub host: PathBuf,
    pub guest: PathBuf,
    pub writable: bool,
}

/// One `--disk FILE[:ro]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskSpec {
    pub path: PathBuf,
    pub writable: bool,
}

/// Checks `--kernel-arg` values: single words, and none of the parameters sekexe relies on.
pub fn check_kernel_args(args: &[String]) -> Result<()> {
    for arg in args {
        if arg.is_empty()
            || arg
                .chars()
                .any(|c| c.is_whitespace() || c == '"' || c.is_control())
        {
            bail!("--kernel-arg {arg:?}: one word without spaces or quotes per --kernel-arg");
        }
        let key = arg.split('=').next().unwrap();
        if let Some((_, instead)) = crate::cmdline::OWN_PARAMS.iter().find(|(k, _)| *k == key) {
            bail!("--kernel-arg {arg}: sekexe sets {key}= itself; use {instead}");
        }
    }
    Ok(())
}

/// `--timeout` and `--kill-after`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeout {
    pub after: Duration,
    pub kill_after: Duration,
}

/// What the configuration depends on in the caller's process, gathered once so the logic
/// below can be tested with any values.
pub struct Caller {
    pub vars: Vec<(OsString, OsString)>,
    pub cwd: std::io::Result<PathBuf>,
    pub stdin_is_tty: bool,
}

impl Caller {
    pub fn current() -> Caller {
        Caller {
            vars: std::env::vars_os().collect(),
            cwd: std::env::current_dir(),
            stdin_is_tty: rustix::termios::isatty(std::io::stdin()),
        }
    }

    fn var(&self, key: &str) -> Option<&OsStr> {
        self.vars
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_os_str())
    }
}

impl RunConfig {
    pub fn from_args(args: RunArgs, caller: &Caller) -> Result<RunConfig> {
        let mem = args.guest.mem;
        let (argv, shell_mode) = argv(&args, caller)?;
        let (uid, gid) = match &args.cmd.user {
            Some(spec) => parse_user(spec)?,
            None => (0, 0),
        };
        let root = match &args.guest.root {
            Some(dir) => Some(existing_dir(dir, caller, "--root")?),
            None => None,
        };
        let volumes = args
            .guest
            .volumes
            .iter()
            .map(|v| parse_volume(v, caller))
            .collect::<Result<Vec<_>>>()?;
        let cwd = match &root {
            Some(root) => workdir_in_root(args.cmd.workdir.as_deref(), root)?,
            None => workdir(args.cmd.workdir.as_deref(), caller, &volumes)?,
        };
        // In the host's root guest-init makes the mount points a volume needs, mirroring the
        // folders on the way; another root stays as it is.
        let overlaid = args.guest.overlay || args.guest.overlay_dir.is_some();
        for v in &volumes {
            match (&root, overlaid) {
                (Some(root), false) => check_mount_point(&v.guest, root)?,
                (None, false) => check_mirrorable(&v.guest)?,
                _ => {}
            }
        }
        let disks = args
            .guest
            .disks
            .iter()
            .map(|d| parse_disk(d, caller))
            .collect::<Result<Vec<_>>>()?;
        let overlay = match (&args.guest.overlay_dir, args.guest.overlay) {
            (Some(dir), _) => OverlayChoice::Dir(absolute(dir, caller)?),
            (None, true) => OverlayChoice::Tmpfs,
            (None, false) => OverlayChoice::None,
        };
        check_hostname(&args.guest.hostname)?;
        let net = network(&args)?;
        let tty = args.cmd.tty || (shell_mode && caller.stdin_is_tty);
        let env = environment(&args.cmd.env, args.cmd.clear_env, tty, caller)?;
        let timeout = args.cmd.timeout.map(|after| Timeout {
            after,
            kill_after: args.cmd.kill_after,
        });
        check_kernel_args(&args.guest.kernel_args)?;
        Ok(RunConfig {
            argv,
            env,
            cwd,
            uid,
            gid,
            tty,
            mem,
            kernel: args.guest.kernel,
            userspace: args.guest.userspace,
            cpus: args.guest.cpus,
            fs_cache: args.guest.fs_cache.unwrap_or(DEFAULT_FS_CACHE),
            fs_cache_given: args.guest.fs_cache.is_some(),
            pin: !args.guest.no_pin,
            keep: args.keep,
            debug: args.cmd.debug,
            hostname: args.guest.hostname.clone(),
            timeout,
            kernel_args: args.guest.kernel_args,
            full_boot: args.guest.full_boot,
            debug_shell: args.debug_shell,
            sandbox: !args.guest.no_sandbox,
            cgroups: match args.guest.cgroup {
                crate::cli::CgroupArg::V2 => Cgroups::V2,
                crate::cli::CgroupArg::V1 => Cgroups::V1,
                crate::cli::CgroupArg::None => Cgroups::None,
            },
            overlay,
            root,
            volumes,
            disks,
            net,
        })
    }
}

/// The command's argv, and whether this is shell mode (no command given).
fn argv(args: &RunArgs, caller: &Caller) -> Result<(Vec<Vec<u8>>, bool)> {
    let rest = args.command.iter().map(|a| a.as_bytes().to_vec());
    if let Some(script) = &args.cmd.shell_string {
        let mut argv = vec![
            b"/bin/sh".to_vec(),
            b"-c".to_vec(),
            script.as_bytes().to_vec(),
        ];
        argv.extend(rest);
        return Ok((argv, false));
    }
    if !args.command.is_empty() {
        if args.command[0].is_empty() {
            bail!("the command name is empty: give a command after --");
        }
        return Ok((rest.collect(), false));
    }
    // Shell mode: the caller's shell if the guest has it (the guest's root is the host's),
    // else /bin/sh.
    let shell = caller
        .var("SHELL")
        .filter(|s| Path::new(s).is_absolute() && Path::new(s).is_file())
        .map(|s| s.as_bytes().to_vec())
        .unwrap_or_else(|| b"/bin/sh".to_vec());
    Ok((vec![shell], true))
}

fn network(args: &RunArgs) -> Result<NetConfig> {
    let static_ip = args.guest.ip.map(|(address, prefix)| net::Static {
        address,
        prefix,
        gateway: args.guest.gateway,
        dns: args.guest.dns.clone(),
    });
    let cfg = NetConfig {
        mode: args.guest.net.clone(),
        forwards: args.guest.publish.clone(),
        restrict: args.guest.net_restrict,
        static_ip,
    };
    net::check(&cfg)?;
    Ok(cfg)
}

fn absolute(path: &Path, caller: &Caller) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    let here = caller.cwd.as_ref().map_err(|e| {
        anyhow!(
            "cannot read the current directory ({e}) to resolve {}",
            units::shown(path)
        )
    })?;
    Ok(here.join(path))
}

/// An existing host folder, absolute and without symlinks.
fn existing_dir(path: &Path, caller: &Caller, option: &str) -> Result<PathBuf> {
    let full = absolute(path, caller)?;
    match std::fs::metadata(&full) {
        Ok(m) if m.is_dir() => Ok(std::fs::canonicalize(&full).unwrap_or(full)),
        Ok(_) => bail!("{option} {}: not a directory", units::shown(&full)),
        Err(e) => bail!("{option} {}: {e}", units::shown(&full)),
    }
}

/// With `--root`, the working directory is a folder of that root ("/" by default).
fn workdir_in_root(given: Option<&Path>, root: &Path) -> Result<PathBuf> {
    let dir = given.unwrap_or(Path::new("/"));
    if !dir.is_absolute() {
        bail!(
            "-w {}: with --root, give an absolute path inside the root",
            units::shown(dir)
        );
    }
    let inside = root.join(dir.strip_prefix("/").unwrap());
    if !inside.is_dir() {
        bail!(
            "-w {}: no such directory in --root {} (use -w DIR with an existing one)",
            units::shown(dir),
            units::shown(root)
        );
    }
    Ok(dir.to_path_buf())
}

/// `HOST[:GUEST][:ro|rw]`.
pub fn parse_volume(spec: &str, caller: &Caller) -> Result<VolumeSpec> {
    let hint = "use -v HOST[:GUEST][:ro|rw], e.g. -v /data:/data:rw";
    let mut parts: Vec<&str> = spec.split(':').collect();
    let writable = match parts.last() {
        Some(&"rw") if parts.len() > 1 => {
            parts.pop();
            true
        }
        Some(&"ro") if parts.len() > 1 => {
            parts.pop();
            false
        }
        _ => false,
    };
    let (host, guest) = match parts.as_slice() {
        [host] if !host.is_empty() => (*host, *host),
        [host, guest] if !host.is_empty() && !guest.is_empty() => (*host, *guest),
        [_, _, ..] => bail!("-v {spec}: paths with ':' are not supported ({hint})"),
        _ => bail!("-v {spec}: the host folder is empty ({hint})"),
    };
    let host = existing_dir(Path::new(host), caller, "-v")?;
    let guest = PathBuf::from(guest);
    if !guest.is_absolute() {
        bail!(
            "-v {spec}: the guest path {} must be absolute ({hint})",
            units::shown(&guest)
        );
    }
    if guest == Path::new("/") {
        bail!("-v {spec}: a volume cannot cover / (use --root for another root)");
    }
    Ok(VolumeSpec {
        host,
        guest,
        writable,
    })
}

/// Without an overlay another root is read-only, so a volume needs a folder that exists
/// there already, or one beneath a guest tmpfs (where guest-init can create it).
fn check_mount_point(guest: &Path, guest_root: &Path) -> Result<()> {
    let in_tmpfs = guest_tmpfs_over(guest).is_some();
    let on_host = guest_root.join(guest.strip_prefix("/").unwrap_or(guest));
    if in_tmpfs || on_host.is_dir() {
        return Ok(());
    }
    bail!(
        "-v ...:{}: no such folder in the --root folder, which the guest sees read-only; pick an existing one (or one under /tmp or /run), or add --overlay",
        units::shown(guest)
    )
}

impl RunConfig {
    /// When the command is a path the guest cannot see because one of its own tmpfs folders
    /// (`/tmp`, `/run`, ...) covers the host's, though the file exists on the host: a hint
    /// for a 126 or 127, naming the folder and the `-v` that shares it.
    pub fn hidden_command_hint(&self) -> Option<String> {
        if self.root.is_some() {
            return None;
        }
        let argv0 = Path::new(std::ffi::OsStr::from_bytes(self.argv.first()?));
        if !argv0.as_os_str().as_bytes().contains(&b'/') {
            return None;
        }
        let path = self.cwd.join(argv0);
        // guest-init shows a working directory under a guest tmpfs from the host.
        let cwd_shown = guest_tmpfs_over(&self.cwd).map(|_| self.cwd.as_path());
        let visible: Vec<&Path> = cwd_shown
            .into_iter()
            .chain(self.volumes.iter().map(|v| v.guest.as_path()))
            .collect();
        let covering = hidden_by_guest_tmpfs(&path, &visible)?;
        std::fs::symlink_metadata(&path).ok()?;
        let folder = path.parent().unwrap_or(&path);
        Some(format!(
            "the guest has its own {covering}, which hides the host's {}: share its folder with -v {}",
            units::shown(&path),
            units::shown(folder)
        ))
    }
}

/// The guest tmpfs folder that hides `path`, unless `path` lies in a folder the guest sees
/// from the host anyway (`visible`: the working directory, volumes).
fn hidden_by_guest_tmpfs(path: &Path, visible: &[&Path]) -> Option<&'static str> {
    let covering = guest_tmpfs_over(path)?;
    (!visible.iter().any(|v| path.starts_with(v))).then_some(covering)
}

/// A volume's guest folder that the host's root lacks is made by mirroring, in the guest,
/// the folders on the way to it: each must be a folder (not a link, which the guest would
/// follow elsewhere) that this user can list, and none may be the guest kernel's own.
fn check_mirrorable(guest: &Path) -> Result<()> {
    if guest.is_dir() || guest_tmpfs_over(guest).is_some() {
        return Ok(());
    }
    let shown = units::shown(guest);
    if std::fs::symlink_metadata(guest).is_ok() {
        bail!("-v ...:{shown}: not a folder in the guest's root; pick a folder");
    }
    for own in ["/proc", "/sys", "/dev"] {
        if guest.starts_with(own) {
            bail!("-v ...:{shown}: {own} belongs to the guest's kernel; pick a folder elsewhere");
        }
    }
    let mut on_the_way = PathBuf::from("/");
    for part in guest.components().skip(1) {
        let Ok(meta) = std::fs::symlink_metadata(&on_the_way) else {
            break; // from here on the folders are made
        };
        let here = units::shown(&on_the_way);
        if meta.file_type().is_symlink() {
            bail!(
                "-v ...:{shown}: {here} is a link in the guest's root; give the path through the folder it points to"
            );
        }
        if !meta.is_dir() {
            bail!("-v ...:{shown}: {here} is not a folder");
        }
        let list = rustix::fs::Access::READ_OK | rustix::fs::Access::EXEC_OK;
        if rustix::fs::access(&on_the_way, list).is_err() {
            bail!(
                "-v ...:{shown}: making it means listing {here}, which you cannot read; pick a folder elsewhere (or one under /tmp or /run)"
            );
        }
        on_the_way.push(part);
    }
    Ok(())
}

/// `FILE[:ro]`.
pub fn parse_disk(spec: &str, caller: &Caller) -> Result<DiskSpec> {
    let (file, writable) = match spec.strip_suffix(":ro") {
        Some(f) => (f, false),
        None => (spec, true),
    };
    if file.is_empty() {
        bail!("--disk {spec}: no file given (use --disk FILE[:ro])");
    }
    let path = absolute(Path::new(file), caller)?;
    let meta = std::fs::metadata(&path).map_err(|e| {
        anyhow!(
            "--disk {}: {e} (create an image first, e.g. truncate -s 1G disk.img)",
            units::shown(&path)
        )
    })?;
    use std::os::unix::fs::FileTypeExt;
    if !(meta.is_file() || meta.file_type().is_block_device()) {
        bail!(
            "--disk {}: not a regular file or block device",
            units::shown(&path)
        );
    }
    let path = std::fs::canonicalize(&path).unwrap_or(path);
    Ok(DiskSpec { path, writable })
}

/// RFC 1123: letters, digits, '-' and '.', at most 64, not starting or ending with '-' or '.'.
fn check_hostname(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !name.starts_with(['-', '.'])
        && !name.ends_with(['-', '.']);
    if !ok {
        bail!("--hostname {name:?}: use letters, digits, '-' and '.', up to 64 characters");
    }
    Ok(())
}

fn workdir(given: Option<&Path>, caller: &Caller, volumes: &[VolumeSpec]) -> Result<PathBuf> {
    let here = caller.cwd.as_ref().map_err(|e| {
        anyhow!("cannot read the current directory ({e}): it may have been deleted; use -w DIR")
    });
    let dir = match given {
        Some(d) if d.is_absolute() => d.to_path_buf(),
        Some(d) => here?.join(d),
        None => here?.clone(),
    };
    // In a volume (the last one given wins, as it is mounted last), the folder is checked in
    // the host folder it shows.
    let on_host = match volumes
        .iter()
        .rev()
        .find_map(|v| Some(v.host.join(dir.strip_prefix(&v.guest).ok()?)))
    {
        Some(host) if given.is_some() => host,
        _ => dir.clone(),
    };
    let meta = std::fs::metadata(&on_host).with_context(|| {
        format!(
            "working directory {}: no such directory (use -w DIR with an existing one)",
            units::shown(&dir)
        )
    })?;
    if !meta.is_dir() {
        bail!(
            "working directory {}: not a directory (use -w DIR)",
            units::shown(&dir)
        );
    }
    Ok(dir)
}

fn environment(
    settings: &[OsString],
    clear: bool,
    tty: bool,
    caller: &Caller,
) -> Result<Vec<Vec<u8>>> {
    let mut env: Vec<(Vec<u8>, Vec<u8>)> = if clear {
        let mut base = vec![
            (b"PATH".to_vec(), DEFAULT_PATH.as_bytes().to_vec()),
            (b"HOME".to_vec(), b"/root".to_vec()),
        ];
        if let Some(term) = caller.var("TERM").filter(|_| tty) {
            base.push((b"TERM".to_vec(), term.as_bytes().to_vec()));
        }
        base
    } else {
        caller
            .vars
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    };
    for setting in settings {
        let bytes = setting.as_bytes();
        let (key, value) = match bytes.iter().position(|&b| b == b'=') {
            Some(eq) => (&bytes[..eq], Some(bytes[eq + 1..].to_vec())),
            None => (bytes, None),
        };
        if key.is_empty() {
            bail!(
                "-e {}: the variable name is empty (use -e KEY=VALUE)",
                setting.to_string_lossy()
            );
        }
        // `-e KEY` passes the caller's value through, and is ignored when it has none, as
        // in docker run.
        let value = match value {
            Some(v) => v,
            None => match caller.var(&String::from_utf8_lossy(key)) {
                Some(v) => v.as_bytes().to_vec(),
                None => continue,
            },
        };
        env.retain(|(k, _)| k != key);
        env.push((key.to_vec(), value));
    }
    Ok(env
        .into_iter()
        .map(|(k, v)| {
            let mut e = k;
            e.push(b'=');
            e.extend(v);
            e
        })
        .collect())
}

/// `UID[:GID]`, each numeric or a name from /etc/passwd and /etc/group (the guest's are the
/// host's). Without GID: the user's primary group when /etc/passwd knows it, else GID = UID.
pub fn parse_user(spec: &str) -> Result<(u32, u32)> {
    let hint = "use --user UID[:GID], e.g. --user 1000:1000";
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, primary) = if let Ok(uid) = user.parse::<u32>() {
        let primary = nix::unistd::User::from_uid(uid.into())
            .ok()
            .flatten()
            .map(|u| u.gid.as_raw());
        (uid, primary)
    } else if !user.is_empty() {
        let u = nix::unistd::User::from_name(user)
            .ok()
            .flatten()
            .ok_or_else(|| anyhow!("--user {spec}: no user named '{user}' ({hint})"))?;
        (u.uid.as_raw(), Some(u.gid.as_raw()))
    } else {
        bail!("--user {spec}: the user is empty ({hint})");
    };
    let gid = match group {
        None => primary.unwrap_or(uid),
        Some(g) if g.parse::<u32>().is_ok() => g.parse().unwrap(),
        Some(g) if !g.is_empty() => nix::unistd::Group::from_name(g)
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw())
            .ok_or_else(|| anyhow!("--user {spec}: no group named '{g}' ({hint})"))?,
        Some(_) => bail!("--user {spec}: the group is empty ({hint})"),
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    #[test]
    fn mem_total_is_read_from_meminfo() {
        assert_eq!(
            mem_total("MemTotal:       24567812 kB\nMemFree: 1 kB\n"),
            Some(24567812 * 1024)
        );
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(mem_total("MemTotal: lots\n"), None);
    }

    #[test]
    fn a_missing_volume_folder_is_made_only_through_plain_folders() {
        let refused = |guest: &str, words: &str| {
            let e = check_mirrorable(Path::new(guest)).unwrap_err().to_string();
            assert!(e.contains(words), "{guest}: {e}");
        };
        refused("/proc/x", "belongs to the guest's kernel");
        refused("/sys/fs/x", "belongs to the guest's kernel");
        refused("/etc/passwd", "not a folder");
        refused("/etc/passwd/x", "/etc/passwd is not a folder");
        // Not under /tmp, which the guest covers anyway.
        let dir = tempfile::tempdir_in(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")).unwrap();
        std::os::unix::fs::symlink("/usr", dir.path().join("link")).unwrap();
        refused(
            &format!("{}/link/x", dir.path().display()),
            "is a link in the guest's root",
        );
        for fine in [
            "/usr/share/sekexe-none/x",
            "/sekexe-none",
            "/tmp/x/y",
            "/usr",
        ] {
            check_mirrorable(Path::new(fine)).unwrap();
        }
    }

    #[test]
    fn a_path_under_a_guest_tmpfs_is_hidden_unless_shared() {
        let p = Path::new;
        assert_eq!(
            hidden_by_guest_tmpfs(p("/tmp/w/s.sh"), &[p("/home/u")]),
            Some("/tmp")
        );
        assert_eq!(hidden_by_guest_tmpfs(p("/run/user/1/x"), &[]), Some("/run"));
        assert_eq!(
            hidden_by_guest_tmpfs(p("/tmp/w/s.sh"), &[p("/tmp/w")]),
            None
        );
        assert_eq!(hidden_by_guest_tmpfs(p("/usr/bin/true"), &[]), None);
    }

    use super::*;
    use clap::Parser;

    fn caller() -> Caller {
        Caller {
            vars: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("HOME".into(), "/home/me".into()),
                ("TERM".into(), "xterm".into()),
                ("SHELL".into(), "/nonexistent/shell".into()),
            ],
            cwd: Ok(PathBuf::from("/")),
            stdin_is_tty: false,
        }
    }

    fn parse(args: &[&str]) -> Result<RunConfig> {
        let mut full = vec!["sekexe", "run"];
        full.extend_from_slice(args);
        // Values clap parses itself (sizes, durations, addresses) fail there.
        let cli =
            crate::cli::Cli::try_parse_from(full).map_err(|e| anyhow::anyhow!("{}", e.render()))?;
        let crate::cli::Command::Run(run) = cli.command else {
            unreachable!()
        };
        RunConfig::from_args(*run, &caller())
    }

    fn env_of(cfg: &RunConfig) -> Vec<String> {
        cfg.env
            .iter()
            .map(|e| String::from_utf8(e.clone()).unwrap())
            .collect()
    }

    #[test]
    fn argv_is_kept_exactly() {
        let cfg = parse(&["--", "printf", "%s", "", "a b", "-c"]).unwrap();
        assert_eq!(
            cfg.argv,
            vec![
                b"printf".to_vec(),
                b"%s".to_vec(),
                vec![],
                b"a b".to_vec(),
                b"-c".to_vec()
            ]
        );
    }

    #[test]
    fn shell_string_runs_through_sh_with_positional_arguments() {
        let cfg = parse(&["-c", "echo $0 $1", "zero", "one"]).unwrap();
        assert_eq!(
            cfg.argv,
            vec![
                b"/bin/sh".to_vec(),
                b"-c".to_vec(),
                b"echo $0 $1".to_vec(),
                b"zero".to_vec(),
                b"one".to_vec()
            ]
        );
    }

    #[test]
    fn no_command_means_a_shell_falling_back_to_bin_sh() {
        let cfg = parse(&[]).unwrap();
        assert_eq!(cfg.argv, vec![b"/bin/sh".to_vec()]);
        assert!(!cfg.tty, "stdin is not a terminal here");
        let mut c = caller();
        c.stdin_is_tty = true;
        let cli = crate::cli::Cli::try_parse_from(["sekexe", "run"]).unwrap();
        let crate::cli::Command::Run(run) = cli.command else {
            unreachable!()
        };
        assert!(
            RunConfig::from_args(*run, &c).unwrap().tty,
            "a shell at a terminal gets one"
        );
        assert!(parse(&["-t", "top"]).unwrap().tty);
    }

    #[test]
    fn environment_passes_through_and_can_be_overridden_or_cleared() {
        let cfg = parse(&[
            "-e", "HOME=/x", "-e", "NEW=a=b", "-e", "TERM", "-e", "UNSET", "true",
        ])
        .unwrap();
        let env = env_of(&cfg);
        assert!(env.contains(&"PATH=/usr/bin:/bin".to_string()));
        assert!(env.contains(&"HOME=/x".to_string()));
        assert!(env.contains(&"NEW=a=b".to_string()));
        assert!(env.contains(&"TERM=xterm".to_string()));
        assert!(!env.iter().any(|e| e.starts_with("HOME=/home")));
        assert!(!env.iter().any(|e| e.starts_with("UNSET")));

        let cfg = parse(&["--clear-env", "-e", "A=1", "true"]).unwrap();
        assert_eq!(
            env_of(&cfg),
            vec![
                format!("PATH={DEFAULT_PATH}"),
                "HOME=/root".into(),
                "A=1".into()
            ]
        );
    }

    #[test]
    fn bad_values_name_the_option_and_the_fix() {
        let e = parse(&["--mem", "12Q", "true"]).unwrap_err().to_string();
        assert!(e.contains("--mem") && e.contains("512M"), "{e}");
        let e = parse(&["--mem", "8M", "true"]).unwrap_err().to_string();
        assert!(e.contains("too small"), "{e}");
        let e = parse(&["-e", "=x", "true"]).unwrap_err().to_string();
        assert!(e.contains("KEY=VALUE"), "{e}");
        let e = parse(&["-w", "/no/such/dir", "true"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("-w DIR"), "{e}");
        let e = parse(&["--user", "nosuchuser:1", "true"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--user"), "{e}");
        let e = parse(&["--", ""]).unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
        let e = parse(&["--timeout", "soon", "true"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--timeout") && e.contains("30s"), "{e}");
        let e = parse(&["--timeout", "1", "--kill-after", "x", "true"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--kill-after"), "{e}");
    }

    #[test]
    fn the_default_memory_matches_the_cli_default() {
        assert_eq!(parse(&["true"]).unwrap().mem, DEFAULT_MEM);
    }

    #[test]
    fn timeouts() {
        let cfg = parse(&["--timeout", "90", "true"]).unwrap();
        assert_eq!(
            cfg.timeout,
            Some(Timeout {
                after: Duration::from_secs(90),
                kill_after: Duration::from_secs(10)
            })
        );
        let cfg = parse(&["--timeout", "5m", "--kill-after", "1s", "true"]).unwrap();
        assert_eq!(cfg.timeout.unwrap().kill_after, Duration::from_secs(1));
        assert_eq!(parse(&["true"]).unwrap().timeout, None);
    }

    #[test]
    fn kernel_args_are_single_words_and_leave_sekexe_params_alone() {
        assert!(parse(&[
            "--kernel-arg",
            "initcall_debug",
            "--kernel-arg",
            "loglevel=8",
            "true"
        ])
        .is_ok());
        let e = parse(&["--kernel-arg", "mem=1G", "true"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--mem"), "{e}");
        let e = parse(&["--kernel-arg", "a b", "true"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("one word"), "{e}");
        assert!(parse(&["--kernel-arg", "con1=fd:0", "true"]).is_err());
        assert!(parse(&["--kernel-arg", "", "true"]).is_err());
    }

    #[test]
    fn volumes() {
        let c = caller();
        let v = parse_volume("/usr/share", &c).unwrap();
        assert_eq!(
            (v.host.as_path(), v.guest.as_path(), v.writable),
            (Path::new("/usr/share"), Path::new("/usr/share"), false)
        );
        let v = parse_volume("/usr/share:rw", &c).unwrap();
        assert!(v.writable && v.guest == Path::new("/usr/share"));
        let v = parse_volume("/usr/share:/data:ro", &c).unwrap();
        assert!(!v.writable && v.guest == Path::new("/data"));
        let v = parse_volume("/usr/share:/data:rw", &c).unwrap();
        assert!(v.writable);
        for bad in [
            "",
            ":x",
            "/no/such/dir",
            "/usr/share:relative",
            "/usr/share:/",
            "/a:/b:/c:rw",
            "/etc/passwd",
        ] {
            assert!(parse_volume(bad, &c).is_err(), "{bad}");
        }
    }

    #[test]
    fn disks_and_hostnames() {
        let c = caller();
        assert!(parse_disk("/no/such.img", &c)
            .unwrap_err()
            .to_string()
            .contains("truncate"));
        assert!(parse_disk("/usr", &c).is_err());
        assert!(parse_disk(":ro", &c).is_err());
        for good in ["sekexe", "a", "my-host.example", "x1"] {
            assert!(check_hostname(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", "a-", "a b", "a_b", &"x".repeat(65), "caf\u{e9}"] {
            assert!(check_hostname(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn overlay_options_clash() {
        assert!(crate::cli::Cli::try_parse_from([
            "sekexe",
            "run",
            "--overlay",
            "--overlay-dir",
            "/x",
            "true"
        ])
        .is_err());
        assert_eq!(
            parse(&["--overlay", "true"]).unwrap().overlay,
            OverlayChoice::Tmpfs
        );
    }

    #[test]
    fn users_by_number_and_name() {
        assert_eq!(parse_user("1000:100").unwrap(), (1000, 100));
        assert_eq!(parse_user("0").unwrap(), (0, 0));
        assert_eq!(parse_user("root:root").unwrap(), (0, 0));
        assert_eq!(parse_user("4242").unwrap(), (4242, 4242));
        assert!(parse_user(":1").is_err());
        assert!(parse_user("1:").is_err());
    }
}
