//! The blocking driver against itself over a socket pair, and the
//! listener's exchange against a client written by hand.

use std::thread;
use std::time::{Duration, Instant};

use super::*;
use crate::error::ErrorKind;
use crate::frame;
use crate::proto::handshake::digest;
use crate::sys::ReadySet;

const KEY: &[u8] = b"secret key";

/// A non-strict handshake as `role` with [`KEY`] on `socket`, ending
/// `patience` from now.
fn handshake_within(role: Role, socket: &Socket, patience: Duration) -> Result<()> {
    let deadline = Some(Instant::now() + patience);
    authenticate(role, socket, KEY, false, deadline)
}

fn handshake_pair(
    listener_key: &'static [u8],
    client_key: &'static [u8],
    strict: bool,
) -> (Result<()>, Result<()>) {
    let (a, b) = Socket::pair().unwrap();
    let deadline = Some(Instant::now() + Duration::from_secs(10));
    let server =
        thread::spawn(move || authenticate(Role::Listener, &a, listener_key, strict, deadline));
    let client = authenticate(Role::Client, &b, client_key, false, deadline);
    (server.join().unwrap(), client)
}

#[test]
fn handshake_succeeds_with_the_same_key() {
    let (server, client) = handshake_pair(b"k", b"k", true);
    server.unwrap();
    client.unwrap();
}

#[test]
fn wrong_key_fails_on_both_sides() {
    let (server, client) = handshake_pair(b"k", b"not k", false);
    assert_eq!(server.unwrap_err().kind(), ErrorKind::AuthenticationFailed);
    assert_eq!(client.unwrap_err().kind(), ErrorKind::AuthenticationFailed);
}

#[test]
fn silent_peer_times_out() {
    let (a, _b) = Socket::pair().unwrap();
    let err = handshake_within(Role::Listener, &a, Duration::from_millis(50)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut);
}

#[test]
fn oversized_or_negative_length_is_refused_unread() {
    for header in [257i32, -1, i32::MAX, i32::MIN] {
        let (a, b) = Socket::pair().unwrap();
        b.write(&header.to_be_bytes()).unwrap();
        let err = handshake_within(Role::Client, &a, Duration::from_secs(10)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Protocol, "{header}: {err}");
    }
}

#[test]
fn peer_closing_mid_message_is_truncated() {
    let (a, b) = Socket::pair().unwrap();
    b.write(&[0, 0, 0, 50, b'#']).unwrap();
    drop(b);
    let err = handshake_within(Role::Client, &a, Duration::from_secs(10)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Truncated);
}

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
    let mut reader = crate::read_ahead::Reader::direct(socket);
    frame::read_payload(&mut reader, 0, len, &mut message).unwrap();
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
    let mut exchange = Exchange::start(Role::Listener, false, Wait::No).unwrap();
    run(&mut exchange, &ours, KEY).unwrap();
    assert_eq!(client.join().unwrap(), digest::WELCOME);
    assert_eq!(recv(&ours), b"right behind");
}

#[test]
fn a_wrong_key_gets_failure_and_fails_here() {
    let (ours, theirs) = Socket::pair().unwrap();
    let client = dripping_client(theirs, b"not the key");
    let mut exchange = Exchange::start(Role::Listener, false, Wait::No).unwrap();
    let err = run(&mut exchange, &ours, KEY).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthenticationFailed, "{err}");
    assert_eq!(client.join().unwrap(), digest::FAILURE);
}

#[test]
fn an_oversized_header_is_refused_before_its_payload() {
    let (ours, theirs) = Socket::pair().unwrap();
    let mut exchange = Exchange::start(Role::Listener, false, Wait::No).unwrap();
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
        let mut exchange = Exchange::start(Role::Listener, false, Wait::No).unwrap();
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

/// The peer leaves the listener's challenge unread and closes: a reset,
/// which is its end of file here as in every receive, and as on the async
/// side (`tokio/tests.rs`), not an I/O error.
#[test]
fn a_peer_that_resets_mid_handshake_is_eof() {
    let (ours, theirs) = Socket::pair().unwrap();
    let mut exchange = Exchange::start(Role::Listener, false, Wait::No).unwrap();
    assert!(matches!(exchange.advance(&ours, KEY), Advanced::Blocked));
    drop(theirs);
    let err = run(&mut exchange, &ours, KEY).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Eof, "{err}");
}
