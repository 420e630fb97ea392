#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Code(u8);

pool::task! {
    fn check(x: u8) -> Result<u8, Code> {
        if x > 9 { Err(Code(x)) } else { Ok(x) }
    }
}

fn main() {}
