//! Starting one child process: the master.cf command with Postfix-style generic arguments, its
//! listening sockets at descriptors 3.. (`LISTEN_FDS`), the child's end of a control socketpair
//! after them, and when the master runs as root, `mail_owner`'s identity for unprivileged
//! services.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::config::MasterEntry;
use common::daemon::{LISTEN_FDS_START, PROCESS_LIMIT_ENV, SLOTS_RESERVED_ENV};
use common::ipc::control::CONTROL_FD_ENV;

/// The user unprivileged services run as, when the master may change identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
}

/// A started child.
#[derive(Debug)]
pub struct Spawned {
    pub pid: i32,
    /// The master's end of the control channel.
    pub control: UnixStream,
    /// What the child writes to standard error, for [`relay_stderr`].
    pub stderr: Option<std::process::ChildStderr>,
}

/// Copy a child's standard error into the mail log, line by line, under the child's name:
/// a daemon that dies before it can open the mail log (an unreadable main.cf, a panic) still
/// says why where the administrator looks. Ends when the child closes its standard error.
pub fn relay_stderr(program: String, pid: i32, stderr: std::process::ChildStderr) {
    use std::io::{BufRead, Read};
    let spawned = std::thread::Builder::new().name(format!("stderr-{pid}")).spawn(move || {
        let mut reader = std::io::BufReader::new(stderr);
        let mut line = Vec::new();
        // Bounded lines: a child cannot make the master hold an endless one.
        while reader.by_ref().take(common::maillog::LOG_LINE_MAX as u64 + 1).read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\r', '\n']);
            if !text.is_empty() {
                common::maillog::log_for(&program, pid as u32, &stderr_text(text, pid));
            }
            line.clear();
        }
    });
    if let Err(e) = spawned {
        common::log_warning!("relay standard error of pid {pid}: {e}");
    }
}

/// A child's standard error line as a mail log text: without the `program[pid]: ` that a
/// program writes there before its mail log is open, and with Rust's panic report marked as
/// Postfix marks one.
fn stderr_text(line: &str, pid: i32) -> String {
    let own = format!("[{pid}]: ");
    let text = match line.find(&own) {
        Some(at) if !line[..at].contains(' ') => &line[at + own.len()..],
        _ => line,
    };
    if text.contains(" panicked at ") { format!("panic: {text}") } else { text.to_string() }
}

/// The program a master.cf command names: absolute paths as they are, anything else below
/// `daemon_directory`.
pub fn command_path(daemon_dir: &Path, command: &str) -> PathBuf {
    let p = Path::new(command);
    if p.is_absolute() { p.to_path_buf() } else { daemon_dir.join(p) }
}

/// Start `entry`'s command with `listeners`; `slots_reserved` when it replaces a process that
/// still drains.
pub fn spawn_child(
    entry: &MasterEntry,
    path: &Path,
    config_dir: &Path,
    listeners: &[OwnedFd],
    process_limit: u32,
    identity: Option<Identity>,
    slots_reserved: bool,
) -> std::io::Result<Spawned> {
    let (master_end, child_end) = UnixStream::pair()?;
    let mut cmd = Command::new(path);
    cmd.arg0(&entry.command);
    cmd.args(["-n", &entry.service, "-t", entry.kind.as_str()]);
    for (name, value) in &entry.overrides {
        cmd.arg("-o").arg(format!("{name}={value}"));
    }
    cmd.args(&entry.args);
    cmd.env("MAIL_CONFIG", config_dir);
    cmd.env("LISTEN_FDS", listeners.len().to_string());
    cmd.env(CONTROL_FD_ENV, (LISTEN_FDS_START + listeners.len() as RawFd).to_string());
    cmd.env(PROCESS_LIMIT_ENV, process_limit.to_string());
    if slots_reserved {
        // It replaces a process still draining: its slots stay held until we say how many.
        cmd.env(SLOTS_RESERVED_ENV, "1");
    } else {
        cmd.env_remove(SLOTS_RESERVED_ENV);
    }
    cmd.env_remove("LISTEN_PID");
    cmd.env_remove("NOTIFY_SOCKET");
    cmd.stdin(Stdio::null());
    cmd.stderr(Stdio::piped());

    // Descriptors to place at 3, 4, ...: built before fork so the pre_exec hook only indexes.
    let mut fds: Vec<RawFd> = listeners.iter().map(AsRawFd::as_raw_fd).chain(std::iter::once(child_end.as_raw_fd())).collect();
    let wanted_identity = identity.filter(|_| entry.unprivileged);
    // SAFETY: the hook runs between fork and exec and makes only async-signal-safe system
    // calls (fcntl, dup2, setgroups, setgid, setuid) on memory allocated before the fork.
    unsafe {
        cmd.pre_exec(move || {
            // First move every descriptor above the target range, so that placing one cannot
            // overwrite another that still has to be placed.
            for fd in fds.iter_mut() {
                let high = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 64);
                if high < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                *fd = high;
            }
            for (i, fd) in fds.iter().enumerate() {
                if libc::dup2(*fd, LISTEN_FDS_START + i as RawFd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let Some(id) = wanted_identity
                && (libc::setgroups(0, std::ptr::null()) < 0 || libc::setgid(id.gid) < 0 || libc::setuid(id.uid) < 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    drop(child_end);
    Ok(Spawned { pid: child.id() as i32, control: master_end, stderr: child.stderr.take() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_lines() {
        assert_eq!(stderr_text("smtpd[12]: fatal: open etc/main.cf: Permission denied", 12), "fatal: open etc/main.cf: Permission denied");
        assert_eq!(stderr_text("thread 'main' panicked at services/x.rs:1:2:", 12), "panic: thread 'main' panicked at services/x.rs:1:2:");
        assert_eq!(stderr_text("some text [12]: here", 12), "some text [12]: here");
        assert_eq!(stderr_text("other[13]: text", 12), "other[13]: text");
    }
}
