//! `Connection`'s sends and receives through its public API: round trips,
//! sends that never wait and their rest, limits, one-way ends, and what a
//! peer's truncated, reset or stalled stream leaves.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use connection::{one_way_pipe, pipe, Connection, ErrorKind};
use serde::Serialize;

#[test]
fn objects_and_bytes_round_trip() {
    let (mut a, mut b) = pipe().unwrap();
    a.send(&(1i64, String::from("hello"), None::<u8>)).unwrap();
    let got: (i64, String, Option<u8>) = b.recv().unwrap();
    assert_eq!(got, (1, "hello".into(), None));
    b.send_bytes(b"").unwrap();
    assert_eq!(a.recv_bytes().unwrap(), b"");
}

#[test]
fn large_message_round_trips_through_a_thread() {
    let (mut a, mut b) = pipe().unwrap();
    let payload: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    let expected = payload.clone();
    let writer = std::thread::spawn(move || a.send_bytes(&payload).unwrap());
    assert_eq!(b.recv_bytes().unwrap(), expected);
    writer.join().unwrap();
}

#[test]
fn try_send_never_blocks_and_the_rest_follows_in_order() {
    let (mut a, mut b) = pipe().unwrap();
    // Through the socket (shared memory would take it whole).
    a.set_shared_memory(false).unwrap();
    let first: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let rest = a.try_send_bytes(&first).unwrap().expect("cannot all fit");
    assert!(!rest.is_empty() && rest.len() < first.len());
    let mut sender = a.try_clone().unwrap();
    let expected = first.clone();
    let writer = std::thread::spawn(move || {
        sender.send_unsent(rest).unwrap();
        sender.send_bytes(b"second").unwrap();
    });
    assert_eq!(b.recv_bytes().unwrap(), expected);
    assert_eq!(b.recv_bytes().unwrap(), b"second");
    writer.join().unwrap();
    // With room, a message goes out whole.
    assert!(a.try_send_bytes(b"small").unwrap().is_none());
    assert_eq!(b.recv_bytes().unwrap(), b"small");
}

#[test]
fn small_messages_until_the_socket_is_full_then_the_rest_is_intact() {
    let (mut a, mut b) = pipe().unwrap();
    // Distinct contents, so that a lost or doubled byte shows.
    let message = |i: u32| -> Vec<u8> { (0..37u32).map(|j| (i * 7 + j) as u8).collect() };
    let mut sent = 0u32;
    let rest = loop {
        match a.try_send_bytes(&message(sent)).unwrap() {
            None => sent += 1,
            // Whatever fitted of this one (possibly part of its header).
            Some(rest) => break rest,
        }
        assert!(sent < 1_000_000, "the socket never filled");
    };
    assert!(rest.len() <= 37 + 4);
    let mut sender = a.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        sender.send_unsent(rest).unwrap();
        sender.send_bytes(b"last").unwrap();
    });
    for i in 0..=sent {
        assert_eq!(b.recv_bytes().unwrap(), message(i), "message {i}");
    }
    assert_eq!(b.recv_bytes().unwrap(), b"last");
    writer.join().unwrap();
}

#[test]
fn try_send_to_a_closed_peer_is_eof() {
    let (mut a, b) = pipe().unwrap();
    drop(b);
    let err = a.try_send_bytes(b"anyone?").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Eof);
}

#[test]
fn eof_after_peer_closes_and_messages_before_it_survive() {
    let (mut a, mut b) = pipe().unwrap();
    a.send(&7u8).unwrap();
    a.close().unwrap();
    assert_eq!(b.recv::<u8>().unwrap(), 7);
    assert_eq!(b.recv::<u8>().unwrap_err().kind(), ErrorKind::Eof);
    assert!(b.poll(Some(Duration::ZERO)).unwrap(), "EOF counts as ready");
}

#[test]
fn send_to_closed_peer_is_eof() {
    let (mut a, b) = pipe().unwrap();
    drop(b);
    assert_eq!(a.send_bytes(b"x").unwrap_err().kind(), ErrorKind::Eof);
}

#[test]
fn max_message_size_refuses_before_reading_and_keeps_message() {
    let (mut a, mut b) = pipe().unwrap();
    b.set_max_message_size(8);
    a.send_bytes(&[7u8; 9]).unwrap();
    let err = b.recv_bytes().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MessageTooLarge);
    assert!(err.to_string().contains("9 bytes"), "{err}");
    let mut buf = [0u8; 16];
    assert_eq!(
        b.recv_bytes_into(&mut buf, 0).unwrap_err().kind(),
        ErrorKind::MessageTooLarge
    );
    assert!(b.poll(Some(Duration::ZERO)).unwrap());
    b.set_max_message_size(9);
    assert_eq!(b.recv_bytes_into(&mut buf, 0).unwrap(), 9);
    assert_eq!(&buf[..9], &[7u8; 9]);
}

#[test]
fn recv_bytes_into_checks_offset_before_reading() {
    let (mut a, mut b) = pipe().unwrap();
    a.send_bytes(b"abc").unwrap();
    let mut buf = [0u8; 4];
    let err = b.recv_bytes_into(&mut buf, 5).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    // Offset equal to the length is allowed (only empty messages fit).
    let err = b.recv_bytes_into(&mut buf, 4).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BufferTooShort);
    assert_eq!(err.into_message().unwrap(), b"abc");
}

#[test]
fn one_way_pipe_refuses_wrong_direction() {
    let (mut reader, mut writer) = one_way_pipe().unwrap();
    assert!(reader.readable() && !reader.writable());
    assert!(writer.writable() && !writer.readable());
    assert_eq!(reader.send(&1u8).unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(writer.recv_bytes().unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(
        writer.poll(Some(Duration::ZERO)).unwrap_err().kind(),
        ErrorKind::Closed
    );
    writer.send(&5u16).unwrap();
    assert_eq!(reader.recv::<u16>().unwrap(), 5);
}

#[test]
fn truncated_message_breaks_the_connection_for_good() {
    let (a, mut b) = pipe().unwrap();
    let raw = OwnedFd::from(a);
    let mut sock = UnixStream::from(raw);
    sock.write_all(&[0, 0, 0, 10, 1, 2, 3]).unwrap();
    drop(sock);
    let err = b.recv_bytes().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Truncated);
    assert!(err.to_string().contains("after 3"), "{err}");
    assert_eq!(b.recv_bytes().unwrap_err().kind(), ErrorKind::Truncated);
}

#[test]
fn an_error_inside_a_payload_breaks_the_connection_for_good() {
    let (a, mut b) = pipe().unwrap();
    let mut sock = UnixStream::from(OwnedFd::from(a));
    // A header, part of its payload, and then what looks like a
    // header inside the payload.
    sock.write_all(&[0, 0, 0, 10, 1, 2, 0, 0]).unwrap();
    // A receive timeout set through the descriptor: the read inside
    // the payload fails with an I/O error, not end of file.
    rustix::net::sockopt::set_socket_timeout(
        &b,
        rustix::net::sockopt::Timeout::Recv,
        Some(Duration::from_millis(50)),
    )
    .unwrap();
    let err = b.recv_bytes().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    sock.write_all(&[0, 5, 9, 9, 9, 9, 9]).unwrap();
    // The rest of the stream starts inside a message: never read as one.
    let err = b.recv_bytes().unwrap_err();
    assert!(err.to_string().contains("boundaries are lost"), "{err}");
}

/// A peer that closes while data we sent it is unread resets the
/// connection: that is still its end, not an I/O error to retry.
fn peer_gone_with_our_message_unread(tail: &[u8]) -> Connection {
    let (mut a, b) = pipe().unwrap();
    a.send_bytes(b"never read").unwrap();
    let mut sock = UnixStream::from(OwnedFd::from(b));
    sock.write_all(tail).unwrap();
    drop(sock);
    a
}

#[test]
fn reset_between_messages_is_eof() {
    let mut a = peer_gone_with_our_message_unread(&[0, 0, 0, 3, 1, 2, 3]);
    assert_eq!(a.recv_bytes().unwrap(), [1, 2, 3]);
    let err = a.recv_bytes().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Eof, "{err}");
    assert_eq!(a.recv::<u8>().unwrap_err().kind(), ErrorKind::Eof);
}

#[test]
fn reset_mid_message_is_truncated_for_good() {
    for tail in [&[0, 0][..], &[0, 0, 0, 10, 1, 2, 3], &[0xff; 6]] {
        let mut a = peer_gone_with_our_message_unread(tail);
        let err = a.recv_bytes().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Truncated, "{tail:?}: {err}");
        assert_eq!(a.recv_bytes().unwrap_err().kind(), ErrorKind::Truncated);
    }
    let mut a = peer_gone_with_our_message_unread(&[0, 0, 0, 10, 1, 2, 3]);
    let err = a.recv_bytes_into(&mut [0u8; 16], 0).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Truncated, "{err}");
}

#[test]
fn owned_fd_round_trip_keeps_the_stream() {
    let (a, mut b) = pipe().unwrap();
    let fd: OwnedFd = a.into();
    let mut a = Connection::from(fd);
    a.send_bytes(b"still here").unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"still here");
    assert_eq!(a.fileno(), a.as_raw_fd());
    assert_eq!(a.as_fd().as_raw_fd(), a.fileno());
}

#[test]
fn poll_times_out_without_data() {
    let (_a, b) = pipe().unwrap();
    let start = std::time::Instant::now();
    assert!(!b.poll(Some(Duration::from_millis(30))).unwrap());
    assert!(start.elapsed() >= Duration::from_millis(30));
}

#[test]
fn encode_error_sends_nothing() {
    struct Unencodable;
    impl Serialize for Unencodable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> std::result::Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("refused"))
        }
    }
    let (mut a, b) = pipe().unwrap();
    assert_eq!(a.send(&Unencodable).unwrap_err().kind(), ErrorKind::Encode);
    assert!(!b.poll(Some(Duration::ZERO)).unwrap());
}
