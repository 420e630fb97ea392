//! Shared memory for large messages, between two processes, against a raw
//! `UnixStream` measured in the same run (issue 10's targets).
//!
//! Three parts:
//! 1. In this process alone, what a 64 MiB memfd costs to fill and to read
//!    each way the path could do it (`pwrite` vs a fresh mapping and
//!    `memcpy`; `pread` vs a mapping with and without `MAP_POPULATE`): the
//!    figures behind the choices in `src/sys/shm.rs`.
//!    Also what the recycled path does instead: `memcpy` into a kept
//!    mapping of a reused memfd (the sender) and `pread` out of it (the
//!    receiver), beside the `memcpy` out of a kept mapping that the
//!    receiver does not do (it never maps a memfd its sender may still
//!    write).
//!    And what the receiver's check for holes costs (`lseek(SEEK_HOLE)`).
//!    And what every zero-copy message of fresh memory pays, whatever its
//!    receiver does: its sender's `munmap` of the pages it filled (needed
//!    before the write seal) and the freeing of its pages when the last
//!    descriptor closes. On the machine this is measured on, freeing
//!    alone runs at about the raw socket's speed, which bounds the
//!    zero-copy pair's ratio near 1-2x there; a sealed memfd can never be
//!    written again, so its pages cannot be reused.
//! 2. The threshold: `send_bytes` + `recv_bytes_into` through the socket
//!    and as shared memory (recycled memfds) at sizes from 256 KiB to
//!    16 MiB.
//! 3. The targets, 64 MiB messages: the copying pair (`send_bytes` +
//!    `recv_bytes_into`, one copy each side, through recycled memfds) and the zero-copy pair
//!    (`send_shared` of a `SharedBuf` filled before the clock starts +
//!    `recv_shared`, the receiver checking the first and last byte of its
//!    view), each against the raw socket sending the same bytes from a
//!    buffer filled before the clock starts. The zero-copy figure
//!    therefore measures handing over a message that already sits in
//!    shared memory: its cost does not grow with the size, which is the
//!    point of it, and is not a copy's speed. The row "fill + send_shared"
//!    shows a sender that writes a fresh `SharedBuf` inside the clock.
//!
//! Raw and ours alternate, several rounds each; the table shows medians
//! and the median of the per-round ratios. `cargo bench -p connection
//! --bench shared_memory` measures; without `--bench` (as `cargo test
//! --benches` runs it) every case runs once, to check that it works.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use connection::SharedBuf;
use rustix::fs::{FallocateFlags, MemfdFlags};
use rustix::mm::{MapFlags, ProtFlags};
use serde::{Deserialize, Serialize};

#[path = "stats.rs"]
mod stats;
#[path = "common/two_processes.rs"]
mod two_processes;
use stats::median;
use two_processes::Bench;

const MIB: usize = 1 << 20;
const BIG: usize = 64 * MIB;

#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
/// What the peer receives next: `count` messages of `size` bytes.
enum Job {
    /// Receive `count` messages of `size` bytes into one buffer, then ack.
    Raw {
        count: u64,
        size: usize,
    },
    Copying {
        count: u64,
        size: usize,
    },
    /// Receive `count` views, checking the first and last byte of each.
    Views {
        count: u64,
        size: usize,
    },
}

fn main() {
    if two_processes::is_peer() {
        peer();
        return;
    }
    let measure = std::env::args().any(|arg| arg == "--bench");
    let rounds = if measure { 9 } else { 1 };
    if SharedBuf::new(1).is_err() {
        println!("shared_memory bench: SKIPPED, memfd_create fails here");
        return;
    }
    let faults = page_fault_costs(rounds);
    let mut bench = Bench::start();
    let mut rows = Vec::new();
    for size in [256 * 1024, MIB, 4 * MIB, 16 * MIB] {
        let count = if measure { (64 * MIB / size) as u64 } else { 1 };
        rows.push(threshold_row(&mut bench, rounds, size, count));
    }
    let count = if measure { 16 } else { 1 };
    rows.extend(target_rows(&mut bench, rounds, count));
    bench.finish();
    if measure {
        print_faults(&faults, rounds);
        print_table(&rows, rounds);
    } else {
        println!("shared_memory bench: every case ran (add --bench to measure)");
    }
}

// --- Part 1: page faults, in this process -----------------------------------

fn memfd() -> OwnedFd {
    rustix::fs::memfd_create("bench", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .expect("memfd_create")
}

/// A shared mapping of `fd`; the caller unmaps it.
fn map(fd: &OwnedFd, len: usize, prot: ProtFlags, flags: MapFlags) -> *mut u8 {
    // SAFETY: a fresh mapping at an address the kernel picks, of a memfd
    // of at least `len` bytes that nothing shrinks while it is mapped.
    unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            MapFlags::SHARED | flags,
            fd,
            0,
        )
    }
    .expect("mmap")
    .cast()
}

fn unmap(ptr: *mut u8, len: usize) {
    // SAFETY: exactly a mapping that `map` made, no longer borrowed.
    unsafe { rustix::mm::munmap(ptr.cast(), len) }.expect("munmap");
}

/// GB/s of `run`, median over `rounds`.
fn gbps(rounds: usize, mut run: impl FnMut()) -> f64 {
    let figures: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            run();
            BIG as f64 / start.elapsed().as_secs_f64() / 1e9
        })
        .collect();
    median(&figures)
}

fn page_fault_costs(rounds: usize) -> Vec<(&'static str, f64)> {
    let data = pattern(BIG);
    let mut out = vec![0u8; BIG];
    let filled = memfd();
    rustix::io::pwrite(&filled, &data, 0).expect("pwrite");
    let reused = memfd();
    write_all_at(&reused, &data);
    let kept = map(
        &reused,
        BIG,
        ProtFlags::READ | ProtFlags::WRITE,
        MapFlags::empty(),
    );
    let rows = vec![
        (
            "memcpy into a reused buffer (the floor)",
            gbps(rounds, || out.copy_from_slice(&data)),
        ),
        (
            "fill: new memfd + pwrite",
            gbps(rounds, || {
                let fd = memfd();
                write_all_at(&fd, &data);
            }),
        ),
        (
            "fill: new memfd + ftruncate + mmap + memcpy",
            gbps(rounds, || {
                fill_mapped(&data, |fd| {
                    rustix::fs::ftruncate(fd, BIG as u64).expect("ftruncate")
                })
            }),
        ),
        (
            "fill: new memfd + fallocate + mmap + memcpy",
            gbps(rounds, || {
                fill_mapped(&data, |fd| {
                    rustix::fs::fallocate(fd, FallocateFlags::empty(), 0, BIG as u64)
                        .expect("fallocate")
                })
            }),
        ),
        (
            "fill: pwrite into a reused memfd (recycled)",
            gbps(rounds, || write_all_at(&reused, &data)),
        ),
        (
            "fill: memcpy into a kept mapping of a memfd",
            gbps(rounds, || {
                // SAFETY: the mapping is BIG writable bytes, ours alone.
                unsafe { std::slice::from_raw_parts_mut(kept, BIG) }.copy_from_slice(&data)
            }),
        ),
        (
            "read: pread into a reused buffer",
            gbps(rounds, || read_all_at(&filled, &mut out)),
        ),
        // What the receiver's check that a memfd has no hole costs: the
        // kernel walks its pages from the start (every message pays it).
        (
            "check: lseek(SEEK_HOLE) finds no hole",
            gbps(rounds, || {
                let end = rustix::fs::seek(&filled, rustix::fs::SeekFrom::Hole(0));
                assert_eq!(end.expect("SEEK_HOLE"), BIG as u64);
            }),
        ),
        (
            "read: memcpy from a kept mapping (not done)",
            gbps(rounds, || {
                // SAFETY: the mapping is BIG bytes, written by nobody now.
                out.copy_from_slice(unsafe { std::slice::from_raw_parts(kept, BIG) })
            }),
        ),
        (
            "read: mmap + memcpy into a reused buffer",
            gbps(rounds, || {
                let ptr = map(&filled, BIG, ProtFlags::READ, MapFlags::empty());
                // SAFETY: the mapping is BIG readable bytes.
                out.copy_from_slice(unsafe { std::slice::from_raw_parts(ptr, BIG) });
                unmap(ptr, BIG);
            }),
        ),
        (
            "read: mmap MAP_POPULATE + memcpy",
            gbps(rounds, || {
                let ptr = map(&filled, BIG, ProtFlags::READ, MapFlags::POPULATE);
                // SAFETY: the mapping is BIG readable bytes.
                out.copy_from_slice(unsafe { std::slice::from_raw_parts(ptr, BIG) });
                unmap(ptr, BIG);
            }),
        ),
        (
            "view: mmap, touch one byte a page",
            gbps(rounds, || {
                let ptr = map(&filled, BIG, ProtFlags::READ, MapFlags::empty());
                // SAFETY: the mapping is BIG readable bytes.
                let view = unsafe { std::slice::from_raw_parts(ptr, BIG) };
                std::hint::black_box(view.iter().step_by(4096).map(|&b| b as u64).sum::<u64>());
                unmap(ptr, BIG);
            }),
        ),
        (
            "view: mmap MAP_POPULATE, touch one byte a page",
            gbps(rounds, || {
                let ptr = map(&filled, BIG, ProtFlags::READ, MapFlags::POPULATE);
                // SAFETY: the mapping is BIG readable bytes.
                let view = unsafe { std::slice::from_raw_parts(ptr, BIG) };
                std::hint::black_box(view.iter().step_by(4096).map(|&b| b as u64).sum::<u64>());
                unmap(ptr, BIG);
            }),
        ),
        // What a zero-copy message pays, whatever reads it: its sender
        // unmaps the pages it filled before sealing them, and its last
        // descriptor frees them. Together they bound the zero-copy pair.
        (
            "send_shared: munmap a filled writable mapping",
            gbps_of(rounds, filled_mapping, |(fd, ptr)| {
                unmap(ptr, BIG);
                fd
            }),
        ),
        (
            "drop a view: close the last fd, freeing the pages",
            gbps_of(
                rounds,
                || {
                    let (fd, ptr) = filled_mapping();
                    unmap(ptr, BIG);
                    fd
                },
                drop,
            ),
        ),
    ];
    unmap(kept, BIG);
    rows
}

/// A new 64 MiB memfd and a writable mapping of it, every page written.
fn filled_mapping() -> (OwnedFd, *mut u8) {
    let fd = memfd();
    rustix::fs::ftruncate(&fd, BIG as u64).expect("ftruncate");
    let ptr = map(
        &fd,
        BIG,
        ProtFlags::READ | ProtFlags::WRITE,
        MapFlags::empty(),
    );
    // SAFETY: the mapping is BIG writable bytes, ours alone.
    unsafe { std::slice::from_raw_parts_mut(ptr, BIG) }.fill(1);
    (fd, ptr)
}

/// GB/s of `timed`, given what `setup` made outside the clock; what
/// `timed` returns is dropped outside the clock too. Median over `rounds`.
fn gbps_of<S, R>(
    rounds: usize,
    mut setup: impl FnMut() -> S,
    mut timed: impl FnMut(S) -> R,
) -> f64 {
    let figures: Vec<f64> = (0..rounds)
        .map(|_| {
            let made = setup();
            let start = Instant::now();
            let left = timed(made);
            let elapsed = start.elapsed();
            drop(left);
            BIG as f64 / elapsed.as_secs_f64() / 1e9
        })
        .collect();
    median(&figures)
}

/// A new memfd sized by `size`, mapped, `data` copied in, unmapped.
fn fill_mapped(data: &[u8], size: impl FnOnce(&OwnedFd)) {
    let fd = memfd();
    size(&fd);
    let ptr = map(
        &fd,
        BIG,
        ProtFlags::READ | ProtFlags::WRITE,
        MapFlags::empty(),
    );
    // SAFETY: the mapping is BIG writable bytes, ours alone.
    unsafe { std::slice::from_raw_parts_mut(ptr, BIG) }.copy_from_slice(data);
    unmap(ptr, BIG);
}

fn write_all_at(fd: &OwnedFd, data: &[u8]) {
    let mut done = 0;
    while done < data.len() {
        done += rustix::io::pwrite(fd, &data[done..], done as u64).expect("pwrite");
    }
}

fn read_all_at(fd: &OwnedFd, out: &mut [u8]) {
    let mut done = 0;
    while done < out.len() {
        done += rustix::io::pread(fd, &mut out[done..], done as u64).expect("pread");
    }
}

fn print_faults(rows: &[(&str, f64)], rounds: usize) {
    println!();
    println!("64 MiB in one process, medians of {rounds} rounds");
    for (case, gbps) in rows {
        println!("{case:<48} {gbps:>8.2} GB/s");
    }
}

// --- Parts 2 and 3: two processes -------------------------------------------

struct Row {
    case: String,
    raw: f64,
    ours: f64,
    ratio: f64,
    target: Option<f64>,
}

/// Runs `base` and `ours` alternately for `rounds` and returns the row of
/// their throughputs (GB/s).
fn row(
    bench: &mut Bench,
    rounds: usize,
    case: String,
    target: Option<f64>,
    mut base: impl FnMut(&mut Bench) -> (Duration, u64),
    mut ours: impl FnMut(&mut Bench) -> (Duration, u64),
) -> Row {
    let rate = |(d, bytes): (Duration, u64)| bytes as f64 / d.as_secs_f64() / 1e9;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        if round % 2 == 0 {
            a.push(rate(base(bench)));
            b.push(rate(ours(bench)));
        } else {
            b.push(rate(ours(bench)));
            a.push(rate(base(bench)));
        }
    }
    let ratios: Vec<f64> = b.iter().zip(&a).map(|(o, r)| o / r).collect();
    Row {
        case,
        raw: median(&a),
        ours: median(&b),
        ratio: median(&ratios),
        target,
    }
}

fn threshold_row(bench: &mut Bench, rounds: usize, size: usize, count: u64) -> Row {
    let payload = pattern(size);
    let case = format!("{} KiB: socket vs shared memory", size / 1024);
    row(
        bench,
        rounds,
        case,
        None,
        |b| {
            b.ours.set_shared_memory_threshold(None);
            copy_sink(b, &payload, count)
        },
        |b| {
            b.ours.set_shared_memory_threshold(Some(0));
            copy_sink(b, &payload, count)
        },
    )
}

fn target_rows(bench: &mut Bench, rounds: usize, count: u64) -> Vec<Row> {
    let payload = pattern(BIG);
    bench.ours.set_shared_memory_threshold(Some(MIB));
    let copying = row(
        bench,
        rounds,
        "64 MiB send_bytes + recv_bytes_into".into(),
        Some(1.6),
        |b| raw_sink(b, &payload, count),
        |b| copy_sink(b, &payload, count),
    );
    let zero_copy = row(
        bench,
        rounds,
        "64 MiB send_shared + recv_shared".into(),
        Some(10.0),
        |b| raw_sink(b, &payload, count),
        |b| {
            let bufs: Vec<SharedBuf> = (0..count).map(|_| filled(&payload)).collect();
            view_sink(b, bufs)
        },
    );
    let fill_and_send = row(
        bench,
        rounds,
        "64 MiB fill + send_shared + recv_shared".into(),
        None,
        |b| raw_sink(b, &payload, count),
        |b| {
            b.order(Job::Views {
                count,
                size: payload.len(),
            });
            let start = Instant::now();
            for _ in 0..count {
                let buf = filled(&payload);
                b.ours.send_shared(buf).expect("send_shared");
            }
            b.ours.recv_bytes().expect("ack");
            (start.elapsed(), count * payload.len() as u64)
        },
    );
    vec![copying, zero_copy, fill_and_send]
}

fn filled(payload: &[u8]) -> SharedBuf {
    let mut buf = SharedBuf::new(payload.len()).expect("SharedBuf::new");
    buf.copy_from_slice(payload);
    buf
}

fn print_table(rows: &[Row], rounds: usize) {
    println!();
    println!("two processes, medians of {rounds} interleaved rounds (GB/s; ratio = ours / base)");
    println!(
        "{:<44} {:>10} {:>10} {:>9} {:>8}  result",
        "case", "base", "ours", "ratio", "target"
    );
    for row in rows {
        let (target, result) = match row.target {
            Some(target) if row.ratio >= target => (format!(">= {target}x"), "PASS"),
            Some(target) => (format!(">= {target}x"), "FAIL"),
            None => (String::new(), ""),
        };
        println!(
            "{:<44} {:>10.2} {:>10.2} {:>8.2}x {:>8}  {}",
            row.case, row.raw, row.ours, row.ratio, target, result
        );
    }
    println!();
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

// --- Timed loops, parent side -------------------------------------------------

fn raw_sink(bench: &mut Bench, payload: &[u8], count: u64) -> (Duration, u64) {
    bench.order(Job::Raw {
        count,
        size: payload.len(),
    });
    let start = Instant::now();
    for _ in 0..count {
        bench
            .raw
            .write_all(&(payload.len() as i32).to_be_bytes())
            .expect("raw header");
        bench.raw.write_all(payload).expect("raw payload");
    }
    let mut ack = [0u8; 1];
    bench.raw.read_exact(&mut ack).expect("raw ack");
    (start.elapsed(), count * payload.len() as u64)
}

fn copy_sink(bench: &mut Bench, payload: &[u8], count: u64) -> (Duration, u64) {
    bench.order(Job::Copying {
        count,
        size: payload.len(),
    });
    bench.time_sends(payload, count)
}

fn view_sink(bench: &mut Bench, bufs: Vec<SharedBuf>) -> (Duration, u64) {
    let count = bufs.len() as u64;
    let size = bufs.first().map_or(0, |buf| buf.len());
    bench.order(Job::Views { count, size });
    let start = Instant::now();
    for buf in bufs {
        bench.ours.send_shared(buf).expect("send_shared");
    }
    bench.ours.recv_bytes().expect("ack");
    (start.elapsed(), count * size as u64)
}

// --- The peer process -----------------------------------------------------------

fn peer() {
    let (mut orders, mut ours, mut raw) = two_processes::claim_peer_ends();
    let mut sink = vec![0u8; BIG];
    while let Some(job) = orders.next_job::<Job>() {
        match job {
            Job::Raw { count, size } => {
                for _ in 0..count {
                    let mut header = [0u8; 4];
                    raw.read_exact(&mut header).expect("peer: raw header");
                    let len = i32::from_be_bytes(header) as usize;
                    raw.read_exact(&mut sink[..len]).expect("peer: raw payload");
                    check(&sink[..len], size);
                }
                raw.write_all(b"k").expect("peer: raw ack");
            }
            Job::Copying { count, size } => {
                for _ in 0..count {
                    let len = ours
                        .recv_bytes_into(&mut sink, 0)
                        .expect("peer: recv_bytes_into");
                    check(&sink[..len], size);
                }
                ours.send_bytes(b"k").expect("peer: ack");
            }
            Job::Views { count, size } => {
                for _ in 0..count {
                    let view = ours.recv_shared().expect("peer: recv_shared");
                    check(&view, size);
                }
                ours.send_bytes(b"k").expect("peer: ack");
            }
        }
    }
}

/// The same cheap check for every case: the length, and the last byte.
fn check(message: &[u8], size: usize) {
    assert_eq!(message.len(), size, "peer: message length");
    assert_eq!(
        message[size - 1],
        ((size - 1) % 251) as u8,
        "peer: last byte"
    );
}
