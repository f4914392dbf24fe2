//! The launcher's event loop while the guest runs: the command's three streams, the kernel
//! console, signals, and the end-of-run handshake, all in one single-threaded poll loop.

use std::collections::VecDeque;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use rustix::event::{PollFd, PollFlags, Timespec};
use sekexe_wire::frame::{stdin_file_name, CHANNEL_WINDOW, MAX_INLINE_STDIN, MAX_PAYLOAD};
use sekexe_wire::{GuestFrame, HostFrame, Status};

use crate::config::Timeout;
use crate::console::Console;
use crate::net::Forwarder;
use crate::rundir::Files;
use crate::scratch::Scratch;
use crate::signals;
use crate::terminal::RawMode;
use crate::uml::Uml;

/// Stdin is read in chunks of up to this much; a chunk over MAX_INLINE_STDIN becomes a file.
const STDIN_CHUNK: usize = 1 << 20;
/// At most this much stdin is in flight to the guest before it reports it consumed.
const STDIN_WINDOW: usize = 4 * STDIN_CHUNK;
/// After a timeout's SIGKILL and shutdown request, a guest that has not ended by then is
/// considered hung, and its kernel is killed.
const UNRESPONSIVE_WAIT: Duration = Duration::from_secs(5);
/// After a SIGINT or SIGTERM has been passed on, how long the command gets to end before the
/// kernel is killed: a guest that ignores it cannot keep the launcher.
const STOP_WAIT: Duration = Duration::from_secs(4);
/// How often the kernel's scratch area is measured.
const SCRATCH_CHECK: Duration = Duration::from_millis(250);

/// The steps of `--timeout`, each at its own time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimeoutStage {
    Armed,
    Terminated,
    Killed,
    Done,
}

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
    /// Setting something up on the host failed after the kernel started (port forwards).
    Setup(String),
}

pub struct Session {
    chan: OwnedFd,
    chan_open: bool,
    out: Vec<u8>,
    /// Channel bytes written but not yet read by guest-init (see CHANNEL_WINDOW).
    unacked: usize,
    /// Where stdin chunks too large to go inline are left for the guest.
    files: Files,
    next_stdin_file: u32,
    /// Stdin files not yet consumed: their number and where they end in the stdin stream.
    stdin_files: VecDeque<(u32, u64)>,
    /// Stdin bytes sent, and stdin bytes the guest has credited, since the stream began.
    stdin_sent: u64,
    stdin_credited: u64,
    scratch: Scratch,
    next_scratch_check: Instant,
    /// The guest's status record, once it has sent one (or why it could not be decoded).
    pub status: Option<Result<Status, String>>,
    inbuf: Vec<u8>,
    console_fd: Option<OwnedFd>,
    pub console: Console,
    stdin_open: bool,
    /// stdin reached its end (as opposed to the guest no longer wanting it).
    stdin_ended: bool,
    in_flight: usize,
    output_open: [bool; 2],
    signals: SignalFd,
    pub uml: Uml,
    pub events: Events,
    debug: bool,
    /// When the first SIGINT/SIGTERM was forwarded: a second one, or STOP_WAIT, ends the run.
    stopping: Option<(Signal, Instant)>,
    pub interruption: Option<Interruption>,
    timeout: Option<Timeout>,
    timeout_stage: TimeoutStage,
    tty: bool,
    /// The host terminal in raw mode, while a guest terminal is attached.
    raw: Option<RawMode>,
    forwarder: Option<Forwarder>,
    /// `--timeout` expired (the run exits 124 however the command ends).
    pub timed_out: bool,
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
            chan,
            chan_open: true,
            out: Vec::new(),
            unacked: 0,
            files,
            next_stdin_file: 0,
            stdin_files: VecDeque::new(),
            stdin_sent: 0,
            stdin_credited: 0,
            scratch,
            next_scratch_check: spawned,
            status: None,
            inbuf: Vec::new(),
            console_fd: Some(console_fd),
            console: Console::new(debug),
            stdin_open: true,
            stdin_ended: false,
            in_flight: 0,
            output_open: [true, true],
            signals,
            uml,
            events: Events {
                spawned: Some(spawned),
                ..Events::default()
            },
            debug,
            stopping: None,
            interruption: None,
            timeout,
            timeout_stage: TimeoutStage::Armed,
            tty,
            raw: None,
            forwarder,
            timed_out: false,
        }
    }

    /// Adds the port forwards once slirp4netns can take them, then lets the guest go on.
    fn advance_forwarder(&mut self) {
        let Some(f) = self.forwarder.as_mut() else {
            return;
        };
        match f.try_add() {
            Ok(false) => {}
            Ok(true) => {
                self.forwarder = None;
                self.send(HostFrame::NetReady);
            }
            Err(e) => {
                self.forwarder = None;
                self.interruption = Some(Interruption::Setup(format!("{e:#}")));
            }
        }
    }

    /// When the next `--timeout` step is due.
    fn timeout_deadline(&self) -> Option<Instant> {
        let t = self.timeout?;
        let start = self.events.spawned?;
        match self.timeout_stage {
            TimeoutStage::Armed => Some(start + t.after),
            TimeoutStage::Terminated => Some(start + t.after + t.kill_after),
            TimeoutStage::Killed => Some(start + t.after + t.kill_after + UNRESPONSIVE_WAIT),
            TimeoutStage::Done => None,
        }
    }

    /// Takes the `--timeout` steps that are due: SIGTERM, then SIGKILL and shutdown, then
    /// killing an unresponsive kernel.
    fn check_timeout(&mut self) {
        let Some(deadline) = self.timeout_deadline() else {
            return;
        };
        if Instant::now() < deadline {
            return;
        }
        let t = self.timeout.unwrap();
        match self.timeout_stage {
            TimeoutStage::Armed => {
                self.timed_out = true;
                eprintln!(
                    "sekexe: --timeout {} expired: sending the command SIGTERM",
                    crate::units::format_duration(t.after)
                );
                self.send(HostFrame::Signal(Signal::SIGTERM as i32 as u8));
                self.timeout_stage = TimeoutStage::Terminated;
            }
            TimeoutStage::Terminated => {
                eprintln!(
                    "sekexe: the command outlived --kill-after {}: killing it and stopping the guest",
                    crate::units::format_duration(t.kill_after)
                );
                self.send(HostFrame::Signal(Signal::SIGKILL as i32 as u8));
                self.send(HostFrame::Shutdown);
                self.timeout_stage = TimeoutStage::Killed;
            }
            TimeoutStage::Killed => {
                self.interruption = Some(Interruption::Unresponsive);
                self.timeout_stage = TimeoutStage::Done;
            }
            TimeoutStage::Done => {}
        }
    }

    /// How full the kernel's scratch area is now (for --debug).
    pub fn scratch_usage(&self) -> Option<crate::scratch::Usage> {
        self.scratch.usage().ok()
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
        if let Some(why) = self.scratch.overrun() {
            self.interruption = Some(Interruption::Hostile(why));
        }
    }

    /// Runs until the kernel has exited (or was killed because the run was interrupted).
    pub fn run(&mut self) -> anyhow::Result<()> {
        if self.tty {
            self.raw = RawMode::enter()?;
        }
        loop {
            if self.uml.try_wait().is_some() {
                self.events.exited = Some(Instant::now());
                break;
            }
            if self.interruption.is_some() {
                self.uml.kill_now();
                self.events.exited = Some(Instant::now());
                break;
            }
            if self.events.end.is_some() {
                // The guest has reported and synced: its power-off would only cost time.
                self.read_channel();
                self.uml.kill_now();
                continue;
            }
            self.check_timeout();
            self.check_stop();
            self.check_scratch();
            self.advance_forwarder();
            if self.interruption.is_some() {
                continue;
            }
            self.poll_once();
        }
        // The kernel is gone: collect what it wrote before it went.
        self.read_channel();
        // What the guest left in the scratch area outlives the kernel (the launcher's fd keeps
        // the tmpfs): a flood faster than the checks, or one that crashed the kernel by
        // leaving guest memory no room, is named here.
        if self.interruption.is_none() {
            if let Some(why) = self.scratch.overrun() {
                self.interruption = Some(Interruption::Hostile(why));
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
            && self.stdin_open
            && self.events.end.is_none()
            && self.out.len() < CHANNEL_WINDOW
            && self.in_flight + STDIN_CHUNK <= STDIN_WINDOW;
        let mut chan_events = PollFlags::IN;
        if hello && !self.out.is_empty() && self.unacked < CHANNEL_WINDOW {
            chan_events |= PollFlags::OUT;
        }
        let wake = [
            self.timeout_deadline(),
            Some(self.next_scratch_check),
            self.stopping.map(|(_, at)| at + STOP_WAIT),
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
            if self.chan_open {
                slots[0] = fds.len();
                fds.push(PollFd::new(&self.chan, chan_events));
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
        frame.encode_into(&mut self.out);
    }

    /// Writes queued frames, never blocking and never more than the guest has room for;
    /// nothing goes out before the guest's Hello (the channel tty is not raw until then, and
    /// would echo it back).
    fn flush_channel(&mut self) {
        if self.events.hello.is_none() {
            return;
        }
        while !self.out.is_empty() && self.chan_open && self.unacked < CHANNEL_WINDOW {
            let room = (CHANNEL_WINDOW - self.unacked).min(self.out.len());
            match rustix::io::write(&self.chan, &self.out[..room]) {
                Ok(n) => {
                    self.out.drain(..n);
                    self.unacked += n;
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => break,
                Err(_) => {
                    self.out.clear();
                    break;
                }
            }
        }
    }

    fn read_channel(&mut self) {
        let mut buf = vec![0u8; 4 * MAX_PAYLOAD];
        loop {
            if !self.chan_open {
                return;
            }
            match rustix::io::read(&self.chan, &mut buf) {
                Ok(0) => self.chan_open = false,
                Ok(n) => {
                    self.inbuf.extend_from_slice(&buf[..n]);
                    self.handle_frames();
                    if n < buf.len() {
                        return;
                    }
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => return,
                Err(_) => self.chan_open = false,
            }
        }
    }

    fn handle_frames(&mut self) {
        let buf = std::mem::take(&mut self.inbuf);
        let mut pos = 0;
        loop {
            match GuestFrame::parse(&buf[pos..]) {
                Ok(Some((frame, used))) => {
                    self.handle_frame(frame);
                    pos += used;
                }
                Ok(None) => break,
                Err(e) => {
                    self.interruption = Some(Interruption::Protocol(format!(
                        "the guest sent a malformed frame ({e})"
                    )));
                    self.chan_open = false;
                    return;
                }
            }
        }
        let mut buf = buf;
        buf.drain(..pos);
        self.inbuf = buf;
    }

    fn handle_frame(&mut self, frame: GuestFrame<'_>) {
        match frame {
            GuestFrame::Hello => {
                self.events.hello.get_or_insert_with(Instant::now);
            }
            GuestFrame::Started => {
                self.events.started.get_or_insert_with(Instant::now);
            }
            GuestFrame::Stdout(data) => self.write_output(0, data),
            GuestFrame::Stderr(data) => self.write_output(1, data),
            GuestFrame::StdinCredit(n) => {
                self.in_flight = self.in_flight.saturating_sub(n as usize);
                self.stdin_credited += u64::from(n);
                self.remove_consumed_stdin_files();
            }
            GuestFrame::StdinClosed => self.stdin_open = false,
            GuestFrame::ChannelCredit(n) => {
                self.unacked = self.unacked.saturating_sub(n as usize);
            }
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
                self.send(HostFrame::EndAck);
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
        self.in_flight = 0;
        // The command is gone: what it did not read never will be.
        while let Some((seq, _)) = self.stdin_files.pop_front() {
            self.files.remove(&stdin_file_name(seq));
        }
        self.stdin_credited = self.stdin_sent;
        self.stdin_open = !self.stdin_ended;
        self.output_open = [true, true];
    }

    /// Writes the command's output to our stdout or stderr. When the reader is gone (a closed
    /// pipe, `| head -1`), the guest closes the command's end too, so it gets SIGPIPE as it
    /// would on the host.
    fn write_output(&mut self, index: usize, data: &[u8]) {
        if !self.output_open[index] {
            return;
        }
        let result = if index == 0 {
            write_all(std::io::stdout().as_fd(), data)
        } else {
            write_all(std::io::stderr().as_fd(), data)
        };
        if let Err(e) = result {
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
        if len > 0 {
            self.in_flight += len;
            self.stdin_sent += len as u64;
            if len <= MAX_INLINE_STDIN {
                self.send(HostFrame::Stdin(&buf[..len]));
            } else if let Err(e) = self.send_stdin_file(&buf[..len]) {
                // The command would see a stdin cut short: end the run rather than lose data.
                self.interruption = Some(Interruption::Hostile(format!(
                    "cannot pass stdin to the guest: {e:#}"
                )));
                return;
            }
        }
        if eof {
            self.stdin_eof();
        }
    }

    fn send_stdin_file(&mut self, data: &[u8]) -> anyhow::Result<()> {
        let seq = self.next_stdin_file;
        self.files.create(&stdin_file_name(seq), data)?;
        self.next_stdin_file += 1;
        self.stdin_files.push_back((seq, self.stdin_sent));
        self.send(HostFrame::StdinFile {
            seq,
            len: data.len() as u32,
        });
        Ok(())
    }

    /// Removes the stdin files the guest's credits cover: it has read them.
    fn remove_consumed_stdin_files(&mut self) {
        while let Some(&(seq, end)) = self.stdin_files.front() {
            if end > self.stdin_credited {
                break;
            }
            self.files.remove(&stdin_file_name(seq));
            self.stdin_files.pop_front();
        }
    }

    fn stdin_eof(&mut self) {
        self.stdin_open = false;
        self.stdin_ended = true;
        self.send(HostFrame::StdinEof);
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
