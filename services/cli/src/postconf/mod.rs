//! postconf - Postern configuration utility
//!
//! # Synopsis
//! `postconf [-c config_dir] [-dhHnx] [-o name=value] [name...]`
//!
//! `postconf [-c config_dir] -e name=value...` | `-X name...` | `-# name...`
//!
//! `postconf [-c config_dir] [-f] -M [service[/type]...]` | `-Me service/type='entry'` |
//! `-MX service/type` | `-M# service/type`
//!
//! `postconf [-c config_dir] -F [service/type/field...]` | `-Fe service/type/field=value`
//!
//! `postconf [-c config_dir] -P [service/type/parameter...]` | `-Pe service/type/parameter=value` |
//! `-PX service/type/parameter`
//!
//! # Description
//! Without options, prints the value of each named `main.cf` parameter (all parameters
//! without names) as `name = value`. `-d` prints the built-in defaults instead (every
//! parameter postconf(5) describes), `-n` only the parameters `main.cf` sets, `-h` values
//! without names, `-H` names without values, `-x` values with `$name` expanded; `-o name=value`
//! overrides a parameter for this command.
//!
//! `-m` lists the supported lookup table types.
//!
//! `-e name=value...` (or just `name=value...`) sets parameters in `main.cf`, `-X name...`
//! removes them and `-# name...` comments them out.
//!
//! As in Postfix, a first argument that contains `=` implies `-e`, with `-M`, `-F` and `-P` too
//! (`postconf -P smtp/inet/smtpd_banner=hi` sets the override).
//!
//! `-M` prints `master.cf` entries (`-Mf` folded as Postfix does), `-Me` adds or replaces an
//! entry, `-MX` removes one, `-M#` comments one out. `-F` prints and `-Fe` edits single fields
//! of entries; `-P` prints, `-Pe` sets and `-PX` removes an entry's `-o` parameter overrides.
//!
//! Edits rewrite the file through `<file>.tmp` and a rename, keeping comments and order.
//!
//! Showing main.cf (not `-d`) warns about its parameters that Postern does not use, and `-M`,
//! `-F`, `-P` about master.cf's `-o` ones, as Postfix's postconf does (`postconf: warning:
//! /etc/postern/main.cf: unused parameter: foo=bar`; Postfix parameters that Postern lacks get
//! `... line N: Postfix parameter not implemented by Postern: ...`).
//!
//! # Diagnostics
//! Exit status 0 on success; 1 with `postconf: fatal: ...` for a bad option (with the usage
//! line), a bad `name=value`, or a file that cannot be read or written; showing parameters of a
//! configuration directory without `main.cf` is an error, as in Postfix (`postconf: fatal: open
//! /nonexistent/main.cf: No such file or directory`). An unknown parameter name is
//! reported as `postconf: warning: name: unknown parameter`.
//!
//! # Files
//! `$config_directory/main.cf`, `$config_directory/master.cf`.
//!
//! # Configuration parameters
//! `config_directory`.

pub mod error;
pub mod main_edit;
pub mod master_edit;

use std::path::PathBuf;

use common::config::check::unused_parameters;
use common::config::params::param_table;
use common::config::{self, MainCf, MasterCf, Params};

use crate::getopt::{Arg, getopt};
use crate::{Fatal, replace_file};
use main_edit::{MainEdit, edit_main};
use master_edit::{MasterEdit, ServicePattern, edit_master, format_entry, format_fields, format_params};

const USAGE: &str = "usage: postconf [-c config_dir] [-dfhHmMFPnx] [-e|-X|-#] [-o name=value] [name...]";

#[derive(Debug, Default)]
struct Options {
    config_dir: Option<PathBuf>,
    flags: String,
    overrides: Vec<(String, String)>,
    operands: Vec<String>,
}

impl Options {
    fn has(&self, c: char) -> bool {
        self.flags.contains(c)
    }
}

fn parse(args: &[String]) -> Result<Options, Fatal> {
    let mut o = Options::default();
    for a in getopt(args, "dehHmnxX#MFPf", "co").map_err(|e| Fatal::new(1, format!("{e}\n{USAGE}")))? {
        match a {
            Arg::Flag(c) => o.flags.push(c),
            Arg::Opt('c', d) => o.config_dir = Some(PathBuf::from(d)),
            Arg::Opt(_, kv) => {
                let (n, v) = config::main_cf::split_name_value(&kv)
                    .ok_or_else(|| Fatal::new(1, format!("-o option requires name=value: \"{kv}\"")))?;
                o.overrides.push((n.to_string(), v.to_string()));
            }
            Arg::Operand(s) => o.operands.push(s),
        }
    }
    Ok(o)
}

/// Run postconf; returns (stdout text, stderr warnings) or a fatal error.
pub fn run(args: &[String]) -> Result<(String, Vec<String>), Fatal> {
    let o = parse(args)?;
    let dir = config::config_dir(o.config_dir.clone());
    let edit_modes = ["e", "X", "#"].iter().filter(|m| o.flags.contains(*m)).count();
    if edit_modes > 1 {
        return Err(Fatal::new(1, "specify only one of -e, -X or -#"));
    }
    if o.has('m') {
        // The lookup table types Postern has (`postconf -m`).
        return Ok((common::config::table::TYPES.iter().map(|t| format!("{t}\n")).collect(), Vec::new()));
    }
    // As Postfix's postconf: a first argument with `=` means edit, for main.cf and for
    // master.cf's `-M`, `-F` and `-P` alike (`postconf -P smtp/inet/name=value`).
    let implicit_edit = edit_modes == 0 && o.operands.first().is_some_and(|a| a.contains('=')) && !o.has('d') && !o.has('n');
    if o.has('M') || o.has('F') || o.has('P') {
        return run_master(&o, &dir, implicit_edit);
    }
    if o.has('e') || o.has('X') || o.has('#') || implicit_edit {
        let mode = if o.has('X') {
            MainEdit::Remove
        } else if o.has('#') {
            MainEdit::CommentOut
        } else {
            MainEdit::Set
        };
        if o.operands.is_empty() {
            return Err(Fatal::new(1, "-e, -X, or -# requires name=value or name arguments"));
        }
        let path = dir.join("main.cf");
        let text = std::fs::read_to_string(&path)
            .or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(String::new()) } else { Err(e) })
            .map_err(|e| Fatal::new(1, format!("open {} for reading: {e}", path.display())))?;
        let edited = edit_main(&text, &path.display().to_string(), mode, &o.operands).map_err(|e| Fatal::new(1, e.to_string()))?;
        replace_file(&path, &edited.text).map_err(|e| Fatal::new(1, format!("write {}: {e}", path.display())))?;
        return Ok((String::new(), edited.warnings));
    }
    show_main(&o, &dir)
}

/// main.cf must exist to be shown, as in Postfix (`postconf -c /nonexistent`); only edits
/// create it.
fn require_file(path: &std::path::Path) -> Result<(), Fatal> {
    std::fs::metadata(path)
        .map(|_| ())
        .map_err(|e| Fatal::new(1, format!("open {}: {}", path.display(), common::config::table::io_text(&e))))
}

fn show_main(o: &Options, dir: &std::path::Path) -> Result<(String, Vec<String>), Fatal> {
    if !o.has('d') {
        require_file(&dir.join("main.cf"))?;
    }
    let main = MainCf::load(&dir.join("main.cf")).map_err(|e| Fatal::new(1, e.to_string()))?;
    let mut warnings = main.warnings.clone();
    let params = Params::from_parts(dir, main.clone(), &o.overrides);
    if !o.has('d') {
        // Postfix's postconf flags main.cf parameters that nothing uses (master.cf is read
        // for the per-transport parameter names of its services).
        let master = MasterCf::load(&dir.join("master.cf")).ok();
        let main_path = main.path.display().to_string();
        warnings.extend(unused_parameters(&params, master.as_ref()).into_iter().filter(|w| w.starts_with(&main_path)));
    }
    let table = param_table();
    let names: Vec<String> = if !o.operands.is_empty() {
        o.operands.clone()
    } else if o.has('n') {
        main.sorted().iter().map(|s| s.name.clone()).collect()
    } else {
        let mut all: Vec<String> = table.keys().cloned().collect();
        all.extend(main.sorted().iter().map(|s| s.name.clone()).filter(|n| !table.contains_key(n)));
        all.sort();
        all
    };
    let mut out = String::new();
    for name in names {
        let raw = if o.has('d') {
            table.get(&name).map(|d| d.default.clone())
        } else if table.contains_key(&name) || main.get(&name).is_some() || o.overrides.iter().any(|(n, _)| *n == name) {
            params.raw(&name)
        } else {
            None
        };
        let Some(raw) = raw else {
            warnings.push(format!("{name}: unknown parameter"));
            continue;
        };
        let value = if o.has('x') { params.expand_text(&name, &raw).map_err(|e| Fatal::new(1, e.to_string()))? } else { raw };
        if o.has('H') {
            out.push_str(&format!("{name}\n"));
        } else if o.has('h') {
            out.push_str(&format!("{value}\n"));
        } else if value.is_empty() {
            out.push_str(&format!("{name} =\n"));
        } else {
            out.push_str(&format!("{name} = {value}\n"));
        }
    }
    Ok((out, warnings))
}

fn run_master(o: &Options, dir: &std::path::Path, implicit_edit: bool) -> Result<(String, Vec<String>), Fatal> {
    let path = dir.join("master.cf");
    let mode = match (o.has('M'), o.has('F'), o.has('P'), o.has('e') || implicit_edit, o.has('X'), o.has('#')) {
        (true, _, _, true, _, _) => Some(MasterEdit::SetEntry),
        (true, _, _, _, true, _) => Some(MasterEdit::RemoveEntry),
        (true, _, _, _, _, true) => Some(MasterEdit::CommentEntry),
        (_, true, _, true, _, _) => Some(MasterEdit::SetField),
        (_, _, true, true, _, _) => Some(MasterEdit::SetParam),
        (_, _, true, _, true, _) => Some(MasterEdit::RemoveParam),
        (_, _, _, false, false, false) => None,
        _ => return Err(Fatal::new(1, "this combination of -F, -P, -X and -# is not supported")),
    };
    if let Some(mode) = mode {
        if o.operands.is_empty() {
            return Err(Fatal::new(1, "-Me, -Fe, -Pe, -X, or -# requires arguments"));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Fatal::new(1, format!("open {} for reading: {e}", path.display())))?;
        let (new_text, warnings) =
            edit_master(&text, &path.display().to_string(), mode, &o.operands).map_err(|e| Fatal::new(1, e.to_string()))?;
        replace_file(&path, &new_text).map_err(|e| Fatal::new(1, format!("write {}: {e}", path.display())))?;
        return Ok((String::new(), warnings));
    }
    let cf = MasterCf::load(&path).map_err(|e| Fatal::new(1, e.to_string()))?;
    let (min, max) = if o.has('M') { (1, 2) } else { (1, 3) };
    let patterns: Vec<(String, ServicePattern)> = o
        .operands
        .iter()
        .map(|a| {
            ServicePattern::parse(a, min, max)
                .map(|p| (a.clone(), p))
                .ok_or_else(|| Fatal::new(1, format!("-M, -F or -P option requires service_name[/type[/name]]: \"{a}\"")))
        })
        .collect::<Result<_, _>>()?;
    let mut out = String::new();
    let mut hits = vec![0usize; patterns.len()];
    for e in &cf.entries {
        let selected: Vec<Option<&ServicePattern>> = if patterns.is_empty() {
            vec![None]
        } else {
            patterns
                .iter()
                .enumerate()
                .filter(|(_, (_, p))| p.matches(&e.tokens[0], &e.tokens[1]))
                .map(|(i, (_, p))| {
                    hits[i] += 1;
                    Some(p)
                })
                .collect()
        };
        for p in selected {
            let third = p.and_then(|p| p.third.as_deref());
            if o.has('M') {
                out.push_str(&format_entry(&e.tokens, o.has('f')));
            } else if o.has('F') {
                out.push_str(&format_fields(e, third).map_err(|e| Fatal::new(1, e.to_string()))?);
            } else {
                out.push_str(&format_params(e, third));
            }
        }
    }
    let mut warnings = cf.warnings.clone();
    if let Ok(params) = Params::load(dir, &o.overrides) {
        let master_path = cf.path.display().to_string();
        warnings.extend(unused_parameters(&params, Some(&cf)).into_iter().filter(|w| w.starts_with(&master_path)));
    }
    for (i, (raw, _)) in patterns.iter().enumerate() {
        if hits[i] == 0 {
            warnings.push(format!("unmatched request: \"{raw}\""));
        }
    }
    Ok((out, warnings))
}
