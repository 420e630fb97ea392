//! Remote workers that have the pool's key but not its good faith: fake
//! workers that connect with `connection::Client` and write the pool's
//! protocol by hand, as an attacker would (the message layouts are those
//! of `pool/src/wire.rs`). The pool is hosted by `pool_hostile_peers`, in
//! a process of its own, so that its memory is measured alone.

use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsFd;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use connection::{Client, Connection};
use integration_tests::{wait_with_deadline, Watchdog};

const KEY: &str = "hostile peers test key";
const HOST: &str = env!("CARGO_BIN_EXE_pool_hostile_peers");
/// Only turns a hang into a failure; nothing here is timed.
const PATIENCE: Duration = Duration::from_secs(60);
/// The size of the forged results messages.
const FORGED: usize = 32 << 20;

/// The pool's process, in one mode of `pool_hostile_peers`.
struct Host {
    child: Child,
    stdout: BufReader<ChildStdout>,
    stderr: JoinHandle<String>,
    address: String,
}

impl Host {
    fn start(mode: &str) -> Host {
        let mut child = Command::new(HOST)
            .arg(mode)
            .env("POOL_AUTHKEY", KEY)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pool_hostile_peers");
        let mut pipe = child.stderr.take().expect("stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        });
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut host = Host {
            child,
            stdout,
            stderr,
            address: String::new(),
        };
        let line = host.line();
        host.address = line
            .strip_prefix("address: ")
            .unwrap_or_else(|| panic!("expected the address, got {line:?}"))
            .to_string();
        host
    }

    /// The next line the host prints.
    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read the host");
        line.trim_end().to_string()
    }

    /// Waits for the host to exit: its status, the rest of its stdout,
    /// and its stderr (the pool's log).
    fn finish(mut self) -> (String, String) {
        let mut rest = String::new();
        self.stdout
            .read_to_string(&mut rest)
            .expect("read the host");
        let status = wait_with_deadline(&mut self.child, PATIENCE);
        let stderr = self.stderr.join().expect("stderr reader");
        assert!(status.success(), "{status}\n{rest}\n{stderr}");
        (rest, stderr)
    }
}

/// A remote worker written by hand.
struct Fake {
    conn: Connection,
    /// The ready message it sent, to send again.
    ready: Vec<u8>,
}

impl Fake {
    /// Connects with the key, reads the setup message and says it is
    /// ready, claiming `pid`.
    fn join(address: &str, pid: u32) -> Fake {
        let address = address.parse().expect("the pool's address");
        let mut conn = Client::connect_with_authkey(&address, KEY.as_bytes()).expect("connect");
        let setup = conn.recv_bytes().expect("the setup message");
        assert_eq!(setup.first(), Some(&b'S'), "{setup:?}");
        // `S` setup: worker id, message limit, no initializer (flag 0),
        // then the pool's build id, which a liar simply repeats.
        assert_eq!(setup[13], 0, "the host has no initializer: {setup:?}");
        let build_id_len = u32::from_le_bytes(setup[14..18].try_into().unwrap()) as usize;
        let build_id = &setup[18..18 + build_id_len];
        // `H` ready: the pid, the flags (none), the build id it claims and
        // a program name, each with its length.
        let mut ready = vec![b'H'];
        ready.extend_from_slice(&pid.to_le_bytes());
        ready.push(0);
        for field in [build_id, b"fake-worker"] {
            ready.extend_from_slice(&(field.len() as u32).to_le_bytes());
            ready.extend_from_slice(field);
        }
        conn.send_bytes(&ready).expect("send ready");
        Fake { conn, ready }
    }

    /// The address the pool sees this worker connect from.
    fn local_address(&self) -> String {
        let fd = self.conn.as_fd().try_clone_to_owned().expect("dup");
        let socket = std::net::TcpStream::from(fd);
        format!("tcp:{}", socket.local_addr().expect("local address"))
    }

    /// Reads batches until one holds a chunk: its id and item count.
    fn first_chunk(&mut self) -> (u64, u32) {
        loop {
            let message = self.conn.recv_bytes().expect("a batch");
            if message.first() != Some(&b'B') {
                continue;
            }
            let mut at = 1;
            let u32_at = |at: usize| u32::from_le_bytes(message[at..at + 4].try_into().unwrap());
            while at < message.len() {
                match message[at] {
                    // `N`: task number, then the name's length and bytes.
                    b'N' => at += 1 + 4 + 4 + u32_at(at + 5) as usize,
                    // `C` or `I`: chunk id, task number, item count, ...
                    b'C' | b'I' => {
                        let id = u64::from_le_bytes(message[at + 1..at + 9].try_into().unwrap());
                        return (id, u32_at(at + 13));
                    }
                    other => panic!("unexpected record {other} in {message:?}"),
                }
            }
        }
    }

    /// Whether the pool ends this connection (within the patience),
    /// reading and dropping what it sends meanwhile.
    fn ended_by_pool(&mut self) -> bool {
        let deadline = Instant::now() + PATIENCE;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.conn.poll(Some(left)) {
                Ok(false) => {}
                Ok(true) => match self.conn.recv_bytes() {
                    Ok(message) if message == b"Q" => return false,
                    Ok(_) => {}
                    Err(_) => return true,
                },
                Err(_) => return true,
            }
        }
        false
    }
}

/// A results message (`R`): busy time, then one chunk of `count` items,
/// each `item` (a status and a length-prefixed payload).
fn results(chunk: u64, count: u32, item: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(1 + 8 + 12 + count as usize * item.len());
    message.push(b'R');
    message.extend_from_slice(&1_000u64.to_le_bytes());
    message.extend_from_slice(&chunk.to_le_bytes());
    message.extend_from_slice(&count.to_le_bytes());
    for _ in 0..count {
        message.extend_from_slice(item);
    }
    message
}

/// A results message of about [`FORGED`] bytes for `chunk`, all `item`s.
fn forged(chunk: u64, item: &[u8]) -> Vec<u8> {
    let count = ((FORGED - 21) / item.len()) as u32;
    results(chunk, count, item)
}

#[test]
fn claimed_pids_are_never_listed_as_the_pools_workers() {
    let _watchdog = Watchdog::start("forged pids", PATIENCE * 2);
    let host = Host::start("pids");
    let host_pid = host.child.id();
    let claims = [1, host_pid, u32::MAX];
    let fakes: Vec<Fake> = claims
        .iter()
        .map(|&pid| Fake::join(&host.address, pid))
        .collect();
    let peers: Vec<String> = fakes.iter().map(Fake::local_address).collect();
    let (out, _log) = host.finish();
    drop(fakes);
    let line = integration_tests::line(&out, "worker_pids");
    let pids: Vec<u32> = line
        .split_whitespace()
        .map(|pid| pid.parse().expect("a pid"))
        .collect();
    assert_eq!(pids.len(), 1, "only the one local worker: {out}");
    for claim in claims {
        assert!(!pids.contains(&claim), "{claim} listed as a worker: {out}");
    }
    assert!(out.contains(&format!("pool pid: {host_pid}\n")), "{out}");
    for (claim, peer) in claims.iter().zip(&peers) {
        assert!(
            out.contains(&format!(" from {peer} claims {claim}\n")),
            "{peer} claiming {claim} not listed: {out}"
        );
    }
    assert!(
        out.contains("remote_workers: [RemoteWorker {") && out.contains("claimed_pid: Some(1)"),
        "{out}"
    );
}

/// A fake worker that answers the first chunk it gets with `message`
/// (made from that chunk's id and item count); returns the host's output.
fn amplify(message: impl FnOnce(u64, u32) -> Vec<u8> + Send + 'static) -> String {
    let _watchdog = Watchdog::start("amplifying results", PATIENCE * 2);
    let host = Host::start("amplify");
    let address = host.address.clone();
    let fake = std::thread::spawn(move || {
        let mut fake = Fake::join(&address, 4242);
        let (chunk, items) = fake.first_chunk();
        let forged = message(chunk, items);
        fake.conn
            .send_bytes(&forged)
            .expect("send the forged results");
        drop(forged);
        fake.ended_by_pool()
    });
    let (out, log) = host.finish();
    fake.join().expect("the fake worker");
    let growth: u64 = integration_tests::line(&out, "peak growth KiB")
        .parse()
        .expect("a size");
    eprintln!(
        "{} MiB forged results: the pool's peak RSS grew by {:.1} MiB ({:.2}x)",
        FORGED >> 20,
        growth as f64 / 1024.0,
        (growth << 10) as f64 / FORGED as f64
    );
    assert!(
        (growth << 10) as usize <= 3 * FORGED,
        "peak RSS grew by {growth} KiB for a {FORGED}-byte message\n{out}\n{log}"
    );
    assert!(out.contains("map: ok 200\n"), "{out}\n{log}");
    log
}

#[test]
fn tiny_outputs_for_a_chunk_sent_cost_a_small_multiple_of_the_message() {
    // `0` success, an empty output: 5 bytes an item, millions of them,
    // for a chunk the worker was sent with a single input.
    let log = amplify(|chunk, _| forged(chunk, &[0, 0, 0, 0, 0]));
    assert!(log.contains("results for chunk"), "{log}");
}

#[test]
fn tiny_failures_for_a_chunk_never_sent_cost_a_small_multiple_of_the_message() {
    // `1` failed, a one-byte message: 6 bytes an item.
    let log = amplify(|chunk, _| forged(chunk + 1_000_000, &[1, 1, 0, 0, 0, b'x']));
    assert!(log.contains("which it does not hold"), "{log}");
}

/// The pool's WARN line that contains `needle`, printed.
fn warning_line(log: &str, needle: &str) -> String {
    let warning = log
        .lines()
        .find(|line| line.contains("WARN") && line.contains(needle))
        .unwrap_or_else(|| panic!("no warning about {needle:?}: {log}"));
    eprintln!("the pool's log: {warning}");
    warning.to_string()
}

/// A fake worker that joins a pool (`unsolicited` mode), then does
/// `misbehave`: the pool must end its connection and run a map on its
/// local worker after. Returns the fake's address and the pool's WARN line
/// that contains `needle`.
fn ended_for(misbehave: impl FnOnce(&mut Fake), needle: &str) -> (String, String) {
    let _watchdog = Watchdog::start("a misbehaving worker", PATIENCE * 2);
    let mut host = Host::start("unsolicited");
    let mut fake = Fake::join(&host.address, 4242);
    let peer = fake.local_address();
    assert_eq!(host.line(), "remote ready");
    misbehave(&mut fake);
    assert!(fake.ended_by_pool(), "the pool kept the connection");
    let (out, log) = host.finish();
    assert!(out.contains("remote gone\n"), "{out}");
    assert!(out.contains("map: ok 200\n"), "{out}\n{log}");
    (peer, warning_line(&log, needle))
}

#[test]
fn results_for_a_chunk_never_sent_end_the_worker_and_the_pool_goes_on() {
    let (peer, warning) = ended_for(
        |fake| {
            // It holds no chunk: the pool has nothing to run yet.
            let unsolicited = results(9_999_999, 1, &[0, 1, 0, 0, 0, b'x']);
            fake.conn.send_bytes(&unsolicited).expect("send");
        },
        "results for chunk 9999999",
    );
    assert!(warning.contains("while it holds no chunk"), "{warning}");
    assert!(
        warning.contains(&format!("peer={peer}")),
        "{peer}: {warning}"
    );
    assert!(warning.contains("worker=2"), "{warning}");
    assert!(warning.contains("claimed_pid=4242"), "{warning}");
}

#[test]
fn a_worker_that_says_it_is_ready_again_is_ended_and_the_pool_goes_on() {
    let (_, warning) = ended_for(
        |fake| {
            // A stream of them, as a peer keeping the pool's dispatcher
            // busy would send: the first after the first already ends the
            // connection (the rest may find it closed).
            let ready = fake.ready.clone();
            for _ in 0..1000 {
                if fake.conn.send_bytes(&ready).is_err() {
                    break;
                }
            }
        },
        "a ready message",
    );
    assert!(warning.contains("worker=2"), "{warning}");
}

#[test]
fn a_worker_that_does_not_read_is_not_waited_for_when_descriptors_run_out() {
    let _watchdog = Watchdog::start("cut off", PATIENCE * 2);
    let mut host = Host::start("cut_off");
    // It never reads again: what the pool sends it stays in the sockets,
    // and the rest with the pool's I/O thread, which needs no descriptor
    // to hold it.
    let fake = Fake::join(&host.address, 4242);
    assert_eq!(host.line(), "remote ready");
    let (out, log) = host.finish();
    drop(fake);
    assert!(out.contains("terminated\n"), "{out}\n{log}");
    assert!(out.contains("input failed: Err(Closed)\n"), "{out}\n{log}");
}
