//! Requests: Binding (unauthenticated), and the authenticated TURN requests
//! Allocate, Refresh, CreatePermission and ChannelBind (RFC 8656 §7-§11).

use core::net::{IpAddr, SocketAddr};

use stun_core::attributes::{
    AdditionalAddressFamily, AddressErrorCode, AddressFamily, AlternateServer, ChannelNumber,
    ErrorCode, EvenPort, Lifetime, RequestedAddressFamily, RequestedTransport, ReservationToken,
    XorMappedAddress, XorPeerAddress, XorRelayedAddress,
};
use stun_core::binding::{self, Outcome, Why};
use stun_core::channel_data::{is_legacy_channel, is_valid_channel};
use stun_core::{AttributeErrorKind, AttributeType, Message, MessageBuilder, Method};

use super::allocation::{Allocation, Channel, Permission, Relay};
use super::auth::Authenticated;
use super::config::{CHANNEL_LIFETIME_SECS, PERMISSION_LIFETIME_SECS, RESERVATION_LIFETIME_SECS};
use super::policy::Verdict;
use super::refusal::{BadRequest, Refusal};
use super::{
    BindError, ClientOutput, EndReason, Event, Host, QuotaError, RelayHandle, Server, Slot, respond,
};
use crate::{FiveTuple, Instant};

/// Attempts at finding a free relay port before giving up with 508.
const PORT_ATTEMPTS: usize = 64;

impl<S, I, const P: usize, const C: usize> Server<S, I, P, C>
where
    S: AsRef<[Slot<P, C>]> + AsMut<[Slot<P, C>]>,
    I: AsRef<[u32]> + AsMut<[u32]>,
{
    /// Any request: Binding answered at once, the rest authenticated first.
    pub(crate) fn request(
        &mut self,
        now: Instant,
        host: &mut impl Host,
        tuple: &FiveTuple,
        msg: &Message<&[u8]>,
        out: &mut [u8],
    ) -> ClientOutput {
        let method = msg.method();
        if method == Method::BINDING {
            return match binding::respond(msg.as_bytes(), tuple.client, self.cfg.software(), out) {
                Outcome::Success(len) => ClientOutput::Reply { len, refusal: None },
                Outcome::Error { len, why, .. } => ClientOutput::Reply {
                    len,
                    refusal: Some(match why {
                        Why::UnknownAttribute(t) => Refusal::UnknownAttribute(t),
                        Why::BadAttribute(e) => Refusal::BadRequest(BadRequest::Malformed(e)),
                        _ => Refusal::BadRequest(BadRequest::UnsupportedMethod(method.value())),
                    }),
                },
                Outcome::Drop(_) => ClientOutput::Drop(Some(Refusal::OutputTooSmall)),
            };
        }
        if !matches!(
            method,
            Method::ALLOCATE | Method::REFRESH | Method::CREATE_PERMISSION | Method::CHANNEL_BIND
        ) {
            return self.plain_error(
                msg,
                out,
                Refusal::BadRequest(BadRequest::UnsupportedMethod(method.value())),
            );
        }
        let auth = match self.authenticate(now, host, tuple, msg, out) {
            Ok(a) => a,
            Err(output) => return output,
        };
        let dont_fragment = self.cfg.dont_fragment;
        let unknown = msg.unknown_comprehension_required(|t| {
            t.is_known() && (t != AttributeType::DONT_FRAGMENT || dont_fragment)
        });
        if let Some(first) = unknown.first() {
            let why = Refusal::UnknownAttribute(*first);
            return self.error_reply(msg, out, why, Some(&auth.key), Some(&unknown));
        }
        let tid = msg.transaction_id();
        for a in msg.attributes() {
            if let Err(e) = a.decode_any(&tid) {
                let family_attr = matches!(
                    e.attribute,
                    AttributeType::REQUESTED_ADDRESS_FAMILY
                        | AttributeType::ADDITIONAL_ADDRESS_FAMILY
                );
                let why =
                    if family_attr && matches!(e.kind, AttributeErrorKind::AddressFamily { .. }) {
                        Refusal::FamilyNotSupported
                    } else {
                        Refusal::BadRequest(BadRequest::Malformed(e))
                    };
                return self.error_reply(msg, out, why, Some(&auth.key), None);
            }
        }
        let result = match method {
            Method::ALLOCATE => self.allocate(now, host, tuple, msg, &auth, out),
            Method::REFRESH => self.refresh(now, host, tuple, msg, &auth, out),
            Method::CREATE_PERMISSION => self.create_permission(now, tuple, msg, &auth, out),
            _ => self.channel_bind(now, tuple, msg, &auth, out),
        };
        match result {
            Ok(output) => output,
            Err(why) => {
                if matches!(why, Refusal::Capacity) {
                    if let Some(alt) = self.cfg.alternate_server {
                        return self.redirect(msg, out, &auth, alt);
                    }
                }
                self.error_reply(msg, out, why, Some(&auth.key), None)
            }
        }
    }

    /// 300 Try Alternate with ALTERNATE-SERVER.
    fn redirect(
        &self,
        msg: &Message<&[u8]>,
        out: &mut [u8],
        auth: &Authenticated<'_>,
        alt: SocketAddr,
    ) -> ClientOutput {
        match respond::error(out, msg, ErrorCode::TRY_ALTERNATE, Some(&auth.key), |b| {
            b.add(&AlternateServer(alt))
        }) {
            Ok(len) => ClientOutput::Reply {
                len,
                refusal: Some(Refusal::Capacity),
            },
            Err(_) => ClientOutput::Drop(Some(Refusal::OutputTooSmall)),
        }
    }

    /// Writes the success response of the allocation in `slot`.
    fn allocate_success(
        &self,
        now: Instant,
        slot: usize,
        msg: &Message<&[u8]>,
        key: &[u8],
        out: &mut [u8],
    ) -> ClientOutput {
        let Some(a) = self.table.get(slot) else {
            return ClientOutput::Drop(Some(Refusal::OutputTooSmall));
        };
        let lifetime = a.expires.millis_since(now).div_ceil(1000);
        let res = respond::success(out, &self.cfg, msg, key, |b: &mut MessageBuilder<'_>| {
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
    /// returns the reservation's token.
    fn bind_new(
        &mut self,
        now: Instant,
        host: &mut impl Host,
        handle: RelayHandle,
        v6: bool,
        even: bool,
        reserve_next: bool,
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
            match host.bind_relay(handle, addr) {
                Ok(()) => {}
                Err(BindError::InUse) => continue,
                Err(BindError::Unavailable) => return Err(Refusal::NoRelayPort),
            }
            if !reserve_next {
                return Ok((addr, None));
            }
            let mut token = [0u8; 8];
            host.random(&mut token);
            let next = SocketAddr::new(ip, port16.wrapping_add(1));
            let expires = now.plus_secs(RESERVATION_LIFETIME_SECS);
            match host.reserve_port(token, next, expires) {
                Ok(()) => {
                    self.reservations_until = Some(expires);
                    return Ok((addr, Some(token)));
                }
                Err(e) => {
                    host.close_relay(handle, addr);
                    if e == BindError::Unavailable {
                        return Err(Refusal::NoRelayPort);
                    }
                }
            }
        }
        Err(Refusal::NoRelayPort)
    }

    fn allocate(
        &mut self,
        now: Instant,
        host: &mut impl Host,
        tuple: &FiveTuple,
        msg: &Message<&[u8]>,
        auth: &Authenticated<'_>,
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
                Ok(self.allocate_success(now, slot, msg, &auth.key, out))
            } else {
                Err(Refusal::AllocationMismatch)
            };
        }
        // Attributes were all decoded once already; errors cannot happen here.
        let transport = msg.attribute::<RequestedTransport>().ok().flatten();
        match transport {
            None => {
                return Err(Refusal::BadRequest(BadRequest::Missing(
                    AttributeType::REQUESTED_TRANSPORT,
                )));
            }
            Some(t) if t != RequestedTransport::UDP => {
                return Err(Refusal::UnsupportedTransport(t.protocol));
            }
            Some(_) => {}
        }
        let token = msg.attribute::<ReservationToken>().ok().flatten();
        let even = msg.attribute::<EvenPort>().ok().flatten();
        let raf = msg.attribute::<RequestedAddressFamily>().ok().flatten();
        let aaf = msg.attribute::<AdditionalAddressFamily>().ok().flatten();
        if token.is_some() && (even.is_some() || raf.is_some()) {
            return Err(Refusal::BadRequest(BadRequest::TokenConflict));
        }
        if aaf.is_some()
            && (raf.is_some() || aaf != Some(AdditionalAddressFamily(AddressFamily::Ipv6)))
        {
            return Err(Refusal::BadRequest(BadRequest::FamilyConflict));
        }
        let primary_v6 = raf == Some(RequestedAddressFamily(AddressFamily::Ipv6));
        if self.cfg.relay_ip(primary_v6).is_none() {
            return Err(Refusal::FamilyNotSupported);
        }
        let lifetime = self.lifetime(msg.attribute::<Lifetime>().ok().flatten().map(|l| l.0));
        let Some(slot) = self.table.next_free() else {
            return Err(Refusal::Capacity);
        };
        let generation = self.table.generation(slot).unwrap_or(0);
        let mut username = heapless::String::new();
        username
            .push_str(auth.username)
            .map_err(|_| Refusal::BadRequest(BadRequest::UsernameTooLong))?;
        host.acquire_quota(auth.username).map_err(|q| match q {
            QuotaError::User => Refusal::UserQuota,
            QuotaError::Total => Refusal::Capacity,
        })?;

        let handle = |which: u8| RelayHandle {
            slot: slot as u32,
            generation,
            which,
        };
        let primary = handle(u8::from(primary_v6));
        let bound = match token {
            Some(t) => host
                .claim_port(&t.0, primary, now)
                .map(|a| (a, None))
                .ok_or(Refusal::NoRelayPort),
            None => self.bind_new(
                now,
                host,
                primary,
                primary_v6,
                even.is_some(),
                even.is_some_and(|e| e.reserve_next),
            ),
        };
        let (local, new_token) = match bound {
            Ok(b) => b,
            Err(why) => {
                host.release_quota(auth.username);
                return Err(why);
            }
        };
        let mut relays = [None, None];
        if let Some(r) = relays.get_mut(usize::from(primary_v6)) {
            *r = Some(Relay {
                local,
                advertised: self.cfg.advertised(local),
            });
        }
        let mut v6_refused = false;
        if aaf.is_some() {
            match self.bind_new(now, host, handle(1), true, false, false) {
                Ok((l6, _)) => {
                    relays[1] = Some(Relay {
                        local: l6,
                        advertised: self.cfg.advertised(l6),
                    });
                }
                Err(_) => v6_refused = true,
            }
        }
        let alloc = Allocation {
            tuple: *tuple,
            relays,
            username,
            created: now,
            expires: now.plus_secs(lifetime),
            permissions: heapless::Vec::new(),
            channels: heapless::Vec::new(),
            traffic: Default::default(),
            allocate_tid: msg.transaction_id(),
            token: new_token,
            v6_refused,
        };
        let advertised = self.cfg.advertised(local);
        let event_user = alloc.username.clone();
        if self.table.insert(alloc) != Some(slot) {
            // Cannot happen: the slot was free and nothing ran in between.
            for (i, r) in relays.iter().enumerate() {
                if let Some(r) = r {
                    host.close_relay(handle(i as u8), r.local);
                }
            }
            host.release_quota(auth.username);
            return Err(Refusal::Capacity);
        }
        self.counters.allocations_created += 1;
        self.push_event(Event::Allocated {
            tuple: *tuple,
            username: event_user,
            relayed: advertised,
            lifetime,
        });
        if self.next_sweep.is_none() {
            self.schedule(now);
        }
        Ok(self.allocate_success(now, slot, msg, &auth.key, out))
    }

    /// The allocation of `tuple`, checked to belong to the authenticated user.
    /// The live allocation of `tuple`, if `auth`'s user owns it. One past its
    /// lifetime is gone (437) even before the sweep removes it.
    fn owned_slot(
        &self,
        now: Instant,
        tuple: &FiveTuple,
        auth: &Authenticated<'_>,
    ) -> Result<usize, Refusal> {
        let slot = self.table.find(tuple).ok_or(Refusal::AllocationMismatch)?;
        match self.table.get(slot) {
            Some(a) if now >= a.expires => Err(Refusal::AllocationMismatch),
            Some(a) if a.username == auth.username => Ok(slot),
            Some(_) => Err(Refusal::WrongCredentials),
            None => Err(Refusal::AllocationMismatch),
        }
    }

    fn refresh(
        &mut self,
        now: Instant,
        host: &mut impl Host,
        tuple: &FiveTuple,
        msg: &Message<&[u8]>,
        auth: &Authenticated<'_>,
        out: &mut [u8],
    ) -> Result<ClientOutput, Refusal> {
        let slot = self.owned_slot(now, tuple, auth)?;
        if let Some(RequestedAddressFamily(f)) =
            msg.attribute::<RequestedAddressFamily>().ok().flatten()
        {
            let has = self.table.get(slot).is_some_and(|a| {
                a.relays
                    .get(usize::from(f == AddressFamily::Ipv6))
                    .is_some_and(Option::is_some)
            });
            if !has {
                return Err(Refusal::PeerFamilyMismatch);
            }
        }
        let requested = msg.attribute::<Lifetime>().ok().flatten().map(|l| l.0);
        let granted = if requested == Some(0) {
            self.end_allocation(slot, host, EndReason::Released);
            0
        } else {
            let lifetime = self.lifetime(requested);
            if let Some(a) = self.table.get_mut(slot) {
                a.expires = now.plus_secs(lifetime);
            }
            lifetime
        };
        let res = respond::success(out, &self.cfg, msg, &auth.key, |b| {
            b.add(&Lifetime(u32::try_from(granted).unwrap_or(u32::MAX)))
        });
        Ok(match res {
            Ok(len) => ClientOutput::Reply { len, refusal: None },
            Err(_) => ClientOutput::Drop(Some(Refusal::OutputTooSmall)),
        })
    }

    /// Checks that `peer` may be relayed to from the allocation in `slot`: a relay
    /// of its family exists (443) and the policy allows it (403).
    fn check_peer(&self, slot: usize, peer: SocketAddr) -> Result<(), Refusal> {
        let a = self.table.get(slot).ok_or(Refusal::AllocationMismatch)?;
        if a.relay_for(&peer.ip()).is_none() {
            return Err(Refusal::PeerFamilyMismatch);
        }
        match self
            .cfg
            .policy
            .check(peer, |addr| self.cfg.is_relayed_address(addr))
        {
            Verdict::Allow => Ok(()),
            _ => Err(Refusal::ForbiddenPeer(peer.ip())),
        }
    }

    fn create_permission(
        &mut self,
        now: Instant,
        tuple: &FiveTuple,
        msg: &Message<&[u8]>,
        auth: &Authenticated<'_>,
        out: &mut [u8],
    ) -> Result<ClientOutput, Refusal> {
        let slot = self.owned_slot(now, tuple, auth)?;
        // Check every peer before installing any: all or nothing.
        let mut peers: heapless::Vec<IpAddr, P> = heapless::Vec::new();
        let mut any = false;
        for p in msg.attributes_of::<XorPeerAddress>() {
            let peer = p
                .map_err(|e| Refusal::BadRequest(BadRequest::Malformed(e)))?
                .0;
            any = true;
            self.check_peer(slot, peer)?;
            if !peers.contains(&peer.ip()) && peers.push(peer.ip()).is_err() {
                return Err(Refusal::AllocationFull);
            }
        }
        if !any {
            return Err(Refusal::BadRequest(BadRequest::Missing(
                AttributeType::XOR_PEER_ADDRESS,
            )));
        }
        let a = self
            .table
            .get_mut(slot)
            .ok_or(Refusal::AllocationMismatch)?;
        let new = peers
            .iter()
            .filter(|ip| !a.permissions.iter().any(|p| p.ip == **ip))
            .count();
        if a.permissions.len() + new > P {
            // Expired ones may make room.
            a.permissions.retain(|p| now < p.expires);
            if a.permissions.len() + new > P {
                return Err(Refusal::AllocationFull);
            }
        }
        let expires = now.plus_secs(PERMISSION_LIFETIME_SECS);
        for ip in peers {
            install_permission(&mut a.permissions, ip, expires);
        }
        Ok(self.empty_success(msg, &auth.key, out))
    }

    fn channel_bind(
        &mut self,
        now: Instant,
        tuple: &FiveTuple,
        msg: &Message<&[u8]>,
        auth: &Authenticated<'_>,
        out: &mut [u8],
    ) -> Result<ClientOutput, Refusal> {
        let slot = self.owned_slot(now, tuple, auth)?;
        let number = msg
            .attribute::<ChannelNumber>()
            .ok()
            .flatten()
            .ok_or(Refusal::BadRequest(BadRequest::Missing(
                AttributeType::CHANNEL_NUMBER,
            )))?
            .0;
        let in_range = if self.cfg.legacy_channels {
            is_legacy_channel(number)
        } else {
            is_valid_channel(number)
        };
        if !in_range {
            return Err(Refusal::BadRequest(BadRequest::ChannelOutOfRange(number)));
        }
        let peer = msg
            .attribute::<XorPeerAddress>()
            .ok()
            .flatten()
            .ok_or(Refusal::BadRequest(BadRequest::Missing(
                AttributeType::XOR_PEER_ADDRESS,
            )))?
            .0;
        self.check_peer(slot, peer)?;
        let a = self
            .table
            .get_mut(slot)
            .ok_or(Refusal::AllocationMismatch)?;
        a.prune(now);
        // The re-bind rules of RFC 8656 §11.2, counting bindings in their cooldown.
        if let Some(c) = a.channels.iter().find(|c| c.number == number) {
            if c.peer != peer {
                return Err(Refusal::BadRequest(BadRequest::ChannelBoundElsewhere(
                    number,
                )));
            }
        } else if let Some(c) = a.channels.iter().find(|c| c.peer == peer) {
            return Err(Refusal::BadRequest(BadRequest::PeerBoundElsewhere(
                c.number,
            )));
        }
        let needs_channel = !a.channels.iter().any(|c| c.number == number);
        let needs_permission = !a.permissions.iter().any(|p| p.ip == peer.ip());
        if (needs_channel && a.channels.is_full()) || (needs_permission && a.permissions.is_full())
        {
            return Err(Refusal::AllocationFull);
        }
        let expires = now.plus_secs(CHANNEL_LIFETIME_SECS);
        match a.channels.iter_mut().find(|c| c.number == number) {
            Some(c) => c.expires = expires,
            None => {
                let _ = a.channels.push(Channel {
                    number,
                    peer,
                    expires,
                });
            }
        }
        install_permission(
            &mut a.permissions,
            peer.ip(),
            now.plus_secs(PERMISSION_LIFETIME_SECS),
        );
        Ok(self.empty_success(msg, &auth.key, out))
    }

    /// A success response with no attributes of its own.
    fn empty_success(&self, msg: &Message<&[u8]>, key: &[u8], out: &mut [u8]) -> ClientOutput {
        match respond::success(out, &self.cfg, msg, key, |_| Ok(())) {
            Ok(len) => ClientOutput::Reply { len, refusal: None },
            Err(_) => ClientOutput::Drop(Some(Refusal::OutputTooSmall)),
        }
    }
}

/// Installs or refreshes the permission for `ip` (the caller made room).
fn install_permission<const P: usize>(
    perms: &mut heapless::Vec<Permission, P>,
    ip: IpAddr,
    expires: Instant,
) {
    match perms.iter_mut().find(|p| p.ip == ip) {
        Some(p) => p.expires = p.expires.max(expires),
        None => {
            let _ = perms.push(Permission { ip, expires });
        }
    }
}
