//! Where a message body ends, without buffering it: a countdown for
//! Content-Length, and a chunked-coding tracker that follows the chunk framing
//! byte by byte (refusing oversized chunk sizes, bad hex and missing CRLFs) so the
//! proxy streams the bytes on unchanged and knows when the next message starts.

use crate::refusal::{Reason, Refusal};

/// Longest chunk-size line accepted (digits plus extensions).
const MAX_SIZE_LINE: usize = 256;
/// Longest trailer section accepted.
const MAX_TRAILERS: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size {
        digits: u8,
        value: u64,
        line: usize,
        ext: bool,
    },
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    TrailerLineStart {
        total: usize,
    },
    TrailerLine {
        total: usize,
    },
    TrailerLf {
        total: usize,
        empty: bool,
    },
    Done,
}

/// Follows a chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunked {
    state: State,
}

impl Default for Chunked {
    fn default() -> Self {
        Self::new()
    }
}

impl Chunked {
    /// At the start of a chunked body.
    pub const fn new() -> Chunked {
        Chunked {
            state: State::Size {
                digits: 0,
                value: 0,
                line: 0,
                ext: false,
            },
        }
    }

    /// Whether the whole body (last chunk and trailers) has been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes bytes of the body; returns how many belong to it (fewer than given
    /// when the body ends inside `bytes`).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<usize, Refusal> {
        let bad = Refusal::new(Reason::BadChunk);
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes.get(i).copied().unwrap_or(0);
            self.state = match self.state {
                State::Done => return Ok(i),
                State::Size {
                    digits,
                    value,
                    line,
                    ext,
                } => {
                    if line >= MAX_SIZE_LINE {
                        return Err(bad);
                    }
                    match b {
                        b'\r' if digits > 0 => State::SizeLf(value),
                        // Control bytes (a bare LF above all) in an extension
                        // could frame the body differently at the web bridge.
                        c if ext && (c == 0x7f || (c < 0x20 && c != b'\t')) => return Err(bad),
                        _ if ext => State::Size {
                            digits,
                            value,
                            line: line + 1,
                            ext,
                        },
                        b';' if digits > 0 => State::Size {
                            digits,
                            value,
                            line: line + 1,
                            ext: true,
                        },
                        _ => {
                            let d = match b {
                                b'0'..=b'9' => b - b'0',
                                b'a'..=b'f' => b - b'a' + 10,
                                b'A'..=b'F' => b - b'A' + 10,
                                _ => return Err(bad),
                            };
                            // 15 hex digits bound a size to 2^60: no overflow.
                            if digits >= 15 {
                                return Err(bad);
                            }
                            State::Size {
                                digits: digits + 1,
                                value: (value << 4) | u64::from(d),
                                line: line + 1,
                                ext,
                            }
                        }
                    }
                }
                State::SizeLf(size) => {
                    if b != b'\n' {
                        return Err(bad);
                    }
                    match size {
                        0 => State::TrailerLineStart { total: 0 },
                        n => State::Data(n),
                    }
                }
                State::Data(left) => {
                    let take = (bytes.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    i += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data(left)
                    };
                    continue;
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(bad);
                    }
                    State::DataLf
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(bad);
                    }
                    State::Size {
                        digits: 0,
                        value: 0,
                        line: 0,
                        ext: false,
                    }
                }
                State::TrailerLineStart { total } | State::TrailerLine { total } => {
                    let empty = matches!(self.state, State::TrailerLineStart { .. });
                    if total >= MAX_TRAILERS {
                        return Err(bad);
                    }
                    if b == b'\r' {
                        State::TrailerLf {
                            total: total + 1,
                            empty,
                        }
                    } else if b == b'\n' || b == 0 {
                        return Err(bad);
                    } else {
                        State::TrailerLine { total: total + 1 }
                    }
                }
                State::TrailerLf { total, empty } => {
                    if b != b'\n' {
                        return Err(bad);
                    }
                    if empty {
                        State::Done
                    } else {
                        State::TrailerLineStart { total: total + 1 }
                    }
                }
            };
            i += 1;
            if self.state == State::Done {
                return Ok(i);
            }
        }
        Ok(i)
    }
}

/// Counts down a Content-Length body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Length {
    left: u64,
}

impl Length {
    /// A body of `n` bytes.
    pub const fn new(n: u64) -> Length {
        Length { left: n }
    }

    /// Whether all bytes were seen.
    pub fn is_done(&self) -> bool {
        self.left == 0
    }

    /// Bytes still expected.
    pub fn remaining(&self) -> u64 {
        self.left
    }

    /// Consumes up to `available` bytes; returns how many belong to the body.
    pub fn feed(&mut self, available: usize) -> usize {
        let take = available.min(usize::try_from(self.left).unwrap_or(usize::MAX));
        self.left -= take as u64;
        take
    }
}

/// A body's framing, whichever it is: one place to feed bytes and ask for the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Content-Length.
    Length(Length),
    /// Transfer-Encoding: chunked.
    Chunked(Chunked),
}

impl Framing {
    /// Whether the whole body has been seen.
    pub fn is_done(&self) -> bool {
        match self {
            Framing::Length(l) => l.is_done(),
            Framing::Chunked(c) => c.is_done(),
        }
    }

    /// Consumes bytes; returns how many belong to the body (fewer than given when
    /// the body ends inside `bytes`). Only chunked framing can refuse.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<usize, Refusal> {
        match self {
            Framing::Length(l) => Ok(l.feed(bytes.len())),
            Framing::Chunked(c) => c.feed(bytes),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn chunked_body_and_what_follows() {
        let body =
            b"5\r\nhello\r\n6;ext=1;q=\"a\tb\"\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\nGET /next";
        let mut c = Chunked::new();
        let n = c.feed(body).unwrap();
        assert!(c.is_done());
        assert_eq!(&body[n..], b"GET /next");
        // Byte by byte gives the same result.
        let mut c = Chunked::new();
        let mut total = 0;
        for b in body.iter() {
            total += c.feed(core::slice::from_ref(b)).unwrap();
            if c.is_done() {
                break;
            }
        }
        assert_eq!(total, n);
    }

    #[test]
    fn broken_framing_is_refused() {
        for bad in [
            &b"g\r\n"[..],
            b"\r\n",
            b"5\r\nhelloXX",
            b"5\nhello",
            b"10000000000000000\r\n",
            b"0\r\nbad\nline\r\n",
            // Control bytes in a chunk extension.
            b"5;a\nb\r\nhello\r\n",
            b"5;a\0\r\nhello\r\n",
        ] {
            assert!(
                Chunked::new().feed(bad).is_err(),
                "{:?}",
                core::str::from_utf8(bad)
            );
        }
        let long = [b'1'; 300];
        let mut c = Chunked::new();
        assert!(c.feed(&long).is_err());
    }

    #[test]
    fn framing_ends_where_its_body_ends() {
        let mut f = Framing::Length(Length::new(4));
        assert_eq!(f.feed(b"ab"), Ok(2));
        assert!(!f.is_done());
        assert_eq!(f.feed(b"cdGET"), Ok(2));
        assert!(f.is_done());
        let mut f = Framing::Chunked(Chunked::new());
        assert_eq!(f.feed(b"2\r\nab\r\n0\r\n\r\nGET"), Ok(12));
        assert!(f.is_done());
        assert!(Framing::Chunked(Chunked::new()).feed(b"zz\r\n").is_err());
    }

    #[test]
    fn length() {
        let mut l = Length::new(5);
        assert_eq!(l.feed(3), 3);
        assert_eq!(l.feed(10), 2);
        assert!(l.is_done());
    }
}
