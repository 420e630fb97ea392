//! Helpers shared by the tests in `tests/`. The peer programs those tests
//! start live in `src/bin/`; Cargo builds them before the tests and names
//! their paths in `CARGO_BIN_EXE_<name>`.

#![deny(unsafe_code)]

use std::process::{Child, Command};
use std::time::{Duration, Instant};

#[allow(unsafe_code)]
mod sys;

use sys::reset;

pub mod swarm;
pub use sys::{
    default_sigint, descriptor_limits, fork_sleeper, raise_descriptor_limit, set_descriptor_limit,
    signal,
};

/// The machine's `python3`, if there is one. Tests that talk to CPython
/// call this and skip, saying so on stderr, only where it is missing.
pub fn python3() -> Option<&'static str> {
    let found = Command::new("python3")
        .arg("--version")
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false);
    if found {
        Some("python3")
    } else {
        report_skip("python3 not found: the CPython side of this test does not run");
        None
    }
}

/// Says on the process's real stderr why a test, or a part of it, does not
/// run. Not through `eprintln!`, which the test harness captures and hides
/// for a test that passes: a skip must show in every run's output.
pub fn report_skip(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

/// Whether Slurm answers and its node can run jobs; if not, says why the
/// test skips; with `POOL_SLURM_TESTS=require` (which `.ci/run` sets once
/// it started Slurm) it fails instead.
pub fn slurm_ready(test: &str) -> bool {
    let states = Command::new("sinfo")
        .args(["--noheader", "--format=%T"])
        .stdin(std::process::Stdio::null())
        .output();
    let why = match states {
        Err(err) => format!("sinfo cannot run ({err}): no Slurm client here"),
        Ok(out) if !out.status.success() => format!(
            "sinfo failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Ok(out) => {
            let states = String::from_utf8_lossy(&out.stdout).to_string();
            let usable = states.lines().any(|state| {
                matches!(
                    state
                        .trim()
                        .trim_end_matches(['*', '~', '#', '!', '%', '$', '@', '^', '-']),
                    "idle" | "mixed" | "allocated" | "completing"
                )
            });
            if usable {
                return true;
            }
            format!("no Slurm node is up (sinfo: {:?})", states.trim())
        }
    };
    if std::env::var("POOL_SLURM_TESTS").as_deref() == Ok("require") {
        panic!("{test}: POOL_SLURM_TESTS=require but {why}");
    }
    report_skip(&format!(
        "{test}: {why}; start one with integration-tests/slurm/local-slurm.sh (as root)"
    ));
    false
}

/// The three-node cluster of `slurm/multi-node-slurm.sh` (its namespace
/// prefix from `POOL_MULTINODE_PREFIX`, as the script reads it): the
/// script's path if all three nodes take jobs (waiting, bounded, for a
/// cluster that is up to be ready again); if not, says why the test
/// skips, or with `POOL_MULTINODE_TESTS=require` (which `.ci/run` sets
/// once it started the cluster) fails instead.
pub fn multinode_cluster(test: &str) -> Option<std::path::PathBuf> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("slurm/multi-node-slurm.sh");
    let run = |action: &str| {
        Command::new(&script)
            .arg(action)
            .stdin(std::process::Stdio::null())
            .output()
    };
    let mut status = run("status");
    // A cluster that is up but not ready (an earlier test's job still
    // completing, a healed node not yet registered): `start` is
    // idempotent and waits, bounded, until every node takes jobs again.
    if let Ok(out) = &status {
        let up = !String::from_utf8_lossy(&out.stdout).contains("absent");
        if !out.status.success() && up && run("start").is_ok_and(|out| out.status.success()) {
            status = run("status");
        }
    }
    let why = match status {
        Ok(out) if out.status.success() => return Some(script),
        Err(err) => format!("{} cannot run ({err})", script.display()),
        Ok(out) => format!(
            "the three-node cluster is not up ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    };
    if std::env::var("POOL_MULTINODE_TESTS").as_deref() == Ok("require") {
        panic!("{test}: POOL_MULTINODE_TESTS=require but {why}");
    }
    report_skip(&format!(
        "{test}: {why}; start it with integration-tests/slurm/multi-node-slurm.sh start (as root)"
    ));
    None
}

/// Waits for `child` to exit, for at most `limit`; kills it and panics if it
/// does not, so that a test never hangs on a stuck peer.
pub fn wait_with_deadline(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child {} did not exit within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether a process with this pid still exists (and is not a zombie we
/// could reap: callers reap their own children first).
pub fn process_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state is the field after the parenthesised command name.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z") | Some("X") | None)
}

/// Aborts the whole test process if the guard is still alive `limit` after
/// it was made. A blocking receive has no timeout of its own; a test that
/// holds one of these while it receives fails loudly instead of hanging
/// when a peer never answers. Dropping the guard disarms it.
pub struct Watchdog {
    disarm: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    pub fn start(what: &str, limit: Duration) -> Watchdog {
        let (disarm, armed) = std::sync::mpsc::channel::<()>();
        let what = what.to_string();
        let thread = std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = armed.recv_timeout(limit) {
                eprintln!("{what}: still running after {limit:?}; aborting rather than hanging");
                std::process::abort();
            }
        });
        Watchdog {
            disarm: Some(disarm),
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Dropping the sender wakes the thread with `Disconnected`.
        drop(self.disarm.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs `command` to completion with its stdout and stderr captured, for
/// at most `limit`: past that it is killed and this panics, so a test of a
/// program that hangs fails instead of hanging.
pub fn output_with_deadline(command: &mut Command, limit: Duration) -> std::process::Output {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn test program");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let status = wait_with_deadline(&mut child, limit);
    std::process::Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Polls `condition` until it holds or `limit` passes; returns whether it held.
pub fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `pool`'s worker pids once every one of `before` that died has been
/// replaced (as many workers as before, none of the dead), or as they are
/// after 50 s. A call that went straight to an idle worker (the pool's
/// lease) can return before the dispatcher has seen another worker end,
/// so a pid list read at once may still name the dead one.
pub fn pids_once_replaced(pool: &pool::Pool, before: &[u32]) -> Vec<u32> {
    let mut after = pool.worker_pids();
    eventually(Duration::from_secs(50), || {
        after = pool.worker_pids();
        after.len() == before.len() && after.iter().all(|&pid| process_alive(pid))
    });
    after
}

/// What this process holds: open descriptors and threads, as `/proc`
/// lists them. Tests compare one taken before with one taken after to
/// find leaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Census {
    pub descriptors: usize,
    pub threads: usize,
}

/// Counts this process's descriptors and threads; `None` without `/proc`
/// (the caller says it skips). The descriptor that reads `/proc/self/fd`
/// is not counted.
pub fn census() -> Option<Census> {
    let count = |dir: &str| std::fs::read_dir(dir).ok().map(Iterator::count);
    Some(Census {
        descriptors: count("/proc/self/fd")?.checked_sub(1)?,
        threads: count("/proc/self/task")?,
    })
}

/// Opens descriptors until there is none left, then frees `free` of them;
/// dropping what it returns frees the rest.
pub fn use_up_descriptors(free: usize) -> Vec<std::fs::File> {
    let mut held = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(file) => held.push(file),
            Err(err) if err.raw_os_error() == Some(libc::EMFILE) => break,
            Err(err) => panic!("open /dev/null: {err}"),
        }
    }
    assert!(held.len() >= free, "fewer than {free} descriptors to free");
    held.truncate(held.len() - free);
    held
}

/// Reads one message of the wire format from a raw stream, within
/// `timeout` per read.
pub fn read_raw_message(
    stream: &mut std::net::TcpStream,
    timeout: Duration,
) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    stream.set_read_timeout(Some(timeout))?;
    let mut header = [0u8; 4];
    stream.read_exact(&mut header)?;
    let len = usize::try_from(i32::from_be_bytes(header))
        .map_err(|_| std::io::Error::other("negative length"))?;
    let mut message = vec![0u8; len];
    stream.read_exact(&mut message)?;
    Ok(message)
}

/// Whether a raw stream is open with nothing to read right now.
pub fn is_open_and_quiet(stream: &mut std::net::TcpStream) -> bool {
    use std::io::Read;
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let result = stream.read(&mut [0u8; 1]);
    let _ = stream.set_nonblocking(false);
    matches!(result, Err(err) if err.kind() == std::io::ErrorKind::WouldBlock)
}

/// Peers that flood a listener with an authkey: the silent ones connect
/// and say nothing; the others send a handshake message that the listener
/// must refuse at once (an oversized, negative or wrong one). All stay
/// connected until dropped.
pub struct Flood {
    pub silent: Vec<std::net::TcpStream>,
    pub garbage: Vec<std::net::TcpStream>,
}

impl Flood {
    /// Connects `silent + garbage` peers to `addr`, one garbage sender
    /// among every few silent ones, each connection within `timeout`.
    pub fn connect(
        addr: std::net::SocketAddr,
        silent: usize,
        garbage: usize,
        timeout: Duration,
    ) -> std::io::Result<Flood> {
        use std::io::Write;
        let mut flood = Flood {
            silent: Vec::with_capacity(silent),
            garbage: Vec::with_capacity(garbage),
        };
        let every = (silent + garbage) / garbage.max(1);
        for i in 0..silent + garbage {
            let stream = std::net::TcpStream::connect_timeout(&addr, timeout)
                .map_err(|err| std::io::Error::new(err.kind(), format!("flood peer {i}: {err}")))?;
            let garbage_turn = flood.garbage.len() < garbage
                && (i % every == every - 1 || flood.silent.len() == silent);
            if garbage_turn {
                let mut stream = stream;
                // The listener may have refused and closed already.
                let _ = stream.write_all(&refused_message(flood.garbage.len()));
                flood.garbage.push(stream);
            } else {
                flood.silent.push(stream);
            }
        }
        Ok(flood)
    }

    /// The local addresses of the silent peers: how the listener names
    /// them. Garbage peers are left out: the listener resets them, and a
    /// reset socket gives its ephemeral port back to the kernel although
    /// its descriptor stays open, so a later client may be handed the same
    /// address.
    pub fn silent_addresses(&self) -> std::collections::HashSet<std::net::SocketAddr> {
        self.silent
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }
}

/// The `i`th kind of handshake message a listener refuses at once.
fn refused_message(i: usize) -> Vec<u8> {
    let framed = |len: i32, payload_len: usize| {
        let mut message = len.to_be_bytes().to_vec();
        message.extend((0..payload_len).map(|b| (b * 31 + i) as u8));
        message
    };
    match i % 4 {
        0 => framed(i32::MAX, 0),
        1 => framed(-1, 8),
        2 => framed(257, 257),
        _ => framed(256, 256),
    }
}

/// A listener on 127.0.0.1 with `key` and otherwise default settings but
/// for an hour's handshake timeout, so that no silent peer can time out
/// during a test however loaded the machine; and its socket address.
pub fn patient_tcp_listener(key: &[u8]) -> (connection::Listener, std::net::SocketAddr) {
    let listener = connection::Listener::builder()
        .authkey(key)
        .handshake_timeout(Some(Duration::from_secs(3600)))
        .bind(&connection::Address::localhost(0))
        .unwrap();
    let connection::Address::Tcp(addr) = listener.address().clone() else {
        unreachable!("a localhost listener has a TCP address")
    };
    (listener, addr)
}

/// Runs `program` with `scenario` as its one argument, for at most `limit`,
/// and returns its stdout; fails the test, showing both streams, unless it
/// succeeds. For the scenario programs in `src/bin/` that print what
/// happened as `label: value` lines (read them with [`line()`]).
pub fn scenario_output(program: &str, scenario: &str, limit: Duration) -> String {
    scenario_output_with(program, &[scenario], limit)
}

/// [`scenario_output`] of a scenario that takes arguments after its name
/// (`args[0]`).
pub fn scenario_output_with(program: &str, args: &[&str], limit: Duration) -> String {
    let out = output_with_deadline(Command::new(program).args(args), limit);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{args:?}: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    stdout
}

/// The value of the first `label: value` line of `stdout`; panics, showing
/// `stdout`, if there is none.
pub fn line<'a>(stdout: &'a str, label: &str) -> &'a str {
    let prefix = format!("{label}: ");
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{stdout}"))
}

/// What `pipe_peer bulk-echo` and `tests/bulk_processes.rs` both know.
pub mod bulk {
    use connection::bytemuck::{Pod, Zeroable};

    /// A `#[repr(C)]` record sent as a slice, through `connection`'s
    /// re-export of bytemuck alone (hence the `crate` attribute).
    #[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
    #[bytemuck(crate = "connection::bytemuck")]
    #[repr(C)]
    pub struct Sample {
        pub time: f64,
        pub channel: u32,
        pub level: i16,
        pub flags: [u8; 2],
    }

    /// `count` distinct samples.
    pub fn samples(count: usize) -> Vec<Sample> {
        (0..count)
            .map(|i| Sample {
                time: i as f64 * 0.25,
                channel: i as u32 ^ 0x5a5a,
                level: (i as i16).wrapping_neg(),
                flags: [i as u8, (i >> 8) as u8],
            })
            .collect()
    }
}

/// Peers that connect to a listener and at once reset the connection
/// (`SO_LINGER` 0, then close), at a steady rate from a thread, until
/// stopped or until `max` resets or `patience` have gone by.
pub struct ResetFlood {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Gives how long the flood lasted.
    thread: Option<std::thread::JoinHandle<Duration>>,
}

impl ResetFlood {
    /// Starts resetting connections to `addr`, `per_second` of them.
    pub fn start(
        addr: std::net::SocketAddr,
        per_second: u32,
        max: u64,
        patience: Duration,
    ) -> ResetFlood {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let began = Instant::now();
        let thread = {
            let (stop, sent) = (stop.clone(), sent.clone());
            let every = Duration::from_secs(1) / per_second.max(1);
            std::thread::spawn(move || {
                let mut attempts: u32 = 0;
                while !stop.load(Ordering::Relaxed)
                    && sent.load(Ordering::Relaxed) < max
                    && began.elapsed() < patience
                {
                    // On schedule, not merely paced: a slow connect is
                    // made up for.
                    let due = began + every * attempts;
                    if let Some(early) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(early);
                    }
                    attempts += 1;
                    // A listener that does not keep up leaves its queue
                    // full, and the kernel then drops new peers: do not
                    // wait long for one.
                    let connected =
                        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100));
                    if let Ok(stream) = connected {
                        reset(stream);
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                began.elapsed()
            })
        };
        ResetFlood {
            stop,
            sent,
            thread: Some(thread),
        }
    }

    /// How many connections it has reset so far (peers the kernel
    /// dropped, the listener's queue being full, do not count).
    pub fn sent(&self) -> u64 {
        self.sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether it is still resetting (it was not stopped and has not run
    /// out of count or patience).
    pub fn running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops it; returns how many it reset, and for how long it ran.
    pub fn stop(mut self) -> (u64, Duration) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let lasted = self
            .thread
            .take()
            .map(|t| t.join().expect("the flood thread"));
        (self.sent(), lasted.unwrap_or_default())
    }
}

impl Drop for ResetFlood {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A crowd of peers that connect to a listener and say nothing, kept
/// `size` strong from a thread: each connection the listener closes (a
/// handshake timeout, say) is made again, as a hostile crowd would.
/// Dropping it closes them all.
pub struct SilentCrowd {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    connected: std::sync::Arc<std::sync::atomic::AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SilentCrowd {
    /// Starts connecting `size` silent peers to `addr`.
    pub fn start(addr: std::net::SocketAddr, size: usize) -> SilentCrowd {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let connected = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let thread = {
            let (stop, connected) = (stop.clone(), connected.clone());
            std::thread::spawn(move || {
                let mut peers: Vec<Option<std::net::TcpStream>> = (0..size).map(|_| None).collect();
                let mut buf = [0u8; 256];
                while !stop.load(Ordering::Relaxed) {
                    for peer in &mut peers {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let closed = match peer {
                            None => true,
                            Some(stream) => match std::io::Read::read(stream, &mut buf) {
                                Ok(0) => true,
                                Ok(_) => false,
                                Err(err) => err.kind() != std::io::ErrorKind::WouldBlock,
                            },
                        };
                        if closed {
                            *peer =
                                std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))
                                    .ok()
                                    .filter(|s| s.set_nonblocking(true).is_ok());
                            if peer.is_some() {
                                connected.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        SilentCrowd {
            stop,
            connected,
            thread: Some(thread),
        }
    }

    /// How many connections it has made so far, reconnections included.
    pub fn connected(&self) -> u64 {
        self.connected.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for SilentCrowd {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A pool of `workers` submitted to Slurm and no local ones, for the
/// Slurm test programs (`pool_slurm`, `pool_slurm_faults`); prints
/// `job: ID` for their tests. Panics, saying why, if it cannot be built.
pub fn slurm_pool(workers: pool::SlurmWorkers) -> pool::Pool {
    let pool = pool::Pool::builder()
        .processes(0)
        .slurm(workers)
        .build()
        .unwrap_or_else(|err| panic!("build: {err:#}"));
    println!("job: {}", pool.slurm_jobs()[0]);
    pool
}

/// A task in a library crate, for `tests/pool_link.rs`: the worker program
/// `pool_link_lacking` depends on this crate but never names it (so the
/// linker leaves the task out), `pool_link_linked` names it with
/// `pool::link_tasks!`.
pub mod link_probe {
    pool::task! {
        /// Cubes a number.
        pub fn cube(x: u64) -> u64 {
            x * x * x
        }
    }
}

/// The task of the stalled-worker programs (`pool_stalled_worker`,
/// `pool_head_threads`), whose inputs are large enough to fill a socket.
pub mod stalled {
    use std::time::Duration;

    /// Larger than any socket buffer (TCP on loopback included), so that
    /// a send to a worker that does not read cannot complete.
    pub const BIG: usize = 8 << 20;

    /// Takes `wanted` results of `weigh` calls on [`BIG`] inputs, printing
    /// each failure, then `ok: N` and `failed: N`.
    pub fn tally(results: impl Iterator<Item = pool::Result<(usize, usize)>>, wanted: usize) {
        let (mut ok, mut failed) = (0, 0);
        for result in results.take(wanted) {
            match result {
                Ok((_, len)) if len == BIG => ok += 1,
                Ok((index, len)) => println!("wrong: index={index} len={len}"),
                Err(err) => {
                    failed += 1;
                    println!("error: kind={:?} index={:?}", err.kind(), err.index());
                }
            }
        }
        println!("ok: {ok}");
        println!("failed: {failed}");
    }

    pool::task! {
        /// Sleeps `ms` milliseconds, then returns the size of `data`.
        pub fn weigh((ms, data): (u64, String)) -> usize {
            std::thread::sleep(Duration::from_millis(ms));
            data.len()
        }
    }
}
