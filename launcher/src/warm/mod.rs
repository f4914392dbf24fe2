//! Warm guests: `sekexe start` boots once, `sekexe exec` runs many commands in the same kernel.

pub mod control;
pub mod daemon;
pub mod exec;
pub mod folder;
pub mod manage;
pub mod start;
