//! Durations and times as people write and read them on the release side:
//! the duration syntax is the contract's (`tandem_contract::time`), plus
//! approximate durations for summaries and HTTP dates for `tandem serve`
//! (written by `httpdate`). Durations stay the node's own parser, not
//! `humantime`: that one takes other units (`2w`, `1month`) nodes refuse.

use std::str::FromStr;

/// Seconds since the Unix epoch, now (0 if the clock is before 1970).
pub fn now() -> u64 {
    updater::clock::now_unix()
}

/// A duration in whole seconds, written as a number and a unit: `s`, `m`,
/// `h`, `d` (`90s`, `45m`, `2h`, `30d`), or `0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub u64);

impl FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s).map(Duration)
    }
}

/// Parses a duration into whole seconds, in the syntax nodes use in
/// update.toml (`90s`, `45m`, `2h`, `30d`, `1h30m`, a bare number of
/// seconds): one syntax for release tooling and nodes.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    tandem_contract::time::parse_duration(text).map(|d| d.as_secs())
}

/// Seconds in the config syntax, exactly: `2h`, `1h30m`, `0s`
/// ([`tandem_contract::time::format_duration`]).
pub fn format_duration(secs: u64) -> String {
    tandem_contract::time::format_duration(std::time::Duration::from_secs(secs))
}

/// Seconds, roughly, for people: `29d 23h`, `5h 10m`, `42s`.
pub fn approx_duration(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// `2026-05-01 12:00:00 UTC`.
pub fn utc(secs: u64) -> String {
    tandem_contract::time::format_unix(secs)
}

/// An HTTP date (RFC 9110 IMF-fixdate): `Sun, 06 Nov 1994 08:49:37 GMT`.
/// Times past the format's last second (a file's mtime can be anything)
/// are written as that second: `httpdate` panics on them.
pub fn http_date(secs: u64) -> String {
    /// `Fri, 31 Dec 9999 23:59:59 GMT`.
    const LAST: u64 = 253_402_300_799;
    let secs = std::time::Duration::from_secs(secs.min(LAST));
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        for (text, secs) in [
            ("0", 0),
            ("90s", 90),
            ("45m", 2700),
            ("2h", 7200),
            ("1d", 86_400),
            ("30d", 2_592_000),
        ] {
            assert_eq!(parse_duration(text), Ok(secs), "{text}");
        }
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        for bad in ["", "h", "-5m", "1.5h", "2w"] {
            let e = parse_duration(bad).expect_err(bad);
            assert!(e.contains("is not a duration"), "{e}");
        }
        assert_eq!(format_duration(5400), "1h30m");
        assert_eq!(format_duration(7200), "2h");
        assert_eq!(format_duration(86_400 * 30), "30d");
        assert_eq!(format_duration(61), "1m1s");
        assert_eq!(format_duration(0), "0s");
        for secs in [5400, 7200, 86_400 * 30, 61, 0] {
            assert_eq!(parse_duration(&format_duration(secs)), Ok(secs));
        }
        assert_eq!(approx_duration(86_400 * 29 + 3600 * 23 + 5), "29d 23h");
        assert_eq!(approx_duration(42), "42s");
    }

    #[test]
    fn dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(u64::MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
    }
}
