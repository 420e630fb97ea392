//! `pipe_tour` runs the original documentation's Connection session
//! between two processes; check that every value crossed intact and that
//! each end printed its steps in the order they happened.

mod examples_support;

use examples_support::run_ok;

#[test]
fn tour_prints_the_documented_values_in_order() {
    let out = run_ok("pipe_tour", &[]);
    let expected_in_order = [
        ("parent", "a.send(&list)", "[1, 'hello', None]"),
        ("child", "b.recv()", "-> [1, 'hello', None]"),
        ("child", "b.send_bytes", "thank you"),
        ("parent", "a.recv_bytes()", "-> b\"thank you\""),
        ("parent", "a.send_bytes(&arr1)", "[0, 1, 2, 3, 4]"),
        ("child", "b.recv_bytes_into", "count = 20"),
        ("child", "arr2", "[0, 1, 2, 3, 4, 0, 0, 0, 0, 0]"),
        ("child", "b.recv()", "end of file"),
        ("parent", "child finished", "exit status: 0"),
    ];
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), expected_in_order.len(), "output:\n{out}");
    let mut pids = [None, None];
    for (line, (who, step, value)) in lines.iter().zip(expected_in_order) {
        let mut words = line.split_whitespace();
        assert_eq!(words.next(), Some(who), "line {line:?}");
        let pid: u32 = words.next().and_then(|p| p.parse().ok()).expect("pid");
        // Each side's pid is the same on all its lines; the two differ.
        let slot = &mut pids[usize::from(who == "child")];
        assert_eq!(*slot.get_or_insert(pid), pid, "line {line:?}");
        assert!(line.contains(step) && line.contains(value), "line {line:?}");
    }
    assert_ne!(pids[0], pids[1], "parent and child are different processes");
}

#[test]
fn a_forged_connection_variable_is_a_clear_error() {
    let run = examples_support::run_example(
        "pipe_tour",
        &[],
        &[("PIPE_TOUR_CONNECTION", "not-a-descriptor")],
    );
    assert!(!run.success);
    assert!(
        run.stderr.contains("PIPE_TOUR_CONNECTION"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}
