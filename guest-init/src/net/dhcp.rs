//! DHCPv4 messages (RFC 2131, options from RFC 2132): building DISCOVER and REQUEST, and
//! reading OFFER, ACK and NAK. Pure, so every parse is tested with captured and broken
//! packets; the reader trusts nothing: lengths, the magic cookie, the transaction id and the
//! hardware address are all checked.

use std::fmt;
use std::net::Ipv4Addr;

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;
const COOKIE: [u8; 4] = [99, 130, 83, 99];
/// The fixed part: op .. file, before the cookie.
const FIXED: usize = 236;

mod opt {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const DNS: u8 = 6;
    pub const HOSTNAME: u8 = 12;
    pub const DOMAIN: u8 = 15;
    pub const MTU: u8 = 26;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAMETERS: u8 = 55;
    pub const MAX_SIZE: u8 = 57;
    pub const END: u8 = 255;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Discover = 1,
    Offer = 2,
    Request = 3,
    Ack = 5,
    Nak = 6,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhcpError {
    Truncated,
    NotAReply,
    WrongXid,
    NotForUs,
    BadCookie,
    /// An option runs past the end of the packet, or has the wrong length.
    BadOption(u8),
    NoMessageType,
    UnexpectedKind(u8),
}

impl fmt::Display for DhcpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DhcpError::Truncated => write!(f, "truncated packet"),
            DhcpError::NotAReply => write!(f, "not a BOOTREPLY for Ethernet"),
            DhcpError::WrongXid => write!(f, "transaction id does not match"),
            DhcpError::NotForUs => write!(f, "for another hardware address"),
            DhcpError::BadCookie => write!(f, "bad magic cookie"),
            DhcpError::BadOption(c) => write!(f, "malformed option {c}"),
            DhcpError::NoMessageType => write!(f, "no DHCP message type"),
            DhcpError::UnexpectedKind(k) => write!(f, "unexpected message type {k}"),
        }
    }
}

/// A server's answer, read and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub kind: Kind,
    pub your_address: Ipv4Addr,
    pub server: Option<Ipv4Addr>,
    pub mask: Option<Ipv4Addr>,
    pub routers: Vec<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub mtu: Option<u16>,
    pub lease_secs: Option<u32>,
}

/// What the guest configures from an ACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub mtu: Option<u16>,
    pub server: Option<Ipv4Addr>,
    pub lease_secs: Option<u32>,
}

impl fmt::Display for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)?;
        if let Some(r) = self.router {
            write!(f, " router {r}")?;
        }
        if !self.dns.is_empty() {
            let dns: Vec<String> = self.dns.iter().map(|d| d.to_string()).collect();
            write!(f, " dns {}", dns.join(","))?;
        }
        if let Some(m) = self.mtu {
            write!(f, " mtu {m}")?;
        }
        if let Some(s) = self.server {
            write!(f, " from {s}")?;
        }
        if let Some(t) = self.lease_secs {
            write!(f, " for {t} s")?;
        }
        Ok(())
    }
}

fn header(xid: u32, mac: [u8; 6]) -> Vec<u8> {
    let mut p = vec![0u8; FIXED];
    p[0] = 1; // BOOTREQUEST
    p[1] = 1; // Ethernet
    p[2] = 6; // hardware address length
    p[4..8].copy_from_slice(&xid.to_be_bytes());
    // Broadcast flag: we have no address yet, so answers must come broadcast.
    p[10] = 0x80;
    p[28..34].copy_from_slice(&mac);
    p.extend_from_slice(&COOKIE);
    p
}

fn common_options(p: &mut Vec<u8>, kind: Kind, hostname: &[u8]) {
    p.extend_from_slice(&[opt::MESSAGE_TYPE, 1, kind as u8]);
    p.extend_from_slice(&[
        opt::PARAMETERS,
        6,
        opt::SUBNET_MASK,
        opt::ROUTER,
        opt::DNS,
        opt::DOMAIN,
        opt::MTU,
        opt::LEASE_TIME,
    ]);
    p.extend_from_slice(&[opt::MAX_SIZE, 2, 0x05, 0xdc]); // 1500
    if !hostname.is_empty() && hostname.len() <= 63 {
        p.push(opt::HOSTNAME);
        p.push(hostname.len() as u8);
        p.extend_from_slice(hostname);
    }
}

pub fn discover(xid: u32, mac: [u8; 6], hostname: &[u8]) -> Vec<u8> {
    let mut p = header(xid, mac);
    common_options(&mut p, Kind::Discover, hostname);
    p.push(opt::END);
    p
}

pub fn request(
    xid: u32,
    mac: [u8; 6],
    hostname: &[u8],
    address: Ipv4Addr,
    server: Option<Ipv4Addr>,
) -> Vec<u8> {
    let mut p = header(xid, mac);
    common_options(&mut p, Kind::Request, hostname);
    p.push(opt::REQUESTED_IP);
    p.push(4);
    p.extend_from_slice(&address.octets());
    if let Some(s) = server {
        p.push(opt::SERVER_ID);
        p.push(4);
        p.extend_from_slice(&s.octets());
    }
    p.push(opt::END);
    p
}

fn addr(v: &[u8], code: u8) -> Result<Ipv4Addr, DhcpError> {
    let a: [u8; 4] = v.try_into().map_err(|_| DhcpError::BadOption(code))?;
    Ok(Ipv4Addr::from(a))
}

fn addrs(v: &[u8], code: u8) -> Result<Vec<Ipv4Addr>, DhcpError> {
    if v.is_empty() || !v.len().is_multiple_of(4) {
        return Err(DhcpError::BadOption(code));
    }
    Ok(v.chunks(4)
        .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
        .collect())
}

/// Reads a server's answer to our transaction `xid` from hardware address `mac`.
pub fn parse(p: &[u8], xid: u32, mac: [u8; 6]) -> Result<Reply, DhcpError> {
    if p.len() < FIXED + COOKIE.len() {
        return Err(DhcpError::Truncated);
    }
    if p[0] != 2 || p[1] != 1 || p[2] != 6 {
        return Err(DhcpError::NotAReply);
    }
    if p[4..8] != xid.to_be_bytes() {
        return Err(DhcpError::WrongXid);
    }
    if p[28..34] != mac {
        return Err(DhcpError::NotForUs);
    }
    if p[FIXED..FIXED + 4] != COOKIE {
        return Err(DhcpError::BadCookie);
    }
    let your_address = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    let mut reply = Reply {
        kind: Kind::Offer,
        your_address,
        server: None,
        mask: None,
        routers: Vec::new(),
        dns: Vec::new(),
        domain: None,
        mtu: None,
        lease_secs: None,
    };
    let mut kind = None;
    let mut i = FIXED + 4;
    while i < p.len() {
        let code = p[i];
        if code == opt::END {
            break;
        }
        if code == opt::PAD {
            i += 1;
            continue;
        }
        let len = *p.get(i + 1).ok_or(DhcpError::BadOption(code))? as usize;
        let value = p
            .get(i + 2..i + 2 + len)
            .ok_or(DhcpError::BadOption(code))?;
        match code {
            opt::MESSAGE_TYPE => {
                let [k] = value else {
                    return Err(DhcpError::BadOption(code));
                };
                kind = Some(*k);
            }
            opt::SUBNET_MASK => reply.mask = Some(addr(value, code)?),
            opt::ROUTER => reply.routers = addrs(value, code)?,
            opt::DNS => reply.dns = addrs(value, code)?,
            opt::SERVER_ID => reply.server = Some(addr(value, code)?),
            opt::DOMAIN => {
                let d = std::str::from_utf8(value).map_err(|_| DhcpError::BadOption(code))?;
                reply.domain = Some(d.trim_end_matches('\0').to_string()).filter(|d| !d.is_empty());
            }
            opt::MTU => {
                let m: [u8; 2] = value.try_into().map_err(|_| DhcpError::BadOption(code))?;
                reply.mtu = Some(u16::from_be_bytes(m)).filter(|&m| m >= 68);
            }
            opt::LEASE_TIME => {
                let t: [u8; 4] = value.try_into().map_err(|_| DhcpError::BadOption(code))?;
                reply.lease_secs = Some(u32::from_be_bytes(t));
            }
            _ => {}
        }
        i += 2 + len;
    }
    reply.kind = match kind {
        Some(2) => Kind::Offer,
        Some(5) => Kind::Ack,
        Some(6) => Kind::Nak,
        Some(k) => return Err(DhcpError::UnexpectedKind(k)),
        None => return Err(DhcpError::NoMessageType),
    };
    Ok(reply)
}

impl Reply {
    pub fn lease(&self) -> Lease {
        let mask = self.mask.map(u32::from).unwrap_or(0xffff_ff00);
        Lease {
            address: self.your_address,
            // A mask that is not contiguous ones counts only its leading ones.
            prefix: mask.leading_ones() as u8,
            router: self.routers.first().copied(),
            dns: self.dns.clone(),
            domain: self.domain.clone(),
            mtu: self.mtu,
            server: self.server,
            lease_secs: self.lease_secs,
        }
    }
}

/// An IPv4 + UDP datagram from 0.0.0.0:68 to 255.255.255.255:67 around `payload`, for a
/// packet socket (the interface has no address yet).
pub fn broadcast_datagram(payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0x10]); // IPv4, header 5 words; low-delay TOS
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0]); // id, flags, fragment
    p.extend_from_slice(&[64, 17, 0, 0]); // TTL, UDP, checksum (below)
    p.extend_from_slice(&[0, 0, 0, 0]);
    p.extend_from_slice(&[255, 255, 255, 255]);
    let sum = checksum(&p[..20]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(&CLIENT_PORT.to_be_bytes());
    p.extend_from_slice(&SERVER_PORT.to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]); // UDP checksum is optional over IPv4
    p.extend_from_slice(payload);
    p
}

/// The UDP payload of an IPv4 datagram for the DHCP client port, if that is what it is.
pub fn client_payload(ip: &[u8]) -> Option<&[u8]> {
    let version_ihl = *ip.first()?;
    let ihl = ((version_ihl & 0x0f) as usize) * 4;
    if version_ihl >> 4 != 4 || ihl < 20 || ip.len() < ihl + 8 || ip[9] != 17 {
        return None;
    }
    // The IP total length comes from the network: it may be shorter than the header.
    let total = (u16::from_be_bytes([ip[2], ip[3]]) as usize).min(ip.len());
    let udp = ip.get(ihl..total)?;
    let dst = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    let len = u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]) as usize;
    if dst != CLIENT_PORT || len < 8 || len > udp.len() {
        return None;
    }
    Some(&udp[8..len])
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replies captured from real servers talking to guest-init (`--debug` logs them): the
    /// DHCP payload, with the transaction id and hardware address that run used.
    fn captured(hex: &str) -> (Vec<u8>, u32, [u8; 6]) {
        let bytes: Vec<u8> = (0..hex.trim().len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let xid = u32::from_be_bytes(bytes[4..8].try_into().unwrap());
        let mac: [u8; 6] = bytes[28..34].try_into().unwrap();
        (bytes, xid, mac)
    }

    fn slirp_ack() -> (Vec<u8>, u32, [u8; 6]) {
        captured(include_str!("captured/slirp4netns-ack.hex"))
    }

    #[test]
    fn reads_slirp4netns_and_dnsmasq_replies() {
        let (offer, xid, mac) = captured(include_str!("captured/slirp4netns-offer.hex"));
        assert_eq!(parse(&offer, xid, mac).unwrap().kind, Kind::Offer);
        let (offer, xid, mac) = captured(include_str!("captured/dnsmasq-offer.hex"));
        assert_eq!(parse(&offer, xid, mac).unwrap().kind, Kind::Offer);
        let (ack, xid, mac) = captured(include_str!("captured/dnsmasq-ack.hex"));
        let r = parse(&ack, xid, mac).unwrap();
        assert_eq!(r.kind, Kind::Ack);
        let l = r.lease();
        assert_eq!(l.address.octets()[..3], [10, 66, 0]);
        assert!((50..=60).contains(&l.address.octets()[3]));
        assert_eq!(l.prefix, 24);
        assert_eq!(l.router, Some(Ipv4Addr::new(10, 66, 0, 1)));
        assert_eq!(l.dns, vec![Ipv4Addr::new(10, 66, 0, 1)]);
        assert_eq!(l.lease_secs, Some(3600));
    }

    #[test]
    fn reads_a_real_ack() {
        let (ack, xid, mac) = slirp_ack();
        let r = parse(&ack, xid, mac).unwrap();
        assert_eq!(r.kind, Kind::Ack);
        let l = r.lease();
        assert_eq!(l.address, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(l.prefix, 24);
        assert_eq!(l.router, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(l.dns, vec![Ipv4Addr::new(10, 0, 2, 3)]);
        assert_eq!(l.server, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(l.lease_secs, Some(86400));
        assert_eq!(
            l.to_string(),
            "10.0.2.15/24 router 10.0.2.2 dns 10.0.2.3 from 10.0.2.2 for 86400 s"
        );
    }

    #[test]
    fn builds_what_servers_expect() {
        const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
        const XID: u32 = 0x1a2b_3c4d;
        let d = discover(XID, MAC, b"sekexe");
        assert_eq!(&d[..4], &[1, 1, 6, 0]);
        assert_eq!(&d[4..8], &XID.to_be_bytes());
        assert_eq!(&d[28..34], &MAC);
        assert_eq!(&d[FIXED..FIXED + 4], &COOKIE);
        assert_eq!(&d[FIXED + 4..FIXED + 7], &[53, 1, 1]);
        assert_eq!(*d.last().unwrap(), 255);
        let r = request(
            XID,
            MAC,
            b"",
            Ipv4Addr::new(10, 0, 2, 15),
            Some(Ipv4Addr::new(10, 0, 2, 2)),
        );
        let tail = &r[FIXED + 4..];
        assert!(tail.windows(6).any(|w| w == [50, 4, 10, 0, 2, 15]));
        assert!(tail.windows(6).any(|w| w == [54, 4, 10, 0, 2, 2]));
        assert!(tail.windows(3).any(|w| w == [53, 1, 3]));
    }

    #[test]
    fn refuses_what_is_not_our_answer() {
        let (good, xid, mac) = slirp_ack();
        assert_eq!(parse(&good[..239], xid, mac), Err(DhcpError::Truncated));
        assert_eq!(
            parse(&good, xid.wrapping_add(1), mac),
            Err(DhcpError::WrongXid)
        );
        assert_eq!(parse(&good, xid, [0; 6]), Err(DhcpError::NotForUs));
        let mut p = good.clone();
        p[FIXED] = 0;
        assert_eq!(parse(&p, xid, mac), Err(DhcpError::BadCookie));
        let mut p = good.clone();
        p[0] = 1;
        assert_eq!(parse(&p, xid, mac), Err(DhcpError::NotAReply));
    }

    #[test]
    fn refuses_overlong_and_malformed_options() {
        let (ack, xid, mac) = slirp_ack();
        let captured_ack = || ack.clone();
        let mut p = captured_ack();
        p.truncate(FIXED + 4);
        p.extend_from_slice(&[53, 1, 5, 6, 200, 10, 0, 2, 3]); // DNS claims 200 bytes
        assert_eq!(parse(&p, xid, mac), Err(DhcpError::BadOption(6)));
        let mut p = captured_ack();
        p.truncate(FIXED + 4);
        p.extend_from_slice(&[53, 1, 5, 1, 3, 255, 255, 255]); // a 3-byte mask
        assert_eq!(parse(&p, xid, mac), Err(DhcpError::BadOption(1)));
        let mut p = captured_ack();
        p.truncate(FIXED + 4);
        p.extend_from_slice(&[53]); // a code without its length
        assert_eq!(parse(&p, xid, mac), Err(DhcpError::BadOption(53)));
        let mut p = captured_ack();
        p.truncate(FIXED + 4);
        p.extend_from_slice(&[1, 4, 255, 255, 255, 0, 255]); // no message type
        assert_eq!(parse(&p, xid, mac), Err(DhcpError::NoMessageType));
        let mut p = captured_ack();
        p.truncate(FIXED + 4);
        p.extend_from_slice(&[53, 1, 1, 255]); // a DISCOVER, not an answer
        assert_eq!(parse(&p, xid, mac), Err(DhcpError::UnexpectedKind(1)));
    }

    #[test]
    fn every_truncation_and_byte_flip_is_an_error_or_a_valid_reply() {
        let (good, xid, mac) = slirp_ack();
        for len in 0..good.len() {
            let _ = parse(&good[..len], xid, mac);
        }
        for i in 0..good.len() {
            for v in [0u8, 1, 0x7f, 0xff] {
                let mut p = good.clone();
                p[i] = v;
                let _ = parse(&p, xid, mac);
            }
        }
    }

    proptest::proptest! {
        /// Fuzzing: whatever a network sends to port 68, parsing ends in a reply or an error.
        #[test]
        fn hostile_packets_never_panic(
            flips in proptest::collection::vec((0usize..600, proptest::prelude::any::<u8>()), 0..8),
            cut in 0usize..700,
            noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..700),
        ) {
            let (ack, xid, mac) = slirp_ack();
            let mut p = ack.clone();
            for (at, v) in flips {
                if at < p.len() {
                    p[at] = v;
                }
            }
            p.truncate(cut.max(1));
            let _ = parse(&p, xid, mac);
            let _ = parse(&noise, xid, mac);
            let _ = client_payload(&noise);
            if let Ok(r) = parse(&p, xid, mac) {
                let _ = r.lease().to_string();
            }
        }
    }

    #[test]
    fn a_total_length_shorter_than_the_header_is_not_a_datagram() {
        // Found by the fuzzer: total length 0 in a UDP packet's IPv4 header.
        let mut ip = vec![0u8; 64];
        ip[0] = 0x45;
        ip[9] = 17;
        assert_eq!(client_payload(&ip), None);
    }

    #[test]
    fn datagrams_wrap_and_unwrap() {
        let payload = discover(7, [2, 0, 0, 0, 0, 1], b"");
        let ip = broadcast_datagram(&payload);
        assert_eq!(checksum(&ip[..20]), 0, "a valid header sums to zero");
        assert_eq!(&ip[16..20], &[255, 255, 255, 255]);
        // A reply arrives for port 68.
        let mut reply = ip.clone();
        reply[20..22].copy_from_slice(&SERVER_PORT.to_be_bytes());
        reply[22..24].copy_from_slice(&CLIENT_PORT.to_be_bytes());
        assert_eq!(client_payload(&reply), Some(payload.as_slice()));
        assert_eq!(client_payload(&ip), None, "our own request is for port 67");
        assert_eq!(client_payload(&reply[..25]), None);
        let mut bad = reply.clone();
        bad[24..26].copy_from_slice(&5000u16.to_be_bytes()); // UDP length past the end
        assert_eq!(client_payload(&bad), None);
    }

    #[test]
    fn masks_become_prefixes() {
        let (ack, xid, mac) = slirp_ack();
        let mut r = parse(&ack, xid, mac).unwrap();
        r.mask = Some(Ipv4Addr::new(255, 255, 0, 0));
        assert_eq!(r.lease().prefix, 16);
        r.mask = None;
        assert_eq!(r.lease().prefix, 24);
    }
}
