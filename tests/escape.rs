//! Guest root tries to get out; the host must be unchanged. Each attack runs as the
//! unprivileged user (the main use: only the sandbox stops it, since the files belong to that
//! user) and, when the suite runs as root, as root too (where the read-only mount namespace
//! and reduced capabilities add to it).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sekexe_tests::*;

/// Files the guest can see (not under a guest tmpfs) and the host user owns: only sekexe's
/// confinement keeps the guest from changing them.
struct Victim {
    dir: tempfile::TempDir,
    uid: u32,
}

#[derive(Debug, PartialEq)]
struct Snapshot(Vec<(String, u32, i64, Vec<u8>)>);

impl Victim {
    fn new(uid: u32) -> Victim {
        let base = workspace().join("target/escape-victims");
        std::fs::create_dir_all(&base).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        let dir = tempfile::Builder::new()
            .prefix("victim-")
            .tempdir_in(&base)
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.path().join("file"), "original\n").unwrap();
        std::fs::set_permissions(
            dir.path().join("file"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        if is_root() {
            for p in [
                dir.path().to_path_buf(),
                dir.path().join("file"),
                dir.path().join("sub"),
            ] {
                chown(&p, uid);
            }
        }
        Victim { dir, uid }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn snapshot(&self) -> Snapshot {
        let mut entries = Vec::new();
        for e in walk(self.path()) {
            let m = std::fs::symlink_metadata(&e).unwrap();
            let data = if m.is_file() {
                std::fs::read(&e).unwrap()
            } else {
                Vec::new()
            };
            entries.push((e.display().to_string(), m.mode(), m.mtime(), data));
        }
        entries.sort();
        Snapshot(entries)
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
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

/// The host users to attack as.
fn users() -> Vec<Option<u32>> {
    if is_root() {
        vec![Some(NOBODY), None]
    } else {
        vec![None]
    }
}

/// Runs `script` in the guest (with $V set to the victim folder) as each host user, and checks
/// that the victim is unchanged; returns the outputs.
fn attack(script: &str) -> Vec<Output> {
    let mut outs = Vec::new();
    for user in users() {
        let s = Scratch::for_user(user);
        // SAFETY: geteuid has no preconditions.
        let v = Victim::new(user.unwrap_or_else(|| unsafe { libc::geteuid() }));
        let before = v.snapshot();
        let out = sekexe(
            &s,
            [
                "run",
                "-e",
                &format!("V={}", v.path().display()),
                "--",
                "sh",
                "-c",
                script,
            ],
        )
        .timeout(Duration::from_secs(120))
        .run();
        assert_eq!(
            v.snapshot(),
            before,
            "the host changed (as uid {}): {out:?}",
            v.uid
        );
        s.assert_clean();
        outs.push(out);
    }
    outs
}

#[test]
fn remount_root_read_write_and_write() {
    for out in attack(
        "mount -o remount,rw / || exit 90
         echo pwned > $V/file; echo pwned >> $V/file; echo pwned > $V/new; mkdir $V/newdir
         rm -f $V/file; mv $V/file $V/moved; truncate -s 0 $V/file; exit 0",
    ) {
        assert_eq!(out.code, 0, "{out:?}");
    }
}

#[test]
fn mount_hostfs_elsewhere_and_through_dotdot() {
    for out in attack(
        "x=$(sed 's/.*sekexe_run=\\([^ ]*\\).*/\\1/' /proc/cmdline)
         mkdir -p /tmp/a /tmp/b /tmp/c
         mount -t hostfs none /tmp/a -o \"$V\" || exit 90
         echo pwned > /tmp/a/file; echo pwned > /tmp/a/new; chmod 777 /tmp/a/file; touch -d 2001-01-01 /tmp/a/file
         mount -t hostfs none /tmp/b -o \"$x/../../../../../../..$V\" || exit 91
         echo pwned > /tmp/b/file; echo pwned > /tmp/b/new
         mount -t hostfs none /tmp/c -o / && echo pwned > /tmp/c$V/file
         exit 0",
    ) {
        assert_eq!(out.code, 0, "{out:?}");
    }
}

#[test]
fn write_through_proc_self_root() {
    for out in attack(
        "mount -o remount,rw /
         echo pwned > /proc/self/root$V/file; echo pwned > /proc/1/root$V/file
         cd /proc/self/root$V && echo pwned > new; exit 0",
    ) {
        assert_eq!(out.code, 0, "{out:?}");
    }
}

#[test]
fn write_through_links_from_the_writable_run_folder() {
    // The run folder, mounted at /run/sekexe, is the one host folder the guest may write.
    for out in attack(
        "cd /run/sekexe || exit 90
         ln -s $V/file symlink; echo pwned > symlink; echo pwned >> symlink
         ln -s $V dirlink; echo pwned > dirlink/new
         ln $V/file hardlink && echo pwned > hardlink
         mount -o remount,rw / ; ln $V/file hardlink2 && echo pwned > hardlink2
         mv $V/file ./stolen; exit 0",
    ) {
        assert_eq!(out.code, 0, "{out:?}");
    }
}

#[test]
fn filling_the_guests_disks_ends_with_a_status() {
    for out in attack(
        "dd if=/dev/zero of=/tmp/fill bs=1M 2>/dev/null; echo tmp=$?; rm /tmp/fill
         dd if=/dev/zero of=/dev/shm/fill bs=1M 2>/dev/null; echo shm=$?
         exit 3",
    ) {
        assert_eq!(out.code, 3, "{out:?}");
        assert_eq!(out.stdout_str(), "tmp=1\nshm=1\n", "{out:?}");
    }
}

#[test]
fn reboot_and_halt_end_the_run_with_125() {
    for script in [
        "python3 -c 'import ctypes; ctypes.CDLL(None).reboot(0x1234567)'; sleep 30",
        "echo b > /proc/sysrq-trigger; sleep 30",
        "echo o > /proc/sysrq-trigger; sleep 30",
    ] {
        for out in attack(script) {
            assert_eq!(out.code, 125, "{script}: {out:?}");
            assert!(
                out.stderr_str().contains("halted or rebooted"),
                "{script}: {out:?}"
            );
        }
    }
}

#[test]
fn crashing_the_kernel_ends_the_run_with_125() {
    for out in attack("echo c > /proc/sysrq-trigger; sleep 30") {
        assert_eq!(out.code, 125, "{out:?}");
        assert!(out.stderr_str().contains("sysrq"), "{out:?}");
    }
}

#[test]
fn guest_init_cannot_be_killed() {
    for out in attack("kill -9 1; kill -KILL 1; kill -SEGV 1; kill -STOP 1; sleep 1; echo alive") {
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(out.stdout_str(), "alive\n");
    }
}

#[test]
fn a_fork_bomb_leaves_the_host_responsive_and_ends_with_a_status() {
    let s = Scratch::new();
    let mut bomb = sekexe(
        &s,
        [
            "run",
            "--timeout",
            "8s",
            "--kill-after",
            "2s",
            "--",
            "sh",
            "-c",
            "f(){ f|f& }; echo armed; f; sleep 60",
        ],
    )
    .timeout(Duration::from_secs(120))
    .spawn();
    bomb.read_until(b"armed\n");
    // The host can still start programs while the guest multiplies.
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(500));
        let ok = std::process::Command::new("/bin/true")
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
    let out = bomb.finish();
    assert!(out.code == 124 || out.code == 125, "{out:?}");
    s.assert_clean();
}

#[test]
fn another_host_user_cannot_reach_the_run() {
    assert!(
        is_root(),
        "this test switches between host users: run the suite as root (CI does)"
    );
    const INTRUDER: u32 = 1; // daemon
    let s = Scratch::for_user(Some(NOBODY));
    let mut r = sekexe(&s, ["run", "--", "sh", "-c", "echo up; sleep 60"]).spawn();
    r.read_until(b"up\n");
    let runs = s.leftover_runs();
    assert_eq!(runs.len(), 1);
    let run = s.user_base().join(&runs[0]);
    let mconsole = std::fs::read_dir(run.join("uml"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path()
        .join("mconsole");
    assert!(mconsole.exists(), "{}", mconsole.display());
    // As another unprivileged user: no request, no status, no mconsole.
    let probe = format!(
        "cat {req} 2>/dev/null && echo READ; ls {run} 2>/dev/null && echo LISTED; \
         python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.connect(sys.argv[1]); print(\"CONNECTED\")' {mc} 2>/dev/null; true",
        req = run.join("request").display(),
        run = run.display(),
        mc = mconsole.display()
    );
    let out = std::process::Command::new("setpriv")
        .args([
            &format!("--reuid={INTRUDER}"),
            &format!("--regid={INTRUDER}"),
            "--clear-groups",
            "--",
            "sh",
            "-c",
            &probe,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("READ") && !text.contains("LISTED") && !text.contains("CONNECTED"),
        "{text}"
    );
    r.signal(libc::SIGTERM);
    let _ = r.finish();
    s.assert_clean();
}
