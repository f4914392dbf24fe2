//! The run request: what to run and how. The launcher writes it into the run's exchange folder
//! before the kernel boots; guest-init reads it. None of it travels on the kernel command line,
//! which is limited to 4096 bytes and mangles spaces, dots and quotes.

use crate::codec::{DecodeError, Decoder, Encoder};
use std::net::Ipv4Addr;

const MAGIC: &[u8] = b"SEKEXERQ";
/// Bumped whenever a field or a frame changes; launcher and guest-init must come from the same
/// build, and a guest-init of another is told apart here, before it meets a frame it does not
/// know (6: `HostFrame::Nudge`; 7: session lines, `GuestFrame::LineFree` and the line in
/// `HostFrame::Exec`).
pub const VERSION: u32 = 7;

/// How guest-init configures the network interface.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Net {
    /// Only `lo`.
    #[default]
    None,
    /// Ask the network's DHCP server.
    Dhcp,
    /// `--ip ADDR/PREFIX [--gateway ADDR] [--dns ADDR]`.
    Static {
        address: Ipv4Addr,
        prefix: u8,
        gateway: Option<Ipv4Addr>,
        dns: Vec<Ipv4Addr>,
    },
}

/// Which cgroup filesystems guest-init mounts at /sys/fs/cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cgroups {
    /// None at all.
    None,
    /// cgroup v2, every controller delegated to child groups.
    #[default]
    V2,
    /// One v1 hierarchy per controller, as Docker and systemd lay them out.
    V1,
}

/// A writable root over the read-only one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Overlay {
    #[default]
    None,
    /// Changes go to a tmpfs and are lost at the end.
    Tmpfs,
    /// Changes go to an ext4 file system on this UML block device (e.g. `ubdc`), kept on the
    /// host between runs (`--overlay-dir`).
    Disk(Vec<u8>),
}

/// A host folder shown in the guest (`-v`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub host: Vec<u8>,
    pub guest: Vec<u8>,
    pub writable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    /// The command and its arguments, exactly as given (any bytes but NUL).
    pub argv: Vec<Vec<u8>>,
    /// The command's whole environment, as `KEY=VALUE` entries.
    pub env: Vec<Vec<u8>>,
    /// The command's working directory, an absolute path in the guest.
    pub cwd: Vec<u8>,
    /// The user and group the command runs as (0:0 by default).
    pub uid: u32,
    pub gid: u32,
    /// Give the command a pseudo-terminal instead of plain streams.
    pub tty: bool,
    /// The terminal's size at start, rows and columns (TTY mode; 0 when unknown).
    pub rows: u16,
    pub cols: u16,
    /// The guest's hostname.
    pub hostname: Vec<u8>,
    /// Report guest-init's steps on the channel (`--debug`).
    pub debug: bool,
    pub cgroups: Cgroups,
    pub overlay: Overlay,
    /// Another root folder on the host (`--root`); empty for the host's own `/`.
    pub root: Vec<u8>,
    pub volumes: Vec<Volume>,
    pub net: Net,
    /// Wait for the launcher's `NetReady` (port forwards in place) before the command.
    pub wait_for_network: bool,
    /// The kernel calibrated its delay loop this boot: report the result (BogoMIPS) so the
    /// launcher can skip calibrating next time.
    pub measure_lpj: bool,
    /// `sekexe start`: no command; once set up, serve `sekexe exec` sessions until told to
    /// stop. (A session's own request leaves the guest-wide fields at their defaults.)
    pub serve: bool,
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new(MAGIC, VERSION);
        e.list(&self.argv)
            .list(&self.env)
            .bytes(&self.cwd)
            .u32(self.uid)
            .u32(self.gid)
            .bool(self.tty)
            .u32(self.rows as u32)
            .u32(self.cols as u32)
            .bytes(&self.hostname)
            .bool(self.debug)
            .u8(match self.cgroups {
                Cgroups::None => 0,
                Cgroups::V2 => 1,
                Cgroups::V1 => 2,
            });
        match &self.overlay {
            Overlay::None => e.u8(0),
            Overlay::Tmpfs => e.u8(1),
            Overlay::Disk(dev) => e.u8(2).bytes(dev),
        };
        e.bytes(&self.root).u32(self.volumes.len() as u32);
        for v in &self.volumes {
            e.bytes(&v.host).bytes(&v.guest).bool(v.writable);
        }
        match &self.net {
            Net::None => e.u8(0),
            Net::Dhcp => e.u8(1),
            Net::Static {
                address,
                prefix,
                gateway,
                dns,
            } => {
                let gateway = gateway.map(|g| g.octets());
                let dns: Vec<[u8; 4]> = dns.iter().map(Ipv4Addr::octets).collect();
                e.u8(2)
                    .bytes(&address.octets())
                    .u8(*prefix)
                    .bytes(gateway.as_ref().map_or(&[][..], |g| &g[..]));
                e.list(&dns)
            }
        };
        e.bool(self.wait_for_network)
            .bool(self.measure_lpj)
            .bool(self.serve);
        e.finish()
    }

    pub fn decode(data: &[u8]) -> Result<Request, DecodeError> {
        let mut d = Decoder::new(data, MAGIC, VERSION)?;
        let req = Request {
            argv: d.list("argv")?,
            env: d.list("env")?,
            cwd: d.bytes("cwd")?,
            uid: d.u32("uid")?,
            gid: d.u32("gid")?,
            tty: d.bool("tty")?,
            rows: u16::try_from(d.u32("rows")?).map_err(|_| DecodeError::BadValue("rows"))?,
            cols: u16::try_from(d.u32("cols")?).map_err(|_| DecodeError::BadValue("cols"))?,
            hostname: d.bytes("hostname")?,
            debug: d.bool("debug")?,
            cgroups: match d.u8("cgroups")? {
                0 => Cgroups::None,
                1 => Cgroups::V2,
                2 => Cgroups::V1,
                _ => return Err(DecodeError::BadValue("cgroups")),
            },
            overlay: match d.u8("overlay")? {
                0 => Overlay::None,
                1 => Overlay::Tmpfs,
                2 => Overlay::Disk(d.bytes("overlay")?),
                _ => return Err(DecodeError::BadValue("overlay")),
            },
            root: d.bytes("root")?,
            volumes: {
                let count = d.u32("volumes")? as usize;
                // Each volume takes at least 9 bytes; a hostile count cannot over-allocate.
                let mut v = Vec::with_capacity(count.min(d.remaining() / 9));
                for _ in 0..count {
                    v.push(Volume {
                        host: d.bytes("volume host")?,
                        guest: d.bytes("volume guest")?,
                        writable: d.bool("volume writable")?,
                    });
                }
                v
            },
            net: match d.u8("net")? {
                0 => Net::None,
                1 => Net::Dhcp,
                2 => {
                    let ip4 = |b: Vec<u8>| {
                        <[u8; 4]>::try_from(b)
                            .map(Ipv4Addr::from)
                            .map_err(|_| DecodeError::BadValue("net"))
                    };
                    let address = ip4(d.bytes("net address")?)?;
                    let prefix = d.u8("net prefix")?;
                    let gateway = d.bytes("net gateway")?;
                    let gateway = if gateway.is_empty() {
                        None
                    } else {
                        Some(ip4(gateway)?)
                    };
                    let dns = d
                        .list("net dns")?
                        .into_iter()
                        .map(ip4)
                        .collect::<Result<_, _>>()?;
                    if prefix > 32 {
                        return Err(DecodeError::BadValue("net prefix"));
                    }
                    Net::Static {
                        address,
                        prefix,
                        gateway,
                        dns,
                    }
                }
                _ => return Err(DecodeError::BadValue("net")),
            },
            wait_for_network: d.bool("wait_for_network")?,
            measure_lpj: d.bool("measure_lpj")?,
            serve: d.bool("serve")?,
        };
        d.finish()?;
        req.validate()?;
        Ok(req)
    }

    /// The invariants exec needs: a command, no NUL bytes (they cannot reach execve), and
    /// environment entries of the form KEY=VALUE.
    pub fn validate(&self) -> Result<(), DecodeError> {
        if self.argv.is_empty() != self.serve {
            return Err(DecodeError::BadValue("argv"));
        }
        if self.argv.iter().any(|a| a.contains(&0)) {
            return Err(DecodeError::BadValue("argv"));
        }
        let env_ok = |e: &Vec<u8>| !e.contains(&0) && e.iter().skip(1).any(|&b| b == b'=');
        if !self.env.iter().all(env_ok) {
            return Err(DecodeError::BadValue("env"));
        }
        if self.cwd.first() != Some(&b'/') || self.cwd.contains(&0) {
            return Err(DecodeError::BadValue("cwd"));
        }
        if self.hostname.contains(&0) || self.hostname.len() > 64 {
            return Err(DecodeError::BadValue("hostname"));
        }
        let absolute = |p: &[u8]| p.first() == Some(&b'/') && !p.contains(&0);
        if !self.root.is_empty() && !absolute(&self.root) {
            return Err(DecodeError::BadValue("root"));
        }
        if let Overlay::Disk(dev) = &self.overlay {
            if dev.is_empty() || !dev.iter().all(|b| b.is_ascii_alphanumeric()) {
                return Err(DecodeError::BadValue("overlay"));
            }
        }
        if !self
            .volumes
            .iter()
            .all(|v| absolute(&v.host) && absolute(&v.guest))
        {
            return Err(DecodeError::BadValue("volumes"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Request {
        Request {
            argv: vec![
                b"printf".to_vec(),
                b"%s|".to_vec(),
                b"".to_vec(),
                b"two words".to_vec(),
                b"new\nline".to_vec(),
                "\u{e9}t\u{e9}".as_bytes().to_vec(),
                b"\xff\xfe".to_vec(),
            ],
            env: vec![
                b"PATH=/bin".to_vec(),
                b"EMPTY=".to_vec(),
                b"EQ=a=b".to_vec(),
            ],
            cwd: b"/tmp/a dir".to_vec(),
            uid: 1000,
            gid: 100,
            tty: true,
            rows: 24,
            cols: 80,
            hostname: b"sekexe".to_vec(),
            debug: false,
            cgroups: Cgroups::V1,
            overlay: Overlay::Disk(b"ubdc".to_vec()),
            root: b"/srv/root fs".to_vec(),
            volumes: vec![
                Volume {
                    host: b"/home/me/src".to_vec(),
                    guest: b"/src".to_vec(),
                    writable: true,
                },
                Volume {
                    host: b"/data".to_vec(),
                    guest: b"/data".to_vec(),
                    writable: false,
                },
            ],
            net: Net::Static {
                address: Ipv4Addr::new(10, 0, 2, 15),
                prefix: 24,
                gateway: Some(Ipv4Addr::new(10, 0, 2, 2)),
                dns: vec![Ipv4Addr::new(10, 0, 2, 3), Ipv4Addr::new(1, 1, 1, 1)],
            },
            wait_for_network: true,
            measure_lpj: true,
            serve: false,
        }
    }

    #[test]
    fn round_trips_exact_bytes() {
        let req = sample();
        assert_eq!(Request::decode(&req.encode()).unwrap(), req);
    }

    #[test]
    fn rejects_what_exec_cannot_take() {
        let mut r = sample();
        r.argv.clear();
        assert_eq!(
            Request::decode(&r.encode()),
            Err(DecodeError::BadValue("argv"))
        );
        let mut r = sample();
        r.argv[1] = b"a\0b".to_vec();
        assert_eq!(
            Request::decode(&r.encode()),
            Err(DecodeError::BadValue("argv"))
        );
        let mut r = sample();
        r.env.push(b"NOEQUALS".to_vec());
        assert_eq!(
            Request::decode(&r.encode()),
            Err(DecodeError::BadValue("env"))
        );
        let mut r = sample();
        r.env.push(b"=value".to_vec());
        assert_eq!(
            Request::decode(&r.encode()),
            Err(DecodeError::BadValue("env"))
        );
        let mut r = sample();
        r.cwd = b"relative".to_vec();
        assert_eq!(
            Request::decode(&r.encode()),
            Err(DecodeError::BadValue("cwd"))
        );
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let data = sample().encode();
        for len in 0..data.len() {
            assert!(
                Request::decode(&data[..len]).is_err(),
                "prefix of {len} bytes"
            );
        }
    }
}
