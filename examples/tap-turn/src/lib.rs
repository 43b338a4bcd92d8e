//! What the two TAP programs share: their command line, the OS random source, the
//! TURN server's configuration, and the credential database. Only the network
//! stack differs between them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use turn_core::adapters::{Local, User};
use turn_core::server::{self, Server, Slot};

/// Relay sockets (allocations at once).
pub const RELAYS: usize = 16;
/// The realm.
pub const REALM: &str = "causeway";

/// The TURN server both programs run.
pub type TapServer = Server<Vec<Slot<8, 8>>, 8, 8>;

/// `PROGRAM TAP IP/PREFIX USER:PASS [ALLOWED-PEER-CIDR]`.
pub struct Options {
    /// The TAP interface.
    pub tap: String,
    /// This stack's address.
    pub ip: Ipv4Addr,
    /// Its prefix length.
    pub prefix: u8,
    /// The one user: name and long-term keys.
    pub users: &'static [User<'static>],
    /// Peers allowed despite the default deny list (the TAP's private subnet).
    pub allow: Option<String>,
}

impl Options {
    /// Parses the command line, or exits with the usage.
    pub fn from_args(program: &str) -> Options {
        let args: Vec<String> = std::env::args().collect();
        let usage = || -> ! {
            eprintln!("usage: {program} TAP IP/PREFIX USER:PASS [ALLOWED-PEER-CIDR]");
            std::process::exit(2)
        };
        let (Some(tap), Some(cidr), Some(user)) = (args.get(1), args.get(2), args.get(3)) else {
            usage()
        };
        let Some((ip, prefix)) = cidr.split_once('/') else {
            usage()
        };
        let (Ok(ip), Ok(prefix)) = (ip.parse::<Ipv4Addr>(), prefix.parse::<u8>()) else {
            usage()
        };
        let Some((name, pass)) = user.split_once(':') else {
            usage()
        };
        let name: &'static str = Box::leak(name.to_string().into_boxed_str());
        let users = Box::leak(Box::new([User::new(name, REALM, pass)]));
        Options {
            tap: tap.clone(),
            ip,
            prefix,
            users,
            allow: args.get(4).cloned(),
        }
    }

    /// The listening address: this stack's address, port 3478.
    pub fn listener(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.ip), 3478)
    }

    /// The adapter's local state: the one user, quotas for 16 allocations per user
    /// and [`RELAYS`] in all, the OS random source.
    pub fn local(&self) -> Local<'static, fn(&mut [u8])> {
        Local {
            users: self.users,
            per_user: 16,
            total: RELAYS as u16,
            rng: random,
        }
    }

    /// The TURN server for these options.
    pub fn server(&self) -> TapServer {
        let mut cfg = server::Config::new(REALM);
        cfg.relay_v4 = Some(self.ip);
        // coturn's test client binds RFC 5766 channel numbers.
        cfg.legacy_channels = true;
        if let Some(allowed) = &self.allow {
            let _ = cfg
                .policy
                .allow
                .push(server::policy::Cidr::parse(allowed).expect("a CIDR"));
        }
        let mut secret = [0u8; 32];
        random(&mut secret);
        Server::new(cfg, vec![Slot::EMPTY; RELAYS], secret).expect("a valid configuration")
    }
}

/// Fills `buf` from the OS random source.
pub fn random(buf: &mut [u8]) {
    if let Err(e) = getrandom::fill(buf) {
        panic!("the OS random source failed: {e}");
    }
}
