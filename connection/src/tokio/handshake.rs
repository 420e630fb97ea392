//! CPython's authkey handshake over an [`AsyncConnection`]: the exchange
//! of `auth.rs`, with its challenges, digests and checks, awaited instead
//! of polled, so it never holds the runtime's thread.

use super::AsyncConnection;
use crate::auth::{self, CHALLENGE, FAILURE, MAX_MESSAGE, WELCOME};
use crate::error::{Error, ErrorKind, Result};

/// What the accepting side does: challenge first, then answer.
pub(super) async fn as_listener(
    conn: &mut AsyncConnection,
    key: &[u8],
    strict: bool,
) -> Result<()> {
    deliver_challenge(conn, key, strict).await?;
    answer_challenge(conn, key, strict).await
}

/// What the connecting side does: answer first, then challenge.
pub(super) async fn as_client(conn: &mut AsyncConnection, key: &[u8], strict: bool) -> Result<()> {
    answer_challenge(conn, key, strict).await?;
    deliver_challenge(conn, key, strict).await
}

async fn deliver_challenge(conn: &mut AsyncConnection, key: &[u8], strict: bool) -> Result<()> {
    let challenge = auth::new_challenge()?;
    send(conn, &[CHALLENGE, &challenge].concat()).await?;
    let response = recv(conn).await?;
    match auth::check_response(key, &challenge, &response, strict) {
        Ok(()) => send(conn, WELCOME).await,
        Err(err) => {
            // Tell the peer, as CPython does; the authentication error is
            // the one worth reporting either way.
            if let Err(send_err) = send(conn, FAILURE).await {
                tracing::debug!(error = %send_err, "could not send #FAILURE#");
            }
            Err(err)
        }
    }
}

async fn answer_challenge(conn: &mut AsyncConnection, key: &[u8], strict: bool) -> Result<()> {
    let message = recv(conn).await?;
    let Some(challenge) = message.strip_prefix(CHALLENGE) else {
        return Err(Error::new(
            ErrorKind::Protocol,
            "expected a #CHALLENGE# message (does the peer use an authkey?)",
        ));
    };
    send(conn, &auth::respond(key, challenge, strict)?).await?;
    if recv(conn).await? == WELCOME {
        Ok(())
    } else {
        Err(auth::auth_failed(
            "the peer rejected our digest (different authkey, or it refuses our scheme)",
        ))
    }
}

async fn send(conn: &mut AsyncConnection, message: &[u8]) -> Result<()> {
    conn.send_bytes(message)
        .await
        .map_err(|err| err.context("send handshake message"))
}

/// One handshake message: at most [`MAX_MESSAGE`] bytes, nothing larger is
/// read (a longer header is the peer not speaking this protocol).
async fn recv(conn: &mut AsyncConnection) -> Result<Vec<u8>> {
    // The handshake's cap, not the connection's max_message_size: a small
    // one must not refuse the handshake.
    match conn.recv_bytes_within(MAX_MESSAGE as u64).await {
        Err(err) if err.kind() == ErrorKind::MessageTooLarge => Err(Error::new(
            ErrorKind::Protocol,
            format!(
                "handshake message longer than {MAX_MESSAGE} bytes \
                 (is the peer speaking this protocol?)"
            ),
        )
        .with_source(err)),
        Err(err) if err.kind() == ErrorKind::Eof => Err(Error::new(
            ErrorKind::Eof,
            "the peer closed the connection during the handshake",
        )),
        other => other.map_err(|err| err.context("receive handshake message")),
    }
}
