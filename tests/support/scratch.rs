//! Where a test's runs happen: a private TMPDIR per test, the host users it runs as, and
//! files and folders the guest can see.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::*;

/// Part of a test could not run here (it needs root to switch users): says so loudly, and
/// fails under CI, which must run everything.
pub fn skipped(what: &str) {
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("{what}: CI runs the whole suite, as root");
    }
    eprintln!("SKIP: {what} (run the suite as root for it)");
}

/// The host users a test runs as: the unprivileged one and root when the suite runs as root,
/// else only the current user (and the root half is reported skipped).
pub fn users() -> Vec<Option<u32>> {
    if is_root() {
        vec![Some(NOBODY), None]
    } else {
        skipped("the same checks as host root");
        vec![None]
    }
}

/// A scratch folder for the unprivileged user: nobody when the suite runs as root, else the
/// current user (who is unprivileged then).
pub fn unprivileged() -> Scratch {
    Scratch::for_user(if is_root() { Some(NOBODY) } else { None })
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    rustix::process::geteuid().is_root()
}

/// A private TMPDIR on tmpfs for one test, owned by the user the test runs sekexe as.
pub struct Scratch {
    dir: tempfile::TempDir,
    pub(crate) uid: u32,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch::new()
    }
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch::for_user(None)
    }

    pub fn for_user(user: Option<u32>) -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix("sekexe-test-")
            .tempdir_in("/dev/shm")
            .expect("tempdir in /dev/shm");
        let uid = user.unwrap_or_else(|| rustix::process::geteuid().as_raw());
        if user.is_some() && is_root() {
            chown(dir.path(), uid);
        }
        Scratch { dir, uid }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A file in the scratch folder with these contents, readable by the test user.
    pub fn file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, contents).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        if is_root() {
            chown(&p, self.uid);
        }
        p
    }

    /// sekexe's per-user folder inside this TMPDIR.
    pub fn user_base(&self) -> PathBuf {
        self.path().join(format!("sekexe-{}", self.uid))
    }

    /// Run folders left in this TMPDIR.
    pub fn leftover_runs(&self) -> Vec<String> {
        match std::fs::read_dir(self.user_base()) {
            Ok(entries) => entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("run-"))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Warm guests' folders left in this TMPDIR (a guest that is up, or one whose kernel died
    /// and that no `ls` has named yet).
    pub fn leftover_guests(&self) -> Vec<String> {
        match std::fs::read_dir(self.user_base().join("guests")) {
            Ok(entries) => entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Host processes whose command line mentions this TMPDIR (kernels and helpers of runs
    /// made here).
    pub fn leftover_processes(&self) -> Vec<String> {
        processes_mentioning(self.path())
    }

    /// Asserts that no run folder, no warm guest and no process is left, waiting up to 3 s
    /// for processes that are already dying.
    pub fn assert_clean(&self) {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let procs = self.leftover_processes();
            if procs.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "processes left behind: {procs:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            self.leftover_runs(),
            Vec::<String>::new(),
            "run folders left behind"
        );
        assert_eq!(
            self.leftover_guests(),
            Vec::<String>::new(),
            "warm guests left behind"
        );
    }
}

impl Drop for Scratch {
    /// A warm guest outlives everything else a test made (its launcher is a daemon): one left
    /// here is stopped, and fails a test that otherwise passed.
    fn drop(&mut self) {
        let left = self.leftover_guests();
        if left.is_empty() {
            return;
        }
        for name in &left {
            let stop = sekexe(self, ["stop", name]).timeout(Duration::from_secs(40));
            // During a panic a second one would abort the whole test binary.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stop.run()));
        }
        for pid in launcher_pids(self) {
            kill(pid, libc::SIGKILL);
        }
        if !std::thread::panicking() {
            panic!("warm guests left running: {left:?}");
        }
    }
}

pub fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

/// Writes an executable script (for SEKEXE_INIT, a fake kernel...) into `dir`.
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// A folder the guest sees at the same path from the very start of boot (not under /dev,
/// /tmp, /run or /var/tmp, which the guest covers): for init scripts and victim files.
pub fn guest_visible_dir(prefix: &str) -> tempfile::TempDir {
    let base = workspace().join("target/test-visible");
    std::fs::create_dir_all(&base).unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&base)
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Every path beneath `dir` (itself first), not following links.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A tiny root file system: static busybox and its applets, the folders a guest needs, and a
/// command that exists only there. Readable by everyone.
pub fn busybox_root(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for d in ["bin", "proc", "dev", "run", "sys", "tmp", "etc"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .expect("busybox-static (scripts/setup --tests installs it)");
    for applet in ["sh", "ls", "cat", "echo", "id", "mount", "chroot", "true"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(root.join("etc/os-release"), "NAME=\"sekexe test root\"\n").unwrap();
    script(
        &root.join("bin"),
        "only-in-this-root",
        "#!/bin/sh\necho found in the root\n",
    );
    for p in walk(&root) {
        let m = std::fs::symlink_metadata(&p).unwrap();
        if !m.file_type().is_symlink() {
            let mode = if m.is_dir() || m.permissions().mode() & 0o100 != 0 {
                0o755
            } else {
                0o644
            };
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }
    root
}

/// [`busybox_root`] as a tarball for `docker import` (readable by everyone), on a host with
/// dockerd for the guest to run.
pub fn docker_image_tarball(dir: &Path) -> PathBuf {
    let root = busybox_root(dir);
    let tarball = dir.join("image.tar");
    let tar = std::process::Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tarball)
        .arg(".")
        .status()
        .unwrap();
    assert!(tar.success());
    std::fs::set_permissions(&tarball, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(
        Path::new("/usr/sbin/dockerd").exists(),
        "docker.io is missing: scripts/setup --tests installs it"
    );
    tarball
}

/// Bytes that are hard to pass through shells and kernel command lines.
pub fn awkward_args() -> Vec<Vec<u8>> {
    vec![
        b"two words".to_vec(),
        b"".to_vec(),
        b"'single' \"double\" `back` $HOME \\ ;|&".to_vec(),
        b"new\nline\ttab".to_vec(),
        "unicode: \u{e9}\u{3b1}\u{1f600}".as_bytes().to_vec(),
        b"\xff\xfe not utf-8".to_vec(),
        b"--".to_vec(),
        b"-c".to_vec(),
        b"key=value.with.dots".to_vec(),
    ]
}
