//! A warm guest (`sekexe start`): once set up, PID 1 serves `sekexe exec` sessions until the
//! launcher stops it.
//!
//! PID 1 multiplexes the one channel: each session's frames travel wrapped in `Session{id}`
//! frames. A session is a child of PID 1 with a socket pair to it; the child reads its request
//! from the exchange folder, starts the command and relays it exactly as a run's guest-init
//! does (`relay::run_session`), speaking the run's frames over the socket pair to its own
//! `sekexe exec`. PID 1 only moves whole frames between the channel and the sessions, reaps
//! every orphan, and on `Shutdown` stops what runs and powers off.
//!
//! A session may instead have a line of its own (a UML console, [`SESSION_LINES`] of them):
//! its relay then speaks over that line directly, and its `sekexe exec` reads the line's
//! host end, which the guest's launcher handed it; PID 1 only starts and reaps the relay, and
//! passes on the launcher's word that the session's `exec` left (a `Session{id}` frame, on
//! the relay's socket pair: never on the line, where the dead `exec` may have left half a
//! frame).
//! That spares the guest the hop through PID 1 and the host the hop through the launcher:
//! an exec's output takes a run's path. PID 1 keeps every line open for the guest's life, and
//! says a line is free (`LineFree`) once it is opened and after each session over it whose
//! relay read its `EndAck`: then neither end holds a byte of the session. A line whose
//! session ended otherwise is never used again.
//!
//! A fork of PID 1 costs a few milliseconds under UML (a host process to create and fill), as
//! much as the rest of a short `exec`. So PID 1 forks each relay ahead of need, while the guest
//! is idle: a spare that waits for the id of the session it will serve.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::net::{AddressFamily, SocketFlags, SocketType};
use sekexe_wire::frame::{HEADER_LEN, MAX_PAYLOAD};
use sekexe_wire::names::{session_line_tty, SESSION_LINES};
use sekexe_wire::status::Timeline;
use sekexe_wire::{GuestFrame, HostFrame, Outcome, Status};

use crate::channel::Channel;
use crate::exchange::Exchange;
use crate::log::{console, Log};
use crate::{clock, mounts, reaper, relay, report, spawn};

/// Stop reading sessions while this much waits for the channel.
const CHANNEL_HIGH_WATER: usize = 4 * MAX_PAYLOAD;
/// After a spare relay could not be forked, how long before the next try.
const SPARE_RETRY: Duration = Duration::from_secs(1);
/// After `Shutdown`, how long the commands have between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// PID 1's end of one session.
struct Session {
    relay: Pid,
    /// The socket pair to the session's relay; none once it closed.
    sock: Option<OwnedFd>,
    /// Frames for the relay not yet written.
    to_relay: Vec<u8>,
    /// Bytes from the relay, not yet a whole frame.
    from_relay: Vec<u8>,
    /// The session's own line, if it has one.
    line: Option<u8>,
}

/// A relay forked ahead of need, waiting on its socket pair for its session's id.
struct Spare {
    relay: Pid,
    sock: OwnedFd,
}

struct Mux {
    sessions: BTreeMap<u32, Session>,
    spare: Option<Spare>,
    /// When forking a spare last failed (out of memory or processes).
    spare_failed: Option<Instant>,
    /// Where relays' bytes are read into: one buffer for the guest's life, not one per read.
    buf: Vec<u8>,
    /// `Shutdown` came: when the survivors get SIGKILL.
    stopping: Option<Instant>,
    /// The session lines, by number; none where it could not be opened.
    lines: Vec<Option<OwnedFd>>,
    /// Lines whose session ended without its EndAck: never used again, but kept open (the
    /// launcher keeps its end open too: see its `retire_line`).
    retired: Vec<bool>,
}

/// Serves sessions until the launcher stops the guest or goes away; then powers off.
pub fn run(channel: &mut Channel, signals: &SignalFd, exchange: &Exchange, log: &mut Log) -> ! {
    let mut mux = Mux {
        sessions: BTreeMap::new(),
        spare: None,
        spare_failed: None,
        buf: vec![0u8; MAX_PAYLOAD + 16],
        stopping: None,
        lines: open_lines(log),
        retired: vec![false; usize::from(SESSION_LINES)],
    };
    for (n, line) in mux.lines.iter().enumerate() {
        if line.is_some() {
            channel.send(GuestFrame::LineFree(n as u8));
        }
    }
    log.step("serving sessions");
    channel.send(GuestFrame::Started);
    loop {
        log.flush(channel);
        if channel.is_closed() {
            console("the launcher is gone: stopping the warm guest");
            break;
        }
        if let Some(at) = mux.stopping {
            if mux.sessions.is_empty() || Instant::now() >= at {
                break;
            }
        }
        // The guest is idle (no session, nothing to write): the time to fork the next relay.
        // (Not as soon as every command has ended: forking while relays exit made execs in a
        // row slower, not faster.)
        if mux.sessions.is_empty() && channel.pending() == 0 {
            mux.prepare_spare(channel, signals, exchange, log);
        }
        mux.poll_once(channel, signals, exchange, log);
    }
    // Closing its socket pair ends the spare at once (it blocks SIGTERM, as PID 1 does).
    mux.spare = None;
    reaper::terminate_leftovers(signals);
    log.flush(channel);
    nix::unistd::sync();
    channel.send(GuestFrame::End);
    channel.end_handshake(Some(report::END_ACK_WAIT), None);
    report::power_off()
}

impl Mux {
    /// Forks a spare relay, unless there is one or the guest is stopping.
    fn prepare_spare(
        &mut self,
        channel: &Channel,
        signals: &SignalFd,
        exchange: &Exchange,
        log: &mut Log,
    ) {
        let failed_lately = self
            .spare_failed
            .is_some_and(|at| at.elapsed() < SPARE_RETRY);
        if self.spare.is_some() || self.stopping.is_some() || failed_lately {
            return;
        }
        match fork_relay(channel, signals, exchange, &self.sessions, &self.lines) {
            Ok(spare) => self.spare = Some(spare),
            Err(e) => {
                // Sessions fork their own relay meanwhile; no loop of failing forks.
                self.spare_failed = Some(Instant::now());
                log.error(&format!("forking a relay: {e:#}"));
            }
        }
    }

    fn poll_once(
        &mut self,
        channel: &mut Channel,
        signals: &SignalFd,
        exchange: &Exchange,
        log: &mut Log,
    ) {
        let read_sessions = channel.pending() < CHANNEL_HIGH_WATER;
        let mut chan_events = PollFlags::IN;
        if channel.pending() > 0 {
            chan_events |= PollFlags::OUT;
        }
        let (chan_ready, sig_ready, ready_ids) = {
            let mut fds = vec![
                PollFd::from_borrowed_fd(channel.fd(), chan_events),
                PollFd::new(signals, PollFlags::IN),
            ];
            let mut ids = Vec::new();
            for (id, s) in &self.sessions {
                let Some(sock) = &s.sock else { continue };
                let mut events = PollFlags::empty();
                if read_sessions {
                    events |= PollFlags::IN;
                }
                if !s.to_relay.is_empty() {
                    events |= PollFlags::OUT;
                }
                if !events.is_empty() {
                    ids.push(*id);
                    fds.push(PollFd::new(sock, events));
                }
            }
            let timeout = self.stopping.and_then(|at| {
                Timespec::try_from(at.saturating_duration_since(Instant::now())).ok()
            });
            match rustix::event::poll(&mut fds, timeout.as_ref()) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    log.error(&format!("poll: {e}"));
                    return;
                }
            }
            let ready: Vec<u32> = ids
                .iter()
                .zip(&fds[2..])
                .filter(|(_, f)| !f.revents().is_empty())
                .map(|(id, _)| *id)
                .collect();
            (
                !fds[0].revents().is_empty(),
                !fds[1].revents().is_empty(),
                ready,
            )
        };
        if chan_ready {
            channel.flush_some();
            channel.read_some();
            self.handle_frames(channel, signals, exchange, log);
        }
        for id in ready_ids {
            self.pump(id, channel);
        }
        if sig_ready {
            let _ = crate::signals::drain(signals);
            self.reap(channel);
        }
    }

    fn handle_frames(
        &mut self,
        channel: &mut Channel,
        signals: &SignalFd,
        exchange: &Exchange,
        log: &mut Log,
    ) {
        let mut stop = false;
        let stopping = self.stopping.is_some();
        let sessions = &mut self.sessions;
        let spare = &mut self.spare;
        let lines = &self.lines;
        let retired = &self.retired;
        // In order: a session's first frames may come in the same read as its Exec.
        let result = channel.drain_frames(|channel, frame| match frame {
            HostFrame::Exec { id, line } => {
                // A line the guest does not have, or one in use, is the launcher's mistake.
                let line_ok = line.is_none_or(|n| {
                    lines[n as usize].is_some()
                        && !retired[n as usize]
                        && sessions.values().all(|s| s.line != line)
                });
                if stopping || sessions.contains_key(&id) || !line_ok {
                    channel.send(GuestFrame::SessionGone(id));
                    return;
                }
                match start(id, line, spare, sessions, channel, signals, exchange, lines) {
                    Ok(session) => {
                        log.step(&format!("session {id} started"));
                        sessions.insert(id, session);
                    }
                    Err(e) => {
                        log.error(&format!("session {id}: {e:#}"));
                        channel.send(GuestFrame::SessionGone(id));
                    }
                }
            }
            HostFrame::Session { id, frame } => {
                if let Some(s) = sessions.get_mut(&id) {
                    if s.sock.is_some() {
                        s.to_relay.extend_from_slice(frame);
                    }
                }
            }
            HostFrame::Shutdown => stop = true,
            // The launcher forwards signals per session; the rest concern a run.
            _ => {}
        });
        if let Err(e) = result {
            log.error(&format!("bad frame from the launcher ({e}); stopping"));
            stop = true;
        }
        for id in self.sessions.keys().copied().collect::<Vec<_>>() {
            self.pump(id, channel);
        }
        if stop && self.stopping.is_none() {
            log.step("the launcher stops the guest: SIGTERM to every process");
            reaper::signal_all(Signal::SIGTERM);
            self.stopping = Some(Instant::now() + STOP_GRACE);
        }
    }

    /// Moves what is ready between session `id`'s relay and the channel; `all` reads the
    /// relay's socket to its end, however much waits for the channel (a relay that ended).
    fn pump(&mut self, id: u32, channel: &mut Channel) {
        self.pump_some(id, channel, false)
    }

    fn pump_some(&mut self, id: u32, channel: &mut Channel, all: bool) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let Some(sock) = &s.sock else { return };
        while !s.to_relay.is_empty() {
            match rustix::io::write(sock, &s.to_relay) {
                Ok(n) => {
                    s.to_relay.drain(..n);
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => break,
                Err(_) => {
                    s.to_relay.clear();
                    break;
                }
            }
        }
        let buf = &mut self.buf;
        let mut closed = false;
        while all || channel.pending() < CHANNEL_HIGH_WATER {
            match rustix::io::read(sock, &mut buf[..]) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => s.from_relay.extend_from_slice(&buf[..n]),
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => break,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
            forward_frames(id, &mut s.from_relay, channel, &mut closed);
        }
        forward_frames(id, &mut s.from_relay, channel, &mut closed);
        if closed {
            s.sock = None;
            s.to_relay.clear();
        }
    }

    /// Reaps every child that ended: a session's relay ends its session; any other is an
    /// orphan a command left.
    fn reap(&mut self, channel: &mut Channel) {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(status) => {
                    let Some(pid) = status.pid() else { break };
                    if self.spare.as_ref().is_some_and(|s| s.relay == pid) {
                        // Killed from inside the guest: the next idle moment forks another.
                        self.spare = None;
                        continue;
                    }
                    let id = self
                        .sessions
                        .iter()
                        .find(|(_, s)| s.relay == pid)
                        .map(|(id, _)| *id);
                    if let Some(id) = id {
                        // Whatever it wrote before it went goes first, all of it.
                        self.pump_some(id, channel, true);
                        let session = self.sessions.remove(&id);
                        if let Some(n) = session.and_then(|s| s.line) {
                            // Only a relay that read its EndAck exits 0.
                            if status == WaitStatus::Exited(pid, 0) {
                                channel.send(GuestFrame::LineFree(n));
                            } else {
                                self.retired[n as usize] = true;
                            }
                        }
                        channel.send(GuestFrame::SessionGone(id));
                    }
                }
            }
        }
    }
}

/// Wraps each whole frame in `buf` for the channel; a relay that sends something else is cut
/// off (`closed`).
fn forward_frames(id: u32, buf: &mut Vec<u8>, channel: &mut Channel, closed: &mut bool) {
    let mut pos = 0;
    loop {
        match GuestFrame::parse(&buf[pos..]) {
            // A relay speaks a run's frames, never a warm guest's own.
            Ok(Some((
                GuestFrame::Session { .. }
                | GuestFrame::SessionGone(_)
                | GuestFrame::Lost(_)
                | GuestFrame::LineFree(_),
                _,
            ))) => {
                *closed = true;
                break;
            }
            Ok(Some((_, used))) => {
                channel.send(GuestFrame::Session {
                    id,
                    frame: &buf[pos..pos + used],
                });
                pos += used;
            }
            Ok(None) => break,
            Err(_) => {
                *closed = true;
                break;
            }
        }
    }
    buf.drain(..pos);
}

/// Starts session `id` (over session line `line`, if given) in the spare relay, or in one
/// forked now if there is none (or it died).
#[allow(clippy::too_many_arguments)]
fn start(
    id: u32,
    line: Option<u8>,
    spare: &mut Option<Spare>,
    sessions: &BTreeMap<u32, Session>,
    channel: &Channel,
    signals: &SignalFd,
    exchange: &Exchange,
    lines: &[Option<OwnedFd>],
) -> anyhow::Result<Session> {
    use anyhow::Context;
    let mut last = None;
    for _ in 0..2 {
        let spare = match spare.take() {
            Some(spare) => spare,
            None => fork_relay(channel, signals, exchange, sessions, lines)?,
        };
        // The session's own Exec frame, a few bytes into an empty socket pair: never blocks,
        // never short.
        let mut handed = Vec::new();
        HostFrame::Exec { id, line }.encode_into(&mut handed);
        match rustix::net::send(&spare.sock, &handed, rustix::net::SendFlags::NOSIGNAL) {
            Ok(n) if n == handed.len() => {
                return Ok(Session {
                    relay: spare.relay,
                    sock: Some(spare.sock),
                    to_relay: Vec::new(),
                    from_relay: Vec::new(),
                    line,
                })
            }
            Ok(_) => last = Some(anyhow::anyhow!("short write")),
            // A spare killed from inside the guest (EPIPE): its exit is reaped as an orphan's,
            // and a relay forked now takes the session.
            Err(e) => last = Some(anyhow::Error::new(e)),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no relay")))
        .context("handing a session to its relay")
}

/// Opens the session lines, raw; one that cannot be opened is left out (its sessions go
/// through PID 1).
fn open_lines(log: &mut Log) -> Vec<Option<OwnedFd>> {
    (0..SESSION_LINES)
        .map(
            |n| match crate::channel::open_raw_tty(&session_line_tty(n)) {
                Ok(fd) => Some(fd),
                Err(e) => {
                    log.error(&format!("session line {n}: {e:#}"));
                    None
                }
            },
        )
        .collect()
}

/// Forks a relay that waits for its session's id, then serves that session.
fn fork_relay(
    channel: &Channel,
    signals: &SignalFd,
    exchange: &Exchange,
    sessions: &BTreeMap<u32, Session>,
    lines: &[Option<OwnedFd>],
) -> anyhow::Result<Spare> {
    use anyhow::Context;
    let (ours, theirs) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
    .context("socketpair")?;
    // SAFETY: guest-init is single-threaded, so the child may go on running Rust code.
    match unsafe { nix::unistd::fork() }.context("fork")? {
        nix::unistd::ForkResult::Parent { child } => Ok(Spare {
            relay: child,
            sock: ours,
        }),
        nix::unistd::ForkResult::Child => {
            // The channel and the other sessions are PID 1's alone.
            close_pid1_fds(channel, sessions);
            drop(ours);
            let Some((id, handed_line)) = wait_for_exec(&theirs) else {
                // PID 1 closed its end: the guest is stopping.
                std::process::exit(0)
            };
            // Its own line, if any, and no other: a stray write there would corrupt another
            // session's stream.
            let line = handed_line.and_then(|n| {
                let fd = lines.get(n as usize)?.as_ref()?;
                rustix::io::fcntl_dupfd_cloexec(fd, 0).ok()
            });
            close_lines(lines);
            if handed_line.is_some() && line.is_none() {
                std::process::exit(1)
            }
            session_main(id, theirs, line, signals, &exchange.for_session(id))
        }
    }
}

/// The session and line of the `Exec` frame PID 1 hands a spare relay, read to its last byte
/// and no further (the session's own frames may follow); none once PID 1 closed its end.
fn wait_for_exec(sock: &OwnedFd) -> Option<(u32, Option<u8>)> {
    let mut frame = vec![0u8; HEADER_LEN];
    read_exactly(sock, &mut frame)?;
    let len = u32::from_le_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
    // An id and a line at most.
    if len > 5 {
        return None;
    }
    frame.resize(HEADER_LEN + len, 0);
    read_exactly(sock, &mut frame[HEADER_LEN..])?;
    match HostFrame::parse(&frame) {
        Ok(Some((HostFrame::Exec { id, line }, _))) => Some((id, line)),
        _ => None,
    }
}

/// Fills `b` from `sock`, waiting as long as it takes; none once the other end closed.
fn read_exactly(sock: &OwnedFd, b: &mut [u8]) -> Option<()> {
    let mut got = 0;
    while got < b.len() {
        let mut fds = [PollFd::new(sock, PollFlags::IN)];
        match rustix::event::poll(&mut fds, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => return None,
        }
        match rustix::io::read(sock, &mut b[got..]) {
            Ok(0) => return None,
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
            Err(_) => return None,
        }
    }
    Some(())
}

/// Closes, in a relay, PID 1's copies of the session lines.
fn close_lines(lines: &[Option<OwnedFd>]) {
    for fd in lines.iter().flatten() {
        // SAFETY: as in `close_pid1_fds`: the child never uses or drops PID 1's values.
        unsafe { libc::close(fd.as_raw_fd()) };
    }
}

/// Closes in the session's relay what belongs to PID 1: a stray write there would corrupt
/// the channel or another session's stream.
fn close_pid1_fds(channel: &Channel, others: &BTreeMap<u32, Session>) {
    let mut fds = vec![channel.fd().as_raw_fd()];
    fds.extend(
        others
            .values()
            .filter_map(|s| s.sock.as_ref().map(|f| f.as_fd().as_raw_fd())),
    );
    for fd in fds {
        // SAFETY: the child has its own copies of these descriptors and never uses them again:
        // the values that own them in PID 1's structures are never used or dropped here (the
        // child ends in process::exit).
        unsafe { libc::close(fd) };
    }
}

/// The session's relay: the command of request `exec-<id>`, relayed like a run's over its
/// `line`, or else over `sock` to PID 1. Over a line it exits 0 only once its `EndAck` came
/// (the line holds nothing of the session then, and PID 1 may hand it to the next).
fn session_main(
    id: u32,
    sock: OwnedFd,
    line: Option<OwnedFd>,
    signals: &SignalFd,
    exchange: &Exchange,
) -> ! {
    let lined = line.is_some();
    // Over a line, the socket pair carries only PID 1's word that the session's `exec` left.
    let (mut channel, mut abandon) = match line {
        Some(line) => (Channel::over(line), Some(sock)),
        None => (Channel::over(sock), None),
    };
    let mut abandoned = false;
    report::set_session(&channel);
    let mut log = Log::new();
    let mut timeline = Timeline {
        init_ns: clock::boottime_ns(),
        ..Timeline::default()
    };
    // A session of its own: a command's setsid or a terminal's hangup stays within it.
    let _ = nix::unistd::setsid();
    let outcome = match exchange.read_exec_request(id) {
        Err(e) => Outcome::GuestFailed {
            message: format!("reading the exec request: {e:#}"),
        },
        Ok(request) => {
            log.set_debug(request.debug);
            // The caller's folder, as a run shows it: in a folder the guest covers with its own
            // tmpfs, the host's folder is shown there (once: later sessions find it).
            let cwd = std::path::Path::new(std::ffi::OsStr::from_bytes(&request.cwd));
            let shown = if cwd.is_dir() {
                Ok(())
            } else {
                mounts::keep_cwd_visible(&request.cwd, &request.volumes, &mut log)
            };
            match shown
                .map_err(|e| Outcome::GuestFailed {
                    message: format!("{e:#}"),
                })
                .and_then(|()| spawn::command(&request, &mut log))
            {
                Ok(command) => {
                    timeline.exec_ns = clock::boottime_ns();
                    channel.send(GuestFrame::Started);
                    let end = relay::run_session(
                        &mut channel,
                        signals,
                        exchange,
                        command,
                        abandon.take(),
                        &mut log,
                    );
                    abandon = end.abandon;
                    abandoned = end.abandoned;
                    timeline.exit_ns = clock::boottime_ns();
                    end.outcome
                }
                Err(outcome) => outcome,
            }
        }
    };
    log.flush(&mut channel);
    timeline.report_ns = clock::boottime_ns();
    let status = Status {
        outcome,
        timeline,
        lpj: 0,
    };
    // No sync here (it costs a quarter of a short exec): hostfs writes through to the host
    // at each write, so what the command wrote to a volume is there already; block devices
    // (the overlay image, --disk) are synced when the guest stops, before the host reads
    // them. (A shared mapping's dirty pages still wait for writeback, as on the host.)
    channel.send(GuestFrame::Status(&status.encode()));
    channel.send(GuestFrame::End);
    // Over a line, as long as it takes: `exec` may be slow to read, and the line is clean only
    // once the ack is read; but not once PID 1 said its `exec` left.
    let acked = !abandoned
        && channel.end_handshake(
            (!lined).then_some(report::END_ACK_WAIT),
            abandon.as_ref().map(|f| f.as_fd()),
        );
    std::process::exit(if acked || !lined { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spare_reads_its_exec_and_not_a_byte_of_what_follows() {
        for (id, line) in [(7, None), (u32::MAX, Some(0)), (1, Some(SESSION_LINES - 1))] {
            let (pid1, relay) = rustix::net::socketpair(
                AddressFamily::UNIX,
                SocketType::STREAM,
                SocketFlags::CLOEXEC,
                None,
            )
            .unwrap();
            let mut wire = Vec::new();
            HostFrame::Exec { id, line }.encode_into(&mut wire);
            HostFrame::StdinEof.encode_into(&mut wire);
            assert_eq!(rustix::io::write(&pid1, &wire), Ok(wire.len()));
            assert_eq!(wait_for_exec(&relay), Some((id, line)));
            let mut rest = [0u8; 64];
            let n = rustix::io::read(&relay, &mut rest).unwrap();
            let mut eof = Vec::new();
            HostFrame::StdinEof.encode_into(&mut eof);
            assert_eq!(&rest[..n], &eof[..]);
            // Another frame, or nothing, is no session.
            assert_eq!(rustix::io::write(&pid1, &eof), Ok(eof.len()));
            assert_eq!(wait_for_exec(&relay), None);
            drop(pid1);
            assert_eq!(wait_for_exec(&relay), None);
        }
    }
}
