//! The core run path through `sekexe run` (the cases shared with exec are in core_cases.rs),
//! and what only a run has: a guest that fails to boot (`start` fails instead), leftovers
//! ended with the guest (a warm guest keeps them, and an exec waits for output they hold
//! open, as the README says), the run folder, --keep, and TMPDIR (where exec finds its
//! guest). Every test boots the real kernel.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use sekexe_tests::*;

#[path = "core_cases.rs"]
mod cases;

#[test]
fn leftovers_are_terminated_at_the_end_of_a_run() {
    let s = Scratch::new();
    // Leftover processes do not keep the guest alive, even ones that ignore SIGTERM.
    let started = Instant::now();
    let out = run(
        &s,
        &[
            "run",
            "--",
            "sh",
            "-c",
            "sleep 1000 & (trap '' TERM; sleep 1000) & echo started",
        ],
    );
    assert_eq!(out.ok(), "started\n");
    // guest-init kills what ignores SIGTERM after a short grace; a leftover that kept the
    // guest alive would hold it for 1000 s.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    s.assert_clean();
}

#[test]
fn a_failing_guest_is_125_with_the_kernel_console() {
    let s = Scratch::new();
    // An init that is not guest-init: it exits at once, the kernel panics.
    let out = sekexe(&s, ["run", "--", "true"])
        .env("SEKEXE_INIT", "/bin/true")
        .run();
    assert_eq!(out.code, 125);
    let err = out.stderr_str();
    assert!(err.contains("without reporting"), "{err}");
    assert!(
        err.contains("last kernel console lines") && err.contains("Kernel panic"),
        "{err}"
    );
    let log = err
        .lines()
        .find_map(|l| l.strip_prefix("sekexe: full kernel log: "))
        .expect("log path");
    let log = log.split(" (").next().unwrap();
    assert!(
        std::fs::read_to_string(log)
            .unwrap()
            .contains("Kernel panic"),
        "{log}"
    );
    s.assert_clean();
}

#[test]
fn nothing_is_left_behind_in_the_default_tmpdir_or_home() {
    let s = Scratch::new();
    let home = s.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let out = sekexe(&s, ["run", "--", "true"])
        .default_tmpdir()
        .env("HOME", &home)
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr_str());
    assert!(!home.join(".uml").exists(), "~/.uml was created");
    // Without TMPDIR, runs live on /dev/shm (a tmpfs, so guest memory stays in RAM).
    // SAFETY: geteuid has no preconditions.
    let base =
        Path::new("/dev/shm").join(format!("sekexe-{}", rustix::process::geteuid().as_raw()));
    let mine: Vec<_> = std::fs::read_dir(&base)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("run-"))
                .collect()
        })
        .unwrap_or_default();
    // Other runs may be in flight in the shared folder; none may be older than a minute.
    for p in mine {
        let age = p
            .metadata()
            .and_then(|m| m.modified())
            .map(|t| t.elapsed().unwrap_or_default());
        assert!(
            age.map(|a| a < Duration::from_secs(60)).unwrap_or(true),
            "stale {}",
            p.display()
        );
    }
}

#[test]
fn keep_leaves_the_run_folder_and_says_where() {
    let s = Scratch::new();
    let out = run(&s, &["run", "--keep", "--", "true"]);
    assert_eq!(out.code, 0);
    let err = out.stderr_str();
    let path = err.trim().rsplit(' ').next().unwrap();
    assert!(err.contains("kept the run folder"), "{err}");
    assert!(Path::new(path).join("request").is_file(), "{err}");
    assert!(Path::new(path).join("status").is_file(), "{err}");
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the run folder is private");
    // A later run does not remove a kept folder.
    assert_eq!(run(&s, &["run", "--", "true"]).code, 0);
    assert!(Path::new(path).is_dir());
}

#[test]
fn a_tmpdir_that_cannot_be_used_is_a_clear_error() {
    let s = Scratch::for_user(Some(NOBODY));
    // Not writable for the user.
    let locked = s.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
    if is_root() {
        chown(&locked, NOBODY);
    }
    let out = sekexe(&s, ["run", "--", "true"])
        .env("TMPDIR", &locked)
        .run();
    assert_eq!(out.code, 125);
    assert!(
        out.stderr_str().contains("TMPDIR") && out.stderr_str().contains("writable"),
        "{}",
        out.stderr_str()
    );
    assert_eq!(out.stderr_str().lines().count(), 1);

    let out = sekexe(&s, ["run", "--", "true"])
        .env("TMPDIR", "/no/such/tmp")
        .run();
    assert_eq!(out.code, 125);
    assert!(out.stderr_str().contains("TMPDIR"), "{}", out.stderr_str());
}

#[test]
fn a_noexec_tmpdir_is_a_clear_error() {
    assert!(
        is_root(),
        "this test mounts a noexec tmpfs: run the suite as root (CI does)"
    );
    let s = Scratch::new();
    let mnt = s.path().join("noexec");
    std::fs::create_dir(&mnt).unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "noexec,size=64m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(status.success());
    let out = sekexe(&s, ["run", "--", "true"]).env("TMPDIR", &mnt).run();
    let _ = std::process::Command::new("umount").arg(&mnt).status();
    assert_eq!(out.code, 125);
    let err = out.stderr_str();
    assert!(err.contains("noexec") && err.contains("TMPDIR"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}
