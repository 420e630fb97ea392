//! A program that runs one of the pool's message-limit scenarios, named by
//! its first argument, and prints what happened, one `key: value` line at
//! a time, for `tests/pool_limits.rs`: inputs and outputs larger than
//! `PoolBuilder::max_message_size`, chunks that must be split, and workers
//! that cannot take what they are sent.

use pool::{Pool, Result};

/// The message limit of these scenarios: small, so that oversized values
/// are quick to build.
const LIMIT: u64 = 1 << 20;

pool::task! {
    /// The length of a byte vector.
    fn length(bytes: Vec<u8>) -> usize { bytes.len() }
}

pool::task! {
    /// A byte vector of `len` bytes.
    fn make(len: usize) -> Vec<u8> { vec![7; len] }
}

pool::task! {
    /// Caps this worker's address space at its current size plus `headroom`
    /// bytes: a worker that then cannot allocate the buffer for a large
    /// message aborts while reading it, before it starts any input.
    fn cap_memory(headroom: u64) -> Result<(), String> {
        let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmSize:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or("no VmSize")?;
        let limit = kib * 1024 + headroom;
        let limits = libc::rlimit { rlim_cur: limit, rlim_max: limit };
        // SAFETY: setrlimit reads a valid rlimit struct for the call.
        match unsafe { libc::setrlimit(libc::RLIMIT_AS, &limits) } {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error().to_string()),
        }
    }
}

fn report(label: &str, result: Result<impl std::fmt::Debug>) {
    match result {
        Ok(value) => println!("{label}: ok {value:?}"),
        Err(err) => println!(
            "{label}: kind={:?} index={:?} message={}",
            err.kind(),
            err.index(),
            err.message()
        ),
    }
}

fn main() -> Result<()> {
    pool::init();
    let mode = std::env::args().nth(1).unwrap_or_default();
    let limited = || {
        Pool::builder()
            .processes(2)
            .max_message_size(LIMIT)
            .handle_interrupts(false)
    };
    let big = || vec![1u8; 2 << 20];
    match mode.as_str() {
        "input" => {
            let pool = limited().build()?;
            report("map", pool.map(length, [vec![1], big(), vec![2, 3]]));
            for (i, result) in pool.imap(length, [vec![1], big(), vec![2, 3]]).enumerate() {
                report(&format!("imap {i}"), result);
            }
            report("apply", pool.apply(length, big()));
            // Four inputs of 400 KiB in one chunk are 1.6 MiB: the pool
            // splits the chunk instead of sending what the worker refuses.
            let quarter = vec![0u8; 400 << 10];
            report(
                "chunked",
                pool.map_with(length, vec![quarter; 4]).chunksize(4).run(),
            );
            report("pids after", Ok(pool.worker_pids().len()));
            let raised = limited().max_message_size(4 * LIMIT).build()?;
            report("raised", raised.apply(length, big()));
        }
        "output" => {
            let pool = limited().processes(1).build()?;
            let before = pool.apply(pool::builtin::worker_pid, ())?;
            report("output", pool.apply(make, 2 << 20));
            report("small output", pool.apply(make, 10).map(|v| v.len()));
            let after = pool.apply(pool::builtin::worker_pid, ())?;
            println!("same worker: {}", before == after);
            report(
                "map outputs",
                pool.map_with(make, [100, 600 << 10, 600 << 10])
                    .chunksize(3)
                    .run()
                    .map(|outs| outs.iter().map(Vec::len).collect::<Vec<_>>()),
            );
            let raised = limited().processes(1).max_message_size(4 * LIMIT).build()?;
            report("raised", raised.apply(make, 2 << 20).map(|v| v.len()));
        }
        "bounce" => {
            // Each worker can allocate 32 MiB more than it holds at start;
            // a 64 MiB input kills it while it reads the batch.
            let pool = Pool::builder()
                .processes(1)
                .max_message_size(256 << 20)
                .initializer(cap_memory, 32 << 20)
                .handle_interrupts(false)
                .build()?;
            report("huge", pool.apply(length, vec![0u8; 64 << 20]));
            report("after", pool.apply(length, vec![0u8; 10]));
        }
        "over_2_gib" => {
            // Messages of 2 GiB and more take CPython's 8-byte length
            // header; with the limit raised, one input of that size goes
            // to a worker and its 2 GiB output comes back.
            let pool = Pool::builder()
                .processes(1)
                .max_message_size(3 << 30)
                .handle_interrupts(false)
                .build()?;
            let len = (2usize << 30) + 16;
            report("over 2 GiB in", pool.apply(length, vec![5u8; len]));
            report("over 2 GiB out", pool.apply(make, len).map(|v| v.len()));
        }
        other => println!("unknown scenario {other:?}"),
    }
    Ok(())
}
