//! Requests: Binding (unauthenticated), then authentication, unknown attributes
//! and attribute decoding for the TURN requests, dispatched to
//! [`allocate`](super::allocate) (Allocate, Refresh) and
//! [`permissions`](super::permissions) (CreatePermission, ChannelBind) and
//! [`tcp`](super::tcp) (Connect, ConnectionBind, on a server with TCP
//! allocations); 300 Try Alternate when full.

use core::net::SocketAddr;

use stun_core::attributes::{AlternateServer, ErrorCode};
use stun_core::binding::{self, Outcome, Why};
use stun_core::{AttributeErrorKind, AttributeType, Message, Method};

use super::auth::Authenticated;
use super::refusal::{BadRequest, Refusal};
use super::{ClientOutput, Host, Server, Slot, respond};
use crate::{FiveTuple, Instant, UnixTime};

impl<S, const P: usize, const C: usize, const T: usize> Server<S, P, C, T>
where
    S: AsRef<[Slot<P, C>]> + AsMut<[Slot<P, C>]>,
{
    /// Any request: Binding answered at once, the rest authenticated first.
    pub(crate) fn request(
        &mut self,
        now: Instant,
        unix: UnixTime,
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
        let served = match method {
            Method::ALLOCATE
            | Method::REFRESH
            | Method::CREATE_PERMISSION
            | Method::CHANNEL_BIND => true,
            // RFC 6062's, on a server with room for TCP connections.
            Method::CONNECT | Method::CONNECTION_BIND => T > 0,
            _ => false,
        };
        if !served {
            return self.plain_error(
                msg,
                out,
                Refusal::BadRequest(BadRequest::UnsupportedMethod(method.value())),
            );
        }
        let auth = match self.authenticate(now, unix, host, tuple, msg, out) {
            Ok(a) => a,
            Err(output) => return output,
        };
        let dont_fragment = self.cfg.dont_fragment;
        let unknown = msg.unknown_comprehension_required(|t| {
            t.is_known() && (t != AttributeType::DONT_FRAGMENT || dont_fragment)
        });
        if let Some(first) = unknown.first() {
            let why = Refusal::UnknownAttribute(*first);
            return self.error_reply(msg, out, why, Some(auth.signer()), Some(&unknown));
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
                return self.error_reply(msg, out, why, Some(auth.signer()), None);
            }
        }
        let result = match method {
            Method::ALLOCATE => self.allocate(now, host, tuple, msg, &auth, out),
            Method::REFRESH => self.refresh(now, host, tuple, msg, &auth, out),
            Method::CREATE_PERMISSION => self.create_permission(now, host, tuple, msg, &auth, out),
            Method::CONNECT => self.connect(now, host, tuple, msg, &auth),
            Method::CONNECTION_BIND => self.connection_bind(now, tuple, msg, &auth, out),
            _ => self.channel_bind(now, host, tuple, msg, &auth, out),
        };
        match result {
            Ok(output) => output,
            Err(why) => {
                if matches!(why, Refusal::Capacity | Refusal::Draining)
                    && let Some(alt) = self.cfg.alternate_server
                {
                    return self.redirect(msg, out, &auth, alt, why);
                }
                self.error_reply(msg, out, why, Some(auth.signer()), None)
            }
        }
    }

    /// 300 Try Alternate with ALTERNATE-SERVER.
    fn redirect(
        &self,
        msg: &Message<&[u8]>,
        out: &mut [u8],
        auth: &Authenticated,
        alt: SocketAddr,
        why: Refusal,
    ) -> ClientOutput {
        match respond::error(
            out,
            msg,
            ErrorCode::TRY_ALTERNATE,
            Some(auth.signer()),
            |b| b.add(&AlternateServer(alt)),
        ) {
            Ok(len) => ClientOutput::Reply {
                len,
                refusal: Some(Refusal::Redirected {
                    to: alt,
                    draining: why == Refusal::Draining,
                }),
            },
            Err(_) => ClientOutput::Drop(Some(Refusal::OutputTooSmall)),
        }
    }
}
