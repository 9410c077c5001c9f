//! systemd's command lines (`ExecStart=` and friends) and assignment lists
//! (`Environment=`), split as systemd splits them (systemd.service(5),
//! "Command lines"): words separated by whitespace, `"…"` and `'…'` quoting,
//! C escapes (`\n`, `\t`, `\\`, `\"`, `\x41`, `\101`, `\u00e9`), a lone `;`
//! between commands, and the prefixes before the program:
//!
//! | prefix | systemd | here |
//! |---|---|---|
//! | `-` | a failure exit status is ignored | `ignore_failure` |
//! | `@` | the second word is `argv[0]` | dropped (Tandem cannot set argv[0]); reported |
//! | `+`, `!`, `!!` | run with full or ambient privileges | reported, not honoured |
//! | `:` | no `$VAR` expansion | `needs_env_expansion` stays false |
//!
//! `$VAR` and `${VAR}` are kept as written; a command that has them is
//! marked `needs_env_expansion` (Tandem's service format passes arguments
//! unchanged today).

use serde::Serialize;

use crate::error::Error;

/// A word and whether any of it was quoted or escaped (a quoted `";"` is
/// an argument, a plain `;` separates commands).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Word {
    text: String,
    plain: bool,
}

/// One command of an `Exec…=` line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Command {
    /// The program (absolute path) and its arguments.
    pub argv: Vec<String>,
    /// `-`: a failure exit status does not fail the service.
    pub ignore_failure: bool,
    /// An argument has `$VAR`, `${VAR}` or `$$`, which systemd expands.
    pub needs_env_expansion: bool,
    /// Prefixes that Tandem does not honour (`@`, `+`, `!`, `!!`), as written.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unhonoured_prefixes: Vec<String>,
}

/// Splits a value into words with systemd's quoting and C escapes.
fn words(value: &str) -> Result<Vec<Word>, Error> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut word = Word {
            text: String::new(),
            plain: true,
        };
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match (c, quote) {
                ('\\', _) => {
                    word.plain = false;
                    word.text.push(unescape(&mut chars)?);
                }
                (q @ ('"' | '\''), None) => {
                    word.plain = false;
                    quote = Some(q);
                }
                (q, Some(open)) if q == open => quote = None,
                (c, None) if c.is_whitespace() => break,
                (c, _) => word.text.push(c),
            }
        }
        if let Some(q) = quote {
            return Err(Error::Quoting(format!("{value:?} has an unclosed {q}")));
        }
        out.push(word);
    }
}

/// One C escape after the backslash.
fn unescape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<char, Error> {
    let bad = |what: &str| Error::Quoting(format!("bad escape \\{what}"));
    let c = chars.next().ok_or_else(|| bad(""))?;
    let mut digits = |n: usize, radix: u32| -> Result<char, Error> {
        let s: String = (0..n)
            .filter_map(|_| chars.next_if(|d| d.is_digit(radix)))
            .collect();
        if s.len() != n {
            return Err(bad(&format!("{c}{s}")));
        }
        u32::from_str_radix(&s, radix)
            .ok()
            .and_then(char::from_u32)
            .filter(|ch| *ch != '\0')
            .ok_or_else(|| bad(&format!("{c}{s}")))
    };
    Ok(match c {
        'a' => '\u{7}',
        'b' => '\u{8}',
        'f' => '\u{c}',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'v' => '\u{b}',
        's' => ' ',
        '\\' | '"' | '\'' | ';' | ' ' => c,
        'x' => digits(2, 16)?,
        'u' => digits(4, 16)?,
        'U' => digits(8, 16)?,
        '0'..='7' => {
            let rest: String = (0..2)
                .filter_map(|_| chars.next_if(|d| d.is_digit(8)))
                .collect();
            let s = format!("{c}{rest}");
            if s.len() != 3 {
                return Err(bad(&s));
            }
            u32::from_str_radix(&s, 8)
                .ok()
                .and_then(char::from_u32)
                .filter(|ch| *ch != '\0')
                .ok_or_else(|| bad(&s))?
        }
        other => return Err(bad(&other.to_string())),
    })
}

/// Whether a word uses `$NAME`, `${NAME}` or `$$` (systemd's expansion).
pub(crate) fn uses_env(word: &str) -> bool {
    let b = word.as_bytes();
    b.iter().enumerate().any(|(i, &c)| {
        c == b'$'
            && b.get(i + 1)
                .is_some_and(|&n| n == b'{' || n == b'$' || n == b'_' || n.is_ascii_alphabetic())
    })
}

/// Parses an `Exec…=` value into its commands (several when separated by
/// a lone `;`). An empty value gives none (it resets the list).
pub fn parse_exec(value: &str) -> Result<Vec<Command>, Error> {
    let mut commands = Vec::new();
    let mut current: Vec<Word> = Vec::new();
    for w in words(value)? {
        if w.plain && w.text == ";" {
            commands.push(command(std::mem::take(&mut current), value)?);
        } else {
            current.push(w);
        }
    }
    if !current.is_empty() {
        commands.push(command(current, value)?);
    } else if !commands.is_empty() {
        return Err(Error::Quoting(format!(
            "{value:?} ends with `;` and no command after it"
        )));
    }
    Ok(commands)
}

fn command(words: Vec<Word>, value: &str) -> Result<Command, Error> {
    let mut argv: Vec<String> = words.into_iter().map(|w| w.text).collect();
    let first = argv
        .first_mut()
        .ok_or_else(|| Error::Quoting(format!("{value:?} has an empty command")))?;
    let mut cmd = Command::default();
    let mut env = true;
    let mut argv0 = false;
    let mut rest = first.as_str();
    loop {
        if let Some(r) = rest.strip_prefix("!!") {
            cmd.unhonoured_prefixes.push("!!".into());
            rest = r;
        } else if let Some(r) = rest.strip_prefix('-') {
            cmd.ignore_failure = true;
            rest = r;
        } else if let Some(r) = rest.strip_prefix('@') {
            argv0 = true;
            cmd.unhonoured_prefixes.push("@".into());
            rest = r;
        } else if let Some(r) = rest.strip_prefix(':') {
            env = false;
            rest = r;
        } else if let Some(r) = rest.strip_prefix(['+', '!']) {
            cmd.unhonoured_prefixes.push(rest[..1].to_string());
            rest = r;
        } else {
            break;
        }
    }
    if rest.is_empty() {
        return Err(Error::Quoting(format!(
            "{value:?} has prefixes but no program after them"
        )));
    }
    *first = rest.to_string();
    if argv0 && argv.len() > 1 {
        argv.remove(1);
    }
    cmd.needs_env_expansion = env && argv.iter().any(|a| uses_env(a));
    cmd.argv = argv;
    Ok(cmd)
}

/// Parses an `Environment=` value: `NAME=value` words, quoted as a whole
/// (`"A=b c"`). An empty value gives none (it resets the environment).
pub fn parse_environment(value: &str) -> Result<Vec<(String, String)>, Error> {
    words(value)?
        .into_iter()
        .map(|w| {
            let (name, val) = w.text.split_once('=').ok_or_else(|| {
                Error::Quoting(format!("{:?} is not an assignment NAME=value", w.text))
            })?;
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
                && name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric());
            if !valid {
                return Err(Error::Quoting(format!("{name:?} is not a variable name")));
            }
            Ok((name.to_string(), val.to_string()))
        })
        .collect()
}

/// The `%` specifiers in a value (`%n`, `%i`, …; `%%` is a literal `%`).
pub fn specifiers(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some('%') | None => {}
                Some(s) => out.push(format!("%{s}")),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(value: &str) -> Vec<String> {
        let mut c = parse_exec(value).expect("parses");
        assert_eq!(c.len(), 1, "one command");
        c.remove(0).argv
    }

    #[test]
    fn plain_words() {
        assert_eq!(
            argv("/bin/echo  hello   world"),
            ["/bin/echo", "hello", "world"]
        );
    }

    #[test]
    fn quotes_group_and_keep_inner_text() {
        assert_eq!(
            argv("/bin/sh -c 'while true; do echo hello from $(hostname); sleep 60; done'"),
            [
                "/bin/sh",
                "-c",
                "while true; do echo hello from $(hostname); sleep 60; done"
            ]
        );
        assert_eq!(
            argv(r#"/bin/echo "a 'b' c" 'd "e"'"#),
            ["/bin/echo", "a 'b' c", "d \"e\""]
        );
        assert_eq!(argv(r#"/bin/echo a"b c"d"#), ["/bin/echo", "ab cd"]);
        assert_eq!(argv(r#"/bin/echo """#), ["/bin/echo", ""]);
    }

    #[test]
    fn escapes() {
        assert_eq!(
            argv(r#"/bin/printf a\tb\x41\101\u00e9\\ "q\"q""#),
            ["/bin/printf", "a\tbAAé\\", "q\"q"]
        );
        assert_eq!(argv(r"/bin/echo a\ b"), ["/bin/echo", "a b"]);
        assert!(matches!(
            parse_exec(r"/bin/echo \q"),
            Err(Error::Quoting(_))
        ));
        assert!(matches!(
            parse_exec(r"/bin/echo \x4"),
            Err(Error::Quoting(_))
        ));
        assert!(matches!(
            parse_exec("/bin/echo 'open"),
            Err(Error::Quoting(_))
        ));
    }

    #[test]
    fn prefixes() {
        let c = &parse_exec("-/usr/bin/docker rm -f x").expect("parses")[0];
        assert!(c.ignore_failure);
        assert_eq!(c.argv, ["/usr/bin/docker", "rm", "-f", "x"]);
        let c = &parse_exec("@/bin/busybox sh -c true").expect("parses")[0];
        assert_eq!(c.argv, ["/bin/busybox", "-c", "true"]);
        assert_eq!(c.unhonoured_prefixes, ["@"]);
        let c = &parse_exec("-+!!/bin/x").expect("parses")[0];
        assert!(c.ignore_failure);
        assert_eq!(c.unhonoured_prefixes, ["+", "!!"]);
        assert_eq!(c.argv, ["/bin/x"]);
        assert!(matches!(parse_exec("- /bin/x"), Err(Error::Quoting(_))));
    }

    #[test]
    fn env_expansion_marked() {
        assert!(parse_exec("/bin/echo $HOME").expect("parses")[0].needs_env_expansion);
        assert!(parse_exec("/bin/echo ${A}x").expect("parses")[0].needs_env_expansion);
        assert!(parse_exec("/bin/echo $$").expect("parses")[0].needs_env_expansion);
        assert!(
            !parse_exec("/bin/sh -c 'echo $(hostname)'").expect("parses")[0].needs_env_expansion
        );
        assert!(!parse_exec(":/bin/echo $HOME").expect("parses")[0].needs_env_expansion);
        assert!(!parse_exec("/bin/echo 5$").expect("parses")[0].needs_env_expansion);
    }

    #[test]
    fn semicolon_separates_unless_quoted() {
        let c = parse_exec("/bin/a 1 ; /bin/b 2").expect("parses");
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].argv, ["/bin/b", "2"]);
        assert_eq!(argv(r#"/bin/a ";" \;"#), ["/bin/a", ";", ";"]);
        assert!(parse_exec("").expect("parses").is_empty());
        assert!(parse_exec("/bin/a ;").is_err());
    }

    #[test]
    fn environment_assignments() {
        assert_eq!(
            parse_environment(r#"A=1 "B=two words" C= 'D=x"y'"#).expect("parses"),
            [
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), String::new()),
                ("D".into(), "x\"y".into())
            ]
        );
        assert!(parse_environment("").expect("parses").is_empty());
        assert!(parse_environment("novalue").is_err());
        assert!(parse_environment("1A=x").is_err());
    }

    #[test]
    fn specifiers_found() {
        assert_eq!(specifiers("/bin/x %n %% %i"), ["%n", "%i"]);
        assert!(specifiers("100%%").is_empty());
    }
}
