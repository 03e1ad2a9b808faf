//! Rendering a manual header as man(7) roff: `# Heading` becomes `.SH`, blank lines separate
//! paragraphs, `* `/`- ` lines start list items, `` `code` `` is bold, `[`link`]` loses its
//! brackets. Every line is escaped so that no text is read as a request.

use std::path::Path;
use std::process::Command;

use crate::header::Page;

/// The page date: `SOURCE_DATE_EPOCH` (reproducible builds), else the last commit's date,
/// else today.
pub fn page_date(root: &Path) -> String {
    if let Some(secs) = std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.parse::<u64>().ok()) {
        return ymd(secs);
    }
    let git = Command::new("git").args(["log", "-1", "--format=%cs"]).current_dir(root).output();
    if let Ok(out) = git {
        let d = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && d.len() == 10 {
            return d;
        }
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    ymd(now)
}

/// `YYYY-MM-DD` of a Unix time (Howard Hinnant's civil_from_days).
fn ymd(secs: u64) -> String {
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The `.TH` line and NAME section every page starts with. Text is set ragged right (`.ad l`):
/// lists of long parameter names cannot be justified without troff's "cannot adjust line".
pub fn preamble(name: &str, section: u8, date: &str, summary: &str) -> String {
    format!(
        ".TH {} {section} {date} \"Postern {}\" \"Postern Manual\"\n.ad l\n.SH NAME\n{} \\- {}\n",
        name.to_uppercase(),
        common::config::params::param_table().get("mail_version").map_or("", |d| d.default.as_str()),
        escape_plain(name),
        Inline::default().line(summary),
    )
}

/// SEE ALSO: every other page of the suite, so each page leads to the rest.
pub fn see_also(own: (&str, u8), pages: &[(String, u8)]) -> String {
    let mut all: Vec<(String, u8)> = pages.to_vec();
    all.push(("postconf".to_string(), 5));
    all.retain(|(n, s)| (n.as_str(), *s) != own);
    all.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    let refs: Vec<String> = all.iter().map(|(n, s)| format!("\\fB{}\\fR({s})", escape_plain(n))).collect();
    format!(".SH SEE ALSO\n{}\n", refs.join(",\n"))
}

pub fn render(page: &Page, section: u8, date: &str, pages: &[(String, u8)]) -> String {
    let mut out = preamble(&page.name, section, date, &page.summary);
    for (heading, body) in &page.sections {
        out.push_str(&format!(".SH {}\n", escape_plain(&heading.to_uppercase())));
        out.push_str(&blocks(body));
    }
    out.push_str(&see_also((&page.name, section), pages));
    out
}

/// Paragraphs and list items of one section's body. A line that is not a list item continues
/// the paragraph or item above it unless a blank line came between (Markdown's lazy lines).
pub fn blocks(body: &[String]) -> String {
    let mut out = String::new();
    let mut inline = Inline::default();
    let mut blank_before = false;
    let mut started = false;
    for raw in body {
        let line = raw.trim();
        if line.is_empty() {
            blank_before = started;
            continue;
        }
        if let Some(item) = line.strip_prefix("* ").or_else(|| line.strip_prefix("- ")) {
            out.push_str(".IP \\(bu 2\n");
            out.push_str(&inline.line(item));
        } else {
            if blank_before {
                out.push_str(".PP\n");
            }
            out.push_str(&inline.line(line));
        }
        blank_before = false;
        started = true;
    }
    out
}

/// Inline markup, with the code-span state carried from line to line.
#[derive(Default)]
pub struct Inline {
    in_code: bool,
}

impl Inline {
    /// One output line (with its newline) for one line of text.
    pub fn line(&mut self, text: &str) -> String {
        // `[`name`]` (an intra-doc link) reads as `name`.
        let text = text.replace("[`", "`").replace("`]", "`");
        let mut out = String::new();
        if self.in_code {
            out.push_str("\\fB\\%");
        }
        for c in text.chars() {
            match c {
                // `\%`: a name or option is never hyphenated at a line end.
                '`' => {
                    out.push_str(if self.in_code { "\\fR" } else { "\\fB\\%" });
                    self.in_code = !self.in_code;
                }
                '\\' => out.push_str("\\e"),
                // In code a hyphen is a minus, so an option typed from the page works.
                '-' if self.in_code => out.push_str("\\-"),
                c if !c.is_ascii() => out.push_str(&format!("\\[u{:04X}]", u32::from(c))),
                c => out.push(c),
            }
        }
        if self.in_code {
            out.push_str("\\fR");
        }
        guard_line_start(&mut out);
        out.push('\n');
        out
    }
}

/// Text with backslashes escaped and no markup.
pub fn escape_plain(text: &str) -> String {
    let mut s = String::new();
    for c in text.chars() {
        match c {
            '\\' => s.push_str("\\e"),
            c if !c.is_ascii() => s.push_str(&format!("\\[u{:04X}]", u32::from(c))),
            c => s.push(c),
        }
    }
    guard_line_start(&mut s);
    s
}

/// A line starting with `.` or `'` would be a request: `\&` makes it text.
fn guard_line_start(s: &mut String) {
    if s.starts_with('.') || s.starts_with('\'') {
        s.insert_str(0, "\\&");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dates() {
        assert_eq!(ymd(0), "1970-01-01");
        assert_eq!(ymd(951_782_400), "2000-02-29");
        assert_eq!(ymd(1_798_761_600), "2027-01-01");
    }

    #[test]
    fn code_spans_escape_and_cross_lines() {
        let mut i = Inline::default();
        assert_eq!(i.line("use `-c dir` and \\n"), "use \\fB\\%\\-c dir\\fR and \\en\n");
        assert_eq!(i.line("a `span"), "a \\fB\\%span\\fR\n");
        assert_eq!(i.line("ends` here"), "\\fB\\%ends\\fR here\n");
        assert_eq!(i.line(". not a request"), "\\&. not a request\n");
        assert_eq!(i.line("see [`data`]"), "see \\fB\\%data\\fR\n");
        assert_eq!(i.line("a → b"), "a \\[u2192] b\n");
    }

    #[test]
    fn paragraphs_and_items() {
        let out = blocks(&lines(&["One", "two.", "", "* item", "  more", "* next", "", "After."]));
        assert_eq!(out, "One\ntwo.\n.IP \\(bu 2\nitem\nmore\n.IP \\(bu 2\nnext\n.PP\nAfter.\n");
    }
}
