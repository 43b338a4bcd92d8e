//! The server's state as bytes, so that another process (a new binary) can
//! take over its allocations: [`Server::write_image`] writes it into the
//! caller's buffer, [`Server::read_image`] reads it back into a server that
//! holds none.
//!
//! What moves: each UDP allocation (its 5-tuple and the host's socket tag,
//! user, relayed addresses, lifetimes, permissions, channels, bandwidth
//! buckets, traffic counters, the Allocate transaction and reservation token)
//! and the nonces' key, so that a client's next request is not answered 438.
//! Allocations over TCP or TLS are not written: they live and die with a
//! connection the old process holds.
//!
//! Times are written relative to the writer's `now` and rebased on the
//! reader's, so the two processes need not share a clock's origin. The format
//! is versioned ([`IMAGE_VERSION`]) and bounded (each record has a fixed
//! maximum size, [`Server::image_len`]); reading refuses an unknown version, a
//! truncated or inconsistent image and one over the table's capacity, and a
//! refused image leaves the server as it was.
//!
//! Layout (integers little-endian): `CWSI`, version (u16), the nonces' key
//! (32 bytes), the number of allocations (u32), then one record each:
//! transport (u8), socket tag (u32), client and server addresses, username
//! (u8 length, bytes), age and time left (u64 ms), two relay slots (present
//! u8; local and advertised addresses, time left), permissions (u8 count; IP,
//! port, time left), channels (u8 count; number, peer, time left as i64 ms: a
//! channel in its cooldown has a negative one), eight traffic counters (u64),
//! two buckets (tokens u64, last charge i64 ms), the Allocate transaction id
//! (12 bytes), the reservation token (present u8, 8 bytes), the refused IPv6
//! half (u8). An address is its family (4 or 6), its bytes, its port (u16),
//! and for IPv6 its scope id (u32).

mod record;
mod wire;

use super::allocation::Allocation;
use super::host::{Host, RelayFamily, RelayHandle};
use super::table::Slot;
use super::{Server, auth};
use crate::{Instant, Transport};
pub use record::record_max;
use record::{read_record, write_record};
use wire::{Reader, Writer};

/// The image format written now; reading refuses any other.
pub const IMAGE_VERSION: u16 = 1;

const MAGIC: [u8; 4] = *b"CWSI";
/// Magic, version, nonce key, count.
const HEADER: usize = 4 + 2 + 32 + 4;

/// Why an image was not written or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ImageError {
    /// The buffer cannot hold the image ([`Server::image_len`] says how much
    /// it needs).
    BufferTooSmall,
    /// Not an image (its first bytes are not `CWSI`).
    NotAnImage,
    /// An image of a format version this build does not read.
    UnknownVersion(u16),
    /// The image ends inside a record.
    Truncated,
    /// A value no server writes (what, in words).
    Inconsistent(&'static str),
    /// More allocations than the table holds.
    OverCapacity,
    /// The server already holds allocations.
    NotEmpty,
    /// The host refused a relay socket (no inherited socket at its address).
    RelayRefused,
    /// The host refused the quota of a user.
    QuotaRefused,
}

impl core::fmt::Display for ImageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ImageError::BufferTooSmall => f.write_str("the buffer is too small for the image"),
            ImageError::NotAnImage => f.write_str("not a state image"),
            ImageError::UnknownVersion(v) => write!(
                f,
                "state image version {v}, this build reads version {IMAGE_VERSION}"
            ),
            ImageError::Truncated => f.write_str("the state image is truncated"),
            ImageError::Inconsistent(what) => write!(f, "the state image is inconsistent: {what}"),
            ImageError::OverCapacity => {
                f.write_str("the state image holds more allocations than this table")
            }
            ImageError::NotEmpty => f.write_str("the server already holds allocations"),
            ImageError::RelayRefused => {
                f.write_str("the host has no relay socket for a relayed address of the image")
            }
            ImageError::QuotaRefused => f.write_str("the host refused a user's quota"),
        }
    }
}

impl core::error::Error for ImageError {}

/// How many allocations `image` holds, from its header (the rest is checked by
/// [`Server::read_image`]): a host whose storage grows makes room for them
/// first.
///
/// ```
/// use turn_core::server::{image, ImageError};
/// assert_eq!(image::allocations_in(b"not an image"), Err(ImageError::NotAnImage));
/// ```
pub fn allocations_in(image: &[u8]) -> Result<usize, ImageError> {
    let mut r = Reader {
        bytes: image,
        at: 0,
    };
    header(&mut r).map(|(_, count)| count)
}

/// Reads the header: the nonces' key and the count of allocations.
fn header(r: &mut Reader<'_>) -> Result<([u8; 32], usize), ImageError> {
    if r.take(MAGIC.len()).map_err(|_| ImageError::NotAnImage)? != MAGIC {
        return Err(ImageError::NotAnImage);
    }
    let version = r.u16()?;
    if version != IMAGE_VERSION {
        return Err(ImageError::UnknownVersion(version));
    }
    let key: [u8; 32] = r.array()?;
    Ok((key, r.u32()? as usize))
}

impl<S, const P: usize, const C: usize, const T: usize> Server<S, P, C, T>
where
    S: AsRef<[Slot<P, C>]> + AsMut<[Slot<P, C>]>,
{
    /// The most bytes [`Server::write_image`] needs now.
    pub fn image_len(&self) -> usize {
        HEADER.saturating_add(self.allocation_count().saturating_mul(record_max(P, C)))
    }

    /// Writes the state into `buf` at `now` (see [`image`](self)); returns
    /// the image's length. Allocations over TCP or TLS are left out.
    ///
    /// ```
    /// # use turn_core::server::{Config, Server, Slot};
    /// # use turn_core::Instant;
    /// let mut cfg = Config::new("example.org");
    /// cfg.relay_v4 = Some("192.0.2.10".parse().unwrap());
    /// let old: Server<_, 4, 4> = Server::new(cfg.clone(), [Slot::EMPTY; 8], [7; 32]).unwrap();
    /// let mut buf = vec![0u8; old.image_len()];
    /// let n = old.write_image(Instant::from_secs(100), &mut buf).unwrap();
    /// // In the new process, a server with the same configuration (its own
    /// // secret: the nonces' key comes with the image).
    /// let mut new: Server<_, 4, 4> = Server::new(cfg, [Slot::EMPTY; 8], [9; 32]).unwrap();
    /// # struct H; impl turn_core::server::Host for H {
    /// #   fn long_term_key(&mut self, _: &str, _: &str, _: stun_core::credentials::Algorithm) -> Option<stun_core::credentials::Key> { None }
    /// #   fn bind_relay(&mut self, _: turn_core::server::RelayHandle, _: std::net::SocketAddr) -> Result<(), turn_core::server::BindError> { Ok(()) }
    /// #   fn close_relay(&mut self, _: turn_core::server::RelayHandle, _: std::net::SocketAddr) {}
    /// #   fn is_relay(&mut self, _: std::net::SocketAddr) -> bool { false }
    /// #   fn acquire_quota(&mut self, _: &str) -> Result<(), turn_core::server::QuotaError> { Ok(()) }
    /// #   fn release_quota(&mut self, _: &str) {}
    /// #   fn random(&mut self, b: &mut [u8]) { b.fill(1) }
    /// # }
    /// # let mut host = H;
    /// assert_eq!(new.read_image(&mut host, &buf[..n], Instant::from_secs(5)), Ok(0));
    /// ```
    pub fn write_image(&self, now: Instant, buf: &mut [u8]) -> Result<usize, ImageError> {
        let mut w = Writer { buf, at: 0 };
        w.bytes(&MAGIC)?;
        w.u16(IMAGE_VERSION)?;
        w.bytes(self.nonces.secret())?;
        let moving = || {
            self.table
                .iter()
                .map(|(_, a)| a)
                .filter(|a| a.tuple.transport == Transport::Udp)
        };
        w.u32(moving().count() as u32)?;
        for a in moving() {
            write_record(&mut w, a, now)?;
        }
        Ok(w.at)
    }

    /// Takes over the allocations of `image` at `now`, into a server that
    /// holds none: the whole image is checked first, then each allocation is
    /// counted against its user's quota ([`Host::acquire_quota`]), its relay
    /// sockets asked of the host with [`Host::bind_relay`] (a host resuming
    /// from another process answers with the socket it inherited for that
    /// address), and its channels' routes announced; the nonces' key becomes
    /// the image's. Returns the number of allocations taken. On any error the
    /// server is left holding none, and what the host was asked is undone.
    pub fn read_image(
        &mut self,
        host: &mut impl Host,
        image: &[u8],
        now: Instant,
    ) -> Result<usize, ImageError> {
        if self.allocation_count() > 0 {
            return Err(ImageError::NotEmpty);
        }
        let mut r = Reader {
            bytes: image,
            at: 0,
        };
        let (key, count) = header(&mut r)?;
        if count > self.table.capacity() {
            return Err(ImageError::OverCapacity);
        }
        let records = r.at;
        // First the whole image, changing nothing.
        for _ in 0..count {
            read_record::<P, C>(&mut r, now)?;
        }
        if r.at != image.len() {
            return Err(ImageError::Inconsistent("bytes after the last allocation"));
        }
        r.at = records;
        for _ in 0..count {
            let taken = read_record::<P, C>(&mut r, now).and_then(|a| self.adopt(host, a, now));
            if let Err(e) = taken {
                self.forget_all(host);
                return Err(e);
            }
        }
        self.nonces.set_secret(key);
        if count > 0 && self.next_sweep.is_none() {
            self.schedule(now);
        }
        Ok(count)
    }

    /// Puts `a` in the table: its quota, its relay sockets, its routes.
    fn adopt(
        &mut self,
        host: &mut impl Host,
        a: Allocation<P, C>,
        now: Instant,
    ) -> Result<(), ImageError> {
        if self.table.find(&a.tuple).is_some() {
            return Err(ImageError::Inconsistent("a 5-tuple twice"));
        }
        let slot = self.table.next_free().ok_or(ImageError::OverCapacity)?;
        let generation = self.table.generation(slot).unwrap_or(0);
        host.acquire_quota(auth::quota_user(&self.cfg, &a.username))
            .map_err(|_| ImageError::QuotaRefused)?;
        let relays = a.relays;
        let user = a.username.clone();
        if self.table.insert(a) != Some(slot) {
            host.release_quota(auth::quota_user(&self.cfg, &user));
            return Err(ImageError::OverCapacity);
        }
        for (which, r) in relays.iter().enumerate() {
            if let (Some(r), Some(family)) = (r, RelayFamily::at(which)) {
                let handle = RelayHandle {
                    slot: slot as u32,
                    generation,
                    family,
                };
                if host.bind_relay(handle, r.local).is_err() {
                    // Those bound already are closed with the allocation.
                    if let Some(a) = self.table.get_mut(slot) {
                        for later in a.relays.iter_mut().skip(which) {
                            *later = None;
                        }
                    }
                    return Err(ImageError::RelayRefused);
                }
            }
        }
        self.announce_routes(slot, host, now);
        Ok(())
    }

    /// Lets go of every allocation an image holds (those over UDP), once
    /// another process has taken them over: each is removed with its relay
    /// sockets closed ([`Host::close_relay`]: the new process holds its own
    /// descriptors of them) and its quota released, and no event is queued,
    /// since the allocation lives on. Allocations over TCP or TLS stay.
    /// Returns how many were let go.
    pub fn let_go_of_image(&mut self, host: &mut impl Host) -> usize {
        self.forget(host, |a| a.tuple.transport == Transport::Udp)
    }

    /// Drops every allocation, closing its relays and releasing its quota,
    /// with no event (a refused image).
    fn forget_all(&mut self, host: &mut impl Host) {
        self.forget(host, |_| true);
    }

    /// Drops the allocations `which` picks, with no event.
    fn forget(&mut self, host: &mut impl Host, which: impl Fn(&Allocation<P, C>) -> bool) -> usize {
        let mut n = 0;
        for slot in 0..self.table.capacity() {
            let Some(generation) = self.table.generation(slot) else {
                continue;
            };
            if !self.table.get(slot).is_some_and(&which) {
                continue;
            }
            let Some(a) = self.table.remove(slot) else {
                continue;
            };
            self.let_go(slot, generation, &a, host);
            n += 1;
        }
        n
    }
}
