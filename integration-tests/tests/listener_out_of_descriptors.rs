//! When the process has no descriptor left for a new peer, a `Listener`
//! with an authkey closes its oldest pending handshake to take the new
//! peer, rather than failing or spinning: a crowd of silent peers that
//! used up the descriptors cannot shut out a good client.
//!
//! A test binary of its own: it lowers this process's descriptor limit,
//! which would upset any test running beside it.

use std::io::Read;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use connection::{Client, Listener};
use integration_tests::{
    descriptor_limits, is_open_and_quiet, patient_tcp_listener, read_raw_message,
    set_descriptor_limit, use_up_descriptors,
};

const KEY: &[u8] = b"descriptor key";
/// Bounds every wait, so that a failure cannot hang; never asserted on.
const PATIENCE: Duration = Duration::from_secs(60);

/// Drives `listener` until every one of `peers` has had its challenge:
/// their handshakes are then pending.
fn start_handshakes(listener: &mut Listener, peers: &mut [TcpStream]) {
    let give_up = Instant::now() + PATIENCE;
    for peer in peers.iter_mut() {
        peer.set_nonblocking(true).unwrap();
        while peer.peek(&mut [0u8; 1]).is_err() {
            assert!(Instant::now() < give_up, "the handshakes did not start");
            let accepted = listener.accept_timeout(Duration::from_millis(10)).unwrap();
            assert!(accepted.is_none(), "a silent peer was accepted");
        }
        peer.set_nonblocking(false).unwrap();
    }
}

#[test]
fn out_of_descriptors_the_oldest_pending_handshake_makes_room_for_a_new_peer() {
    let (mut listener, addr) = patient_tcp_listener(KEY);
    let address = listener.address().clone();
    let mut silent: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
    start_handshakes(&mut listener, &mut silent);

    // A low limit, so that using it up takes a few opens, not a million.
    let (soft, _) = descriptor_limits();
    let open = std::fs::read_dir("/proc/self/fd").map_or(64, Iterator::count);
    set_descriptor_limit((open as u64 + 32).min(soft)).unwrap();
    // One descriptor free: the good client's socket takes it, and the
    // listener has none left to accept it with.
    let held = use_up_descriptors(1);
    let client = thread::spawn(move || {
        let mut conn = Client::new()
            .authkey(KEY)
            .connect_timeout(Some(PATIENCE))
            .handshake_timeout(Some(PATIENCE))
            .connect(&address)
            .unwrap();
        conn.send_bytes(b"room for me").unwrap();
    });
    let accepted = listener.accept_timeout(PATIENCE);
    drop(held);
    set_descriptor_limit(soft).unwrap();
    let mut conn = accepted
        .expect("accept with no descriptor left")
        .expect("the good client within PATIENCE");
    client.join().unwrap();
    assert!(conn.poll(Some(PATIENCE)).unwrap());
    assert_eq!(conn.recv_bytes().unwrap(), b"room for me");

    // The oldest silent peer made the room: it had its challenge, then
    // end of file. The others are still pending.
    let [oldest, rest @ ..] = &mut silent[..] else {
        unreachable!()
    };
    let challenge = read_raw_message(oldest, PATIENCE).unwrap();
    assert!(challenge.starts_with(b"#CHALLENGE#"));
    let mut after = Vec::new();
    oldest
        .read_to_end(&mut after)
        .expect("end of file for the oldest peer");
    assert_eq!(after, b"");
    for (i, peer) in rest.iter_mut().enumerate() {
        let challenge = read_raw_message(peer, PATIENCE).unwrap();
        assert!(
            challenge.starts_with(b"#CHALLENGE#"),
            "silent peer {}",
            i + 1
        );
        assert!(is_open_and_quiet(peer), "silent peer {} was let go", i + 1);
    }
}
