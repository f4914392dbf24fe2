//! `sekexe run`: from options to the command's exit status.

use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use rustix::net::{AddressFamily, SocketFlags, SocketType};
use sekexe_wire::{Net, Overlay, Request, Volume};

use crate::cli::RunArgs;
use crate::cmdline::{self, BootParams};
use crate::config::{Caller, OverlayChoice, RunConfig};
use crate::net::{self, Forwarder, Network};
use crate::overlaydir::OverlayDir;
use crate::report::{self, KernelInfo, Report, ResultTarget};
use crate::sandbox::{Plan, Sandbox};
use crate::scratch::Scratch;
use crate::session::{Io, Options, Session};
use crate::uml::{self, KernelCwd, Spawn, Uml};
use crate::{
    calibration, diagnose, kernel, memory, paths, placement, rundir, signals, terminal, units,
    userspace, verdict,
};

/// How many kernel console lines a failure report shows.
const CONSOLE_TAIL: usize = 20;

pub fn run(args: RunArgs) -> Result<u8> {
    let caller = Caller::current();
    let Some(path) = args.result.clone() else {
        return run_reporting(args, &caller, &mut None);
    };
    // Its folder is held from here on: a guest that replaces it with a link (in an rw
    // volume) cannot send the result elsewhere.
    let target = ResultTarget::open(&path, caller.cwd.as_deref().ok())?;
    let mut report = Some(Report::new());
    let outcome = run_reporting(args, &caller, &mut report);
    let mut report = report.unwrap_or_default();
    match &outcome {
        Ok(code) => report.exit_code = *code,
        Err(e) => {
            report.exit_code = sekexe_wire::ExitCode::Failed.code();
            report.failed = true;
            report.message = Some(crate::without_errno_numbers(&format!("{e:#}")));
        }
    }
    if let Some(k) = report.kernel.as_mut() {
        // Asked after the run, not before the kernel boots.
        k.release = crate::kernelcmd::version(Path::new(&k.path));
    }
    report.timeline_ms.total = ms_rounded(crate::STARTED.get().copied(), Some(Instant::now()));
    // The run's own outcome stands: a result that cannot be written is said, not made the
    // exit status.
    if let Err(e) = target.write(&report) {
        eprintln!(
            "sekexe: warning: {}",
            crate::without_errno_numbers(&format!("{e:#}"))
        );
    }
    outcome
}

fn run_reporting(args: RunArgs, caller: &Caller, report: &mut Option<Report>) -> Result<u8> {
    let cfg = RunConfig::from_args(args, caller)?;
    let booted = boot(&cfg, report, false)?;
    let Booted {
        kernel: _,
        io,
        uml,
        spawned,
        options,
        mut run_dir,
        base,
        umid,
        memory_dir,
        network: _network,
        overlay_dir: _overlay_dir,
        lines: _,
    } = booted;
    let mut session = Session::new(io, uml, spawned, options);
    session.run()?;

    let logs = paths::log_dir().unwrap_or_else(|| base.clone());
    let failure = Failure {
        base: &base,
        logs: &logs,
        umid: &umid,
        memory_dir: &memory_dir,
    };
    let code = conclude(&cfg, &run_dir, &mut session, &failure, report);
    if cfg.debug {
        print_timeline(&session);
    }
    if cfg.keep {
        run_dir.keep(session.status.as_ref().and_then(|s| s.as_ref().ok()));
        eprintln!("sekexe: kept the run folder {}", run_dir.path().display());
    }
    if let Some(r) = report.as_mut() {
        r.timeline_ms = timeline(&session);
        r.peak_rss_bytes = report::children_peak_rss();
        if cfg.keep {
            r.run_folder = Some(report::text(run_dir.path()));
        }
    }
    Ok(code)
}

/// A kernel booting for a run or a warm guest, and what must live as long as it.
pub(crate) struct Booted {
    pub kernel: PathBuf,
    pub io: Io,
    pub uml: Uml,
    pub spawned: Instant,
    pub options: Options,
    pub run_dir: rundir::RunDir,
    /// The user's run base.
    pub base: PathBuf,
    /// The kernel's umid, which names its failure log.
    pub umid: String,
    pub memory_dir: PathBuf,
    /// The network helpers, stopped when this goes.
    pub network: Network,
    pub overlay_dir: Option<OverlayDir>,
    /// A warm guest's session lines, the launcher's ends (by line number); none for a run.
    pub lines: Vec<OwnedFd>,
}

/// Sets up everything `cfg` asks for and starts the kernel: a run's (its command in the
/// request) or, with `serve`, a warm guest's (`sekexe start`: no command; guest-init serves
/// `sekexe exec` sessions).
pub(crate) fn boot(cfg: &RunConfig, report: &mut Option<Report>, serve: bool) -> Result<Booted> {
    let kernel = kernel::select(cfg.kernel.as_deref())?;
    net::check_kernel(&cfg.net.mode, &kernel.config)?;
    let offers = userspace::KernelOffers {
        seccomp: kernel.config.seccomp_userspace(),
        max_cpus: kernel.config.max_cpus(),
    };
    let confined = whole_confinement(cfg);
    let choice = userspace::choose(cfg.userspace, cfg.cpus, offers, confined)?;
    if let Some(w) = &choice.warning {
        eprintln!("sekexe: warning: {w}");
    }
    let userspace_words = choice.words(offers);
    if let Some(r) = report.as_mut() {
        r.kernel = Some(KernelInfo {
            path: report::text(&kernel.path),
            source: kernel.source.describe().to_string(),
            release: None,
            userspace: format!("{:?}", choice.userspace).to_lowercase(),
            cpus: choice.cpus,
        });
    }
    if cfg.cgroups == sekexe_wire::Cgroups::V1 {
        let missing = kernel.config.missing_v1_hierarchies();
        if !missing.is_empty() {
            eprintln!(
                "sekexe: note: --cgroup v1 without the {} hierarchy: this kernel lacks it \
                 (`sekexe kernel check` lists what a kernel has)",
                missing.join(" and ")
            );
        }
    }
    let init = paths::guest_init()?;
    let memory_dir = memory::choose_dir()?;

    let overlay_dir = match &cfg.overlay {
        OverlayChoice::Dir(dir) => Some(OverlayDir::prepare(dir)?),
        _ => None,
    };
    let mut disks: Vec<(&Path, bool)> = cfg
        .disks
        .iter()
        .map(|d| (d.path.as_path(), d.writable))
        .collect();
    let overlay = match (&cfg.overlay, &overlay_dir) {
        (OverlayChoice::Tmpfs, _) => Overlay::Tmpfs,
        (OverlayChoice::Dir(_), Some(o)) => {
            disks.push((o.image.as_path(), true));
            Overlay::Disk(cmdline::disk_device(disks.len() - 1).into_bytes())
        }
        _ => Overlay::None,
    };

    // From here on signals wait in the signalfd: a Ctrl-C cannot leave a half-made run behind.
    let signals = signals::block()?;
    let base = rundir::user_base(&memory_dir)?;
    check_own_folders_stay_ours(cfg, &base)?;
    let run_dir = rundir::RunDir::create(&base)?;
    let scratch = Scratch::create(cfg.mem, run_dir.path())?;
    if scratch.host_folder().is_some() {
        memory::check_room(&memory_dir, cfg.mem)?;
    }
    // Disks go on the kernel command line, which cannot carry spaces, ',' or ':': link them
    // from the run folder under plain names.
    let disk_links = run_dir.link_disks(&disks)?;
    let disks: Vec<(&Path, bool)> = disk_links
        .iter()
        .zip(&disks)
        .map(|(l, (_, w))| (l.as_path(), *w))
        .collect();
    // The user's own lpj=, or --full-boot, leaves the calibration to the kernel.
    let own_lpj = cfg.kernel_args.iter().any(|a| a.starts_with("lpj="));
    let lpj = if cfg.full_boot || own_lpj {
        None
    } else {
        calibration::cached(&base)
    };
    let mut req = request(cfg, overlay);
    req.measure_lpj = lpj.is_none() && !own_lpj;
    if serve {
        req.argv = Vec::new();
        req.tty = false;
        req.serve = true;
    }
    run_dir.write_request(&req)?;

    let mut network = Network::start(&cfg.net, &run_dir, cmdline::CHANNEL_FD + 1, cfg.sandbox)?;
    let (ours, theirs) = console_pair().context("the channel")?;
    let (console_r, console_w) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).context("pipe")?;
    // Read without blocking: a process the kernel left behind may hold the write end.
    rustix::io::ioctl_fionbio(&console_r, true).context("make the console pipe non-blocking")?;
    // A warm guest's session lines: the kernel's ends go after the network's fds.
    let (lines, kernel_lines) = if serve {
        session_lines()?
    } else {
        (Vec::new(), Vec::new())
    };
    let first_line_fd =
        cmdline::CHANNEL_FD + 1 + (network.fds.len() + network.kernel_keeps.len()) as i32;
    let line_fds: Vec<i32> = (0..kernel_lines.len() as i32)
        .map(|n| first_line_fd + n)
        .collect();

    let umid = format!(
        "sekexe-{}-{}",
        std::process::id(),
        run_dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("run-")
    );
    let (memory_dir_for_kernel, uml_dir) = Scratch::kernel_paths();
    // The user's own initcall_blacklist, or --full-boot, replaces ours.
    let own_blacklist = cfg
        .kernel_args
        .iter()
        .any(|a| a.starts_with("initcall_blacklist="));
    let skip = if cfg.full_boot || own_blacklist {
        Vec::new()
    } else {
        kernel.config.slow_initcalls()
    };
    let words = cmdline::render(&BootParams {
        mem_mib: units::to_mib(cfg.mem),
        init: &init,
        exchange: run_dir.path(),
        umid: &umid,
        uml_dir: &uml_dir,
        skip_initcalls: &skip,
        verbose: cfg.debug,
        lpj,
        debug_shell: cfg.debug_shell,
        net: &network.words,
        userspace: &userspace_words,
        hostfs_cache_ms: fs_cache_ms(cfg, &kernel.config),
        disks: &disks,
        extra: &cfg.kernel_args,
        session_lines: &line_fds,
    })?;
    if cfg.debug {
        eprintln!(
            "[sekexe] kernel {} ({})",
            kernel.path.display(),
            kernel.source.describe()
        );
        eprintln!("[sekexe] command line: {}", words.join(" "));
        eprintln!(
            "[sekexe] userspace: {:?}, {} CPU(s){}",
            choice.userspace,
            choice.cpus,
            choice.note.map(|n| format!(" ({n})")).unwrap_or_default()
        );
    }
    let sandbox = sandbox(cfg, &scratch, &disks, &network)?;
    if cfg.debug {
        for line in &sandbox.summary {
            eprintln!("[sekexe] sandbox: {line}");
        }
    }
    // With one guest CPU the kernel and its processes never run at once: keep them together.
    let cpu = if cfg.pin && choice.cpus == 1 {
        placement::one_cpu(&base)
    } else {
        None
    };
    if cfg.debug {
        match cpu {
            Some(c) => eprintln!("[sekexe] host CPU: the kernel stays on CPU {c}"),
            None => eprintln!("[sekexe] host CPU: any"),
        }
    }
    let spawned = Instant::now();
    let uml = Uml::spawn(Spawn {
        kernel: &kernel.path,
        words: &words,
        channel: theirs,
        console: console_w,
        memory_dir: &memory_dir_for_kernel,
        cwd: match scratch.host_folder() {
            Some(folder) => KernelCwd::Path(folder),
            None => KernelCwd::Fd(scratch.fd()),
        },
        extra_fds: {
            let mut fds = std::mem::take(&mut network.fds);
            fds.append(&mut network.kernel_keeps);
            fds.extend(kernel_lines);
            fds
        },
        sandbox,
        // The kernels that re-execute themselves for it are those with seccomp userspace (7.x).
        no_randomize: offers.seccomp,
        cpu,
    })?;
    scratch.watch_kernel(uml.pid());
    // Now that the kernel boots, tidy up after launchers that were killed.
    rundir::remove_stale(&base, run_dir.path());

    let io = Io {
        channel: ours,
        console: console_r,
        signals,
        files: run_dir.files()?,
        scratch,
    };
    let forwarder = network.api.clone().map(|api| {
        let guest = cfg
            .net
            .static_ip
            .as_ref()
            .map_or(net::USER_GUEST_ADDR, |s| s.address);
        Forwarder::new(api, cfg.net.forwards.clone(), guest)
    });
    let options = Options {
        debug: cfg.debug,
        timeout: cfg.timeout,
        tty: cfg.tty,
        forwarder,
    };
    Ok(Booted {
        kernel: kernel.path.clone(),
        io,
        uml,
        spawned,
        options,
        run_dir,
        base,
        umid,
        memory_dir,
        network,
        overlay_dir,
        lines,
    })
}

/// A warm guest's session lines: the launcher's ends and the kernel's.
fn session_lines() -> Result<(Vec<OwnedFd>, Vec<OwnedFd>)> {
    (0..sekexe_wire::names::SESSION_LINES)
        .map(|_| console_pair().context("a session line"))
        .collect::<Result<Vec<_>>>()
        .map(|pairs| pairs.into_iter().unzip())
}

/// A socket pair for a kernel console (`conN=fd:`): the launcher's end, non-blocking, and
/// the kernel's.
fn console_pair() -> Result<(OwnedFd, OwnedFd)> {
    let (ours, theirs) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .context("socketpair")?;
    rustix::io::ioctl_fionbio(&ours, true).context("make it non-blocking")?;
    Ok((ours, theirs))
}

/// `hostfs.cache_ms=`, when the kernel can cache and the user did not turn it off. A kernel
/// without the patch asks the host every time: say so when the user asked for a cache.
fn fs_cache_ms(cfg: &RunConfig, config: &crate::kconfig::Kconfig) -> Option<u64> {
    let ms = u64::try_from(cfg.fs_cache.as_millis())
        .unwrap_or(u64::MAX)
        .min(u32::MAX.into());
    if ms == 0 {
        return None;
    }
    if !config.hostfs_cache() {
        if cfg.fs_cache_given {
            eprintln!(
                "sekexe: note: this kernel's hostfs caches nothing, so --fs-cache has no effect \
                 (the project's kernel has the cache: sekexe kernel build)"
            );
        }
        return None;
    }
    Some(ms)
}

/// Whether the kernel process gets the whole host-side confinement, which seccomp userspace
/// puts within reach of every guest process; if not, what is missing.
fn whole_confinement(cfg: &RunConfig) -> userspace::Confinement {
    let root = rustix::process::geteuid().is_root();
    if !cfg.sandbox {
        return Err("the sandbox (no --no-sandbox)".into());
    }
    if crate::sandbox::abi_version().is_none_or(|v| v < 6) {
        return Err(
            "Landlock ABI 6 on the host (Linux 6.12+), which scopes signals and abstract sockets"
                .into(),
        );
    }
    if cfg.net.mode.kernel_sockets() != crate::sandbox::Sockets::PairsOnly {
        return Err("a network that gives the kernel process no sockets of its own (--net user, vde or none)".into());
    }
    if !root && cfg.volumes.iter().any(|v| v.writable) {
        return Err("no rw volume in a run as another user than root (hostfs needs chmod there, and with it any guest user could change the modes of your other files)".into());
    }
    if !root {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if let Some(point) = crate::sandbox::terminal_mounts_outside_dev(&mountinfo).first() {
            return Err(format!("no terminal file system mounted outside /dev (there is one at {point}, which Landlock cannot leave out)"));
        }
    }
    Ok(())
}

/// Refuses rw volumes and disks that would let the guest write the run folders, which the
/// launcher relies on during the run. (A rw home volume also exposes sekexe's cache and logs,
/// as it exposes the rest of the home: those are read link- and FIFO-safe, and capped.)
fn check_own_folders_stay_ours(cfg: &RunConfig, base: &Path) -> Result<()> {
    let base = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_path_buf());
    let writable = cfg
        .volumes
        .iter()
        .filter(|v| v.writable)
        .map(|v| ("-v", &v.host))
        .chain(
            cfg.disks
                .iter()
                .filter(|d| d.writable)
                .map(|d| ("--disk", &d.path)),
        );
    for (option, path) in writable {
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        if overlaps(&path, &base) {
            anyhow::bail!(
                "{option} {}: writable to the guest, it would overlap sekexe's run folders in {}: choose another path, make it read-only, or set TMPDIR elsewhere",
                units::shown(&path),
                units::shown(&base)
            );
        }
    }
    Ok(())
}

/// Whether one path lies within the other (or they are the same).
fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// The kernel process's confinement for this run.
fn sandbox(
    cfg: &RunConfig,
    scratch: &Scratch,
    disks: &[(&Path, bool)],
    network: &Network,
) -> Result<Sandbox> {
    if !cfg.sandbox {
        eprintln!(
            "sekexe: warning: --no-sandbox: the guest can write to the host with your rights"
        );
        if let Some(w) = &scratch.withheld {
            eprintln!("sekexe: warning: without {w}");
        }
        return Ok(Sandbox::none());
    }
    let volumes: Vec<PathBuf> = cfg
        .volumes
        .iter()
        .filter(|v| v.writable)
        .map(|v| v.host.clone())
        .collect();
    let plan = Plan {
        user_writable: !volumes.is_empty(),
        writable: scratch
            .host_folder()
            .map(Path::to_path_buf)
            .into_iter()
            .chain(volumes)
            .collect(),
        writable_fds: match scratch.host_folder() {
            None => vec![rustix::io::fcntl_dupfd_cloexec(scratch.fd(), 3).context("dup")?],
            Some(_) => Vec::new(),
        },
        writable_files: disks
            .iter()
            .filter(|(_, w)| *w)
            .map(|(p, _)| p.to_path_buf())
            .collect(),
        allow_tcp: network.kernel_tcp,
        net_admin: network.tap,
        sockets: network.kernel_sockets,
        withheld: scratch.withheld.iter().cloned().collect(),
    };
    let sandbox = Sandbox::prepare(&plan)?;
    if let Some(w) = &sandbox.warning {
        eprintln!("sekexe: warning: {w}");
    }
    Ok(sandbox)
}

/// The request for `cfg`'s command (a warm guest's session takes its command-level fields).
pub(crate) fn request(cfg: &RunConfig, overlay: Overlay) -> Request {
    let net = match (&cfg.net.mode, &cfg.net.static_ip) {
        (net::Mode::None, _) => Net::None,
        (_, Some(s)) => Net::Static {
            address: s.address,
            prefix: s.prefix,
            gateway: s.gateway,
            dns: s.dns.clone(),
        },
        // The legacy slirp speaks SLIP, without DHCP: the original sekexe's addresses.
        (net::Mode::Slirp(_), None) => Net::Static {
            address: std::net::Ipv4Addr::new(10, 0, 2, 15),
            prefix: 24,
            gateway: Some(std::net::Ipv4Addr::new(10, 0, 2, 2)),
            dns: vec![std::net::Ipv4Addr::new(10, 0, 2, 3)],
        },
        (_, None) => Net::Dhcp,
    };

    let (rows, cols) = if cfg.tty {
        terminal::size().unwrap_or((0, 0))
    } else {
        (0, 0)
    };
    Request {
        argv: cfg.argv.clone(),
        env: cfg.env.clone(),
        cwd: cfg.cwd.as_os_str().as_bytes().to_vec(),
        uid: cfg.uid,
        gid: cfg.gid,
        tty: cfg.tty,
        rows,
        cols,
        hostname: cfg.hostname.as_bytes().to_vec(),
        debug: cfg.debug,
        cgroups: cfg.cgroups,
        overlay,
        root: cfg
            .root
            .as_ref()
            .map(|r| r.as_os_str().as_bytes().to_vec())
            .unwrap_or_default(),
        volumes: cfg
            .volumes
            .iter()
            .map(|v| Volume {
                host: v.host.as_os_str().as_bytes().to_vec(),
                guest: v.guest.as_os_str().as_bytes().to_vec(),
                writable: v.writable,
            })
            .collect(),
        net,
        wait_for_network: !cfg.net.forwards.is_empty(),
        measure_lpj: false,
        serve: false,
    }
}

/// Where a failed run's kernel log goes, and what helps explain it.
struct Failure<'a> {
    /// The user's run base (the calibration cache's fallback).
    base: &'a Path,
    /// Where failed runs' kernel logs go.
    logs: &'a Path,
    umid: &'a str,
    memory_dir: &'a Path,
}

/// The exit status, and the messages a user needs when it is not the command's own.
fn conclude(
    cfg: &RunConfig,
    run_dir: &rundir::RunDir,
    session: &mut Session,
    failure: &Failure,
    report: &mut Option<Report>,
) -> u8 {
    if session.interruption.is_none() {
        if let Some(Ok(s)) = &session.status {
            if s.lpj > 0 {
                calibration::remember(s.lpj, failure.base);
            }
        }
    }
    let (verdict, mut message) = verdict_of(cfg, session);
    if verdict.unreported {
        let kernel = session.uml.as_mut().and_then(Uml::try_wait);
        let why = if !run_dir.path().is_dir() {
            format!(
                "the run folder {} was removed during the run",
                run_dir.path().display()
            )
        } else {
            let memory_dir = failure.memory_dir.display().to_string();
            diagnose::cause(&session.console.text(), kernel, &memory_dir).unwrap_or_else(|| {
                let how = kernel
                    .map(uml::describe)
                    .unwrap_or_else(|| "was stopped".into());
                format!("the kernel {how}")
            })
        };
        message = format!("{message}: {why}");
    }
    let log = if verdict.show_console {
        guest_failure(session, failure, &message)
    } else {
        if !message.is_empty() {
            eprintln!("sekexe: {message}");
        }
        None
    };
    if let Some(r) = report.as_mut() {
        if let Some(Ok(status)) = &session.status {
            if let sekexe_wire::Outcome::Signaled {
                signal,
                core_dumped,
            } = status.outcome
            {
                r.signal = Some(signal);
                r.core_dumped = core_dumped;
            }
        }
        // An unresponsive guest is given up on only after the timeout's SIGTERM.
        r.timed_out = session.timed_out;
        r.failed = verdict.failed;
        r.message = (!message.is_empty()).then(|| message.clone());
        r.log = log.as_deref().map(report::text);
    }
    verdict.code
}

/// The verdict on a session that ended (a run's or an exec's), and its message with the hint
/// for a command the guest's own /tmp hides.
pub(crate) fn verdict_of(cfg: &RunConfig, session: &Session) -> (verdict::Verdict, String) {
    let argv0 = String::from_utf8_lossy(&cfg.argv[0]).into_owned();
    let verdict = verdict::decide(&verdict::Ending {
        interruption: session.interruption.as_ref(),
        status: session.status.as_ref(),
        timed_out: session.timed_out,
        command: &argv0,
    });
    let mut message = verdict.message.clone().unwrap_or_default();
    if matches!(verdict.code, 126 | 127) && !message.is_empty() {
        if let Some(hint) = cfg.hidden_command_hint() {
            message = format!("{message} ({hint})");
        }
    }
    (verdict, message)
}

/// Says why the guest failed, with the console's last lines; keeps the whole log and
/// returns where.
fn guest_failure(session: &Session, failure: &Failure, message: &str) -> Option<PathBuf> {
    eprintln!("sekexe: {message}");
    let tail = session.console.last_lines(CONSOLE_TAIL);
    if !tail.is_empty() {
        eprintln!("sekexe: last kernel console lines:");
        for line in tail {
            eprintln!("  | {line}");
        }
    }
    // The user's state folder; the run base when that cannot be made (no writable home).
    let log = session.console.contents();
    let saved = rundir::save_failure_log(failure.logs, failure.umid, &log)
        .or_else(|e| rundir::save_failure_log(failure.base, failure.umid, &log).map_err(|_| e));
    match saved {
        Ok(path) => {
            eprintln!(
                "sekexe: full kernel log: {} (--debug shows it live)",
                path.display()
            );
            Some(path)
        }
        Err(e) => {
            eprintln!("sekexe: could not keep the kernel log: {e:#}");
            None
        }
    }
}

fn ms_between(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64() * 1000.0
}

/// Milliseconds from one instant to another, to the microsecond (the clocks say no more).
fn ms_rounded(from: Option<Instant>, to: Option<Instant>) -> Option<f64> {
    Some((ms_between(from?, to?) * 1e3).round() / 1e3)
}

/// The phases of the run, for `--result`: the same as `--debug`'s timeline.
fn timeline(session: &Session) -> report::Timeline {
    let e = &session.events;
    report::Timeline {
        launcher: ms_rounded(crate::STARTED.get().copied(), e.spawned),
        kernel_boot: ms_rounded(e.spawned, e.hello),
        guest_setup: ms_rounded(e.hello, e.started),
        command: ms_rounded(e.started, e.end),
        power_off: ms_rounded(e.end, e.exited),
        total: None,
    }
}

fn print_timeline(session: &Session) {
    let e = &session.events;
    let Some(t0) = e.spawned else { return };
    let ms = |t: Instant| ms_between(t0, t);
    eprintln!("[sekexe] timeline, ms since the kernel process started (host clock):");
    if let Some(&start) = crate::STARTED.get() {
        eprintln!(
            "[sekexe] {:8.1}  launcher started     options, kernel, run folder, sandbox, network: {:.1} ms",
            -ms_between(start, t0),
            ms_between(start, t0)
        );
    }
    let mut last = 0.0;
    for (at, what, phase) in [
        (e.hello, "guest-init running", "kernel boot"),
        (e.started, "command started", "guest-init setup"),
        (e.end, "run reported", "command and cleanup"),
        (e.exited, "kernel exited", "power-off"),
    ] {
        if let Some(at) = at {
            let now = ms(at);
            eprintln!(
                "[sekexe] {now:8.1}  {what:<20} {phase}: {:.1} ms",
                now - last
            );
            last = now;
        }
    }
    if let Some(u) = session.scratch_usage() {
        eprintln!(
            "[sekexe] the kernel's scratch area on the host holds {:.1} MiB in {} files",
            u.bytes as f64 / (1 << 20) as f64,
            u.files
        );
    }
    if let Some(Ok(status)) = &session.status {
        let t = status.timeline;
        let g = |ns: u64| ns as f64 / 1e6;
        eprintln!(
            "[sekexe] guest clock: guest-init started at {:.1} ms, command ran {:.1}-{:.1} ms, status written at {:.1} ms",
            g(t.init_ns),
            g(t.exec_ns),
            g(t.exit_ns),
            g(t.report_ns)
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn a_volume_overlaps_what_it_contains_and_what_contains_it() {
        let base = Path::new("/dev/shm/sekexe-1000");
        for (volume, overlaps) in [
            ("/dev/shm", true),
            ("/", true),
            ("/dev/shm/sekexe-1000", true),
            ("/dev/shm/sekexe-1000/run-x", true),
            ("/dev/shm/sekexe-10000", false),
            ("/home/me/data", false),
        ] {
            assert_eq!(
                super::overlaps(Path::new(volume), base),
                overlaps,
                "{volume}"
            );
        }
    }
}
