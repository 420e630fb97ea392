//! The `pool-worker` command line, for `pool-worker` itself and for worker
//! programs of your own that link your tasks.
//!
//! ```no_run
//! // The whole main of a worker program: link the crates that define your
//! // tasks (name something from each, so the linker keeps it) and call
//! let _ = pool::builtin::echo;
//! worker_bin::main();
//! ```
//!
//! Started by a pool (as its `worker_program`), the program becomes that
//! pool's worker. Started by hand as `pool-worker --connect ADDRESS`, it
//! joins a pool that listens for remote workers, with the authentication
//! key from `--authkey-file PATH` or the `POOL_AUTHKEY` environment
//! variable (never from the command line, where other users could read it).

#![deny(unsafe_code)]

use std::path::{Path, PathBuf};

use clap::Parser;

// A worker program may set up things of its own (a tracing subscriber)
// before calling `main()` below: its copies started by a local pool become
// workers there, in `pool::init()`, not before the program's `main`.
pool::workers_start_in_main!();

/// Joins a pool that listens for remote workers and runs its tasks until
/// the pool closes.
#[derive(Debug, Parser)]
#[command(
    name = "pool-worker",
    version,
    after_help = "The authkey is read from the --authkey-file PATH, or else from the \
                  POOL_AUTHKEY environment variable; it is never taken from the command \
                  line, where other users could read it."
)]
pub struct Args {
    /// The pool's address, as `PoolBuilder::listen` was given it with the
    /// host it is reached at: `tcp:HOST:PORT` or `HOST:PORT`.
    #[arg(long, value_name = "ADDRESS")]
    pub connect: String,
    /// A file holding the authkey (a trailing newline is not part of it).
    #[arg(long, value_name = "PATH")]
    pub authkey_file: Option<PathBuf>,
}

/// Why a worker stopped other than by its pool closing.
#[derive(Debug)]
pub enum Failure {
    /// No usable key: exit status 2.
    Setup(String),
    /// Reaching or working for the pool failed: exit status 1.
    Pool(pool::Error),
}

impl Failure {
    /// The process exit status this failure ends `pool-worker` with.
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Setup(_) => 2,
            Failure::Pool(_) => 1,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Setup(message) => f.write_str(message),
            // The whole chain: the causes say why the pool could not be reached.
            Failure::Pool(err) => write!(f, "{err:#}"),
        }
    }
}

impl std::error::Error for Failure {}

/// The key `args` name: the file's contents without its trailing newline,
/// or else `POOL_AUTHKEY`. An empty key is refused.
pub fn authkey(args: &Args) -> Result<Vec<u8>, Failure> {
    let key = match &args.authkey_file {
        Some(path) => read_key_file(path)?,
        None => std::env::var_os(pool::AUTHKEY_ENV)
            .map(|key| key.into_encoded_bytes())
            .ok_or_else(|| {
                Failure::Setup(format!(
                    "no authkey: pass --authkey-file or set {}",
                    pool::AUTHKEY_ENV
                ))
            })?,
    };
    if key.is_empty() {
        return Err(Failure::Setup("the authkey is empty".into()));
    }
    Ok(key)
}

fn read_key_file(path: &Path) -> Result<Vec<u8>, Failure> {
    let mut key = std::fs::read(path)
        .map_err(|err| Failure::Setup(format!("read authkey file {}: {err}", path.display())))?;
    // A key file written with `echo` ends in a newline that is not part of the key.
    while key.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        key.pop();
    }
    Ok(key)
}

/// Joins the pool `args` name and works for it until it closes. The key's
/// variable, `POOL_AUTHKEY`, leaves the environment once it is read
/// ([`pool::connect_worker`] removes it), out of its tasks' reach.
pub fn run(args: &Args) -> Result<(), Failure> {
    let key = authkey(args)?;
    pool::connect_worker(&args.connect, &key).map_err(Failure::Pool)
}

/// Becomes a local worker if a pool started this process, and otherwise
/// runs [`run`] with this process's command line; exits with 0 when the
/// pool closed, or the failure's [`exit_code`](Failure::exit_code).
pub fn main() -> ! {
    pool::init();
    let code = match run(&Args::parse()) {
        Ok(()) => 0,
        Err(failure) => {
            eprintln!("pool-worker: {failure}");
            failure.exit_code()
        }
    };
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("pool-worker").chain(args.iter().copied()))
    }

    #[test]
    fn connect_is_required_and_unknown_flags_are_refused() {
        let err = parse(&[]).unwrap_err();
        assert!(err.to_string().contains("--connect"), "{err}");
        assert!(parse(&["--connect", "h:1", "--bogus"]).is_err());
        assert!(parse(&["--connect"]).is_err());
        let args = parse(&["--connect=h:1", "--authkey-file", "k"]).unwrap();
        assert_eq!(args.connect, "h:1");
        assert_eq!(args.authkey_file, Some(PathBuf::from("k")));
    }

    #[test]
    fn an_unreadable_authkey_file_is_reported() {
        let args = parse(&[
            "--connect=127.0.0.1:9",
            "--authkey-file",
            "/nonexistent/key",
        ])
        .unwrap();
        let err = authkey(&args).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/key"), "{err}");
    }

    #[test]
    fn a_key_file_loses_its_trailing_newline_and_may_not_be_empty() {
        let dir = std::env::temp_dir().join(format!("worker-bin-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        std::fs::write(&path, b"secret\r\n").unwrap();
        let args = parse(&["--connect=h:1", "--authkey-file", path.to_str().unwrap()]).unwrap();
        assert_eq!(authkey(&args).unwrap(), b"secret");
        std::fs::write(&path, b"\n").unwrap();
        assert!(authkey(&args).unwrap_err().to_string().contains("empty"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
