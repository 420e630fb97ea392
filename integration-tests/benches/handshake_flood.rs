//! A listener with default settings under the flood it is built for: 5,000
//! peers that connect and say nothing and 1,000 that send garbage, all
//! connected at once (from a `flood_peers` child process). Measures how
//! long a good client takes from its connect until `accept` returns it,
//! against the same with no flood (the baseline, in the same run), and
//! counts the listener process's threads and descriptors before, during
//! and after.
//!
//! Raises the soft descriptor limit to the hard one; with too low a hard
//! limit it floods with fewer peers and says so.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use connection::{Address, Client, ErrorKind, Listener};
use integration_tests::{census, descriptor_limits, set_descriptor_limit, Census};

const KEY: &[u8] = b"flood bench key";
const SILENT: usize = 5_000;
const GARBAGE: usize = 1_000;
const ROUNDS: usize = 3;

#[derive(Default)]
struct Failed {
    refused: usize,
    timed_out: usize,
}

impl Failed {
    fn count(&mut self, kind: ErrorKind) {
        match kind {
            ErrorKind::TimedOut => self.timed_out += 1,
            _ => self.refused += 1,
        }
    }
}

/// One round's figures.
struct Round {
    baseline: Duration,
    flooded: Duration,
    peers: usize,
    /// Handshakes that failed: refused garbage, and silent peers that
    /// timed out (none should, as the flood connects within the timeout).
    failed: Failed,
    before: Census,
    during: Census,
    after: Census,
}

fn main() {
    let (_, hard) = descriptor_limits();
    set_descriptor_limit(hard).expect("raise the soft descriptor limit to the hard one");
    let room = usize::try_from(hard.saturating_sub(200)).unwrap_or(usize::MAX);
    let peers = room.min(SILENT + GARBAGE);
    let garbage = peers * GARBAGE / (SILENT + GARBAGE);
    if peers < SILENT + GARBAGE {
        println!(
            "hard descriptor limit {hard}: flooding with {} + {garbage} peers",
            peers - garbage
        );
    }
    let rounds: Vec<Round> = (0..ROUNDS)
        .map(|_| round(peers - garbage, garbage))
        .collect();
    println!(
        "handshake flood: {} silent + {garbage} garbage peers, default settings, {ROUNDS} rounds (load average {})",
        peers - garbage,
        load_average()
    );
    println!("| round | good client, no flood | good client, flooded | ratio | garbage refused | silent timed out | threads before/during/after | descriptors before/during/after |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (i, r) in rounds.iter().enumerate() {
        println!(
            "| {} | {:.2} ms | {:.2} ms | {:.1}x | {} of {garbage} | {} | {}/{}/{} | {}/{}/{} |",
            i + 1,
            ms(r.baseline),
            ms(r.flooded),
            r.flooded.as_secs_f64() / r.baseline.as_secs_f64(),
            r.failed.refused,
            r.failed.timed_out,
            r.before.threads,
            r.during.threads,
            r.after.threads,
            r.before.descriptors,
            r.during.descriptors,
            r.after.descriptors,
        );
        assert_eq!(r.peers, peers);
    }
}

fn round(silent: usize, garbage: usize) -> Round {
    let before = census().expect("/proc/self");
    let mut listener = Listener::builder()
        .authkey(KEY)
        .bind(&Address::localhost(0))
        .unwrap();
    let baseline = time_good_client(&mut listener, &mut Failed::default());

    let Address::Tcp(addr) = listener.address().clone() else {
        unreachable!()
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_flood_peers"))
        .args([addr.to_string(), silent.to_string(), garbage.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start flood_peers");
    let connected = watch_for_connected(&mut child);
    // Serve while the flood connects: its peers must not sit in the
    // kernel's queue.
    let mut failed = Failed::default();
    while connected.try_recv().is_err() {
        if child.try_wait().unwrap().is_some() {
            panic!("flood_peers ended early");
        }
        if let Err(err) = listener.accept_timeout(Duration::from_millis(10)) {
            failed.count(err.kind());
        }
    }
    // The last garbage still to refuse.
    while let Err(err) = listener.accept_timeout(Duration::from_millis(100)) {
        failed.count(err.kind());
    }
    let during = census().unwrap();
    let flooded = time_good_client(&mut listener, &mut failed);

    drop(child.stdin.take());
    child.wait().unwrap();
    drop(listener);
    let after = census().unwrap();
    Round {
        baseline,
        flooded,
        peers: silent + garbage,
        failed,
        before,
        during,
        after,
    }
}

/// From just before a good client connects until `accept` returns it;
/// failed handshakes on the way are counted in `failed`.
fn time_good_client(listener: &mut Listener, failed: &mut Failed) -> Duration {
    let address = listener.address().clone();
    let start = Instant::now();
    let client = thread::spawn(move || {
        let mut conn = Client::connect_with_authkey(&address, KEY).unwrap();
        conn.send_bytes(b"good").unwrap();
    });
    let elapsed = loop {
        match listener.accept() {
            Ok(mut conn) => {
                let elapsed = start.elapsed();
                assert_eq!(conn.recv_bytes().unwrap(), b"good");
                break elapsed;
            }
            Err(err) => failed.count(err.kind()),
        }
    };
    client.join().unwrap();
    elapsed
}

/// A channel that gets a message once the child prints `connected`.
fn watch_for_connected(child: &mut Child) -> mpsc::Receiver<()> {
    let stdout = child.stdout.take().unwrap();
    let (send, receive) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if line.map_or(true, |l| l == "connected") {
                let _ = send.send(());
                return;
            }
        }
    });
    receive
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
