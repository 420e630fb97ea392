//! Remote workers: a pool that listens for them, and the worker side that
//! connects (`pool-worker --connect HOST:PORT`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use connection::{Address, Client, Listener};
use crossbeam_channel::Sender;

use crate::error::{Error, ErrorKind, Result};
use crate::reader::Event;
use crate::worker;

/// The environment variable a remote worker reads its authkey from when no
/// `--authkey-file` is given.
pub const AUTHKEY_ENV: &str = "POOL_AUTHKEY";

/// How often the accept loop looks at its stop flag while idle.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// The thread accepting remote workers for a pool.
pub(crate) struct RemoteListener {
    address: Address,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl RemoteListener {
    pub(crate) fn address(&self) -> &Address {
        &self.address
    }

    pub(crate) fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// Binds `address` and accepts authenticated workers on it, handing each
/// to the dispatcher.
pub(crate) fn listen(
    address: &str,
    authkey: &[u8],
    events: Sender<Event>,
) -> Result<RemoteListener> {
    let parsed: Address = address.parse().map_err(|err| {
        Error::from_connection(err, format!("listen address {address:?}"))
            .with_kind(ErrorKind::Startup)
    })?;
    let mut listener = Listener::builder()
        .authkey(authkey)
        .bind(&parsed)
        .map_err(|err| {
            Error::from_connection(err, format!("listen on {address}"))
                .with_kind(ErrorKind::Startup)
        })?;
    let bound = listener.address().clone();
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("pool-listener".into())
            .spawn(move || accept_workers(&mut listener, &stop, &events))
            .map_err(|err| {
                Error::new(ErrorKind::Startup, "start the listener thread").with_source(err)
            })?
    };
    tracing::debug!(address = %bound, "pool listening for remote workers");
    Ok(RemoteListener {
        address: bound,
        stop,
        thread,
    })
}

fn accept_workers(listener: &mut Listener, stop: &AtomicBool, events: &Sender<Event>) {
    while !stop.load(Ordering::Relaxed) {
        // A timed accept rather than wait-then-accept: a peer that connects
        // and stays silent must not hold this thread (and so the pool's
        // drop) for its whole handshake timeout.
        match listener.accept_timeout(STOP_CHECK) {
            Ok(None) => {}
            Err(err) if err.kind() == connection::ErrorKind::Interrupted => {}
            Ok(Some(conn)) => {
                let peer = listener
                    .last_accepted()
                    .map_or_else(|| "an unnamed peer".to_string(), |a| a.to_string());
                if events.send(Event::Joined { conn, peer }).is_err() {
                    return;
                }
            }
            // One peer's failure (a wrong key, a port scanner) is not the pool's.
            Err(err) if is_one_peers_failure(err.kind()) => {
                tracing::debug!(%err, "a remote worker could not join");
            }
            // The listener's own trouble (out of descriptors, say) may pass:
            // keep listening, without spinning on it.
            Err(err) => {
                tracing::warn!(%err, "accepting remote workers failed; retrying");
                std::thread::sleep(STOP_CHECK);
            }
        }
    }
}

fn is_one_peers_failure(kind: connection::ErrorKind) -> bool {
    use connection::ErrorKind::*;
    matches!(
        kind,
        AuthenticationFailed | Protocol | TimedOut | Truncated | Eof | MessageTooLarge
    )
}

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
    worker::serve(conn, None)
}

const USAGE: &str = "usage: pool-worker --connect HOST:PORT [--authkey-file PATH]

Joins a pool that listens for remote workers and runs its tasks until the
pool closes. The authkey is read from PATH, or else from the POOL_AUTHKEY
environment variable; it is never taken from the command line, where other
users could read it.";

/// Runs a remote worker as the command line `args` says.
pub(crate) fn run_from_args(args: impl Iterator<Item = String>) -> Result<()> {
    let usage = |why: &str| Error::new(ErrorKind::Startup, format!("{why}\n\n{USAGE}"));
    let mut address = None;
    let mut authkey_file: Option<PathBuf> = None;
    let mut args = args;
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_string(), Some(value.to_string())),
            None => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| usage(&format!("{name} needs a value")))
        };
        match flag.as_str() {
            "--connect" => address = Some(value("--connect")?),
            "--authkey-file" => authkey_file = Some(PathBuf::from(value("--authkey-file")?)),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(usage(&format!("unknown argument {other:?}"))),
        }
    }
    let address = address
        .ok_or_else(|| usage("--connect is required (this program is not running under a pool)"))?;
    let authkey = match authkey_file {
        Some(path) => {
            let mut key = std::fs::read(&path).map_err(|err| {
                Error::new(
                    ErrorKind::Startup,
                    format!("read authkey file {}", path.display()),
                )
                .with_source(err)
            })?;
            // A key file written with `echo` ends in a newline that is not part of the key.
            while key.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                key.pop();
            }
            key
        }
        None => std::env::var_os(AUTHKEY_ENV)
            .map(|key| key.into_encoded_bytes())
            .ok_or_else(|| {
                usage(&format!(
                    "no authkey: pass --authkey-file or set {AUTHKEY_ENV}"
                ))
            })?,
    };
    if authkey.is_empty() {
        return Err(usage("the authkey is empty"));
    }
    connect_worker(&address, &authkey)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<()> {
        run_from_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn missing_connect_and_unknown_flags_are_usage_errors() {
        let err = run(&[]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Startup);
        assert!(err.message().contains("--connect is required"), "{err}");
        let err = run(&["--bogus"]).unwrap_err();
        assert!(err.message().contains("unknown argument"), "{err}");
        let err = run(&["--connect"]).unwrap_err();
        assert!(err.message().contains("needs a value"), "{err}");
    }

    #[test]
    fn an_unreadable_authkey_file_is_reported() {
        let err = run(&[
            "--connect=127.0.0.1:9",
            "--authkey-file",
            "/nonexistent/key",
        ])
        .unwrap_err();
        assert!(err.message().contains("/nonexistent/key"), "{err}");
    }
}
