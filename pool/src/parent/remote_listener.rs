//! The pool's side of remote workers: a thread that accepts and
//! authenticates them and hands each to the dispatcher. (The worker's side
//! is [`connect_worker`](crate::connect_worker).)

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use connection::{Address, Listener};
use crossbeam_channel::Sender;

use super::worker_reader::Event;
use crate::error::{Error, ErrorKind, Result};

/// How often the accept loop looks at its stop flag while idle.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// The thread accepting remote workers for a pool.
pub(crate) struct RemoteListener {
    address: Address,
    stop: Arc<AtomicBool>,
    /// How many workers have authenticated so far.
    joined: Arc<AtomicUsize>,
    thread: JoinHandle<()>,
}

impl RemoteListener {
    pub(crate) fn address(&self) -> &Address {
        &self.address
    }

    /// The count of workers that have authenticated so far, shared.
    pub(crate) fn joined(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.joined)
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
    let joined = Arc::new(AtomicUsize::new(0));
    let thread = {
        let (stop, joined) = (Arc::clone(&stop), Arc::clone(&joined));
        std::thread::Builder::new()
            .name("pool-listener".into())
            .spawn(move || accept_workers(&mut listener, &stop, &joined, &events))
            .map_err(|err| {
                Error::new(ErrorKind::Startup, "start the listener thread").with_source(err)
            })?
    };
    tracing::debug!(address = %bound, "pool listening for remote workers");
    Ok(RemoteListener {
        address: bound,
        stop,
        joined,
        thread,
    })
}

fn accept_workers(
    listener: &mut Listener,
    stop: &AtomicBool,
    joined: &AtomicUsize,
    events: &Sender<Event>,
) {
    while !stop.load(Ordering::Relaxed) {
        // A timed accept rather than wait-then-accept: a peer that connects
        // and stays silent must not hold this thread (and so the pool's
        // drop) for its whole handshake timeout.
        match listener.accept_timeout(STOP_CHECK) {
            Ok(None) => {}
            Err(err) if err.kind() == connection::ErrorKind::Interrupted => {}
            Ok(Some(conn)) => {
                if let Err(err) = crate::sys::keep_alive(&conn) {
                    tracing::warn!(%err, "cannot turn on TCP keepalive for a remote worker");
                }
                let peer = listener
                    .last_accepted()
                    .map_or_else(|| "an unnamed peer".to_string(), |a| a.to_string());
                if events
                    .send(Event::Joined {
                        conn: Box::new(conn),
                        peer,
                    })
                    .is_err()
                {
                    return;
                }
                joined.fetch_add(1, Ordering::Relaxed);
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
