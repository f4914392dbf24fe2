//! The core run tests of core_cases.rs, each made through a warm guest: a fresh
//! `sekexe start` with the run's guest options, `sekexe exec` of the command with its
//! per-command options, then `sekexe stop`. They assert the same bytes and exit statuses as
//! through run: exec must give what run gives. Every test boots the real kernel.

use sekexe_tests::*;
// The cases' `sekexe`: the support's, made through exec.
use sekexe_tests::sekexe_through_exec as sekexe;

#[path = "core_cases.rs"]
mod cases;

/// The cases' `run`: the support's, made through exec.
fn run(scratch: &Scratch, args: &[&str]) -> Output {
    sekexe(scratch, args).run()
}
