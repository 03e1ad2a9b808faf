//! xtask - Postern's build tooling (`cargo run -p xtask -- <command>`), not part of the product.
//!
//! * `man <dir>`: write the manual pages into `<dir>/man1`, `man5`, `man8`: one page per
//!   program of the workspace, rendered from the `//!` manual header in its sources, and
//!   postconf(5) from the built-in parameter table (`common/params.toml`), so the pages
//!   cannot drift from the code.
//! * `programs`: list the programs as `name section` lines (section 1: user commands,
//!   section 8: daemons); `pkg/build-deb` installs them by section.
//!
//! A program is every binary target of a workspace package that is not `publish = false`;
//! its section is `[package.metadata.postern] man-section` (default 8). Its manual header
//! is the leading `//!` block of a source file of its package whose first line reads
//! `<name> - <summary>`; the rest is Markdown-like text under `# Section` headings.

mod header;
mod postconf5;
mod roff;
mod workspace;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["man", dir] => write_pages(Path::new(dir)),
        ["programs"] => {
            for p in workspace::programs()? {
                println!("{} {}", p.name, p.section);
            }
            Ok(())
        }
        _ => bail!("usage: xtask man <output directory> | xtask programs"),
    }
}

/// Render every page; a program without a manual header is an error, so none ships without.
fn write_pages(out: &Path) -> Result<()> {
    let programs = workspace::programs()?;
    let date = roff::page_date(&workspace::root()?);
    let names: Vec<(String, u8)> = programs.iter().map(|p| (p.name.clone(), p.section)).collect();
    for p in &programs {
        let page = header::find(&p.name, &p.src_dir)?;
        let text = roff::render(&page, p.section, &date, &names);
        write(out, &p.name, p.section, &text)?;
    }
    write(out, "postconf", 5, &postconf5::render(&date, &names))?;
    Ok(())
}

fn write(out: &Path, name: &str, section: u8, text: &str) -> Result<()> {
    let dir: PathBuf = out.join(format!("man{section}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join(format!("{name}.{section}"));
    std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))
}
