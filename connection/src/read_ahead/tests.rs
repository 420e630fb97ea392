use std::time::Duration;

use super::CAPACITY;
use crate::connection::Direction;
use crate::sys::Socket;
use crate::{Connection, ErrorKind};

/// A connection reading ahead, and the raw socket of its peer, to forge
/// what arrives.
fn forged() -> (Connection, Socket) {
    let (ours, theirs) = Socket::pair().unwrap();
    let mut conn = Connection::new(ours, Direction::Both);
    conn.set_read_ahead(true);
    (conn, theirs)
}

fn framed(payloads: &[&[u8]]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for payload in payloads {
        bytes.extend_from_slice(&(payload.len() as i32).to_be_bytes());
        bytes.extend_from_slice(payload);
    }
    bytes
}

/// Whether the kernel holds anything for `conn`'s descriptor.
fn kernel_has_data(conn: &Connection) -> bool {
    !crate::wait(&[conn], Some(Duration::ZERO))
        .unwrap()
        .is_empty()
}

#[test]
fn two_messages_in_one_segment_are_read_at_once_and_both_received() {
    let (mut conn, peer) = forged();
    peer.write(&framed(&[b"first", b"second"])).unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"first");
    // The second was read with the first: the kernel has nothing left.
    assert_eq!(conn.read_ahead_len(), 4 + 6);
    assert!(!kernel_has_data(&conn));
    assert!(conn.poll(Some(Duration::ZERO)).unwrap());
    assert_eq!(conn.recv_bytes().unwrap(), b"second");
    assert_eq!(conn.read_ahead_len(), 0);
    assert!(!conn.poll(Some(Duration::ZERO)).unwrap());
}

#[test]
fn every_kind_of_receive_takes_what_was_read_ahead() {
    let (mut conn, peer) = forged();
    let value = crate::encode(&(7u32, "seven")).unwrap();
    let words = [1u32, 2, 3];
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    peer.write(&framed(&[
        b"lead", &value, b"into", &bytes, b"last", b"nowait",
    ]))
    .unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"lead");
    assert!(!kernel_has_data(&conn));
    assert_eq!(conn.recv::<(u32, String)>().unwrap(), (7, "seven".into()));
    let mut room = [0u8; 8];
    assert_eq!(conn.recv_bytes_into(&mut room, 2).unwrap(), 4);
    assert_eq!(&room[2..6], b"into");
    assert_eq!(conn.recv_vec::<u32>().unwrap(), words);
    // Over the caller's limit: it stays, and nothing is lost.
    let err = conn.recv_bytes_max(2).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MessageTooLarge);
    assert_eq!(conn.recv_bytes().unwrap(), b"last");
    assert_eq!(conn.try_recv_bytes().unwrap().unwrap(), b"nowait");
    assert_eq!(conn.try_recv_bytes().unwrap(), None);
}

#[test]
fn try_recv_bytes_finds_a_message_held_in_the_buffer_with_the_kernel_empty() {
    let (mut conn, peer) = forged();
    peer.write(&framed(&[b"a", b"b", b"c"])).unwrap();
    assert_eq!(conn.try_recv_bytes().unwrap().unwrap(), b"a");
    assert!(!kernel_has_data(&conn));
    assert_eq!(conn.try_recv_bytes().unwrap().unwrap(), b"b");
    assert_eq!(conn.try_recv_bytes().unwrap().unwrap(), b"c");
    assert_eq!(conn.try_recv_bytes().unwrap(), None);
    drop(peer);
    assert_eq!(conn.try_recv_bytes().unwrap_err().kind(), ErrorKind::Eof);
}

#[test]
fn messages_cut_anywhere_around_the_buffer_arrive_whole() {
    // Sizes around the buffer's, so that headers and payloads are cut at
    // its end in every way; received every way there is.
    let sizes = [
        0,
        CAPACITY - 8,
        3,
        CAPACITY - 4,
        CAPACITY,
        1,
        CAPACITY + 5,
        2,
        300_000,
        CAPACITY - 5,
        4,
        70_000,
        9,
    ];
    let expected =
        |i: usize, size: usize| -> Vec<u8> { (0..size).map(|at| (at * 7 + i) as u8).collect() };
    let (mut conn, peer) = forged();
    let sender = std::thread::spawn(move || {
        let payloads: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| expected(i, size))
            .collect();
        let slices: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let all = framed(&slices);
        // One stream, cut wherever the kernel and these writes like.
        let mut sent = 0;
        while sent < all.len() {
            let end = all.len().min(sent + 5_000);
            sent += peer.write(&all[sent..end]).unwrap();
        }
        peer
    });
    for (i, &size) in sizes.iter().enumerate() {
        let got = match i % 4 {
            0 => conn.recv_bytes().unwrap(),
            1 => {
                let mut room = vec![0u8; size];
                assert_eq!(conn.recv_bytes_into(&mut room, 0).unwrap(), size);
                room
            }
            2 => conn.recv_shared().unwrap().to_vec(),
            _ => loop {
                if let Some(message) = conn.try_recv_bytes().unwrap() {
                    break message;
                }
                assert!(conn.poll(Some(Duration::from_secs(60))).unwrap());
            },
        };
        assert!(got == expected(i, size), "message {i} of {size} bytes");
    }
    drop(sender.join().unwrap());
    assert_eq!(conn.recv_bytes().unwrap_err().kind(), ErrorKind::Eof);
}

#[test]
fn a_value_decoded_as_it_arrives_is_whole_after_a_buffered_start() {
    let (mut a, mut b) = crate::pipe().unwrap();
    a.set_shared_memory(false).unwrap();
    b.set_read_ahead(true);
    let long: Vec<u64> = (0..100_000).collect();
    let sender = std::thread::spawn(move || {
        a.send(&"short").unwrap();
        a.send(&long).unwrap();
        a.send(&"after").unwrap();
    });
    assert_eq!(b.recv::<String>().unwrap(), "short");
    let got: Vec<u64> = b.recv().unwrap();
    assert!(got.iter().copied().eq(0..100_000));
    assert_eq!(b.recv::<String>().unwrap(), "after");
    sender.join().unwrap();
}

#[test]
fn a_shared_memory_message_behind_a_small_one_keeps_its_memfd() {
    let (mut a, mut b) = crate::pipe().unwrap();
    b.set_read_ahead(true);
    a.set_shared_memory_threshold(Some(1024));
    let big = vec![6u8; 64 * 1024];
    for _ in 0..3 {
        a.send_bytes(b"small").unwrap();
        a.send_bytes(&big).unwrap();
        a.send_bytes(b"after").unwrap();
    }
    for _ in 0..3 {
        assert_eq!(b.recv_bytes().unwrap(), b"small");
        assert_eq!(b.recv_bytes().unwrap(), big);
        assert_eq!(b.try_recv_bytes().unwrap().unwrap(), b"after");
    }
    assert!(!b.poll(Some(Duration::ZERO)).unwrap());
}

#[test]
fn descriptors_sent_with_an_ordinary_message_are_closed_not_kept_for_a_later_one() {
    let (mut conn, peer) = forged();
    conn.set_shared_memory(true).unwrap();
    let (stray, _other) = Socket::pair().unwrap();
    let carrier = framed(&[b"carrier"]);
    let slices = [std::io::IoSlice::new(&carrier)];
    peer.send_with_fd(&slices, stray.fd(), crate::sys::Wait::ForRoom)
        .unwrap();
    // A shared-memory header with no descriptor of its own: it must not
    // get the one that came before.
    peer.write(&crate::proto::frame::shared_header(16)).unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"carrier");
    assert!(conn.ahead.fds.is_empty());
    let err = conn.recv_bytes().unwrap_err();
    assert!(err.to_string().contains("no descriptor came"), "{err}");
}

#[test]
fn off_it_reads_nothing_ahead_and_keeps_what_it_read() {
    let (mut conn, peer) = forged();
    peer.write(&framed(&[b"x", b"y", b"z"])).unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"x");
    conn.set_read_ahead(false);
    assert_eq!(conn.recv_bytes().unwrap(), b"y");
    assert_eq!(conn.recv_bytes().unwrap(), b"z");
    peer.write(&framed(&[b"1", b"2"])).unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"1");
    assert_eq!(conn.read_ahead_len(), 0);
    assert!(kernel_has_data(&conn));
    assert_eq!(conn.ahead.buf.len(), 0, "its memory went");
}

#[test]
fn the_buffer_is_all_the_memory_whatever_arrives() {
    let (mut conn, peer) = forged();
    let writer = std::thread::spawn(move || {
        let many = framed(&[&[5u8; 100][..]; 2000]);
        let mut sent = 0;
        while sent < many.len() {
            sent += peer.write(&many[sent..]).unwrap();
        }
    });
    for _ in 0..2000 {
        assert_eq!(conn.recv_bytes().unwrap().len(), 100);
        assert!(conn.ahead.buf.len() <= CAPACITY);
        assert!(conn.read_ahead_len() <= CAPACITY);
    }
    writer.join().unwrap();
}

#[cfg(feature = "tokio")]
#[test]
fn the_tokio_twin_takes_over_what_was_read_ahead() {
    let (mut conn, peer) = forged();
    peer.write(&framed(&[b"blocking", b"async", b"async too"]))
        .unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"blocking");
    assert!(!kernel_has_data(&conn));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let conn = runtime.block_on(async move {
        let mut conn = crate::tokio::AsyncConnection::from_blocking(conn).unwrap();
        let patience = Duration::from_secs(60);
        let got = tokio::time::timeout(patience, conn.recv_bytes()).await;
        assert_eq!(got.expect("held in the buffer").unwrap(), b"async");
        conn.into_blocking().unwrap()
    });
    assert!(!conn.read_ahead(), "the tokio twin reads no further ahead");
    let mut conn = conn;
    assert_eq!(conn.recv_bytes().unwrap(), b"async too");
}

/// Shared memory turned on between two receives: without read-ahead the
/// memfd of a message that arrived meanwhile waits in the kernel for the
/// header read that now asks for it; the fill that read that header
/// ahead must not have dropped it.
#[test]
fn shared_memory_turned_on_after_a_fill_still_gets_the_memfd() {
    for read_ahead in [false, true] {
        let (ours, theirs) = Socket::pair().unwrap();
        let mut conn = Connection::new(ours, Direction::Both);
        conn.set_read_ahead(read_ahead);
        let mut peer = Connection::new(theirs, Direction::Both).with_shared_memory();
        peer.set_shared_memory_threshold(Some(1024));
        let big = vec![9u8; 64 * 1024];
        peer.send_bytes(b"hello").unwrap();
        peer.send_bytes(&big).unwrap();
        assert_eq!(conn.recv_bytes().unwrap(), b"hello");
        conn.set_shared_memory(true).unwrap();
        let got = conn.recv_bytes();
        assert!(
            matches!(&got, Ok(bytes) if *bytes == big),
            "read-ahead {read_ahead}: {:?}",
            got.map(|b| b.len())
        );
    }
}
