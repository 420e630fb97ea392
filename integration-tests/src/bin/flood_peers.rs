//! The flood of `benches/handshake_flood.rs`, in a process of its own so
//! that the listener's process counts only its own descriptors.
//!
//! `flood_peers HOST:PORT SILENT GARBAGE`: raises its descriptor limit as
//! far as allowed, connects the peers (see `Flood`), prints `connected` on
//! a line of stdout, and holds them until its stdin closes.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use integration_tests::{descriptor_limits, set_descriptor_limit, Flood};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, silent, garbage] = &args[..] else {
        eprintln!("usage: flood_peers HOST:PORT SILENT GARBAGE");
        return ExitCode::from(2);
    };
    let (Ok(addr), Ok(silent), Ok(garbage)) = (addr.parse(), silent.parse(), garbage.parse())
    else {
        eprintln!("flood_peers: bad arguments {args:?}");
        return ExitCode::from(2);
    };
    if let Err(err) = set_descriptor_limit(descriptor_limits().1) {
        eprintln!("flood_peers: cannot raise the descriptor limit: {err}");
    }
    let flood = match Flood::connect(addr, silent, garbage, Duration::from_secs(60)) {
        Ok(flood) => flood,
        Err(err) => {
            eprintln!("flood_peers: {err}");
            return ExitCode::from(2);
        }
    };
    println!("connected");
    let _ = std::io::stdout().flush();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(flood);
    ExitCode::SUCCESS
}
