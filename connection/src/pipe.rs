//! [`pipe`] and [`one_way_pipe`]: connected pairs, like Python's `Pipe()`.

use std::net::Shutdown;

use crate::connection::{Connection, Direction};
use crate::error::{Error, Result};
use crate::sys::Socket;

/// A connected pair of duplex connections (Python's `Pipe()`): what one end
/// sends, the other receives, in both directions.
///
/// Built on a Unix `socketpair`, close-on-exec; pass an end to a child
/// process with [`Connection::pass_to_child`]. Large messages between the
/// two ends travel as shared memory (see [`crate::shared`]).
///
/// # Examples
///
/// ```
/// let (mut a, mut b) = connection::pipe()?;
/// a.send(&vec![1.5f64, 2.5])?;
/// b.send_bytes(b"ack")?;
/// assert_eq!(b.recv::<Vec<f64>>()?, [1.5, 2.5]);
/// assert_eq!(a.recv_bytes()?, b"ack");
/// # Ok::<(), connection::Error>(())
/// ```
pub fn pipe() -> Result<(Connection, Connection)> {
    let (a, b) = socket_pair()?;
    Ok((
        Connection::new(a, Direction::Both).with_shared_memory(),
        Connection::new(b, Direction::Both).with_shared_memory(),
    ))
}

/// A one-way pair `(reader, writer)` (Python's `Pipe(duplex=False)`): the
/// reader only receives, the writer only sends. Using an end the wrong way
/// is an [`ErrorKind::Closed`](crate::ErrorKind::Closed) error.
///
/// # Examples
///
/// ```
/// let (mut reader, mut writer) = connection::one_way_pipe()?;
/// writer.send_bytes(b"one way")?;
/// assert_eq!(reader.recv_bytes()?, b"one way");
/// assert!(reader.send_bytes(b"back").is_err());
/// # Ok::<(), connection::Error>(())
/// ```
pub fn one_way_pipe() -> Result<(Connection, Connection)> {
    let (reader, writer) = socket_pair()?;
    // Shut the unused directions in the kernel too, so that a descriptor
    // handed to a child cannot be used against the grain either.
    let shut = |socket: &Socket, how| {
        socket
            .shutdown(how)
            .map_err(|err| Error::io(err, "shutdown of unused direction"))
    };
    shut(&reader, Shutdown::Write)?;
    shut(&writer, Shutdown::Read)?;
    Ok((
        Connection::new(reader, Direction::ReadOnly).with_shared_memory(),
        Connection::new(writer, Direction::WriteOnly).with_shared_memory(),
    ))
}

fn socket_pair() -> Result<(Socket, Socket)> {
    Socket::pair().map_err(|err| Error::io(err, "socketpair"))
}
