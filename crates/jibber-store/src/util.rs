//! Small helpers every backend shares.

use time::OffsetDateTime;

/// Milliseconds since the Unix epoch; how backends keep times.
pub fn to_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The inverse of [`to_ms`]; out-of-range values clamp to the epoch.
pub fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The current time truncated to milliseconds, so a value read back equals the one written.
pub fn now_ms() -> OffsetDateTime {
    from_ms(to_ms(OffsetDateTime::now_utc()))
}

/// Escapes `%`, `_` and `\` for a `LIKE ... ESCAPE '\'` pattern.
pub fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ms_round_trip() {
        let t = now_ms();
        assert_eq!(from_ms(to_ms(t)), t);
        assert_eq!(like_escape("a%b_c\\"), "a\\%b\\_c\\\\");
    }
}
