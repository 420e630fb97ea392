//! The original documentation's Connection example, end to end between two
//! processes.
//!
//! The documentation shows both ends of a `Pipe()` in one Python session.
//! Here end `a` stays in this process and end `b` goes to a child: this
//! very program, executed again, which finds its end in the environment
//! with `Connection::from_env`. Each process prints the steps it takes, so
//! the output reads like the original session, split between two programs.
//!
//! Run it with `cargo run -p examples --bin pipe_tour`.

#![deny(unsafe_code)]

use std::error::Error;
use std::process::{Command, ExitCode};

use clap::Parser;
use connection::{Connection, ErrorKind};
use examples::cli::exit_code;
use examples::tour::{i32_bytes, i32s_from_bytes, python_list, tour_list, Item};

/// Names the child's end of the pipe in the child's environment; its
/// presence is also what tells this program that it is the child.
const CHILD_END: &str = "PIPE_TOUR_CONNECTION";

/// The Connection tour of the original documentation, between a parent and
/// a child process.
#[derive(Parser)]
#[command(version)]
struct Args {}

fn main() -> ExitCode {
    let outcome = if std::env::var_os(CHILD_END).is_some() {
        child()
    } else {
        Args::parse();
        parent()
    };
    exit_code("pipe_tour", outcome)
}

fn parent() -> Result<(), Box<dyn Error>> {
    let (mut a, b) = connection::pipe()?;
    let mut command = Command::new(std::env::current_exe()?);
    b.pass_to_child(&mut command, CHILD_END)?;
    let mut child = command.spawn()?;
    // `command` holds our copy of `b`: drop it so that only the child has
    // that end, and we would see end of file if the child died.
    drop(command);

    let list = tour_list();
    step(
        "parent",
        format!("a.send(&list)        list = {}", python_list(&list)),
    );
    a.send(&list)?;

    let thanks = a.recv_bytes()?;
    step(
        "parent",
        format!(
            "a.recv_bytes()       -> b{:?}",
            String::from_utf8_lossy(&thanks)
        ),
    );

    let arr1: Vec<i32> = (0..5).collect();
    step(
        "parent",
        format!("a.send_bytes(&arr1)  arr1 = {arr1:?} (i32)"),
    );
    a.send_bytes(&i32_bytes(&arr1))?;

    // Closing our end is how the child learns that the tour is over.
    a.close()?;
    let status = child.wait()?;
    step("parent", format!("child finished: {status}"));
    if !status.success() {
        return Err(format!("the child failed ({status})").into());
    }
    Ok(())
}

fn child() -> Result<(), Box<dyn Error>> {
    let mut b = Connection::from_env(CHILD_END)?;

    let list: Vec<Item> = b.recv()?;
    step(
        "child",
        format!("b.recv()             -> {}", python_list(&list)),
    );

    step("child", "b.send_bytes(b\"thank you\")");
    b.send_bytes(b"thank you")?;

    // Room for ten i32s; the five that arrive land at the start.
    let mut arr2 = [0u8; 10 * 4];
    let count = b.recv_bytes_into(&mut arr2, 0)?;
    step(
        "child",
        format!("b.recv_bytes_into(&mut arr2, 0) -> count = {count}"),
    );
    if count != 5 * std::mem::size_of::<i32>() {
        return Err(format!("expected the bytes of five i32s, got {count} bytes").into());
    }
    step("child", format!("arr2 = {:?}", i32s_from_bytes(&arr2)));

    match b.recv::<Vec<Item>>() {
        Err(err) if err.kind() == ErrorKind::Eof => {
            step(
                "child",
                "b.recv()             -> end of file: the parent closed its end",
            );
            Ok(())
        }
        Err(err) => Err(err.into()),
        Ok(more) => Err(format!("expected end of file, got {}", python_list(&more)).into()),
    }
}

/// Prints one step of the tour, tagged with the process that took it.
/// Each step is printed before the message it announces is sent, so the
/// two processes' lines come out in the order the steps happen.
fn step(who: &str, what: impl AsRef<str>) {
    println!("{who:>6} {:>7}  {}", std::process::id(), what.as_ref());
}
