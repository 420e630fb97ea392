//! CPython's authkey handshake over an [`AsyncConnection`]: the blocking
//! side's [`Exchange`] (the same messages, read exactly, the same errors),
//! its waits awaited on the runtime instead of polled, so the handshake
//! never holds the runtime's thread.

use tokio::io::Interest as TokioInterest;

use super::AsyncConnection;
use crate::auth::{Advanced, Exchange};
use crate::error::{Error, Result};
pub(super) use crate::proto::handshake::Role;
use crate::sys::{Interest, Wait};

/// Runs `role`'s side of the handshake on `conn`.
pub(super) async fn authenticate(
    role: Role,
    conn: &mut AsyncConnection,
    key: &[u8],
    strict: bool,
) -> Result<()> {
    let mut exchange = Exchange::start(role, strict, Wait::No)?;
    let socket = conn.fd.get_ref();
    let mut advanced = exchange.advance(socket, key);
    loop {
        if let Advanced::Done(outcome) = advanced {
            return outcome;
        }
        let interest = match exchange.interest() {
            Interest::Writable => TokioInterest::WRITABLE,
            Interest::Readable | Interest::Nothing => TokioInterest::READABLE,
        };
        let mut guard = (conn.fd.ready(interest).await)
            .map_err(|err| Error::io(err, "wait during handshake"))?;
        advanced = exchange.advance(socket, key);
        if let Advanced::Blocked = advanced {
            // Cleared only now, with the guard held since before the
            // attempt: readiness that came after it stays for the next.
            guard.clear_ready();
        }
    }
}
