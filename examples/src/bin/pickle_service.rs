//! A Rust service for Python clients: CPython's
//! `multiprocessing.connection.Client` sends work as plain dicts with its
//! own `send()`, and reads the results as dicts with `recv()`. No Python
//! package is needed on the client side; see `examples/python/pickle_client.py`.
//!
//! ```sh
//! export PICKLE_AUTHKEY="$(head -c 32 /dev/urandom | base64)"
//! cargo run -p examples --bin pickle_service -- --listen tcp:127.0.0.1:7100
//! python3 examples/python/pickle_client.py 127.0.0.1:7100   # another shell
//! ```
//!
//! A request is `{"op": "stats", "id": 1, "values": [...]}` or
//! `{"op": "primes_below", "id": 2, "n": 100000}`; the reply carries the
//! same `id`. A request that does not decode gets `{"error": "..."}` and the
//! connection goes on: a decode error consumes just that message. `None`
//! ends the client's session.

#![deny(unsafe_code)]

use std::error::Error;
use std::process::ExitCode;

use clap::Parser;
use connection::{Address, Connection, ErrorKind, Listener};
use examples::cli::exit_code;
use examples::primes::count_primes_in;
use serde::{Deserialize, Serialize};

/// Serves pickled requests from Python multiprocessing clients.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Where to listen: tcp:HOST:PORT, unix:PATH or abstract:NAME (port 0
    /// picks a free port; the address is printed)
    #[arg(long, default_value = "tcp:127.0.0.1:0")]
    listen: String,

    /// Exit after serving this many clients [default: serve forever]
    #[arg(long, value_name = "N")]
    clients: Option<u64>,
}

/// The environment variable with the shared authkey, on both sides.
const AUTHKEY_ENV: &str = "PICKLE_AUTHKEY";

/// What a client may ask, told apart by the dict's `"op"` entry.
#[derive(Deserialize, Debug)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request {
    /// Count, mean, minimum and maximum of `values` (ints or floats).
    Stats { id: u64, values: Vec<f64> },
    /// How many primes are below `n`.
    PrimesBelow { id: u64, n: u64 },
}

/// Each reply is a dict; `None` fields are sent as Python `None`.
#[derive(Serialize, Debug)]
#[serde(untagged)]
enum Reply {
    Stats {
        id: u64,
        count: usize,
        mean: Option<f64>,
        min: Option<f64>,
        max: Option<f64>,
    },
    Primes {
        id: u64,
        count: u64,
    },
    Error {
        error: String,
    },
}

/// The largest `n` a `primes_below` request may ask for, to keep one
/// request from holding the service for long.
const MAX_PRIMES_BELOW: u64 = 1 << 32;

fn main() -> ExitCode {
    let args = Args::parse();
    exit_code("pickle_service", serve(&args))
}

fn serve(args: &Args) -> Result<(), Box<dyn Error>> {
    let authkey = std::env::var(AUTHKEY_ENV)
        .map_err(|_| format!("set {AUTHKEY_ENV} to the authkey the clients use"))?;
    let address: Address = args.listen.parse()?;
    let mut listener = Listener::builder()
        .authkey(authkey.as_bytes())
        .bind(&address)?;
    println!("listening on {}", listener.address());
    let mut served = 0;
    while args.clients.map_or(true, |limit| served < limit) {
        let conn = match listener.accept() {
            Ok(conn) => conn,
            // A client with the wrong key is its problem, not the service's.
            Err(err) if err.kind() == ErrorKind::AuthenticationFailed => {
                eprintln!("pickle_service: {err}");
                continue;
            }
            Err(err) => return Err(err.into()),
        };
        served += 1;
        let requests = session(conn)?;
        println!("client {served}: {requests} requests served");
    }
    Ok(())
}

/// Answers one client's requests until it sends `None` or hangs up;
/// returns how many it answered.
fn session(mut conn: Connection) -> Result<u64, Box<dyn Error>> {
    let mut answered = 0;
    loop {
        let reply = match conn.recv_pickle::<Option<Request>>() {
            Ok(Some(request)) => handle(request),
            Ok(None) => return Ok(answered),
            Err(err) if err.kind() == ErrorKind::Eof => return Ok(answered),
            Err(err) if err.kind() == ErrorKind::Decode => Reply::Error {
                // `{:#}` appends the cause: what did not decode, and why.
                error: format!("{err:#}"),
            },
            Err(err) => return Err(err.into()),
        };
        conn.send_pickle(&reply)?;
        answered += 1;
    }
}

fn handle(request: Request) -> Reply {
    match request {
        Request::Stats { id, values } => {
            let count = values.len();
            let (min, max) = values.iter().fold(
                (None, None),
                |(min, max): (Option<f64>, Option<f64>), &v| {
                    (
                        Some(min.map_or(v, |m| m.min(v))),
                        Some(max.map_or(v, |m| m.max(v))),
                    )
                },
            );
            let mean = (count > 0).then(|| values.iter().sum::<f64>() / count as f64);
            Reply::Stats {
                id,
                count,
                mean,
                min,
                max,
            }
        }
        Request::PrimesBelow { n, .. } if n > MAX_PRIMES_BELOW => Reply::Error {
            error: format!("primes_below: n = {n} is above {MAX_PRIMES_BELOW}"),
        },
        Request::PrimesBelow { id, n } => Reply::Primes {
            id,
            count: count_primes_in(0..n),
        },
    }
}
