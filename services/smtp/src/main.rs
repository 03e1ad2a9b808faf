//! The `smtp` program (see the manual page in lib.rs).

fn main() {
    smtp::run();
}
