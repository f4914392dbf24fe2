//! The queue of bytes each end of a channel has still to write: frames are appended at the
//! back and written from the front, in pieces as the other side takes them.
//!
//! A plain `Vec` drained from the front moves everything behind each piece written, which for
//! a full queue and a tty that takes a few KiB at a time costs more than the copy itself. Here
//! the front only advances; the bytes are moved down once at least half the buffer has been
//! written, so each byte is moved at most once on average.

/// Bytes queued for a non-blocking writer.
#[derive(Debug, Default)]
pub struct ByteQueue {
    buf: Vec<u8>,
    start: usize,
}

impl ByteQueue {
    pub fn with_capacity(n: usize) -> ByteQueue {
        ByteQueue {
            buf: Vec::with_capacity(n),
            start: 0,
        }
    }

    /// Bytes queued and not yet written.
    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What is still to be written, oldest first.
    pub fn unsent(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Appends what `fill` adds to the back (a frame's `encode_into`); it may only append.
    pub fn append_with(&mut self, fill: impl FnOnce(&mut Vec<u8>)) {
        let before = self.buf.len();
        fill(&mut self.buf);
        assert!(
            self.buf.len() >= before,
            "ByteQueue::append_with removed bytes"
        );
    }

    /// `n` bytes from the front were written.
    pub fn advance(&mut self, n: usize) {
        debug_assert!(n <= self.len(), "advanced past the queued bytes");
        self.start = (self.start + n).min(self.buf.len());
        if self.start == self.buf.len() {
            self.clear();
        } else if self.start > self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.start = 0;
    }

    /// Keeps only the first `len` bytes still to be written.
    pub fn truncate(&mut self, len: usize) {
        self.buf.truncate(self.start + len.min(self.len()));
        if self.is_empty() {
            self.clear();
        }
    }

    /// What is still to be written, as a vector of its own.
    pub fn into_unsent(mut self) -> Vec<u8> {
        self.buf.drain(..self.start);
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_keeps_the_front_of_what_is_unsent() {
        let mut q = ByteQueue::default();
        q.push(b"abcdef");
        q.advance(2);
        q.truncate(3);
        assert_eq!(q.unsent(), b"cde");
        q.truncate(10);
        assert_eq!(q.unsent(), b"cde");
        q.truncate(0);
        assert!(q.is_empty());
        q.push(b"x");
        assert_eq!(q.unsent(), b"x");
    }

    #[test]
    fn bytes_come_out_in_order_whatever_the_pieces() {
        let mut q = ByteQueue::default();
        let mut written = Vec::new();
        let mut next = 0u8;
        for round in 0..200usize {
            for _ in 0..(round % 7) {
                let piece: Vec<u8> = (0..(round % 13 + 1))
                    .map(|_| {
                        next = next.wrapping_add(1);
                        next
                    })
                    .collect();
                q.push(&piece);
            }
            let take = (round * 5 % 17).min(q.len());
            written.extend_from_slice(&q.unsent()[..take]);
            q.advance(take);
        }
        written.extend_from_slice(q.unsent());
        let expected: Vec<u8> = (1..=written.len()).map(|i| i as u8).collect();
        assert_eq!(written, expected);
    }

    #[test]
    fn the_buffer_is_compacted_and_emptied() {
        let mut q = ByteQueue::default();
        q.push(&[1; 100]);
        q.advance(40);
        assert_eq!(q.len(), 60);
        assert_eq!(
            q.buf.len(),
            100,
            "not moved while less than half is written"
        );
        q.advance(20);
        assert_eq!(q.unsent(), &[1; 40]);
        assert_eq!(q.buf.len(), 40, "moved down once more than half is written");
        q.advance(40);
        assert!(q.is_empty());
        assert_eq!(q.buf.len(), 0);
        q.push(&[2, 3]);
        q.advance(1);
        assert_eq!(q.into_unsent(), vec![3]);
    }

    #[test]
    fn appending_through_an_encoder() {
        let mut q = ByteQueue::with_capacity(8);
        q.append_with(|v| v.extend_from_slice(b"abc"));
        assert_eq!(q.unsent(), b"abc");
        q.advance(3);
        assert!(q.is_empty());
    }
}
