//! The command's stdin, from the launcher's stdin to the guest: small chunks inline on the
//! channel, large ones as files in the run folder (hostfs reads them far faster than the
//! console carries bytes). Paced by guest-init's credits: at most [`STDIN_WINDOW`] bytes are
//! in flight. A file is removed once guest-init says it has read it (by its number, so no
//! late credit can remove one it has not read yet); the rest go with the run folder.

use std::collections::BTreeSet;

use anyhow::Result;
use sekexe_wire::frame::{stdin_file_name, MAX_INLINE_STDIN};
use sekexe_wire::HostFrame;

use crate::rundir::Files;

/// Stdin is read in chunks of up to this much; a chunk over MAX_INLINE_STDIN becomes a file.
pub const STDIN_CHUNK: usize = 1 << 20;
/// At most this much stdin is in flight to the guest before it reports it consumed.
pub const STDIN_WINDOW: usize = 4 * STDIN_CHUNK;

pub struct StdinPump {
    files: Files,
    /// Whose stdin files these are (0: the run's command; others: `sekexe exec` sessions).
    session: u32,
    /// The guest still wants stdin.
    open: bool,
    /// Our stdin reached its end (as opposed to the guest no longer wanting it).
    ended: bool,
    in_flight: usize,
    next_seq: u32,
    /// Files guest-init has not yet said it read.
    pending: BTreeSet<u32>,
}

impl StdinPump {
    pub fn new(files: Files, session: u32) -> StdinPump {
        StdinPump {
            files,
            session,
            open: true,
            ended: false,
            in_flight: 0,
            next_seq: 0,
            pending: BTreeSet::new(),
        }
    }

    /// Whether a chunk of up to [`STDIN_CHUNK`] may be read and sent now.
    pub fn wants_input(&self) -> bool {
        self.open && self.in_flight + STDIN_CHUNK <= STDIN_WINDOW
    }

    /// Passes a chunk read from our stdin to the guest, as a frame given to `send`. An error
    /// means the chunk could not be handed over (the run must end: the command would see its
    /// stdin cut short).
    pub fn pass(&mut self, data: &[u8], send: &mut impl FnMut(HostFrame<'_>)) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if data.len() <= MAX_INLINE_STDIN {
            send(HostFrame::Stdin(data));
        } else {
            let seq = self.next_seq;
            self.files
                .create(&stdin_file_name(self.session, seq), data)?;
            self.next_seq += 1;
            self.pending.insert(seq);
            send(HostFrame::StdinFile {
                seq,
                len: data.len() as u32,
            });
        }
        self.in_flight += data.len();
        Ok(())
    }

    /// Our stdin ended.
    pub fn end(&mut self, send: &mut impl FnMut(HostFrame<'_>)) {
        self.open = false;
        self.ended = true;
        send(HostFrame::StdinEof);
    }

    /// The guest handed `n` more bytes to the command: more may go.
    pub fn credit(&mut self, n: u32) {
        self.in_flight = self.in_flight.saturating_sub(n as usize);
    }

    /// guest-init is done with file `seq`: it goes. (A number we did not hand out is
    /// ignored: the guest names nothing else for removal.)
    pub fn file_read(&mut self, seq: u32) {
        if self.pending.remove(&seq) {
            self.files.remove(&stdin_file_name(self.session, seq));
        }
    }

    /// The command closed its stdin: stop reading ours.
    pub fn closed_by_guest(&mut self) {
        self.open = false;
    }

    /// A new reader takes over (the debug shell after the command): the stream goes on
    /// unless it had ended. Files still on their way are left to guest-init, which reads and
    /// acknowledges them in order.
    pub fn restart(&mut self) {
        self.in_flight = 0;
        self.open = !self.ended;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pump() -> (StdinPump, crate::rundir::RunDir, tempfile::TempDir) {
        let base = tempfile::tempdir().unwrap();
        let run = crate::rundir::RunDir::create(base.path()).unwrap();
        (StdinPump::new(run.files().unwrap(), 0), run, base)
    }

    fn frames(p: &mut StdinPump, data: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        p.pass(data, &mut |f| out.push(format!("{f:?}"))).unwrap();
        out
    }

    #[test]
    fn small_chunks_go_inline_and_large_ones_as_files() {
        let (mut p, run, _base) = pump();
        assert_eq!(frames(&mut p, b"hi"), ["Stdin([104, 105])"]);
        let big = vec![1u8; MAX_INLINE_STDIN + 1];
        assert_eq!(
            frames(&mut p, &big),
            [format!("StdinFile {{ seq: 0, len: {} }}", big.len())]
        );
        assert_eq!(std::fs::read(run.path().join("stdin-0")).unwrap(), big);
        assert_eq!(frames(&mut p, &[1u8; MAX_INLINE_STDIN]).len(), 1);
        assert!(!run.path().join("stdin-1").exists());
        assert!(frames(&mut p, b"").is_empty());
    }

    #[test]
    fn no_more_than_the_window_is_in_flight() {
        let (mut p, _run, _base) = pump();
        let chunk = vec![0u8; STDIN_CHUNK];
        let mut sent = 0;
        while p.wants_input() {
            frames(&mut p, &chunk);
            sent += 1;
        }
        assert_eq!(sent, STDIN_WINDOW / STDIN_CHUNK);
        p.credit(STDIN_CHUNK as u32 - 1);
        assert!(!p.wants_input(), "one byte short of a chunk's room");
        p.credit(1);
        assert!(p.wants_input());
    }

    #[test]
    fn files_are_removed_when_the_guest_has_read_them_and_only_then() {
        let (mut p, run, _base) = pump();
        let file = |n: u32| run.path().join(format!("stdin-{n}"));
        let chunk = vec![0u8; 2000];
        frames(&mut p, &chunk); // file 0
        frames(&mut p, b"inline");
        frames(&mut p, &chunk); // file 1
        p.credit(100_000);
        assert!(
            file(0).exists() && file(1).exists(),
            "credits pace, they remove nothing"
        );
        p.file_read(1);
        assert!(file(0).exists() && !file(1).exists());
        p.file_read(0);
        assert!(!file(0).exists());
        // A number never handed out removes nothing (not even a file of that name).
        std::fs::write(file(9), "x").unwrap();
        p.file_read(9);
        assert!(file(9).exists());
    }

    #[test]
    fn the_end_and_the_guests_close_stop_the_input_and_a_restart_resumes_it() {
        let (mut p, run, _base) = pump();
        frames(&mut p, &[0u8; 5000]);
        p.closed_by_guest();
        assert!(!p.wants_input());
        p.restart();
        assert!(p.wants_input(), "the debug shell reads stdin again");
        assert!(
            run.path().join("stdin-0").exists(),
            "a file on its way stays until guest-init has read it"
        );
        let mut eof = Vec::new();
        p.end(&mut |f| eof.push(format!("{f:?}")));
        assert_eq!(eof, ["StdinEof"]);
        p.restart();
        assert!(!p.wants_input(), "an ended stdin stays ended");
    }
}
