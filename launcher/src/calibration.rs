//! The guest kernel's delay-loop calibration, done once per host CPU instead of at every boot.
//!
//! UML calibrates its delay loop at boot, which takes a few of its 10 ms jiffies: 40 ms or
//! more, nearly half of a boot. The `lpj=` parameter presets the result. The first run on a
//! host calibrates and guest-init reports the result (from BogoMIPS); later runs pass it on.
//! The cache is keyed by the CPU model, so a home folder shared between machines stays right.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use crate::paths;

fn cache_file() -> Option<PathBuf> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .unwrap_or("unknown");
    let mut h = DefaultHasher::new();
    model.hash(&mut h);
    Some(
        paths::cache_dir()?
            .join("calibration")
            .join(format!("lpj-{:016x}", h.finish())),
    )
}

/// The loops per jiffy measured on this CPU before, if any.
pub fn cached() -> Option<u64> {
    let text = std::fs::read_to_string(cache_file()?).ok()?;
    text.trim().parse().ok().filter(|&l| l > 1000)
}

/// Keeps a measured value for the next runs (best effort: without a cache, runs calibrate).
pub fn remember(lpj: u64) {
    if lpj <= 1000 {
        return;
    }
    if let Some(path) = cache_file() {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let tmp = path.with_extension("tmp");
        if std::fs::write(&tmp, format!("{lpj}\n")).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }
}
