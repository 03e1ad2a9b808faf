//! `qshape`: see `cli::qshape`.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    cli::report("qshape", cli::qshape::run(&args, &mut std::io::stdout().lock()))
}
