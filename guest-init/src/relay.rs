//! The command's lifetime: relays its streams over the channel, applies the launcher's control
//! frames, forwards PID 1's signals, reaps, and once the command has ended terminates whatever
//! it left behind and drains the last output.

use std::os::fd::{AsFd, OwnedFd};
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

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// The command runs.
    Running,
    /// The command has ended; the rest got SIGTERM and have until then.
    Terminating(Instant),
    /// Everything got SIGKILL; waiting for it to go, until then.
    Killing(Instant),
}

struct Relay {
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
}

pub fn run(
    channel: &mut Channel,
    signals: &SignalFd,
    exchange: Option<&Exchange>,
    cmd: Command,
    log: &mut Log,
) -> Outcome {
    let mut r = Relay {
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
    };
    loop {
        log.flush(channel);
        if r.finished(channel) {
            break;
        }
        if let Some(deadline) = r.deadline() {
            if Instant::now() >= deadline && r.on_deadline(log) {
                break;
            }
        }
        r.poll_once(channel, signals, exchange, log);
    }
    log.flush(channel);
    r.outcome.unwrap_or_else(|| Outcome::GuestFailed {
        message: "the command's exit status was lost".into(),
    })
}

impl Relay {
    fn finished(&self, channel: &Channel) -> bool {
        self.outcome.is_some()
            && !self.children_left
            && self.outputs.iter().all(Option::is_none)
            && (channel.pending() == 0 || channel.is_closed())
    }

    fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Running => None,
            Phase::Terminating(t) | Phase::Killing(t) => Some(t),
        }
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
        reaper::signal_all(Signal::SIGKILL);
        self.phase = Phase::Killing(Instant::now() + KILL_WAIT);
    }

    /// The command has ended: SIGTERM to everything it left behind.
    fn start_terminating(&mut self, log: &mut Log) {
        if self.phase == Phase::Running {
            if reaper::signal_all(Signal::SIGTERM) {
                log.step("command ended; terminating leftover processes");
            }
            self.phase = Phase::Terminating(Instant::now() + LEFTOVER_GRACE);
        }
    }

    fn poll_once(
        &mut self,
        channel: &mut Channel,
        signals: &SignalFd,
        exchange: Option<&Exchange>,
        log: &mut Log,
    ) {
        let want_output = channel.pending() < CHANNEL_HIGH_WATER;
        let mut chan_events = PollFlags::IN;
        if channel.pending() > 0 {
            chan_events |= PollFlags::OUT;
        }
        let (chan_ready, sig_ready, stdin_ready, out_ready) = {
            let mut fds = Vec::with_capacity(5);
            let mut slots = [usize::MAX; 5];
            if !channel.is_closed() {
                slots[0] = fds.len();
                fds.push(PollFd::from_borrowed_fd(channel.fd(), chan_events));
            }
            slots[1] = fds.len();
            fds.push(PollFd::new(signals, PollFlags::IN));
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
            let timeout = self.deadline().and_then(|d| {
                let left = d.saturating_duration_since(Instant::now());
                Timespec::try_from(left).ok()
            });
            if rustix::event::poll(&mut fds, timeout.as_ref()).is_err() {
                return;
            }
            let ready = |slot: usize| slot != usize::MAX && !fds[slot].revents().is_empty();
            (
                ready(slots[0]),
                ready(slots[1]),
                ready(slots[2]),
                [ready(slots[3]), ready(slots[4])],
            )
        };

        if chan_ready {
            channel.flush_some();
            channel.read_some();
            self.handle_frames(channel, exchange, log);
        }
        if sig_ready {
            self.handle_signals(signals, log);
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
            HostFrame::EndAck | HostFrame::NetReady => {
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

    fn handle_signals(&mut self, signals: &SignalFd, log: &mut Log) {
        for signo in signals::drain(signals) {
            if signals::forwarded_to_command(signo) {
                self.forward(signo);
            }
        }
        let (outcome, left) = reaper::reap(Some(self.main));
        self.children_left = left;
        if let Some(outcome) = outcome {
            log.step(&format!("command ended: {outcome:?}"));
            self.outcome = Some(outcome);
            self.start_terminating(log);
        }
    }

    /// Delivers a signal to the command's process group, as a terminal would.
    fn forward(&self, signo: i32) {
        if self.outcome.is_none() {
            if let Ok(sig) = Signal::try_from(signo) {
                if kill(Pid::from_raw(-self.main.as_raw()), sig).is_err() {
                    let _ = kill(self.main, sig);
                }
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
