//! The pool's side of remote workers: a thread that accepts and
//! authenticates them and hands each to the dispatcher. (The worker's side
//! is [`connect_worker`](crate::connect_worker).)

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use connection::{Address, Listener, DEFAULT_MAX_PENDING_HANDSHAKES};
use crossbeam_channel::Sender;

use super::worker_reader::Event;
use crate::error::{Error, ErrorKind, Result};
use crate::sys;

/// How often the accept loop looks at its stop flag while idle, and how
/// long it pauses after trouble of the listener's own.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// The least time between two log lines about peers that failed to join
/// (or about the listener's own trouble): a flood of them is one line
/// every so often, not one line each.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Descriptors kept for each local worker, for its replacement: the
/// connection (shared by the dispatcher and `pool-io`), the progress
/// page, the stderr pipe, and while it starts the child's end of the connection, the
/// page's copy for the child, `/dev/null` for its stdin, the pipe's other
/// end and the pipe std uses to report a failed exec.
const LOCAL_WORKER_DESCRIPTORS: u64 = 9;
/// How many remote workers the reserve has room for.
const RESERVED_REMOTE_WORKERS: u64 = 64;
/// What each remote worker holds: its connection (shared by the
/// dispatcher and `pool-io`).
const REMOTE_WORKER_DESCRIPTORS: u64 = 1;
/// For the rest of the program: its files, logs, a Slurm launcher's pipes.
const SPARE_DESCRIPTORS: u64 = 64;
/// Pending handshakes allowed however few descriptors there are: below
/// this the reserve is thinner than planned, which only slows joining.
const MIN_PENDING_HANDSHAKES: u64 = 16;

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
/// to the dispatcher. First raises the soft descriptor limit to the hard
/// one, and caps the handshakes in progress so that a crowd of peers can
/// never take the descriptors the pool needs for `processes` local workers
/// and for the remote workers that join (see [`pending_handshake_cap`]).
pub(crate) fn listen(
    address: &str,
    authkey: &[u8],
    processes: usize,
    events: Sender<Event>,
) -> Result<RemoteListener> {
    let limit = sys::raise_descriptor_limit();
    // Unknown: as if only the standard streams were open.
    let open = sys::open_descriptors().unwrap_or(3);
    let cap = pending_handshake_cap(limit, open, processes as u64);
    tracing::debug!(limit, open, cap, "descriptors for the listener");
    let parsed: Address = address.parse().map_err(|err| {
        Error::from_connection(err, format!("listen address {address:?}"))
            .with_kind(ErrorKind::Startup)
    })?;
    let mut listener = Listener::builder()
        .authkey(authkey)
        .max_pending_handshakes(cap)
        .shed_oldest_at_cap(true)
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

/// How many handshakes the listener may run at once, given the soft
/// descriptor `limit`, the descriptors `open` now and the pool's local
/// worker count: half of what is left once the reserve is set aside (the
/// other half stays with the program, and with remote workers beyond the
/// reserved ones), between [`MIN_PENDING_HANDSHAKES`] and connection's
/// default of 8192. The reserve: [`LOCAL_WORKER_DESCRIPTORS`] per local
/// worker, [`RESERVED_REMOTE_WORKERS`] remote workers, and
/// [`SPARE_DESCRIPTORS`].
pub(crate) fn pending_handshake_cap(limit: u64, open: u64, processes: u64) -> usize {
    let reserve = processes * LOCAL_WORKER_DESCRIPTORS
        + RESERVED_REMOTE_WORKERS * REMOTE_WORKER_DESCRIPTORS
        + SPARE_DESCRIPTORS;
    let left = limit.saturating_sub(open).saturating_sub(reserve);
    let cap = (left / 2).clamp(
        MIN_PENDING_HANDSHAKES,
        DEFAULT_MAX_PENDING_HANDSHAKES as u64,
    );
    cap as usize
}

fn accept_workers(
    listener: &mut Listener,
    stop: &AtomicBool,
    joined: &AtomicUsize,
    events: &Sender<Event>,
) {
    let mut peers_failed = Tally::new("peers failed to join the pool");
    let mut trouble = Tally::new("accepting remote workers failed; retrying");
    while !stop.load(Ordering::Relaxed) {
        peers_failed.report_if_due();
        trouble.report_if_due();
        // A timed accept rather than wait-then-accept: a peer that connects
        // and stays silent must not hold this thread (and so the pool's
        // drop) for its whole handshake timeout.
        match listener.accept_timeout(STOP_CHECK) {
            Ok(None) => {}
            Err(err) if err.kind() == connection::ErrorKind::Interrupted => {}
            Ok(Some(conn)) => {
                if let Err(err) = sys::keep_alive(&conn) {
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
            // One peer's failure (a wrong key, a port scanner, a reset) is
            // not the pool's: on to the next peer at once.
            Err(err) if err.is_peer_failure() => {
                tracing::debug!(%err, "a remote worker could not join");
                peers_failed.count(&err);
            }
            // The listener's own trouble (out of descriptors with no
            // handshake to close, say) may pass: keep listening, without
            // spinning on it.
            Err(err) => {
                trouble.count(&err);
                std::thread::sleep(STOP_CHECK);
            }
        }
    }
    peers_failed.report();
    trouble.report();
}

/// Failures counted since the last log line about them, by kind, and
/// logged as one line at most every [`REPORT_EVERY`].
struct Tally {
    what: &'static str,
    by_kind: BTreeMap<String, u64>,
    /// The text of the last failure counted.
    last: String,
    reported_at: Option<Instant>,
}

impl Tally {
    fn new(what: &'static str) -> Tally {
        Tally {
            what,
            by_kind: BTreeMap::new(),
            last: String::new(),
            reported_at: None,
        }
    }

    fn count(&mut self, err: &connection::Error) {
        let kind = match err.io_error_kind() {
            Some(io) if err.kind() == connection::ErrorKind::Io => format!("{} ({io})", err.kind()),
            _ => err.kind().to_string(),
        };
        *self.by_kind.entry(kind).or_default() += 1;
        self.last = format!("{err:#}");
        self.report_if_due();
    }

    /// Logs what was counted if the last line is old enough (the first
    /// failure is logged at once).
    fn report_if_due(&mut self) {
        if !self.by_kind.is_empty()
            && self
                .reported_at
                .map_or(true, |at| at.elapsed() >= REPORT_EVERY)
        {
            self.report();
        }
    }

    fn report(&mut self) {
        if self.by_kind.is_empty() {
            return;
        }
        let count: u64 = self.by_kind.values().sum();
        let by_kind = self
            .by_kind
            .iter()
            .map(|(kind, n)| format!("{n} {kind}"))
            .collect::<Vec<_>>()
            .join(", ");
        let since = self.reported_at.map_or_else(String::new, |at| {
            format!(" in the last {:.0?}", at.elapsed())
        });
        tracing::warn!(
            count,
            by_kind = %by_kind,
            last = %self.last,
            "{}{since} (one line every {REPORT_EVERY:?} at most)",
            self.what
        );
        self.by_kind.clear();
        self.reported_at = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pending_handshakes_leave_the_reserve_free() {
        // The usual soft limit, a few descriptors open, two local workers.
        let (limit, open, processes) = (1024, 40, 2);
        let cap = pending_handshake_cap(limit, open, processes) as u64;
        let reserve = processes * LOCAL_WORKER_DESCRIPTORS
            + RESERVED_REMOTE_WORKERS * REMOTE_WORKER_DESCRIPTORS
            + SPARE_DESCRIPTORS;
        assert!(open + cap + reserve <= limit, "cap {cap}");
        assert!(cap >= 256, "cap {cap}: too few for a busy door");
        // Raised to a server's hard limit: connection's default.
        let raised = pending_handshake_cap(1 << 20, open, processes);
        assert_eq!(raised, DEFAULT_MAX_PENDING_HANDSHAKES);
        // Hardly any descriptor left: still a few.
        assert_eq!(
            pending_handshake_cap(100, 90, 8) as u64,
            MIN_PENDING_HANDSHAKES
        );
    }
}
