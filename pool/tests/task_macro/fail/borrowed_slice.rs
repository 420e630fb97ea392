pool::task! {
    fn sum(a: u8, bytes: &[u8]) -> u64 {
        bytes.iter().map(|&b| u64::from(b + a)).sum()
    }
}

fn main() {}
