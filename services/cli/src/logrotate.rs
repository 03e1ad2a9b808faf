//! `postfix logrotate`: rename `maillog_file` with a date suffix and compress it, as Postfix's
//! postfix-script does. There is no postlogd here to tell: every process writing the log
//! notices the rename on its next line and reopens the file (`common::maillog`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::config::Params;
use common::maillog;

/// How long the rotated file is left alone before it is compressed: a process that checked
/// the file name just before the rename may still be writing its line (Postfix sleeps too).
const SETTLE: Duration = Duration::from_secs(1);

fn param(p: &Params, name: &str) -> Result<String, String> {
    let value = p.get(name).map_err(|e| e.to_string())?;
    if value.is_empty() {
        return Err(format!("empty '{name}' parameter value - logfile rotation failed"));
    }
    Ok(value)
}

/// Rotate the log; the error is postfix-script's text.
pub fn logrotate(p: &Params) -> Result<u8, String> {
    param(p, "maillog_file")?;
    let compressor = param(p, "maillog_file_compressor")?;
    let suffix_format = param(p, "maillog_file_rotate_suffix")?;
    let file = maillog::maillog_path(p).ok_or("empty 'maillog_file' parameter value - logfile rotation failed")?;
    let shown = file.display().to_string();
    if shown.starts_with("/dev/") {
        return Err(format!("not rotating '{shown}'"));
    }
    let failed = |why: String| format!("logfile '{shown}' rotation failed: {why}");
    // date(1) is what Postfix runs: the suffix is a strftime format in the administrator's terms.
    let date = Command::new("date").arg(format!("+{suffix_format}")).output().map_err(|e| failed(format!("date: {e}")))?;
    if !date.status.success() {
        return Err(failed(String::from_utf8_lossy(&date.stderr).trim().to_string()));
    }
    let suffix = String::from_utf8_lossy(&date.stdout).trim().to_string();
    if suffix.is_empty() || suffix.contains('/') {
        return Err(failed(format!("bad suffix '{suffix}' from maillog_file_rotate_suffix")));
    }
    let mut rotated = file.clone().into_os_string();
    rotated.push(format!(".{suffix}"));
    let rotated = Path::new(&rotated).to_path_buf();
    std::fs::rename(&file, &rotated).map_err(|e| failed(format!("mv {shown} {}: {e}", rotated.display())))?;
    std::thread::sleep(SETTLE);
    let out = Command::new(&compressor).arg(&rotated).output().map_err(|e| failed(format!("{compressor}: {e}")))?;
    if !out.status.success() {
        return Err(failed(format!("{compressor}: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(0)
}
