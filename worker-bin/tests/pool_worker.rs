//! pool-worker as a local pool's worker program, and its command line.

use std::process::Command;

use pool::builtin::{count_primes, worker_pid};

#[test]
fn serves_as_a_local_pools_worker_program() -> Result<(), pool::Error> {
    let pool = pool::Pool::builder()
        .processes(2)
        .worker_program(env!("CARGO_BIN_EXE_pool-worker"))
        .handle_interrupts(false)
        .build()?;
    let counts = pool.map(count_primes, [(0, 100), (100, 1000)])?;
    assert_eq!(counts, [25, 143]);
    let pid = pool.apply(worker_pid, ())?;
    assert!(pool.worker_pids().contains(&pid));
    Ok(())
}

#[test]
fn without_a_pool_or_connect_it_explains_its_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_pool-worker"))
        .env_remove("POOL_AUTHKEY")
        .output()
        .expect("run pool-worker");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--connect <ADDRESS>"), "{stderr}");
    assert!(stderr.contains("Usage: pool-worker"), "{stderr}");
}

#[test]
fn refuses_to_run_without_an_authkey() {
    let out = Command::new(env!("CARGO_BIN_EXE_pool-worker"))
        .args(["--connect", "127.0.0.1:9"])
        .env_remove("POOL_AUTHKEY")
        .output()
        .expect("run pool-worker");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no authkey"));
}
