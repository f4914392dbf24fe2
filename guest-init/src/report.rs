//! What every end of a run shares: the panic hook, and powering off. The panic hook can only
//! reach what is stored here, so the channel is recorded as it appears.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use sekexe_wire::status::Timeline;
use sekexe_wire::{GuestFrame, Outcome, Status};

use crate::channel::{self, Channel};
use crate::log::console;

/// How long guest-init waits for the launcher to acknowledge the end of the run.
pub const END_ACK_WAIT: Duration = Duration::from_secs(2);

static CHANNEL_FD: AtomicI32 = AtomicI32::new(-1);
/// This process is a warm guest's session relay, not PID 1: a panic ends the session only.
static SESSION: AtomicBool = AtomicBool::new(false);

pub fn set_channel(channel: &Channel) {
    CHANNEL_FD.store(channel.fd().as_raw_fd(), Ordering::SeqCst);
}

/// In a session's relay: a panic reports on the session's channel and ends the session.
pub fn set_session(channel: &Channel) {
    SESSION.store(true, Ordering::SeqCst);
    set_channel(channel);
}

/// A panic still writes a status and powers off: PID 1 must not exit.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = format!("guest-init panicked: {info}");
        console(&message);
        // The launcher stops the kernel on End: the command's writes must reach the host first.
        nix::unistd::sync();
        let fd = CHANNEL_FD.load(Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: the channel fd stays open for guest-init's whole life (the Channel is
            // never dropped before power-off), and this borrow ends before power_off.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            let status = Status {
                outcome: Outcome::GuestFailed { message },
                timeline: Timeline::default(),
                lpj: 0,
            };
            let _ = channel::write_frame_raw(fd, GuestFrame::Status(&status.encode()));
            let _ = channel::write_frame_raw(fd, GuestFrame::End);
        }
        if SESSION.load(Ordering::SeqCst) {
            std::process::exit(1);
        }
        power_off()
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
