//! A program that asked for its workers to start in `main` but forgot to
//! call `pool::init()` there: the pool must fail to start with a clear
//! error, without a fork bomb and without hanging. Prints the error and
//! exits with status 3.

pool::workers_start_in_main!();

fn main() {
    match pool::Pool::new(2) {
        Ok(_) => println!("started: unexpectedly"),
        Err(err) => {
            println!("kind: {:?}", err.kind());
            println!("error: {err}");
            std::process::exit(3);
        }
    }
}
