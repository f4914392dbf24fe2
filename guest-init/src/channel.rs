//! The framed channel to the launcher: UML console `con1`, a raw tty in the guest (or a warm
//! guest's session line, `con2` on, or a session's socket pair to PID 1).
//!
//! Writes are buffered and non-blocking, so a slow host never stalls guest-init's other duties
//! (reaping, signals); the relay stops reading the command's output while too much is queued.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rustix::buffer::spare_capacity;
use rustix::fs::{Mode, OFlags};
use rustix::termios::{self, OptionalActions};
use sekexe_wire::names::CHANNEL_TTY;
use sekexe_wire::queue::ByteQueue;
use sekexe_wire::{FrameError, GuestFrame, HostFrame};

/// Room made for each read from the tty (n_tty hands out at most 4 KiB per read anyway).
const READ_CHUNK: usize = 64 * 1024;

pub struct Channel {
    fd: OwnedFd,
    out: ByteQueue,
    inbuf: Vec<u8>,
    /// The host end is gone (EOF or EIO on read, EIO on write).
    closed: bool,
    /// `End` is sent: nothing may follow it, not even a credit (a session line must hold
    /// nothing of its session once the launcher has read `End`).
    ended: bool,
}

impl Channel {
    pub fn open() -> Result<Channel> {
        Ok(Channel {
            fd: open_raw_tty(CHANNEL_TTY)?,
            out: ByteQueue::with_capacity(READ_CHUNK * 2),
            inbuf: Vec::with_capacity(READ_CHUNK),
            closed: false,
            ended: false,
        })
    }

    /// A channel over any non-blocking stream: a warm guest session's line (a tty made raw by
    /// [`open_raw_tty`]) or socket pair to PID 1, a socket pair in tests.
    pub(crate) fn over(fd: OwnedFd) -> Channel {
        Channel {
            fd,
            out: ByteQueue::default(),
            inbuf: Vec::new(),
            closed: false,
            ended: false,
        }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Queues a frame and writes what the tty takes now.
    pub fn send(&mut self, frame: GuestFrame<'_>) {
        if self.closed || self.ended {
            return;
        }
        self.ended = frame == GuestFrame::End;
        self.out.append_with(|v| frame.encode_into(v));
        self.flush_some();
    }

    /// Bytes queued but not yet taken by the tty.
    pub fn pending(&self) -> usize {
        self.out.len()
    }

    /// Writes as much of the queue as the tty takes without blocking.
    pub fn flush_some(&mut self) {
        while self.pending() > 0 && !self.closed {
            match rustix::io::write(&self.fd, self.out.unsent()) {
                Ok(n) => self.out.advance(n),
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => break,
                Err(_) => {
                    self.closed = true;
                    self.out.clear();
                }
            }
        }
    }

    /// Reads what the tty has, and returns the launcher that much credit; marks the channel
    /// closed when the host end is gone.
    pub fn read_some(&mut self) {
        loop {
            // Straight into the input's spare room: no buffer to zero and copy from per read.
            self.inbuf.reserve(READ_CHUNK);
            match rustix::io::read(&self.fd, spare_capacity(&mut self.inbuf)) {
                Ok(0) => {
                    self.closed = true;
                    return;
                }
                Ok(n) => {
                    self.send(GuestFrame::ChannelCredit(n as u32));
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => return,
                Err(_) => {
                    self.closed = true;
                    return;
                }
            }
        }
    }

    /// Hands every complete frame received so far to `handle`.
    pub fn drain_frames(
        &mut self,
        mut handle: impl FnMut(&mut Channel, HostFrame<'_>),
    ) -> Result<(), FrameError> {
        self.drain_frames_while(|c, f| {
            handle(c, f);
            true
        })
    }

    /// Hands complete frames to `handle` until it returns false; the rest stay queued.
    fn drain_frames_while(
        &mut self,
        mut handle: impl FnMut(&mut Channel, HostFrame<'_>) -> bool,
    ) -> Result<(), FrameError> {
        let buf = std::mem::take(&mut self.inbuf);
        let mut pos = 0;
        let result = loop {
            match HostFrame::parse(&buf[pos..]) {
                Ok(Some((frame, used))) => {
                    pos += used;
                    if !handle(self, frame) {
                        break Ok(());
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        // Whatever arrived meanwhile (nothing: handlers do not read) goes after the rest.
        let mut rest = buf;
        rest.drain(..pos);
        rest.extend_from_slice(&self.inbuf);
        self.inbuf = rest;
        result
    }

    /// Waits for `NetReady`. The launcher sends nothing else before it but signals (ignored:
    /// there is no command yet), nudges (ignored) or a shutdown (an error here).
    pub fn wait_for_net_ready(&mut self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let mut ready = false;
            let mut stop = false;
            let mut other = None;
            // Up to NetReady only: what follows it (stdin) is the command's.
            self.drain_frames_while(|_, f| match f {
                HostFrame::NetReady => {
                    ready = true;
                    false
                }
                HostFrame::Shutdown => {
                    stop = true;
                    false
                }
                HostFrame::Signal(_) | HostFrame::Nudge => true,
                f => {
                    other = Some(format!("{f:?}"));
                    false
                }
            })
            .map_err(|e| anyhow::anyhow!("bad frame: {e}"))?;
            if stop {
                anyhow::bail!("the launcher stopped the run");
            }
            if let Some(f) = other {
                anyhow::bail!("unexpected frame from the launcher: {f}");
            }
            if ready {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline || self.closed {
                anyhow::bail!("no word from the launcher within {} s", limit.as_secs());
            }
            let mut events = rustix::event::PollFlags::IN;
            if self.pending() > 0 {
                events |= rustix::event::PollFlags::OUT;
            }
            let mut fds = [rustix::event::PollFd::new(&self.fd, events)];
            let left = deadline - now;
            // A timeout too large for a timespec waits for ever.
            let ts = rustix::event::Timespec::try_from(left).ok();
            let _ = rustix::event::poll(&mut fds, ts.as_ref());
            self.flush_some();
            self.read_some();
        }
    }

    /// Flushes the queue and waits for the launcher's `EndAck`, up to `limit` (none: until
    /// it comes or the launcher's end closes), and only while nothing comes on `abandon` (a
    /// session's word from PID 1 that its `exec` left); whether it came.
    pub fn end_handshake(
        &mut self,
        limit: Option<Duration>,
        abandon: Option<BorrowedFd<'_>>,
    ) -> bool {
        let deadline = limit.map(|l| Instant::now() + l);
        let mut acked = false;
        while !acked && !self.closed {
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                break;
            }
            let mut events = rustix::event::PollFlags::IN;
            if self.pending() > 0 {
                events |= rustix::event::PollFlags::OUT;
            }
            let mut fds = vec![rustix::event::PollFd::new(&self.fd, events)];
            if let Some(fd) = abandon {
                fds.push(rustix::event::PollFd::from_borrowed_fd(
                    fd,
                    rustix::event::PollFlags::IN,
                ));
            }
            let ts = deadline.and_then(|d| rustix::event::Timespec::try_from(d - now).ok());
            match rustix::event::poll(&mut fds, ts.as_ref()) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(_) => break,
            }
            if fds.get(1).is_some_and(|f| !f.revents().is_empty()) {
                break;
            }
            self.flush_some();
            self.read_some();
            if self
                .drain_frames(|_, f| acked |= f == HostFrame::EndAck)
                .is_err()
            {
                break;
            }
        }
        acked
    }
}

/// Opens a console's tty in the guest as a channel needs it: raw, non-blocking, and no
/// longer in /dev (nobody else may open it and steal or inject bytes).
pub fn open_raw_tty(path: &str) -> Result<OwnedFd> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDWR | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("open {path}"))?;
    let _ = std::fs::remove_file(path);
    // Raw: no echo, no line editing, no CR/LF translation, no flow control, no signals.
    // Every byte reaches the other side as it was sent.
    let mut t = termios::tcgetattr(&fd).with_context(|| format!("tcgetattr {path}"))?;
    t.make_raw();
    termios::tcsetattr(&fd, OptionalActions::Now, &t)
        .with_context(|| format!("tcsetattr {path}"))?;
    Ok(fd)
}

/// For reports written when no `Channel` value is at hand (the panic hook): a best-effort,
/// blocking write of one frame to the console device.
pub fn write_frame_raw(fd: BorrowedFd<'_>, frame: GuestFrame<'_>) -> io::Result<()> {
    let mut buf = Vec::new();
    frame.encode_into(&mut buf);
    let mut rest = &buf[..];
    let deadline = Instant::now() + Duration::from_millis(500);
    while !rest.is_empty() && Instant::now() < deadline {
        match rustix::io::write(fd, rest) {
            Ok(n) => rest = &rest[n..],
            Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rustix::net::{AddressFamily, SocketFlags, SocketType};

    /// guest-init's channel, and the launcher's end of it (relay.rs's tests use it too).
    pub(crate) fn pair() -> (Channel, OwnedFd) {
        let (guest, host) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )
        .unwrap();
        (Channel::over(guest), host)
    }

    fn host_sends(host: &OwnedFd, frames: &[HostFrame<'_>]) {
        let mut bytes = Vec::new();
        for f in frames {
            f.encode_into(&mut bytes);
        }
        rustix::io::write(host, &bytes).unwrap();
    }

    /// The guest frames the launcher has received.
    fn host_reads(host: &OwnedFd) -> Vec<String> {
        let mut bytes = Vec::new();
        let mut buf = [0u8; 65536];
        while let Ok(n) = rustix::io::read(host, &mut buf) {
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&buf[..n]);
        }
        let mut frames = Vec::new();
        let mut pos = 0;
        while let Ok(Some((f, used))) = GuestFrame::parse(&bytes[pos..]) {
            frames.push(format!("{f:?}"));
            pos += used;
        }
        frames
    }

    #[test]
    fn every_byte_read_is_credited_back_and_frames_are_put_back_together() {
        let (mut c, host) = pair();
        let mut bytes = Vec::new();
        HostFrame::Stdin(b"hello").encode_into(&mut bytes);
        HostFrame::StdinEof.encode_into(&mut bytes);
        let mut seen = Vec::new();
        // In two pieces, the cut inside the first frame.
        for piece in [&bytes[..3], &bytes[3..]] {
            rustix::io::write(&host, piece).unwrap();
            c.read_some();
            c.drain_frames(|_, f| seen.push(format!("{f:?}"))).unwrap();
        }
        assert_eq!(seen, ["Stdin([104, 101, 108, 108, 111])", "StdinEof"]);
        assert_eq!(
            host_reads(&host),
            [
                "ChannelCredit(3)",
                &format!("ChannelCredit({})", bytes.len() - 3)
            ]
        );
    }

    #[test]
    fn net_ready_is_waited_for_and_what_follows_stays_for_the_command() {
        let (mut c, host) = pair();
        host_sends(
            &host,
            &[
                HostFrame::Signal(15),
                HostFrame::Nudge,
                HostFrame::NetReady,
                HostFrame::Stdin(b"x"),
            ],
        );
        c.wait_for_net_ready(Duration::from_secs(5)).unwrap();
        let mut rest = Vec::new();
        c.drain_frames(|_, f| rest.push(format!("{f:?}"))).unwrap();
        assert_eq!(rest, ["Stdin([120])"]);
    }

    #[test]
    fn a_shutdown_or_silence_instead_of_net_ready_is_an_error() {
        let (mut c, host) = pair();
        host_sends(&host, &[HostFrame::Shutdown]);
        let e = c.wait_for_net_ready(Duration::from_secs(5)).unwrap_err();
        assert!(e.to_string().contains("stopped"), "{e}");
        let (mut c, _host) = pair();
        let e = c.wait_for_net_ready(Duration::from_millis(50)).unwrap_err();
        assert!(e.to_string().contains("no word"), "{e}");
    }

    #[test]
    fn the_end_handshake_returns_on_the_ack_or_at_the_limit() {
        let (mut c, host) = pair();
        c.send(GuestFrame::End);
        host_sends(&host, &[HostFrame::Nudge, HostFrame::EndAck]);
        let started = Instant::now();
        assert!(c.end_handshake(Some(Duration::from_secs(5)), None));
        assert!(started.elapsed() < Duration::from_secs(2));
        // Nothing follows End, not even the credit for the ack.
        assert_eq!(host_reads(&host), ["End"]);
        let (mut c, _host) = pair();
        let started = Instant::now();
        assert!(!c.end_handshake(Some(Duration::from_millis(100)), None));
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[test]
    fn the_end_handshake_gives_up_at_a_word_on_its_abandon_descriptor() {
        let (mut c, _host) = pair();
        let (pid1, relay_side) = pair();
        c.send(GuestFrame::End);
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            let mut pid1 = pid1;
            pid1.send(GuestFrame::End);
            pid1
        });
        let started = Instant::now();
        // Well before the limit: the word, not the limit, ended the wait (a bound this loose
        // is no timing claim; it only tells the two apart on a busy machine).
        let limit = Duration::from_secs(60);
        assert!(!c.end_handshake(Some(limit), Some(relay_side.as_fd())));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(100) && took < limit / 2,
            "{took:?}"
        );
        sender.join().unwrap();
    }

    #[test]
    fn without_a_limit_the_end_handshake_waits_until_the_host_end_closes() {
        let (mut c, host) = pair();
        c.send(GuestFrame::End);
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(host);
        });
        let started = Instant::now();
        assert!(!c.end_handshake(None, None));
        assert!(started.elapsed() >= Duration::from_millis(100));
        closer.join().unwrap();
    }

    #[test]
    fn a_host_end_that_goes_away_closes_the_channel_and_later_sends_are_dropped() {
        let (mut c, host) = pair();
        drop(host);
        c.read_some();
        assert!(c.is_closed());
        c.send(GuestFrame::Stdout(b"lost"));
        assert_eq!(c.pending(), 0);
    }
}
