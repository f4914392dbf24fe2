//! The run's exchange folder: a private host folder the launcher made for this run, mounted
//! read-only over hostfs. The request and bulk stdin come in through it; nothing goes out
//! through it (the status travels on the channel), and the host keeps the kernel process from
//! writing there at all.

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use sekexe_wire::frame::{exec_request_name, stdin_file_name};
use sekexe_wire::names::{decode_param, EXCHANGE_PARAM, GUEST_EXCHANGE_DIR, REQUEST_FILE};
use sekexe_wire::Request;

use crate::log::Log;
use crate::mounts;

#[derive(Clone)]
pub struct Exchange {
    dir: PathBuf,
    /// Whose stdin files this relay takes (0: the run's command; others: exec sessions).
    session: u32,
}

/// Mounts the exchange folder named on the kernel command line at [`GUEST_EXCHANGE_DIR`].
pub fn attach(log: &mut Log) -> Result<Exchange> {
    // The kernel hands PID 1 unknown `key=value` parameters as its environment.
    let encoded = std::env::var(EXCHANGE_PARAM).map_err(|_| {
        anyhow!("no {EXCHANGE_PARAM}= on the kernel command line: guest-init is meant to be started by sekexe")
    })?;
    let host_path =
        decode_param(&encoded).ok_or_else(|| anyhow!("malformed {EXCHANGE_PARAM}={encoded}"))?;
    let dir = PathBuf::from(GUEST_EXCHANGE_DIR);
    mounts::mount_hostfs(Path::new(OsStr::from_bytes(&host_path)), &dir, true)?;
    log.step("exchange folder attached");
    Ok(Exchange { dir, session: 0 })
}

impl Exchange {
    /// An exchange folder that is already in place (a temporary folder in tests).
    #[cfg(test)]
    pub(crate) fn at(dir: PathBuf) -> Exchange {
        Exchange { dir, session: 0 }
    }

    /// The same folder, as seen by exec session `session`'s relay.
    pub fn for_session(&self, session: u32) -> Exchange {
        Exchange {
            dir: self.dir.clone(),
            session,
        }
    }

    /// Reads exec session `session`'s request (`sekexe exec`); a warm guest's sessions run
    /// a command each.
    pub fn read_exec_request(&self, session: u32) -> Result<Request> {
        let path = self.dir.join(exec_request_name(session));
        let data = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
        let request =
            Request::decode(&data).with_context(|| format!("decode {}", path.display()))?;
        if request.serve {
            anyhow::bail!(
                "{}: a session's request cannot ask to serve",
                path.display()
            );
        }
        Ok(request)
    }

    pub fn read_request(&self) -> Result<Request> {
        let path = self.dir.join(REQUEST_FILE);
        let data = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
        Request::decode(&data).with_context(|| format!("decode {}", path.display()))
    }

    /// Takes stdin chunk `seq` the launcher left as a file: reads it whole, then drops it from
    /// the guest's page cache (the launcher removes the file once it is credited).
    pub fn take_stdin_file(&self, seq: u32, len: u32) -> Result<Vec<u8>> {
        use std::io::Read;
        let path = self.dir.join(stdin_file_name(self.session, seq));
        let mut file =
            std::fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
        // One byte more than announced tells a longer file from an exact one.
        let mut data = Vec::with_capacity(len as usize + 1);
        (&mut file)
            .take(u64::from(len) + 1)
            .read_to_end(&mut data)
            .with_context(|| format!("read {}", path.display()))?;
        let _ = rustix::fs::fadvise(file.as_fd(), 0, None, rustix::fs::Advice::DontNeed);
        if data.len() != len as usize {
            anyhow::bail!(
                "{} holds {} bytes, the launcher announced {len}",
                path.display(),
                data.len()
            );
        }
        Ok(data)
    }
}
