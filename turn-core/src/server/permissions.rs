//! CreatePermission and ChannelBind (RFC 8656 §9, §11): peers checked against the
//! policy (relay-to-relay only to live relayed addresses), all-or-nothing
//! permission installs, and the channel re-bind rules.

use core::net::{IpAddr, SocketAddr};

use stun_core::attributes::{ChannelNumber, XorPeerAddress};
use stun_core::channel_data::{is_legacy_channel, is_valid_channel};
use stun_core::{AttributeType, Message};

use super::allocation::{Channel, Permission};
use super::auth::Authenticated;
use super::config::{CHANNEL_LIFETIME_SECS, PERMISSION_LIFETIME_SECS};
use super::policy::{Verdict, forms};
use super::refusal::{BadRequest, Refusal};
use super::respond::{self, Signer};
use super::{ClientOutput, Host, Server, Slot};
use crate::{FiveTuple, Instant};

impl<S, const P: usize, const C: usize, const T: usize> Server<S, P, C, T>
where
    S: AsRef<[Slot<P, C>]> + AsMut<[Slot<P, C>]>,
{
    /// Checks that `peer` may be relayed to from the allocation in `slot`: a live
    /// relay of its family exists (443) and the policy allows it (403).
    ///
    /// A permission is for an IP (RFC 8656 §9.1: the port is ignored, and clients
    /// may send 0), so one for the server's own relay IP naming no port is
    /// granted, and each packet later must reach a live relayed address; one
    /// naming a port must name a live relayed address (or a local peer) now,
    /// since packets to any other would never pass. It is kept for the address
    /// named, not the IP every allocation shares (see
    /// [`Permission`](super::allocation::Permission)). The same holds on an IP
    /// a local peer entry names (a media server on this host): its other ports
    /// stay closed. A channel is for an address: it must be a live relayed
    /// address or a local peer now (and each packet is checked again).
    pub(crate) fn check_peer(
        &self,
        now: Instant,
        host: &mut impl Host,
        slot: usize,
        peer: SocketAddr,
        channel: bool,
    ) -> Result<(), Refusal> {
        let a = self.table.get(slot).ok_or(Refusal::AllocationMismatch)?;
        if a.relay_for(&peer.ip(), now).is_none() {
            return Err(Refusal::PeerFamilyMismatch);
        }
        let policy = &self.cfg.policy;
        // A permission naming no port on an IP with local peers: packets will be
        // checked against the entries.
        if !channel && peer.port() == 0 && policy.names_local_ip(peer.ip()) {
            return Ok(());
        }
        let mut live = policy.allows_local(peer);
        let verdict = policy.check(peer, |addr| {
            live |= if channel || addr.port() != 0 {
                self.live_relay(host, addr).is_some()
            } else {
                self.cfg.is_relay_ip(addr.ip())
            };
            live
        });
        // On an IP kept per transport address (a relay IP, or one a local
        // entry names, whatever else allows it), a port is reached only as a
        // live relayed address or a local peer: packets to any other would
        // never pass.
        let verdict =
            if verdict == Verdict::Allow && !live && peer.port() != 0 && self.exact_ip(peer.ip()) {
                Verdict::DeniedOwnAddress
            } else {
                verdict
            };
        // The host's own addresses past the policy's list lose to every allow
        // entry too (a live relayed address aside).
        let verdict = if verdict == Verdict::Allow
            && !live
            && forms(peer.ip()).iter().any(|f| host.is_own_address(f))
        {
            Verdict::DeniedOwnAddress
        } else {
            verdict
        };
        match verdict {
            Verdict::Allow => Ok(()),
            why => Err(Refusal::ForbiddenPeer(peer.ip(), why)),
        }
    }

    pub(crate) fn create_permission(
        &mut self,
        now: Instant,
        host: &mut impl Host,
        tuple: &FiveTuple,
        msg: &Message<&[u8]>,
        auth: &Authenticated,
        out: &mut [u8],
    ) -> Result<ClientOutput, Refusal> {
        let slot = self.owned_slot(now, tuple, auth)?;
        // Check every peer before installing any: all or nothing. A peer on one
        // of this server's relay IPs keeps its port; any other, its IP alone.
        let mut peers: heapless::Vec<(IpAddr, u16), P> = heapless::Vec::new();
        let mut any = false;
        for p in msg.attributes_of::<XorPeerAddress>() {
            let peer = p
                .map_err(|e| Refusal::BadRequest(BadRequest::Malformed(e)))?
                .0;
            any = true;
            self.check_peer(now, host, slot, peer, false)?;
            let key = self.permission_key(peer);
            if !peers.contains(&key) && peers.push(key).is_err() {
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
            .filter(|(ip, port)| !a.permissions.iter().any(|p| p.ip == *ip && p.port == *port))
            .count();
        if a.permissions.len() + new > P {
            // Expired ones may make room.
            a.permissions.retain(|p| now < p.expires);
            if a.permissions.len() + new > P {
                return Err(Refusal::AllocationFull);
            }
        }
        let expires = now.plus_secs(PERMISSION_LIFETIME_SECS);
        for (ip, port) in peers {
            install_permission(&mut a.permissions, ip, port, expires);
        }
        // Channels to these peers may now relay longer.
        self.announce_routes(slot, host, now);
        Ok(self.empty_success(msg, auth.signer(), out))
    }

    pub(crate) fn channel_bind(
        &mut self,
        now: Instant,
        host: &mut impl Host,
        tuple: &FiveTuple,
        msg: &Message<&[u8]>,
        auth: &Authenticated,
        out: &mut [u8],
    ) -> Result<ClientOutput, Refusal> {
        let slot = self.owned_slot(now, tuple, auth)?;
        if self.table.get(slot).is_some_and(|a| a.tcp) {
            return Err(Refusal::BadRequest(BadRequest::NotOnTcpAllocation));
        }
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
        self.check_peer(now, host, slot, peer, true)?;
        let key = self.permission_key(peer);
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
        let (ip, port) = key;
        let needs_permission = !a.permissions.iter().any(|p| p.ip == ip && p.port == port);
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
                    peer: peer.into(),
                    expires,
                });
            }
        }
        install_permission(
            &mut a.permissions,
            ip,
            port,
            now.plus_secs(PERMISSION_LIFETIME_SECS),
        );
        self.announce_routes(slot, host, now);
        Ok(self.empty_success(msg, auth.signer(), out))
    }

    /// Whether permissions toward `ip` are kept per transport address: a relay
    /// IP of this server, or one a local peer entry names.
    pub(crate) fn exact_ip(&self, ip: IpAddr) -> bool {
        self.cfg.is_relay_ip(ip) || self.cfg.policy.names_local_ip(ip)
    }

    /// What a permission for `peer` is kept as: its IP and port for a peer on
    /// this server's relay IPs or a local peer's IP, its IP alone (port 0) for
    /// any other.
    fn permission_key(&self, peer: SocketAddr) -> (IpAddr, u16) {
        if self.exact_ip(peer.ip()) {
            (peer.ip(), peer.port())
        } else {
            (peer.ip(), 0)
        }
    }

    /// A success response with no attributes of its own.
    fn empty_success(
        &self,
        msg: &Message<&[u8]>,
        signer: Signer<'_>,
        out: &mut [u8],
    ) -> ClientOutput {
        match respond::success(out, &self.cfg, msg, signer, |_| Ok(())) {
            Ok(len) => ClientOutput::Reply { len, refusal: None },
            Err(_) => ClientOutput::Drop(Some(Refusal::OutputTooSmall)),
        }
    }
}

/// Installs or refreshes the permission for `ip` and `port` (the caller made
/// room).
fn install_permission<const P: usize>(
    perms: &mut heapless::Vec<Permission, P>,
    ip: IpAddr,
    port: u16,
    expires: Instant,
) {
    match perms.iter_mut().find(|p| p.ip == ip && p.port == port) {
        Some(p) => p.expires = p.expires.max(expires),
        None => {
            let _ = perms.push(Permission { ip, port, expires });
        }
    }
}
