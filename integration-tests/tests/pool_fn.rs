//! Plain functions and closures as tasks, run by pointer in real worker
//! processes that load the same image at other addresses (ASLR): through
//! `map_fn`, `imap_fn`, `apply_fn` and `apply_async_fn`, with a panic
//! failing its input alone, and refused, with nothing run, by a pool
//! whose workers may run another program. Run by `pool_fn`.

use std::time::Duration;

use integration_tests::{line, scenario_output, scenario_output_with};

fn run(scenario: &str) -> String {
    scenario_output(
        env!("CARGO_BIN_EXE_pool_fn"),
        scenario,
        Duration::from_secs(60),
    )
}

#[test]
fn closures_and_fn_items_give_their_results_from_other_processes() {
    let stdout = run("calls");
    assert_eq!(line(&stdout, "map closure"), "[0, 1, 4, 9, 16, 25]");
    assert_eq!(line(&stdout, "map fn item"), "[8, 27, 64]");
    assert_eq!(line(&stdout, "ran elsewhere"), "true");
    assert_eq!(line(&stdout, "map tuple"), r#"["abab", "ccc"]"#);
    assert_eq!(line(&stdout, "imap"), "[100, 101, 102, 103]");
    assert_eq!(line(&stdout, "apply_async"), "4 [0, 1, 8]");
    assert_eq!(line(&stdout, "apply"), "125");
    assert_eq!(line(&stdout, "nested"), "([0, 1, 4, 9], true)");
}

#[test]
fn a_panicking_function_fails_its_input_alone() {
    let stdout = run("panics");
    let imap: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("imap: "))
        .collect();
    assert_eq!(imap.len(), 4, "{stdout}");
    assert_eq!(imap[0], "ok 0");
    assert_eq!(imap[1], "ok 1");
    assert!(
        imap[2].starts_with("err Panicked index=Some(2): task panicked at ")
            && imap[2].contains("integration-tests/src/bin/pool_fn.rs:")
            && imap[2].ends_with("two is right out"),
        "{stdout}"
    );
    assert_eq!(imap[3], "ok 3");
    assert_eq!(line(&stdout, "map"), "Panicked index=Some(2)");
    let apply = line(&stdout, "apply");
    assert!(
        apply.starts_with("Panicked: ") && apply.ends_with("in a closure"),
        "{apply}"
    );
    assert_eq!(line(&stdout, "after the panics"), "[1, 8]");
}

#[test]
fn a_pool_whose_workers_may_run_another_program_refuses_and_runs_nothing() {
    let marks = std::env::temp_dir().join(format!("pool_fn_marks_{}", std::process::id()));
    std::fs::create_dir_all(&marks).unwrap();
    let stdout = scenario_output_with(
        env!("CARGO_BIN_EXE_pool_fn"),
        &[
            "refused",
            env!("CARGO_BIN_EXE_pool_fn"),
            marks.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    let ran: Vec<_> = std::fs::read_dir(&marks).unwrap().collect();
    std::fs::remove_dir_all(&marks).unwrap();
    assert!(ran.is_empty(), "a refused function ran: {ran:?}\n{stdout}");
    for (label, why) in [
        ("worker_program", "its workers run the worker program "),
        ("remote", "it takes remote workers"),
    ] {
        let map = line(&stdout, &format!("{label} map"));
        assert!(
            map.starts_with("UnknownTask: ")
                && map.contains(why)
                && map.contains("nothing was run: declare the function with `pool::task!`"),
            "{map}"
        );
        for call in ["imap", "apply_async"] {
            assert_eq!(line(&stdout, &format!("{label} {call}")), "UnknownTask");
        }
    }
}
