//! The `qmgr` program (see the manual page in lib.rs).

fn main() {
    qmgr::run();
}
