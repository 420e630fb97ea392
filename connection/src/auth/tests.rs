//! The blocking driver against itself over a socket pair.

use std::thread;
use std::time::{Duration, Instant};

use super::*;
use crate::error::ErrorKind;

const KEY: &[u8] = b"secret key";

/// A non-strict client handshake with [`KEY`] on `socket`, ending `within` from now.
fn client_within(socket: &Socket, within: Duration) -> Result<()> {
    as_client(socket, KEY, false, Some(Instant::now() + within))
}

/// The same as a listener.
fn listener_within(socket: &Socket, within: Duration) -> Result<()> {
    as_listener(socket, KEY, false, Some(Instant::now() + within))
}

fn handshake_pair(
    listener_key: &'static [u8],
    client_key: &'static [u8],
    strict: bool,
) -> (Result<()>, Result<()>) {
    let (a, b) = Socket::pair().unwrap();
    let deadline = Some(Instant::now() + Duration::from_secs(10));
    let server = thread::spawn(move || as_listener(&a, listener_key, strict, deadline));
    let client = as_client(&b, client_key, false, deadline);
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
    let err = listener_within(&a, Duration::from_millis(50)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut);
}

#[test]
fn oversized_or_negative_length_is_refused_unread() {
    for header in [257i32, -1, i32::MAX, i32::MIN] {
        let (a, b) = Socket::pair().unwrap();
        b.write(&header.to_be_bytes()).unwrap();
        let err = client_within(&a, Duration::from_secs(10)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Protocol, "{header}: {err}");
    }
}

#[test]
fn peer_closing_mid_message_is_truncated() {
    let (a, b) = Socket::pair().unwrap();
    b.write(&[0, 0, 0, 50, b'#']).unwrap();
    drop(b);
    let err = client_within(&a, Duration::from_secs(10)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Truncated);
}
