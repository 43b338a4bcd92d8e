//! `causeway`: the edge server (STUN/TURN relay and WebRTC web proxy) and its
//! client tools: a thin program over the libraries' std adapters (the relay and
//! the blocking client of `turn-core`, the web proxy of `proxy-core`).
//!
//! `causeway serve` with no flags starts on loopback with an embedded default
//! configuration. Flags override the TOML file given with `--config`; every flag has
//! a config key of the same name.

mod admin;
mod cli;
mod config;
mod serve;
mod tools;

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
            init_logging(&plan.log_level);
            match serve::run(plan) {
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

/// Logs to stderr at `level` unless `RUST_LOG` says otherwise.
fn init_logging(level: &str) {
    let env = env_logger::Env::default().default_filter_or(level);
    env_logger::Builder::from_env(env)
        .format_timestamp_millis()
        .init();
}
