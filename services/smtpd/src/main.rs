//! The `smtpd` program (see the manual page in lib.rs).

fn main() {
    smtpd::run();
}
