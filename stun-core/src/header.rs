//! The 20-byte STUN header: message type (method and class), length, magic cookie
//! and transaction id (RFC 8489 §5).

use core::fmt;

/// The fixed value in bytes 4..8 of every RFC 5389/8489 message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;

/// Length of the STUN header in bytes.
pub const HEADER_LEN: usize = 20;

/// Byte offsets of the header fields.
pub(crate) mod field {
    use core::ops::Range;
    pub(crate) const TYPE: Range<usize> = 0..2;
    pub(crate) const LENGTH: Range<usize> = 2..4;
    pub(crate) const COOKIE: Range<usize> = 4..8;
    pub(crate) const TRANSACTION_ID: Range<usize> = 8..20;
}

/// The class of a message: request, indication, success or error response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Class {
    /// A request, which expects a response.
    Request,
    /// An indication, which expects none.
    Indication,
    /// A success response.
    Success,
    /// An error response.
    Error,
}

impl Class {
    const fn bits(self) -> u16 {
        match self {
            Class::Request => 0b00,
            Class::Indication => 0b01,
            Class::Success => 0b10,
            Class::Error => 0b11,
        }
    }

    const fn from_bits(bits: u16) -> Class {
        match bits & 0b11 {
            0b00 => Class::Request,
            0b01 => Class::Indication,
            0b10 => Class::Success,
            _ => Class::Error,
        }
    }

    /// Whether this is a success or error response.
    pub const fn is_response(self) -> bool {
        matches!(self, Class::Success | Class::Error)
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Class::Request => "request",
            Class::Indication => "indication",
            Class::Success => "success response",
            Class::Error => "error response",
        })
    }
}

/// A STUN method (12 bits). The methods of STUN, TURN and TURN-TCP are constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Method(u16);

impl Method {
    /// Binding (RFC 8489).
    pub const BINDING: Method = Method(0x001);
    /// Allocate (RFC 8656).
    pub const ALLOCATE: Method = Method(0x003);
    /// Refresh (RFC 8656).
    pub const REFRESH: Method = Method(0x004);
    /// Send, an indication (RFC 8656).
    pub const SEND: Method = Method(0x006);
    /// Data, an indication (RFC 8656).
    pub const DATA: Method = Method(0x007);
    /// CreatePermission (RFC 8656).
    pub const CREATE_PERMISSION: Method = Method(0x008);
    /// ChannelBind (RFC 8656).
    pub const CHANNEL_BIND: Method = Method(0x009);
    /// Connect (RFC 6062).
    pub const CONNECT: Method = Method(0x00A);
    /// ConnectionBind (RFC 6062).
    pub const CONNECTION_BIND: Method = Method(0x00B);
    /// ConnectionAttempt, an indication (RFC 6062).
    pub const CONNECTION_ATTEMPT: Method = Method(0x00C);

    /// A method from its 12-bit number; `None` when it does not fit in 12 bits.
    pub const fn new(value: u16) -> Option<Method> {
        if value <= 0x0FFF {
            Some(Method(value))
        } else {
            None
        }
    }

    /// The 12-bit method number.
    pub const fn value(self) -> u16 {
        self.0
    }

    /// The method's name, or `None` for a method this crate does not name.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0x001 => "Binding",
            0x003 => "Allocate",
            0x004 => "Refresh",
            0x006 => "Send",
            0x007 => "Data",
            0x008 => "CreatePermission",
            0x009 => "ChannelBind",
            0x00A => "Connect",
            0x00B => "ConnectionBind",
            0x00C => "ConnectionAttempt",
            _ => return None,
        })
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "method 0x{:03x}", self.0),
        }
    }
}

/// Method and class, as packed into the first 14 bits of the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MessageType {
    /// The method.
    pub method: Method,
    /// The class.
    pub class: Class,
}

impl MessageType {
    /// A message type from a method and a class.
    pub const fn new(method: Method, class: Class) -> MessageType {
        MessageType { method, class }
    }

    /// The 16-bit wire value (the top two bits are zero).
    pub const fn to_wire(self) -> u16 {
        let m = self.method.0;
        let c = self.class.bits();
        ((m & 0x0F80) << 2)
            | ((m & 0x0070) << 1)
            | (m & 0x000F)
            | ((c & 0b10) << 7)
            | ((c & 0b01) << 4)
    }

    /// Decodes a wire value; the top two bits are ignored (callers check them).
    pub const fn from_wire(value: u16) -> MessageType {
        let method = (value & 0x000F) | ((value & 0x00E0) >> 1) | ((value & 0x3E00) >> 2);
        let class = ((value >> 7) & 0b10) | ((value >> 4) & 0b01);
        MessageType {
            method: Method(method),
            class: Class::from_bits(class),
        }
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.class)
    }
}

/// Reads the message type of anything that starts like a STUN header, without
/// checking the rest; `None` when `bytes` is shorter than two bytes or the top two
/// bits are set.
pub fn message_type_of(bytes: &[u8]) -> Option<MessageType> {
    let t = crate::wire::u16_at(bytes, 0)?;
    (t & 0xC000 == 0).then(|| MessageType::from_wire(t))
}

/// The 96-bit transaction id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TransactionId([u8; 12]);

impl TransactionId {
    /// A transaction id from its bytes. Requests must use ids from a
    /// cryptographically random source, supplied by the caller.
    pub const fn new(bytes: [u8; 12]) -> TransactionId {
        TransactionId(bytes)
    }

    /// The id's bytes.
    pub const fn as_bytes(&self) -> &[u8; 12] {
        &self.0
    }
}

impl fmt::Debug for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn message_type_bits() {
        // RFC 8489 §5: Binding request 0x0001, success 0x0101, error 0x0111.
        assert_eq!(
            MessageType::new(Method::BINDING, Class::Request).to_wire(),
            0x0001
        );
        assert_eq!(
            MessageType::new(Method::BINDING, Class::Success).to_wire(),
            0x0101
        );
        assert_eq!(
            MessageType::new(Method::BINDING, Class::Error).to_wire(),
            0x0111
        );
        assert_eq!(
            MessageType::new(Method::SEND, Class::Indication).to_wire(),
            0x0016
        );
        assert_eq!(
            MessageType::new(Method::DATA, Class::Indication).to_wire(),
            0x0017
        );
        assert_eq!(
            MessageType::new(Method::ALLOCATE, Class::Success).to_wire(),
            0x0103
        );
        for m in 0..0x1000u16 {
            for c in [
                Class::Request,
                Class::Indication,
                Class::Success,
                Class::Error,
            ] {
                let t = MessageType::new(Method(m), c);
                assert_eq!(t.to_wire() & 0xC000, 0);
                assert_eq!(MessageType::from_wire(t.to_wire()), t);
            }
        }
    }

    #[test]
    fn method_range() {
        assert_eq!(Method::new(0x1000), None);
        assert_eq!(Method::new(0x0FFF).map(Method::value), Some(0x0FFF));
    }

    #[test]
    fn message_type_of_short_or_non_stun() {
        assert_eq!(message_type_of(&[0]), None);
        assert_eq!(message_type_of(&[0x40, 0x01]), None);
        assert_eq!(
            message_type_of(&[0x00, 0x01]),
            Some(MessageType::new(Method::BINDING, Class::Request))
        );
    }
}
