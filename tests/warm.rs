//! Warm guests: `sekexe start` boots once, `sekexe exec` runs commands in it with `run`'s
//! semantics (argv, environment, folder, streams, stdin, exit statuses, signals, timeouts,
//! terminals), state persists between commands, and `stop`, the idle timeout and a dying
//! kernel each leave nothing behind. Every test boots the real kernel.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sekexe_tests::*;

/// A started guest, stopped (and checked gone) when the test ends.
struct Guest<'a> {
    s: &'a Scratch,
    name: String,
}

impl<'a> Guest<'a> {
    fn start(s: &'a Scratch, name: &str, options: &[&str]) -> Guest<'a> {
        let mut args = vec!["start", "--name", name];
        args.extend_from_slice(options);
        let out = run(s, &args);
        assert_eq!(out.ok(), format!("{name}\n"), "start prints the name");
        Guest {
            s,
            name: name.to_string(),
        }
    }

    /// `sekexe exec [options] NAME -- argv`.
    fn exec<S: AsRef<std::ffi::OsStr>>(&self, options: &[&str], argv: &[S]) -> Sekexe {
        let mut args: Vec<OsString> = vec!["exec".into()];
        args.extend(options.iter().map(OsString::from));
        args.push(self.name.clone().into());
        args.push("--".into());
        args.extend(argv.iter().map(|a| a.as_ref().to_os_string()));
        sekexe(self.s, &args)
    }

    fn sh(&self, script: &str) -> Output {
        self.exec(&[], &["sh", "-c", script]).run()
    }

    fn stop(&self) -> Output {
        run(self.s, &["stop", &self.name])
    }
}

impl Drop for Guest<'_> {
    /// A test that failed halfway leaves no guest behind: stopped, or its launcher killed.
    fn drop(&mut self) {
        if guests(self.s).contains(&self.name) {
            let _ = sekexe(self.s, ["stop", &self.name])
                .timeout(Duration::from_secs(40))
                .run();
        }
        for pid in launcher_pids(self.s) {
            kill(pid, libc::SIGKILL);
        }
    }
}

/// The guests folder of the scratch folder's user, and what is in it.
fn guests(s: &Scratch) -> Vec<String> {
    match std::fs::read_dir(s.user_base().join("guests")) {
        Ok(e) => e
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Nothing of any guest is left: no folder, no launcher, no kernel, no run folder.
fn assert_all_gone(s: &Scratch) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !launcher_pids(s).is_empty() {
        assert!(
            Instant::now() < deadline,
            "launchers left: {:?}",
            launcher_pids(s)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(guests(s), Vec::<String>::new(), "guest folders left");
    s.assert_clean();
}

#[test]
fn exec_has_runs_semantics_as_root_and_as_an_unprivileged_user() {
    for user in users() {
        let s = Scratch::for_user(user);
        let g = Guest::start(&s, "semantics", &[]);

        // argv, byte for byte.
        let mut argv: Vec<OsString> = vec!["printf".into(), "[%s]\\n".into()];
        argv.extend(
            awkward_args()
                .iter()
                .map(|a| std::ffi::OsStr::from_bytes(a).to_os_string()),
        );
        let out = g.exec(&[], &argv).run();
        let expected: Vec<u8> = awkward_args()
            .iter()
            .flat_map(|a| [&b"["[..], a, &b"]\n"[..]].concat())
            .collect();
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(out.stdout, expected, "argv");

        // The caller's environment, -e, --clear-env.
        let out = g
            .exec(
                &["-e", "SET=by -e"],
                &["sh", "-c", "echo \"$FROM_CALLER|$SET\""],
            )
            .env("FROM_CALLER", "caller's")
            .run();
        assert_eq!(out.ok(), "caller's|by -e\n");
        let out = g
            .exec(&["--clear-env"], &["sh", "-c", "echo \"[$FROM_CALLER]\""])
            .env("FROM_CALLER", "x")
            .run();
        assert_eq!(out.ok(), "[]\n");

        // The caller's folder, and -w.
        let out = g.exec(&[], &["pwd"]).cwd("/usr/share").run();
        assert_eq!(out.ok(), "/usr/share\n");
        let out = g.exec(&["-w", "/etc"], &["pwd"]).run();
        assert_eq!(out.ok(), "/etc\n");

        // Separate streams; stdin with its end, small and large; binary output.
        let out = g.sh("printf out; printf err >&2; exit 3");
        assert_eq!(
            (out.code, out.stdout_str(), out.stderr_str()),
            (3, "out".into(), "err".into())
        );
        let out = g.exec(&[], &["wc", "-c"]).stdin(&b"12345"[..]).run();
        assert_eq!(out.ok().trim(), "5");
        let data: Vec<u8> = (0..(8u32 << 20) / 4)
            .flat_map(|i| i.wrapping_mul(2654435761).to_le_bytes())
            .collect();
        let out = g.exec(&[], &["cat"]).stdin(data.clone()).run();
        assert_eq!(out.code, 0, "{}", out.stderr_str());
        assert!(out.stdout == data, "8 MiB through stdin and stdout differ");

        // Exit statuses, signals, not found, cannot execute, timeout.
        let codes: Vec<u8> = (0..=255).collect();
        parallel(&codes, 4, |&c| {
            assert_eq!(g.sh(&format!("exit {c}")).code, i32::from(c), "exit {c}");
        });
        assert_eq!(g.sh("kill -KILL $$").code, 137);
        assert_eq!(g.sh("kill -TERM $$").code, 143);
        let out = g.exec(&[], &["no-such-command"]).run();
        assert_eq!(out.code, 127, "{out:?}");
        assert!(out.stderr_str().contains("not found"), "{out:?}");
        assert_eq!(g.exec(&[], &["/etc/passwd"]).run().code, 126);
        let out = g
            .exec(&["--timeout", "1s", "--kill-after", "1s"], &["sleep", "60"])
            .run();
        assert_eq!(out.code, 124, "{out:?}");
        // The user option, as with run.
        assert_eq!(
            g.exec(&["-u", "1234:5678"], &["id", "-u"]).run().ok(),
            "1234\n"
        );

        // State persists between commands: files, and a process one command left.
        assert_eq!(
            g.sh("echo kept > /run/state; sleep 300 >/dev/null 2>&1 &")
                .code,
            0
        );
        assert_eq!(g.sh("cat /run/state").ok(), "kept\n");
        assert_eq!(g.sh("pgrep -x sleep | wc -l").ok().trim(), "1");

        // Eight at once, each its own output.
        let ids: Vec<u32> = (0..8).collect();
        parallel(&ids, 8, |&i| {
            let out = g.sh(&format!("for n in 1 2 3; do echo {i}-$n; sleep 0.1; done"));
            assert_eq!(out.ok(), format!("{i}-1\n{i}-2\n{i}-3\n"));
        });

        let ls = run(&s, &["ls"]);
        assert!(ls.ok().contains("semantics"), "{ls:?}");
        assert_eq!(g.stop().code, 0);
        assert_all_gone(&s);
    }
}

fn trapping(sig: &str) -> String {
    format!("trap 'echo got {sig}; exit 7' {sig}; echo ready; while :; do sleep 0.2; done")
}

#[test]
fn signals_to_exec_reach_its_command_only() {
    let s = Scratch::new();
    let g = Guest::start(&s, "signals", &[]);
    let other = g.exec(&[], &["sh", "-c", &trapping("INT")]).spawn();
    for (name, num) in [("INT", libc::SIGINT), ("TERM", libc::SIGTERM)] {
        let mut r = g.exec(&[], &["sh", "-c", &trapping(name)]).spawn();
        r.read_until(b"ready\n");
        r.signal(num);
        let out = r.finish();
        assert_eq!(out.code, 7, "SIG{name}: {out:?}");
        assert_eq!(out.stdout_str(), format!("got {name}\n"));
    }
    // The other session got none of them: it is still there to stop.
    let mut other = other;
    other.read_until(b"ready\n");
    other.signal(libc::SIGINT);
    assert_eq!(other.finish().stdout_str(), "got INT\n");
    // A killed exec takes its command with it.
    let mut r = g
        .exec(&[], &["sh", "-c", "echo ready; exec sleep 100"])
        .spawn();
    r.read_until(b"ready\n");
    r.signal(libc::SIGKILL);
    r.finish();
    let deadline = Instant::now() + Duration::from_secs(10);
    while g.sh("pgrep -x sleep >/dev/null").code == 0 {
        assert!(Instant::now() < deadline, "the command outlived its exec");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(g.stop().code, 0);
    assert_all_gone(&s);
}

#[test]
fn exec_gives_a_terminal_its_size() {
    let s = Scratch::new();
    let g = Guest::start(&s, "tty", &[]);
    let dir = s.path().to_path_buf();
    let script = format!(
        "{}; echo status=$?",
        sekexe_shell_command(
            &s,
            "exec -t tty -- sh -c 'stty size; tty; read x; stty size; exit 5'"
        )
    );
    let t = Tmux::start(
        &format!("cd {}; {script}", sh_quote(&dir.to_string_lossy())),
        91,
        33,
    );
    t.wait_text("33 91");
    t.wait_text("/dev/pts/");
    // A resize reaches the command's terminal.
    t.resize(70, 15);
    std::thread::sleep(Duration::from_millis(500));
    t.keys(&["Enter"]);
    t.wait_text("15 70");
    t.wait_text("status=5");
    drop(t);
    assert_eq!(g.stop().code, 0);
    assert_all_gone(&s);
}

#[test]
fn stop_ends_running_commands_and_leaves_nothing() {
    let s = unprivileged();
    let g = Guest::start(&s, "busy", &[]);
    let mut r = g
        .exec(&[], &["sh", "-c", "echo ready; exec sleep 300"])
        .spawn();
    r.read_until(b"ready\n");
    assert_eq!(g.stop().code, 0);
    let out = r.finish();
    assert_eq!(out.code, 143, "the command got SIGTERM: {out:?}");
    assert_all_gone(&s);
    // A stopped or unknown guest is a clear error.
    let out = run(&s, &["stop", "busy"]);
    assert_eq!(out.code, 125);
    assert!(
        out.stderr_str().contains("no warm guest named busy"),
        "{out:?}"
    );
    let out = run(&s, &["exec", "busy", "--", "true"]);
    assert_eq!(out.code, 125);
    assert!(
        out.stderr_str().contains("no warm guest named busy"),
        "{out:?}"
    );
}

#[test]
fn an_idle_guest_stops_itself() {
    let s = Scratch::new();
    let g = Guest::start(&s, "idle", &["--idle-timeout", "2s"]);
    // A command longer than the idle timeout keeps it up.
    assert_eq!(g.sh("sleep 3; echo done").ok(), "done\n");
    assert!(guests(&s).contains(&"idle".to_string()));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !guests(&s).is_empty() {
        assert!(Instant::now() < deadline, "the idle guest is still up");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_all_gone(&s);
}

#[test]
fn a_command_that_kills_every_process_leaves_the_guest_serving() {
    let s = Scratch::new();
    // Where a process of the guest leaves word for the test (the host is read-only to it).
    let shared = guest_visible_dir("warm-killall-");
    let dir = shared.path().to_str().unwrap();
    let g = Guest::start(&s, "killall", &["-v", &format!("{dir}:{dir}:rw")]);
    // `kill -9 -1` takes every process but PID 1 and the caller: here the session's own
    // relay, so its exec fails with 125 and says why.
    let out = g.exec(&[], &["sh", "-c", "kill -9 -1; sleep 5"]).run();
    assert_eq!(out.code, 125, "{out:?}");
    assert!(out.stderr_str().contains("without reporting"), "{out:?}");
    assert_eq!(g.sh("echo next").ok(), "next\n");
    // From an orphan while no command runs, it takes the relay PID 1 forks ahead for the
    // next exec; that exec and the next get relays all the same. The orphan waits until the
    // last exec's relay is surely gone (it waits 2 s at most for its End's answer) and the
    // spare is there (guest-init's second process), and lists the processes before the kill.
    let list = "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done";
    g.sh(&format!(
        "(sleep 3; until [ $({list} | grep -c '^[^ ]*/sekexe-init ') -ge 2 ]; do sleep 0.1; done; \
         {list} > {dir}/before; kill -9 -1; touch {dir}/killed) > /dev/null 2>&1 &"
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !shared.path().join("killed").exists() {
        assert!(
            Instant::now() < deadline,
            "no relay waiting for the next exec within a minute"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = std::fs::read_to_string(shared.path().join("before")).unwrap();
    assert_eq!(
        // By the program run, not the words: the orphan's own script names it too.
        before
            .lines()
            .filter(|l| l
                .split(' ')
                .next()
                .is_some_and(|w| w.ends_with("/sekexe-init")))
            .count(),
        2,
        "PID 1 and the relay for the next exec: {before}"
    );
    for i in 0..3 {
        assert_eq!(g.sh(&format!("echo next-{i}")).ok(), format!("next-{i}\n"));
    }
    assert_eq!(g.stop().code, 0);
    assert_all_gone(&s);
}

#[test]
fn a_port_forward_of_start_reaches_a_server_an_exec_runs() {
    let s = unprivileged();
    let port = free_port();
    let g = Guest::start(&s, "ports", &["-p", &format!("{port}:80")]);
    let mut r = g.exec(&[], &["python3", "-c", GUEST_SERVER]).spawn();
    r.read_until(b"listening\n");
    assert_eq!(hello_through(port), "from the guest:hello");
    assert_eq!(r.finish().code, 0);
    assert_eq!(g.stop().code, 0);
    assert_all_gone(&s);
}

#[test]
fn a_kernel_killed_from_outside_is_reported_and_cleaned_up() {
    let s = Scratch::new();
    let g = Guest::start(&s, "doomed", &[]);
    let mut r = g
        .exec(&[], &["sh", "-c", "echo ready; exec sleep 300"])
        .spawn();
    r.read_until(b"ready\n");
    let kernel = processes_mentioning(s.path())
        .iter()
        .filter(|p| p.contains("uml_dir="))
        .filter_map(|p| p.split(':').next()?.parse::<i32>().ok())
        .min()
        .expect("the guest's kernel");
    kill(kernel, libc::SIGKILL);
    let out = r.finish();
    assert_eq!(out.code, 125, "{out:?}");
    assert!(out.stderr_str().contains("gone"), "{out:?}");
    // ls names it once, and removes it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !launcher_pids(&s).is_empty() {
        assert!(Instant::now() < deadline, "the guest's launcher stayed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let ls = run(&s, &["ls"]);
    assert_eq!(ls.code, 0);
    assert!(
        ls.stderr_str()
            .contains("doomed: gone: the kernel process was killed"),
        "{ls:?}"
    );
    assert_all_gone(&s);
}

/// Connects to `socket` as `uid` and sends an Info ask; prints what came back, or the error.
fn knock(socket: &Path, uid: u32) -> String {
    let py = "import socket,sys\n\
        s=socket.socket(socket.AF_UNIX)\n\
        try:\n s.connect(sys.argv[1])\nexcept OSError as e:\n print('refused', e.errno); sys.exit()\n\
        try:\n s.sendall(b'Q\\0\\0\\0\\0')\nexcept OSError:\n pass\n\
        print('answer', s.recv(200)[:1].decode())\n";
    let out = std::process::Command::new("setpriv")
        .current_dir("/")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .args(["--clear-groups", "/usr/bin/python3", "-c", py])
        .arg(socket)
        .output()
        .unwrap();
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn only_the_user_who_started_a_guest_can_reach_it() {
    if !is_root() {
        return skipped("another user needs root to switch to");
    }
    let s = Scratch::new();
    let g = Guest::start(&s, "mine", &[]);
    let control: PathBuf = s.user_base().join("guests/mine/control");
    assert_eq!(knock(&control, 0), "answer I", "the owner is answered");
    // The folders are private: another user cannot even reach the socket.
    assert_eq!(knock(&control, NOBODY), "refused 13");
    // With the folders opened up, the launcher itself refuses the other user.
    let opened = [
        s.path().to_path_buf(),
        s.user_base(),
        s.user_base().join("guests"),
        s.user_base().join("guests/mine"),
    ];
    use std::os::unix::fs::PermissionsExt;
    let modes: Vec<u32> = opened
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().permissions().mode())
        .collect();
    for p in opened.iter().chain([&control]) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    assert_eq!(knock(&control, NOBODY), "answer R");
    for (p, m) in opened.iter().zip(modes) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    }
    assert_eq!(g.stop().code, 0);
    assert_all_gone(&s);
}

#[test]
fn bad_start_options_are_clear_errors_that_leave_nothing() {
    let s = Scratch::new();
    for (args, says) in [
        (vec!["start", "--", "true"], "go to `sekexe exec NAME`"),
        (vec!["start", "--timeout", "5s"], "go to `sekexe exec NAME`"),
        (vec!["start", "-e", "A=1"], "go to `sekexe exec NAME`"),
        (vec!["start", "--name", "../x"], "--name"),
        (vec!["start", "--mem", "1"], "mem"),
    ] {
        let out = run(&s, &args);
        assert_eq!(out.code, 125, "{args:?}: {out:?}");
        assert!(out.stderr_str().contains(says), "{args:?}: {out:?}");
        assert_eq!(out.stderr_str().lines().count(), 1, "one line: {out:?}");
    }
    let g = Guest::start(&s, "twice", &[]);
    let out = run(&s, &["start", "--name", "twice"]);
    assert_eq!(out.code, 125);
    assert!(out.stderr_str().contains("is running"), "{out:?}");
    assert_eq!(g.stop().code, 0);
    assert_all_gone(&s);
}

#[test]
fn a_docker_daemon_started_by_one_exec_serves_the_next() {
    let s = unprivileged();
    let dir = guest_visible_dir("warm-docker-");
    let tarball = docker_image_tarball(dir.path());
    let g = Guest::start(&s, "docker", &["--overlay", "--mem", "1G"]);
    let out = g
        .exec(
            &[],
            &[
                "sh",
                "-c",
                "mkdir -p /var/lib/docker /etc/docker
                 mount -t tmpfs tmpfs /var/lib/docker && mount -t tmpfs tmpfs /etc/docker
                 dockerd --iptables=false --bridge=none > /var/log/dockerd.log 2>&1 &
                 for i in $(seq 1 600); do docker info >/dev/null 2>&1 && exit 0; sleep 0.2; done
                 tail -20 /var/log/dockerd.log; exit 1",
            ],
        )
        .timeout(Duration::from_secs(300))
        .run();
    assert_eq!(out.code, 0, "dockerd did not come up: {out:?}");
    let import = g
        .exec(
            &[],
            &["docker", "import", &tarball.to_string_lossy(), "local/tiny"],
        )
        .timeout(Duration::from_secs(120))
        .run();
    assert_eq!(import.code, 0, "{import:?}");
    for i in 0..3 {
        let out = g
            .exec(
                &[],
                &[
                    "docker",
                    "run",
                    "--rm",
                    "--network",
                    "none",
                    "local/tiny",
                    "/bin/only-in-this-root",
                ],
            )
            .timeout(Duration::from_secs(120))
            .run();
        assert_eq!(out.ok(), "found in the root\n", "docker run #{i}");
    }
    assert_eq!(g.stop().code, 0);
    assert_all_gone(&s);
}

/// How `exec --debug` says its session travels.
fn route(g: &Guest) -> &'static str {
    let out = g.exec(&["--debug"], &["true"]).run();
    assert_eq!(out.code, 0, "{out:?}");
    let err = out.stderr_str();
    if err.contains("over a line of its own") {
        "line"
    } else if err.contains("through the warm guest's launcher (no line is free)") {
        "launcher"
    } else {
        panic!("exec --debug did not say how its session travels: {err}")
    }
}

/// Waits until `ls` counts no command running in guest `name`, up to 20 s.
fn assert_no_commands(s: &Scratch, name: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ls = run(s, &["ls"]);
        let commands = ls
            .ok()
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().nth(3).map(str::to_string));
        if commands.as_deref() == Some("0") {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {ls:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What `i`'s command prints: 64 KiB of its own.
fn own_output(i: u32) -> String {
    format!("{i:>7}\n").repeat(8192)
}

#[test]
fn session_lines_are_reused_clean_and_sessions_beyond_them_still_work() {
    let s = Scratch::new();
    let g = Guest::start(&s, "lines", &[]);
    let print = |i: u32| format!("yes '{i:>7}' | head -n 8192");

    // One after another, more than there are lines: each line is handed on once its session
    // ended cleanly, and the next session on it reads nothing of the last.
    for i in 0..20 {
        let out = g.sh(&print(i));
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout_str() == own_output(i), "session {i}'s output");
    }
    assert_eq!(route(&g), "line", "lines are handed on after clean ends");

    // More at once than there are lines: the rest go through the launcher, all whole.
    let ids: Vec<u32> = (100..112).collect();
    parallel(&ids, ids.len(), |&i| {
        let out = g.sh(&format!("sleep 0.5; {}", print(i)));
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout_str() == own_output(i), "session {i}'s output");
    });
    assert_eq!(route(&g), "line", "the lines came back after the crowd");

    // An exec that stops reading once its command has ended (its relay has sent End and
    // waits for the answer), then is killed: the relay gives up and the session ends.
    let mut r = g.exec(&[], &["sh", "-c", "echo ready; sleep 1"]).spawn();
    r.read_until(b"ready\n");
    r.signal(libc::SIGSTOP);
    std::thread::sleep(Duration::from_secs(3));
    r.signal(libc::SIGKILL);
    let _ = r.finish();
    assert_no_commands(&s, "lines", "the session of an exec killed after its End");

    // An exec killed while its command streams: the command is stopped, its line is never
    // handed on (it may hold the dead session's bytes), and the next sessions are whole. Once
    // every line is gone that way, sessions go through the launcher.
    for i in 0..10u32 {
        let mut r = g
            .exec(&[], &["sh", "-c", &format!("echo ready; yes doomed-{i}")])
            .spawn();
        r.read_until(b"ready\n");
        r.signal(libc::SIGKILL);
        let _ = r.finish();
        let out = g.sh(&print(i));
        assert_eq!(out.code, 0, "{out:?}");
        assert!(
            out.stdout_str() == own_output(i),
            "the session after kill {i}"
        );
    }
    assert_eq!(
        route(&g),
        "launcher",
        "no line is reused after a killed exec"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // ([d]: not this shell's own command line.)
        let left = g.sh("ps -eo pid,args | grep '[d]oomed-' || true");
        if left.ok().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the killed execs' commands still run: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // And their sessions are over: no relay waits on a line nobody reads.
    assert_no_commands(&s, "lines", "sessions of killed execs still open");
    assert_eq!(g.stop().code, 0);
    assert_all_gone(&s);
}
