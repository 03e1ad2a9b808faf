//! Postfix's logical-line reader, shared by main.cf and master.cf (Postfix `readllines`).
//!
//! Blank lines and lines whose first non-blank character is `#` are ignored, also in the middle of
//! a multi-line entry. A line that starts with whitespace continues the previous logical line: the
//! newline is dropped and the leading whitespace kept.

/// One logical line and the physical line number on which it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalLine {
    pub line: usize,
    /// Last physical line that belongs to this logical line.
    pub last_line: usize,
    pub text: String,
}

/// Why a text cannot be split into logical lines.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// A continuation line (leading whitespace) with no logical line before it.
    #[error("line {0}: continuation line without a preceding line")]
    OrphanContinuation(usize),
}

/// True for lines that carry no content: empty, whitespace only, or a comment.
pub fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim_start();
    t.is_empty() || t.starts_with('#')
}

/// Split `text` into logical lines.
pub fn logical_lines(text: &str) -> Result<Vec<LogicalLine>, LineError> {
    let mut out: Vec<LogicalLine> = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let no = idx + 1;
        if is_blank_or_comment(raw) {
            continue;
        }
        if raw.starts_with(char::is_whitespace) {
            match out.last_mut() {
                Some(last) => {
                    last.text.push_str(raw.trim_end());
                    last.last_line = no;
                }
                None => return Err(LineError::OrphanContinuation(no)),
            }
        } else {
            out.push(LogicalLine { line: no, last_line: no, text: raw.trim_end().to_string() });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_continuations_and_skips_comments() {
        let text = "a = 1\n  2\n# c\n\n  # inner comment\n  3\nb = x\n";
        let got = logical_lines(text).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].text, "a = 1  2  3");
        assert_eq!((got[0].line, got[0].last_line), (1, 6));
        assert_eq!(got[1].text, "b = x");
        assert_eq!(got[1].line, 7);
    }

    #[test]
    fn orphan_continuation_is_an_error() {
        assert_eq!(logical_lines("  x = 1\n"), Err(LineError::OrphanContinuation(1)));
    }
}
