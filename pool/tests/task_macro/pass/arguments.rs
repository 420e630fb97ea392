//! Several arguments become a tuple input, none becomes `()`, and patterns
//! and attributes are kept.

use pool::Task;

pool::task! {
    /// Two arguments.
    pub fn add(a: u64, b: u64) -> u64 {
        a + b
    }
}

pool::task! {
    fn three(a: u8, (b, c): (u8, u8), mut d: Vec<u8>) -> Vec<u8> {
        d.extend([a, b, c]);
        d
    }
}

pool::task! {
    fn answer() -> u32 {
        42
    }
}

pool::task! {
    #[allow(clippy::needless_pass_by_value)]
    fn one(mut text: String) -> String {
        text.push('!');
        text
    }
}

fn input_of<T: Task>(_: T) -> std::marker::PhantomData<T::Input> {
    std::marker::PhantomData
}

fn main() {
    let _: std::marker::PhantomData<(u64, u64)> = input_of(add);
    let _: std::marker::PhantomData<()> = input_of(answer);
    let _: std::marker::PhantomData<String> = input_of(one);
    assert_eq!(add.call((1, 2)), 3);
    assert_eq!(three.call((1, (2, 3), vec![0])), [0, 1, 2, 3]);
    assert_eq!(answer.call(()), 42);
    assert_eq!(one.call("hi".into()), "hi!");
    assert_eq!(<add as Task>::outcome(5), Ok(5));
}
