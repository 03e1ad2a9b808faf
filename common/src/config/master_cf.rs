//! master.cf reader: eight columns, `-` for defaults, continuation lines, `-o name=value`
//! overrides and `{ ... }` quoting (Postfix `master_ent.c`). Every error names file and line.

use std::path::{Path, PathBuf};

use super::lines::{LineError, logical_lines};
use super::main_cf::{split_name_value, valid_param_name};

/// A master.cf that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MasterCfError {
    /// The file cannot be read.
    #[error("open {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A line-level problem; `what` is Postfix's wording.
    #[error("{path}, line {line}: {what}")]
    Line { path: PathBuf, line: usize, what: String },
    /// Continuation-line trouble.
    #[error("{path}, {source}")]
    Lines { path: PathBuf, source: LineError },
}

/// The transport type column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceType {
    Inet,
    Unix,
    UnixDgram,
    Fifo,
    Pass,
}

impl ServiceType {
    pub fn parse(s: &str) -> Option<ServiceType> {
        Some(match s {
            "inet" => ServiceType::Inet,
            "unix" => ServiceType::Unix,
            "unix-dgram" => ServiceType::UnixDgram,
            "fifo" => ServiceType::Fifo,
            "pass" => ServiceType::Pass,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::Inet => "inet",
            ServiceType::Unix => "unix",
            ServiceType::UnixDgram => "unix-dgram",
            ServiceType::Fifo => "fifo",
            ServiceType::Pass => "pass",
        }
    }
}

/// The wakeup column: every `seconds`, and with `?` only once the service was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wakeup {
    pub seconds: u64,
    pub conditional: bool,
}

/// One service of master.cf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterEntry {
    /// First and last physical line of the entry.
    pub line: usize,
    pub last_line: usize,
    /// The raw tokens as written (fields 1-7, command, arguments; braces kept).
    pub tokens: Vec<String>,
    pub service: String,
    pub kind: ServiceType,
    pub private: bool,
    pub unprivileged: bool,
    pub chroot: bool,
    pub wakeup: Option<Wakeup>,
    /// `None` means `-`: `$default_process_limit`.
    pub maxproc: Option<u32>,
    pub command: String,
    /// Arguments after the command, braces removed, `-o` pairs taken out.
    pub args: Vec<String>,
    pub overrides: Overrides,
}

impl MasterEntry {
    /// `name/type`, the identity of a service (what `postconf -M` selects on).
    pub fn key(&self) -> String {
        format!("{}/{}", self.service, self.kind.as_str())
    }

    /// The process limit with `-` resolved.
    pub fn process_limit(&self, default_process_limit: u32) -> u32 {
        self.maxproc.unwrap_or(default_process_limit)
    }
}

/// All entries plus the warnings seen while reading them.
#[derive(Debug, Clone, Default)]
pub struct MasterCf {
    pub path: PathBuf,
    pub entries: Vec<MasterEntry>,
    pub warnings: Vec<String>,
}

/// Split a logical line into tokens; `{ ... }` is one token (braces kept, nesting allowed).
pub fn tokenize(text: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if c == '{' {
            let mut depth = 0usize;
            let mut end = None;
            for (i, ch) in chars.by_ref() {
                match ch {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(i);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let end = end.ok_or_else(|| format!("missing '}}' in \"{}\"", &text[start..]))?;
            tokens.push(text[start..=end].to_string());
        } else {
            let mut end = text.len();
            while let Some(&(i, ch)) = chars.peek() {
                if ch.is_whitespace() {
                    end = i;
                    break;
                }
                chars.next();
            }
            tokens.push(text[start..end].to_string());
        }
    }
    Ok(tokens)
}

/// The content of a `{ ... }` token, or the token itself.
pub fn unbrace(token: &str) -> &str {
    match token.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
        Some(inner) => inner.trim(),
        None => token,
    }
}

fn parse_yn(field: &str, value: &str, default: bool) -> Result<bool, String> {
    match value {
        "-" => Ok(default),
        "y" => Ok(true),
        "n" => Ok(false),
        _ => Err(format!("field \"{field}\": bad value: \"{value}\"")),
    }
}

fn parse_wakeup(value: &str) -> Result<Option<Wakeup>, String> {
    if value == "-" {
        return Ok(None);
    }
    let (digits, conditional) = match value.strip_suffix('?') {
        Some(d) => (d, true),
        None => (value, false),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("field \"wakeup\": bad value: \"{value}\""));
    }
    let seconds: u64 = digits.parse().map_err(|_| format!("field \"wakeup\": bad value: \"{value}\""))?;
    Ok((seconds > 0).then_some(Wakeup { seconds, conditional }))
}

fn parse_maxproc(value: &str) -> Result<Option<u32>, String> {
    if value == "-" {
        return Ok(None);
    }
    if !value.bytes().all(|b| b.is_ascii_digit()) || value.is_empty() {
        return Err(format!("field \"process_limit\": bad value: \"{value}\""));
    }
    value.parse().map(Some).map_err(|_| format!("field \"process_limit\": bad value: \"{value}\""))
}

/// Parameter overrides: (name, value) pairs from `-o name=value`.
pub type Overrides = Vec<(String, String)>;

/// Take `-o name=value` pairs out of the argument tokens.
fn split_overrides(tokens: &[String]) -> Result<(Vec<String>, Overrides), String> {
    let mut args = Vec::new();
    let mut overrides = Vec::new();
    let mut it = tokens.iter();
    while let Some(t) = it.next() {
        let pair = if t == "-o" {
            Some(it.next().ok_or("option requires an argument -- o")?.as_str())
        } else {
            t.strip_prefix("-o").filter(|rest| !rest.is_empty())
        };
        match pair {
            Some(p) => {
                let p = unbrace(p);
                let (name, value) = split_name_value(p).ok_or_else(|| format!("-o: missing '=' in \"{p}\""))?;
                if !valid_param_name(name) {
                    return Err(format!("-o: bad parameter name: \"{name}\""));
                }
                overrides.push((name.to_string(), value.to_string()));
            }
            None => args.push(unbrace(t).to_string()),
        }
    }
    Ok((args, overrides))
}

/// Parse one entry from its raw tokens.
pub fn parse_entry(tokens: Vec<String>, line: usize, last_line: usize) -> Result<MasterEntry, String> {
    if tokens.len() < 8 {
        return Err(format!("expected 8 or more fields, found {}", tokens.len()));
    }
    let kind = ServiceType::parse(&tokens[1]).ok_or_else(|| format!("bad transport type: {}", tokens[1]))?;
    let private = parse_yn("private", &tokens[2], true)?;
    if kind == ServiceType::Inet && (private || tokens[2] == "-") {
        return Err("inet service cannot be private".into());
    }
    let unprivileged = parse_yn("unprivileged", &tokens[3], true)?;
    let chroot = parse_yn("chroot", &tokens[4], false)?;
    let wakeup = parse_wakeup(&tokens[5])?;
    let maxproc = parse_maxproc(&tokens[6])?;
    let command = unbrace(&tokens[7]).to_string();
    if command.is_empty() {
        return Err("empty command".into());
    }
    let (args, overrides) = split_overrides(&tokens[8..])?;
    Ok(MasterEntry {
        line,
        last_line,
        service: unbrace(&tokens[0]).to_string(),
        tokens,
        kind,
        private,
        unprivileged,
        chroot,
        wakeup,
        maxproc,
        command,
        args,
        overrides,
    })
}

impl MasterCf {
    /// Read and parse `path`.
    pub fn load(path: &Path) -> Result<MasterCf, MasterCfError> {
        let text = std::fs::read_to_string(path).map_err(|source| MasterCfError::Io { path: path.to_path_buf(), source })?;
        MasterCf::parse(&text, path)
    }

    /// Parse master.cf text; a later duplicate `name/type` replaces the earlier one with a warning.
    pub fn parse(text: &str, path: &Path) -> Result<MasterCf, MasterCfError> {
        let lines = logical_lines(text).map_err(|source| MasterCfError::Lines { path: path.to_path_buf(), source })?;
        let mut cf = MasterCf { path: path.to_path_buf(), ..MasterCf::default() };
        for l in lines {
            let err = |what: String| MasterCfError::Line { path: path.to_path_buf(), line: l.line, what };
            let tokens = tokenize(&l.text).map_err(err)?;
            let entry = parse_entry(tokens, l.line, l.last_line).map_err(err)?;
            if let Some(pos) = cf.entries.iter().position(|e| e.key() == entry.key()) {
                cf.warnings.push(format!(
                    "{}, line {}: duplicate master.cf entry for service \"{}\" ({}) -- using the last entry",
                    path.display(),
                    l.line,
                    entry.service,
                    entry.kind.as_str()
                ));
                cf.entries.remove(pos);
            }
            cf.entries.push(entry);
        }
        Ok(cf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<MasterCf, MasterCfError> {
        MasterCf::parse(text, Path::new("master.cf"))
    }

    #[test]
    fn parses_stock_entries() {
        let cf = parse(
            "# comment\n\
             127.0.0.1:2525 inet n - n - - smtpd\n  -o smtpd_helo_required=yes\n  -o { smtpd_banner = $myhostname hi there }\n\
             flush unix n - n 1000? 0 flush\n\
             qmgr unix n - n 300 1 qmgr\n\
             relay unix - - n - - smtp -o syslog_name=postfix/$service_name {arg with space}\n",
        )
        .unwrap();
        assert_eq!(cf.entries.len(), 4);
        let smtpd = &cf.entries[0];
        assert_eq!((smtpd.service.as_str(), smtpd.kind, smtpd.private), ("127.0.0.1:2525", ServiceType::Inet, false));
        assert_eq!(
            smtpd.overrides,
            vec![("smtpd_helo_required".to_string(), "yes".to_string()), ("smtpd_banner".to_string(), "$myhostname hi there".to_string())]
        );
        assert_eq!((smtpd.line, smtpd.last_line), (2, 4));
        let flush = &cf.entries[1];
        assert_eq!(flush.wakeup, Some(Wakeup { seconds: 1000, conditional: true }));
        assert_eq!(flush.maxproc, Some(0));
        assert!(flush.unprivileged && !flush.chroot);
        let relay = &cf.entries[3];
        assert_eq!(relay.args, vec!["arg with space".to_string()]);
        assert_eq!(relay.process_limit(100), 100);
        assert_eq!(relay.key(), "relay/unix");
    }

    #[test]
    fn hostile_entries_name_the_line() {
        let cases = [
            ("a unix n - n - - \n", "master.cf, line 1: expected 8 or more fields, found 7"),
            ("\n\na tcp n - n - - cmd\n", "master.cf, line 3: bad transport type: tcp"),
            ("a unix x - n - - cmd\n", "master.cf, line 1: field \"private\": bad value: \"x\""),
            ("a unix n yes n - - cmd\n", "master.cf, line 1: field \"unprivileged\": bad value: \"yes\""),
            ("25 inet - - n - - smtpd\n", "master.cf, line 1: inet service cannot be private"),
            ("a unix n - n 10?? - cmd\n", "master.cf, line 1: field \"wakeup\": bad value: \"10??\""),
            ("a unix n - n - -1 cmd\n", "master.cf, line 1: field \"process_limit\": bad value: \"-1\""),
            ("a unix n - n - - cmd -o { x = 1\n", "master.cf, line 1: missing '}' in \"{ x = 1\""),
            ("a unix n - n - - cmd -o\n", "master.cf, line 1: option requires an argument -- o"),
            ("a unix n - n - - cmd -o novalue\n", "master.cf, line 1: -o: missing '=' in \"novalue\""),
            ("a unix n - n - 99999999999 cmd\n", "master.cf, line 1: field \"process_limit\": bad value: \"99999999999\""),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text).unwrap_err().to_string(), want, "input {text:?}");
        }
    }

    #[test]
    fn duplicate_uses_last() {
        let cf = parse("a unix n - n - 1 one\na unix n - n - 2 two\n").unwrap();
        assert_eq!(cf.entries.len(), 1);
        assert_eq!(cf.entries[0].command, "two");
        assert_eq!(cf.warnings.len(), 1);
        assert!(cf.warnings[0].contains("duplicate master.cf entry for service \"a\" (unix) -- using the last entry"));
    }
}
