//! sekexe: run a command in its own User Mode Linux kernel, without root or KVM.

mod cli;
mod cmdline;
mod config;
mod console;
mod doctor;
mod kconfig;
mod kernel;
mod kernelcmd;
mod memory;
mod paths;
mod run;
mod rundir;
mod sandbox;
mod session;
mod signals;
mod terminal;
mod uml;
mod units;

use clap::Parser;
use sekexe_wire::ExitCode;

fn main() {
    terminal::install_panic_hook();
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors; usage errors exit 125 like every other
            // failure of sekexe itself, so scripts can tell them from the command's statuses.
            let code = if e.use_stderr() {
                ExitCode::Failed.code() as i32
            } else {
                0
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let result = match cli.command {
        cli::Command::Run(args) => run::run(*args),
        cli::Command::Kernel(cli::KernelCommand::Check { path }) => {
            kernelcmd::check(path.as_deref())
        }
        cli::Command::Kernel(cli::KernelCommand::List) => kernelcmd::list(),
        cli::Command::Doctor(args) => doctor::doctor(args),
    };
    let code = match result {
        Ok(code) => code as i32,
        Err(e) => {
            eprintln!("sekexe: {e:#}");
            ExitCode::Failed.code() as i32
        }
    };
    std::process::exit(code);
}
