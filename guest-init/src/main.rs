//! sekexe-init: PID 1 in the guest kernel.
//!
//! It reads like the boot script it replaces: block signals, mount /proc and /dev, open the
//! channel to the launcher, mount the rest, attach the run's exchange folder, read the request,
//! set the guest up, run the command while relaying its streams, terminate what it left behind,
//! report how it ended, and power off. PID 1 never returns and never panics: every way out, a
//! panic included, writes a status (when it can) and powers the guest off.

mod cgroups;
mod channel;
mod clock;
mod exchange;
mod guest;
mod log;
mod modules;
mod mounts;
mod net;
mod points;
mod reaper;
mod relay;
mod report;
mod root;
mod serve;
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
    let scratch = mounts::mount_scratch(&mut g.log);
    g.check(scratch, "mounting /run and /tmp");
    let exchange = exchange::attach(&mut g.log);
    let exchange = g.check(exchange, "attaching the exchange folder");
    g.attach_exchange(exchange);

    let request = g.read_request();
    if root::wanted(&request) {
        let switched = root::switch(&request, &mut g.log);
        g.check(switched, "setting up the root");
    }
    let rest = mounts::mount_rest(&mut g.log);
    g.check(rest, "mounting the early filesystems");
    let modules = modules::setup(&mut g.log);
    g.check(modules, "showing the kernel's modules at /lib/modules");
    let cgroups = cgroups::mount_cgroups(request.cgroups, &mut g.log);
    g.check(cgroups, "mounting cgroups");
    let volumes = mounts::mount_volumes(&request.volumes, &mut g.log);
    g.check(volumes, "mounting volumes");
    if request.root.is_empty() {
        let cwd = mounts::keep_cwd_visible(&request.cwd, &request.volumes, &mut g.log);
        g.check(cwd, "making the working directory visible");
    }
    let hostname = mounts::set_hostname(&request.hostname);
    g.check(hostname, "setting the hostname");
    let network = net::setup(&request, &mut g.log);
    g.check(network, "setting up the network");
    if request.wait_for_network {
        g.wait_for_network();
    }

    if request.serve {
        g.serve()
    }
    let outcome = g.run_command(&request);
    g.finish(outcome, &request)
}
