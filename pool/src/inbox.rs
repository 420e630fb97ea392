//! A worker receives its messages into memory kept from one message to
//! the next: a batch of large inputs then lands in pages already faulted
//! in, instead of a fresh allocation per message (on the VM measured, a
//! fresh page costs about six copies to fault in and free again).
//!
//! The pool's I/O thread does not do the same with results: a results
//! message is shared by the outputs in it until their callers decode them,
//! and taking its memory back afterwards measured no faster.

use connection::{Connection, ErrorKind};

/// The largest buffer kept from one message to the next: larger messages
/// get memory of their own, freed once handled.
pub(crate) const KEEP: usize = 32 << 20;

/// The smallest buffer, so that small messages of growing sizes do not
/// each outgrow it; one page, because the buffer is zeroed when it grows
/// and a worker's first message is most often a small batch. At 64 KiB,
/// every worker of a cluster faulted in and cleared 16 pages before it
/// could start its first input: with 3,000 remote workers on 2 cores, a
/// quarter of their CPU time in a map's first round.
const MIN: usize = 4 << 10;

/// Receives the next message into `buffer`'s initialized bytes and returns
/// its length (the message is `buffer[..len]`); a message longer than
/// them becomes the buffer, exactly as long as the message.
fn receive_into(conn: &mut Connection, buffer: &mut Vec<u8>) -> connection::Result<usize> {
    match conn.recv_bytes_into(buffer, 0) {
        Ok(len) => Ok(len),
        Err(err) if err.kind() == ErrorKind::BufferTooShort => {
            // The error carries the whole message.
            *buffer = err.into_message().unwrap_or_default();
            Ok(buffer.len())
        }
        Err(err) => Err(err),
    }
}

/// A worker's receive buffer: each message is read into it and handled
/// in place, before the next is received.
#[derive(Default)]
pub(crate) struct Inbox {
    /// Initialized bytes, as long as the largest message kept.
    buf: Vec<u8>,
}

impl Inbox {
    /// Receives the next message into the buffer and returns it.
    pub(crate) fn receive(&mut self, conn: &mut Connection) -> connection::Result<&[u8]> {
        if self.buf.len() > KEEP {
            // A message beyond what is kept was handled: its memory goes.
            self.buf = Vec::new();
        }
        let len = receive_into(conn, &mut self.buf)?;
        if self.buf.len() == len && len <= KEEP {
            // Grown to the next power of two, once, so that a run of
            // slightly larger messages does not outgrow it each time.
            let room = len.next_power_of_two().clamp(MIN, KEEP);
            self.buf.resize(room, 0);
        }
        Ok(&self.buf[..len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_of_every_size_come_whole_and_in_order() {
        let (mut a, mut b) = connection::pipe().unwrap();
        let sizes = [0usize, 5, 100_000, 3, MIN + 1, 2 << 20, 10, KEEP + 1, 7];
        let sender = std::thread::spawn(move || {
            for (i, &size) in sizes.iter().enumerate() {
                a.send_bytes(&vec![i as u8; size]).unwrap();
            }
        });
        let mut inbox = Inbox::default();
        for (i, &size) in sizes.iter().enumerate() {
            assert_eq!(inbox.receive(&mut b).unwrap(), vec![i as u8; size]);
        }
        sender.join().unwrap();
    }

    #[test]
    fn a_small_first_message_takes_a_page_not_more() {
        let (mut a, mut b) = connection::pipe().unwrap();
        a.send_bytes(&[7; 100]).unwrap();
        let mut inbox = Inbox::default();
        assert_eq!(inbox.receive(&mut b).unwrap(), [7; 100]);
        // What a worker zeroes before its first input can start.
        assert!(inbox.buf.len() <= 4096, "{} bytes", inbox.buf.len());
        // Growing messages still come whole, the buffer growing with them.
        for size in [3000, 5000, 70_000] {
            a.send_bytes(&vec![size as u8; size]).unwrap();
            assert_eq!(inbox.receive(&mut b).unwrap(), vec![size as u8; size]);
        }
        assert!(inbox.buf.len() >= 70_000);
    }

    #[test]
    fn large_messages_land_in_the_same_memory() {
        let (mut a, mut b) = connection::pipe().unwrap();
        let sender = std::thread::spawn(move || {
            for size in [3 << 20, 1 << 20, 4 << 20, 100] {
                a.send_bytes(&vec![size as u8; size]).unwrap();
            }
        });
        let mut inbox = Inbox::default();
        let at = inbox.receive(&mut b).unwrap().as_ptr();
        for size in [1 << 20, 4 << 20, 100] {
            let message = inbox.receive(&mut b).unwrap();
            assert_eq!(message, vec![size as u8; size]);
            assert_eq!(message.as_ptr(), at);
        }
        sender.join().unwrap();
    }
}
