//! The `master` program; its entry is `master::program::main`.

fn main() -> std::process::ExitCode {
    master::program::main()
}
