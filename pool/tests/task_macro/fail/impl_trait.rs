pool::task! {
    fn total(numbers: impl IntoIterator<Item = u64>) -> u64 {
        numbers.into_iter().sum()
    }
}

fn main() {}
