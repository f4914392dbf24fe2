//! Test support: runs the real `sekexe` binary against a real kernel, each run with its own
//! TMPDIR (on tmpfs, like real use) and a hard timeout, optionally as an unprivileged user,
//! and checks that nothing is left behind.
//!
//! Environment:
//! - `SEKEXE_BIN`: the launcher to test (default: target/release/sekexe, built by
//!   scripts/build; tests fail, never skip, when it is missing).
//! - `SEKEXE_TEST_KERNEL`: the kernel to boot (default: sekexe's own choice).

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The unprivileged user tests drop to when they run as root.
pub const NOBODY: u32 = 65534;
/// Default hard limit for one sekexe run in a test.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(90);

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn sekexe_bin() -> PathBuf {
    let bin = std::env::var_os("SEKEXE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/release/sekexe"));
    assert!(
        bin.is_file(),
        "{} is missing: run scripts/build (or scripts/test), or set SEKEXE_BIN",
        bin.display()
    );
    bin
}

pub fn test_kernel() -> Option<OsString> {
    std::env::var_os("SEKEXE_TEST_KERNEL").filter(|k| !k.is_empty())
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    rustix::process::geteuid().is_root()
}

/// A private TMPDIR on tmpfs for one test, owned by the user the test runs sekexe as.
pub struct Scratch {
    dir: tempfile::TempDir,
    uid: u32,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch::new()
    }
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch::for_user(None)
    }

    pub fn for_user(user: Option<u32>) -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix("sekexe-test-")
            .tempdir_in("/dev/shm")
            .expect("tempdir in /dev/shm");
        // SAFETY: geteuid has no preconditions.
        let uid = user.unwrap_or_else(|| rustix::process::geteuid().as_raw());
        if user.is_some() && is_root() {
            chown(dir.path(), uid);
        }
        Scratch { dir, uid }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A file in the scratch folder with these contents, readable by the test user.
    pub fn file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, contents).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        if is_root() {
            chown(&p, self.uid);
        }
        p
    }

    /// sekexe's per-user folder inside this TMPDIR.
    pub fn user_base(&self) -> PathBuf {
        self.path().join(format!("sekexe-{}", self.uid))
    }

    /// Run folders left in this TMPDIR.
    pub fn leftover_runs(&self) -> Vec<String> {
        match std::fs::read_dir(self.user_base()) {
            Ok(entries) => entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("run-"))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Host processes whose command line mentions this TMPDIR (kernels and helpers of runs
    /// made here).
    pub fn leftover_processes(&self) -> Vec<String> {
        processes_mentioning(self.path())
    }

    /// Asserts that no run folder and no process is left, waiting up to 3 s for processes
    /// that are already dying.
    pub fn assert_clean(&self) {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let procs = self.leftover_processes();
            if procs.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "processes left behind: {procs:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            self.leftover_runs(),
            Vec::<String>::new(),
            "run folders left behind"
        );
    }
}

/// Sends signal `sig` to process `pid`, or to process group `-pid` when negative; a process
/// that is already gone is not an error.
pub fn kill(pid: i32, sig: i32) {
    let signal = rustix::process::Signal::from_named_raw(sig).expect("a named signal");
    let target = rustix::process::Pid::from_raw(pid.abs()).expect("a pid");
    let _ = if pid < 0 {
        rustix::process::kill_process_group(target, signal)
    } else {
        rustix::process::kill_process(target, signal)
    };
}

pub fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

pub fn processes_mentioning(needle: &Path) -> Vec<String> {
    let needle = needle.as_os_str().as_encoded_bytes();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if pid.parse::<u32>().ok() == Some(std::process::id()) {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            if cmdline.windows(needle.len()).any(|w| w == needle) {
                let shown: String = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                found.push(format!("{pid}: {}", &shown[..shown.len().min(200)]));
            }
        }
    }
    found
}

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
pub struct Sekexe {
    args: Vec<OsString>,
    stdin: Option<Vec<u8>>,
    stdin_null: bool,
    env: Vec<(OsString, Option<OsString>)>,
    user: Option<u32>,
    timeout: Duration,
    tmpdir: Option<PathBuf>,
    cwd: Option<PathBuf>,
    netns: Option<String>,
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
    }
}

/// A running sekexe with piped streams, for tests that talk to it.
pub struct Running {
    pub child: Child,
    deadline: Instant,
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

    fn command(&self) -> Command {
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
        let mut cmd = self.command();
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Running {
            child: cmd.spawn().expect("spawn sekexe"),
            deadline: Instant::now() + self.timeout,
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
        Output {
            code: exit_code(status),
            stdout: collect(out),
            stderr: collect(err),
        }
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

/// A real terminal: a tmux server of the test's own (its own socket), one pane running a
/// shell command, driven with send-keys and read with capture-pane.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `command` (run by /bin/sh) in a `cols` x `rows` pane.
    pub fn start(command: &str, cols: u16, rows: u16) -> Tmux {
        assert!(
            Command::new("tmux")
                .arg("-V")
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false),
            "tmux is missing: scripts/setup --tests installs it"
        );
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let socket = format!(
            "sekexe-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let t = Tmux { socket };
        let status = t
            .cmd()
            .args([
                "new-session",
                "-d",
                "-x",
                &cols.to_string(),
                "-y",
                &rows.to_string(),
            ])
            .arg(command)
            .status()
            .unwrap();
        assert!(status.success(), "tmux new-session failed");
        // Keep the pane after the command ends, so its last output can still be read.
        t.cmd()
            .args(["set-option", "-g", "remain-on-exit", "on"])
            .status()
            .unwrap();
        t
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"]);
        c
    }

    /// Sends keys as tmux names them (`"C-c"`, `"Enter"`) or literal text with `literal`.
    pub fn keys(&self, keys: &[&str]) {
        let status = self.cmd().arg("send-keys").args(keys).status().unwrap();
        assert!(status.success());
    }

    /// Types `text` literally, then Enter.
    pub fn line(&self, text: &str) {
        let status = self.cmd().args(["send-keys", "-l", text]).status().unwrap();
        assert!(status.success());
        self.keys(&["Enter"]);
    }

    pub fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-J"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen satisfies `pred`; fails the test with the screen after `limit`.
    pub fn wait_for(&self, what: &str, limit: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.screen();
            if pred(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `text` is on the screen.
    pub fn wait_text(&self, text: &str) -> String {
        self.wait_for(text, RUN_TIMEOUT, |s| s.contains(text))
    }

    pub fn resize(&self, cols: u16, rows: u16) {
        let status = self
            .cmd()
            .args([
                "resize-window",
                "-x",
                &cols.to_string(),
                "-y",
                &rows.to_string(),
            ])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

/// Quotes a string for /bin/sh.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The sekexe command line, as shell text, with the test's kernel and TMPDIR.
pub fn sekexe_shell_command(scratch: &Scratch, args: &str) -> String {
    let kernel = test_kernel()
        .map(|k| format!("SEKEXE_KERNEL={} ", sh_quote(&k.to_string_lossy())))
        .unwrap_or_default();
    format!(
        "{kernel}TMPDIR={} {} {args}",
        sh_quote(&scratch.path().to_string_lossy()),
        sh_quote(&sekexe_bin().to_string_lossy())
    )
}

/// The launcher processes (not the kernel) of runs made in this scratch folder.
pub fn launcher_pids(scratch: &Scratch) -> Vec<i32> {
    let bin = sekexe_bin();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let exe = std::fs::read_link(entry.path().join("exe")).ok();
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        let tmp = format!("TMPDIR={}", scratch.path().display());
        // Each launcher has a sentinel child (a fork of it, named so) that kills the kernel if
        // the launcher dies: not a launcher itself.
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if exe.as_deref() == Some(bin.as_path())
            && comm.trim_end() != "sekexe-sentinel"
            && environ.split(|&b| b == 0).any(|e| e == tmp.as_bytes())
        {
            pids.push(pid);
        }
    }
    pids
}

/// The kernel process started by the launcher `launcher` (its child with this scratch folder
/// and a uml_dir on its command line; network helpers have no uml_dir).
pub fn kernel_pid(scratch: &Scratch, launcher: i32) -> Option<i32> {
    scratch
        .leftover_processes()
        .iter()
        .filter(|p| p.contains("uml_dir="))
        .filter_map(|p| p.split(':').next()?.parse::<i32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit(')')
                        .next()?
                        .split_whitespace()
                        .nth(1)?
                        .parse::<i32>()
                        .ok()
                })
                == Some(launcher)
        })
}

/// Writes an executable script (for SEKEXE_INIT, a fake kernel...) into `dir`.
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// A folder the guest sees at the same path from the very start of boot (not under /dev,
/// /tmp, /run or /var/tmp, which the guest covers): for init scripts and victim files.
pub fn guest_visible_dir(prefix: &str) -> tempfile::TempDir {
    let base = workspace().join("target/test-visible");
    std::fs::create_dir_all(&base).unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&base)
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}
