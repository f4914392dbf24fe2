//! The core run tests of core_cases.rs, each made through a warm guest: a fresh
//! `sekexe start` with the run's guest options, `sekexe exec` of the command with its
//! per-command options, then `sekexe stop`. They assert the same bytes and exit statuses as
//! through run: exec must give what run gives. Every test boots the real kernel.

use std::ffi::OsStr;

use sekexe_tests::*;

#[path = "core_cases.rs"]
mod cases;

/// The cases' `sekexe`: the support's, made through exec.
fn sekexe<I, S>(scratch: &Scratch, args: I) -> Sekexe
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    sekexe_tests::sekexe(scratch, args).through_exec()
}

/// The cases' `run`: the support's, made through exec.
fn run(scratch: &Scratch, args: &[&str]) -> Output {
    sekexe(scratch, args).run()
}
