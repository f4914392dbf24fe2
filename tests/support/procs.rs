//! Host processes: signals, and finding a run's launcher and kernel.

use std::path::Path;

use crate::*;

/// Sends signal `sig` to process `pid`, or to process group `-pid` when negative; a process
/// that is already gone is not an error.
pub fn kill(pid: i32, sig: i32) {
    let signal = rustix::process::Signal::from_named_raw(sig).expect("a named signal");
    let target = rustix::process::Pid::from_raw(pid.abs()).expect("a pid");
    let _ = if pid < 0 {
        rustix::process::kill_process_group(target, signal)
    } else {
        rustix::process::kill_process(target, signal)
    };
}

pub fn processes_mentioning(needle: &Path) -> Vec<String> {
    let needle = needle.as_os_str().as_encoded_bytes();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if pid.parse::<u32>().ok() == Some(std::process::id()) {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            if cmdline.windows(needle.len()).any(|w| w == needle) {
                let shown: String = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                // Whole: callers look for words anywhere in it (a kernel's uml_dir= comes
                // after a long kernel path).
                found.push(format!("{pid}: {shown}"));
            }
        }
    }
    found
}

/// The launcher processes (not the kernel) of runs made in this scratch folder.
pub fn launcher_pids(scratch: &Scratch) -> Vec<i32> {
    let bin = sekexe_bin();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let exe = std::fs::read_link(entry.path().join("exe")).ok();
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        let tmp = format!("TMPDIR={}", scratch.path().display());
        // Each launcher has a sentinel child (a fork of it, named so) that kills the kernel if
        // the launcher dies: not a launcher itself.
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if exe.as_deref() == Some(bin.as_path())
            && comm.trim_end() != "sekexe-sentinel"
            && environ.split(|&b| b == 0).any(|e| e == tmp.as_bytes())
        {
            pids.push(pid);
        }
    }
    pids
}

/// The kernel process started by the launcher `launcher` (its child with this scratch folder
/// and a uml_dir on its command line; network helpers have no uml_dir).
pub fn kernel_pid(scratch: &Scratch, launcher: i32) -> Option<i32> {
    kernel_pid_in(scratch.path(), launcher)
}

/// [`kernel_pid`] for runs made with this TMPDIR.
pub fn kernel_pid_in(tmpdir: &Path, launcher: i32) -> Option<i32> {
    processes_mentioning(tmpdir)
        .iter()
        .filter(|p| p.contains("uml_dir="))
        .filter_map(|p| p.split(':').next()?.parse::<i32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit(')')
                        .next()?
                        .split_whitespace()
                        .nth(1)?
                        .parse::<i32>()
                        .ok()
                })
                == Some(launcher)
        })
}

/// A process that is killed when the test ends, passed or not.
pub struct Daemon(pub std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
