//! Connect (RFC 6062 §5.2): the server connects to the peer from the relayed
//! address, through its host, and answers when the host reports.

use stun_core::attributes::{
    ConnectionId as ConnectionIdAttr, ErrorCode, Software, XorPeerAddress,
};
use stun_core::{
    AttributeType, Class, EncodeError, Message, MessageBuilder, MessageType, Method, TransactionId,
};

use super::table::{Entry, Stage};
use super::{BIND_TIMEOUT_SECS, CONNECT_TIMEOUT_SECS, ConnectionId};
use crate::server::auth::Authenticated;
use crate::server::refusal::{BadRequest, Refusal};
use crate::server::respond::Signer;
use crate::server::{ClientOutput, Host, Outgoing, RelayHandle, Server, Slot};
use crate::{FiveTuple, Instant};

impl<S, const P: usize, const C: usize, const T: usize> Server<S, P, C, T>
where
    S: AsRef<[Slot<P, C>]> + AsMut<[Slot<P, C>]>,
{
    /// Connect (RFC 6062 §5.2): has the host connect to the peer; the answer
    /// comes with [`Server::peer_connected`] (or at once, when the host cannot
    /// start).
    pub(crate) fn connect(
        &mut self,
        now: Instant,
        host: &mut impl Host,
        tuple: &FiveTuple,
        msg: &Message<&[u8]>,
        auth: &Authenticated,
    ) -> Result<ClientOutput, Refusal> {
        let slot = self.owned_slot(now, tuple, auth)?;
        let generation = self.table.generation(slot).unwrap_or(0);
        let (is_tcp, count) = match self.table.get(slot) {
            Some(a) => (a.tcp, self.connections.of(slot, generation).count()),
            None => return Err(Refusal::AllocationMismatch),
        };
        if !is_tcp {
            return Err(Refusal::BadRequest(BadRequest::NotTcpAllocation));
        }
        let peer = match msg.attribute::<XorPeerAddress>() {
            Ok(Some(p)) => p.0,
            Ok(None) => {
                return Err(Refusal::BadRequest(BadRequest::Missing(
                    AttributeType::XOR_PEER_ADDRESS,
                )));
            }
            Err(e) => return Err(Refusal::BadRequest(BadRequest::Malformed(e))),
        };
        if self
            .connections
            .of(slot, generation)
            .any(|e| e.peer == peer)
        {
            return Err(Refusal::ConnectionExists(peer));
        }
        self.check_peer(now, host, slot, peer, true)?;
        if count >= self.cfg.peer_connections_per_allocation {
            return Err(Refusal::AllocationFull);
        }
        let Some((family, relay)) = self
            .table
            .get(slot)
            .and_then(|a| a.relay_for(&peer.ip(), now))
        else {
            return Err(Refusal::PeerFamilyMismatch);
        };
        let from = relay.local;
        // Relay to relay reaches the relayed address's own socket.
        let destination = self.cfg.relay_local(peer).unwrap_or(peer);
        let id = self.connections.new_id(host).ok_or(Refusal::Capacity)?;
        let until = now.plus_secs(CONNECT_TIMEOUT_SECS);
        let entry = Entry {
            id,
            slot: slot as u32,
            generation,
            peer,
            stage: Stage::Connecting {
                tid: msg.transaction_id(),
                key: auth.key,
                sha256: auth.sha256,
            },
            until,
        };
        if !self.connections.insert(entry) {
            return Err(Refusal::Capacity);
        }
        let handle = RelayHandle {
            slot: slot as u32,
            generation,
            family,
        };
        if host.connect_peer(id, handle, from, destination, until) {
            // The answer waits for the host's report.
            return Ok(ClientOutput::Drop(None));
        }
        self.connections.remove(id);
        Err(Refusal::ConnectionFailed(peer))
    }

    /// The host's report on the connection it was asked to open for `id`:
    /// `connected` or not (refused, unreachable, past its deadline). Writes the
    /// Connect's answer into `out`: success with CONNECTION-ID (the connection
    /// then waits [`BIND_TIMEOUT_SECS`] for its ConnectionBind), or 447, for the
    /// allocation's client. Nothing when the allocation is gone (the host then
    /// closes the connection) or `id` is not connecting.
    pub fn peer_connected<'a>(
        &mut self,
        now: Instant,
        host: &mut impl Host,
        id: ConnectionId,
        connected: bool,
        out: &'a mut [u8],
    ) -> Outgoing<'a> {
        let Some(e) = self.connections.find(id).copied() else {
            return Outgoing::Nothing(None);
        };
        let Stage::Connecting { tid, key, sha256 } = e.stage else {
            return Outgoing::Nothing(None);
        };
        let control = match self.live_owner(&e, now) {
            Some(t) => t,
            None => {
                self.connections.remove(id);
                if connected {
                    host.close_connection(id);
                }
                return Outgoing::Nothing(None);
            }
        };
        let signer = Signer {
            key: key.as_bytes(),
            sha256,
        };
        let refusal = if connected {
            if let Some(entry) = self.connections.find_mut(id) {
                entry.stage = Stage::Waiting;
                entry.until = now.plus_secs(BIND_TIMEOUT_SECS);
            }
            None
        } else {
            self.connections.remove(id);
            let why = Refusal::ConnectionFailed(e.peer);
            self.counters.count(why.reason());
            if let Some(a) = self.table.get_mut(e.slot as usize) {
                a.traffic.refused += 1;
            }
            Some(why)
        };
        let written = self.connect_answer(out, tid, signer, refusal.is_none().then_some(id));
        match written {
            Ok(len) => match out.get(..len) {
                Some(bytes) => Outgoing::Client {
                    tuple: control,
                    bytes,
                    refusal,
                },
                None => Outgoing::Nothing(Some(Refusal::OutputTooSmall)),
            },
            Err(_) => Outgoing::Nothing(Some(Refusal::OutputTooSmall)),
        }
    }

    /// The Connect answer: success with `id`, or 447 without one.
    fn connect_answer(
        &self,
        out: &mut [u8],
        tid: TransactionId,
        signer: Signer<'_>,
        id: Option<ConnectionId>,
    ) -> Result<usize, EncodeError> {
        let class = if id.is_some() {
            Class::Success
        } else {
            Class::Error
        };
        let mut b = MessageBuilder::new(out, MessageType::new(Method::CONNECT, class), tid)?;
        match id {
            Some(id) => b.add(&ConnectionIdAttr(id.0))?,
            None => b.add(&ErrorCode::CONNECTION_TIMEOUT_OR_FAILURE)?,
        }
        if let Some(s) = self.cfg.software() {
            b.add(&Software(s))?;
        }
        signer.sign(&mut b)?;
        b.add_fingerprint()?;
        Ok(b.finish())
    }

    /// The control connection of `e`'s allocation, if it is still live.
    pub(super) fn live_owner(&self, e: &Entry, now: Instant) -> Option<FiveTuple> {
        let slot = e.slot as usize;
        if self.table.generation(slot) != Some(e.generation) {
            return None;
        }
        self.table
            .get(slot)
            .filter(|a| now < a.expires)
            .map(|a| a.tuple)
    }
}
