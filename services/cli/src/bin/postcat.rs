//! `postcat`: see `cli::postcat`.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    cli::report("postcat", cli::postcat::run(&args, &mut std::io::stdout().lock()))
}
