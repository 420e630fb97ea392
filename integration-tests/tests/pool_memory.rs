//! Memory limits and per-worker state, in real worker processes (copies of
//! this test binary): a leaky task under a soft budget completes on fresh
//! workers whose peak stays under the budget plus one input; an input that
//! crosses the hard limit fails alone with `OutOfMemory`; remote workers
//! apply the budget they are sent; a worker the
//! kernel's OOM killer ends is reported as such; a `WorkerState` is built
//! once per worker and dropped when the worker retires.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use integration_tests::{report_skip, Watchdog};
use pool::{ErrorKind, Pool, WorkerState};

const LIMIT: Duration = Duration::from_secs(120);
const MIB: u64 = 1 << 20;

/// This process's peak resident size, in bytes, as the kernel keeps it
/// (`getrusage`'s `ru_maxrss`, in KiB).
fn peak_resident() -> u64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the rusage it is given, which is a valid,
    // zeroed one owned here; RUSAGE_SELF needs nothing else.
    let filled = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } == 0;
    // SAFETY: zeroed is a valid rusage, filled or not.
    let usage = unsafe { usage.assume_init() };
    if filled {
        usage.ru_maxrss as u64 * 1024
    } else {
        0
    }
}

pool::task! {
    /// Leaks `mib` MiB (written, so resident) and reports the worker's pid
    /// and peak resident size after it.
    fn leak(mib: u64) -> (u32, u64) {
        std::mem::forget(vec![1u8; (mib * MIB) as usize]);
        (std::process::id(), peak_resident())
    }
}

pool::task! {
    /// Allocates and writes `mib` MiB, then frees it.
    fn allocate(mib: u64) -> u64 {
        let block = vec![1u8; (mib * MIB) as usize];
        block.iter().step_by(4096).map(|&b| b as u64).sum()
    }
}

#[test]
fn a_leaky_task_under_a_memory_budget_completes_on_fresh_workers() {
    let _watchdog = Watchdog::start("leaky map under a budget", LIMIT);
    const BUDGET: u64 = 64 * MIB;
    const LEAK_MIB: u64 = 8;
    let pool = Pool::builder()
        .processes(2)
        .max_worker_memory(BUDGET)
        .build()
        .unwrap();
    // 60 inputs leak 480 MiB in all: without the budget each of the two
    // workers would reach about 240 MiB.
    let reports = pool
        .map(leak, std::iter::repeat(LEAK_MIB).take(60))
        .unwrap();
    let mut peaks: BTreeMap<u32, u64> = BTreeMap::new();
    for (pid, peak) in reports {
        let top = peaks.entry(pid).or_default();
        *top = (*top).max(peak);
    }
    eprintln!(
        "workers: {}, peaks (MiB): {:?}",
        peaks.len(),
        peaks.values().map(|p| p / MIB).collect::<Vec<_>>()
    );
    // Each worker holds its budget's worth of leaks, about 7 inputs.
    assert!(
        peaks.len() >= 6,
        "only {} workers ran 60 leaky inputs: {peaks:?}",
        peaks.len()
    );
    // Under the budget before its last input, plus that input's leak, plus
    // a little for what a worker allocates around it.
    let bound = BUDGET + LEAK_MIB * MIB + 4 * MIB;
    for (pid, peak) in &peaks {
        assert!(
            *peak <= bound,
            "worker {pid} peaked at {} MiB, over the budget plus one input ({} MiB)",
            peak / MIB,
            bound / MIB
        );
    }
}

#[test]
fn remote_workers_apply_the_budget_they_are_sent() {
    let _watchdog = Watchdog::start("leaky map on remote workers", LIMIT);
    const BUDGET: u64 = 64 * MIB;
    const LEAK_MIB: u64 = 8;
    const KEY: &str = "pool memory test key";
    let pool = Pool::builder()
        .processes(0)
        .listen("tcp:127.0.0.1:0", KEY.as_bytes().to_vec())
        .max_worker_memory(BUDGET)
        .build()
        .unwrap();
    let address = pool.listen_address().unwrap().to_string();
    // Copies of this test binary join as remote workers, one at a time:
    // each retires over its budget and exits, and the next joins.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let launcher = {
        let done = std::sync::Arc::clone(&done);
        std::thread::spawn(move || {
            let mut exits = Vec::new();
            while !done.load(Ordering::SeqCst) {
                let mut worker = std::process::Command::new(std::env::current_exe().unwrap())
                    .env(pool::CONNECT_ENV, &address)
                    .env(pool::AUTHKEY_ENV, KEY)
                    .spawn()
                    .expect("start a remote worker");
                exits.push(integration_tests::wait_with_deadline(&mut worker, LIMIT));
            }
            exits
        })
    };
    let reports = pool
        .map(leak, std::iter::repeat(LEAK_MIB).take(30))
        .unwrap();
    done.store(true, Ordering::SeqCst);
    drop(pool);
    let exits = launcher.join().unwrap();
    let pids: BTreeSet<u32> = reports.iter().map(|&(pid, _)| pid).collect();
    let top = reports.iter().map(|&(_, peak)| peak).max().unwrap_or(0);
    eprintln!(
        "remote workers: {}, largest peak {} MiB, exits {exits:?}",
        pids.len(),
        top / MIB
    );
    assert!(
        pids.len() >= 3,
        "remote workers were not replaced: {pids:?}"
    );
    assert!(
        top <= BUDGET + LEAK_MIB * MIB + 4 * MIB,
        "a remote worker peaked at {} MiB",
        top / MIB
    );
    // A worker that retires quits as told: status 0. (The last one may
    // have started as the pool went away, and found nobody to join.)
    let retired = &exits[..exits.len().saturating_sub(1)];
    assert!(retired.iter().all(|status| status.success()), "{exits:?}");
}

#[test]
fn an_input_over_the_hard_limit_fails_alone_with_out_of_memory() {
    let _watchdog = Watchdog::start("map over the hard limit", LIMIT);
    const HARD: u64 = 256 * MIB;
    let pool = Pool::builder()
        .processes(1)
        .hard_worker_memory(HARD)
        .build()
        .unwrap();
    let pids_before = pool.worker_pids();
    let results = pool
        .map_with(allocate, [1, 2, 1024, 3, 4])
        .keep_failures()
        .run()
        .unwrap();
    for (index, result) in results.iter().enumerate() {
        if index != 2 {
            assert!(result.is_ok(), "input {index}: {result:?}");
        }
    }
    let err = results[2].as_ref().unwrap_err();
    eprintln!("{err}");
    assert_eq!(err.kind(), ErrorKind::OutOfMemory, "{err}");
    assert_eq!(err.index(), Some(2), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("hard memory limit of {HARD} bytes")),
        "{err}"
    );
    // The worker was replaced, and the replacement works.
    assert_ne!(pool.worker_pids(), pids_before);
    assert_eq!(pool.map(allocate, [1]).unwrap(), [256]);
}

/// This process's memory cgroup (v1) directory, if it can make a child
/// there (root, and a v1 memory hierarchy mounted where systemd puts it).
fn writable_v1_memory_cgroup() -> Option<PathBuf> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroups.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then_some(path)
    })?;
    let dir = PathBuf::from("/sys/fs/cgroup/memory").join(path.trim_start_matches('/'));
    let child = dir.join(format!("pool-memory-test-{}", std::process::id()));
    std::fs::create_dir(&child).ok()?;
    Some(child)
}

pool::task! {
    /// Moves this worker into the memory cgroup `dir` (limited to 32 MiB)
    /// and writes 256 MiB there, for the kernel's OOM killer to end it.
    fn exhaust_cgroup(dir: PathBuf) -> std::io::Result<u64> {
        std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string())?;
        Ok(allocate.call(256))
    }
}

#[test]
fn a_worker_the_oom_killer_ends_is_reported_out_of_memory() {
    let _watchdog = Watchdog::start("OOM-killed worker", LIMIT);
    let Some(cgroup) = writable_v1_memory_cgroup() else {
        report_skip(
            "a_worker_the_oom_killer_ends_is_reported_out_of_memory: no writable cgroup v1 \
             memory controller here (needs root) to make the kernel's OOM killer strike",
        );
        return;
    };
    std::fs::write(cgroup.join("memory.limit_in_bytes"), (32 * MIB).to_string()).unwrap();
    let pool = Pool::builder().processes(1).build().unwrap();
    let result = pool.apply(exhaust_cgroup, cgroup.clone());
    let after = pool.apply(allocate, 1);
    drop(pool);
    // Empty once the killed worker is gone.
    let removed = integration_tests::eventually(Duration::from_secs(10), || {
        std::fs::remove_dir(&cgroup).is_ok()
    });
    let err = result.unwrap_err();
    eprintln!("{err}");
    assert_eq!(err.kind(), ErrorKind::OutOfMemory, "{err}");
    assert!(err.to_string().contains("OOM killer"), "{err}");
    assert_eq!(after.unwrap(), 256);
    assert!(removed, "cgroup {} left behind", cgroup.display());
}

/// How many times this process built a [`Counted`].
static BUILDS: AtomicUsize = AtomicUsize::new(0);

/// Per-worker state that counts its builds and leaves a marker file named
/// after its worker's pid when dropped.
struct Counted {
    markers: PathBuf,
}

impl WorkerState for Counted {
    fn build() -> Result<Self, pool::BuildError> {
        BUILDS.fetch_add(1, Ordering::SeqCst);
        let markers = std::env::var_os("POOL_MEMORY_TEST_MARKERS").ok_or("no marker directory")?;
        Ok(Counted {
            markers: markers.into(),
        })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let _ = std::fs::write(
            self.markers.join(format!("dropped-{}", std::process::id())),
            "",
        );
    }
}

pool::task! {
    /// The worker's pid and how many times it built its `Counted`.
    fn use_counted(_x: u32) -> Result<(u32, usize), pool::Error> {
        Counted::with(|_| (std::process::id(), BUILDS.load(Ordering::SeqCst)))
    }
}

#[test]
fn worker_state_is_built_once_per_worker_and_dropped_when_it_retires() {
    let _watchdog = Watchdog::start("worker state", LIMIT);
    let markers = std::env::temp_dir().join(format!("pool-state-markers-{}", std::process::id()));
    std::fs::create_dir_all(&markers).unwrap();
    let pool = Pool::builder()
        .processes(2)
        .max_tasks_per_child(10)
        .env("POOL_MEMORY_TEST_MARKERS", &markers)
        .build()
        .unwrap();
    let results = pool
        .map_with(use_counted, 0..40)
        .chunksize(1)
        .run()
        .unwrap();
    pool.close();
    pool.join();
    let pids: BTreeSet<u32> = results.iter().map(|&(pid, _)| pid).collect();
    let dropped: BTreeSet<u32> = std::fs::read_dir(&markers)
        .unwrap()
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.strip_prefix("dropped-")?.parse().ok()
        })
        .collect();
    let _ = std::fs::remove_dir_all(&markers);
    eprintln!("workers: {pids:?}, dropped in: {dropped:?}");
    assert!(
        results.iter().all(|&(_, builds)| builds == 1),
        "a worker built its state more than once: {results:?}"
    );
    assert!(pids.len() >= 4, "workers were not replaced: {pids:?}");
    assert_eq!(dropped, pids, "not every worker dropped its state");
}
