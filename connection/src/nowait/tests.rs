use std::time::Duration;

use crate::connection::Direction;
use crate::error::ErrorKind;
use crate::sys::Socket;
use crate::Connection;

/// A connection and the raw socket of its peer, to forge what arrives.
fn forged() -> (Connection, Socket) {
    let (ours, theirs) = Socket::pair().unwrap();
    (Connection::new(ours, Direction::Both), theirs)
}

#[test]
fn a_message_arriving_in_pieces_is_returned_once_whole() {
    let (mut conn, peer) = forged();
    let mut framed = 5i32.to_be_bytes().to_vec();
    framed.extend_from_slice(b"hello");
    for (at, byte) in framed.iter().enumerate() {
        assert_eq!(conn.try_recv_bytes().unwrap(), None, "after {at} bytes");
        peer.write(&[*byte]).unwrap();
    }
    assert_eq!(
        conn.try_recv_bytes().unwrap().as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(conn.try_recv_bytes().unwrap(), None);
}

#[test]
fn a_long_header_and_a_large_payload_arrive_whole() {
    let (mut conn, mut peer) = crate::pipe().unwrap();
    peer.set_shared_memory(false).unwrap();
    let big = vec![9u8; 9 << 20];
    let sender = std::thread::spawn(move || peer.send_bytes(&big).map(|()| peer));
    let received = loop {
        if let Some(message) = conn.try_recv_bytes().unwrap() {
            break message;
        }
        conn.poll(Some(Duration::from_secs(10))).unwrap();
    };
    assert_eq!(received.len(), 9 << 20);
    assert!(received.iter().all(|&b| b == 9));
    drop(sender.join().unwrap().unwrap());
    assert_eq!(conn.try_recv_bytes().unwrap_err().kind(), ErrorKind::Eof);
}

#[test]
fn a_shared_memory_message_is_received_without_waiting() {
    let (mut a, mut b) = crate::pipe().unwrap();
    a.set_shared_memory_threshold(Some(1024));
    let big = vec![3u8; 64 * 1024];
    a.send_bytes(&big).unwrap();
    assert_eq!(b.try_recv_bytes().unwrap(), Some(big));
}

#[test]
fn a_claimed_length_costs_only_what_arrived() {
    let (mut conn, peer) = forged();
    conn.set_max_message_size(1 << 30);
    peer.write(&(1i32 << 30).to_be_bytes()).unwrap();
    peer.write(b"abc").unwrap();
    assert_eq!(conn.try_recv_bytes().unwrap(), None);
    let held = conn
        .arriving
        .as_ref()
        .unwrap()
        .payload
        .as_ref()
        .unwrap()
        .1
        .capacity();
    assert!(held <= 64 * 1024 + 3, "{held}");
}

#[test]
fn a_peer_leaving_mid_message_is_truncation_and_between_messages_eof() {
    let (mut conn, peer) = forged();
    peer.write(&10i32.to_be_bytes()).unwrap();
    peer.write(b"abc").unwrap();
    assert_eq!(conn.try_recv_bytes().unwrap(), None);
    drop(peer);
    assert_eq!(
        conn.try_recv_bytes().unwrap_err().kind(),
        ErrorKind::Truncated
    );
    let (mut conn, peer) = forged();
    peer.write(&[0, 0]).unwrap();
    assert_eq!(conn.try_recv_bytes().unwrap(), None);
    drop(peer);
    assert_eq!(
        conn.try_recv_bytes().unwrap_err().kind(),
        ErrorKind::Truncated
    );
}

#[test]
fn too_large_and_malformed_headers_end_the_stream() {
    let (mut conn, peer) = forged();
    conn.set_max_message_size(100);
    peer.write(&101i32.to_be_bytes()).unwrap();
    assert_eq!(
        conn.try_recv_bytes().unwrap_err().kind(),
        ErrorKind::MessageTooLarge
    );
    assert!(conn.try_recv_bytes().is_err());
    let (mut conn, peer) = forged();
    peer.write(&(-7i32).to_be_bytes()).unwrap();
    assert_eq!(
        conn.try_recv_bytes().unwrap_err().kind(),
        ErrorKind::Protocol
    );
    assert!(conn.try_recv_bytes().is_err());
}

#[test]
fn a_blocking_receive_refuses_to_start_mid_message() {
    let (mut conn, peer) = forged();
    peer.write(&4i32.to_be_bytes()).unwrap();
    assert_eq!(conn.try_recv_bytes().unwrap(), None);
    assert_eq!(
        conn.recv_bytes().unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    peer.write(b"rest").unwrap();
    assert_eq!(
        conn.try_recv_bytes().unwrap().as_deref(),
        Some(&b"rest"[..])
    );
}

#[test]
fn a_message_a_blocking_receive_left_pending_comes_first() {
    for through_memfd in [false, true] {
        let (mut a, mut b) = crate::pipe().unwrap();
        a.set_shared_memory_threshold(through_memfd.then_some(1024));
        let first = vec![5u8; 64 * 1024];
        a.send_bytes(&first).unwrap();
        a.send_bytes(b"next").unwrap();
        let err = b.recv_bytes_max(4).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MessageTooLarge);
        assert_eq!(b.try_recv_bytes().unwrap(), Some(first), "{through_memfd}");
        assert_eq!(
            b.try_recv_bytes().unwrap().as_deref(),
            Some(&b"next"[..]),
            "{through_memfd}"
        );
    }
}
