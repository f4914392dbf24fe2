//! `--result FILE`: how a run ended, as one JSON object for programs (CI systems, wrappers),
//! in the spirit of bubblewrap's `--json-status-fd` and KUnit's `--json`. Its schema is in
//! the README; `version` changes only when a field changes meaning or goes away.
//!
//! The file is the user's, but its folder may be in an rw volume the guest can change: the
//! folder is opened before the run and the result written through that handle, to a new file
//! (never through a link) renamed over the name, so a reader sees the old result or the
//! whole new one, and a guest cannot send it elsewhere.

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
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
    /// The largest resident set among the launcher's host children, from getrusage: the
    /// kernel process (guest memory it touched included), its helpers (slirp4netns).
    pub peak_rss_bytes: Option<u64>,
    /// The kept kernel log of a failed run. (Paths are text: JSON has no other bytes.)
    pub log: Option<String>,
    /// The run folder, with `--keep`.
    pub run_folder: Option<String>,
}

#[derive(Serialize, Debug, Default, Clone, PartialEq)]
pub struct KernelInfo {
    pub path: String,
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
        // Numbers, text and options of them: nothing serde_json refuses.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A path as JSON text, bytes that are not UTF-8 shown as U+FFFD.
pub fn text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Where `--result` goes: its folder, opened before the run and used by handle after it, and
/// the file's name in it.
pub struct ResultTarget {
    dir: OwnedFd,
    name: OsString,
    shown: PathBuf,
}

impl ResultTarget {
    /// Checks `given` (relative to `cwd`) before the run: its folder exists, and the name is
    /// free or a regular file (a link or a device would be replaced, not written to).
    pub fn open(given: &Path, cwd: Option<&Path>) -> Result<ResultTarget> {
        let path = match (given.is_absolute(), cwd) {
            (true, _) => given.to_path_buf(),
            (false, Some(cwd)) => cwd.join(given),
            (false, None) => bail!(
                "--result {}: cannot read the current directory: give an absolute path",
                units::shown(given)
            ),
        };
        let shown = units::shown(&path);
        let name = match path.file_name() {
            Some(n) if !given.as_os_str().as_bytes().ends_with(b"/") => n.to_os_string(),
            _ => bail!("--result {shown}: a folder; name a file to write the JSON result to"),
        };
        let folder = path.parent().unwrap_or(Path::new("/"));
        let dir = rustix::fs::open(
            folder,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            anyhow!(
                "--result {shown}: no such folder {} ({e}): create it, or name a file in an existing one",
                units::shown(folder)
            )
        })?;
        match rustix::fs::statat(&dir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {}
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                bail!("--result {shown}: a folder; name a file to write the JSON result to")
            }
            Ok(_) => bail!(
                "--result {shown}: not a regular file (a link or a device would be replaced, not written to); name a plain file"
            ),
            Err(rustix::io::Errno::NOENT) => {}
            Err(e) => bail!("--result {shown}: {e}"),
        }
        Ok(ResultTarget {
            dir,
            name,
            shown: path,
        })
    }

    /// Writes the report atomically: a new file in the held folder (never through a link),
    /// renamed over the name.
    pub fn write(&self, report: &Report) -> Result<()> {
        let shown = units::shown(&self.shown);
        let mut tmp = None;
        for _ in 0..16 {
            let mut bytes = [0u8; 6];
            rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty())
                .context("getrandom")?;
            let name = format!(
                ".sekexe-result-{}",
                bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
            );
            match rustix::fs::openat(
                &self.dir,
                name.as_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            ) {
                Ok(fd) => {
                    tmp = Some((name, fd));
                    break;
                }
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("--result {shown}: create a file beside it"))
                }
            }
        }
        let (name, fd) = tmp.ok_or_else(|| anyhow!("--result {shown}: no free temporary name"))?;
        let mut file = std::fs::File::from(fd);
        let written = file
            .write_all(format!("{}\n", report.to_json()).as_bytes())
            .and_then(|_| file.sync_data());
        let renamed = written.and_then(|_| {
            rustix::fs::renameat(&self.dir, name.as_str(), &self.dir, self.name.as_os_str())
                .map_err(std::io::Error::from)
        });
        if let Err(e) = renamed {
            let _ = rustix::fs::unlinkat(&self.dir, name.as_str(), AtFlags::empty());
            bail!("--result {shown}: write it: {e}");
        }
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
        r.log = Some(text(Path::new(std::ffi::OsStr::from_bytes(
            b"/tmp/\xff.log",
        ))));
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["log"], "/tmp/\u{fffd}.log");
    }

    #[test]
    fn writing_replaces_the_file_whole_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("result.json");
        std::fs::write(&path, "old").unwrap();
        ResultTarget::open(&path, None)
            .unwrap()
            .write(&Report::new())
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("{\"version\":1,") && text.ends_with("}\n"),
            "{text}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn the_folder_is_held_from_before_the_run() {
        // A guest with the folder in an rw volume replaces it with a link to another one
        // during the run: the result still goes to the folder that was named.
        let base = tempfile::tempdir().unwrap();
        let (named, victim) = (base.path().join("out"), base.path().join("victim"));
        std::fs::create_dir(&named).unwrap();
        std::fs::create_dir(&victim).unwrap();
        let target = ResultTarget::open(&named.join("r.json"), None).unwrap();
        std::fs::rename(&named, base.path().join("out.orig")).unwrap();
        std::os::unix::fs::symlink(&victim, &named).unwrap();
        target.write(&Report::new()).unwrap();
        assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0);
        assert!(base.path().join("out.orig/r.json").is_file());
    }

    #[test]
    fn only_a_free_name_or_a_regular_file_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        for (path, words) in [
            (link.clone(), "not a regular file"),
            (dir.path().to_path_buf(), "a folder"),
            (
                PathBuf::from("/no/such/folder/r.json"),
                "no such folder /no/such/folder",
            ),
        ] {
            let e = ResultTarget::open(&path, None).err().unwrap().to_string();
            assert!(e.contains(words), "{path:?}: {e}");
        }
        assert!(ResultTarget::open(&dir.path().join("new.json"), None).is_ok());
        let relative = ResultTarget::open(Path::new("r.json"), Some(dir.path())).unwrap();
        relative.write(&Report::new()).unwrap();
        assert!(dir.path().join("r.json").is_file());
    }
}
