//! The `odmr` program (see the manual page in customer/mod.rs).

fn main() {
    smtpd::customer::run();
}
