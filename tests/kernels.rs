//! Kernels and boot debugging: `kernel check`, `kernel list`, `--kernel-arg`, `--full-boot`,
//! `--debug`, `--debug-shell` and `doctor`, on the kernel under test.

use std::time::Duration;

use sekexe_tests::*;

fn kernel_under_test() -> String {
    test_kernel()
        .map(|k| k.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/usr/bin/linux.uml".into())
}

#[test]
fn kernel_check_passes_on_the_kernel_under_test() {
    let s = Scratch::new();
    let k = kernel_under_test();
    let out = run(&s, &["kernel", "check", &k]);
    let text = out.ok();
    assert!(text.contains(&format!("kernel: {k}")), "{text}");
    for feature in [
        "hostfs",
        "proc",
        "sysfs",
        "tmpfs",
        "devtmpfs",
        "unix98 ptys",
        "console channels",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("  ok ") && l.contains(feature)),
            "{feature} not ok:\n{text}"
        );
    }
    assert!(!text.contains("MISSING"), "{text}");
    assert!(text.contains("boot time:"), "{text}");
    // Whatever the kernel, the report says about the slow initcalls.
    assert!(text.contains("slow"), "{text}");
}

#[test]
fn kernel_check_refuses_what_is_not_a_kernel() {
    let s = Scratch::new();
    let out = run(&s, &["kernel", "check", "/bin/true"]);
    assert_eq!(out.code, 125);
    assert!(
        out.stderr_str().contains("not a User Mode Linux kernel"),
        "{out:?}"
    );
    let out = run(&s, &["kernel", "check", "/usr"]);
    assert_eq!(out.code, 125);
    assert!(out.stderr_str().contains("directory"), "{out:?}");
}

#[test]
fn kernel_list_names_a_default() {
    let s = Scratch::new();
    let out = sekexe(&s, ["kernel", "list"])
        .env_remove("SEKEXE_KERNEL")
        .run();
    let text = out.ok();
    assert!(
        text.lines().next().unwrap_or("").ends_with("(default)"),
        "{text}"
    );
    assert!(text.contains("/usr/bin/linux.uml"), "{text}");
}

#[test]
fn debug_shows_kernel_lines_steps_and_a_timeline_on_stderr_only() {
    let s = Scratch::new();
    let out = run(&s, &["run", "--debug", "--", "printf", "exact\\n"]);
    assert_eq!(out.code, 0);
    assert_eq!(out.stdout, b"exact\n", "stdout must stay the command's own");
    let err = out.stderr_str();
    assert!(err.lines().any(|l| l.starts_with("[kernel] ")), "{err}");
    assert!(
        err.contains("[init]") && err.contains("mounted proc on /proc"),
        "{err}"
    );
    for phase in [
        "kernel boot:",
        "guest-init setup:",
        "command and cleanup:",
        "power-off:",
    ] {
        assert!(err.contains(phase), "{phase} missing:\n{err}");
    }
}

#[test]
fn a_user_without_a_home_calibrates_the_delay_loop_once() {
    // Calibrating takes a good part of a boot; a user with no writable home (HOME is
    // /nonexistent for the unprivileged test user) keeps the value in the private run base.
    let s = Scratch::for_user(if is_root() { Some(NOBODY) } else { None });
    let line = |out: &Output| {
        out.stderr_str()
            .lines()
            .find(|l| l.starts_with("[sekexe] command line: "))
            .unwrap_or_default()
            .to_string()
    };
    let homeless_run = || {
        let out = sekexe(&s, ["run", "--debug", "--", "true"])
            .env("HOME", "/nonexistent")
            .env_remove("XDG_CACHE_HOME")
            .env_remove("SEKEXE_CACHE")
            .run();
        assert_eq!(out.code, 0, "{out:?}");
        out
    };
    let first = homeless_run();
    let second = homeless_run();
    assert!(!line(&first).contains(" lpj="), "{}", line(&first));
    assert!(line(&second).contains(" lpj="), "{}", line(&second));
    s.assert_clean();
}

#[test]
fn kernel_args_reach_the_kernel_and_full_boot_skips_nothing() {
    let s = Scratch::new();
    let out = run(
        &s,
        &[
            "run",
            "--kernel-arg",
            "sekexe_test_marker=1",
            "--",
            "cat",
            "/proc/cmdline",
        ],
    );
    assert!(out.ok().contains("sekexe_test_marker=1"), "{out:?}");

    let check = run(&s, &["kernel", "check", &kernel_under_test()]).ok();
    let has_slow = check.contains("skipped  slow initcalls");
    let default = run(&s, &["run", "--", "cat", "/proc/cmdline"]).ok();
    assert_eq!(
        default.contains("initcall_blacklist="),
        has_slow,
        "{default}"
    );
    let full = run(&s, &["run", "--full-boot", "--", "cat", "/proc/cmdline"]).ok();
    assert!(!full.contains("initcall_blacklist="), "{full}");

    let out = run(&s, &["run", "--kernel-arg", "mem=1G", "--", "true"]);
    assert_eq!(out.code, 125);
    assert!(out.stderr_str().contains("use --mem"), "{out:?}");
}

#[test]
fn debug_shell_opens_after_a_failure_and_keeps_the_status() {
    let s = Scratch::new();
    let dir = s.path().to_path_buf();
    let script = format!(
        "cd {d}; {run}; echo $? > exit.status; echo SEKEXE-DONE",
        d = sh_quote(&dir.to_string_lossy()),
        run = sekexe_shell_command(&s, "run --debug-shell -- sh -c 'echo failing; exit 3'"),
    );
    let t = Tmux::start(&script, 100, 30);
    t.wait_text("sh exited with status 3");
    t.wait_text("[sekexe debug-shell] #");
    t.line("echo inside-$((20+22)); stty size");
    t.wait_text("inside-42");
    t.wait_text("30 100");
    t.line("exit");
    t.wait_text("SEKEXE-DONE");
    let code = std::fs::read_to_string(dir.join("exit.status")).unwrap();
    assert_eq!(code.trim(), "3");
    drop(t);
    s.assert_clean();
}

#[test]
fn debug_shell_is_not_opened_when_all_goes_well() {
    let s = Scratch::new();
    let out = sekexe(&s, ["run", "--debug-shell", "--", "echo", "fine"])
        .timeout(Duration::from_secs(60))
        .run();
    assert_eq!(out.ok(), "fine\n");
    assert!(!out.stderr_str().contains("debug-shell"));
}

#[test]
fn doctor_passes_here_and_names_a_noexec_tmpdir() {
    let s = Scratch::new();
    let out = run(&s, &["doctor"]);
    let text = out.ok();
    assert!(
        text.contains("test run") && !text.contains("FAIL"),
        "{text}"
    );
    // The helper --net user really uses is here, so the network line is not a warning.
    assert!(
        text.lines()
            .any(|l| l.starts_with("ok") && l.contains("slirp4netns found")),
        "{text}"
    );

    assert!(
        is_root(),
        "this test mounts a noexec tmpfs: run the suite as root (CI does)"
    );
    let mnt = s.path().join("noexec");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "noexec,size=64m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(mounted.success());
    let out = sekexe(&s, ["doctor"]).env("TMPDIR", &mnt).run();
    let _ = std::process::Command::new("umount").arg(&mnt).status();
    assert_eq!(out.code, 1, "{out:?}");
    let text = out.stdout_str();
    let line = text
        .lines()
        .find(|l| l.starts_with("FAIL"))
        .unwrap_or_default();
    assert!(line.contains("noexec") && line.contains("TMPDIR"), "{text}");
}

#[test]
fn a_relative_kernel_path_is_taken_from_the_current_directory() {
    // The kernel process starts in its own scratch folder: the path must be resolved first.
    let s = Scratch::new();
    let kernel = test_kernel()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/linux.uml".into());
    let dir = kernel.parent().unwrap();
    let name = format!("./{}", kernel.file_name().unwrap().to_str().unwrap());
    let out = sekexe(
        &s,
        [
            "run", "--kernel", &name, "--net", "none", "--", "echo", "ok",
        ],
    )
    .cwd(dir)
    .run();
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout_str(), "ok\n");
    s.assert_clean();
}

#[test]
fn the_kernel_built_for_every_user_is_everyones_default() {
    // scripts/build-kernel as root (scripts/test does it) builds into /var/cache/sekexe: a
    // user without a cache of their own, root or not, boots it before the stock kernel.
    let system = std::path::Path::new("/var/cache/sekexe/kernels/linux");
    if !is_root() && !system.is_file() {
        skipped("the kernel built for every user (scripts/test builds it as root)");
        return;
    }
    assert!(
        system.is_file(),
        "no {} to find: run scripts/test as root (it builds the project's kernel there)",
        system.display()
    );
    for user in users() {
        let s = Scratch::for_user(user);
        let out = sekexe(&s, ["kernel", "list"])
            .env_remove("SEKEXE_KERNEL")
            .env_remove("SEKEXE_CACHE")
            .env_remove("XDG_CACHE_HOME")
            .env("HOME", "/nonexistent")
            .run();
        let text = out.ok();
        let first = text.lines().next().unwrap_or("");
        assert!(
            first.starts_with("/var/cache/sekexe/kernels/linux ")
                && first.contains("built for every user")
                && first.ends_with("(default)"),
            "{user:?}: {text}"
        );
    }
}

#[test]
fn kernel_build_for_every_user_needs_root_and_returns_the_cached_kernel() {
    // Promise: `sekexe kernel build --system` (the installed tool's way to the project's
    // kernel) runs the same build as scripts/build-kernel, into the system cache, and
    // answers at once with the kernel's path when the cache has it; another user is told
    // that it needs root.
    let out = sekexe(&unprivileged(), ["kernel", "build", "--system"]).run();
    assert_eq!(out.code, 125, "{out:?}");
    assert_eq!(
        out.stderr_str(),
        "sekexe: --system writes /var/cache/sekexe, which needs root: sudo sekexe kernel build --system\n"
    );
    let system = std::path::Path::new("/var/cache/sekexe/kernels/linux");
    if !is_root() || !system.exists() {
        skipped("kernel build --system as root (scripts/test builds the system kernel first)");
        return;
    }
    let s = Scratch::new();
    let out = sekexe(&s, ["kernel", "build", "--system"])
        .timeout(Duration::from_secs(120))
        .run();
    let built = out.ok();
    assert_eq!(
        std::path::Path::new(built.trim_end())
            .canonicalize()
            .unwrap(),
        system.canonicalize().unwrap(),
        "{out:?}"
    );
    s.assert_clean();
}
