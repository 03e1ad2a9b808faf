//! The systemd units parse and name real programs (`systemd-analyze verify`).

use std::path::Path;
use std::process::Command;

use crate::harness::{bin, text};

fn verify(unit: &str) {
    // A missing tool is a failed test, not a pass: tests/run installs it.
    let found =
        Command::new("systemd-analyze").arg("--version").output().expect("systemd-analyze is not installed (tests/run installs systemd)");
    assert!(found.status.success());
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd").join(unit);
    let text_in = std::fs::read_to_string(&src).unwrap();
    assert!(text_in.contains("Type=notify") && text_in.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    // The units name installed paths; point them at the programs just built.
    let postfix = bin("postfix");
    let local = text_in.replace("/usr/sbin/postfix", &postfix.display().to_string());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(unit);
    std::fs::write(&path, local).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().unwrap();
    let err = text(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "systemd-analyze verify {unit}: {err}");
}

#[test]
fn postern_service_verifies() {
    verify("postern.service");
}

#[test]
fn template_service_verifies() {
    verify("postern@.service");
}
