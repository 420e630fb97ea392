//! [`Direction`]: which ways an end carries messages.

use crate::error::{Error, ErrorKind, Result};

/// Which ways an end of a connection carries messages: both, or one (the
/// ends of a [`one_way_pipe`](crate::one_way_pipe)).
///
/// # Examples
///
/// ```
/// use connection::Direction;
///
/// let (reader, writer) = connection::one_way_pipe()?;
/// assert_eq!(reader.direction(), Direction::ReadOnly);
/// assert_eq!(writer.direction(), Direction::WriteOnly);
/// assert!(Direction::Both.can_receive() && Direction::Both.can_send());
/// # Ok::<(), connection::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Sends and receives.
    Both,
    /// Only receives.
    ReadOnly,
    /// Only sends.
    WriteOnly,
}

impl Direction {
    /// Whether an end with this direction can receive.
    pub fn can_receive(self) -> bool {
        self != Direction::WriteOnly
    }

    /// Whether an end with this direction can send.
    pub fn can_send(self) -> bool {
        self != Direction::ReadOnly
    }

    /// [`ErrorKind::Closed`] unless an end with this direction can receive.
    pub(crate) fn check_receive(self) -> Result<()> {
        closed_unless(self.can_receive(), "receive (the write end")
    }

    /// [`ErrorKind::Closed`] unless an end with this direction can send.
    pub(crate) fn check_send(self) -> Result<()> {
        closed_unless(self.can_send(), "send (the read end")
    }

    /// How [`Connection::pass_to_child`](crate::Connection::pass_to_child) writes it after the descriptor number.
    pub(crate) fn mode(self) -> &'static str {
        match self {
            Direction::Both => "rw",
            Direction::ReadOnly => "r",
            Direction::WriteOnly => "w",
        }
    }

    /// The direction [`mode`](Direction::mode) wrote, if it is one.
    pub(crate) fn from_mode(mode: &str) -> Option<Direction> {
        [Direction::Both, Direction::ReadOnly, Direction::WriteOnly]
            .into_iter()
            .find(|direction| direction.mode() == mode)
    }
}

fn closed_unless(can: bool, what: &str) -> Result<()> {
    match can {
        true => Ok(()),
        false => Err(Error::new(
            ErrorKind::Closed,
            format!("this end cannot {what} of a one-way pipe)"),
        )),
    }
}
