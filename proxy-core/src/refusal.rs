//! Why a request is refused: the HTTP status the client gets, and a reason for the
//! log line.

use core::fmt;

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Reason {
    /// The request head is not valid HTTP/1.1.
    Malformed,
    /// Content-Length together with Transfer-Encoding (request smuggling).
    LengthAndChunked,
    /// Content-Length is not a plain decimal number, or several disagree.
    BadContentLength,
    /// A Transfer-Encoding other than one final `chunked`.
    BadTransferEncoding,
    /// Host missing, or given twice.
    BadHost,
    /// A bare CR, a bare LF, or NUL, in the head.
    BadBytes,
    /// A header line folded onto the next (obs-fold).
    ObsFold,
    /// Whitespace between a header name and its colon.
    SpaceBeforeColon,
    /// The request target is not an origin-form path (`/...`).
    NotOriginForm,
    /// The path is ambiguous: an encoded slash or backslash, a backslash, NUL, or
    /// dot segments that climb above the root.
    AmbiguousPath,
    /// The request target is longer than the proxy accepts.
    UriTooLong,
    /// The head is larger than the proxy accepts, or has too many fields.
    HeadersTooLarge,
    /// No rule of the allow list matches the path.
    NotAllowed,
    /// A rule matches the path, but not the method.
    MethodNotAllowed,
    /// The Host (or the TLS SNI) names no configured join URL, or they disagree.
    UnknownHost,
    /// The Host names a port other than the one the join URLs are served on
    /// (421).
    WrongPort,
    /// A WebSocket upgrade request that is incomplete or carries a body.
    BadUpgrade,
    /// A chunked body whose framing is broken (bad or overflowing chunk size).
    BadChunk,
    /// An HTTP version other than 1.0 or 1.1.
    Version,
    /// The client sent the head too slowly.
    HeaderTimeout,
    /// The client paused the body too long.
    BodyTimeout,
    /// The client sent the body slower than the minimum rate.
    BodyTooSlow,
    /// `Connection` names a field that frames or routes the message, or too many.
    BadConnection,
    /// The proxy is draining: it serves the connections it has, takes no new ones.
    Draining,
}

/// A refusal: status and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Refusal {
    /// The HTTP status to answer with.
    pub status: u16,
    /// Why.
    pub reason: Reason,
}

impl Refusal {
    /// The refusal for `reason`, with its status.
    pub const fn new(reason: Reason) -> Refusal {
        let status = match reason {
            Reason::NotAllowed => 403,
            Reason::MethodNotAllowed => 405,
            Reason::UriTooLong => 414,
            Reason::UnknownHost | Reason::WrongPort => 421,
            Reason::HeadersTooLarge => 431,
            Reason::HeaderTimeout | Reason::BodyTimeout | Reason::BodyTooSlow => 408,
            Reason::Version => 505,
            Reason::Draining => 503,
            _ => 400,
        };
        Refusal { status, reason }
    }

    /// Whether the connection must be closed after the answer: always for
    /// framing problems, where the next request's start is unknown.
    pub const fn must_close(&self) -> bool {
        !matches!(
            self.reason,
            Reason::NotAllowed | Reason::MethodNotAllowed | Reason::UnknownHost | Reason::WrongPort
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::Malformed => "malformed request head",
            Reason::LengthAndChunked => "Content-Length with Transfer-Encoding (request smuggling)",
            Reason::BadContentLength => "invalid or conflicting Content-Length",
            Reason::BadTransferEncoding => "Transfer-Encoding other than a final chunked",
            Reason::BadHost => "missing or duplicate Host",
            Reason::BadBytes => "bare CR, bare LF or NUL in the request head",
            Reason::ObsFold => "folded header line (obs-fold)",
            Reason::SpaceBeforeColon => "whitespace before a header colon",
            Reason::NotOriginForm => "request target is not a path",
            Reason::AmbiguousPath => {
                "ambiguous path (encoded slash, backslash, or climbing above /)"
            }
            Reason::UriTooLong => "request target too long",
            Reason::HeadersTooLarge => "request head too large",
            Reason::NotAllowed => "path not in the allow list",
            Reason::MethodNotAllowed => "method not allowed for this path",
            Reason::UnknownHost => "host is not a configured join URL",
            Reason::WrongPort => {
                "the Host names another port than the one the join URLs are served on"
            }
            Reason::BadUpgrade => "invalid WebSocket upgrade",
            Reason::BadChunk => "broken chunked framing",
            Reason::Version => "HTTP version not supported",
            Reason::HeaderTimeout => "request head not received in time",
            Reason::BodyTimeout => "request body not received in time",
            Reason::BodyTooSlow => "request body sent below the minimum rate",
            Reason::BadConnection => {
                "Connection names Host, Content-Length or Transfer-Encoding, or too many fields"
            }
            Reason::Draining => "this node is draining: try again (on another node)",
        })
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}
