pool::task! {
    fn double<T: std::ops::Add<Output = T> + Copy>(x: T) -> T {
        x + x
    }
}

fn main() {}
