//! Durations and dates as config files and status lines write them, shared
//! by the writers of configuration (the image builder, release tooling,
//! administrators) and its readers (the update engine, the agent): the
//! duration syntax of update.toml, agent.toml and image definitions
//! (`1h`, `90s`, `1h30m`, `500ms`), its one spelling on output, and UTC
//! civil dates.

use std::fmt::Write as _;
use std::time::Duration;

/// A civil date and time (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Civil {
    /// Year.
    pub year: i64,
    /// 1–12.
    pub month: u32,
    /// 1–31.
    pub day: u32,
    /// 0–23.
    pub hour: u32,
    /// 0–59.
    pub minute: u32,
    /// 0–59.
    pub second: u32,
}

/// The UTC civil date of Unix seconds (Howard Hinnant's days-to-civil).
pub fn civil(unix: u64) -> Civil {
    let days = (unix / 86_400) as i64;
    let rem = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: (rem / 3600) as u32,
        minute: (rem % 3600 / 60) as u32,
        second: (rem % 60) as u32,
    }
}

/// `2026-03-01 12:00:05 UTC`.
pub fn format_unix(unix: u64) -> String {
    let c = civil(unix);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// A duration in the config syntax that [`parse_duration`] reads back:
/// units largest first, the zero ones left out (`45s`, `3m20s`, `2h5m`,
/// `1h30m`, `30d`, `0s`). Whole seconds; a duration under a second is
/// written in milliseconds (`500ms`).
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return match d.subsec_millis() {
            0 => "0s".into(),
            ms => format!("{ms}ms"),
        };
    }
    let mut out = String::new();
    let parts = [
        (secs / 86_400, "d"),
        (secs % 86_400 / 3600, "h"),
        (secs % 3600 / 60, "m"),
        (secs % 60, "s"),
    ];
    for (n, unit) in parts {
        if n > 0 {
            let _ = write!(out, "{n}{unit}");
        }
    }
    out
}

/// Parses `1h`, `30m`, `90s`, `500ms`, `2d`, `1h30m` (units may be
/// combined, largest first); a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let bad =
        || format!("{text:?} is not a duration: use e.g. \"90s\", \"30m\", \"1h\", \"1h30m\"");
    if t.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = rest[..unit_len].trim();
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" | "min" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            _ => return Err(bad()),
        };
        total = total.saturating_add(part);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(
            civil(0),
            Civil {
                year: 1970,
                month: 1,
                day: 1,
                hour: 0,
                minute: 0,
                second: 0
            }
        );
        // 2000-02-29 12:34:56
        assert_eq!(
            civil(951_827_696),
            Civil {
                year: 2000,
                month: 2,
                day: 29,
                hour: 12,
                minute: 34,
                second: 56
            }
        );
        assert_eq!(format_unix(1_767_225_600), "2026-01-01 00:00:00 UTC");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        for bad in ["", "h", "1x", "1.5h", "-1s", "1h 30"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_are_written_in_the_config_syntax() {
        let s = Duration::from_secs;
        for (d, text) in [
            (s(0), "0s"),
            (Duration::from_millis(500), "500ms"),
            (s(45), "45s"),
            (s(61), "1m1s"),
            (s(200), "3m20s"),
            (s(3600), "1h"),
            (s(5400), "1h30m"),
            (s(7200), "2h"),
            (s(7500), "2h5m"),
            (s(86_400 * 30), "30d"),
            (s(86_400 * 3 + 3600 * 4 + 5), "3d4h5s"),
            // Below a second only when under one.
            (Duration::from_millis(1500), "1s"),
        ] {
            assert_eq!(format_duration(d), text, "{d:?}");
        }
        // What is written reads back (to the second).
        for secs in [
            0, 1, 59, 60, 61, 3599, 3600, 5400, 86_399, 86_400, 1_000_000,
        ] {
            let text = format_duration(s(secs));
            assert_eq!(parse_duration(&text), Ok(s(secs)), "{text}");
        }
    }
}
