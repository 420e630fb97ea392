//! A worker facing a hostile pool or a hostile environment: a pool that
//! defines absurd task numbers, a privileged program given a pool's
//! variables by someone else, and the authkey, which no task may read.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::{output_with_deadline, patient_tcp_listener, report_skip, Watchdog};

const LIMIT: Duration = Duration::from_secs(60);
const KEY: &str = "worker side test key";
/// `pool-worker`'s command line, linking only the pool's built-in tasks.
const WORKER: &str = env!("CARGO_BIN_EXE_pool_remote_worker");
const ENV_PROGRAM: &str = env!("CARGO_BIN_EXE_pool_worker_env");

/// The setup message (wire.rs): worker id 0, a 1 MiB message limit, no
/// initializer, no build id (so the worker lists its tasks), no memory
/// limits.
fn setup_message() -> Vec<u8> {
    let mut message = vec![b'S'];
    message.extend_from_slice(&0u32.to_le_bytes());
    message.extend_from_slice(&(1u64 << 20).to_le_bytes());
    message.push(0);
    message.extend_from_slice(&0u32.to_le_bytes());
    message
}

/// A batch's `N` record: task `number` stands for `name`.
fn define_task(batch: &mut Vec<u8>, number: u32, name: &str) {
    batch.push(b'N');
    batch.extend_from_slice(&number.to_le_bytes());
    batch.extend_from_slice(&(name.len() as u32).to_le_bytes());
    batch.extend_from_slice(name.as_bytes());
}

/// A batch's `C` record: chunk `id` of `task`, one empty input.
fn one_input_chunk(batch: &mut Vec<u8>, id: u64, task: u32) {
    batch.push(b'C');
    batch.extend_from_slice(&id.to_le_bytes());
    batch.extend_from_slice(&task.to_le_bytes());
    batch.extend_from_slice(&1u32.to_le_bytes());
    batch.extend_from_slice(&0u32.to_le_bytes());
}

/// The largest resident size (`VmHWM`, in KiB) the process has had so far,
/// if it is still there to ask.
fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Acts as a pool towards a real `pool-worker --connect` (with 2 GiB of
/// address space, so that an allocation the size of the number would
/// abort it): a task number past the linked tasks that a pool could send
/// still works (the chunk fails as an unknown task), then `number` ends
/// the worker. Returns its exit code, its stderr and its peak resident
/// size.
fn worker_told_task_number(number: u32) -> (Option<i32>, String, u64) {
    let watchdog = Watchdog::start("hostile pool", LIMIT);
    let (mut listener, addr) = patient_tcp_listener(KEY.as_bytes());
    let mut worker = Command::new("sh")
        .args([
            "-c",
            r#"ulimit -v 2097152 && exec "$0" --connect "$1""#,
            WORKER,
        ])
        .arg(format!("tcp:{addr}"))
        .env("POOL_AUTHKEY", KEY)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pool-worker");
    let mut conn = listener.accept().expect("the worker joins");
    conn.send_bytes(&setup_message()).expect("send setup");
    let ready = conn.recv_bytes().expect("ready");
    assert_eq!(ready[0], b'H', "{ready:?}");

    let mut batch = vec![b'B'];
    define_task(&mut batch, 40, "no_such_crate::no_such_task");
    one_input_chunk(&mut batch, 0, 40);
    conn.send_bytes(&batch).expect("send a batch");
    let results = conn.recv_bytes().expect("results");
    // Tag, busy time, chunk id, item count, then the item's status.
    assert_eq!(results[0], b'R', "{results:?}");
    assert_eq!(results[1 + 8 + 8 + 4], 5, "UnknownTask: {results:?}");

    let mut batch = vec![b'B'];
    define_task(&mut batch, number, "x");
    conn.send_bytes(&batch).expect("send the hostile batch");
    let mut peak = 0;
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        peak = peak.max(peak_kib(worker.id()).unwrap_or(0));
        if let Some(status) = worker.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the worker did not exit");
        std::thread::sleep(Duration::from_millis(1));
    };
    // The pool's side sees the worker go, not more results.
    assert!(conn.recv_bytes().is_err());
    drop(watchdog);
    let mut stderr = String::new();
    worker
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    (status.code(), stderr, peak)
}

#[test]
fn a_task_number_no_pool_sends_ends_the_worker_without_allocating() {
    for number in [u32::MAX, 1 << 28] {
        let (code, stderr, peak) = worker_told_task_number(number);
        eprintln!("task number {number}: exit {code:?}, peak resident {peak} KiB");
        // 1 is pool-worker's exit for an error from the pool; a failed
        // allocation would be SIGABRT, with no code.
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("the pool defined task number {number}")),
            "{stderr}"
        );
        assert!(peak < 256 << 10, "peak resident {peak} KiB");
    }
}

/// Runs a set-user-ID copy of `pool_worker_env secure` with `invite`'s
/// variables (and descriptors); returns its output, or `None` (having
/// said why) where the bit has no effect.
fn run_privileged(invite: impl FnOnce(&mut Command)) -> Option<std::process::Output> {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "setuid-worker-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).expect("make a directory");
    let copy = dir.join("pool_worker_env");
    std::fs::copy(ENV_PROGRAM, &copy).expect("copy the program");
    // Root running a program set-user-ID to nobody: the kernel marks it
    // AT_SECURE (file capabilities would not, for root).
    std::os::unix::fs::chown(&copy, Some(65534), Some(65534)).expect("chown nobody");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o4755)).expect("chmod");
    let mut command = Command::new(&copy);
    command.arg("secure");
    invite(&mut command);
    let out = output_with_deadline(&mut command, LIMIT);
    drop(command);
    std::fs::remove_dir_all(&dir).expect("clean up");
    // Without the pool's variables the same copy tells whether the bit
    // took effect here.
    let stdout = String::from_utf8_lossy(&out.stdout);
    if stdout.contains("AT_SECURE: 0") {
        report_skip(&format!(
            "the set-user-ID bit had no effect here (a nosuid mount?): {stdout}"
        ));
        return None;
    }
    Some(out)
}

/// A privileged program refused its invitation: it exited with status 2,
/// saying why once, and its `main` never ran.
fn assert_refused(how: &str, out: &std::process::Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{how}: {stdout}\n{stderr}");
    assert!(!stdout.contains("main ran"), "{how}: main ran: {stdout}");
    assert!(stderr.contains("AT_SECURE"), "{how}: {stderr}");
    assert!(
        stderr.contains("never becomes a pool worker"),
        "{how}: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{how}: said once: {stderr}");
}

#[test]
fn a_privileged_program_refuses_a_pools_variables_without_running_its_main() {
    if !is_root() {
        report_skip("a set-user-ID copy of a program for another user needs root");
        return;
    }
    // Whoever invites it must not be able to: a plain socket sees any
    // attempt, handshake or not.
    let invitation = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    invitation.set_nonblocking(true).expect("nonblocking");
    let address = format!("tcp:{}", invitation.local_addr().expect("address"));
    let Some(remote) = run_privileged(|command| {
        command
            .env("POOL_CONNECT", &address)
            .env("POOL_AUTHKEY", KEY);
    }) else {
        return;
    };
    assert_refused("POOL_CONNECT", &remote);
    let attempt = invitation.accept();
    assert!(
        matches!(&attempt, Err(err) if err.kind() == std::io::ErrorKind::WouldBlock),
        "the program connected: {attempt:?}"
    );
    // As a pool re-executing it would: an inherited connection. Running
    // `main` there would make a pool program start pools of its own.
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    let Some(local) = run_privileged(|command| {
        connection::inherit::pass_fd_to_child(theirs.into(), command, "POOL_WORKER_CONNECTION")
            .expect("pass the connection");
    }) else {
        return;
    };
    assert_refused("POOL_WORKER_CONNECTION", &local);
    // It said nothing on the connection (no ready message), and is gone.
    ours.set_nonblocking(true).expect("nonblocking");
    let mut byte = [0u8; 1];
    assert_eq!((&ours).read(&mut byte).expect("end of file"), 0);
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Fails unless the host's output shows the task ran and that neither
/// its worker nor a child of the task saw the key or any pool variable.
fn assert_no_key_seen(how: &str, output: &str) {
    assert!(
        output.contains("worker env: ") && output.contains("child env: "),
        "{how}: {output}"
    );
    assert!(
        !output.contains(KEY),
        "{how}: the key is visible:\n{output}"
    );
    for line in output.lines().filter(|line| line.contains(" env: ")) {
        for var in ["POOL_AUTHKEY", "POOL_CONNECT", "POOL_WORKER_"] {
            assert!(!line.contains(var), "{how}: {line}");
        }
    }
}

/// Starts `pool_worker_env host remote`, then a worker with `worker`
/// (given the address); returns the host's output.
fn remote_host(worker: impl FnOnce(&str) -> Command) -> String {
    let watchdog = Watchdog::start("remote host", LIMIT);
    let mut host = Command::new(ENV_PROGRAM)
        .args(["host", "remote"])
        .env("POOL_AUTHKEY", KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the host");
    let mut stdout = std::io::BufReader::new(host.stdout.take().expect("stdout"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).expect("address line");
    let address = line
        .trim()
        .strip_prefix("address: ")
        .expect("address")
        .to_string();
    let mut worker = worker(&address)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn worker");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("read the host");
    assert!(host.wait().expect("wait").success(), "{rest}");
    assert!(worker.wait().expect("wait").success());
    drop(watchdog);
    rest
}

#[test]
fn no_worker_task_nor_its_child_sees_the_authkey() {
    let joined = remote_host(|address| {
        let mut worker = Command::new(ENV_PROGRAM);
        worker.env("POOL_CONNECT", address).env("POOL_AUTHKEY", KEY);
        worker
    });
    assert_no_key_seen("POOL_CONNECT", &joined);
    let connected = remote_host(|address| {
        let mut worker = Command::new(ENV_PROGRAM);
        worker.args(["--connect", address]).env("POOL_AUTHKEY", KEY);
        worker
    });
    assert_no_key_seen("--connect", &connected);
    // A local worker inherits its pool's environment, key included.
    let local = output_with_deadline(
        Command::new(ENV_PROGRAM)
            .args(["host", "local"])
            .env("POOL_AUTHKEY", KEY),
        LIMIT,
    );
    let stdout = String::from_utf8_lossy(&local.stdout);
    assert!(local.status.success(), "{stdout}");
    assert_no_key_seen("local", &stdout);
}
