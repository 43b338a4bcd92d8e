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
    /// TLS over TCP (give --ca).
    Tls,
}

impl From<TransportArg> for Transport {
    fn from(t: TransportArg) -> Transport {
        match t {
            TransportArg::Udp => Transport::Udp,
            TransportArg::Tcp => Transport::Tcp,
            TransportArg::Tls => Transport::Tls,
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
    /// With TLS: CA bundle (PEM) the server's certificate is verified against.
    #[arg(long, value_name = "FILE")]
    pub(crate) ca: Option<std::path::PathBuf>,
    /// With TLS: the name the server's certificate must carry (default: the address).
    #[arg(long, value_name = "NAME")]
    pub(crate) server_name: Option<String>,
}

impl ServerArgs {
    /// How to verify the server over TLS, when TLS is asked for.
    pub(crate) fn tls(&self) -> Result<Option<conn::TlsTarget>, String> {
        if self.transport != TransportArg::Tls {
            return Ok(None);
        }
        let ca = self
            .ca
            .as_deref()
            .ok_or("--transport tls needs --ca FILE")?;
        let config = crate::proxy::tls::client_config(Some(ca))?;
        let name = self
            .server_name
            .clone()
            .unwrap_or_else(|| self.server.ip().to_string());
        Ok(Some(conn::TlsTarget { config, name }))
    }

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
