//! Turns the command-line options and the caller's environment into a validated run
//! configuration. Everything a user can get wrong is caught here, with a message naming the
//! fix, before anything is created on the host.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::cli::RunArgs;
use crate::units;

/// `--mem` when not given (the CLI's default text says the same).
pub const DEFAULT_MEM: u64 = 256 << 20;
/// The guest needs at least this much memory to boot (Debian's 6.1 kernel sometimes fails
/// to allocate its memory map at 32-36M; nothing below 40M is reliable).
pub const MIN_MEM: u64 = 64 << 20;
pub use sekexe_wire::names::DEFAULT_PATH;
pub const DEFAULT_HOSTNAME: &str = "sekexe";

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
    pub keep: bool,
    pub debug: bool,
    pub hostname: String,
    pub timeout: Option<Timeout>,
    pub kernel_args: Vec<String>,
    pub full_boot: bool,
    pub debug_shell: bool,
    pub sandbox: bool,
}

/// Kernel parameters sekexe sets itself, and the option to use instead.
const OWN_PARAMS: &[(&str, &str)] = &[
    ("mem", "--mem"),
    ("init", "SEKEXE_INIT"),
    ("con", "nothing: sekexe needs its consoles"),
    ("con0", "nothing: sekexe needs its consoles"),
    ("con1", "nothing: sekexe needs its consoles"),
    ("umid", "nothing: each run has its own"),
    ("uml_dir", "nothing: each run has its own"),
    ("root", "--root"),
    ("rootfstype", "--root"),
    ("rootflags", "--root"),
    (
        sekexe_wire::names::EXCHANGE_PARAM,
        "nothing: it is sekexe's own",
    ),
];

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
        if let Some((_, instead)) = OWN_PARAMS.iter().find(|(k, _)| *k == key) {
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
        let mem = units::parse_size(&args.mem).map_err(|e| anyhow!("--mem {e}"))?;
        if mem < MIN_MEM {
            bail!(
                "--mem {}: too small, the guest needs at least {}M to boot",
                args.mem,
                MIN_MEM >> 20
            );
        }
        let (argv, shell_mode) = argv(&args, caller)?;
        let (uid, gid) = match &args.user {
            Some(spec) => parse_user(spec)?,
            None => (0, 0),
        };
        let cwd = workdir(args.workdir.as_deref(), caller)?;
        let tty = args.tty || (shell_mode && caller.stdin_is_tty);
        let env = environment(&args.env, args.clear_env, tty, caller)?;
        let timeout = match &args.timeout {
            Some(t) => Some(Timeout {
                after: units::parse_duration(t).map_err(|e| anyhow!("--timeout {e}"))?,
                kill_after: units::parse_duration(&args.kill_after)
                    .map_err(|e| anyhow!("--kill-after {e}"))?,
            }),
            None => None,
        };
        check_kernel_args(&args.kernel_args)?;
        Ok(RunConfig {
            argv,
            env,
            cwd,
            uid,
            gid,
            tty,
            mem,
            kernel: args.kernel,
            keep: args.keep,
            debug: args.debug,
            hostname: DEFAULT_HOSTNAME.to_string(),
            timeout,
            kernel_args: args.kernel_args,
            full_boot: args.full_boot,
            debug_shell: args.debug_shell,
            sandbox: !args.no_sandbox,
        })
    }
}

/// The command's argv, and whether this is shell mode (no command given).
fn argv(args: &RunArgs, caller: &Caller) -> Result<(Vec<Vec<u8>>, bool)> {
    let rest = args.command.iter().map(|a| a.as_bytes().to_vec());
    if let Some(script) = &args.shell_string {
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

fn workdir(given: Option<&Path>, caller: &Caller) -> Result<PathBuf> {
    let here = caller.cwd.as_ref().map_err(|e| {
        anyhow!("cannot read the current directory ({e}): it may have been deleted; use -w DIR")
    });
    let dir = match given {
        Some(d) if d.is_absolute() => d.to_path_buf(),
        Some(d) => here?.join(d),
        None => here?.clone(),
    };
    let meta = std::fs::metadata(&dir).with_context(|| {
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
        let cli = crate::cli::Cli::try_parse_from(full).unwrap();
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
    fn users_by_number_and_name() {
        assert_eq!(parse_user("1000:100").unwrap(), (1000, 100));
        assert_eq!(parse_user("0").unwrap(), (0, 0));
        assert_eq!(parse_user("root:root").unwrap(), (0, 0));
        assert_eq!(parse_user("4242").unwrap(), (4242, 4242));
        assert!(parse_user(":1").is_err());
        assert!(parse_user("1:").is_err());
    }
}
