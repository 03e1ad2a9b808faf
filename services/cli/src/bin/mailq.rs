//! `mailq`: the same as `postqueue -p` (and `sendmail -bp`).

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    cli::report("mailq", cli::sendmail::run("mailq", &args, &mut std::io::empty()))
}
