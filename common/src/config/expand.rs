//! Lazy recursive `$name` expansion (Postfix `mac_expand`).
//!
//! Forms: `$name`, `${name}`, `$(name)`, `${name?value}`, `${name?{v1}:{v2}}`, `${name:value}`,
//! `${{a} OP {b} ? {v1} : {v2}}` with OP one of `== != < <= >= >` or their `level` forms (compare
//! dotted compatibility levels), and `$$` for a literal dollar sign. An undefined name is empty.

/// How deep expansions may nest before we call it a loop (`$a = $b`, `$b = $a`).
const MAX_DEPTH: usize = 100;

/// Why a value cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// `${` or `$(` without its closing brace.
    #[error("unbalanced brace in \"{0}\"")]
    Unbalanced(String),
    /// Expansion loops or nests more than `MAX_DEPTH` levels.
    #[error("unreasonable macro call nesting: \"{0}\"")]
    Nesting(String),
    /// A `${{a} OP {b} ? ...}` expression that does not parse.
    #[error("bad relational expression: \"{0}\"")]
    Relational(String),
}

/// Expand `text`, looking names up with `lookup` (raw, unexpanded values).
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, ExpandError> {
    expand_at(text, lookup, 0)
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Index of the byte closing the bracket that opens at `open` (which holds `{` or `(`).
fn matching_close(s: &str, open: usize) -> Option<usize> {
    let bytes = s.as_bytes();
    let (o, c) = if bytes[open] == b'{' { (b'{', b'}') } else { (b'(', b')') };
    let mut depth = 0usize;
    for (i, &b) in bytes.iter().enumerate().skip(open) {
        if b == o {
            depth += 1;
        } else if b == c {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

fn lookup_expanded(name: &str, lookup: &dyn Fn(&str) -> Option<String>, depth: usize) -> Result<String, ExpandError> {
    match lookup(name) {
        Some(raw) => expand_at(&raw, lookup, depth + 1).map_err(|e| match e {
            ExpandError::Nesting(_) => ExpandError::Nesting(name.to_string()),
            other => other,
        }),
        None => Ok(String::new()),
    }
}

fn expand_at(text: &str, lookup: &dyn Fn(&str) -> Option<String>, depth: usize) -> Result<String, ExpandError> {
    if depth > MAX_DEPTH {
        return Err(ExpandError::Nesting(text.to_string()));
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            let next = text[i..].find('$').map_or(bytes.len(), |n| i + n);
            out.push_str(&text[i..next]);
            i = next;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'$') => {
                out.push('$');
                i += 2;
            }
            Some(b'{') | Some(b'(') => {
                let close = matching_close(text, i + 1).ok_or_else(|| ExpandError::Unbalanced(text.to_string()))?;
                out.push_str(&expand_braced(&text[i + 2..close], lookup, depth)?);
                i = close + 1;
            }
            Some(&b) if is_name_byte(b) => {
                let end = text[i + 1..].find(|c: char| !c.is_ascii_alphanumeric() && c != '_').map_or(bytes.len(), |n| i + 1 + n);
                out.push_str(&lookup_expanded(&text[i + 1..end], lookup, depth)?);
                i = end;
            }
            _ => {
                // A lone `$` is kept literally, as Postfix does.
                out.push('$');
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Take a `{...}` group at the start of `s` (after whitespace): its content and the rest.
fn take_group(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start();
    if !s.starts_with('{') {
        return None;
    }
    let close = matching_close(s, 0)?;
    Some((&s[1..close], &s[close + 1..]))
}

/// `{v1}:{v2}` / `{v1}` / `text` after `?`: the "true" and optional "false" branches.
fn split_branches(rest: &str) -> (&str, Option<&str>) {
    if let Some((v1, after)) = take_group(rest) {
        let after = after.trim_start();
        if let Some(v2) = after.strip_prefix(':') {
            let v2 = take_group(v2).map_or(v2.trim(), |(g, _)| g);
            return (v1.trim(), Some(v2));
        }
        return (v1.trim(), None);
    }
    (rest, None)
}

fn expand_braced(inner: &str, lookup: &dyn Fn(&str) -> Option<String>, depth: usize) -> Result<String, ExpandError> {
    let trimmed = inner.trim();
    if trimmed.starts_with('{') {
        return expand_relational(trimmed, lookup, depth);
    }
    let name_end = trimmed.find(|c: char| !c.is_ascii_alphanumeric() && c != '_').unwrap_or(trimmed.len());
    let name = &trimmed[..name_end];
    let rest = &trimmed[name_end..];
    if name.is_empty() {
        return Err(ExpandError::Unbalanced(inner.to_string()));
    }
    let value = lookup_expanded(name, lookup, depth)?;
    if rest.is_empty() {
        return Ok(value);
    }
    // The operator is one character, not one byte: `${name€...}` is an error, not a panic
    // (found by fuzzing main.cf).
    let op_len = rest.chars().next().map_or(0, char::len_utf8);
    let (op, arg) = rest.split_at(op_len);
    match op {
        "?" => {
            let (v1, v2) = split_branches(arg);
            let chosen = if !value.is_empty() { Some(v1) } else { v2 };
            chosen.map_or(Ok(String::new()), |v| expand_at(v, lookup, depth + 1))
        }
        ":" => {
            let (v, _) = split_branches(arg);
            if value.is_empty() { expand_at(v, lookup, depth + 1) } else { Ok(String::new()) }
        }
        _ => Err(ExpandError::Unbalanced(inner.to_string())),
    }
}

/// Compare dotted compatibility levels numerically, part by part (`3.6` < `3.10`).
fn compare_levels(a: &str, b: &str) -> std::cmp::Ordering {
    let parts = |s: &str| s.split('.').map(|p| p.trim().parse::<u64>().unwrap_or(0)).collect::<Vec<_>>();
    let (mut pa, mut pb) = (parts(a), parts(b));
    let n = pa.len().max(pb.len());
    pa.resize(n, 0);
    pb.resize(n, 0);
    pa.cmp(&pb)
}

fn expand_relational(s: &str, lookup: &dyn Fn(&str) -> Option<String>, depth: usize) -> Result<String, ExpandError> {
    let bad = || ExpandError::Relational(s.to_string());
    let (left, rest) = take_group(s).ok_or_else(bad)?;
    let rest = rest.trim_start();
    let op_end = rest.find(|c: char| c == '{' || c.is_whitespace()).ok_or_else(bad)?;
    let op = &rest[..op_end];
    let (right, rest) = take_group(&rest[op_end..]).ok_or_else(bad)?;
    let rest = rest.trim_start().strip_prefix('?').ok_or_else(bad)?;
    let (v1, v2) = split_branches(rest);
    let l = expand_at(left.trim(), lookup, depth + 1)?;
    let r = expand_at(right.trim(), lookup, depth + 1)?;
    use std::cmp::Ordering::*;
    let numeric = !l.is_empty() && !r.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) && r.bytes().all(|b| b.is_ascii_digit());
    let (base_op, ord) = match op.strip_suffix("level") {
        Some(base) => (base, compare_levels(&l, &r)),
        None if numeric => (op, l.parse::<u128>().unwrap_or(0).cmp(&r.parse::<u128>().unwrap_or(0))),
        None => (op, l.cmp(&r)),
    };
    let truth = match base_op {
        "==" => ord == Equal,
        "!=" => ord != Equal,
        "<" => ord == Less,
        "<=" => ord != Greater,
        ">" => ord == Greater,
        ">=" => ord != Less,
        _ => return Err(bad()),
    };
    let chosen = if truth { Some(v1) } else { v2 };
    chosen.map_or(Ok(String::new()), |v| expand_at(v, lookup, depth + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn run(vars: &[(&str, &str)], text: &str) -> Result<String, ExpandError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        expand(text, &|n| map.get(n).cloned())
    }

    #[test]
    fn table() {
        let vars = [
            ("a", "A"),
            ("empty", ""),
            ("b", "$a-$a"),
            ("relay_domains", "$mydestination"),
            ("mydestination", "localhost"),
            ("level", "3.6"),
        ];
        let cases: &[(&str, &str)] = &[
            ("plain", "plain"),
            ("$a", "A"),
            ("${a}x", "Ax"),
            ("$(a)", "A"),
            ("$b", "A-A"),
            ("$undefined.", "."),
            ("$$a", "$a"),
            ("${a?yes}", "yes"),
            ("${empty?yes}", ""),
            ("${a:no}", ""),
            ("${empty:no}", "no"),
            ("${a?{t}:{f}}", "t"),
            ("${empty?{t}:{f}}", "f"),
            ("${empty?{t}:f}", "f"),
            ("${a?{$b}}", "A-A"),
            ("${{$level} <level {2} ? {$mydestination} : {}}", ""),
            ("${{1} <level {2} ? {$mydestination} : {}}", "localhost"),
            ("${{10} > {9} ? {big} : {small}}", "big"),
            ("${{abc} == {abc} ? {same} : {diff}}", "same"),
            ("fast, $relay_domains", "fast, localhost"),
            ("cost $", "cost $"),
        ];
        for (input, want) in cases {
            assert_eq!(run(&vars, input).as_deref(), Ok(*want), "input {input:?}");
        }
    }

    #[test]
    fn loops_are_bounded() {
        let got = run(&[("a", "$b"), ("b", "$a")], "$a");
        assert!(matches!(got, Err(ExpandError::Nesting(_))), "{got:?}");
        let got = run(&[("a", "x$a")], "$a");
        assert!(matches!(got, Err(ExpandError::Nesting(_))), "{got:?}");
    }

    #[test]
    fn unbalanced() {
        assert!(matches!(run(&[], "${a"), Err(ExpandError::Unbalanced(_))));
        assert!(matches!(run(&[], "${{a} ?? {b}}"), Err(ExpandError::Relational(_))));
        // A non-ASCII operator character (found by fuzzing): an error, not a panic.
        assert!(matches!(run(&[("a", "A")], "${aê,O}"), Err(ExpandError::Unbalanced(_))));
        assert!(matches!(run(&[("a", "A")], "$(sdeMê,O)"), Err(ExpandError::Unbalanced(_))));
    }
}
