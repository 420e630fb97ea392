//! How an [`AsyncConnection`](super::AsyncConnection) does its I/O: it
//! waits until its descriptor is ready, then runs a step that never waits
//! (the code the pool's event loop runs: `crate::nowait`'s receive,
//! `crate::frame`'s writes), until the step is done. So the async side has
//! no read or write loop of its own, and keeps its progress wherever the
//! step keeps it, never in a future that may be dropped.

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::error::{Error, Result};
use crate::sys::Socket;

/// Runs `step` each time `fd` is ready for `interest` (and once before
/// waiting, with `at_once`: for a step that may need no I/O at all), until
/// it is done (`Some`). `step` must go on until the socket has nothing
/// more for it (`None`), so that waiting for the next readiness cannot
/// miss what is there already.
pub(super) async fn when_ready<T>(
    fd: &AsyncFd<Socket>,
    interest: Interest,
    at_once: bool,
    mut step: impl FnMut(&Socket) -> Result<Option<T>>,
) -> Result<T> {
    if at_once {
        if let Some(done) = step(fd.get_ref())? {
            return Ok(done);
        }
    }
    loop {
        let mut ready = fd
            .ready(interest)
            .await
            .map_err(|err| Error::io(err, "wait for the connection to be ready"))?;
        if let Some(done) = step(fd.get_ref())? {
            return Ok(done);
        }
        ready.clear_ready();
    }
}
