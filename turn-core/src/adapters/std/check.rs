//! What a start or a reload requires of the [`Settings`], checked before
//! anything is bound: listeners, the relay addresses the listeners imply, the
//! host's own addresses (peers may never be them), the TURN core's
//! configuration, and local peers that never cover a listener.

use crate::adapters::std::prelude::*;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use log::warn;

use super::builder::{Parts, Settings};
use super::error::StartError;

/// Fills in what the settings leave to the listeners: the relay addresses, and
/// the own addresses peers may never be. Returns every own address: the
/// policy holds the first [`OWN_MAX`](crate::server::policy::OWN_MAX), the
/// workers' [`Host`](crate::server::Host) answers for all of them (a host may
/// have hundreds: every ClusterIP of a Kubernetes node sits on one interface).
fn resolve(settings: &mut Settings) -> Result<OwnAddresses, StartError> {
    if settings.listen.is_empty() && settings.tls_listen.is_empty() {
        return Err(StartError::Settings {
            field: "listen",
            problem: "at least one listener is needed".into(),
        });
    }
    let (v4, v6) = settings.relay_addresses();
    settings.turn.relay_v4 = v4;
    settings.turn.relay_v6 = v6;
    if v4.is_none() && v6.is_none() {
        return Err(StartError::Settings {
            field: "turn.relay_v4",
            problem: "no relay address: listen on a specific address or set one".into(),
        });
    }
    let listeners: Vec<SocketAddr> = settings
        .listen
        .iter()
        .chain(&settings.tls_listen)
        .copied()
        .collect();
    let extra: Vec<IpAddr> = (settings.own_listeners.iter().map(SocketAddr::ip))
        .chain(settings.own_addresses.iter().copied())
        .collect();
    let own = own_addresses(&listeners, &extra);
    // The relay and advertised addresses first (the core needs them in its
    // list), then the others while there is room: past it the host's set
    // answers (see above).
    for ip in settings
        .turn
        .relay_ips()
        .into_iter()
        .flatten()
        .chain(own.iter().copied())
    {
        let _ = settings.turn.policy.add_own(ip);
    }
    Ok(OwnAddresses::new(own))
}

/// Every address of this host that peers may never be, in every form a
/// policy compares (IPv4 wrapped in IPv6 unwrapped), sorted for lookups.
#[derive(Debug, Default, Clone)]
pub(crate) struct OwnAddresses(Arc<[IpAddr]>);

impl OwnAddresses {
    fn new(own: Vec<IpAddr>) -> OwnAddresses {
        let mut all: Vec<IpAddr> = own
            .iter()
            .flat_map(|&ip| [ip, crate::server::policy::normalize(ip)])
            .collect();
        all.sort();
        all.dedup();
        OwnAddresses(all.into())
    }

    /// Whether `ip` (one form of a peer's address) is among them.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        self.0.binary_search(&ip).is_ok()
    }

    /// How many addresses (forms included).
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

/// The addresses of this host that peers may never be: every listener and the
/// given ones, and, when a listener is on a wildcard, every address of the
/// host's interfaces. (The core adds the relay and advertised addresses.)
pub(crate) fn own_addresses(listeners: &[SocketAddr], extra: &[IpAddr]) -> Vec<IpAddr> {
    let mut own: Vec<IpAddr> = listeners.iter().map(SocketAddr::ip).collect();
    own.extend_from_slice(extra);
    if own.iter().any(IpAddr::is_unspecified) {
        match if_addrs::get_if_addrs() {
            Ok(ifs) => own.extend(ifs.iter().map(|i| i.ip())),
            Err(e) => {
                warn!("cannot list the host's addresses ({e}): deny them as peers with deny_peer")
            }
        }
    }
    own.retain(|ip| !ip.is_unspecified());
    own.sort();
    own.dedup();
    own
}

/// Checks what a start or a reload needs of the settings, and completes them
/// (relay and own addresses).
pub(crate) fn check(parts: &mut Parts) -> Result<OwnAddresses, StartError> {
    #[cfg(feature = "tls")]
    if !parts.settings.tls_listen.is_empty() && parts.front.tls.is_none() {
        return Err(StartError::Settings {
            field: "tls_listen",
            problem: "TLS listeners need the server's TLS configuration (RelayBuilder::tls)".into(),
        });
    }
    complete(&mut parts.settings)
}

impl Settings {
    /// What a start would refuse of these settings, found without binding
    /// anything (a program's `--check-config`): no listener or one given twice,
    /// TLS listeners without the `tls` feature, no relay address, a
    /// `turn.policy.local`
    /// entry covering a listener or one of [`Settings::own_listeners`], and
    /// whatever the TURN core's [`Config::validate`](crate::server::Config::validate)
    /// refuses. A bind can still fail at the start.
    ///
    /// ```
    /// use turn_core::adapters::std::Settings;
    ///
    /// let mut s = Settings::default();
    /// assert!(s.check().is_ok());
    /// s.listen.push(s.listen[0]);
    /// let e = s.check().unwrap_err();
    /// assert!(e.to_string().starts_with("`listen`"), "{e}");
    /// ```
    pub fn check(&self) -> Result<(), StartError> {
        complete(&mut self.clone()).map(|_| ())
    }
}

/// The checks of [`Settings::check`], completing the settings.
fn complete(settings: &mut Settings) -> Result<OwnAddresses, StartError> {
    let bad = |field, problem: String| Err(StartError::Settings { field, problem });
    #[cfg(not(feature = "tls"))]
    if !settings.tls_listen.is_empty() {
        return bad(
            "tls_listen",
            "TLS listeners need turn-core's `tls` feature".into(),
        );
    }
    for (field, list) in [
        ("listen", &settings.listen),
        ("tls_listen", &settings.tls_listen),
    ] {
        let twice = list
            .iter()
            .enumerate()
            .find(|(i, a)| list.iter().take(*i).any(|b| b == *a))
            .map(|(_, a)| *a);
        if let Some(a) = twice {
            return bad(field, format!("{a} is listed twice"));
        }
    }
    let own = resolve(settings)?;
    settings.turn.validate().map_err(StartError::Config)?;
    let s = &*settings;
    let listeners = s.listen.iter().chain(&s.tls_listen);
    for local in &s.turn.policy.local {
        if let Some(l) = listeners.clone().find(|l| local.covers_listener(**l)) {
            return bad(
                "turn.policy.local",
                format!("{local} covers the TURN listener {l}: never open it to peers"),
            );
        }
        if let Some(l) = s.own_listeners.iter().find(|l| local.covers_listener(**l)) {
            return bad(
                "turn.policy.local",
                format!("{local} covers this program's listener {l}: never open it to peers"),
            );
        }
    }
    Ok(own)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_addresses_are_the_listeners_the_extras_and_a_wildcards_interfaces() {
        let listeners: Vec<SocketAddr> = vec![
            "10.0.0.5:3478".parse().unwrap(),
            "10.0.0.7:443".parse().unwrap(),
        ];
        let extra: Vec<IpAddr> = vec!["10.0.0.8".parse().unwrap()];
        let own = own_addresses(&listeners, &extra);
        for ip in ["10.0.0.5", "10.0.0.7", "10.0.0.8"] {
            assert!(own.contains(&ip.parse().unwrap()), "{ip}: {own:?}");
        }
        let own = own_addresses(&["0.0.0.0:3478".parse().unwrap()], &[]);
        assert!(own.contains(&"127.0.0.1".parse().unwrap()), "{own:?}");
        assert!(own.iter().all(|ip| !ip.is_unspecified()));
    }

    #[test]
    fn relay_addresses_default_to_the_first_specific_listener_of_each_family() {
        let mut s = Settings {
            listen: vec![
                "0.0.0.0:3478".parse().unwrap(),
                "192.0.2.10:3478".parse().unwrap(),
                "[2001:db8::10]:3478".parse().unwrap(),
            ],
            ..Settings::default()
        };
        resolve(&mut s).unwrap();
        assert_eq!(s.turn.relay_v4, Some("192.0.2.10".parse().unwrap()));
        assert_eq!(s.turn.relay_v6, Some("2001:db8::10".parse().unwrap()));

        let mut s = Settings {
            listen: vec!["0.0.0.0:3478".parse().unwrap()],
            ..Settings::default()
        };
        let e = resolve(&mut s).unwrap_err();
        assert!(e.to_string().starts_with("`turn.relay_v4`"), "{e}");
    }

    #[test]
    fn settings_a_start_would_refuse_are_found_without_binding() {
        let ok = Settings::default();
        ok.check().unwrap();
        let refused = |f: &dyn Fn(&mut Settings), field: &str| {
            let mut s = Settings::default();
            f(&mut s);
            let e = s.check().unwrap_err().to_string();
            assert!(e.contains(&format!("`{field}`: ")), "{field}: {e}");
        };
        refused(&|s| s.listen.clear(), "listen");
        refused(&|s| s.listen.push(s.listen[0]), "listen");
        refused(&|s| s.turn.realm.clear(), "realm");
        refused(
            &|s| s.turn.external_v6 = Some("2001:db8::1".parse().unwrap()),
            "external_ip",
        );
        refused(
            &|s| s.turn.external_v4 = Some("224.0.0.1".parse().unwrap()),
            "external_ip",
        );
        refused(&|s| s.turn.nonce_lifetime_secs = 0, "nonce_lifetime");
        refused(&|s| s.turn.max_lifetime_secs = 10, "max_lifetime");
        refused(
            &|s| s.listen = vec!["0.0.0.0:3478".parse().unwrap()],
            "turn.relay_v4",
        );
        let local = |s: &str| crate::server::policy::LocalPeer::parse(s).unwrap();
        refused(
            &|s| {
                let _ = s.turn.policy.local.push(local("127.0.0.1:3478"));
            },
            "turn.policy.local",
        );
        refused(
            &|s| {
                s.own_listeners.push("127.0.0.1:4455".parse().unwrap());
                let _ = s.turn.policy.local.push(local("127.0.0.1:4400-4500"));
            },
            "turn.policy.local",
        );
        // The same entry beside no listener of its ports is fine.
        let mut s = Settings::default();
        let _ = s.turn.policy.local.push(local("127.0.0.1:4400-4500"));
        s.check().unwrap();
    }
}
