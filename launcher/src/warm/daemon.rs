//! A warm guest's launcher: `sekexe start` boots the kernel as `run` does, then stays behind,
//! detached, in one single-threaded poll loop. It multiplexes the guest's channel between the
//! `sekexe exec` sessions connected to its control socket (each session's frames travel
//! wrapped in `Session{id}` frames; guest-init's PID 1 unwraps them for the session's relay),
//! hands each new session one of the guest's free session lines if it has one (the session's
//! `exec` then speaks over that line directly, and this loop only watches its connection, and
//! tells the guest, in a `Session{id}` frame, if the `exec` leaves before the session's end),
//! keeps the kernel console in the guest's folder, and stops the guest when asked, when idle
//! for `--idle-timeout`, or when a termination signal comes. A kernel that dies is recorded in
//! the folder and told to every session.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rustix::buffer::spare_capacity;
use rustix::event::{PollFd, PollFlags, Timespec};
use sekexe_wire::frame::exec_request_name;
use sekexe_wire::queue::ByteQueue;
use sekexe_wire::{GuestFrame, HostFrame, Request, Status};

use super::control::{self, Ask, Reply};
use super::folder::GuestDir;
use crate::console::Console;
use crate::rundir::Files;
use crate::scratch::Scratch;
use crate::session::channel::{each_frame, HostChannel};
use crate::session::Io;
use crate::uml::{self, Uml};
use crate::{diagnose, signals};

/// From `stop` (or the idle timeout) to killing the kernel: guest-init gives the commands
/// 5 s between SIGTERM and SIGKILL, then powers off.
const STOP_WAIT: Duration = Duration::from_secs(15);
/// A client that has not sent its whole ask by then is dropped.
const ASK_WAIT: Duration = Duration::from_secs(10);
/// The console log in the guest's folder stops growing here.
const CONSOLE_LOG_MAX: u64 = 8 << 20;
/// Stop reading sessions while this much waits for the guest's narrow channel.
const CHANNEL_QUEUE_MAX: usize = 64 * 1024;
/// Stop reading the guest while a session's client has this much unread (the other sessions
/// wait too: the guest's output shares one channel).
const CLIENT_QUEUE_MAX: usize = 4 << 20;
const SCRATCH_CHECK: Duration = Duration::from_millis(250);
/// The most buffers read from the guest between two looks at the clients.
const READS_PER_WAKE: usize = 8;
/// Room made for each read from a client (a read may fill more, if the queue has it).
const CLIENT_READ: usize = 64 * 1024;
/// How long a kernel whose channel closed may take to exit before it is killed.
const CHANNEL_CLOSED_GRACE: Duration = Duration::from_secs(1);

/// A client whose first ask is not whole yet.
struct Waiting {
    sock: UnixStream,
    buf: Vec<u8>,
    since: Instant,
}

/// A session's `sekexe exec`.
struct Client {
    /// None once it hung up.
    sock: Option<UnixStream>,
    to_client: ByteQueue,
    from_client: Vec<u8>,
    /// The guest has said the session is over.
    gone: bool,
    /// The session's relay sent its End: the command has ended and been reported.
    ended: bool,
    /// The session has a line of its own, which its `exec` speaks over.
    lined: bool,
    /// That line, until retired.
    line: Option<u8>,
    /// The guest said the session's line is free again (its relay read its `EndAck`).
    line_freed: bool,
    /// `exec` said it sent its `EndAck` on the line: its leaving takes nothing with it.
    acked: bool,
}

pub struct Daemon {
    chan: HostChannel,
    console_fd: Option<OwnedFd>,
    console: Console,
    console_log: Option<std::fs::File>,
    console_logged: u64,
    uml: Uml,
    signals: nix::sys::signalfd::SignalFd,
    listener: UnixListener,
    files: Files,
    scratch: Scratch,
    next_scratch_check: Instant,
    waiting: Vec<Waiting>,
    clients: BTreeMap<u32, Client>,
    /// `stop`s waiting for the guest to be gone: their connections close when it is.
    stoppers: Vec<UnixStream>,
    next_id: u32,
    /// guest-init serves sessions.
    ready: bool,
    /// Where `start` waits to hear that the guest is ready (or why it failed).
    ready_pipe: Option<OwnedFd>,
    /// A stop was asked: the kernel is killed at this instant if still up.
    stopping: Option<Instant>,
    idle_timeout: Option<Duration>,
    idle_since: Instant,
    /// What killed the guest, when the kernel went without being stopped.
    failure: Option<String>,
    /// guest-init's status record (only a failed setup sends one).
    status: Option<String>,
    memory_dir: String,
    /// Port forwards still to set up; guest-init waits for `NetReady`.
    forwarder: Option<crate::net::Forwarder>,
    /// The session lines' host ends, by number; none once retired.
    lines: Vec<Option<OwnedFd>>,
    /// The lines the guest said are free, and no session holds.
    free_lines: BTreeSet<u8>,
    /// Retired lines, kept open until the kernel is gone (see `retire_line`).
    retired: Vec<OwnedFd>,
}

/// What the daemon needs from the boot.
pub struct Parts {
    pub io: Io,
    pub uml: Uml,
    pub listener: UnixListener,
    pub ready_pipe: OwnedFd,
    pub idle_timeout: Option<Duration>,
    pub memory_dir: String,
    pub forwarder: Option<crate::net::Forwarder>,
    /// The session lines' host ends, by number.
    pub lines: Vec<OwnedFd>,
}

impl Daemon {
    pub fn new(parts: Parts, dir: &GuestDir) -> anyhow::Result<Daemon> {
        use anyhow::Context;
        let Parts {
            io,
            uml,
            listener,
            ready_pipe,
            idle_timeout,
            memory_dir,
            forwarder,
            lines,
        } = parts;
        listener
            .set_nonblocking(true)
            .context("make the control socket non-blocking")?;
        let console_log = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dir.console_log())
            .context("create the console log")?;
        let now = Instant::now();
        Ok(Daemon {
            chan: HostChannel::new(io.channel),
            console_fd: Some(io.console),
            console: Console::new(false),
            console_log: Some(console_log),
            console_logged: 0,
            uml,
            signals: io.signals,
            listener,
            files: io.files,
            scratch: io.scratch,
            next_scratch_check: now,
            waiting: Vec::new(),
            clients: BTreeMap::new(),
            stoppers: Vec::new(),
            next_id: 1,
            ready: false,
            ready_pipe: Some(ready_pipe),
            stopping: None,
            idle_timeout,
            idle_since: now,
            failure: None,
            status: None,
            memory_dir,
            forwarder,
            lines: lines.into_iter().map(Some).collect(),
            free_lines: BTreeSet::new(),
            retired: Vec::new(),
        })
    }

    /// Runs until the kernel is gone; then the reason, if it was not a stop, and the `stop`s
    /// waiting (to close once the guest's folder is gone).
    pub fn run(mut self) -> (Option<String>, Vec<UnixStream>) {
        loop {
            if let Some(status) = self.uml.try_wait() {
                self.ended(status);
                break;
            }
            let now = Instant::now();
            if self.stopping.is_some_and(|at| now >= at) {
                self.uml.kill_now();
                continue;
            }
            if !self.chan.is_open() {
                // A dying kernel closes its files before its parent can reap it: give it a
                // moment, so a kernel killed from outside or panicking is reported as such.
                if let Some(status) = self.uml.wait_up_to(CHANNEL_CLOSED_GRACE) {
                    self.ended(status);
                    break;
                }
                // A kernel that closed its end of the channel can serve no one.
                self.failure
                    .get_or_insert_with(|| "the guest closed its channel".into());
                self.uml.kill_now();
                continue;
            }
            self.check_scratch(now);
            self.check_idle(now);
            if self.may_nudge() {
                self.chan.nudge_if_silent(now);
            }
            self.advance_forwarder();
            self.reap_strays();
            self.waiting.retain(|w| now < w.since + ASK_WAIT);
            self.poll_once();
        }
        (self.failure.take(), std::mem::take(&mut self.stoppers))
    }

    /// The kernel is gone: read what it left, and say why to whoever waits.
    fn ended(&mut self, status: std::process::ExitStatus) {
        self.read_channel_left();
        self.read_console();
        self.scratch.forget_kernel();
        if self.failure.is_none() {
            self.failure = self.scratch.overrun_after_exit();
        }
        if self.failure.is_none() && self.stopping.is_none() {
            let why = self.status.clone().unwrap_or_else(|| {
                diagnose::cause(&self.console.text(), Some(status), &self.memory_dir)
                    .unwrap_or_else(|| format!("its kernel {}", uml::describe(status)))
            });
            self.failure = Some(why);
        }
        let why = self
            .failure
            .clone()
            .unwrap_or_else(|| "the warm guest was stopped".into());
        if !self.ready {
            self.tell_start(&format!("err\n{why}"));
        }
        let lost = format!("the warm guest is gone: {why}");
        for client in self.clients.values_mut() {
            if let Some(sock) = client.sock.as_mut() {
                let mut out = std::mem::take(&mut client.to_client).into_unsent();
                if !client.gone {
                    GuestFrame::Lost(lost.as_bytes()).encode_into(&mut out);
                }
                let _ = sock.set_nonblocking(false);
                let _ = sock.set_write_timeout(Some(Duration::from_secs(1)));
                let _ = sock.write_all(&out);
            }
        }
    }

    fn check_scratch(&mut self, now: Instant) {
        if now < self.next_scratch_check {
            return;
        }
        self.next_scratch_check = now + SCRATCH_CHECK;
        if let Some(why) = self.scratch.overrun() {
            self.failure = Some(why);
            self.uml.kill_now();
        }
    }

    /// Adds the port forwards once slirp4netns can take them, then lets the guest go on.
    fn advance_forwarder(&mut self) {
        match crate::net::advance_forwards(&mut self.forwarder) {
            None => {}
            Some(Ok(())) => self.chan.send(HostFrame::NetReady),
            Some(Err(e)) => {
                self.failure = Some(format!("{e:#}"));
                self.uml.kill_now();
            }
        }
    }

    /// Reaps what the kernel left behind (the launcher is their subreaper), never the kernel
    /// itself, which `Uml` reaps: a long-lived guest must not fill the process table.
    fn reap_strays(&mut self) {
        use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
        let kernel = self.uml.pid();
        for _ in 0..64 {
            let peek = waitid(
                Id::All,
                WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
            );
            let pid = match peek {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => match status.pid() {
                    Some(p) => p,
                    None => return,
                },
            };
            if pid.as_raw() == kernel {
                return;
            }
            let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
        }
    }

    /// Whether a silent guest is nudged: while it boots, serves a session or stops (an idle
    /// guest is not), and only while its output is read (else the silence is ours).
    fn may_nudge(&self) -> bool {
        (!self.ready || !self.clients.is_empty() || self.stopping.is_some())
            && self.may_read_guest()
    }

    fn check_idle(&mut self, now: Instant) {
        // A `sekexe ls` asking how many commands run is no command.
        if !self.clients.is_empty() {
            self.idle_since = now;
            return;
        }
        if let Some(t) = self.idle_timeout {
            if self.ready && now >= self.idle_since + t {
                self.begin_stop();
            }
        }
    }

    fn begin_stop(&mut self) {
        if self.stopping.is_none() {
            self.chan.send(HostFrame::Shutdown);
            self.stopping = Some(Instant::now() + STOP_WAIT);
        }
    }

    fn next_deadline(&self) -> Instant {
        let mut at = self.next_scratch_check;
        if let Some(n) = self.chan.next_nudge().filter(|_| self.may_nudge()) {
            at = at.min(n);
        }
        if let Some(s) = self.stopping {
            at = at.min(s);
        }
        if let (Some(t), true, None) = (self.idle_timeout, self.ready, self.stopping) {
            if self.clients.is_empty() {
                at = at.min(self.idle_since + t);
            }
        }
        if self.forwarder.is_some() {
            // It waits for slirp4netns's API socket to appear.
            at = at.min(Instant::now() + Duration::from_millis(2));
        }
        at
    }

    /// Whether the guest may be read: no client is too far behind.
    fn may_read_guest(&self) -> bool {
        self.clients
            .values()
            .all(|c| c.to_client.len() < CLIENT_QUEUE_MAX)
    }

    fn poll_once(&mut self) {
        let read_guest = self.may_read_guest();
        let read_clients = self.chan.queued() < CHANNEL_QUEUE_MAX;
        let mut chan_events = PollFlags::empty();
        if read_guest {
            chan_events |= PollFlags::IN;
        }
        if self.chan.wants_write() {
            chan_events |= PollFlags::OUT;
        }
        let timeout = Timespec::try_from(
            self.next_deadline()
                .saturating_duration_since(Instant::now()),
        )
        .ok();
        let (chan, console, sig, accept, waiting, clients) = {
            let mut fds = vec![
                PollFd::new(self.chan.fd(), chan_events),
                PollFd::new(&self.signals, PollFlags::IN),
                PollFd::new(&self.listener, PollFlags::IN),
            ];
            if let Some(c) = &self.console_fd {
                fds.push(PollFd::new(c, PollFlags::IN));
            }
            let first_waiting = fds.len();
            for w in &self.waiting {
                fds.push(PollFd::new(&w.sock, PollFlags::IN));
            }
            let first_client = fds.len();
            let mut ids = Vec::new();
            for (id, c) in &self.clients {
                let Some(sock) = &c.sock else { continue };
                let mut events = PollFlags::empty();
                // A session with a line of its own is watched until its `exec` leaves or says
                // it is done: its line is handed on only then.
                if read_clients && (!c.gone || c.lined) {
                    events |= PollFlags::IN;
                }
                if !c.to_client.is_empty() {
                    events |= PollFlags::OUT;
                }
                if events.is_empty() {
                    // Polled with no events it would still wake the loop with a hang-up,
                    // which is only read when reading is allowed.
                    continue;
                }
                ids.push(*id);
                fds.push(PollFd::new(sock, events));
            }
            if let Err(e) = rustix::event::poll(&mut fds, timeout.as_ref()) {
                if e != rustix::io::Errno::INTR {
                    self.failure = Some(format!("the warm guest's launcher failed: poll: {e}"));
                    self.uml.kill_now();
                }
                return;
            }
            let ready = |i: usize| !fds[i].revents().is_empty();
            let waiting: Vec<usize> = (0..self.waiting.len())
                .filter(|i| ready(first_waiting + i))
                .collect();
            let clients: Vec<u32> = ids
                .iter()
                .enumerate()
                .filter(|(i, _)| ready(first_client + i))
                .map(|(_, id)| *id)
                .collect();
            // The order of the slots above: channel, signals, listener, console.
            (
                ready(0),
                self.console_fd.is_some() && ready(3),
                ready(1),
                ready(2),
                waiting,
                clients,
            )
        };
        if chan {
            self.chan.flush();
            if read_guest {
                self.read_channel_some(READS_PER_WAKE, true);
            }
        }
        if console {
            self.read_console();
        }
        if sig {
            self.handle_signals();
        }
        if accept {
            self.accept();
        }
        for i in waiting.into_iter().rev() {
            self.read_ask(i);
        }
        for id in clients {
            self.pump_client(id);
        }
        self.chan.flush();
    }

    fn handle_signals(&mut self) {
        for sig in signals::drain(&self.signals) {
            if matches!(sig, Signal::SIGTERM | Signal::SIGINT | Signal::SIGHUP) {
                self.begin_stop();
            }
        }
    }

    /// Reads all the kernel left once it is gone, however far behind a client is: what is
    /// left is bounded by the socket's buffer, and holds other sessions' Status and End.
    fn read_channel_left(&mut self) {
        self.read_channel_some(usize::MAX, false)
    }

    /// Reads `reads` buffers at most (the clients' input, a Ctrl-C, waits for no more than
    /// that of a guest streaming output), and with `heed_clients` none while a client is too
    /// far behind.
    fn read_channel_some(&mut self, reads: usize, heed_clients: bool) {
        let mut left = reads;
        // One buffer at a time, so that a client falling behind stops the reading at once.
        while left > 0 && (!heed_clients || self.may_read_guest()) && self.chan.read() {
            left -= 1;
            let buf = self.chan.take_input();
            let (used, result) = each_frame(&buf, |f| self.handle_frame(f));
            self.chan.put_back(buf, used);
            if let Err(e) = result {
                self.failure = Some(format!("the guest sent a malformed frame ({e})"));
                self.chan.close();
                self.uml.kill_now();
                return;
            }
        }
    }

    fn handle_frame(&mut self, frame: GuestFrame<'_>) {
        match frame {
            GuestFrame::Hello => self.chan.set_ready(),
            GuestFrame::Started if !self.ready => {
                self.ready = true;
                self.idle_since = Instant::now();
                if !self.tell_start("ok\n") {
                    // Nobody waits for this guest: it would run unknown to anyone.
                    self.begin_stop();
                }
                detach_stdio();
            }
            GuestFrame::ChannelCredit(n) => self.chan.credit(n),
            GuestFrame::Log(line) => {
                let mut text = b"[init] ".to_vec();
                text.extend_from_slice(line);
                text.push(b'\n');
                self.log_console(&text);
            }
            GuestFrame::Status(record) => {
                self.status = Some(match Status::decode(record) {
                    Ok(s) => match s.outcome {
                        sekexe_wire::Outcome::GuestFailed { message } => {
                            format!("the guest failed: {message}")
                        }
                        o => format!("guest-init ended: {o:?}"),
                    },
                    Err(e) => format!("the guest's status record is malformed: {e}"),
                });
            }
            GuestFrame::End => {
                self.chan.end_ack();
                self.chan.flush();
                // Everything is synced: power-off would only cost time.
                self.uml.kill_now();
            }
            GuestFrame::Session { id, frame } => {
                // Only a run's frames go to `exec`; a warm guest's own (a `Lost` would put
                // the guest's words in the launcher's mouth) are the guest's mistake.
                let parsed = GuestFrame::parse(frame);
                let run_frame = matches!(
                    parsed,
                    Ok(Some((f, _))) if !matches!(
                        f,
                        GuestFrame::Session { .. }
                            | GuestFrame::SessionGone(_)
                            | GuestFrame::Lost(_)
                            | GuestFrame::LineFree(_)
                    )
                );
                let end = matches!(parsed, Ok(Some((GuestFrame::End, _))));
                if let (Some(c), true) = (self.clients.get_mut(&id), run_frame) {
                    c.ended |= end;
                    // A session with a line of its own speaks there, not here.
                    if c.sock.is_some() && !c.gone && !c.lined {
                        c.to_client.push(frame);
                    }
                }
                self.pump_client_some(id, false);
            }
            GuestFrame::LineFree(n) => {
                match self.clients.values_mut().find(|c| c.line == Some(n)) {
                    Some(c) => c.line_freed = true,
                    None if self.lines.get(n as usize).is_some_and(Option::is_some) => {
                        self.free_lines.insert(n);
                    }
                    None => {}
                }
            }
            GuestFrame::SessionGone(id) => {
                let Some(c) = self.clients.get_mut(&id) else {
                    return;
                };
                if c.gone {
                    return;
                }
                c.gone = true;
                if let (Some(n), false) = (c.line, c.line_freed) {
                    // Its relay ended without reading its EndAck (killed in the guest, or the
                    // session refused): the line's end tells its `exec`, as the connection's
                    // end tells one without a line.
                    c.line = None;
                    self.retire_line(n);
                }
                self.files.remove(&exec_request_name(id));
                self.files
                    .remove_prefixed(&format!("{}-", exec_request_name(id)));
                self.pump_client(id);
            }
            _ => {}
        }
    }

    /// Writes to `start`'s pipe; false if nobody reads it any more.
    fn tell_start(&mut self, text: &str) -> bool {
        let Some(pipe) = self.ready_pipe.take() else {
            return true;
        };
        std::fs::File::from(pipe).write_all(text.as_bytes()).is_ok()
    }

    fn read_console(&mut self) {
        let mut buf = [0u8; 16384];
        while let Some(fd) = &self.console_fd {
            match rustix::io::read(fd, &mut buf) {
                Ok(0) => self.console_fd = None,
                Ok(n) => {
                    self.console.feed(&buf[..n]);
                    let data = buf[..n].to_vec();
                    self.log_console(&data);
                    if n < buf.len() {
                        return;
                    }
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return,
            }
        }
    }

    /// Appends to the console log, up to its bound.
    fn log_console(&mut self, data: &[u8]) {
        let Some(f) = self.console_log.as_mut() else {
            return;
        };
        let room = CONSOLE_LOG_MAX.saturating_sub(self.console_logged) as usize;
        let take = data.len().min(room);
        let _ = f.write_all(&data[..take]);
        self.console_logged += take as u64;
        if take < data.len() {
            let _ = f.write_all(b"\n[sekexe] the console log is full; later lines are not kept\n");
            self.console_log = None;
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((sock, _)) => {
                    if !control::peer_is_us(sock.as_fd()) {
                        let _ = control::send_reply(
                            sock.as_fd(),
                            &Reply::Refused(
                                "this warm guest belongs to another user: only the user who started it can reach it".into(),
                            ),
                            &[],
                        );
                        continue;
                    }
                    if sock.set_nonblocking(true).is_err() {
                        continue;
                    }
                    self.waiting.push(Waiting {
                        sock,
                        buf: Vec::new(),
                        since: Instant::now(),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    }

    /// Reads waiting client `i`'s first ask, and answers it once whole.
    fn read_ask(&mut self, i: usize) {
        let mut buf = vec![0u8; 64 * 1024];
        let w = &mut self.waiting[i];
        loop {
            match w.sock.read(&mut buf) {
                Ok(0) => {
                    self.waiting.remove(i);
                    return;
                }
                Ok(n) => w.buf.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.waiting.remove(i);
                    return;
                }
            }
        }
        let parsed = Ask::parse(&w.buf);
        let (ask, used) = match parsed {
            Ok(Some(a)) => a,
            Ok(None) => return,
            Err(e) => {
                let w = self.waiting.remove(i);
                let _ = control::send_reply(w.sock.as_fd(), &Reply::Refused(format!("{e:#}")), &[]);
                return;
            }
        };
        let w = self.waiting.remove(i);
        let rest = w.buf[used..].to_vec();
        match ask {
            Ask::Info => {
                let _ = control::send_reply(
                    w.sock.as_fd(),
                    &Reply::About(self.clients.len() as u32),
                    &[],
                );
            }
            Ask::Stop => {
                self.begin_stop();
                self.stoppers.push(w.sock);
            }
            Ask::Exec(request) => self.start_session(w.sock, &request, rest),
        }
    }

    fn start_session(&mut self, sock: UnixStream, request: &[u8], rest: Vec<u8>) {
        let refuse = |sock: &UnixStream, why: String| {
            let _ = control::send_reply(sock.as_fd(), &Reply::Refused(why), &[]);
        };
        if self.stopping.is_some() {
            return refuse(&sock, "the warm guest is stopping".into());
        }
        if !self.ready {
            return refuse(&sock, "the warm guest is still starting: try again".into());
        }
        match Request::decode(request) {
            Ok(r) if !r.serve => {}
            _ => return refuse(&sock, "a malformed exec request".into()),
        }
        let id = self.next_id;
        self.next_id += 1;
        if let Err(e) = self.files.create(&exec_request_name(id), request) {
            return refuse(&sock, format!("{e:#}"));
        }
        // A free line if there is one; more sessions at once go through the channel.
        let line = self
            .free_lines
            .pop_first()
            .filter(|n| self.lines[*n as usize].is_some());
        let line_fd = line.and_then(|n| self.lines[n as usize].as_ref());
        let reply = Reply::Accepted {
            id,
            line: line.is_some(),
        };
        let mut fds = vec![self.files.fd()];
        fds.extend(line_fd.map(|f| f.as_fd()));
        if control::send_reply(sock.as_fd(), &reply, &fds).is_err() {
            self.files.remove(&exec_request_name(id));
            if let Some(n) = line {
                self.free_lines.insert(n);
            }
            return;
        }
        self.chan.send(HostFrame::Exec { id, line });
        self.clients.insert(
            id,
            Client {
                sock: Some(sock),
                to_client: ByteQueue::default(),
                from_client: rest,
                gone: false,
                ended: false,
                lined: line.is_some(),
                line,
                line_freed: false,
                acked: false,
            },
        );
        self.forward_from_client(id);
    }

    /// Moves what is ready between session `id`'s client and the channel; drops the client
    /// once the guest is done with the session and the client has it all.
    fn pump_client(&mut self, id: u32) {
        self.pump_client_some(id, true)
    }

    /// As [`pump_client`](Self::pump_client); `read` false only writes out what the guest
    /// sent (a client that left is still read to its end), as each of the guest's frames
    /// arrives: a read there would find the client's socket empty nearly every time.
    fn pump_client_some(&mut self, id: u32, read: bool) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        let mut hung_up = false;
        // The client left (an exec leaves once it has its End): what it sent before, its
        // EndAck among it, is still to be read and forwarded.
        let mut left = false;
        if let Some(sock) = c.sock.as_mut() {
            while !c.to_client.is_empty() {
                match sock.write(c.to_client.unsent()) {
                    Ok(n) => c.to_client.advance(n),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        left = true;
                        c.to_client.clear();
                        break;
                    }
                }
            }
            // A client that left is read to its end whatever the channel holds (its last
            // frames are few), but never past the same bound.
            while (read || left)
                && !hung_up
                && (!c.gone || c.lined)
                && (self.chan.queued() < CHANNEL_QUEUE_MAX || left)
                && c.from_client.len() < CHANNEL_QUEUE_MAX
            {
                c.from_client.reserve(CLIENT_READ);
                let room = spare_capacity(&mut c.from_client);
                match rustix::io::read(&*sock, room) {
                    Ok(0) => hung_up = true,
                    Ok(_) => {
                        if !left {
                            break;
                        }
                    }
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(rustix::io::Errno::AGAIN) => break,
                    Err(_) => hung_up = true,
                }
            }
        }
        self.forward_from_client(id);
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        if hung_up || left {
            c.sock = None;
            c.to_client.clear();
            // An `exec` leaves once it has its End; one that went before (killed, or a second
            // Ctrl-C) takes its command with it.
            if c.lined {
                if let (Some(n), false, false, false) = (c.line, c.gone, c.line_freed, c.acked) {
                    c.line = None;
                    self.retire_line(n);
                    self.stop_session(id);
                }
            } else if !c.gone && !c.ended {
                self.stop_session(id);
            }
        }
        let c = &self.clients[&id];
        // A line handed on while its last `exec` still holds it could get that one's bytes,
        // unless it said it is done with it.
        let waits_for_exec = c.line.is_some() && c.sock.is_some() && !c.acked;
        if c.gone && !waits_for_exec && (c.sock.is_none() || c.to_client.is_empty()) {
            if let Some(c) = self.clients.remove(&id) {
                if let Some(n) = c.line {
                    // Reused only once the guest read the session's EndAck (so `exec` had read
                    // its End): neither end of the line holds a byte of the session.
                    if c.line_freed {
                        self.free_lines.insert(n);
                    } else {
                        self.retire_line(n);
                    }
                }
            }
        }
    }

    /// Takes session line `n` out of use for good.
    fn retire_line(&mut self, n: u8) {
        self.free_lines.remove(&n);
        let Some(fd) = self.lines.get_mut(n as usize).and_then(Option::take) else {
            return;
        };
        // Reading shut on the socket, not just this descriptor: an `exec` that still holds it
        // reads its end, and the relay's writes fail, so neither waits for the other. The
        // line is never closed while the kernel runs: an end of file on a console whose tty is
        // open makes UML hang the tty up from its interrupt handler, which can panic the
        // kernel ("scheduling from the idle thread", seen on 7.3).
        let _ = rustix::net::shutdown(&fd, rustix::net::Shutdown::Read);
        self.retired.push(fd);
    }

    /// Stops session `id`, whose `exec` left before its end: a `Shutdown` that PID 1 passes
    /// to its relay, which kills the command (and, over a line, gives up waiting for an
    /// EndAck). Always on the channel, never on a session's line, where the dead `exec` may
    /// have left half a frame (its writes stop at the window, mid-frame) to swallow it.
    fn stop_session(&mut self, id: u32) {
        let mut frame = Vec::new();
        HostFrame::Shutdown.encode_into(&mut frame);
        self.chan.send(HostFrame::Session { id, frame: &frame });
    }

    /// Wraps each whole frame the client sent for the guest; a client that sends anything
    /// else is cut off. A client with a line of its own sends only its EndAck here.
    fn forward_from_client(&mut self, id: u32) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        let mut pos = 0;
        let mut bad = false;
        loop {
            let parsed = HostFrame::parse(&c.from_client[pos..]);
            if c.lined {
                match parsed {
                    Ok(Some((HostFrame::EndAck, used))) => {
                        c.acked = true;
                        pos += used;
                        continue;
                    }
                    Ok(None) => break,
                    _ => {
                        bad = true;
                        break;
                    }
                }
            }
            match parsed {
                Ok(Some((HostFrame::Exec { .. } | HostFrame::Session { .. }, _))) | Err(_) => {
                    bad = true;
                    break;
                }
                Ok(Some((_, used))) => {
                    self.chan.send(HostFrame::Session {
                        id,
                        frame: &c.from_client[pos..pos + used],
                    });
                    pos += used;
                }
                Ok(None) => break,
            }
        }
        c.from_client.drain(..pos);
        if bad {
            c.sock = None;
            c.from_client.clear();
            c.to_client.clear();
            if let Some(n) = c.line.take() {
                self.retire_line(n);
            }
            self.stop_session(id);
        }
    }
}

/// Once `start` has returned, the daemon writes nowhere the user sees: its stdio goes to
/// /dev/null, so a `$(sekexe start)` or a CI step's pipe is not held open.
fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..=2 {
            // SAFETY: dup2 onto the standard descriptors, which this process owns; `null`
            // stays open for the call.
            unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd) };
        }
    }
}
