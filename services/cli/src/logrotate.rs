//! `postfix logrotate`: rename `maillog_file` with a date suffix and compress it, as Postfix's
//! postfix-script does. There is no postlogd here to tell: every process writing the log
//! notices the rename on its next line and reopens the file (`common::maillog`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::config::{ParamError, Params};
use common::maillog;

/// How long the rotated file is left alone before it is compressed: a process that checked
/// the file name just before the rename may still be writing its line (Postfix sleeps too).
const SETTLE: Duration = Duration::from_secs(1);

/// Why `postfix logrotate` failed, in postfix-script's words.
#[derive(Debug, thiserror::Error)]
pub enum LogrotateError {
    #[error("empty '{0}' parameter value - logfile rotation failed")]
    EmptyParameter(&'static str),
    #[error(transparent)]
    Parameter(#[from] ParamError),
    #[error("not rotating '{0}'")]
    Device(String),
    #[error("logfile '{file}' rotation failed: {step}")]
    Failed { file: String, step: RotateStep },
}

/// The step of a rotation that failed.
#[derive(Debug, thiserror::Error)]
pub enum RotateStep {
    #[error("date: {0}")]
    Date(std::io::Error),
    #[error("date: {0}")]
    DateRefused(String),
    #[error("bad suffix '{0}' from maillog_file_rotate_suffix")]
    Suffix(String),
    #[error("mv {from} {to}: {source}")]
    Rename { from: String, to: String, source: std::io::Error },
    #[error("{program}: {source}")]
    Compressor { program: String, source: std::io::Error },
    #[error("{program}: {stderr}")]
    CompressorRefused { program: String, stderr: String },
}

fn param(p: &Params, name: &'static str) -> Result<String, LogrotateError> {
    let value = p.get(name)?;
    if value.is_empty() {
        return Err(LogrotateError::EmptyParameter(name));
    }
    Ok(value)
}

/// Rotate the log.
pub fn logrotate(p: &Params) -> Result<u8, LogrotateError> {
    param(p, "maillog_file")?;
    let compressor = param(p, "maillog_file_compressor")?;
    let suffix_format = param(p, "maillog_file_rotate_suffix")?;
    let file = maillog::maillog_path(p).ok_or(LogrotateError::EmptyParameter("maillog_file"))?;
    let shown = file.display().to_string();
    if shown.starts_with("/dev/") {
        return Err(LogrotateError::Device(shown));
    }
    let failed = |step: RotateStep| LogrotateError::Failed { file: shown.clone(), step };
    // date(1) is what Postfix runs: the suffix is a strftime format in the administrator's terms.
    let date = Command::new("date").arg(format!("+{suffix_format}")).output().map_err(|e| failed(RotateStep::Date(e)))?;
    if !date.status.success() {
        return Err(failed(RotateStep::DateRefused(String::from_utf8_lossy(&date.stderr).trim().to_string())));
    }
    let suffix = String::from_utf8_lossy(&date.stdout).trim().to_string();
    if suffix.is_empty() || suffix.contains('/') {
        return Err(failed(RotateStep::Suffix(suffix)));
    }
    let mut rotated = file.clone().into_os_string();
    rotated.push(format!(".{suffix}"));
    let rotated = Path::new(&rotated).to_path_buf();
    std::fs::rename(&file, &rotated)
        .map_err(|source| failed(RotateStep::Rename { from: shown.clone(), to: rotated.display().to_string(), source }))?;
    std::thread::sleep(SETTLE);
    let out = Command::new(&compressor)
        .arg(&rotated)
        .output()
        .map_err(|source| failed(RotateStep::Compressor { program: compressor.clone(), source }))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(failed(RotateStep::CompressorRefused { program: compressor, stderr }));
    }
    Ok(0)
}
