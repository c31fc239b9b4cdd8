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

/// Times a store operation into the `jibber_db_query_duration_seconds` histogram (labels `op`
/// and `backend`) when dropped. Made by [`query_timer!`](crate::query_timer).
pub struct QueryTimer {
    histogram: &'static metrics::Histogram,
    start: std::time::Instant,
}

impl QueryTimer {
    pub fn new(histogram: &'static metrics::Histogram) -> Self {
        QueryTimer {
            histogram,
            start: std::time::Instant::now(),
        }
    }
}

impl Drop for QueryTimer {
    fn drop(&mut self) {
        self.histogram.record(self.start.elapsed().as_secs_f64());
    }
}

/// The histogram handle a [`QueryTimer`] records into (callers need not depend on `metrics`).
pub type QueryHistogram = metrics::Histogram;

/// The `jibber_db_query_duration_seconds` histogram of one operation of one backend.
pub fn query_histogram(backend: &'static str, op: &'static str) -> metrics::Histogram {
    metrics::histogram!("jibber_db_query_duration_seconds", "op" => op, "backend" => backend)
}

/// A [`QueryTimer`] for the operation `$op` of the backend `$backend` (both string literals).
///
/// The histogram's handle is looked up once per call site and kept: a lookup in the recorder's
/// registry (hashing the name and labels) on every record was ~3 % of the server's runtime
/// thread in the relay (BENCHMARKS.md, session 19). The handle is taken from the recorder that
/// is installed at the first use, so a process installs its recorder before it opens a store
/// (`jibber_server::App::build` does); before that, or with none, the timer records nothing.
#[macro_export]
macro_rules! query_timer {
    ($backend:literal, $op:literal) => {{
        static HISTOGRAM: ::std::sync::OnceLock<$crate::util::QueryHistogram> =
            ::std::sync::OnceLock::new();
        $crate::util::QueryTimer::new(
            HISTOGRAM.get_or_init(|| $crate::util::query_histogram($backend, $op)),
        )
    }};
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
