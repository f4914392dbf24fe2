//! What the guest has and lacks, on the kernel under test, tied to what `sekexe kernel check`
//! says of it: where the check says a feature is there, it works in the guest; where it says
//! it is missing, it fails there as the check predicts. So a kernel that lies, or a check that
//! misreads one, fails here. (The README's "What the guest has and lacks" table is this file.)

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sekexe_tests::*;

/// Runs a python3 snippet in the guest as root; its stdout.
fn python(s: &Scratch, code: &str) -> Output {
    run(s, &["run", "--net", "none", "--", "python3", "-c", code])
}

/// Compiles a C program on the host, where the guest can run it (its / is the host's).
fn compile(dir: &Path, name: &str, source: &str) -> std::path::PathBuf {
    let src = dir.join(format!("{name}.c"));
    let bin = dir.join(name);
    std::fs::write(&src, source).unwrap();
    let status = Command::new("cc")
        .args(["-O1", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .expect("cc (build-essential; scripts/setup --tests installs it)");
    assert!(status.success(), "compiling {name}.c");
    bin
}

#[test]
fn cpu_time_of_guest_processes_counts_as_user_time() {
    let check = kernel_check();
    let s = Scratch::new();
    // Pure computation (no system calls: UML has no vDSO, so even time() is one).
    let out = python(
        &s,
        "import os\n\
         x = 0\n\
         for i in range(12_000_000): x += i * i\n\
         cg = open('/proc/self/cgroup').read().strip().split('::')[1]\n\
         stat = dict(l.split() for l in open('/sys/fs/cgroup' + cg + '/cpu.stat'))\n\
         t = os.times()\n\
         print(t.user, t.system, int(stat['user_usec']), int(stat['system_usec']))",
    );
    assert_eq!(out.code, 0, "{out:?}");
    let v: Vec<f64> = out
        .stdout_str()
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect();
    let (utime, stime, user_usec) = (v[0], v[1], v[2]);
    // Debian's stock 6.1 (bookworm) and 6.12 (trixie) count it right without the fix; the
    // unpatched 7.x sources do not.
    let fixed = check_says_ok(&check, "CPU time of guest processes");
    let counted = utime > stime && utime > 0.1 && user_usec > 100_000.0;
    let debian_stock = check
        .lines()
        .any(|l| l.starts_with("version: 6.1.") || l.starts_with("version: 6.12."));
    if fixed || debian_stock {
        assert!(counted, "user time not counted: {v:?}");
    } else {
        // The bug the fix is for: all of it counted as system time.
        assert!(utime == 0.0 && user_usec == 0.0, "{v:?}");
    }
}

#[test]
fn swap_accounting_files_are_there_and_writable() {
    let check = kernel_check();
    let s = Scratch::new();
    let out = sh(
        &s,
        "mkdir /sys/fs/cgroup/t && echo 0 > /sys/fs/cgroup/t/memory.swap.max && cat /sys/fs/cgroup/t/memory.swap.max",
    );
    if check_says_ok(&check, "swap accounting") {
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(out.stdout_str(), "0\n");
    } else {
        assert_ne!(out.code, 0, "swap files without CONFIG_SWAP? {out:?}");
    }
}

#[test]
fn kcmp_compares_a_process_with_itself() {
    let check = kernel_check();
    let s = Scratch::new();
    // kcmp(pid, pid, KCMP_FILE, 0, 0): the same file, 0.
    let out = python(
        &s,
        "import ctypes, os\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         p = os.getpid()\n\
         r = libc.syscall(312, p, p, 0, 0, 0)\n\
         print(r, ctypes.get_errno())",
    );
    assert_eq!(out.code, 0, "{out:?}");
    if check_says_ok(&check, "kcmp") {
        assert_eq!(out.stdout_str(), "0 0\n");
    } else {
        assert_eq!(out.stdout_str(), format!("-1 {}\n", libc::ENOSYS));
    }
}

#[test]
fn an_mptcp_socket_opens() {
    let check = kernel_check();
    let s = Scratch::new();
    let out = python(
        &s,
        "import socket\n\
         try:\n    socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262).close(); print('ok')\n\
         except OSError as e:\n    print(e.errno)",
    );
    assert_eq!(out.code, 0, "{out:?}");
    if check_says_ok(&check, "multipath TCP") {
        assert_eq!(out.stdout_str(), "ok\n");
    } else {
        assert_eq!(
            out.stdout_str(),
            format!("{}\n", libc::EPROTONOSUPPORT),
            "{out:?}"
        );
    }
}

const ALTSTACK: &str = r#"
#include <signal.h>
#include <stdio.h>
#include <string.h>
#ifndef SS_AUTODISARM
#define SS_AUTODISARM (1U << 31)
#endif
static char stack[1 << 16];
static volatile int on_alt[2], n;
static void handler(int sig) {
    char here;
    (void)sig;
    on_alt[n++] = &here >= stack && &here < stack + sizeof stack;
}
int main(void) {
    stack_t ss = { .ss_sp = stack, .ss_size = sizeof stack, .ss_flags = SS_AUTODISARM };
    if (sigaltstack(&ss, 0)) { perror("sigaltstack"); return 2; }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sa.sa_flags = SA_ONSTACK;
    sigaction(SIGUSR1, &sa, 0);
    raise(SIGUSR1);
    raise(SIGUSR1);
    stack_t now;
    sigaltstack(0, &now);
    printf("%d %d %d\n", on_alt[0], on_alt[1], !(now.ss_flags & SS_DISABLE));
    return 0;
}
"#;

#[test]
fn a_handler_on_an_autodisarm_alternate_stack_runs_there_every_time() {
    let check = kernel_check();
    let dir = guest_visible_dir("altstack-");
    let bin = compile(dir.path(), "altstack", ALTSTACK);
    // On the host: both handlers on the alternate stack, re-armed after.
    let host = Command::new(&bin).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&host.stdout), "1 1 1\n");
    let s = Scratch::new();
    let out = run(&s, &["run", "--net", "none", "--", bin.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    if check_says_ok(&check, "sigaltstack") {
        assert_eq!(out.stdout_str(), "1 1 1\n", "{out:?}");
    } else {
        // The bug the fix is for: the stack stays disarmed after the first handler.
        assert_eq!(out.stdout_str(), "1 0 0\n", "{out:?}");
    }
}

#[test]
fn ps_lists_processes_with_their_start_times() {
    let check = kernel_check();
    let s = Scratch::new();
    // A sleeping child, so that the listing has more than ps itself.
    let out = sh(
        &s,
        "sleep 30 & ps -ww -eo pid,lstart,args; s=$?; kill $!; tail -c 2 /proc/cpuinfo | od -An -c; exit $s",
    );
    if check_says_ok(&check, "/proc/cpuinfo") {
        assert_eq!(out.code, 0, "{out:?}");
        let listing = out.stdout_str();
        assert!(
            listing
                .lines()
                .any(|l| l.trim_start().starts_with("1 ") && l.contains("sekexe-init")),
            "PID 1 with its start time: {out:?}"
        );
        assert!(listing.contains("sleep 30"), "{out:?}");
        assert!(
            listing.trim_end().ends_with("\\n  \\n"),
            "an empty line ends the entry: {out:?}"
        );
    } else {
        // The bug the fix is for: the last entry ends without an empty line.
        assert!(
            !out.stdout_str().trim_end().ends_with("\\n  \\n"),
            "{out:?}"
        );
    }
}

#[test]
fn address_sanitizer_runs_where_the_address_space_is_large_enough() {
    let check = kernel_check();
    let dir = guest_visible_dir("asan-");
    let src = dir.path().join("overflow.c");
    let bin = dir.path().join("overflow");
    std::fs::write(
        &src,
        "#include <stdlib.h>\nint main(int c, char **v) { char *p = malloc(8); p[c + 7] = 1; return 0; }\n",
    )
    .unwrap();
    let built = Command::new("cc")
        .args(["-fsanitize=address", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .expect("cc");
    assert!(built.success(), "cc -fsanitize=address (gcc and libasan)");
    let s = Scratch::new();
    let out = run(&s, &["run", "--net", "none", "--", bin.to_str().unwrap()]);
    let err = out.stderr_str();
    if check_says_ok(&check, "47-bit user address space") {
        // ASan itself runs, and catches the overflow.
        assert!(err.contains("heap-buffer-overflow"), "{out:?}");
    } else {
        assert!(err.contains("Shadow memory range interleaves"), "{out:?}");
    }
    assert_ne!(out.code, 0, "{out:?}");
}

#[test]
fn the_userspace_mode_that_ran_is_the_one_chosen() {
    let check = kernel_check();
    let s = Scratch::new();
    let seccomp = check_says_ok(&check, "seccomp userspace");
    // The kernel says at boot which checks it runs: ptrace's or seccomp's.
    let probe_with = |mode: &str, extra: &[&str]| {
        let mut args = vec!["run", "--net", "none", "--debug", "--userspace", mode];
        args.extend(extra);
        args.extend(["--", "true"]);
        let out = run(&s, &args);
        (out.code, out.stderr_str())
    };
    let probe = |mode: &str| probe_with(mode, &[]);
    let (code, log) = probe("ptrace");
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("userspace: Ptrace"), "{log}");
    // "Checking syscall emulation for ptrace" (7.x), "... emulation patch for ptrace" (6.1).
    assert!(log.contains("Checking syscall emulation"), "{log}");
    let (code, log) = probe("seccomp");
    if seccomp {
        assert_eq!(code, 0, "{log}");
        assert!(log.contains("userspace: Seccomp"), "{log}");
        assert!(
            log.contains("Checking that seccomp filters can be installed...OK"),
            "{log}"
        );
        assert!(!log.contains("Checking syscall emulation"), "{log}");
        // The default: seccomp where the confinement is whole (Landlock ABI 6 or later on
        // this host, as --debug reports it), else ptrace.
        let landlock_abi: u32 = log
            .split("landlock ABI ")
            .nth(1)
            .and_then(|t| t.split(':').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let (code, log) = probe("auto");
        assert_eq!(code, 0, "{log}");
        if landlock_abi >= 6 {
            assert!(log.contains("userspace: Seccomp"), "{log}");
            assert!(
                log.contains("seccomp filters can be installed...OK"),
                "{log}"
            );
        } else {
            assert!(log.contains("userspace: Ptrace"), "{log}");
        }
        // Without the sandbox the default is ptrace, and says why.
        let (code, log) = probe_with("auto", &["--no-sandbox"]);
        assert_eq!(code, 0, "{log}");
        assert!(log.contains("userspace: Ptrace"), "{log}");
        assert!(log.contains("needs the sandbox"), "{log}");
        assert!(log.contains("Checking syscall emulation"), "{log}");
    } else {
        assert_eq!(code, 125, "{log}");
        assert!(log.contains("use --userspace ptrace"), "{log}");
    }
    s.assert_clean();
}

#[test]
fn more_cpus_where_the_kernel_has_smp() {
    let check = kernel_check();
    let s = Scratch::new();
    let out = run(
        &s,
        &[
            "run",
            "--net",
            "none",
            "--userspace",
            "seccomp",
            "--cpus",
            "2",
            "--",
            "sh",
            "-c",
            "nproc; cat /sys/fs/cgroup/cgroup.controllers",
        ],
    );
    if check_says_ok(&check, "SMP:") {
        assert_eq!(out.code, 0, "{out:?}");
        let text = out.stdout_str();
        assert!(text.starts_with("2\n"), "{out:?}");
        assert!(text.contains("cpuset"), "{out:?}");
    } else {
        assert_eq!(out.code, 125, "{out:?}");
        let err = out.stderr_str();
        assert!(
            err.contains("no SMP") || err.contains("no seccomp userspace"),
            "{out:?}"
        );
    }
    s.assert_clean();
}

/// The host CPUs a process may run on, as /proc says.
fn cpus_allowed(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn a_one_cpu_guests_kernel_stays_on_one_host_cpu_unless_told_not_to() {
    // A guest system call hands off between two host processes; across CPUs that costs
    // several times more (README). Where there is a choice of CPUs, the kernel stays on one.
    let ours = cpus_allowed(std::process::id() as i32);
    let choice = ours.contains(',') || ours.contains('-');
    for (extra, pinned) in [(None, choice), (Some("--no-pin"), false)] {
        let s = Scratch::new();
        let mut args = vec!["run", "--net", "none"];
        args.extend(extra);
        args.extend(["--", "sh", "-c", "echo ready; read go"]);
        let mut r = sekexe(&s, args).timeout(Duration::from_secs(60)).spawn();
        assert_eq!(r.read_until(b"ready\n"), b"ready\n");
        let kernel = kernel_pid(&s, r.pid()).expect("the kernel process");
        let theirs = cpus_allowed(kernel);
        r.write_stdin(b"go\n");
        r.close_stdin();
        let out = r.finish();
        assert_eq!(out.code, 0, "{out:?}");
        if pinned {
            let cpu: usize = theirs
                .parse()
                .unwrap_or_else(|_| panic!("{extra:?}: {theirs}"));
            assert!(
                ours.split(',').any(|part| match part.split_once('-') {
                    Some((a, b)) => (a.parse().unwrap()..=b.parse().unwrap()).contains(&cpu),
                    None => part.parse::<usize>().unwrap() == cpu,
                }),
                "CPU {cpu} is not one of ours ({ours})"
            );
        } else {
            assert_eq!(theirs, ours, "{extra:?}");
        }
        s.assert_clean();
    }
}

#[test]
fn result_file_tells_how_each_run_ended() {
    // Promise: --result FILE holds one JSON object saying how the run ended, for a success,
    // a kill by signal, a timeout, a crashed guest and bad input, matching the exit status.
    let s = unprivileged();
    let dir = tempfile::Builder::new()
        .prefix("sekexe-result-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let file = dir.path().join("result.json");
    let result = |args: &[&str]| {
        let _ = std::fs::remove_file(&file);
        let mut all = vec!["run", "--result", file.to_str().unwrap()];
        all.extend_from_slice(args);
        let out = sekexe(&s, &all).run();
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{args:?}: no result ({e}): {out:?}"));
        assert!(text.ends_with("}\n") && text.lines().count() == 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["exit_code"], out.code, "{args:?}: {text}");
        assert_eq!(v["version"], 1);
        (out, v)
    };

    let (_, v) = result(&["--", "sh", "-c", "exit 3"]);
    assert_eq!(v["signal"], serde_json::Value::Null);
    assert_eq!(
        (v["failed"].as_bool(), v["timed_out"].as_bool()),
        (Some(false), Some(false))
    );
    assert_eq!(v["message"], serde_json::Value::Null);
    let kernel = &v["kernel"];
    assert!(kernel["path"].as_str().unwrap().starts_with('/'), "{v}");
    assert!(
        kernel["release"].as_str().is_some_and(|r| r.contains('.')),
        "{v}"
    );
    assert!(
        ["seccomp", "ptrace"].contains(&kernel["userspace"].as_str().unwrap()),
        "{v}"
    );
    assert_eq!(kernel["cpus"], 1);
    for phase in [
        "launcher",
        "kernel_boot",
        "guest_setup",
        "command",
        "power_off",
        "total",
    ] {
        assert!(
            v["timeline_ms"][phase].as_f64().is_some_and(|ms| ms >= 0.0),
            "{phase}: {v}"
        );
    }
    // The guest's memory is the bulk of the kernel's resident set: more than the 16 MiB
    // the command touches, less than the host.
    let touched = 16u64 << 20;
    let (_, v) = result(&[
        "--",
        "sh",
        "-c",
        "head -c 16M /dev/zero | tr '\\0' x > /tmp/f",
    ]);
    let rss = v["peak_rss_bytes"].as_u64().unwrap();
    assert!(rss > touched && rss < 64 << 30, "{v}");

    let (out, v) = result(&["--", "sh", "-c", "kill -KILL $$"]);
    assert_eq!(out.code, 137);
    assert_eq!(v["signal"], 9);
    assert_eq!(v["failed"], false);

    let (out, v) = result(&["--timeout", "1", "--", "sleep", "30"]);
    assert_eq!(out.code, 124);
    assert_eq!(v["timed_out"], true);

    let (out, v) = result(&["--", "sh", "-c", "echo c > /proc/sysrq-trigger; sleep 30"]);
    assert_eq!(out.code, 125, "{out:?}");
    assert_eq!(v["failed"], true);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("crashed its own kernel"),
        "{v}"
    );
    let log = v["log"].as_str().expect("the kept log");
    assert!(
        std::fs::read_to_string(log).unwrap().contains("sysrq"),
        "{log}"
    );

    let (out, v) = result(&["-w", "/no/such/dir", "--", "true"]);
    assert_eq!(out.code, 125);
    assert_eq!(v["failed"], true);
    assert!(v["message"].as_str().unwrap().contains("-w DIR"), "{v}");
    assert_eq!(v["kernel"], serde_json::Value::Null);

    // A result in a folder that does not exist is refused before the run.
    let out = sekexe(
        &s,
        ["run", "--result", "/no/such/folder/r.json", "--", "true"],
    )
    .run();
    assert_eq!(out.code, 125);
    assert!(
        out.stderr_str().contains("no such folder /no/such/folder"),
        "{out:?}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "only result.json"
    );
    s.assert_clean();
}
