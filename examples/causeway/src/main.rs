//! `causeway`: the edge server (STUN/TURN relay and WebRTC web proxy) and its
//! client tools: a thin program over the libraries' std adapters (the relay and
//! the blocking client of `turn-core`, the web proxy of `proxy-core`).
//!
//! `causeway serve` with no flags starts on loopback with an embedded default
//! configuration. Flags override the TOML file given with `--config`; every flag has
//! a config key of the same name.

mod accounting;
mod admin;
mod cli;
mod config;
mod connect;
mod serve;
mod tools;
mod traversal;
mod upgrade;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Serve(args) => {
            let plan = match config::Config::load(&args).and_then(|c| config::Plan::try_from(&c)) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("causeway: configuration refused: {e}");
                    return ExitCode::from(2);
                }
            };
            if args.check_config {
                for w in &plan.warnings {
                    eprintln!("causeway: warning: {w}");
                }
                println!(
                    "causeway: configuration OK ({} listener(s), {} TLS listener(s), admin {})",
                    plan.relay.listen.len(),
                    plan.relay.tls_listen.len(),
                    plan.admin
                );
                return ExitCode::SUCCESS;
            }
            init_logging(&plan.log_level);
            for w in &plan.warnings {
                log::warn!("{w}");
            }
            match serve::run(&args, plan) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    log::error!("{e}");
                    eprintln!("causeway: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        cli::Command::Allocate(args) => exit(tools::allocate::run(&args)),
        cli::Command::Check(args) => exit(tools::check::run(&args)),
        cli::Command::Load(args) => exit(tools::load::run(&args)),
        cli::Command::Select(args) => exit(tools::select::run(&args)),
        cli::Command::Key(args) => exit(tools::key::run(&args)),
        cli::Command::Connect(args) => exit(connect::run(&args)),
    }
}

/// Prints a client tool's error and turns it into the exit code.
fn exit(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("causeway: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr at `level` unless `RUST_LOG` says otherwise (a reload can
/// change the level, but not what `RUST_LOG` set).
fn init_logging(level: &str) {
    if std::env::var_os("RUST_LOG").is_some() {
        env_logger::Builder::from_default_env()
            .format_timestamp_millis()
            .init();
        return;
    }
    // Everything passes the logger's own filter; the global maximum decides.
    env_logger::Builder::new()
        .filter_level(log::LevelFilter::Trace)
        .format_timestamp_millis()
        .init();
    set_log_level(level);
}

/// Sets the log level (when `RUST_LOG` is not set).
pub(crate) fn set_log_level(level: &str) {
    if std::env::var_os("RUST_LOG").is_some() {
        return;
    }
    let filter = level.parse().unwrap_or(log::LevelFilter::Info);
    log::set_max_level(filter);
}
