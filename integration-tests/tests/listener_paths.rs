//! `Listener` and `Client` over every kind of address, and the edges of
//! connecting and accepting: IPv6 end to end, a connect timeout against a
//! listener whose queue is full (local addresses only, no outside
//! traffic), a peer that sends half a handshake and hangs up, and `wait`
//! over a mix of pipes and listeners.
//!
//! Every blocking step has a deadline; nothing asserts on time.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::time::Duration;

use connection::{pipe, wait, Address, Client, Connection, ErrorKind, Listener};
use integration_tests::Watchdog;

const KEY: &[u8] = b"paths key";
const LIMIT: Duration = Duration::from_secs(60);

/// Binds with `KEY`, connects a client from a thread, and checks that
/// messages cross both ways and that the listener names the peer.
fn round_trip(address: &str) {
    let _watchdog = Watchdog::start(address, LIMIT);
    let mut listener = Listener::builder()
        .authkey(KEY)
        .bind(&address.parse().unwrap())
        .unwrap();
    let bound = listener.address().clone();
    let client = std::thread::spawn(move || -> connection::Result<Vec<u8>> {
        let mut conn = Client::connect_with_authkey(&bound, KEY)?;
        conn.send_bytes(b"ping")?;
        conn.recv_bytes()
    });
    let mut conn = listener.accept().unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"ping");
    conn.send_bytes(b"pong").unwrap();
    assert_eq!(client.join().unwrap().unwrap(), b"pong");
    if let Address::Tcp(local) = listener.address() {
        let Some(Address::Tcp(peer)) = listener.last_accepted() else {
            panic!("no peer address: {:?}", listener.last_accepted())
        };
        assert_eq!(peer.is_ipv6(), local.is_ipv6());
    }
}

#[test]
fn ipv4_ipv6_and_abstract_round_trip() {
    round_trip("tcp:127.0.0.1:0");
    round_trip(&format!("abstract:connection-paths-{}", std::process::id()));
    // ::1 is missing only where IPv6 is switched off altogether.
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        round_trip("tcp:[::1]:0");
    } else {
        integration_tests::report_skip("no IPv6 loopback here: tcp:[::1] is not tried");
    }
}

#[test]
fn connect_timeout_against_a_full_tcp_queue_is_timed_out_naming_the_address() {
    let _watchdog = Watchdog::start("full TCP queue", LIMIT);
    // Never accepts; a backlog of 0 queues one connection, and Linux drops
    // the SYNs of any more, so a connect to it cannot complete.
    let listener = Listener::builder()
        .backlog(0)
        .bind(&Address::localhost(0))
        .unwrap();
    let Address::Tcp(addr) = listener.address().clone() else {
        unreachable!()
    };
    let mut queued = Vec::new();
    let err = loop {
        assert!(queued.len() < 64, "the queue never filled");
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(stream) => queued.push(stream),
            Err(_) => {
                break Client::new()
                    .connect_timeout(Some(Duration::from_millis(200)))
                    .connect(listener.address())
                    .unwrap_err()
            }
        }
    };
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

#[test]
fn half_a_handshake_then_hanging_up_fails_that_peer_only() {
    let _watchdog = Watchdog::start("half handshake", LIMIT);
    let mut listener = Listener::builder()
        .authkey(KEY)
        .bind(&Address::localhost(0))
        .unwrap();
    let Address::Tcp(addr) = listener.address().clone() else {
        unreachable!()
    };
    let quitter = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        let mut header = [0u8; 4];
        stream.read_exact(&mut header).unwrap();
        let mut challenge = vec![0u8; i32::from_be_bytes(header) as usize];
        stream.read_exact(&mut challenge).unwrap();
        // A header promising 50 bytes, then 2 of them, then gone.
        stream.write_all(&[0, 0, 0, 50, 1, 2]).unwrap();
    });
    let err = listener.accept().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Truncated, "{err}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    quitter.join().unwrap();

    let address = listener.address().clone();
    let good = std::thread::spawn(move || Client::connect_with_authkey(&address, KEY).map(drop));
    listener.accept().unwrap();
    good.join().unwrap().unwrap();
}

#[test]
fn wait_over_pipes_and_listeners() {
    let _watchdog = Watchdog::start("wait mix", LIMIT);
    let (mut a, b) = pipe().unwrap();
    let keyed = Listener::builder()
        .authkey(KEY)
        .bind(&Address::localhost(0))
        .unwrap();
    let plain = Listener::bind(&Address::localhost(0)).unwrap();
    let objects: [&dyn AsFd; 3] = [&b, &keyed, &plain];
    assert!(wait(&objects, Some(Duration::ZERO)).unwrap().is_empty());

    let Address::Tcp(addr) = plain.address().clone() else {
        unreachable!()
    };
    let _waiting = TcpStream::connect(addr).unwrap();
    assert_eq!(wait(&objects, Some(LIMIT)).unwrap(), [2]);
    a.send_bytes(b"x").unwrap();
    assert_eq!(wait(&objects, Some(Duration::ZERO)).unwrap(), [0, 2]);

    let nothing: [&Connection; 0] = [];
    assert!(wait(&nothing, Some(Duration::ZERO)).unwrap().is_empty());
}
