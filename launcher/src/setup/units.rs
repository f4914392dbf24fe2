//! Parsing of sizes and durations given on the command line.

use std::time::Duration;

/// A memory size such as `512M`, `1G` or `1048576` (bytes), in bytes. Suffixes are binary
/// (K = 1024) and case-insensitive; an optional `B` or `iB` may follow (`512MiB`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    let body = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (digits, shift) = match body.chars().last() {
        Some('k') => (&body[..body.len() - 1], 10),
        Some('m') => (&body[..body.len() - 1], 20),
        Some('g') => (&body[..body.len() - 1], 30),
        Some('t') => (&body[..body.len() - 1], 40),
        _ => (body, 0),
    };
    let err = || format!("'{text}' is not a size: use a number with K, M or G, e.g. 512M");
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    let n: u64 = digits.parse().map_err(|_| err())?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("'{text}' is too large"))
}

/// A duration such as `90` (seconds), `30s`, `1.5s`, `500ms`, `5m` or `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let err = || format!("'{text}' is not a duration: use e.g. 90, 30s, 500ms, 5m or 1h");
    let (number, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return Err(err()),
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(err());
    }
    let value: f64 = number.parse().map_err(|_| err())?;
    let secs = value * scale;
    if !secs.is_finite() || secs > 1e9 {
        return Err(format!("'{text}' is too long"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A duration as a user would write it back: `90s`, `1.5s`, `500ms`.
pub fn format_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// `mem=` wants whole mebibytes on the kernel command line.
pub fn to_mib(bytes: u64) -> u64 {
    bytes / (1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("64MB"), Ok(64 << 20));
        assert_eq!(parse_size("2048K"), Ok(2 << 20));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        for bad in ["", "M", "12Q", "-5M", "1.5G", "ten", "5 M", "0x10"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert!(parse_size("99999999999999T")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "s", "-1", "10x", "1..2s", "abc", "1e3"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(parse_duration("99999999999d").is_err());
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
    }
}

/// A path as an error message shows it: as is when plain, quoted and escaped when it holds
/// spaces, quotes or control characters (so a message stays on one line).
pub fn shown(path: &std::path::Path) -> String {
    match path.to_str() {
        Some(s)
            if s.chars()
                .all(|c| c.is_ascii_graphic() && c != '"' && c != '\'') =>
        {
            s.to_string()
        }
        _ => format!("{:?}", path.as_os_str()),
    }
}

#[cfg(test)]
mod shown_tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn plain_paths_stay_plain_and_odd_ones_stay_on_one_line() {
        assert_eq!(shown(Path::new("/tmp/x")), "/tmp/x");
        assert_eq!(shown(Path::new("/tmp/a b")), "\"/tmp/a b\"");
        assert_eq!(shown(Path::new("/tmp/a\nb")), "\"/tmp/a\\nb\"");
    }
}
