//! [`Listener`]: accepts connections on an [`Address`], authenticating
//! each peer when given an authkey.

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use crate::address::Address;
use crate::auth::Authkey;
use crate::connection::{Connection, Direction, DEFAULT_MAX_MESSAGE_SIZE};
use crate::error::{Error, ErrorKind, Result};
use crate::handshakes::{Accepted, Handshakes, Settings};
use crate::listen_socket::{handshake_failed, ListenSocket};
use crate::setters::setters;
use crate::sys::{self, time_left, PollFd};

/// How long [`Listener::accept`] gives a peer to complete the handshake
/// unless told otherwise: 5 seconds, ample for a few round trips on any
/// network. Handshakes run side by side, so a peer that says nothing delays
/// no one else; the timeout bounds how long it holds one of the
/// [`DEFAULT_MAX_PENDING_HANDSHAKES`] places (and a descriptor).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// How many handshakes a [`Listener`] runs at once unless told otherwise
/// (see [`ListenerBuilder::max_pending_handshakes`]): 8192. A pending
/// handshake costs a descriptor and a few hundred bytes, so this bounds
/// the memory a crowd of silent peers can take to a few megabytes; the
/// descriptor limit (`ulimit -n`) usually comes first, and then the
/// oldest handshake makes room for the newest (see [`Listener::accept`]).
pub const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 8192;

/// The default length of the queue of connections not yet accepted: 1024,
/// so that a burst of peers does not overflow it while `accept` is busy
/// (a peer whose connection the kernel drops retries only after a second).
pub const DEFAULT_BACKLOG: u32 = 1024;

/// Options for a [`Listener`], or with the `tokio` feature an
/// `AsyncListener`; made by
/// [`Listener::builder`], finished by [`bind`](ListenerBuilder::bind) or
/// `bind_async`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use connection::{Address, Listener};
///
/// let listener = Listener::builder()
///     .authkey(b"secret")
///     .backlog(16)
///     .handshake_timeout(Some(Duration::from_secs(2)))
///     .max_pending_handshakes(8)
///     .strict(true)
///     .max_message_size(1 << 20)
///     .bind(&Address::localhost(0))?;
/// assert!(listener.address().is_tcp());
/// # Ok::<(), connection::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct ListenerBuilder {
    pub(crate) backlog: u32,
    pub(crate) authkey: Option<Authkey>,
    pub(crate) handshake_timeout: Option<Duration>,
    pub(crate) max_pending_handshakes: usize,
    pub(crate) shed_oldest_at_cap: bool,
    pub(crate) strict: bool,
    pub(crate) max_message_size: u64,
}

impl Default for ListenerBuilder {
    fn default() -> ListenerBuilder {
        ListenerBuilder {
            backlog: DEFAULT_BACKLOG,
            authkey: None,
            handshake_timeout: Some(DEFAULT_HANDSHAKE_TIMEOUT),
            max_pending_handshakes: DEFAULT_MAX_PENDING_HANDSHAKES,
            shed_oldest_at_cap: false,
            strict: false,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

impl ListenerBuilder {
    /// Authenticate every peer with this key, as CPython's
    /// `Listener(authkey=...)`. Without one there is no handshake at all.
    /// An empty key still runs the handshake, as CPython's `authkey=b''`
    /// does, but anyone can answer it: a TCP listener warns about it as
    /// about no key.
    pub fn authkey(mut self, key: impl AsRef<[u8]>) -> ListenerBuilder {
        self.authkey = Some(Authkey(key.as_ref().to_vec()));
        self
    }

    setters! {
        /// How many connections may wait to be accepted (default
        /// [`DEFAULT_BACKLOG`]; the kernel caps it at `somaxconn`).
        backlog: u32;

        /// How long a peer gets to complete the handshake, counted from when
        /// its connection is accepted (default [`DEFAULT_HANDSHAKE_TIMEOUT`];
        /// `None` waits forever, as CPython does: a silent peer then holds its
        /// place until it hangs up or the listener is dropped).
        handshake_timeout: Option<Duration>;

        /// How many handshakes may be in progress at once (default
        /// [`DEFAULT_MAX_PENDING_HANDSHAKES`]; 0 counts as 1). Each costs its
        /// connection's descriptor and a few hundred bytes; none costs a
        /// thread. At the cap the listener takes no more connections from the
        /// kernel's queue (the [backlog](ListenerBuilder::backlog)) until one
        /// ends (or, with [`shed_oldest_at_cap`](ListenerBuilder::shed_oldest_at_cap),
        /// closes the oldest for a new peer). Without an authkey there are no handshakes and this is unused.
        /// An async listener's handshakes are tasks that go on between
        /// accepts: there a finished one counts until `accept` returns it.
        max_pending_handshakes: usize;

        /// At the [cap](ListenerBuilder::max_pending_handshakes), close the
        /// oldest pending handshake to take a new peer from the kernel's queue,
        /// as when the process is out of descriptors, rather than leave the
        /// new peer waiting until a handshake ends (default `false`). A crowd
        /// of silent peers then delays a good client by no more than the time
        /// it takes to accept the crowd, not by handshake timeouts; the price
        /// is that a handshake gets only as long as it takes that many new
        /// peers to arrive, under a crowd that keeps coming.
        ///
        /// ```
        /// use std::net::TcpStream;
        /// use std::time::Duration;
        /// use connection::{Address, Client, Listener};
        ///
        /// let mut listener = Listener::builder()
        ///     .authkey(b"key")
        ///     .max_pending_handshakes(1)
        ///     .shed_oldest_at_cap(true)
        ///     .bind(&Address::localhost(0))?;
        /// let address = listener.address().clone();
        /// let Address::Tcp(addr) = address.clone() else { unreachable!() };
        /// let silent = TcpStream::connect(addr)?;
        /// assert!(listener.accept_timeout(Duration::from_millis(100))?.is_none());
        /// // The silent peer holds the only place: the good one takes it.
        /// let good = std::thread::spawn(move || Client::connect_with_authkey(&address, b"key"));
        /// assert!(listener.accept_timeout(Duration::from_secs(30))?.is_some());
        /// good.join().unwrap()?;
        /// # drop(silent);
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        shed_oldest_at_cap: bool;

        /// Refuse peers that authenticate with HMAC-MD5, which includes every
        /// Python 3.11 or older (default: accept them, as CPython 3.12 does).
        strict: bool;

        /// The [`max_message_size`](Connection::max_message_size) of accepted
        /// connections (default [`DEFAULT_MAX_MESSAGE_SIZE`]).
        max_message_size: u64;
    }

    /// Binds to `address` and starts listening.
    ///
    /// A Unix socket file must not exist yet (a stale one left by a crashed
    /// program has to be removed first); the listener removes the file it
    /// created when closed or dropped. A TCP listener without an authkey
    /// (or with an empty one) logs a warning: anyone who can reach the
    /// port can then send data.
    pub fn bind(&self, address: &Address) -> Result<Listener> {
        let socket = ListenSocket::bind(address, None, self.backlog, self.authkey.as_deref())?;
        let address = socket.address().clone();
        let handshakes = match &self.authkey {
            None => None,
            Some(key) => {
                let settings = Settings {
                    key: key.to_vec(),
                    strict: self.strict,
                    timeout: self.handshake_timeout,
                    max: self.max_pending_handshakes,
                    shed_at_cap: self.shed_oldest_at_cap,
                };
                let handshakes = Handshakes::new(socket.fd(), settings);
                Some(
                    handshakes
                        .map_err(|err| Error::io(err, "prepare handshakes").context(&address))?,
                )
            }
        };
        Ok(Listener {
            socket,
            options: self.clone(),
            handshakes,
            last_accepted: None,
        })
    }
}

/// A bound socket that accepts connections, like CPython's
/// `multiprocessing.connection.Listener`, over Unix sockets (a path or a
/// Linux abstract name) or TCP.
///
/// With an [authkey](ListenerBuilder::authkey) every accepted peer must
/// pass CPython's mutual challenge-response handshake; see the crate docs
/// on security. Handshakes run side by side on the thread that calls
/// [`accept`](Listener::accept), as state machines over sockets that are
/// never waited on, so a peer that connects and says nothing (or thousands
/// of them) holds up no one else: `accept` returns whichever peer completes
/// its handshake first. The listener starts no threads.
///
/// # Examples
///
/// ```
/// use connection::{Client, Listener};
///
/// // Abstract names are machine-wide: make this one unique to the process.
/// let name = format!("abstract:connection-doc-listener-{}", std::process::id());
/// let mut listener = Listener::builder().authkey(b"secret").bind(&name.parse()?)?;
/// let address = listener.address().clone();
/// let client = std::thread::spawn(move || -> connection::Result<Vec<u8>> {
///     let mut conn = Client::connect_with_authkey(&address, b"secret")?;
///     conn.send_bytes(b"hello")?;
///     conn.recv_bytes()
/// });
/// let mut conn = listener.accept()?;
/// assert_eq!(conn.recv_bytes()?, b"hello");
/// conn.send_bytes(b"welcome")?;
/// assert_eq!(client.join().unwrap()?, b"welcome");
/// # Ok::<(), connection::Error>(())
/// ```
pub struct Listener {
    socket: ListenSocket,
    options: ListenerBuilder,
    /// With an authkey: the handshakes started and not yet returned.
    handshakes: Option<Handshakes>,
    last_accepted: Option<Address>,
}

impl Listener {
    /// Options for a new listener.
    pub fn builder() -> ListenerBuilder {
        ListenerBuilder::default()
    }

    /// Binds to `address` with default options and no authkey.
    ///
    /// # Examples
    ///
    /// ```
    /// let name = format!("abstract:connection-doc-bind-{}", std::process::id());
    /// let listener = connection::Listener::bind(&name.parse()?)?;
    /// assert_eq!(listener.address().to_string(), name);
    /// # Ok::<(), connection::Error>(())
    /// ```
    pub fn bind(address: &Address) -> Result<Listener> {
        ListenerBuilder::default().bind(address)
    }

    /// Waits for a peer, authenticates it if there is an authkey, and
    /// returns the connection.
    ///
    /// With an authkey, `accept` goes on taking new connections while the
    /// handshakes of earlier ones are in progress (up to
    /// [`max_pending_handshakes`](ListenerBuilder::max_pending_handshakes)
    /// at once), advances each as its peer answers, and returns the first
    /// peer whose handshake ends: a peer that connects and says nothing
    /// delays no one, unlike with CPython's `Listener`. Its handshake ends
    /// at the [handshake timeout](ListenerBuilder::handshake_timeout), and
    /// a later `accept` reports that. As with CPython, handshakes move
    /// only while `accept` (or [`accept_timeout`](Listener::accept_timeout))
    /// runs: a client's connect completes once the listener's owner calls
    /// it.
    ///
    /// If the process has no descriptor left for a peer waiting in the
    /// kernel's queue (`EMFILE` or `ENFILE`), `accept` closes the oldest
    /// pending handshake, whose peer has had the longest to answer, and
    /// takes the new peer in its place: a crowd of silent peers cannot use
    /// up the descriptors and shut out a good client. With no handshake to
    /// close, `accept` returns that error
    /// ([`ErrorKind::Io`]).
    ///
    /// A handshake that fails is returned as an error for that one peer
    /// ([`Error::is_peer_failure`] says so, whatever its kind: a peer that
    /// resets its connection gives [`ErrorKind::Eof`],
    /// as a tokio listener's does),
    /// and the listener stays usable: call `accept` again at once to serve
    /// the next. A silent or too slow peer gives
    /// [`ErrorKind::TimedOut`]; a peer with a
    /// wrong key gets `#FAILURE#` and this side
    /// [`ErrorKind::AuthenticationFailed`];
    /// a peer that sends something other than the handshake gives
    /// [`ErrorKind::Protocol`]. Error messages
    /// name the listener's and the peer's addresses.
    ///
    /// A signal that arrives while `accept` waits ends the wait with
    /// [`ErrorKind::Interrupted`]; handshakes
    /// in progress carry on, and a later `accept` returns them. A signal
    /// does not disturb a handshake itself, which would cost the peer its
    /// connection. To wait with a timeout use
    /// [`accept_timeout`](Listener::accept_timeout); for several listeners
    /// at once, [`wait`](crate::wait()) first. On Linux a listener with an
    /// authkey is ready when `accept` has something to do: a new peer, a
    /// pending peer's answer, or a handshake's deadline. That step may not
    /// end a handshake, so `accept` may still wait; `accept_timeout` with a
    /// zero timeout takes the step and returns at once. Elsewhere the
    /// listener is ready only for a new peer. Dropping the listener does
    /// not wait for handshakes in progress: their connections are closed.
    ///
    /// # Examples
    ///
    /// ```
    /// use connection::{Client, ErrorKind, Listener};
    ///
    /// let name = format!("abstract:connection-doc-accept-{}", std::process::id());
    /// let mut listener = Listener::builder().authkey(b"right").bind(&name.parse()?)?;
    /// let address = listener.address().clone();
    /// let clients = std::thread::spawn(move || {
    ///     let wrong = Client::connect_with_authkey(&address, b"wrong");
    ///     let right = Client::connect_with_authkey(&address, b"right");
    ///     (wrong.unwrap_err().kind(), right.is_ok())
    /// });
    /// assert_eq!(listener.accept().unwrap_err().kind(), ErrorKind::AuthenticationFailed);
    /// let _conn = listener.accept()?;
    /// assert_eq!(clients.join().unwrap(), (ErrorKind::AuthenticationFailed, true));
    /// # Ok::<(), connection::Error>(())
    /// ```
    pub fn accept(&mut self) -> Result<Connection> {
        // With no deadline, accept_until returns only with a peer or an error.
        self.accept_until(None)?
            .ok_or_else(|| Error::new(ErrorKind::TimedOut, "accept").context(self.address()))
    }

    /// Like [`accept`](Listener::accept), but gives up after `timeout` and
    /// returns `Ok(None)` if no peer was ready by then (a peer whose
    /// handshake is still running stays pending for the next call). A zero
    /// timeout never blocks.
    ///
    /// This is how a server loop stays responsive to its own shutdown while
    /// peers are slow to authenticate.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use connection::{Client, Listener};
    ///
    /// let name = format!("abstract:connection-doc-accept-timeout-{}", std::process::id());
    /// let mut listener = Listener::builder().authkey(b"key").bind(&name.parse()?)?;
    /// assert!(listener.accept_timeout(Duration::ZERO)?.is_none());
    /// let address = listener.address().clone();
    /// let client = std::thread::spawn(move || Client::connect_with_authkey(&address, b"key"));
    /// let conn = listener.accept_timeout(Duration::from_secs(30))?;
    /// assert!(conn.is_some());
    /// client.join().unwrap()?;
    /// # Ok::<(), connection::Error>(())
    /// ```
    pub fn accept_timeout(&mut self, timeout: Duration) -> Result<Option<Connection>> {
        // A timeout too long to add to now is, in effect, none.
        self.accept_until(Instant::now().checked_add(timeout))
    }

    /// Accepts the next peer, or returns `None` once `deadline` passes.
    fn accept_until(&mut self, deadline: Option<Instant>) -> Result<Option<Connection>> {
        let address = self.socket.address();
        let (socket, peer) = match self.handshakes.as_mut() {
            None => match accept_plain(&self.socket, deadline) {
                Ok(Some(accepted)) => accepted,
                Ok(None) => return Ok(None),
                Err(err) => return Err(err.context(address)),
            },
            Some(handshakes) => {
                let socket = &self.socket;
                let mut accept = || socket.accept();
                let finished = handshakes
                    .next(socket.fd(), &mut accept, deadline)
                    .map_err(|err| err.context(address))?;
                let Some(finished) = finished else {
                    return Ok(None);
                };
                match finished.outcome {
                    Ok(socket) => (socket, finished.peer),
                    Err(err) => return Err(handshake_failed(err, finished.peer.as_ref(), address)),
                }
            }
        };
        let mut conn = Connection::new(socket, Direction::Both);
        conn.set_max_message_size(self.options.max_message_size);
        self.last_accepted = peer;
        Ok(Some(conn))
    }

    /// How many handshakes are in progress or finished and not yet returned.
    #[cfg(test)]
    pub(crate) fn pending_handshakes(&self) -> usize {
        self.handshakes.as_ref().map_or(0, Handshakes::len)
    }

    /// The address this listener is bound to. For TCP it is the actual
    /// one, so binding port 0 and reading the port here works.
    ///
    /// # Examples
    ///
    /// ```
    /// use connection::{Address, Listener};
    ///
    /// let listener = Listener::bind(&Address::localhost(0))?;
    /// let Address::Tcp(addr) = listener.address() else { unreachable!() };
    /// assert_ne!(addr.port(), 0);
    /// # Ok::<(), connection::Error>(())
    /// ```
    pub fn address(&self) -> &Address {
        self.socket.address()
    }

    /// The address of the peer that the last successful
    /// [`accept`](Listener::accept) returned: `None` before that, and for
    /// a Unix-socket peer that did not bind a name of its own (most do not).
    ///
    /// # Examples
    ///
    /// ```
    /// use connection::{Address, Client, Listener};
    ///
    /// let mut listener = Listener::builder().authkey(b"k").bind(&Address::localhost(0))?;
    /// assert!(listener.last_accepted().is_none());
    /// let address = listener.address().clone();
    /// let client = std::thread::spawn(move || Client::connect_with_authkey(&address, b"k"));
    /// let _conn = listener.accept()?;
    /// let Some(Address::Tcp(peer)) = listener.last_accepted() else { unreachable!() };
    /// assert!(peer.ip().is_loopback());
    /// client.join().unwrap()?;
    /// # Ok::<(), connection::Error>(())
    /// ```
    pub fn last_accepted(&self) -> Option<&Address> {
        self.last_accepted.as_ref()
    }

    /// Stops listening and removes the Unix socket file this listener
    /// created, reporting a failure to remove it that dropping would only
    /// log. A file already gone is no error.
    ///
    /// # Examples
    ///
    /// ```
    /// use connection::{Address, Listener};
    ///
    /// let dir = std::env::temp_dir().join(format!("connection-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("close.sock");
    /// let listener = Listener::bind(&Address::Unix(path.clone()))?;
    /// assert!(path.exists());
    /// listener.close()?;
    /// assert!(!path.exists());
    /// std::fs::remove_dir(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(self) -> Result<()> {
        self.socket.close()
    }
}

/// Without an authkey: waits for a connection and takes it.
fn accept_plain(socket: &ListenSocket, deadline: Option<Instant>) -> Result<Option<Accepted>> {
    loop {
        let mut fds = [PollFd::readable(socket.fd())];
        let ready = sys::poll(&mut fds, time_left(deadline))
            .map_err(|err| Error::io(err, "wait for a connection"))?;
        if ready == 0 {
            return Ok(None);
        }
        // None: the connection went before we took it; wait for the next.
        if let Some(accepted) = socket.accept().map_err(|err| Error::io(err, "accept"))? {
            return Ok(Some(accepted));
        }
    }
}

/// The descriptor to watch for [`accept`](Listener::accept) having
/// something to do: with an authkey (on Linux) an epoll descriptor that is
/// readable when a new peer waits, a pending peer has answered, or a
/// handshake's deadline has passed, so that [`wait`](crate::wait()) and
/// `poll` miss none; otherwise the listening socket itself.
impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.handshakes
            .as_ref()
            .and_then(Handshakes::readiness_fd)
            .unwrap_or_else(|| self.socket.fd())
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("address", self.address())
            .field("options", &self.options)
            .field("last_accepted", &self.last_accepted)
            .field(
                "pending_handshakes",
                &self.handshakes.as_ref().map_or(0, Handshakes::len),
            )
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Level, Metadata};

    use super::*;

    /// Collects the warnings logged on this thread.
    #[derive(Clone, Default)]
    struct Warnings(Arc<Mutex<Vec<String>>>);

    impl tracing::Subscriber for Warnings {
        fn enabled(&self, metadata: &Metadata<'_>) -> bool {
            *metadata.level() <= Level::WARN
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut text = String::new();
            event.record(
                &mut |field: &tracing::field::Field, value: &dyn fmt::Debug| {
                    text.push_str(&format!("{}={value:?} ", field.name()));
                },
            );
            self.0.lock().unwrap().push(text);
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    fn warnings_from_bind(builder: ListenerBuilder, address: &str) -> Vec<String> {
        let warnings = Warnings::default();
        tracing::subscriber::with_default(warnings.clone(), || {
            builder.bind(&address.parse().unwrap()).unwrap();
        });
        let logged = warnings.0.lock().unwrap().clone();
        logged
    }

    #[test]
    fn tcp_without_a_real_authkey_warns_at_bind() {
        let tcp = "tcp:127.0.0.1:0";
        for builder in [Listener::builder(), Listener::builder().authkey(b"")] {
            let logged = warnings_from_bind(builder.clone(), tcp);
            assert_eq!(logged.len(), 1, "{builder:?}: {logged:?}");
            assert!(logged[0].contains("without an authkey"), "{logged:?}");
            assert!(logged[0].contains("tcp:127.0.0.1:"), "{logged:?}");
        }
        let keyed = warnings_from_bind(Listener::builder().authkey(b"k"), tcp);
        assert_eq!(keyed, Vec::<String>::new());
        let name = format!("abstract:connection-test-warn-{}", std::process::id());
        let local = warnings_from_bind(Listener::builder(), &name);
        assert_eq!(local, Vec::<String>::new());
    }
}
