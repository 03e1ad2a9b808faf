//! `postqueue`: see `cli::postqueue`.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    cli::report("postqueue", cli::postqueue::run(&args))
}
