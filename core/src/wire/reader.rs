//! Splitting a TCP byte stream into frames: the one fixed-buffer reader that
//! the broker's connections, the listeners and the tools share.
//!
//! A [`FrameReader`] owns `N` bytes. The transport reads from its socket
//! into [`unfilled`](FrameReader::unfilled), reports how many bytes came
//! with [`filled`](FrameReader::filled), then takes whole frames with
//! [`next_frame`](FrameReader::next_frame) until it returns `None`. A stream
//! that is not a Flagpost stream (bad magic, a body past the bound) yields
//! one typed error, after which the connection must be closed. `N` must hold
//! one largest frame ([`MAX_FRAME_LEN`]), so a valid stream never stalls.
//!
//! ```
//! use flagpost_core::wire::{FrameReader, FrameRepr, MAX_FRAME_LEN};
//!
//! let mut r = FrameReader::<MAX_FRAME_LEN>::new();
//! let mut ping = [0u8; 10];
//! FrameRepr::Ping(7).emit(&mut ping).unwrap();
//! // the ping arrives in two reads
//! r.unfilled()[..4].copy_from_slice(&ping[..4]);
//! r.filled(4);
//! assert!(r.next_frame().is_none());
//! r.unfilled()[..6].copy_from_slice(&ping[4..]);
//! r.filled(6);
//! let frame = r.next_frame().unwrap().unwrap();
//! assert_eq!(FrameRepr::parse_bytes(frame), Ok(FrameRepr::Ping(7)));
//! assert!(r.next_frame().is_none());
//! ```

use super::frame::{frame_len, MAX_FRAME_LEN};
use super::Error;

/// A fixed buffer that turns stream reads into whole frames.
#[derive(Clone, Debug)]
pub struct FrameReader<const N: usize> {
    buf: [u8; N],
    start: usize,
    end: usize,
    failed: bool,
}

impl<const N: usize> Default for FrameReader<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> FrameReader<N> {
    const HOLDS_A_FRAME: () = assert!(N >= MAX_FRAME_LEN, "a reader must hold one largest frame");

    /// An empty reader.
    pub const fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::HOLDS_A_FRAME;
        FrameReader {
            buf: [0; N],
            start: 0,
            end: 0,
            failed: false,
        }
    }

    /// Bytes received but not yet taken as frames.
    pub const fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// The free space to read into, after moving any partial frame to the
    /// front. Empty only when the stream has failed (a buffered partial frame
    /// is always shorter than `N`).
    pub fn unfilled(&mut self) -> &mut [u8] {
        if self.failed {
            return &mut [];
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        self.buf.get_mut(self.end..).unwrap_or(&mut [])
    }

    /// `n` bytes were read into [`unfilled`](Self::unfilled) (clamped to its
    /// length).
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(N);
    }

    /// Copies as much of `bytes` as fits; returns how many were taken. For
    /// transports that receive into their own buffers.
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        let free = self.unfilled();
        let n = free.len().min(bytes.len());
        if let (Some(dst), Some(src)) = (free.get_mut(..n), bytes.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.filled(n);
        n
    }

    /// The next whole frame's bytes (header and body), `None` when more bytes
    /// are needed, or the error that makes the stream unusable (reported
    /// once; the reader then stays empty).
    pub fn next_frame(&mut self) -> Option<Result<&[u8], Error>> {
        if self.failed {
            return None;
        }
        let rest = self.buf.get(self.start..self.end).unwrap_or(&[]);
        match frame_len(rest) {
            Ok(None) => None,
            Ok(Some(len)) => {
                let at = self.start;
                self.start += len;
                if self.start == self.end {
                    (self.start, self.end) = (0, 0);
                }
                self.buf.get(at..at + len).map(Ok)
            }
            Err(e) => {
                self.failed = true;
                (self.start, self.end) = (0, 0);
                Some(Err(e))
            }
        }
    }

    /// Forgets everything (a new connection).
    pub fn clear(&mut self) {
        (self.start, self.end, self.failed) = (0, 0, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::FrameRepr;

    fn frames() -> ([u8; 40], usize) {
        let mut out = [0u8; 40];
        let mut n = 0;
        for f in [FrameRepr::Ping(1), FrameRepr::Pong(2), FrameRepr::Ping(3)] {
            n += f.emit(&mut out[n..]).unwrap();
        }
        (out, n)
    }

    #[test]
    fn any_split_of_a_stream_gives_the_same_frames() {
        let (stream, len) = frames();
        for chunk in 1..=len {
            let mut r = FrameReader::<MAX_FRAME_LEN>::new();
            let mut got = [0u32; 3];
            let mut count = 0;
            for part in stream[..len].chunks(chunk) {
                let mut part = part;
                while !part.is_empty() {
                    let took = r.push(part);
                    part = &part[took..];
                    while let Some(frame) = r.next_frame() {
                        match FrameRepr::parse_bytes(frame.unwrap()).unwrap() {
                            FrameRepr::Ping(n) | FrameRepr::Pong(n) => got[count] = n,
                            other => panic!("unexpected {other:?}"),
                        }
                        count += 1;
                    }
                }
            }
            assert_eq!((count, got), (3, [1, 2, 3]), "chunk {chunk}");
            assert_eq!(r.buffered(), 0);
        }
    }

    #[test]
    fn a_foreign_stream_fails_once_and_stays_failed() {
        let mut r = FrameReader::<MAX_FRAME_LEN>::new();
        r.push(b"GET / HTTP/1.1\r\n");
        assert_eq!(r.next_frame(), Some(Err(Error::BadMagic)));
        assert_eq!(r.next_frame(), None);
        assert!(r.unfilled().is_empty());
        assert_eq!(r.push(b"FP"), 0);
        r.clear();
        assert_eq!(r.push(b"FP"), 2);
    }

    #[test]
    fn a_body_past_the_bound_is_an_error_before_it_arrives() {
        let mut r = FrameReader::<MAX_FRAME_LEN>::new();
        r.push(&[0x46, 0x50, 1, 0x13, 0xff, 0xff]);
        assert_eq!(r.next_frame(), Some(Err(Error::TooLong)));
    }
}
