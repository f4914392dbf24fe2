//! Configuring an interface over rtnetlink: up (with an MTU), an address, a default route.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::{anyhow, bail, Context, Result};
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket};

pub struct Netlink {
    socket: Socket,
    seq: u32,
}

impl Netlink {
    pub fn open() -> Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE).context("netlink socket")?;
        socket.bind_auto().context("bind the netlink socket")?;
        Ok(Netlink { socket, seq: 0 })
    }

    /// Sends one request and waits for its acknowledgement.
    fn request(&mut self, message: RouteNetlinkMessage, flags: u16, what: &str) -> Result<()> {
        self.seq += 1;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.seq;
        let mut msg = NetlinkMessage::new(header, NetlinkPayload::from(message));
        msg.finalize();
        let mut buf = vec![0; msg.buffer_len()];
        msg.serialize(&mut buf);
        self.socket
            .send(&buf, 0)
            .with_context(|| format!("netlink: {what}"))?;
        loop {
            let (reply, _) = self
                .socket
                .recv_from_full()
                .with_context(|| format!("netlink: {what}"))?;
            let mut at = 0;
            while at < reply.len() {
                let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply[at..])
                    .map_err(|e| anyhow!("netlink: {what}: undecodable reply: {e}"))?;
                let len = m.header.length as usize;
                if m.header.sequence_number == self.seq {
                    if let NetlinkPayload::Error(e) = m.payload {
                        return match e.code {
                            None => Ok(()),
                            Some(code) => Err(std::io::Error::from_raw_os_error(-code.get()))
                                .with_context(|| format!("netlink: {what}")),
                        };
                    }
                }
                if len == 0 {
                    break;
                }
                at += len;
            }
        }
    }

    /// Brings `index` up, with `mtu` when given.
    pub fn up(&mut self, index: u32, mtu: Option<u32>) -> Result<()> {
        let mut link = LinkMessage::default();
        link.header.index = index;
        link.header.flags = LinkFlags::Up;
        link.header.change_mask = LinkFlags::Up;
        if let Some(mtu) = mtu {
            link.attributes.push(LinkAttribute::Mtu(mtu));
        }
        self.request(RouteNetlinkMessage::SetLink(link), 0, "set the link up")
    }

    pub fn add_address(&mut self, index: u32, address: Ipv4Addr, prefix: u8) -> Result<()> {
        if prefix > 32 {
            bail!("prefix /{prefix} is not an IPv4 prefix");
        }
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.attributes
            .push(AddressAttribute::Local(IpAddr::V4(address)));
        m.attributes
            .push(AddressAttribute::Address(IpAddr::V4(address)));
        if prefix < 31 {
            let host_bits = u32::MAX >> prefix;
            let broadcast = Ipv4Addr::from(u32::from(address) | host_bits);
            m.attributes.push(AddressAttribute::Broadcast(broadcast));
        }
        self.request(
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("add address {address}/{prefix}"),
        )
    }

    pub fn add_default_route(&mut self, gateway: Ipv4Addr) -> Result<()> {
        let mut r = RouteMessage::default();
        r.header.address_family = AddressFamily::Inet;
        r.header.table = 254; // RT_TABLE_MAIN
        r.header.protocol = RouteProtocol::Boot;
        r.header.scope = RouteScope::Universe;
        r.header.kind = RouteType::Unicast;
        r.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        self.request(
            RouteNetlinkMessage::NewRoute(r),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("add the default route via {gateway}"),
        )
    }
}
