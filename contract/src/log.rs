//! Log lines on standard output (the console for PID 1, the service log
//! for the daemons): `<program>: <message>`, one write per line so that
//! lines from different threads never mix. The prefixes are the markers
//! that docs/boot-chain.md lists and the end-to-end tests look for.

use std::fmt;
use std::io::Write;

/// The early init (initramfs `/init`).
pub const EARLY: &str = "tandem-init";
/// The system init (PID 1 after the switch root).
pub const SYSTEM: &str = "tandem";
/// The update daemon.
pub const UPDATER: &str = "tandem-updated";
/// The reboot agent.
pub const AGENT: &str = "tandem-agent";

/// Text with the password of a URL in it replaced by `***`
/// (`proxy http://u:***@p:3128`), for messages and logs: a proxy's
/// password in update.toml must never reach a console or a status.
pub fn redact(text: &str) -> String {
    let Some((before, rest)) = text.split_once("://") else {
        return text.to_string();
    };
    let authority_end = rest.find(['/', ' ']).unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((userinfo, _)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{before}://{user}:***@{}", &rest[userinfo.len() + 1..]),
            None => text.to_string(),
        },
        None => text.to_string(),
    }
}

/// Writes `<prefix>: <message>\n` to standard output. If that fails there
/// is nowhere to report it, so it is ignored.
pub fn line(prefix: &str, message: fmt::Arguments<'_>) {
    let _ = write_line(&mut std::io::stdout().lock(), prefix, message);
}

/// Writes `<prefix>: <message>\n` to `out` in one write, then flushes.
pub fn write_line(
    out: &mut dyn Write,
    prefix: &str,
    message: fmt::Arguments<'_>,
) -> std::io::Result<()> {
    let text = format!("{prefix}: {message}\n");
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// An error and its causes as one line, `what: why: why`, each cause
/// once: Tandem's messages often name their cause already (so that a log
/// line read alone says it all), and printing the chain as well would say
/// it again.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn each_cause_is_said_once() {
        let inner = Layer("connection refused", None);
        let middle = Layer("http://e:1: connection refused", Some(Box::new(inner)));
        let outer = Layer(
            "etcd unreachable: range k: http://e:1: connection refused",
            Some(Box::new(middle)),
        );
        assert_eq!(
            error_chain(&outer),
            "etcd unreachable: range k: http://e:1: connection refused"
        );
        let plain = Layer(
            "reading /x",
            Some(Box::new(Layer("No such file or directory", None))),
        );
        assert_eq!(error_chain(&plain), "reading /x: No such file or directory");
    }

    #[test]
    fn a_line_is_prefix_colon_message_newline() {
        let mut out = Vec::new();
        for (prefix, n) in [(EARLY, 1), (SYSTEM, 2), (UPDATER, 3), (AGENT, 4)] {
            write_line(&mut out, prefix, format_args!("step {n}")).expect("write");
        }
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "tandem-init: step 1\ntandem: step 2\ntandem-updated: step 3\ntandem-agent: step 4\n"
        );
    }
}
