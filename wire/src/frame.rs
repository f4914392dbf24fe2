//! Frames multiplexed over the console channel between launcher and guest-init.
//!
//! The channel is one UML console (`con1`), a raw tty in the guest and a socket on the host.
//! It carries the command's three streams, the end of stdin, signals, window sizes and the
//! end-of-run handshake. A frame is a one-byte tag, a little-endian u32 payload length and the
//! payload. Frames from guest to host and from host to guest have separate tag ranges, so a
//! frame read in the wrong direction is an error, not a misunderstanding.
//!
//! Host to guest, the console is narrow: UML reads console input one byte per host syscall,
//! and once the guest tty's 4 KiB input buffer fills, UML stops reading it for good (its
//! `line_throttle` removes the fd from epoll and `line_unthrottle` never adds it back, in 6.1
//! and 6.12 alike). So the launcher never has more than [`CHANNEL_WINDOW`] bytes unread in
//! the guest (guest-init returns `ChannelCredit` as it reads, but none after its `End`; a
//! `Nudge` may go up to [`NUDGE_OVERDRAFT_MAX`] past it, and the `EndAck` a little more),
//! sends only small stdin chunks
//! inline, and hands bulk stdin over as files in the exchange folder (`StdinFile`), which
//! hostfs reads fast.
//!
//! The sequence of a run (guest frames left, host frames right; the launcher sends nothing
//! before `Hello`, since the guest tty is not raw until then):
//!
//! ```text
//! guest-init                                launcher
//!   Hello ---------------------------------->  (may now write)
//!   Log* ----------------------------------->  shown with --debug
//!        <---------------------------------- NetReady      (only with port forwards; the
//!                                                           guest waits for it)
//!   Started -------------------------------->  the command runs
//!   Stdout / Stderr ------------------------>  written to the launcher's stdout / stderr
//!        <---------------------------------- Stdin / StdinFile{seq,len} ... StdinEof
//!   StdinCredit(n) ------------------------->  n stdin bytes consumed: more may go
//!   StdinFileRead(seq) --------------------->  stdin file seq read: the launcher removes it
//!   StdinClosed ---------------------------->  the command closed stdin: stop reading ours
//!   ChannelCredit(n) ----------------------->  n channel bytes read (host window: 2 KiB)
//!        <---------------------------------- Signal(n) / Winsize / CloseStdout / CloseStderr
//!   DebugShell(why) ------------------------>  --debug-shell: a shell's streams follow
//!   Status(record) ------------------------->  how the command ended (exactly once)
//!   End ------------------------------------>  all output sent, writes synced: the launcher
//!        <---------------------------------- EndAck        may kill the kernel now (nothing
//!                                                           follows End or EndAck)
//!        <---------------------------------- Shutdown      at any time: --timeout's last
//!                                                           step, a second Ctrl-C
//!        <---------------------------------- Nudge         after Hello, after a silence of
//!                                                           the guest: ignored
//! ```
//!
//! A warm guest's session speaks the same sequence from `Started` on, between its relay and
//! its `sekexe exec`: over a session line of its own (UML console `con2` on, see
//! [`crate::names::SESSION_LINES`]) when one is free, else wrapped in `Session{id}` frames on
//! this channel. (A session with a line gets one `Session{id}` frame at most: the `Shutdown`
//! that says its `exec` left before its end.)

use std::fmt;

use crate::names::SESSION_LINES;

/// How far past [`CHANNEL_WINDOW`] the launcher's nudges may write, all told, while the
/// guest credits nothing: still within the guest tty's buffer.
pub const NUDGE_OVERDRAFT_MAX: usize = 1024;

/// The largest payload a frame may carry; longer data is sent as several frames.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Tag byte plus length.
pub const HEADER_LEN: usize = 5;
/// Host-to-guest bytes the guest may have unread at once; well under the guest tty's 4 KiB
/// input buffer, so it never throttles.
pub const CHANNEL_WINDOW: usize = 2048;
/// The largest stdin chunk sent inline; larger ones go as a `StdinFile`.
pub const MAX_INLINE_STDIN: usize = 1024;

/// What a [`GuestFrame::Session`] or [`HostFrame::Session`] adds around the frame it carries:
/// its own header and the session id.
pub const SESSION_OVERHEAD: usize = HEADER_LEN + 4;

/// The exchange-folder file that carries stdin chunk `seq` of session `session` (0: the run's
/// own command; others: `sekexe exec` into a warm guest).
pub fn stdin_file_name(session: u32, seq: u32) -> String {
    if session == 0 {
        format!("stdin-{seq}")
    } else {
        format!("exec-{session}-stdin-{seq}")
    }
}

/// The exchange-folder file that carries the request of `sekexe exec` session `session`.
pub fn exec_request_name(session: u32) -> String {
    format!("exec-{session}")
}

/// Frames guest-init sends to the launcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestFrame<'a> {
    /// guest-init is running and has opened the channel.
    Hello,
    /// The command has been executed.
    Started,
    /// Bytes the command wrote to stdout.
    Stdout(&'a [u8]),
    /// Bytes the command wrote to stderr.
    Stderr(&'a [u8]),
    /// This many stdin bytes were handed to the command; the launcher may send as many more.
    StdinCredit(u32),
    /// guest-init is done with stdin file `seq` (read, or failed to): the launcher removes it.
    StdinFileRead(u32),
    /// The command closed its stdin: the launcher stops reading its own.
    StdinClosed,
    /// A line of guest-init's own progress (`--debug`).
    Log(&'a [u8]),
    /// How the command ended: an encoded [`crate::Status`]. Sent once, just before `End`. It
    /// travels on the channel, not as a file, so that the guest needs nothing writable on the
    /// host and the launcher never opens a file the guest made.
    Status(&'a [u8]),
    /// All output and the status are sent, and the guest's writes are synced to the host:
    /// the launcher may stop the kernel now. (guest-init powers off after `EndAck` if it is
    /// not stopped first.)
    End,
    /// guest-init has read this many more bytes of the channel.
    ChannelCredit(u32),
    /// `--debug-shell`: a step or the command failed (the text says which); a shell on a
    /// terminal follows, relayed like a command's, before the run ends.
    DebugShell(&'a [u8]),
    /// A warm guest (`sekexe start`): one whole frame of session `id`'s relay, which speaks
    /// to its `sekexe exec` as a run's guest-init speaks to its launcher.
    Session { id: u32, frame: &'a [u8] },
    /// A warm guest: session `id`'s relay is gone; nothing more comes for it.
    SessionGone(u32),
    /// A warm guest: session line `n` (see [`crate::names::SESSION_LINES`]) is open in the
    /// guest and holds nothing unread: at boot, and after a session over it ended with its
    /// `EndAck` read.
    LineFree(u8),
    /// Never from the guest: a warm guest's launcher tells `sekexe exec` that the guest is
    /// gone (the text says why) and nothing more will come.
    Lost(&'a [u8]),
}

/// Frames the launcher sends to guest-init.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostFrame<'a> {
    /// Bytes for the command's stdin (at most [`MAX_INLINE_STDIN`]).
    Stdin(&'a [u8]),
    /// The next `len` bytes of stdin are in the exchange folder's file [`stdin_file_name`]`(seq)`;
    /// guest-init reads it (the exchange folder is read-only to the guest) and says so with
    /// `StdinFileRead(seq)`; the launcher then removes it.
    StdinFile { seq: u32, len: u32 },
    /// The launcher's stdin ended: close the command's.
    StdinEof,
    /// Deliver this signal to the command.
    Signal(u8),
    /// The terminal's size changed (TTY mode).
    Winsize { rows: u16, cols: u16 },
    /// The launcher's stdout is closed: close the command's, so it gets SIGPIPE as on the host.
    CloseStdout,
    /// The same for stderr.
    CloseStderr,
    /// The launcher has received `End`: guest-init may power off.
    EndAck,
    /// Stop the command and everything else now, and power off (timeouts, a second Ctrl-C).
    Shutdown,
    /// The host side of the network is ready (port forwards in place): start the command.
    NetReady,
    /// A warm guest: the exchange folder holds [`exec_request_name`]`(id)`; start it as
    /// session `id`, over session line `line` if one is given (a free one: see
    /// [`GuestFrame::LineFree`]), else wrapped in `Session` frames on this channel.
    Exec { id: u32, line: Option<u8> },
    /// A warm guest: one whole frame for session `id`'s relay.
    Session { id: u32, frame: &'a [u8] },
    /// Nothing to do: the launcher sends it when the guest has been silent for a while.
    /// UML's interrupt loop can miss the moment its console's host socket has room again
    /// (its epoll is edge-triggered), and then holds the guest's output until something else
    /// happens on that socket: a byte from the host is that something.
    Nudge,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// A tag this direction does not use.
    UnknownTag(u8),
    /// A length over [`MAX_PAYLOAD`].
    TooLong(u32),
    /// A payload of the wrong size for its tag.
    BadPayload(u8),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::UnknownTag(t) => write!(f, "unknown frame tag {t:#04x}"),
            FrameError::TooLong(n) => write!(f, "frame of {n} bytes exceeds {MAX_PAYLOAD}"),
            FrameError::BadPayload(t) => write!(f, "malformed payload for frame tag {t:#04x}"),
        }
    }
}

impl std::error::Error for FrameError {}

mod tag {
    pub const HELLO: u8 = 0x01;
    pub const STARTED: u8 = 0x02;
    pub const STDOUT: u8 = 0x03;
    pub const STDERR: u8 = 0x04;
    pub const STDIN_CREDIT: u8 = 0x05;
    pub const STDIN_CLOSED: u8 = 0x06;
    pub const LOG: u8 = 0x07;
    pub const END: u8 = 0x08;
    pub const CHANNEL_CREDIT: u8 = 0x09;
    pub const DEBUG_SHELL: u8 = 0x0a;
    pub const STATUS: u8 = 0x0b;
    pub const STDIN_FILE_READ: u8 = 0x0c;
    pub const SESSION: u8 = 0x0d;
    pub const SESSION_GONE: u8 = 0x0e;
    pub const LOST: u8 = 0x0f;
    pub const LINE_FREE: u8 = 0x10;

    pub const STDIN: u8 = 0x81;
    pub const STDIN_EOF: u8 = 0x82;
    pub const SIGNAL: u8 = 0x83;
    pub const WINSIZE: u8 = 0x84;
    pub const CLOSE_STDOUT: u8 = 0x85;
    pub const CLOSE_STDERR: u8 = 0x86;
    pub const END_ACK: u8 = 0x87;
    pub const SHUTDOWN: u8 = 0x88;
    pub const STDIN_FILE: u8 = 0x89;
    pub const NET_READY: u8 = 0x8a;
    pub const EXEC: u8 = 0x8b;
    pub const HOST_SESSION: u8 = 0x8c;
    pub const NUDGE: u8 = 0x8d;
}

fn put(out: &mut Vec<u8>, tag: u8, payload: &[u8]) {
    assert!(
        payload.len() <= MAX_PAYLOAD + SESSION_OVERHEAD,
        "frame payload over MAX_PAYLOAD"
    );
    out.push(tag);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
}

/// A frame cut from the input, before its tag is interpreted.
struct Raw<'a> {
    tag: u8,
    payload: &'a [u8],
    used: usize,
}

/// Splits a complete frame off the front of `buf`: `Ok(None)` when more bytes are needed.
fn split(buf: &[u8]) -> Result<Option<Raw<'_>>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = u32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]);
    // Only a session frame may carry a whole frame of the largest size plus its own header.
    let session = buf[0] == tag::SESSION || buf[0] == tag::HOST_SESSION;
    if len as usize > MAX_PAYLOAD + if session { SESSION_OVERHEAD } else { 0 } {
        return Err(FrameError::TooLong(len));
    }
    let total = HEADER_LEN + len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some(Raw {
        tag: buf[0],
        payload: &buf[HEADER_LEN..total],
        used: total,
    }))
}

fn u32_payload(tag: u8, payload: &[u8]) -> Result<u32, FrameError> {
    let n: [u8; 4] = payload
        .try_into()
        .map_err(|_| FrameError::BadPayload(tag))?;
    Ok(u32::from_le_bytes(n))
}

/// A session frame's payload: the id, then exactly one whole frame.
fn session_payload(tag: u8, payload: &[u8]) -> Result<(u32, &[u8]), FrameError> {
    if payload.len() < 4 {
        return Err(FrameError::BadPayload(tag));
    }
    let (id, inner) = payload.split_at(4);
    match split(inner) {
        Ok(Some(raw)) if raw.used == inner.len() && raw.payload.len() <= MAX_PAYLOAD => {}
        _ => return Err(FrameError::BadPayload(tag)),
    }
    Ok((u32_payload(tag, id)?, inner))
}

fn put_session(out: &mut Vec<u8>, tag: u8, id: u32, frame: &[u8]) {
    assert!(
        frame.len() <= MAX_PAYLOAD + HEADER_LEN,
        "session frame too long"
    );
    out.push(tag);
    out.extend_from_slice(&((frame.len() + 4) as u32).to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(frame);
}

fn empty(tag: u8, payload: &[u8]) -> Result<(), FrameError> {
    if payload.is_empty() {
        Ok(())
    } else {
        Err(FrameError::BadPayload(tag))
    }
}

impl<'a> GuestFrame<'a> {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match *self {
            GuestFrame::Hello => put(out, tag::HELLO, &[]),
            GuestFrame::Started => put(out, tag::STARTED, &[]),
            GuestFrame::Stdout(d) => put(out, tag::STDOUT, d),
            GuestFrame::Stderr(d) => put(out, tag::STDERR, d),
            GuestFrame::StdinCredit(n) => put(out, tag::STDIN_CREDIT, &n.to_le_bytes()),
            GuestFrame::StdinClosed => put(out, tag::STDIN_CLOSED, &[]),
            GuestFrame::Log(d) => put(out, tag::LOG, d),
            GuestFrame::End => put(out, tag::END, &[]),
            GuestFrame::ChannelCredit(n) => put(out, tag::CHANNEL_CREDIT, &n.to_le_bytes()),
            GuestFrame::DebugShell(reason) => put(out, tag::DEBUG_SHELL, reason),
            GuestFrame::Status(record) => put(out, tag::STATUS, record),
            GuestFrame::StdinFileRead(seq) => put(out, tag::STDIN_FILE_READ, &seq.to_le_bytes()),
            GuestFrame::Session { id, frame } => put_session(out, tag::SESSION, id, frame),
            GuestFrame::SessionGone(id) => put(out, tag::SESSION_GONE, &id.to_le_bytes()),
            GuestFrame::Lost(why) => put(out, tag::LOST, why),
            GuestFrame::LineFree(n) => put(out, tag::LINE_FREE, &[n]),
        }
    }

    /// Parses the frame at the front of `buf`, returning it and the bytes it used.
    pub fn parse(buf: &'a [u8]) -> Result<Option<(GuestFrame<'a>, usize)>, FrameError> {
        let Some(Raw {
            tag: t,
            payload: p,
            used,
        }) = split(buf)?
        else {
            return Ok(None);
        };
        let frame = match t {
            tag::HELLO => empty(t, p).map(|_| GuestFrame::Hello)?,
            tag::STARTED => empty(t, p).map(|_| GuestFrame::Started)?,
            tag::STDOUT => GuestFrame::Stdout(p),
            tag::STDERR => GuestFrame::Stderr(p),
            tag::STDIN_CREDIT => GuestFrame::StdinCredit(u32_payload(t, p)?),
            tag::CHANNEL_CREDIT => GuestFrame::ChannelCredit(u32_payload(t, p)?),
            tag::DEBUG_SHELL => GuestFrame::DebugShell(p),
            tag::STATUS => GuestFrame::Status(p),
            tag::STDIN_FILE_READ => GuestFrame::StdinFileRead(u32_payload(t, p)?),
            tag::STDIN_CLOSED => empty(t, p).map(|_| GuestFrame::StdinClosed)?,
            tag::LOG => GuestFrame::Log(p),
            tag::END => empty(t, p).map(|_| GuestFrame::End)?,
            tag::SESSION => {
                let (id, frame) = session_payload(t, p)?;
                GuestFrame::Session { id, frame }
            }
            tag::SESSION_GONE => GuestFrame::SessionGone(u32_payload(t, p)?),
            tag::LOST => GuestFrame::Lost(p),
            tag::LINE_FREE => match p {
                [n] if *n < SESSION_LINES => GuestFrame::LineFree(*n),
                _ => return Err(FrameError::BadPayload(t)),
            },
            other => return Err(FrameError::UnknownTag(other)),
        };
        Ok(Some((frame, used)))
    }
}

impl<'a> HostFrame<'a> {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match *self {
            HostFrame::Stdin(d) => put(out, tag::STDIN, d),
            HostFrame::StdinEof => put(out, tag::STDIN_EOF, &[]),
            HostFrame::Signal(s) => put(out, tag::SIGNAL, &[s]),
            HostFrame::Winsize { rows, cols } => {
                let mut p = [0u8; 4];
                p[..2].copy_from_slice(&rows.to_le_bytes());
                p[2..].copy_from_slice(&cols.to_le_bytes());
                put(out, tag::WINSIZE, &p)
            }
            HostFrame::CloseStdout => put(out, tag::CLOSE_STDOUT, &[]),
            HostFrame::CloseStderr => put(out, tag::CLOSE_STDERR, &[]),
            HostFrame::EndAck => put(out, tag::END_ACK, &[]),
            HostFrame::Shutdown => put(out, tag::SHUTDOWN, &[]),
            HostFrame::NetReady => put(out, tag::NET_READY, &[]),
            HostFrame::Nudge => put(out, tag::NUDGE, &[]),
            HostFrame::StdinFile { seq, len } => {
                let mut p = [0u8; 8];
                p[..4].copy_from_slice(&seq.to_le_bytes());
                p[4..].copy_from_slice(&len.to_le_bytes());
                put(out, tag::STDIN_FILE, &p)
            }
            HostFrame::Exec { id, line } => {
                let mut p = id.to_le_bytes().to_vec();
                p.extend(line);
                put(out, tag::EXEC, &p)
            }
            HostFrame::Session { id, frame } => put_session(out, tag::HOST_SESSION, id, frame),
        }
    }

    /// Parses the frame at the front of `buf`, returning it and the bytes it used.
    pub fn parse(buf: &'a [u8]) -> Result<Option<(HostFrame<'a>, usize)>, FrameError> {
        let Some(Raw {
            tag: t,
            payload: p,
            used,
        }) = split(buf)?
        else {
            return Ok(None);
        };
        let frame = match t {
            tag::STDIN if p.len() <= MAX_INLINE_STDIN => HostFrame::Stdin(p),
            tag::STDIN => return Err(FrameError::BadPayload(t)),
            tag::STDIN_FILE => match p {
                [s0, s1, s2, s3, l0, l1, l2, l3] => HostFrame::StdinFile {
                    seq: u32::from_le_bytes([*s0, *s1, *s2, *s3]),
                    len: u32::from_le_bytes([*l0, *l1, *l2, *l3]),
                },
                _ => return Err(FrameError::BadPayload(t)),
            },
            tag::STDIN_EOF => empty(t, p).map(|_| HostFrame::StdinEof)?,
            tag::SIGNAL => match p {
                [s @ 1..=64] => HostFrame::Signal(*s),
                _ => return Err(FrameError::BadPayload(t)),
            },
            tag::WINSIZE => match p {
                [r0, r1, c0, c1] => HostFrame::Winsize {
                    rows: u16::from_le_bytes([*r0, *r1]),
                    cols: u16::from_le_bytes([*c0, *c1]),
                },
                _ => return Err(FrameError::BadPayload(t)),
            },
            tag::CLOSE_STDOUT => empty(t, p).map(|_| HostFrame::CloseStdout)?,
            tag::CLOSE_STDERR => empty(t, p).map(|_| HostFrame::CloseStderr)?,
            tag::END_ACK => empty(t, p).map(|_| HostFrame::EndAck)?,
            tag::SHUTDOWN => empty(t, p).map(|_| HostFrame::Shutdown)?,
            tag::NET_READY => empty(t, p).map(|_| HostFrame::NetReady)?,
            tag::NUDGE => empty(t, p).map(|_| HostFrame::Nudge)?,
            tag::EXEC => match p {
                [i0, i1, i2, i3] => HostFrame::Exec {
                    id: u32::from_le_bytes([*i0, *i1, *i2, *i3]),
                    line: None,
                },
                [i0, i1, i2, i3, n] if *n < SESSION_LINES => HostFrame::Exec {
                    id: u32::from_le_bytes([*i0, *i1, *i2, *i3]),
                    line: Some(*n),
                },
                _ => return Err(FrameError::BadPayload(t)),
            },
            tag::HOST_SESSION => {
                let (id, frame) = session_payload(t, p)?;
                HostFrame::Session { id, frame }
            }
            other => return Err(FrameError::UnknownTag(other)),
        };
        Ok(Some((frame, used)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest_frames() -> Vec<GuestFrame<'static>> {
        vec![
            GuestFrame::Hello,
            GuestFrame::Started,
            GuestFrame::Stdout(b"out\0\xff"),
            GuestFrame::Stderr(b""),
            GuestFrame::StdinCredit(123456),
            GuestFrame::StdinClosed,
            GuestFrame::Log(b"mounted /proc"),
            GuestFrame::End,
            GuestFrame::ChannelCredit(2048),
            GuestFrame::DebugShell(b"the command exited with status 3"),
            GuestFrame::Status(b"SEKEXEST..."),
            GuestFrame::StdinFileRead(7),
            GuestFrame::Session {
                id: 3,
                frame: &[0x01, 0, 0, 0, 0],
            },
            GuestFrame::SessionGone(3),
            GuestFrame::LineFree(0),
            GuestFrame::LineFree(SESSION_LINES - 1),
            GuestFrame::Lost(b"the kernel was killed"),
        ]
    }

    fn host_frames() -> Vec<HostFrame<'static>> {
        vec![
            HostFrame::Stdin(b"in\n"),
            HostFrame::StdinEof,
            HostFrame::Signal(15),
            HostFrame::Winsize { rows: 24, cols: 80 },
            HostFrame::CloseStdout,
            HostFrame::CloseStderr,
            HostFrame::EndAck,
            HostFrame::Shutdown,
            HostFrame::StdinFile {
                seq: 7,
                len: 1 << 20,
            },
            HostFrame::Exec { id: 9, line: None },
            HostFrame::Exec {
                id: 10,
                line: Some(SESSION_LINES - 1),
            },
            HostFrame::Nudge,
            HostFrame::Session {
                id: 9,
                frame: &[0x83, 1, 0, 0, 0, 15],
            },
        ]
    }

    #[test]
    fn every_frame_round_trips_even_when_fed_byte_by_byte() {
        let mut wire = Vec::new();
        for f in guest_frames() {
            f.encode_into(&mut wire);
        }
        let mut got = Vec::new();
        let mut pos = 0;
        // Each prefix shorter than the next frame must ask for more, never fail.
        while pos < wire.len() {
            let mut end = pos;
            loop {
                match GuestFrame::parse(&wire[pos..end]).unwrap() {
                    Some((f, used)) => {
                        got.push(f);
                        pos += used;
                        break;
                    }
                    None => end += 1,
                }
            }
        }
        assert_eq!(got, guest_frames());

        let mut wire = Vec::new();
        for f in host_frames() {
            f.encode_into(&mut wire);
        }
        let mut rest = &wire[..];
        let mut got = Vec::new();
        while let Some((f, used)) = HostFrame::parse(rest).unwrap() {
            got.push(f);
            rest = &rest[used..];
        }
        assert_eq!(got, host_frames());
    }

    #[test]
    fn a_frame_in_the_wrong_direction_is_rejected() {
        let mut wire = Vec::new();
        HostFrame::Stdin(b"x").encode_into(&mut wire);
        assert_eq!(GuestFrame::parse(&wire), Err(FrameError::UnknownTag(0x81)));
        let mut wire = Vec::new();
        GuestFrame::Stdout(b"x").encode_into(&mut wire);
        assert_eq!(HostFrame::parse(&wire), Err(FrameError::UnknownTag(0x03)));
    }

    #[test]
    fn malformed_frames_are_errors() {
        // A line the guest does not have, or an Exec with more than one line.
        assert_eq!(
            GuestFrame::parse(&[0x10, 1, 0, 0, 0, SESSION_LINES]),
            Err(FrameError::BadPayload(0x10))
        );
        assert_eq!(
            HostFrame::parse(&[0x8b, 5, 0, 0, 0, 1, 0, 0, 0, SESSION_LINES]),
            Err(FrameError::BadPayload(0x8b))
        );
        assert_eq!(
            HostFrame::parse(&[0x8b, 6, 0, 0, 0, 1, 0, 0, 0, 0, 0]),
            Err(FrameError::BadPayload(0x8b))
        );
        assert_eq!(
            GuestFrame::parse(&[0x03, 0xff, 0xff, 0xff, 0xff]),
            Err(FrameError::TooLong(u32::MAX))
        );
        assert_eq!(
            GuestFrame::parse(&[0x01, 1, 0, 0, 0, 0]),
            Err(FrameError::BadPayload(0x01))
        );
        assert_eq!(
            GuestFrame::parse(&[0x05, 2, 0, 0, 0, 1, 2]),
            Err(FrameError::BadPayload(0x05))
        );
        assert_eq!(
            HostFrame::parse(&[0x83, 1, 0, 0, 0, 0]),
            Err(FrameError::BadPayload(0x83))
        );
        assert_eq!(
            HostFrame::parse(&[0x83, 1, 0, 0, 0, 65]),
            Err(FrameError::BadPayload(0x83))
        );
    }

    #[test]
    fn a_session_frame_carries_exactly_one_whole_frame_of_any_size() {
        let mut big = Vec::new();
        GuestFrame::Stdout(&[7; MAX_PAYLOAD]).encode_into(&mut big);
        let mut wire = Vec::new();
        GuestFrame::Session { id: 1, frame: &big }.encode_into(&mut wire);
        assert_eq!(
            GuestFrame::parse(&wire).unwrap(),
            Some((GuestFrame::Session { id: 1, frame: &big }, wire.len()))
        );
        // Half a frame, two frames, or a bare id would leave the stream out of step.
        for inner in [&big[..10], &[&big[..], &big[..]].concat()[..], &[][..]] {
            let mut wire = vec![0x0d];
            wire.extend_from_slice(&(inner.len() as u32 + 4).to_le_bytes());
            wire.extend_from_slice(&1u32.to_le_bytes());
            wire.extend_from_slice(inner);
            assert!(GuestFrame::parse(&wire).is_err());
        }
        // Any other frame keeps the plain bound.
        let mut wire = vec![0x03];
        wire.extend_from_slice(&(MAX_PAYLOAD as u32 + 1).to_le_bytes());
        assert_eq!(
            GuestFrame::parse(&wire),
            Err(FrameError::TooLong(MAX_PAYLOAD as u32 + 1))
        );
    }

    #[test]
    fn stdin_files_of_sessions_never_share_a_name() {
        assert_eq!(stdin_file_name(0, 3), "stdin-3");
        assert_eq!(stdin_file_name(2, 3), "exec-2-stdin-3");
        assert_ne!(stdin_file_name(2, 3), exec_request_name(2));
    }

    #[test]
    fn inline_stdin_is_bounded() {
        let mut wire = Vec::new();
        HostFrame::Stdin(&[0; MAX_INLINE_STDIN]).encode_into(&mut wire);
        assert!(HostFrame::parse(&wire).unwrap().is_some());
        let mut wire = vec![0x81];
        wire.extend_from_slice(&(MAX_INLINE_STDIN as u32 + 1).to_le_bytes());
        wire.extend(std::iter::repeat_n(0, MAX_INLINE_STDIN + 1));
        assert_eq!(HostFrame::parse(&wire), Err(FrameError::BadPayload(0x81)));
    }

    #[test]
    fn the_channel_window_fits_the_guest_tty_buffer() {
        // n_tty throttles when less than 128 of its 4096 bytes are free.
        const { assert!(CHANNEL_WINDOW + NUDGE_OVERDRAFT_MAX < 4096 - 128) };
    }
}
