//! Long-term authentication of requests (RFC 8489 §9.2): the 401 challenge with
//! the nonce cookie and PASSWORD-ALGORITHMS, stale nonces, USERNAME or USERHASH,
//! the local credential database and time-limited shared-secret credentials, and
//! the MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256 check. A request that fails
//! here changes no state.
//!
//! Password algorithms (§9.2.4): when the server offers them (the nonce cookie's
//! first bit and PASSWORD-ALGORITHMS in the 401), a request either carries neither
//! PASSWORD-ALGORITHMS nor PASSWORD-ALGORITHM (an RFC 5389 client: MD5), or both,
//! with PASSWORD-ALGORITHMS exactly as offered and PASSWORD-ALGORITHM one of them;
//! anything else is 400. The response is signed with MESSAGE-INTEGRITY-SHA256 when
//! the request was, else with MESSAGE-INTEGRITY.

use stun_core::attributes::{
    ErrorCode, Nonce, PasswordAlgorithm, PasswordAlgorithms, Realm, Userhash, Username,
};
use stun_core::credentials::{Algorithm, Key, SharedSecret, TimeLimitedUsername};
use stun_core::{Attribute, AttributeType, Message};

use super::config::{Config, SECRETS_MAX, USERNAME_MAX};
use super::nonce::NonceCheck;
use super::refusal::{BadRequest, Refusal};
use super::respond::{self, Signer};
use super::{ClientOutput, Host, Server, Slot};
use crate::{FiveTuple, Instant, Transport, UnixTime};

/// An attribute a long-term authenticated request must carry.
fn required<'m, A: Attribute<'m>>(msg: &'m Message<&'m [u8]>) -> Result<A, BadRequest> {
    match msg.attribute::<A>() {
        Ok(Some(a)) => Ok(a),
        Ok(None) => Err(BadRequest::Missing(A::TYPE)),
        Err(e) => Err(BadRequest::Malformed(e)),
    }
}

/// An attribute that may be absent, but not malformed.
fn optional<'m, A: Attribute<'m>>(msg: &'m Message<&'m [u8]>) -> Result<Option<A>, BadRequest> {
    msg.attribute::<A>().map_err(BadRequest::Malformed)
}

/// A request that passed authentication.
pub(crate) struct Authenticated {
    /// The user (from USERNAME, or found by USERHASH).
    pub(crate) username: heapless::String<USERNAME_MAX>,
    /// The key the request was verified with.
    pub(crate) key: Key,
    /// Whether it carried MESSAGE-INTEGRITY-SHA256 (the response does too).
    pub(crate) sha256: bool,
}

impl Authenticated {
    /// How responses to this request are signed.
    pub(crate) fn signer(&self) -> Signer<'_> {
        Signer {
            key: self.key.as_bytes(),
            sha256: self.sha256,
        }
    }
}

/// The user part that quotas count: `expiry:user` counts as `user` when
/// time-limited credentials are on (each hour's credential is a new username).
pub(crate) fn quota_user<'u>(cfg: &Config, username: &'u str) -> &'u str {
    if cfg.time_limited()
        && let Ok(t) = TimeLimitedUsername::parse(username)
    {
        return t.user;
    }
    username
}

/// The password algorithm a request chose, checked against the offer (see the
/// module docs).
fn negotiated(cfg: &Config, msg: &Message<&[u8]>) -> Result<Algorithm, BadRequest> {
    let chosen = optional::<PasswordAlgorithm>(msg)?;
    let echoed = optional::<PasswordAlgorithms>(msg)?;
    if cfg.password_algorithms.is_empty() {
        // Nothing was offered: PASSWORD-ALGORITHM(S) mean nothing here.
        return Ok(Algorithm::Md5);
    }
    match (chosen, echoed) {
        (None, None) => Ok(Algorithm::Md5),
        (Some(chosen), Some(echoed)) => {
            let offered = cfg.password_algorithms.iter().map(|a| a.number());
            let same = echoed
                .iter()
                .map(|a| (a.algorithm, a.params.is_empty()))
                .eq(offered.map(|n| (n, true)));
            let algorithm = Algorithm::from_number(chosen.algorithm)
                .filter(|a| chosen.params.is_empty() && cfg.password_algorithms.contains(a));
            match (same, algorithm) {
                (true, Some(a)) => Ok(a),
                _ => Err(BadRequest::PasswordAlgorithmMismatch),
            }
        }
        _ => Err(BadRequest::PasswordAlgorithmMismatch),
    }
}

impl<S, const P: usize, const C: usize, const T: usize> Server<S, P, C, T>
where
    S: AsRef<[Slot<P, C>]> + AsMut<[Slot<P, C>]>,
{
    /// Authenticates `msg`, or returns the response (or silence) to send instead.
    pub(crate) fn authenticate(
        &mut self,
        now: Instant,
        unix: UnixTime,
        host: &mut impl Host,
        tuple: &FiveTuple,
        msg: &Message<&[u8]>,
        out: &mut [u8],
    ) -> Result<Authenticated, ClientOutput> {
        let challenge = |s: &mut Self, out: &mut [u8], code, why| {
            Err(s.challenge(now, unix, tuple, msg, out, code, Some(why)))
        };
        if !msg.has_integrity() {
            // The first round of long-term authentication: no refusal.
            return Err(self.challenge(now, unix, tuple, msg, out, ErrorCode::UNAUTHORIZED, None));
        }
        let bad = |s: &Self, out: &mut [u8], b: BadRequest| {
            Err(s.plain_error(msg, out, Refusal::BadRequest(b)))
        };
        let named = match (optional::<Username>(msg), optional::<Userhash>(msg)) {
            (Ok(Some(u)), _) => Ok(u.0),
            (Ok(None), Ok(Some(_))) => Err(()),
            (Ok(None), Ok(None)) => {
                return bad(self, out, BadRequest::Missing(AttributeType::USERNAME));
            }
            (Err(b), _) | (_, Err(b)) => return bad(self, out, b),
        };
        let (realm, nonce) = match (required::<Realm>(msg), required::<Nonce>(msg)) {
            (Ok(r), Ok(n)) => (r.0, n.0),
            (Err(b), _) | (_, Err(b)) => return bad(self, out, b),
        };
        if named.is_ok_and(|u| u.len() > USERNAME_MAX) {
            return bad(self, out, BadRequest::UsernameTooLong);
        }
        if self.nonces.check(nonce, unix, &tuple.client.ip()) != NonceCheck::Valid {
            return challenge(self, out, ErrorCode::STALE_NONCE, Refusal::StaleNonce);
        }
        if realm != self.cfg.realm.as_str() {
            return challenge(self, out, ErrorCode::UNAUTHORIZED, Refusal::WrongRealm);
        }
        let algorithm = match negotiated(&self.cfg, msg) {
            Ok(a) => a,
            Err(b) => return bad(self, out, b),
        };
        let mut username = heapless::String::<USERNAME_MAX>::new();
        match named {
            Ok(u) => {
                // Checked above: it fits.
                let _ = username.push_str(u);
            }
            Err(()) => {
                let found = match msg.attribute::<Userhash>() {
                    Ok(Some(h)) if self.cfg.userhash => host.username_by_hash(h.0, realm),
                    _ => None,
                };
                match found {
                    Some(u) => username = u,
                    None => {
                        return challenge(self, out, ErrorCode::UNAUTHORIZED, Refusal::UnknownUser);
                    }
                }
            }
        }
        let keys = match self.keys_for(unix, host, &username, realm, algorithm) {
            Ok(k) => k,
            Err(r) => return challenge(self, out, ErrorCode::UNAUTHORIZED, r),
        };
        let sha256 = msg.has(AttributeType::MESSAGE_INTEGRITY_SHA256);
        let verifies = |key: &Key| {
            if sha256 {
                msg.verify_integrity_sha256(key.as_bytes()).is_ok()
            } else {
                msg.verify_integrity(key.as_bytes()).is_ok()
            }
        };
        // During a secret rotation the old and the new secret are both tried.
        let Some(key) = keys.into_iter().find(verifies) else {
            return challenge(
                self,
                out,
                ErrorCode::UNAUTHORIZED,
                Refusal::IntegrityFailure,
            );
        };
        if tuple.transport == Transport::Udp {
            // It received the nonce sent to its address: no reflection victim.
            let until = now.plus_secs(self.cfg.nonce_lifetime_secs);
            self.limiter.verify(tuple.client.ip(), until);
        }
        Ok(Authenticated {
            username,
            key,
            sha256,
        })
    }

    /// The keys `username` may have signed with: one per shared secret when the
    /// username carries an expiry (judged by the wall clock) and secrets are
    /// configured, else the local database's.
    fn keys_for(
        &self,
        now: UnixTime,
        host: &mut impl Host,
        username: &str,
        realm: &str,
        algorithm: Algorithm,
    ) -> Result<heapless::Vec<Key, SECRETS_MAX>, Refusal> {
        let mut keys = heapless::Vec::new();
        if self.cfg.time_limited() {
            match TimeLimitedUsername::parse(username) {
                Ok(t) if t.expiry < now.as_secs() => {
                    return Err(Refusal::CredentialExpired {
                        expiry: t.expiry,
                        now: now.as_secs(),
                    });
                }
                Ok(_) => {
                    for secret in self.cfg.shared_secrets.iter().filter(|s| !s.is_empty()) {
                        let key = SharedSecret::new(secret).key(algorithm, username, realm);
                        let _ = keys.push(key);
                    }
                    return Ok(keys);
                }
                // Not a time-limited username: try the local database.
                Err(_) => {}
            }
        }
        let key = host
            .long_term_key(username, realm, algorithm)
            .ok_or(Refusal::UnknownUser)?;
        let _ = keys.push(key);
        Ok(keys)
    }

    /// 401 or 438 with REALM, a fresh NONCE and the PASSWORD-ALGORITHMS offered,
    /// unless a UDP source is over its budget of unauthenticated answers. (Over
    /// TCP and TLS the handshake proved the source address, so there is no one to
    /// reflect answers onto, and those clients do not retransmit: they are always
    /// answered.)
    #[allow(clippy::too_many_arguments)]
    fn challenge(
        &mut self,
        now: Instant,
        unix: UnixTime,
        tuple: &FiveTuple,
        msg: &Message<&[u8]>,
        out: &mut [u8],
        code: ErrorCode<'static>,
        why: Option<Refusal>,
    ) -> ClientOutput {
        if tuple.transport == Transport::Udp && !self.limiter.allow(tuple.client.ip(), now) {
            return ClientOutput::Drop(Some(Refusal::RateLimited));
        }
        let nonce = self.nonces.issue(unix, &tuple.client.ip());
        let cfg = &self.cfg;
        match respond::error(out, msg, code, None, |b| {
            respond::challenge(b, &cfg.realm, &nonce, &cfg.password_algorithms)
        }) {
            Ok(len) => {
                if why.is_none() {
                    self.counters.challenges = self.counters.challenges.saturating_add(1);
                }
                ClientOutput::Reply { len, refusal: why }
            }
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

    /// The error response for `why`, signed when `signer` is given, with
    /// UNKNOWN-ATTRIBUTES when `unknown` is.
    pub(crate) fn error_reply(
        &self,
        msg: &Message<&[u8]>,
        out: &mut [u8],
        why: Refusal,
        signer: Option<Signer<'_>>,
        unknown: Option<&[AttributeType]>,
    ) -> ClientOutput {
        let Some(mut code) = why.code().and_then(ErrorCode::from_code) else {
            return ClientOutput::Drop(Some(why));
        };
        if why == Refusal::Draining {
            code.reason = super::refusal::DRAINING_PHRASE;
        }
        match respond::error(out, msg, code, signer, |b| respond::unknown(b, unknown)) {
            Ok(len) => ClientOutput::Reply {
                len,
                refusal: Some(why),
            },
            Err(_) => ClientOutput::Drop(Some(Refusal::OutputTooSmall)),
        }
    }
}
