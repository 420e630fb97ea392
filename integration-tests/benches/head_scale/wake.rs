//! The machine's floor for a map's first round: N sleepers (a process
//! each, as real workers, or threads of one process, as a swarm's), each
//! blocked reading its own TCP connection from this process, woken by one
//! small write each, in turn, as the head wakes N idle workers with their
//! first inputs. A woken sleeper reads the byte, notes when (the machine's
//! monotonic clock, as the naps do), naps, and sends the note back.
//!
//! No pool, no protocol: what it takes the machine to write N sockets and
//! schedule the N sleepers they wake, to set beside when the first round's
//! naps began in the same run.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::swarm::monotonic_nanos;

/// The listener's address, and how many sleepers this process hosts.
const ADDRESS_ENV: &str = "HEAD_SCALE_SLEEPER_ADDRESS";
const SLEEPERS_ENV: &str = "HEAD_SCALE_SLEEPERS";
const NAP_ENV: &str = "HEAD_SCALE_SLEEPER_NAP_MS";
/// As a simulated worker's.
const STACK: usize = 64 << 10;
const CONNECT_LIMIT: Duration = Duration::from_secs(60);

/// When the sleepers woke, from the first write: the median, the 90th
/// percentile and the last; and how long the writes took.
pub struct Woken {
    pub writes: Duration,
    pub median: Duration,
    pub p90: Duration,
    pub last: Duration,
    pub woken: usize,
}

/// If this process was started as a host of sleepers, runs them and
/// exits; otherwise returns at once. Call it first thing in `main`.
pub fn serve_if_sleeper() {
    let Some(address) = std::env::var_os(ADDRESS_ENV) else {
        return;
    };
    let address = address.into_string().expect("a sleeper's address is text");
    let count: usize = std::env::var(SLEEPERS_ENV)
        .ok()
        .and_then(|n| n.parse().ok())
        .expect("how many sleepers");
    let nap: u64 = std::env::var(NAP_ENV)
        .ok()
        .and_then(|n| n.parse().ok())
        .expect("the sleepers' nap");
    integration_tests::raise_descriptor_limit(count as u64 + 64);
    let sleepers: Vec<_> = (0..count)
        .filter_map(|_| {
            let address = address.clone();
            std::thread::Builder::new()
                .stack_size(STACK)
                .spawn(move || sleep_once(&address, nap))
                .ok()
        })
        .collect();
    for sleeper in sleepers {
        let _ = sleeper.join();
    }
    std::process::exit(0);
}

/// Connects, sleeps in a read until woken, naps and says when it woke.
fn sleep_once(address: &str, nap: u64) {
    let Ok(mut conn) = TcpStream::connect(address) else {
        return;
    };
    let mut byte = [0];
    if conn.read_exact(&mut byte).is_err() {
        return;
    }
    let woke = monotonic_nanos();
    std::thread::sleep(Duration::from_millis(nap));
    let _ = conn.write_all(&woke.to_le_bytes());
    // Until this process's end is read: the head reads every note first.
    let _ = conn.read(&mut byte);
}

/// Wakes `n` sleepers hosted `per_process` to a process (1: as real
/// workers; `n`: as a swarm), after `nap_ms` of nap each; `None` if
/// they could not all be started and connected.
pub fn measure(n: usize, per_process: usize, nap_ms: u64) -> Option<Woken> {
    let listener = TcpListener::bind("127.0.0.1:0").ok()?;
    let address = listener.local_addr().ok()?.to_string();
    let program = std::env::current_exe().ok()?;
    let mut hosts: Vec<Child> = Vec::new();
    let mut left = n;
    while left > 0 {
        let here = left.min(per_process.max(1));
        let child = Command::new(&program)
            .env(ADDRESS_ENV, &address)
            .env(SLEEPERS_ENV, here.to_string())
            .env(NAP_ENV, nap_ms.to_string())
            .stdin(Stdio::null())
            .spawn();
        match child {
            Ok(child) => hosts.push(child),
            Err(err) => {
                eprintln!("cannot start a sleeper: {err}");
                break;
            }
        }
        left -= here;
    }
    let woken = wake_all(&listener, n);
    for mut host in hosts {
        if host.try_wait().ok().flatten().is_none() {
            let _ = host.kill();
        }
        let _ = host.wait();
    }
    woken
}

/// Accepts the `n` sleepers, lets them fall asleep, wakes each with a
/// write, and reads when each woke.
fn wake_all(listener: &TcpListener, n: usize) -> Option<Woken> {
    listener.set_nonblocking(true).ok()?;
    let mut conns = Vec::with_capacity(n);
    let began = Instant::now();
    while conns.len() < n && began.elapsed() < CONNECT_LIMIT {
        match listener.accept() {
            Ok((conn, _)) => {
                // As the pool's connections to its workers.
                conn.set_nodelay(true).ok()?;
                conns.push(conn);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    if conns.len() < n {
        eprintln!("only {} of {n} sleepers connected", conns.len());
        return None;
    }
    // Asleep in their reads, as idle workers are.
    std::thread::sleep(Duration::from_millis(300));
    let first = monotonic_nanos();
    for conn in &mut conns {
        conn.write_all(&[1]).ok()?;
    }
    let writes = Duration::from_nanos(monotonic_nanos() - first);
    let mut woke: Vec<Duration> = conns
        .iter_mut()
        .filter_map(|conn| {
            conn.set_nonblocking(false).ok()?;
            let mut note = [0; 8];
            conn.read_exact(&mut note).ok()?;
            Some(Duration::from_nanos(
                u64::from_le_bytes(note).saturating_sub(first),
            ))
        })
        .collect();
    woke.sort_unstable();
    let at = |fraction: f64| woke[((woke.len() - 1) as f64 * fraction) as usize];
    (!woke.is_empty()).then(|| Woken {
        writes,
        median: at(0.5),
        p90: at(0.9),
        last: at(1.0),
        woken: woke.len(),
    })
}
