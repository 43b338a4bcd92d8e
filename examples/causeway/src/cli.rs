//! Command-line flags. Each flag overrides the config key of the same name.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The causeway edge server and client tools.
#[derive(Debug, Parser)]
#[command(name = "causeway", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the server (with no flags: loopback, embedded default config, demo user).
    Serve(Box<ServeArgs>),
    /// Allocate on a TURN server and print the relayed and mapped addresses.
    Allocate(crate::tools::allocate::AllocateArgs),
    /// Walk the troubleshooting path against a TURN server (and a peer).
    Check(crate::tools::check::CheckArgs),
    /// Load a TURN server: ChannelData echo, or an allocation storm.
    Load(crate::tools::load::LoadArgs),
    /// Print a user's long-term keys (password on standard input), to store in
    /// the configuration instead of the password.
    Key(crate::tools::key::KeyArgs),
    /// Choose a TURN server from a turnServers-style list by round-trip time,
    /// and allocate there, failing over to the next.
    Select(crate::tools::select::SelectArgs),
    /// Run the inside end of the traversal: dial out to the edge and serve its
    /// join URLs from the web bridges inside.
    Connect(crate::connect::ConnectArgs),
}

/// Flags of `causeway serve`.
#[derive(Debug, Args, Default)]
pub(crate) struct ServeArgs {
    /// TOML configuration file; flags override its keys.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// UDP and TCP STUN/TURN listener (repeatable; default 127.0.0.1:3478).
    #[arg(long, value_name = "ADDR")]
    pub(crate) listen: Vec<SocketAddr>,
    /// Authentication realm (default "causeway"; the reference deployment uses TANDBERG).
    #[arg(long, value_name = "REALM")]
    pub(crate) realm: Option<String>,
    /// Long-term credential NAME:PASS (repeatable).
    #[arg(long, value_name = "NAME:PASS")]
    pub(crate) user: Vec<String>,
    /// Secret of time-limited credentials (TURN REST scheme: username
    /// `expiry:user`; repeatable during a rotation: any verifies).
    #[arg(long, value_name = "SECRET")]
    pub(crate) shared_secret: Vec<String>,
    /// Relay ports LOW-HIGH (default 49152-65535; reference: 24000-29999).
    #[arg(long, value_name = "LO-HI")]
    pub(crate) relay_range: Option<String>,
    /// Address relay sockets bind to (repeatable: one IPv4, one IPv6; default: the listen address).
    #[arg(long, value_name = "IP")]
    pub(crate) relay_ip: Vec<IpAddr>,
    /// Address advertised in XOR-RELAYED-ADDRESS (static NAT; one per family).
    #[arg(long, value_name = "IP")]
    pub(crate) external_ip: Vec<IpAddr>,
    /// Peers that may be relayed to despite the default deny list (repeatable CIDR).
    #[arg(long, value_name = "CIDR")]
    pub(crate) allow_peer: Vec<String>,
    /// Extra denied peers (repeatable CIDR; beats --allow-peer).
    #[arg(long, value_name = "CIDR")]
    pub(crate) deny_peer: Vec<String>,
    /// Usage records, one JSON line per allocation when it ends, appended to
    /// this file (reopened on SIGHUP).
    #[arg(long, value_name = "FILE")]
    pub(crate) usage_log: Option<PathBuf>,
    /// A service of this host clients may relay to, exactly (repeatable
    /// IP:PORT or IP:FIRST-LAST; e.g. a media server on the relay's address).
    #[arg(long, value_name = "IP:PORT")]
    pub(crate) allow_local_peer: Vec<String>,
    /// TCP load balancers that send a PROXY protocol header first (repeatable CIDR).
    #[arg(long, value_name = "CIDR")]
    pub(crate) proxy_protocol_from: Vec<String>,
    /// TURN over TLS and the web proxy, demultiplexed (e.g. 0.0.0.0:443; repeatable).
    #[arg(long, value_name = "ADDR")]
    pub(crate) tls_listen: Vec<SocketAddr>,
    /// Certificate chain (PEM) for --tls-listen.
    #[arg(long, value_name = "FILE")]
    pub(crate) cert: Option<PathBuf>,
    /// Private key (PEM) for --cert.
    #[arg(long, value_name = "FILE")]
    pub(crate) key: Option<PathBuf>,
    /// Web proxy: join URL host -> web bridge (HOST=https://bridge:443; repeatable).
    #[arg(long, value_name = "HOST=UPSTREAM")]
    pub(crate) proxy: Vec<String>,
    /// CA bundle that web bridge certificates are verified against.
    #[arg(long, value_name = "FILE")]
    pub(crate) upstream_ca: Option<PathBuf>,
    /// Plain HTTP listener that redirects to https (e.g. 0.0.0.0:80).
    #[arg(long, value_name = "ADDR")]
    pub(crate) http_redirect: Option<SocketAddr>,
    /// Status JSON and Prometheus metrics (default 127.0.0.1:4455; never 443).
    #[arg(long, value_name = "ADDR")]
    pub(crate) admin: Option<SocketAddr>,
    /// File holding the admin token (default: one drawn at start, its file printed).
    #[arg(long, value_name = "FILE")]
    pub(crate) admin_token_file: Option<PathBuf>,
    /// Sibling sent with 300 Try Alternate when this node is full.
    #[arg(long, value_name = "ADDR")]
    pub(crate) alternate_server: Option<SocketAddr>,
    /// SOFTWARE attribute sent in responses ("" to omit).
    #[arg(long, value_name = "TEXT")]
    pub(crate) software: Option<String>,
    /// Worker threads (0: one per core).
    #[arg(long, value_name = "N")]
    pub(crate) threads: Option<usize>,
    /// Interface to relay bound channels on in the kernel (XDP; repeatable; a
    /// build with feature `xdp`).
    #[arg(long, value_name = "IFACE")]
    pub(crate) xdp_interface: Vec<String>,
    /// Log level: error, warn, info, debug or trace (RUST_LOG overrides).
    #[arg(long, value_name = "LEVEL")]
    pub(crate) log_level: Option<String>,
    /// Check the configuration (certificate and key included) and exit: 0 when
    /// it would start, 2 with the field named when not. Binds nothing.
    #[arg(long)]
    pub(crate) check_config: bool,
}
