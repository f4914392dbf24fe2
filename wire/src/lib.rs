//! The formats sekexe's launcher (host) and guest-init (PID 1 in the guest) both speak.
//!
//! Everything that crosses the host/guest boundary is defined here once: the run request the
//! launcher writes into the exchange folder, the status record guest-init sends back, the
//! frames multiplexed over the console channel, the exit codes, the signals passed on to the
//! command, how an outcome is worded, and the names of the files, folders and devices both
//! sides agree on; and the byte queue both ends' channels write from. Decoders treat their
//! input as hostile: they never panic and never allocate more than the input's own size.

pub mod codec;
pub mod exit;
pub mod frame;
pub mod names;
pub mod queue;
pub mod request;
pub mod signals;
pub mod status;

pub use codec::DecodeError;
pub use exit::ExitCode;
pub use frame::{FrameError, GuestFrame, HostFrame};
pub use request::{Cgroups, Net, Overlay, Request, Volume};
pub use status::{Outcome, Status};
