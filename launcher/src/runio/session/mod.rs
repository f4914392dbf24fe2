//! The launcher's event loop while the guest runs: the command's three streams, the kernel
//! console, signals, and the end-of-run handshake, all in one single-threaded poll loop.
//!
//! Its parts with rules of their own live beside it, each unit-tested without a kernel: the
//! framed channel and its credits (`channel`), the stdin pump and its pacing (`stdin`), and the
//! `--timeout` steps (`clock`).

pub mod channel;
mod clock;
mod stdin;

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use sekexe_wire::frame::{CHANNEL_WINDOW, MAX_INLINE_STDIN};
use sekexe_wire::{GuestFrame, HostFrame, Status};

use channel::HostChannel;
use clock::{Action, TimeoutClock};
use stdin::{StdinPump, STDIN_CHUNK};

use crate::config::Timeout;
use crate::console::Console;
use crate::net::Forwarder;
use crate::rundir::Files;
use crate::scratch::Scratch;
use crate::signals;
use crate::terminal::RawMode;
use crate::uml::Uml;

/// After a SIGINT or SIGTERM has been passed on, how long the command gets to end before the
/// kernel is killed: a guest that ignores it cannot keep the launcher.
const STOP_WAIT: Duration = Duration::from_secs(4);
/// `sekexe exec`: how long an EndAck may wait for the window once the End came.
const END_ACK_GIVE_UP: Duration = Duration::from_secs(2);
/// How often the kernel's scratch area is measured.
const SCRATCH_CHECK: Duration = Duration::from_millis(250);

/// When each step of the run was seen on the host.
#[derive(Debug, Default, Clone, Copy)]
pub struct Events {
    pub spawned: Option<Instant>,
    pub hello: Option<Instant>,
    pub started: Option<Instant>,
    pub end: Option<Instant>,
    pub exited: Option<Instant>,
}

/// The loop's file descriptors.
pub struct Io {
    /// The launcher's end of the channel socket (non-blocking).
    pub channel: OwnedFd,
    /// The read end of the kernel console pipe.
    pub console: OwnedFd,
    pub signals: SignalFd,
    /// The run folder, where large stdin chunks are left for the guest.
    pub files: Files,
    /// The kernel's scratch area, watched against its bound.
    pub scratch: Scratch,
}

/// `sekexe exec`'s loop: the same as a run's, on a warm guest's session.
pub struct ExecIo {
    /// The session's own line (a kernel console, as a run's channel), or else the connection
    /// to the warm guest's launcher, now carrying the session's frames.
    pub channel: OwnedFd,
    /// `channel` is the session's own line.
    pub lined: bool,
    pub signals: SignalFd,
    /// The guest's run folder, where large stdin chunks are left for the session.
    pub files: Files,
    pub session: u32,
}

pub struct Options {
    pub debug: bool,
    pub timeout: Option<Timeout>,
    /// The command has a terminal: window-size changes are passed on.
    pub tty: bool,
    /// Port forwards still to set up; the guest waits for `NetReady`.
    pub forwarder: Option<Forwarder>,
}

/// How the loop ended, besides the kernel exiting normally.
#[derive(Debug, Clone, PartialEq)]
pub enum Interruption {
    /// A second SIGINT/SIGTERM: the kernel was killed at once.
    Signal(Signal),
    /// The guest did not end after the timeout's SIGKILL: its kernel was killed.
    Unresponsive,
    /// The guest broke a rule the host enforces (the scratch area's bound); the text says which.
    Hostile(String),
    /// The guest sent something that is not a frame.
    Protocol(String),
    /// `sekexe exec`: the warm guest went away before the command's status came (the text
    /// says why).
    Lost(String),
    /// Setting something up on the host failed after the kernel started (port forwards).
    Setup(String),
}

pub struct Session {
    chan: HostChannel,
    stdin: StdinPump,
    clock: TimeoutClock,
    /// None for `sekexe exec`, whose guest's scratch area its own launcher watches.
    scratch: Option<Scratch>,
    next_scratch_check: Instant,
    /// The guest's status record, once it has sent one (or why it could not be decoded).
    pub status: Option<Result<Status, String>>,
    console_fd: Option<OwnedFd>,
    pub console: Console,
    output_open: [bool; 2],
    signals: SignalFd,
    /// The kernel; none for `sekexe exec`, whose session ends when its connection closes.
    pub uml: Option<Uml>,
    pub events: Events,
    debug: bool,
    /// When the first SIGINT/SIGTERM was forwarded: a second one, or STOP_WAIT, ends the run.
    stopping: Option<(Signal, Instant)>,
    pub interruption: Option<Interruption>,
    tty: bool,
    /// The host terminal in raw mode, while a guest terminal is attached.
    raw: Option<RawMode>,
    forwarder: Option<Forwarder>,
    /// `--timeout` expired (the run exits 124 however the command ends).
    pub timed_out: bool,
    /// `sekexe exec` over the session's own line.
    lined: bool,
}

impl Session {
    pub fn new(io: Io, uml: Uml, spawned: Instant, options: Options) -> Session {
        let Io {
            channel: chan,
            console: console_fd,
            signals,
            files,
            scratch,
        } = io;
        let Options {
            debug,
            timeout,
            tty,
            forwarder,
        } = options;
        Session {
            chan: HostChannel::new(chan),
            stdin: StdinPump::new(files, 0),
            clock: TimeoutClock::new(timeout, spawned),
            scratch: Some(scratch),
            next_scratch_check: spawned,
            status: None,
            console_fd: Some(console_fd),
            console: Console::new(debug),
            output_open: [true, true],
            signals,
            uml: Some(uml),
            events: Events {
                spawned: Some(spawned),
                ..Events::default()
            },
            debug,
            stopping: None,
            interruption: None,
            tty,
            raw: None,
            forwarder,
            timed_out: false,
            lined: false,
        }
    }

    /// `sekexe exec`: a session of a warm guest, already connected. The guest is up, so the
    /// session may write at once.
    pub fn exec(io: ExecIo, options: Options) -> Session {
        let now = Instant::now();
        let ExecIo {
            channel,
            lined,
            signals,
            files,
            session,
        } = io;
        let mut chan = HostChannel::new(channel);
        chan.set_ready();
        if !lined {
            // The warm guest's launcher nudges its kernel; this end talks to that launcher.
            chan.never_nudge();
        }
        Session {
            chan,
            stdin: StdinPump::new(files, session),
            clock: TimeoutClock::new(options.timeout, now),
            scratch: None,
            next_scratch_check: now,
            status: None,
            console_fd: None,
            console: Console::new(false),
            output_open: [true, true],
            signals,
            uml: None,
            events: Events {
                spawned: Some(now),
                hello: Some(now),
                ..Events::default()
            },
            debug: options.debug,
            stopping: None,
            interruption: None,
            tty: options.tty,
            raw: None,
            forwarder: None,
            timed_out: false,
            lined,
        }
    }

    /// The guest's End came and the EndAck is written whole: the session's channel holds
    /// nothing more of it.
    pub fn ended_cleanly(&self) -> bool {
        self.events.end.is_some() && self.chan.end_acked()
    }

    /// Adds the port forwards once slirp4netns can take them, then lets the guest go on.
    fn advance_forwarder(&mut self) {
        match crate::net::advance_forwards(&mut self.forwarder) {
            None => {}
            Some(Ok(())) => self.send(HostFrame::NetReady),
            Some(Err(e)) => self.interruption = Some(Interruption::Setup(format!("{e:#}"))),
        }
    }

    /// Takes the `--timeout` step that is due: SIGTERM, then SIGKILL and shutdown, then
    /// killing an unresponsive kernel.
    fn check_timeout(&mut self) {
        let Some(action) = self.clock.due(Instant::now()) else {
            return;
        };
        let Some(t) = self.clock.timeout() else {
            return;
        };
        match action {
            Action::Terminate => {
                self.timed_out = true;
                eprintln!(
                    "sekexe: --timeout {} expired: sending the command SIGTERM",
                    crate::units::format_duration(t.after)
                );
                self.send(HostFrame::Signal(Signal::SIGTERM as i32 as u8));
            }
            Action::Kill => {
                // exec's Shutdown ends its own session; the warm guest stays up.
                let guest = if self.uml.is_some() {
                    " and stopping the guest"
                } else {
                    ""
                };
                eprintln!(
                    "sekexe: the command outlived --kill-after {}: killing it{guest}",
                    crate::units::format_duration(t.kill_after)
                );
                self.send(HostFrame::Signal(Signal::SIGKILL as i32 as u8));
                self.send(HostFrame::Shutdown);
            }
            Action::GiveUp => self.interruption = Some(Interruption::Unresponsive),
        }
    }

    /// How full the kernel's scratch area is now (for --debug).
    pub fn scratch_usage(&self) -> Option<crate::scratch::Usage> {
        self.scratch.as_ref()?.usage().ok()
    }

    /// When the next of the run's own deadlines is due: the stop grace, a --timeout step, the
    /// scratch watch.
    fn next_deadline(&self) -> Option<Instant> {
        [
            self.stopping.map(|(_, at)| at + STOP_WAIT),
            self.clock.next_due(),
            Some(self.next_scratch_check),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Acts on the deadlines that are due (see `next_deadline`).
    fn check_deadlines(&mut self) {
        self.check_timeout();
        self.check_stop();
        self.check_scratch();
    }

    /// Ends the run once a forwarded SIGINT/SIGTERM has had STOP_WAIT to work.
    fn check_stop(&mut self) {
        if let Some((sig, at)) = self.stopping {
            if Instant::now() >= at + STOP_WAIT {
                self.interruption = Some(Interruption::Signal(sig));
            }
        }
    }

    /// Ends the run when the guest makes the host hold more than the scratch area's bound.
    fn check_scratch(&mut self) {
        let now = Instant::now();
        if now < self.next_scratch_check {
            return;
        }
        self.next_scratch_check = now + SCRATCH_CHECK;
        if let Some(why) = self.scratch.as_ref().and_then(Scratch::overrun) {
            self.interruption = Some(Interruption::Hostile(why));
        }
    }

    /// Runs until the kernel has exited (or was killed because the run was interrupted).
    pub fn run(&mut self) -> anyhow::Result<()> {
        if self.tty {
            self.raw = RawMode::enter()?;
        }
        loop {
            let gone = match self.uml.as_mut() {
                Some(uml) => uml.try_wait().is_some(),
                // exec: done once the session's End is acknowledged (everything before it is
                // written out); the relay's own exit and cleanup in the guest need no waiting.
                // The warm guest's launcher closes the connection if the guest goes first.
                None => {
                    self.chan.flush();
                    // An EndAck the window keeps (a guest that stopped crediting early) is
                    // given up on: the status is here, and the session's line is then retired.
                    let given_up = self
                        .events
                        .end
                        .is_some_and(|at| at.elapsed() >= END_ACK_GIVE_UP);
                    !self.chan.is_open()
                        || (self.events.end.is_some() && self.chan.queued() == 0)
                        || given_up
                }
            };
            if gone {
                self.events.exited = Some(Instant::now());
                break;
            }
            if self.interruption.is_some() {
                if let Some(uml) = self.uml.as_mut() {
                    uml.kill_now();
                }
                self.events.exited = Some(Instant::now());
                break;
            }
            if self.events.end.is_some() && self.uml.is_some() {
                // The guest has reported and synced: its power-off would only cost time.
                self.read_channel();
                if let Some(uml) = self.uml.as_mut() {
                    uml.kill_now();
                }
                continue;
            }
            self.check_deadlines();
            self.advance_forwarder();
            if self.interruption.is_some() {
                continue;
            }
            // Here only, where the loop reads the guest: not while it waits for our stdout,
            // when the silence is ours.
            self.chan.nudge_if_silent(Instant::now());
            self.poll_once();
        }
        // The kernel is gone: collect what it wrote before it went.
        self.read_channel();
        // What the guest left in the scratch area outlives the kernel (the launcher's fd keeps
        // the tmpfs): a flood faster than the checks, or one that crashed the kernel by
        // leaving guest memory no room, is named here.
        if let Some(scratch) = &self.scratch {
            scratch.forget_kernel();
            if self.interruption.is_none() {
                if let Some(why) = scratch.overrun_after_exit() {
                    self.interruption = Some(Interruption::Hostile(why));
                }
            }
        }
        self.read_console();
        self.console.flush_partial();
        // Raw only while attached: messages after the run go to a sane terminal.
        self.raw = None;
        Ok(())
    }

    fn poll_once(&mut self) {
        let hello = self.events.hello.is_some();
        // With port forwards, the guest waits for NetReady before anything else.
        let want_stdin = hello
            && self.forwarder.is_none()
            && self.stdin.wants_input()
            && self.events.end.is_none()
            && self.chan.queued() < CHANNEL_WINDOW;
        let mut chan_events = PollFlags::IN;
        if self.chan.wants_write() {
            chan_events |= PollFlags::OUT;
        }
        let wake = [
            self.next_deadline(),
            self.chan.next_nudge(),
            // exec: an EndAck the window keeps is given up on then.
            self.events
                .end
                .filter(|_| self.uml.is_none())
                .map(|at| at + END_ACK_GIVE_UP),
            // The forwarder waits for slirp4netns's API socket to appear.
            self.forwarder
                .as_ref()
                .map(|_| Instant::now() + Duration::from_millis(2)),
        ]
        .into_iter()
        .flatten()
        .min();
        let timeout = wake.and_then(|at| {
            let left = at.saturating_duration_since(Instant::now());
            Timespec::try_from(left).ok()
        });
        let stdin = std::io::stdin();
        let (chan, console, sig, input) = {
            let mut fds: Vec<PollFd> = Vec::with_capacity(4);
            let mut slots = [usize::MAX; 4];
            if self.chan.is_open() {
                slots[0] = fds.len();
                fds.push(PollFd::new(self.chan.fd(), chan_events));
            }
            if let Some(fd) = &self.console_fd {
                slots[1] = fds.len();
                fds.push(PollFd::new(fd, PollFlags::IN));
            }
            slots[2] = fds.len();
            fds.push(PollFd::new(&self.signals, PollFlags::IN));
            if want_stdin {
                slots[3] = fds.len();
                fds.push(PollFd::new(&stdin, PollFlags::IN));
            }
            match rustix::event::poll(&mut fds, timeout.as_ref()) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => return,
                Err(e) => {
                    self.interruption = Some(Interruption::Protocol(format!("poll: {e}")));
                    return;
                }
            }
            let ready = |s: usize| s != usize::MAX && !fds[s].revents().is_empty();
            (
                ready(slots[0]),
                ready(slots[1]),
                ready(slots[2]),
                ready(slots[3]),
            )
        };
        if chan {
            self.flush_channel();
            self.read_channel();
        }
        if console {
            self.read_console();
        }
        if sig {
            self.handle_signals();
        }
        if input {
            self.read_stdin();
        }
        self.flush_channel();
    }

    fn send(&mut self, frame: HostFrame<'_>) {
        self.chan.send(frame);
    }

    fn flush_channel(&mut self) {
        self.chan.flush();
    }

    /// Reads what the guest sent and handles every complete frame.
    fn read_channel(&mut self) {
        while self.chan.read() {
            let buf = self.chan.take_input();
            let (used, result) = channel::each_frame(&buf, |f| self.handle_frame(f));
            self.chan.put_back(buf, used);
            if let Err(e) = result {
                self.interruption = Some(Interruption::Protocol(format!(
                    "the guest sent a malformed frame ({e})"
                )));
                self.chan.close();
                return;
            }
        }
    }

    fn handle_frame(&mut self, frame: GuestFrame<'_>) {
        match frame {
            GuestFrame::Hello => {
                self.events.hello.get_or_insert_with(Instant::now);
                self.chan.set_ready();
            }
            GuestFrame::Started => {
                self.events.started.get_or_insert_with(Instant::now);
            }
            GuestFrame::Stdout(data) => self.write_output(0, data),
            GuestFrame::Stderr(data) => self.write_output(1, data),
            GuestFrame::StdinCredit(n) => self.stdin.credit(n),
            GuestFrame::StdinFileRead(seq) => self.stdin.file_read(seq),
            GuestFrame::StdinClosed => self.stdin.closed_by_guest(),
            GuestFrame::ChannelCredit(n) => self.chan.credit(n),
            GuestFrame::Log(line) => {
                if self.debug {
                    let mut msg = b"[init] ".to_vec();
                    msg.extend_from_slice(line);
                    msg.push(b'\n');
                    let _ = std::io::stderr().write_all(&msg);
                }
            }
            GuestFrame::DebugShell(reason) => self.debug_shell(reason),
            GuestFrame::Status(record) => {
                if self.status.is_some() {
                    self.interruption = Some(Interruption::Protocol(
                        "the guest sent a second status record".into(),
                    ));
                    return;
                }
                self.status = Some(
                    Status::decode(record)
                        .map_err(|e| format!("the guest's status record is malformed: {e}")),
                );
            }
            GuestFrame::End => {
                self.events.end.get_or_insert_with(Instant::now);
                self.chan.end_ack();
            }
            // Over a session's own line the guest speaks, and a `Lost` would put its words
            // in the warm guest's launcher's mouth; the launcher's comes on the connection.
            GuestFrame::Lost(_) if self.lined => {
                self.interruption = Some(Interruption::Protocol(
                    "the guest sent the launcher's frame on a session's line".into(),
                ));
            }
            GuestFrame::Lost(why) => {
                if self.uml.is_none() && self.status.is_none() {
                    self.interruption = Some(Interruption::Lost(
                        String::from_utf8_lossy(why).into_owned(),
                    ));
                }
            }
            // A warm guest's frames; its sessions' launcher unwraps them before they come here.
            GuestFrame::Session { .. } | GuestFrame::SessionGone(_) | GuestFrame::LineFree(_) => {
                self.interruption = Some(Interruption::Protocol(
                    "the guest sent a warm guest's frame during a run".into(),
                ));
            }
        }
    }

    /// `--debug-shell`: the guest now relays a shell on a terminal; attach to it like -t.
    fn debug_shell(&mut self, reason: &[u8]) {
        // The message goes out on a cooked terminal, then the shell gets a raw one.
        self.raw = None;
        eprintln!(
            "sekexe: {}; --debug-shell: a shell in the guest follows, exit it to end the run",
            String::from_utf8_lossy(reason)
        );
        self.tty = true;
        if self.raw.is_none() {
            match RawMode::enter() {
                Ok(raw) => self.raw = raw,
                Err(e) => eprintln!("sekexe: cannot put the terminal in raw mode: {e:#}"),
            }
        }
        if let Some((rows, cols)) = crate::terminal::size() {
            self.send(HostFrame::Winsize { rows, cols });
        }
        self.stdin.restart();
        self.output_open = [true, true];
    }

    /// Writes the command's output to our stdout or stderr. When the reader is gone (a closed
    /// pipe, `| head -1`), the guest closes the command's end too, so it gets SIGPIPE as it
    /// would on the host.
    fn write_output(&mut self, index: usize, data: &[u8]) {
        if !self.output_open[index] {
            return;
        }
        if let Err(e) = self.write_responsively(index, data) {
            self.output_open[index] = false;
            if e != rustix::io::Errno::PIPE {
                let name = ["stdout", "stderr"][index];
                eprintln!("sekexe: writing the command's {name}: {e}; the rest of it is lost");
            }
            self.send(if index == 0 {
                HostFrame::CloseStdout
            } else {
                HostFrame::CloseStderr
            });
        }
    }

    /// Writes all of `data` to our stdout (0) or stderr (1). Into a pipe or socket, whose
    /// reader may stop reading, it waits in poll beside the signals and writes at most
    /// PIPE_BUF at a time (which then cannot block): SIGINT and SIGTERM still stop the run.
    /// Once the run is interrupted, the rest is dropped.
    fn write_responsively(&mut self, index: usize, mut data: &[u8]) -> Result<(), Errno> {
        let (stdout, stderr) = (std::io::stdout(), std::io::stderr());
        let fd = if index == 0 {
            stdout.as_fd()
        } else {
            stderr.as_fd()
        };
        if !may_block(fd) {
            return write_all(fd, data);
        }
        while !data.is_empty() && self.interruption.is_none() {
            // The run's own deadlines go on meanwhile: the stop grace, --timeout, the watch.
            let wait = self.next_deadline().and_then(|at| {
                Timespec::try_from(at.saturating_duration_since(Instant::now())).ok()
            });
            let (writable, signalled) = {
                let mut fds = [
                    PollFd::new(&fd, PollFlags::OUT),
                    PollFd::new(&self.signals, PollFlags::IN),
                ];
                match rustix::event::poll(&mut fds, wait.as_ref()) {
                    Ok(_) | Err(Errno::INTR) => {}
                    Err(e) => return Err(e),
                }
                (!fds[0].revents().is_empty(), !fds[1].revents().is_empty())
            };
            if signalled {
                self.handle_signals();
            }
            self.check_deadlines();
            // A signal or a timeout step for the guest goes out now, not after this write.
            self.chan.flush();
            if writable {
                match rustix::io::write(fd, &data[..data.len().min(PIPE_BUF)]) {
                    Ok(n) => data = &data[n..],
                    Err(Errno::INTR | Errno::AGAIN) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    fn read_console(&mut self) {
        let mut buf = [0u8; 16384];
        while let Some(fd) = &self.console_fd {
            match rustix::io::read(fd, &mut buf) {
                Ok(0) => self.console_fd = None,
                Ok(n) => {
                    self.console.feed(&buf[..n]);
                    if n < buf.len() {
                        return;
                    }
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return,
            }
        }
    }

    /// Reads what stdin has, up to STDIN_CHUNK: a little goes inline (keystrokes, small
    /// pipes), more goes as a file in the run folder.
    fn read_stdin(&mut self) {
        let stdin = std::io::stdin();
        let mut buf = vec![0u8; STDIN_CHUNK];
        let mut len = 0;
        let mut eof = false;
        while len < buf.len() {
            match rustix::io::read(&stdin, &mut buf[len..]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => len += n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => break,
                // A closed or broken stdin is an empty one.
                Err(_) => {
                    eof = true;
                    break;
                }
            }
            // More right away (a full pipe, a file)? Gather it into one chunk.
            let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
            let zero = Timespec::try_from(Duration::ZERO).ok();
            if len <= MAX_INLINE_STDIN
                || !matches!(rustix::event::poll(&mut fds, zero.as_ref()), Ok(1))
            {
                break;
            }
        }
        let chan = &mut self.chan;
        if let Err(e) = self.stdin.pass(&buf[..len], &mut |f| chan.send(f)) {
            // The command would see a stdin cut short: end the run rather than lose data.
            self.interruption = Some(Interruption::Hostile(format!(
                "cannot pass stdin to the guest: {e:#}"
            )));
            return;
        }
        if eof {
            let chan = &mut self.chan;
            self.stdin.end(&mut |f| chan.send(f));
        }
    }

    fn handle_signals(&mut self) {
        for sig in signals::drain(&self.signals) {
            match sig {
                Signal::SIGCHLD => {} // the loop checks the kernel each round
                Signal::SIGWINCH => {
                    if let (true, Some((rows, cols))) = (self.tty, crate::terminal::size()) {
                        self.send(HostFrame::Winsize { rows, cols });
                    }
                }
                Signal::SIGINT | Signal::SIGTERM if self.stopping.is_some() => {
                    self.interruption = Some(Interruption::Signal(sig));
                }
                s if signals::forwarded(s) => {
                    if matches!(s, Signal::SIGINT | Signal::SIGTERM) {
                        self.stopping = Some((s, Instant::now()));
                    }
                    self.send(HostFrame::Signal(s as i32 as u8));
                }
                _ => {}
            }
        }
    }
}

/// Writes of at most this much into a pipe with room for one cannot block.
const PIPE_BUF: usize = 4096;

/// Whether a write to `fd` can block for as long as its reader pleases (a pipe or a socket).
fn may_block(fd: BorrowedFd<'_>) -> bool {
    use rustix::fs::FileType;
    rustix::fs::fstat(fd).is_ok_and(|st| {
        matches!(
            FileType::from_raw_mode(st.st_mode),
            FileType::Fifo | FileType::Socket
        )
    })
}

fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> Result<(), rustix::io::Errno> {
    while !data.is_empty() {
        match rustix::io::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) => {
                // Someone else made our output non-blocking: wait until it drains.
                let mut fds = [PollFd::new(&fd, PollFlags::OUT)];
                let _ = rustix::event::poll(&mut fds, None);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
