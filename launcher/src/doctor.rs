//! `sekexe doctor`: checks this host for everything sekexe needs, and says how to fix each
//! problem. Ends with a real test run when nothing blocks one.

use std::os::unix::process::CommandExt;

use std::process::{Command, Stdio};
use std::time::Instant;

use crate::cli::DoctorArgs;
use crate::config::DEFAULT_MEM;
use crate::{kernel, memory, paths, rundir, sandbox};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Ok,
    Warn,
    Fail,
}

struct Report {
    worst: Level,
}

impl Report {
    fn line(&mut self, level: Level, what: &str, text: &str) {
        let mark = match level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        println!("{mark}  {what:<12} {text}");
        self.worst = self.worst.max(level);
    }
}

pub fn doctor(args: DoctorArgs) -> anyhow::Result<u8> {
    let mut r = Report { worst: Level::Ok };

    let kernel = match kernel::select(args.kernel.as_deref()) {
        Ok(k) => {
            r.line(
                Level::Ok,
                "kernel",
                &format!(
                    "{} ({}), has every required feature",
                    k.path.display(),
                    k.source.describe()
                ),
            );
            let ships_modules = crate::kernelcmd::version(&k.path)
                .as_deref()
                .and_then(crate::kernelcmd::modules_dir)
                .is_some();
            if ships_modules && !crate::kernelcmd::host_has_modprobe() {
                r.line(Level::Warn, "modules", "the kernel has modules but this root has no modprobe for the guest to run (apt install kmod): modprobe, loop images and Docker fail in guests");
            }
            if !k.config.slow_initcalls().is_empty() {
                r.line(Level::Ok, "boot time", "slow initcalls present; sekexe skips them (sekexe kernel build makes a kernel that boots faster still)");
            }
            Some(k)
        }
        Err(e) => {
            r.line(Level::Fail, "kernel", &format!("{e:#}"));
            None
        }
    };

    let init = match paths::guest_init() {
        Ok(p) => match paths::is_static(&p) {
            Ok(true) => {
                r.line(
                    Level::Ok,
                    "guest-init",
                    &format!("{} (static)", p.display()),
                );
                Some(p)
            }
            Ok(false) => {
                r.line(Level::Fail, "guest-init", &format!("{} is dynamically linked: it runs as PID 1 before any library path exists; build it for x86_64-unknown-linux-musl", p.display()));
                None
            }
            Err(e) => {
                r.line(Level::Fail, "guest-init", &format!("{}: {e}", p.display()));
                None
            }
        },
        Err(e) => {
            r.line(Level::Fail, "guest-init", &format!("{e:#}"));
            None
        }
    };

    match crate::scratch::probe() {
        Ok(()) => r.line(
            Level::Ok,
            "memory",
            "guest memory and the kernel's own files go in a private tmpfs bounded to --mem + 64 MiB",
        ),
        Err(e) => {
            r.line(Level::Warn, "memory", &format!("no private tmpfs for the kernel's files ({e:#}): the guest can fill the run folders' file system until sekexe notices"));
            match memory::choose_dir()
                .and_then(|d| memory::check_room(&d, DEFAULT_MEM).map(|_| d))
            {
                Ok(dir) if memory::is_tmpfs(&dir) => r.line(
                    Level::Ok,
                    "memory",
                    &format!(
                        "guest memory goes in {} instead (tmpfs, exec-able, room for the default --mem)",
                        dir.display()
                    ),
                ),
                Ok(dir) => r.line(Level::Warn, "memory", &format!("guest memory goes in {} instead, which is not a tmpfs: guests run slower; set TMPDIR to an exec-able tmpfs such as /dev/shm (in Docker, whose /dev/shm is noexec: docker run --tmpfs /tmp:exec,size=1g)", dir.display())),
                Err(e) => r.line(Level::Fail, "memory", &format!("{e:#}")),
            }
        }
    }
    match memory::choose_dir().and_then(|d| rundir::user_base(&d)) {
        Ok(base) => r.line(
            Level::Ok,
            "run folders",
            &format!("{} (private)", base.display()),
        ),
        Err(e) => r.line(Level::Fail, "run folders", &format!("{e:#}")),
    }

    match ptrace_allowed() {
        Ok(scope) => r.line(Level::Ok, "ptrace", &format!("allowed{scope}")),
        Err(e) => r.line(Level::Fail, "ptrace", &e),
    }

    match sandbox::landlock_abi() {
        Ok(v) => r.line(
            Level::Ok,
            "landlock",
            &format!(
                "ABI {v}: the kernel process may write only its scratch area and your rw volumes"
            ),
        ),
        Err(why) => r.line(
            Level::Warn,
            "landlock",
            &format!("missing ({why}): the guest can write wherever you can"),
        ),
    }
    if rustix::process::geteuid().is_root() {
        match sandbox::mount_namespace_absence_here() {
            None => r.line(Level::Ok, "mounts", "the kernel process sees every host mount read-only but its writable places"),
            Some(why) => r.line(Level::Warn, "mounts", &format!("no mount namespace ({why}): host mounts are not made read-only for the kernel process; Landlock is what keeps its writes out")),
        }
    }

    match crate::net::find_user_backend() {
        Ok(path) => r.line(
            Level::Ok,
            "network",
            &format!("{} found: --net user works", path.display()),
        ),
        Err(e) => r.line(Level::Warn, "network", &format!("{e:#}")),
    }

    if r.worst < Level::Fail {
        if let (Some(k), Some(_)) = (&kernel, &init) {
            let started = Instant::now();
            let exe = std::env::current_exe()?;
            let out = Command::new(exe)
                .args(["run", "--kernel"])
                .arg(&k.path)
                .args(["--", "true"])
                .stdin(Stdio::null())
                .output()?;
            if out.status.success() {
                r.line(
                    Level::Ok,
                    "test run",
                    &format!(
                        "'true' in a guest took {:.2} s",
                        started.elapsed().as_secs_f64()
                    ),
                );
            } else {
                let err = String::from_utf8_lossy(&out.stderr);
                r.line(
                    Level::Fail,
                    "test run",
                    &format!("failed: {}", err.lines().next().unwrap_or("")),
                );
            }
        }
    }
    Ok(if r.worst == Level::Fail { 1 } else { 0 })
}

/// UML runs the guest's processes under ptrace. Yama's scope 3 forbids it, and so do some
/// container seccomp profiles: try it.
fn ptrace_allowed() -> Result<String, String> {
    let scope = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .ok()
        .map(|s| s.trim().to_string());
    if scope.as_deref() == Some("3") {
        return Err("Yama ptrace_scope is 3, which forbids all ptrace; UML needs it: set kernel.yama.ptrace_scope to 1 or less (root)".into());
    }
    let mut probe = Command::new("/bin/true");
    // SAFETY: runs in the forked child before exec; ptrace and _exit are async-signal-safe.
    unsafe {
        probe.pre_exec(|| {
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Traced now: exiting here spares the parent from handling an exec stop.
            libc::_exit(0);
        });
    }
    match probe.status() {
        Ok(_) => Ok(scope.map(|s| format!(" (Yama ptrace_scope {s})")).unwrap_or_default()),
        Err(e) => Err(format!("ptrace(PTRACE_TRACEME) fails ({e}): a container seccomp profile may forbid it; UML needs ptrace (e.g. docker run --cap-add SYS_PTRACE --security-opt seccomp=unconfined)")),
    }
}
