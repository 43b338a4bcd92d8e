//! The connector's TLS 1.3 session tickets: every connection to the edge
//! after the first resumes one (no certificate signatures to make or check,
//! about half a full handshake's work), so a pool refilled by the hundred
//! during a meeting's start costs the two boxes less. rustls' own store keeps
//! eight tickets per server, which a pool opening many connections at once
//! runs through; this one keeps [`TICKETS`] (each is used once, as TLS 1.3
//! wants, and the edge sends new ones on every connection).

use crate::runtime::prelude::*;
use std::collections::VecDeque;
use std::sync::Mutex;

use rustls::NamedGroup;
use rustls::client::ClientSessionStore;
use rustls::client::{Tls12ClientSessionValue, Tls13ClientSessionValue};
use rustls::pki_types::ServerName;

/// Tickets kept, oldest dropped first.
pub(super) const TICKETS: usize = 1024;

#[derive(Default)]
struct Inner {
    tickets: VecDeque<(ServerName<'static>, Tls13ClientSessionValue)>,
    kx_hint: Option<(ServerName<'static>, NamedGroup)>,
}

/// The store (TLS 1.3 only: the traversal speaks nothing older).
#[derive(Default)]
pub(super) struct Tickets {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Tickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self.lock().tickets.len();
        f.debug_struct("Tickets").field("held", &held).finish()
    }
}

impl Tickets {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ClientSessionStore for Tickets {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.lock().kx_hint = Some((server_name, group));
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        match &self.lock().kx_hint {
            Some((n, g)) if n == server_name => Some(*g),
            _ => None,
        }
    }

    fn set_tls12_session(&self, _: ServerName<'static>, _: Tls12ClientSessionValue) {}

    fn tls12_session(&self, _: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        None
    }

    fn remove_tls12_session(&self, _: &ServerName<'static>) {}

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        let mut inner = self.lock();
        if inner.tickets.len() >= TICKETS {
            inner.tickets.pop_front();
        }
        inner.tickets.push_back((server_name, value));
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        let mut inner = self.lock();
        // The newest first: the oldest are the likeliest to have expired.
        let at = inner.tickets.iter().rposition(|(n, _)| n == server_name)?;
        inner.tickets.remove(at).map(|(_, v)| v)
    }
}
