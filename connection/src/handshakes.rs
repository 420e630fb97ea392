//! The handshakes that a [`Listener`](crate::Listener) with an authkey has
//! started and not yet reported, run on the thread that calls `accept`.
//!
//! Each accepted socket gets an [`Exchange`], a state machine that never
//! waits on its socket, and a deadline. [`Handshakes::next`] watches the
//! listening socket and every pending handshake's socket in one
//! [`ReadySet`] and advances whichever is ready until one handshake ends,
//! one way or the other, and returns it. A pending handshake costs its
//! socket's descriptor and a few hundred bytes, so a crowd of peers that
//! say nothing only fills the table up to
//! [`max_pending_handshakes`](crate::ListenerBuilder::max_pending_handshakes);
//! at that cap the listening socket is not watched, and new peers wait in
//! the kernel's queue until a place frees up.
//!
//! If the process runs out of descriptors (`EMFILE`, `ENFILE`) while
//! accepting (or, with [`shed_oldest_at_cap`](crate::ListenerBuilder::shed_oldest_at_cap),
//! the table is full), the oldest pending handshake is closed to make room
//! for the new peer: the oldest has had the most time to answer, and a flood of
//! silent peers cannot then shut out a good client that comes after it.
//!
//! Between calls nothing runs. The set's descriptor (on Linux) is readable
//! while something is ready, and its alarm makes it readable when the
//! oldest deadline passes, so that [`wait`](crate::wait()) on the listener
//! reports whenever `accept` has something to do.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use crate::address::Address;
use crate::auth::{Advanced, Exchange};
use crate::error::{Error, Result};
use crate::proto::handshake::{self, Role};
use crate::sys::{connection_waiting, is_out_of_descriptors, time_left};
use crate::sys::{Interest, ReadySet, Socket, Wait};

/// The listening socket's token in the [`ReadySet`]; handshakes are
/// numbered up from 0 and never get there.
const LISTENER: u64 = u64::MAX - 1;

/// At most this many connections are taken from the kernel's queue in one
/// go, so that a flood of new peers cannot keep a ready handshake waiting.
const ACCEPT_BATCH: usize = 64;

/// A handshake that ended, one way or the other.
pub(crate) struct Finished {
    /// The peer's address, as the raw accept reported it.
    pub(crate) peer: Option<Address>,
    /// The authenticated socket, or why the handshake failed.
    pub(crate) outcome: Result<Socket>,
}

/// What every handshake needs, whichever peer it is with.
pub(crate) struct Settings {
    pub(crate) key: Vec<u8>,
    pub(crate) strict: bool,
    pub(crate) timeout: Option<Duration>,
    pub(crate) max: usize,
    /// At the cap, close the oldest handshake for a new peer rather than
    /// leave the new peer in the kernel's queue.
    pub(crate) shed_at_cap: bool,
}

/// A connection that accept returned: its socket, and its peer's address.
pub(crate) type Accepted = (Socket, Option<Address>);

struct Pending {
    socket: Socket,
    peer: Option<Address>,
    deadline: Option<Instant>,
    exchange: Exchange,
    /// What the socket is watched for in the set.
    interest: Interest,
}

pub(crate) struct Handshakes {
    settings: Settings,
    /// By number, which is the order they started in and, since all have
    /// the same timeout, the order of their deadlines: the first is the
    /// oldest.
    pending: BTreeMap<u64, Pending>,
    next_id: u64,
    /// The listening socket and every pending handshake's socket.
    ready: ReadySet,
    /// Whether the listening socket is watched (it is not at the cap).
    listener_watched: bool,
    /// Reused between waits.
    events: Vec<crate::sys::Ready>,
}

impl Handshakes {
    /// Bookkeeping for the handshakes of the listening socket `listener`.
    pub(crate) fn new(listener: BorrowedFd<'_>, settings: Settings) -> io::Result<Handshakes> {
        let mut ready = ReadySet::new()?;
        ready.add(listener, LISTENER, Interest::Readable)?;
        let max = settings.max.max(1);
        Ok(Handshakes {
            settings: Settings { max, ..settings },
            pending: BTreeMap::new(),
            next_id: 0,
            ready,
            listener_watched: true,
            events: Vec::new(),
        })
    }

    /// Readable while [`next`](Self::next) has something to do without
    /// waiting; `None` where the platform offers no way to combine
    /// descriptors.
    pub(crate) fn readiness_fd(&self) -> Option<BorrowedFd<'_>> {
        self.ready.fd()
    }

    /// How many handshakes are in progress.
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    /// Accepts connections with `accept` (which gives `None` when the
    /// kernel's queue is empty) and runs handshakes until one ends, and
    /// returns it; `None` once `deadline` passes. Finished handshakes go
    /// before new connections, so that a flood of those cannot keep a
    /// finished one waiting.
    pub(crate) fn next(
        &mut self,
        listener: BorrowedFd<'_>,
        accept: &mut dyn FnMut() -> io::Result<Option<Accepted>>,
        deadline: Option<Instant>,
    ) -> Result<Option<Finished>> {
        let result = self.run(listener, accept, deadline);
        // Leave the set's descriptor telling the truth for `wait`: the
        // listening socket watched unless at the cap, the alarm at the
        // oldest deadline.
        let settled = self
            .watch_listener(listener)
            .and_then(|()| self.ready.set_alarm(self.oldest_deadline()));
        let finished = result?;
        settled.map_err(|err| Error::io(err, "watch for connections"))?;
        Ok(finished)
    }

    fn run(
        &mut self,
        listener: BorrowedFd<'_>,
        accept: &mut dyn FnMut() -> io::Result<Option<Accepted>>,
        deadline: Option<Instant>,
    ) -> Result<Option<Finished>> {
        loop {
            if let Some(finished) = self.expire_oldest() {
                return Ok(Some(finished));
            }
            let oldest = self.oldest_deadline();
            // Re-arming also ends the readiness of an alarm that went off.
            self.watch_listener(listener)
                .and_then(|()| self.ready.set_alarm(oldest))
                .map_err(|err| Error::io(err, "watch for connections"))?;
            let timeout = match (time_left(deadline), time_left(oldest)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            self.events.clear();
            self.ready
                .wait(&mut self.events, timeout)
                .map_err(|err| Error::io(err, "wait for a connection"))?;
            let mut listener_ready = false;
            for i in 0..self.events.len() {
                match self.events[i].token {
                    LISTENER => listener_ready = true,
                    // Events after this one stay ready for the next call.
                    id => {
                        if let Some(finished) = self.advance(id) {
                            return Ok(Some(finished));
                        }
                    }
                }
            }
            if listener_ready {
                if let Some(finished) = self.accept_some(listener, accept)? {
                    return Ok(Some(finished));
                }
            }
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return Ok(None);
            }
        }
    }

    /// Takes up to [`ACCEPT_BATCH`] connections from the kernel's queue
    /// and starts their handshakes; returns one that ended at once.
    fn accept_some(
        &mut self,
        listener: BorrowedFd<'_>,
        accept: &mut dyn FnMut() -> io::Result<Option<Accepted>>,
    ) -> Result<Option<Finished>> {
        for _ in 0..ACCEPT_BATCH {
            if self.pending.len() >= self.settings.max {
                // Only for a connection actually waiting.
                if !self.settings.shed_at_cap || !connection_waiting(listener) {
                    break;
                }
                self.shed_oldest();
            }
            match accept() {
                Ok(Some((socket, peer))) => {
                    if let Some(finished) = self.start(socket, peer) {
                        return Ok(Some(finished));
                    }
                }
                Ok(None) => break,
                // Linux reports this before it looks at the queue: only a
                // connection actually waiting is worth a handshake.
                Err(err) if is_out_of_descriptors(&err) => {
                    if !connection_waiting(listener) {
                        break;
                    }
                    if !self.shed_oldest() {
                        return Err(Error::io(err, "accept"));
                    }
                }
                // A peer that gave up while queued: on to the next.
                Err(err) if err.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(err) => return Err(Error::io(err, "accept")),
            }
        }
        Ok(None)
    }

    /// Starts the handshake with a socket just accepted; returns it if it
    /// ended at once (it can only fail so soon).
    fn start(&mut self, socket: Socket, peer: Option<Address>) -> Option<Finished> {
        // The deadline counts from the accept.
        let Settings {
            timeout, strict, ..
        } = self.settings;
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut exchange = match Exchange::start(Role::Listener, strict, Wait::No) {
            Ok(exchange) => exchange,
            Err(err) => {
                return Some(Finished {
                    peer,
                    outcome: Err(err),
                })
            }
        };
        // The challenge goes out now: a new socket has room for it, so
        // most handshakes are never watched for room.
        if let Advanced::Done(outcome) = exchange.advance(&socket, &self.settings.key) {
            return Some(Finished {
                peer,
                outcome: outcome.map(|()| socket),
            });
        }
        let id = self.next_id;
        self.next_id += 1;
        let interest = exchange.interest();
        if let Err(err) = self.ready.add(socket.fd(), id, interest) {
            let outcome = Err(Error::io(err, "watch the handshake"));
            return Some(Finished { peer, outcome });
        }
        let pending = Pending {
            socket,
            peer,
            deadline,
            exchange,
            interest,
        };
        self.pending.insert(id, pending);
        None
    }

    /// Advances handshake `id`, which the set reported ready; returns it if
    /// it ended.
    fn advance(&mut self, id: u64) -> Option<Finished> {
        // Gone already: ended earlier in this round.
        let pending = self.pending.get_mut(&id)?;
        let outcome = match pending
            .exchange
            .advance(&pending.socket, &self.settings.key)
        {
            Advanced::Done(outcome) => outcome,
            Advanced::Blocked => {
                let interest = pending.exchange.interest();
                if interest == pending.interest {
                    return None;
                }
                match self.ready.watch(pending.socket.fd(), id, interest) {
                    Ok(()) => {
                        pending.interest = interest;
                        return None;
                    }
                    Err(err) => Err(Error::io(err, "watch the handshake")),
                }
            }
        };
        Some(self.finish(id, outcome))
    }

    /// Reports the oldest handshake if its deadline has passed.
    fn expire_oldest(&mut self) -> Option<Finished> {
        let (&id, oldest) = self.pending.first_key_value()?;
        if oldest.deadline? > Instant::now() {
            return None;
        }
        Some(self.finish(id, Err(handshake::timed_out())))
    }

    fn finish(&mut self, id: u64, outcome: Result<()>) -> Finished {
        let pending = self.pending.remove(&id).expect("a pending handshake");
        self.forget(id, &pending);
        Finished {
            peer: pending.peer,
            outcome: outcome.map(|()| pending.socket),
        }
    }

    /// Closes the oldest handshake to free its descriptor; `false` if
    /// there is none.
    fn shed_oldest(&mut self) -> bool {
        let Some((id, oldest)) = self.pending.pop_first() else {
            return false;
        };
        self.forget(id, &oldest);
        let peer = oldest
            .peer
            .as_ref()
            .map_or("an unnamed peer".into(), Address::to_string);
        tracing::debug!(%peer, "closed the oldest pending handshake for a new peer");
        true
    }

    /// Takes a handshake's socket out of the set, before it is closed.
    fn forget(&mut self, id: u64, pending: &Pending) {
        if let Err(err) = self.ready.remove(pending.socket.fd(), id) {
            tracing::debug!(error = %err, "could not unwatch a handshake's socket");
        }
    }

    /// Watches the listening socket unless at the cap (where it waits,
    /// unless a new peer takes the oldest one's place).
    fn watch_listener(&mut self, listener: BorrowedFd<'_>) -> io::Result<()> {
        let watched = self.settings.shed_at_cap || self.pending.len() < self.settings.max;
        if watched != self.listener_watched {
            let interest = if watched {
                Interest::Readable
            } else {
                Interest::Nothing
            };
            self.ready.watch(listener, LISTENER, interest)?;
            self.listener_watched = watched;
        }
        Ok(())
    }

    fn oldest_deadline(&self) -> Option<Instant> {
        self.pending.first_key_value()?.1.deadline
    }
}

impl Drop for Handshakes {
    fn drop(&mut self) {
        // Closing the sockets lets their peers go at once; they leave the
        // set first, as the `poll` fallback requires.
        for (id, pending) in std::mem::take(&mut self.pending) {
            self.forget(id, &pending);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::TcpStream;
    use std::time::Duration;

    use crate::auth;
    use crate::error::ErrorKind;
    use crate::proto::handshake::Role;
    use crate::sys::{SignalPester, Socket, Wait};
    use crate::{wait, Address, Listener};

    const KEY: &[u8] = b"pending key";

    fn listener(timeout: Option<Duration>) -> (Listener, std::net::SocketAddr) {
        let listener = Listener::builder()
            .authkey(KEY)
            .handshake_timeout(timeout)
            .bind(&Address::localhost(0))
            .unwrap();
        let Address::Tcp(addr) = listener.address().clone() else {
            unreachable!()
        };
        (listener, addr)
    }

    /// Calls `accept` under a hail of signals until `count` handshakes are
    /// pending: each call ends with `Interrupted`, since no peer answers.
    fn start_handshakes_interrupted(listener: &mut Listener, count: usize) {
        let pester = SignalPester::start();
        for _ in 0..1000 {
            let err = listener.accept().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Interrupted, "{err}");
            if listener.pending_handshakes() == count {
                return;
            }
        }
        drop(pester);
        panic!("the handshakes did not start");
    }

    /// Answers the listener's handshake on a raw stream, then says `hello`.
    fn authenticate(stream: TcpStream, hello: &'static [u8]) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let socket = Socket::from_owned(stream.into());
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            auth::authenticate(Role::Client, &socket, KEY, false, Some(deadline)).unwrap();
            crate::frame::write_message(&socket, hello, &mut Vec::new(), Wait::ForRoom).unwrap();
        })
    }

    fn accept_within(
        listener: &mut Listener,
        timeout: Duration,
    ) -> crate::Result<crate::Connection> {
        assert_eq!(
            wait(&[&*listener], Some(timeout)).unwrap(),
            [0],
            "nothing to accept"
        );
        listener.accept()
    }

    #[test]
    fn accept_timeout_returns_none_while_a_peer_is_silent_then_the_good_peer() {
        let (mut listener, addr) = listener(Some(Duration::from_secs(60)));
        let silent = TcpStream::connect(addr).unwrap();
        // The silent peer's handshake starts but never finishes: the call
        // gives up instead of waiting out the 60 s handshake timeout.
        assert!(listener
            .accept_timeout(Duration::from_millis(50))
            .unwrap()
            .is_none());
        assert_eq!(listener.pending_handshakes(), 1);
        let good = authenticate(TcpStream::connect(addr).unwrap(), b"good");
        let mut conn = listener
            .accept_timeout(Duration::from_secs(60))
            .unwrap()
            .expect("the good peer within the timeout");
        assert_eq!(conn.recv_bytes().unwrap(), b"good");
        good.join().unwrap();
        drop(silent);
    }

    #[test]
    fn a_signal_does_not_lose_a_pending_handshake() {
        let (mut listener, addr) = listener(Some(Duration::from_secs(60)));
        let stream = TcpStream::connect(addr).unwrap();
        let local = stream.local_addr().unwrap();
        start_handshakes_interrupted(&mut listener, 1);
        let client = authenticate(stream, b"after the signal");
        let mut conn = accept_within(&mut listener, Duration::from_secs(30)).unwrap();
        assert_eq!(listener.last_accepted(), Some(&Address::Tcp(local)));
        assert_eq!(conn.recv_bytes().unwrap(), b"after the signal");
        client.join().unwrap();
    }

    #[test]
    fn wait_reports_a_listener_whose_next_handshake_can_advance() {
        let (mut listener, addr) = listener(Some(Duration::from_secs(60)));
        let a = TcpStream::connect(addr).unwrap();
        let b = TcpStream::connect(addr).unwrap();
        let ports = [a.local_addr().unwrap(), b.local_addr().unwrap()];
        // Both are taken from the kernel's queue, so only the finished
        // handshake can make the listener ready afterwards.
        start_handshakes_interrupted(&mut listener, 2);
        let clients = [authenticate(a, b"a"), authenticate(b, b"b")];
        let mut conn = accept_within(&mut listener, Duration::from_secs(30)).unwrap();
        let first = conn.recv_bytes().unwrap();
        let Some(Address::Tcp(peer)) = listener.last_accepted().cloned() else {
            unreachable!()
        };
        assert_eq!(peer, ports[usize::from(first == b"b")]);
        // The other handshake moves only inside accept, as CPython's does:
        // its client cannot finish before we call it.
        let mut conn = accept_within(&mut listener, Duration::from_secs(30)).unwrap();
        for client in clients {
            client.join().unwrap();
        }
        let second = conn.recv_bytes().unwrap();
        assert_ne!(first, second);
        let Some(Address::Tcp(peer)) = listener.last_accepted().cloned() else {
            unreachable!()
        };
        assert_eq!(peer, ports[usize::from(second == b"b")]);
    }

    #[test]
    fn dropping_the_listener_closes_pending_handshakes_at_once() {
        // No timeout: only the drop can end this handshake.
        let (mut listener, addr) = listener(None);
        let mut silent = TcpStream::connect(addr).unwrap();
        start_handshakes_interrupted(&mut listener, 1);
        drop(listener);
        silent
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut received = Vec::new();
        // Ok means end of file; a timeout would be an error here.
        silent.read_to_end(&mut received).unwrap();
        assert!(received.windows(11).any(|w| w == b"#CHALLENGE#"));
    }
}
