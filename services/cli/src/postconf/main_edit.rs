//! `postconf -e`, `-X`, `-#`: rewrite main.cf line by line (Postfix `pcf_edit_main`).
//!
//! Comments and blank lines pass through. The first line of a setting whose name is edited is
//! replaced by `name = value` (`-e`), dropped (`-X`) or commented out (`-#`); its continuation
//! lines are dropped, dropped, or commented out likewise. Settings not found are appended at
//! the end in sorted order (`-e` only). Every occurrence is edited; a second one is warned about.

use super::error::EditError;
use std::collections::BTreeMap;

use common::config::lines::is_blank_or_comment;
use common::config::main_cf::{split_name_value, valid_param_name};

/// What to do with the named settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MainEdit {
    Set,
    Remove,
    CommentOut,
}

/// The result of an edit: the new text and the warnings to print.
#[derive(Debug, PartialEq, Eq)]
pub struct Edited {
    pub text: String,
    pub warnings: Vec<String>,
}

/// Requested edits: name → new value (`None` for -X and -#).
pub type Requests = BTreeMap<String, Option<String>>;

/// Parse the command-line arguments of an edit; also returns warnings to print.
pub fn parse_requests(mode: MainEdit, args: &[String]) -> Result<(Requests, Vec<String>), EditError> {
    let mut requests = BTreeMap::new();
    let mut warnings = Vec::new();
    for arg in args {
        if arg.contains('\n') {
            return Err(EditError::MainMultiLine);
        }
        let a = arg.trim_start();
        if a.starts_with('#') {
            return Err(EditError::MainComment);
        }
        let (name, value) = match mode {
            MainEdit::Set => {
                let (n, v) = split_name_value(a).ok_or_else(|| EditError::MissingEquals(a.to_string()))?;
                (n.to_string(), Some(v.to_string()))
            }
            MainEdit::Remove | MainEdit::CommentOut => {
                if a.trim().is_empty() {
                    return Err(EditError::BlankNames);
                }
                if a.contains('=') {
                    return Err(EditError::ParameterWithValue);
                }
                (a.trim().to_string(), None)
            }
        };
        if !valid_param_name(&name) {
            return Err(EditError::BadParameterName(name.to_string()));
        }
        if let Some(Some(old)) = requests.insert(name.clone(), value) {
            warnings.push(format!("ignoring earlier request: '{name} = {old}'"));
        }
    }
    Ok((requests, warnings))
}

/// Apply the edit to main.cf text; `path` is only used in warnings.
pub fn edit_main(text: &str, path: &str, mode: MainEdit, args: &[String]) -> Result<Edited, EditError> {
    let (requests, mut warnings) = parse_requests(mode, args)?;
    let mut found: BTreeMap<&str, usize> = BTreeMap::new();
    let mut out = String::with_capacity(text.len() + 64);
    let mut interesting = false;
    for line in text.split_inclusive('\n') {
        let line_nl = if line.ends_with('\n') { line.to_string() } else { format!("{line}\n") };
        if is_blank_or_comment(line) {
            out.push_str(&line_nl);
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            if !interesting {
                out.push_str(&line_nl);
            } else if mode == MainEdit::CommentOut {
                out.push('#');
                out.push_str(&line_nl);
            }
            continue;
        }
        let key_end = line.find(|c: char| c.is_whitespace() || c == '=').unwrap_or(line.len());
        let key = &line[..key_end];
        match requests.get_key_value(key) {
            Some((k, value)) => {
                interesting = true;
                let n = found.entry(k.as_str()).or_insert(0);
                *n += 1;
                if *n == 2 {
                    warnings.push(format!("{path}: multiple entries for \"{key}\""));
                }
                match mode {
                    MainEdit::Set => out.push_str(&format!("{key} = {}\n", value.as_deref().unwrap_or(""))),
                    MainEdit::CommentOut => {
                        out.push('#');
                        out.push_str(&line_nl);
                    }
                    MainEdit::Remove => {}
                }
            }
            None => {
                interesting = false;
                out.push_str(&line_nl);
            }
        }
    }
    if mode == MainEdit::Set {
        for (name, value) in &requests {
            if !found.contains_key(name.as_str()) {
                out.push_str(&format!("{name} = {}\n", value.as_deref().unwrap_or("")));
            }
        }
    }
    Ok(Edited { text: out, warnings })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    const MAIN: &str =
        "# top comment\nrelay_domains = a.example,\n    b.example\n# middle\nmyhostname = mx.example\n\nrelay_domains = dup.example\n";

    #[test]
    fn set_replaces_in_place_and_appends_sorted() {
        // Reference T30.
        let e = edit_main(MAIN, "main.cf", MainEdit::Set, &args(&["relay_domains=z.example", "zeta=1", "alpha=2"])).unwrap();
        assert_eq!(
            e.text,
            "# top comment\nrelay_domains = z.example\n# middle\nmyhostname = mx.example\n\nrelay_domains = z.example\nalpha = 2\nzeta = 1\n"
        );
        assert_eq!(e.warnings, vec!["main.cf: multiple entries for \"relay_domains\"".to_string()]);
    }

    #[test]
    fn remove_and_comment_out() {
        let e = edit_main(MAIN, "main.cf", MainEdit::Remove, &args(&["relay_domains"])).unwrap();
        assert_eq!(e.text, "# top comment\n# middle\nmyhostname = mx.example\n\n");
        let e = edit_main(MAIN, "main.cf", MainEdit::CommentOut, &args(&["relay_domains"])).unwrap();
        assert_eq!(
            e.text,
            "# top comment\n#relay_domains = a.example,\n#    b.example\n# middle\nmyhostname = mx.example\n\n#relay_domains = dup.example\n"
        );
    }

    #[test]
    fn comment_lines_inside_an_entry_stay() {
        let text = "a = 1\n# note\n  2\nb = 3";
        let e = edit_main(text, "main.cf", MainEdit::Set, &args(&["a = x y"])).unwrap();
        assert_eq!(e.text, "a = x y\n# note\nb = 3\n");
    }

    #[test]
    fn bad_requests() {
        for (mode, a, want) in [
            (MainEdit::Set, "novalue", "missing '=' after attribute name: \"novalue\""),
            (MainEdit::Set, "a=1\nb=2", "-e, -X, or -# accepts no multi-line input"),
            (MainEdit::Set, "#a=1", "-e, -X, or -# accepts no comment input"),
            (MainEdit::Remove, "a=1", "-X or -# requires parameter names without value"),
            (MainEdit::Remove, " ", "-X or -# requires non-blank parameter names"),
            (MainEdit::Set, "a b=1", "bad parameter name: \"a b\""),
        ] {
            assert_eq!(edit_main(MAIN, "main.cf", mode, &args(&[a])).unwrap_err().to_string(), want);
        }
        let e = edit_main("", "main.cf", MainEdit::Set, &args(&["a=1", "a=2"])).unwrap();
        assert_eq!(e.text, "a = 2\n");
        assert_eq!(e.warnings, vec!["ignoring earlier request: 'a = 1'".to_string()]);
    }
}
