//! The command's lifetime: relays its streams over the channel, applies the launcher's control
//! frames, forwards PID 1's signals, reaps, and once the command has ended terminates whatever
//! it left behind and drains the last output.
//!
//! The loop reaches processes and time only through [`Procs`]: as PID 1 it signals and reaps
//! every process in the guest, which a unit test must never do (it would hit the test runner),
//! so the tests drive it with scripted processes and a clock that jumps to each deadline.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use nix::sys::signal::{kill, Signal};
use nix::sys::signalfd::SignalFd;
use nix::unistd::Pid;
use rustix::event::{PollFd, PollFlags, Timespec};
use sekexe_wire::frame::MAX_PAYLOAD;
use sekexe_wire::{GuestFrame, HostFrame, Outcome};

use crate::channel::Channel;
use crate::exchange::Exchange;
use crate::log::Log;
use crate::reaper::{self, KILL_WAIT, LEFTOVER_GRACE};
use crate::signals;
use crate::spawn::{self, Command};

/// Stop reading the command's output while this much waits for the channel.
const CHANNEL_HIGH_WATER: usize = 4 * MAX_PAYLOAD;

/// The processes the relay acts on, the signals PID 1 receives, and the clock their grace
/// periods run on.
trait Procs {
    /// Readable when signals wait for PID 1.
    fn signal_fd(&self) -> BorrowedFd<'_>;
    /// The signals received since the last call.
    fn take_signals(&mut self) -> Vec<i32>;
    /// Delivers `sig` to the command's process group, as a terminal would.
    fn signal_command(&mut self, main: Pid, sig: Signal);
    /// Sends `sig` to every process but PID 1; false when there was none.
    fn signal_all(&mut self, sig: Signal) -> bool;
    /// Reaps every child that has ended: the command's outcome if it was among them, and
    /// whether any child is left.
    fn reap(&mut self, main: Pid) -> (Option<Outcome>, bool);
    fn now(&self) -> Instant;
    /// Waits until one of `fds` is ready or `deadline` passes (for ever without one).
    fn poll(&self, fds: &mut [PollFd<'_>], deadline: Option<Instant>) -> rustix::io::Result<usize>;
}

/// The real ones: guest-init is PID 1, its signals come from a signalfd.
struct Pid1<'a> {
    signals: &'a SignalFd,
}

impl Procs for Pid1<'_> {
    fn signal_fd(&self) -> BorrowedFd<'_> {
        self.signals.as_fd()
    }

    fn take_signals(&mut self) -> Vec<i32> {
        signals::drain(self.signals)
    }

    fn signal_command(&mut self, main: Pid, sig: Signal) {
        // No group of that number once the command has moved to another (setpgid).
        if kill(Pid::from_raw(-main.as_raw()), sig).is_err() {
            let _ = kill(main, sig);
        }
    }

    fn signal_all(&mut self, sig: Signal) -> bool {
        reaper::signal_all(sig)
    }

    fn reap(&mut self, main: Pid) -> (Option<Outcome>, bool) {
        reaper::reap(Some(main))
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn poll(&self, fds: &mut [PollFd<'_>], deadline: Option<Instant>) -> rustix::io::Result<usize> {
        let timeout = deadline.and_then(|d| {
            let left = d.saturating_duration_since(Instant::now());
            Timespec::try_from(left).ok()
        });
        rustix::event::poll(fds, timeout.as_ref())
    }
}

/// A warm guest's session (`sekexe exec`): its relay is a child of PID 1 and acts only on its
/// own command. What the command leaves behind lives on (a daemon started by one exec serves
/// the next); a shutdown kills the command's process group.
struct SessionProcs<'a> {
    signals: &'a SignalFd,
    main: Pid,
}

impl Procs for SessionProcs<'_> {
    fn signal_fd(&self) -> BorrowedFd<'_> {
        self.signals.as_fd()
    }

    fn take_signals(&mut self) -> Vec<i32> {
        // Signals sent to the relay itself (PID 1 stopping the guest sends every process
        // SIGTERM, the command included) are not passed on twice.
        signals::drain(self.signals)
            .into_iter()
            .filter(|&s| s == Signal::SIGCHLD as i32)
            .collect()
    }

    fn signal_command(&mut self, main: Pid, sig: Signal) {
        Pid1 {
            signals: self.signals,
        }
        .signal_command(main, sig)
    }

    fn signal_all(&mut self, sig: Signal) -> bool {
        kill(Pid::from_raw(-self.main.as_raw()), sig).is_ok()
    }

    fn reap(&mut self, main: Pid) -> (Option<Outcome>, bool) {
        reaper::reap(Some(main))
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn poll(&self, fds: &mut [PollFd<'_>], deadline: Option<Instant>) -> rustix::io::Result<usize> {
        Pid1 {
            signals: self.signals,
        }
        .poll(fds, deadline)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// The command runs.
    Running,
    /// The command has ended; the rest got SIGTERM and have until then.
    Terminating(Instant),
    /// Everything got SIGKILL; waiting for it to go, until then.
    Killing(Instant),
}

impl Phase {
    fn deadline(self) -> Option<Instant> {
        match self {
            Phase::Running => None,
            Phase::Terminating(t) | Phase::Killing(t) => Some(t),
        }
    }
}

struct Relay<P> {
    procs: P,
    main: Pid,
    outcome: Option<Outcome>,
    children_left: bool,
    phase: Phase,
    stdin: Option<OwnedFd>,
    stdin_buf: Vec<u8>,
    stdin_eof: bool,
    credit: u32,
    /// stdout and stderr (in TTY mode only the pty master, as stdout).
    outputs: [Option<OwnedFd>; 2],
    pty: Option<OwnedFd>,
    /// A warm guest's session: the command's leftovers stay (see [`SessionProcs`]).
    keep_leftovers: bool,
    /// A session over a line of its own: where PID 1 says that its `exec` left (anything
    /// readable there), since the line itself may hold half a frame of the dead `exec`'s.
    abandon: Option<OwnedFd>,
    /// That word came.
    abandoned: bool,
}

/// How a session's relay ended.
pub struct SessionEnd {
    pub outcome: Outcome,
    /// Its `exec` left (PID 1 said so): nobody will acknowledge its End.
    pub abandoned: bool,
    /// Where PID 1 would say so, for the end handshake to watch.
    pub abandon: Option<OwnedFd>,
}

pub fn run(
    channel: &mut Channel,
    signals: &SignalFd,
    exchange: Option<&Exchange>,
    cmd: Command,
    log: &mut Log,
) -> Outcome {
    Relay::new(Pid1 { signals }, cmd).run(channel, exchange, log)
}

/// A warm guest's session: like [`run`], from a relay that is not PID 1. The session ends
/// when the command has ended and its output is closed, as a pipe on the host would; what
/// it left behind keeps running.
pub fn run_session(
    channel: &mut Channel,
    signals: &SignalFd,
    exchange: &Exchange,
    cmd: Command,
    abandon: Option<OwnedFd>,
    log: &mut Log,
) -> SessionEnd {
    let procs = SessionProcs {
        signals,
        main: cmd.pid,
    };
    let mut relay = Relay::new(procs, cmd);
    relay.keep_leftovers = true;
    relay.abandon = abandon;
    let outcome = relay.run(channel, Some(exchange), log);
    SessionEnd {
        outcome,
        abandoned: relay.abandoned,
        abandon: relay.abandon.take(),
    }
}

impl<P: Procs> Relay<P> {
    fn new(procs: P, cmd: Command) -> Self {
        Relay {
            procs,
            main: cmd.pid,
            outcome: None,
            children_left: true,
            phase: Phase::Running,
            stdin: cmd.stdin,
            stdin_buf: Vec::new(),
            stdin_eof: false,
            credit: 0,
            outputs: [cmd.stdout, cmd.stderr],
            pty: cmd.pty,
            keep_leftovers: false,
            abandon: None,
            abandoned: false,
        }
    }

    fn run(
        &mut self,
        channel: &mut Channel,
        exchange: Option<&Exchange>,
        log: &mut Log,
    ) -> Outcome {
        loop {
            log.flush(channel);
            if self.finished(channel) {
                break;
            }
            if (channel.is_closed() || self.abandoned) && !matches!(self.phase, Phase::Killing(_)) {
                // Nobody reads the command any more (the launcher is gone, shut reading on the
                // line of an `exec` that left, or PID 1 said that `exec` left): it goes, as
                // with Shutdown.
                log.step("nobody reads the command any more: killing every process");
                self.kill_everything();
            }
            if let Some(deadline) = self.phase.deadline() {
                if self.procs.now() >= deadline && self.on_deadline(log) {
                    break;
                }
            }
            self.poll_once(channel, exchange, log);
        }
        log.flush(channel);
        self.outcome
            .clone()
            .unwrap_or_else(|| Outcome::GuestFailed {
                message: "the command's exit status was lost".into(),
            })
    }

    fn finished(&self, channel: &Channel) -> bool {
        self.outcome.is_some()
            && !self.children_left
            && self.outputs.iter().all(Option::is_none)
            // Nobody reads what is queued once the launcher is gone, or the `exec` left.
            && (channel.pending() == 0 || channel.is_closed() || self.abandoned)
    }

    /// A phase ran out of time; true when there is nothing left to wait for.
    fn on_deadline(&mut self, log: &mut Log) -> bool {
        match self.phase {
            Phase::Terminating(_) => {
                log.step("leftover processes ignored SIGTERM: sending SIGKILL");
                self.kill_everything();
                false
            }
            Phase::Killing(_) => {
                log.error("processes survived SIGKILL; giving up on them");
                true
            }
            Phase::Running => false,
        }
    }

    fn kill_everything(&mut self) {
        self.procs.signal_all(Signal::SIGKILL);
        self.phase = Phase::Killing(self.procs.now() + KILL_WAIT);
    }

    /// The command has ended: SIGTERM to everything it left behind.
    fn start_terminating(&mut self, log: &mut Log) {
        if self.phase == Phase::Running && !self.keep_leftovers {
            if self.procs.signal_all(Signal::SIGTERM) {
                log.step("command ended; terminating leftover processes");
            }
            self.phase = Phase::Terminating(self.procs.now() + LEFTOVER_GRACE);
        }
    }

    fn poll_once(&mut self, channel: &mut Channel, exchange: Option<&Exchange>, log: &mut Log) {
        let want_output = channel.pending() < CHANNEL_HIGH_WATER;
        let mut chan_events = PollFlags::IN;
        if channel.pending() > 0 {
            chan_events |= PollFlags::OUT;
        }
        let (chan_ready, sig_ready, stdin_ready, out_ready, abandon_ready) = {
            let mut fds = Vec::with_capacity(6);
            let mut slots = [usize::MAX; 6];
            if !channel.is_closed() {
                slots[0] = fds.len();
                fds.push(PollFd::from_borrowed_fd(channel.fd(), chan_events));
            }
            slots[1] = fds.len();
            fds.push(PollFd::from_borrowed_fd(
                self.procs.signal_fd(),
                PollFlags::IN,
            ));
            if let (Some(fd), false) = (&self.stdin, self.stdin_buf.is_empty()) {
                slots[2] = fds.len();
                fds.push(PollFd::new(fd, PollFlags::OUT));
            }
            for (i, out) in self.outputs.iter().enumerate() {
                if let (Some(fd), true) = (out, want_output) {
                    slots[3 + i] = fds.len();
                    fds.push(PollFd::new(fd, PollFlags::IN));
                }
            }
            if let Some(fd) = &self.abandon {
                slots[5] = fds.len();
                fds.push(PollFd::new(fd, PollFlags::IN));
            }
            if self.procs.poll(&mut fds, self.phase.deadline()).is_err() {
                return;
            }
            let ready = |slot: usize| slot != usize::MAX && !fds[slot].revents().is_empty();
            (
                ready(slots[0]),
                ready(slots[1]),
                ready(slots[2]),
                [ready(slots[3]), ready(slots[4])],
                ready(slots[5]),
            )
        };
        if abandon_ready {
            // Closed, PID 1 sees it; `run` kills what runs.
            self.abandon = None;
            self.abandoned = true;
        }

        if chan_ready {
            channel.flush_some();
            channel.read_some();
            self.handle_frames(channel, exchange, log);
        }
        if sig_ready {
            self.handle_signals(log);
        }
        if stdin_ready {
            self.feed_stdin(channel);
        }
        for (i, ready) in out_ready.into_iter().enumerate() {
            if ready {
                self.relay_output(i, channel);
            }
        }
        if self.credit > 0 {
            channel.send(GuestFrame::StdinCredit(self.credit));
            self.credit = 0;
        }
    }

    fn handle_frames(&mut self, channel: &mut Channel, exchange: Option<&Exchange>, log: &mut Log) {
        let result = channel.drain_frames(|channel, frame| match frame {
            HostFrame::Stdin(data) => {
                if self.stdin.is_some() {
                    self.stdin_buf.extend_from_slice(data);
                }
            }
            HostFrame::StdinFile { seq, len } => {
                let taken = exchange
                    .ok_or_else(|| anyhow::anyhow!("no exchange folder"))
                    .and_then(|x| x.take_stdin_file(seq, len));
                // Done with it either way: the launcher may remove it.
                channel.send(GuestFrame::StdinFileRead(seq));
                match taken {
                    Ok(data) if self.stdin.is_some() => self.stdin_buf.extend_from_slice(&data),
                    Ok(_) => {}
                    Err(e) => {
                        log.error(&format!("stdin lost: {e:#}"));
                        self.stdin = None;
                        self.stdin_buf = Vec::new();
                        channel.send(GuestFrame::StdinClosed);
                    }
                }
            }
            HostFrame::StdinEof => {
                self.stdin_eof = true;
                if self.pty.is_some() {
                    // A terminal has no end of input: type the EOF character, which ends
                    // input for a program reading a line (a shell exits on it).
                    self.stdin_buf.push(4);
                }
                self.close_stdin_if_done();
            }
            HostFrame::Signal(n) => self.forward(n as i32),
            HostFrame::Winsize { rows, cols } => {
                if let Some(pty) = &self.pty {
                    let _ = spawn::set_winsize(pty, rows, cols);
                }
            }
            HostFrame::CloseStdout => self.outputs[0] = None,
            HostFrame::CloseStderr => self.outputs[1] = None,
            HostFrame::Shutdown => {
                log.step("launcher asked for shutdown: killing every process");
                self.kill_everything();
            }
            // A warm guest's frames reach PID 1's multiplexer, never a relay; a nudge has
            // done its work by arriving.
            HostFrame::EndAck
            | HostFrame::Nudge
            | HostFrame::NetReady
            | HostFrame::Exec { .. }
            | HostFrame::Session { .. } => {
                let _ = channel;
            }
        });
        if let Err(e) = result {
            log.error(&format!("bad frame from the launcher ({e}); stopping"));
            self.kill_everything();
        }
        if self.stdin.is_some() && !self.stdin_buf.is_empty() {
            self.feed_stdin(channel);
        }
    }

    fn handle_signals(&mut self, log: &mut Log) {
        for signo in self.procs.take_signals() {
            if signals::forwarded_to_command(signo) {
                self.forward(signo);
            }
        }
        let (outcome, left) = self.procs.reap(self.main);
        self.children_left = left;
        if let Some(outcome) = outcome {
            log.step(&format!("command ended: {outcome:?}"));
            self.outcome = Some(outcome);
            self.start_terminating(log);
        }
    }

    /// Passes a signal on to the command while it runs: once reaped, its pid (the number of
    /// its group) is free for another process.
    fn forward(&mut self, signo: i32) {
        if self.outcome.is_none() {
            if let Ok(sig) = Signal::try_from(signo) {
                self.procs.signal_command(self.main, sig);
            }
        }
    }

    fn feed_stdin(&mut self, channel: &mut Channel) {
        let Some(fd) = &self.stdin else { return };
        while !self.stdin_buf.is_empty() {
            match rustix::io::write(fd, &self.stdin_buf) {
                Ok(n) => {
                    self.stdin_buf.drain(..n);
                    self.credit += n as u32;
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => break,
                Err(_) => {
                    // EPIPE: the command closed its stdin or ended. Tell the launcher to stop
                    // reading its own, as a closed pipe on the host would.
                    self.stdin = None;
                    self.stdin_buf = Vec::new();
                    channel.send(GuestFrame::StdinClosed);
                    return;
                }
            }
        }
        self.close_stdin_if_done();
    }

    fn close_stdin_if_done(&mut self) {
        // In TTY mode stdin is the pty master, which also carries the output: keep it.
        if self.stdin_eof && self.stdin_buf.is_empty() && self.pty.is_none() {
            self.stdin = None;
        }
    }

    fn relay_output(&mut self, index: usize, channel: &mut Channel) {
        let Some(fd) = &self.outputs[index] else {
            return;
        };
        let mut buf = [0u8; MAX_PAYLOAD];
        match rustix::io::read(fd.as_fd(), &mut buf) {
            Ok(0) => self.outputs[index] = None,
            Ok(n) => {
                let frame = if index == 0 {
                    GuestFrame::Stdout(&buf[..n])
                } else {
                    GuestFrame::Stderr(&buf[..n])
                };
                channel.send(frame);
            }
            Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::AGAIN) => {}
            // EIO on a pty master: every holder of the terminal is gone.
            Err(_) => self.outputs[index] = None,
        }
    }
}

#[cfg(test)]
mod tests {
    //! The loop on real fds (a socket pair for the channel, pipes or a pty for the command's
    //! streams) with the process side scripted by `Fake`: no process is signalled or reaped
    //! and no test sleeps through a grace period.

    use std::cell::Cell;
    use std::path::PathBuf;
    use std::time::Duration;

    use nix::sys::signal::Signal::*;
    use rustix::pipe::PipeFlags;
    use HostFrame::{CloseStderr, CloseStdout, Shutdown, Stdin, StdinEof, StdinFile, Winsize};

    use super::*;

    /// The command's pid: only compared, never handed to a system call.
    const MAIN: i32 = 4242;

    /// The command's ends of its streams. The command and whatever it left behind hold them,
    /// so they close when the last of those processes is gone.
    struct Ends {
        stdin: Option<OwnedFd>,
        stdout: Option<OwnedFd>,
        stderr: Option<OwnedFd>,
    }

    impl Ends {
        /// stdout (0) or stderr (1), numbered as the relay's outputs.
        fn output(&mut self, i: usize) -> &mut Option<OwnedFd> {
            match i {
                0 => &mut self.stdout,
                _ => &mut self.stderr,
            }
        }
    }

    /// A scripted guest: the command, processes it left behind, the signals PID 1 receives,
    /// and a clock that jumps to the relay's deadline whenever it would wait for one.
    struct Fake {
        now: Cell<Instant>,
        /// Polls in a row that found nothing ready.
        idle: Cell<u32>,
        /// Readable while signals are queued, as a signalfd is.
        wake: (OwnedFd, OwnedFd),
        queued: Vec<i32>,
        running: bool,
        command_survives: Vec<Signal>,
        /// How the command ended, until it is reaped.
        unreaped: Option<Outcome>,
        leftovers: usize,
        leftovers_survive: Vec<Signal>,
        ends: Option<Ends>,
        /// What the relay did to processes, in order.
        events: Vec<String>,
    }

    impl Fake {
        /// PID 1 receives `sig`.
        fn deliver(&mut self, sig: Signal) {
            self.queued.push(sig as i32);
            rustix::io::write(&self.wake.1, &[0]).unwrap();
        }

        fn command_ends(&mut self, how: Outcome) {
            self.running = false;
            self.unreaped = Some(how);
            self.deliver(SIGCHLD);
            self.close_ends_if_all_gone();
        }

        fn close_ends_if_all_gone(&mut self) {
            if !self.running && self.leftovers == 0 {
                self.ends = None;
            }
        }
    }

    impl Procs for Fake {
        fn signal_fd(&self) -> BorrowedFd<'_> {
            self.wake.0.as_fd()
        }

        fn take_signals(&mut self) -> Vec<i32> {
            let mut buf = [0u8; 64];
            while let Ok(1..) = rustix::io::read(&self.wake.0, &mut buf) {}
            std::mem::take(&mut self.queued)
        }

        fn signal_command(&mut self, main: Pid, sig: Signal) {
            assert_eq!(main, Pid::from_raw(MAIN));
            self.events.push(format!("{sig} to the command"));
        }

        fn signal_all(&mut self, sig: Signal) -> bool {
            self.events.push(format!("{sig} to all"));
            let any = self.running || self.leftovers > 0;
            if self.running && !self.command_survives.contains(&sig) {
                self.command_ends(Outcome::Signaled {
                    signal: sig as u8,
                    core_dumped: false,
                });
            }
            if self.leftovers > 0 && !self.leftovers_survive.contains(&sig) {
                self.leftovers = 0;
                self.deliver(SIGCHLD);
                self.close_ends_if_all_gone();
            }
            any
        }

        fn reap(&mut self, main: Pid) -> (Option<Outcome>, bool) {
            assert_eq!(main, Pid::from_raw(MAIN));
            (self.unreaped.take(), self.running || self.leftovers > 0)
        }

        fn now(&self) -> Instant {
            self.now.get()
        }

        fn poll(
            &self,
            fds: &mut [PollFd<'_>],
            deadline: Option<Instant>,
        ) -> rustix::io::Result<usize> {
            let n = rustix::event::poll(fds, Some(&Timespec::default()))?;
            if n > 0 {
                self.idle.set(0);
                return Ok(n);
            }
            self.idle.set(self.idle.get() + 1);
            match deadline {
                Some(d) => self.now.set(self.now.get().max(d)),
                None => assert!(self.idle.get() < 100, "the relay would wait for ever"),
            }
            Ok(0)
        }
    }

    /// The relay over a socket pair, and the launcher's end of it.
    struct Rig {
        relay: Relay<Fake>,
        channel: Channel,
        host: OwnedFd,
        /// Received by the launcher, not yet a whole frame.
        host_buf: Vec<u8>,
        exchange: Option<Exchange>,
        log: Log,
        started: Instant,
    }

    fn pipe() -> (OwnedFd, OwnedFd) {
        rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK).unwrap()
    }

    impl Rig {
        /// A command on three pipes, as in stream mode.
        fn pipes() -> Rig {
            let (in_r, in_w) = pipe();
            let (out_r, out_w) = pipe();
            let (err_r, err_w) = pipe();
            let cmd = Command {
                pid: Pid::from_raw(MAIN),
                stdin: Some(in_w),
                stdout: Some(out_r),
                stderr: Some(err_r),
                pty: None,
            };
            let ends = Ends {
                stdin: Some(in_r),
                stdout: Some(out_w),
                stderr: Some(err_w),
            };
            Rig::new(cmd, ends)
        }

        /// A command on a terminal, as in TTY mode; its ends are the pty's other side.
        fn pty() -> Rig {
            use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
            let master =
                openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).unwrap();
            grantpt(&master).unwrap();
            unlockpt(&master).unwrap();
            let name = ptsname(&master, Vec::new()).unwrap();
            let flags = rustix::fs::OFlags::RDWR
                | rustix::fs::OFlags::NOCTTY
                | rustix::fs::OFlags::CLOEXEC
                | rustix::fs::OFlags::NONBLOCK;
            let slave =
                rustix::fs::open(name.as_c_str(), flags, rustix::fs::Mode::empty()).unwrap();
            let master_flags = rustix::fs::fcntl_getfl(&master).unwrap();
            rustix::fs::fcntl_setfl(&master, master_flags | rustix::fs::OFlags::NONBLOCK).unwrap();
            let cmd = Command {
                pid: Pid::from_raw(MAIN),
                stdin: Some(master.try_clone().unwrap()),
                stdout: Some(master.try_clone().unwrap()),
                stderr: None,
                pty: Some(master),
            };
            let ends = Ends {
                stdin: Some(slave.try_clone().unwrap()),
                stdout: Some(slave),
                stderr: None,
            };
            Rig::new(cmd, ends)
        }

        fn new(cmd: Command, ends: Ends) -> Rig {
            let (channel, host) = crate::channel::tests::pair();
            let started = Instant::now();
            let fake = Fake {
                now: Cell::new(started),
                idle: Cell::new(0),
                wake: pipe(),
                queued: Vec::new(),
                running: true,
                command_survives: Vec::new(),
                unreaped: None,
                leftovers: 0,
                leftovers_survive: Vec::new(),
                ends: Some(ends),
                events: Vec::new(),
            };
            let mut log = Log::new();
            log.set_debug(true);
            Rig {
                relay: Relay::new(fake, cmd),
                channel,
                host,
                host_buf: Vec::new(),
                exchange: None,
                log,
                started,
            }
        }

        fn fake(&mut self) -> &mut Fake {
            &mut self.relay.procs
        }

        fn ends(&self) -> &Ends {
            self.relay
                .procs
                .ends
                .as_ref()
                .expect("the command's streams are open")
        }

        fn elapsed(&self) -> Duration {
            self.relay.procs.now.get() - self.started
        }

        /// The launcher sends `frames`.
        fn send(&mut self, frames: &[HostFrame<'_>]) {
            let mut bytes = Vec::new();
            for f in frames {
                f.encode_into(&mut bytes);
            }
            self.send_bytes(&bytes);
        }

        fn send_bytes(&mut self, bytes: &[u8]) {
            assert_eq!(rustix::io::write(&self.host, bytes), Ok(bytes.len()));
        }

        /// Turns of the loop until a poll finds nothing ready.
        fn settle(&mut self) {
            for _ in 0..1000 {
                self.relay.procs.idle.set(0);
                self.relay
                    .poll_once(&mut self.channel, self.exchange.as_ref(), &mut self.log);
                if self.relay.procs.idle.get() > 0 {
                    return;
                }
            }
            panic!("the relay keeps finding work");
        }

        fn run(&mut self) -> Outcome {
            self.relay
                .run(&mut self.channel, self.exchange.as_ref(), &mut self.log)
        }

        /// The frames the launcher has received since the last call, except channel credit
        /// (channel.rs's business): output as text, or its length when long; log lines
        /// without their time.
        fn received(&mut self) -> Vec<String> {
            let mut buf = [0u8; 65536];
            while let Ok(n @ 1..) = rustix::io::read(&self.host, &mut buf) {
                self.host_buf.extend_from_slice(&buf[..n]);
            }
            let text = |d: &[u8]| match d.len() {
                0..=64 => format!("{:?}", String::from_utf8_lossy(d)),
                n => format!("{n} bytes"),
            };
            let mut got = Vec::new();
            let mut pos = 0;
            while let Some((frame, used)) = GuestFrame::parse(&self.host_buf[pos..]).unwrap() {
                pos += used;
                got.push(match frame {
                    GuestFrame::ChannelCredit(_) => continue,
                    GuestFrame::Stdout(d) => format!("Stdout({})", text(d)),
                    GuestFrame::Stderr(d) => format!("Stderr({})", text(d)),
                    GuestFrame::Log(d) => {
                        let line = String::from_utf8_lossy(d);
                        let (_, step) = line.split_once("] ").unwrap();
                        format!("Log({step})")
                    }
                    f => format!("{f:?}"),
                });
            }
            self.host_buf.drain(..pos);
            got
        }
    }

    /// Everything that can be read from `fd` now, and whether its writer is gone.
    fn read_now(fd: &OwnedFd) -> (Vec<u8>, bool) {
        let mut data = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            match rustix::io::read(fd, &mut buf) {
                Ok(0) => return (data, true),
                Ok(n) => data.extend_from_slice(&buf[..n]),
                Err(rustix::io::Errno::AGAIN) => return (data, false),
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// One read from a terminal, whose line discipline hands input over asynchronously.
    fn read_terminal(fd: &OwnedFd) -> Vec<u8> {
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        let limit = Timespec::try_from(Duration::from_secs(5)).unwrap();
        assert_eq!(
            rustix::event::poll(&mut fds, Some(&limit)),
            Ok(1),
            "nothing to read"
        );
        let mut buf = [0u8; 4096];
        let n = rustix::io::read(fd, &mut buf).unwrap();
        buf[..n].to_vec()
    }

    fn log_lines(frames: &[String]) -> Vec<&str> {
        frames
            .iter()
            .filter_map(|f| f.strip_prefix("Log(")?.strip_suffix(')'))
            .collect()
    }

    /// A folder of stdin files, as the launcher leaves them in the exchange folder.
    fn exchange_with(files: &[(u32, &str)]) -> (Exchange, PathBuf) {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sekexe-relay-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (seq, data) in files {
            std::fs::write(dir.join(sekexe_wire::frame::stdin_file_name(0, *seq)), data).unwrap();
        }
        (Exchange::at(dir.clone()), dir)
    }

    #[test]
    fn stdin_reaches_the_command_and_every_byte_written_is_credited() {
        /// From the launcher, with an exchange folder, frames back, what the command reads,
        /// whether its stdin has ended.
        type Row<'a> = (&'a [HostFrame<'a>], bool, &'a [&'a str], &'a str, bool);
        let files = [(7, "from a file"), (8, "short")];
        #[rustfmt::skip]
        let table: [Row; 8] = [
            (&[Stdin(b"hello"), Stdin(b" world")], true, &["StdinCredit(11)"], "hello world", false),
            (&[Stdin(b"hello"), StdinEof], true, &["StdinCredit(5)"], "hello", true),
            (&[StdinEof], true, &[], "", true),
            (&[StdinEof, Stdin(b"late")], true, &[], "", true),
            (&[StdinFile { seq: 7, len: 11 }, Stdin(b"!")], true,
             &["StdinFileRead(7)", "StdinCredit(12)"], "from a file!", false),
            // Shorter than announced, missing, no exchange folder: stdin is lost and closed,
            // and the file is released all the same.
            (&[StdinFile { seq: 8, len: 11 }], true, &["StdinFileRead(8)", "StdinClosed"], "", true),
            (&[StdinFile { seq: 9, len: 1 }], true, &["StdinFileRead(9)", "StdinClosed"], "", true),
            (&[StdinFile { seq: 7, len: 11 }], false, &["StdinFileRead(7)", "StdinClosed"], "", true),
        ];
        for (frames, with_exchange, back, reads, ended) in table {
            let mut rig = Rig::pipes();
            let (exchange, dir) = exchange_with(&files);
            rig.exchange = with_exchange.then_some(exchange);
            rig.send(frames);
            rig.settle();
            let row = format!("{frames:?}");
            assert_eq!(rig.received(), back, "{row}");
            let (data, eof) = read_now(rig.ends().stdin.as_ref().unwrap());
            assert_eq!(String::from_utf8_lossy(&data), reads, "{row}");
            assert_eq!(eof, ended, "{row}");
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    #[test]
    fn the_end_of_stdin_waits_until_the_command_has_taken_the_backlog() {
        let mut rig = Rig::pipes();
        let command_stdin = rig.ends().stdin.as_ref().unwrap().try_clone().unwrap();
        // The smallest pipe, and more stdin than it holds: the command falls behind.
        let size = rustix::pipe::fcntl_setpipe_size(&command_stdin, 4096).unwrap();
        let sent: Vec<u8> = (0..size + 1900).map(|i| (i % 251) as u8).collect();
        let frames: Vec<_> = sent.chunks(1000).map(Stdin).collect();
        rig.send(&frames);
        rig.settle();
        rig.send(&[StdinEof]);
        rig.settle();
        assert!(
            rig.relay.stdin.is_some() && !rig.relay.stdin_buf.is_empty(),
            "stdin closed before it was all written"
        );
        let (mut read, mut credited) = (Vec::new(), 0);
        for _ in 0..100 {
            for frame in rig.received() {
                let n = frame
                    .strip_prefix("StdinCredit(")
                    .and_then(|f| f.strip_suffix(')'))
                    .unwrap_or_else(|| panic!("unexpected {frame}"));
                credited += n.parse::<usize>().unwrap();
            }
            let (data, eof) = read_now(&command_stdin);
            read.extend_from_slice(&data);
            // Never more credit than the command could have read, never less once it has.
            assert!(
                credited >= read.len(),
                "{credited} credited, {} read",
                read.len()
            );
            if eof {
                break;
            }
            rig.settle();
        }
        assert_eq!(read, sent);
        assert_eq!(credited, sent.len());
        assert!(rig.relay.stdin.is_none());
    }

    #[test]
    fn a_command_that_closed_its_stdin_gets_no_more_and_the_launcher_is_told_once() {
        let mut rig = Rig::pipes();
        rig.fake().ends.as_mut().unwrap().stdin = None;
        rig.send(&[Stdin(b"unwanted")]);
        rig.settle();
        assert_eq!(rig.received(), ["StdinClosed"]);
        assert!(rig.relay.stdin.is_none());
        rig.send(&[Stdin(b"more"), StdinEof]);
        rig.settle();
        assert_eq!(rig.received(), Vec::<String>::new());
        assert!(rig.relay.stdin_buf.is_empty());
    }

    #[test]
    fn on_a_terminal_the_end_of_stdin_is_typed_as_ctrl_d_and_the_terminal_stays_open() {
        let mut rig = Rig::pty();
        let terminal = rig.ends().stdin.as_ref().unwrap().try_clone().unwrap();
        rig.send(&[Stdin(b"abc"), StdinEof]);
        rig.settle();
        // ^D ends the line without a newline; it is written, so credited, too.
        assert!(rig.received().contains(&"StdinCredit(4)".to_string()));
        assert_eq!(read_terminal(&terminal), b"abc");
        // ^D on an empty line: the program reading the terminal sees its end.
        rig.send(&[StdinEof]);
        rig.settle();
        assert_eq!(read_terminal(&terminal), b"");
        assert!(rig.relay.stdin.is_some() && rig.relay.outputs[0].is_some());

        rig.send(&[Winsize {
            rows: 33,
            cols: 101,
        }]);
        rig.settle();
        let size = rustix::termios::tcgetwinsize(&terminal).unwrap();
        assert_eq!((size.ws_row, size.ws_col), (33, 101));
    }

    #[derive(Debug, Clone, Copy)]
    enum Act {
        /// The command writes to stdout (0) or stderr (1).
        Write(usize, &'static str),
        /// The command closes stdout (0) or stderr (1).
        Close(usize),
        Launcher(HostFrame<'static>),
    }

    #[test]
    fn output_goes_out_in_frames_until_it_ends_or_the_launcher_closes_it() {
        use Act::*;
        // (what happens, frames to the launcher, whether stdout and stderr are still read)
        #[rustfmt::skip]
        let table: [(&[Act], &[&str], [bool; 2]); 6] = [
            (&[Write(0, "out"), Write(1, "err")], &[r#"Stdout("out")"#, r#"Stderr("err")"#], [true, true]),
            (&[Write(0, "last"), Close(0)], &[r#"Stdout("last")"#], [false, true]),
            (&[Close(1)], &[], [true, false]),
            // The launcher's stdout is gone (a closed pipe there): the command gets EPIPE,
            // as it would on the host.
            (&[Launcher(CloseStdout)], &[], [false, true]),
            (&[Launcher(CloseStderr), Write(0, "on")], &[r#"Stdout("on")"#], [true, false]),
            (&[Launcher(CloseStdout), Launcher(CloseStderr)], &[], [false, false]),
        ];
        for (acts, frames, open) in table {
            let mut rig = Rig::pipes();
            for act in acts {
                let ends = rig.fake().ends.as_mut().unwrap();
                match *act {
                    Write(i, text) => {
                        let fd = ends.output(i).as_ref().unwrap();
                        rustix::io::write(fd, text.as_bytes()).unwrap();
                    }
                    Close(i) => *ends.output(i) = None,
                    Launcher(frame) => rig.send(&[frame]),
                }
                rig.settle();
            }
            let row = format!("{acts:?}");
            assert_eq!(rig.received(), frames, "{row}");
            for (i, relayed) in open.into_iter().enumerate() {
                assert_eq!(rig.relay.outputs[i].is_some(), relayed, "{row}: output {i}");
                // What the command writes next: taken, or EPIPE once nobody reads.
                if let Some(fd) = rig.fake().ends.as_mut().unwrap().output(i) {
                    let written = rustix::io::write(fd, b"x");
                    let expected = if relayed {
                        Ok(1)
                    } else {
                        Err(rustix::io::Errno::PIPE)
                    };
                    assert_eq!(written, expected, "{row}: output {i}");
                }
            }
        }
    }

    #[test]
    fn output_waits_while_the_channel_is_backed_up() {
        let mut rig = Rig::pipes();
        let stdout = rig.ends().stdout.as_ref().unwrap().try_clone().unwrap();
        let chunk = vec![b'.'; MAX_PAYLOAD];
        let mut written = 0;
        // The launcher reads nothing: the socket fills, then the channel's queue.
        while rig.channel.pending() < CHANNEL_HIGH_WATER {
            assert!(written < 64 * MAX_PAYLOAD, "the channel never backed up");
            written += rustix::io::write(&stdout, &chunk).unwrap();
            rig.settle();
        }
        let backlog = rig.channel.pending();
        rustix::io::write(&stdout, b"more").unwrap();
        // Something else to do (a signal for PID 1), so the loop turns.
        rig.fake().deliver(SIGWINCH);
        rig.settle();
        assert_eq!(
            rig.channel.pending(),
            backlog,
            "output read over the high-water mark"
        );

        // The launcher catches up; the waiting output follows the rest, in order.
        let mut frames = Vec::new();
        for _ in 0..100 {
            frames.extend(rig.received());
            if frames.last().is_some_and(|f| f == r#"Stdout("more")"#) {
                break;
            }
            rig.settle();
        }
        assert_eq!(frames.last().map(String::as_str), Some(r#"Stdout("more")"#));
        let relayed: usize = frames[..frames.len() - 1]
            .iter()
            .map(|f| {
                let n = f
                    .strip_prefix("Stdout(")
                    .and_then(|f| f.strip_suffix(" bytes)"));
                n.unwrap_or_else(|| panic!("unexpected {f}"))
                    .parse::<usize>()
                    .unwrap()
            })
            .sum();
        assert_eq!(relayed, written);
    }

    #[derive(Debug, Clone, Copy)]
    enum Source {
        /// A `Signal` frame from the launcher.
        Launcher(Signal),
        /// A signal sent to PID 1 inside the guest.
        Pid1(Signal),
    }

    #[test]
    fn signals_reach_the_command_only_while_it_runs() {
        use Source::*;
        // (the command has ended, the signal, what reaches the command)
        #[rustfmt::skip]
        let table = [
            (false, Launcher(SIGINT), Some("SIGINT to the command")),
            // The launcher has chosen already: whatever it sends goes on.
            (false, Launcher(SIGTSTP), Some("SIGTSTP to the command")),
            (false, Pid1(SIGTERM), Some("SIGTERM to the command")),
            (false, Pid1(SIGHUP), Some("SIGHUP to the command")),
            (false, Pid1(SIGUSR1), Some("SIGUSR1 to the command")),
            (false, Pid1(SIGWINCH), None),
            (false, Pid1(SIGPIPE), None),
            (false, Pid1(SIGCHLD), None),
            (true, Launcher(SIGINT), None),
            (true, Pid1(SIGTERM), None),
        ];
        for (ended, from, reaches) in table {
            let mut rig = Rig::pipes();
            if ended {
                // Reaped, with a leftover that keeps the run going.
                rig.fake().leftovers = 1;
                rig.fake().leftovers_survive = vec![SIGTERM];
                rig.fake().command_ends(Outcome::Exited(0));
                rig.settle();
                assert_eq!(rig.relay.outcome, Some(Outcome::Exited(0)));
                rig.fake().events.clear();
            }
            match from {
                Launcher(sig) => rig.send(&[HostFrame::Signal(sig as u8)]),
                Pid1(sig) => rig.fake().deliver(sig),
            }
            rig.settle();
            let row = format!("ended: {ended}, {from:?}");
            assert_eq!(rig.fake().events, Vec::from_iter(reaches), "{row}");
        }
    }

    #[test]
    fn what_the_command_left_gets_sigterm_then_sigkill_then_is_given_up_on() {
        let terminating = "command ended; terminating leftover processes";
        let killing = "leftover processes ignored SIGTERM: sending SIGKILL";
        let giving_up = "processes survived SIGKILL; giving up on them";
        /// Processes left, the signals they survive, signals sent to all, time taken, steps
        /// logged after the command's end.
        type Row<'a> = (usize, &'a [Signal], &'a [&'a str], Duration, &'a [&'a str]);
        #[rustfmt::skip]
        let table: [Row; 4] = [
            (0, &[], &["SIGTERM to all"], Duration::ZERO, &[]),
            (2, &[], &["SIGTERM to all"], Duration::ZERO, &[terminating]),
            (2, &[SIGTERM], &["SIGTERM to all", "SIGKILL to all"], LEFTOVER_GRACE,
             &[terminating, killing]),
            (2, &[SIGTERM, SIGKILL], &["SIGTERM to all", "SIGKILL to all"],
             LEFTOVER_GRACE + KILL_WAIT, &[terminating, killing, giving_up]),
        ];
        for (left, survive, sent, took, steps) in table {
            let mut rig = Rig::pipes();
            rig.fake().leftovers = left;
            rig.fake().leftovers_survive = survive.to_vec();
            rig.fake().command_ends(Outcome::Exited(3));
            let row = format!("{left} left, surviving {survive:?}");
            assert_eq!(rig.run(), Outcome::Exited(3), "{row}");
            assert_eq!(rig.fake().events, sent, "{row}");
            assert_eq!(rig.elapsed(), took, "{row}");
            let frames = rig.received();
            let mut expected = vec!["command ended: Exited(3)"];
            expected.extend(steps);
            assert_eq!(log_lines(&frames), expected, "{row}");
        }
    }

    #[test]
    fn a_shutdown_or_a_bad_frame_kills_everything_at_once() {
        let shutdown = "launcher asked for shutdown: killing every process";
        let bad = "bad frame from the launcher (";
        let frames = |f: &[HostFrame<'_>]| {
            let mut bytes = Vec::new();
            f.iter().for_each(|f| f.encode_into(&mut bytes));
            bytes
        };
        let mut wrong_way = Vec::new();
        GuestFrame::Hello.encode_into(&mut wrong_way);
        let killed = Outcome::Signaled {
            signal: SIGKILL as u8,
            core_dumped: false,
        };
        let lost = Outcome::GuestFailed {
            message: "the command's exit status was lost".into(),
        };
        /// The launcher's bytes, how the command ended before them, the signals every process
        /// survives, the outcome, time taken, the step logged first.
        type Row<'a> = (
            Vec<u8>,
            Option<Outcome>,
            &'a [Signal],
            Outcome,
            Duration,
            &'a str,
        );
        #[rustfmt::skip]
        let table: [Row; 6] = [
            (frames(&[Shutdown]), None, &[], killed.clone(), Duration::ZERO, shutdown),
            // Frames the launcher can not have meant: one of the guest's, an inline stdin
            // chunk over the limit.
            (wrong_way, None, &[], killed.clone(), Duration::ZERO, bad),
            (frames(&[Stdin(&[0; 2 * sekexe_wire::frame::MAX_INLINE_STDIN])]), None, &[],
             killed.clone(), Duration::ZERO, bad),
            // No grace for what the command left behind, and its own status stands.
            (frames(&[Shutdown]), Some(Outcome::Exited(3)), &[], Outcome::Exited(3),
             Duration::ZERO, shutdown),
            // Processes that cannot be killed (stuck in the kernel) are given up on; the
            // command's status is lost with it.
            (frames(&[Shutdown]), None, &[SIGKILL], lost, KILL_WAIT, shutdown),
            (frames(&[Shutdown]), Some(Outcome::Exited(3)), &[SIGKILL], Outcome::Exited(3),
             KILL_WAIT, shutdown),
        ];
        for (bytes, ended, survives, outcome, took, step) in table {
            let mut rig = Rig::pipes();
            rig.fake().leftovers = 1;
            rig.fake().leftovers_survive = survives.to_vec();
            rig.fake().command_survives = survives.to_vec();
            if let Some(how) = &ended {
                rig.fake().command_ends(how.clone());
            }
            rig.send_bytes(&bytes);
            let head = &bytes[..bytes.len().min(8)];
            let row = format!("{head:?}.., ended {ended:?}, surviving {survives:?}");
            assert_eq!(rig.run(), outcome, "{row}");
            assert_eq!(rig.fake().events, ["SIGKILL to all"], "{row}");
            assert_eq!(rig.elapsed(), took, "{row}");
            let frames = rig.received();
            let logged = log_lines(&frames);
            assert!(logged[0].starts_with(step), "{row}: {logged:?}");
        }
    }

    #[test]
    fn a_word_that_the_exec_left_kills_everything_at_once() {
        let mut rig = Rig::pipes();
        rig.fake().leftovers = 1;
        let (pid1, relay_side) = crate::channel::tests::pair();
        rig.relay.abandon = Some(relay_side);
        // Output the launcher will never read stays queued: no wait for it.
        rig.channel.send(GuestFrame::Stdout(&[1; 100]));
        let mut pid1 = pid1;
        pid1.send(GuestFrame::End);
        let killed = Outcome::Signaled {
            signal: SIGKILL as u8,
            core_dumped: false,
        };
        assert_eq!(rig.run(), killed);
        assert!(rig.relay.abandoned);
        assert!(
            rig.relay.abandon.is_none(),
            "its end is closed for PID 1 to see"
        );
        assert_eq!(rig.fake().events, ["SIGKILL to all"]);
        assert_eq!(rig.elapsed(), Duration::ZERO);
    }

    #[test]
    fn a_launcher_end_that_closes_kills_everything_at_once() {
        let mut rig = Rig::pipes();
        rig.fake().leftovers = 1;
        // The host end goes: a session line whose `exec` left, closed by the launcher.
        let (_, gone) = crate::channel::tests::pair();
        rig.host = gone;
        let killed = Outcome::Signaled {
            signal: SIGKILL as u8,
            core_dumped: false,
        };
        assert_eq!(rig.run(), killed);
        assert_eq!(rig.fake().events, ["SIGKILL to all"]);
        assert_eq!(rig.elapsed(), Duration::ZERO);
    }

    #[test]
    fn the_outcome_is_the_commands_for_every_exit_code_and_signal_after_its_last_output() {
        let mut endings: Vec<Outcome> = (0..=255).map(Outcome::Exited).collect();
        endings.extend((1..=64).map(|signal| Outcome::Signaled {
            signal,
            core_dumped: signal == SIGSEGV as u8,
        }));
        for how in endings {
            let mut rig = Rig::pipes();
            rustix::io::write(rig.ends().stdout.as_ref().unwrap(), b"bye").unwrap();
            rustix::io::write(rig.ends().stderr.as_ref().unwrap(), b"oops").unwrap();
            rig.fake().command_ends(how.clone());
            assert_eq!(rig.run(), how);
            let output: Vec<String> = rig
                .received()
                .into_iter()
                .filter(|f| !f.starts_with("Log("))
                .collect();
            assert_eq!(output, [r#"Stdout("bye")"#, r#"Stderr("oops")"#], "{how:?}");
            assert!(rig.relay.outputs.iter().all(Option::is_none));
        }
    }
}
