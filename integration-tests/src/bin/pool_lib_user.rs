//! A program that uses a library which starts pools (`pool-lib-demo`),
//! without calling `pool::init()` and without naming anything of the pool:
//! its `main` has a side effect (a line printed) that must happen once,
//! in this process only, never in the workers.

fn main() {
    println!("main ran in {}", std::process::id());
    let texts = ["one two", "three", ""].map(String::from).to_vec();
    match pool_lib_demo::count_words(texts) {
        Ok(counts) => println!("counts: {counts:?}"),
        Err(err) => {
            println!("error: {err:#}");
            std::process::exit(3);
        }
    }
}
