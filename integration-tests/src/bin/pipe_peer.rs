//! The child side of `tests/pipe_processes.rs`: a separate program, started
//! with exec, that rebuilds its end of a pipe with `Connection::from_env`.
//!
//! `pipe_peer MODE [ARG]`; the connection is in `PIPE_CONN`, and modes that
//! report on what they saw use a second one in `PIPE_REPORT`. Exit status:
//! 0 when the mode ran as expected, 2 when something unexpected happened
//! (with the reason on stderr), 101 on a panic.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use connection::{Connection, ErrorKind};

/// Names the test side knows too.
const CONN_ENV: &str = "PIPE_CONN";
const REPORT_ENV: &str = "PIPE_REPORT";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map(String::as_str).unwrap_or("");
    let arg = args.get(1).map(String::as_str);
    let conn = match Connection::from_env(CONN_ENV) {
        Ok(conn) => conn,
        Err(err) => return fail(format!("from_env: {err:#}")),
    };
    let result = match mode {
        "tour" => tour(conn),
        "echo" => echo(conn),
        "send-big" => send_big(conn, arg),
        "send-then-exit" => send_then_exit(conn),
        "typed-echo" => typed_echo(conn),
        "read-report" => read_report(conn, arg),
        "poll-signal" => poll_signal(conn, arg),
        "recv-hostile" => recv_hostile(conn, arg),
        "bulk-echo" => bulk_echo(conn),
        other => Err(format!("unknown mode {other:?}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => fail(why),
    }
}

fn fail(why: String) -> ExitCode {
    eprintln!("pipe_peer: {why}");
    ExitCode::from(2)
}

type Outcome = Result<(), String>;

/// Turns a connection error into the reason this peer fails with.
fn ctx(what: &'static str) -> impl FnOnce(connection::Error) -> String {
    move |err| format!("{what}: {err:#}")
}

/// The `b` side of the original documentation's example; it answers with
/// what it received so that the parent can check it.
fn tour(mut b: Connection) -> Outcome {
    let list: (i64, String, Option<()>) = b.recv().map_err(ctx("recv list"))?;
    b.send(&list).map_err(ctx("echo list"))?;
    b.send_bytes(b"thank you").map_err(ctx("send_bytes"))?;
    // array('i', [0] * 10)
    let mut arr2 = [0u8; 10 * 4];
    let count = b
        .recv_bytes_into(&mut arr2, 0)
        .map_err(ctx("recv_bytes_into"))?;
    let ints: Vec<i32> = arr2
        .chunks_exact(4)
        .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    b.send(&(count as u64, ints)).map_err(ctx("send result"))?;
    expect_eof(b.recv_bytes())
}

fn expect_eof<T>(result: connection::Result<T>) -> Outcome {
    match result {
        Err(err) if err.kind() == ErrorKind::Eof => Ok(()),
        Err(err) => Err(format!("expected end of file, got {err:#}")),
        Ok(_) => Err("expected end of file, got a message".into()),
    }
}

/// Sends every byte message back until the parent closes.
fn echo(mut conn: Connection) -> Outcome {
    loop {
        match conn.recv_bytes() {
            Ok(message) => conn.send_bytes(&message).map_err(ctx("echo"))?,
            Err(err) if err.kind() == ErrorKind::Eof => return Ok(()),
            Err(err) => return Err(format!("recv_bytes: {err:#}")),
        }
    }
}

/// Sends one message of ARG MiB. Far larger than a socket buffer, so once
/// the parent has seen its header this process is blocked inside the send
/// until the parent reads the rest (or kills it).
fn send_big(mut conn: Connection, mib: Option<&str>) -> Outcome {
    let mib: usize = mib
        .and_then(|m| m.parse().ok())
        .ok_or("send-big needs a size in MiB")?;
    let payload: Vec<u8> = (0..mib << 20).map(|i| (i % 251) as u8).collect();
    conn.send_bytes(&payload).map_err(ctx("send big"))?;
    Ok(())
}

/// Sends an object, a byte message and another object, then exits without
/// closing anything explicitly: the exit itself must read as a clean end.
fn send_then_exit(mut conn: Connection) -> Outcome {
    conn.send("first").map_err(ctx("send first"))?;
    conn.send_bytes(b"second").map_err(ctx("send second"))?;
    conn.send(&3u32).map_err(ctx("send third"))?;
    std::process::exit(0);
}

/// Receives `(u32, String)` values and answers each with the value or the
/// kind of error it gave, until the parent closes.
/// The bulk types of `tests/bulk_processes.rs`, received each with its
/// own call and sent back with the same type: a `ByteBuf`, `Pod` slices
/// of `f64` and of a `#[repr(C)]` struct, a plain `Vec<u8>`, `Vec<f64>`
/// and `Vec<String>`, a `String`; then whatever follows, echoed as bytes,
/// until end of file. A receive that fails is answered with its error
/// kind as a string, so the test sees what the child saw.
fn bulk_echo(mut conn: Connection) -> Outcome {
    use connection::serde_bytes::ByteBuf;
    use integration_tests::bulk::Sample;

    let bytes: ByteBuf = conn.recv().map_err(ctx("recv ByteBuf"))?;
    conn.send(&bytes).map_err(ctx("echo ByteBuf"))?;
    let floats = conn.recv_vec::<f64>().map_err(ctx("recv_vec f64"))?;
    conn.send_slice(&floats).map_err(ctx("echo f64 slice"))?;
    let samples = conn.recv_vec::<Sample>().map_err(ctx("recv_vec Sample"))?;
    conn.send_slice(&samples)
        .map_err(ctx("echo Sample slice"))?;
    let plain: Vec<u8> = conn.recv().map_err(ctx("recv Vec<u8>"))?;
    conn.send(&plain).map_err(ctx("echo Vec<u8>"))?;
    let plain: Vec<f64> = conn.recv().map_err(ctx("recv Vec<f64>"))?;
    conn.send(&plain).map_err(ctx("echo Vec<f64>"))?;
    let strings: Vec<String> = conn.recv().map_err(ctx("recv Vec<String>"))?;
    conn.send(&strings).map_err(ctx("echo Vec<String>"))?;
    let text: String = conn.recv().map_err(ctx("recv String"))?;
    conn.send(&text).map_err(ctx("echo String"))?;
    // An odd length for u32s: refused, and the connection still works.
    let refused = match conn.recv_vec::<u32>() {
        Ok(_) => "accepted".to_string(),
        Err(err) => format!("{:?}", err.kind()),
    };
    conn.send(&refused).map_err(ctx("report odd length"))?;
    let after = conn
        .recv_vec::<u32>()
        .map_err(ctx("recv_vec after the odd one"))?;
    conn.send_slice(&after)
        .map_err(ctx("echo after the odd one"))?;
    expect_eof(conn.recv_bytes())
}

fn typed_echo(mut conn: Connection) -> Outcome {
    loop {
        let reply: Result<(u32, String), String> = match conn.recv::<(u32, String)>() {
            Ok(value) => Ok(value),
            Err(err) if err.kind() == ErrorKind::Eof => return Ok(()),
            Err(err) => Err(format!("{:?}", err.kind())),
        };
        conn.send(&reply).map_err(ctx("reply"))?;
    }
}

/// What `read-report` tells the parent about one receive.
type Report = (String, String, u64, u64);

/// Receives byte messages on a connection whose max_message_size is ARG
/// ("max" for u64::MAX, absent for the default), reporting on `PIPE_REPORT`
/// after each receive: the outcome ("Ok" or the error kind), the error
/// text, and this process's peak resident and virtual memory in KiB. Stops
/// after the first error.
fn read_report(mut conn: Connection, max: Option<&str>) -> Outcome {
    let mut report = Connection::from_env(REPORT_ENV).map_err(ctx("report from_env"))?;
    match max {
        None => {}
        Some("max") => conn.set_max_message_size(u64::MAX),
        Some(bytes) => conn.set_max_message_size(
            bytes
                .parse()
                .map_err(|_| format!("bad max_message_size {bytes:?}"))?,
        ),
    }
    loop {
        let result = conn.recv_bytes();
        let (outcome, text, stop) = match &result {
            Ok(message) => ("Ok".to_string(), format!("{} bytes", message.len()), false),
            Err(err) => (format!("{:?}", err.kind()), err.to_string(), true),
        };
        let line: Report = (outcome, text, vm_kib("VmHWM:"), vm_kib("VmPeak:"));
        report.send(&line).map_err(ctx("report"))?;
        if stop {
            return Ok(());
        }
    }
}

/// A `/proc/self/status` figure in KiB, or 0 where there is none.
fn vm_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Installs a handler for signal ARG ("INT" or "USR1"), says "ready", and
/// waits in `poll(None)` for a message that the parent never sends before
/// signalling. Reports what poll returned and whether the handler ran, then
/// echoes one message to show the connection still works.
fn poll_signal(mut conn: Connection, signal: Option<&str>) -> Outcome {
    let signal = match signal {
        Some("INT") => signal_hook::consts::SIGINT,
        Some("USR1") => signal_hook::consts::SIGUSR1,
        other => return Err(format!("poll-signal: unsupported signal {other:?}")),
    };
    let caught = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal, Arc::clone(&caught))
        .map_err(|err| format!("register handler: {err}"))?;
    conn.send("ready").map_err(ctx("send ready"))?;
    // The parent may signal before we reach poll; then the handler runs
    // early and the parent's next signal is the one that interrupts poll.
    let outcome = match conn.poll(None) {
        Err(err) => format!("{:?}", err.kind()),
        Ok(ready) => format!("poll returned Ok({ready})"),
    };
    conn.send(&(outcome, caught.load(Ordering::SeqCst)))
        .map_err(ctx("report"))?;
    let message = conn.recv_bytes().map_err(ctx("recv after signal"))?;
    conn.send_bytes(&message).map_err(ctx("echo"))?;
    Ok(())
}

/// A chain of `Nest`s is nesting one level per `1` byte: `[1, 1, 0]` is
/// `Nest(Some(Box::new(Nest(Some(Box::new(Nest(None)))))))`.
#[derive(serde::Deserialize, Debug, PartialEq)]
struct Nest(Option<Box<Nest>>);

/// Receives a hostile message as a `T` of ARG ("string": `String`, "nest":
/// [`Nest`], "unit-vec": `Vec<()>`), which must fail with a `Decode` error,
/// then a good one, which must decode as the value the parent sends after
/// it: "after", `[1, 0]` (two `Nest`s), three `()`.
fn recv_hostile(conn: Connection, kind: Option<&str>) -> Outcome {
    match kind {
        Some("string") => refuse_then_decode(conn, "after".to_string()),
        Some("nest") => refuse_then_decode(conn, Nest(Some(Box::new(Nest(None))))),
        Some("unit-vec") => refuse_then_decode(conn, vec![(); 3]),
        other => Err(format!("recv-hostile: unknown kind {other:?}")),
    }
}

fn refuse_then_decode<T>(mut conn: Connection, expected: T) -> Outcome
where
    T: serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    match conn.recv::<T>() {
        Err(err) if err.kind() == ErrorKind::Decode => {}
        Err(err) => {
            return Err(format!(
                "hostile message: expected a Decode error, got {err}"
            ))
        }
        Ok(value) => return Err(format!("hostile message decoded as {value:?}")),
    }
    let value = conn
        .recv::<T>()
        .map_err(ctx("good message after the hostile one"))?;
    if value != expected {
        return Err(format!(
            "good message decoded as {value:?}, not {expected:?}"
        ));
    }
    expect_eof(conn.recv_bytes())
}
