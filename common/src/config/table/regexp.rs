//! `regexp:` and `pcre:` tables: `/pattern/flags result` rules tried in file order, `!/pattern/`
//! for a non-match, `if /pattern/` ... `endif` blocks, and `$1`, `${1}`, `$(1)` substitution
//! (Postfix `dict_regexp.c`, `dict_pcre.c`). Rules that do not compile are skipped with a
//! warning naming the file and line, as in Postfix.
//!
//! Both dialects are compiled by the `regex` crate, which differs from POSIX regcomp() and from
//! PCRE in these ways (README "Lookup tables" lists them for administrators):
//! - no backreferences (`\1` in a pattern), no look-around (`(?=`, `(?!`, `(?<=`), no atomic
//!   groups or possessive quantifiers, no `\Q...\E`: such a rule is refused with a warning;
//! - matching is leftmost-first (Perl's) also for `regexp:`, where POSIX is leftmost-longest:
//!   with alternatives of different lengths a `$n` may capture less than it would in Postfix;
//! - `regexp:` flag `x` toggled off (POSIX basic syntax) is not supported; the rule is skipped;
//! - `pcre:`: `$` matches only at the very end (PCRE also before a final newline, unless flag
//!   `E`), and flag `X` (PCRE_EXTRA, gone in PCRE2) is ignored with a warning, as Postfix built
//!   with PCRE2 does.
//!
//! Lookup keys are matched as they are (no case folding); patterns are case-insensitive unless
//! flag `i` is given, as in Postfix.

use regex::{Regex, RegexBuilder};

/// Which table type: the flag letters, their defaults and the warning prefix differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `regexp:` (POSIX extended syntax in Postfix).
    Posix,
    /// `pcre:`.
    Pcre,
}

impl Dialect {
    fn map_word(self) -> &'static str {
        match self {
            Dialect::Posix => "regexp",
            Dialect::Pcre => "pcre",
        }
    }
}

/// A compiled pattern and whether a match counts (`!/re/` inverts it).
#[derive(Debug, Clone)]
struct Pattern {
    re: Regex,
    negated: bool,
}

impl Pattern {
    fn hit(&self, key: &str) -> bool {
        self.re.is_match(key) != self.negated
    }
}

/// A piece of a result text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Group(usize),
}

/// An entry: one pattern (regexp: also `/re1/!/re2/`) and its result with `$n` groups.
#[derive(Debug, Clone)]
struct Entry {
    first: Pattern,
    second: Option<Pattern>,
    result: Vec<Piece>,
    max_group: usize,
}

type Rule = super::rules::Rule<Pattern, Entry>;

/// A compiled `regexp:` or `pcre:` table.
#[derive(Debug, Clone)]
pub struct RegexpTable {
    rules: super::rules::Rules<Pattern, Entry>,
}

/// Raw pattern text, flags and negation, before compiling.
struct RawPattern<'a> {
    text: &'a str,
    flags: &'a str,
    negated: bool,
}

/// Take `[!...]<delim>pattern<delim>flags` from the start of `s`; the rest follows.
fn take_pattern(s: &str, stop_at_bang: bool) -> Result<(RawPattern<'_>, &str), String> {
    let (s, negated) = super::cidr::take_negation(s);
    let mut chars = s.char_indices();
    let Some((_, delim)) = chars.next() else { return Err("no regexp".into()) };
    let body = &s[delim.len_utf8()..];
    let mut end = None;
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == delim {
            end = Some(i);
            break;
        }
    }
    let end = end.ok_or_else(|| format!("no closing regexp delimiter \"{delim}\""))?;
    let text = &body[..end];
    let after = &body[end + delim.len_utf8()..];
    let flags_end = after.find(|c: char| c.is_whitespace() || (stop_at_bang && c == '!')).unwrap_or(after.len());
    Ok((RawPattern { text, flags: &after[..flags_end], negated }, &after[flags_end..]))
}

/// Compile a pattern with the dialect's flags. `Err` is the warning text.
fn compile(p: &RawPattern<'_>, dialect: Dialect, warnings: &mut Vec<String>, at: &str) -> Result<Pattern, String> {
    let (mut icase, mut multi, mut dotall, mut extended, mut anchored, mut ungreedy) =
        (true, false, dialect == Dialect::Pcre, dialect == Dialect::Posix, false, false);
    for f in p.flags.chars() {
        match (dialect, f) {
            (_, 'i') => icase = !icase,
            (_, 'm') => multi = !multi,
            (Dialect::Posix, 'x') | (Dialect::Pcre, 'x') => extended = !extended,
            (Dialect::Pcre, 's') => dotall = !dotall,
            (Dialect::Pcre, 'A') => anchored = !anchored,
            (Dialect::Pcre, 'E') => {} // the regex crate's `$` is end-only already
            (Dialect::Pcre, 'U') => ungreedy = !ungreedy,
            (Dialect::Pcre, 'X') => warnings.push(format!("{at}: ignoring obsolete regexp option \"X\"")),
            (_, other) => return Err(format!("unknown regexp option \"{other}\"")),
        }
    }
    let mut builder;
    match dialect {
        Dialect::Posix => {
            if !extended {
                return Err("basic regular expressions (flag \"x\") are not supported".into());
            }
            // POSIX without REG_NEWLINE: `.` matches a newline, `^`/`$` only at the ends; the
            // `m` flag (REG_NEWLINE) turns both around.
            builder = RegexBuilder::new(p.text);
            builder.multi_line(multi).dot_matches_new_line(!multi);
        }
        Dialect::Pcre => {
            let text = if anchored { format!("\\A(?:{})", p.text) } else { p.text.to_string() };
            builder = RegexBuilder::new(&text);
            builder.multi_line(multi).dot_matches_new_line(dotall).ignore_whitespace(extended).swap_greed(ungreedy);
        }
    }
    let re = builder.case_insensitive(icase).build().map_err(|e| regex_error(&e))?;
    Ok(Pattern { re, negated: p.negated })
}

/// The regex crate's error, on one line.
fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("bad regular expression");
    last.trim().trim_start_matches("error: ").to_string()
}

/// Parse a result text: `$n`, `${n}`, `$(n)`, `$$` (Postfix `mac_parse` as regexp tables use it).
fn parse_result(text: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        lit.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, next) = if let Some(r) = after.strip_prefix('$') {
            lit.push('$');
            rest = r;
            continue;
        } else if let Some(close) = after.strip_prefix('{').map(|_| '}').or_else(|| after.strip_prefix('(').map(|_| ')')) {
            let end = after.find(close).ok_or_else(|| format!("unbalanced \"{}\" in \"{text}\"", &after[..1]))?;
            (&after[1..end], &after[end + 1..])
        } else {
            let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            if end == 0 {
                lit.push('$');
                rest = after;
                continue;
            }
            (&after[..end], &after[end..])
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("non-numeric replacement index \"{name}\""));
        }
        let n: usize = name.parse().map_err(|_| format!("out-of-range replacement index \"{name}\""))?;
        if n < 1 {
            return Err(format!("out-of-range replacement index \"{name}\""));
        }
        if !lit.is_empty() {
            out.push(Piece::Text(std::mem::take(&mut lit)));
        }
        out.push(Piece::Group(n));
        rest = next;
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        out.push(Piece::Text(lit));
    }
    Ok(out)
}

impl RegexpTable {
    /// Compile the rules of `text`; warnings (`regexp map NAME, line N: ...`) go to `warnings`.
    pub fn parse(text: &str, name: &str, dialect: Dialect, warnings: &mut Vec<String>) -> RegexpTable {
        let label = format!("{} map {name}", dialect.map_word());
        let rules = super::rules::Rules::compile(text, &label, warnings, |text, depth, at, warnings| {
            parse_rule(text, dialect, depth, warnings, at).unwrap_or_else(|why| {
                warnings.push(format!("{at}: {why}"));
                None
            })
        });
        RegexpTable { rules }
    }

    /// The result of the first rule that matches `key`, with `$n` substituted.
    pub fn lookup(&self, key: &str) -> Option<String> {
        self.rules.first(
            |cond| cond.hit(key),
            |e| (e.first.hit(key) && e.second.as_ref().is_none_or(|s| s.hit(key))).then(|| expand(&e.first, key, &e.result, e.max_group)),
        )
    }
}

/// One rule; `Ok(None)` for a line that is ignored after its own warning.
fn parse_rule(text: &str, dialect: Dialect, nesting: usize, warnings: &mut Vec<String>, at: &str) -> Result<Option<Rule>, String> {
    let skip = |why: String| format!("{why}: skipping this rule");
    if !text.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        let (raw, rest) = take_pattern(text, dialect == Dialect::Posix).map_err(skip)?;
        let (second_raw, rest) = if dialect == Dialect::Posix && rest.starts_with('!') {
            let (p, r) = take_pattern(rest, true).map_err(skip)?;
            (Some(p), r)
        } else {
            (None, rest)
        };
        let result_text = rest.trim();
        if result_text.is_empty() {
            warnings.push(format!("{at}: no replacement text: using empty string"));
        }
        let result = parse_result(result_text).map_err(|why| {
            warnings.push(format!("{at}: {why}"));
            "bad replacement syntax: skipping this rule".to_string()
        })?;
        let max_group = result.iter().filter_map(|p| if let Piece::Group(n) = p { Some(*n) } else { None }).max().unwrap_or(0);
        if max_group > 0 && raw.negated {
            return Err(skip("$number found in negative match replacement text".into()));
        }
        let first = compile(&raw, dialect, warnings, at).map_err(skip)?;
        if max_group > first.re.captures_len() - 1 {
            return Err(skip(format!("out of range replacement index \"{max_group}\"")));
        }
        let second = second_raw.map(|p| compile(&p, dialect, warnings, at)).transpose().map_err(skip)?;
        return Ok(Some(Rule::Entry(Entry { first, second, result, max_group })));
    }
    if let Some(rest) = super::cidr::keyword(text, "if") {
        let (raw, after) = take_pattern(rest, false).map_err(skip)?;
        if !after.trim().is_empty() {
            warnings.push(format!("{at}: ignoring extra text after IF statement: \"{}\"", after.trim()));
            warnings.push(format!("{at}: do not prepend whitespace to statements between IF and ENDIF"));
        }
        let cond = compile(&raw, dialect, warnings, at).map_err(skip)?;
        return Ok(Some(Rule::If { cond, end: None, line: 0 }));
    }
    if let Some(rest) = super::cidr::keyword(text, "endif") {
        if nesting == 0 {
            return Err("ignoring ENDIF without matching IF".into());
        }
        if !rest.trim().is_empty() {
            warnings.push(format!("{at}: ignoring extra text after ENDIF"));
        }
        return Ok(Some(Rule::Endif));
    }
    Err("ignoring unrecognized request".into())
}

fn expand(p: &Pattern, key: &str, result: &[Piece], max_group: usize) -> String {
    let caps = if max_group > 0 { p.re.captures(key) } else { None };
    let mut out = String::new();
    for piece in result {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Group(n) => {
                if let Some(m) = caps.as_ref().and_then(|c| c.get(*n)) {
                    out.push_str(m.as_str());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str, d: Dialect) -> (RegexpTable, Vec<String>) {
        let mut w = Vec::new();
        let t = RegexpTable::parse(text, "r", d, &mut w);
        (t, w)
    }

    #[test]
    fn regexp_rules_blocks_and_substitution() {
        let text = "/[%!@].*[%!@]/ 550 Sender-specified routing rejected\n/^postmaster@/ OK\n\
                    if !/^owner-/\n/^(.*)-outgoing@(.*)$/ 550 Use ${1}@$(2) instead, $$5\nendif\n\
                    /^CaSe@/i case-sensitive\n/^a@(x|y)\\.example$/!/^a@y/ only-x $1\n";
        let (t, w) = table(text, Dialect::Posix);
        assert!(w.is_empty(), "{w:?}");
        let cases = [
            ("a@b@c", Some("550 Sender-specified routing rejected")),
            ("POSTMASTER@example.com", Some("OK")),
            ("list-outgoing@example.com", Some("550 Use list@example.com instead, $5")),
            ("owner-list-outgoing@example.com", None),
            ("CaSe@x", Some("case-sensitive")),
            ("case@x", None),
            ("a@x.example", Some("only-x x")),
            ("a@y.example", None),
        ];
        for (key, want) in cases {
            assert_eq!(t.lookup(key).as_deref(), want, "{key}");
        }
    }

    #[test]
    fn pcre_flags() {
        let (t, w) = table("/^subject: money.*fast$/ REJECT\n/a b/x spaced\n/x+?/U greedy-flipped\n/^z/X z\n", Dialect::Pcre);
        assert_eq!(w, vec!["pcre map r, line 4: ignoring obsolete regexp option \"X\"".to_string()]);
        assert_eq!(t.lookup("Subject: money\nvery fast").as_deref(), Some("REJECT"));
        assert_eq!(t.lookup("ab").as_deref(), Some("spaced"));
    }

    #[test]
    fn bad_rules_warn_with_postfix_texts() {
        let text = "/unclosed OK\n/a/q x\n!/(a)/ $1\n/(a)/ $2\n/a/ $x\nendif\nwhat\n/(?=a)/ x\n/a/\nif /a/\n";
        let (t, w) = table(text, Dialect::Posix);
        assert_eq!(w[0], "regexp map r, line 1: no closing regexp delimiter \"/\": skipping this rule");
        assert_eq!(w[1], "regexp map r, line 2: unknown regexp option \"q\": skipping this rule");
        assert_eq!(w[2], "regexp map r, line 3: $number found in negative match replacement text: skipping this rule");
        assert_eq!(w[3], "regexp map r, line 4: out of range replacement index \"2\": skipping this rule");
        assert_eq!(w[4], "regexp map r, line 5: non-numeric replacement index \"x\"");
        assert_eq!(w[5], "regexp map r, line 5: bad replacement syntax: skipping this rule");
        assert_eq!(w[6], "regexp map r, line 6: ignoring ENDIF without matching IF");
        assert_eq!(w[7], "regexp map r, line 7: ignoring unrecognized request");
        assert!(w[8].starts_with("regexp map r, line 8: ") && w[8].ends_with(": skipping this rule"), "{}", w[8]);
        assert_eq!(w[9], "regexp map r, line 9: no replacement text: using empty string");
        assert_eq!(w[10], "regexp map r, line 10: IF has no matching ENDIF");
        assert_eq!(t.lookup("a").as_deref(), Some(""));
    }
}
