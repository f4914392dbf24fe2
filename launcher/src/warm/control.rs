//! The control socket of a warm guest's launcher: what `sekexe exec`, `ls` and `stop` ask it,
//! and its answers. An ask and a reply are a kind byte, a little-endian u32 length and the
//! payload. After an accepted `Exec`, the connection carries the session's frames as a run's
//! channel carries its command's: `HostFrame`s from `exec`, `GuestFrame`s to it. A session
//! with a line of its own speaks over the line instead; its connection then carries only
//! `exec`'s `EndAck` (it has read its End), or the launcher's `Lost`.
//!
//! Only the user who started the guest may ask: the socket's folder is 0700, and the launcher
//! checks each peer's uid (SO_PEERCRED) before it reads a byte.

use std::io::{IoSlice, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// The largest ask: a request with its environment.
pub const MAX_ASK: usize = 16 << 20;
const HEADER: usize = 5;

mod kind {
    pub const EXEC: u8 = b'X';
    pub const INFO: u8 = b'Q';
    pub const STOP: u8 = b'S';
    pub const ACCEPTED: u8 = b'A';
    pub const REFUSED: u8 = b'R';
    pub const ABOUT: u8 = b'I';
}

/// What a client asks.
#[derive(Debug, Clone, PartialEq)]
pub enum Ask {
    /// Run the encoded request as a new session.
    Exec(Vec<u8>),
    /// How many sessions run (for `ls`).
    Info,
    /// Stop the guest; the connection closes once it is gone.
    Stop,
}

/// What the launcher answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// The session's id; the guest's run folder comes with it (SCM_RIGHTS), for bulk stdin,
    /// and with `line`, the host end of the session's own line, to speak over.
    Accepted {
        id: u32,
        line: bool,
    },
    Refused(String),
    /// `Info`: the number of sessions running.
    About(u32),
}

fn put(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Cuts one message off the front of `buf`: its kind, payload and length; `Ok(None)` until
/// it is whole.
fn split(buf: &[u8], max: usize) -> Result<Option<(u8, &[u8], usize)>> {
    if buf.len() < HEADER {
        return Ok(None);
    }
    let len = u32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len > max {
        bail!("a message of {len} bytes, over {max}");
    }
    if buf.len() < HEADER + len {
        return Ok(None);
    }
    Ok(Some((buf[0], &buf[HEADER..HEADER + len], HEADER + len)))
}

fn u32_of(p: &[u8]) -> Result<u32> {
    Ok(u32::from_le_bytes(
        p.try_into().context("a malformed number")?,
    ))
}

impl Ask {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Ask::Exec(request) => put(&mut out, kind::EXEC, request),
            Ask::Info => put(&mut out, kind::INFO, &[]),
            Ask::Stop => put(&mut out, kind::STOP, &[]),
        }
        out
    }

    /// The ask at the front of `buf` and the bytes it used; `Ok(None)` until it is whole.
    pub fn parse(buf: &[u8]) -> Result<Option<(Ask, usize)>> {
        let Some((k, p, used)) = split(buf, MAX_ASK)? else {
            return Ok(None);
        };
        let ask = match k {
            kind::EXEC => Ask::Exec(p.to_vec()),
            kind::INFO => Ask::Info,
            kind::STOP => Ask::Stop,
            other => bail!("an unknown ask {other:#04x}"),
        };
        Ok(Some((ask, used)))
    }
}

impl Reply {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Reply::Accepted { id, line } => {
                let mut p = id.to_le_bytes().to_vec();
                p.push(u8::from(*line));
                put(&mut out, kind::ACCEPTED, &p)
            }
            Reply::Refused(why) => put(&mut out, kind::REFUSED, why.as_bytes()),
            Reply::About(n) => put(&mut out, kind::ABOUT, &n.to_le_bytes()),
        }
        out
    }

    pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>> {
        let Some((k, p, used)) = split(buf, 64 * 1024)? else {
            return Ok(None);
        };
        let reply = match k {
            kind::ACCEPTED => match p {
                [i0, i1, i2, i3, line @ (0 | 1)] => Reply::Accepted {
                    id: u32::from_le_bytes([*i0, *i1, *i2, *i3]),
                    line: *line == 1,
                },
                _ => bail!("a malformed acceptance"),
            },
            kind::REFUSED => Reply::Refused(String::from_utf8_lossy(p).into_owned()),
            kind::ABOUT => Reply::About(u32_of(p)?),
            other => bail!("an unknown reply {other:#04x}"),
        };
        Ok(Some((reply, used)))
    }
}

/// Whether the peer of an accepted connection is this user.
pub fn peer_is_us(conn: BorrowedFd<'_>) -> bool {
    rustix::net::sockopt::socket_peercred(conn)
        .is_ok_and(|cred| cred.uid == rustix::process::geteuid())
}

/// The most descriptors a reply carries.
const MAX_FDS: usize = 2;

/// Sends a reply in one message, with `fds` attached (a small message on a local stream
/// socket goes whole; the socket is non-blocking and new, so it has room).
pub fn send_reply(conn: BorrowedFd<'_>, reply: &Reply, fds: &[BorrowedFd<'_>]) -> Result<()> {
    assert!(fds.len() <= MAX_FDS, "a reply with too many descriptors");
    let bytes = reply.encode();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        control.push(SendAncillaryMessage::ScmRights(fds));
    }
    let sent = rustix::net::sendmsg(
        conn,
        &[IoSlice::new(&bytes)],
        &mut control,
        SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
    )
    .context("send the reply")?;
    if sent != bytes.len() {
        bail!("the reply went out cut short");
    }
    Ok(())
}

/// A client's connection to a guest's launcher.
pub struct Client {
    pub sock: UnixStream,
}

impl Client {
    /// Connects to the control socket at `path`; the error says what it means for a user.
    pub fn connect(path: &std::path::Path, name: &str) -> Result<Client> {
        match UnixStream::connect(path) {
            Ok(sock) => Ok(Client { sock }),
            Err(e) => match e.raw_os_error() {
                Some(libc::EACCES | libc::EPERM) => bail!(
                    "the warm guest {name} belongs to another user: only the user who started it can reach it"
                ),
                Some(libc::ENOENT | libc::ECONNREFUSED) => bail!(
                    "the warm guest {name} is not taking commands (it is starting or stopping): sekexe ls shows it"
                ),
                _ => Err(e).with_context(|| format!("connect to the warm guest {name}")),
            },
        }
    }

    pub fn ask(&mut self, ask: &Ask) -> Result<()> {
        self.sock
            .write_all(&ask.encode())
            .context("send to the warm guest's launcher")
    }

    /// The launcher's reply, and the descriptors that came with it; gives up after `limit`.
    pub fn reply(&mut self, limit: Duration) -> Result<(Reply, Vec<OwnedFd>)> {
        let deadline = Instant::now() + limit;
        let mut buf = Vec::new();
        let mut fds_got = Vec::new();
        loop {
            if let Some((reply, used)) = Reply::parse(&buf)? {
                // Nothing follows a reply until the client speaks again.
                if used != buf.len() {
                    bail!("the warm guest's launcher sent more than a reply");
                }
                return Ok((reply, fds_got));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "the warm guest's launcher did not answer within {} s",
                    limit.as_secs()
                );
            }
            let mut fds = [PollFd::new(&self.sock, PollFlags::IN)];
            let ts = Timespec::try_from(left).ok();
            match rustix::event::poll(&mut fds, ts.as_ref()) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e).context("poll"),
            }
            // Exactly the missing bytes: what follows the reply is the session's.
            let want = match buf.len() {
                n if n < HEADER => HEADER - n,
                n => HEADER + u32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize - n,
            };
            let mut chunk = vec![0u8; want.max(1)];
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let got = match rustix::net::recvmsg(
                &self.sock,
                &mut [IoSliceMut::new(&mut chunk)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT,
            ) {
                Ok(r) => r.bytes,
                Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => continue,
                Err(e) => return Err(e).context("read the warm guest's reply"),
            };
            for msg in control.drain() {
                if let RecvAncillaryMessage::ScmRights(fds) = msg {
                    fds_got.extend(fds);
                }
            }
            if got == 0 {
                bail!("the warm guest's launcher closed the connection without an answer");
            }
            buf.extend_from_slice(&chunk[..got]);
        }
    }

    /// Waits until the launcher closes the connection (it is gone), up to `limit`; true if it
    /// did.
    pub fn wait_closed(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let mut fds = [PollFd::new(&self.sock, PollFlags::IN)];
            let ts = Timespec::try_from(left).ok();
            let _ = rustix::event::poll(&mut fds, ts.as_ref());
            // Never blocking: a launcher that says nothing must not hold `stop` past the limit.
            match rustix::net::recv(&self.sock, &mut buf, RecvFlags::DONTWAIT) {
                Ok((0, _)) | Err(rustix::io::Errno::CONNRESET) => return true,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn asks_and_replies_round_trip_and_wait_for_their_end() {
        for ask in [Ask::Exec(b"request".to_vec()), Ask::Info, Ask::Stop] {
            let wire = ask.encode();
            assert_eq!(Ask::parse(&wire).unwrap(), Some((ask, wire.len())));
            assert_eq!(
                Ask::parse(&wire[..wire.len() - 1]).unwrap().map(|_| ()),
                None
            );
        }
        for reply in [
            Reply::Accepted { id: 7, line: true },
            Reply::Accepted { id: 8, line: false },
            Reply::Refused("no".into()),
            Reply::About(3),
        ] {
            let wire = reply.encode();
            assert_eq!(Reply::parse(&wire).unwrap(), Some((reply, wire.len())));
        }
    }

    #[test]
    fn an_oversized_or_unknown_message_is_an_error() {
        let mut wire = vec![b'X'];
        wire.extend_from_slice(&(MAX_ASK as u32 + 1).to_le_bytes());
        assert!(Ask::parse(&wire).is_err());
        assert!(Ask::parse(&[b'?', 0, 0, 0, 0]).is_err());
        assert!(Reply::parse(&[b'A', 1, 0, 0, 0, 9]).is_err());
        assert!(Reply::parse(&[b'A', 5, 0, 0, 0, 9, 0, 0, 0, 2]).is_err());
    }

    #[test]
    fn a_reply_brings_its_descriptors_and_nothing_after_it() {
        let (a, b) = UnixStream::pair().unwrap();
        let files = [tempfile::tempfile().unwrap(), tempfile::tempfile().unwrap()];
        let reply = Reply::Accepted { id: 5, line: true };
        let fds = [files[0].as_fd(), files[1].as_fd()];
        send_reply(a.as_fd(), &reply, &fds).unwrap();
        (&a).write_all(b"next").unwrap();
        let mut client = Client { sock: b };
        let (got, fds) = client.reply(Duration::from_secs(5)).unwrap();
        assert_eq!(got, reply);
        assert_eq!(fds.len(), 2, "both descriptors came");
        for (fd, file) in fds.iter().zip(&files) {
            let (ours, theirs) = (
                rustix::fs::fstat(fd).unwrap(),
                rustix::fs::fstat(file).unwrap(),
            );
            assert_eq!((ours.st_dev, ours.st_ino), (theirs.st_dev, theirs.st_ino));
        }
        let mut rest = [0u8; 4];
        std::io::Read::read_exact(&mut client.sock, &mut rest).unwrap();
        assert_eq!(&rest, b"next");
    }

    #[test]
    fn this_user_is_a_peer_we_serve() {
        let (a, _b) = UnixStream::pair().unwrap();
        assert!(peer_is_us(a.as_fd()));
    }
}
