struct Counter;

impl Counter {
    pool::task! {
        fn count(&self, x: u64) -> u64 {
            x
        }
    }
}

fn main() {}
