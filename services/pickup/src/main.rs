//! The `pickup` program (see the manual page in lib.rs).

fn main() {
    pickup::run();
}
