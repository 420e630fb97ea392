//! CPython's `multiprocessing.connection.Client` against the async
//! listener of `connection::tokio`: the handshake (a wrong key refused, the
//! right one accepted) and byte messages both ways, a large one included.
//!
//! Skips, saying so on stderr, only where python3 is missing. No test can
//! hang: every wait has a deadline, and the child is killed at the end.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use connection::{Address, ErrorKind, Listener};
use integration_tests::{python3, wait_with_deadline};
use tokio::time::timeout;

/// How long the test waits for the Python side at any one step.
const PEER_WAIT: Duration = Duration::from_secs(60);

/// `python3 -c PY_CLIENT HOST:PORT KEY`: first a wrong key, which must be
/// refused, then the right one and the exchange. Exit codes: 0 done, 5 the
/// wrong key was accepted, anything else an exception.
const PY_CLIENT: &str = r#"
import sys
from multiprocessing.connection import Client, AuthenticationError
host, port = sys.argv[1].rsplit(":", 1)
address = (host, int(port))
try:
    Client(address, authkey=b"not the key")
    sys.exit(5)
except AuthenticationError:
    pass
c = Client(address, authkey=sys.argv[2].encode())
c.send_bytes(b"hello from python")
assert c.recv_bytes() == b"rust got: hello from python"
big = (bytes(range(251)) * 20000)[:5000000]
c.send_bytes(big)
assert c.recv_bytes() == big[::-1], "the big reply differs"
c.close()
"#;

/// Kills the child if the test ends early.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_python_client_talks_to_the_async_listener() {
    let Some(py) = python3() else { return };
    let key = "tokio python key";
    let mut listener = Listener::builder()
        .authkey(key)
        .bind_async(&Address::localhost(0))
        .await
        .unwrap();
    let Address::Tcp(addr) = listener.address().clone() else {
        unreachable!()
    };
    let mut child = Reaped(
        Command::new(py)
            .args(["-c", PY_CLIENT, &addr.to_string(), key])
            .stdin(Stdio::null())
            .spawn()
            .expect("start python3"),
    );

    let refused = timeout(PEER_WAIT, listener.accept())
        .await
        .expect("no peer");
    let err = refused.expect_err("the wrong key was accepted");
    assert_eq!(err.kind(), ErrorKind::AuthenticationFailed, "{err:#}");

    let mut conn = timeout(PEER_WAIT, listener.accept())
        .await
        .expect("no second peer")
        .unwrap();
    let hello = timeout(PEER_WAIT, conn.recv_bytes())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hello, b"hello from python");
    let reply = [&b"rust got: "[..], &hello].concat();
    conn.send_bytes(&reply).await.unwrap();
    let mut big = timeout(PEER_WAIT, conn.recv_bytes())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(big.len(), 5_000_000);
    big.reverse();
    conn.send_bytes(&big).await.unwrap();
    // Python closes after checking the reply: end of file here.
    let end = timeout(PEER_WAIT, conn.recv_bytes()).await.unwrap();
    assert_eq!(end.unwrap_err().kind(), ErrorKind::Eof);

    let status = wait_with_deadline(&mut child.0, PEER_WAIT);
    assert!(status.success(), "python3 failed: {status}");
}
