//! master.cf for `postconf`: printing entries (`-M`, `-Mf`), fields (`-F`) and `-o` parameters
//! (`-P`), and editing them (`-Me -MX -M# -Fe -Pe -PX`) the way Postfix's `pcf_edit_master`
//! does: physical lines are copied, matched entries replaced, removed or commented out, edited
//! entries printed in folded form.

use super::error::EditError;
use common::config::lines::is_blank_or_comment;
use common::config::main_cf::split_name_value;
use common::config::master_cf::{MasterEntry, parse_entry, tokenize, unbrace};

/// Preferred start column of each of the first eight fields.
const COLUMN_GOAL: [usize; 8] = [0, 11, 17, 25, 33, 41, 49, 57];
const LINE_LIMIT: usize = 80;
const INDENT: &str = "    ";

/// The `-F` field names, in column order.
pub const FIELD_NAMES: [&str; 8] = ["service", "type", "private", "unprivileged", "chroot", "wakeup", "process_limit", "command"];

/// Format one entry: fields at their columns, then the command arguments; with `fold`, long
/// lines wrap at 80 columns and every `-o name=value` stands on its own continuation line.
pub fn format_entry(tokens: &[String], fold: bool) -> String {
    let mut out = String::new();
    let mut len = 0usize;
    for (i, t) in tokens.iter().take(8).enumerate() {
        if len > 0 {
            loop {
                out.push(' ');
                len += 1;
                if len >= COLUMN_GOAL[i] {
                    break;
                }
            }
        }
        out.push_str(t);
        len += t.len();
    }
    let mut in_options = true;
    let mut i = 8;
    while i < tokens.len() {
        let arg = &tokens[i];
        let mut arg_len = arg.len();
        let mut value = None;
        if in_options {
            if !arg.starts_with('-') || arg == "--" {
                in_options = false;
            } else if arg == "-o" && i + 1 < tokens.len() {
                len = LINE_LIMIT;
                value = Some(&tokens[i + 1]);
                arg_len += tokens[i + 1].len() + 1;
            }
        }
        if len > INDENT.len() {
            if !fold || len + 1 + arg_len < LINE_LIMIT {
                out.push(' ');
                len += 1;
            } else {
                out.push('\n');
                out.push_str(INDENT);
                len = INDENT.len();
            }
        }
        out.push_str(arg);
        len += arg.len();
        if let Some(v) = value {
            out.push(' ');
            out.push_str(v);
            i += 1;
            len = LINE_LIMIT;
        }
        i += 1;
    }
    out.push('\n');
    out
}

/// A `name[/type[/third]]` pattern; `*` matches anything.
#[derive(Debug, Clone)]
pub struct ServicePattern {
    pub name: String,
    pub kind: Option<String>,
    pub third: Option<String>,
}

impl ServicePattern {
    pub fn parse(text: &str, min: usize, max: usize) -> Option<ServicePattern> {
        let parts: Vec<&str> = text.split('/').collect();
        if parts.len() < min || parts.len() > max || parts.iter().any(|p| p.is_empty()) {
            return None;
        }
        Some(ServicePattern {
            name: parts[0].to_string(),
            kind: parts.get(1).map(|s| s.to_string()),
            third: parts.get(2).map(|s| s.to_string()),
        })
    }

    pub fn matches(&self, name: &str, kind: &str) -> bool {
        (self.name == "*" || self.name == name) && self.kind.as_deref().is_none_or(|k| k == "*" || k == kind)
    }
}

/// The `-o` overrides of an entry's tokens, as (name, value).
fn token_params(tokens: &[String]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut i = 8;
    while i < tokens.len() {
        let t = &tokens[i];
        if !t.starts_with('-') || t == "--" {
            break;
        }
        if t == "-o" && i + 1 < tokens.len() {
            if let Some((n, v)) = split_name_value(unbrace(&tokens[i + 1])) {
                out.push((n.to_string(), v.to_string()));
            }
            i += 1;
        }
        i += 1;
    }
    out
}

/// `-F` output lines for the selected field (`None` or `*`: all fields).
pub fn format_fields(e: &MasterEntry, field: Option<&str>) -> Result<String, EditError> {
    let mut out = String::new();
    let which: Vec<usize> = match field {
        None | Some("*") => (0..8).collect(),
        Some(f) => vec![FIELD_NAMES.iter().position(|n| *n == f).ok_or_else(|| EditError::BadFieldName(f.to_string()))?],
    };
    for i in which {
        let value = if i == 7 { e.tokens[7..].join(" ") } else { e.tokens[i].clone() };
        out.push_str(&format!("{}/{}/{} = {value}\n", e.tokens[0], e.tokens[1], FIELD_NAMES[i]));
    }
    Ok(out)
}

/// `-P` output lines for the selected parameter (`None` or `*`: all, sorted).
pub fn format_params(e: &MasterEntry, param: Option<&str>) -> String {
    let mut params = token_params(&e.tokens);
    params.sort();
    params
        .into_iter()
        .filter(|(n, _)| param.is_none_or(|p| p == "*" || p == n))
        .map(|(n, v)| format!("{}/{}/{n} = {v}\n", e.tokens[0], e.tokens[1]))
        .collect()
}

/// What a master.cf edit does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MasterEdit {
    /// `-Me`: replace or add whole entries.
    SetEntry,
    /// `-MX`.
    RemoveEntry,
    /// `-M#`.
    CommentEntry,
    /// `-Fe`.
    SetField,
    /// `-Pe`.
    SetParam,
    /// `-PX`.
    RemoveParam,
}

struct Request {
    raw: String,
    pattern: ServicePattern,
    value: Option<String>,
    /// For SetEntry: the new entry's tokens.
    entry: Option<Vec<String>>,
    matches: usize,
}

fn parse_request(mode: MasterEdit, raw: &str) -> Result<Request, EditError> {
    if raw.contains('\n') {
        return Err(EditError::MasterMultiLine);
    }
    let a = raw.trim_start();
    if a.starts_with('#') {
        return Err(EditError::MasterComment);
    }
    let setting = matches!(mode, MasterEdit::SetEntry | MasterEdit::SetField | MasterEdit::SetParam);
    let (pattern, value) = if setting {
        let (p, v) = split_name_value(a).ok_or_else(|| EditError::MissingEquals(raw.to_string()))?;
        (p, Some(v.to_string()))
    } else {
        if a.contains('=') {
            return Err(EditError::NameWithValue);
        }
        (a.trim(), None)
    };
    let (min, max, usage) = match mode {
        MasterEdit::SetEntry | MasterEdit::RemoveEntry | MasterEdit::CommentEntry => (2, 2, EditError::EntryUsage),
        MasterEdit::SetField => (3, 3, EditError::FieldUsage),
        MasterEdit::SetParam | MasterEdit::RemoveParam => (3, 3, EditError::ParameterUsage),
    };
    let pattern = ServicePattern::parse(pattern, min, max).ok_or(usage)?;
    let mut entry = None;
    match mode {
        MasterEdit::SetEntry => {
            let tokens = tokenize(value.as_deref().unwrap_or("")).map_err(|reason| EditError::BadEntry { reason, raw: raw.to_string() })?;
            parse_entry(tokens.clone(), 0, 0).map_err(|reason| EditError::BadEntry { reason, raw: raw.to_string() })?;
            entry = Some(tokens);
        }
        MasterEdit::SetField => {
            let f = pattern.third.as_deref().unwrap_or("");
            if f == "*" {
                return Err(EditError::FieldWildcard);
            }
            let idx = FIELD_NAMES.iter().position(|n| *n == f).ok_or_else(|| EditError::BadFieldName(f.to_string()))?;
            if idx < 7 && value.as_deref().is_some_and(|v| v.contains(char::is_whitespace)) {
                return Err(EditError::FieldWhitespace);
            }
        }
        MasterEdit::SetParam | MasterEdit::RemoveParam => {
            if pattern.third.as_deref() == Some("*") {
                return Err(EditError::ParameterWildcard);
            }
            if value.as_deref().is_some_and(|v| v.contains(char::is_whitespace)) {
                return Err(EditError::ParameterWhitespace);
            }
        }
        _ => {}
    }
    Ok(Request { raw: raw.to_string(), pattern, value, entry, matches: 0 })
}

/// Change field or parameter tokens of an entry.
fn apply_token_edit(mode: MasterEdit, req: &Request, tokens: &mut Vec<String>) {
    let third = req.pattern.third.as_deref().unwrap_or("");
    let value = req.value.as_deref().unwrap_or("");
    match mode {
        MasterEdit::SetField => {
            let idx = FIELD_NAMES.iter().position(|n| *n == third).unwrap_or(7);
            if idx == 7 {
                tokens.truncate(7);
                tokens.extend(value.split_whitespace().map(str::to_string));
            } else {
                tokens[idx] = value.to_string();
            }
        }
        MasterEdit::SetParam | MasterEdit::RemoveParam => {
            let mut i = 8;
            let mut matched = false;
            while i < tokens.len() {
                let t = &tokens[i];
                if !t.starts_with('-') || t == "--" {
                    break;
                }
                if t == "-o" && i + 1 < tokens.len() {
                    let is_it = split_name_value(unbrace(&tokens[i + 1])).is_some_and(|(n, _)| n == third);
                    if is_it {
                        matched = true;
                        if mode == MasterEdit::SetParam {
                            tokens[i + 1] = format!("{third}={value}");
                        } else {
                            tokens.drain(i..i + 2);
                            continue;
                        }
                    }
                    i += 1;
                }
                i += 1;
            }
            if mode == MasterEdit::SetParam && !matched {
                tokens.insert(i, "-o".into());
                tokens.insert(i + 1, format!("{third}={value}"));
            }
        }
        _ => {}
    }
}

/// Apply an edit to master.cf text.
pub fn edit_master(text: &str, path: &str, mode: MasterEdit, args: &[String]) -> Result<(String, Vec<String>), EditError> {
    let mut reqs: Vec<Request> = args.iter().map(|a| parse_request(mode, a)).collect::<Result<_, _>>()?;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let nl = |l: &str| if l.ends_with('\n') { l.to_string() } else { format!("{l}\n") };
    let mut out = String::new();
    let mut warnings = Vec::new();
    let mut matched = false;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let lineno = i + 1;
        i += 1;
        if is_blank_or_comment(line) {
            out.push_str(&nl(line));
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            if !matched {
                out.push_str(&nl(line));
            } else if mode == MasterEdit::CommentEntry {
                out.push('#');
                out.push_str(&nl(line));
            }
            continue;
        }
        matched = false;
        let mut words = line.split_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            return Err(EditError::SplitEntry { path: path.to_string(), line: lineno });
        };
        let mut new_entry: Option<Vec<String>> = None;
        for req in reqs.iter_mut() {
            let tentative = req.entry.as_ref();
            let hit = req.pattern.matches(name, kind) || tentative.is_some_and(|t| t[0] == name && t[1] == kind);
            if !hit {
                continue;
            }
            matched = true;
            req.matches += 1;
            match mode {
                MasterEdit::SetEntry => {
                    if req.matches == 1 {
                        new_entry = req.entry.clone();
                    }
                }
                MasterEdit::SetField | MasterEdit::SetParam | MasterEdit::RemoveParam => {
                    if new_entry.is_none() {
                        // Gobble the continuation lines; comments among them are copied out
                        // now, so they end up before the rewritten entry (as in Postfix).
                        let mut full = line.trim_end_matches('\n').to_string();
                        while i < lines.len() && (lines[i].starts_with(char::is_whitespace) || lines[i].starts_with('#')) {
                            if is_blank_or_comment(lines[i]) {
                                out.push_str(&nl(lines[i]));
                            } else {
                                full.push_str(lines[i].trim_end_matches('\n'));
                            }
                            i += 1;
                        }
                        new_entry =
                            Some(tokenize(&full).map_err(|reason| EditError::BadLine { path: path.to_string(), line: lineno, reason })?);
                    }
                    if let Some(tokens) = new_entry.as_mut() {
                        apply_token_edit(mode, req, tokens);
                        parse_entry(tokens.clone(), lineno, lineno).map_err(|reason| EditError::BadLine {
                            path: path.to_string(),
                            line: lineno,
                            reason,
                        })?;
                    }
                }
                MasterEdit::RemoveEntry | MasterEdit::CommentEntry => {}
            }
        }
        if let Some(tokens) = new_entry {
            out.push_str(&format_entry(&tokens, true));
        } else if !matched {
            out.push_str(&nl(line));
        } else if mode == MasterEdit::CommentEntry {
            out.push('#');
            out.push_str(&nl(line));
        }
    }
    for req in &reqs {
        if req.matches == 0 {
            match (mode, &req.entry) {
                (MasterEdit::SetEntry, Some(tokens)) => out.push_str(&format_entry(tokens, true)),
                (MasterEdit::SetField | MasterEdit::SetParam | MasterEdit::RemoveParam, _) => {
                    warnings.push(format!("unmatched service_name/type: \"{}\"", req.raw))
                }
                _ => {}
            }
        }
    }
    Ok((out, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    const MASTER: &str = "\
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:2525 inet n - n - - smtpd
  -o smtpd_helo_required=yes
# after smtpd
flush     unix  n       -       n       1000?   0       flush
qmgr      unix  n       -       n       300     1       qmgr
";

    #[test]
    fn formats_columns_and_folds() {
        let t: Vec<String> = tokenize("flush unix n - n 1000? 0 flush").unwrap();
        assert_eq!(format_entry(&t, false), "flush      unix  n       -       n       1000?   0       flush\n");
        let t: Vec<String> = tokenize("relay unix - - n - - smtp -o syslog_name=postfix/$service_name -o smtp_helo_timeout=5 arg").unwrap();
        assert_eq!(
            format_entry(&t, true),
            "relay      unix  -       -       n       -       -       smtp\n    -o syslog_name=postfix/$service_name\n    -o smtp_helo_timeout=5\n    arg\n"
        );
        assert_eq!(
            format_entry(&t, false),
            "relay      unix  -       -       n       -       -       smtp -o syslog_name=postfix/$service_name -o smtp_helo_timeout=5 arg\n"
        );
    }

    #[test]
    fn set_entry_replaces_first_and_appends_new() {
        let (out, _) = edit_master(
            MASTER,
            "master.cf",
            MasterEdit::SetEntry,
            &args(&["qmgr/unix=qmgr unix n - n 600 1 qmgr", "flush2/unix=flush2 unix n - n 1000? 0 flush"]),
        )
        .unwrap();
        assert!(out.contains("qmgr       unix  n       -       n       600     1       qmgr\n"), "{out}");
        assert!(out.ends_with("flush2     unix  n       -       n       1000?   0       flush\n"), "{out}");
        assert!(out.starts_with("# service type"));
        assert!(out.contains("  -o smtpd_helo_required=yes\n# after smtpd\n"));
    }

    #[test]
    fn remove_and_comment_entries_with_continuations() {
        let (out, _) = edit_master(MASTER, "master.cf", MasterEdit::RemoveEntry, &args(&["127.0.0.1:2525/inet"])).unwrap();
        assert!(!out.contains("inet") && !out.contains("smtpd_helo_required"), "{out}");
        assert!(out.contains("# after smtpd\nflush"));
        let (out, _) = edit_master(MASTER, "master.cf", MasterEdit::CommentEntry, &args(&["127.0.0.1:2525/inet"])).unwrap();
        assert!(out.contains("#127.0.0.1:2525 inet n - n - - smtpd\n#  -o smtpd_helo_required=yes\n"), "{out}");
    }

    #[test]
    fn field_and_param_edits() {
        let (out, _) = edit_master(MASTER, "master.cf", MasterEdit::SetField, &args(&["*/*/chroot=y"])).unwrap();
        assert_eq!(out.matches("       y       ").count(), 3, "{out}");
        // The Postfix quirk: the comment after the entry moves before the rewritten entry.
        let (out, _) = edit_master(MASTER, "master.cf", MasterEdit::SetParam, &args(&["127.0.0.1:2525/inet/smtpd_banner=hi"])).unwrap();
        assert!(out.contains("# after smtpd\n127.0.0.1:2525 inet n    -       n       -       -       smtpd\n    -o smtpd_helo_required=yes\n    -o smtpd_banner=hi\n"), "{out}");
        let (out, _) =
            edit_master(MASTER, "master.cf", MasterEdit::RemoveParam, &args(&["127.0.0.1:2525/inet/smtpd_helo_required"])).unwrap();
        assert!(out.contains("127.0.0.1:2525 inet n    -       n       -       -       smtpd\nflush"), "{out}");
        let (_, w) = edit_master(MASTER, "master.cf", MasterEdit::SetParam, &args(&["nosuch/unix/a=b"])).unwrap();
        assert_eq!(w, vec!["unmatched service_name/type: \"nosuch/unix/a=b\"".to_string()]);
    }

    #[test]
    fn bad_edits_are_errors() {
        let cases = [
            (MasterEdit::SetEntry, "qmgr=qmgr unix n - n 300 1 qmgr", "-Me, -MX or -M# requires service_name/type"),
            (MasterEdit::SetEntry, "x/unix=x unix n - n", "expected 8 or more fields, found 5: \"x/unix=x unix n - n\""),
            (MasterEdit::SetEntry, "x/tcp=x tcp n - n - - cmd", "bad transport type: tcp: \"x/tcp=x tcp n - n - - cmd\""),
            (MasterEdit::SetField, "qmgr/unix/maxproc=2", "invalid service attribute name: \"maxproc\""),
            (MasterEdit::SetField, "qmgr/unix/private=a b", "-Fe does not accept whitespace in non-command field"),
            (MasterEdit::SetParam, "qmgr/unix/a=b c", "-Pe does not accept whitespace in parameter value"),
            (MasterEdit::RemoveEntry, "qmgr/unix=x", "-X or -# requires names without value"),
        ];
        for (mode, a, want) in cases {
            assert_eq!(edit_master(MASTER, "master.cf", mode, &args(&[a])).unwrap_err().to_string(), want, "{a}");
        }
        let e = edit_master(MASTER, "master.cf", MasterEdit::SetField, &args(&["qmgr/unix/private=x"])).unwrap_err();
        assert_eq!(e.to_string(), "file master.cf: line 6: field \"private\": bad value: \"x\"");
    }
}
