//! The two processes of the benches that measure across them (each
//! includes this file with `#[path]`, as benches are separate crates): the
//! bench re-executes itself as the peer (see [`is_peer`]) and hands it
//! three ends: a control connection for orders, our `pipe()` end, and a
//! raw `UnixStream` for the baseline.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use connection::{Connection, ErrorKind};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Set in the re-executed child: it serves the cases instead of driving them.
const PEER_ENV: &str = "CONNECTION_BENCH_PEER";
const CONTROL_ENV: &str = "CONNECTION_BENCH_CONTROL";
const OURS_ENV: &str = "CONNECTION_BENCH_OURS";
const RAW_ENV: &str = "CONNECTION_BENCH_RAW";

/// Whether this process is the peer.
pub fn is_peer() -> bool {
    std::env::var_os(PEER_ENV).is_some()
}

/// The parent's side: the peer process and the three connections to it.
pub struct Bench {
    peer: Child,
    control: Connection,
    pub ours: Connection,
    pub raw: UnixStream,
    /// For the raw baseline's framing, reused (by the benches that join
    /// header and payload).
    #[allow(dead_code)]
    pub raw_scratch: Vec<u8>,
}

impl Bench {
    pub fn start() -> Bench {
        let (control, control_peer) = connection::pipe().expect("control pipe");
        let (ours, ours_peer) = connection::pipe().expect("pipe");
        let (raw, raw_peer) = UnixStream::pair().expect("socketpair");
        let mut command = Command::new(std::env::current_exe().expect("current_exe"));
        command.env(PEER_ENV, "1");
        control_peer
            .pass_to_child(&mut command, CONTROL_ENV)
            .expect("pass control");
        ours_peer
            .pass_to_child(&mut command, OURS_ENV)
            .expect("pass ours");
        let mut raw_peer = Connection::from(OwnedFd::from(raw_peer));
        raw_peer
            .set_shared_memory(false)
            .expect("raw: a plain socket");
        raw_peer
            .pass_to_child(&mut command, RAW_ENV)
            .expect("pass raw");
        let peer = command.spawn().expect("spawn peer");
        // Closes our copies of the peer's ends, so that its death is our EOF.
        drop(command);
        Bench {
            peer,
            control,
            ours,
            raw,
            raw_scratch: Vec::new(),
        }
    }

    /// Tells the peer what comes next and waits until it is ready, so that
    /// the timed section starts with both sides in place.
    pub fn order<J: Serialize>(&mut self, job: J) {
        self.control.send(&job).expect("send job");
        let ready: String = self.control.recv().expect("peer ready");
        assert_eq!(ready, "ready");
    }

    /// Sends `payload` `count` times on our end, then waits for the
    /// peer's acknowledgement (order the peer to read them first): the
    /// time taken, and the bytes sent.
    pub fn time_sends(&mut self, payload: &[u8], count: u64) -> (Duration, u64) {
        let start = Instant::now();
        for _ in 0..count {
            self.ours.send_bytes(payload).expect("send_bytes");
        }
        self.ours.recv_bytes().expect("ack");
        (start.elapsed(), count * payload.len() as u64)
    }

    pub fn finish(mut self) {
        drop(self.control);
        let status = self.peer.wait().expect("wait for peer");
        assert!(status.success(), "bench peer failed: {status}");
    }
}

/// The peer's side: the ends the parent passed, the control one as
/// [`Orders`].
pub fn claim_peer_ends() -> (Orders, Connection, UnixStream) {
    let control = Connection::from_env(CONTROL_ENV).expect("control connection");
    let ours = Connection::from_env(OURS_ENV).expect("ours connection");
    let raw = UnixStream::from(OwnedFd::from(
        Connection::from_env(RAW_ENV).expect("raw connection"),
    ));
    (Orders(control), ours, raw)
}

/// The peer's end of the control connection.
pub struct Orders(Connection);

impl Orders {
    /// The next order, once the parent is told that the peer is ready for
    /// it; `None` when the parent is done.
    pub fn next_job<J: DeserializeOwned>(&mut self) -> Option<J> {
        let job = match self.0.recv() {
            Ok(job) => job,
            Err(err) if err.kind() == ErrorKind::Eof => return None,
            Err(err) => panic!("peer: control: {err}"),
        };
        self.0.send("ready").expect("peer: ready");
        Some(job)
    }
}
