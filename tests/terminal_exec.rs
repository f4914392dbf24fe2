//! The interactive tests of terminal_cases.rs, each made through a warm guest: a fresh
//! `sekexe start` with the run's guest options, `sekexe exec` of the command (in the terminal,
//! for the tmux tests) with its per-command options, then `sekexe stop`. They assert the same
//! screens and exit statuses as through run. Every test boots the real kernel.

use sekexe_tests::*;
// The cases' `sekexe`: the support's, made through exec.
use sekexe_tests::sekexe_through_exec as sekexe;

#[path = "terminal_cases.rs"]
mod cases;

/// The cases' command line for a terminal: start, exec, stop, with exec's exit status.
fn sekexe_shell_command(scratch: &Scratch, args: &str) -> String {
    sekexe_shell_command_through_exec(scratch, args)
}

/// The cases' launchers: the command's launcher is exec's; the warm guest's own (the daemon
/// `start` left) serves every command and is no command's.
fn launcher_pids(scratch: &Scratch) -> Vec<i32> {
    sekexe_tests::launcher_pids(scratch)
        .into_iter()
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            cmdline.split(|&b| b == 0).nth(1) == Some(b"exec")
        })
        .collect()
}
