//! Why a guest failed, in words: recognised from the kernel console and how the kernel process
//! ended. Pure, so each cause is tested with the text the kernel really prints.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

/// The cause of a run that ended without the command's status, when it can be told.
pub fn cause(console: &str, kernel: Option<ExitStatus>, memory_dir: &str) -> Option<String> {
    let has = |s: &str| console.contains(s);
    if has("Bus error - the host") || kernel.and_then(|k| k.signal()) == Some(libc::SIGBUS) {
        return Some(format!(
            "guest memory could not grow because {memory_dir} is full: free space there, lower --mem, or set TMPDIR to a larger tmpfs"
        ));
    }
    if has("Too few physical memory") || (has("Failed to allocate") && has("memory map")) {
        return Some(
            "the guest has too little memory to boot: raise --mem (e.g. --mem 512M)".into(),
        );
    }
    if has("Out of memory") && has("Kernel panic") {
        return Some("the guest ran out of memory: raise --mem".into());
    }
    if has("sysrq: Trigger a crash") {
        return Some("the guest crashed its own kernel (sysrq 'c')".into());
    }
    if has("Attempted to kill init") {
        return Some("guest-init (PID 1) ended, which the kernel does not survive".into());
    }
    if let Some(reason) = panic_reason(console) {
        return Some(format!("the guest kernel panicked: {reason}"));
    }
    let halted = [
        "reboot: System halted",
        "reboot: Power down",
        "reboot: Restarting system",
        "sysrq: Resetting",
        "sysrq: Power Off",
    ];
    if halted.iter().any(|h| has(h)) {
        return Some(
            "the guest halted or rebooted before the command ended (reboot(2) or sysrq)".into(),
        );
    }
    match kernel.and_then(|k| k.signal()) {
        Some(libc::SIGKILL) => Some(
            "the kernel process was killed (SIGKILL) from outside; out of memory on the host?"
                .into(),
        ),
        Some(libc::SIGSEGV) => Some("the kernel process crashed (SIGSEGV)".into()),
        _ => None,
    }
}

/// The text after "Kernel panic - not syncing: ".
fn panic_reason(console: &str) -> Option<&str> {
    let marker = "Kernel panic - not syncing: ";
    let at = console.find(marker)? + marker.len();
    let reason = console[at..].lines().next()?.trim();
    (!reason.is_empty()).then_some(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(sig: i32) -> Option<ExitStatus> {
        Some(ExitStatus::from_raw(sig))
    }

    #[test]
    fn a_full_memory_folder() {
        let c = "[    4.340000] Bus error - the host /dev/shm or /tmp mount likely just ran out of space\n\
                 [    4.340000] Kernel panic - not syncing: Kernel mode signal 7\n";
        let why = cause(c, signal(libc::SIGABRT), "/dev/shm").unwrap();
        assert!(why.contains("/dev/shm is full"), "{why}");
    }

    #[test]
    fn too_little_memory_to_boot() {
        let c = "<0>Kernel panic - not syncing: Failed to allocate 16384000 bytes for node 0 memory map\n";
        assert!(cause(c, signal(libc::SIGABRT), "/x")
            .unwrap()
            .contains("raise --mem"));
        let c = "Too few physical memory! Needed=905969664, given=901005312\n";
        assert!(cause(c, None, "/x").unwrap().contains("raise --mem"));
    }

    #[test]
    fn crashes_panics_and_halts() {
        let c = "sysrq: Trigger a crash\nKernel panic - not syncing: sysrq triggered crash\n";
        assert!(cause(c, signal(libc::SIGABRT), "/x")
            .unwrap()
            .contains("sysrq"));
        let c = "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000000\n";
        assert!(cause(c, signal(libc::SIGABRT), "/x")
            .unwrap()
            .contains("PID 1"));
        let c = "Kernel panic - not syncing: VFS: Unable to mount root fs\n";
        assert_eq!(
            cause(c, signal(libc::SIGABRT), "/x").unwrap(),
            "the guest kernel panicked: VFS: Unable to mount root fs"
        );
        for c in [
            "[    1.0] reboot: Power down\n",
            "[    0.09] sysrq: Resetting\n",
        ] {
            assert!(cause(c, None, "/x").unwrap().contains("halted or rebooted"));
        }
    }

    #[test]
    fn killed_from_outside() {
        assert!(cause("", signal(libc::SIGKILL), "/x")
            .unwrap()
            .contains("SIGKILL"));
        assert_eq!(
            cause("all quiet\n", Some(ExitStatus::from_raw(0)), "/x"),
            None
        );
    }
}
