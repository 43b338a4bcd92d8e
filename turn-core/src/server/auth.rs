//! Long-term authentication of requests (RFC 8489 §9.2): the 401 challenge, stale
//! nonces, the local credential database and time-limited shared-secret
//! credentials, and the MESSAGE-INTEGRITY check. A request that fails here changes
//! no state.

use stun_core::attributes::{ErrorCode, Nonce, Realm, Username};
use stun_core::credentials::{CredentialError, LongTermKey, SharedSecret};
use stun_core::{Attribute, AttributeType, Message};

use super::config::USERNAME_MAX;
use super::nonce::NonceCheck;
use super::refusal::{BadRequest, Refusal};
use super::{ClientOutput, Host, Server, Slot, respond};
use crate::{FiveTuple, Instant, Transport};

/// An attribute a long-term authenticated request must carry.
fn required<'m, A: Attribute<'m>>(msg: &'m Message<&'m [u8]>) -> Result<A, BadRequest> {
    match msg.attribute::<A>() {
        Ok(Some(a)) => Ok(a),
        Ok(None) => Err(BadRequest::Missing(A::TYPE)),
        Err(e) => Err(BadRequest::Malformed(e)),
    }
}

/// A request that passed authentication.
pub(crate) struct Authenticated<'m> {
    pub(crate) username: &'m str,
    pub(crate) key: LongTermKey,
}

impl<S, I, const P: usize, const C: usize> Server<S, I, P, C>
where
    S: AsRef<[Slot<P, C>]> + AsMut<[Slot<P, C>]>,
    I: AsRef<[u32]> + AsMut<[u32]>,
{
    /// Authenticates `msg`, or returns the response (or silence) to send instead.
    pub(crate) fn authenticate<'m>(
        &mut self,
        now: Instant,
        host: &mut impl Host,
        tuple: &FiveTuple,
        msg: &'m Message<&'m [u8]>,
        out: &mut [u8],
    ) -> Result<Authenticated<'m>, ClientOutput> {
        if !msg.has_integrity() {
            return Err(self.challenge(
                now,
                tuple,
                msg,
                out,
                ErrorCode::UNAUTHORIZED,
                Refusal::Challenge,
            ));
        }
        let bad = |b: BadRequest| Refusal::BadRequest(b);
        let (username, realm, nonce) = match (
            required::<Username>(msg),
            required::<Realm>(msg),
            required::<Nonce>(msg),
        ) {
            (Ok(u), Ok(r), Ok(n)) => (u.0, r.0, n.0),
            (Err(b), _, _) | (_, Err(b), _) | (_, _, Err(b)) => {
                return Err(self.plain_error(msg, out, bad(b)));
            }
        };
        if username.len() > USERNAME_MAX {
            return Err(self.plain_error(msg, out, bad(BadRequest::UsernameTooLong)));
        }
        if self.nonces.check(nonce, now, &tuple.client.ip()) != NonceCheck::Valid {
            return Err(self.challenge(
                now,
                tuple,
                msg,
                out,
                ErrorCode::STALE_NONCE,
                Refusal::StaleNonce,
            ));
        }
        if realm != self.cfg.realm.as_str() {
            return Err(self.challenge(
                now,
                tuple,
                msg,
                out,
                ErrorCode::UNAUTHORIZED,
                Refusal::WrongRealm,
            ));
        }
        let key = match self.key_for(now, host, username, realm) {
            Ok(k) => k,
            Err(r) => return Err(self.challenge(now, tuple, msg, out, ErrorCode::UNAUTHORIZED, r)),
        };
        if msg.verify_integrity(&key).is_err() {
            return Err(self.challenge(
                now,
                tuple,
                msg,
                out,
                ErrorCode::UNAUTHORIZED,
                Refusal::IntegrityFailure,
            ));
        }
        Ok(Authenticated { username, key })
    }

    /// The key for `username`: from the shared secret when the username carries an
    /// expiry and a secret is configured, else from the local database.
    fn key_for(
        &self,
        now: Instant,
        host: &mut impl Host,
        username: &str,
        realm: &str,
    ) -> Result<LongTermKey, Refusal> {
        if let Some(secret) = self.cfg.shared_secret() {
            let secret = SharedSecret::new(secret);
            match secret.check(username, now.as_secs()) {
                Ok(_) => return Ok(secret.long_term_key(username, realm)),
                Err(CredentialError::Expired { expiry, now }) => {
                    return Err(Refusal::CredentialExpired { expiry, now });
                }
                // Not a time-limited username: try the local database.
                Err(_) => {}
            }
        }
        host.long_term_key(username, realm)
            .ok_or(Refusal::UnknownUser)
    }

    /// 401 or 438 with REALM and a fresh NONCE, unless a UDP source is over its
    /// budget of unauthenticated answers. (Over TCP and TLS the handshake proved
    /// the source address, so there is no one to reflect answers onto, and those
    /// clients do not retransmit: they are always answered.)
    fn challenge(
        &mut self,
        now: Instant,
        tuple: &FiveTuple,
        msg: &Message<&[u8]>,
        out: &mut [u8],
        code: ErrorCode<'static>,
        why: Refusal,
    ) -> ClientOutput {
        if tuple.transport == Transport::Udp && !self.limiter.allow(tuple.client.ip(), now) {
            return ClientOutput::Drop(Some(Refusal::RateLimited));
        }
        let nonce = self.nonces.issue(now, &tuple.client.ip());
        let realm = &self.cfg.realm;
        match respond::error(out, msg, code, None, |b| {
            respond::challenge(b, realm, &nonce)
        }) {
            Ok(len) => ClientOutput::Reply {
                len,
                refusal: Some(why),
            },
            Err(_) => ClientOutput::Drop(Some(Refusal::OutputTooSmall)),
        }
    }

    /// An error response without MESSAGE-INTEGRITY (the request was not
    /// authenticated).
    pub(crate) fn plain_error(
        &self,
        msg: &Message<&[u8]>,
        out: &mut [u8],
        why: Refusal,
    ) -> ClientOutput {
        self.error_reply(msg, out, why, None, None)
    }

    /// The error response for `why`, with MESSAGE-INTEGRITY when `key` is given
    /// and UNKNOWN-ATTRIBUTES when `unknown` is.
    pub(crate) fn error_reply(
        &self,
        msg: &Message<&[u8]>,
        out: &mut [u8],
        why: Refusal,
        key: Option<&[u8]>,
        unknown: Option<&[AttributeType]>,
    ) -> ClientOutput {
        let Some(code) = why.code().and_then(ErrorCode::from_code) else {
            return ClientOutput::Drop(Some(why));
        };
        match respond::error(out, msg, code, key, |b| respond::unknown(b, unknown)) {
            Ok(len) => ClientOutput::Reply {
                len,
                refusal: Some(why),
            },
            Err(_) => ClientOutput::Drop(Some(Refusal::OutputTooSmall)),
        }
    }
}
