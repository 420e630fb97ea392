//! The async connection against a raw peer that writes frames byte by
//! byte, and its listener and client against each other and the blocking
//! ones.

use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::time::Duration;

use tokio::time::timeout;

use super::{AsyncClient, AsyncConnection, AsyncListener};
use crate::connection::{Connection, Direction};
use crate::error::ErrorKind;
use crate::proto::frame::MIN_CHUNK;
use crate::sys::Socket;
use crate::{Address, Client, Listener};

/// Long enough for anything that is going to happen to happen; the tests
/// never wait this long unless they fail.
const PATIENCE: Duration = Duration::from_secs(30);
/// Long enough to be sure that a receive has started and is waiting.
const A_MOMENT: Duration = Duration::from_millis(20);

/// An async connection and a raw socket at the other end.
fn raw_pair() -> (Socket, AsyncConnection) {
    let (raw, ours) = Socket::pair().unwrap();
    let conn = AsyncConnection::from_blocking(Connection::new(ours, Direction::Both)).unwrap();
    (raw, conn)
}

/// One message from `a` to `b`, after which `a` knows that its socket has
/// room: the first poll of its next send writes at once, without waiting
/// for the runtime to report the socket writable.
async fn warm_up(a: &mut AsyncConnection, b: &mut AsyncConnection) {
    a.send_bytes(b"warm up").await.unwrap();
    assert_eq!(b.recv_bytes().await.unwrap(), b"warm up");
}

fn frame(payload: &[u8]) -> Vec<u8> {
    [&(payload.len() as i32).to_be_bytes()[..], payload].concat()
}

#[tokio::test]
async fn a_receive_dropped_mid_message_loses_nothing() {
    let payload: Vec<u8> = (0..100u8).collect();
    let framed = frame(&payload);
    // Cut inside the header, right after it, and inside the payload.
    for cut in [2, 4, 50] {
        let (raw, mut conn) = raw_pair();
        raw.write(&framed[..cut]).unwrap();
        let dropped = timeout(A_MOMENT, conn.recv_bytes()).await;
        assert!(dropped.is_err(), "cut {cut}: a message was returned early");
        // A whole header alone is no partial message: a blocking
        // connection keeps that much too.
        assert_eq!(conn.is_receiving(), cut != 4, "cut {cut}");
        raw.write(&framed[cut..]).unwrap();
        raw.write(&frame(b"next")).unwrap();
        let whole = timeout(PATIENCE, conn.recv_bytes()).await.unwrap().unwrap();
        assert_eq!(whole, payload, "cut {cut}");
        assert!(!conn.is_receiving());
        assert_eq!(conn.recv_bytes().await.unwrap(), b"next", "cut {cut}");
    }
}

#[tokio::test]
async fn a_long_header_split_across_cancelled_receives_is_read_whole() {
    let (raw, mut conn) = raw_pair();
    let mut framed = vec![0xff, 0xff, 0xff, 0xff];
    framed.extend_from_slice(&3u64.to_be_bytes());
    framed.extend_from_slice(b"abc");
    for byte in &framed[..framed.len() - 1] {
        raw.write(std::slice::from_ref(byte)).unwrap();
        assert!(timeout(A_MOMENT, conn.recv_bytes()).await.is_err());
    }
    raw.write(&framed[framed.len() - 1..]).unwrap();
    assert_eq!(conn.recv_bytes().await.unwrap(), b"abc");
}

#[tokio::test]
async fn a_value_receive_cancelled_by_select_resumes() {
    let (mut a, mut b) = AsyncConnection::pair().unwrap();
    let value = (7u64, "seven".to_string(), vec![7i32; 300]);
    let encoded = crate::encode(&value).unwrap();
    let framed = frame(&encoded);
    // Half the frame arrives, then the select gives up on the receive.
    let raw_end: OwnedFd = a.into_blocking().unwrap().into();
    let raw = Socket::from_owned(raw_end);
    raw.write(&framed[..framed.len() / 2]).unwrap();
    tokio::select! {
        got = b.recv::<(u64, String, Vec<i32>)>() => panic!("returned early: {got:?}"),
        () = tokio::time::sleep(A_MOMENT) => {}
    }
    raw.write(&framed[framed.len() / 2..]).unwrap();
    assert_eq!(b.recv::<(u64, String, Vec<i32>)>().await.unwrap(), value);
    a = AsyncConnection::from_blocking(Connection::new(raw, Direction::Both)).unwrap();
    a.send(&1u8).await.unwrap();
    assert_eq!(b.recv::<u8>().await.unwrap(), 1);
}

#[tokio::test]
async fn recv_bytes_into_dropped_half_way_keeps_the_bytes_for_the_next_receive() {
    let (raw, mut conn) = raw_pair();
    let payload: Vec<u8> = (0..64u8).collect();
    let framed = frame(&payload);
    raw.write(&framed[..20]).unwrap();
    let mut first = [0u8; 64];
    assert!(timeout(A_MOMENT, conn.recv_bytes_into(&mut first, 0))
        .await
        .is_err());
    assert!(conn.is_receiving());
    raw.write(&framed[20..]).unwrap();
    // Another buffer, another offset: the message still arrives whole.
    let mut second = [9u8; 70];
    let n = conn.recv_bytes_into(&mut second, 6).await.unwrap();
    assert_eq!(n, 64);
    assert_eq!(&second[6..], &payload[..]);
    assert_eq!(second[..6], [9; 6]);
}

/// The docs promise that the receive after a dropped one may be of any
/// kind: what arrived moves between the connection and a caller's buffer,
/// either way, as often as receives are dropped.
#[tokio::test]
async fn a_receive_of_another_kind_finishes_what_a_dropped_one_began() {
    let (raw, mut conn) = raw_pair();
    let payload: Vec<u8> = (0..90u8).collect();
    let mut into = [0u8; 90];
    for into_last in [false, true] {
        let mut pieces = frame(&payload).into_iter();
        for (turn, size) in [30, 30, 34].into_iter().enumerate() {
            raw.write(&pieces.by_ref().take(size).collect::<Vec<u8>>())
                .unwrap();
            if turn == 2 {
                break;
            }
            let dropped = match (turn + usize::from(into_last)) % 2 {
                0 => timeout(A_MOMENT, conn.recv_bytes()).await.map(drop),
                _ => timeout(A_MOMENT, conn.recv_bytes_into(&mut into, 0))
                    .await
                    .map(drop),
            };
            assert!(dropped.is_err(), "turn {turn}: returned early");
        }
        let whole = match into_last {
            false => conn.recv_bytes().await.unwrap(),
            true => {
                let n = conn.recv_bytes_into(&mut into, 0).await.unwrap();
                into[..n].to_vec()
            }
        };
        assert_eq!(whole, payload, "last into the caller's buffer: {into_last}");
        assert!(!conn.is_receiving());
    }
}

#[tokio::test]
async fn a_send_dropped_half_way_is_finished_before_the_next_message() {
    let (mut a, mut b) = AsyncConnection::pair().unwrap();
    let big: Vec<u8> = (0..6_000_000u32).map(|i| (i % 251) as u8).collect();
    warm_up(&mut a, &mut b).await;
    // Nobody reads, so the send fills the socket and is dropped.
    assert!(timeout(A_MOMENT, a.send_bytes(&big)).await.is_err());
    let (sent, received) = tokio::join!(
        async {
            a.send_bytes(b"after").await?;
            a.send(&5u32).await
        },
        async {
            let first = b.recv_bytes().await?;
            let second = b.recv_bytes().await?;
            let third = b.recv::<u32>().await?;
            Ok::<_, crate::Error>((first, second, third))
        }
    );
    sent.unwrap();
    let (first, second, third) = received.unwrap();
    assert!(first == big, "the large message arrived cut or garbled");
    assert_eq!((second.as_slice(), third), (&b"after"[..], 5));
}

#[tokio::test]
async fn messages_larger_than_a_chunk_round_trip() {
    let (mut a, mut b) = AsyncConnection::pair().unwrap();
    let big: Vec<u8> = (0..3 * MIN_CHUNK + 17).map(|i| (i % 253) as u8).collect();
    let (sent, received) = tokio::join!(a.send_bytes(&big), b.recv_bytes());
    sent.unwrap();
    assert!(received.unwrap() == big);
    let mut into = vec![0u8; big.len()];
    let (sent, received) = tokio::join!(a.send_bytes(&big), b.recv_bytes_into(&mut into, 0));
    sent.unwrap();
    assert_eq!(received.unwrap(), big.len());
    assert!(into == big);
}

#[tokio::test]
async fn too_large_is_refused_before_reading_and_left_unread() {
    let (mut a, mut b) = AsyncConnection::pair().unwrap();
    b.set_max_message_size(8);
    a.send_bytes(&[7u8; 9]).await.unwrap();
    let err = b.recv_bytes().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MessageTooLarge);
    assert!(err.to_string().contains("9 bytes"), "{err}");
    assert_eq!(
        b.recv_bytes_into(&mut [0u8; 16], 0)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::MessageTooLarge
    );
    assert_eq!(
        b.recv::<Vec<u8>>().await.unwrap_err().kind(),
        ErrorKind::MessageTooLarge
    );
    b.set_max_message_size(9);
    assert_eq!(b.recv_bytes().await.unwrap(), [7u8; 9]);
}

#[tokio::test]
async fn a_lying_header_costs_a_chunk_of_memory_at_most() {
    let (raw, mut conn) = raw_pair();
    raw.write(&(1i32 << 30).to_be_bytes()).unwrap();
    raw.write(b"only eleven").unwrap();
    assert!(timeout(A_MOMENT, conn.recv_bytes()).await.is_err());
    let held = conn.incoming.arriving.payload_capacity();
    assert!(held <= MIN_CHUNK + 11, "{held} bytes set aside");
    drop(raw);
    let err = conn.recv_bytes().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Truncated);
    assert!(err.to_string().contains("after 11"), "{err}");
}

#[tokio::test]
async fn eof_truncated_and_protocol_errors_are_the_blocking_ones() {
    let (mut a, mut b) = AsyncConnection::pair().unwrap();
    a.send(&3u8).await.unwrap();
    drop(a);
    assert_eq!(b.recv::<u8>().await.unwrap(), 3);
    assert_eq!(b.recv::<u8>().await.unwrap_err().kind(), ErrorKind::Eof);
    assert_eq!(b.recv_bytes().await.unwrap_err().kind(), ErrorKind::Eof);

    let (raw, mut conn) = raw_pair();
    raw.write(&[0, 0, 0, 10, 1, 2, 3]).unwrap();
    drop(raw);
    let err = conn.recv_bytes().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Truncated);
    // The boundaries are lost for good.
    assert_eq!(
        conn.recv_bytes().await.unwrap_err().kind(),
        ErrorKind::Truncated
    );

    let (raw, mut conn) = raw_pair();
    raw.write(&(-2i32).to_be_bytes()).unwrap();
    assert_eq!(
        conn.recv_bytes().await.unwrap_err().kind(),
        ErrorKind::Protocol
    );
    assert_eq!(
        conn.recv_bytes().await.unwrap_err().kind(),
        ErrorKind::Protocol
    );
}

#[tokio::test]
async fn a_reset_between_messages_is_eof_and_inside_one_truncated() {
    for (tail, kind) in [
        (frame(b"xyz"), ErrorKind::Eof),
        (vec![0, 0, 0, 10, 1], ErrorKind::Truncated),
    ] {
        let (raw, mut conn) = raw_pair();
        conn.send_bytes(b"never read").await.unwrap();
        raw.write(&tail).unwrap();
        drop(raw);
        if kind == ErrorKind::Eof {
            assert_eq!(conn.recv_bytes().await.unwrap(), b"xyz");
        }
        assert_eq!(conn.recv_bytes().await.unwrap_err().kind(), kind);
    }
}

#[tokio::test]
async fn decode_errors_leave_the_connection_usable() {
    let (mut a, mut b) = AsyncConnection::pair().unwrap();
    a.send("not a number").await.unwrap();
    a.send_bytes(&[0xff; 3]).await.unwrap();
    a.send(&42u64).await.unwrap();
    assert_eq!(b.recv::<u64>().await.unwrap_err().kind(), ErrorKind::Decode);
    assert_eq!(
        b.recv::<String>().await.unwrap_err().kind(),
        ErrorKind::Decode
    );
    assert_eq!(b.recv::<u64>().await.unwrap(), 42);
}

#[tokio::test]
async fn buffer_too_short_carries_the_message_and_bad_offsets_read_nothing() {
    let (mut a, mut b) = AsyncConnection::pair().unwrap();
    a.send_bytes(b"abc").await.unwrap();
    let mut buf = [0u8; 4];
    let err = b.recv_bytes_into(&mut buf, 5).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = b.recv_bytes_into(&mut buf, 2).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BufferTooShort);
    assert_eq!(err.into_message().unwrap(), b"abc");
}

#[tokio::test]
async fn one_way_ends_refuse_the_wrong_direction() {
    let (reader, writer) = crate::one_way_pipe().unwrap();
    let mut reader = AsyncConnection::from_blocking(reader).unwrap();
    let mut writer = AsyncConnection::from_blocking(writer).unwrap();
    assert_eq!(
        reader.send(&1u8).await.unwrap_err().kind(),
        ErrorKind::Closed
    );
    assert_eq!(
        writer.recv_bytes().await.unwrap_err().kind(),
        ErrorKind::Closed
    );
    writer.send(&5u16).await.unwrap();
    assert_eq!(reader.recv::<u16>().await.unwrap(), 5);
    assert_eq!(reader.direction(), Direction::ReadOnly);
}

#[tokio::test]
async fn conversion_both_ways_keeps_the_stream_and_its_state() {
    let (blocking, mut peer) = crate::pipe().unwrap();
    // A clone made before: it must stay a working blocking end.
    let mut clone = blocking.try_clone().unwrap();
    let mut conn = AsyncConnection::from_blocking(blocking).unwrap();
    conn.set_max_message_size(4);
    peer.send_bytes(b"too long").unwrap();
    let err = conn.recv_bytes().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MessageTooLarge);
    // The limit and the pending message go to the blocking side...
    let mut back = conn.into_blocking().unwrap();
    assert_eq!(back.max_message_size(), 4);
    let err = back.recv_bytes().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MessageTooLarge);
    // ...and back to the async side.
    let mut conn = AsyncConnection::from_blocking(back).unwrap();
    conn.set_max_message_size(100);
    assert_eq!(conn.recv_bytes().await.unwrap(), b"too long");
    let mut back = conn.into_blocking().unwrap();
    back.send_bytes(b"blocking again").unwrap();
    assert_eq!(peer.recv_bytes().unwrap(), b"blocking again");
    peer.send_bytes(b"to the clone").unwrap();
    assert_eq!(clone.recv_bytes().unwrap(), b"to the clone");
}

#[tokio::test]
async fn into_blocking_refuses_a_partly_received_message() {
    let (raw, mut conn) = raw_pair();
    raw.write(&frame(b"half of this")[..7]).unwrap();
    assert!(timeout(A_MOMENT, conn.recv_bytes()).await.is_err());
    let err = conn.into_blocking().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn into_blocking_finishes_a_dropped_send_first() {
    let (mine, peer) = crate::pipe().unwrap();
    let mut conn = AsyncConnection::from_blocking(mine).unwrap();
    let big: Vec<u8> = (0..4_000_000u32).map(|i| (i % 249) as u8).collect();
    conn.send_bytes(b"warm up").await.unwrap();
    let mut peer = peer;
    assert_eq!(peer.recv_bytes().unwrap(), b"warm up");
    assert!(timeout(A_MOMENT, conn.send_bytes(&big)).await.is_err());
    let reader =
        std::thread::spawn(move || (peer.recv_bytes().unwrap(), peer.recv_bytes().unwrap()));
    let mut back = conn.into_blocking().unwrap();
    back.send_bytes(b"after").unwrap();
    let (first, second) = reader.join().unwrap();
    assert!(first == big, "the large message arrived cut or garbled");
    assert_eq!(second, b"after");
}

/// Authenticates as a client on a raw TCP stream, then says `hello`.
fn blocking_client(
    address: &Address,
    key: &'static [u8],
    hello: &'static [u8],
) -> std::thread::JoinHandle<crate::Result<()>> {
    let address = address.clone();
    std::thread::spawn(move || Client::connect_with_authkey(&address, key)?.send_bytes(hello))
}

/// A TCP listener with the key `k` and this handshake timeout, and its
/// address.
async fn keyed_listener(handshake_timeout: Duration) -> (AsyncListener, std::net::SocketAddr) {
    let listener = Listener::builder()
        .authkey(b"k")
        .handshake_timeout(Some(handshake_timeout))
        .bind_async(&Address::localhost(0))
        .await
        .unwrap();
    let Address::Tcp(addr) = listener.address().clone() else {
        unreachable!()
    };
    (listener, addr)
}

/// On one runtime thread: a handshake that waited on it would stall all.
#[tokio::test(flavor = "current_thread")]
async fn a_silent_peer_does_not_hold_up_the_next() {
    let (mut listener, addr) = keyed_listener(PATIENCE).await;
    let silent = TcpStream::connect(addr).unwrap();
    let good = blocking_client(listener.address(), b"k", b"good");
    let mut conn = timeout(PATIENCE, listener.accept()).await.unwrap().unwrap();
    assert_eq!(conn.recv_bytes().await.unwrap(), b"good");
    good.join().unwrap().unwrap();
    assert_eq!(listener.pending_handshakes(), 1, "the silent peer's");
    drop(silent);
    let err = timeout(PATIENCE, listener.accept())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Eof, "{err}");
}

/// `shed_oldest_at_cap` holds for the async listener too: at the cap a
/// new peer takes the place of the oldest silent one instead of waiting
/// for its handshake timeout (here an hour).
#[tokio::test(flavor = "current_thread")]
async fn at_the_cap_a_new_peer_takes_the_place_of_the_oldest_silent_one() {
    let mut listener = Listener::builder()
        .authkey(b"k")
        .handshake_timeout(Some(Duration::from_secs(3600)))
        .max_pending_handshakes(1)
        .shed_oldest_at_cap(true)
        .bind_async(&Address::localhost(0))
        .await
        .unwrap();
    let Address::Tcp(addr) = listener.address().clone() else {
        unreachable!()
    };
    let mut silent = TcpStream::connect(addr).unwrap();
    // Drive the listener until the silent peer has its challenge.
    silent.set_nonblocking(true).unwrap();
    let give_up = std::time::Instant::now() + PATIENCE;
    while silent.peek(&mut [0u8; 1]).is_err() {
        assert!(std::time::Instant::now() < give_up, "no handshake started");
        let accepted = timeout(A_MOMENT, listener.accept()).await;
        assert!(accepted.is_err(), "the silent peer was accepted");
    }
    silent.set_nonblocking(false).unwrap();
    assert_eq!(listener.pending_handshakes(), 1);

    let good = blocking_client(listener.address(), b"k", b"good");
    let mut conn = timeout(PATIENCE, listener.accept())
        .await
        .expect("the new peer within PATIENCE, not the silent one's timeout")
        .unwrap();
    assert_eq!(conn.recv_bytes().await.unwrap(), b"good");
    good.join().unwrap().unwrap();
    // The silent peer had its challenge, then end of file.
    silent.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut silent, &mut rest).unwrap();
    assert!(rest.windows(11).any(|w| w == b"#CHALLENGE#"), "{rest:?}");
}

#[tokio::test]
async fn a_wrong_key_is_refused_on_both_sides_and_the_listener_goes_on() {
    let mut listener = Listener::builder()
        .authkey(b"right")
        .bind_async(&Address::localhost(0))
        .await
        .unwrap();
    let address = listener.address().clone();
    let (accepted, connected) = tokio::join!(
        listener.accept(),
        AsyncClient::connect_with_authkey(&address, b"wrong")
    );
    let err = accepted.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthenticationFailed, "{err}");
    assert!(err.to_string().contains(&address.to_string()), "{err}");
    let err = connected.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthenticationFailed, "{err}");
    // The blocking client with the wrong key, and then the right one.
    let wrong = blocking_client(&address, b"wrong", b"");
    assert_eq!(
        listener.accept().await.unwrap_err().kind(),
        ErrorKind::AuthenticationFailed
    );
    assert_eq!(
        wrong.join().unwrap().unwrap_err().kind(),
        ErrorKind::AuthenticationFailed
    );
    let right = blocking_client(&address, b"right", b"in");
    assert_eq!(
        listener.accept().await.unwrap().recv_bytes().await.unwrap(),
        b"in"
    );
    right.join().unwrap().unwrap();
}

#[tokio::test]
async fn a_message_limit_below_the_handshakes_does_not_refuse_it() {
    let mut listener = Listener::builder()
        .authkey(b"k")
        .max_message_size(8)
        .bind_async(&Address::localhost(0))
        .await
        .unwrap();
    let client = AsyncClient::from(Client::new().authkey(b"k").max_message_size(8));
    let address = listener.address().clone();
    let (accepted, connected) = tokio::join!(listener.accept(), client.connect(&address));
    let (mut a, mut b) = (accepted.unwrap(), connected.unwrap());
    assert_eq!((a.max_message_size(), b.max_message_size()), (8, 8));
    b.send_bytes(b"nine bytes").await.unwrap();
    let err = a.recv_bytes().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MessageTooLarge);
}

#[tokio::test]
async fn a_silent_peer_times_out_and_a_silent_listener_too() {
    let (mut listener, addr) = keyed_listener(A_MOMENT).await;
    let _silent = TcpStream::connect(addr).unwrap();
    let err = timeout(PATIENCE, listener.accept())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");

    // A blocking listener that never accepts: the client's handshake times out.
    let blocking = Listener::builder()
        .authkey(b"k")
        .bind(&Address::localhost(0))
        .unwrap();
    let client = AsyncClient::from(
        Client::new()
            .authkey(b"k")
            .handshake_timeout(Some(A_MOMENT)),
    );
    let err = client.connect(blocking.address()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
}

#[tokio::test]
async fn async_client_and_blocking_listener_over_a_unix_path() {
    let dir = std::env::temp_dir().join(format!("conn-tokio-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let address = Address::Unix(dir.join("blocking.sock"));
    let mut listener = Listener::builder().authkey(b"k").bind(&address).unwrap();
    let server = std::thread::spawn(move || -> crate::Result<Vec<u8>> {
        let mut conn = listener.accept()?;
        conn.send_bytes(b"from blocking")?;
        conn.recv_bytes()
    });
    let mut conn = AsyncClient::connect_with_authkey(&address, b"k")
        .await
        .unwrap();
    assert_eq!(conn.recv_bytes().await.unwrap(), b"from blocking");
    conn.send_bytes(b"from async").await.unwrap();
    assert_eq!(server.join().unwrap().unwrap(), b"from async");

    // And the other way round; the async listener removes its file.
    let address = Address::Unix(dir.join("async.sock"));
    let mut listener = Listener::builder()
        .authkey(b"k")
        .bind_async(&address)
        .await
        .unwrap();
    let client = blocking_client(&address, b"k", b"hello");
    assert_eq!(
        listener.accept().await.unwrap().recv_bytes().await.unwrap(),
        b"hello"
    );
    client.join().unwrap().unwrap();
    drop(listener);
    let Address::Unix(path) = &address else {
        unreachable!()
    };
    assert!(!path.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn without_a_key_accept_and_connect_are_plain_and_blocking_after_conversion() {
    let name = format!("abstract:conn-tokio-plain-{}", std::process::id());
    let mut listener = AsyncListener::bind(&name.parse().unwrap()).await.unwrap();
    let address = listener.address().clone();
    let client = AsyncClient::new();
    let (accepted, connected) = tokio::join!(listener.accept(), client.connect(&address));
    let (mut a, mut b) = (accepted.unwrap(), connected.unwrap());
    b.send(&"plain").await.unwrap();
    assert_eq!(a.recv::<String>().await.unwrap(), "plain");
    // Connected through tokio, the descriptor was non-blocking (accepted,
    // it may be either): a blocking connection must not be.
    for conn in [a, b] {
        let blocking = conn.into_blocking().unwrap();
        let flags = rustix::fs::fcntl_getfl(&blocking).unwrap();
        assert!(!flags.contains(rustix::fs::OFlags::NONBLOCK));
    }
}

#[test]
fn outside_a_runtime_from_blocking_is_an_error_not_a_panic() {
    let (a, _b) = crate::pipe().unwrap();
    let err = AsyncConnection::from_blocking(a).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}

#[tokio::test]
async fn a_send_dropped_before_writing_sends_nothing_and_one_dropped_part_way_once() {
    let (mut a, mut b) = AsyncConnection::pair().unwrap();
    warm_up(&mut a, &mut b).await;
    // Small messages until the socket is full: the send that times out
    // wrote all of its message, part of it, or none of it.
    let mut next = 0u32;
    loop {
        match timeout(A_MOMENT, a.send(&next)).await {
            Ok(sent) => sent.unwrap(),
            Err(_) => break,
        }
        next += 1;
    }
    // Sent again only if it is not on its way already, as the docs say.
    let resend = !a.is_sending();
    let (sent, received) = tokio::join!(
        async {
            if resend {
                a.send(&next).await?;
            }
            a.send(&u32::MAX).await
        },
        async {
            let mut values = Vec::new();
            loop {
                match b.recv::<u32>().await? {
                    u32::MAX => return Ok::<_, crate::Error>(values),
                    value => values.push(value),
                }
            }
        }
    );
    sent.unwrap();
    let values = received.unwrap();
    // Every value once, in order: the timed-out one neither lost nor doubled.
    assert_eq!(values, (0..=next).collect::<Vec<_>>());
}

/// As on the blocking side (`auth/tests.rs`): the peer leaves the
/// listener's challenge unread and closes, a reset, which is `Eof`.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_peer_that_resets_mid_handshake_is_eof() {
    use super::handshake::{authenticate, Role};
    let (raw, mut conn) = raw_pair();
    let handshake =
        tokio::spawn(async move { authenticate(Role::Listener, &mut conn, b"key", false).await });
    // The challenge is in: closing now, with it unread, resets.
    let mut fds = [crate::sys::PollFd::readable(raw.fd())];
    assert_eq!(crate::sys::poll(&mut fds, Some(PATIENCE)).unwrap(), 1);
    drop(raw);
    let err = timeout(PATIENCE, handshake)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Eof, "{err}");
}

/// A blocking connection (reading ahead, if `read_ahead`), after
/// `try_recv_bytes` took the first `cut` bytes of a framed message, made
/// async: the rest of the message comes whole, and the next one after it.
async fn carried_over(cut: usize, read_ahead: bool) {
    let (raw, ours) = Socket::pair().unwrap();
    let mut blocking = Connection::new(ours, Direction::Both);
    blocking.set_read_ahead(read_ahead);
    let payload: Vec<u8> = (0..100u8).collect();
    let framed = frame(&payload);
    raw.write(&framed[..cut]).unwrap();
    assert_eq!(blocking.try_recv_bytes().unwrap(), None);
    let mut conn = AsyncConnection::from_blocking(blocking).unwrap();
    raw.write(&framed[cut..]).unwrap();
    raw.write(&frame(b"next")).unwrap();
    let got = timeout(PATIENCE, conn.recv_bytes()).await.unwrap().unwrap();
    assert_eq!(got, payload, "cut at {cut}, read-ahead {read_ahead}");
    let next = timeout(PATIENCE, conn.recv_bytes()).await.unwrap().unwrap();
    assert_eq!(next, b"next");
}

#[tokio::test]
async fn a_message_begun_without_waiting_is_carried_over_to_async() {
    // Part of the header, the whole header, the header and some payload.
    for cut in [2, 4, 30] {
        for read_ahead in [false, true] {
            carried_over(cut, read_ahead).await;
        }
    }
}

#[tokio::test]
async fn a_shared_memory_header_begun_loses_the_async_end_its_boundaries() {
    let (ours, theirs) = crate::pipe().unwrap();
    assert!(ours.shared_memory());
    let mut blocking = ours;
    let raw = Socket::from_owned(OwnedFd::from(theirs));
    // The marker and part of the length of a shared-memory header.
    raw.write(&[&(-2i32).to_be_bytes()[..], &[0, 0]].concat())
        .unwrap();
    assert_eq!(blocking.try_recv_bytes().unwrap(), None);
    let mut conn = AsyncConnection::from_blocking(blocking).unwrap();
    let err = timeout(PATIENCE, conn.recv_bytes())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
}
