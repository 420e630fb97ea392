//! The pool's futures across real worker processes: awaited under tokio's
//! current-thread runtime and a plain `block_on`, woken when workers die,
//! cancelling their inputs when dropped unfinished, and stopping them if
//! running (unless told otherwise).

use std::time::Duration;

use integration_tests::{line, scenario_output};

const LIMIT: Duration = Duration::from_secs(120);

fn scenario(name: &str) -> String {
    scenario_output(env!("CARGO_BIN_EXE_pool_async"), name, LIMIT)
}

#[test]
fn awaited_handles_and_streams_complete_under_tokio_smol_and_block_on() {
    let out = scenario("many");
    let squares: u64 = (0..10_000u64).map(|x| x * x).sum();
    assert_eq!(line(&out, "tokio sum"), squares.to_string());
    let squares: u64 = (0..1000u64).map(|x| x * x).sum();
    assert_eq!(line(&out, "block_on sum"), squares.to_string());
    assert_eq!(line(&out, "smol sum"), format!("{squares} {squares}"));
}

#[test]
fn futures_waiting_on_killed_workers_wake_with_worker_died() {
    let out = scenario("killed");
    let outcomes: Vec<&str> = line(&out, "outcomes").split(' ').collect();
    assert_eq!(outcomes.len(), 6, "{out}");
    // The inputs running when both workers were killed (one each, unless
    // a worker had not started yet on a very loaded machine) fail; the
    // ones queued behind them run on the replacements. None hangs.
    let died = outcomes.iter().filter(|o| **o == "WorkerDied").count();
    assert!((1..=2).contains(&died), "{out}");
    assert_eq!(
        outcomes.iter().filter(|o| **o == "ok").count(),
        6 - died,
        "{out}"
    );
}

#[test]
fn a_dropped_future_cancels_its_input_and_an_unpolled_handle_does_not() {
    let out = scenario("dropped");
    assert_eq!(line(&out, "third timed out"), "true");
    assert_eq!(line(&out, "first"), "Ok(300)");
    assert_eq!(line(&out, "second"), "Ok(300)");
    assert_eq!(line(&out, "after"), "Ok(49)");
    assert_eq!(line(&out, "third ran"), "false");
    assert_eq!(line(&out, "after drop"), "Ok(64)");
    assert_eq!(line(&out, "never polled ran"), "true");
    let cancel = line(&out, "cancel");
    // Either the cancel came first, or the result did; never anything else.
    assert!(
        cancel == "true Err(true)" || cancel == "false Ok(81)",
        "{cancel}"
    );
}

/// Checks what became of one `give_up` run: the long input was given up
/// on, and was `stopped` (its worker replaced, the next request answered
/// before it could have finished) or ran to its end before the next
/// request ran; either way the other call's input the worker held was run,
/// not failed.
fn assert_given_up(out: &str, label: &str, stopped: bool) {
    let value = |what: &str| line(out, &format!("{label} {what}")).to_string();
    assert_eq!(value("timed out"), "true", "{out}");
    assert_eq!(value("next"), "Ok(81)", "{out}");
    assert_eq!(value("held"), "Ok(25)", "{out}");
    assert_eq!(value("long finished"), (!stopped).to_string(), "{out}");
    assert_eq!(value("replaced"), stopped.to_string(), "{out}");
    eprintln!("{label}: next request answered {}", value("next after"));
}

#[test]
fn a_future_given_up_on_stops_its_running_input_unless_told_to_keep_it() {
    let out = scenario("given_up");
    // A 60 s input stopped: the next request on the one worker is answered
    // while that input would still be sleeping.
    assert_given_up(&out, "default", true);
    assert_given_up(&out, "handle stops", true);
    // Kept: the next request waits for the input to end.
    assert_given_up(&out, "handle keeps", false);
    assert_given_up(&out, "pool keeps", false);
}
