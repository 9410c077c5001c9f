//! `Range` headers (RFC 9110 §14): one byte range per request.

/// A Range request, resolved against the file size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeSpec {
    /// The whole file (no Range, another unit, several ranges).
    Full,
    /// Bytes `start..=end`.
    Part(u64, u64),
    /// 416.
    Unsatisfiable,
}

/// Resolves a `Range` header value against a file of `size` bytes.
pub fn parse_range(value: &str, size: u64) -> RangeSpec {
    let value = value.trim();
    let Some((unit, spec)) = value.split_once('=') else {
        return RangeSpec::Unsatisfiable;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeSpec::Full;
    }
    if spec.contains(',') {
        return RangeSpec::Full;
    }
    let num = |s: &str| -> Option<u64> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    let Some((a, b)) = spec.split_once('-') else {
        return RangeSpec::Unsatisfiable;
    };
    if a.trim().is_empty() {
        return match num(b) {
            Some(n) if n > 0 && size > 0 => RangeSpec::Part(size.saturating_sub(n), size - 1),
            _ => RangeSpec::Unsatisfiable,
        };
    }
    let Some(start) = num(a) else {
        return RangeSpec::Unsatisfiable;
    };
    if start >= size {
        return RangeSpec::Unsatisfiable;
    }
    if b.trim().is_empty() {
        return RangeSpec::Part(start, size - 1);
    }
    match num(b) {
        Some(end) if end >= start => RangeSpec::Part(start, end.min(size - 1)),
        _ => RangeSpec::Unsatisfiable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeSpec::*;
        let cases = [
            ("bytes=0-9", 100, Part(0, 9)),
            ("bytes=90-", 100, Part(90, 99)),
            ("bytes=-10", 100, Part(90, 99)),
            ("bytes=-1000", 100, Part(0, 99)),
            ("bytes=50-1000", 100, Part(50, 99)),
            ("bytes=99-99", 100, Part(99, 99)),
            ("bytes=100-", 100, Unsatisfiable),
            ("bytes=100-200", 100, Unsatisfiable),
            ("bytes=9-1", 100, Unsatisfiable),
            ("bytes=-0", 100, Unsatisfiable),
            ("bytes=0-0", 0, Unsatisfiable),
            ("bytes=x-1", 100, Unsatisfiable),
            ("bytes=1", 100, Unsatisfiable),
            ("bytes", 100, Unsatisfiable),
            ("bytes=99999999999999999999999-", 100, Unsatisfiable),
            ("bytes=0-1,5-6", 100, Full),
            ("items=0-1", 100, Full),
            (" Bytes = 1-2 ", 100, Part(1, 2)),
        ];
        for (value, size, want) in cases {
            assert_eq!(parse_range(value, size), want, "{value} of {size}");
        }
    }
}
