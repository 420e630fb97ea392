//! The listener's side of CPython's handshake over a socket that is never
//! waited on: [`Exchange::advance`] moves the messages of the
//! [core](crate::proto::handshake) as far as the socket allows without
//! blocking and says whether the handshake ended.
//!
//! Messages are read exactly: a 4-byte header, refused at once if it
//! announces more than the core takes, then that many bytes and not one
//! more, so that whatever the peer sends after its last handshake message
//! is left in the socket for the [`Connection`](crate::Connection). An
//! exchange holds at most one message each way: a few hundred bytes.

use std::io::{self, IoSlice};

use crate::error::{Error, Result};
use crate::proto::handshake::{self, Handshake, Next, Role};
use crate::sys::{Interest, Socket, Wait};

/// What [`Exchange::advance`] got to.
#[derive(Debug)]
pub(crate) enum Advanced {
    /// The socket has nothing more to give, or no room: wait for
    /// [`Exchange::interest`].
    Blocked,
    /// The handshake ended: the peer is authenticated, or why not.
    Done(Result<()>),
}

/// One listener-side handshake in progress.
#[derive(Debug)]
pub(crate) struct Exchange {
    handshake: Handshake,
    /// The framed message on its way out (empty: none), and how much of it
    /// has gone.
    out: Vec<u8>,
    sent: usize,
    /// The message coming in: its header, then its payload.
    header: [u8; 4],
    header_read: usize,
    payload: Vec<u8>,
    payload_read: usize,
}

impl Exchange {
    /// A handshake whose first message, our challenge, is ready to go.
    pub(crate) fn start(strict: bool) -> Result<Exchange> {
        Ok(Exchange {
            handshake: Handshake::start(Role::Listener, strict)?,
            out: Vec::new(),
            sent: 0,
            header: [0; 4],
            header_read: 0,
            payload: Vec::new(),
            payload_read: 0,
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

    /// Sends and receives what `socket` allows without waiting.
    pub(crate) fn advance(&mut self, socket: &Socket, key: &[u8]) -> Advanced {
        loop {
            match self.handshake.next() {
                Next::Send(message) => {
                    if self.out.is_empty() {
                        frame(&mut self.out, message);
                    }
                    match self.flush(socket) {
                        Ok(false) => return Advanced::Blocked,
                        sent => self.handshake.sent(sent.map(|_| ())),
                    }
                }
                Next::Farewell(message) => {
                    frame(&mut self.out, message);
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
            match socket.send(&[IoSlice::new(&self.out[self.sent..])], Wait::No) {
                Ok(0) => {
                    return Err(Error::io(
                        io::ErrorKind::WriteZero.into(),
                        "send handshake message",
                    ))
                }
                Ok(n) => self.sent += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(err) => return Err(Error::io(err, "send handshake message")),
            }
        }
        self.out.clear();
        self.sent = 0;
        Ok(true)
    }

    /// Reads on in the message coming in; `None` until all of it is here.
    fn read_message(&mut self, socket: &Socket, max: usize) -> Result<Option<Vec<u8>>> {
        while self.header_read < self.header.len() {
            let Some(n) = read_some(
                socket,
                &mut self.header[self.header_read..],
                self.header_read > 0,
            )?
            else {
                return Ok(None);
            };
            self.header_read += n;
            if self.header_read == self.header.len() {
                self.payload = vec![0; handshake::message_len(self.header, max)?];
                self.payload_read = 0;
            }
        }
        while self.payload_read < self.payload.len() {
            let Some(n) = read_some(socket, &mut self.payload[self.payload_read..], true)? else {
                return Ok(None);
            };
            self.payload_read += n;
        }
        self.header_read = 0;
        Ok(Some(std::mem::take(&mut self.payload)))
    }
}

/// Frames `payload` as the next message out.
fn frame(out: &mut Vec<u8>, payload: &[u8]) {
    let len = i32::try_from(payload.len()).expect("handshake messages are small");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Reads what has arrived into `buf`: `None` if nothing has. End of file
/// is an error: a clean one at a message's start, else a truncation.
fn read_some(socket: &Socket, buf: &mut [u8], mid_message: bool) -> Result<Option<usize>> {
    loop {
        return match socket.recv_nowait(buf) {
            Ok(0) => Err(handshake::peer_closed(mid_message)),
            Ok(n) => Ok(Some(n)),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(err) => Err(Error::io(err, "receive handshake message")),
        };
    }
}

#[cfg(test)]
mod tests {
    use std::thread;
    use std::time::Duration;

    use super::*;
    use crate::error::ErrorKind;
    use crate::frame;
    use crate::proto::handshake::digest;
    use crate::sys::ReadySet;

    const KEY: &[u8] = b"exchange key";

    /// Advances `exchange` whenever its socket is ready, until it ends.
    fn run(exchange: &mut Exchange, socket: &Socket, key: &[u8]) -> Result<()> {
        let mut set = ReadySet::new().unwrap();
        set.add(socket.fd(), 0, exchange.interest()).unwrap();
        loop {
            match exchange.advance(socket, key) {
                Advanced::Done(outcome) => return outcome,
                Advanced::Blocked => {
                    set.watch(socket.fd(), 0, exchange.interest()).unwrap();
                    let mut ready = Vec::new();
                    set.wait(&mut ready, Some(Duration::from_secs(60))).unwrap();
                    assert!(!ready.is_empty(), "the peer went quiet");
                }
            }
        }
    }

    /// Receives one message, failing rather than hanging if none comes.
    fn recv(socket: &Socket) -> Vec<u8> {
        let mut fds = [crate::sys::PollFd::readable(socket.fd())];
        let ready = crate::sys::poll(&mut fds, Some(Duration::from_secs(60))).unwrap();
        assert_eq!(ready, 1, "no message within a minute");
        let len = frame::read_header(socket).unwrap() as usize;
        let mut message = Vec::new();
        frame::read_payload(socket, len, &mut message).unwrap();
        message
    }

    /// Sends `payload` framed, one byte per write, so that the exchange
    /// sees it arrive in pieces.
    fn drip(socket: &Socket, payload: &[u8]) {
        let len = i32::try_from(payload.len()).unwrap().to_be_bytes();
        for byte in len.iter().chain(payload) {
            socket.write(&[*byte]).unwrap();
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// The client's side, by hand: answers byte by byte, and sends a
    /// message of its own right behind its last handshake message.
    fn dripping_client(socket: Socket, key: &'static [u8]) -> thread::JoinHandle<Vec<u8>> {
        thread::spawn(move || {
            let challenge = recv(&socket);
            let payload = challenge.strip_prefix(digest::CHALLENGE).unwrap();
            drip(&socket, &digest::respond(key, payload, false).unwrap());
            let verdict = recv(&socket);
            if verdict != digest::WELCOME {
                return verdict;
            }
            let ours = digest::challenge(&[7; digest::NONCE_LEN]);
            drip(&socket, &[digest::CHALLENGE, &ours[..]].concat());
            let answer = recv(&socket);
            digest::check_response(key, &ours, &answer, false).unwrap();
            let mut last = Vec::new();
            for message in [digest::WELCOME, b"right behind"] {
                last.extend_from_slice(&i32::try_from(message.len()).unwrap().to_be_bytes());
                last.extend_from_slice(message);
            }
            socket.write(&last).unwrap();
            verdict
        })
    }

    #[test]
    fn a_dripping_client_authenticates_and_what_follows_is_left_unread() {
        let (ours, theirs) = Socket::pair().unwrap();
        let client = dripping_client(theirs, KEY);
        let mut exchange = Exchange::start(false).unwrap();
        run(&mut exchange, &ours, KEY).unwrap();
        assert_eq!(client.join().unwrap(), digest::WELCOME);
        assert_eq!(recv(&ours), b"right behind");
    }

    #[test]
    fn a_wrong_key_gets_failure_and_fails_here() {
        let (ours, theirs) = Socket::pair().unwrap();
        let client = dripping_client(theirs, b"not the key");
        let mut exchange = Exchange::start(false).unwrap();
        let err = run(&mut exchange, &ours, KEY).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AuthenticationFailed, "{err}");
        assert_eq!(client.join().unwrap(), digest::FAILURE);
    }

    #[test]
    fn an_oversized_header_is_refused_before_its_payload() {
        let (ours, theirs) = Socket::pair().unwrap();
        let mut exchange = Exchange::start(false).unwrap();
        assert!(matches!(exchange.advance(&ours, KEY), Advanced::Blocked));
        // Only the header: the refusal cannot wait for a payload.
        theirs.write(&257i32.to_be_bytes()).unwrap();
        let err = run(&mut exchange, &ours, KEY).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    }

    #[test]
    fn a_peer_that_hangs_up_mid_message_is_truncated_and_at_a_boundary_eof() {
        for (sent, kind) in [
            (&[0u8, 0][..], ErrorKind::Truncated),
            (&[][..], ErrorKind::Eof),
        ] {
            let (ours, theirs) = Socket::pair().unwrap();
            let mut exchange = Exchange::start(false).unwrap();
            assert!(matches!(exchange.advance(&ours, KEY), Advanced::Blocked));
            // Reading the challenge first, so that closing is no reset.
            recv(&theirs);
            if !sent.is_empty() {
                theirs.write(sent).unwrap();
            }
            drop(theirs);
            let err = run(&mut exchange, &ours, KEY).unwrap_err();
            assert_eq!(err.kind(), kind, "{err}");
        }
    }
}
