//! The `verify` program (see the manual page in lib.rs).

fn main() {
    verify::run();
}
