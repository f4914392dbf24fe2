//! Kernels: finding the one to boot, checking what it has, rendering its command line,
//! remembering its calibration, and explaining how it failed.

pub mod calibration;
pub mod cmdline;
pub mod diagnose;
pub mod kconfig;
pub mod kernel;
pub mod kernelcmd;
pub mod userspace;
