//! The round trip of one trivial request: `pool.apply`,
//! `apply_async(..).get()` and `apply_async(..)` awaited (under
//! `futures_executor::block_on`), without and with the low-latency mode
//! (`PoolBuilder::spin`), against raw round trips measured in the same
//! run: this program re-executed as a child that echoes an 8-byte message
//! over a connected pair of Unix stream sockets, read blocking on both
//! sides (the floor without spinning), and polling (yielding between
//! tries, as the pool's spin does) on both sides
//! (the floor with it).
//!
//! Rows are measured in interleaved rounds, so that a burst of load on
//! the machine hits each alike. Each pool has one worker, as the echo has
//! one child.
//!
//! `cargo bench -p pool --bench latency`. Targets (issue 19): `apply` at
//! most 1.2x the blocking round trip; with spin, at most 15 us median.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use pool::Pool;

pool::task! {
    /// The cheapest task: what the pool itself costs per request.
    fn noop(x: u64) -> u64 { x }
}

/// Set in an echo child: the socket to connect to, and `block` or `poll`.
const ECHO_ENV: &str = "POOL_LATENCY_BENCH_ECHO";
const ROUNDS: usize = 5;
const PER_ROUND: usize = 4_000;
const WARM_UP: usize = 500;
const SPIN: Duration = Duration::from_micros(100);

/// One side of the raw round trip: blocking reads, or non-blocking ones
/// retried for up to [`SPIN`] (yielding between, as the pool's spin does) before a
/// blocking one, so that an idle echo child does not keep a core busy
/// while the other rows run.
#[derive(Clone, Copy)]
enum Reading {
    Block,
    Poll,
}

impl Reading {
    fn name(self) -> &'static str {
        match self {
            Reading::Block => "block",
            Reading::Poll => "poll",
        }
    }
}

fn read_message(stream: &mut UnixStream, reading: Reading, buf: &mut [u8; 8]) -> bool {
    // A polling side's socket stays non-blocking but for a read that
    // waited out the spin; writes of 8 bytes in lockstep never find it full.
    let mut got = 0;
    let polling_until = match reading {
        Reading::Poll => Some(Instant::now() + SPIN),
        Reading::Block => None,
    };
    let mut blocked = false;
    while got < buf.len() {
        match stream.read(&mut buf[got..]) {
            Ok(0) => return false,
            Ok(n) => got += n,
            Err(err) if err.kind() == ErrorKind::WouldBlock => {
                if polling_until.is_some_and(|until| Instant::now() >= until) {
                    stream.set_nonblocking(false).expect("blocking mode");
                    blocked = true;
                }
                // As the pool's spin does: with other threads runnable
                // on a core, a pure busy loop keeps the peer off it.
                std::thread::yield_now();
            }
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => panic!("echo read: {err}"),
        }
    }
    if blocked {
        stream.set_nonblocking(true).expect("non-blocking mode");
    }
    true
}

/// The echo child: answers each message with itself until end of file.
fn echo(spec: &str) {
    let (reading, path) = spec.split_once(':').expect("mode:path");
    let reading = match reading {
        "poll" => Reading::Poll,
        _ => Reading::Block,
    };
    let mut stream = UnixStream::connect(path).expect("connect to the bench");
    stream
        .set_nonblocking(matches!(reading, Reading::Poll))
        .expect("set the blocking mode");
    let mut buf = [0u8; 8];
    while read_message(&mut stream, reading, &mut buf) {
        stream.write_all(&buf).expect("echo write");
    }
}

/// A raw round trip's both ends: the child, and our side of the socket.
struct Echo {
    child: Child,
    stream: UnixStream,
    reading: Reading,
}

impl Echo {
    fn start(reading: Reading) -> Echo {
        let path = std::env::temp_dir().join(format!(
            "pool-latency-{}-{}.sock",
            std::process::id(),
            reading.name()
        ));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).expect("bind the echo socket");
        let child = Command::new(std::env::current_exe().expect("current_exe"))
            .env(
                ECHO_ENV,
                format!(
                    "{}:{}",
                    reading.name(),
                    path.to_str().expect("a UTF-8 path")
                ),
            )
            .spawn()
            .expect("spawn the echo child");
        let (stream, _) = listener.accept().expect("accept the echo child");
        let _ = std::fs::remove_file(&path);
        stream
            .set_nonblocking(matches!(reading, Reading::Poll))
            .expect("set the blocking mode");
        Echo {
            child,
            stream,
            reading,
        }
    }

    fn round_trip(&mut self, value: u64) {
        self.stream
            .write_all(&value.to_ne_bytes())
            .expect("write to the echo child");
        let mut buf = [0u8; 8];
        assert!(read_message(&mut self.stream, self.reading, &mut buf));
        assert_eq!(u64::from_ne_bytes(buf), value);
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        let _ = self.child.wait();
    }
}

/// What one row measures: one round trip of input `i`.
type Trip<'a> = Box<dyn FnMut(u64) + 'a>;

fn pool_with(spin: Duration) -> Pool {
    Pool::builder()
        .processes(1)
        .spin(spin)
        .build()
        .expect("start a pool")
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    if let Some(spec) = std::env::var_os(ECHO_ENV) {
        echo(spec.to_str().expect("a UTF-8 spec"));
        return;
    }
    pool::init();
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average at start: {}", load.trim());
    }
    let mut blocking = Echo::start(Reading::Block);
    let mut polling = Echo::start(Reading::Poll);
    let plain = pool_with(Duration::ZERO);
    let spinning = pool_with(SPIN);
    let apply = |pool: &Pool, x: u64| assert_eq!(pool.apply(noop, x).expect("apply"), x);
    let get = |pool: &Pool, x: u64| {
        let handle = pool.apply_async(noop, x);
        assert_eq!(handle.get(None).expect("apply_async"), x);
    };
    // Awaited on this thread (no runtime's reactor: the pool wakes it).
    let awaited = |pool: &Pool, x: u64| {
        let handle = pool.apply_async(noop, x);
        assert_eq!(futures_executor::block_on(handle).expect("awaited"), x);
    };
    let spin_us = SPIN.as_micros();
    let mut rows: Vec<(String, Trip<'_>)> = vec![
        (
            "raw socketpair, blocking reads".into(),
            Box::new(|x| blocking.round_trip(x)),
        ),
        (
            format!("raw socketpair, polling {spin_us} us, yielding"),
            Box::new(|x| polling.round_trip(x)),
        ),
        ("pool.apply".into(), Box::new(|x| apply(&plain, x))),
        ("apply_async(..).get()".into(), Box::new(|x| get(&plain, x))),
        (
            "apply_async(..).await, block_on".into(),
            Box::new(|x| awaited(&plain, x)),
        ),
        (
            format!("pool.apply, spin({spin_us} us)"),
            Box::new(|x| apply(&spinning, x)),
        ),
        (
            format!("apply_async(..).get(), spin({spin_us} us)"),
            Box::new(|x| get(&spinning, x)),
        ),
    ];
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(ROUNDS * PER_ROUND); rows.len()];
    for (_, trip) in &mut rows {
        for x in 0..WARM_UP as u64 {
            trip(x);
        }
    }
    for _ in 0..ROUNDS {
        for ((_, trip), samples) in rows.iter_mut().zip(&mut samples) {
            for x in 0..PER_ROUND as u64 {
                let began = Instant::now();
                trip(x);
                samples.push(began.elapsed().as_secs_f64() * 1e6);
            }
        }
    }
    println!(
        "{:<44} {:>10} {:>10} {:>14}",
        format!("round trip ({} each)", ROUNDS * PER_ROUND),
        "median us",
        "p99 us",
        "x blocking raw"
    );
    let mut floor = None;
    for ((name, _), mut samples) in rows.iter().zip(samples) {
        samples.sort_by(f64::total_cmp);
        let (median, p99) = (quantile(&samples, 0.5), quantile(&samples, 0.99));
        let floor = *floor.get_or_insert(median);
        println!(
            "{name:<44} {median:>10.1} {p99:>10.1} {:>13.2}x",
            median / floor
        );
    }
}
