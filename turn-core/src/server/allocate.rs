//! Allocate and Refresh (RFC 8656 §7): relay ports from the configured range,
//! EVEN-PORT with RESERVATION-TOKEN, IPv6 and dual allocations (RFC 6156, RFC 8656
//! §7.2 ADDITIONAL-ADDRESS-FAMILY), lifetimes per relayed address, quotas.

use super::bandwidth::TokenBucket;
use crate::server::RelayFamily;
use core::net::SocketAddr;

use stun_core::attributes::{
    AdditionalAddressFamily, AddressErrorCode, AddressFamily, EvenPort, Lifetime,
    RequestedAddressFamily, RequestedTransport, ReservationToken, XorMappedAddress,
    XorRelayedAddress,
};
use stun_core::{AttributeType, Message, MessageBuilder};

use super::allocation::{Allocation, RelaySocket};
use super::auth::{Authenticated, quota_user};
use super::config::RESERVATION_LIFETIME_SECS;
use super::refusal::{BadRequest, Refusal};
use super::respond::{self, Signer};
use super::{
    BindError, ClientOutput, EndReason, Event, Host, QuotaError, RelayHandle, Server, Slot,
};
use crate::{FiveTuple, Instant};

/// Attempts at finding a free relay port before giving up with 508.
const PORT_ATTEMPTS: usize = 64;

/// The bit of a RESERVATION-TOKEN's first byte that says the reserved port is on
/// the IPv6 relay. The token is opaque to clients; a token with the bit flipped
/// names no reservation.
const TOKEN_V6: u8 = 0x01;

impl<S, const P: usize, const C: usize, const T: usize> Server<S, P, C, T>
where
    S: AsRef<[Slot<P, C>]> + AsMut<[Slot<P, C>]>,
{
    /// Writes the success response of the allocation in `slot`.
    fn allocate_success(
        &self,
        now: Instant,
        slot: usize,
        msg: &Message<&[u8]>,
        signer: Signer<'_>,
        out: &mut [u8],
    ) -> ClientOutput {
        let Some(a) = self.table.get(slot) else {
            return ClientOutput::Drop(Some(Refusal::OutputTooSmall));
        };
        let lifetime = a.expires.millis_since(now).div_ceil(1000);
        let res = respond::success(out, &self.cfg, msg, signer, |b: &mut MessageBuilder<'_>| {
            for r in a.relays() {
                b.add(&XorRelayedAddress(r.advertised))?;
            }
            if a.v6_refused {
                b.add(&AddressErrorCode {
                    family: AddressFamily::Ipv6.to_wire(),
                    code: 440,
                    reason: "Address Family not Supported",
                })?;
            }
            b.add(&XorMappedAddress(a.tuple.client))?;
            b.add(&Lifetime(u32::try_from(lifetime).unwrap_or(u32::MAX)))?;
            if let Some(t) = a.token {
                b.add(&ReservationToken(t))?;
            }
            Ok(())
        });
        match res {
            Ok(len) => ClientOutput::Reply { len, refusal: None },
            Err(_) => ClientOutput::Drop(Some(Refusal::OutputTooSmall)),
        }
    }

    /// The lifetime to grant for a requested one (RFC 8656 §7.2).
    fn lifetime(&self, requested: Option<u32>) -> u64 {
        let req = requested.map_or(self.cfg.default_lifetime_secs, u64::from);
        req.min(self.cfg.max_lifetime_secs)
            .max(self.cfg.default_lifetime_secs)
    }

    fn random_u32(host: &mut impl Host) -> u32 {
        let mut b = [0u8; 4];
        host.random(&mut b);
        u32::from_le_bytes(b)
    }

    /// Binds a relay socket on a random free port of the range for `handle`, even
    /// if asked; with `reserve_next`, also has the host hold the next port and
    /// returns the reservation's token. With `tcp`, a TCP listener instead
    /// (RFC 6062).
    #[allow(clippy::too_many_arguments)]
    fn bind_new(
        &mut self,
        now: Instant,
        host: &mut impl Host,
        handle: RelayHandle,
        v6: bool,
        even: bool,
        reserve_next: bool,
        tcp: bool,
    ) -> Result<(SocketAddr, Option<[u8; 8]>), Refusal> {
        let ip = self.cfg.relay_ip(v6).ok_or(Refusal::FamilyNotSupported)?;
        let (lo, hi) = (u32::from(self.cfg.port_min), u32::from(self.cfg.port_max));
        for _ in 0..PORT_ATTEMPTS {
            let mut port = lo + Self::random_u32(host) % (hi - lo + 1);
            if even {
                port &= !1;
                if port < lo {
                    port += 2;
                }
            }
            if port > hi || (reserve_next && port + 1 > hi) {
                continue;
            }
            let Ok(port16) = u16::try_from(port) else {
                continue;
            };
            let addr = SocketAddr::new(ip, port16);
            let bound = if tcp {
                host.listen_relay(handle, addr)
            } else {
                host.bind_relay(handle, addr)
            };
            match bound {
                Ok(()) => {}
                Err(BindError::InUse) => continue,
                Err(BindError::NotOffered) if tcp => {
                    return Err(Refusal::UnsupportedTransport(
                        RequestedTransport::TCP.protocol,
                    ));
                }
                Err(BindError::Unavailable | BindError::NotOffered) => {
                    return Err(Refusal::NoRelayPort);
                }
            }
            if !reserve_next {
                return Ok((addr, None));
            }
            let mut token = [0u8; 8];
            host.random(&mut token);
            token[0] = (token[0] & !TOKEN_V6) | if v6 { TOKEN_V6 } else { 0 };
            let next = SocketAddr::new(ip, port16.wrapping_add(1));
            let expires = now.plus_secs(RESERVATION_LIFETIME_SECS);
            match host.reserve_port(token, next, expires) {
                Ok(()) => {
                    self.reservations_until = Some(expires);
                    return Ok((addr, Some(token)));
                }
                Err(e) => {
                    host.close_relay(handle, addr);
                    match e {
                        BindError::InUse => {}
                        BindError::Unavailable => return Err(Refusal::NoRelayPort),
                        BindError::NotOffered => return Err(Refusal::ReservationNotOffered),
                    }
                }
            }
        }
        Err(Refusal::NoRelayPort)
    }

    pub(crate) fn allocate(
        &mut self,
        now: Instant,
        host: &mut impl Host,
        tuple: &FiveTuple,
        msg: &Message<&[u8]>,
        auth: &Authenticated,
        out: &mut [u8],
    ) -> Result<ClientOutput, Refusal> {
        // An allocation past its lifetime that the sweep has not reached yet is
        // gone already: end it now so a new one can take the 5-tuple.
        if let Some(slot) = self.table.find(tuple)
            && self.table.get(slot).is_some_and(|a| now >= a.expires)
        {
            self.end_allocation(slot, host, EndReason::Expired);
        }
        if let Some(slot) = self.table.find(tuple) {
            let same = self.table.get(slot).is_some_and(|a| {
                a.allocate_tid == msg.transaction_id() && a.username == auth.username
            });
            // A retransmitted Allocate gets the same answer again.
            return if same {
                Ok(self.allocate_success(now, slot, msg, auth.signer(), out))
            } else {
                Err(Refusal::AllocationMismatch)
            };
        }
        if self.draining_until.is_some() {
            return Err(Refusal::Draining);
        }
        if self.over_capacity(now) {
            return Err(Refusal::Capacity);
        }
        // Attributes were all decoded once already; errors cannot happen here.
        let transport = msg.attribute::<RequestedTransport>().ok().flatten();
        let tcp = match transport {
            None => {
                return Err(Refusal::BadRequest(BadRequest::Missing(
                    AttributeType::REQUESTED_TRANSPORT,
                )));
            }
            Some(RequestedTransport::UDP) => false,
            Some(RequestedTransport::TCP) => {
                self.check_tcp_allocate(tuple, msg)?;
                true
            }
            Some(t) => return Err(Refusal::UnsupportedTransport(t.protocol)),
        };
        let token = msg.attribute::<ReservationToken>().ok().flatten();
        let even = msg.attribute::<EvenPort>().ok().flatten();
        let raf = msg.attribute::<RequestedAddressFamily>().ok().flatten();
        let aaf = msg.attribute::<AdditionalAddressFamily>().ok().flatten();
        if token.is_some() && (even.is_some() || raf.is_some()) {
            return Err(Refusal::BadRequest(BadRequest::TokenConflict));
        }
        if token.is_some() && aaf.is_some() {
            return Err(Refusal::BadRequest(BadRequest::TokenWithAdditionalFamily));
        }
        if aaf.is_some()
            && (raf.is_some() || aaf != Some(AdditionalAddressFamily(AddressFamily::Ipv6)))
        {
            return Err(Refusal::BadRequest(BadRequest::FamilyConflict));
        }
        // A reservation is claimed on the relay of the family it was made on.
        let primary_v6 = match token {
            Some(t) => t.0[0] & TOKEN_V6 != 0,
            None => raf == Some(RequestedAddressFamily(AddressFamily::Ipv6)),
        };
        if self.cfg.relay_ip(primary_v6).is_none() {
            return Err(Refusal::FamilyNotSupported);
        }
        let lifetime = self.lifetime(msg.attribute::<Lifetime>().ok().flatten().map(|l| l.0));
        let Some(slot) = self.table.next_free() else {
            return Err(Refusal::Capacity);
        };
        let generation = self.table.generation(slot).unwrap_or(0);
        let username = auth.username.clone();
        let quota = quota_user(&self.cfg, &username);
        host.acquire_quota(quota).map_err(|q| match q {
            QuotaError::User => Refusal::UserQuota,
            QuotaError::Total => Refusal::Capacity,
        })?;

        let handle = |family: RelayFamily| RelayHandle {
            slot: slot as u32,
            generation,
            family,
        };
        let primary = handle(if primary_v6 {
            RelayFamily::Ipv6
        } else {
            RelayFamily::Ipv4
        });
        let bound = match token {
            Some(t) => host
                .claim_port(&t.0, primary, now)
                .filter(|a| a.is_ipv6() == primary_v6)
                .map(|a| (a, None))
                .ok_or(Refusal::NoReservation),
            None => self.bind_new(
                now,
                host,
                primary,
                primary_v6,
                even.is_some(),
                even.is_some_and(|e| e.reserve_next),
                tcp,
            ),
        };
        let (local, new_token) = match bound {
            Ok(b) => b,
            Err(why) => {
                host.release_quota(quota);
                return Err(why);
            }
        };
        let expires = now.plus_secs(lifetime);
        let relay = |cfg: &super::Config, local| RelaySocket {
            local,
            advertised: cfg.advertised(local),
            expires,
        };
        let mut relays = [None, None];
        if let Some(r) = relays.get_mut(usize::from(primary_v6)) {
            *r = Some(relay(&self.cfg, local));
        }
        let mut v6_refused = false;
        if aaf.is_some() {
            match self.bind_new(
                now,
                host,
                handle(RelayFamily::Ipv6),
                true,
                false,
                false,
                false,
            ) {
                Ok((l6, _)) => relays[1] = Some(relay(&self.cfg, l6)),
                Err(_) => v6_refused = true,
            }
        }
        let advertised = self.cfg.advertised(local);
        let alloc = Allocation {
            tuple: *tuple,
            relays,
            username: username.clone(),
            created: now,
            expires,
            permissions: heapless::Vec::new(),
            channels: heapless::Vec::new(),
            traffic: Default::default(),
            buckets: [TokenBucket::new(); 2],
            allocate_tid: msg.transaction_id(),
            token: new_token,
            v6_refused,
            tcp,
        };
        if self.table.insert(alloc) != Some(slot) {
            // Cannot happen: the slot was free and nothing ran in between.
            for (i, r) in relays.iter().enumerate() {
                if let (Some(r), Some(family)) = (r, RelayFamily::at(i)) {
                    host.close_relay(handle(family), r.local);
                }
            }
            host.release_quota(quota);
            return Err(Refusal::Capacity);
        }
        self.counters.allocations_created += 1;
        self.push_event(Event::Allocated {
            tuple: *tuple,
            username,
            relayed: advertised,
            lifetime,
        });
        if self.next_sweep.is_none() {
            self.schedule(now);
        }
        Ok(self.allocate_success(now, slot, msg, auth.signer(), out))
    }

    /// The live allocation of `tuple`, if `auth`'s user owns it. One past its
    /// lifetime is gone (437) even before the sweep removes it.
    pub(crate) fn owned_slot(
        &self,
        now: Instant,
        tuple: &FiveTuple,
        auth: &Authenticated,
    ) -> Result<usize, Refusal> {
        let slot = self.table.find(tuple).ok_or(Refusal::AllocationMismatch)?;
        match self.table.get(slot) {
            Some(a) if now >= a.expires => Err(Refusal::AllocationMismatch),
            Some(a) if a.username == auth.username => Ok(slot),
            Some(_) => Err(Refusal::WrongCredentials),
            None => Err(Refusal::AllocationMismatch),
        }
    }

    /// Refresh: a new lifetime for the allocation, or for only the relayed address
    /// of REQUESTED-ADDRESS-FAMILY (RFC 8656 §7.3); LIFETIME 0 deletes it (that
    /// family's relay only, with the attribute; the allocation ends with its last).
    pub(crate) fn refresh(
        &mut self,
        now: Instant,
        host: &mut impl Host,
        tuple: &FiveTuple,
        msg: &Message<&[u8]>,
        auth: &Authenticated,
        out: &mut [u8],
    ) -> Result<ClientOutput, Refusal> {
        let slot = self.owned_slot(now, tuple, auth)?;
        let family = msg
            .attribute::<RequestedAddressFamily>()
            .ok()
            .flatten()
            .map(|RequestedAddressFamily(f)| usize::from(f == AddressFamily::Ipv6));
        if let Some(which) = family {
            let has = self.table.get(slot).is_some_and(|a| {
                a.relays
                    .get(which)
                    .and_then(Option::as_ref)
                    .is_some_and(|r| now < r.expires)
            });
            if !has {
                return Err(Refusal::PeerFamilyMismatch);
            }
        }
        let requested = msg.attribute::<Lifetime>().ok().flatten().map(|l| l.0);
        let granted = if requested == Some(0) {
            match family {
                Some(which) => self.end_relay(slot, which, host),
                None => self.end_allocation(slot, host, EndReason::Released),
            }
            0
        } else {
            let mut lifetime = self.lifetime(requested);
            // Draining: nothing lives past the drain's end.
            if let Some(until) = self.draining_until {
                lifetime = lifetime.min(until.millis_since(now) / 1000).max(1);
            }
            let expires = now.plus_secs(lifetime);
            if let Some(a) = self.table.get_mut(slot) {
                for (i, r) in a.relays.iter_mut().enumerate() {
                    if let Some(r) = r
                        && family.is_none_or(|w| w == i)
                        && now < r.expires
                    {
                        r.expires = expires;
                    }
                }
                a.update_expiry();
            }
            // A shorter lifetime shortens the routes too.
            self.announce_routes(slot, host, now);
            lifetime
        };
        let res = respond::success(out, &self.cfg, msg, auth.signer(), |b| {
            b.add(&Lifetime(u32::try_from(granted).unwrap_or(u32::MAX)))
        });
        Ok(match res {
            Ok(len) => ClientOutput::Reply { len, refusal: None },
            Err(_) => ClientOutput::Drop(Some(Refusal::OutputTooSmall)),
        })
    }
}
