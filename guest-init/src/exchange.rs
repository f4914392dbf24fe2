//! The run's exchange folder: a private host folder the launcher made for this run, mounted
//! read-write over hostfs. The request comes in through it; the status goes out through it.

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use sekexe_wire::frame::stdin_file_name;
use sekexe_wire::names::{
    decode_param, EXCHANGE_PARAM, GUEST_EXCHANGE_DIR, REQUEST_FILE, STATUS_FILE, STATUS_TMP_FILE,
};
use sekexe_wire::{Request, Status};

use crate::log::Log;
use crate::mounts;

#[derive(Clone)]
pub struct Exchange {
    dir: PathBuf,
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
    mounts::mount_hostfs(Path::new(OsStr::from_bytes(&host_path)), &dir, false)?;
    log.step("exchange folder attached");
    Ok(Exchange { dir })
}

impl Exchange {
    pub fn read_request(&self) -> Result<Request> {
        let path = self.dir.join(REQUEST_FILE);
        let data = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
        Request::decode(&data).with_context(|| format!("decode {}", path.display()))
    }

    /// Takes stdin chunk `seq` the launcher left as a file: reads it whole and removes it
    /// (which also drops it from the guest's page cache).
    pub fn take_stdin_file(&self, seq: u32, len: u32) -> Result<Vec<u8>> {
        let path = self.dir.join(stdin_file_name(seq));
        let data = std::fs::read(&path).with_context(|| format!("read {}", path.display()));
        let _ = std::fs::remove_file(&path);
        let data = data?;
        if data.len() != len as usize {
            anyhow::bail!(
                "{} holds {} bytes, the launcher announced {len}",
                path.display(),
                data.len()
            );
        }
        Ok(data)
    }

    /// Writes the status atomically: the launcher sees the whole record or none.
    pub fn write_status(&self, status: &Status) -> Result<()> {
        let tmp = self.dir.join(STATUS_TMP_FILE);
        let path = self.dir.join(STATUS_FILE);
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
        f.write_all(&status.encode())
            .with_context(|| format!("write {}", tmp.display()))?;
        // hostfs caches writes in the guest: without this the rename could reach the host
        // before the data does.
        f.sync_all()
            .with_context(|| format!("fsync {}", tmp.display()))?;
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("rename {} to {}", tmp.display(), path.display()))
    }
}
