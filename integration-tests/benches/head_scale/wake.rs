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
/// How long a sleeper waits for the head to greet it before it connects
/// again.
const GREETING_LIMIT: Duration = Duration::from_secs(2);
/// How long the head waits for a sleeper it accepted to say hello, which
/// a live one did as it connected.
const HELLO_LIMIT: Duration = Duration::from_millis(200);

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
    let Some(mut conn) = connect(address) else {
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

/// Connects to `address` and waits for the head's greeting; connects
/// again while it refuses or says nothing (thousands of sleepers connect
/// at once, past the listener's backlog, and a connection the listener
/// dropped looks established from this end), for up to [`CONNECT_LIMIT`].
fn connect(address: &str) -> Option<TcpStream> {
    let began = Instant::now();
    loop {
        let greeted = TcpStream::connect(address).and_then(|mut conn| {
            conn.write_all(&[0])?;
            conn.set_read_timeout(Some(GREETING_LIMIT))?;
            conn.read_exact(&mut [0])?;
            conn.set_read_timeout(None)?;
            Ok(conn)
        });
        match greeted {
            Ok(conn) => return Some(conn),
            Err(err) if began.elapsed() >= CONNECT_LIMIT => {
                eprintln!("a sleeper could not connect: {err}");
                return None;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Wakes `n` sleepers hosted `per_process` to a process (1: as real
/// workers; `n`: as a swarm), after `nap_ms` of nap each; `None` if
/// they could not all be started and connected.
pub fn measure(n: usize, per_process: usize, nap_ms: u64) -> Option<Woken> {
    let listener = TcpListener::bind("127.0.0.1:0").ok()?;
    // Room for every sleeper connecting at once (as far as the system's
    // `somaxconn` allows): a listen again on a listening socket sets it.
    rustix::net::listen(&listener, n.min(i32::MAX as usize) as i32).ok()?;
    let address = listener.local_addr().ok()?.to_string();
    let program = std::env::current_exe().ok()?;
    let mut hosts: Vec<Child> = Vec::new();
    let woken = std::thread::scope(|scope| {
        // Greeted as they connect, while the others start: a sleeper not
        // greeted soon connects again.
        let accepting = scope.spawn(|| accept(&listener, n));
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
        let conns = accepting.join().ok()??;
        wake_all(conns)
    });
    for mut host in hosts {
        if host.try_wait().ok().flatten().is_none() {
            let _ = host.kill();
        }
        let _ = host.wait();
    }
    woken
}

/// Accepts and greets the `n` sleepers.
fn accept(listener: &TcpListener, n: usize) -> Option<Vec<TcpStream>> {
    listener.set_nonblocking(true).ok()?;
    let mut conns = Vec::with_capacity(n);
    let began = Instant::now();
    while conns.len() < n && began.elapsed() < CONNECT_LIMIT {
        match listener.accept() {
            Ok((mut conn, _)) => {
                // A live sleeper says hello at once (a connection the
                // backlog dropped may come back to life as an end alone);
                // one whose greeting does not arrive connects again. No
                // delay, as the pool's connections to its workers.
                let greeted = conn.set_nonblocking(false).is_ok()
                    && conn.set_nodelay(true).is_ok()
                    && conn.set_read_timeout(Some(HELLO_LIMIT)).is_ok()
                    && conn.read_exact(&mut [0]).is_ok()
                    && conn.set_read_timeout(None).is_ok()
                    && conn.write_all(&[0]).is_ok();
                if greeted {
                    conns.push(conn);
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    if conns.len() < n {
        eprintln!("only {} of {n} sleepers connected", conns.len());
        return None;
    }
    Some(conns)
}

/// Lets the greeted sleepers `conns` fall asleep, wakes each with a
/// write, and reads when each woke.
fn wake_all(mut conns: Vec<TcpStream>) -> Option<Woken> {
    // Asleep in their reads, as idle workers are.
    std::thread::sleep(Duration::from_millis(300));
    let first = monotonic_nanos();
    for conn in &mut conns {
        // A sleeper gone (one that gave up on its greeting and connected
        // again) is not woken; it is missing from the count woken.
        let _ = conn.write_all(&[1]);
    }
    let writes = Duration::from_nanos(monotonic_nanos() - first);
    let mut woke: Vec<Duration> = conns
        .iter_mut()
        .filter_map(|conn| {
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
