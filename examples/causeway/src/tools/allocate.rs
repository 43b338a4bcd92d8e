//! `causeway allocate`: allocate on a server and print the relayed and mapped
//! addresses.

use std::time::{Duration, Instant as StdInstant};

use clap::Args;
use turn_core::client::ClientEvent;

use super::ServerArgs;
use super::conn::{allocate_on, drive, now};

/// Flags of `causeway allocate`.
#[derive(Debug, Args)]
pub(crate) struct AllocateArgs {
    #[command(flatten)]
    pub(crate) server: ServerArgs,
    /// Keep the allocation (refreshed) this many seconds before deleting it.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub(crate) hold: u64,
}

/// Runs `allocate`; returns the process exit code.
pub(crate) fn run(args: &AllocateArgs) -> Result<(), String> {
    let (mut client, mut conn, events) =
        allocate_on(args.server.client_config()?, args.server.tls()?.as_ref())?;
    for e in &events {
        match e {
            ClientEvent::Allocated {
                relayed,
                mapped,
                lifetime,
            } => {
                println!("relayed  {relayed}\nmapped   {mapped}\nlifetime {lifetime} s");
            }
            ClientEvent::Redirected { server } => println!("redirected to {server}"),
            _ => {}
        }
    }
    if args.hold > 0 {
        let until = StdInstant::now() + Duration::from_secs(args.hold);
        drive(&mut client, &mut conn, until, |e| {
            matches!(e, ClientEvent::Failed { .. })
        })
        .map_err(|e| format!("connection to the server failed: {e}"))?;
    }
    client.deallocate(now()).map_err(|e| e.to_string())?;
    let _ = drive(
        &mut client,
        &mut conn,
        StdInstant::now() + Duration::from_secs(5),
        |e| {
            matches!(
                e,
                ClientEvent::Refreshed { lifetime: 0 } | ClientEvent::Failed { .. }
            )
        },
    );
    Ok(())
}
