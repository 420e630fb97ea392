//! `#[version = N]` sets the task's version; without it the version is 0,
//! and other attributes still reach the function.

use pool::Task;

pool::task! {
    #[version = 7]
    #[allow(clippy::identity_op)]
    /// Documented after its version.
    fn seventh(x: u64) -> u64 {
        x * 1
    }
}

pool::task! {
    fn plain(x: u64) -> u64 {
        x
    }
}

fn main() {
    assert_eq!(seventh::VERSION, 7);
    assert_eq!(plain::VERSION, 0);
    assert_eq!(seventh.call(3), 3);
}
