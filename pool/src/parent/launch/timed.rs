//! Slurm's commands (`sbatch`, `squeue`, `scancel`, `scontrol`) run with a
//! time limit: a hung controller makes them wait for minutes, and `build`,
//! the job's follower and the pool's drop must not wait with them.

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};

/// How often a running command is looked at.
const TICK: Duration = Duration::from_millis(10);
/// The most of a command's stdout or stderr that is kept: Slurm's answers
/// to the pool are a line or two (`scontrol show config` a few KiB).
const MAX_OUTPUT: u64 = 1 << 20;

/// Runs `command` (named `program` in errors, which say it ran to `what`),
/// writing `stdin` to it, for at most `limit`; past it the command is
/// killed and the error says so. Its exit status is the caller's to judge.
pub(crate) fn run(
    command: &mut Command,
    program: &str,
    what: &str,
    stdin: Option<&[u8]>,
    limit: Duration,
) -> Result<Output> {
    let failed = |how: String| Error::new(ErrorKind::Startup, format!("{program} ({what}) {how}"));
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| failed("could not run".into()).with_source(err))?;
    if let (Some(mut pipe), Some(bytes)) = (child.stdin.take(), stdin) {
        // Small enough for the pipe; a write error shows as the command's
        // own complaint about its input.
        let _ = pipe.write_all(bytes);
    }
    // Read as the command runs, so that a chatty one cannot fill its pipe
    // and hang; bounded, so that it cannot fill this process either.
    let readers = [
        child.stdout.take().and_then(|pipe| reader(pipe, program)),
        child.stderr.take().and_then(|pipe| reader(pipe, program)),
    ];
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(format!(
                    "did not finish within {limit:.0?} and was killed (is the Slurm controller \
                     reachable?)"
                )));
            }
            Ok(None) => std::thread::sleep(TICK),
            Err(err) => return Err(failed("could not be waited for".into()).with_source(err)),
        }
    };
    // A process the command started may hold its output open after it
    // exited: the same limit bounds that wait.
    while readers.iter().flatten().any(|reader| !reader.is_finished()) {
        if Instant::now() >= deadline {
            return Err(failed(format!(
                "exited ({status}) but something it started kept its output open past \
                 {limit:.0?}"
            )));
        }
        std::thread::sleep(TICK);
    }
    let [stdout, stderr] = readers.map(|reader| {
        reader
            .and_then(|thread| thread.join().ok())
            .unwrap_or_default()
    });
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// A thread reading `pipe` to its end; none if no thread can start (the
/// pipe is then closed, and the command sees a broken pipe if it writes).
fn reader(
    pipe: impl Read + Send + 'static,
    program: &str,
) -> Option<std::thread::JoinHandle<Vec<u8>>> {
    let read = move || {
        let mut bytes = Vec::new();
        let _ = pipe.take(MAX_OUTPUT).read_to_end(&mut bytes);
        bytes
    };
    std::thread::Builder::new()
        .name(format!("pool-{program}-output"))
        .spawn(read)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_past_its_limit_is_killed_and_the_error_says_so() {
        let started = Instant::now();
        let err = run(
            Command::new("sleep").arg("30"),
            "sleep",
            "stand in for a hung squeue",
            None,
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(20));
        assert!(err.to_string().contains("did not finish within"), "{err}");
        assert!(err.to_string().contains("sleep"), "{err}");
    }

    #[test]
    fn a_command_whose_child_keeps_its_output_open_is_bounded_too() {
        let err = run(
            Command::new("sh").args(["-c", "sleep 30 & exit 0"]),
            "sh",
            "leave a child holding stdout",
            None,
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(err.to_string().contains("kept its output open"), "{err}");
    }

    #[test]
    fn output_and_stdin_pass_through() {
        let out = run(
            &mut Command::new("cat"),
            "cat",
            "echo its input",
            Some(b"12;x\n"),
            Duration::from_secs(30),
        )
        .unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, b"12;x\n");
    }
}
