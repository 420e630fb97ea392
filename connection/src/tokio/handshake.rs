//! CPython's authkey handshake over an [`AsyncConnection`]: the messages of
//! the [core](crate::proto::handshake) awaited instead of polled, so the
//! handshake never holds the runtime's thread.

use super::AsyncConnection;
use crate::error::{ErrorKind, Result};
pub(super) use crate::proto::handshake::Role;
use crate::proto::handshake::{self, Handshake, Next};

/// Runs `role`'s side of the handshake on `conn`.
pub(super) async fn authenticate(
    role: Role,
    conn: &mut AsyncConnection,
    key: &[u8],
    strict: bool,
) -> Result<()> {
    let mut handshake = Handshake::start(role, strict)?;
    loop {
        match handshake.next() {
            Next::Send(message) | Next::Farewell(message) => {
                let sent = conn.send_bytes(message).await;
                handshake.sent(sent.map_err(|err| err.context("send handshake message")));
            }
            Next::Receive { max } => {
                let received = recv(conn, max).await;
                handshake.received(key, received);
            }
            Next::Finished(outcome) => return outcome,
        }
    }
}

/// One handshake message of at most `max` bytes: nothing larger is read.
async fn recv(conn: &mut AsyncConnection, max: usize) -> Result<Vec<u8>> {
    // The handshake's cap, not the connection's max_message_size: a small
    // one must not refuse the handshake.
    match conn.recv_bytes_within(max as u64).await {
        Err(err) if err.kind() == ErrorKind::MessageTooLarge => {
            Err(handshake::too_long(format_args!("above {max}"), max).with_source(err))
        }
        Err(err) if err.kind() == ErrorKind::Eof => Err(handshake::peer_closed(false)),
        other => other.map_err(|err| err.context("receive handshake message")),
    }
}
