//! The kernel console (con0 and UML's own stdout/stderr): kept in memory for failure reports,
//! streamed to stderr with a prefix under `--debug`, never mixed into the command's output.

use std::collections::VecDeque;
use std::io::Write;

/// Keep at most this much of the log (the end of it).
const KEEP: usize = 1 << 20;

/// An unfinished line longer than this is shown as it is (`--debug`).
const MAX_PARTIAL: usize = 64 * 1024;

pub struct Console {
    log: VecDeque<u8>,
    dropped: bool,
    /// Under --debug, a line not yet printed because its end has not arrived.
    partial: Vec<u8>,
    live: bool,
}

impl Console {
    pub fn new(live: bool) -> Console {
        Console {
            log: VecDeque::new(),
            dropped: false,
            partial: Vec::new(),
            live,
        }
    }

    pub fn feed(&mut self, data: &[u8]) {
        self.log.extend(data);
        if self.log.len() > KEEP {
            let excess = self.log.len() - KEEP;
            self.log.drain(..excess);
            self.dropped = true;
        }
        if self.live {
            self.partial.extend_from_slice(data);
            let mut out = Vec::new();
            while let Some(nl) = self.partial.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.partial.drain(..=nl).collect();
                out.extend_from_slice(b"[kernel] ");
                out.extend_from_slice(&line);
            }
            // A guest that never ends a line must not grow the launcher's memory.
            if self.partial.len() > MAX_PARTIAL {
                out.extend_from_slice(b"[kernel] ");
                out.append(&mut self.partial);
                out.push(b'\n');
            }
            let _ = std::io::stderr().write_all(&out);
        }
    }

    /// Prints what is left of an unfinished line (at the end of a --debug run).
    pub fn flush_partial(&mut self) {
        if self.live && self.partial.iter().any(|b| !b.is_ascii_whitespace()) {
            let mut out = b"[kernel] ".to_vec();
            out.append(&mut self.partial);
            out.push(b'\n');
            // A guest that never ends a line must not grow the launcher's memory.
            if self.partial.len() > MAX_PARTIAL {
                out.extend_from_slice(b"[kernel] ");
                out.append(&mut self.partial);
                out.push(b'\n');
            }
            let _ = std::io::stderr().write_all(&out);
        }
    }

    /// The last `n` telling lines, for error messages: empty lines and the frames of kernel
    /// stack traces (which would push the panic message itself out of view) are left out.
    pub fn last_lines(&self, n: usize) -> Vec<String> {
        let (a, b) = self.log.as_slices();
        let text = String::from_utf8_lossy(&[a, b].concat()).into_owned();
        let lines: Vec<&str> = text
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .filter(|l| !l.trim().is_empty() && !is_stack_frame(l))
            .collect();
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| l.to_string())
            .collect()
    }

    /// The whole log as text, for recognising failures.
    pub fn text(&self) -> String {
        let (a, b) = self.log.as_slices();
        String::from_utf8_lossy(&[a, b].concat()).into_owned()
    }

    pub fn contents(&self) -> Vec<u8> {
        let (a, b) = self.log.as_slices();
        let mut v = Vec::with_capacity(self.log.len() + 64);
        if self.dropped {
            v.extend_from_slice(b"[... earlier output dropped ...]\n");
        }
        v.extend_from_slice(a);
        v.extend_from_slice(b);
        v
    }
}

/// ` [<606944ba>] ? _printk+0x0/0x94`, as UML prints call traces (after an optional time).
fn is_stack_frame(line: &str) -> bool {
    let l = line.trim_start();
    let l = match l.strip_prefix('[') {
        Some(rest) if !rest.starts_with('<') => {
            rest.split_once(']').map_or(l, |(_, r)| r.trim_start())
        }
        _ => l,
    };
    l.starts_with("[<")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_lines() {
        let mut c = Console::new(false);
        c.feed(b"one\ntwo\n\nthr");
        c.feed(b"ee\r\nfour");
        assert_eq!(c.last_lines(3), ["two", "three", "four"]);
        assert_eq!(c.last_lines(10).len(), 4);
    }

    #[test]
    fn stack_frames_do_not_hide_the_panic() {
        let mut c = Console::new(false);
        c.feed(b"Kernel panic - not syncing: Attempted to kill init!\n");
        for _ in 0..30 {
            c.feed(
                b" [<606944ba>] ? _printk+0x0/0x94\n[    0.5] [<6069f509>] dump_stack+0x1a/0x1c\n",
            );
        }
        c.feed(b"reboot: System halted\n");
        assert_eq!(
            c.last_lines(5),
            [
                "Kernel panic - not syncing: Attempted to kill init!",
                "reboot: System halted"
            ]
        );
    }

    #[test]
    fn bounded_to_the_end_of_the_log() {
        let mut c = Console::new(false);
        for i in 0..200_000 {
            c.feed(format!("line {i}\n").as_bytes());
        }
        assert!(c.contents().len() <= KEEP + 64);
        assert_eq!(c.last_lines(1), ["line 199999"]);
        assert!(c.contents().starts_with(b"[... earlier"));
    }
}
