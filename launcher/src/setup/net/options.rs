//! The network options as the user gives them: `--net`, `-p`, `--ip`, `--gateway`, `--dns`,
//! `--net-restrict`, parsed (clap calls these parsers) and checked together.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};

#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    None,
    User,
    /// The legacy slirp binary: the one given, else slirp-fullbolt or slirp on PATH.
    Slirp(Option<PathBuf>),
    Vde(PathBuf),
    Tap(String),
}

impl Mode {
    /// The sockets the kernel process makes itself in this mode: none but pairs (the
    /// network, if any, is an fd the launcher connects), unless its transport makes its own
    /// (the legacy slirp, the kernel's child: any; the tap transport: a packet socket).
    pub fn kernel_sockets(&self) -> crate::sandbox::Sockets {
        use crate::sandbox::Sockets;
        match self {
            Mode::None | Mode::User | Mode::Vde(_) => Sockets::PairsOnly,
            Mode::Slirp(_) => Sockets::Any,
            Mode::Tap(_) => Sockets::AnyButUnixStream,
        }
    }
}

/// One `-p [HOSTIP:]HOSTPORT:GUESTPORT[/udp]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Forward {
    pub host_addr: Ipv4Addr,
    pub host_port: u16,
    pub guest_port: u16,
    pub udp: bool,
}

/// `--ip ADDR/PREFIX [--gateway ADDR] [--dns ADDR]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Static {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NetConfig {
    pub mode: Mode,
    pub forwards: Vec<Forward>,
    pub restrict: bool,
    pub static_ip: Option<Static>,
}

pub fn parse_mode(text: &str) -> Result<Mode> {
    let hint = "use --net none, user, slirp[:PATH], vde:SWITCH or tap:IFACE";
    Ok(match text.split_once(':') {
        None if text == "none" => Mode::None,
        None if text == "user" => Mode::User,
        None if text == "slirp" => Mode::Slirp(None),
        Some(("slirp", path)) if !path.is_empty() => Mode::Slirp(Some(PathBuf::from(path))),
        Some(("vde", path)) if !path.is_empty() => Mode::Vde(PathBuf::from(path)),
        Some(("tap", name)) if valid_ifname(name) => Mode::Tap(name.to_string()),
        Some(("tap", name)) => bail!("tap:{name}: not an interface name ({hint})"),
        _ => bail!("unknown mode ({hint})"),
    })
}

fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

pub fn parse_forward(text: &str) -> Result<Forward> {
    let hint = "use -p [HOSTIP:]HOSTPORT:GUESTPORT[/udp], e.g. -p 8080:80";
    let (spec, udp) = match text.rsplit_once('/') {
        Some((s, "udp")) => (s, true),
        Some((s, "tcp")) => (s, false),
        Some(_) => bail!("the protocol is tcp or udp ({hint})"),
        None => (text, false),
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (addr, host, guest) = match parts.as_slice() {
        [h, g] => ("127.0.0.1", *h, *g),
        [a, h, g] => (*a, *h, *g),
        _ => bail!("{hint}"),
    };
    let port = |p: &str| -> Result<u16> {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => bail!("'{p}' is not a port (1-65535; {hint})"),
        }
    };
    let host_addr: Ipv4Addr = addr
        .parse()
        .map_err(|_| anyhow!("'{addr}' is not an IPv4 address ({hint})"))?;
    Ok(Forward {
        host_addr,
        host_port: port(host)?,
        guest_port: port(guest)?,
        udp,
    })
}

pub fn parse_cidr(text: &str) -> Result<(Ipv4Addr, u8)> {
    let hint = "use --ip ADDR/PREFIX, e.g. --ip 10.0.2.15/24";
    let (a, p) = text
        .split_once('/')
        .ok_or_else(|| anyhow!("no /PREFIX ({hint})"))?;
    let address = a
        .parse()
        .map_err(|_| anyhow!("'{a}' is not an IPv4 address ({hint})"))?;
    let prefix = match p.parse::<u8>() {
        Ok(n) if n <= 32 => n,
        _ => bail!("'/{p}' is not a prefix from 0 to 32 ({hint})"),
    };
    Ok((address, prefix))
}

/// Checks the network options together.
pub fn check(cfg: &NetConfig) -> Result<()> {
    if !cfg.forwards.is_empty() && cfg.mode != Mode::User {
        bail!("-p forwards ports only with --net user (the default): other modes cannot forward");
    }
    if !cfg.forwards.is_empty() && cfg.restrict {
        bail!("-p cannot be combined with --net-restrict, which keeps every connection out");
    }
    if cfg.restrict && cfg.mode != Mode::User {
        bail!("--net-restrict applies to --net user only");
    }
    if cfg.static_ip.is_some() && cfg.mode == Mode::None {
        bail!("--ip needs a network: not with --net none");
    }
    let mut seen = std::collections::HashSet::new();
    for f in &cfg.forwards {
        if !seen.insert((f.host_addr, f.host_port, f.udp)) {
            bail!("-p: {}:{} is forwarded twice", f.host_addr, f.host_port);
        }
    }
    Ok(())
}

/// Checks that the kernel has the transport the network mode uses: the legacy slirp one is
/// gone from Linux 6.16 on, the vector one carries the rest.
pub fn check_kernel(mode: &Mode, kernel: &crate::kconfig::Kconfig) -> Result<()> {
    let (option, name) = match mode {
        Mode::None => return Ok(()),
        Mode::Slirp(_) => ("UML_NET_SLIRP", "slirp"),
        Mode::User => ("UML_NET_VECTOR", "user"),
        Mode::Vde(_) => ("UML_NET_VECTOR", "vde"),
        Mode::Tap(_) => ("UML_NET_VECTOR", "tap"),
    };
    if kernel.builtin(option) {
        return Ok(());
    }
    match mode {
        Mode::Slirp(_) => bail!("--net slirp: this kernel has no legacy slirp transport (CONFIG_UML_NET_SLIRP, gone since Linux 6.16): use --net user, the same NAT through slirp4netns"),
        _ => bail!("--net {name}: this kernel has no vector network driver (CONFIG_UML_NET_VECTOR): use --net none or another --kernel"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_must_have_the_modes_transport() {
        let new = crate::kconfig::Kconfig::parse("CONFIG_UML_NET_VECTOR=y\n");
        let old = crate::kconfig::Kconfig::parse("CONFIG_UML_NET_SLIRP=y\n");
        assert!(check_kernel(&Mode::User, &new).is_ok());
        assert!(check_kernel(&Mode::None, &old).is_ok());
        assert!(check_kernel(&Mode::Slirp(None), &old).is_ok());
        let e = check_kernel(&Mode::Slirp(None), &new)
            .unwrap_err()
            .to_string();
        assert!(e.contains("use --net user"), "{e}");
        let e = check_kernel(&Mode::User, &old).unwrap_err().to_string();
        assert!(e.contains("CONFIG_UML_NET_VECTOR"), "{e}");
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode("none").unwrap(), Mode::None);
        assert_eq!(parse_mode("user").unwrap(), Mode::User);
        assert_eq!(parse_mode("slirp").unwrap(), Mode::Slirp(None));
        assert_eq!(
            parse_mode("slirp:/opt/slirp").unwrap(),
            Mode::Slirp(Some("/opt/slirp".into()))
        );
        assert_eq!(
            parse_mode("vde:/tmp/sw").unwrap(),
            Mode::Vde("/tmp/sw".into())
        );
        assert_eq!(parse_mode("tap:tap0").unwrap(), Mode::Tap("tap0".into()));
        for bad in [
            "",
            "usr",
            "vde:",
            "tap:",
            "tap:a b",
            "tap:waytoolonginterfacename",
            "slirp:",
        ] {
            assert!(parse_mode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn forwards() {
        let f = parse_forward("8080:80").unwrap();
        assert_eq!(
            (f.host_addr, f.host_port, f.guest_port, f.udp),
            (Ipv4Addr::LOCALHOST, 8080, 80, false)
        );
        let f = parse_forward("0.0.0.0:5353:53/udp").unwrap();
        assert_eq!(
            (f.host_addr, f.host_port, f.guest_port, f.udp),
            (Ipv4Addr::UNSPECIFIED, 5353, 53, true)
        );
        assert!(!parse_forward("1:2/tcp").unwrap().udp);
        for bad in [
            "80",
            "0:80",
            "80:0",
            "70000:80",
            "a:b",
            "1.2.3:80:80",
            "80:80/sctp",
            "x:80:80",
            "",
        ] {
            assert!(parse_forward(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cidrs() {
        assert_eq!(
            parse_cidr("10.0.2.15/24").unwrap(),
            (Ipv4Addr::new(10, 0, 2, 15), 24)
        );
        for bad in ["10.0.2.15", "10.0.2.15/33", "10.0.2/24", "x/24"] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn combinations() {
        let base = NetConfig {
            mode: Mode::User,
            forwards: vec![],
            restrict: false,
            static_ip: None,
        };
        assert!(check(&base).is_ok());
        let fwd = parse_forward("8080:80").unwrap();
        assert!(check(&NetConfig {
            mode: Mode::None,
            forwards: vec![fwd],
            ..base.clone()
        })
        .is_err());
        assert!(check(&NetConfig {
            restrict: true,
            forwards: vec![fwd],
            ..base.clone()
        })
        .is_err());
        assert!(check(&NetConfig {
            forwards: vec![fwd, fwd],
            ..base.clone()
        })
        .is_err());
        assert!(check(&NetConfig {
            mode: Mode::Tap("t".into()),
            restrict: true,
            ..base.clone()
        })
        .is_err());
        let ip = Static {
            address: Ipv4Addr::new(10, 0, 2, 9),
            prefix: 24,
            gateway: None,
            dns: vec![],
        };
        assert!(check(&NetConfig {
            mode: Mode::None,
            static_ip: Some(ip),
            ..base.clone()
        })
        .is_err());
    }
}
