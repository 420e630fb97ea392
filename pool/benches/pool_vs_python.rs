fn main() {
    pool::init();
}
