//! What every example program shares on its command line, and how it
//! reports its timings.

use std::fmt;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use pool::{Pool, PoolBuilder};

/// The options every crunching example takes; flatten it into the
/// program's own `clap` arguments with `#[command(flatten)]`.
#[derive(Clone, Debug, clap::Args)]
pub struct Common {
    /// Worker processes to start on this host [default: one per CPU core,
    /// or 0 with --slurm]
    #[arg(long, short = 'w', value_name = "N", value_parser = parse_workers)]
    pub workers: Option<usize>,

    /// Show no progress bar or spinner (there is none anyway when stderr is
    /// not a terminal)
    #[arg(long, short = 'q')]
    pub quiet: bool,

    /// Skip the serial run that the parallel run is compared with
    #[arg(long)]
    pub no_serial: bool,

    /// Also take workers from other hosts: listen on ADDRESS (for example
    /// tcp:0.0.0.0:7000) for `pool-worker --connect HOST:PORT`. The authkey
    /// is read from the POOL_AUTHKEY environment variable, on both sides.
    /// With --listen, --workers may be 0 (remote workers only).
    #[arg(long, value_name = "ADDRESS")]
    pub listen: Option<String>,

    /// Also submit N workers to Slurm (one batch job of N tasks, each
    /// running this program), cancelled when the program ends. They join
    /// over TCP with a fresh random key, or on --listen's address with
    /// POOL_AUTHKEY.
    #[arg(long, value_name = "N", value_parser = parse_slurm_tasks)]
    pub slurm: Option<usize>,

    /// An option for Slurm's sbatch with --slurm, such as
    /// --slurm-arg=--partition=debug (repeat for more)
    #[arg(
        long,
        value_name = "ARG",
        allow_hyphen_values = true,
        requires = "slurm"
    )]
    pub slurm_arg: Vec<String>,

    /// With --slurm, the host name or address the Slurm nodes reach this
    /// program at [default: the address --listen gives, else this host's
    /// address on the interface that routes to the Slurm controller]
    #[arg(long, value_name = "HOST", requires = "slurm")]
    pub head_host: Option<String>,

    /// With --slurm, spread the workers over exactly N nodes (sbatch
    /// --nodes): --slurm 3 --nodes 3 runs one worker per node
    #[arg(long, value_name = "N", value_parser = parse_slurm_tasks, requires = "slurm")]
    pub nodes: Option<usize>,

    /// With --slurm, at most N workers on each node (sbatch
    /// --ntasks-per-node)
    #[arg(long, value_name = "N", value_parser = parse_slurm_tasks, requires = "slurm")]
    pub tasks_per_node: Option<usize>,
}

impl Common {
    /// The pool these options ask for, not yet started: `--workers` local
    /// processes and, with `--listen`, a listener for remote ones.
    ///
    /// # Examples
    ///
    /// ```
    /// use clap::Parser;
    ///
    /// #[derive(Parser)]
    /// struct Args {
    ///     #[command(flatten)]
    ///     common: examples::cli::Common,
    /// }
    ///
    /// let args = Args::parse_from(["demo", "--workers", "0"]);
    /// let err = args.common.pool_builder().unwrap_err();
    /// assert!(err.contains("--listen"), "{err}");
    /// ```
    pub fn pool_builder(&self) -> Result<PoolBuilder, String> {
        let workers = self.workers();
        let mut builder = Pool::builder().processes(workers);
        if let Some(tasks) = self.slurm {
            builder = builder.slurm(self.slurm_workers(tasks));
        }
        match &self.listen {
            None if workers == 0 && self.slurm.is_none() => {
                return Err(
                    "--workers 0 leaves no worker: add --listen ADDRESS or --slurm N \
                            for remote ones"
                        .into(),
                )
            }
            None => {}
            Some(address) => {
                let key = std::env::var_os(pool::AUTHKEY_ENV).ok_or_else(|| {
                    format!(
                        "--listen needs an authkey in the {} environment variable",
                        pool::AUTHKEY_ENV
                    )
                })?;
                builder = builder.listen(address.clone(), key.into_encoded_bytes());
            }
        }
        Ok(builder)
    }

    /// The Slurm workers `--slurm TASKS` and its companion flags ask for;
    /// while `build` waits for the first of them, a line on stderr every
    /// few seconds says what Slurm says of the job.
    fn slurm_workers(&self, tasks: usize) -> pool::SlurmWorkers {
        let mut slurm = pool::SlurmWorkers::new(tasks).on_waiting(|wait| {
            let reason = match wait.reason.as_str() {
                "" => String::new(),
                reason => format!(" ({reason})"),
            };
            eprintln!(
                "Slurm job {} is {}{reason} after {:.0} s; waiting for its first worker",
                wait.job,
                wait.state.to_lowercase(),
                wait.waited.as_secs_f64()
            );
        });
        if let Some(host) = &self.head_host {
            slurm = slurm.head_host(host);
        }
        if let Some(nodes) = self.nodes {
            slurm = slurm.nodes(nodes);
        }
        if let Some(tasks) = self.tasks_per_node {
            slurm = slurm.tasks_per_node(tasks);
        }
        self.slurm_arg
            .iter()
            .fold(slurm, |slurm, arg| slurm.sbatch_arg(arg))
    }

    /// The number of local workers asked for, or one per CPU core (none
    /// with `--slurm`, whose workers do the work).
    pub fn workers(&self) -> usize {
        self.workers.unwrap_or_else(|| match self.slurm {
            Some(_) => 0,
            None => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        })
    }
}

/// The most workers a program accepts: far more than any machine's cores,
/// but few enough that a typo (`-w 10000`) cannot exhaust the process table.
pub const MAX_WORKERS: usize = 512;

fn parse_slurm_tasks(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_WORKERS).contains(&n) => Ok(n),
        _ => Err(format!("expected a whole number from 1 to {MAX_WORKERS}")),
    }
}

fn parse_workers(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n <= MAX_WORKERS => Ok(n),
        _ => Err(format!("expected a whole number from 0 to {MAX_WORKERS}")),
    }
}

/// Parses a count written `4000000000`, `4_000_000_000` or `4e9`, for
/// flags whose useful values are large. Clap shows the error as the flag's.
///
/// # Examples
///
/// ```
/// use examples::cli::parse_count;
///
/// assert_eq!(parse_count("4e9"), Ok(4_000_000_000));
/// assert_eq!(parse_count("1_000"), Ok(1000));
/// assert!(parse_count("1e20").is_err());
/// assert!(parse_count("-5").is_err());
/// ```
pub fn parse_count(text: &str) -> Result<u64, String> {
    let digits = text.trim().replace('_', "");
    let (mantissa, exponent) = match digits.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, exponent.parse::<u32>().ok()),
        None => (digits.as_str(), Some(0)),
    };
    let value = match (mantissa.parse::<u64>(), exponent) {
        (Ok(m), Some(e)) => 10u64.checked_pow(e).and_then(|p| m.checked_mul(p)),
        _ => None,
    };
    value.ok_or_else(|| {
        "expected a whole number such as 4000000000, 4_000_000_000 or 4e9 (below 2^64)".to_string()
    })
}

/// Like [`parse_count`], and the count must lie in `range`.
pub fn parse_count_in(text: &str, range: std::ops::RangeInclusive<u64>) -> Result<u64, String> {
    let value = parse_count(text)?;
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(format!(
            "expected a count from {} to {}",
            range.start(),
            range.end()
        ))
    }
}

/// Starts the pool from [`Common::pool_builder`] and, if it listens for
/// remote workers, says on stderr where they should connect (or which
/// Slurm job it submitted).
pub fn start_pool(builder: PoolBuilder) -> Result<Pool, pool::Error> {
    let pool = builder.build()?;
    match (pool.slurm_jobs().last(), pool.listen_address()) {
        (Some(job), _) => eprintln!("Slurm job {job} runs the workers"),
        (None, Some(address)) => {
            eprintln!("listening for workers on {address}: pool-worker --connect HOST:PORT")
        }
        (None, None) => {}
    }
    Ok(pool)
}

/// What a program's `main` returns for the outcome of its work: success,
/// or failure with the error and its causes on one line of stderr (see
/// [`error_chain`]), prefixed with the program's name.
pub fn exit_code(program: &str, outcome: Result<(), Box<dyn std::error::Error>>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{program}: {}", error_chain(&*err));
            ExitCode::FAILURE
        }
    }
}

/// An error and every cause under it, joined by `": "`. Errors such as
/// `connection::Error` keep their cause out of their own text (it is their
/// `source()`), so printing only `{err}` would hide it.
///
/// # Examples
///
/// ```
/// let err = connection::Client::new()
///     .connect(&"unix:/surely/not/here.sock".parse()?)
///     .unwrap_err();
/// let line = examples::cli::error_chain(&err);
/// assert!(line.starts_with(&err.to_string()), "{line}");
/// assert!(line.contains("No such file or directory"), "{line}");
/// # Ok::<(), connection::Error>(())
/// ```
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    std::iter::successors(Some(err), |err| err.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

/// Runs `work` and returns its result with the wall time it took.
pub fn timed<T>(work: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let value = work();
    (value, start.elapsed())
}

/// Timings of a run: the parallel wall time, and the serial time it beat
/// when that was measured. Displays as the lines the programs print.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use examples::cli::Report;
///
/// let report = Report::new(2, Duration::from_millis(1000), Some(Duration::from_millis(1900)));
/// assert_eq!(
///     report.to_string(),
///     "parallel: 1.000 s with 2 workers\nserial:   1.900 s\nspeed-up: 1.90x"
/// );
/// let remote = Report::new(0, Duration::from_millis(500), None).with_remote(6);
/// assert_eq!(remote.to_string(), "parallel: 0.500 s with 6 remote workers");
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Report {
    /// Local worker processes of the parallel run.
    pub workers: usize,
    /// Remote workers that joined the parallel run
    /// ([`Pool::remote_workers_joined`]).
    pub remote_workers: usize,
    /// Wall time of the parallel run, starting the pool included.
    pub parallel: Duration,
    /// Wall time of the same work done serially in this process, if run.
    pub serial: Option<Duration>,
}

impl Report {
    /// A report of a run on `workers` workers that took `parallel`, beside
    /// the `serial` time of the same work if it was measured.
    pub fn new(workers: usize, parallel: Duration, serial: Option<Duration>) -> Report {
        Report {
            workers,
            remote_workers: 0,
            parallel,
            serial,
        }
    }

    /// The same report, counting `remote` workers that joined the run.
    pub fn with_remote(self, remote: usize) -> Report {
        Report {
            remote_workers: remote,
            ..self
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.workers + self.remote_workers;
        let plural = if total == 1 { "" } else { "s" };
        let who = match (self.workers, self.remote_workers) {
            (local, 0) => format!("{local} worker{plural}"),
            (0, remote) => format!("{remote} remote worker{plural}"),
            (local, remote) => format!("{local} local + {remote} remote worker{plural}"),
        };
        write!(
            f,
            "parallel: {:.3} s with {who}",
            self.parallel.as_secs_f64()
        )?;
        if let Some(serial) = self.serial {
            write!(f, "\nserial:   {:.3} s", serial.as_secs_f64())?;
            let parallel = self.parallel.as_secs_f64();
            if parallel > 0.0 {
                write!(f, "\nspeed-up: {:.2}x", serial.as_secs_f64() / parallel)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Args {
        #[command(flatten)]
        common: Common,
    }

    #[test]
    fn workers_flag_is_checked_by_clap() {
        let args = Args::try_parse_from(["prog", "--workers", "3"]).unwrap();
        assert_eq!(args.common.workers(), 3);
        for bad in ["-1", "lots", "100000"] {
            let flag = format!("--workers={bad}");
            let err = Args::try_parse_from(["prog", flag.as_str()]).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{bad}");
        }
        let args = Args::try_parse_from(["prog", "-q"]).unwrap();
        assert!(args.common.quiet && args.common.workers() >= 1);
    }

    #[test]
    fn zero_workers_needs_remote_ones() {
        let args = Args::try_parse_from(["prog", "--workers", "0"]).unwrap();
        let err = args.common.pool_builder().unwrap_err();
        assert!(err.contains("--listen"), "{err}");
        let args = Args::try_parse_from(["prog", "--workers", "2"]).unwrap();
        assert!(args.common.pool_builder().is_ok());
        let args = Args::try_parse_from(["prog", "--slurm", "4"]).unwrap();
        assert_eq!(args.common.workers(), 0, "Slurm's workers do the work");
        assert!(args.common.pool_builder().is_ok());
        assert!(Args::try_parse_from(["prog", "--slurm", "0"]).is_err());
        let args =
            Args::try_parse_from(["prog", "--slurm", "2", "--slurm-arg", "--overcommit"]).unwrap();
        assert_eq!(args.common.slurm_arg, ["--overcommit"]);
        assert!(Args::try_parse_from(["prog", "--slurm-arg=--overcommit"]).is_err());
        let args = Args::try_parse_from([
            "prog",
            "--slurm",
            "3",
            "--nodes",
            "3",
            "--tasks-per-node",
            "1",
            "--head-host",
            "10.0.0.1",
        ])
        .unwrap();
        assert_eq!(
            (args.common.nodes, args.common.tasks_per_node),
            (Some(1 + 2), Some(1))
        );
        assert_eq!(args.common.head_host.as_deref(), Some("10.0.0.1"));
        for without_slurm in ["--nodes=2", "--tasks-per-node=1", "--head-host=h"] {
            assert!(Args::try_parse_from(["prog", without_slurm]).is_err());
        }
    }

    #[test]
    fn report_without_serial_is_one_line() {
        let report = Report::new(1, Duration::from_millis(1500), None);
        assert_eq!(report.to_string(), "parallel: 1.500 s with 1 worker");
        let mixed = report.with_remote(3);
        assert_eq!(
            mixed.to_string(),
            "parallel: 1.500 s with 1 local + 3 remote workers"
        );
    }
}
