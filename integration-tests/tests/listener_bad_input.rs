//! A Rust `Listener` with an authkey fed garbage: random bytes, truncated
//! and oversized length headers, silence and a slow drip. It must never
//! panic, must refuse oversized handshake messages before reading them,
//! and must go on serving good clients, including one that arrives while
//! a silent peer holds the listener. Also: the errors a user sees for
//! common mistakes name the address involved.
//!
//! Nothing asserts on time; every wait has a timeout so that no test hangs.

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use connection::{wait, Address, Client, ErrorKind, Listener};

const KEY: &[u8] = b"bad input key";

/// A listener serving in a thread: it accepts until stopped, records the
/// outcome of each accept (`Ok` or the error kind) and echoes one message
/// on each good connection.
struct Server {
    address: Address,
    stop: Arc<AtomicBool>,
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
        let thread = thread::spawn({
            let stop = stop.clone();
            move || {
                let mut outcomes = Vec::new();
                while !stop.load(Ordering::SeqCst) {
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
            thread: Some(thread),
        }
    }

    /// Stops the server and returns what each accept gave; a panic in the
    /// server thread fails the test here.
    fn finish(mut self) -> Vec<Result<(), ErrorKind>> {
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
}

fn good_client(address: &Address) {
    let mut conn = Client::builder()
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
    let outcomes = server.finish();
    let failures = outcomes.iter().filter(|o| o.is_err()).count();
    assert_eq!(failures, garbage.len(), "{outcomes:?}");
    assert_eq!(outcomes.last(), Some(&Ok(())), "{outcomes:?}");
    for outcome in &outcomes[..garbage.len()] {
        let kind = outcome.unwrap_err();
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
    let outcomes = server.finish();
    assert_eq!(
        outcomes,
        [
            Err(ErrorKind::Protocol),
            Ok(()),
            Err(ErrorKind::Protocol),
            Ok(())
        ]
    );
}

#[test]
fn a_silent_or_dripping_peer_delays_but_does_not_block_good_clients() {
    let server = Server::start(&Address::localhost(0));
    let address = server.address.clone();
    // Silent: connects and says nothing, and stays connected.
    let silent = Raw::connect(&address);
    // Dripping: a header announcing 256 bytes, then one byte at a time, so
    // that only a deadline for the whole handshake can end it. Connected
    // here, so that it is queued after the silent one and before the good
    // clients.
    let mut dripping = Raw::connect(&address);
    let drip_stop = Arc::new(AtomicBool::new(false));
    let drip = thread::spawn({
        let stop = drip_stop.clone();
        move || {
            let header = 256i32.to_be_bytes();
            for byte in header.into_iter().chain(std::iter::repeat(b'x')) {
                if stop.load(Ordering::SeqCst) || !dripping.send(&[byte]) {
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
    });
    good_client(&address);
    good_client(&address);
    drip_stop.store(true, Ordering::SeqCst);
    drip.join().unwrap();
    drop(silent);
    let outcomes = server.finish();
    let timed_out = outcomes
        .iter()
        .filter(|o| **o == Err(ErrorKind::TimedOut))
        .count();
    let served = outcomes.iter().filter(|o| o.is_ok()).count();
    assert_eq!((timed_out, served), (2, 2), "{outcomes:?}");
}

#[test]
fn refused_connection_names_the_address() {
    let listener = Listener::bind(&Address::localhost(0)).unwrap();
    let address = listener.address().clone();
    drop(listener);
    let err = Client::connect(&address).unwrap_err();
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
    let err = Client::connect(&address).unwrap_err();
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
    let err = Client::connect(&missing).unwrap_err();
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
    let err = Client::connect(&address).unwrap_err();
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
