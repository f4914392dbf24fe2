//! Port forwards (`-p`): the client of slirp4netns's API socket, which opens once the launcher
//! has connected the kernel's link to the helper.

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::Forward;

/// Port forwards through slirp4netns's API, which opens once the link is connected.
pub struct Forwarder {
    api: PathBuf,
    forwards: Vec<Forward>,
    guest: Ipv4Addr,
    deadline: Instant,
}

/// Moves pending forwards on: `Some(Ok(()))` once all are in place (the guest may then use
/// its network), `Some(Err)` if they cannot be, `None` while slirp4netns's API is not up yet or
/// nothing is pending. Done or failed, `pending` is emptied.
pub fn advance(pending: &mut Option<Forwarder>) -> Option<Result<()>> {
    let result = pending.as_mut()?.try_add();
    match result {
        Ok(false) => None,
        done => {
            *pending = None;
            Some(done.map(|_| ()))
        }
    }
}

impl Forwarder {
    pub fn new(api: PathBuf, forwards: Vec<Forward>, guest: Ipv4Addr) -> Forwarder {
        Forwarder {
            api,
            forwards,
            guest,
            deadline: Instant::now() + Duration::from_secs(30),
        }
    }

    /// `Ok(true)` once every forward is in place; `Ok(false)` while the API is not up yet.
    pub fn try_add(&mut self) -> Result<bool> {
        // It binds before it listens: until then a connection is refused.
        let not_up = |e: &std::io::Error| {
            matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            )
        };
        while let Some(f) = self.forwards.first() {
            let request = format!(
                "{{\"execute\": \"add_hostfwd\", \"arguments\": {{\"proto\": \"{}\", \"host_addr\": \"{}\", \"host_port\": {}, \"guest_addr\": \"{}\", \"guest_port\": {}}}}}",
                if f.udp { "udp" } else { "tcp" },
                f.host_addr,
                f.host_port,
                self.guest,
                f.guest_port
            );
            let mut s = match UnixStream::connect(&self.api) {
                Ok(s) => s,
                Err(e) if not_up(&e) && Instant::now() <= self.deadline => return Ok(false),
                Err(e) if not_up(&e) => {
                    bail!("slirp4netns's API did not come up: no port forwarding")
                }
                Err(e) => return Err(e).context("connect to slirp4netns's API"),
            };
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(request.as_bytes())?;
            s.shutdown(std::net::Shutdown::Write)?;
            let mut reply = String::new();
            s.read_to_string(&mut reply)?;
            if !reply.contains("\"return\"") {
                bail!(
                    "-p {}:{}:{}: {} (is the port in use?)",
                    f.host_addr,
                    f.host_port,
                    f.guest_port,
                    reply.trim()
                );
            }
            self.forwards.remove(0);
        }
        Ok(true)
    }
}
