//! [`AsyncListener`]: accepts connections on a tokio runtime, each peer's
//! handshake a task of its own. It binds and accepts through the blocking
//! listener's [`ListenSocket`], registered with the runtime's reactor.

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::task::{AbortHandle, JoinError, JoinSet};

use super::client::handshake_within;
use super::{handshake, AsyncConnection};
use crate::address::Address;
use crate::error::{Error, ErrorKind, Result};
use crate::handshakes::Accepted;
use crate::listen_socket::{handshake_failed, ListenSocket};
use crate::listener::ListenerBuilder;
use crate::sys::{self, Socket};

impl ListenerBuilder {
    /// Binds to `address` and starts listening on the current tokio
    /// runtime, with these options: the async [`bind`](ListenerBuilder::bind).
    /// A host name is resolved without blocking the runtime; the rest is
    /// as with `bind` (a Unix socket file must not exist yet and is
    /// removed when the listener is dropped; a TCP listener without an
    /// authkey logs a warning).
    ///
    /// Dropping the future before it is done leaves nothing bound and no
    /// socket file.
    ///
    /// # Errors
    ///
    /// Those of `bind`, and [`ErrorKind::Io`] when the socket cannot be
    /// registered with the runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with I/O enabled, as tokio's `AsyncFd` does.
    ///
    /// # Examples
    ///
    /// ```
    /// use connection::Listener;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let address = "tcp:localhost:0".parse()?;
    /// let listener = Listener::builder().authkey(b"k").bind_async(&address).await?;
    /// assert!(listener.address().is_tcp());
    /// # Ok::<(), connection::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn bind_async(&self, address: &Address) -> Result<AsyncListener> {
        let resolved = match address {
            Address::TcpHost { host, port } => {
                let resolved = tokio::net::lookup_host((host.as_str(), *port)).await;
                let addrs = resolved.map_err(|err| Error::io(err, "bind").context(address))?;
                Some(addrs.collect::<Vec<SocketAddr>>())
            }
            _ => None,
        };
        let socket = ListenSocket::bind(address, resolved, self.backlog, self.authkey.as_deref())?;
        let socket = sys::register(socket, Interest::READABLE).map_err(|err| {
            Error::io(err, "register the listener with the tokio runtime").context(address)
        })?;
        Ok(AsyncListener {
            socket,
            options: Arc::new(self.clone()),
            handshakes: JoinSet::new(),
            oldest: VecDeque::new(),
            shedding: 0,
        })
    }
}

/// The async twin of [`Listener`](crate::Listener): binds to an
/// [`Address`] and accepts [`AsyncConnection`]s, authenticating each peer
/// with CPython's handshake when given an authkey.
///
/// Each handshake runs as a task of its own on the runtime, with the
/// [handshake timeout](ListenerBuilder::handshake_timeout), and goes
/// on while nobody is in [`accept`](Self::accept): a peer that connects
/// and says nothing holds up no one else, and no handshake blocks a
/// runtime thread. Dropping the listener aborts the handshakes in
/// progress.
///
/// It is made from the same [`ListenerBuilder`] as the blocking listener,
/// with [`bind_async`](ListenerBuilder::bind_async), and binds and accepts
/// through the same code: only the waiting is the runtime's.
///
/// # Examples
///
/// ```
/// use connection::tokio::AsyncClient;
/// use connection::{Address, Listener};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let mut listener = Listener::builder()
///     .authkey(b"secret")
///     .bind_async(&Address::localhost(0))
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
    /// Dropped, it removes the Unix socket file it made.
    socket: AsyncFd<ListenSocket>,
    options: Arc<ListenerBuilder>,
    /// With an authkey: the handshakes started and not yet returned.
    handshakes: JoinSet<Result<AsyncConnection>>,
    /// The same handshakes, oldest first, to shed when descriptors run out
    /// or, with [`shed_oldest_at_cap`](ListenerBuilder::shed_oldest_at_cap),
    /// at the cap.
    oldest: VecDeque<AbortHandle>,
    /// Handshakes shed whose sockets the runtime has not closed yet.
    shedding: usize,
}

impl AsyncListener {
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
        ListenerBuilder::default().bind_async(address).await
    }

    /// The address listened on; for TCP port 0, with the port chosen.
    pub fn address(&self) -> &Address {
        self.socket.get_ref().address()
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
    /// Out of descriptors (`EMFILE`, `ENFILE`) with a peer waiting, the
    /// oldest pending handshake is closed to take the new peer, as the
    /// blocking [`Listener::accept`](crate::Listener::accept) does.
    ///
    /// Cancel-safe: a dropped `accept` loses no connection; handshakes
    /// started go on, and a later `accept` returns them.
    pub async fn accept(&mut self) -> Result<AsyncConnection> {
        if self.options.authkey.is_none() {
            let (socket, _) = poll_fn(|cx| self.poll_accept(cx))
                .await
                .map_err(|err| Error::io(err, "accept").context(self.address()))?;
            return AsyncConnection::from_socket(socket, self.options.max_message_size);
        }
        let finished = poll_fn(|cx| self.poll_handshakes(cx)).await?;
        match finished {
            Ok(result) => result,
            Err(err) => Err(task_failed(err)),
        }
    }

    /// Takes the next connection from the kernel's queue when there is one.
    /// Out of descriptors, it is an error only with a connection waiting
    /// (Linux reports it before it looks at the queue); without, it waits
    /// for one.
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<Accepted>> {
        loop {
            let mut guard = ready!(self.socket.poll_read_ready(cx))?;
            let listener = guard.get_inner();
            match listener.accept() {
                Ok(Some(accepted)) => return Poll::Ready(Ok(accepted)),
                Err(err)
                    if !sys::is_out_of_descriptors(&err)
                        || sys::connection_waiting(listener.fd()) =>
                {
                    return Poll::Ready(Err(err))
                }
                // Readiness that came since the guard was taken stays set.
                Ok(None) | Err(_) => guard.clear_ready(),
            }
        }
    }

    /// Ready when a connection waits in the kernel's queue.
    fn poll_connection_waiting(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.socket.poll_read_ready(cx))?;
            if sys::connection_waiting(guard.get_inner().fd()) {
                return Poll::Ready(Ok(()));
            }
            guard.clear_ready();
        }
    }

    /// Starts the handshake of every connection waiting in the backlog (up
    /// to the cap), and is ready when one of them ends.
    fn poll_handshakes(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<std::result::Result<Result<AsyncConnection>, JoinError>>> {
        let accept_failed =
            |err, listener: &Self| Error::io(err, "accept").context(listener.address());
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
            let pending = self.handshakes.len().saturating_sub(self.shedding);
            if pending >= self.options.max_pending_handshakes.max(1) {
                if !self.options.shed_oldest_at_cap {
                    return Poll::Pending;
                }
                // Only for a connection actually waiting.
                if let Err(err) = ready!(self.poll_connection_waiting(cx)) {
                    return Poll::Ready(Err(accept_failed(err, self)));
                }
                if !self.shed_oldest() {
                    return Poll::Pending;
                }
            }
            match self.poll_accept(cx) {
                Poll::Ready(Ok((socket, peer))) => self.start_handshake(socket, peer),
                // Out of descriptors, as a flood of silent peers can make
                // it, with a peer waiting: the oldest pending handshake
                // gives its up, as the blocking listener does. Its socket
                // closes when the runtime drops the task: until then, wait
                // rather than shed another.
                Poll::Ready(Err(err)) if sys::is_out_of_descriptors(&err) => {
                    if self.shedding > 0 || self.shed_oldest() {
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    return Poll::Ready(Err(accept_failed(err, self)));
                }
                Poll::Ready(Err(err)) => return Poll::Ready(Err(accept_failed(err, self))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Ends the oldest handshake still going, closing its socket; returns
    /// whether there was one.
    fn shed_oldest(&mut self) -> bool {
        while let Some(oldest) = self.oldest.pop_front() {
            if !oldest.is_finished() {
                tracing::debug!(listener = %self.address(), "oldest handshake shed");
                oldest.abort();
                self.shedding += 1;
                return true;
            }
        }
        false
    }

    fn start_handshake(&mut self, socket: Socket, peer: Option<Address>) {
        let options = self.options.clone();
        let listener = self.address().clone();
        while self.oldest.front().is_some_and(AbortHandle::is_finished) {
            self.oldest.pop_front();
        }
        let handle = self.handshakes.spawn(async move {
            let outcome = async {
                let mut conn = AsyncConnection::from_socket(socket, options.max_message_size)?;
                let key = options.authkey.as_deref().unwrap_or_default();
                let handshake = handshake::authenticate(
                    handshake::Role::Listener,
                    &mut conn,
                    key,
                    options.strict,
                );
                handshake_within(options.handshake_timeout, handshake).await?;
                Ok(conn)
            };
            outcome
                .await
                .map_err(|err| handshake_failed(err, peer.as_ref(), &listener))
        });
        self.oldest.push_back(handle);
    }
}

fn task_failed(err: JoinError) -> Error {
    Error::new(ErrorKind::Io, "a handshake task failed").with_source(err)
}

impl fmt::Debug for AsyncListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncListener")
            .field("address", self.address())
            .field("pending_handshakes", &self.handshakes.len())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl AsFd for AsyncListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.get_ref().fd()
    }
}
