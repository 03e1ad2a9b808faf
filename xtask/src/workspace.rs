//! The workspace's programs, as `cargo metadata` (the authority on targets) lists them.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// One program: a binary target and where its package's sources are.
pub struct Program {
    pub name: String,
    pub section: u8,
    pub src_dir: PathBuf,
}

fn metadata() -> Result<Value> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version", "1", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .context("run cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    }
    serde_json::from_slice(&out.stdout).context("parse cargo metadata")
}

/// The workspace root directory.
pub fn root() -> Result<PathBuf> {
    let m = metadata()?;
    m["workspace_root"].as_str().map(PathBuf::from).context("cargo metadata: no workspace_root")
}

/// Every shipped program, sorted by name.
pub fn programs() -> Result<Vec<Program>> {
    let m = metadata()?;
    let mut out = Vec::new();
    for pkg in m["packages"].as_array().context("cargo metadata: no packages")? {
        // `publish = false` (an empty registry list) marks tooling and tests, which do not ship.
        if pkg["publish"].as_array().is_some_and(Vec::is_empty) {
            continue;
        }
        let manifest = pkg["manifest_path"].as_str().context("cargo metadata: no manifest_path")?;
        let src_dir = Path::new(manifest).parent().context("manifest without directory")?.join("src");
        let section = match &pkg["metadata"]["postern"]["man-section"] {
            Value::Null => 8,
            v => v.as_u64().and_then(|s| u8::try_from(s).ok()).with_context(|| format!("{manifest}: bad man-section {v}"))?,
        };
        for t in pkg["targets"].as_array().context("cargo metadata: no targets")? {
            let is_bin = t["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "bin"));
            if let (true, Some(name)) = (is_bin, t["name"].as_str()) {
                out.push(Program { name: name.to_string(), section, src_dir: src_dir.clone() });
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}
