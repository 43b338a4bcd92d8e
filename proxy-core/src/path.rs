//! Path normalisation, so the allow list judges exactly the path that is forwarded.
//!
//! - Percent-encoded dots (`%2e`, `%2E`) are decoded; other percent-encodings are
//!   kept as they are (upper-cased hex), since they do not change the path's shape.
//! - Dot segments are removed (RFC 3986 §5.2.4); a `..` that would climb above `/`
//!   is refused.
//! - Empty segments (`//`) collapse.
//! - Ambiguous paths are refused: an encoded slash (`%2f`) or backslash (`%5c`), a
//!   raw backslash, an encoded NUL, or a malformed percent-encoding.
//! - Path parameters: a segment whose name before its first `;` is a dot segment
//!   (`..;`, `..;jsessionid=x`, `.;x`) is refused, since servers that strip
//!   parameters (Tomcat, Jetty, Spring) read it as `..` after the allow list has
//!   judged it as a name; so is an encoded `;` (`%3b`), which servers decode at
//!   different times. Other `;` segments are names like any other: a rule for
//!   `/api` does not cover `/api;x`.
//!
//! The query string is not part of the path; it is passed through unchanged.

/// Why a path is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PathError {
    /// Not starting with `/`.
    NotOriginForm,
    /// Ambiguous or malformed (see the module docs).
    Ambiguous,
    /// The output buffer is too small.
    TooLong,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Normalises `path` (without its query) into `out`; returns the normalised path.
pub fn normalize<'o>(path: &str, out: &'o mut [u8]) -> Result<&'o str, PathError> {
    let raw = path.as_bytes();
    if raw.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }
    // Pass 1: decode %2e, keep other encodings canonical, refuse ambiguity; write
    // segment by segment, resolving dot segments on the fly. `starts` remembers
    // where each output segment begins, to pop on `..`.
    let mut starts: heapless::Vec<usize, 128> = heapless::Vec::new();
    let mut len = 0usize;
    let mut seg: heapless::Vec<u8, 1024> = heapless::Vec::new();
    let mut i = 1; // past the leading '/'
    let mut trailing_slash = false;
    loop {
        let byte = raw.get(i).copied();
        match byte {
            Some(b'/') | None => {
                // End of a segment.
                let s = seg.as_slice();
                let last = byte.is_none();
                if let Some(semi) = s.iter().position(|&c| c == b';')
                    && matches!(s.get(..semi), Some(b".") | Some(b".."))
                {
                    return Err(PathError::Ambiguous);
                }
                if s == b"." {
                    trailing_slash = last || trailing_slash;
                } else if s == b".." {
                    let start = starts.pop().ok_or(PathError::Ambiguous)?;
                    len = start;
                    trailing_slash = last;
                } else if !s.is_empty() {
                    starts.push(len).map_err(|_| PathError::TooLong)?;
                    let dst = out
                        .get_mut(len..len + 1 + s.len())
                        .ok_or(PathError::TooLong)?;
                    if let Some((slash, rest)) = dst.split_first_mut() {
                        *slash = b'/';
                        rest.copy_from_slice(s);
                    }
                    len += 1 + s.len();
                    trailing_slash = false;
                } else if last {
                    trailing_slash = true;
                }
                seg.clear();
                if last {
                    break;
                }
                i += 1;
            }
            Some(b'%') => {
                let (h, l) = match (
                    raw.get(i + 1).copied().and_then(hex),
                    raw.get(i + 2).copied().and_then(hex),
                ) {
                    (Some(h), Some(l)) => (h, l),
                    _ => return Err(PathError::Ambiguous),
                };
                let v = (h << 4) | l;
                match v {
                    b'/' | b'\\' | b';' | 0 => return Err(PathError::Ambiguous),
                    b'.' => seg.push(b'.').map_err(|_| PathError::TooLong)?,
                    _ => {
                        for c in [
                            b'%',
                            HEX_UPPER.get(usize::from(h)).copied().unwrap_or(b'0'),
                            HEX_UPPER.get(usize::from(l)).copied().unwrap_or(b'0'),
                        ] {
                            seg.push(c).map_err(|_| PathError::TooLong)?;
                        }
                    }
                }
                i += 3;
            }
            Some(b'\\') | Some(0) => return Err(PathError::Ambiguous),
            Some(b) => {
                seg.push(b).map_err(|_| PathError::TooLong)?;
                i += 1;
            }
        }
    }
    if len == 0 || trailing_slash {
        let dst = out.get_mut(len).ok_or(PathError::TooLong)?;
        *dst = b'/';
        len += 1;
    }
    core::str::from_utf8(out.get(..len).unwrap_or(&[])).map_err(|_| PathError::Ambiguous)
}

#[cfg(test)]
mod test {
    use super::*;

    fn n(p: &str) -> Result<heapless::String<256>, PathError> {
        let mut buf = [0u8; 256];
        normalize(p, &mut buf).map(|s| {
            let mut out = heapless::String::new();
            out.push_str(s).unwrap();
            out
        })
    }

    #[test]
    fn normal_forms() {
        for (input, expected) in [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a/b/", "/a/b/"),
            ("/a//b", "/a/b"),
            ("//a///b//", "/a/b/"),
            ("/a/./b", "/a/b"),
            ("/a/b/.", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/a/../b", "/b"),
            ("/a/%2e%2E/b", "/b"),
            ("/a/%2e/b", "/a/b"),
            ("/%7euser", "/%7Euser"),
            ("/a%20b", "/a%20b"),
            ("/..a/b", "/..a/b"),
            ("/a/...", "/a/..."),
            ("/a;b/c", "/a;b/c"),
            ("/a/x;jsessionid=1", "/a/x;jsessionid=1"),
            ("/;/x", "/;/x"),
            ("/..x;y/z", "/..x;y/z"),
        ] {
            assert_eq!(n(input).as_deref(), Ok(expected), "{input}");
        }
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for input in [
            "/..",
            "/../etc/passwd",
            "/a/../../b",
            "/%2e%2e/x",
            "/a%2fb",
            "/a%2Fb",
            "/a%5cb",
            "/a\\b",
            "/a%00",
            "/a%zz",
            "/a%2",
            "/%",
            // Dot segments hidden behind path parameters.
            "/api/..;/secret",
            "/api/..;jsessionid=1/secret",
            "/api/.;x/y",
            "/api/%2e%2e;/secret",
            "/api/..%3b/secret",
            "/a%3Bb",
        ] {
            assert_eq!(n(input), Err(PathError::Ambiguous), "{input}");
        }
        assert_eq!(n("a/b"), Err(PathError::NotOriginForm));
        assert_eq!(n("*"), Err(PathError::NotOriginForm));
        assert_eq!(n("http://x/"), Err(PathError::NotOriginForm));
        let mut small = [0u8; 3];
        assert_eq!(normalize("/abcdef", &mut small), Err(PathError::TooLong));
    }
}
