//! When the process has no descriptor left for a new peer, an
//! `AsyncListener` with an authkey ends its oldest pending handshake to
//! take the new peer, as the blocking `Listener` does, rather than
//! returning the error to a caller who would only retry it.
//!
//! A test binary of its own: it lowers this process's descriptor limit,
//! which would upset any test running beside it.

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use connection::{Address, Client, Listener};
use integration_tests::{
    descriptor_limits, read_raw_message, set_descriptor_limit, use_up_descriptors,
};

const KEY: &[u8] = b"async descriptor key";
/// Bounds every wait, so that a failure cannot hang; never asserted on.
const PATIENCE: Duration = Duration::from_secs(60);

#[test]
fn out_of_descriptors_the_oldest_pending_handshake_makes_room_for_a_new_peer() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut listener = Listener::builder()
            .authkey(KEY)
            .handshake_timeout(Some(Duration::from_secs(3600)))
            .bind_async(&Address::localhost(0))
            .await
            .unwrap();
        let address = listener.address().clone();
        let Address::Tcp(addr) = address.clone() else {
            unreachable!("a localhost listener has a TCP address")
        };
        let mut silent: Vec<TcpStream> =
            (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        // Drive the listener until every silent peer has its challenge.
        let give_up = Instant::now() + PATIENCE;
        for peer in &mut silent {
            peer.set_nonblocking(true).unwrap();
            while peer.peek(&mut [0u8; 1]).is_err() {
                assert!(Instant::now() < give_up, "the handshakes did not start");
                let accepted =
                    tokio::time::timeout(Duration::from_millis(10), listener.accept()).await;
                assert!(accepted.is_err(), "a silent peer was accepted");
            }
            peer.set_nonblocking(false).unwrap();
        }

        let (soft, _) = descriptor_limits();
        let open = std::fs::read_dir("/proc/self/fd").map_or(64, Iterator::count);
        set_descriptor_limit((open as u64 + 32).min(soft)).unwrap();
        // One descriptor free: the good client's socket takes it, and the
        // listener has none left to accept it with.
        let held = use_up_descriptors(1);
        let client = std::thread::spawn(move || {
            let mut conn = Client::new()
                .authkey(KEY)
                .connect_timeout(Some(PATIENCE))
                .handshake_timeout(Some(PATIENCE))
                .connect(&address)
                .unwrap();
            conn.send_bytes(b"room for me").unwrap();
        });
        let accepted = tokio::time::timeout(PATIENCE, listener.accept()).await;
        drop(held);
        set_descriptor_limit(soft).unwrap();
        let mut conn = accepted
            .expect("the good client within PATIENCE")
            .expect("accept with no descriptor left");
        assert_eq!(conn.recv_bytes().await.unwrap(), b"room for me");
        client.join().unwrap();

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
            assert!(
                integration_tests::is_open_and_quiet(peer),
                "silent peer {} was let go",
                i + 1
            );
        }
    });
}
