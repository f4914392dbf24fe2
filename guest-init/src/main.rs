//! sekexe-init: PID 1 in the guest kernel.
//!
//! It reads like the boot script it replaces: block signals, mount the early filesystems,
//! attach the run's exchange folder and channel, read the request, set the guest up, run the
//! command while relaying its streams, terminate what it left behind, report how it ended, and
//! power off. PID 1 never returns and never panics: every way out, a panic included, writes a
//! status (when it can) and powers the guest off.

mod channel;
mod clock;
mod exchange;
mod log;
mod mounts;
mod reaper;
mod relay;
mod report;
mod signals;
mod spawn;

use sekexe_wire::status::{Outcome, Timeline};

use crate::channel::Channel;
use crate::log::Log;
use crate::report::Report;

fn main() -> ! {
    let mut report = Report::new(Timeline {
        init_ns: clock::boottime_ns(),
        ..Timeline::default()
    });
    let mut log = Log::new();
    report::install_panic_hook();

    let signals = report.or_fail(signals::block_all(), "blocking signals");
    report.or_fail(
        mounts::mount_early(&mut log),
        "mounting the early filesystems",
    );
    let exchange = report.or_fail(exchange::attach(&mut log), "attaching the exchange folder");
    report.set_exchange(exchange.clone());
    let mut channel = report.or_fail(Channel::open(), "opening the channel console");
    channel.send(sekexe_wire::GuestFrame::Hello);
    report.set_channel(&channel);

    let request = report.or_fail(exchange.read_request(), "reading the run request");
    log.set_debug(request.debug);
    log.flush(&mut channel);
    report.or_fail(
        mounts::keep_cwd_visible(&request.cwd, &mut log),
        "making the working directory visible",
    );
    report.or_fail(
        mounts::set_hostname(&request.hostname),
        "setting the hostname",
    );

    let outcome = match spawn::command(&request, &mut log) {
        Ok(command) => {
            report.timeline.exec_ns = clock::boottime_ns();
            channel.send(sekexe_wire::GuestFrame::Started);
            let outcome = relay::run(&mut channel, &signals, &exchange, command, &mut log);
            report.timeline.exit_ns = clock::boottime_ns();
            outcome
        }
        Err(outcome) => {
            reaper::terminate_leftovers(&signals);
            outcome
        }
    };
    if let Outcome::GuestFailed { message } = &outcome {
        log.error(message);
    }
    report.finish(outcome, &mut channel, &signals)
}
