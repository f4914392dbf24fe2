//! The UML kernel command line, rendered by one pure function from validated parameters.
//!
//! UML joins its argv into the kernel command line (at most 4096 bytes). Unknown `key=value`
//! words become PID 1's environment and bare words its argv, more than 32 of either panic the
//! kernel, and nothing is escaped. So only this fixed, short set of words goes there; the
//! user's data travels in the run request.

use std::path::Path;

use anyhow::{bail, Result};
use sekexe_wire::names::{
    encode_param, CHANNEL_CONSOLE, DEBUG_SHELL_PARAM, EXCHANGE_PARAM, FIRST_SESSION_CONSOLE,
};
use std::os::unix::ffi::OsStrExt;

/// The kernel command line's length limit (COMMAND_LINE_SIZE on UML).
pub const MAX_CMDLINE: usize = 4096;

/// Where the launcher puts the channel socket in the kernel process.
pub const CHANNEL_FD: i32 = 3;

pub struct BootParams<'a> {
    pub mem_mib: u64,
    pub init: &'a Path,
    pub exchange: &'a Path,
    pub umid: &'a str,
    pub uml_dir: &'a Path,
    /// Initcalls to skip (slow benchmarks the stock kernel runs at boot).
    pub skip_initcalls: &'a [&'a str],
    /// Kernel messages: `quiet` unless debugging.
    pub verbose: bool,
    /// The delay loop's calibration, when known: the kernel skips measuring it.
    pub lpj: Option<u64>,
    /// `--debug-shell`.
    pub debug_shell: bool,
    /// Network devices (vec0:..., eth0=...), from the network mode.
    pub net: &'a [String],
    /// `seccomp=` and `ncpus=`, from the userspace choice.
    pub userspace: &'a [String],
    /// `hostfs.cache_ms=`: how long hostfs trusts what it cached (see `--fs-cache`).
    pub hostfs_cache_ms: Option<u64>,
    /// Block devices, in order: ubd0 (/dev/ubda), ubd1, ...; each a path and whether it is
    /// writable.
    pub disks: &'a [(&'a Path, bool)],
    /// Raw words from `--kernel-arg`, appended last so they can override ours.
    pub extra: &'a [String],
    /// A warm guest's session lines: where the launcher placed each one's socket in the
    /// kernel process (see `SESSION_LINES`); none for a run.
    pub session_lines: &'a [i32],
}

/// Kernel parameters sekexe sets itself, and the option to use instead.
pub const OWN_PARAMS: &[(&str, &str)] = &[
    ("mem", "--mem"),
    ("init", "SEKEXE_INIT"),
    ("con", "nothing: sekexe needs its consoles"),
    ("con0", "nothing: sekexe needs its consoles"),
    ("con1", "nothing: sekexe needs its consoles"),
    // A warm guest's session lines (SESSION_LINES of them, from FIRST_SESSION_CONSOLE).
    ("con2", "nothing: sekexe needs its consoles"),
    ("con3", "nothing: sekexe needs its consoles"),
    ("con4", "nothing: sekexe needs its consoles"),
    ("con5", "nothing: sekexe needs its consoles"),
    ("con6", "nothing: sekexe needs its consoles"),
    ("con7", "nothing: sekexe needs its consoles"),
    ("con8", "nothing: sekexe needs its consoles"),
    ("con9", "nothing: sekexe needs its consoles"),
    ("umid", "nothing: each run has its own"),
    ("uml_dir", "nothing: each run has its own"),
    ("root", "--root"),
    ("seccomp", "--userspace"),
    ("ncpus", "--cpus"),
    ("rootfstype", "--root"),
    ("rootflags", "--root"),
    ("hostfs.cache_ms", "--fs-cache"),
    (
        sekexe_wire::names::EXCHANGE_PARAM,
        "nothing: it is sekexe's own",
    ),
];

/// Words of ours that `--kernel-arg` may add to or override (its words come after ours):
/// tuning, not what sekexe relies on. Block and network devices may be added too.
#[cfg(test)]
const USER_MAY_SET: &[&str] = &[
    "ssl",
    "noreboot",
    "ro",
    "quiet",
    "loglevel",
    "lpj",
    "dummy.numdummies",
    "initcall_blacklist",
    DEBUG_SHELL_PARAM,
];

/// The guest device of the block device at `index` (ubd0 is /dev/ubda).
pub fn disk_device(index: usize) -> String {
    format!("ubd{}", (b'a' + index as u8) as char)
}

/// UML has 16 block devices.
pub const MAX_DISKS: usize = 16;

/// Renders the command line as UML's argv words.
pub fn render(p: &BootParams) -> Result<Vec<String>> {
    let mut w: Vec<String> = Vec::new();
    // Guest memory; UML maps it from an unlinked file in $TMPDIR (its scratch tmpfs).
    w.push(format!("mem={}M", p.mem_mib));
    // No console may open an xterm or a host pty: silence them all first...
    w.push("con=null".into());
    w.push("ssl=null".into());
    // ...then con0, the kernel log: input from /dev/null (fd 0), output to the log pipe (fd 1)...
    w.push("con0=fd:0,fd:1".into());
    // ...and the framed channel, on the socket the launcher placed at CHANNEL_FD.
    w.push(format!("con{CHANNEL_CONSOLE}=fd:{CHANNEL_FD}"));
    for (n, fd) in p.session_lines.iter().enumerate() {
        w.push(format!("con{}=fd:{fd}", FIRST_SESSION_CONSOLE + n as u32));
    }
    // A guest reboot() must end UML, not re-execute it in a loop.
    w.push("noreboot".into());
    // The host's / is the root, read-only, over hostfs.
    w.push("rootfstype=hostfs".into());
    w.push("rootflags=/".into());
    w.push("ro".into());
    if let Some(ms) = p.hostfs_cache_ms {
        w.push(format!("hostfs.cache_ms={ms}"));
    }
    // Our own umid and private uml_dir: no clash with other runs, nothing in ~/.uml, and its
    // pid file lives in the kernel's scratch tmpfs, which has no host path (the mconsole
    // socket UML would put there it may not make).
    w.push(format!("umid={}", p.umid));
    w.push(format!("uml_dir={}", word_path(p.uml_dir, "uml_dir")?));
    w.push(if p.verbose { "loglevel=7" } else { "quiet" }.into());
    if let Some(lpj) = p.lpj {
        w.push(format!("lpj={lpj}"));
    }
    // A built-in dummy driver would make dummy0; the guest should see only its own devices.
    w.push("dummy.numdummies=0".into());
    if !p.skip_initcalls.is_empty() {
        w.push(format!("initcall_blacklist={}", p.skip_initcalls.join(",")));
    }
    // Tells guest-init where the exchange folder is. Encoded, because the path may hold
    // spaces; no dot in the key, so the kernel passes it to PID 1 as an environment variable.
    w.push(format!(
        "{EXCHANGE_PARAM}={}",
        encode_param(p.exchange.as_os_str().as_bytes())
    ));
    if p.disks.len() > MAX_DISKS {
        bail!(
            "{} block devices (--disk, --overlay-dir): UML has {MAX_DISKS}",
            p.disks.len()
        );
    }
    for (i, (path, writable)) in p.disks.iter().enumerate() {
        // ubdNr: read-only.
        let ro = if *writable { "" } else { "r" };
        w.push(format!("ubd{i}{ro}={}", word_path(path, "--disk")?));
    }
    // The network device and its transport.
    w.extend(p.net.iter().cloned());
    w.extend(p.userspace.iter().cloned());
    if p.debug_shell {
        w.push(format!("{DEBUG_SHELL_PARAM}=1"));
    }
    w.extend(p.extra.iter().cloned());
    // Last, so that nothing after it is taken as an argument to init.
    w.push(format!("init={}", quoted_path(p.init)?));

    let len: usize = w.iter().map(|s| s.len() + 1).sum();
    if len > MAX_CMDLINE {
        bail!("the kernel command line would be {len} bytes, over the kernel's {MAX_CMDLINE}: shorten the paths or --kernel-arg values");
    }
    Ok(w)
}

/// A path that must be a single command-line word as it is.
fn word_path(path: &Path, what: &str) -> Result<String> {
    match path.to_str() {
        Some(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && b != b'"') => {
            Ok(s.to_string())
        }
        _ => bail!(
            "{what} path {} has spaces or unusual characters, which the kernel command line cannot carry: set TMPDIR to a plain path",
            path.display()
        ),
    }
}

/// A path the kernel accepts in double quotes, so spaces are fine.
fn quoted_path(path: &Path) -> Result<String> {
    match path.to_str() {
        Some(s) if s.bytes().all(|b| b.is_ascii_graphic() && b != b'"') => Ok(s.to_string()),
        Some(s) if s.bytes().all(|b| (b.is_ascii_graphic() || b == b' ') && b != b'"') => {
            Ok(format!("\"{s}\""))
        }
        _ => bail!(
            "the guest-init path {} has characters the kernel command line cannot carry: move sekexe to a plain path or set SEKEXE_INIT",
            path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sekexe_wire::names::SESSION_LINES;

    fn params<'a>(extra: &'a [String], skip: &'a [&'a str]) -> BootParams<'a> {
        BootParams {
            mem_mib: 256,
            init: Path::new("/opt/sekexe/sekexe-init"),
            exchange: Path::new("/tmp/sekexe-1000/run-ab cd"),
            umid: "sekexe-42-x",
            uml_dir: Path::new("/tmp/sekexe-1000/run-x/uml"),
            skip_initcalls: skip,
            verbose: false,
            lpj: None,
            debug_shell: false,
            net: &[],
            userspace: &[],
            hostfs_cache_ms: None,
            disks: &[],
            extra,
            session_lines: &[],
        }
    }

    #[test]
    fn every_word_of_ours_is_protected_or_meant_to_be_overridable() {
        // A parameter added to render() that a --kernel-arg could silently break must be in
        // OWN_PARAMS (refused with the option to use instead), or be tuning the user may set.
        let disks = [(Path::new("/x/disk-0"), true)];
        let net = ["vec0:transport=fd,fd=4".to_string()];
        let mut p = params(&[], &["raid6_select_algo"]);
        p.lpj = Some(4_000_000);
        p.debug_shell = true;
        p.verbose = true;
        p.net = &net;
        p.disks = &disks;
        let userspace = ["seccomp=on".to_string(), "ncpus=2".to_string()];
        p.userspace = &userspace;
        let lines: Vec<i32> = (0..i32::from(SESSION_LINES)).map(|n| 10 + n).collect();
        p.session_lines = &lines;
        let words = render(&p).unwrap();
        assert!(words.contains(&"con9=fd:17".to_string()), "{words:?}");
        for word in words {
            let key = word.split('=').next().unwrap();
            let owned = OWN_PARAMS.iter().any(|(k, _)| *k == key);
            let tuning = USER_MAY_SET.contains(&key)
                || ["ubd", "vec", "eth"].iter().any(|d| key.starts_with(d));
            assert!(
                owned || tuning,
                "{word}: add {key} to OWN_PARAMS or USER_MAY_SET"
            );
            assert!(!(owned && tuning), "{key} is in both lists");
        }
    }

    #[test]
    fn renders_the_fixed_words_in_order() {
        let w = render(&params(&[], &["raid6_select_algo", "init_btrfs_fs"])).unwrap();
        assert_eq!(
            w,
            vec![
                "mem=256M",
                "con=null",
                "ssl=null",
                "con0=fd:0,fd:1",
                "con1=fd:3",
                "noreboot",
                "rootfstype=hostfs",
                "rootflags=/",
                "ro",
                "umid=sekexe-42-x",
                "uml_dir=/tmp/sekexe-1000/run-x/uml",
                "quiet",
                "dummy.numdummies=0",
                "initcall_blacklist=raid6_select_algo,init_btrfs_fs",
                "sekexe_run=/tmp/sekexe-1000/run-ab%20cd",
                "init=/opt/sekexe/sekexe-init",
            ]
        );
    }

    #[test]
    fn no_word_has_a_space_unless_quoted() {
        let mut p = params(&[], &[]);
        p.init = Path::new("/opt/my tools/sekexe-init");
        let w = render(&p).unwrap();
        assert_eq!(w.last().unwrap(), "init=\"/opt/my tools/sekexe-init\"");
        assert!(w[..w.len() - 1].iter().all(|s| !s.contains(' ')));
    }

    #[test]
    fn disks_become_ubd_words_in_order() {
        let disks = [
            (Path::new("/img/a.img"), true),
            (Path::new("/img/b.img"), false),
        ];
        let mut p = params(&[], &[]);
        p.disks = &disks;
        let w = render(&p).unwrap();
        assert!(w.contains(&"ubd0=/img/a.img".to_string()), "{w:?}");
        assert!(w.contains(&"ubd1r=/img/b.img".to_string()), "{w:?}");
        assert_eq!(disk_device(0), "ubda");
        assert_eq!(disk_device(2), "ubdc");
    }

    #[test]
    fn the_hostfs_cache_is_a_protected_word_only_when_asked_for() {
        let mut p = params(&[], &[]);
        assert!(!render(&p).unwrap().iter().any(|w| w.starts_with("hostfs.")));
        p.hostfs_cache_ms = Some(1000);
        let w = render(&p).unwrap();
        assert!(w.contains(&"hostfs.cache_ms=1000".to_string()), "{w:?}");
        assert!(OWN_PARAMS.iter().any(|(k, _)| *k == "hostfs.cache_ms"));
    }

    #[test]
    fn debug_shell_is_a_word_of_its_own() {
        let mut p = params(&[], &[]);
        p.debug_shell = true;
        assert!(render(&p)
            .unwrap()
            .contains(&"sekexe_debug_shell=1".to_string()));
    }

    #[test]
    fn extra_arguments_come_after_ours_and_before_init() {
        let extra = vec!["initcall_debug".to_string()];
        let w = render(&params(&extra, &[])).unwrap();
        assert_eq!(w[w.len() - 2], "initcall_debug");
        assert!(w.last().unwrap().starts_with("init="));
    }

    #[test]
    fn refuses_what_the_command_line_cannot_carry() {
        let mut p = params(&[], &[]);
        p.uml_dir = Path::new("/tmp/with space/uml");
        assert!(render(&p).unwrap_err().to_string().contains("TMPDIR"));
        let mut p = params(&[], &[]);
        p.init = Path::new("/opt/\"quoted\"/init");
        assert!(render(&p).is_err());
        let long = vec!["x".repeat(5000)];
        assert!(render(&params(&long, &[]))
            .unwrap_err()
            .to_string()
            .contains("4096"));
    }
}
