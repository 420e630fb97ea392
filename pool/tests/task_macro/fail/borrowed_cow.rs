use std::borrow::Cow;

pool::task! {
    fn trim<'a>(text: Cow<'a, str>) -> usize {
        text.trim().len()
    }
}

fn main() {}
