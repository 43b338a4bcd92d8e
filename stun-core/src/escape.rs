//! Client text made safe for a log line: usernames, realms, SNI, Host headers and
//! paths come from the network, so before they reach a log they are escaped and
//! bounded. A client cannot start a new log line, move the terminal's cursor, hide
//! text with bidirectional overrides, close the quotes a log line puts around the
//! value, or fill the disk with one field.
//!
//! [`Escaped`] is a [`Display`](core::fmt::Display) wrapper, so nothing is
//! allocated: `log::info!("user `{}`", Escaped::new(name))`.
//!
//! - `\n`, `\r`, `\t`, `\\` and `` ` `` become `\n`, `\r`, `\t`, `\\` and `` \` ``;
//! - other ASCII control bytes and DEL become `\xNN`, and so do bytes that are not
//!   UTF-8;
//! - Unicode control and invisible formatting characters (bidirectional overrides
//!   and isolates, zero-width characters, the byte order mark, line and paragraph
//!   separators) become `\u{XXXX}`;
//! - past [`Escaped::max`] characters of input the rest is cut, and the line says
//!   how many bytes were left out.
//!
//!
//! [`LineBudget`] bounds how many such lines a client can cause: a token bucket
//! on the caller's clock, and the count of lines held back, said with the next
//! one that passes.
//!
//! ```
//! use stun_core::escape::Escaped;
//! let shown = format!("{}", Escaped::new("alice\n2026 INFO forged line\u{202e}"));
//! assert_eq!(shown, "alice\\n2026 INFO forged line\\u{202e}");
//! let long = "x".repeat(500);
//! assert!(format!("{}", Escaped::new(&long)).ends_with("...(436 more bytes)"));
//! ```

use core::fmt::{self, Write};

/// Characters shown before the rest is cut, by default.
pub const DEFAULT_MAX: usize = 64;

/// Text (or bytes) from a client, displayed escaped and bounded.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a> {
    bytes: &'a [u8],
    max: usize,
}

impl<'a> Escaped<'a> {
    /// `text`, cut after [`DEFAULT_MAX`] characters.
    pub fn new(text: &'a str) -> Escaped<'a> {
        Escaped::bytes(text.as_bytes())
    }

    /// Bytes that may not be UTF-8 (a Host header, an SNI).
    pub fn bytes(bytes: &'a [u8]) -> Escaped<'a> {
        Escaped {
            bytes,
            max: DEFAULT_MAX,
        }
    }

    /// Cut after `max` characters instead.
    pub fn max(self, max: usize) -> Escaped<'a> {
        Escaped { max, ..self }
    }
}

/// Whether `c` is shown as `\u{..}`: controls, and the invisible characters that
/// change how the rest of a line reads.
fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00ad}'
                | '\u{061c}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
        )
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = 0;
        let mut rest = self.bytes;
        while !rest.is_empty() {
            if shown >= self.max {
                return write!(f, "...({} more bytes)", rest.len());
            }
            shown += 1;
            let (c, used) = match core::str::from_utf8(rest) {
                Ok(s) => first_char(s),
                Err(e) if e.valid_up_to() > 0 => {
                    let valid = rest.get(..e.valid_up_to()).unwrap_or(&[]);
                    first_char(core::str::from_utf8(valid).unwrap_or(""))
                }
                Err(_) => (None, 1),
            };
            match c {
                None => {
                    write!(f, "\\x{:02x}", rest.first().copied().unwrap_or(0))?;
                }
                Some('\n') => f.write_str("\\n")?,
                Some('\r') => f.write_str("\\r")?,
                Some('\t') => f.write_str("\\t")?,
                Some('\\') => f.write_str("\\\\")?,
                Some('`') => f.write_str("\\`")?,
                Some(c) if c.is_ascii_control() => write!(f, "\\x{:02x}", c as u32)?,
                Some(c) if is_hidden(c) => write!(f, "\\u{{{:04x}}}", c as u32)?,
                Some(c) => f.write_char(c)?,
            }
            rest = rest.get(used.max(1)..).unwrap_or(&[]);
        }
        Ok(())
    }
}

/// The first character of `s` and its length in bytes.
fn first_char(s: &str) -> (Option<char>, usize) {
    match s.chars().next() {
        Some(c) => (Some(c), c.len_utf8()),
        None => (None, 1),
    }
}

/// A budget of log lines that clients can trigger: `per_sec` lines a second,
/// in bursts of as many; past it, lines are held back and counted, and the
/// count goes with the next line that passes. Time is the caller's, in
/// milliseconds (sans-IO: no clock is read).
///
/// ```
/// use stun_core::escape::{Held, LineBudget};
/// let mut budget = LineBudget::new(2);
/// assert_eq!(budget.allow(0), Some(0));
/// assert_eq!(budget.allow(0), Some(0));
/// assert_eq!(budget.allow(0), None, "held back");
/// assert_eq!(budget.allow(10), None, "held back");
/// let held = budget.allow(1_000).unwrap();
/// assert_eq!(format!("refused{}", Held(held)), "refused (2 similar lines held back)");
/// ```
#[derive(Debug, Clone)]
pub struct LineBudget {
    /// Lines per period.
    lines: u32,
    /// The period, milliseconds.
    period_ms: u64,
    /// In line-milliseconds: a line costs `period_ms`, each millisecond adds
    /// `lines`.
    tokens: u64,
    last_ms: u64,
    held: u64,
}

impl LineBudget {
    /// A full budget of `per_sec` lines a second.
    pub const fn new(per_sec: u32) -> LineBudget {
        LineBudget::per(per_sec, 1000)
    }

    /// A full budget of `lines` lines per `period_ms` milliseconds (at least
    /// one): `LineBudget::per(1, 10_000)` writes one line every ten seconds,
    /// with the count of those held back since.
    pub const fn per(lines: u32, period_ms: u64) -> LineBudget {
        let period_ms = if period_ms == 0 { 1 } else { period_ms };
        LineBudget {
            lines,
            period_ms,
            tokens: lines as u64 * period_ms,
            last_ms: 0,
            held: 0,
        }
    }

    /// Whether a line may be written at `now_ms`: `Some(n)` with how many were
    /// held back since the last one written, or `None` (counted).
    pub fn allow(&mut self, now_ms: u64) -> Option<u64> {
        let full = u64::from(self.lines).saturating_mul(self.period_ms);
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        self.tokens = self
            .tokens
            .saturating_add(elapsed.saturating_mul(u64::from(self.lines)))
            .min(full);
        if self.tokens >= self.period_ms {
            self.tokens -= self.period_ms;
            Some(core::mem::take(&mut self.held))
        } else {
            self.held = self.held.saturating_add(1);
            None
        }
    }
}

/// " (N similar lines held back)" when N > 0, else nothing: what a line that
/// passes a [`LineBudget`] adds.
#[derive(Debug, Clone, Copy)]
pub struct Held(pub u64);

impl fmt::Display for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => Ok(()),
            1 => f.write_str(" (1 similar line held back)"),
            n => write!(f, " ({n} similar lines held back)"),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn show(e: Escaped<'_>) -> heapless::String<512> {
        let mut s = heapless::String::new();
        write!(s, "{e}").unwrap();
        s
    }

    #[test]
    fn escapes_what_could_forge_or_hide_a_line() {
        assert_eq!(show(Escaped::new("alice")), "alice");
        assert_eq!(show(Escaped::new("マトリックス")), "マトリックス");
        assert_eq!(
            show(Escaped::new("a\nb\rc\td\\e`f\u{1b}[31m\u{7f}")),
            "a\\nb\\rc\\td\\\\e\\`f\\x1b[31m\\x7f"
        );
        assert_eq!(
            show(Escaped::new(
                "x\u{202e}y\u{2066}z\u{200b}\u{feff}\u{2028}\u{85}"
            )),
            "x\\u{202e}y\\u{2066}z\\u{200b}\\u{feff}\\u{2028}\\u{0085}"
        );
        assert_eq!(show(Escaped::bytes(b"ok\xff\xfe\xc3")), "ok\\xff\\xfe\\xc3");
        assert_eq!(show(Escaped::bytes(b"\xc3\xa9t\xe9")), "ét\\xe9");
    }

    #[test]
    fn bounded() {
        assert_eq!(show(Escaped::new("abcdef").max(3)), "abc...(3 more bytes)");
        assert_eq!(show(Escaped::new("abc").max(3)), "abc");
        assert_eq!(show(Escaped::new("").max(0)), "");
        let long = [b'\n'; 300];
        let s = show(Escaped::bytes(&long));
        assert!(s.len() < 200, "{}", s.len());
        assert!(s.ends_with("...(236 more bytes)"));
    }

    #[test]
    fn a_line_budget_bursts_then_holds_back_then_refills() {
        let mut b = LineBudget::new(3);
        for _ in 0..3 {
            assert_eq!(b.allow(5), Some(0));
        }
        assert_eq!(b.allow(5), None);
        assert_eq!(b.allow(300), None, "0.885 of a line back: not yet");
        assert_eq!(b.allow(340), Some(2), "one line back after 1/3 s");
        assert_eq!(b.allow(340), None);
        // A clock that steps back refills nothing.
        assert_eq!(b.allow(100), None);
        assert_eq!(b.allow(100_000), Some(2), "full again, and the count said");
        assert_eq!(b.allow(100_000), Some(0));
    }

    #[test]
    fn a_budget_over_ten_seconds_writes_one_line_each_with_the_count() {
        let mut b = LineBudget::per(1, 10_000);
        assert_eq!(b.allow(0), Some(0));
        for t in (100..9_900).step_by(100) {
            assert_eq!(b.allow(t), None, "{t}");
        }
        assert_eq!(b.allow(10_000), Some(98));
        assert_eq!(b.allow(10_001), None);
        let mut z = LineBudget::per(2, 0);
        assert_eq!(z.allow(0), Some(0));
        assert_eq!(z.allow(0), Some(0));
        assert_eq!(z.allow(0), None);
        assert_eq!(z.allow(1), Some(1));
    }
}
