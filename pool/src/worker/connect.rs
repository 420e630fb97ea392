//! Joining a pool from another process or host: the library side of
//! `pool-worker --connect` (whose command line lives in `worker-bin`).

use connection::{Address, Client};

use crate::error::{Error, Result};

/// The environment variable a remote worker reads its authkey from when no
/// key file is given (`pool-worker` reads it; [`connect_worker`] takes the
/// key itself).
pub const AUTHKEY_ENV: &str = "POOL_AUTHKEY";

/// Connects to a pool listening at `address`, authenticates with
/// `authkey`, and works for it until it closes; the library side of
/// `pool-worker --connect`.
///
/// This makes the calling process a worker for good: it can no longer start
/// pools of its own, and panics in it are no longer printed (task panics
/// are reported to the pool instead).
///
/// # Examples
///
/// A pool that listens on a free loopback port, and a worker thread that
/// joins it (a real remote worker is a separate process on another host):
///
/// ```
/// pool::task! { fn plus_one(x: u64) -> u64 { x + 1 } }
///
/// fn main() -> Result<(), pool::Error> {
///     pool::init();
///     let pool = pool::Pool::builder()
///         .processes(0)
///         .listen("tcp:127.0.0.1:0", b"secret".to_vec())
///         .build()?;
///     let address = pool.listen_address().unwrap().to_string();
///     std::thread::spawn(move || pool::connect_worker(&address, b"secret"));
///     assert_eq!(pool.apply(plus_one, 1)?, 2);
///     Ok(())
/// }
/// ```
pub fn connect_worker(address: &str, authkey: &[u8]) -> Result<()> {
    let parsed: Address = address
        .parse()
        .map_err(|err| Error::from_connection(err, format!("pool address {address:?}")))?;
    let conn = Client::connect_with_authkey(&parsed, authkey)
        .map_err(|err| Error::from_connection(err, format!("connect to the pool at {address}")))?;
    tracing::debug!(%address, "joined a pool as a remote worker");
    super::serve::serve(conn, None)
}
