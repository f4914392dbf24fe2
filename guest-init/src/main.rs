//! sekexe-init: PID 1 in the guest kernel.
//!
//! It reads like the boot script it replaces: block signals, mount /proc and /dev, open the
//! channel to the launcher, mount the rest, attach the run's exchange folder, read the request,
//! set the guest up, run the command while relaying its streams, terminate what it left behind,
//! report how it ended, and power off. PID 1 never returns and never panics: every way out, a
//! panic included, writes a status (when it can) and powers the guest off.

mod channel;
mod clock;
mod exchange;
mod guest;
mod log;
mod mounts;
mod reaper;
mod relay;
mod report;
mod signals;
mod spawn;

use crate::channel::Channel;
use crate::guest::Guest;

fn main() -> ! {
    let mut g = Guest::start();

    let signals = g.check(signals::block_all(), "blocking signals");
    g.attach_signals(signals);
    let base = mounts::mount_base(&mut g.log);
    g.check(base, "mounting /proc and /dev");
    let channel = g.check(Channel::open(), "opening the channel console");
    g.attach_channel(channel);
    let rest = mounts::mount_rest(&mut g.log);
    g.check(rest, "mounting the early filesystems");
    let exchange = exchange::attach(&mut g.log);
    let exchange = g.check(exchange, "attaching the exchange folder");
    g.attach_exchange(exchange);

    let request = g.read_request();
    let cwd = mounts::keep_cwd_visible(&request.cwd, &mut g.log);
    g.check(cwd, "making the working directory visible");
    g.check(
        mounts::set_hostname(&request.hostname),
        "setting the hostname",
    );

    let outcome = g.run_command(&request);
    g.finish(outcome, &request)
}
