//! Faults: whatever breaks (the launcher, the kernel, guest-init, the run folder, host
//! storage, too little memory), the run ends within seconds with exit 125 and a message
//! that names the cause, and nothing is left behind.

use std::time::Duration;

use sekexe_tests::*;

const QUICK: Duration = Duration::from_secs(60);

fn assert_fails_with(out: &Output, cause: &str) {
    assert_fails_with_one_of(out, &[cause]);
}

/// Exit 125 and a first line (after warnings) naming one of `causes`.
fn assert_fails_with_one_of(out: &Output, causes: &[&str]) {
    assert_eq!(out.code, 125, "{out:?}");
    let err = out.stderr_str();
    let first = err
        .lines()
        .find(|l| !l.starts_with("sekexe: warning:"))
        .unwrap_or("")
        .to_string();
    assert!(
        causes.iter().any(|c| first.contains(c)),
        "expected one of {causes:?} in the first line: {out:?}"
    );
}

/// A SIGKILLed launcher's kernel and helpers must be gone within 2 s.
fn assert_processes_gone_within_2s(s: &Scratch, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while !s.leftover_processes().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: {:?}",
            s.leftover_processes()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_sigkilled_launcher_leaves_no_process_and_the_next_run_tidies_up() {
    for user in users() {
        let s = Scratch::for_user(user);
        let mut r = sekexe(&s, ["run", "--", "sh", "-c", "echo up; sleep 1000"]).spawn();
        r.read_until(b"up\n");
        r.signal(libc::SIGKILL);
        let _ = r.child.wait();
        assert_processes_gone_within_2s(&s, "kernel outlived its launcher");
        assert_eq!(s.leftover_runs().len(), 1, "the killed launcher's folder");
        assert_eq!(sekexe(&s, ["run", "--", "true"]).run().code, 0);
        s.assert_clean();
    }
}

#[test]
fn a_kernel_whose_shutdown_hangs_still_dies_with_its_launcher() {
    // A stopped kernel cannot run UML's SIGTERM handler, as one hanging in its exit calls
    // would not finish it: the launcher's sentinel kills it after its half-second grace.
    let s = Scratch::new();
    let mut r = sekexe(&s, ["run", "--", "sh", "-c", "echo up; sleep 1000"]).spawn();
    r.read_until(b"up\n");
    let kernel = kernel_pid(&s, r.pid()).expect("the kernel process");
    kill(kernel, libc::SIGSTOP);
    r.signal(libc::SIGKILL);
    let _ = r.child.wait();
    assert_processes_gone_within_2s(&s, "a stopped kernel outlived its launcher");
    let next = sekexe(&s, ["run", "--", "true"]).run();
    assert_eq!(next.code, 0, "the next run: {next:?}");
    s.assert_clean();
}

#[test]
fn the_kernel_killed_or_crashing_from_outside() {
    // UML takes SIGSEGV for a page fault it cannot resolve, and panics saying so; the words
    // depend on whether it was running kernel code or a guest process's at the time.
    for (sig, causes) in [
        (libc::SIGKILL, &["SIGKILL"][..]),
        (
            libc::SIGSEGV,
            &["Kernel mode fault", "Segfault with no mm"][..],
        ),
    ] {
        let s = Scratch::new();
        let mut r = sekexe(&s, ["run", "--", "sh", "-c", "echo up; sleep 1000"])
            .timeout(QUICK)
            .spawn();
        r.read_until(b"up\n");
        let kernel = kernel_pid(&s, r.pid()).expect("the kernel process");
        kill(kernel, sig);
        let out = r.finish();
        assert_fails_with_one_of(&out, causes);
        s.assert_clean();
    }
}

#[test]
fn guest_init_dying_is_named() {
    let s = Scratch::new();
    let out = sekexe(&s, ["run", "--", "true"])
        .env("SEKEXE_INIT", "/bin/false")
        .timeout(QUICK)
        .run();
    assert_fails_with(&out, "PID 1");
    s.assert_clean();
}

#[test]
fn the_guest_panicking_is_named() {
    let s = Scratch::new();
    let out = sekexe(
        &s,
        ["run", "--", "sh", "-c", "echo c > /proc/sysrq-trigger"],
    )
    .timeout(QUICK)
    .run();
    assert_fails_with(&out, "sysrq");
    s.assert_clean();
}

#[test]
fn the_run_folder_disappearing_mid_run() {
    // After boot the run needs its folder only for bulk stdin: a small one still works (the
    // status comes back on the channel); a large one ends the run and says why.
    for (stdin, expect) in [(&b"go\n"[..], 0), (&[b'x'; 3 << 20][..], 125)] {
        let s = Scratch::new();
        let mut r = sekexe(
            &s,
            [
                "run",
                "--",
                "sh",
                "-c",
                "echo up; cat >/dev/null; echo done",
            ],
        )
        .timeout(QUICK)
        .spawn();
        r.read_until(b"up\n");
        let runs = s.leftover_runs();
        std::fs::remove_dir_all(s.user_base().join(&runs[0])).unwrap();
        // The launcher may end before it has taken it all.
        r.write_stdin_lossy(stdin);
        r.close_stdin();
        let out = r.finish();
        if expect == 0 {
            assert_eq!(out.code, 0, "{out:?}");
            assert_eq!(out.stdout_str(), "done\n", "{out:?}");
        } else {
            assert_fails_with(&out, "the folder was removed during the run");
        }
        s.assert_clean();
    }
}

#[test]
fn too_little_room_for_guest_memory() {
    assert!(
        is_root(),
        "this test mounts small tmpfs folders: run the suite as root (CI does)"
    );
    let s = Scratch::new();
    let small = s.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=200m", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(mounted.success());
    // Guest memory goes to TMPDIR only without a private tmpfs for the kernel (forced here).
    // Known at the start: one line, nothing created.
    let out = sekexe(&s, ["run", "--mem", "512M", "--", "true"])
        .env("TMPDIR", &small)
        .env("SEKEXE_SCRATCH", "folder")
        .run();
    assert_fails_with(&out, "less than --mem");
    assert_eq!(out.stderr_str().lines().count(), 1, "{out:?}");
    // Running out mid-run: the host folder fills while the guest uses its memory.
    let filler = small.join("filler");
    let mut r = sekexe(
        &s,
        [
            "run",
            "--mem",
            "192M",
            "--",
            "sh",
            "-c",
            "echo up; read x; dd if=/dev/zero of=/dev/shm/x bs=1M count=150",
        ],
    )
    .env("TMPDIR", &small)
    .env("SEKEXE_SCRATCH", "folder")
    .timeout(QUICK)
    .spawn();
    r.read_until(b"up\n");
    let filled = std::process::Command::new("fallocate")
        .args(["-l", "150m"])
        .arg(&filler)
        .status()
        .unwrap();
    assert!(filled.success());
    r.write_stdin(b"go\n");
    let out = r.finish();
    let _ = std::fs::remove_file(&filler);
    assert_fails_with(&out, "is full");
    let leftovers = std::fs::read_dir(small.join("sekexe-0"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("run-"))
                .count()
        })
        .unwrap_or(0);
    let _ = std::process::Command::new("umount").arg(&small).status();
    assert_eq!(leftovers, 0);
}

#[test]
fn too_little_memory_to_boot() {
    let s = Scratch::new();
    let out = sekexe(&s, ["run", "--mem", "16M", "--", "true"]).run();
    assert_fails_with(&out, "too small");
    assert_eq!(out.stderr_str().lines().count(), 1);
    s.assert_clean();
}

#[test]
fn processes_the_kernel_leaves_outside_its_group_are_killed() {
    // Promise: no process is left behind, even one a hostile kernel process started in a
    // session of its own (out of reach of a kill of the kernel's group): the launcher is its
    // subreaper and sweeps it once the kernel is gone.
    let fake = env!("CARGO_BIN_EXE_fake-kernel");
    for user in users() {
        let s = Scratch::for_user(user);
        let out = sekexe(&s, ["run", "--kernel", fake, "--", "true"])
            .timeout(QUICK)
            .run();
        assert_fails_with(&out, "without reporting");
        s.assert_clean();
    }
}

/// Builds a chroot of the host's / in a plain folder of `base` (its own mount namespace):
/// every top-level folder bound in with what is mounted beneath it, links copied; then
/// executes "$@" in it.
const ENTER_CHROOT: &str = r#"set -e
R="$BASE/root"
mount -t tmpfs none "$BASE"
mkdir "$R"
for e in /*; do
  n=${e#/}
  if [ -L "$e" ]; then cp -P "$e" "$R/$n"
  elif [ -d "$e" ]; then
    mkdir "$R/$n"
    mount --rbind "$e" "$R/$n"
  fi
done
exec chroot "$R" "$@"
"#;

#[test]
fn a_root_that_is_not_a_mount_point_is_named_with_the_way_out() {
    // A chroot of a plain folder (some build sandboxes): the sandbox's mount layer cannot
    // work there; sekexe says so and how to get past it, and --no-sandbox runs.
    assert!(
        is_root(),
        "this test makes a chroot in a mount namespace: run the suite as root (CI does)"
    );
    let base = tempfile::tempdir_in("/run").unwrap();
    for (extra, code) in [(None, 125), (Some("--no-sandbox"), 0)] {
        let s = Scratch::new();
        let mut args = vec!["run", "--net", "none"];
        args.extend(extra);
        args.extend(["--", "echo", "in the guest"]);
        let out = sekexe(&s, args)
            .wrapped([
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                ENTER_CHROOT,
                "sh",
            ])
            .env("BASE", base.path())
            .timeout(QUICK)
            .run();
        if code == 125 {
            assert_fails_with(&out, "needs / to be a mount point");
            assert!(out.stderr_str().contains("--no-sandbox"), "{out:?}");
            assert_eq!(out.stderr_str().lines().count(), 1, "{out:?}");
        } else {
            assert_eq!(out.code, 0, "{out:?}");
            assert_eq!(out.stdout_str(), "in the guest\n");
        }
        s.assert_clean();
    }
}
