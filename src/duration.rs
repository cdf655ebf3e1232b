//! Durations as people write them on the command line, in git config and in the policy file:
//! `30s`, `5m`, `1h`, `2d`, `1w`, `250ms`, a bare number meaning seconds.

use std::time::Duration;

/// Parse `30s`, `5m`, `1h`, `2d`, `1w`, `250ms`; a bare number means seconds.
pub fn parse(s: &str) -> std::result::Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (use e.g. 30s, 5m, 1h, 2d)"))?;
    let per_unit: u64 = match unit.trim() {
        "ms" => 1,
        "" | "s" | "sec" | "secs" => 1000,
        "m" | "min" | "mins" => 60_000,
        "h" | "hour" | "hours" => 3_600_000,
        "d" | "day" | "days" => 86_400_000,
        "w" | "week" | "weeks" => 7 * 86_400_000,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{s}' (use ms, s, m, h, d or w)"
            ));
        }
    };
    // Nothing hyperion measures lasts a century; anything longer is surely a typo.
    const MAX_MS: u64 = 100 * 366 * 86_400_000;
    match n.checked_mul(per_unit) {
        Some(ms) if ms <= MAX_MS => Ok(Duration::from_millis(ms)),
        _ => Err(format!("'{s}' is longer than 100 years")),
    }
}

/// Render a duration the way [`parse`] reads it.
pub fn format(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_millis() != 0 || s == 0 {
        return format!("{}ms", d.as_millis());
    }
    for (unit, n) in [("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)] {
        if s.is_multiple_of(n) {
            return format!("{}{unit}", s / n);
        }
    }
    format!("{s}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip() {
        for s in ["30s", "5m", "1h", "2d", "1w", "250ms"] {
            let d = parse(s).expect("valid");
            assert_eq!(format(d), s);
        }
        assert_eq!(parse("90").expect("valid"), Duration::from_secs(90));
        assert!(parse("5 parsecs").is_err());
        assert!(parse("").is_err());
        assert!(parse("99999999999999w").is_err());
        assert!(parse("10000w").is_err());
    }
}
