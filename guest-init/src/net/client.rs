//! The DHCP exchange on the wire: DISCOVER, OFFER, REQUEST, ACK over a packet socket (the
//! interface has no address yet), a random transaction id that answers must carry,
//! retransmission with backoff, and a clear failure after a bound.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::dhcp::{self, Kind, Lease};
use super::Iface;
use crate::log::Log;

/// Waits between retransmissions: quick at first (a local stack answers in milliseconds),
/// then backing off.
const BACKOFF: &[u64] = &[200, 400, 800, 1600, 3200];

pub fn acquire(
    iface: &Iface,
    mac: [u8; 6],
    hostname: &[u8],
    limit: Duration,
    log: &mut Log,
) -> Result<Lease> {
    let socket = PacketSocket::open(iface.index)?;
    let deadline = Instant::now() + limit;
    let ask = Ask {
        socket: &socket,
        mac,
        deadline,
    };
    loop {
        let xid = random_u32();
        let discover = dhcp::discover(xid, mac, hostname);
        let offer = ask
            .exchange(xid, Kind::Offer, &discover, log)
            .with_context(|| {
                format!(
                    "no DHCP offer on {} within {} s",
                    iface.name,
                    limit.as_secs()
                )
            })?;
        let from = match offer.server {
            Some(server) => format!("server {server}"),
            None => "a server that did not say its address".to_string(),
        };
        log.step(&format!("DHCP offer of {} from {from}", offer.your_address));
        let request = dhcp::request(xid, mac, hostname, offer.your_address, offer.server);
        let reply = ask
            .exchange(xid, Kind::Ack, &request, log)
            .with_context(|| {
                format!(
                    "no DHCP acknowledgement on {} within {} s",
                    iface.name,
                    limit.as_secs()
                )
            })?;
        if reply.kind != Kind::Nak {
            return Ok(reply.lease());
        }
        log.step("DHCP NAK: starting over");
        if Instant::now() >= deadline {
            bail!("the DHCP server keeps refusing its own offers");
        }
    }
}

/// One client's side of an exchange.
struct Ask<'a> {
    socket: &'a PacketSocket,
    mac: [u8; 6],
    deadline: Instant,
}

impl Ask<'_> {
    /// Sends `message` and waits for an answer of kind `want` (or a NAK), retransmitting.
    fn exchange(&self, xid: u32, want: Kind, message: &[u8], log: &mut Log) -> Result<dhcp::Reply> {
        let datagram = dhcp::broadcast_datagram(message);
        for (attempt, wait) in BACKOFF.iter().cycle().enumerate() {
            if Instant::now() >= self.deadline {
                bail!("gave up after {attempt} attempts");
            }
            self.socket.send_broadcast(&datagram).context("send")?;
            let until = (Instant::now() + Duration::from_millis(*wait)).min(self.deadline);
            while let Some(packet) = self.socket.recv_until(until)? {
                let Some(payload) = dhcp::client_payload(&packet) else {
                    continue;
                };
                log.step(&format!("DHCP reply received ({} bytes)", payload.len()));
                match dhcp::parse(payload, xid, self.mac) {
                    Ok(r) if r.kind == want || r.kind == Kind::Nak => return Ok(r),
                    Ok(_) => {}
                    // The bytes only where they explain something: the lease line says the rest.
                    Err(e) => {
                        let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
                        log.step(&format!("ignored a DHCP packet: {e}: {hex}"));
                    }
                }
            }
        }
        unreachable!("the backoff cycle never ends")
    }
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    if rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).is_err() {
        // Not secret, only unlikely to clash: the clock will do.
        return std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0x5eca_e8e0);
    }
    u32::from_ne_bytes(b)
}

/// An AF_PACKET datagram socket for IPv4 on one interface.
struct PacketSocket {
    fd: OwnedFd,
    index: u32,
}

const ETH_P_IP: u16 = 0x0800;

impl PacketSocket {
    fn open(index: u32) -> Result<PacketSocket> {
        // SAFETY: socket(2) with constant arguments; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                ETH_P_IP.to_be() as i32,
            )
        };
        if raw < 0 {
            return Err(std::io::Error::last_os_error())
                .context("packet socket (CONFIG_PACKET missing?)");
        }
        // SAFETY: raw is a fresh, valid socket that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let addr = link_addr(index, [0; 8], 0);
        // SAFETY: addr is a valid sockaddr_ll of the size passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("bind the packet socket");
        }
        Ok(PacketSocket { fd, index })
    }

    fn send_broadcast(&self, datagram: &[u8]) -> Result<()> {
        let addr = link_addr(self.index, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0], 6);
        // SAFETY: the buffer and the sockaddr_ll are valid for the sizes passed.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                datagram.as_ptr().cast(),
                datagram.len(),
                0,
                &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(())
    }

    /// The next IPv4 packet, or `None` once `until` has passed.
    fn recv_until(&self, until: Instant) -> Result<Option<Vec<u8>>> {
        loop {
            let mut buf = vec![0u8; 2048];
            match rustix::io::read(&self.fd, &mut buf) {
                Ok(n) => {
                    buf.truncate(n);
                    return Ok(Some(buf));
                }
                Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e).context("receive"),
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let mut fds = [rustix::event::PollFd::new(
                &self.fd,
                rustix::event::PollFlags::IN,
            )];
            // A timeout too large for a timespec waits for ever.
            let ts = rustix::event::Timespec::try_from(left).ok();
            let _ = rustix::event::poll(&mut fds, ts.as_ref());
        }
    }
}

fn link_addr(index: u32, mac: [u8; 8], len: u8) -> libc::sockaddr_ll {
    libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: ETH_P_IP.to_be(),
        sll_ifindex: index as i32,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: len,
        sll_addr: mac,
    }
}
