//! `sekexe start`: boots a warm guest, detaches its launcher, and returns once the guest takes
//! commands, printing its name.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use super::daemon::{Daemon, Parts};
use super::folder::{self, GuestDir, State};
use crate::cli::{RunArgs, StartArgs};
use crate::config::{Caller, RunConfig};
use crate::run;

pub fn start(args: StartArgs) -> Result<u8> {
    if let Some(name) = &args.name {
        folder::check_name(name)?;
    }
    let caller = Caller::current();
    let mut run = RunArgs {
        guest: *args.guest,
        ..RunArgs::defaults()
    };
    run.cmd.debug = args.debug;
    let cfg = RunConfig::from_args(run, &caller)?;
    let guests = folder::guests_dir()?;
    let (name, dir, lock) = match args.name {
        Some(name) => {
            let (dir, lock) = GuestDir::create(&guests, &name)?;
            (name, dir, lock)
        }
        // Another `start` may take the free name first: then the next one.
        None => loop {
            let name = folder::free_name(&guests);
            match GuestDir::create(&guests, &name) {
                Ok((dir, lock)) => break (name, dir, lock),
                Err(_) if GuestDir::at(&guests, &name).liveness() == folder::Liveness::Up => {}
                Err(e) => return Err(e),
            }
        },
    };
    let (ready_r, ready_w) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).context("pipe")?;
    // SAFETY: the launcher is single-threaded here (nothing has started a thread yet), so the
    // child may run Rust code after the fork.
    match unsafe { nix::unistd::fork() }.context("fork")? {
        nix::unistd::ForkResult::Parent { child } => {
            drop(ready_w);
            drop(lock);
            let mut said = String::new();
            let _ = std::fs::File::from(ready_r).read_to_string(&mut said);
            if said.starts_with("ok") {
                println!("{name}");
                return Ok(0);
            }
            // The launcher has given up: it stops the kernel and removes what it made; the
            // error comes once that is done.
            let _ = nix::sys::wait::waitpid(child, None);
            let why = said.strip_prefix("err\n").unwrap_or("");
            if dir.liveness() != folder::Liveness::Up {
                dir.remove();
            }
            if why.is_empty() {
                bail!("the warm guest's launcher ended before the guest was ready");
            }
            bail!("{}", why.trim_end())
        }
        nix::unistd::ForkResult::Child => {
            drop(ready_r);
            // Its own session: the caller's terminal and its signals are not the guest's.
            let _ = nix::unistd::setsid();
            stdin_from_null();
            let mut ready = Some(ready_w);
            let code = match serve(&cfg, &dir, &mut ready, args.idle_timeout) {
                Ok((None, stoppers)) => {
                    dir.remove();
                    // `stop` returns once everything is gone.
                    drop(stoppers);
                    0
                }
                // The kernel died: the folder stays, with why, for `ls` and `exec` to say.
                Ok((Some(why), _)) => {
                    dir.write_dead(&why);
                    1
                }
                Err(e) => {
                    dir.remove();
                    if let Some(pipe) = ready.take() {
                        let _ = std::io::Write::write_all(
                            &mut std::fs::File::from(pipe),
                            format!("err\n{}", crate::without_errno_numbers(&format!("{e:#}")))
                                .as_bytes(),
                        );
                    }
                    125
                }
            };
            drop(lock);
            std::process::exit(code)
        }
    }
}

/// The warm guest's launcher: boot, then serve until the kernel is gone.
fn serve(
    cfg: &RunConfig,
    dir: &GuestDir,
    ready: &mut Option<OwnedFd>,
    idle_timeout: Option<std::time::Duration>,
) -> Result<(Option<String>, Vec<std::os::unix::net::UnixStream>)> {
    let listener = UnixListener::bind(dir.control()).context("create the control socket")?;
    let booted = run::boot(cfg, &mut None, true)?;
    let state = State {
        pid: std::process::id(),
        kernel: booted.kernel.clone(),
        started: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        root: cfg.root.clone(),
        volumes: cfg
            .volumes
            .iter()
            .map(|v| {
                format!(
                    "{}:{}:{}",
                    v.host.display(),
                    v.guest.display(),
                    if v.writable { "rw" } else { "ro" }
                )
            })
            .collect(),
    };
    dir.write_state(&state)?;
    let run::Booted {
        io,
        uml,
        options,
        run_dir: _run_dir,
        memory_dir,
        network: _network,
        overlay_dir: _overlay_dir,
        lines,
        ..
    } = booted;
    let parts = Parts {
        io,
        uml,
        listener,
        ready_pipe: ready.take().context("the pipe to `sekexe start`")?,
        idle_timeout,
        memory_dir: memory_dir.display().to_string(),
        lines,
        forwarder: options.forwarder,
    };
    let daemon = Daemon::new(parts, dir)?;
    Ok(daemon.run())
}

fn stdin_from_null() {
    if let Ok(null) = std::fs::File::open("/dev/null") {
        // SAFETY: dup2 onto fd 0, which this process owns; `null` stays open for the call.
        unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 0) };
    }
}
