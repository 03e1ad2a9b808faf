//! The `showq` program (see the manual page in lib.rs).

fn main() {
    showq::run();
}
