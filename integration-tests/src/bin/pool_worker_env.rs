//! A worker program built on `worker_bin` (so `--connect` works, and its
//! copies start as workers in `pool::init()`) with a task that reports its
//! worker's environment, and a pool host to run that task:
//!
//! - `host local`: a pool of one local worker (this program, re-executed);
//! - `host remote`: a pool that listens on loopback with the key in
//!   `POOL_AUTHKEY` and prints `address: ...` for one remote worker;
//! - `secure`: calls `pool::init()`, then prints whether `AT_SECURE` is set
//!   and whether the pool's variables are still in the environment;
//! - anything else: `pool-worker`'s command line.
//!
//! The host prints the task's answer as `worker env: NAME=VALUE` lines and
//! `child env: ...` lines (what `env` printed, started by the task).

use std::io::Write;

pool::task! {
    /// This worker's environment, and what `env` prints when a task
    /// starts it.
    fn worker_environment(_unused: u8) -> (Vec<(String, String)>, String) {
        let own = std::env::vars_os()
            .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
            .collect();
        let child = std::process::Command::new("env")
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_else(|err| format!("cannot run env: {err}"));
        (own, child)
    }
}

fn main() {
    let mode: Vec<String> = std::env::args().skip(1).take(2).collect();
    match mode.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["host", how] => {
            pool::init();
            if let Err(err) = host(how == "remote") {
                println!("error: {err:#}");
                std::process::exit(3);
            }
        }
        ["secure", ..] => secure(),
        _ => worker_bin::main(),
    }
}

fn host(remote: bool) -> Result<(), pool::Error> {
    let builder = match remote {
        true => {
            let key = std::env::var_os(pool::AUTHKEY_ENV).expect("POOL_AUTHKEY for the host");
            pool::Pool::builder()
                .processes(0)
                .listen("tcp:127.0.0.1:0", key.into_encoded_bytes())
        }
        false => pool::Pool::builder().processes(1),
    };
    let pool = builder.build()?;
    if let Some(address) = pool.listen_address() {
        println!("address: {address}");
        std::io::stdout().flush().expect("flush");
    }
    let (own, child) = pool.apply(worker_environment, 0)?;
    for (name, value) in own {
        println!("worker env: {name}={value}");
    }
    for line in child.lines() {
        println!("child env: {line}");
    }
    pool.join();
    Ok(())
}

/// What a program started with a pool's variables, in secure-execution
/// mode, does: its `main` runs, and `init` returns.
fn secure() {
    pool::init();
    // SAFETY: getauxval only reads the auxiliary vector saved at start-up.
    let at_secure = unsafe { libc::getauxval(libc::AT_SECURE) };
    println!("main ran, AT_SECURE: {at_secure}");
    for var in [pool::CONNECT_ENV, pool::AUTHKEY_ENV] {
        println!("{var} visible: {}", std::env::var_os(var).is_some());
    }
}
