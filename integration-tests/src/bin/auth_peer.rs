//! The Rust peer of `tests/python_interop.rs`: a `Listener` or a `Client`
//! in a process of its own, so that Rust talks to Rust across processes
//! the way it talks to Python.
//!
//! `auth_peer serve ADDRESS KEY [strict]`: binds, prints the bound address
//! on a line of stdout, accepts one peer and runs the exchange.
//! `auth_peer connect ADDRESS KEY [strict]`: connects and runs the exchange.
//!
//! The exchange: the client sends `ping`, the server answers `pong:ping`.
//! Exit status: 0 when it all worked, 3 when authentication failed (the
//! error on stderr), 2 for anything else.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use connection::{Address, Client, Connection, ErrorKind, Listener};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, address, key, rest @ ..] = args.as_slice() else {
        eprintln!("usage: auth_peer serve|connect ADDRESS KEY [strict]");
        return ExitCode::from(2);
    };
    let strict = rest.iter().any(|a| a == "strict");
    let result = address
        .parse::<Address>()
        .and_then(|address| match mode.as_str() {
            "serve" => serve(&address, key.as_bytes(), strict),
            "connect" => connect(&address, key.as_bytes(), strict),
            other => Err(connection::Error::new(
                ErrorKind::InvalidInput,
                format!("unknown mode {other:?}"),
            )),
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.kind() == ErrorKind::AuthenticationFailed => {
            eprintln!("auth_peer: {err:#}");
            ExitCode::from(3)
        }
        Err(err) => {
            eprintln!("auth_peer: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn serve(address: &Address, key: &[u8], strict: bool) -> connection::Result<()> {
    let mut listener = Listener::builder()
        .authkey(key)
        .strict(strict)
        .bind(address)?;
    println!("{}", listener.address());
    // The test reads the line before connecting; a closed stdout only
    // means the test is gone, and accept() below then times out with it.
    let _ = std::io::stdout().flush();
    let ready = connection::wait(&[&listener], Some(Duration::from_secs(60)))?;
    if ready.is_empty() {
        return Err(connection::Error::new(ErrorKind::TimedOut, "no peer came"));
    }
    let mut conn = listener.accept()?;
    let ping = recv_within(&mut conn)?;
    conn.send_bytes(&[b"pong:".as_slice(), &ping].concat())
}

fn connect(address: &Address, key: &[u8], strict: bool) -> connection::Result<()> {
    let mut conn = Client::new()
        .authkey(key)
        .strict(strict)
        .connect_timeout(Some(Duration::from_secs(30)))
        .connect(address)?;
    conn.send_bytes(b"ping")?;
    let pong = recv_within(&mut conn)?;
    if pong != b"pong:ping" {
        return Err(connection::Error::new(
            ErrorKind::Protocol,
            format!("unexpected answer {:?}", String::from_utf8_lossy(&pong)),
        ));
    }
    Ok(())
}

fn recv_within(conn: &mut Connection) -> connection::Result<Vec<u8>> {
    if !conn.poll(Some(Duration::from_secs(60)))? {
        return Err(connection::Error::new(ErrorKind::TimedOut, "no message"));
    }
    conn.recv_bytes()
}
