//! A peer's connection to a TCP allocation's relayed address (RFC 6062 §5.3),
//! offered to the client with a ConnectionAttempt, and ConnectionBind (§5.4),
//! which joins a peer connection to a new client data connection.

use core::net::SocketAddr;

use stun_core::attributes::{ConnectionId as ConnectionIdAttr, XorPeerAddress};
use stun_core::{AttributeType, Class, EncodeError, Message, MessageBuilder, MessageType, Method};

use super::table::{Entry, Stage};
use super::{BIND_TIMEOUT_SECS, ConnectionId};
use crate::server::auth::Authenticated;
use crate::server::refusal::{BadRequest, Refusal};
use crate::server::respond;
use crate::server::{ClientOutput, Host, Outgoing, RelayHandle, Server, Slot};
use crate::{FiveTuple, Instant};

impl<S, const P: usize, const C: usize, const T: usize> Server<S, P, C, T>
where
    S: AsRef<[Slot<P, C>]> + AsMut<[Slot<P, C>]>,
{
    /// A connection the host accepted from `peer` on the relayed address of
    /// `relay` (RFC 6062 §5.3). Refused (the host closes it) unless the
    /// allocation is live and permits the peer, and holds no connection to
    /// it; else the answer is the ConnectionAttempt indication for the
    /// client, written into `out`, and the connection's id, which waits
    /// [`BIND_TIMEOUT_SECS`] for its ConnectionBind. The host buffers what the
    /// peer sends meanwhile.
    pub fn peer_accepted<'a>(
        &mut self,
        now: Instant,
        host: &mut impl Host,
        relay: RelayHandle,
        peer: SocketAddr,
        out: &'a mut [u8],
    ) -> Result<(ConnectionId, Outgoing<'a>), Refusal> {
        let result = self.accept(now, host, relay, peer, out);
        if result.is_err() {
            self.counters.peer_dropped += 1;
            let slot = relay.slot as usize;
            if self.table.generation(slot) == Some(relay.generation)
                && let Some(a) = self.table.get_mut(slot)
            {
                a.traffic.peer_refused += 1;
            }
        }
        let (id, control, len) = result?;
        match out.get(..len) {
            Some(bytes) => Ok((
                id,
                Outgoing::Client {
                    tuple: control,
                    bytes,
                    refusal: None,
                },
            )),
            None => Err(Refusal::OutputTooSmall),
        }
    }

    fn accept(
        &mut self,
        now: Instant,
        host: &mut impl Host,
        relay: RelayHandle,
        peer: SocketAddr,
        out: &mut [u8],
    ) -> Result<(ConnectionId, FiveTuple, usize), Refusal> {
        let slot = relay.slot as usize;
        if self.table.generation(slot) != Some(relay.generation) {
            return Err(Refusal::NoAllocation);
        }
        let a = self.table.get(slot).ok_or(Refusal::NoAllocation)?;
        if !a.tcp || now >= a.expires {
            return Err(Refusal::NoAllocation);
        }
        let control = a.tuple;
        // From this server's own IPs: only a live relayed address (relay to
        // relay), permitted as the address it is; from anywhere else, a
        // permission for the IP.
        let exact = self.exact_ip(peer.ip());
        let permitted = if self.cfg.policy.allows_local(peer) {
            a.admits_relay(&peer, now)
        } else if exact {
            self.live_relay(host, peer).is_some()
                && [self.cfg.advertised(peer), peer]
                    .iter()
                    .any(|f| a.admits_relay(f, now))
        } else {
            a.permits(&peer.ip(), now)
        };
        if !permitted {
            return Err(Refusal::NoPermission(peer.ip()));
        }
        let mine = self.connections.of(slot, relay.generation);
        let mut count = 0;
        for e in mine {
            if e.peer == peer {
                return Err(Refusal::ConnectionExists(peer));
            }
            count += 1;
        }
        if count >= self.cfg.peer_connections_per_allocation {
            return Err(Refusal::AllocationFull);
        }
        let id = self.connections.new_id(host).ok_or(Refusal::Capacity)?;
        let written = (|| {
            let tid = self.random.tid();
            let mut b = MessageBuilder::new(
                &mut *out,
                MessageType::new(Method::CONNECTION_ATTEMPT, Class::Indication),
                tid,
            )?;
            b.add(&XorPeerAddress(peer))?;
            b.add(&ConnectionIdAttr(id.0))?;
            b.add_fingerprint()?;
            Ok::<usize, EncodeError>(b.finish())
        })()
        .map_err(|_| Refusal::OutputTooSmall)?;
        let entry = Entry {
            id,
            slot: relay.slot,
            generation: relay.generation,
            peer,
            stage: Stage::Waiting,
            until: now.plus_secs(BIND_TIMEOUT_SECS),
        };
        if !self.connections.insert(entry) {
            return Err(Refusal::Capacity);
        }
        Ok((id, control, written))
    }

    /// ConnectionBind (RFC 6062 §5.4): on a new stream connection without an
    /// allocation, by the allocation's user, for a connection waiting for it.
    pub(crate) fn connection_bind(
        &mut self,
        now: Instant,
        tuple: &FiveTuple,
        msg: &Message<&[u8]>,
        auth: &Authenticated,
        out: &mut [u8],
    ) -> Result<ClientOutput, Refusal> {
        if !tuple.transport.is_stream() || self.table.find(tuple).is_some() {
            return Err(Refusal::BadRequest(BadRequest::BindNotOnNewConnection));
        }
        if self.data_connection(tuple).is_some() {
            return Err(Refusal::BadRequest(BadRequest::BindNotOnNewConnection));
        }
        let id = match msg.attribute::<ConnectionIdAttr>() {
            Ok(Some(ConnectionIdAttr(id))) => ConnectionId(id),
            Ok(None) => {
                return Err(Refusal::BadRequest(BadRequest::Missing(
                    AttributeType::CONNECTION_ID,
                )));
            }
            Err(e) => return Err(Refusal::BadRequest(BadRequest::Malformed(e))),
        };
        let unknown = Refusal::BadRequest(BadRequest::UnknownConnection(id.0));
        let e = *self.connections.find(id).ok_or(unknown)?;
        if !matches!(e.stage, Stage::Waiting) {
            return Err(unknown);
        }
        self.live_owner(&e, now).ok_or(unknown)?;
        let owner_matches = self
            .table
            .get(e.slot as usize)
            .is_some_and(|a| a.username == auth.username);
        if !owner_matches {
            return Err(Refusal::WrongCredentials);
        }
        if let Some(entry) = self.connections.find_mut(id) {
            entry.stage = Stage::Bound(*tuple);
        }
        let res = respond::success(out, &self.cfg, msg, auth.signer(), |_| Ok(()));
        Ok(match res {
            Ok(len) => ClientOutput::Reply { len, refusal: None },
            Err(_) => ClientOutput::Drop(Some(Refusal::OutputTooSmall)),
        })
    }
}
