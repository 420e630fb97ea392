pool::task! {
    #[version = "two"]
    fn double(x: u64) -> u64 {
        x * 2
    }
}

pool::task! {
    #[version = 1]
    #[version = 2]
    fn triple(x: u64) -> u64 {
        x * 3
    }
}

fn main() {}
