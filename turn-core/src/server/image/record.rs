//! One allocation's record in the image: written from the table, read back
//! and checked (bounds, families, channel numbers, duplicates) before
//! anything is taken.

use stun_core::TransactionId;

use super::ImageError;
use super::wire::{ADDR_MAX, Reader, Writer, left, rebased, relative};
use crate::server::allocation::{Allocation, Channel, Permission, RelaySocket, Traffic};
use crate::server::bandwidth::TokenBucket;
use crate::server::config::USERNAME_MAX;
use crate::server::host::RelayFamily;
use crate::{FiveTuple, Instant, Transport};

/// Channel numbers (RFC 8656 §12).
/// Channel numbers ChannelData can carry: RFC 8656's, and RFC 5766's
/// 0x5000-0x7FFF that a server with `legacy_channels` binds (a reader whose
/// configuration no longer allows them keeps those bound until they expire).
const CHANNELS: core::ops::RangeInclusive<u16> = 0x4000..=0x7FFF;

/// The most bytes one record of a `P`-permission, `C`-channel allocation takes.
pub const fn record_max(p: usize, c: usize) -> usize {
    1 + 4
        + 2 * ADDR_MAX
        + 1
        + USERNAME_MAX
        + 8
        + 8
        + 2 * (1 + 2 * ADDR_MAX + 8)
        + 1
        + p * (ADDR_MAX + 2 + 8)
        + 1
        + c * (2 + ADDR_MAX + 8)
        + 8 * 8
        + 2 * (8 + 8)
        + 12
        + 1
        + 8
        + 1
}

pub(super) fn write_record<const P: usize, const C: usize>(
    w: &mut Writer<'_>,
    a: &Allocation<P, C>,
    now: Instant,
) -> Result<(), ImageError> {
    w.u8(match a.tuple.transport {
        Transport::Udp => 0,
        Transport::Tcp => 1,
        Transport::Tls => 2,
    })?;
    w.u32(a.tuple.socket)?;
    w.addr(&a.tuple.client)?;
    w.addr(&a.tuple.server)?;
    w.u8(a.username.len() as u8)?;
    w.bytes(a.username.as_bytes())?;
    w.u64(now.as_millis().saturating_sub(a.created.as_millis()))?;
    w.u64(left(a.expires, now))?;
    for r in &a.relays {
        match r {
            Some(r) => {
                w.u8(1)?;
                w.addr(&r.local)?;
                w.addr(&r.advertised)?;
                w.u64(left(r.expires, now))?;
            }
            None => w.u8(0)?,
        }
    }
    w.u8(a.permissions.len() as u8)?;
    for p in &a.permissions {
        w.ip(&p.ip)?;
        w.u16(p.port)?;
        w.u64(left(p.expires, now))?;
    }
    w.u8(a.channels.len() as u8)?;
    for c in &a.channels {
        w.u16(c.number)?;
        w.addr(&c.peer.addr())?;
        w.i64(relative(c.expires, now))?;
    }
    for v in a.traffic.counts() {
        w.u64(v)?;
    }
    for b in &a.buckets {
        let (tokens, last) = b.parts();
        w.u64(tokens)?;
        w.i64(relative(last, now))?;
    }
    w.bytes(a.allocate_tid.as_bytes())?;
    match a.token {
        Some(t) => {
            w.u8(1)?;
            w.bytes(&t)?;
        }
        None => w.u8(0)?,
    }
    w.u8(u8::from(a.v6_refused))
}

pub(super) fn read_record<const P: usize, const C: usize>(
    r: &mut Reader<'_>,
    now: Instant,
) -> Result<Allocation<P, C>, ImageError> {
    // TCP and TLS (1, 2) are never written: they stay with their connection.
    let transport = match r.u8()? {
        0 => Transport::Udp,
        _ => return Err(ImageError::Inconsistent("a transport other than UDP")),
    };
    let tuple = FiveTuple {
        socket: r.u32()?,
        client: r.addr()?,
        server: r.addr()?,
        transport,
    };
    let len = usize::from(r.u8()?);
    let name = core::str::from_utf8(r.take(len)?)
        .map_err(|_| ImageError::Inconsistent("a username that is not UTF-8"))?;
    let mut username = heapless::String::new();
    username
        .push_str(name)
        .map_err(|_| ImageError::Inconsistent("a username too long"))?;
    let created = rebased(now, r.u64()?.try_into().map_or(i64::MIN, |a: i64| -a));
    let expires = rebased(now, r.u64()?.try_into().unwrap_or(i64::MAX));
    let mut relays = [None, None];
    for (which, slot) in relays.iter_mut().enumerate() {
        if r.flag("a relay's presence")? {
            let local = r.addr()?;
            let advertised = r.addr()?;
            let expires = rebased(now, r.u64()?.try_into().unwrap_or(i64::MAX));
            if RelayFamily::of(&local.ip()).index() != which {
                return Err(ImageError::Inconsistent(
                    "a relay in the other family's slot",
                ));
            }
            *slot = Some(RelaySocket {
                local,
                advertised,
                expires,
            });
        }
    }
    if relays.iter().all(Option::is_none) {
        return Err(ImageError::Inconsistent("an allocation without a relay"));
    }
    let mut permissions = heapless::Vec::new();
    for _ in 0..r.u8()? {
        let p = Permission {
            ip: r.ip()?,
            port: r.u16()?,
            expires: rebased(now, r.u64()?.try_into().unwrap_or(i64::MAX)),
        };
        permissions
            .push(p)
            .map_err(|_| ImageError::Inconsistent("more permissions than this build holds"))?;
    }
    let mut channels: heapless::Vec<Channel, C> = heapless::Vec::new();
    for _ in 0..r.u8()? {
        let c = Channel {
            number: r.u16()?,
            peer: r.addr()?.into(),
            expires: rebased(now, r.i64()?),
        };
        if !CHANNELS.contains(&c.number) {
            return Err(ImageError::Inconsistent("a channel number out of range"));
        }
        if channels
            .iter()
            .any(|o| o.number == c.number || o.peer == c.peer)
        {
            return Err(ImageError::Inconsistent("a channel bound twice"));
        }
        channels
            .push(c)
            .map_err(|_| ImageError::Inconsistent("more channels than this build holds"))?;
    }
    let mut t = [0u64; 8];
    for v in &mut t {
        *v = r.u64()?;
    }
    let traffic = Traffic::from_counts(t);
    let mut buckets = [TokenBucket::new(); 2];
    for b in &mut buckets {
        let tokens = r.u64()?;
        *b = TokenBucket::from_parts(tokens, rebased(now, r.i64()?));
    }
    let allocate_tid = TransactionId::new(r.array()?);
    let token = if r.flag("a token's presence")? {
        Some(r.array()?)
    } else {
        None
    };
    let v6_refused = r.flag("the refused IPv6 half")?;
    let mut a = Allocation {
        tuple,
        relays,
        username,
        created,
        expires,
        permissions,
        channels,
        traffic,
        buckets,
        allocate_tid,
        token,
        v6_refused,
        tcp: false,
    };
    a.update_expiry();
    Ok(a)
}
