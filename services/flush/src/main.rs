//! The `flush` program (see the manual page in lib.rs).

fn main() {
    flush::run();
}
