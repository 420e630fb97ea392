//! Helpers shared by the tests in `tests/`. The peer programs those tests
//! start live in `src/bin/`; Cargo builds them before the tests and names
//! their paths in `CARGO_BIN_EXE_<name>`.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The machine's `python3`, if there is one. Tests that talk to CPython
/// call this and skip, saying so on stderr, only where it is missing.
pub fn python3() -> Option<&'static str> {
    let found = Command::new("python3")
        .arg("--version")
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false);
    if found {
        Some("python3")
    } else {
        eprintln!("python3 not found: skipping the CPython side of this test");
        None
    }
}

/// Waits for `child` to exit, for at most `limit`; kills it and panics if it
/// does not, so that a test never hangs on a stuck peer.
pub fn wait_with_deadline(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child {} did not exit within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether a process with this pid still exists (and is not a zombie we
/// could reap: callers reap their own children first).
pub fn process_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state is the field after the parenthesised command name.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z") | Some("X") | None)
}

/// Aborts the whole test process if the guard is still alive `limit` after
/// it was made. A blocking receive has no timeout of its own; a test that
/// holds one of these while it receives fails loudly instead of hanging
/// when a peer never answers. Dropping the guard disarms it.
pub struct Watchdog {
    disarm: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    pub fn start(what: &str, limit: Duration) -> Watchdog {
        let (disarm, armed) = std::sync::mpsc::channel::<()>();
        let what = what.to_string();
        let thread = std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = armed.recv_timeout(limit) {
                eprintln!("{what}: still running after {limit:?}; aborting rather than hanging");
                std::process::abort();
            }
        });
        Watchdog {
            disarm: Some(disarm),
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Dropping the sender wakes the thread with `Disconnected`.
        drop(self.disarm.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs `command` to completion with its stdout and stderr captured, for
/// at most `limit`: past that it is killed and this panics, so a test of a
/// program that hangs fails instead of hanging.
pub fn output_with_deadline(command: &mut Command, limit: Duration) -> std::process::Output {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn test program");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let status = wait_with_deadline(&mut child, limit);
    std::process::Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Polls `condition` until it holds or `limit` passes; returns whether it held.
pub fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `program` with `scenario` as its one argument, for at most `limit`,
/// and returns its stdout; fails the test, showing both streams, unless it
/// succeeds. For the scenario programs in `src/bin/` that print what
/// happened as `label: value` lines (read them with [`line()`]).
pub fn scenario_output(program: &str, scenario: &str, limit: Duration) -> String {
    let out = output_with_deadline(Command::new(program).arg(scenario), limit);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{scenario}: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    stdout
}

/// The value of the first `label: value` line of `stdout`; panics, showing
/// `stdout`, if there is none.
pub fn line<'a>(stdout: &'a str, label: &str) -> &'a str {
    let prefix = format!("{label}: ");
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{stdout}"))
}
