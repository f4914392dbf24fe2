//! Interactive use, as both `sekexe run` and `start` + `exec` must give it: shell mode and -t
//! in real terminals (tmux), signals in stream mode, timeouts, and the host terminal restored
//! on every way out. Included by terminal.rs (through run) and terminal_exec.rs (through
//! exec), whose `sekexe`, `sekexe_shell_command` and `launcher_pids` these tests call.

use std::path::Path;
use std::time::{Duration, Instant};

use super::*;

const WAIT: Duration = Duration::from_secs(90);

/// Runs `sekexe ARGS` in a tmux pane between two `stty -g` snapshots, and records the exit
/// status; returns the terminal and the files it writes.
fn in_terminal(s: &Scratch, args: &str, cols: u16, rows: u16) -> (Tmux, std::path::PathBuf) {
    let dir = s.path().to_path_buf();
    let script = format!(
        "cd {dir}; stty -g > stty.before; {run}; echo $? > exit.status; stty -g > stty.after; echo SEKEXE-DONE",
        dir = sh_quote(&dir.to_string_lossy()),
        run = sekexe_shell_command(s, args),
    );
    (Tmux::start(&script, cols, rows), dir)
}

fn wait_done(t: &Tmux, dir: &Path) -> i32 {
    t.wait_text("SEKEXE-DONE");
    let code = std::fs::read_to_string(dir.join("exit.status")).unwrap();
    let before = std::fs::read_to_string(dir.join("stty.before")).unwrap();
    let after = std::fs::read_to_string(dir.join("stty.after")).unwrap();
    assert_eq!(before, after, "the host terminal settings changed");
    code.trim().parse().unwrap()
}

#[test]
fn shell_mode_is_an_interactive_root_shell_with_job_control() {
    let s = Scratch::new();
    let dir = s.path().to_path_buf();
    // SHELL is the caller's; make it a predictable one with a known prompt.
    let script = format!(
        "cd {d}; stty -g > stty.before; SHELL=/bin/sh PS1='guest$ ' {run}; echo $? > exit.status; stty -g > stty.after; echo SEKEXE-DONE",
        d = sh_quote(&dir.to_string_lossy()),
        run = sekexe_shell_command(&s, "run"),
    );
    let t = Tmux::start(&script, 100, 30);
    t.wait_text("guest$ ");
    t.line("echo $((6*7)) $(id -u)");
    t.wait_text("42 0");

    t.line("stty size");
    t.wait_text("30 100");
    t.resize(80, 20);
    t.line("clear; stty size");
    t.wait_text("20 80");

    // Ctrl-C reaches the foreground program in the guest; the shell survives.
    t.line("sleep 100");
    std::thread::sleep(Duration::from_millis(500));
    t.keys(&["C-c"]);
    t.line("echo alive $?");
    t.wait_text("alive 130");
    // Ctrl-\ too (SIGQUIT, 128+3).
    t.line("clear; sleep 100");
    std::thread::sleep(Duration::from_millis(500));
    t.keys(&["C-\\"]);
    t.line("echo quit $?");
    t.wait_text("quit 131");

    // Job control: background jobs, Ctrl-Z, fg.
    t.line("clear; sleep 100 &");
    t.line("jobs");
    t.wait_for("a running job", WAIT, |s| s.contains("Running"));
    t.line("sleep 200");
    std::thread::sleep(Duration::from_millis(500));
    t.keys(&["C-z"]);
    t.wait_for("a stopped job", WAIT, |s| s.contains("Stopped"));
    t.line("fg %2");
    std::thread::sleep(Duration::from_millis(300));
    t.keys(&["C-c"]);
    t.line("kill %1; echo back-at-prompt");
    t.wait_text("back-at-prompt");

    t.line("exit 3");
    assert_eq!(wait_done(&t, &dir), 3);
    drop(t);
    s.assert_clean();
}

#[test]
fn tty_mode_gives_the_terminal_size_and_term() {
    let s = Scratch::new();
    let (t, dir) = in_terminal(
        &s,
        "run -t -- sh -c 'stty size; echo TERM=$TERM; tty; read x; stty size'",
        90,
        25,
    );
    t.wait_text("25 90");
    t.wait_text("TERM=");
    t.wait_text("/dev/pts/");
    let term = std::env::var("TERM").unwrap_or_default();
    let screen = t.screen();
    let shown = screen
        .lines()
        .find_map(|l| l.trim().strip_prefix("TERM="))
        .unwrap()
        .to_string();
    // tmux sets TERM for the pane; the guest gets the same.
    assert!(
        !shown.is_empty()
            && (term.is_empty()
                || shown.starts_with("screen")
                || shown.starts_with("tmux")
                || shown == term),
        "{shown}"
    );
    t.resize(70, 15);
    std::thread::sleep(Duration::from_millis(500));
    t.keys(&["Enter"]);
    t.wait_text("15 70");
    assert_eq!(wait_done(&t, &dir), 0);
}

#[test]
fn the_terminal_is_restored_after_a_timeout() {
    let s = Scratch::new();
    let (t, dir) = in_terminal(
        &s,
        "run -t --timeout 2s --kill-after 1s -- sh -c 'trap \"\" TERM; sleep 100'",
        80,
        24,
    );
    assert_eq!(wait_done(&t, &dir), 124);
    drop(t);
    s.assert_clean();
}

#[test]
fn the_terminal_is_restored_after_kill_term_of_the_launcher() {
    let s = Scratch::new();
    let (t, dir) = in_terminal(&s, "run -t -- sh -c 'echo READY; sleep 100'", 80, 24);
    t.wait_text("READY");
    let pids = launcher_pids(&s);
    assert_eq!(pids.len(), 1, "{pids:?}");
    kill(pids[0], libc::SIGTERM);
    assert_eq!(wait_done(&t, &dir), 143);
    drop(t);
    s.assert_clean();
}

/// A command that reports the signal it got and exits 7.
fn trapping(sig: &str) -> String {
    format!("trap 'echo got {sig}; exit 7' {sig}; echo ready; while :; do sleep 0.2; done")
}

#[test]
fn signals_to_the_launcher_reach_the_command() {
    let s = Scratch::new();
    let sigs = [
        ("INT", libc::SIGINT),
        ("TERM", libc::SIGTERM),
        ("HUP", libc::SIGHUP),
        ("QUIT", libc::SIGQUIT),
        ("USR1", libc::SIGUSR1),
        ("USR2", libc::SIGUSR2),
    ];
    parallel(&sigs, 3, |(name, num)| {
        let mut r = sekexe(&s, ["run", "--", "sh", "-c", &trapping(name)]).spawn();
        r.read_until(b"ready\n");
        r.signal(*num);
        let out = r.finish();
        assert_eq!(out.code, 7, "SIG{name}: {out:?}");
        assert_eq!(out.stdout_str(), format!("got {name}\n"), "SIG{name}");
    });
    s.assert_clean();
}

#[test]
fn a_command_killed_by_a_forwarded_signal_exits_128_plus_n() {
    let s = Scratch::new();
    for (sig, code) in [
        (libc::SIGTERM, 143),
        (libc::SIGINT, 130),
        (libc::SIGHUP, 129),
    ] {
        let mut r = sekexe(&s, ["run", "--", "sh", "-c", "echo ready; exec sleep 100"]).spawn();
        r.read_until(b"ready\n");
        r.signal(sig);
        assert_eq!(r.finish().code, code, "signal {sig}");
    }
    s.assert_clean();
}

#[test]
fn a_second_interrupt_stops_the_kernel_at_once() {
    let s = Scratch::new();
    for (sig, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let mut r = sekexe(
            &s,
            [
                "run",
                "--",
                "sh",
                "-c",
                "trap '' INT TERM; echo ready; sleep 100",
            ],
        )
        .spawn();
        r.read_until(b"ready\n");
        r.signal(sig);
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            r.child.try_wait().unwrap().is_none(),
            "the first signal is only forwarded"
        );
        let started = Instant::now();
        r.signal(sig);
        let out = r.finish();
        assert_eq!(out.code, code, "{out:?}");
        // At once: well under the 4 s the launcher otherwise gives the guest after the first.
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        s.assert_clean();
    }
}

#[test]
fn timeout_sends_term_then_kill_and_exits_124() {
    let s = Scratch::new();
    // Dies of SIGTERM.
    let out = run_timed(&s, &["run", "--timeout", "1s", "--", "sleep", "100"]);
    assert_eq!(out.code, 124, "{out:?}");
    assert!(out.stderr_str().contains("--timeout 1s expired"), "{out:?}");
    // Ignores SIGTERM: SIGKILL after --kill-after.
    let out = run_timed(
        &s,
        &[
            "run",
            // Long enough for a stock kernel to boot on a loaded machine.
            "--timeout",
            "4",
            "--kill-after",
            "500ms",
            "--",
            "sh",
            "-c",
            "trap 'echo got TERM' TERM; echo started; while :; do sleep 0.1; done",
        ],
    );
    assert_eq!(out.code, 124, "{out:?}");
    assert_eq!(out.stdout_str(), "started\ngot TERM\n");
    assert!(out.stderr_str().contains("--kill-after 500ms"), "{out:?}");
    // A command that finishes in time is not affected.
    let out = run_timed(&s, &["run", "--timeout", "5m", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.code, 3);
    s.assert_clean();
}

fn run_timed(s: &Scratch, args: &[&str]) -> Output {
    sekexe(s, args).timeout(Duration::from_secs(60)).run()
}

#[test]
fn a_hung_guest_is_ended_after_a_timeout() {
    let s = Scratch::new();
    let mut r = sekexe(
        &s,
        [
            "run",
            "--timeout",
            "2s",
            "--kill-after",
            "1s",
            "--",
            "sh",
            "-c",
            "echo ready; sleep 100",
        ],
    )
    .spawn();
    r.read_until(b"ready\n");
    // Freeze the whole kernel: it can no longer answer anything.
    for p in s.leftover_processes() {
        let pid: i32 = p.split(':').next().unwrap().parse().unwrap();
        kill(pid, libc::SIGSTOP);
    }
    let out = r.finish();
    assert_eq!(out.code, 124, "{out:?}");
    assert!(out.stderr_str().contains("stopped responding"), "{out:?}");
    s.assert_clean();
}
