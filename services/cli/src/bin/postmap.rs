//! `postmap`: see `cli::postmap`.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::ExitCode::from(cli::postmap::run(&args))
}
