//! The end of every run: write the status record, tell the launcher, power off. Failures and
//! panics take the same road, so the guest always powers off and, when the exchange folder is
//! attached, always leaves a status saying what happened.

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use nix::sys::signalfd::SignalFd;
use sekexe_wire::status::Timeline;
use sekexe_wire::{GuestFrame, Outcome, Status};

use crate::channel::{self, Channel};
use crate::clock;
use crate::exchange::Exchange;
use crate::log::console;
use crate::reaper;

/// How long guest-init waits for the launcher to acknowledge the end of the run.
const END_ACK_WAIT: Duration = Duration::from_secs(2);

/// What the panic hook needs, set as soon as it exists.
static EXCHANGE: OnceLock<Exchange> = OnceLock::new();
static CHANNEL_FD: AtomicI32 = AtomicI32::new(-1);

pub struct Report {
    pub timeline: Timeline,
}

impl Report {
    pub fn new(timeline: Timeline) -> Self {
        Report { timeline }
    }

    pub fn set_exchange(&mut self, exchange: Exchange) {
        let _ = EXCHANGE.set(exchange);
    }

    pub fn set_channel(&mut self, channel: &Channel) {
        CHANNEL_FD.store(channel.fd().as_raw_fd(), Ordering::SeqCst);
    }

    /// The value, or the end of the run with a status naming `what` failed.
    pub fn or_fail<T>(&mut self, result: anyhow::Result<T>, what: &str) -> T {
        match result {
            Ok(v) => v,
            Err(e) => fail(&format!("{what}: {e:#}"), self.timeline),
        }
    }

    /// The normal end: leftovers are gone and output is drained; report and power off.
    pub fn finish(mut self, outcome: Outcome, channel: &mut Channel, signals: &SignalFd) -> ! {
        reaper::reap(None);
        let _ = signals;
        self.timeline.report_ns = clock::boottime_ns();
        let status = Status {
            outcome,
            timeline: self.timeline,
        };
        if let Some(exchange) = EXCHANGE.get() {
            if let Err(e) = exchange.write_status(&status) {
                console(&format!("writing the status record: {e:#}"));
            }
        }
        channel.send(GuestFrame::End);
        channel.end_handshake(END_ACK_WAIT);
        power_off()
    }
}

/// Ends the run after a failure of guest-init itself.
pub fn fail(message: &str, mut timeline: Timeline) -> ! {
    console(message);
    timeline.report_ns = clock::boottime_ns();
    if let Some(exchange) = EXCHANGE.get() {
        let status = Status {
            outcome: Outcome::GuestFailed {
                message: message.to_string(),
            },
            timeline,
        };
        if let Err(e) = exchange.write_status(&status) {
            console(&format!("writing the status record: {e:#}"));
        }
    }
    let fd: RawFd = CHANNEL_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: the channel fd stays open for guest-init's whole life (the Channel is never
        // dropped before power-off), and this borrow ends before power_off.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let _ = channel::write_frame_raw(fd, GuestFrame::End);
    }
    power_off()
}

pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        fail(&format!("guest-init panicked: {info}"), Timeline::default());
    }));
}

/// Flushes the guest's writes to the host (hostfs volumes, the overlay folder) and powers off.
/// Never returns: should reboot(2) fail, PID 1 waits to be killed rather than exit (an exiting
/// PID 1 panics the kernel).
pub fn power_off() -> ! {
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    console("reboot(RB_POWER_OFF) failed; waiting to be killed");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
