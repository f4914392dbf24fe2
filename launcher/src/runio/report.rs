//! `--result FILE`: how a run ended, as one JSON object for programs (CI systems, wrappers),
//! in the spirit of bubblewrap's `--json-status-fd` and KUnit's `--json`. Its schema is in
//! the README; `version` changes only when a field changes meaning or goes away.
//!
//! The file is the user's, outside the run folder: it is written to a new file beside it and
//! renamed over it, so a reader sees the old result or the whole new one, never a part.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::units;

/// The schema's version.
pub const VERSION: u32 = 1;

#[derive(Serialize, Debug, Default, Clone, PartialEq)]
pub struct Report {
    pub version: u32,
    /// sekexe's exit status.
    pub exit_code: u8,
    /// The signal that killed the command, if one did.
    pub signal: Option<u8>,
    pub core_dumped: bool,
    /// `--timeout` expired.
    pub timed_out: bool,
    /// sekexe or the guest failed (exit 125 that is not the command's own).
    pub failed: bool,
    /// What sekexe said about how the run ended (a failure's cause, "command not found"...);
    /// null when the command's own status needs no words.
    pub message: Option<String>,
    pub kernel: Option<KernelInfo>,
    pub timeline_ms: Timeline,
    /// The largest resident set of the kernel's host processes (guest memory it touched
    /// included), from getrusage.
    pub peak_rss_bytes: Option<u64>,
    /// The kept kernel log of a failed run.
    pub log: Option<PathBuf>,
    /// The run folder, with `--keep`.
    pub run_folder: Option<PathBuf>,
}

#[derive(Serialize, Debug, Default, Clone, PartialEq)]
pub struct KernelInfo {
    pub path: PathBuf,
    /// Where sekexe found it (`--kernel`, `$SEKEXE_KERNEL`, the cache, PATH...).
    pub source: String,
    /// Its release (`KERNEL --version`), when it says.
    pub release: Option<String>,
    /// How guest processes run: "seccomp" or "ptrace".
    pub userspace: String,
    pub cpus: u32,
}

/// Milliseconds each phase took, host clock; null for a phase the run never reached.
#[derive(Serialize, Debug, Default, Clone, Copy, PartialEq)]
pub struct Timeline {
    /// Options, kernel, run folder, sandbox, network: until the kernel process started.
    pub launcher: Option<f64>,
    /// Until guest-init ran.
    pub kernel_boot: Option<f64>,
    /// guest-init's mounts and network, until the command started.
    pub guest_setup: Option<f64>,
    /// The command, until its status came back.
    pub command: Option<f64>,
    /// Until the kernel process was gone.
    pub power_off: Option<f64>,
    /// From the launcher's start to the end.
    pub total: Option<f64>,
}

impl Report {
    pub fn new() -> Report {
        Report {
            version: VERSION,
            ..Report::default()
        }
    }

    pub fn to_json(&self) -> String {
        // Serializing plain structs of numbers, strings and paths cannot fail, except for a
        // path that is not UTF-8, which serde refuses: shown lossily instead.
        serde_json::to_string(self).unwrap_or_else(|_| {
            let lossy = |p: &Option<PathBuf>| {
                p.as_ref()
                    .map(|p| PathBuf::from(p.to_string_lossy().into_owned()))
            };
            let mut clean = self.clone();
            clean.log = lossy(&self.log);
            clean.run_folder = lossy(&self.run_folder);
            if let Some(k) = &mut clean.kernel {
                k.path = PathBuf::from(k.path.to_string_lossy().into_owned());
            }
            serde_json::to_string(&clean).unwrap_or_default()
        })
    }

    /// Writes the report to `path` atomically: a new file in the same folder, renamed over it.
    pub fn write(&self, path: &Path) -> Result<()> {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        let dir = dir.unwrap_or(Path::new("."));
        let mut tmp = tempfile::Builder::new()
            .prefix(".sekexe-result-")
            .tempfile_in(dir)
            .with_context(|| format!("--result: create a file in {}", units::shown(dir)))?;
        tmp.write_all(self.to_json().as_bytes())
            .and_then(|_| tmp.write_all(b"\n"))
            .and_then(|_| tmp.as_file().sync_data())
            .with_context(|| format!("--result: write {}", units::shown(path)))?;
        tmp.persist(path)
            .with_context(|| format!("--result: replace {}", units::shown(path)))?;
        Ok(())
    }
}

/// The largest resident set of the launcher's waited-for descendants, in bytes.
pub fn children_peak_rss() -> Option<u64> {
    let usage =
        nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).ok()?;
    u64::try_from(usage.max_rss()).ok().map(|kib| kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_one_line_of_json_with_every_field() {
        let mut r = Report::new();
        r.exit_code = 137;
        r.signal = Some(9);
        r.timeline_ms.kernel_boot = Some(12.5);
        r.message = Some("a \"quoted\"\nline".into());
        let json = r.to_json();
        assert!(!json.contains('\n'), "{json}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["exit_code"], 137);
        assert_eq!(v["signal"], 9);
        assert_eq!(v["timed_out"], false);
        assert_eq!(v["message"], "a \"quoted\"\nline");
        assert_eq!(v["kernel"], serde_json::Value::Null);
        assert_eq!(v["timeline_ms"]["kernel_boot"], 12.5);
        assert_eq!(v["timeline_ms"]["command"], serde_json::Value::Null);
        for key in [
            "core_dumped",
            "failed",
            "peak_rss_bytes",
            "log",
            "run_folder",
        ] {
            assert!(v.get(key).is_some(), "{key} missing: {json}");
        }
    }

    #[test]
    fn a_path_that_is_not_utf8_is_shown_lossily() {
        use std::os::unix::ffi::OsStrExt;
        let mut r = Report::new();
        r.log = Some(PathBuf::from(std::ffi::OsStr::from_bytes(b"/tmp/\xff.log")));
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["log"], "/tmp/\u{fffd}.log");
    }

    #[test]
    fn writing_replaces_the_file_whole_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("result.json");
        std::fs::write(&path, "old").unwrap();
        Report::new().write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("{\"version\":1,") && text.ends_with("}\n"),
            "{text}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
