//! `causeway allocate`: allocate on a server and print the relayed and mapped
//! addresses.

use std::time::Duration;

use clap::Args;

use super::{ServerArgs, connect};

/// Flags of `causeway allocate`.
#[derive(Debug, Args)]
pub(crate) struct AllocateArgs {
    #[command(flatten)]
    pub(crate) server: ServerArgs,
    /// Keep the allocation (refreshed) this many seconds before deleting it.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub(crate) hold: u64,
}

/// Runs `allocate`.
pub(crate) fn run(args: &AllocateArgs) -> Result<(), String> {
    let mut turn = connect(args.server.client_config()?, args.server.tls()?.as_ref())?;
    let a = turn
        .allocate(Duration::from_secs(45))
        .map_err(|e| e.to_string())?;
    if let Some(server) = a.redirected {
        println!("redirected to {server}");
    }
    println!(
        "relayed  {}\nmapped   {}\nlifetime {} s",
        a.relayed, a.mapped, a.lifetime
    );
    if args.hold > 0 {
        turn.hold(Duration::from_secs(args.hold))
            .map_err(|e| e.to_string())?;
    }
    if let Err(e) = turn.deallocate(Duration::from_secs(5)) {
        // The allocation was made; it expires by itself.
        eprintln!("causeway: {e} (the allocation expires in its lifetime)");
    }
    Ok(())
}
