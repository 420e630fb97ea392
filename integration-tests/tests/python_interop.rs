//! Rust `Listener`/`Client` against CPython's `multiprocessing.connection`
//! run by the machine's `python3`, and Rust against Rust across processes.
//!
//! python3 is expected on every machine here; a test skips (saying so on
//! stderr) only where it is missing. The local python3 may be 3.11, which
//! speaks only the legacy HMAC-MD5 scheme: the tests ask Python its version
//! and check what each side must do with it. The modern scheme is checked
//! against Python too, by a peer that runs CPython 3.12's handshake
//! (written out below with `hmac`) over `multiprocessing.connection`'s own
//! framing.
//!
//! No test can hang: every child is killed at a deadline, which turns any
//! receive waiting on it into end of file, and Rust waits for a peer with
//! `wait` and a timeout. Nothing asserts on time.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use connection::{wait, Address, Client, Connection, ErrorKind, Listener};
use integration_tests::python3;

/// How long any child may live before it is killed.
const CHILD_LIMIT: Duration = Duration::from_secs(90);
/// How long Rust waits for a peer to show up or answer.
const PEER_WAIT: Duration = Duration::from_secs(60);
/// The big message: several MiB, in both directions.
const BIG: usize = 5 << 20;

/// Shared by both Python sides: the exchange after authentication, the big
/// payload, and the exit codes (0 ok, 3 AuthenticationError, 4 the peer
/// went away, 2 anything else).
const PY_COMMON: &str = r#"
import sys, hmac, os
from multiprocessing.connection import Listener, Client, AuthenticationError

BIG = 5 << 20
def big():
    return (bytes(range(251)) * (BIG // 251 + 1))[:BIG]

def exchange(c, first):
    if first:
        c.send_bytes(b"hello from python")
        assert c.recv_bytes() == b"rust got: hello from python"
    else:
        m = c.recv_bytes()
        c.send_bytes(b"python got: " + m)
    c.send_bytes(big())
    assert c.recv_bytes() == big(), "big message from rust differs"
    c.send_bytes(b"bye")

def run(body):
    try:
        body()
    except AuthenticationError as e:
        print("AUTH_FAILED", e, flush=True); sys.exit(3)
    except (EOFError, ConnectionError) as e:
        print("PEER_GONE", repr(e), flush=True); sys.exit(4)
    print("DONE", flush=True)
"#;

/// `python3 -c PY_CLIENT ADDRESS KEY`: CPython's Client.
const PY_CLIENT: &str = r#"
def addr(a):
    if a.startswith("unix:"): return a[5:]
    host, port = a[4:].rsplit(":", 1); return (host, int(port))
def body():
    c = Client(addr(sys.argv[1]), authkey=sys.argv[2].encode())
    exchange(c, True)
run(body)
"#;

/// `python3 -c PY_LISTENER ADDRESS KEY`: CPython's Listener (ADDRESS is
/// `unix:PATH` or `tcp`, for 127.0.0.1 port 0); prints its address first.
const PY_LISTENER: &str = r#"
a = sys.argv[1]
address = a[5:] if a.startswith("unix:") else ("127.0.0.1", 0)
l = Listener(address, authkey=sys.argv[2].encode())
la = l.address
print("tcp:%s:%d" % la if isinstance(la, tuple) else "unix:" + la, flush=True)
def body():
    c = l.accept()
    exchange(c, False)
run(body)
l.close()
"#;

/// `python3 -c PY_MODERN_CLIENT ADDRESS KEY`: CPython 3.12's client
/// handshake (answer_challenge, then deliver_challenge with sha256) over
/// the framing of the local multiprocessing.connection, whatever its version.
const PY_MODERN_CLIENT: &str = r##"
from multiprocessing.connection import Connection
import socket
def body():
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1][5:])
    c = Connection(s.detach()); key = sys.argv[2].encode()
    m = c.recv_bytes(256)
    assert m.startswith(b"#CHALLENGE#{sha256}") and len(m) == 11 + 8 + 40, m
    m = m[11:]
    c.send_bytes(b"{sha256}" + hmac.new(key, m, "sha256").digest())
    if c.recv_bytes(256) != b"#WELCOME#": raise AuthenticationError("rejected")
    m = b"{sha256}" + os.urandom(40)
    c.send_bytes(b"#CHALLENGE#" + m)
    r = c.recv_bytes(256)
    ok = r == b"{sha256}" + hmac.new(key, m, "sha256").digest()
    c.send_bytes(b"#WELCOME#" if ok else b"#FAILURE#")
    if not ok: raise AuthenticationError("wrong answer %r" % r)
    exchange(c, True)
run(body)
"##;

/// A child process, killed when its deadline passes (which ends any
/// receive waiting on it) and reaped when dropped.
struct Peer {
    child: Arc<Mutex<Child>>,
    stdout: BufReader<ChildStdout>,
    stop: Arc<AtomicBool>,
    killer: Option<JoinHandle<()>>,
}

impl Peer {
    fn spawn(mut command: Command) -> Peer {
        command.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = command.spawn().expect("spawn peer");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let child = Arc::new(Mutex::new(child));
        let stop = Arc::new(AtomicBool::new(false));
        let killer = thread::spawn({
            let (child, stop) = (child.clone(), stop.clone());
            move || {
                let deadline = Instant::now() + CHILD_LIMIT;
                while !stop.load(Ordering::SeqCst) {
                    if Instant::now() >= deadline {
                        let mut child = child.lock().unwrap();
                        if child.try_wait().unwrap().is_none() {
                            eprintln!(
                                "peer {} still running after {CHILD_LIMIT:?}: killed",
                                child.id()
                            );
                            let _ = child.kill();
                        }
                        return;
                    }
                    thread::sleep(Duration::from_millis(20));
                }
            }
        });
        Peer {
            child,
            stdout,
            stop,
            killer: Some(killer),
        }
    }

    fn python(py: &str, script: &str, args: &[&str]) -> Peer {
        let mut command = Command::new(py);
        command
            .arg("-c")
            .arg(format!("{PY_COMMON}\n{script}"))
            .args(args);
        Peer::spawn(command)
    }

    fn rust(args: &[&str]) -> Peer {
        let mut command = Command::new(env!("CARGO_BIN_EXE_auth_peer"));
        command.args(args);
        Peer::spawn(command)
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read peer stdout");
        line.trim_end().to_string()
    }

    /// Waits for the exit (the killer bounds it) and returns the status
    /// with the rest of stdout.
    fn finish(mut self) -> (ExitStatus, String) {
        let mut rest = String::new();
        self.stdout
            .read_to_string(&mut rest)
            .expect("read peer stdout");
        let status = loop {
            if let Some(status) = self.child.lock().unwrap().try_wait().unwrap() {
                break status;
            }
            thread::sleep(Duration::from_millis(10));
        };
        (status, rest)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(killer) = self.killer.take() {
            let _ = killer.join();
        }
        let mut child = self.child.lock().unwrap();
        if child.try_wait().ok().flatten().is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A directory for this test's sockets, unique to the process and test,
/// removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("conn-interop-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn socket(&self, name: &str) -> Address {
        Address::Unix(self.0.join(name))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn big() -> Vec<u8> {
    (0..251u8).cycle().take(BIG).collect()
}

/// Whether the local python3 speaks only the legacy scheme (3.11 and older).
fn python_is_legacy(py: &str) -> bool {
    let out = Command::new(py)
        .args(["-c", "import sys; print(int(sys.version_info < (3, 12)))"])
        .output()
        .expect("run python3");
    String::from_utf8_lossy(&out.stdout).trim() == "1"
}

fn accept_within(listener: &mut Listener) -> connection::Result<Connection> {
    let ready = wait(&[&*listener], Some(PEER_WAIT))?;
    assert_eq!(ready, [0], "no peer connected within {PEER_WAIT:?}");
    listener.accept()
}

fn recv_within(conn: &mut Connection) -> Vec<u8> {
    assert!(conn.poll(Some(PEER_WAIT)).unwrap(), "peer sent nothing");
    conn.recv_bytes().unwrap()
}

/// The Rust half of the Python scripts' `exchange`.
fn exchange(conn: &mut Connection, rust_first: bool) {
    if rust_first {
        conn.send_bytes(b"hello from rust").unwrap();
        assert_eq!(recv_within(conn), b"python got: hello from rust");
    } else {
        let m = recv_within(conn);
        conn.send_bytes(&[b"rust got: ".as_slice(), &m].concat())
            .unwrap();
    }
    assert!(
        recv_within(conn) == big(),
        "big message from python differs"
    );
    conn.send_bytes(&big()).unwrap();
    assert_eq!(recv_within(conn), b"bye");
}

fn assert_python_done(peer: Peer) {
    let (status, out) = peer.finish();
    assert!(
        status.success() && out.contains("DONE"),
        "python: {status}, {out:?}"
    );
}

fn python_client_with_rust_listener(address: Address, strict: bool) {
    let Some(py) = python3() else { return };
    let mut listener = Listener::builder()
        .authkey(b"interop key")
        .strict(strict)
        .bind(&address)
        .unwrap();
    let address = listener.address().to_string();
    let peer = Peer::python(py, PY_CLIENT, &[&address, "interop key"]);
    let result = accept_within(&mut listener);
    if strict && python_is_legacy(py) {
        let err = result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AuthenticationFailed, "{err}");
        assert!(err.to_string().contains("strict"), "{err}");
        let (status, out) = peer.finish();
        assert_eq!(status.code(), Some(3), "python: {out:?}");
        assert!(out.contains("AUTH_FAILED"), "{out:?}");
        return;
    }
    let mut conn = result.unwrap();
    exchange(&mut conn, false);
    assert_python_done(peer);
}

#[test]
fn python_client_authenticates_with_rust_listener_over_unix() {
    let dir = TempDir::new("py-client-unix");
    python_client_with_rust_listener(dir.socket("l.sock"), false);
}

#[test]
fn python_client_authenticates_with_rust_listener_over_tcp() {
    python_client_with_rust_listener(Address::localhost(0), false);
}

#[test]
fn strict_rust_listener_refuses_legacy_python_and_says_why() {
    // With a 3.12+ python3 the same test checks that strict mode lets the
    // modern scheme through.
    let dir = TempDir::new("py-client-strict");
    python_client_with_rust_listener(dir.socket("l.sock"), true);
}

/// CPython runs the handshake for `authkey=b''` (only `None` skips it), so
/// an empty key is a key: both sides must agree on it.
#[test]
fn an_empty_authkey_runs_the_handshake_with_python_as_cpython_does() {
    let Some(py) = python3() else { return };
    let dir = TempDir::new("py-empty-key");
    let mut listener = Listener::builder()
        .authkey(b"")
        .bind(&dir.socket("l.sock"))
        .unwrap();
    let address = listener.address().to_string();
    let peer = Peer::python(py, PY_CLIENT, &[&address, ""]);
    let mut conn = accept_within(&mut listener).unwrap();
    exchange(&mut conn, false);
    assert_python_done(peer);

    let wrong = Peer::python(py, PY_CLIENT, &[&address, "not empty"]);
    let err = accept_within(&mut listener).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthenticationFailed, "{err}");
    let (status, out) = wrong.finish();
    assert_eq!(status.code(), Some(3), "python: {out:?}");
}

#[test]
fn strict_rust_listener_accepts_the_modern_scheme_from_python() {
    let Some(py) = python3() else { return };
    let dir = TempDir::new("py-modern");
    let mut listener = Listener::builder()
        .authkey(b"modern")
        .strict(true)
        .bind(&dir.socket("l.sock"))
        .unwrap();
    let peer = Peer::python(
        py,
        PY_MODERN_CLIENT,
        &[&listener.address().to_string(), "modern"],
    );
    let mut conn = accept_within(&mut listener).unwrap();
    exchange(&mut conn, false);
    assert_python_done(peer);
}

fn rust_client_with_python_listener(
    py: &str,
    where_: &str,
    strict: bool,
) -> connection::Result<()> {
    let mut peer = Peer::python(py, PY_LISTENER, &[where_, "interop key"]);
    let address: Address = peer.line().parse().unwrap();
    let connected = Client::new()
        .authkey(b"interop key")
        .strict(strict)
        .connect_timeout(Some(PEER_WAIT))
        .connect(&address);
    let mut conn = match connected {
        Ok(conn) => conn,
        Err(err) => {
            let (status, out) = peer.finish();
            // Python's accept() either rejected us (3) or saw us hang up (4).
            assert!(
                matches!(status.code(), Some(3 | 4)),
                "python: {status} {out:?}"
            );
            return Err(err);
        }
    };
    exchange(&mut conn, true);
    assert_python_done(peer);
    Ok(())
}

#[test]
fn rust_client_authenticates_with_python_listener() {
    let Some(py) = python3() else { return };
    let dir = TempDir::new("rust-client");
    let unix = format!("unix:{}", dir.0.join("py.sock").display());
    rust_client_with_python_listener(py, &unix, false).unwrap();
    rust_client_with_python_listener(py, "tcp", false).unwrap();
}

#[test]
fn strict_rust_client_refuses_legacy_python_listener() {
    let Some(py) = python3() else { return };
    let result = rust_client_with_python_listener(py, "tcp", true);
    if python_is_legacy(py) {
        let err = result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AuthenticationFailed, "{err}");
        assert!(err.to_string().contains("strict"), "{err}");
    } else {
        result.unwrap();
    }
}

#[test]
fn wrong_key_from_python_fails_on_both_sides_and_listener_goes_on() {
    let Some(py) = python3() else { return };
    let dir = TempDir::new("wrong-key-py");
    let mut listener = Listener::builder()
        .authkey(b"right key")
        .bind(&dir.socket("l.sock"))
        .unwrap();
    let address = listener.address().to_string();

    let wrong = Peer::python(py, PY_CLIENT, &[&address, "wrong key"]);
    let err = accept_within(&mut listener).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthenticationFailed, "{err}");
    assert!(err.to_string().contains(&address), "{err}");
    let (status, out) = wrong.finish();
    assert_eq!(status.code(), Some(3), "python: {out:?}");
    assert!(out.contains("AUTH_FAILED"), "{out:?}");

    let right = Peer::python(py, PY_CLIENT, &[&address, "right key"]);
    let mut conn = accept_within(&mut listener).unwrap();
    exchange(&mut conn, false);
    assert_python_done(right);
}

#[test]
fn wrong_key_to_python_listener_fails_on_both_sides() {
    let Some(py) = python3() else { return };
    let mut peer = Peer::python(py, PY_LISTENER, &["tcp", "right key"]);
    let address: Address = peer.line().parse().unwrap();
    let err = Client::connect_with_authkey(&address, b"wrong key").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthenticationFailed, "{err}");
    assert!(err.to_string().contains(&address.to_string()), "{err}");
    let (status, out) = peer.finish();
    assert_eq!(status.code(), Some(3), "python: {out:?}");
    assert!(out.contains("AUTH_FAILED"), "{out:?}");
}

#[test]
fn rust_to_rust_across_processes_in_strict_mode() {
    // Strict on both sides refuses MD5, so success means the modern scheme.
    let dir = TempDir::new("rust-rust");
    for address in [
        dir.socket("r.sock").to_string(),
        "tcp:127.0.0.1:0".to_string(),
        format!("abstract:conn-interop-{}", std::process::id()),
    ] {
        let mut server = Peer::rust(&["serve", &address, "k", "strict"]);
        let bound = server.line();
        let client = Peer::rust(&["connect", &bound, "k", "strict"]);
        let (status, _) = client.finish();
        assert!(status.success(), "client to {bound}: {status}");
        let (status, _) = server.finish();
        assert!(status.success(), "server on {bound}: {status}");
    }
}

#[test]
fn rust_to_rust_wrong_key_fails_on_both_sides() {
    let mut server = Peer::rust(&["serve", "tcp:127.0.0.1:0", "right"]);
    let bound = server.line();
    let (client, _) = Peer::rust(&["connect", &bound, "wrong"]).finish();
    let (server, _) = server.finish();
    assert_eq!((client.code(), server.code()), (Some(3), Some(3)));
}
