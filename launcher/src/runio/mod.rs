//! The run itself: the kernel as a host process (and its sentinel), the event loop that
//! relays streams, signals and the terminal, the console log, and the verdict.

pub mod console;
pub mod placement;
pub mod report;
pub mod sentinel;
pub mod session;
pub mod signals;
pub mod terminal;
pub mod uml;
pub mod verdict;
