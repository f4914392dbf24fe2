//! The core run path, as both `sekexe run` and `start` + `exec` must give it: exact argv,
//! environment, working directory, separate byte-exact live streams, stdin with its end, exit
//! statuses, guest setup, read-only host, unprivileged use, and clear errors. Included by
//! core.rs (through run) and core_exec.rs (through exec), whose `sekexe` and `run` these
//! tests call. Every test boots the real kernel.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::*;

#[test]
fn argv_arrives_exactly_as_given() {
    let s = Scratch::new();
    let mut args: Vec<std::ffi::OsString> =
        vec!["run".into(), "--".into(), "printf".into(), "[%s]\\n".into()];
    let awkward = awkward_args();
    args.extend(
        awkward
            .iter()
            .map(|a| std::ffi::OsStr::from_bytes(a).to_os_string()),
    );
    let out = sekexe(&s, &args).run();
    let mut expected = Vec::new();
    for a in &awkward {
        expected.extend_from_slice(b"[");
        expected.extend_from_slice(a);
        expected.extend_from_slice(b"]\n");
    }
    assert_eq!(out.code, 0, "{}", out.stderr_str());
    assert_eq!(out.stdout, expected);
    s.assert_clean();
}

#[test]
fn argv_up_to_the_hosts_arg_max() {
    let s = Scratch::new();
    // SAFETY: sysconf has no preconditions.
    let arg_max = unsafe { libc::sysconf(libc::_SC_ARG_MAX) } as usize;
    // Leave room for the environment and the pointers; each argument stays under the
    // kernel's 128 KiB per-string limit.
    let env_size: usize = std::env::vars_os()
        .map(|(k, v)| k.len() + v.len() + 2 + 8)
        .sum();
    let budget = arg_max - env_size - 64 * 1024;
    let arg = "x".repeat(100_000);
    let count = budget / (arg.len() + 1 + 8);
    let mut args: Vec<String> = vec![
        "run".into(),
        "--".into(),
        "sh".into(),
        "-c".into(),
        "echo $#; echo ${#1}".into(),
        "sh".into(),
    ];
    args.extend(std::iter::repeat_n(arg, count));
    let out = sekexe(&s, &args).run();
    assert_eq!(out.ok(), format!("{count}\n100000\n"));
    assert!(
        count * 100_000 > arg_max / 2,
        "the test should use most of ARG_MAX"
    );
}

#[test]
fn shell_string_mode_like_the_original() {
    let s = Scratch::new();
    let out = run(&s, &["run", "-c", "echo \"$0:$1\"; exit 42", "zero", "one"]);
    assert_eq!(out.code, 42);
    assert_eq!(out.stdout_str(), "zero:one\n");
}

#[test]
fn environment_is_passed_overridden_and_cleared() {
    let s = Scratch::new();
    let out = sekexe(
        &s,
        [
            "run",
            "-e",
            "OVERRIDE=new",
            "-e",
            "ADDED=a b=c",
            "--",
            "env",
        ],
    )
    .env("FROM_HOST", "host value")
    .env("OVERRIDE", "old")
    .run();
    let env = out.ok();
    assert!(env.lines().any(|l| l == "FROM_HOST=host value"), "{env}");
    assert!(env.lines().any(|l| l == "OVERRIDE=new"), "{env}");
    assert!(env.lines().any(|l| l == "ADDED=a b=c"), "{env}");
    assert!(!env.lines().any(|l| l == "OVERRIDE=old"), "{env}");

    let out = sekexe(&s, ["run", "--clear-env", "-e", "ONLY=1", "--", "env"])
        .env("FROM_HOST", "x")
        .run();
    let mut lines: Vec<String> = out.ok().lines().map(String::from).collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "HOME=/root",
            "ONLY=1",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        ]
    );
}

#[test]
fn working_directory_defaults_to_the_callers_and_can_be_set() {
    let s = Scratch::new();
    let here = s.path().join("my project");
    std::fs::create_dir(&here).unwrap();
    std::fs::write(here.join("marker"), "in the project\n").unwrap();
    // The scratch folder is on /dev/shm, which the guest covers with a fresh tmpfs: the
    // caller's folder must still be there, with its files.
    let out = sekexe(&s, ["run", "--", "sh", "-c", "pwd; cat marker"])
        .cwd(&here)
        .run();
    assert_eq!(out.ok(), format!("{}\nin the project\n", here.display()));

    let out = run(&s, &["run", "-w", "/usr/share", "--", "pwd"]);
    assert_eq!(out.ok(), "/usr/share\n");

    let out = run(&s, &["run", "-w", "/no/such/dir", "--", "pwd"]);
    assert_eq!(out.code, 125);
    assert!(
        out.stderr_str().contains("/no/such/dir") && out.stderr_str().contains("-w DIR"),
        "{}",
        out.stderr_str()
    );
    assert_eq!(out.stderr_str().lines().count(), 1, "{}", out.stderr_str());
    s.assert_clean();
}

#[test]
fn stdout_and_stderr_stay_separate_and_exact() {
    let s = Scratch::new();
    let out = run(
        &s,
        &[
            "run",
            "--",
            "sh",
            "-c",
            "printf 'out\\0\\377'; printf 'err\\n' >&2; printf more",
        ],
    );
    assert_eq!(out.code, 0);
    assert_eq!(out.stdout, b"out\0\xffmore");
    assert_eq!(out.stderr, b"err\n");
}

#[test]
fn output_arrives_while_the_command_still_runs() {
    let s = Scratch::new();
    // The command prints, then waits for input that the test sends only after it has seen
    // the first line: without live streaming this would hang until the timeout.
    let mut r = sekexe(
        &s,
        [
            "run",
            "--",
            "sh",
            "-c",
            "echo first; read x; echo second $x",
        ],
    )
    .spawn();
    r.read_until(b"first\n");
    assert!(r.child.try_wait().unwrap().is_none(), "sekexe ended early");
    r.write_stdin(b"go\n");
    let out = r.finish();
    assert_eq!(out.code, 0);
    assert_eq!(out.stdout_str(), "second go\n");
}

#[test]
fn stdin_is_forwarded_with_its_end() {
    let s = Scratch::new();
    let out = sekexe(&s, ["run", "--", "wc", "-l"])
        .stdin(b"a\nb\n".to_vec())
        .run();
    assert_eq!(out.ok().trim(), "2");
    // /dev/null: the command sees the end at once.
    let started = Instant::now();
    let out = run(&s, &["run", "--", "cat"]);
    assert_eq!(out.ok(), "");
    // A boot and a cat, under a loaded test run; a lost end of stdin hangs until the
    // builder's 90 s timeout instead.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    s.assert_clean();
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut v))
        .unwrap();
    v
}

#[test]
fn eight_mib_of_random_bytes_through_stdout() {
    let s = Scratch::new();
    let data = random_bytes(8 << 20);
    let out = sekexe(&s, ["run", "--", "cat"]).stdin(data.clone()).run();
    assert_eq!(out.code, 0, "{}", out.stderr_str());
    assert!(
        out.stdout == data,
        "stdout differs ({} bytes back)",
        out.stdout.len()
    );
    assert!(out.stderr.is_empty());
}

#[test]
fn eight_mib_of_random_bytes_through_stderr() {
    let s = Scratch::new();
    let data = random_bytes(8 << 20);
    let out = sekexe(&s, ["run", "--", "sh", "-c", "cat >&2"])
        .stdin(data.clone())
        .run();
    assert_eq!(out.code, 0);
    assert!(
        out.stderr == data,
        "stderr differs ({} bytes back)",
        out.stderr.len()
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn a_closed_stdout_ends_the_run_cleanly() {
    let s = Scratch::new();
    let mut r = sekexe(&s, ["run", "--", "yes"]).spawn();
    r.read_until(b"y\n");
    drop(r.child.stdout.take());
    let out = r.finish();
    // As on the host with pipefail: yes dies of SIGPIPE.
    assert_eq!(out.code, 128 + libc::SIGPIPE);
    assert_eq!(out.stderr_str(), "");
    s.assert_clean();
}

#[test]
fn every_exit_status_round_trips() {
    let s = Scratch::new();
    let codes: Vec<u32> = (0..=255).collect();
    parallel(&codes, 4, |code| {
        let out = run(&s, &["run", "--", "sh", "-c", &format!("exit {code}")]);
        assert_eq!(out.code as u32, *code, "{}", out.stderr_str());
        assert!(out.stderr.is_empty(), "exit {code}: {}", out.stderr_str());
    });
    s.assert_clean();
}

#[test]
fn killed_by_signal_n_exits_128_plus_n() {
    let s = Scratch::new();
    for (sig, code) in [("KILL", 137), ("TERM", 143), ("SEGV", 139), ("USR1", 138)] {
        let out = run(&s, &["run", "--", "sh", "-c", &format!("kill -{sig} $$")]);
        assert_eq!(out.code, code, "SIG{sig}: {}", out.stderr_str());
    }
}

#[test]
fn not_found_is_127_and_not_executable_is_126() {
    let s = Scratch::new();
    let out = run(&s, &["run", "--", "no-such-command-xyz"]);
    assert_eq!(out.code, 127);
    assert_eq!(
        out.stderr_str(),
        "sekexe: no-such-command-xyz: command not found\n"
    );

    let out = run(&s, &["run", "--", "/no/such/path"]);
    assert_eq!(out.code, 127);

    // The scratch folder is visible in the guest as the working directory.
    let plain = s.file("plain-file", b"not a program\n");
    let plain = plain.to_str().unwrap();
    let out = sekexe(&s, ["run", "--", plain]).cwd(s.path()).run();
    assert_eq!(out.code, 126);
    assert_eq!(
        out.stderr_str(),
        format!("sekexe: {plain}: cannot execute: Permission denied\n")
    );

    // Found in PATH but not executable: 126 as well, like a shell.
    let out = sekexe(&s, ["run", "--", "plain-file"])
        .env("PATH", s.path())
        .cwd(s.path())
        .run();
    assert_eq!(out.code, 126, "{out:?}");

    let out = run(&s, &["run", "--", "/usr"]);
    assert_eq!(out.code, 126);
    s.assert_clean();
}

#[test]
fn a_command_hidden_by_the_guests_own_tmp_gets_a_hint() {
    // Promise: a script under the host's /tmp, run from elsewhere, is not found in the guest
    // (its /tmp is its own), and the message says so and names the -v that shares it; with
    // that -v it runs.
    let s = unprivileged();
    let dir = tempfile::Builder::new()
        .prefix("sekexe-hint-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = script(dir.path(), "s.sh", "#!/bin/sh\necho ran\n");
    let script = script.to_str().unwrap();
    let folder = dir.path().to_str().unwrap();
    let out = sekexe(&s, ["run", "--", script]).cwd("/").run();
    assert_eq!(out.code, 127, "{out:?}");
    assert_eq!(
        out.stderr_str(),
        format!("sekexe: {script}: command not found (the guest has its own /tmp, which hides the host's {script}: share its folder with -v {folder})\n")
    );
    let out = sekexe(&s, ["run", "-v", folder, "--", script])
        .cwd("/")
        .run();
    assert_eq!(out.ok(), "ran\n");
    // A missing path under /tmp is only not found: no hint about a file that is not there.
    let out = sekexe(&s, ["run", "--", "/tmp/no-such-sekexe-script"])
        .cwd("/")
        .run();
    assert_eq!(
        out.stderr_str(),
        "sekexe: /tmp/no-such-sekexe-script: command not found\n"
    );
    s.assert_clean();
}

#[test]
fn the_guest_is_set_up() {
    let s = Scratch::new();
    let out = run(
        &s,
        &[
            "run",
            "--",
            "sh",
            "-c",
            "cat /proc/mounts; hostname; id -u; ls /dev/null /dev/pts/ptmx /dev/fd/",
        ],
    );
    let text = out.ok();
    for (fs, at) in [
        ("proc", "/proc"),
        ("sysfs", "/sys"),
        ("devtmpfs", "/dev"),
        ("devpts", "/dev/pts"),
        ("tmpfs", "/dev/shm"),
        ("tmpfs", "/run"),
        ("tmpfs", "/tmp"),
        ("tmpfs", "/var/tmp"),
        ("hostfs", "/"),
    ] {
        assert!(
            text.lines()
                .any(|l| l.split(' ').nth(1) == Some(at) && l.split(' ').nth(2) == Some(fs)),
            "{fs} on {at} missing:\n{text}"
        );
    }
    assert!(text.lines().any(|l| l == "sekexe"), "{text}");
    assert!(text.lines().any(|l| l == "0"), "{text}");
}

#[test]
fn zombies_are_reaped() {
    let s = Scratch::new();
    // An orphan that exits becomes PID 1's zombie unless reaped.
    let out = run(
        &s,
        &[
            "run",
            "--",
            "sh",
            "-c",
            "(sh -c 'exit 0' &); sleep 1; grep -l '^State:.*Z' /proc/[0-9]*/status | wc -l",
        ],
    );
    assert_eq!(out.ok().trim(), "0");
    s.assert_clean();
}

#[test]
fn eight_runs_at_once_each_get_their_own_output() {
    let s = Scratch::new();
    let ids: Vec<u32> = (0..8).collect();
    std::thread::scope(|scope| {
        for id in &ids {
            let s = &s;
            scope.spawn(move || {
                let out = sekexe(
                    s,
                    [
                        "run",
                        "--",
                        "sh",
                        "-c",
                        &format!("echo run {id}; cat; exit {id}"),
                    ],
                )
                .stdin(format!("input {id}\n"))
                .run();
                assert_eq!(out.code as u32, *id, "{}", out.stderr_str());
                assert_eq!(out.stdout_str(), format!("run {id}\ninput {id}\n"));
            });
        }
    });
    s.assert_clean();
}

#[test]
fn the_host_is_read_only() {
    let s = Scratch::new();
    // The working directory is visible in the guest (the rest of /dev/shm is the guest's own
    // tmpfs), so its files are real host files.
    let target = s.file("host-file", b"original\n");
    let dir = s.path().join("host-dir");
    std::fs::create_dir(&dir).unwrap();
    let etc_before = std::fs::read("/etc/passwd").unwrap();
    let script = "echo changed > host-file; echo $?; rm -f host-file; echo $?; touch host-dir/new; echo $?; \
                  echo x >> /etc/passwd; echo $?; mkdir /new-dir-sekexe; echo $?; chmod 777 host-file; echo $?";
    let out = sekexe(&s, ["run", "--", "sh", "-c", script])
        .cwd(s.path())
        .run();
    assert_eq!(out.code, 0);
    assert_eq!(out.stdout_str().lines().count(), 6, "{out:?}");
    assert!(
        out.stdout_str().lines().all(|l| l != "0"),
        "a write succeeded: {out:?}"
    );
    assert!(
        out.stderr_str().contains("Read-only file system"),
        "{out:?}"
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"original\n");
    assert!(!dir.join("new").exists());
    assert!(!Path::new("/new-dir-sekexe").exists());
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), etc_before);
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o644
    );
}

#[test]
fn an_unprivileged_host_user_gets_root_in_the_guest() {
    if !is_root() {
        eprintln!("already unprivileged: the whole suite runs as this user");
    }
    let s = Scratch::for_user(Some(NOBODY));
    let out = sekexe(&s, ["run", "--", "sh", "-c", "id -u; cat; exit 7"])
        .stdin(b"piped\n".to_vec())
        .run();
    assert_eq!(out.code, 7, "{}", out.stderr_str());
    assert_eq!(out.stdout_str(), "0\npiped\n");
    let data = random_bytes(2 << 20);
    let out = sekexe(&s, ["run", "--", "cat"]).stdin(data.clone()).run();
    assert!(out.code == 0 && out.stdout == data, "{}", out.stderr_str());
    assert_eq!(
        sekexe(&s, ["run", "--", "no-such-command-xyz"]).run().code,
        127
    );
    s.assert_clean();
}

#[test]
fn an_unprivileged_user_cannot_write_to_the_host_either() {
    let s = Scratch::for_user(Some(NOBODY));
    let target = s.file("owned-by-nobody", b"original\n");
    let out = sekexe(
        &s,
        [
            "run",
            "--",
            "sh",
            "-c",
            &format!("echo changed > '{}'", target.display()),
        ],
    )
    .run();
    // The shell's own failure to create the file (2), not a failed boot (125).
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr_str().contains("cannot create"), "{out:?}");
    assert_eq!(std::fs::read(&target).unwrap(), b"original\n");
}

#[test]
fn a_run_as_another_guest_user() {
    let s = Scratch::new();
    let out = run(
        &s,
        &[
            "run",
            "--user",
            "1234:5678",
            "--",
            "sh",
            "-c",
            "id -u; id -g; id -G",
        ],
    );
    assert_eq!(out.ok(), "1234\n5678\n5678\n");
}
