//! The guest-init run as a whole: what it has set up so far, and the ways it ends. Every
//! failure goes through `fail`, every normal end through `finish`; both report and power off,
//! and with `--debug-shell` both first open a shell for the user to look around.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::sys::signalfd::SignalFd;
use sekexe_wire::names::DEBUG_SHELL_PARAM;
use sekexe_wire::status::Timeline;
use sekexe_wire::{GuestFrame, Outcome, Request, Status};

use crate::channel::Channel;
use crate::clock;
use crate::exchange::Exchange;
use crate::log::{console, Log};
use crate::{reaper, relay, report, spawn};

/// How long the command waits for the launcher's port forwards.
const NET_READY_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

pub struct Guest {
    pub log: Log,
    timeline: Timeline,
    signals: Option<SignalFd>,
    channel: Option<Channel>,
    exchange: Option<Exchange>,
    debug_shell: bool,
    /// The kernel's loops per jiffy, when the request asks for them.
    lpj: u64,
}

impl Guest {
    pub fn start() -> Guest {
        let timeline = Timeline {
            init_ns: clock::boottime_ns(),
            ..Timeline::default()
        };
        report::install_panic_hook();
        Guest {
            log: Log::new(),
            timeline,
            signals: None,
            channel: None,
            exchange: None,
            debug_shell: std::env::var_os(DEBUG_SHELL_PARAM).is_some_and(|v| v == "1"),
            lpj: 0,
        }
    }

    /// The value, or the end of the run with a status naming `what` failed.
    pub fn check<T>(&mut self, result: anyhow::Result<T>, what: &str) -> T {
        match result {
            Ok(v) => v,
            Err(e) => self.fail(&format!("{what}: {e:#}")),
        }
    }

    pub fn attach_signals(&mut self, signals: SignalFd) {
        self.signals = Some(signals);
    }

    pub fn attach_channel(&mut self, mut channel: Channel) {
        channel.send(GuestFrame::Hello);
        report::set_channel(&channel);
        self.channel = Some(channel);
    }

    pub fn attach_exchange(&mut self, exchange: Exchange) {
        self.exchange = Some(exchange);
    }

    pub fn read_request(&mut self) -> Request {
        let request = self
            .exchange
            .as_ref()
            .expect("exchange attached")
            .read_request();
        let request = self.check(request, "reading the run request");
        self.log.set_debug(request.debug);
        self.flush_log();
        if request.measure_lpj {
            self.lpj =
                lpj_from_cpuinfo(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default());
        }
        request
    }

    /// Port forwards are set up on the host while the guest boots; the command starts once
    /// the launcher says they are in place.
    pub fn wait_for_network(&mut self) {
        self.flush_log();
        let channel = self.channel.as_mut().expect("channel attached");
        match channel.wait_for_net_ready(NET_READY_WAIT) {
            Ok(()) => self.log.step("the launcher's port forwards are ready"),
            Err(e) => self.fail(&format!("waiting for the port forwards: {e:#}")),
        }
    }

    fn flush_log(&mut self) {
        if let Some(channel) = self.channel.as_mut() {
            self.log.flush(channel);
        }
    }

    /// Runs the command to its end, relaying its streams; its outcome.
    pub fn run_command(&mut self, request: &Request) -> Outcome {
        let (Some(channel), Some(signals)) = (self.channel.as_mut(), self.signals.as_ref()) else {
            unreachable!("the channel and signals are attached before the command runs")
        };
        match spawn::command(request, &mut self.log) {
            Ok(command) => {
                self.timeline.exec_ns = clock::boottime_ns();
                channel.send(GuestFrame::Started);
                let outcome = relay::run(
                    channel,
                    signals,
                    self.exchange.as_ref(),
                    command,
                    &mut self.log,
                );
                self.timeline.exit_ns = clock::boottime_ns();
                outcome
            }
            Err(outcome) => {
                reaper::terminate_leftovers(signals);
                outcome
            }
        }
    }

    /// A warm guest (`sekexe start`): serves `sekexe exec` sessions until stopped.
    pub fn serve(&mut self) -> ! {
        let (Some(channel), Some(signals), Some(exchange)) = (
            self.channel.as_mut(),
            self.signals.as_ref(),
            self.exchange.as_ref(),
        ) else {
            unreachable!("the channel, signals and exchange are attached before serving")
        };
        crate::serve::run(channel, signals, exchange, &mut self.log)
    }

    /// The normal end: the command's outcome is known and its leftovers are gone.
    pub fn finish(mut self, outcome: Outcome, request: &Request) -> ! {
        if let Outcome::GuestFailed { message } = &outcome {
            self.log.error(message);
        }
        if self.debug_shell && outcome != Outcome::Exited(0) {
            let reason = describe(&outcome, &request.argv[0]);
            self.open_debug_shell(&reason, Some(request));
        }
        self.report(outcome)
    }

    /// A step of guest-init failed.
    pub fn fail(&mut self, message: &str) -> ! {
        console(message);
        if self.debug_shell {
            self.open_debug_shell(&format!("guest-init failed: {message}"), None);
        }
        self.report(Outcome::GuestFailed {
            message: message.to_string(),
        })
    }

    /// Sends the status, then End, and powers off.
    fn report(&mut self, outcome: Outcome) -> ! {
        if let Some(signals) = &self.signals {
            reaper::terminate_leftovers(signals);
        }
        self.flush_log();
        self.timeline.report_ns = clock::boottime_ns();
        let status = Status {
            outcome,
            timeline: self.timeline,
            lpj: self.lpj,
        };
        // Everything the guest wrote (rw volumes, the overlay image) reaches the host before
        // End: from End on, the launcher may stop the kernel without waiting for power-off.
        nix::unistd::sync();
        if let Some(channel) = self.channel.as_mut() {
            channel.send(GuestFrame::Status(&status.encode()));
            channel.send(GuestFrame::End);
            channel.end_handshake(Some(report::END_ACK_WAIT), None);
        }
        report::power_off()
    }

    /// `--debug-shell`: a shell on a terminal, relayed to the user, before the run ends.
    fn open_debug_shell(&mut self, reason: &str, request: Option<&Request>) {
        let (Some(channel), Some(signals)) = (self.channel.as_mut(), self.signals.as_ref()) else {
            console("--debug-shell: no channel to the launcher yet, so no shell");
            return;
        };
        if channel.is_closed() {
            return;
        }
        channel.send(GuestFrame::DebugShell(reason.as_bytes()));
        let shell = shell_request(request);
        match spawn::command(&shell, &mut self.log) {
            Ok(command) => {
                relay::run(
                    channel,
                    signals,
                    self.exchange.as_ref(),
                    command,
                    &mut self.log,
                );
            }
            Err(outcome) => console(&format!("--debug-shell: cannot start /bin/sh: {outcome:?}")),
        }
    }
}

/// The debug shell: /bin/sh on a terminal, with the command's environment and folder when
/// they are known.
fn shell_request(request: Option<&Request>) -> Request {
    let mut env = match request {
        Some(r) => r.env.clone(),
        None => vec![
            format!("PATH={}", sekexe_wire::names::DEFAULT_PATH).into_bytes(),
            b"HOME=/root".to_vec(),
            b"TERM=linux".to_vec(),
        ],
    };
    env.retain(|e| !e.starts_with(b"PS1="));
    env.push(b"PS1=[sekexe debug-shell] # ".to_vec());
    Request {
        argv: vec![b"/bin/sh".to_vec()],
        env,
        cwd: request
            .map(|r| r.cwd.clone())
            .filter(|c| Path::new(OsStr::from_bytes(c)).is_dir())
            .unwrap_or_else(|| b"/".to_vec()),
        uid: 0,
        gid: 0,
        tty: true,
        rows: request.map_or(0, |r| r.rows),
        cols: request.map_or(0, |r| r.cols),
        ..Request::default()
    }
}

/// Loops per jiffy from /proc/cpuinfo's "bogomips" (BogoMIPS = lpj * HZ / 500000, and UML
/// runs at HZ = 100); 0 when absent.
fn lpj_from_cpuinfo(text: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "bogomips").then(|| v.trim().parse::<f64>().ok())?
        })
        .map(|b| (b * 5000.0) as u64)
        .unwrap_or(0)
}

/// How the command ended, in words, for the debug shell's banner.
fn describe(outcome: &Outcome, argv0: &[u8]) -> String {
    let errno_text = |errno: i32| nix::errno::Errno::from_raw(errno).desc().to_string();
    match outcome {
        Outcome::GuestFailed { message } => format!("guest-init failed: {message}"),
        o => o
            .describe(&String::from_utf8_lossy(argv0), errno_text)
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lpj_comes_from_bogomips() {
        assert_eq!(
            super::lpj_from_cpuinfo("processor\t: 0\nbogomips\t: 6675.66\n"),
            33_378_300
        );
        assert_eq!(super::lpj_from_cpuinfo("nothing here"), 0);
    }
}
