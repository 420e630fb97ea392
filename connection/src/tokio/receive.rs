//! The receiving half of [`AsyncConnection`]: the framing core's header
//! decoder and payload fed as bytes arrive, with every piece kept in the
//! connection, so that a receive whose future is dropped loses nothing and
//! the next one resumes.

use std::io;

use tokio::io::unix::AsyncFd;

use super::connection::AsyncConnection;
use crate::error::{Error, ErrorKind, Result};
use crate::proto::frame::{in_memory_len, room_after, too_large, Header, Payload};
use crate::sys::{self, Socket};

impl AsyncConnection {
    /// Receives one message as bytes: [`ErrorKind::Eof`] when the other
    /// end closed and nothing is left, [`ErrorKind::MessageTooLarge`] (the
    /// message left unread) when it exceeds
    /// [`max_message_size`](Self::max_message_size).
    ///
    /// Cancel-safe: see the [type's docs](AsyncConnection#cancel-safety).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use connection::tokio::AsyncConnection;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let (mut a, mut b) = AsyncConnection::pair()?;
    /// // Nothing yet: the receive is dropped at the timeout, losing nothing.
    /// let early = tokio::time::timeout(Duration::from_millis(10), b.recv_bytes()).await;
    /// assert!(early.is_err());
    /// a.send_bytes(b"late").await?;
    /// assert_eq!(b.recv_bytes().await?, b"late");
    /// # Ok::<(), connection::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn recv_bytes(&mut self) -> Result<Vec<u8>> {
        self.recv_bytes_max(usize::MAX).await
    }

    /// Receives one message as bytes, refusing one longer than `max_len`
    /// with [`ErrorKind::MessageTooLarge`]: the message stays unread, and a
    /// receive with a larger limit gets it.
    ///
    /// Cancel-safe: see the [type's docs](AsyncConnection#cancel-safety).
    ///
    /// # Examples
    ///
    /// ```
    /// use connection::ErrorKind;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let (mut a, mut b) = connection::tokio::AsyncConnection::pair()?;
    /// a.send_bytes(b"twelve bytes").await?;
    /// let err = b.recv_bytes_max(4).await.unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::MessageTooLarge);
    /// assert_eq!(b.recv_bytes_max(100).await?, b"twelve bytes");
    /// # Ok::<(), connection::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn recv_bytes_max(&mut self, max_len: usize) -> Result<Vec<u8>> {
        let len = self
            .next_len(self.max_message_size.min(max_len as u64))
            .await?;
        self.read_payload(len).await
    }

    /// Receives one message into `buffer` at `offset` and returns its
    /// length, as [`Connection::recv_bytes_into`](crate::Connection::recv_bytes_into):
    /// an offset past the end is [`ErrorKind::InvalidInput`] (nothing
    /// read), a message longer than the room after `offset` is
    /// [`ErrorKind::BufferTooShort`] carrying the whole message.
    ///
    /// The payload is read straight into `buffer`. Cancel-safe: if the
    /// future is dropped half way, the bytes that arrived are copied back
    /// into the connection, and the next receive returns the message whole.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let (mut a, mut b) = connection::tokio::AsyncConnection::pair()?;
    /// a.send_bytes(&[1, 2, 3]).await?;
    /// let mut buf = [0u8; 6];
    /// let n = b.recv_bytes_into(&mut buf, 2).await?;
    /// assert_eq!((n, buf), (3, [0, 0, 1, 2, 3, 0]));
    /// # Ok::<(), connection::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn recv_bytes_into(&mut self, buffer: &mut [u8], offset: usize) -> Result<usize> {
        let room = room_after(buffer, offset)?;
        let len = self.next_len(self.max_message_size).await?;
        self.receive_into_room(len, room).await
    }

    /// Receives the `len`-byte payload whose header was just read into
    /// the start of `room` and returns `len`; a payload longer than `room`
    /// is read whole into an [`ErrorKind::BufferTooShort`] error instead.
    pub(super) async fn receive_into_room(&mut self, len: usize, room: &mut [u8]) -> Result<usize> {
        if len > room.len() {
            let message = self.read_payload(len).await?;
            return Err(Error::buffer_too_short(message, room.len()));
        }
        self.receive_payload_into(&mut room[..len]).await?;
        Ok(len)
    }

    /// Receives the payload of the message whose header
    /// [`next_len`](Self::next_len) just returned into `target`, memory
    /// the caller provides that is exactly as long as the payload: the
    /// async twin of `Connection::receive_payload_into`. Dropped part way,
    /// it keeps what arrived in the connection for the next receive.
    pub(super) async fn receive_payload_into(&mut self, target: &mut [u8]) -> Result<()> {
        let mut filling = Filling {
            payload: Payload::new(target.len(), self.incoming.payload.len()),
            target,
            saved: &mut self.incoming.payload,
            done: false,
        };
        let got = filling.payload.got();
        filling.target[..got].copy_from_slice(filling.saved);
        filling.saved.clear();
        while !filling.payload.is_complete() {
            let target = &mut filling.target[filling.payload.got()..];
            match read_ready(&self.fd, |socket| socket.recv_nowait(target)).await {
                Ok(n) => {
                    if let Err(err) = filling.payload.arrived(n) {
                        filling.done = true;
                        drop(filling);
                        return Err(self.incoming.break_stream(err));
                    }
                }
                Err(err) => return Err(filling.payload.io_error(err)),
            }
        }
        filling.done = true;
        drop(filling);
        self.incoming.finish_message();
        Ok(())
    }

    /// Whether a message is partly received: a receive was dropped in the
    /// middle of it, and the next receive will finish it. While this is
    /// true, [`into_blocking`](Self::into_blocking) refuses.
    pub fn is_receiving(&self) -> bool {
        self.incoming.is_partial()
    }

    /// Receives the next whole payload within `limit`, for [`recv`](Self::recv).
    pub(super) async fn receive(&mut self, limit: u64) -> Result<Vec<u8>> {
        let len = self.next_len(limit).await?;
        if self.incoming.payload.capacity() == 0 {
            std::mem::swap(&mut self.incoming.payload, &mut self.incoming.scratch);
        }
        self.read_payload(len).await
    }

    /// Reads the header (or takes the one already read) and returns the
    /// payload length if it is within `limit`; a message over it stays
    /// pending.
    pub(super) async fn next_len(&mut self, limit: u64) -> Result<usize> {
        self.direction().check_receive()?;
        self.incoming.between.check()?;
        let len = loop {
            if let Some(len) = self.incoming.between.pending_len {
                break len;
            }
            let header = &mut self.incoming.header;
            let read = read_ready(&self.fd, |socket| socket.recv_nowait(header.unfilled())).await;
            let incoming = &mut self.incoming;
            let header = match read {
                Ok(0) => {
                    let err = incoming.header.end_of_stream();
                    if err.kind() == ErrorKind::Eof {
                        return Err(err);
                    }
                    return Err(incoming.break_stream(err));
                }
                Ok(n) => incoming.header.received(n),
                Err(err) => return Err(incoming.header.io_error(err)),
            };
            match header {
                Ok(None) => {}
                Ok(Some(Header::Stream(len))) => incoming.between.pending_len = Some(len),
                Ok(Some(other)) => {
                    unreachable!("{other:?} from a decoder that refuses shared memory")
                }
                Err(err) => return Err(incoming.break_stream(err)),
            }
        };
        if len > limit {
            return Err(too_large(len, limit, self.max_message_size));
        }
        in_memory_len(len)
    }

    /// Reads the rest of a `len`-byte payload whose header is in, growing
    /// the buffer a chunk at a time as bytes arrive (as the blocking
    /// receive does), and returns it.
    pub(super) async fn read_payload(&mut self, len: usize) -> Result<Vec<u8>> {
        loop {
            let mut payload = Payload::new(len, self.incoming.payload.len());
            if payload.is_complete() {
                break;
            }
            let buf = &mut self.incoming.payload;
            let read = read_ready(&self.fd, |socket| {
                let room = payload.make_room(buf);
                sys::append_filled(buf, room, |spare| {
                    spare.fill(|rest| socket.recv_nowait_uninit(rest))
                })
            })
            .await;
            match read {
                Ok(n) => {
                    if let Err(err) = payload.arrived(n) {
                        return Err(self.incoming.break_stream(err));
                    }
                }
                Err(err) => return Err(payload.io_error(err)),
            }
        }
        self.incoming.finish_message();
        Ok(std::mem::take(&mut self.incoming.payload))
    }
}

/// Waits until `fd` is readable and runs `read` on it without waiting,
/// until `read` does not end with `WouldBlock`; returns how much it read,
/// 0 at the end of the stream (a reset included, as in the blocking
/// receive). Whatever `read` stores before that stays stored.
async fn read_ready(
    fd: &AsyncFd<Socket>,
    mut read: impl FnMut(&Socket) -> io::Result<usize>,
) -> io::Result<usize> {
    loop {
        let mut guard = fd.readable().await?;
        let attempt = guard.try_io(|fd| sys::retry_interrupted(|| read(fd.get_ref())));
        if let Ok(result) = attempt {
            return sys::reset_is_end(result);
        }
    }
}

/// A payload being read into a caller's buffer. Dropped before it is done,
/// it copies what arrived back into the connection, for the next receive.
struct Filling<'a> {
    target: &'a mut [u8],
    payload: Payload,
    saved: &'a mut Vec<u8>,
    done: bool,
}

impl Drop for Filling<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.saved.clear();
            self.saved
                .extend_from_slice(&self.target[..self.payload.got()]);
        }
    }
}
