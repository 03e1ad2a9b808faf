//! Notification templates: Postfix's built-in failure, delay, success and verify texts, and the
//! overrides of `bounce_template_file` in Postfix's `bounce(5)` format:
//!
//! ```text
//! failure_template = <<EOF
//! Charset: us-ascii
//! From: MAILER-DAEMON (Mail Delivery System)
//! Subject: Undelivered Mail Returned to Sender
//! Postmaster-Subject: Postmaster Copy: Undelivered Mail
//!
//! This is the mail system at host $myhostname.
//! ...
//! EOF
//! ```
//!
//! A template's text may use `$name` of any main.cf parameter, and
//! `$delay_warning_time_<unit>` and `$maximal_queue_lifetime_<unit>` with a unit of seconds,
//! minutes, hours, days or weeks. Everything in a template depends only on the configuration,
//! so templates are read and expanded once, when a service loads its configuration. Where
//! Postfix logs a warning and falls back to the built-in template (an unknown template name,
//! header label or a missing end marker), Postern refuses the file with its name and line, as
//! for every other setting it cannot use: a notice must not quietly go out in a text the
//! administrator replaced. An undefined `$name`, fatal in Postfix's bounce service, is refused
//! the same way.

use std::cell::RefCell;

use crate::config::Params;
use crate::log_warning;

/// One notice class's texts, expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// `Charset:`; anything but us-ascii lets the text carry 8-bit characters.
    pub charset: String,
    /// `From:` of an override; `None`: Postfix's built-in sender in `header_from_format`.
    pub from: Option<String>,
    pub subject: String,
    /// The subject of a copy to the postmaster (failure and delay templates only).
    pub postmaster_subject: Option<String>,
    /// The text at the top of a notice to the sender, each line ending in CRLF.
    pub text: String,
}

impl Template {
    /// The text has 8-bit characters (`Content-Transfer-Encoding: 8bit`).
    pub fn eight_bit(&self) -> bool {
        !self.text.is_ascii()
    }
}

/// The templates a notice can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Templates {
    pub failure: Template,
    pub delay: Template,
    pub success: Template,
}

/// Why `bounce_template_file` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// `bounce_template_file` itself does not expand.
    #[error(transparent)]
    Param(#[from] crate::config::ParamError),
    #[error("{path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}, line {line}: {what}")]
    Syntax { path: String, line: usize, what: String },
    #[error("{path}: {what} in {class} template")]
    Template { path: String, class: &'static str, what: String },
}

const POSTMASTER_SUBJECT: &str = "Postmaster-Subject";

/// Postfix's built-in templates, in the file format (so one parser reads both).
const BUILT_IN: [(&str, &str); 4] = [
    (
        "failure",
        "Subject: Undelivered Mail Returned to Sender\n\
         Postmaster-Subject: Postmaster Copy: Undelivered Mail\n\n\
         This is the mail system at host $myhostname.\n\n\
         I'm sorry to have to inform you that your message could not\n\
         be delivered to one or more recipients. It's attached below.\n\n\
         For further assistance, please send mail to postmaster.\n\n\
         If you do so, please include this problem report. You can\n\
         delete your own text from the attached returned message.\n\n                   \
         The mail system",
    ),
    (
        "delay",
        "Subject: Delayed Mail (still being retried)\n\
         Postmaster-Subject: Postmaster Warning: Delayed Mail\n\n\
         This is the mail system at host $myhostname.\n\n\
         ####################################################################\n\
         # THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n\
         ####################################################################\n\n\
         Your message could not be delivered for more than $delay_warning_time_hours hour(s).\n\
         It will be retried until it is $maximal_queue_lifetime_days day(s) old.\n\n\
         For further assistance, please send mail to postmaster.\n\n\
         If you do so, please include this problem report. You can\n\
         delete your own text from the attached returned message.\n\n                   \
         The mail system",
    ),
    (
        "success",
        "Subject: Successful Mail Delivery Report\n\n\
         This is the mail system at host $myhostname.\n\n\
         Your message was successfully delivered to the destination(s)\n\
         listed below. If the message was delivered to mailbox you will\n\
         receive no further notifications. Otherwise you may still receive\n\
         notifications of mail delivery errors from other systems.\n\n                   \
         The mail system",
    ),
    (
        "verify",
        "Subject: Mail Delivery Status Report\n\n\
         This is the mail system at host $myhostname.\n\n\
         Enclosed is the mail delivery report that you requested.\n\n                   \
         The mail system",
    ),
];

/// The templates for `p`: the built-in ones, with those that `bounce_template_file` names
/// replaced.
pub fn load(p: &Params) -> Result<Templates, TemplateError> {
    let file = p.get("bounce_template_file")?;
    let mut sources: Vec<(&str, String, String)> =
        BUILT_IN.iter().map(|(class, text)| (*class, "[built-in]".to_string(), text.to_string())).collect();
    if !file.trim().is_empty() {
        let path = file.trim().to_string();
        let content = std::fs::read_to_string(&path).map_err(|source| TemplateError::Read { path: path.clone(), source })?;
        for (class, text) in parse_file(&path, &content)? {
            if let Some(slot) = sources.iter_mut().find(|(c, _, _)| *c == class) {
                *slot = (slot.0, path.clone(), text);
            }
        }
    }
    let parsed: Vec<Template> =
        sources.into_iter().map(|(class, origin, text)| parse_template(p, class, &origin, &text)).collect::<Result<_, _>>()?;
    // No Postern program sends the verify report (sendmail -v, -bv); an override of it is still
    // checked, so a file that Postfix accepts is one Postern accepts.
    let [failure, delay, success, _verify]: [Template; 4] = parsed.try_into().expect("one template per built-in class");
    Ok(Templates { failure, delay, success })
}

/// The `<class>_template = value` entries of a template file, with `<<MARKER` values read up to
/// the line that is exactly `MARKER`.
fn parse_file(path: &str, content: &str) -> Result<Vec<(&'static str, String)>, TemplateError> {
    let syntax = |line: usize, what: String| TemplateError::Syntax { path: path.to_string(), line, what };
    let mut out = Vec::new();
    let mut lines = content.lines().enumerate().map(|(i, l)| (i + 1, l));
    while let Some((lineno, line)) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err(syntax(lineno, format!("missing '=' after attribute name: \"{line}\"")));
        };
        let name = name.trim();
        let mut value = value.trim().to_string();
        if let Some(marker) = value.strip_prefix("<<") {
            let marker = marker.trim().to_string();
            if marker.is_empty() {
                return Err(syntax(lineno, "missing end marker after <<".into()));
            }
            if !marker.starts_with(|c: char| c.is_ascii_alphanumeric()) {
                return Err(syntax(lineno, "malformed end marker after <<".into()));
            }
            let mut body: Vec<&str> = Vec::new();
            let mut closed = false;
            for (_, l) in lines.by_ref() {
                if l == marker {
                    closed = true;
                    break;
                }
                body.push(l);
            }
            if !closed {
                return Err(syntax(lineno, format!("missing \"{marker}\" end marker")));
            }
            value = body.join("\n");
        }
        let class = name.strip_suffix("_template").and_then(|c| BUILT_IN.iter().map(|(class, _)| *class).find(|k| *k == c));
        match class {
            Some(class) => out.push((class, value)),
            None => return Err(syntax(lineno, format!("unknown template name: {name}"))),
        }
    }
    Ok(out)
}

/// One template's pseudo-headers and text (Postfix's `bounce_template_parse_buffer`), with the
/// text expanded.
fn parse_template(p: &Params, class: &'static str, origin: &str, buffer: &str) -> Result<Template, TemplateError> {
    let fail = |what: String| TemplateError::Template { path: origin.to_string(), class, what };
    let mut t = Template { charset: "us-ascii".into(), from: None, subject: String::new(), postmaster_subject: None, text: String::new() };
    let built_in_postmaster_subject = matches!(class, "failure" | "delay");
    let mut lines = buffer.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).peekable();
    while let Some((label, value)) = lines.peek().and_then(|l| header(l)) {
        lines.next();
        if value.is_empty() {
            return Err(fail(format!("empty \"{label}\" header value")));
        }
        if !value.is_ascii() {
            return Err(fail(format!("non-ASCII \"{label}\" header value")));
        }
        let value = value.to_string();
        match label.to_ascii_lowercase().as_str() {
            "charset" => t.charset = value,
            "from" => t.from = Some(value),
            "subject" => t.subject = value,
            "postmaster-subject" if built_in_postmaster_subject => t.postmaster_subject = Some(value),
            "postmaster-subject" => return Err(fail(format!("inapplicable \"{POSTMASTER_SUBJECT}\" header label"))),
            _ => return Err(fail(format!("unknown \"{label}\" header label"))),
        }
    }
    if t.subject.is_empty() {
        t.subject = built_in_subject(class);
    }
    while lines.peek().is_some_and(|l| l.trim().is_empty()) {
        lines.next();
    }
    let text: Vec<&str> = lines.collect();
    if text.is_empty() {
        return Err(fail("missing message text".into()));
    }
    if text.iter().any(|l| !l.is_ascii()) && t.charset.eq_ignore_ascii_case("us-ascii") {
        return Err(fail("8-bit message text with charset us-ascii (specify another charset)".into()));
    }
    for line in text {
        t.text.push_str(&expand_line(p, class, origin, line).map_err(fail)?);
        t.text.push_str("\r\n");
    }
    Ok(t)
}

/// The built-in subject of `class` (an override that gives none keeps it).
fn built_in_subject(class: &str) -> String {
    let text = BUILT_IN.iter().find(|(c, _)| *c == class).map_or("", |(_, t)| t);
    text.lines().find_map(|l| l.strip_prefix("Subject: ")).unwrap_or_default().to_string()
}

/// `label: value` when `line` is a header line (an RFC 5322 field name, then a colon).
fn header(line: &str) -> Option<(&str, &str)> {
    let (label, value) = line.split_once(':')?;
    let field_name = !label.is_empty() && label.bytes().all(|b| (33..=126).contains(&b) && b != b':');
    field_name.then(|| (label, value.trim_matches(|c: char| c == ':' || c.is_ascii_whitespace())))
}

/// `line` with its `$name`s expanded; an undefined name is an error.
fn expand_line(p: &Params, class: &str, origin: &str, line: &str) -> Result<String, String> {
    let undefined = RefCell::new(None::<String>);
    let bad_unit = RefCell::new(None::<String>);
    let lookup = |name: &str| -> Option<String> {
        for param in ["delay_warning_time", "maximal_queue_lifetime"] {
            if let Some(unit) = name.strip_prefix(param).and_then(|rest| rest.strip_prefix('_')) {
                let Some(divisor) = unit_seconds(unit) else {
                    *bad_unit.borrow_mut() = Some(format!("unrecognized suffix \"{unit}\" in parameter \"{name}\""));
                    return Some(String::new());
                };
                let seconds = p.time(param).map_or(0, |d| d.as_secs());
                let result = seconds / divisor;
                if result > 999 && divisor < 86400 {
                    log_warning!("{origin}: excessive result \"{result}\" in {class} template conversion of parameter \"{name}\"");
                } else if result == 0 && seconds > 0 && divisor > 1 {
                    log_warning!("{origin}: zero result in {class} template conversion of parameter \"{name}\"");
                }
                return Some(result.to_string());
            }
        }
        if matches!(name, "myhostname" | "mydomain") && p.bool("smtputf8_enable").unwrap_or(false) {
            let value = p.get(name).ok()?;
            let (unicode, result) = idna::domain_to_unicode(&value);
            return Some(if result.is_ok() { unicode } else { value });
        }
        match p.raw(name) {
            Some(raw) => Some(raw),
            None => {
                undefined.borrow_mut().get_or_insert_with(|| name.to_string());
                None
            }
        }
    };
    let expanded = crate::config::expand::expand(line, &lookup).map_err(|e| format!("bad $name syntax: {e}"))?;
    if let Some(what) = bad_unit.into_inner() {
        return Err(what);
    }
    if let Some(name) = undefined.into_inner() {
        return Err(format!("undefined ${name}: {line}"));
    }
    Ok(crate::text::printable(&expanded, '?').into_owned())
}

fn unit_seconds(unit: &str) -> Option<u64> {
    match unit {
        "seconds" => Some(1),
        "minutes" => Some(60),
        "hours" => Some(3600),
        "days" => Some(86400),
        "weeks" => Some(7 * 86400),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(main_cf: &str) -> Params {
        let dir = std::path::Path::new("/nonexistent");
        Params::from_parts(dir, crate::config::MainCf::parse(main_cf, &dir.join("main.cf")).expect("main.cf parses"), &[])
    }

    fn with_file(extra: &str, file: &str) -> Result<Templates, TemplateError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bounce.cf");
        std::fs::write(&path, file).unwrap();
        load(&params(&format!("myhostname = mx.example\nbounce_template_file = {}\n{extra}", path.display())))
    }

    #[test]
    fn built_in_texts_are_postfix_s() {
        let t = load(&params("myhostname = mx.example\ndelay_warning_time = 4h\nmaximal_queue_lifetime = 5d\n")).unwrap();
        assert_eq!(t.failure.subject, "Undelivered Mail Returned to Sender");
        assert_eq!(t.failure.postmaster_subject.as_deref(), Some("Postmaster Copy: Undelivered Mail"));
        assert!(t.failure.text.starts_with("This is the mail system at host mx.example.\r\n\r\nI'm sorry"), "{}", t.failure.text);
        assert!(t.failure.text.ends_with("\r\n                   The mail system\r\n"), "{}", t.failure.text);
        assert!(t.delay.text.contains("for more than 4 hour(s).\r\nIt will be retried until it is 5 day(s) old.\r\n"));
        assert_eq!(t.delay.postmaster_subject.as_deref(), Some("Postmaster Warning: Delayed Mail"));
        assert_eq!(t.success.postmaster_subject, None);
        assert_eq!(t.failure.from, None);
    }

    #[test]
    fn an_override_replaces_its_class_only() {
        let file = "# comment\n\nfailure_template = <<EOF\nCharset: utf-8\nFrom: bounces@example.com (Bounce Robot)\n\
                    Subject: Nicht zustellbar\n\nHallo von $myhostname, über $delay_warning_time_minutes Minuten.\n\
                    ${mail_name} and $$5.\nEOF\n";
        let t = with_file("delay_warning_time = 2h\n", file).unwrap();
        assert_eq!(t.failure.charset, "utf-8");
        assert_eq!(t.failure.from.as_deref(), Some("bounces@example.com (Bounce Robot)"));
        assert_eq!(t.failure.subject, "Nicht zustellbar");
        // No Postmaster-Subject in the override: the copy falls back to the subject.
        assert_eq!(t.failure.postmaster_subject, None);
        assert_eq!(t.failure.text, "Hallo von mx.example, über 120 Minuten.\r\nPostern and $5.\r\n");
        assert!(t.failure.eight_bit());
        assert_eq!(t.delay.subject, "Delayed Mail (still being retried)");
    }

    #[test]
    fn bad_files_are_refused_with_the_file_and_line() {
        let cases = [
            ("nonsense line\n", "line 1: missing '='"),
            ("bogus_template = x\n", "line 1: unknown template name: bogus_template"),
            ("\nfailure_template = <<EOF\nSubject: x\n\ntext\n", "line 2: missing \"EOF\" end marker"),
            ("failure_template = <<\n", "line 1: missing end marker after <<"),
            ("failure_template = << -x\n-x\n", "malformed end marker"),
            (
                "success_template = <<EOF\nPostmaster-Subject: x\n\ntext\nEOF\n",
                "inapplicable \"Postmaster-Subject\" header label in success",
            ),
            ("failure_template = <<EOF\nX-Mine: x\n\ntext\nEOF\n", "unknown \"X-Mine\" header label in failure"),
            ("failure_template = <<EOF\nSubject:\n\ntext\nEOF\n", "empty \"Subject\" header value"),
            ("failure_template = <<EOF\nSubject: x\n\n\nEOF\n", "missing message text"),
            ("failure_template = <<EOF\nSubject: x\n\nüber\nEOF\n", "8-bit message text with charset us-ascii"),
            ("failure_template = <<EOF\nSubject: x\n\n$no_such_parameter_here\nEOF\n", "undefined $no_such_parameter_here"),
            ("delay_template = <<EOF\nSubject: x\n\n$delay_warning_time_fortnights\nEOF\n", "unrecognized suffix \"fortnights\""),
        ];
        for (file, want) in cases {
            let err = with_file("", file).expect_err(file).to_string();
            assert!(err.contains(want), "{file:?}: {err}");
            assert!(err.contains("bounce.cf"), "{file:?}: {err}");
        }
        assert!(load(&params("bounce_template_file = ${unclosed\n")).is_err(), "a value that does not expand is an error, not no file");
        let missing = load(&params("bounce_template_file = /nonexistent/bounce.cf\n")).unwrap_err().to_string();
        assert!(missing.starts_with("/nonexistent/bounce.cf: "), "{missing}");
    }
}
