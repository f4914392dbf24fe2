//! From the command line to a run: options, their validation, the network, the run folder,
//! and where things live on the host.

pub mod cachekey;
pub mod cli;
pub mod config;
pub mod memory;
pub mod net;
pub mod overlaydir;
pub mod paths;
pub mod rundir;
pub mod safefile;
pub mod units;
