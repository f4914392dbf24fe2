//! The command-line interface: what the user types, before validation.

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

const EXAMPLES: &str = "\
Examples:
  sekexe run -- uname -a                 run a command in its own kernel, as root
  sekexe run -c 'env; exit 42'           run a shell string (exit status 42 comes back)
  sekexe run                             an interactive root shell in a fresh kernel
  sekexe run -t -- top                   a full-screen program, at this terminal's size
  printf 'a\\nb\\n' | sekexe run -- wc -l  stdin, stdout and stderr are forwarded
  sekexe run -e FOO=bar -w /src -- make  environment and working directory
  sekexe run --user 1000:1000 -- id      run as another user
  sekexe run --timeout 5m -- make test   never hang a CI step (exit 124 on timeout)
  sekexe run --overlay -- apt-get install -y cowsay   a writable root, thrown away after
  sekexe run -v ~/src:/src:rw -w /src -- make         a host folder, writable
  sekexe run --root ./rootfs -- cat /etc/os-release   another root file system
  sekexe run -p 8080:80 -- python3 -m http.server 80   a guest server on host port 8080
  sekexe kernel check                    what the kernel supports
  sekexe doctor                          check this host

Exit status: the command's own; 128+N if it was killed by signal N; 124 on timeout;
125 if sekexe or the guest failed; 126 if the command cannot be executed; 127 if not found.

Environment:
  SEKEXE_KERNEL    the kernel to boot when --kernel is not given
  SEKEXE_INIT      the guest-init to boot instead of the static sekexe-init found beside sekexe
  SEKEXE_CACHE     the cache of built kernels (default $XDG_CACHE_HOME/sekexe, ~/.cache/sekexe)
  TMPDIR           where run folders and guest memory go (default /dev/shm, else /tmp)
  XDG_STATE_HOME   kernel logs of failed runs go to its sekexe/logs (~/.local/state/...)
  SHELL            the shell `sekexe run` starts with no command
  TERM             passed to the guest with -t (the terminal type)
  The command's environment is the caller's (see -e, --clear-env).";

#[derive(Parser, Debug)]
#[command(
    name = "sekexe",
    version,
    about = "Run a command in its own Linux kernel (User Mode Linux), without root or KVM.",
    long_about = "Run a command in its own Linux kernel (User Mode Linux), without root or KVM.\n\n\
The host's / is the guest's read-only root; the command runs as root in the guest and its \
output and exit status come back as if it had run on the host.",
    after_help = EXAMPLES,
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a command (or a shell) in a fresh guest kernel
    #[command(after_help = EXAMPLES)]
    Run(Box<RunArgs>),
    /// Boot a warm guest that stays up for `sekexe exec`, and print its name
    #[command(after_help = WARM_EXAMPLES)]
    Start(Box<StartArgs>),
    /// Run a command in a warm guest, exactly as `sekexe run` would in a fresh one
    #[command(after_help = WARM_EXAMPLES)]
    Exec(Box<ExecArgs>),
    /// List your warm guests: name, uptime, commands running, kernel
    Ls,
    /// Print a warm guest's kernel console
    Logs {
        /// The guest's name
        name: String,
    },
    /// Stop a warm guest: SIGTERM to its commands, SIGKILL 5 s later, then power off
    Stop {
        /// The guest's name
        name: String,
    },
    /// Find and check UML kernels
    #[command(subcommand)]
    Kernel(KernelCommand),
    /// Check this host for what sekexe needs, and say how to fix what is missing
    Doctor(DoctorArgs),
    /// Print a shell's completion script for sekexe (bash, zsh, fish, elvish, powershell)
    #[command(after_help = "Examples:\n  \
        sekexe completions bash > ~/.local/share/bash-completion/completions/sekexe\n  \
        sekexe completions zsh > ~/.zfunc/_sekexe      (with fpath+=~/.zfunc in ~/.zshrc)\n  \
        sekexe completions fish > ~/.config/fish/completions/sekexe.fish\n\n\
        The Debian package installs them for every user.")]
    Completions { shell: clap_complete::Shell },
    /// Write the manual pages (sekexe(1) and one per subcommand) into a folder
    #[command(hide = true)]
    Man {
        /// The folder to write sekexe.1, sekexe-run.1, ... into
        dir: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub cmd: CommandArgs,

    #[command(flatten)]
    pub guest: GuestArgs,

    /// Keep the run's exchange folder afterwards and print its path
    #[arg(long)]
    pub keep: bool,

    /// Write how the run ended to FILE as one JSON object (exit code, signal, timeout, the
    /// cause of a failure, kernel, boot timeline, peak memory, kept log): see the README
    #[arg(long, value_name = "FILE")]
    pub result: Option<PathBuf>,

    /// When a guest-init step or the command fails, open a shell in the guest before it
    /// powers off (exit the shell to end the run)
    #[arg(long)]
    pub debug_shell: bool,

    /// The command and its arguments, passed exactly as given
    #[arg(value_name = "COMMAND", trailing_var_arg = true)]
    pub command: Vec<OsString>,
}

/// Whether `arg`, as the user typed it, is a command or one of a command's options (what
/// `exec` takes and `start` does not).
pub fn is_for_a_command(arg: &str) -> bool {
    let Some(option) = arg.strip_prefix('-') else {
        return true;
    };
    let cmd = CommandArgs::augment_args(clap::Command::new("exec"));
    let mut args = cmd.get_arguments();
    match option.strip_prefix('-') {
        Some(long) => {
            let long = long.split('=').next().unwrap_or(long);
            args.any(|a| a.get_long() == Some(long))
        }
        None => {
            let first = option.chars().next();
            args.any(|a| a.get_short().is_some() && a.get_short() == first)
        }
    }
}

impl RunArgs {
    /// `run` with no options given: what `start` and `exec` fill in.
    pub fn defaults() -> RunArgs {
        match Cli::parse_from(["sekexe", "run"]).command {
            Command::Run(run) => *run,
            _ => unreachable!("parsed as run"),
        }
    }
}

/// The options of `run` that belong to one command: `exec` takes the same.
#[derive(Args, Debug)]
pub struct CommandArgs {
    /// Run STRING with /bin/sh -c (further arguments become $0, $1, ...)
    #[arg(short = 'c', value_name = "STRING")]
    pub shell_string: Option<OsString>,

    /// Set an environment variable in the guest (KEY=VALUE), or pass the host's KEY through
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<OsString>,

    /// Start from a minimal environment (PATH, HOME, TERM) instead of the caller's
    #[arg(long)]
    pub clear_env: bool,

    /// Working directory in the guest [default: the current directory]
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<PathBuf>,

    /// Run as this user and group (numeric, or names from /etc/passwd) [default: 0:0]
    #[arg(short = 'u', long = "user", value_name = "UID[:GID]")]
    pub user: Option<String>,

    /// Give the command a terminal (the default for a shell when stdin is a terminal)
    #[arg(short = 't', long)]
    pub tty: bool,

    /// Stop the command after DURATION (90, 30s, 5m, 1h): SIGTERM, then SIGKILL after
    /// --kill-after; exit status 124 (run then powers its guest off; a warm guest stays up)
    #[arg(long, value_name = "DURATION", value_parser = crate::units::parse_duration)]
    pub timeout: Option<Duration>,

    /// After --timeout's SIGTERM, wait this long before SIGKILL
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "10s",
        requires = "timeout",
        value_parser = crate::units::parse_duration
    )]
    pub kill_after: Duration,

    /// Show guest-init's steps for the command on stderr (run: also the kernel console and a
    /// boot timeline)
    #[arg(long)]
    pub debug: bool,
}

/// The options of `run` that make the guest: `start` takes the same.
#[derive(Args, Debug)]
pub struct GuestArgs {
    /// Guest memory, e.g. 256M or 1G
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = crate::config::parse_mem)]
    pub mem: u64,

    /// The UML kernel to boot [default: $SEKEXE_KERNEL, the project's kernel, linux.uml]
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,

    /// How guest processes run on the host: seccomp (faster, Linux 6.17+ kernels; any guest
    /// process can reach what the kernel process may, see README: Kernels) or ptrace
    #[arg(long, value_name = "MODE", default_value = "auto")]
    pub userspace: crate::userspace::UserspaceArg,

    /// CPUs in the guest (SMP: Linux 6.19+ kernels, under seccomp userspace)
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub cpus: u32,

    /// How long the guest trusts what it learned of the host's files (names, attributes, data)
    /// before asking the host again; an open always asks [default: 1s; 0: always ask; needs
    /// the project's kernel]
    #[arg(long, value_name = "DURATION", value_parser = crate::units::parse_duration)]
    pub fs_cache: Option<Duration>,

    /// Let the host move a one-CPU guest's kernel between CPUs (by default it stays on one,
    /// runs taking the CPUs in turn: a guest system call hands off between two host
    /// processes, several times dearer across CPUs)
    #[arg(long)]
    pub no_pin: bool,

    /// Show a host folder in the guest (repeatable); GUEST defaults to HOST, ro to read-only
    #[arg(short = 'v', long = "volume", value_name = "HOST[:GUEST][:ro|rw]")]
    pub volumes: Vec<String>,

    /// A writable root whose changes are thrown away at the end (tmpfs over the host's /)
    #[arg(long, conflicts_with = "overlay_dir")]
    pub overlay: bool,

    /// A writable root whose changes are kept in DIR (an ext4 image, DIR/overlay.img) for the
    /// next run with the same DIR
    #[arg(long, value_name = "DIR")]
    pub overlay_dir: Option<PathBuf>,

    /// Boot with DIR (a debootstrap'd or unpacked root file system) as / instead of the host's
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Attach an image file as a block device (repeatable): /dev/ubda, /dev/ubdb, ... in order
    #[arg(long = "disk", value_name = "FILE[:ro]")]
    pub disks: Vec<String>,

    /// The guest's network: user (NAT through slirp4netns, the default), none, slirp[:PATH]
    /// (the legacy slirp), vde:SWITCH (a vde_switch) or tap:IFACE (an existing TAP device)
    #[arg(long, value_name = "MODE", default_value = "user", value_parser = crate::net::parse_mode)]
    pub net: crate::net::Mode,

    /// Forward a host port to a guest port (repeatable; --net user); HOSTIP defaults to
    /// 127.0.0.1
    #[arg(
        short = 'p',
        long = "publish",
        value_name = "[HOSTIP:]HOSTPORT:GUESTPORT[/udp]",
        value_parser = crate::net::parse_forward
    )]
    pub publish: Vec<crate::net::Forward>,

    /// With --net user: the guest reaches neither the host's services nor the outside
    #[arg(long)]
    pub net_restrict: bool,

    /// A static address instead of DHCP
    #[arg(long, value_name = "ADDR/PREFIX", value_parser = crate::net::parse_cidr)]
    pub ip: Option<(Ipv4Addr, u8)>,

    /// With --ip: the default gateway
    #[arg(long, value_name = "ADDR", requires = "ip")]
    pub gateway: Option<Ipv4Addr>,

    /// With --ip: a DNS server for the guest's resolv.conf (repeatable)
    #[arg(long, value_name = "ADDR", requires = "ip")]
    pub dns: Vec<Ipv4Addr>,

    /// cgroups in the guest: v2 (all controllers delegated), v1 (one hierarchy per
    /// controller, as Docker expects) or none
    #[arg(long, value_name = "VERSION", default_value = "v2")]
    pub cgroup: CgroupArg,

    /// The guest's hostname
    #[arg(long, value_name = "NAME", default_value = "sekexe")]
    pub hostname: String,

    /// Append a raw argument to the kernel command line (repeatable), e.g. initcall_debug
    #[arg(long = "kernel-arg", value_name = "ARG")]
    pub kernel_args: Vec<String>,

    /// Run every initcall, including the slow ones sekexe skips (RAID6/XOR benchmarks,
    /// btrfs, zswap): for a guest that needs btrfs or zswap
    #[arg(long)]
    pub full_boot: bool,

    /// Do not confine the kernel process on the host (Landlock, seccomp, read-only mounts):
    /// the guest can then write to the host with your rights
    #[arg(long)]
    pub no_sandbox: bool,
}

const WARM_EXAMPLES: &str = "\
Examples:
  sekexe start --name ci --overlay        boot a guest once (prints its name, ci)
  sekexe exec ci -- apt-get install -y jq   each command runs in the same kernel...
  sekexe exec ci -- jq --version          ...and sees what the last one left
  sekexe exec -t ci                       an interactive shell in it
  sekexe exec ci -c 'dockerd >/var/log/dockerd.log 2>&1 &'   a daemon for later commands
  sekexe ls                               your guests
  sekexe logs ci                          its kernel console
  sekexe stop ci                          stop it (also: start --idle-timeout 10m)

exec's exit status is the command's, as run's: 128+N if killed by signal N; 124 on
timeout; 125 if sekexe or the guest failed; 126 cannot execute; 127 not found.";

/// `sekexe start`: a guest with `run`'s guest options, and no command.
#[derive(Args, Debug)]
pub struct StartArgs {
    /// The guest's name, for exec, ls, logs and stop [default: guest-1, guest-2, ...]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Stop the guest once no command has run in it for DURATION (30s, 10m, 1h)
    #[arg(long, value_name = "DURATION", value_parser = crate::units::parse_duration)]
    pub idle_timeout: Option<Duration>,

    /// Show the boot's steps and timeline on stderr
    #[arg(long)]
    pub debug: bool,

    #[command(flatten)]
    pub guest: Box<GuestArgs>,
}

/// `sekexe exec`: the options of `run` that belong to one command.
#[derive(Args, Debug)]
pub struct ExecArgs {
    #[command(flatten)]
    pub cmd: CommandArgs,

    /// The warm guest (see `sekexe ls`)
    #[arg(value_name = "NAME")]
    pub name: String,

    /// The command and its arguments, passed exactly as given [default: a shell]
    #[arg(value_name = "COMMAND", trailing_var_arg = true)]
    pub command: Vec<OsString>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupArg {
    V2,
    V1,
    None,
}

#[derive(Subcommand, Debug)]
pub enum KernelCommand {
    /// Report which of the features sekexe uses a kernel has
    Check {
        /// The kernel [default: the one `sekexe run` would use]
        path: Option<PathBuf>,
    },
    /// List the kernels sekexe finds and which one is the default
    List,
    /// Build the project's recommended kernel from Debian's sources (about 10 minutes on two
    /// cores; cached: a second build with the same inputs returns at once)
    #[command(after_help = "Examples:\n  \
        sekexe kernel build              into your cache; your runs use it from then on\n  \
        sudo sekexe kernel build --system   into /var/cache/sekexe, for every user\n\n\
        It installs the build tools it lacks with apt (through sudo when not root), fetches\n\
        Linux from the Debian archive your apt uses, patches and configures it as\n\
        kernel-config/ says, and prints the kernel's path.")]
    Build {
        /// Put it in the system cache (/var/cache/sekexe), which every user's sekexe finds
        #[arg(long)]
        system: bool,
        /// Build again even when the cache has this kernel
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// The kernel to check [default: the one `sekexe run` would use]
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn options_after_the_command_belong_to_the_command() {
        let cli = Cli::try_parse_from(["sekexe", "run", "ls", "-la", "--mem", "1G"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!()
        };
        assert_eq!(run.command, ["ls", "-la", "--mem", "1G"]);
        assert_eq!(run.guest.mem, 256 << 20);
    }

    #[test]
    fn an_unknown_option_before_the_command_is_an_error_not_a_command() {
        assert!(Cli::try_parse_from(["sekexe", "run", "--no-such-option"]).is_err());
    }

    #[test]
    fn double_dash_separates_options_from_the_command() {
        let cli = Cli::try_parse_from(["sekexe", "run", "--mem", "1G", "--", "-x", "--"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!()
        };
        assert_eq!(run.command, ["-x", "--"]);
        assert_eq!(run.guest.mem, 1 << 30);
    }
}
