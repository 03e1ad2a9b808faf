//! Postern's command-line programs: `postfix`, `postconf`, `postmap`, `postqueue` (and `mailq`). Each
//! binary in `src/bin` is a thin `main` over a module here. They use blocking IPC only.

pub mod getopt;
pub mod logrotate;
pub mod postcat;
pub mod postconf;
pub mod postfix;
pub mod postfix_error;
pub mod postmap;
pub mod postqueue;
pub mod postsuper;
pub mod qshape;
pub mod sendmail;

use std::io::Write;
use std::path::Path;

/// A fatal error: the text (printed as `<program>: fatal: <text>`) and the exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fatal {
    pub text: String,
    pub status: u8,
}

impl Fatal {
    pub fn new(status: u8, text: impl Into<String>) -> Fatal {
        Fatal { text: text.into(), status }
    }
}

/// Print the fatal line and return the exit code (`main` returns it).
pub fn report(program: &str, result: Result<u8, Fatal>) -> std::process::ExitCode {
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(f) => {
            eprintln!("{program}: fatal: {}", f.text);
            std::process::ExitCode::from(f.status)
        }
    }
}

/// Replace `path` with `text` atomically: write `path.tmp`, fsync, rename over, fsync the
/// directory. A failed edit leaves the original untouched.
pub fn replace_file(path: &Path, text: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
