//! The receiving half of [`AsyncConnection`]: a frame read piece by piece
//! as bytes arrive, with every piece kept in the connection, so that a
//! receive whose future is dropped loses nothing and the next one resumes.

use std::io::{self, Read};

use super::connection::AsyncConnection;
use super::receive_state::ReceiveState;
use crate::connection::{in_memory_len, lost_boundaries, room_after, too_large};
use crate::error::{Error, ErrorKind, Result};
use crate::frame::{self, HEADER_ROOM};
use crate::sys::{self, Socket};

/// Reads without waiting; a reset connection is end of file, as in the
/// blocking receive (a peer gone with our data unread resets it).
struct NoWait<'a>(&'a Socket);

impl Read for NoWait<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.recv_nowait(buf) {
            Err(err) if frame::is_reset(&err) => Ok(0),
            other => other,
        }
    }
}

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
        self.recv_bytes_within(self.max_message_size.min(max_len as u64))
            .await
    }

    /// Receives one message of at most `limit` bytes, whatever
    /// [`max_message_size`](Self::max_message_size) says: for the
    /// handshake, whose own cap applies before the connection's.
    pub(super) async fn recv_bytes_within(&mut self, limit: u64) -> Result<Vec<u8>> {
        let len = self.next_len(limit).await?;
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
        let len = target.len();
        let mut filling = Filling {
            filled: self.incoming.payload.len(),
            target,
            saved: &mut self.incoming.payload,
            done: false,
        };
        filling.target[..filling.filled].copy_from_slice(filling.saved);
        filling.saved.clear();
        while filling.filled < len {
            let mut guard = self
                .fd
                .readable()
                .await
                .map_err(|err| Error::io(err, "wait for a message"))?;
            let target = &mut filling.target[filling.filled..];
            match guard.try_io(|fd| sys::retry_interrupted(|| NoWait(fd.get_ref()).read(target))) {
                Ok(Ok(0)) => {
                    filling.done = true;
                    let got = filling.filled;
                    drop(filling);
                    let err = frame::truncated("message", len as u64, got);
                    return Err(self.incoming.break_stream(err));
                }
                Ok(Ok(n)) => filling.filled += n,
                Ok(Err(err)) => {
                    let context = format!("receive {len}-byte message ({} read)", filling.filled);
                    return Err(Error::io(err, context));
                }
                Err(_would_block) => {}
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
        self.check_readable()?;
        if let Some(kind) = self.incoming.broken {
            return Err(lost_boundaries(kind));
        }
        let len = loop {
            if let Some(len) = self.incoming.len {
                break len;
            }
            let filled = self.incoming.header_filled;
            let want = if filled < 4 { 4 } else { HEADER_ROOM };
            let read = self
                .read_ready(|socket, incoming| {
                    NoWait(socket).read(&mut incoming.header[incoming.header_filled..want])
                })
                .await
                .map_err(|err| {
                    Error::io(
                        err,
                        format!("receive ({filled} of {want} header bytes read)"),
                    )
                })?;
            let incoming = &mut self.incoming;
            if read == 0 {
                if filled == 0 {
                    return Err(Error::new(ErrorKind::Eof, ""));
                }
                let what = if want == 4 {
                    "message header"
                } else {
                    "long message header"
                };
                return Err(incoming.break_stream(frame::truncated(what, want as u64, filled)));
            }
            incoming.header_filled += read;
            if incoming.header_filled == 4 {
                let short: [u8; 4] = incoming.header[..4].try_into().expect("four bytes");
                match frame::short_header_len(short) {
                    Ok(len) => incoming.len = len,
                    Err(err) => return Err(incoming.break_stream(err)),
                }
            } else if incoming.header_filled == HEADER_ROOM {
                let long: [u8; 8] = incoming.header[4..].try_into().expect("eight bytes");
                incoming.len = Some(u64::from_be_bytes(long));
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
        while self.incoming.payload.len() < len {
            let read = self
                .read_ready(|socket, incoming| {
                    let chunk = frame::next_chunk(incoming.payload.len(), len);
                    incoming.payload.reserve_exact(chunk);
                    // `take` keeps read_to_end within the chunk; it appends
                    // what it read even when it ends with WouldBlock.
                    NoWait(socket)
                        .take(chunk as u64)
                        .read_to_end(&mut incoming.payload)
                })
                .await;
            match read {
                Ok(0) => {
                    let got = self.incoming.payload.len();
                    let err = frame::truncated("message", len as u64, got);
                    return Err(self.incoming.break_stream(err));
                }
                Ok(_) => {}
                Err(err) => {
                    let got = self.incoming.payload.len();
                    let context = format!("receive {len}-byte message ({got} read)");
                    return Err(Error::io(err, context));
                }
            }
        }
        self.incoming.finish_message();
        Ok(std::mem::take(&mut self.incoming.payload))
    }

    /// Waits until the socket is readable and runs `read` on it, until
    /// `read` does not end with `WouldBlock`. Whatever `read` stores in
    /// the receive state before that stays there.
    async fn read_ready<R>(
        &mut self,
        mut read: impl FnMut(&Socket, &mut ReceiveState) -> io::Result<R>,
    ) -> io::Result<R> {
        loop {
            let mut guard = self.fd.readable().await?;
            let incoming = &mut self.incoming;
            match guard.try_io(|fd| sys::retry_interrupted(|| read(fd.get_ref(), incoming))) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}

/// A payload being read into a caller's buffer. Dropped before it is done,
/// it copies what arrived back into the connection, for the next receive.
struct Filling<'a> {
    target: &'a mut [u8],
    filled: usize,
    saved: &'a mut Vec<u8>,
    done: bool,
}

impl Drop for Filling<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.saved.clear();
            self.saved.extend_from_slice(&self.target[..self.filled]);
        }
    }
}
