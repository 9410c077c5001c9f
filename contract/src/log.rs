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

#[cfg(test)]
mod tests {
    use super::*;

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
