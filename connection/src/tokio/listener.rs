//! [`AsyncListener`]: accepts connections on a tokio runtime, each peer's
//! handshake a task of its own.

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::future::Future;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::task::{AbortHandle, JoinError, JoinSet};

use super::{handshake, AsyncConnection};
use crate::address::Address;
use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, Socket};
use crate::{
    DEFAULT_BACKLOG, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_PENDING_HANDSHAKES,
};

/// Options for an [`AsyncListener`], the same as the blocking
/// [`ListenerBuilder`](crate::ListenerBuilder)'s; made by
/// [`AsyncListener::builder`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use connection::{tokio::AsyncListener, Address};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let listener = AsyncListener::builder()
///     .authkey(b"secret")
///     .backlog(16)
///     .handshake_timeout(Some(Duration::from_secs(2)))
///     .max_pending_handshakes(8)
///     .strict(true)
///     .max_message_size(1 << 20)
///     .bind(&Address::localhost(0))
///     .await?;
/// assert!(listener.address().is_tcp());
/// # Ok::<(), connection::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct AsyncListenerBuilder {
    backlog: u32,
    authkey: Option<Vec<u8>>,
    handshake_timeout: Option<Duration>,
    max_pending_handshakes: usize,
    strict: bool,
    max_message_size: u64,
}

impl Default for AsyncListenerBuilder {
    fn default() -> AsyncListenerBuilder {
        AsyncListenerBuilder {
            backlog: DEFAULT_BACKLOG,
            authkey: None,
            handshake_timeout: Some(DEFAULT_HANDSHAKE_TIMEOUT),
            max_pending_handshakes: DEFAULT_MAX_PENDING_HANDSHAKES,
            strict: false,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

impl AsyncListenerBuilder {
    /// How many connections may wait to be accepted (default
    /// [`DEFAULT_BACKLOG`]).
    pub fn backlog(mut self, backlog: u32) -> AsyncListenerBuilder {
        self.backlog = backlog;
        self
    }

    /// Authenticate every peer with this key (CPython's
    /// `Listener(authkey=...)`). Without one there is no handshake at all.
    pub fn authkey(mut self, key: impl AsRef<[u8]>) -> AsyncListenerBuilder {
        self.authkey = Some(key.as_ref().to_vec());
        self
    }

    /// How long a peer gets to complete the handshake, from its accept
    /// (default [`DEFAULT_HANDSHAKE_TIMEOUT`]; `None` waits forever).
    pub fn handshake_timeout(mut self, timeout: Option<Duration>) -> AsyncListenerBuilder {
        self.handshake_timeout = timeout;
        self
    }

    /// How many handshakes may be in progress at once, each a task
    /// (default [`DEFAULT_MAX_PENDING_HANDSHAKES`]; 0 counts as 1). A
    /// finished one counts until [`accept`](AsyncListener::accept) returns
    /// it; at the cap no more connections are taken from the backlog.
    pub fn max_pending_handshakes(mut self, max: usize) -> AsyncListenerBuilder {
        self.max_pending_handshakes = max;
        self
    }

    /// Refuse peers that authenticate with HMAC-MD5, which includes every
    /// Python 3.11 or older (default: accept them).
    pub fn strict(mut self, strict: bool) -> AsyncListenerBuilder {
        self.strict = strict;
        self
    }

    /// The [`max_message_size`](AsyncConnection::max_message_size) of
    /// accepted connections (default [`DEFAULT_MAX_MESSAGE_SIZE`]).
    pub fn max_message_size(mut self, bytes: u64) -> AsyncListenerBuilder {
        self.max_message_size = bytes;
        self
    }

    /// Binds to `address` and starts listening, on the current tokio
    /// runtime (a host name is resolved without blocking it).
    ///
    /// As with the blocking [`Listener`](crate::Listener): a Unix socket
    /// file must not exist yet, and the listener removes the one it made
    /// when dropped; a TCP listener without an authkey logs a warning.
    ///
    /// Dropping the future before it is done leaves nothing bound and no
    /// socket file.
    pub async fn bind(&self, address: &Address) -> Result<AsyncListener> {
        let (socket, address, created_file) = bind_socket(address, self.backlog)
            .await
            .map_err(|err| Error::io(err, "bind").context(address))?;
        if address.is_tcp() && self.authkey.as_ref().map_or(true, Vec::is_empty) {
            tracing::warn!(
                %address,
                "TCP listener without an authkey (or with an empty one): \
                 anyone who can reach it can send messages"
            );
        }
        Ok(AsyncListener {
            socket,
            address,
            created_file,
            options: Arc::new(self.clone()),
            handshakes: JoinSet::new(),
            oldest: VecDeque::new(),
            shedding: 0,
            retry: None,
        })
    }
}

impl fmt::Debug for AsyncListenerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncListenerBuilder")
            .field("backlog", &self.backlog)
            .field("authkey", &self.authkey.as_ref().map(|_| "<hidden>"))
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_pending_handshakes", &self.max_pending_handshakes)
            .field("strict", &self.strict)
            .field("max_message_size", &self.max_message_size)
            .finish()
    }
}

enum ListenSocket {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl ListenSocket {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            ListenSocket::Unix(listener) => listener.as_fd(),
            ListenSocket::Tcp(listener) => listener.as_fd(),
        }
    }

    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Socket, Option<Address>)>> {
        let accepted = match self {
            ListenSocket::Unix(listener) => listener.poll_accept(cx).map_ok(|(stream, peer)| {
                let peer = Address::from_unix_peer(&peer.into());
                stream.into_std().map(|s| (OwnedFd::from(s), peer))
            }),
            ListenSocket::Tcp(listener) => listener.poll_accept(cx).map_ok(|(stream, peer)| {
                stream.set_nodelay(true)?;
                let peer = Some(Address::Tcp(peer));
                stream.into_std().map(|s| (OwnedFd::from(s), peer))
            }),
        };
        accepted.map(|result| {
            let (fd, peer) = result??;
            Ok((Socket::from_owned(fd), peer))
        })
    }
}

type Bound = (ListenSocket, Address, Option<PathBuf>);

async fn bind_socket(address: &Address, backlog: u32) -> io::Result<Bound> {
    let (socket, created) = match address {
        Address::Tcp(addr) => (ListenSocket::Tcp(TcpListener::bind(addr).await?), None),
        Address::TcpHost { host, port } => (
            ListenSocket::Tcp(TcpListener::bind((host.as_str(), *port)).await?),
            None,
        ),
        Address::Unix(path) => (
            ListenSocket::Unix(UnixListener::bind(path)?),
            Some(path.clone()),
        ),
        // tokio takes a leading NUL for the abstract namespace.
        Address::Abstract(name) => (
            ListenSocket::Unix(UnixListener::bind(format!("\0{name}"))?),
            None,
        ),
    };
    let backlog = backlog.min(i32::MAX as u32) as i32;
    if let Err(err) = sys::listen(socket.fd(), backlog) {
        if let Some(path) = &created {
            let _ = std::fs::remove_file(path);
        }
        return Err(err);
    }
    let address = match &socket {
        ListenSocket::Tcp(listener) => Address::Tcp(listener.local_addr()?),
        ListenSocket::Unix(_) => address.clone(),
    };
    Ok((socket, address, created))
}

/// The async twin of [`Listener`](crate::Listener): binds to an
/// [`Address`] and accepts [`AsyncConnection`]s, authenticating each peer
/// with CPython's handshake when given an authkey.
///
/// Each handshake runs as a task of its own on the runtime, with the
/// [handshake timeout](AsyncListenerBuilder::handshake_timeout), and goes
/// on while nobody is in [`accept`](Self::accept): a peer that connects
/// and says nothing holds up no one else, and no handshake blocks a
/// runtime thread. Dropping the listener aborts the handshakes in
/// progress.
///
/// # Examples
///
/// ```
/// use connection::tokio::{AsyncClient, AsyncListener};
/// use connection::Address;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let mut listener = AsyncListener::builder()
///     .authkey(b"secret")
///     .bind(&Address::localhost(0))
///     .await?;
/// let address = listener.address().clone();
/// let client = tokio::spawn(async move {
///     let mut conn = AsyncClient::connect_with_authkey(&address, b"secret").await?;
///     conn.send(&("add", 2, 3)).await?;
///     conn.recv::<String>().await
/// });
/// let mut conn = listener.accept().await?; // authenticated, or an error
/// let (op, a, b): (String, i32, i32) = conn.recv().await?;
/// conn.send(&format!("{op} -> {}", a + b)).await?;
/// assert_eq!(client.await.unwrap()?, "add -> 5");
/// # Ok::<(), connection::Error>(())
/// # }).unwrap();
/// ```
pub struct AsyncListener {
    socket: ListenSocket,
    address: Address,
    /// The Unix socket file this listener made, removed when it is dropped.
    created_file: Option<PathBuf>,
    options: Arc<AsyncListenerBuilder>,
    /// With an authkey: the handshakes started and not yet returned.
    handshakes: JoinSet<Result<AsyncConnection>>,
    /// The same handshakes, oldest first, to shed when descriptors run out.
    oldest: VecDeque<AbortHandle>,
    /// Handshakes shed whose sockets the runtime has not closed yet.
    shedding: usize,
    /// The timer that wakes an accept that found no descriptor and no peer.
    retry: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl AsyncListener {
    /// Options for a new listener.
    pub fn builder() -> AsyncListenerBuilder {
        AsyncListenerBuilder::default()
    }

    /// Binds to `address` with default options and no authkey.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let name = format!("abstract:connection-doc-async-bind-{}", std::process::id());
    /// let listener = connection::tokio::AsyncListener::bind(&name.parse()?).await?;
    /// assert_eq!(listener.address().to_string(), name);
    /// # Ok::<(), connection::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn bind(address: &Address) -> Result<AsyncListener> {
        AsyncListenerBuilder::default().bind(address).await
    }

    /// The address listened on; for TCP port 0, with the port chosen.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// How many handshakes are in progress or finished and not yet returned.
    pub fn pending_handshakes(&self) -> usize {
        self.handshakes.len()
    }

    /// Waits for a peer whose handshake (with an authkey) is complete and
    /// returns its connection. Handshakes of several peers proceed at once,
    /// and the first to finish is returned.
    ///
    /// A handshake that fails is an error for that one peer (with the
    /// peer's address in its text, and [`Error::is_peer_failure`] true),
    /// and the listener stays usable: call `accept` again. A silent or too slow peer gives
    /// [`ErrorKind::TimedOut`], a wrong key
    /// [`ErrorKind::AuthenticationFailed`] (the peer is told `#FAILURE#`),
    /// a peer speaking something else [`ErrorKind::Protocol`].
    ///
    /// Cancel-safe: a dropped `accept` loses no connection; handshakes
    /// started go on, and a later `accept` returns them.
    pub async fn accept(&mut self) -> Result<AsyncConnection> {
        if self.options.authkey.is_none() {
            let (socket, _) = poll_fn(|cx| self.socket.poll_accept(cx))
                .await
                .map_err(|err| Error::io(err, "accept").context(&self.address))?;
            return AsyncConnection::from_socket(socket, self.options.max_message_size);
        }
        let finished = poll_fn(|cx| self.poll_handshakes(cx)).await?;
        match finished {
            Ok(result) => result,
            Err(err) => Err(task_failed(err)),
        }
    }

    /// Starts the handshake of every connection waiting in the backlog (up
    /// to the cap), and is ready when one of them ends.
    fn poll_handshakes(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<std::result::Result<Result<AsyncConnection>, JoinError>>> {
        loop {
            match self.handshakes.poll_join_next(cx) {
                // Shed below to make room: not a peer's outcome to report.
                Poll::Ready(Some(Err(err))) if err.is_cancelled() => {
                    self.shedding = self.shedding.saturating_sub(1);
                    continue;
                }
                Poll::Ready(Some(finished)) => return Poll::Ready(Ok(finished)),
                _ => {}
            }
            if self.handshakes.len() >= self.options.max_pending_handshakes.max(1) {
                return Poll::Pending;
            }
            match self.socket.poll_accept(cx) {
                Poll::Ready(Ok((socket, peer))) => self.start_handshake(socket, peer),
                // Out of descriptors, as a flood of silent peers can make
                // it: the oldest pending handshake gives its up, as the
                // blocking listener does, so that the next peer gets in.
                // Its socket closes when the runtime drops the task: until
                // then, wait rather than shed another.
                Poll::Ready(Err(err)) if sys::is_out_of_descriptors(&err) => {
                    // Linux reports this before it looks at the queue: only
                    // a connection actually waiting is worth a handshake.
                    // With none, look again a little later (a new peer's
                    // arrival may not wake this task: the failed accept left
                    // no waker with the listener).
                    if !self.connection_waiting() {
                        let mut retry = Box::pin(tokio::time::sleep(OUT_OF_DESCRIPTORS_RETRY));
                        let _ = retry.as_mut().poll(cx);
                        self.retry = Some(retry);
                        return Poll::Pending;
                    }
                    if self.shedding > 0 || self.shed_oldest() {
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    let err = Error::io(err, "accept").context(&self.address);
                    return Poll::Ready(Err(err));
                }
                Poll::Ready(Err(err)) => {
                    let err = Error::io(err, "accept").context(&self.address);
                    return Poll::Ready(Err(err));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Whether a connection waits in the listening socket's queue.
    fn connection_waiting(&self) -> bool {
        let mut fds = [sys::PollFd::readable(self.as_fd())];
        matches!(sys::poll(&mut fds, Some(Duration::ZERO)), Ok(n) if n > 0)
    }

    /// Ends the oldest handshake still going, closing its socket; returns
    /// whether there was one.
    fn shed_oldest(&mut self) -> bool {
        while let Some(oldest) = self.oldest.pop_front() {
            if !oldest.is_finished() {
                tracing::debug!(listener = %self.address, "out of descriptors: oldest handshake shed");
                oldest.abort();
                self.shedding += 1;
                return true;
            }
        }
        false
    }

    fn start_handshake(&mut self, socket: Socket, peer: Option<Address>) {
        let options = self.options.clone();
        let listener = self.address.clone();
        while self.oldest.front().is_some_and(AbortHandle::is_finished) {
            self.oldest.pop_front();
        }
        let handle = self.handshakes.spawn(async move {
            let peer = peer.map_or_else(|| "an unnamed peer".to_string(), |p| p.to_string());
            let context = format!("{listener}: handshake with {peer}");
            let mut conn = AsyncConnection::from_socket(socket, options.max_message_size)
                .map_err(|err| err.context(&context).of_one_peer())?;
            let key = options.authkey.as_deref().unwrap_or_default();
            let handshake =
                handshake::authenticate(handshake::Role::Listener, &mut conn, key, options.strict);
            let outcome = match options.handshake_timeout {
                Some(timeout) => tokio::time::timeout(timeout, handshake)
                    .await
                    .unwrap_or_else(|_| Err(handshake_timed_out())),
                None => handshake.await,
            };
            outcome
                .map(|()| conn)
                .map_err(|err| err.context(&context).of_one_peer())
        });
        self.oldest.push_back(handle);
    }
}

/// How soon an accept that found no descriptor left, and no peer waiting,
/// looks again.
const OUT_OF_DESCRIPTORS_RETRY: Duration = Duration::from_millis(10);

pub(super) fn handshake_timed_out() -> Error {
    Error::new(
        ErrorKind::TimedOut,
        "the handshake did not complete within the timeout",
    )
}

fn task_failed(err: JoinError) -> Error {
    Error::new(ErrorKind::Io, "a handshake task failed").with_source(err)
}

impl fmt::Debug for AsyncListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncListener")
            .field("address", &self.address)
            .field("pending_handshakes", &self.handshakes.len())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl AsFd for AsyncListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.fd()
    }
}

impl Drop for AsyncListener {
    fn drop(&mut self) {
        if let Some(path) = &self.created_file {
            if let Err(err) = std::fs::remove_file(path) {
                tracing::debug!(path = %path.display(), error = %err, "could not remove socket file");
            }
        }
    }
}
