//! Environment files (`environment_files`), in systemd's `EnvironmentFile=`
//! syntax, so that a node's `/etc/environment` and the files of CoreOS
//! units read the same:
//!
//! - `KEY=VALUE` lines; whitespace around the key and before the value is
//!   dropped, and after an unquoted value too;
//! - a line whose first non-blank character is `#` or `;` is a comment (a
//!   `\` at its end continues the comment); blank lines and lines without
//!   `=` are skipped;
//! - `'…'` is literal; in `"…"` a `\` escapes `"`, `\`, `` ` ``, `$` and a
//!   newline (continuation), and stays before anything else; outside
//!   quotes a `\` takes the next character literally, a `\` at the end of a
//!   line continues the value on the next. Quoted and unquoted parts next
//!   to each other make one value (`"a"'b'c` is `abc`);
//! - a name that is not a variable name ([`valid_env_name`]) is reported
//!   and skipped; a later assignment of a name replaces an earlier one.
//!
//! `$` is not expanded in the file (as systemd).

use super::valid_env_name;

/// The variables of an environment file and the lines that were skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvFile {
    /// Assignments in file order (a name may repeat; the last counts).
    pub vars: Vec<(String, String)>,
    /// Skipped assignments: 1-based line number and why.
    pub skipped: Vec<(usize, String)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    PreKey,
    Key,
    PreValue,
    Value,
    ValueEscape,
    Single,
    Double,
    DoubleEscape,
    Comment,
    CommentEscape,
}

/// Parses an environment file's text (systemd's `parse_env_file`).
pub fn parse(text: &str) -> EnvFile {
    let mut out = EnvFile::default();
    let mut state = State::PreKey;
    let mut key = String::new();
    let mut value = String::new();
    // Length of `key`/`value` without trailing unquoted whitespace.
    let mut key_len = 0;
    let mut value_len = 0;
    let mut line = 1;
    let mut key_line = 1;
    let push = |key: &str, value: &str, at: usize, out: &mut EnvFile| {
        if valid_env_name(key) {
            out.vars.push((key.to_string(), value.to_string()));
        } else {
            out.skipped.push((
                at,
                format!(
                    "{key:?} is not a variable name (letters, digits and '_', not starting with a digit)"
                ),
            ));
        }
    };
    for c in text.chars() {
        let newline = c == '\n';
        let blank = c == ' ' || c == '\t' || c == '\r';
        match state {
            State::PreKey => {
                if c == '#' || c == ';' {
                    state = State::Comment;
                } else if !blank && !newline {
                    state = State::Key;
                    key.clear();
                    key.push(c);
                    key_len = key.len();
                    key_line = line;
                }
            }
            State::Key => {
                if newline {
                    // A line without `=`: skipped.
                    state = State::PreKey;
                } else if c == '=' {
                    key.truncate(key_len);
                    state = State::PreValue;
                    value.clear();
                    value_len = 0;
                } else {
                    key.push(c);
                    if !blank {
                        key_len = key.len();
                    }
                }
            }
            State::PreValue => {
                if newline {
                    push(&key, &value, key_line, &mut out);
                    state = State::PreKey;
                } else if c == '\'' {
                    state = State::Single;
                } else if c == '"' {
                    state = State::Double;
                } else if c == '\\' {
                    state = State::ValueEscape;
                } else if !blank {
                    value.push(c);
                    value_len = value.len();
                    state = State::Value;
                }
            }
            State::Value => {
                if newline {
                    value.truncate(value_len);
                    push(&key, &value, key_line, &mut out);
                    state = State::PreKey;
                } else if c == '\\' {
                    state = State::ValueEscape;
                } else {
                    value.push(c);
                    if !blank {
                        value_len = value.len();
                    }
                }
            }
            State::ValueEscape => {
                state = State::Value;
                if !newline {
                    value.push(c);
                    value_len = value.len();
                }
            }
            State::Single => {
                if c == '\'' {
                    state = State::PreValue;
                } else {
                    value.push(c);
                }
                value_len = value.len();
            }
            State::Double => {
                if c == '"' {
                    state = State::PreValue;
                } else if c == '\\' {
                    state = State::DoubleEscape;
                } else {
                    value.push(c);
                }
                value_len = value.len();
            }
            State::DoubleEscape => {
                state = State::Double;
                if matches!(c, '"' | '\\' | '`' | '$') {
                    value.push(c);
                } else if !newline {
                    value.push('\\');
                    value.push(c);
                }
                value_len = value.len();
            }
            State::Comment => {
                if c == '\\' {
                    state = State::CommentEscape;
                } else if newline {
                    state = State::PreKey;
                }
            }
            State::CommentEscape => state = State::Comment,
        }
        if newline {
            line += 1;
        }
    }
    match state {
        State::PreValue
        | State::Value
        | State::ValueEscape
        | State::Single
        | State::Double
        | State::DoubleEscape => {
            value.truncate(value_len);
            push(&key, &value, key_line, &mut out);
        }
        State::PreKey | State::Key | State::Comment | State::CommentEscape => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(text: &str) -> Vec<(String, String)> {
        let f = parse(text);
        assert!(f.skipped.is_empty(), "{text:?}: {:?}", f.skipped);
        f.vars
    }

    fn one(text: &str) -> String {
        let v = vars(text);
        assert_eq!(v.len(), 1, "{text:?}: {v:?}");
        v[0].1.clone()
    }

    #[test]
    fn coreos_environment() {
        let text = "COREOS_PUBLIC_IPV4=203.0.113.7\nCOREOS_PRIVATE_IPV4=10.0.0.5\n";
        assert_eq!(
            vars(text),
            [
                ("COREOS_PUBLIC_IPV4".into(), "203.0.113.7".into()),
                ("COREOS_PRIVATE_IPV4".into(), "10.0.0.5".into())
            ]
        );
    }

    #[test]
    fn values() {
        for (text, value) in [
            ("A=b", "b"),
            ("A=", ""),
            ("A=\n", ""),
            ("  A  =  b c  \n", "b c"),
            ("A=b\t\r\n", "b"),
            ("A='x  y'", "x  y"),
            ("A='a\\b$c\"d'", "a\\b$c\"d"),
            ("A=\"x  y\"", "x  y"),
            ("A=\"a\\\"b\\\\c\\$d\\`e\"", "a\"b\\c$d`e"),
            ("A=\"a\\nb\"", "a\\nb"),
            ("A=\"one\\\ntwo\"", "onetwo"),
            ("A=\"multi\nline\"", "multi\nline"),
            ("A='multi\nline'", "multi\nline"),
            ("A=one\\\ntwo", "onetwo"),
            ("A=one \\\ntwo", "one two"),
            ("A=one \\\n", "one"),
            ("A=a\\ b", "a b"),
            ("A=a\\\\b", "a\\b"),
            ("A=a\\", "a"),
            ("A=\\ lead", " lead"),
            ("A=a\\  ", "a "),
            ("A=\"a\"'b'c", "abc"),
            ("A=\"a\" b", "ab"),
            ("A=  \"  x\"  ", "  x"),
            ("A=b # not a comment", "b # not a comment"),
            ("A=b=c", "b=c"),
            ("A=${B}", "${B}"),
            ("A=\"unterminated", "unterminated"),
            ("A='unterminated", "unterminated"),
            ("A=\"x\\", "x"),
            ("A=ünïcode", "ünïcode"),
        ] {
            assert_eq!(one(text), value, "{text:?}");
        }
    }

    #[test]
    fn comments_blanks_and_stray_lines() {
        let text = "# comment\n; also\n   # indented\n\n  \nnot an assignment\nA=1\n# continued \\\nB=2\nC=3\n";
        assert_eq!(
            vars(text),
            [("A".into(), "1".into()), ("C".into(), "3".into())]
        );
        assert_eq!(vars(""), []);
        assert_eq!(vars("#only"), []);
        assert_eq!(vars("KEY"), []);
    }

    #[test]
    fn repeats_are_kept_in_order() {
        assert_eq!(
            vars("A=1\nA=2\n"),
            [("A".into(), "1".into()), ("A".into(), "2".into())]
        );
    }

    #[test]
    fn bad_names_are_skipped_with_their_line() {
        let f = parse("GOOD=1\nBAD-NAME=2\n\n1X=3\nexport Y=4\n=5\n_ok=6\n");
        assert_eq!(
            f.vars,
            [("GOOD".into(), "1".into()), ("_ok".into(), "6".into())]
        );
        let lines: Vec<usize> = f.skipped.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, [2, 4, 5]);
        assert!(f.skipped[0].1.contains("\"BAD-NAME\""), "{:?}", f.skipped);
        // "=5" has no `=` after a key: skipped without a word, as systemd.
    }

    #[test]
    fn line_numbers_count_continuations() {
        let f = parse("A=\"x\ny\"\nB-=1\n");
        assert_eq!(f.skipped.first().map(|s| s.0), Some(3));
    }
}
