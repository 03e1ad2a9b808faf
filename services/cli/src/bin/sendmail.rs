//! `sendmail`: see `cli::sendmail`.

fn main() -> std::process::ExitCode {
    let argv0 = std::env::args().next().unwrap_or_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    cli::report("sendmail", cli::sendmail::run(&argv0, &args, &mut std::io::stdin()))
}
