//! What `pool::task!` accepts, and what it refuses with a message naming
//! the fix: each file under `task_macro/` is compiled on its own
//! (`trybuild`); the `fail` ones must fail with exactly the `.stderr`
//! beside them. `TRYBUILD=overwrite cargo test -p pool --test task_macro`
//! rewrites those after a deliberate change of message.

#[test]
fn task_macro_forms() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/task_macro/pass/*.rs");
    cases.compile_fail("tests/task_macro/fail/*.rs");
}
