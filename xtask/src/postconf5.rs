//! postconf(5): every parameter of the built-in table (`common/params.toml`, the table
//! `postconf -d` prints), in Postfix's layout: one `name (default: value)` heading each.

use common::config::params::{ParamKind, param_table};

use crate::roff::{Inline, blocks, preamble, see_also};

const DESCRIPTION: &[&str] = &[
    "The file `main.cf` in the configuration directory (`/etc/postern`, or the directory named",
    "by `-c` or `MAIL_CONFIG`) sets the parameters below as `name = value` lines. A line that",
    "starts with white space continues the one above; `#` starts a comment line. A value may",
    "name another parameter as `$name` or `${name}`; it is expanded when the value is used.",
    "",
    "`postconf -d` prints every parameter with its default, `postconf -n` the ones main.cf",
    "sets, `postconf -e name=value` edits main.cf. After a change, `postfix reload` makes the",
    "daemons read the file again.",
    "",
    "Time values take a unit letter: `s`, `m`, `h`, `d` or `w`; a bare number is in the unit of",
    "the default. Lists are separated by commas or white space.",
];

fn kind(k: ParamKind) -> &'static str {
    match k {
        ParamKind::String => "string",
        ParamKind::List => "list",
        ParamKind::Time => "time",
        ParamKind::Int => "integer",
        ParamKind::Bool => "boolean",
    }
}

/// A quoted macro argument: `"` cannot appear in one, and a backslash must be escaped.
fn quoted(text: &str) -> String {
    text.replace('\\', "\\e").replace('"', "\\(dq")
}

pub fn render(date: &str, pages: &[(String, u8)]) -> String {
    let mut out = preamble("postconf", 5, date, "Postern configuration parameters");
    out.push_str(".SH SYNOPSIS\n\\fBpostconf \\-d\\fR\n");
    out.push_str(".SH DESCRIPTION\n");
    let description: Vec<String> = DESCRIPTION.iter().map(|s| s.to_string()).collect();
    out.push_str(&blocks(&description));
    for (name, def) in param_table() {
        let default = if def.default.is_empty() { "empty".to_string() } else { def.default.clone() };
        out.push_str(&format!(".SH \"{} (default: {})\"\n", quoted(name), quoted(&default)));
        out.push_str(&Inline::default().line(&format!("Type: {}.", kind(def.kind))));
        out.push_str(".PP\n");
        out.push_str(&Inline::default().line(&def.doc));
    }
    out.push_str(&see_also(("postconf", 5), pages));
    out
}
