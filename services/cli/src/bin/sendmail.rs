//! `sendmail`: see `cli::sendmail`.

fn main() -> std::process::ExitCode {
    let argv0 = std::env::args_os().next().map(|a| a.to_string_lossy().into_owned()).unwrap_or_default();
    // Arguments are addresses: one that is not text is refused, never mangled into another.
    let args: Result<Vec<String>, cli::Fatal> = std::env::args_os()
        .skip(1)
        .map(|a| {
            a.into_string().map_err(|a| cli::Fatal::new(cli::sendmail::EX_USAGE, format!("malformed argument: {}", a.to_string_lossy())))
        })
        .collect();
    let result = args.and_then(|args| cli::sendmail::run(&argv0, &args, &mut std::io::stdin()));
    cli::report("sendmail", result)
}
