//! Running `sekexe`: the builder, a finished run's output, a run still going.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::*;

/// What a finished run gave back.
pub struct Output {
    /// The exit code, or 128+N when sekexe itself was killed by signal N.
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cut = |b: &[u8]| {
            let s = String::from_utf8_lossy(&b[..b.len().min(2000)]).into_owned();
            if b.len() > 2000 {
                format!("{s}... ({} bytes)", b.len())
            } else {
                s
            }
        };
        write!(
            f,
            "exit {}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.code,
            cut(&self.stdout),
            cut(&self.stderr)
        )
    }
}

impl From<std::process::Output> for Output {
    fn from(out: std::process::Output) -> Output {
        Output {
            code: exit_code(out.status),
            stdout: out.stdout,
            stderr: out.stderr,
        }
    }
}

impl Output {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    /// Asserts success and returns stdout as text.
    pub fn ok(&self) -> String {
        assert_eq!(self.code, 0, "sekexe failed: {self:?}");
        self.stdout_str()
    }
}

pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// One sekexe invocation.
#[derive(Clone)]
pub struct Sekexe {
    pub(crate) args: Vec<OsString>,
    pub(crate) stdin: Option<Vec<u8>>,
    pub(crate) stdin_null: bool,
    pub(crate) env: Vec<(OsString, Option<OsString>)>,
    pub(crate) user: Option<u32>,
    pub(crate) timeout: Duration,
    pub(crate) tmpdir: Option<PathBuf>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) netns: Option<String>,
    /// A command sekexe runs under (its arguments then sekexe's command line follow).
    pub(crate) wrapper: Vec<OsString>,
    /// A `run` made as `start` + `exec` + `stop` instead (see [`Sekexe::through_exec`]).
    pub(crate) through_exec: bool,
}

pub fn sekexe<I, S>(scratch: &Scratch, args: I) -> Sekexe
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Sekexe {
        args: args
            .into_iter()
            .map(|a| a.as_ref().to_os_string())
            .collect(),
        stdin: None,
        stdin_null: true,
        env: Vec::new(),
        user: if scratch.uid != rustix::process::geteuid().as_raw() {
            Some(scratch.uid)
        } else {
            None
        },
        timeout: RUN_TIMEOUT,
        tmpdir: Some(scratch.path().to_path_buf()),
        cwd: None,
        netns: None,
        wrapper: Vec::new(),
        through_exec: false,
    }
}

/// A running sekexe with piped streams, for tests that talk to it.
pub struct Running {
    pub child: Child,
    deadline: Instant,
    /// The warm guest a run made through exec runs in: stopped once the exec has ended.
    guest: Option<WarmGuest>,
}

impl Sekexe {
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env.push((
            key.as_ref().to_os_string(),
            Some(value.as_ref().to_os_string()),
        ));
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_os_string(), None));
        self
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Runs sekexe as the last arguments of `wrapper` (e.g. a script that enters a chroot and
    /// executes "$@"). For the test's own user, outside network namespaces.
    pub fn wrapped<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, wrapper: I) -> Self {
        self.wrapper = wrapper
            .into_iter()
            .map(|a| a.as_ref().to_os_string())
            .collect();
        self
    }

    /// Run inside a network namespace (made with `ip netns add`).
    pub fn in_netns(mut self, name: &str) -> Self {
        self.netns = Some(name.to_string());
        self
    }

    /// Leave TMPDIR as the test process has it (usually unset).
    pub fn default_tmpdir(mut self) -> Self {
        self.tmpdir = None;
        self
    }

    /// Makes this `sekexe run` as `sekexe start` of a fresh warm guest with the run's guest
    /// options, `sekexe exec` of the command in it with the run's per-command options (and
    /// this builder's stdin, environment, folder and timeout), then `sekexe stop`: the same
    /// test then checks that exec behaves exactly as run.
    pub fn through_exec(mut self) -> Self {
        self.through_exec = true;
        self
    }

    fn command(&self) -> Command {
        assert!(
            self.wrapper.is_empty() || (self.user.is_none() && self.netns.is_none()),
            "a wrapped sekexe runs as the test's user, outside network namespaces"
        );
        let mut cmd = match self.user.filter(|_| is_root()) {
            Some(uid) => {
                let mut c = match &self.netns {
                    Some(ns) => {
                        let mut c = Command::new("ip");
                        c.args(["netns", "exec", ns, "setpriv"]);
                        c
                    }
                    None => Command::new("setpriv"),
                };
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={uid}"))
                    .arg("--clear-groups")
                    .arg("--")
                    .arg(sekexe_bin());
                c.env("HOME", "/nonexistent");
                c
            }
            None => match &self.netns {
                Some(ns) => {
                    let mut c = Command::new("ip");
                    c.args(["netns", "exec", ns]).arg(sekexe_bin());
                    c
                }
                None if !self.wrapper.is_empty() => {
                    let mut c = Command::new(&self.wrapper[0]);
                    c.args(&self.wrapper[1..]).arg(sekexe_bin());
                    c
                }
                None => Command::new(sekexe_bin()),
            },
        };
        cmd.args(&self.args);
        if let Some(k) = test_kernel() {
            cmd.env("SEKEXE_KERNEL", k);
        }
        match &self.tmpdir {
            Some(t) => cmd.env("TMPDIR", t),
            None => cmd.env_remove("TMPDIR"),
        };
        for (k, v) in &self.env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        // Its own process group, so a timeout can kill whatever it started.
        cmd.process_group(0);
        cmd
    }

    /// Runs to completion and returns what came back; kills it and fails the test at the
    /// timeout.
    pub fn run(self) -> Output {
        if self.through_exec {
            let (guest, exec) = self.into_warm();
            let out = exec.run();
            guest.stop();
            return out;
        }
        let mut cmd = self.command();
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else if self.stdin_null {
            Stdio::null()
        } else {
            Stdio::inherit()
        });
        let mut child = cmd.spawn().expect("spawn sekexe");
        let writer = self.stdin.map(|data| {
            let mut stdin = child.stdin.take().unwrap();
            std::thread::spawn(move || {
                let _ = stdin.write_all(&data);
            })
        });
        let out = reader(child.stdout.take().unwrap());
        let err = reader(child.stderr.take().unwrap());
        let status = wait_or_kill(&mut child, Instant::now() + self.timeout, &self.args);
        if let Some(w) = writer {
            let _ = w.join();
        }
        Output {
            code: exit_code(status),
            stdout: out.join().unwrap(),
            stderr: err.join().unwrap(),
        }
    }

    /// Starts it with piped stdin, stdout and stderr.
    pub fn spawn(self) -> Running {
        if self.through_exec {
            let (guest, exec) = self.into_warm();
            let mut running = exec.spawn();
            running.guest = Some(guest);
            return running;
        }
        let mut cmd = self.command();
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Running {
            child: cmd.spawn().expect("spawn sekexe"),
            deadline: Instant::now() + self.timeout,
            guest: None,
        }
    }
}

impl Running {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Reads stdout until `needle` has appeared; returns everything read.
    pub fn read_until(&mut self, needle: &[u8]) -> Vec<u8> {
        let stdout = self.child.stdout.as_mut().unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(needle.len()).any(|w| w == needle) {
            assert!(
                Instant::now() < self.deadline,
                "timed out waiting for {needle:?}; got {got:?}"
            );
            let n = stdout.read(&mut buf).unwrap();
            assert!(
                n > 0,
                "stdout ended before {:?}; got {:?}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
        got
    }

    pub fn write_stdin(&mut self, data: &[u8]) {
        self.child.stdin.as_mut().unwrap().write_all(data).unwrap();
    }

    /// Writes to its stdin as far as it takes it; `false` when it stopped reading.
    pub fn write_stdin_lossy(&mut self, data: &[u8]) -> bool {
        self.child.stdin.as_mut().unwrap().write_all(data).is_ok()
    }

    pub fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    pub fn signal(&self, sig: i32) {
        kill(self.pid(), sig);
    }

    /// Waits for the end, collecting the rest of the output.
    pub fn finish(mut self) -> Output {
        drop(self.child.stdin.take());
        let out = self.child.stdout.take().map(reader);
        let err = self.child.stderr.take().map(reader);
        let status = wait_or_kill(&mut self.child, self.deadline, &[]);
        let collect =
            |h: Option<JoinHandle<Vec<u8>>>| h.map(|h| h.join().unwrap()).unwrap_or_default();
        let out = Output {
            code: exit_code(status),
            stdout: collect(out),
            stderr: collect(err),
        };
        if let Some(guest) = self.guest.take() {
            guest.stop();
        }
        out
    }
}

fn reader<R: Read + Send + 'static>(mut r: R) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

fn wait_or_kill(child: &mut Child, deadline: Instant, args: &[OsString]) -> ExitStatus {
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            // The group is the child's own.
            kill(-(child.id() as i32), libc::SIGKILL);
            let _ = child.wait();
            panic!("sekexe {args:?} did not finish in time and was killed");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `f` on each item with up to `threads` at once (for tests that make many runs).
pub fn parallel<T: Send + Sync, F: Fn(&T) + Send + Sync>(items: &[T], threads: usize, f: F) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= items.len() {
                    break;
                }
                f(&items[i]);
            });
        }
    });
}

/// A run of `sekexe` with these arguments, to its end.
pub fn run(scratch: &Scratch, args: &[&str]) -> Output {
    sekexe(scratch, args).run()
}

/// `sekexe run -- sh -c SCRIPT`, to its end.
pub fn sh(scratch: &Scratch, script: &str) -> Output {
    run(scratch, &["run", "--", "sh", "-c", script])
}

/// `sekexe kernel check` of the kernel under test.
pub fn kernel_check() -> String {
    let s = crate::Scratch::new();
    let out = run(&s, &["kernel", "check"]);
    assert!(out.code == 0, "kernel check: {out:?}");
    out.stdout_str()
}

/// Whether `kernel check`'s line about `what` says `ok` (it must have one).
pub fn check_says_ok(check: &str, what: &str) -> bool {
    let line = check
        .lines()
        .find(|l| l.contains(what))
        .unwrap_or_else(|| panic!("kernel check says nothing of {what}:\n{check}"));
    line.trim_start().starts_with("ok")
}
