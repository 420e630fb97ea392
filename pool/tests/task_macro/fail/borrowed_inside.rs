pool::task! {
    fn lengths(words: Vec<&'static str>) -> Vec<usize> {
        words.iter().map(|w| w.len()).collect()
    }
}

fn main() {}
