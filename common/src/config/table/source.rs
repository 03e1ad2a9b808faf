//! The source text of a fixed-key table: what `postmap file` indexes and what `texthash:`
//! reads (Postfix `postmap.c`, `dict_thash.c`).
//!
//! Each logical line is `key whitespace value`: blank lines and `#` comments are skipped, a line
//! that starts with whitespace continues the one before, the key ends at the first whitespace
//! that is not inside double quotes (a backslash quotes the next character) and keeps its quotes,
//! and the value is trimmed. Lines that break these rules are skipped with a warning that names
//! the file and line, as Postfix does.

/// One `key value` entry and the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// The entries of a source text and the warnings about the lines that were skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    pub entries: Vec<Entry>,
    pub warnings: Vec<String>,
}

/// Logical lines of a Postfix table file: `(first line number, text)`.
pub fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let t = raw.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        match out.last_mut() {
            // A continuation line joins the previous line, its leading whitespace kept; with no
            // line before it, it is a line of its own, as in Postfix's readllines().
            Some(last) if raw.starts_with(char::is_whitespace) => last.1.push_str(raw.trim_end()),
            _ => out.push((idx + 1, raw.trim_end().to_string())),
        }
    }
    out
}

/// Split `key whitespace value`; `None` when a double quote is not closed.
pub fn split_entry(line: &str) -> Option<(&str, &str)> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            in_quotes = !in_quotes;
        } else if c.is_whitespace() && !in_quotes {
            return Some((&line[..i], line[i..].trim()));
        }
    }
    (!in_quotes).then_some((line, ""))
}

/// Parse a table source; `shown` names the file in warnings. `texthash` selects dict_thash's
/// wording (`-- ignoring this line`) over postmap's.
pub fn parse(text: &str, shown: &str, texthash: bool) -> Source {
    let mut src = Source::default();
    let ignoring = if texthash { " -- ignoring this line" } else { "" };
    for (line, text) in logical_lines(text) {
        let Some((key, value)) = split_entry(&text) else {
            src.warnings.push(format!("{shown}, line {line}: unbalanced '\"' in '{text}' -- ignoring this line"));
            continue;
        };
        if key.is_empty() || value.is_empty() {
            src.warnings.push(format!("{shown}, line {line}: expected format: key whitespace value{ignoring}"));
            continue;
        }
        if key.ends_with(':') {
            src.warnings.push(format!("{shown}, line {line}: record is in \"key: value\" format; is this an alias file?"));
        }
        src.entries.push(Entry { key: key.to_string(), value: value.to_string(), line });
    }
    src
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_quotes_continuations_and_warnings() {
        let text = "# comment\na b\n  c\n\"q q\"  z  \nX:  y\nnovalue\n\"open  x\n  lead\\ ing  v\n";
        let src = parse(text, "t", false);
        let got: Vec<(&str, &str, usize)> = src.entries.iter().map(|e| (e.key.as_str(), e.value.as_str(), e.line)).collect();
        assert_eq!(got, vec![("a", "b  c", 2), ("\"q q\"", "z", 4), ("X:", "y", 5)]);
        assert_eq!(
            src.warnings,
            vec![
                "t, line 5: record is in \"key: value\" format; is this an alias file?".to_string(),
                "t, line 6: expected format: key whitespace value".to_string(),
                "t, line 7: unbalanced '\"' in '\"open  x  lead\\ ing  v' -- ignoring this line".to_string(),
            ]
        );
        assert_eq!(split_entry("lead\\ ing v"), Some(("lead\\ ing", "v")));
    }
}
