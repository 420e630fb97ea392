pool::task! {
    fn trim(text: std::borrow::Cow<'_, str>) -> usize {
        text.trim().len()
    }
}

fn main() {}
