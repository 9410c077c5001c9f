//! `expand_env = true`: variables in `exec` and `exec_start_pre`, as
//! systemd expands them in `ExecStart=`, from the service's final
//! environment:
//!
//! - a word that is exactly `$NAME` becomes the variable's value split at
//!   whitespace: zero or more words (none when it is unset or blank);
//! - `${NAME}` anywhere in a word becomes the value as it is (empty when
//!   unset), within that one word;
//! - `$$` is a `$`; any other `$` (`$NAME` inside a word, `${` without a
//!   valid name and `}`) stays as written;
//! - the first word, the program, is never expanded.
//!
//! `NAME` is a variable name ([`valid_env_name`]).

use std::collections::BTreeMap;

use super::valid_env_name;

/// Expands a command (program, then arguments).
pub fn command(words: &[String], env: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::with_capacity(words.len());
    let mut rest = words.iter();
    if let Some(program) = rest.next() {
        out.push(program.clone());
    }
    for word in rest {
        match word.strip_prefix('$').filter(|n| valid_env_name(n)) {
            Some(name) => {
                if let Some(value) = env.get(name) {
                    out.extend(value.split_whitespace().map(String::from));
                }
            }
            None => out.push(self::word(word, env)),
        }
    }
    out
}

/// Expands `${NAME}` and `$$` inside one word.
pub fn word(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(more) = after.strip_prefix('$') {
            out.push('$');
            rest = more;
        } else if let Some((name, more)) = after
            .strip_prefix('{')
            .and_then(|b| b.split_once('}'))
            .filter(|(name, _)| valid_env_name(name))
        {
            out.push_str(env.get(name).map(String::as_str).unwrap_or(""));
            rest = more;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("IP".into(), "10.0.0.5".into()),
            ("OPTS".into(), "  -a   -b\tc ".into()),
            ("EMPTY".into(), String::new()),
            ("BLANK".into(), "   ".into()),
            ("SPACED".into(), "x y".into()),
            ("NESTED".into(), "${IP}".into()),
            ("_u1".into(), "u".into()),
        ])
    }

    fn cmd(words: &[&str]) -> Vec<String> {
        let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        command(&words, &env())
    }

    #[test]
    fn coreos_unit() {
        assert_eq!(
            cmd(&[
                "/usr/bin/docker",
                "run",
                "-p",
                "${IP}:80:80",
                "--name",
                "web",
                "nginx"
            ]),
            [
                "/usr/bin/docker",
                "run",
                "-p",
                "10.0.0.5:80:80",
                "--name",
                "web",
                "nginx"
            ]
        );
    }

    #[test]
    fn whole_words_split() {
        assert_eq!(cmd(&["/p", "$OPTS", "z"]), ["/p", "-a", "-b", "c", "z"]);
        assert_eq!(cmd(&["/p", "$UNSET", "z"]), ["/p", "z"]);
        assert_eq!(cmd(&["/p", "$EMPTY"]), ["/p"]);
        assert_eq!(cmd(&["/p", "$BLANK"]), ["/p"]);
        assert_eq!(cmd(&["/p", "$SPACED"]), ["/p", "x", "y"]);
        assert_eq!(cmd(&["/p", "$_u1"]), ["/p", "u"]);
    }

    #[test]
    fn braces_keep_one_word() {
        assert_eq!(cmd(&["/p", "${SPACED}"]), ["/p", "x y"]);
        assert_eq!(cmd(&["/p", "${EMPTY}"]), ["/p", ""]);
        assert_eq!(cmd(&["/p", "${UNSET}"]), ["/p", ""]);
        assert_eq!(cmd(&["/p", "a${IP}b${_u1}"]), ["/p", "a10.0.0.5bu"]);
        assert_eq!(cmd(&["/p", "${NESTED}"]), ["/p", "${IP}"], "once");
    }

    #[test]
    fn dollars_left_alone() {
        for (text, want) in [
            ("$$", "$"),
            ("$$IP", "$IP"),
            ("a$$b", "a$b"),
            ("$$$$", "$$"),
            ("$", "$"),
            ("a$", "a$"),
            ("x$IP", "x$IP"),
            ("$IP-x", "$IP-x"),
            ("${", "${"),
            ("${IP", "${IP"),
            ("${}", "${}"),
            ("${1A}", "${1A}"),
            ("${A B}", "${A B}"),
            ("${IP:-x}", "${IP:-x}"),
            ("$1", "$1"),
            ("price: 5$", "price: 5$"),
            ("$${IP}", "${IP}"),
            ("$$${IP}", "$10.0.0.5"),
        ] {
            assert_eq!(word(text, &env()), want, "{text:?}");
        }
        assert_eq!(cmd(&["/p", "$$"]), ["/p", "$"]);
        assert_eq!(cmd(&["/p", "$1"]), ["/p", "$1"]);
        assert_eq!(cmd(&["/p", "$IP-x"]), ["/p", "$IP-x"]);
    }

    #[test]
    fn the_program_is_never_expanded() {
        assert_eq!(
            cmd(&["/opt/${IP}/$IP", "$IP"]),
            ["/opt/${IP}/$IP", "10.0.0.5"]
        );
        assert!(cmd(&[]).is_empty());
    }
}
