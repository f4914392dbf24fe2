//! The guest clock used for the boot timeline.

/// Nanoseconds since the guest kernel started (CLOCK_BOOTTIME).
pub fn boottime_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME) {
        Ok(ts) => ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64,
        Err(_) => 0,
    }
}

/// Milliseconds, with one decimal, for log lines.
pub fn ms(ns: u64) -> String {
    format!("{}.{}", ns / 1_000_000, (ns / 100_000) % 10)
}
