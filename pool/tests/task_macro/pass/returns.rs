//! No return type is `()`; a `Result` under any alias is fallible, with
//! the error's text; anything else is a plain output.

use pool::Task;

mod errors {
    /// An alias like `anyhow::Result`, with one parameter.
    pub type Result<T> = std::result::Result<T, Failure>;

    #[derive(Debug)]
    pub struct Failure;

    impl std::fmt::Display for Failure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("it failed")
        }
    }
}

pool::task! {
    fn log(line: String) {
        let _ = line;
    }
}

pool::task! {
    fn read(path: std::path::PathBuf) -> std::io::Result<Vec<u8>> {
        std::fs::read(path)
    }
}

pool::task! {
    fn alias(fail: bool) -> errors::Result<u8> {
        if fail { Err(errors::Failure) } else { Ok(1) }
    }
}

pool::task! {
    fn spelled_out(x: i32) -> core::result::Result<i32, String> {
        Err(format!("{x} refused"))
    }
}

pool::task! {
    fn maybe(x: u8) -> Option<u8> {
        x.checked_sub(1)
    }
}

fn main() {
    let (): <log as Task>::Output = log.call("x".into());
    let _: Option<Vec<u8>> = Option::<<read as Task>::Output>::None;
    assert!(<read as Task>::outcome(read.call("/nonexistent".into())).is_err());
    assert_eq!(<alias as Task>::outcome(alias.call(false)), Ok(1));
    assert_eq!(<alias as Task>::outcome(alias.call(true)), Err("it failed".to_string()));
    assert_eq!(<spelled_out as Task>::outcome(spelled_out.call(3)), Err("3 refused".to_string()));
    assert_eq!(<maybe as Task>::outcome(maybe.call(0)), Ok(None));
}
