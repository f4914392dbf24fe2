//! A stand-in for a hostile kernel process, for tests: it answers `--showconfig`, `--help` and
//! `--version` as Debian's kernel does (so sekexe accepts it), and when booted, leaves behind
//! a process in a session of its own (out of reach of a kill of its process group), then
//! exits. The stray carries the kernel's `sekexe_run=` word, so a test finds it by the run's
//! TMPDIR. (sekexe gives the kernel an empty environment: the command line is all it has.)

use std::os::unix::process::CommandExt;
use std::process::Command;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args
        .iter()
        .any(|a| a == "--showconfig" || a == "--version" || a == "--help")
    {
        let err = Command::new("/usr/bin/linux.uml").args(&args).exec();
        panic!("exec the real kernel: {err}");
    }
    let mark = args
        .iter()
        .find(|a| a.starts_with("sekexe_run="))
        .cloned()
        .unwrap_or_default();
    let mut stray = Command::new("/bin/sh");
    // The shell stays (no exec), so its command line keeps the mark.
    stray.args(["-c", "sleep 1000; true", &mark]);
    // SAFETY: setsid is async-signal-safe; the child execs right after.
    unsafe {
        stray.pre_exec(|| {
            rustix::process::setsid()?;
            Ok(())
        });
    }
    stray.spawn().expect("spawn the stray");
    std::process::exit(1);
}
