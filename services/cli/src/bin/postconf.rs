//! `postconf`: see `cli::postconf`.

use std::io::Write;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = cli::postconf::run(&args).map(|(out, warnings)| {
        for w in warnings {
            eprintln!("postconf: warning: {w}");
        }
        // A closed pipe (postconf | head) is not an error.
        let _ = std::io::stdout().write_all(out.as_bytes());
        0
    });
    cli::report("postconf", result)
}
