//! The resume target of map journals: SIGKILL a program at random
//! points of a 100,000-input journaled map, ten times in a row, rerunning
//! it each time, then let it finish. The final results must equal an
//! uninterrupted run's, and the inputs run more than once must be at
//! most those in flight at each kill plus one sync interval's worth.
//!
//! `cargo bench -p pool --bench journal_resume`. The bench binary is
//! both the driver and the program it kills (run again with
//! `POOL_RESUME_CHILD` set). Tasks take 0.2 ms rather than 1 ms, so that
//! the whole fits in about a minute on 2 workers; the map uses chunks of
//! `CHUNK` inputs (the automatic size, an eighth of what is left, would
//! put most of the map in flight at once). Every run of the task appends
//! its index to a file opened `O_APPEND` before it works, so a run cut
//! short by the kill counts too.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pool::Pool;

const INPUTS: u64 = 100_000;
const WORKERS: usize = 2;
const CHUNK: usize = 20;
const KILLS: usize = 10;
const TASK: Duration = Duration::from_micros(200);
/// Inputs a map has in flight at most: `pool`'s window of three chunks
/// per worker (one running, one queued, one on its way).
const WINDOW: usize = 3 * WORKERS * CHUNK;

pool::task! {
    fn work(x: u64) -> u64 {
        static RUNS: OnceLock<File> = OnceLock::new();
        let runs = RUNS.get_or_init(|| {
            let path = std::env::var_os("POOL_RESUME_RUNS").expect("POOL_RESUME_RUNS");
            OpenOptions::new().append(true).custom_flags(libc::O_APPEND).open(path).expect("runs file")
        });
        // One write of 8 bytes on an O_APPEND file: never interleaved.
        (&*runs).write_all(&x.to_le_bytes()).expect("runs file");
        std::thread::sleep(TASK);
        x.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17)
    }
}

/// The killed program: the map, journaled if `POOL_RESUME_JOURNAL` is
/// set, its outputs written to `POOL_RESUME_OUT`.
fn child() {
    let pool = Pool::new(WORKERS).expect("a pool");
    let call = pool.map_with(work, 0..INPUTS).chunksize(CHUNK);
    let outputs = match std::env::var_os("POOL_RESUME_JOURNAL") {
        Some(path) => call.journal(path).run(),
        None => call.run(),
    }
    .expect("the map");
    let bytes: Vec<u8> = outputs.iter().flat_map(|out| out.to_le_bytes()).collect();
    std::fs::write(std::env::var_os("POOL_RESUME_OUT").expect("out"), bytes).expect("out");
}

struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn spawn(runs: &Path, out: &Path, journal: Option<&Path>) -> Child {
    let mut command = Command::new(std::env::current_exe().expect("own path"));
    command
        .env("POOL_RESUME_CHILD", "1")
        .env("POOL_RESUME_RUNS", runs)
        .env("POOL_RESUME_OUT", out);
    if let Some(journal) = journal {
        command.env("POOL_RESUME_JOURNAL", journal);
    }
    command.spawn().expect("the program")
}

/// Runs counted in the runs file so far.
fn runs_so_far(runs: &Path) -> u64 {
    std::fs::metadata(runs).map_or(0, |meta| meta.len() / 8)
}

/// Runs per input, from the runs file.
fn runs_per_input(runs: &Path) -> Vec<u32> {
    let bytes = std::fs::read(runs).expect("runs file");
    let mut counts = vec![0u32; INPUTS as usize];
    for word in bytes.chunks_exact(8) {
        let index = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        counts[index as usize] += 1;
    }
    counts
}

/// Waits until no worker of a killed program is left appending (they end
/// on their parent's death): the runs file stops growing.
fn settle(runs: &Path) {
    let mut last = runs_so_far(runs);
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = runs_so_far(runs);
        if now == last {
            return;
        }
        last = now;
    }
}

fn main() {
    pool::init();
    if std::env::var_os("POOL_RESUME_CHILD").is_some() {
        return child();
    }
    let scratch = Scratch {
        dir: std::env::temp_dir().join(format!("pool-journal-resume-{}", std::process::id())),
    };
    std::fs::create_dir_all(&scratch.dir).expect("scratch dir");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
        | 1;
    let mut state = seed;
    let mut random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };

    // The uninterrupted run, no journal: the reference results.
    let (runs, reference) = (scratch.path("runs-plain"), scratch.path("out-plain"));
    File::create(&runs).expect("runs file");
    let began = Instant::now();
    let status = spawn(&runs, &reference, None).wait().expect("wait");
    assert!(status.success(), "the uninterrupted run failed: {status}");
    let plain = began.elapsed().as_secs_f64();
    let rate = INPUTS as f64 / plain;

    // Killed and rerun.
    let (runs, out, journal) = (
        scratch.path("runs"),
        scratch.path("out"),
        scratch.path("journal"),
    );
    File::create(&runs).expect("runs file");
    let mut kills = 0;
    let mut lost = Vec::new();
    let began = Instant::now();
    for kill in 0..KILLS {
        let counts = runs_per_input(&runs);
        let done = counts.iter().filter(|&&n| n > 0).count() as u64;
        let before = runs_so_far(&runs);
        // A random point of what is left, leaving room for the kills to
        // come: up to twice an even share of the rest.
        let share = (INPUTS - done) * 2 / (KILLS - kill + 1) as u64;
        let target = before + 1 + random() % share.max(1);
        let mut program = spawn(&runs, &out, Some(&journal));
        let finished = loop {
            if let Some(status) = program.try_wait().expect("wait") {
                assert!(status.success(), "a resumed run failed: {status}");
                break true;
            }
            if runs_so_far(&runs) >= target {
                program.kill().expect("SIGKILL");
                program.wait().expect("wait");
                break false;
            }
            std::thread::sleep(Duration::from_micros(500));
        };
        if finished {
            println!("run {kill}: finished before its kill point");
            break;
        }
        kills += 1;
        settle(&runs);
        let journal_len = std::fs::metadata(&journal).map_or(0, |meta| meta.len());
        lost.push(runs_so_far(&runs) - before);
        println!(
            "kill {kills}: after {} runs of this program's tasks, {done} inputs done before it; \
             journal {journal_len} bytes",
            runs_so_far(&runs) - before
        );
    }
    let status = spawn(&runs, &out, Some(&journal)).wait().expect("wait");
    assert!(status.success(), "the last run failed: {status}");
    let resumed = began.elapsed().as_secs_f64();

    let counts = runs_per_input(&runs);
    let never = counts.iter().filter(|&&n| n == 0).count();
    let again = counts.iter().filter(|&&n| n > 1).count();
    let extra: u64 = counts.iter().map(|&n| u64::from(n.saturating_sub(1))).sum();
    let sync_worth = (rate * pool::DEFAULT_JOURNAL_SYNC.as_secs_f64()).ceil() as usize;
    let bound = kills * WINDOW + sync_worth;
    let equal = std::fs::read(&out).expect("out") == std::fs::read(&reference).expect("reference");
    println!(
        "{INPUTS} inputs of {} ms, {WORKERS} workers, chunks of {CHUNK}; seed {seed:#x}",
        TASK.as_secs_f64() * 1e3
    );
    println!("uninterrupted run: {plain:.1} s ({rate:.0} inputs/s); killed and resumed: {resumed:.1} s in all");
    println!("kills: {kills}");
    println!("inputs never run: {never}");
    println!("inputs run more than once: {again} ({extra} extra runs)");
    println!(
        "bound: {bound} = {kills} kills x {WINDOW} in flight (3 chunks per worker) + {sync_worth} \
         (one {} s sync interval at {rate:.0} inputs/s): {}",
        pool::DEFAULT_JOURNAL_SYNC.as_secs_f64(),
        if again <= bound { "WITHIN" } else { "OVER" }
    );
    println!("results equal to the uninterrupted run's: {equal}");
    assert!(
        never == 0 && equal && again <= bound,
        "the resume target is missed"
    );
}
