//! `sekexe exec`: runs a command in a warm guest with `sekexe run`'s semantics. The request is
//! made exactly as `run` makes it (the same options, checks and defaults, with the guest's
//! root and volumes), handed to the guest's launcher, and the session then runs in the very
//! loop a run uses: over the session's own line (a kernel console, as a run's channel) when
//! the launcher hands one over, else over the connection to the launcher.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustix::event::{PollFd, PollFlags, Timespec};
use sekexe_wire::{GuestFrame, HostFrame, Overlay};

use super::control::{Ask, Client, Reply};
use super::folder::{self, GuestDir, Liveness};
use crate::cli::{ExecArgs, RunArgs};
use crate::config::{Caller, RunConfig};
use crate::rundir::Files;
use crate::session::channel::each_frame;
use crate::session::{ExecIo, Interruption, Options, Session};
use crate::{run, signals};

/// How long the guest's launcher has to take the command.
const ACCEPT_WAIT: Duration = Duration::from_secs(30);
/// How long, once a session's line closed early, the launcher has to say why (it gives a
/// kernel that closed its files a second to exit).
const LOST_WAIT: Duration = Duration::from_secs(5);
/// The most of the launcher's words taken while waiting for its `Lost`.
const MAX_LOST: usize = 64 * 1024;

/// The guest named `name`, if it is up; the error says what the user can do.
pub fn find(name: &str) -> Result<GuestDir> {
    folder::check_name(name)?;
    let dir = GuestDir::at(&folder::guests_dir()?, name);
    if std::fs::symlink_metadata(&dir.path).is_err() {
        bail!("no warm guest named {name}: `sekexe ls` lists yours, `sekexe start --name {name}` starts one");
    }
    if let Liveness::Gone(why) = dir.liveness() {
        dir.remove();
        bail!(
            "the warm guest {name} is gone: {}",
            why.unwrap_or_else(|| "its launcher was killed".into())
        );
    }
    Ok(dir)
}

pub fn exec(args: ExecArgs) -> Result<u8> {
    let name = args.name.clone();
    let dir = find(&name)?;
    let state = dir
        .state()
        .with_context(|| format!("the warm guest {name} is still starting: try again"))?;
    let caller = Caller::current();
    // `run`'s options: the defaults, the guest's root and volumes, and what was given here.
    let mut run = RunArgs::defaults();
    run.guest.root = state.root.clone();
    run.guest.volumes = state.volumes.clone();
    run.cmd = args.cmd;
    run.command = args.command;
    let cfg = RunConfig::from_args(run, &caller)?;
    let request = run::request(&cfg, Overlay::None);
    // From here on signals wait in the signalfd, as in a run.
    let signals = signals::block()?;
    let mut client = Client::connect(&dir.control(), &name)?;
    client.ask(&Ask::Exec(request.encode()))?;
    let (reply, fds) = client.reply(ACCEPT_WAIT)?;
    let (id, lined) = match reply {
        Reply::Accepted { id, line } => (id, line),
        Reply::Refused(why) => bail!("the warm guest {name} refused the command: {why}"),
        Reply::About(_) => bail!("the warm guest's launcher answered something else"),
    };
    if cfg.debug {
        eprintln!(
            "[sekexe] session {id}: {}",
            if lined {
                "over a line of its own"
            } else {
                "through the warm guest's launcher (no line is free)"
            }
        );
    }
    let mut fds = fds.into_iter();
    let files = Files::from_fd(
        fds.next()
            .context("the guest's run folder did not come with the answer")?,
    );
    // With a line of its own, the session speaks over it, and the connection only says how
    // it ended; else the connection carries the session.
    let (channel, mut control) = if lined {
        let line = fds
            .next()
            .context("the session's line did not come with the answer")?;
        client
            .sock
            .set_nonblocking(true)
            .context("make the connection non-blocking")?;
        (line, Some(client.sock))
    } else {
        (OwnedFd::from(client.sock), None)
    };
    rustix::io::ioctl_fionbio(&channel, true).context("make the session's channel non-blocking")?;
    let io = ExecIo {
        channel,
        lined,
        signals,
        files,
        session: id,
    };
    let options = Options {
        debug: cfg.debug,
        timeout: cfg.timeout,
        tty: cfg.tty,
        forwarder: None,
    };
    let mut session = Session::exec(io, options);
    session.run()?;
    if let Some(control) = control.as_mut() {
        if session.ended_cleanly() {
            // The line holds nothing of this session now: the launcher may hand it on.
            let mut ack = Vec::new();
            HostFrame::EndAck.encode_into(&mut ack);
            let _ = control.write_all(&ack);
        } else if session.status.is_none() && session.interruption.is_none() {
            // The line closed before the status: the launcher says why.
            if let Some(why) = hear_lost(control, LOST_WAIT) {
                session.interruption = Some(Interruption::Lost(why));
            }
        }
    }
    Ok(conclude(&cfg, &session, &name))
}

/// The launcher's `Lost` on the connection of a session with a line of its own, if it comes
/// within `limit` (it gives a kernel that closed its files a moment to exit first).
fn hear_lost(control: &mut UnixStream, limit: Duration) -> Option<String> {
    let deadline = Instant::now() + limit;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let mut lost = None;
        let _ = each_frame(&buf, |frame| {
            if let GuestFrame::Lost(why) = frame {
                lost.get_or_insert_with(|| String::from_utf8_lossy(why).into_owned());
            }
        });
        if lost.is_some() {
            return lost;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let mut fds = [PollFd::new(&*control, PollFlags::IN)];
        let ts = Timespec::try_from(left).ok();
        match rustix::event::poll(&mut fds, ts.as_ref()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => return None,
        }
        match rustix::io::read(&*control, &mut chunk) {
            Ok(0) => return None,
            Ok(n) if buf.len() < MAX_LOST => buf.extend_from_slice(&chunk[..n]),
            Ok(_) => return None,
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
            Err(_) => return None,
        }
    }
}

fn conclude(cfg: &RunConfig, session: &Session, name: &str) -> u8 {
    let (verdict, mut message) = run::verdict_of(cfg, session);
    if verdict.unreported {
        message = format!(
            "{message}: the warm guest's launcher closed the connection (`sekexe ls` and `sekexe logs {name}` say more)"
        );
    } else if session.interruption == Some(Interruption::Unresponsive) {
        // A run kills its own kernel here; exec has none to kill, and the guest is shared.
        message = format!(
            "the warm guest {name} stopped responding after --timeout: `sekexe stop {name}` ends it (`sekexe logs {name}` shows the kernel console)"
        );
    } else if verdict.show_console {
        message = format!("{message} (`sekexe logs {name}` shows the kernel console)");
    }
    if !message.is_empty() {
        eprintln!("sekexe: {message}");
    }
    verdict.code
}
