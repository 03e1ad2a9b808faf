//! Finding and parsing a program's manual header: the leading `//!` block of a source file
//! whose first line is `<name> - <summary>`, with `# Heading` sections below.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// A parsed manual header.
pub struct Page {
    pub name: String,
    pub summary: String,
    /// `(heading, body lines)`; text before the first heading belongs to `Description`.
    pub sections: Vec<(String, Vec<String>)>,
}

/// The leading `//!` lines of `text`, without the marker and one following space.
fn doc_block(text: &str) -> Vec<String> {
    text.lines().map_while(|l| l.strip_prefix("//!")).map(|l| l.strip_prefix(' ').unwrap_or(l).trim_end().to_string()).collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let p = e?.path();
        if p.is_dir() {
            rust_files(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    Ok(())
}

/// The header of program `name` among the sources below `src_dir`: exactly one file must carry it.
pub fn find(name: &str, src_dir: &Path) -> Result<Page> {
    let mut files = Vec::new();
    rust_files(src_dir, &mut files)?;
    files.sort();
    let prefix = format!("{name} - ");
    let mut found = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).with_context(|| format!("read {}", f.display()))?;
        let block = doc_block(&text);
        if block.first().is_some_and(|l| l.starts_with(&prefix)) {
            found.push((f, block));
        }
    }
    match found.len() {
        0 => bail!("{name}: no manual header (a `//! {name} - summary` block) below {}", src_dir.display()),
        1 => {}
        _ => bail!("{name}: manual headers in {} files below {}", found.len(), src_dir.display()),
    }
    let (file, block) = found.remove(0);
    parse(name, &block).with_context(|| format!("{}", file.display()))
}

fn parse(name: &str, block: &[String]) -> Result<Page> {
    let summary = block[0].split_once(" - ").map(|(_, s)| s.trim().to_string()).context("no summary")?;
    let mut sections: Vec<(String, Vec<String>)> = vec![("Description".to_string(), Vec::new())];
    for line in &block[1..] {
        if let Some(h) = line.strip_prefix("# ") {
            sections.push((h.trim().to_string(), Vec::new()));
        } else if line.starts_with('#') {
            bail!("`{line}`: only `# Heading` sections are supported");
        } else if let Some(last) = sections.last_mut() {
            last.1.push(line.clone());
        }
    }
    // Drop the implicit Description when the header names its own sections first.
    sections.retain(|(_, body)| body.iter().any(|l| !l.is_empty()));
    if sections.is_empty() {
        bail!("{name}: the manual header has no text");
    }
    Ok(Page { name: name.to_string(), summary, sections })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_and_implicit_description() {
        let block: Vec<String> = ["x - does x", "", "Intro.", "# Bugs", "Many."].iter().map(|s| s.to_string()).collect();
        let p = parse("x", &block).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.summary, "does x");
        let heads: Vec<&str> = p.sections.iter().map(|(h, _)| h.as_str()).collect();
        assert_eq!(heads, ["Description", "Bugs"]);
    }
}
