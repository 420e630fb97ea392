//! A Rust `Listener` with an authkey fed garbage: random bytes, truncated
//! and oversized length headers, silence and a slow drip. It must never
//! panic, must refuse oversized handshake messages before reading them,
//! and must go on serving good clients, including ones that arrive after
//! silent peers whose handshakes are still running: those must not wait
//! for them. Also: the errors a user sees for common mistakes name the
//! address involved.
//!
//! Nothing asserts on time; every wait has a timeout so that no test hangs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use connection::{wait, Address, Client, ErrorKind, Listener};

const KEY: &[u8] = b"bad input key";

/// A listener serving in a thread: it accepts until stopped, records the
/// outcome of each accept (`Ok` or the error kind) and echoes one message
/// on each good connection.
struct Server {
    address: Address,
    stop: Arc<AtomicBool>,
    /// How many outcomes to collect before stopping, once told to stop.
    expected: Arc<AtomicUsize>,
    thread: Option<JoinHandle<Vec<Result<(), ErrorKind>>>>,
}

impl Server {
    fn start(address: &Address) -> Server {
        let mut listener = Listener::builder()
            .authkey(KEY)
            .handshake_timeout(Some(Duration::from_millis(300)))
            .bind(address)
            .unwrap();
        let address = listener.address().clone();
        let stop = Arc::new(AtomicBool::new(false));
        let expected = Arc::new(AtomicUsize::new(0));
        let thread = thread::spawn({
            let stop = stop.clone();
            let expected = expected.clone();
            move || {
                let mut outcomes = Vec::new();
                let mut stopping_since = None;
                loop {
                    // Handshakes run side by side, so some may still be
                    // finishing when told to stop: give them a minute.
                    if stop.load(Ordering::SeqCst) {
                        let since = *stopping_since.get_or_insert_with(Instant::now);
                        if outcomes.len() >= expected.load(Ordering::SeqCst)
                            || since.elapsed() > Duration::from_secs(60)
                        {
                            break;
                        }
                    }
                    if wait(&[&listener], Some(Duration::from_millis(50)))
                        .unwrap()
                        .is_empty()
                    {
                        continue;
                    }
                    match listener.accept() {
                        Ok(mut conn) => {
                            outcomes.push(Ok(()));
                            if conn.poll(Some(Duration::from_secs(30))).unwrap() {
                                if let Ok(m) = conn.recv_bytes() {
                                    let _ = conn.send_bytes(&m);
                                }
                            }
                        }
                        Err(err) => {
                            assert!(
                                err.to_string().contains(&listener.address().to_string()),
                                "{err}"
                            );
                            outcomes.push(Err(err.kind()));
                        }
                    }
                }
                outcomes
            }
        });
        Server {
            address,
            stop,
            expected,
            thread: Some(thread),
        }
    }

    /// Stops the server once it has seen `expected` outcomes (or a minute
    /// has passed) and returns what each accept gave; a panic in the
    /// server thread fails the test here.
    fn finish(mut self, expected: usize) -> Vec<Result<(), ErrorKind>> {
        self.expected.store(expected, Ordering::SeqCst);
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .unwrap()
            .join()
            .expect("listener thread panicked")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A raw stream to the server, for writing whatever we like.
enum Raw {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Raw {
    fn connect(address: &Address) -> Raw {
        match address {
            Address::Tcp(addr) => Raw::Tcp(TcpStream::connect(addr).unwrap()),
            Address::Unix(path) => Raw::Unix(UnixStream::connect(path).unwrap()),
            other => panic!("unexpected address {other}"),
        }
    }

    /// Writes, ignoring a peer that already hung up on us.
    fn send(&mut self, bytes: &[u8]) -> bool {
        match self {
            Raw::Tcp(s) => s.write_all(bytes).is_ok(),
            Raw::Unix(s) => s.write_all(bytes).is_ok(),
        }
    }

    /// How the listener sees this peer: a TCP peer by its address, a Unix
    /// one (which binds no name) not at all.
    fn peer_name(&self) -> Option<Address> {
        match self {
            Raw::Tcp(s) => Some(Address::Tcp(s.local_addr().unwrap())),
            Raw::Unix(_) => None,
        }
    }

    fn set_nonblocking(&self, nonblocking: bool) {
        match self {
            Raw::Tcp(s) => s.set_nonblocking(nonblocking).unwrap(),
            Raw::Unix(s) => s.set_nonblocking(nonblocking).unwrap(),
        }
    }

    /// Reads whatever comes, up to end of file, for at most `timeout`
    /// without a byte.
    fn read_to_end(&mut self, timeout: Duration) -> std::io::Result<Vec<u8>> {
        let mut all = Vec::new();
        match self {
            Raw::Tcp(s) => {
                s.set_read_timeout(Some(timeout))?;
                s.read_to_end(&mut all)?;
            }
            Raw::Unix(s) => {
                s.set_read_timeout(Some(timeout))?;
                s.read_to_end(&mut all)?;
            }
        }
        Ok(all)
    }

    /// Reads one message of the wire format, waiting at most `timeout`.
    fn read_message(&mut self, timeout: Duration) -> Vec<u8> {
        let read = |s: &mut dyn Read, buf: &mut [u8]| s.read_exact(buf).unwrap();
        let mut header = [0u8; 4];
        let mut message;
        match self {
            Raw::Tcp(s) => {
                s.set_read_timeout(Some(timeout)).unwrap();
                read(s, &mut header);
                message = vec![0u8; i32::from_be_bytes(header) as usize];
                read(s, &mut message);
            }
            Raw::Unix(s) => {
                s.set_read_timeout(Some(timeout)).unwrap();
                read(s, &mut header);
                message = vec![0u8; i32::from_be_bytes(header) as usize];
                read(s, &mut message);
            }
        }
        message
    }

    /// Whether the stream is open with nothing to read right now.
    fn is_open_and_quiet(&mut self) -> bool {
        self.set_nonblocking(true);
        let mut byte = [0u8; 1];
        let result = match self {
            Raw::Tcp(s) => s.read(&mut byte),
            Raw::Unix(s) => s.read(&mut byte),
        };
        self.set_nonblocking(false);
        matches!(result, Err(err) if err.kind() == std::io::ErrorKind::WouldBlock)
    }
}

fn good_client(address: &Address) {
    let mut conn = Client::new()
        .authkey(KEY)
        .connect_timeout(Some(Duration::from_secs(30)))
        .handshake_timeout(Some(Duration::from_secs(60)))
        .connect(address)
        .unwrap();
    conn.send_bytes(b"still serving?").unwrap();
    assert!(conn.poll(Some(Duration::from_secs(60))).unwrap());
    assert_eq!(conn.recv_bytes().unwrap(), b"still serving?");
}

/// Deterministic pseudo-random bytes (xorshift), so a failure reproduces.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("conn-bad-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Sends each kind of garbage, then closes, and checks that a good client
/// is served after all of them.
fn garbage_then_good_client(address: &Address) {
    let server = Server::start(address);
    let address = server.address.clone();
    let garbage: Vec<Vec<u8>> = vec![
        noise(4096, 0x9e37_79b9_7f4a_7c15),
        noise(3, 42),                    // a truncated header
        vec![0, 0, 0, 100, b'#', b'C'],  // a truncated message
        i32::MAX.to_be_bytes().to_vec(), // claims 2 GiB
        [&(-1i32).to_be_bytes()[..], &u64::MAX.to_be_bytes()].concat(), // claims 2^64 - 1
        (-7i32).to_be_bytes().to_vec(),  // a negative length
        [&257i32.to_be_bytes()[..], &[0u8; 257]].concat(), // one byte over the cap
        [&256i32.to_be_bytes()[..], &noise(256, 7)].concat(), // a wrong answer at the cap
    ];
    for bytes in &garbage {
        let mut raw = Raw::connect(&address);
        raw.send(bytes);
        drop(raw);
    }
    good_client(&address);
    // Handshakes run side by side, so the good client may overtake some
    // of the garbage: count, do not order.
    let outcomes = server.finish(garbage.len() + 1);
    let failures = outcomes.iter().filter(|o| o.is_err()).count();
    assert_eq!(failures, garbage.len(), "{outcomes:?}");
    assert_eq!(outcomes.len(), garbage.len() + 1, "{outcomes:?}");
    for kind in outcomes.iter().filter_map(|o| o.err()) {
        assert!(
            matches!(
                kind,
                ErrorKind::Protocol
                    | ErrorKind::AuthenticationFailed
                    | ErrorKind::Truncated
                    | ErrorKind::Eof
                    | ErrorKind::TimedOut
                    | ErrorKind::Io
            ),
            "{outcomes:?}"
        );
    }
}

#[test]
fn garbage_over_tcp_never_stops_the_listener() {
    garbage_then_good_client(&Address::localhost(0));
}

#[test]
fn garbage_over_unix_never_stops_the_listener() {
    let dir = TempDir::new("garbage");
    garbage_then_good_client(&Address::Unix(dir.0.join("l.sock")));
}

#[test]
fn oversized_headers_are_refused_before_reading() {
    // Claims of 2 GiB and 2^64 - 1 bytes: a listener that believed them
    // would allocate or read that much. It answers Protocol straight away,
    // while the rest of the claimed message never comes.
    let server = Server::start(&Address::localhost(0));
    for header in [
        i32::MAX.to_be_bytes().to_vec(),
        [&(-1i32).to_be_bytes()[..], &u64::MAX.to_be_bytes()].concat(),
    ] {
        let mut raw = Raw::connect(&server.address);
        raw.send(&header);
        // Keep the connection open: only the header decides.
        good_client(&server.address);
        drop(raw);
    }
    // Two refusals and two good clients, in whatever order the concurrent
    // handshakes ended. A listener that believed a header would still be
    // reading (and time out) instead.
    let outcomes = server.finish(4);
    let refused = outcomes
        .iter()
        .filter(|o| **o == Err(ErrorKind::Protocol))
        .count();
    let served = outcomes.iter().filter(|o| o.is_ok()).count();
    assert_eq!((refused, served, outcomes.len()), (2, 2, 4), "{outcomes:?}");
}

#[test]
fn a_silent_or_dripping_peer_ends_at_its_deadline_without_blocking_good_clients() {
    let server = Server::start(&Address::localhost(0));
    let address = server.address.clone();
    // Silent: connects and says nothing, and stays connected.
    let mut silent = Raw::connect(&address);
    // Dripping: a header announcing 256 bytes, then one byte at a time, so
    // that only a deadline for the whole handshake can end it. Connected
    // here, so that it is queued after the silent one and before the good
    // clients.
    let mut dripping = Raw::connect(&address);
    // It drips until the listener hangs up on it (or, should it never, for
    // a minute).
    let drip = thread::spawn(move || {
        let header = 256i32.to_be_bytes();
        for byte in header.into_iter().chain(std::iter::repeat(b'x')).take(1200) {
            if !dripping.send(&[byte]) {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
    });
    good_client(&address);
    good_client(&address);
    // Both stay connected until the listener closes them at the deadline.
    let rest = silent.read_to_end(Duration::from_secs(60));
    assert!(rest.is_ok(), "the silent peer was not let go: {rest:?}");
    drip.join().unwrap();
    let outcomes = server.finish(4);
    let timed_out = outcomes
        .iter()
        .filter(|o| **o == Err(ErrorKind::TimedOut))
        .count();
    let served = outcomes.iter().filter(|o| o.is_ok()).count();
    assert_eq!((timed_out, served), (2, 2), "{outcomes:?}");
}

/// Eight peers connect and say nothing, each with a 5 s handshake timeout;
/// then a good client connects. The listener must return the good client
/// first, while every silent peer's handshake is still running: each has
/// had its challenge and nothing else, and is still connected. Only then
/// come the silent peers' timeouts, one error per peer.
fn good_client_overtakes_silent_peers(address: &Address) {
    const SILENT: usize = 8;
    let mut listener = Listener::builder()
        .authkey(KEY)
        .handshake_timeout(Some(Duration::from_secs(5)))
        .bind(address)
        .unwrap();
    let address = listener.address().clone();
    // Connected before the good client, so ahead of it in the kernel's queue.
    let mut silent: Vec<Raw> = (0..SILENT).map(|_| Raw::connect(&address)).collect();
    let client = thread::spawn({
        let address = address.clone();
        move || {
            let mut conn = Client::new()
                .authkey(KEY)
                .connect_timeout(Some(Duration::from_secs(30)))
                .handshake_timeout(Some(Duration::from_secs(60)))
                .connect(&address)
                .unwrap();
            conn.send_bytes(b"the good client").unwrap();
            assert!(conn.poll(Some(Duration::from_secs(60))).unwrap());
            assert_eq!(conn.recv_bytes().unwrap(), b"served");
        }
    });
    let accept = |listener: &mut Listener| {
        let ready = wait(&[&*listener], Some(Duration::from_secs(60))).unwrap();
        assert_eq!(ready, [0], "nothing to accept within a minute");
        listener.accept()
    };

    let mut conn = accept(&mut listener).expect("the good client comes first");
    assert!(conn.poll(Some(Duration::from_secs(60))).unwrap());
    assert_eq!(conn.recv_bytes().unwrap(), b"the good client");
    let silent_names: Vec<Option<Address>> = silent.iter().map(Raw::peer_name).collect();
    if silent_names[0].is_some() {
        assert!(listener.last_accepted().is_some());
        assert!(!silent_names.contains(&listener.last_accepted().cloned()));
    }
    // Every silent peer's handshake had started (its challenge came), and
    // none has ended: no verdict, no end of file.
    for (i, peer) in silent.iter_mut().enumerate() {
        let challenge = peer.read_message(Duration::from_secs(60));
        assert!(challenge.starts_with(b"#CHALLENGE#"), "silent peer {i}");
        assert!(peer.is_open_and_quiet(), "silent peer {i} was let go");
    }
    conn.send_bytes(b"served").unwrap();
    client.join().unwrap();

    // Now their timeouts, one per silent peer, each naming both ends (a
    // TCP peer by its address, so each one exactly once).
    let mut reported = [false; SILENT];
    for _ in 0..SILENT {
        let err = accept(&mut listener).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
        let text = err.to_string();
        assert!(text.contains(&format!(" on {address}")), "{text}");
        if silent_names[0].is_some() {
            let i = silent_names
                .iter()
                .flatten()
                .position(|name| text.contains(&format!("with {name} on")))
                .unwrap_or_else(|| panic!("names no silent peer: {text}"));
            assert!(!std::mem::replace(&mut reported[i], true), "twice: {text}");
        }
    }
    for (i, peer) in silent.iter_mut().enumerate() {
        let rest = peer.read_to_end(Duration::from_secs(60));
        assert!(rest.is_ok(), "silent peer {i} not closed: {rest:?}");
    }
}

#[test]
fn a_good_client_overtakes_silent_peers_over_tcp() {
    good_client_overtakes_silent_peers(&Address::localhost(0));
}

#[test]
fn a_good_client_overtakes_silent_peers_over_unix() {
    let dir = TempDir::new("overtake");
    good_client_overtakes_silent_peers(&Address::Unix(dir.0.join("l.sock")));
}

#[test]
fn at_the_cap_a_new_peer_waits_for_a_place() {
    // Two places, both taken by silent peers: the good client stays in the
    // kernel's queue until one of them times out.
    let mut listener = Listener::builder()
        .authkey(KEY)
        .handshake_timeout(Some(Duration::from_secs(1)))
        .max_pending_handshakes(2)
        .bind(&Address::localhost(0))
        .unwrap();
    let address = listener.address().clone();
    let silent = [Raw::connect(&address), Raw::connect(&address)];
    let client = thread::spawn(move || good_client(&address));
    let mut outcomes = Vec::new();
    while !outcomes.contains(&Ok(())) && outcomes.len() < 3 {
        let ready = wait(&[&listener], Some(Duration::from_secs(60))).unwrap();
        assert_eq!(ready, [0], "nothing to accept within a minute");
        match listener.accept() {
            Ok(mut conn) => {
                outcomes.push(Ok(()));
                assert!(conn.poll(Some(Duration::from_secs(60))).unwrap());
                let message = conn.recv_bytes().unwrap();
                conn.send_bytes(&message).unwrap();
            }
            Err(err) => outcomes.push(Err(err.kind())),
        }
    }
    client.join().unwrap();
    drop(silent);
    assert_eq!(outcomes[0], Err(ErrorKind::TimedOut), "{outcomes:?}");
    let timed_out = outcomes
        .iter()
        .filter(|o| **o == Err(ErrorKind::TimedOut))
        .count();
    assert_eq!(
        (timed_out, outcomes.last()),
        (2, Some(&Ok(()))),
        "{outcomes:?}"
    );
}

#[test]
fn refused_connection_names_the_address() {
    let listener = Listener::bind(&Address::localhost(0)).unwrap();
    let address = listener.address().clone();
    drop(listener);
    let err = Client::new().connect(&address).unwrap_err();
    assert_eq!(
        err.io_error_kind(),
        Some(std::io::ErrorKind::ConnectionRefused),
        "{err}"
    );
    assert!(err.to_string().contains(&address.to_string()), "{err}");

    let dir = TempDir::new("refused");
    let stale = dir.0.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let address = Address::Unix(stale);
    let err = Client::new().connect(&address).unwrap_err();
    assert_eq!(
        err.io_error_kind(),
        Some(std::io::ErrorKind::ConnectionRefused),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&address.to_string()) && text.contains("nothing is listening"),
        "{text}"
    );

    let missing = Address::Unix(dir.0.join("missing.sock"));
    let err = Client::new().connect(&missing).unwrap_err();
    assert_eq!(
        err.io_error_kind(),
        Some(std::io::ErrorKind::NotFound),
        "{err}"
    );
    assert!(err.to_string().contains(&missing.to_string()), "{err}");
}

#[test]
fn a_path_that_is_no_socket_is_named_as_such() {
    let dir = TempDir::new("not-socket");
    let file = dir.0.join("plain-file");
    std::fs::write(&file, b"not a socket").unwrap();
    let address = Address::Unix(file.clone());
    let err = Client::new().connect(&address).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&address.to_string()) && text.contains("not a socket"),
        "{text}"
    );
    // Binding there must fail too, and leave the file alone.
    let err = Listener::bind(&address).unwrap_err();
    assert!(err.to_string().contains(&address.to_string()), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"not a socket");
}

#[test]
fn a_port_in_use_names_the_address() {
    let first = Listener::builder()
        .authkey(KEY)
        .bind(&Address::localhost(0))
        .unwrap();
    let err = Listener::builder()
        .authkey(KEY)
        .bind(first.address())
        .unwrap_err();
    assert_eq!(
        err.io_error_kind(),
        Some(std::io::ErrorKind::AddrInUse),
        "{err}"
    );
    assert!(
        err.to_string().contains(&first.address().to_string()),
        "{err}"
    );
}

#[test]
fn an_unparsable_address_is_invalid_input_quoting_it() {
    for text in ["tcp:nowhere", "unix:", "udp:1.2.3.4:5", "tcp:[::1]:port"] {
        let err = text.parse::<Address>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains(text), "{err}");
    }
}

#[test]
fn the_socket_file_goes_with_the_listener() {
    let dir = TempDir::new("socket-file");
    let path = dir.0.join("l.sock");
    let listener = Listener::bind(&Address::Unix(path.clone())).unwrap();
    assert!(path.exists());
    drop(listener);
    assert!(!path.exists(), "drop left {}", path.display());
    let listener = Listener::bind(&Address::Unix(path.clone())).unwrap();
    listener.close().unwrap();
    assert!(!path.exists(), "close left {}", path.display());
}
