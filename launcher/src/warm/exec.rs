//! `sekexe exec`: runs a command in a warm guest with `sekexe run`'s semantics. The request is
//! made exactly as `run` makes it (the same options, checks and defaults, with the guest's
//! root and volumes), handed to the guest's launcher, and the session then runs in the very
//! loop a run uses, over the connection instead of a kernel's channel.

use std::os::fd::OwnedFd;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use sekexe_wire::Overlay;

use super::control::{Ask, Client, Reply};
use super::folder::{self, GuestDir, Liveness};
use crate::cli::{ExecArgs, RunArgs};
use crate::config::{Caller, RunConfig};
use crate::rundir::Files;
use crate::session::{ExecIo, Interruption, Options, Session};
use crate::{run, signals};

/// How long the guest's launcher has to take the command.
const ACCEPT_WAIT: Duration = Duration::from_secs(30);

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
    let (reply, fd) = client.reply(ACCEPT_WAIT)?;
    let id = match reply {
        Reply::Accepted(id) => id,
        Reply::Refused(why) => bail!("the warm guest {name} refused the command: {why}"),
        Reply::About(_) => bail!("the warm guest's launcher answered something else"),
    };
    let files = Files::from_fd(fd.context("the guest's run folder did not come with the answer")?);
    client
        .sock
        .set_nonblocking(true)
        .context("make the connection non-blocking")?;
    let io = ExecIo {
        channel: OwnedFd::from(client.sock),
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
    Ok(conclude(&cfg, &session, &name))
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
