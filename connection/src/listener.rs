//! [`Listener`]: accepts connections on an [`Address`], authenticating
//! each peer when given an authkey.

use std::fmt;
use std::net::TcpListener;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use interprocess::local_socket::ListenerOptions;
use interprocess::os::unix::uds_local_socket;

use crate::address::Address;
use crate::auth::Handshake;
use crate::connection::{Connection, DEFAULT_MAX_MESSAGE_SIZE};
use crate::error::{Error, Result};
use crate::sys::{self, PollFd, Socket};

/// How long [`Listener::accept`] gives a peer to complete the handshake
/// unless told otherwise: 5 seconds, ample for a few round trips on any
/// network yet short enough that a silent peer delays the next one little.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The default length of the queue of connections not yet accepted.
pub const DEFAULT_BACKLOG: u32 = 128;

/// Options for a [`Listener`]; made by [`Listener::builder`].
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
///     .strict(true)
///     .max_message_size(1 << 20)
///     .bind(&Address::localhost(0))?;
/// assert!(listener.address().is_tcp());
/// # Ok::<(), connection::Error>(())
/// ```
#[derive(Clone)]
pub struct ListenerBuilder {
    backlog: u32,
    authkey: Option<Vec<u8>>,
    handshake_timeout: Option<Duration>,
    strict: bool,
    max_message_size: u64,
}

impl Default for ListenerBuilder {
    fn default() -> ListenerBuilder {
        ListenerBuilder {
            backlog: DEFAULT_BACKLOG,
            authkey: None,
            handshake_timeout: Some(DEFAULT_HANDSHAKE_TIMEOUT),
            strict: false,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

impl ListenerBuilder {
    /// How many connections may wait to be accepted (default
    /// [`DEFAULT_BACKLOG`]; the kernel caps it at `somaxconn`).
    pub fn backlog(mut self, backlog: u32) -> ListenerBuilder {
        self.backlog = backlog;
        self
    }

    /// Authenticate every peer with this key, as CPython's
    /// `Listener(authkey=...)`. Without one there is no handshake at all.
    pub fn authkey(mut self, key: impl AsRef<[u8]>) -> ListenerBuilder {
        self.authkey = Some(key.as_ref().to_vec());
        self
    }

    /// How long a peer gets to complete the handshake (default
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`]; `None` waits forever, as CPython does).
    pub fn handshake_timeout(mut self, timeout: Option<Duration>) -> ListenerBuilder {
        self.handshake_timeout = timeout;
        self
    }

    /// Refuse peers that authenticate with HMAC-MD5, which includes every
    /// Python 3.11 or older (default: accept them, as CPython 3.12 does).
    pub fn strict(mut self, strict: bool) -> ListenerBuilder {
        self.strict = strict;
        self
    }

    /// The [`max_message_size`](Connection::max_message_size) of accepted
    /// connections (default [`DEFAULT_MAX_MESSAGE_SIZE`]).
    pub fn max_message_size(mut self, bytes: u64) -> ListenerBuilder {
        self.max_message_size = bytes;
        self
    }

    /// Binds to `address` and starts listening.
    ///
    /// A Unix socket file must not exist yet (a stale one left by a crashed
    /// program has to be removed first); the listener removes the file it
    /// created when closed or dropped. A TCP listener without an authkey
    /// logs a warning: anyone who can reach the port can then send data.
    pub fn bind(&self, address: &Address) -> Result<Listener> {
        let bound = bind_socket(address, self.backlog)
            .map_err(|err| Error::io(err, "bind").context(address))?;
        let (socket, address, created_file) = bound;
        if address.is_tcp() && self.authkey.is_none() {
            tracing::warn!(
                %address,
                "TCP listener without an authkey: anyone who can reach it can send messages"
            );
        }
        Ok(Listener {
            socket,
            address,
            options: self.clone(),
            last_accepted: None,
            created_file,
        })
    }
}

impl fmt::Debug for ListenerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerBuilder")
            .field("backlog", &self.backlog)
            .field("authkey", &self.authkey.as_ref().map(|_| "<hidden>"))
            .field("handshake_timeout", &self.handshake_timeout)
            .field("strict", &self.strict)
            .field("max_message_size", &self.max_message_size)
            .finish()
    }
}

enum ListenSocket {
    // The `interprocess` type rather than its enum: we need the std
    // listener inside it, whose accept reports the peer's address.
    Local(uds_local_socket::Listener),
    Tcp(TcpListener),
}

type Bound = (ListenSocket, Address, Option<PathBuf>);

fn bind_socket(address: &Address, backlog: u32) -> std::io::Result<Bound> {
    let backlog = backlog.min(i32::MAX as u32) as i32;
    let tcp = |listener: TcpListener| -> std::io::Result<Bound> {
        sys::listen(listener.as_fd(), backlog)?;
        let local = Address::Tcp(listener.local_addr()?);
        Ok((ListenSocket::Tcp(listener), local, None))
    };
    let bound = match address {
        Address::Tcp(addr) => tcp(TcpListener::bind(addr)?)?,
        Address::TcpHost { host, port } => tcp(TcpListener::bind((host.as_str(), *port))?)?,
        Address::Unix(_) | Address::Abstract(_) => {
            // We unlink the file ourselves, so that close() can report it.
            let listener = ListenerOptions::new()
                .name(address.local_socket_name()?)
                .reclaim_name(false)
                .create_sync_as::<uds_local_socket::Listener>()?;
            sys::listen(listener.as_fd(), backlog)?;
            let created = match address {
                Address::Unix(path) => Some(path.clone()),
                _ => None,
            };
            (ListenSocket::Local(listener), address.clone(), created)
        }
    };
    Ok(bound)
}

/// A bound socket that accepts connections, like CPython's
/// `multiprocessing.connection.Listener`, over Unix sockets (a path or a
/// Linux abstract name) or TCP.
///
/// With an [authkey](ListenerBuilder::authkey) every accepted peer must
/// pass CPython's mutual challenge-response handshake; see the crate docs
/// on security.
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
    address: Address,
    options: ListenerBuilder,
    last_accepted: Option<Address>,
    /// The Unix socket file this listener made, removed when it closes.
    created_file: Option<PathBuf>,
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
    /// An error concerns one attempt only and the listener stays usable:
    /// call `accept` again to serve the next peer. Unlike CPython's, a
    /// handshake is bounded by the [handshake
    /// timeout](ListenerBuilder::handshake_timeout), so a peer that
    /// connects and says nothing delays the next one by at most that long
    /// ([`ErrorKind::TimedOut`](crate::ErrorKind::TimedOut)). A peer with a wrong key gets `#FAILURE#`
    /// and this side [`ErrorKind::AuthenticationFailed`](crate::ErrorKind::AuthenticationFailed); a peer that sends
    /// something other than the handshake gives [`ErrorKind::Protocol`](crate::ErrorKind::Protocol).
    /// Error messages name the listener's and the peer's addresses.
    ///
    /// A signal that arrives while waiting for a peer ends the wait with
    /// [`ErrorKind::Interrupted`](crate::ErrorKind::Interrupted); one during a handshake does not, since
    /// the handshake is short and would otherwise cost the peer its
    /// connection. To wait with a timeout, or for several listeners at
    /// once, use [`wait`](crate::wait) first.
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
        let mut fds = [PollFd::readable(self.as_fd())];
        sys::poll(&mut fds, None)
            .map_err(|err| Error::io(err, "wait for a connection").context(&self.address))?;
        let (fd, peer) = self
            .accept_socket()
            .map_err(|err| Error::io(err, "accept").context(&self.address))?;
        let socket = Socket::from_owned(fd);
        if let Some(key) = &self.options.authkey {
            let deadline = self
                .options
                .handshake_timeout
                .and_then(|t| Instant::now().checked_add(t));
            let handshake = Handshake {
                socket: &socket,
                key,
                strict: self.options.strict,
                deadline,
            };
            handshake.as_listener().map_err(|err| {
                let peer = peer
                    .as_ref()
                    .map_or("an unnamed peer".to_string(), Address::to_string);
                tracing::debug!(error = %err, %peer, listener = %self.address, "handshake failed");
                err.context(format!("handshake with {peer} on {}", self.address))
            })?;
        }
        let mut conn = Connection::from_socket(socket, true, true);
        conn.set_max_message_size(self.options.max_message_size);
        self.last_accepted = peer;
        Ok(conn)
    }

    fn accept_socket(&self) -> std::io::Result<(OwnedFd, Option<Address>)> {
        match &self.socket {
            ListenSocket::Local(listener) => {
                let (stream, peer) = listener.inner().accept()?;
                Ok((stream.into(), Address::from_unix_peer(&peer)))
            }
            ListenSocket::Tcp(listener) => {
                let (stream, peer) = listener.accept()?;
                stream.set_nodelay(true)?;
                Ok((stream.into(), Some(Address::Tcp(peer))))
            }
        }
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
        &self.address
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
    pub fn close(mut self) -> Result<()> {
        match self.created_file.take() {
            Some(path) => remove_socket_file(&path).map_err(|err| err.context(&self.address)),
            None => Ok(()),
        }
    }
}

fn remove_socket_file(path: &PathBuf) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io(err, "remove socket file"))
        }
        _ => Ok(()),
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(path) = self.created_file.take() {
            if let Err(err) = remove_socket_file(&path) {
                tracing::debug!(error = %err, path = %path.display(), "socket file left behind");
            }
        }
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.socket {
            ListenSocket::Local(listener) => listener.as_fd(),
            ListenSocket::Tcp(listener) => listener.as_fd(),
        }
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address)
            .field("options", &self.options)
            .field("last_accepted", &self.last_accepted)
            .finish_non_exhaustive()
    }
}
