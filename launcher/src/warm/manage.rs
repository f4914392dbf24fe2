//! `sekexe ls`, `logs` and `stop`: the user's warm guests, from their folders and their
//! launchers.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use super::control::{Ask, Client, Reply};
use super::exec::find;
use super::folder::{self, GuestDir, Liveness};
use crate::{safefile, units};

/// How long `stop` waits for the guest to be gone (its commands get 5 s after SIGTERM).
const STOP_WAIT: Duration = Duration::from_secs(30);

pub fn ls() -> Result<u8> {
    let guests = folder::guests_dir()?;
    let mut rows = vec![[
        "NAME".to_string(),
        "STATE".into(),
        "UPTIME".into(),
        "COMMANDS".into(),
        "KERNEL".into(),
    ]];
    let mut gone = Vec::new();
    for dir in folder::list(&guests) {
        match dir.liveness() {
            Liveness::Up => {
                let state = dir.state();
                let commands = sessions(&dir).map_or("?".into(), |n| n.to_string());
                let uptime = state.as_ref().map_or("starting".into(), |s| {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    units::format_duration(Duration::from_secs(now.saturating_sub(s.started)))
                });
                let kernel = state.map_or(String::new(), |s| units::shown(&s.kernel));
                rows.push([dir.name.clone(), "running".into(), uptime, commands, kernel]);
            }
            Liveness::Gone(why) => {
                let why = why.unwrap_or_else(|| "its launcher was killed".into());
                gone.push(format!("{}: gone: {why}", dir.name));
                dir.remove();
            }
        }
    }
    let mut out = std::io::stdout().lock();
    if rows.len() > 1 {
        let widths: Vec<usize> = (0..5)
            .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
            .collect();
        for r in &rows {
            let line: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            writeln!(out, "{}", line.join("  ").trim_end())?;
        }
    }
    drop(out);
    // A guest that died is named once, then forgotten.
    for g in gone {
        eprintln!("sekexe: {g} (removed)");
    }
    Ok(0)
}

/// The number of commands a guest runs, from its launcher.
fn sessions(dir: &GuestDir) -> Option<u32> {
    let mut client = Client::connect(&dir.control(), &dir.name).ok()?;
    client.ask(&Ask::Info).ok()?;
    match client.reply(Duration::from_secs(2)).ok()? {
        (Reply::About(n), _) => Some(n),
        _ => None,
    }
}

pub fn logs(name: &str) -> Result<u8> {
    folder::check_name(name)?;
    let dir = GuestDir::at(&folder::guests_dir()?, name);
    if std::fs::symlink_metadata(&dir.path).is_err() {
        bail!("no warm guest named {name}: `sekexe ls` lists yours");
    }
    let mut log = safefile::read_small(&dir.console_log(), 9 << 20)
        .with_context(|| format!("the warm guest {name} has no console log yet"))?;
    // The guest wrote it: on a terminal its control characters (escape sequences) are shown,
    // not obeyed.
    if rustix::termios::isatty(std::io::stdout()) {
        for b in log.iter_mut() {
            if (*b < 0x20 && !matches!(*b, b'\n' | b'\t')) || *b == 0x7f {
                *b = b'?';
            }
        }
    }
    std::io::stdout().write_all(&log)?;
    Ok(0)
}

pub fn stop(name: &str) -> Result<u8> {
    let dir = find(name)?;
    let mut client = Client::connect(&dir.control(), name)?;
    client.ask(&Ask::Stop)?;
    if !client.wait_closed(STOP_WAIT) {
        bail!(
            "the warm guest {name} did not stop within {} s (its launcher is pid {})",
            STOP_WAIT.as_secs(),
            dir.state().map_or("unknown".into(), |s| s.pid.to_string())
        );
    }
    Ok(0)
}
