//! The guest's network: `lo` always; then, per the request, nothing, a DHCP lease, or a
//! static address; and /etc/resolv.conf for the guest alone.

mod client;
mod dhcp;
mod link;

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use sekexe_wire::request::Net;
use sekexe_wire::Request;

use crate::log::Log;
use crate::mounts::ensure_dir;
use link::Netlink;

/// How long DHCP may take before the run fails.
const DHCP_LIMIT: Duration = Duration::from_secs(10);

/// A network interface the kernel made for a UML network device.
pub struct Iface {
    pub name: String,
    pub index: u32,
    /// None on a link without hardware addresses (the legacy slirp's SLIP).
    pub mac: Option<[u8; 6]>,
}

pub fn setup(req: &Request, log: &mut Log) -> Result<()> {
    let mut nl = Netlink::open()?;
    nl.up(1, None).context("bring lo up")?;
    let (iface, lease) = match &req.net {
        Net::None => return Ok(()),
        Net::Dhcp => {
            let iface = find_iface()?;
            let Some(mac) = iface.mac else {
                bail!(
                    "{} has no hardware address, and DHCP needs one: give --ip",
                    iface.name
                );
            };
            nl.up(iface.index, None)
                .with_context(|| format!("bring {} up", iface.name))?;
            let lease = client::acquire(&iface, mac, &req.hostname, DHCP_LIMIT, log)?;
            (iface, lease)
        }
        Net::Static {
            address,
            prefix,
            gateway,
            dns,
        } => {
            let iface = find_iface()?;
            let lease = dhcp::Lease {
                address: *address,
                prefix: *prefix,
                router: *gateway,
                dns: dns.clone(),
                domain: None,
                mtu: None,
                server: None,
                lease_secs: None,
            };
            (iface, lease)
        }
    };
    nl.up(iface.index, lease.mtu.map(u32::from))
        .with_context(|| {
            format!(
                "bring {} up (did its transport attach? see the kernel console)",
                iface.name
            )
        })?;
    nl.add_address(iface.index, lease.address, lease.prefix)?;
    if let Some(router) = lease.router {
        nl.add_default_route(router)?;
    }
    // Without a place for it (a read-only root that has none), the guest has no DNS
    // configuration: worth a note, not the run.
    if let Err(e) = write_resolv_conf(&lease) {
        log.error(&format!("DNS servers not configured: {e:#}"));
    }
    let how = if matches!(req.net, Net::Dhcp) {
        "DHCP lease"
    } else {
        "static"
    };
    log.step(&format!("network {}: {how} {lease}", iface.name));
    Ok(())
}

/// The interface of the UML network device (vec0 for the vector transports, eth0 for the
/// legacy ones): the first that is neither loopback nor virtual (like the dummy0 a built-in
/// dummy driver makes).
fn find_iface() -> Result<Iface> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .context("list /sys/class/net")?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lo")
        .collect();
    names.sort();
    for name in names {
        let dir = Path::new("/sys/class/net").join(&name);
        let kind = std::fs::read_to_string(dir.join("type")).unwrap_or_default();
        let virtual_device = std::fs::read_link(&dir)
            .map(|t| t.to_string_lossy().contains("/virtual/"))
            .unwrap_or(false);
        // 772: ARPHRD_LOOPBACK.
        if kind.trim() == "772" || virtual_device {
            continue;
        }
        let index = std::fs::read_to_string(dir.join("ifindex"))?
            .trim()
            .parse()?;
        // Ethernet (type 1) has a hardware address; the legacy slirp's SLIP link has none.
        let mac = if kind.trim() == "1" {
            Some(parse_mac(
                std::fs::read_to_string(dir.join("address"))?.trim(),
            )?)
        } else {
            None
        };
        return Ok(Iface { name, index, mac });
    }
    bail!("the kernel made no network interface: its network driver or the transport failed (see the kernel console)")
}

fn parse_mac(text: &str) -> Result<[u8; 6]> {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|h| u8::from_str_radix(h, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("MAC address {text}"))?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("MAC address {text}"))
}

/// The guest's resolv.conf: a file on the guest's /run shown over /etc/resolv.conf, so the
/// host's stays as it is. Where the host's is a link into /run (systemd-resolved), the file
/// goes where the link points.
fn write_resolv_conf(lease: &dhcp::Lease) -> Result<()> {
    if lease.dns.is_empty() {
        return Ok(());
    }
    let mut text = String::from("# written by sekexe-init for this guest\n");
    if let Some(d) = &lease.domain {
        text.push_str(&format!("search {d}\n"));
    }
    for d in &lease.dns {
        text.push_str(&format!("nameserver {d}\n"));
    }
    let etc = Path::new("/etc/resolv.conf");
    match std::fs::read_link(etc) {
        Ok(target) => {
            let target = if target.is_absolute() {
                target
            } else {
                Path::new("/etc").join(target)
            };
            if let Some(dir) = target.parent() {
                ensure_dir(dir)?;
            }
            std::fs::write(&target, text).with_context(|| format!("write {}", target.display()))
        }
        Err(_) => {
            let ours = Path::new("/run/sekexe-resolv.conf");
            std::fs::write(ours, text).context("write /run/sekexe-resolv.conf")?;
            if std::fs::write(etc, std::fs::read(ours)?).is_ok() {
                return Ok(()); // a writable root (--overlay)
            }
            if !etc.exists() {
                bail!("/etc/resolv.conf does not exist in the read-only root to show the guest's over it; add --overlay");
            }
            rustix::mount::mount_bind(ours, etc)
                .context("show the guest's resolv.conf at /etc/resolv.conf")
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn macs() {
        assert_eq!(
            super::parse_mac("52:54:00:12:34:56").unwrap(),
            [0x52, 0x54, 0, 0x12, 0x34, 0x56]
        );
        assert!(super::parse_mac("52:54:00").is_err());
        assert!(super::parse_mac("zz:54:00:12:34:56").is_err());
    }
}
