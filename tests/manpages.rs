//! The manual pages: `xtask man` renders one page per program of the workspace and
//! postconf(5) from the parameter table; every page renders without a warning, and
//! postconf(5) lists exactly the parameters `postconf -d` prints.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::harness::{bin, text};

/// Render the pages into `dir`.
pub fn render_pages(dir: &Path) {
    let out = Command::new(bin("xtask")).arg("man").arg(dir).output().expect("run xtask");
    assert!(out.status.success(), "xtask man failed: {}", text(&out.stderr));
}

/// The binaries of the shipped packages, from cargo itself (not from the generator).
fn workspace_programs() -> Vec<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version", "1", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(out.status.success(), "cargo metadata: {}", text(&out.stderr));
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut names = Vec::new();
    for pkg in m["packages"].as_array().unwrap() {
        if pkg["publish"].as_array().is_some_and(Vec::is_empty) {
            continue; // tooling and tests
        }
        for t in pkg["targets"].as_array().unwrap() {
            if t["kind"].as_array().unwrap().iter().any(|k| k == "bin") {
                names.push(t["name"].as_str().unwrap().to_string());
            }
        }
    }
    names
}

fn pages(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    for sec in ["man1", "man5", "man8"] {
        for e in std::fs::read_dir(dir.join(sec)).unwrap() {
            v.push(e.unwrap().path());
        }
    }
    v.sort();
    v
}

#[test]
fn every_program_has_a_page_that_renders_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    render_pages(tmp.path());
    let programs = workspace_programs();
    assert!(programs.len() >= 13, "too few programs: {programs:?}");
    for p in &programs {
        let found = ["1", "8"].iter().any(|s| tmp.path().join(format!("man{s}/{p}.{s}")).exists());
        assert!(found, "{p} has no manual page");
    }
    for d in ["postqueue.1", "mailq.1", "sendmail.1", "flush.8", "master.8", "smtpd.8"] {
        let sec = &d[d.len() - 1..];
        assert!(tmp.path().join(format!("man{sec}/{d}")).exists(), "{d} is missing");
    }
    for page in pages(tmp.path()) {
        let groff = Command::new("groff").args(["-man", "-Tutf8", "-ww", "-z"]).arg(&page).output().expect("run groff");
        assert!(groff.status.success() && groff.stderr.is_empty(), "{}: {}", page.display(), text(&groff.stderr));
        // STYLE messages (long input lines) are advice; warnings and errors are defects.
        let mandoc = Command::new("mandoc").args(["-Tlint", "-Wwarning"]).arg(&page).output().expect("run mandoc");
        let lint = text(&mandoc.stdout) + &text(&mandoc.stderr);
        assert!(lint.trim().is_empty(), "{}: {lint}", page.display());
    }
    let man = Command::new("man").args(["-l", "-P", "cat"]).arg(tmp.path().join("man1/postqueue.1")).output().unwrap();
    let shown = text(&man.stdout);
    assert!(shown.contains("postqueue - Postern queue control"), "{shown}");
    assert!(shown.contains("SYNOPSIS") && shown.contains("CONFIGURATION PARAMETERS"), "{shown}");
}

#[test]
fn postconf_5_lists_exactly_the_parameters_of_postconf_d() {
    let tmp = tempfile::tempdir().unwrap();
    render_pages(tmp.path());
    let etc = tempfile::tempdir().unwrap();
    std::fs::write(etc.path().join("main.cf"), "").unwrap();
    let out = Command::new(bin("postconf")).arg("-c").arg(etc.path()).arg("-d").output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let defaults: BTreeSet<String> =
        text(&out.stdout).lines().filter_map(|l| l.split_once(" = ").or_else(|| l.split_once(" =")).map(|(n, _)| n.to_string())).collect();
    let page = std::fs::read_to_string(tmp.path().join("man5/postconf.5")).unwrap();
    let documented: BTreeSet<String> = page
        .lines()
        .filter_map(|l| l.strip_prefix(".SH \""))
        .filter_map(|l| l.split_once(" (default: ").map(|(n, _)| n.to_string()))
        .collect();
    assert!(defaults.len() > 100, "postconf -d printed {} parameters", defaults.len());
    assert_eq!(defaults, documented, "postconf -d and postconf(5) differ");
}
