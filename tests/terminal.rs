//! Interactive use through `sekexe run`: the cases, shared with exec, are in
//! terminal_cases.rs.

use sekexe_tests::*;

#[path = "terminal_cases.rs"]
mod cases;
