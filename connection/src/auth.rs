//! CPython's authkey handshake over a blocking socket: the driver of
//! [`proto::handshake`](crate::proto::handshake) that [`Client`](crate::Client)
//! uses.
//!
//! Every read waits on `poll` against one deadline for the whole exchange,
//! so a peer that says nothing, or drips one byte at a time, cannot hold
//! the caller longer than the timeout; a length header above the
//! handshake's cap is refused before anything is read; and nothing past
//! the last handshake message is read.

use std::io;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::frame;
use crate::proto::handshake::{self, Handshake, Next, Role};
use crate::sys::{self, PollFd, Socket};

/// What the connecting side does: answer first, then challenge.
pub(crate) fn as_client(
    socket: &Socket,
    key: &[u8],
    strict: bool,
    deadline: Option<Instant>,
) -> Result<()> {
    run(Role::Client, socket, key, strict, deadline)
}

/// What the accepting side does. The listener itself drives the core
/// without waiting (`handshakes/exchange.rs`); this is for tests.
#[cfg(test)]
pub(crate) fn as_listener(
    socket: &Socket,
    key: &[u8],
    strict: bool,
    deadline: Option<Instant>,
) -> Result<()> {
    run(Role::Listener, socket, key, strict, deadline)
}

fn run(
    role: Role,
    socket: &Socket,
    key: &[u8],
    strict: bool,
    deadline: Option<Instant>,
) -> Result<()> {
    let mut handshake = Handshake::start(role, strict)?;
    loop {
        match handshake.next() {
            Next::Send(message) | Next::Farewell(message) => {
                let sent = frame::write_message(socket, message, &mut Vec::new())
                    .map_err(|err| Error::io(err, "send handshake message"));
                handshake.sent(sent);
            }
            Next::Receive { max } => {
                handshake.received(key, recv(socket, max, deadline));
            }
            Next::Finished(outcome) => return outcome,
        }
    }
}

/// Receives one message of at most `max` bytes before `deadline`.
fn recv(socket: &Socket, max: usize, deadline: Option<Instant>) -> Result<Vec<u8>> {
    let mut header = [0u8; 4];
    read_exact(socket, &mut header, true, deadline)?;
    let mut message = vec![0u8; handshake::message_len(header, max)?];
    read_exact(socket, &mut message, false, deadline)?;
    Ok(message)
}

fn read_exact(
    socket: &Socket,
    buf: &mut [u8],
    at_message_start: bool,
    deadline: Option<Instant>,
) -> Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        wait_readable(socket, deadline)?;
        match socket.read(&mut buf[filled..]) {
            Ok(0) => return Err(handshake::peer_closed(filled > 0 || !at_message_start)),
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(Error::io(err, "receive handshake message")),
        }
    }
    Ok(())
}

fn wait_readable(socket: &Socket, deadline: Option<Instant>) -> Result<()> {
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let mut fds = [PollFd::readable(socket.fd())];
        match sys::poll(&mut fds, left) {
            Ok(0) => return Err(handshake::timed_out()),
            Ok(_) => return Ok(()),
            // The handshake is short and bounded by its deadline, so a
            // signal is not allowed to cost a peer its connection.
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(Error::io(err, "poll during handshake")),
        }
    }
}

#[cfg(test)]
mod tests;
