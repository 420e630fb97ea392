//! [`Endpoint`]: what one end of a connection needs to send and receive
//! large messages through memfds, apart from the socket's framing, which
//! its `Connection` keeps.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;

use super::{ReceivedMemfd, RecycledViews, Recycler, SharedBuf, SENT};
use crate::error::{Error, ErrorKind, Result};
use crate::frame;
use crate::proto::frame::{recycled_header, shared_header, Header};
use crate::sys::shm;
use crate::sys::{Socket, Wait};

/// One end's shared-memory settings and memfds.
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// Whether this end sends and accepts shared-memory messages.
    mode: Mode,
    /// The smallest payload the copying calls send as shared memory.
    pub(crate) threshold: Option<usize>,
    /// The memfds the copying calls fill and send again.
    pub(crate) recycler: Recycler,
    /// Mappings of the recyclable memfds the peer sent lately.
    views: RecycledViews,
    /// The payload of the message whose header was read last, when it came
    /// as shared memory: the connection's payload reads take it from here
    /// instead of the socket. Kept while that message is left pending
    /// (over a receive's limit); taken by the read of its payload, freeing
    /// its memfd.
    payload: Option<ReceivedMemfd>,
}

/// Whether an end uses shared memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Neither sends nor accepts shared-memory messages.
    Off,
    /// Sends large messages as shared memory and accepts them.
    On,
    /// Agreed, but this process cannot create memfds: sends through the
    /// socket, still accepts them.
    Unavailable,
}

impl Endpoint {
    /// An end that did not agree (yet), with the process's threshold.
    pub(crate) fn new() -> Endpoint {
        Endpoint {
            mode: Mode::Off,
            threshold: super::default_threshold(),
            recycler: Recycler::default(),
            views: RecycledViews::default(),
            payload: None,
        }
    }

    /// A new end with this one's settings (a clone of the connection),
    /// none of its memfds.
    pub(crate) fn clone_settings(&self) -> Endpoint {
        Endpoint {
            mode: self.mode,
            threshold: self.threshold,
            ..Endpoint::new()
        }
    }

    /// This end agreed with its peer (both ends of a `pipe()`).
    pub(crate) fn agree(&mut self) {
        self.mode = Mode::On;
    }

    /// Whether this end accepts shared-memory messages (and sends them,
    /// where memfds can be made).
    pub(crate) fn accepts(&self) -> bool {
        self.mode != Mode::Off
    }

    /// Turns the path on or off for the end on `socket`; on needs a Unix
    /// socket ([`ErrorKind::InvalidInput`] otherwise). Turning it on
    /// again where memfds cannot be made keeps it receiving only.
    pub(crate) fn set(&mut self, on: bool, socket: &Socket) -> Result<()> {
        if on && !shm::is_unix_socket(socket.fd()) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "shared memory needs a Unix-socket connection, which carries descriptors",
            ));
        }
        self.mode = match (on, self.mode) {
            (false, _) => Mode::Off,
            (true, Mode::Off) => Mode::On,
            (true, mode) => mode,
        };
        Ok(())
    }

    /// Whether a `len`-byte payload of the copying calls goes as shared
    /// memory (if a memfd can be filled for it).
    pub(crate) fn sends(&self, len: usize) -> bool {
        self.mode == Mode::On && self.threshold.is_some_and(|threshold| len >= threshold)
    }

    /// Sends a copy of `payload` on `socket` in a memfd, when this end
    /// sends it as shared memory, waiting for room or not as `wait` says,
    /// and returns what [`send_memfd`] left unwritten. `None` sends it
    /// through the socket: the end did not agree, the payload is small, or
    /// the copy failed. A failure that means memfds cannot be made here at
    /// all turns the path off for good.
    ///
    /// The copy goes into a recyclable memfd ([`Recycler::fill`], which
    /// may wait for one with `Wait::ForRoom`), else a fresh sealed one, so
    /// that a sender over the threshold never waits long for its reader.
    pub(crate) fn send_copy(
        &mut self,
        socket: &Socket,
        payload: &[u8],
        wait: Wait,
    ) -> Option<Result<(Vec<u8>, Option<OwnedFd>)>> {
        if !self.sends(payload.len()) {
            return None;
        }
        let patience = wait == Wait::ForRoom;
        let outgoing = self
            .recycler
            .fill(payload, patience)
            .and_then(|filled| match filled {
                Some(filled) => Ok((
                    filled.memfd,
                    recycled_header(filled.len as u64, filled.generation),
                )),
                None => {
                    let memfd = shm::create_filled(payload)?;
                    shm::seal(memfd.as_fd())?;
                    Ok((memfd, shared_header(payload.len() as u64)))
                }
            });
        match outgoing {
            Ok((memfd, header)) => Some(send_memfd(socket, memfd, &header, payload.len(), wait)),
            Err(err) if shm::is_unavailable(&err) => {
                tracing::debug!(error = %err, "no memfds here: large messages go through the socket");
                self.mode = Mode::Unavailable;
                None
            }
            Err(err) => {
                tracing::debug!(error = %err, "message not copied to shared memory: sent through the socket");
                None
            }
        }
    }

    /// Takes in a header read from the socket, with the descriptors that
    /// came with it, and returns its message's length: a shared-memory
    /// message's descriptor is checked and kept as the payload to read. A
    /// refused one is an error that leaves the stream at the next message.
    /// Descriptors that came with an ordinary header were not announced,
    /// and are closed here.
    pub(crate) fn receive(&mut self, header: Header, fds: Vec<OwnedFd>) -> Result<u64> {
        let memfd = match header {
            Header::Stream(len) if !fds.is_empty() => {
                tracing::debug!(
                    count = fds.len(),
                    "closed descriptors sent with an ordinary message"
                );
                return Ok(len);
            }
            Header::Stream(len) => return Ok(len),
            Header::Shared(len) => ReceivedMemfd::check(fds, len)?,
            Header::Recycled { len, generation } => {
                ReceivedMemfd::check_recycled(fds, len, generation, &mut self.views)?
            }
        };
        Ok(self.payload.insert(memfd).len)
    }

    /// The shared-memory payload of the message whose header was read
    /// last, if it came as one and was not read yet.
    pub(crate) fn take_payload(&mut self) -> Option<ReceivedMemfd> {
        self.payload.take()
    }

    /// Whether the message whose header was read last came as shared
    /// memory and was not read yet.
    pub(crate) fn has_payload(&self) -> bool {
        self.payload.is_some()
    }
}

/// Seals `buf` and sends it on `socket`: its receiver gets these very pages.
pub(crate) fn send_sealed(socket: &Socket, buf: SharedBuf) -> Result<()> {
    let (memfd, len) = buf.seal()?;
    let header = shared_header(len as u64);
    send_memfd(socket, memfd, &header, len, Wait::ForRoom).map(drop)
}

/// Sends `header` (of a `len`-byte shared-memory message) with `memfd`
/// attached on `socket`, waiting for room or not as `wait` says. Returns
/// the header bytes left unwritten and the memfd if it did not go (it
/// goes with the header's first byte).
pub(crate) fn send_memfd(
    socket: &Socket,
    memfd: OwnedFd,
    header: &[u8],
    len: usize,
    wait: Wait,
) -> Result<(Vec<u8>, Option<OwnedFd>)> {
    let (rest, sent_fd) = frame::write_shared(socket, header, &memfd, wait)
        .map_err(|err| Error::send_failed(err, format!("send {len}-byte shared-memory message")))?;
    if sent_fd {
        SENT.fetch_add(1, Ordering::Relaxed);
    }
    Ok((rest, (!sent_fd).then_some(memfd)))
}
