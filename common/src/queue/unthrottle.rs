//! The unthrottle mark on a queue file (Postfix's `MAIL_QUEUE_STAT_UNTHROTTLE`, the group read
//! bit): `postqueue -i` / `sendmail -qI` ask for one message to be delivered now, so the flush
//! service marks its file, and the queue manager, taking it, forgets the dead state of that
//! message's destinations and overrides `defer_transports` for it, then clears the mark. The
//! mark lives in the file's mode, so it survives restarts and costs no extra file.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The mode bit that marks a queue file (queue files are created 0600, so it is never set by
/// accident).
pub const MARK: u32 = 0o040;

/// Mark the queue file at `path`.
pub fn mark(path: &Path) -> io::Result<()> {
    let mode = fs::metadata(path)?.permissions().mode();
    fs::set_permissions(path, fs::Permissions::from_mode(mode | MARK))
}

/// Whether the queue file at `path` was marked; the mark is cleared.
pub fn take(path: &Path) -> io::Result<bool> {
    let mode = fs::metadata(path)?.permissions().mode();
    if mode & MARK == 0 {
        return Ok(false);
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode & !MARK))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_is_taken_once() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("ABC");
        fs::write(&path, b"x").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(!take(&path).unwrap());
        mark(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
        assert!(take(&path).unwrap());
        assert!(!take(&path).unwrap());
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(take(&tmp.path().join("gone")).is_err());
    }
}
