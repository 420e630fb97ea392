pool::task! {
    struct NotAFunction;
}

fn main() {}
