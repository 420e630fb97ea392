//! CPython's authkey handshake over a [`Socket`]: an [`Exchange`] moves the
//! messages of the [core](crate::proto::handshake) as far as the socket
//! allows without waiting for data; [`authenticate`] (what
//! [`Client`](crate::Client) runs) waits for it on `poll` against one
//! deadline, and the [listener's table](crate::handshakes) for many at
//! once.
//!
//! The tokio handshake drives the same [`Exchange`], awaiting where
//! [`authenticate`] polls. Messages are read exactly: a 4-byte header, refused at once if it
//! announces more than the core takes, then that many bytes and not one
//! more, so that whatever the peer sends after its last handshake message
//! is left in the socket for the [`Connection`](crate::Connection). An
//! exchange holds at most one message each way: a few hundred bytes. A
//! peer that says nothing, or drips one byte at a time, holds its end no
//! longer than the deadline.

use std::fmt;
use std::io::{self, IoSlice};
use std::ops::Deref;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::frame;
use crate::proto::frame::join;
use crate::proto::handshake::{self, Handshake, Next, Role};
use crate::sys::{self, retry_interrupted, Interest, PollFd, Socket, Wait};

/// The authkey of a [`Client`](crate::Client) or a
/// [`ListenerBuilder`](crate::ListenerBuilder), which their `Debug` never
/// shows.
#[derive(Clone)]
pub(crate) struct Authkey(pub(crate) Vec<u8>);

impl Deref for Authkey {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Authkey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        "<hidden>".fmt(f)
    }
}

/// Runs `role`'s side of the handshake on `socket` before `deadline`,
/// sends waiting for room. The listener runs its exchanges side by side
/// instead (`handshakes.rs`): its role here is for tests.
pub(crate) fn authenticate(
    role: Role,
    socket: &Socket,
    key: &[u8],
    strict: bool,
    deadline: Option<Instant>,
) -> Result<()> {
    let mut exchange = Exchange::start(role, strict, Wait::ForRoom)?;
    loop {
        match exchange.advance(socket, key) {
            Advanced::Done(outcome) => return outcome,
            Advanced::Blocked => {
                let mut fds = [PollFd::readable(socket.fd())];
                match retry_interrupted(|| sys::poll(&mut fds, sys::time_left(deadline))) {
                    Ok(0) => return Err(handshake::timed_out()),
                    Ok(_) => {}
                    Err(err) => return Err(Error::io(err, "poll during handshake")),
                }
            }
        }
    }
}

/// What [`Exchange::advance`] got to.
#[derive(Debug)]
pub(crate) enum Advanced {
    /// The socket has nothing more to give, or no room: wait for
    /// [`Exchange::interest`].
    Blocked,
    /// The handshake ended: the peer is authenticated, or why not.
    Done(Result<()>),
}

/// One end's handshake in progress over a socket.
#[derive(Debug)]
pub(crate) struct Exchange {
    handshake: Handshake,
    /// Whether a send waits for room in the socket.
    sends: Wait,
    /// The framed message on its way out (empty: none), and how much of it
    /// has gone.
    out: Vec<u8>,
    sent: usize,
    /// The message coming in, header first, and how much of it is here.
    incoming: Vec<u8>,
    filled: usize,
}

impl Exchange {
    /// `role`'s handshake, whose sends wait for room or not as `sends` says.
    pub(crate) fn start(role: Role, strict: bool, sends: Wait) -> Result<Exchange> {
        Ok(Exchange {
            handshake: Handshake::start(role, strict)?,
            sends,
            out: Vec::new(),
            sent: 0,
            incoming: Vec::new(),
            filled: 0,
        })
    }

    /// What the socket must become before [`advance`](Self::advance) can
    /// get further.
    pub(crate) fn interest(&self) -> Interest {
        if self.sent < self.out.len() {
            Interest::Writable
        } else {
            Interest::Readable
        }
    }

    /// Sends and receives what `socket` allows without waiting for data.
    pub(crate) fn advance(&mut self, socket: &Socket, key: &[u8]) -> Advanced {
        loop {
            match self.handshake.next() {
                Next::Send(message) => {
                    if self.out.is_empty() {
                        join(message, &mut self.out);
                    }
                    match self.flush(socket) {
                        Ok(false) => return Advanced::Blocked,
                        sent => self.handshake.sent(sent.map(|_| ())),
                    }
                }
                Next::Farewell(message) => {
                    join(message, &mut self.out);
                    let sent = self.flush(socket);
                    self.handshake.sent(sent.map(|_| ()));
                }
                Next::Receive { max } => {
                    let Some(received) = self.read_message(socket, max).transpose() else {
                        return Advanced::Blocked;
                    };
                    self.handshake.received(key, received);
                }
                Next::Finished(outcome) => return Advanced::Done(outcome),
            }
        }
    }

    /// Sends what is left of the message out; `false` if the socket has no
    /// room for all of it. Once all of it has gone, nothing is out.
    fn flush(&mut self, socket: &Socket) -> Result<bool> {
        while self.sent < self.out.len() {
            let rest = [IoSlice::new(&self.out[self.sent..])];
            match retry_interrupted(|| socket.send(&rest, self.sends)) {
                Ok(0) => return Err(send_failed(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.sent += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(err) => return Err(send_failed(err)),
            }
        }
        self.out.clear();
        self.sent = 0;
        Ok(true)
    }

    /// Reads on in the message coming in; `None` until all of it is here.
    fn read_message(&mut self, socket: &Socket, max: usize) -> Result<Option<Vec<u8>>> {
        loop {
            let want = match self.incoming.get(..4) {
                Some(header) if self.filled >= 4 => {
                    let header = header.try_into().expect("four bytes");
                    4 + handshake::message_len(header, max)?
                }
                _ => 4,
            };
            if self.filled == want {
                self.filled = 0;
                return Ok(Some(self.incoming.drain(..).skip(4).collect()));
            }
            self.incoming.resize(want, 0);
            let buf = &mut self.incoming[self.filled..];
            // A reset is the peer's end, as in every receive: `Eof` or
            // `Truncated`, whichever driver runs the exchange.
            match frame::arrived(Wait::No, || socket.recv(buf, Wait::No)) {
                Ok(None) => return Ok(None),
                Ok(Some(0)) => return Err(handshake::peer_closed(self.filled > 0)),
                Ok(Some(n)) => self.filled += n,
                Err(err) => return Err(Error::io(err, "receive handshake message")),
            }
        }
    }
}

fn send_failed(err: io::Error) -> Error {
    Error::io(err, "send handshake message")
}

#[cfg(test)]
mod tests;
