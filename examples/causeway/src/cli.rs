//! Command-line flags. Each flag overrides the config key of the same name.

use std::net::SocketAddr;
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
    /// Run the server (with no flags: loopback, embedded default config).
    Serve(ServeArgs),
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
    /// SOFTWARE attribute sent in responses ("" to omit).
    #[arg(long, value_name = "TEXT")]
    pub(crate) software: Option<String>,
    /// Worker threads (0: one per core).
    #[arg(long, value_name = "N")]
    pub(crate) threads: Option<usize>,
    /// Log level: error, warn, info, debug or trace (RUST_LOG overrides).
    #[arg(long, value_name = "LEVEL")]
    pub(crate) log_level: Option<String>,
}
