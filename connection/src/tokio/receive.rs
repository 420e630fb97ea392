//! The receiving half of [`AsyncConnection`]: a thin driver of the
//! receive that never waits (`crate::nowait`), called again each time the
//! socket is readable. Every piece of a message stays in the connection,
//! so that a receive whose future is dropped loses nothing and the next
//! one resumes.

use tokio::io::Interest;

use super::connection::AsyncConnection;
use super::ready::when_ready;
#[cfg(doc)]
use crate::error::ErrorKind;
use crate::error::{Error, Result};
use crate::nowait::PayloadInto;
use crate::proto::frame::{in_memory_len, room_after, too_large, Header};
use crate::read_ahead::Reader;

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
        self.read_payload(len, false).await
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
            let message = self.read_payload(len, false).await?;
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
        self.incoming.expect_payload(target.len(), false);
        let ahead = &mut self.incoming.ahead;
        let mut filling = PayloadInto::new(&mut self.incoming.arriving, target);
        let read = when_ready(&self.fd, Interest::READABLE, true, |socket| {
            filling.read(&mut Reader::new(socket, ahead))
        })
        .await;
        drop(filling);
        self.incoming.settle(read)
    }

    /// Whether a message is partly received: a receive was dropped in the
    /// middle of it, and the next receive will finish it. While this is
    /// true, [`into_blocking`](Self::into_blocking) refuses.
    pub fn is_receiving(&self) -> bool {
        self.incoming.arriving.has_arrived()
    }

    /// Receives the next whole payload within `limit`, for [`recv`](Self::recv).
    pub(super) async fn receive(&mut self, limit: u64) -> Result<Vec<u8>> {
        let len = self.next_len(limit).await?;
        self.read_payload(len, true).await
    }

    /// Reads the header (or takes the one already read) and returns the
    /// payload length if it is within `limit`; a message over it stays
    /// pending.
    pub(super) async fn next_len(&mut self, limit: u64) -> Result<usize> {
        self.direction().check_receive()?;
        self.incoming.between.check()?;
        let len = match self.incoming.between.pending_len {
            Some(len) => len,
            None => {
                let (arriving, ahead) = (&mut self.incoming.arriving, &mut self.incoming.ahead);
                // What was read ahead is there before any readiness.
                let at_once = ahead.buffered() > 0;
                let read = when_ready(&self.fd, Interest::READABLE, at_once, |socket| {
                    arriving.read_header(&mut Reader::new(socket, ahead), false)
                });
                let len = match read.await.map_err(|err| self.incoming.failed(err))? {
                    (Header::Stream(len), _) => len,
                    (other, _) => {
                        unreachable!("{other:?} from a decoder that refuses shared memory")
                    }
                };
                self.incoming.between.pending_len = Some(len);
                len
            }
        };
        if len > limit {
            return Err(too_large(len, limit, self.max_message_size));
        }
        in_memory_len(len)
    }

    /// Reads the rest of a `len`-byte payload whose header is in (into
    /// the scratch buffer with `scratch`), growing the buffer a chunk at a
    /// time as bytes arrive (as the blocking receive does), and returns it.
    pub(super) async fn read_payload(&mut self, len: usize, scratch: bool) -> Result<Vec<u8>> {
        self.incoming.expect_payload(len, scratch);
        let (arriving, ahead) = (&mut self.incoming.arriving, &mut self.incoming.ahead);
        let read = when_ready(&self.fd, Interest::READABLE, true, |socket| {
            arriving.read_payload(&mut Reader::new(socket, ahead), usize::MAX)
        });
        let read = read.await;
        self.incoming.settle(read)
    }
}
