//! sekexe: run a command in its own User Mode Linux kernel, without root or KVM.

// How a run flows through the modules:
//   setup:    cli parses the options, config validates them into a RunConfig; net starts
//             the network helpers; rundir makes the private run folder; paths and memory say
//             where things live.
//   kernels:  kernel finds and checks the kernel (kconfig), userspace picks how guest
//             processes run, cmdline renders its command line, calibration presets its
//             delay loop.
//   confine:  scratch makes the kernel's bounded private tmpfs; sandbox (with seccomp) confines
//             the kernel process.
//   runio:    uml starts the kernel (with a sentinel that kills it if the launcher dies);
//             session relays streams, signals and the terminal until the kernel ends; verdict
//             turns what happened into the exit status; diagnose explains failures.
// run.rs strings these together; doctor.rs checks a host.
//   warm:     start boots a warm guest whose launcher (daemon) stays behind and multiplexes
//             its channel between exec sessions over a control socket (control); folder is
//             its place on the host; manage lists, shows and stops guests.

mod confine;
mod docs;
mod doctor;
mod kernels;
mod run;
mod runio;
mod setup;
mod warm;

// Short paths for the modules the others use (crate::kernel, crate::sandbox, ...).
use confine::{sandbox, scratch, seccomp};
use kernels::{calibration, cmdline, diagnose, kconfig, kernel, kernelcmd, userspace};
use runio::{console, placement, report, sentinel, session, signals, terminal, uml, verdict};
use setup::{cachekey, cli, config, memory, net, overlaydir, paths, rundir, safefile, units};

use std::sync::OnceLock;
use std::time::Instant;

use clap::Parser;
use sekexe_wire::ExitCode;

/// When the launcher started, for the `--debug` timeline's first phase.
pub static STARTED: OnceLock<Instant> = OnceLock::new();

fn main() {
    STARTED.get_or_init(Instant::now);
    terminal::install_panic_hook();
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors; usage errors exit 125 like every other
            // failure of sekexe itself, so scripts can tell them from the command's statuses,
            // and take one line, like every other error.
            if !e.use_stderr() {
                let _ = e.print();
                std::process::exit(0);
            }
            let sub = std::env::args_os().nth(1);
            // The word clap did not expect (not one it took but found fault with).
            let invalid = match e.get(clap::error::ContextKind::InvalidArg) {
                Some(clap::error::ContextValue::String(arg))
                    if e.kind() == clap::error::ErrorKind::UnknownArgument =>
                {
                    Some(arg.as_str())
                }
                _ => None,
            };
            eprintln!(
                "sekexe: {}",
                usage_error_line(
                    &e.render().to_string(),
                    sub.as_ref().and_then(|s| s.to_str()),
                    invalid
                )
            );
            std::process::exit(ExitCode::Failed.code() as i32);
        }
    };
    let result = match cli.command {
        cli::Command::Run(args) => run::run(*args),
        cli::Command::Start(args) => warm::start::start(*args),
        cli::Command::Exec(args) => warm::exec::exec(*args),
        cli::Command::Ls => warm::manage::ls(),
        cli::Command::Logs { name } => warm::manage::logs(&name),
        cli::Command::Stop { name } => warm::manage::stop(&name),
        cli::Command::Kernel(cli::KernelCommand::Check { path }) => {
            kernelcmd::check(path.as_deref())
        }
        cli::Command::Kernel(cli::KernelCommand::List) => kernelcmd::list(),
        cli::Command::Kernel(cli::KernelCommand::Build { system, force }) => {
            kernelcmd::build(system, force)
        }
        cli::Command::Doctor(args) => doctor::doctor(args),
        cli::Command::Completions { shell } => docs::completions(shell),
        cli::Command::Man { dir } => docs::man_pages(&dir),
    };
    let code = match result {
        Ok(code) => code as i32,
        Err(e) => {
            eprintln!("sekexe: {}", without_errno_numbers(&format!("{e:#}")));
            ExitCode::Failed.code() as i32
        }
    };
    std::process::exit(code);
}

/// The first paragraph of clap's error on one line, without its "error: " prefix, and where
/// to look next: the help of the subcommand given, if it is one.
fn usage_error_line(rendered: &str, subcommand: Option<&str>, invalid: Option<&str>) -> String {
    use clap::CommandFactory;
    let first: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let text = first.join(" ");
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    let sub = subcommand
        .filter(|s| !s.starts_with('-') && cli::Cli::command().find_subcommand(s).is_some());
    match sub {
        // `start` has run's guest options only; a command and its options go to exec.
        Some("start") if invalid.is_some_and(cli::is_for_a_command) => format!(
            "{text}: `sekexe start` takes the guest's options; a command and its options \
             (-c, -e, --clear-env, -w, -u, -t, --timeout, --kill-after) go to `sekexe exec NAME` (see 'sekexe start --help')"
        ),
        Some(sub) => format!("{text} (see 'sekexe {sub} --help')"),
        None => format!("{text} (see 'sekexe --help' or 'sekexe run --help')"),
    }
}

/// io::Error text ends in " (os error N)", which tells users nothing the words did not.
pub fn without_errno_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(" (os error ") {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        match rest.find(')') {
            Some(end) => rest = &rest[end + 1..],
            None => break,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn usage_errors_are_one_line() {
        use clap::Parser;
        let e = crate::cli::Cli::try_parse_from(["sekexe", "run", "--no-such"]).unwrap_err();
        let line = super::usage_error_line(&e.render().to_string(), Some("run"), None);
        assert!(line.contains("--no-such") && !line.contains('\n'), "{line}");
        assert!(!line.starts_with("error:"), "{line}");
        assert!(line.contains("'sekexe run --help'"), "{line}");
    }

    #[test]
    fn a_commands_option_given_to_start_points_to_exec() {
        use clap::error::{ContextKind, ContextValue, ErrorKind};
        use clap::Parser;
        let line_for = |args: &[&str]| {
            let e = crate::cli::Cli::try_parse_from(["sekexe", "start"].iter().chain(args))
                .unwrap_err();
            let invalid = match e.get(ContextKind::InvalidArg) {
                Some(ContextValue::String(a)) if e.kind() == ErrorKind::UnknownArgument => {
                    Some(a.clone())
                }
                _ => None,
            };
            super::usage_error_line(&e.render().to_string(), Some("start"), invalid.as_deref())
        };
        for args in [
            &["--timeout", "5s"][..],
            &["--timeout=5s"],
            &["-e", "A=1"],
            &["-tc", "x"],
            &["--", "true"],
            &["true"],
        ] {
            let line = line_for(args);
            assert!(
                line.contains("sekexe exec NAME") && !line.contains('\n'),
                "{args:?}: {line}"
            );
        }
        // A mistyped guest option, or one only run has, is no command's option.
        for args in [&["--mme", "1G"][..], &["--keep"], &["--debug", "--debug"]] {
            let line = line_for(args);
            assert!(!line.contains("exec"), "{args:?}: {line}");
            assert!(line.contains("'sekexe start --help'"), "{args:?}: {line}");
        }
    }

    #[test]
    fn errno_numbers_are_dropped() {
        assert_eq!(
            super::without_errno_numbers(
                "read x: No such file or directory (os error 2): more (os error 13)"
            ),
            "read x: No such file or directory: more"
        );
        assert_eq!(super::without_errno_numbers("plain"), "plain");
    }
}
