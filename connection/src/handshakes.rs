//! The handshakes that a [`Listener`](crate::Listener) with an authkey has
//! started and not yet reported.
//!
//! Each accepted socket's handshake runs on a short-lived thread of its
//! own, against the deadline the listener gives it, so a peer that says
//! nothing holds up no one but itself. A thread that finishes sends its
//! [`Finished`] over a channel and then writes one byte to a wake-up socket
//! pair: the byte makes the finish visible to `poll`, and since it is
//! written after the send, a byte read always has its result waiting in
//! the channel. At most `max` handshakes run at once (counting finished
//! ones not yet taken); at the cap the listener stops taking connections
//! from the kernel's backlog until one is taken.
//!
//! When the listener goes, this goes with it: nothing joins the threads.
//! Every socket still in a handshake is shut down, so its thread ends at
//! once (its peer sees end of file) instead of at its deadline, and its
//! result, sent into a channel nobody reads, is dropped with the socket.

use std::collections::HashMap;
use std::io;
use std::net::Shutdown;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use crate::address::Address;
use crate::auth::Handshake;
use crate::error::Result;
use crate::sys::Socket;

/// A handshake that ended, one way or the other.
pub(crate) struct Finished {
    id: u64,
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
}

pub(crate) struct Handshakes {
    key: Arc<[u8]>,
    strict: bool,
    timeout: Option<Duration>,
    max: usize,
    sender: Sender<Finished>,
    finished: Receiver<Finished>,
    /// Threads write a byte here after each result they send...
    wake_writer: Arc<Socket>,
    /// ...which is readable here while a result is waiting.
    wake: Socket,
    /// A second descriptor for the socket of each handshake started and not
    /// yet taken, by id: `len()` is the number pending, and dropping the
    /// listener shuts them down.
    pending: HashMap<u64, Socket>,
    next_id: u64,
    /// Readable while the listener has a connection waiting (unless at the
    /// cap) or a handshake has finished: what `Listener::as_fd` returns, so
    /// that `wait` reports a finished handshake too.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    ready: crate::sys::ReadySet,
}

impl Handshakes {
    /// Bookkeeping for the handshakes of the listening socket `listener`.
    pub(crate) fn new(listener: BorrowedFd<'_>, settings: Settings) -> io::Result<Handshakes> {
        let (sender, finished) = crossbeam_channel::unbounded();
        let (wake_writer, wake) = Socket::pair()?;
        let handshakes = Handshakes {
            key: settings.key.into(),
            strict: settings.strict,
            timeout: settings.timeout,
            max: settings.max.max(1),
            sender,
            finished,
            wake_writer: Arc::new(wake_writer),
            wake,
            pending: HashMap::new(),
            next_id: 0,
            #[cfg(any(target_os = "linux", target_os = "android"))]
            ready: crate::sys::ReadySet::new()?,
        };
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            handshakes.ready.add(listener)?;
            handshakes.ready.add(handshakes.wake.fd())?;
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let _ = listener;
        Ok(handshakes)
    }

    /// Readable while a finished handshake waits to be [taken](Self::take).
    pub(crate) fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake.fd()
    }

    /// Readable while [`Listener::accept`](crate::Listener::accept) has
    /// something to do without waiting; `None` where the platform offers no
    /// way to combine descriptors.
    pub(crate) fn readiness_fd(&self) -> Option<BorrowedFd<'_>> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        return Some(self.ready.fd());
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        return None;
    }

    /// Whether as many handshakes as allowed are pending.
    pub(crate) fn is_full(&self) -> bool {
        self.pending.len() >= self.max
    }

    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    /// Starts the handshake with a socket just accepted on `listener`.
    pub(crate) fn start(
        &mut self,
        listener: BorrowedFd<'_>,
        socket: Socket,
        peer: Option<Address>,
    ) -> io::Result<()> {
        // The deadline counts from the accept, as it did when handshakes
        // ran one after another.
        let deadline = self.timeout.and_then(|t| Instant::now().checked_add(t));
        let id = self.next_id;
        self.next_id += 1;
        let second = socket.try_clone()?;
        let key = self.key.clone();
        let strict = self.strict;
        let sender = self.sender.clone();
        let wake = self.wake_writer.clone();
        let body = move || {
            let handshake = Handshake {
                socket: &socket,
                key: &key,
                strict,
                deadline,
            };
            let outcome = handshake.as_listener().map(|()| socket);
            // Fails only when the listener is gone; the result goes with it.
            if sender.send(Finished { id, peer, outcome }).is_ok() {
                wake_up(&wake);
            }
        };
        std::thread::Builder::new()
            .name("conn-handshake".into())
            .spawn(body)?;
        self.pending.insert(id, second);
        if self.is_full() {
            self.watch_listener(listener, false)?;
        }
        Ok(())
    }

    /// Takes a finished handshake. Call only when [`wake_fd`](Self::wake_fd)
    /// is readable.
    pub(crate) fn take(&mut self, listener: BorrowedFd<'_>) -> io::Result<Finished> {
        let mut byte = [0u8; 1];
        loop {
            match self.wake.read(&mut byte) {
                Ok(1) => break,
                Ok(_) => return Err(io::Error::other("the wake-up socket closed")),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
        }
        let finished = match self.finished.try_recv() {
            Ok(finished) => finished,
            // The byte is written after the send, and we hold a sender.
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => {
                return Err(io::Error::other("a handshake woke us without a result"))
            }
        };
        let was_full = self.is_full();
        self.pending.remove(&finished.id);
        if was_full && !self.is_full() {
            self.watch_listener(listener, true)?;
        }
        Ok(finished)
    }

    fn watch_listener(&self, listener: BorrowedFd<'_>, readable: bool) -> io::Result<()> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        return self.ready.watch(listener, readable);
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            let _ = (listener, readable);
            Ok(())
        }
    }
}

/// Tells the listener that a result is waiting.
fn wake_up(wake: &Socket) {
    loop {
        match wake.write(&[1]) {
            Ok(_) => return,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            // EPIPE: the listener is gone, and nobody waits for the result.
            Err(err) => {
                tracing::debug!(error = %err, "could not report a finished handshake");
                return;
            }
        }
    }
}

impl Drop for Handshakes {
    fn drop(&mut self) {
        for socket in self.pending.values() {
            // The thread's poll wakes up to end of file and it ends; a
            // socket whose thread already ended needs nothing.
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::TcpStream;
    use std::time::Duration;

    use crate::auth::Handshake;
    use crate::error::ErrorKind;
    use crate::sys::{SignalPester, Socket};
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
            Handshake {
                socket: &socket,
                key: KEY,
                strict: false,
                deadline: Some(deadline),
            }
            .as_client()
            .unwrap();
            crate::frame::write_message(&socket, hello, &mut Vec::new()).unwrap();
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
    fn wait_reports_a_finished_handshake_that_accept_has_not_returned() {
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
        for client in clients {
            client.join().unwrap();
        }
        let mut conn = accept_within(&mut listener, Duration::from_secs(30)).unwrap();
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
