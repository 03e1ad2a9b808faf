//! `postsuper`: see `cli::postsuper`.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    cli::report("postsuper", cli::postsuper::run(&args, &mut std::io::stdin().lock()))
}
