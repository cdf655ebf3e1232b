//! Durations as people write them on the command line, in git config and in the policy file:
//! `30s`, `5m`, `1h 30m`, `2d`, `1w`, `250ms` (humantime's syntax), a bare number meaning
//! seconds.

use std::time::Duration;

/// Nothing hyperion measures lasts a century; anything longer is surely a typo.
const MAX: Duration = Duration::from_secs(100 * 366 * 86_400);

/// Parse `30s`, `5m`, `1h 30m`, `2d`, `1w`, `250ms` and the other spellings humantime reads
/// (`sec`, `mins`, `hours`, `days`…); a bare number means seconds.
pub fn parse(s: &str) -> std::result::Result<Duration, String> {
    let t = s.trim();
    let long = || format!("'{s}' is longer than 100 years");
    let d = if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        t.parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| long())?
    } else {
        humantime::parse_duration(t).map_err(|e| match e {
            humantime::DurationError::NumberOverflow => long(),
            humantime::DurationError::UnknownUnit { unit, .. } => {
                format!("unknown unit '{unit}' in '{s}' (use ms, s, m, h, d or w)")
            }
            other => format!("'{s}' is not a duration ({other}; use e.g. 30s, 5m, 1h, 2d)"),
        })?
    };
    if d > MAX {
        return Err(long());
    }
    Ok(d)
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
        assert!(parse("99999999999999999999").is_err());
        assert_eq!(parse("1h 30m").expect("valid"), Duration::from_secs(5400));
        assert_eq!(
            parse(" 2days ").expect("valid"),
            Duration::from_secs(172_800)
        );
        assert!(
            parse("5 parsecs")
                .expect_err("unit")
                .contains("unknown unit 'parsecs'")
        );
        assert!(parse("-5s").is_err());
        // What docs/usage.md promises.
        assert_eq!(parse("5 m").expect("valid"), Duration::from_secs(300));
        assert_eq!(parse("1.5h").expect("valid"), Duration::from_secs(5400));
        assert_eq!(
            parse("2wks").expect("valid"),
            Duration::from_secs(1_209_600)
        );
        assert!(parse("101y").is_err());
    }
}
