//! The client side of `causeway`: `allocate`, `check` and `load`, all on the
//! sans-IO TURN client of `turn-core`.

pub(crate) mod allocate;
pub(crate) mod check;
pub(crate) mod conn;
pub(crate) mod load;

use std::net::SocketAddr;

use clap::{Args, ValueEnum};
use stun_core::credentials::{SharedSecret, TimeLimitedUsername};
use turn_core::Transport;
use turn_core::client::ClientConfig;

/// Transport to the TURN server.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(crate) enum TransportArg {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
}

impl From<TransportArg> for Transport {
    fn from(t: TransportArg) -> Transport {
        match t {
            TransportArg::Udp => Transport::Udp,
            TransportArg::Tcp => Transport::Tcp,
        }
    }
}

/// Flags every client subcommand takes.
#[derive(Debug, Args, Clone)]
pub(crate) struct ServerArgs {
    /// The TURN server.
    #[arg(long, value_name = "ADDR")]
    pub(crate) server: SocketAddr,
    /// Credentials: NAME:PASS (with --shared-secret, NAME alone).
    #[arg(long, value_name = "NAME:PASS")]
    pub(crate) user: String,
    /// Use time-limited credentials made from this secret (TURN REST scheme).
    #[arg(long, value_name = "SECRET")]
    pub(crate) shared_secret: Option<String>,
    /// Transport to the server.
    #[arg(long, value_enum, default_value_t = TransportArg::Udp)]
    pub(crate) transport: TransportArg,
}

impl ServerArgs {
    /// The client configuration: username and password, derived from the shared
    /// secret when one is given (valid for a day).
    pub(crate) fn client_config(&self) -> Result<ClientConfig, String> {
        let (user, pass) = match &self.shared_secret {
            Some(secret) => {
                let name = self.user.split(':').next().unwrap_or_default();
                let expiry = conn::now().as_secs() + 86_400;
                let mut buf = [0u8; 160];
                let username = TimeLimitedUsername::write(expiry, name, &mut buf)
                    .map_err(|e| format!("--user: {e}"))?
                    .to_string();
                let password = SharedSecret::new(secret.as_bytes())
                    .password(&username)
                    .as_str()
                    .to_string();
                (username, password)
            }
            None => {
                let (u, p) = self
                    .user
                    .split_once(':')
                    .ok_or_else(|| format!("--user `{}` is not NAME:PASS", self.user))?;
                (u.to_string(), p.to_string())
            }
        };
        let mut cfg =
            ClientConfig::new(self.server, &user, &pass).map_err(|e| format!("--user: {e}"))?;
        cfg.transport = self.transport.into();
        let _ = cfg.software.push_str("causeway");
        Ok(cfg)
    }
}
