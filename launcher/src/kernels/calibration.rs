//! The guest kernel's delay-loop calibration, done once per host CPU instead of at every boot.
//!
//! UML calibrates its delay loop at boot, which takes a few of its 10 ms jiffies: 40 ms or
//! more, nearly half of a boot. The `lpj=` parameter presets the result. The first run on a
//! host calibrates and guest-init reports the result (from BogoMIPS); later runs pass it on.
//! The cache is keyed by the CPU model, so a home folder shared between machines stays right.

use std::path::{Path, PathBuf};

use crate::paths;

/// Where the value is kept: the user's cache folder, and the private per-user run base (for
/// users without a home or a writable one, such as CI accounts: without it every boot of
/// theirs would calibrate).
fn cache_files(run_base: &Path) -> Vec<PathBuf> {
    let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo") else {
        return Vec::new();
    };
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .unwrap_or("unknown");
    let name = format!("lpj-{:016x}", crate::cachekey::key(&[model.as_bytes()]));
    paths::cache_dir()
        .map(|d| d.join("calibration").join(&name))
        .into_iter()
        .chain([run_base.join(name)])
        .collect()
}

/// The loops per jiffy measured on this CPU before, if any.
pub fn cached(run_base: &Path) -> Option<u64> {
    cache_files(run_base).iter().find_map(|f| {
        let text = String::from_utf8(crate::safefile::read_small(f, 64)?).ok()?;
        text.trim().parse().ok().filter(|l| PLAUSIBLE.contains(l))
    })
}

/// Values a real CPU gives (BogoMIPS 20 to 200,000). The value comes from the guest, which
/// is hostile: one outside this is not kept for later runs.
const PLAUSIBLE: std::ops::RangeInclusive<u64> = 100_000..=1_000_000_000;

/// Keeps a measured value for the next runs, in the first place that takes it (best effort:
/// without one, runs calibrate).
pub fn remember(lpj: u64, run_base: &Path) {
    if !PLAUSIBLE.contains(&lpj) {
        return;
    }
    for path in cache_files(run_base) {
        if crate::safefile::write_atomic(&path, format!("{lpj}\n").as_bytes()).is_ok() {
            return;
        }
    }
}
