//! Reboot windows, as in locksmith: a start (`"Thu 23:00"` weekly, or
//! `"23:00"` daily) and a length (`"2h"`), in UTC or a fixed offset
//! (`"+02:00"`). Pure parsing and arithmetic on Unix seconds: nothing here
//! reads a clock.
//!
//! A window repeats every day (no weekday) or every week. `now` is inside
//! when the time since the latest start is less than the length, so a
//! window that starts on Sunday evening and lasts into Monday works, as
//! does a daily window across midnight.
//!
//! ```
//! use tandem_contract::window::{Window, Position};
//!
//! // 1970-01-01 was a Thursday; 23:30 UTC that day is 84_600 s.
//! let w = Window::parse("Thu 23:00", "2h", None).unwrap();
//! assert_eq!(w.at(84_600), Position::Open { opened_at: 82_800, closes_at: 90_000 });
//! assert_eq!(w.at(90_000), Position::Closed { opens_at: 82_800 + 7 * 86_400 });
//! ```
//!
//! Time zones: `UTC` (or `Z`) and fixed offsets (`+02:00`, `-05:30`,
//! `+2`, `UTC+01:00`). IANA names (`Europe/Berlin`) are not supported: the
//! node has no time zone database, and a fixed offset does not follow
//! daylight saving time, so pick the offset of the season or use UTC.
//!
//! Read by the reboot agent (its `[window]`) and by the cloud-config
//! validator (locksmith's `window_start`, `window_length`): one parser.

use std::fmt;
use std::time::Duration;

const DAY: i64 = 86_400;
const WEEK: i64 = 7 * DAY;
/// 1970-01-01 was a Thursday: days since the epoch + 3, modulo 7, is the
/// weekday counted from Monday = 0.
const EPOCH_WEEKDAY_FROM_MONDAY: i64 = 3;

/// A day of the week.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl Weekday {
    /// All days, Monday first.
    pub const ALL: [Weekday; 7] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];

    /// Days since Monday.
    pub fn index(self) -> i64 {
        self as i64
    }

    /// `Mon`, `Tue`, …
    pub fn short(self) -> &'static str {
        ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][self as usize]
    }

    /// Parses `Thu`, `thu`, `Thursday` (any case).
    pub fn parse(text: &str) -> Option<Weekday> {
        const LONG: [&str; 7] = [
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
        ];
        let t = text.to_ascii_lowercase();
        Weekday::ALL.into_iter().find(|d| {
            let i = *d as usize;
            t == LONG[i] || t == d.short().to_ascii_lowercase()
        })
    }
}

/// A fixed offset from UTC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offset {
    secs: i32,
}

impl Offset {
    /// UTC.
    pub const UTC: Offset = Offset { secs: 0 };

    /// Seconds east of UTC.
    pub fn seconds(self) -> i32 {
        self.secs
    }

    /// Parses `UTC`, `Z`, `+02:00`, `-05:30`, `+0200`, `+2`, `UTC+01:00`.
    pub fn parse(text: &str) -> Result<Offset, WindowError> {
        let bad = |why: &str| WindowError::Timezone {
            text: text.to_string(),
            why: why.to_string(),
        };
        let t = text.trim();
        let rest = t
            .strip_prefix("UTC")
            .or_else(|| t.strip_prefix("utc"))
            .or_else(|| t.strip_prefix("GMT"))
            .unwrap_or(t);
        if rest.is_empty() || rest == "Z" || rest == "z" {
            return Ok(Offset::UTC);
        }
        if rest.contains('/') || rest.chars().any(|c| c.is_ascii_alphabetic()) {
            return Err(bad(
                "time zone names are not supported (the node has no time zone database): use UTC or a fixed offset such as \"+02:00\"",
            ));
        }
        let (sign, digits) = match rest.as_bytes().first() {
            Some(b'+') => (1, &rest[1..]),
            Some(b'-') => (-1, &rest[1..]),
            _ => return Err(bad("use UTC or an offset such as \"+02:00\" or \"-05:30\"")),
        };
        let (h, m) = match digits.split_once(':') {
            Some((h, m)) => (h, m),
            None if digits.len() == 4 => digits.split_at(2),
            None => (digits, "0"),
        };
        let num = |s: &str| -> Option<i32> {
            (!s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        match (num(h), num(m)) {
            (Some(h), Some(m)) if h <= 14 && m < 60 => Ok(Offset {
                secs: sign * (h * 3600 + m * 60),
            }),
            _ => Err(bad(
                "an offset is hours (at most 14) and minutes, e.g. \"+02:00\" or \"-05:30\"",
            )),
        }
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.secs == 0 {
            return f.write_str("UTC");
        }
        let sign = if self.secs < 0 { '-' } else { '+' };
        let a = self.secs.unsigned_abs();
        write!(f, "UTC{sign}{:02}:{:02}", a / 3600, a % 3600 / 60)
    }
}

/// Where a window starts: a weekday (weekly) or none (daily), and the
/// time of day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Start {
    /// The day, for a weekly window.
    pub weekday: Option<Weekday>,
    /// Seconds after midnight (a whole minute).
    pub second_of_day: u32,
}

impl Start {
    /// Parses `"Thu 23:00"`, `"thursday 23:00"` or `"23:00"`.
    pub fn parse(text: &str) -> Result<Start, WindowError> {
        let bad = || WindowError::Start {
            text: text.to_string(),
        };
        let mut words = text.split_whitespace();
        let (day, time) = match (words.next(), words.next(), words.next()) {
            (Some(t), None, None) => (None, t),
            (Some(d), Some(t), None) => (Some(Weekday::parse(d).ok_or_else(bad)?), t),
            _ => return Err(bad()),
        };
        let (h, m) = time.split_once(':').ok_or_else(bad)?;
        let num = |s: &str, max: u32| -> Option<u32> {
            (!s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok().filter(|n| *n <= max))
                .flatten()
        };
        if m.len() != 2 {
            return Err(bad());
        }
        let (h, m) = (num(h, 23).ok_or_else(bad)?, num(m, 59).ok_or_else(bad)?);
        Ok(Start {
            weekday: day,
            second_of_day: h * 3600 + m * 60,
        })
    }

    fn offset_in_period(self) -> i64 {
        self.weekday.map_or(0, |d| d.index() * DAY) + i64::from(self.second_of_day)
    }
}

impl fmt::Display for Start {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = self.weekday {
            write!(f, "{} ", d.short())?;
        }
        write!(
            f,
            "{:02}:{:02}",
            self.second_of_day / 3600,
            self.second_of_day % 3600 / 60
        )
    }
}

/// A repeating reboot window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// When it opens.
    pub start: Start,
    /// How long it stays open (seconds; at most the period).
    pub length_secs: u64,
    /// The zone `start` is read in.
    pub offset: Offset,
}

/// Where `now` is relative to a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// Inside the window that opened at `opened_at` and closes at
    /// `closes_at` (Unix seconds, `closes_at` excluded).
    Open {
        /// When this occurrence opened.
        opened_at: u64,
        /// When it closes.
        closes_at: u64,
    },
    /// Outside; the next occurrence opens at `opens_at`.
    Closed {
        /// When the next occurrence opens.
        opens_at: u64,
    },
}

/// A window that cannot be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// The start is not `[weekday] HH:MM`.
    #[error(
        "window start {text:?} is not a time: use \"HH:MM\" (every day) or \"<weekday> HH:MM\" (every week), e.g. \"Thu 23:00\""
    )]
    Start {
        /// What was given.
        text: String,
    },
    /// The length is not a duration, zero, or longer than the period.
    #[error("window length {text:?}: {why}")]
    Length {
        /// What was given.
        text: String,
        /// What is wrong.
        why: String,
    },
    /// The time zone is not UTC or a fixed offset.
    #[error("window timezone {text:?}: {why}")]
    Timezone {
        /// What was given.
        text: String,
        /// What is wrong.
        why: String,
    },
}

impl Window {
    /// Parses a start, a length (`"2h"`, `"90m"`, `"1h30m"`) and an optional
    /// time zone (default UTC).
    pub fn parse(start: &str, length: &str, timezone: Option<&str>) -> Result<Window, WindowError> {
        let start = Start::parse(start)?;
        let offset = timezone.map(Offset::parse).transpose()?.unwrap_or_default();
        let length_err = |why: String| WindowError::Length {
            text: length.to_string(),
            why,
        };
        let len = crate::time::parse_duration(length).map_err(length_err)?;
        let w = Window {
            start,
            length_secs: len.as_secs(),
            offset,
        };
        if w.length_secs == 0 {
            return Err(length_err(
                "must be at least one second; remove [window] to allow reboots at any time".into(),
            ));
        }
        if w.length_secs > w.period() as u64 {
            return Err(length_err(format!(
                "is longer than the window's period ({}): it would always be open; remove [window] instead",
                if w.start.weekday.is_some() {
                    "a week"
                } else {
                    "a day, as no weekday is given"
                }
            )));
        }
        Ok(w)
    }

    /// How often it repeats, in seconds: a week with a weekday, else a day.
    pub fn period(&self) -> i64 {
        if self.start.weekday.is_some() {
            WEEK
        } else {
            DAY
        }
    }

    /// The length.
    pub fn length(&self) -> Duration {
        Duration::from_secs(self.length_secs)
    }

    /// Where `now` (Unix seconds) is relative to the window.
    pub fn at(&self, now: u64) -> Position {
        let now = now.min(i64::MAX as u64 / 2) as i64;
        let local = now + i64::from(self.offset.secs);
        // Position in the period, counted from Monday 00:00 (weekly) or
        // midnight (daily) in the window's zone.
        let days = local.div_euclid(DAY);
        let in_period = if self.start.weekday.is_some() {
            (days + EPOCH_WEEKDAY_FROM_MONDAY).rem_euclid(7) * DAY + local.rem_euclid(DAY)
        } else {
            local.rem_euclid(DAY)
        };
        let period = self.period();
        let since_start = (in_period - self.start.offset_in_period()).rem_euclid(period);
        let opened_at = now - since_start;
        let len = self.length_secs as i64;
        if since_start < len {
            Position::Open {
                opened_at: opened_at.max(0) as u64,
                closes_at: (opened_at + len).max(0) as u64,
            }
        } else {
            Position::Closed {
                opens_at: (opened_at + period).max(0) as u64,
            }
        }
    }

    /// Whether `now` is inside.
    pub fn contains(&self, now: u64) -> bool {
        matches!(self.at(now), Position::Open { .. })
    }

    /// The first start strictly after `now`.
    pub fn next_start(&self, now: u64) -> u64 {
        match self.at(now) {
            Position::Open { opened_at, .. } => opened_at + self.period() as u64,
            Position::Closed { opens_at } => opens_at,
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let every = if self.start.weekday.is_some() {
            "weekly"
        } else {
            "daily"
        };
        write!(
            f,
            "{every} at {} {} for {}",
            self.start,
            self.offset,
            crate::time::format_duration(self.length())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix seconds of a UTC date and time (days from civil, Hinnant).
    fn utc(y: i64, mo: u32, d: u32, h: u32, mi: u32) -> u64 {
        let y = if mo <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (i64::from(mo) + 9) % 12;
        let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        (days * DAY + i64::from(h) * 3600 + i64::from(mi) * 60) as u64
    }

    fn w(start: &str, len: &str, tz: Option<&str>) -> Window {
        Window::parse(start, len, tz).expect("valid window")
    }

    #[test]
    fn test_calendar_is_right() {
        assert_eq!(utc(1970, 1, 1, 0, 0), 0);
        // 2026-03-05 is a Thursday.
        let t = utc(2026, 3, 5, 12, 0);
        let c = crate::time::civil(t);
        assert_eq!((c.year, c.month, c.day, c.hour), (2026, 3, 5, 12));
    }

    #[test]
    fn starts_parse() {
        for (text, day, secs) in [
            ("Thu 23:00", Some(Weekday::Thu), 23 * 3600),
            ("thursday 23:00", Some(Weekday::Thu), 23 * 3600),
            ("SUN 0:05", Some(Weekday::Sun), 300),
            ("14:00", None, 14 * 3600),
            ("  mon   07:30 ", Some(Weekday::Mon), 7 * 3600 + 1800),
            ("00:00", None, 0),
            ("23:59", None, 23 * 3600 + 59 * 60),
        ] {
            assert_eq!(
                Start::parse(text),
                Ok(Start {
                    weekday: day,
                    second_of_day: secs
                }),
                "{text}"
            );
        }
        for bad in [
            "",
            "Thu",
            "24:00",
            "12:60",
            "12",
            "12:5",
            "Thu 23:00 x",
            "Thx 23:00",
            "-1:00",
            "12:+5",
            "1:2:3",
            "123:00",
        ] {
            assert!(
                matches!(Start::parse(bad), Err(WindowError::Start { .. })),
                "{bad}"
            );
        }
        assert_eq!(
            Start::parse("fri 9:05").expect("ok").to_string(),
            "Fri 09:05"
        );
    }

    #[test]
    fn offsets_parse() {
        for (text, secs) in [
            ("UTC", 0),
            ("Z", 0),
            ("", 0),
            ("+02:00", 7200),
            ("-05:30", -(5 * 3600 + 1800)),
            ("+0200", 7200),
            ("+2", 7200),
            ("UTC+01:00", 3600),
            ("UTC-3", -10_800),
            ("+14:00", 14 * 3600),
        ] {
            assert_eq!(Offset::parse(text).map(Offset::seconds), Ok(secs), "{text}");
        }
        for bad in [
            "Europe/Berlin",
            "CET",
            "2",
            "+15",
            "+02:60",
            "+2:3:4",
            "++2",
        ] {
            assert!(
                matches!(Offset::parse(bad), Err(WindowError::Timezone { .. })),
                "{bad}"
            );
        }
        let e = Offset::parse("Europe/Berlin")
            .expect_err("iana")
            .to_string();
        assert!(e.contains("not supported") && e.contains("+02:00"), "{e}");
        assert_eq!(
            Offset::parse("-05:30").expect("ok").to_string(),
            "UTC-05:30"
        );
        assert_eq!(Offset::UTC.to_string(), "UTC");
    }

    #[test]
    fn lengths_are_checked() {
        assert_eq!(w("Thu 23:00", "1h30m", None).length_secs, 5400);
        assert_eq!(w("23:00", "24h", None).length_secs, DAY as u64);
        assert_eq!(w("Thu 23:00", "7d", None).length_secs, WEEK as u64);
        for (start, len) in [
            ("23:00", "0s"),
            ("23:00", "25h"),
            ("Thu 23:00", "8d"),
            ("23:00", "soon"),
        ] {
            assert!(
                matches!(
                    Window::parse(start, len, None),
                    Err(WindowError::Length { .. })
                ),
                "{start} {len}"
            );
        }
        let e = Window::parse("23:00", "25h", None)
            .expect_err("too long")
            .to_string();
        assert!(e.contains("always be open"), "{e}");
    }

    #[test]
    fn weekly_window_inside_and_outside() {
        let win = w("Thu 23:00", "2h", None);
        let open = utc(2026, 3, 5, 23, 0);
        let close = utc(2026, 3, 6, 1, 0);
        assert_eq!(
            win.at(open),
            Position::Open {
                opened_at: open,
                closes_at: close
            }
        );
        assert_eq!(
            win.at(open + 3599),
            Position::Open {
                opened_at: open,
                closes_at: close
            }
        );
        // Past midnight into Friday: still the Thursday window.
        assert!(win.contains(utc(2026, 3, 6, 0, 59)));
        assert_eq!(
            win.at(close),
            Position::Closed {
                opens_at: open + WEEK as u64
            },
            "the end is excluded"
        );
        assert_eq!(
            win.at(open - 1),
            Position::Closed { opens_at: open },
            "one second before"
        );
        assert_eq!(
            win.at(utc(2026, 3, 2, 10, 0)),
            Position::Closed { opens_at: open }
        );
        assert_eq!(win.next_start(open + 10), open + WEEK as u64);
        assert_eq!(win.next_start(open - 10), open);
    }

    #[test]
    fn week_wrap_around() {
        // Sunday 23:00 for 3 h: open until Monday 02:00.
        let win = w("Sun 23:00", "3h", None);
        let sun = utc(2026, 3, 8, 23, 0);
        assert!(win.contains(sun));
        assert!(win.contains(utc(2026, 3, 9, 1, 59)));
        assert_eq!(
            win.at(utc(2026, 3, 9, 1, 0)),
            Position::Open {
                opened_at: sun,
                closes_at: sun + 3 * 3600
            }
        );
        assert!(!win.contains(utc(2026, 3, 9, 2, 0)));
        assert_eq!(
            win.at(utc(2026, 3, 9, 2, 0)),
            Position::Closed {
                opens_at: sun + WEEK as u64
            }
        );
        // A week-long window that starts Monday: always open.
        let all = w("Mon 00:00", "7d", None);
        for h in 0..(7 * 24) {
            assert!(all.contains(utc(2026, 3, 2, 0, 0) + h * 3600), "{h}");
        }
    }

    #[test]
    fn daily_window_across_midnight() {
        let win = w("22:00", "4h", None);
        assert!(win.contains(utc(2026, 1, 1, 23, 0)));
        assert!(win.contains(utc(2026, 1, 2, 1, 59)));
        assert!(!win.contains(utc(2026, 1, 2, 2, 0)));
        assert_eq!(
            win.at(utc(2026, 1, 2, 1, 0)),
            Position::Open {
                opened_at: utc(2026, 1, 1, 22, 0),
                closes_at: utc(2026, 1, 2, 2, 0)
            }
        );
        assert_eq!(
            win.at(utc(2026, 1, 2, 12, 0)),
            Position::Closed {
                opens_at: utc(2026, 1, 2, 22, 0)
            }
        );
        // Across a year boundary and a leap day.
        assert!(win.contains(utc(2026, 12, 31, 23, 30)));
        assert!(win.contains(utc(2028, 2, 29, 22, 0)));
        assert_eq!(
            win.next_start(utc(2028, 2, 29, 23, 0)),
            utc(2028, 3, 1, 22, 0)
        );
    }

    #[test]
    fn offsets_shift_the_window() {
        // Thu 23:00 at +02:00 is Thu 21:00 UTC.
        let win = w("Thu 23:00", "1h", Some("+02:00"));
        assert!(win.contains(utc(2026, 3, 5, 21, 0)));
        assert!(!win.contains(utc(2026, 3, 5, 23, 0)));
        // Mon 01:00 at +02:00 is Sunday 23:00 UTC: the weekday moves too.
        let win = w("Mon 01:00", "1h", Some("+02:00"));
        assert!(win.contains(utc(2026, 3, 8, 23, 30)), "Sunday UTC");
        assert!(!win.contains(utc(2026, 3, 9, 1, 30)), "Monday UTC");
        // Sun 22:00 at -05:00 is Monday 03:00 UTC.
        let win = w("Sun 22:00", "2h", Some("-05:00"));
        assert_eq!(
            win.at(utc(2026, 3, 9, 4, 0)),
            Position::Open {
                opened_at: utc(2026, 3, 9, 3, 0),
                closes_at: utc(2026, 3, 9, 5, 0)
            }
        );
        // Half-hour offsets.
        let win = w("12:00", "30m", Some("+05:30"));
        assert!(win.contains(utc(2026, 3, 9, 6, 30)));
        assert!(!win.contains(utc(2026, 3, 9, 7, 0)));
    }

    #[test]
    fn near_the_epoch() {
        // Negative local times (a west offset at the epoch) do not panic.
        let win = w("Wed 23:00", "2h", Some("-05:00"));
        // Wed 23:00 at -05:00 = Thu 04:00 UTC = 1970-01-01 04:00.
        assert_eq!(win.at(0), Position::Closed { opens_at: 4 * 3600 });
        assert!(win.contains(4 * 3600 + 1));
        let win = w("00:00", "1h", Some("+14:00"));
        assert!(win.contains(10 * 3600));
        // Far in the future: no overflow.
        let _ = win.at(u64::MAX);
    }

    #[test]
    fn exhaustive_against_a_naive_model() {
        // Every 15 minutes of two weeks, for windows starting at every hour
        // of every day with a few lengths and offsets, compared with a
        // model that walks occurrences one by one.
        for tz in [0i64, 7200, -19_800] {
            let tz_text = match tz {
                0 => "UTC",
                7200 => "+02:00",
                _ => "-05:30",
            };
            for day in Weekday::ALL {
                for hour in [0u32, 5, 23] {
                    for len_h in [1u64, 5, 30] {
                        let start = format!("{} {hour:02}:00", day.short());
                        let win = w(&start, &format!("{len_h}h"), Some(tz_text));
                        // First occurrence on or after 2026-03-02 (Monday) 00:00 local.
                        let monday_local = utc(2026, 3, 2, 0, 0) as i64;
                        let first = monday_local + day.index() * DAY + i64::from(hour) * 3600 - tz;
                        for step in 0..(14 * 24 * 4) {
                            let now = monday_local + step * 900;
                            // Occurrences: first + k weeks, k = -1..=3.
                            let mut open = None;
                            let mut next = i64::MAX;
                            for k in -1..=3 {
                                let s = first + k * WEEK;
                                let e = s + (len_h * 3600) as i64;
                                if s <= now && now < e {
                                    open = Some((s, e));
                                }
                                if s > now {
                                    next = next.min(s);
                                }
                            }
                            let got = win.at(now as u64);
                            let want = match open {
                                Some((s, e)) => Position::Open {
                                    opened_at: s as u64,
                                    closes_at: e as u64,
                                },
                                None => Position::Closed {
                                    opens_at: next as u64,
                                },
                            };
                            assert_eq!(got, want, "{start} {len_h}h {tz_text} at {now}");
                            assert_eq!(
                                win.next_start(now as u64),
                                next as u64,
                                "next start of {start} {len_h}h {tz_text} at {now}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn display() {
        assert_eq!(
            w("Thu 23:00", "2h", Some("+02:00")).to_string(),
            "weekly at Thu 23:00 UTC+02:00 for 2h"
        );
        assert_eq!(
            w("4:30", "90m", None).to_string(),
            "daily at 04:30 UTC for 1h30m"
        );
    }
}
