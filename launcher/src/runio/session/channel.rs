//! The launcher's end of the framed channel: the mirror of guest-init's `channel`. Frames to
//! the guest are queued and written without blocking, never before the guest's `Hello` (its tty
//! is not raw until then and would echo them back) and never more than [`CHANNEL_WINDOW`] bytes
//! beyond what guest-init has credited as read (a nudge may go a little further, see
//! [`HostChannel::nudge_if_silent`], and so may the `EndAck`, see [`HostChannel::end_ack`]).
//! Bytes from the guest are gathered and cut into frames.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use rustix::buffer::spare_capacity;
use sekexe_wire::frame::{CHANNEL_WINDOW, HEADER_LEN, MAX_PAYLOAD, NUDGE_OVERDRAFT_MAX};
use sekexe_wire::queue::ByteQueue;
use sekexe_wire::{FrameError, GuestFrame, HostFrame};

/// Room made for each read from the guest.
const READ_MAX: usize = 4 * MAX_PAYLOAD;
/// After this long without a byte from the guest, the launcher sends it a `Nudge`.
pub const NUDGE_AFTER: Duration = Duration::from_millis(100);
/// A guest that answers nudges with their credit only is nudged less and less often, up to
/// this interval (a command that sleeps, a shell waiting for input).
const NUDGE_SLOWEST: Duration = Duration::from_secs(8);
/// What guest-init answers a nudge with (a `ChannelCredit`): a read of no more is no output.
const CREDIT_LEN: usize = HEADER_LEN + 4;
/// How far past what is in flight a nudge may write (a window full of unread bytes must not
/// keep the guest's credits, held with its output, from being freed), up to
/// [`NUDGE_OVERDRAFT_MAX`] past the window in all, within the guest tty's buffer.
const NUDGE_OVERDRAFT: usize = 16;
/// Once the guest has sent `End` it credits nothing more (a session line must hold nothing of
/// its session after the launcher has read `End`), so the rest of a frame begun and the
/// `EndAck` may go this far past the window, within the guest tty's buffer.
const END_OVERDRAFT_MAX: usize = 1536;
const _: () = assert!(CHANNEL_WINDOW + END_OVERDRAFT_MAX < 4096 - 128);

pub struct HostChannel {
    fd: OwnedFd,
    open: bool,
    /// The guest said Hello: writing may start.
    ready: bool,
    out: ByteQueue,
    /// Bytes written but not yet credited by guest-init.
    unacked: usize,
    input: Vec<u8>,
    /// When the guest last sent something, or was last nudged.
    last_heard: Instant,
    /// How long a silence is nudged after; none when the other end is no kernel's console
    /// (`sekexe exec`'s connection).
    nudge_after: Option<Duration>,
    /// Bytes a nudge may write past the window, until something is written.
    overdraft: usize,
    /// The length of each frame queued (the first one perhaps partly written).
    frame_lens: VecDeque<usize>,
    /// How much of the first queued frame is written.
    front_written: usize,
    /// `EndAck` is queued: nothing goes after it.
    acked_end: bool,
}

impl HostChannel {
    /// Wraps the launcher's end of the channel socket (non-blocking).
    pub fn new(fd: OwnedFd) -> HostChannel {
        HostChannel {
            fd,
            open: true,
            ready: false,
            out: ByteQueue::default(),
            unacked: 0,
            input: Vec::new(),
            last_heard: Instant::now(),
            nudge_after: Some(NUDGE_AFTER),
            overdraft: 0,
            frame_lens: VecDeque::new(),
            front_written: 0,
            acked_end: false,
        }
    }

    /// The other end is no UML console (`sekexe exec`'s connection): no nudges.
    pub fn never_nudge(&mut self) {
        self.nudge_after = None;
    }

    /// When a `Nudge` is due if the guest stays silent.
    pub fn next_nudge(&self) -> Option<Instant> {
        let after = self.nudge_after?;
        (self.ready && self.open).then(|| self.last_heard + after)
    }

    /// Nudges the guest if it has been silent long enough (see [`NUDGE_AFTER`]). UML's
    /// interrupt loop is edge-triggered and can miss the moment the host took the console's
    /// bytes; the guest's output then waits, its tty full, until the next event on the
    /// socket. A `run -- cat` of 64 MiB stalled so for good in 16 of 200 runs (the host's
    /// page cache dropped before each), and went on at the next byte from the host; with
    /// nudges after 500 ms, 24 runs of 200 were slowed by one, after 100 ms none. Bytes
    /// already queued are such an event: a nudge then only lets them past the window.
    pub fn nudge_if_silent(&mut self, now: Instant) {
        let (Some(at), Some(after)) = (self.next_nudge(), self.nudge_after) else {
            return;
        };
        if now < at {
            return;
        }
        if self.out.is_empty() {
            self.send(HostFrame::Nudge);
        }
        // Past what is already in flight: a second stall before a credit comes gets through too.
        self.overdraft = (self.unacked + NUDGE_OVERDRAFT)
            .saturating_sub(CHANNEL_WINDOW)
            .min(NUDGE_OVERDRAFT_MAX);
        self.last_heard = now;
        self.nudge_after = Some((after * 2).min(NUDGE_SLOWEST));
    }

    /// The most that may be written but not yet credited.
    fn limit(&self) -> usize {
        let past = if self.acked_end {
            self.overdraft.max(END_OVERDRAFT_MAX)
        } else {
            self.overdraft
        };
        CHANNEL_WINDOW + past
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    /// The guest's Hello arrived: queued frames may go out.
    pub fn set_ready(&mut self) {
        self.ready = true;
    }

    pub fn send(&mut self, frame: HostFrame<'_>) {
        if self.acked_end {
            return;
        }
        let before = self.out.len();
        self.out.append_with(|v| frame.encode_into(v));
        self.frame_lens.push_back(self.out.len() - before);
    }

    /// Answers the guest's `End`, and sends nothing after it: the guest reads up to its
    /// `EndAck` and no further, so what is queued and not begun is dropped (the session is
    /// over), and the rest of a frame begun goes out first, past the window if need be (the
    /// guest credits nothing after `End`).
    pub fn end_ack(&mut self) {
        if self.acked_end {
            return;
        }
        let begun = self.front_written > 0;
        let keep = self
            .frame_lens
            .front()
            .filter(|_| begun)
            .map_or(0, |len| len - self.front_written);
        self.out.truncate(keep);
        self.frame_lens.truncate(usize::from(begun));
        self.send(HostFrame::EndAck);
        self.acked_end = true;
    }

    /// `EndAck` is queued, and all of it written.
    pub fn end_acked(&self) -> bool {
        self.acked_end && self.out.is_empty()
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.out.len()
    }

    /// Whether a write could make progress now (for poll's OUT interest).
    pub fn wants_write(&self) -> bool {
        self.ready && self.open && !self.out.is_empty() && self.unacked < self.limit()
    }

    /// guest-init has read `n` more bytes.
    pub fn credit(&mut self, n: u32) {
        self.unacked = self.unacked.saturating_sub(n as usize);
    }

    /// Writes what the window allows, never blocking.
    pub fn flush(&mut self) {
        if !self.ready {
            return;
        }
        while !self.out.is_empty() && self.open && self.unacked < self.limit() {
            let room = (self.limit() - self.unacked).min(self.out.len());
            match rustix::io::write(&self.fd, &self.out.unsent()[..room]) {
                Ok(n) => {
                    self.out.advance(n);
                    self.unacked += n;
                    self.overdraft = 0;
                    self.front_written += n;
                    while let Some(&len) = self.frame_lens.front() {
                        if self.front_written < len {
                            break;
                        }
                        self.front_written -= len;
                        self.frame_lens.pop_front();
                    }
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => break,
                Err(_) => {
                    self.out.clear();
                    self.frame_lens.clear();
                    self.front_written = 0;
                    break;
                }
            }
        }
    }

    /// Reads once into the input; `true` when something arrived. One read per call, so that
    /// the caller handles frames (and their back-pressure) between reads, and the input stays
    /// within the room made for a read (twice [`READ_MAX`] at most) and a partial frame.
    pub fn read(&mut self) -> bool {
        while self.open {
            // Straight into the input's spare room: no buffer to zero, and no copy, per read.
            self.input.reserve(READ_MAX);
            match rustix::io::read(&self.fd, spare_capacity(&mut self.input)) {
                Ok(0) => self.open = false,
                Ok(n) => {
                    self.last_heard = Instant::now();
                    if n > CREDIT_LEN && self.nudge_after.is_some() {
                        self.nudge_after = Some(NUDGE_AFTER);
                    }
                    return true;
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => break,
                Err(_) => self.open = false,
            }
        }
        false
    }

    /// Takes the bytes read so far, to be cut with [`each_frame`].
    pub fn take_input(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.input)
    }

    /// Gives back what [`take_input`](Self::take_input) gave, of which the first `used` bytes
    /// were handled (its allocation is kept for the next read).
    pub fn put_back(&mut self, mut input: Vec<u8>, used: usize) {
        input.drain(..used);
        input.extend_from_slice(&self.input);
        self.input = input;
    }

    /// Stops reading and writing: after a malformed frame nothing from the guest is trusted.
    pub fn close(&mut self) {
        self.open = false;
    }
}

/// Hands each complete frame at the front of `buf` to `handle`; returns the bytes used, and
/// the error that stopped it, if any.
pub fn each_frame(
    buf: &[u8],
    mut handle: impl FnMut(GuestFrame<'_>),
) -> (usize, Result<(), FrameError>) {
    let mut pos = 0;
    loop {
        match GuestFrame::parse(&buf[pos..]) {
            Ok(Some((frame, used))) => {
                handle(frame);
                pos += used;
            }
            Ok(None) => return (pos, Ok(())),
            Err(e) => return (pos, Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::net::{AddressFamily, SocketFlags, SocketType};

    fn pair() -> (HostChannel, OwnedFd) {
        let (ours, theirs) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )
        .unwrap();
        (HostChannel::new(ours), theirs)
    }

    fn read_all(fd: &OwnedFd) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        while let Ok(n) = rustix::io::read(fd, &mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    fn nudge_bytes() -> Vec<u8> {
        let mut nudge = Vec::new();
        HostFrame::Nudge.encode_into(&mut nudge);
        nudge
    }

    #[test]
    fn a_silent_guest_is_nudged_less_and_less_and_one_that_talks_is_not() {
        let (mut c, guest) = pair();
        let start = Instant::now();
        c.nudge_if_silent(start + NUDGE_AFTER * 2);
        c.flush();
        assert!(read_all(&guest).is_empty(), "nothing before Hello");
        c.set_ready();
        c.nudge_if_silent(start + NUDGE_AFTER / 2);
        c.flush();
        assert!(
            read_all(&guest).is_empty(),
            "not before the silence is long enough"
        );
        let later = start + NUDGE_AFTER * 3;
        c.nudge_if_silent(later);
        c.flush();
        assert_eq!(read_all(&guest), nudge_bytes());
        assert_eq!(
            c.next_nudge(),
            Some(later + NUDGE_AFTER * 2),
            "one per silence, each longer"
        );
        c.nudge_if_silent(later + NUDGE_AFTER);
        c.flush();
        assert!(read_all(&guest).is_empty());
        // A credit alone is no output: the wait stays long. More is: it is short again.
        let before = Instant::now();
        rustix::io::write(&guest, &[0; CREDIT_LEN]).unwrap();
        assert!(c.read());
        assert!(c.next_nudge().unwrap() >= before + NUDGE_AFTER * 2);
        let before = Instant::now();
        rustix::io::write(&guest, &[0; CREDIT_LEN + 1]).unwrap();
        assert!(c.read());
        let next = c.next_nudge().unwrap();
        assert!(next >= before + NUDGE_AFTER && next < before + NUDGE_AFTER * 2);
        c.never_nudge();
        assert_eq!(c.next_nudge(), None);
    }

    #[test]
    fn a_nudge_gets_past_a_full_window_once_and_never_piles_up() {
        let (mut c, guest) = pair();
        c.set_ready();
        let mut stdin = Vec::new();
        for _ in 0..3 * CHANNEL_WINDOW / 64 {
            c.send(HostFrame::Stdin(&[7; 64]));
            HostFrame::Stdin(&[7; 64]).encode_into(&mut stdin);
        }
        c.flush();
        assert!(read_all(&guest) == stdin[..CHANNEL_WINDOW]);
        let queued = c.queued();
        // Bytes are queued: no nudge is added, but a few of them may go.
        c.nudge_if_silent(Instant::now() + NUDGE_AFTER);
        assert_eq!(c.queued(), queued);
        assert!(c.wants_write());
        c.flush();
        let past = read_all(&guest);
        assert!(past == stdin[CHANNEL_WINDOW..CHANNEL_WINDOW + NUDGE_OVERDRAFT]);
        assert!(!c.wants_write(), "once per nudge");
        c.flush();
        assert!(read_all(&guest).is_empty());
        // A second stall before any credit: the next nudge gets past what is in flight.
        c.nudge_if_silent(Instant::now() + NUDGE_SLOWEST * 2);
        c.flush();
        let past = read_all(&guest);
        assert!(
            past == stdin[CHANNEL_WINDOW + NUDGE_OVERDRAFT..CHANNEL_WINDOW + 2 * NUDGE_OVERDRAFT]
        );
        // Credited, the rest goes, and the queue holds no nudge.
        let mut rest = Vec::new();
        while c.queued() > 0 {
            c.credit(u32::MAX);
            c.flush();
            rest.extend(read_all(&guest));
        }
        assert!(rest == stdin[CHANNEL_WINDOW + 2 * NUDGE_OVERDRAFT..]);
        // Silent with nothing queued: one nudge, however long the silence.
        let far = Instant::now() + NUDGE_SLOWEST * 4;
        c.nudge_if_silent(far);
        c.nudge_if_silent(far);
        c.flush();
        assert_eq!(read_all(&guest), nudge_bytes());
    }

    #[test]
    fn nothing_goes_out_before_hello() {
        let (mut c, guest) = pair();
        c.send(HostFrame::StdinEof);
        assert!(!c.wants_write());
        c.flush();
        assert!(read_all(&guest).is_empty());
        c.set_ready();
        assert!(c.wants_write());
        c.flush();
        let mut expected = Vec::new();
        HostFrame::StdinEof.encode_into(&mut expected);
        assert_eq!(read_all(&guest), expected);
    }

    #[test]
    fn the_end_ack_finishes_a_frame_begun_drops_the_rest_and_is_the_last_thing_sent() {
        let (mut c, guest) = pair();
        c.set_ready();
        let data = [7u8; 1000];
        for _ in 0..5 {
            c.send(HostFrame::Stdin(&data));
        }
        c.flush();
        // The window let the first two frames and a piece of the third go; no credit comes
        // (the guest credits nothing after its End).
        let mut wire = read_all(&guest);
        assert_eq!(wire.len(), CHANNEL_WINDOW);
        c.end_ack();
        c.send(HostFrame::Signal(2));
        c.nudge_if_silent(Instant::now() + Duration::from_secs(60));
        c.flush();
        assert!(c.end_acked(), "all of it went, past the window");
        wire.extend(read_all(&guest));
        let mut frames = Vec::new();
        let mut rest = &wire[..];
        while let Some((f, used)) = HostFrame::parse(rest).unwrap() {
            frames.push(f);
            rest = &rest[used..];
        }
        assert!(rest.is_empty(), "whole frames only");
        assert_eq!(
            frames,
            [
                HostFrame::Stdin(&data),
                HostFrame::Stdin(&data),
                HostFrame::Stdin(&data),
                HostFrame::EndAck
            ]
        );
        // Between frames, nothing but the ack goes.
        let (mut c, guest) = pair();
        c.set_ready();
        c.send(HostFrame::StdinEof);
        c.flush();
        c.send(HostFrame::Stdin(b"late"));
        c.end_ack();
        c.flush();
        let mut wire = Vec::new();
        HostFrame::StdinEof.encode_into(&mut wire);
        HostFrame::EndAck.encode_into(&mut wire);
        assert_eq!(read_all(&guest), wire);
    }

    #[test]
    fn never_more_than_the_window_beyond_the_credits() {
        let (mut c, guest) = pair();
        c.set_ready();
        let data = [7u8; 1000];
        for _ in 0..10 {
            c.send(HostFrame::Stdin(&data));
        }
        let total = c.queued();
        c.flush();
        let mut unread = read_all(&guest).len();
        assert_eq!(unread, CHANNEL_WINDOW);
        assert!(!c.wants_write(), "the window is full");
        c.flush();
        assert!(read_all(&guest).is_empty(), "no credit, nothing more");
        // The guest credits what it read, in pieces: each credit lets exactly as much more go.
        let mut seen = unread;
        while seen < total {
            let credit = unread.min(700);
            c.credit(credit as u32);
            unread -= credit;
            c.flush();
            let got = read_all(&guest).len();
            assert!(got <= credit, "credit {credit}, sent {got}");
            unread += got;
            assert!(unread <= CHANNEL_WINDOW);
            seen += got;
        }
        assert_eq!(c.queued(), 0);
    }

    #[test]
    fn frames_cut_at_any_byte_are_put_back_together() {
        let (mut c, guest) = pair();
        let mut bytes = Vec::new();
        for f in [
            GuestFrame::Hello,
            GuestFrame::Stdout(b"hello"),
            GuestFrame::StdinCredit(42),
            GuestFrame::End,
        ] {
            f.encode_into(&mut bytes);
        }
        let mut seen: Vec<String> = Vec::new();
        for byte in &bytes {
            rustix::io::write(&guest, std::slice::from_ref(byte)).unwrap();
            assert!(c.read());
            let buf = c.take_input();
            let (used, result) = each_frame(&buf, |f| seen.push(format!("{f:?}")));
            result.unwrap();
            c.put_back(buf, used);
        }
        assert_eq!(
            seen,
            [
                "Hello",
                "Stdout([104, 101, 108, 108, 111])",
                "StdinCredit(42)",
                "End"
            ]
        );
    }

    #[test]
    fn frames_before_a_malformed_one_are_handled() {
        let mut bytes = Vec::new();
        GuestFrame::Hello.encode_into(&mut bytes);
        bytes.extend_from_slice(&[0xff, 0, 0, 0, 0]);
        let mut n = 0;
        let (used, result) = each_frame(&bytes, |_| n += 1);
        assert_eq!((n, used), (1, 5));
        assert!(result.is_err());
    }

    #[test]
    fn the_end_of_the_socket_closes_the_channel() {
        let (mut c, guest) = pair();
        drop(guest);
        c.read();
        assert!(!c.is_open());
    }
}
