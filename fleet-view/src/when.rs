//! Times and ages as the page says them: short, absolute, in UTC (the
//! fleet spans time zones; the nodes' windows and logs are in UTC too).

use tandem_contract::time::civil;

const DAY: u64 = 86_400;
const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// `14:20 UTC` on the day of `now`, `Thu 04:00 UTC` within a week either
/// side, `2026-12-24 04:00 UTC` further away.
pub(crate) fn at(t: u64, now: u64) -> String {
    let c = civil(t);
    if t / DAY == now / DAY {
        format!("{:02}:{:02} UTC", c.hour, c.minute)
    } else if t.abs_diff(now) < 7 * DAY {
        // 1970-01-01 was a Thursday (Monday = 0 → 3).
        let weekday = WEEKDAYS[((t / DAY + 3) % 7) as usize];
        format!("{weekday} {:02}:{:02} UTC", c.hour, c.minute)
    } else {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            c.year, c.month, c.day, c.hour, c.minute
        )
    }
}

/// `45 s`, `3 min`, `2 h 5 min`, `3 d 4 h`: two units at most.
pub(crate) fn age(secs: u64) -> String {
    let (d, h, m) = (secs / DAY, secs % DAY / 3600, secs % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, 0) => format!("{h} h"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, 0, _) => format!("{d} d"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-12-03 was a Thursday.
    const THU_1020: u64 = 1_796_293_200;

    #[test]
    fn times_are_as_short_as_they_can_be() {
        assert_eq!(at(THU_1020, THU_1020), "10:20 UTC");
        assert_eq!(at(THU_1020 + 3600 * 4, THU_1020), "14:20 UTC");
        assert_eq!(at(THU_1020 + DAY - 3600 * 6, THU_1020), "Fri 04:20 UTC");
        assert_eq!(at(THU_1020 - DAY, THU_1020), "Wed 10:20 UTC");
        assert_eq!(at(THU_1020 + 8 * DAY, THU_1020), "2026-12-11 10:20 UTC");
    }

    #[test]
    fn ages_keep_two_units() {
        assert_eq!(age(0), "0 s");
        assert_eq!(age(45), "45 s");
        assert_eq!(age(180), "3 min");
        assert_eq!(age(7200), "2 h");
        assert_eq!(age(7500), "2 h 5 min");
        assert_eq!(age(3 * DAY + 4 * 3600 + 59), "3 d 4 h");
        assert_eq!(age(2 * DAY + 30), "2 d");
    }
}
