//! The rule list of Postfix's pattern tables (`cidr:`, `regexp:`, `pcre:`): rules tried in file
//! order, and `if` ... `endif` blocks, which nest and are skipped when their condition does not
//! hold (`dict_cidr.c`, `dict_regexp.c`). Each table type says what its conditions and entries
//! are; the blocks and the order are the same for all.

use super::source::logical_lines;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule<C, E> {
    /// An entry: a pattern and its result.
    Entry(E),
    /// `end` is the index of the matching `endif` (none: the block runs to the end).
    If {
        cond: C,
        end: Option<usize>,
        line: usize,
    },
    Endif,
}

/// A compiled rule list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules<C, E> {
    rules: Vec<Rule<C, E>>,
}

impl<C, E> Default for Rules<C, E> {
    fn default() -> Rules<C, E> {
        Rules { rules: Vec::new() }
    }
}

impl<C, E> Rules<C, E> {
    /// Compile the logical lines of `text`. `parse(line_text, depth, at, warnings)` gives each
    /// line's rule, or `None` for a line it skipped after pushing its own warning (`at` is
    /// `LABEL, line N`, `label` being `cidr map FILE` and the like); `depth` is how many blocks
    /// are open, so that it can refuse an `endif` without `if`.
    pub fn compile(
        text: &str,
        label: &str,
        warnings: &mut Vec<String>,
        mut parse: impl FnMut(&str, usize, &str, &mut Vec<String>) -> Option<Rule<C, E>>,
    ) -> Rules<C, E> {
        let mut rules = Vec::new();
        let mut open: Vec<usize> = Vec::new();
        for (line, text) in logical_lines(text) {
            let at = format!("{label}, line {line}");
            let Some(mut rule) = parse(&text, open.len(), &at, warnings) else { continue };
            match &mut rule {
                Rule::If { line: l, .. } => {
                    *l = line;
                    open.push(rules.len());
                }
                Rule::Endif => {
                    let here = rules.len();
                    if let Some(Rule::If { end, .. }) = open.pop().and_then(|i| rules.get_mut(i)) {
                        *end = Some(here);
                    }
                }
                Rule::Entry(_) => {}
            }
            rules.push(rule);
        }
        for i in open.into_iter().rev() {
            if let Some(Rule::If { line, .. }) = rules.get(i) {
                warnings.push(format!("{label}, line {line}: IF has no matching ENDIF"));
            }
        }
        Rules { rules }
    }

    /// What `hit` makes of the first entry it accepts, in the blocks whose condition `holds`.
    pub fn first<'a, T>(&'a self, holds: impl Fn(&C) -> bool, mut hit: impl FnMut(&'a E) -> Option<T>) -> Option<T> {
        let mut i = 0;
        while let Some(rule) = self.rules.get(i) {
            match rule {
                Rule::Entry(e) => {
                    if let Some(t) = hit(e) {
                        return Some(t);
                    }
                }
                Rule::If { cond, end, .. } if !holds(cond) => match end {
                    Some(e) => i = *e,
                    None => return None,
                },
                _ => {}
            }
            i += 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Conditions and entries as plain numbers: `if N` holds for keys at least N.
    fn compile(text: &str) -> (Rules<u32, (u32, String)>, Vec<String>) {
        let mut warnings = Vec::new();
        let rules = Rules::compile(text, "test map t", &mut warnings, |line, depth, at, w| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["if", n] => Some(Rule::If { cond: n.parse().ok()?, end: None, line: 0 }),
                ["endif"] if depth > 0 => Some(Rule::Endif),
                [n, v] => Some(Rule::Entry((n.parse().ok()?, v.to_string()))),
                _ => {
                    w.push(format!("{at}: skipped"));
                    None
                }
            }
        });
        (rules, warnings)
    }

    #[test]
    fn blocks_nest_and_are_skipped_when_their_condition_fails() {
        let (rules, warnings) = compile("if 5\nif 8\n8 eight\nendif\n5 five\nendif\n1 one\nendif\nif 9\n9 nine\n");
        assert_eq!(warnings, ["test map t, line 8: skipped", "test map t, line 9: IF has no matching ENDIF"]);
        let lookup = |key: u32| rules.first(|c| key >= *c, |(n, v)| (key == *n).then(|| v.clone()));
        assert_eq!(lookup(8).as_deref(), Some("eight"));
        assert_eq!(lookup(5).as_deref(), Some("five"));
        assert_eq!(lookup(1).as_deref(), Some("one"));
        // An unclosed block that fails ends the search.
        assert_eq!(lookup(7), None);
        assert_eq!(lookup(9).as_deref(), Some("nine"));
    }
}
