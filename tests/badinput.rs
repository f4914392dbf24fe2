//! Bad input: a table of malformed values for every option and argument, each with its exit
//! code and a one-line message that names the fix; no run leaves anything behind. And the
//! large-but-valid inputs that must simply work.

use std::os::unix::fs::PermissionsExt;

use sekexe_tests::*;

struct Case {
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    needle: &'static str,
}

fn case(args: &[&str], needle: &'static str) -> Case {
    Case {
        args: args.iter().map(|s| s.to_string()).collect(),
        env: Vec::new(),
        needle,
    }
}

#[test]
fn every_malformed_value_is_one_line_and_125() {
    let s = unprivileged();
    let data = s.file("data", b"not a program");
    let script = s.file("script.sh", b"#!/bin/sh\necho hi\n");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let fake_elf = s.file("fake-elf", b"\x7fELF but nothing more");
    std::fs::set_permissions(&fake_elf, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Executable but not readable for the test user.
    let unreadable = s.file("unreadable", b"\x7fELF...");
    std::fs::set_permissions(&unreadable, std::fs::Permissions::from_mode(0o711)).unwrap();
    if is_root() {
        chown(&unreadable, 0);
    }
    let odd_dir = format!("{}/no such\ndir", s.path().display());
    let p = |p: &std::path::Path| p.display().to_string();

    let mut cases = vec![
        // sizes
        case(&["run", "--mem", "lots", "--", "true"], "is not a size"),
        case(&["run", "--mem", "12Q", "--", "true"], "is not a size"),
        case(&["run", "--mem", "1.5G", "--", "true"], "is not a size"),
        case(&["run", "--mem", "", "--", "true"], "is not a size"),
        case(&["run", "--mem", "0", "--", "true"], "too small"),
        case(&["run", "--mem", "8M", "--", "true"], "too small"),
        case(
            &["run", "--mem", "99999999999999T", "--", "true"],
            "too large",
        ),
        case(&["run", "--mem=-1", "--", "true"], "is not a size"),
        case(
            &["run", "--mem", "100T", "--", "true"],
            "more than this host's",
        ),
        // durations
        case(
            &["run", "--timeout", "soon", "--", "true"],
            "is not a duration",
        ),
        case(
            &["run", "--timeout", "10x", "--", "true"],
            "is not a duration",
        ),
        case(&["run", "--timeout", "", "--", "true"], "is not a duration"),
        case(&["run", "--timeout=-5", "--", "true"], "is not a duration"),
        case(
            &[
                "run",
                "--timeout",
                "1",
                "--kill-after",
                "later",
                "--",
                "true",
            ],
            "--kill-after",
        ),
        case(&["run", "--kill-after", "1s", "--", "true"], "--timeout"),
        // environment
        case(&["run", "-e", "=value", "--", "true"], "KEY=VALUE"),
        case(&["run", "-e", "", "--", "true"], "KEY=VALUE"),
        // working directory, with spaces and a newline in the path
        case(&["run", "-w", "/no/such/dir", "--", "true"], "-w DIR"),
        case(&["run", "-w", &odd_dir, "--", "true"], "-w DIR"),
        case(&["run", "-w", &p(&data), "--", "true"], "not a directory"),
        // users
        case(&["run", "--user", "nosuchuser", "--", "true"], "--user"),
        case(&["run", "--user", ":1", "--", "true"], "--user"),
        case(&["run", "--user", "1:", "--", "true"], "--user"),
        case(&["run", "--user", "99999999999", "--", "true"], "--user"),
        case(&["run", "--user", "1:nosuchgroup", "--", "true"], "--user"),
        // kernels: missing, a directory, not executable, not ELF, not UML, unreadable
        case(
            &["run", "--kernel", "/no/such/kernel", "--", "true"],
            "user-mode-linux",
        ),
        case(&["run", "--kernel", "/usr", "--", "true"], "directory"),
        case(
            &["run", "--kernel", &p(&data), "--", "true"],
            "not executable",
        ),
        case(
            &["run", "--kernel", &p(&script), "--", "true"],
            "not an ELF",
        ),
        case(
            &["run", "--kernel", "/bin/true", "--", "true"],
            "not a User Mode Linux kernel",
        ),
        case(
            &["run", "--kernel", &p(&unreadable), "--", "true"],
            "ermission denied",
        ),
        case(&["kernel", "check", "/no/such/kernel"], "user-mode-linux"),
        // kernel arguments
        case(&["run", "--kernel-arg", "mem=1G", "--", "true"], "--mem"),
        case(
            &["run", "--kernel-arg", "init=/bin/sh", "--", "true"],
            "SEKEXE_INIT",
        ),
        case(&["run", "--kernel-arg", "a b", "--", "true"], "one word"),
        case(&["run", "--kernel-arg", "", "--", "true"], "one word"),
        // a rw volume over sekexe's own run folders (the test's TMPDIR holds them)
        case(
            &[
                "run",
                "-v",
                &format!("{}:/mnt:rw", p(s.path())),
                "--",
                "true",
            ],
            "overlap sekexe's run folders",
        ),
        // a volume's mount point that cannot be made in the read-only root
        case(
            &["run", "-v", "/usr:/proc/x", "--", "true"],
            "belongs to the guest's kernel",
        ),
        case(
            &["run", "-v", "/usr:/etc/passwd", "--", "true"],
            "not a folder",
        ),
        case(
            &["run", "-v", "/usr:/etc/passwd/x", "--", "true"],
            "/etc/passwd is not a folder",
        ),
        // --result where a link or a folder is
        case(
            &["run", "--result", "/dev/stdout", "--", "true"],
            "not a regular file",
        ),
        case(&["run", "--result", "/usr", "--", "true"], "a folder"),
        case(
            &["run", "--result", "/no/such/folder/r.json", "--", "true"],
            "no such folder",
        ),
        // usage
        case(&["run", "--no-such-option"], "--no-such-option"),
        case(&["run", "-c"], "-c"),
        case(&["no-such-subcommand"], "no-such-subcommand"),
        case(&["run", "--", ""], "empty"),
    ];
    // the same through the environment
    let mut c = case(&["run", "--", "true"], "user-mode-linux");
    c.env.push(("SEKEXE_KERNEL", "/no/such/kernel".into()));
    cases.push(c);
    let mut c = case(&["run", "--", "true"], "SEKEXE_INIT");
    c.env.push(("SEKEXE_INIT", "/no/such/init".into()));
    cases.push(c);

    for c in &cases {
        let mut cmd = sekexe(&s, &c.args);
        for (k, v) in &c.env {
            cmd = cmd.env(k, v);
        }
        let out = cmd.run();
        let err = out.stderr_str();
        assert_eq!(out.code, 125, "{:?}: {out:?}", c.args);
        assert!(
            err.contains(c.needle),
            "{:?}: expected {:?} in {err:?}",
            c.args,
            c.needle
        );
        assert_eq!(
            err.lines().count(),
            1,
            "{:?}: not one line: {err:?}",
            c.args
        );
        assert!(err.starts_with("sekexe: "), "{:?}: {err:?}", c.args);
        assert!(out.stdout.is_empty(), "{:?}", c.args);
    }
    s.assert_clean();
}

#[test]
fn a_hundred_thousand_arguments() {
    let s = Scratch::new();
    let mut args = vec![
        "run".to_string(),
        "--".into(),
        "sh".into(),
        "-c".into(),
        "echo $# $1 ${100000}".into(),
        "sh".into(),
    ];
    args.extend((1..=100_000).map(|i| i.to_string()));
    let out = sekexe(&s, &args).run();
    assert_eq!(out.ok(), "100000 1 100000\n");
    s.assert_clean();
}

#[test]
fn a_megabyte_of_environment() {
    // One variable cannot exceed 128 KiB on Linux (MAX_ARG_STRLEN: execve of sekexe itself
    // fails with E2BIG), so a MiB of environment comes as eight variables of 128 KiB - 1.
    let s = Scratch::new();
    let mut cmd = sekexe(
        &s,
        ["run", "--", "sh", "-c", "env | grep '^BIG' | sort | md5sum"],
    );
    let mut expected = String::new();
    let mut vars = Vec::new();
    for i in 0..8 {
        let value: String = (0..131_071 - 5)
            .map(|j| (b'a' + ((i * 7 + j) % 26) as u8) as char)
            .collect();
        vars.push(format!("BIG{i}={value}\n"));
        cmd = cmd.env(format!("BIG{i}"), value);
    }
    vars.sort();
    for v in &vars {
        expected.push_str(v);
    }
    let md5 = std::process::Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(expected.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let out = cmd.run();
    assert_eq!(out.ok(), String::from_utf8_lossy(&md5.stdout));
    s.assert_clean();
}

#[test]
fn help_names_every_environment_variable_sekexe_reads() {
    // Promise: `--help` (and `run --help`) says which variables change what sekexe does.
    let s = unprivileged();
    for args in [&["--help"][..], &["run", "--help"]] {
        let help = sekexe(&s, args).run().ok();
        for var in [
            "SEKEXE_KERNEL",
            "SEKEXE_INIT",
            "SEKEXE_CACHE",
            "TMPDIR",
            "XDG_STATE_HOME",
            "SHELL",
            "TERM",
        ] {
            assert!(
                help.contains(&format!("\n  {var} ")),
                "{args:?}: {var}: {help}"
            );
        }
    }
}

#[test]
fn a_dynamic_guest_init_beside_sekexe_is_refused() {
    // Promise: a guest-init built for the host (a plain `cargo build` leaves one beside
    // sekexe) is not booted: sekexe says how to build the static one, and exits 125.
    let s = Scratch::new();
    let dir = guest_visible_dir("dynamic-init-");
    let bin = dir.path().join("sekexe");
    std::fs::copy(sekexe_bin(), &bin).unwrap();
    std::fs::copy("/bin/true", dir.path().join("sekexe-init")).unwrap();
    let out = std::process::Command::new(&bin)
        .args(["run", "--", "true"])
        .env_remove("SEKEXE_INIT")
        .env("TMPDIR", s.path())
        .output()
        .unwrap();
    let out = Output::from(out);
    assert_eq!(out.code, 125, "{out:?}");
    let err = out.stderr_str();
    assert!(
        err.contains("is not a static binary") && err.contains("x86_64-unknown-linux-musl"),
        "{out:?}"
    );
    assert_eq!(err.lines().count(), 1, "{out:?}");
    s.assert_clean();
}
