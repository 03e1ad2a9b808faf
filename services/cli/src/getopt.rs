//! A small getopt: clustered single-letter flags (`-Me`, `-nf`), options that take a value in
//! the same word or the next (`-c dir`, `-cdir`), and operands. Options and operands may be
//! mixed, as with GNU getopt; `--` ends the options. clap cannot do `-qRsite` or `-Me`.

/// One parsed command-line item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    Flag(char),
    Opt(char, String),
    Operand(String),
}

/// Parse `args`; `with_value` lists the letters that take a value.
pub fn getopt(args: &[String], flags: &str, with_value: &str) -> Result<Vec<Arg>, String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    let mut options_done = false;
    while let Some(a) = it.next() {
        if options_done || !a.starts_with('-') || a == "-" {
            out.push(Arg::Operand(a.clone()));
            continue;
        }
        if a == "--" {
            options_done = true;
            continue;
        }
        let body: Vec<char> = a[1..].chars().collect();
        let mut i = 0;
        while i < body.len() {
            let c = body[i];
            if with_value.contains(c) {
                let rest: String = body[i + 1..].iter().collect();
                let value = if !rest.is_empty() {
                    rest
                } else {
                    it.next().cloned().ok_or_else(|| format!("option requires an argument -- {c}"))?
                };
                out.push(Arg::Opt(c, value));
                break;
            } else if flags.contains(c) {
                out.push(Arg::Flag(c));
            } else {
                return Err(format!("invalid option -- {c}"));
            }
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(a: &[&str]) -> Vec<String> {
        a.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn clusters_values_and_operands() {
        let got = getopt(&s(&["-Me", "x/unix=a b", "-cdir", "-o", "a=b", "--", "-n"]), "MeXn", "co").unwrap();
        assert_eq!(
            got,
            vec![
                Arg::Flag('M'),
                Arg::Flag('e'),
                Arg::Operand("x/unix=a b".into()),
                Arg::Opt('c', "dir".into()),
                Arg::Opt('o', "a=b".into()),
                Arg::Operand("-n".into())
            ]
        );
        assert_eq!(getopt(&s(&["-z"]), "a", "").unwrap_err(), "invalid option -- z");
        assert_eq!(getopt(&s(&["-c"]), "", "c").unwrap_err(), "option requires an argument -- c");
    }
}
