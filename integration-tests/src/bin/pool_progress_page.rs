//! A pool whose task turns on its worker's progress page (the memfd the
//! pool shares with each worker, where the worker counts the inputs it
//! started), for `tests/pool_progress_page.rs`: the task tries to resize
//! and seal the page, punches it out and writes nonsense there, and
//! prints what worked; then a task kills its worker, so that the pool
//! reads the page to find the input that was running, and the pool runs a
//! last map.

use pool::Pool;
use rustix::fs::{FallocateFlags, SealFlags};
use std::os::fd::{BorrowedFd, OwnedFd};

/// The worker's descriptor of its progress page, found by the name the
/// pool gives the memfd, as any code running in the worker could.
fn progress_page() -> OwnedFd {
    for entry in std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd") {
        let entry = entry.expect("a descriptor");
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if target.to_string_lossy().starts_with("/memfd:pool-progress") {
            let fd: i32 = entry
                .file_name()
                .to_string_lossy()
                .parse()
                .expect("a number");
            // SAFETY: `fd` is open in this process (just listed); the
            // borrow lasts only for the duplicate.
            let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
            return borrowed.try_clone_to_owned().expect("dup");
        }
    }
    panic!("no progress page among this worker's descriptors");
}

/// An outcome as `Ok`, `EPERM` or another error's number, for printing.
fn outcome<T>(result: rustix::io::Result<T>) -> String {
    match result {
        Ok(_) => "Ok".to_string(),
        Err(rustix::io::Errno::PERM) => "EPERM".to_string(),
        Err(err) => format!("errno {}", err.raw_os_error()),
    }
}

pool::task! {
    /// Does to its worker's progress page all a task can think of, and
    /// reports what worked. The resizing comes last, growing before
    /// shrinking, so that an unsealed page is left empty.
    fn attack_progress_page(_x: u32) -> Vec<String> {
        let page = progress_page();
        let page_size = rustix::fs::fstat(&page).expect("fstat").st_size as u64;
        let nonsense = u64::MAX.to_le_bytes();
        let punch = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
        // In this order: the page punched out, then nonsense in a new one.
        vec![
            format!("punch: {}", outcome(rustix::fs::fallocate(&page, punch, 0, page_size))),
            format!("write: {}", outcome(rustix::io::pwrite(&page, &nonsense, 0))),
            format!("seal: {}", outcome(rustix::fs::fcntl_add_seals(&page, SealFlags::WRITE))),
            format!("grow: {}", outcome(rustix::fs::ftruncate(&page, 2 * page_size))),
            format!("shrink: {}", outcome(rustix::fs::ftruncate(&page, 0))),
        ]
    }
}

pool::task! {
    /// Kills its worker: the pool reads the worker's progress page to
    /// find out which input it was running.
    fn abort_worker(_x: u32) -> u32 {
        std::process::abort()
    }
}

pool::task! {
    fn square(x: u32) -> u32 {
        x * x
    }
}

fn main() -> Result<(), pool::Error> {
    pool::init();
    let scenario = std::env::args().nth(1).unwrap_or_default();
    assert_eq!(scenario, "attack", "the one scenario");
    let pool = Pool::builder().processes(1).build()?;
    for line in pool.map(attack_progress_page, [0])?.concat() {
        println!("{line}");
    }
    match pool.map(abort_worker, [0]) {
        Ok(_) => println!("abort: unexpectedly ok"),
        Err(err) => println!("abort: kind={:?} message={}", err.kind(), err.message()),
    }
    println!("after: {:?}", pool.map(square, [1, 2, 3])?);
    Ok(())
}
