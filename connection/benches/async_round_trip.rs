//! The async connection's small-message round trip against the blocking
//! one, measured in the same run (issue 12's target: at most 1.3x the
//! blocking time).
//!
//! Blocking: a `pipe()` pair, the echo on a second thread, as a blocking
//! program would do it. Async: an `AsyncConnection::pair()` on a
//! current-thread tokio runtime, the echo a second task on the same
//! thread. Each round trip is one 64-byte `send_bytes` and one
//! `recv_bytes` each way. The two are measured interleaved, many short
//! rounds each, and the ratio reported is the median of the per-round
//! ratios, so that a noisy neighbour slows both rather than one.
//!
//! `cargo bench -p connection --bench async_round_trip` measures. Run
//! without `--bench` (as `cargo test --benches` does) it only checks, with
//! a few iterations, that both cases work.

use std::time::{Duration, Instant};

use connection::tokio::AsyncConnection;
use connection::{pipe, Connection, ErrorKind};

const PAYLOAD: [u8; 64] = [0x5a; 64];

fn main() {
    let measure = std::env::args().any(|arg| arg == "--bench");
    let (rounds, round_trips) = if measure { (41, 2_000) } else { (1, 50) };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");

    let mut blocking = BlockingEcho::start();
    let mut async_pair = runtime.block_on(AsyncEcho::start());
    let mut blocking_times = Vec::with_capacity(rounds);
    let mut async_times = Vec::with_capacity(rounds);
    let mut ratios = Vec::with_capacity(rounds);
    // One warm-up round of each, not counted.
    blocking.round_trips(round_trips);
    runtime.block_on(async_pair.round_trips(round_trips));
    for _ in 0..rounds {
        let b = blocking.round_trips(round_trips);
        let a = runtime.block_on(async_pair.round_trips(round_trips));
        blocking_times.push(b);
        async_times.push(a);
        ratios.push(a.as_secs_f64() / b.as_secs_f64());
    }
    blocking.stop();
    runtime.block_on(async_pair.stop());

    if !measure {
        println!("async round trip bench: both cases ran (run `cargo bench -p connection --bench async_round_trip` to measure)");
        return;
    }
    let per_trip =
        |times: &mut Vec<Duration>| median(times).as_secs_f64() * 1e6 / round_trips as f64;
    let blocking_us = per_trip(&mut blocking_times);
    let async_us = per_trip(&mut async_times);
    ratios.sort_by(f64::total_cmp);
    let ratio = ratios[ratios.len() / 2];
    println!("64-byte send_bytes/recv_bytes round trip, medians of {rounds} interleaved rounds of {round_trips}:");
    println!("| case | time per round trip | vs blocking | target |");
    println!("| --- | --- | --- | --- |");
    println!("| blocking `Connection`, echo on a thread | {blocking_us:.2} us | 1.00x | |");
    println!("| `AsyncConnection`, current-thread runtime, echo task | {async_us:.2} us | {ratio:.2}x the time | <= 1.3x |");
    println!("load average: {}", load_average());
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".to_string())
}

/// A blocking pair whose other end echoes on a thread.
struct BlockingEcho {
    conn: Connection,
    echo: std::thread::JoinHandle<()>,
}

impl BlockingEcho {
    fn start() -> BlockingEcho {
        let (conn, mut peer) = pipe().expect("pipe");
        let echo = std::thread::spawn(move || loop {
            match peer.recv_bytes() {
                Ok(message) => peer.send_bytes(&message).expect("echo"),
                Err(err) if err.kind() == ErrorKind::Eof => return,
                Err(err) => panic!("echo: {err:#}"),
            }
        });
        BlockingEcho { conn, echo }
    }

    fn round_trips(&mut self, count: u64) -> Duration {
        let start = Instant::now();
        for _ in 0..count {
            self.conn.send_bytes(&PAYLOAD).expect("send");
            let echoed = self.conn.recv_bytes().expect("recv");
            assert_eq!(echoed.len(), PAYLOAD.len());
        }
        start.elapsed()
    }

    fn stop(self) {
        drop(self.conn);
        self.echo.join().expect("echo thread");
    }
}

/// An async pair whose other end echoes in a task of the same runtime.
struct AsyncEcho {
    conn: AsyncConnection,
    echo: tokio::task::JoinHandle<()>,
}

impl AsyncEcho {
    async fn start() -> AsyncEcho {
        let (conn, mut peer) = AsyncConnection::pair().expect("pair");
        let echo = tokio::spawn(async move {
            loop {
                match peer.recv_bytes().await {
                    Ok(message) => peer.send_bytes(&message).await.expect("echo"),
                    Err(err) if err.kind() == ErrorKind::Eof => return,
                    Err(err) => panic!("echo: {err:#}"),
                }
            }
        });
        AsyncEcho { conn, echo }
    }

    async fn round_trips(&mut self, count: u64) -> Duration {
        let start = Instant::now();
        for _ in 0..count {
            self.conn.send_bytes(&PAYLOAD).await.expect("send");
            let echoed = self.conn.recv_bytes().await.expect("recv");
            assert_eq!(echoed.len(), PAYLOAD.len());
        }
        start.elapsed()
    }

    async fn stop(self) {
        drop(self.conn);
        self.echo.await.expect("echo task");
    }
}
