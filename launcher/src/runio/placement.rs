//! Which host CPUs the kernel process may run on.
//!
//! A guest system call is a hand-off between two host processes (the guest process and the
//! kernel process, by a signal and a futex under seccomp userspace, by ptrace stops under
//! ptrace), and a one-CPU guest never runs both at once. When the host scheduler puts the
//! two on different CPUs, every hand-off wakes another CPU: on a virtual machine that is an
//! inter-processor interrupt and an exit to the hypervisor, and it made a guest system call
//! 6x dearer here (85 µs against 14 µs; README, "Where the time goes"). So the kernel process,
//! and with it every process it starts, stays on one host CPU. The user's runs take the CPUs
//! the launcher may use in turn (a counter in the private run base): runs started together
//! spread over the CPUs instead of crowding the one their launchers started on.

use std::path::Path;

use nix::sched::{sched_getaffinity, sched_getcpu, CpuSet};
use nix::unistd::Pid;

/// The counter of turns, in the run base.
const TURN_FILE: &str = "cpu-turn";

/// The CPU for the run whose turn it is, among those the launcher may use; none when there
/// is no choice to make.
pub fn pick(allowed: &[usize], turn: u64) -> Option<usize> {
    if allowed.len() < 2 {
        return None;
    }
    Some(allowed[(turn % allowed.len() as u64) as usize])
}

/// [`pick`] for this run: its turn from the counter in `run_base`, or (without one) the CPU
/// the launcher runs on.
pub fn one_cpu(run_base: &Path) -> Option<usize> {
    // Only speed depends on it: without the affinity (over 1024 CPUs), no pinning.
    let set = sched_getaffinity(Pid::from_raw(0)).ok()?;
    let allowed: Vec<usize> = (0..CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect();
    let turn = next_turn(&run_base.join(TURN_FILE))
        .or_else(|| {
            let cpu = sched_getcpu().ok()?;
            allowed.iter().position(|&c| c == cpu)
        })
        .unwrap_or(0) as u64;
    pick(&allowed, turn)
}

/// Takes a turn: reads the counter and counts one more (`safefile::update_locked`: no link,
/// no FIFO, no waiting for a lock); a damaged counter starts from zero again. None: no turn
/// to take.
fn next_turn(path: &Path) -> Option<usize> {
    let parse = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .trim()
            .parse::<usize>()
            .unwrap_or(0)
    };
    let old = crate::safefile::update_locked(path, 32, |old| {
        format!("{}\n", parse(old).wrapping_add(1) % 1_000_000).into_bytes()
    })?;
    Some(parse(&old))
}

/// Keeps the calling process on `cpu`. Async-signal-safe: for the kernel's `pre_exec`.
pub fn stay_on(cpu: usize) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data, zeroed then filled by the libc macros; the call reads
    // the set from the stack for the calling process only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_take_the_allowed_cpus_in_turn() {
        let picks: Vec<_> = (0..5).map(|t| pick(&[1, 4, 6], t)).collect();
        assert_eq!(picks, [Some(1), Some(4), Some(6), Some(1), Some(4)]);
        assert_eq!(pick(&[0, 1], u64::MAX), Some(1));
    }

    #[test]
    fn no_choice_no_pinning() {
        assert_eq!(pick(&[3], 7), None);
        assert_eq!(pick(&[], 0), None);
    }

    #[test]
    fn the_counter_counts_and_survives_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TURN_FILE);
        assert_eq!(next_turn(&path), Some(0));
        assert_eq!(next_turn(&path), Some(1));
        std::fs::write(&path, "not a number, and longer than it should be at all").unwrap();
        assert_eq!(next_turn(&path), Some(0));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1\n");
        std::fs::write(&path, b"\xff\xfe7").unwrap();
        assert_eq!(next_turn(&path), Some(0));
    }

    #[test]
    fn one_cpu_is_one_the_launcher_may_use() {
        let dir = tempfile::tempdir().unwrap();
        let set = sched_getaffinity(Pid::from_raw(0)).unwrap();
        for _ in 0..3 {
            if let Some(c) = one_cpu(dir.path()) {
                assert!(set.is_set(c).unwrap());
            }
        }
    }
}
