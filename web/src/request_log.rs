//! One log line per request, and a request id in every response.
//!
//! Lines go to stderr in logfmt (`key=value`, values quoted when they hold spaces), which log
//! shippers parse without configuration:
//!
//! ```text
//! ts=2026-12-01T11:22:33.123Z level=info request_id=5f3a9c1e-000042 method=POST route=/v1/indexes/{name}/search status=200 latency_ms=3.41
//! ```
//!
//! What a line never holds: the raw path (document ids), query text, document text, headers or
//! keys; the route is the template. The level comes from `IBEX_LOG`, else `RUST_LOG` (a level
//! name, or directives of which the last `=level` or bare level counts): `off`, `error` (5xx
//! only), `warn` (4xx and 5xx), `info` (every request, the default), `debug`.
//!
//! Hand-written rather than `tracing` + `tracing-subscriber`: the whole need is one formatted
//! line per request, and those crates would add a dependency tree and a global subscriber to a
//! library that applications embed (a global subscriber is theirs to install, not ours).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

/// The response header carrying the request id (also accepted on requests, to join a caller's
/// trace: a well-formed incoming id is kept).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// How much is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Nothing.
    Off,
    /// Server errors (5xx) only.
    Error,
    /// Client errors (4xx) and server errors.
    Warn,
    /// Every request.
    Info,
    /// Every request (room for more detail later).
    Debug,
}

impl LogLevel {
    fn parse(word: &str) -> Option<LogLevel> {
        Some(match word.trim().to_ascii_lowercase().as_str() {
            "off" | "none" => LogLevel::Off,
            "error" => LogLevel::Error,
            "warn" | "warning" => LogLevel::Warn,
            "info" => LogLevel::Info,
            "debug" | "trace" => LogLevel::Debug,
            _ => return None,
        })
    }

    /// The level a `RUST_LOG`-style value asks for: the last directive's level
    /// (`info`, `ibex=debug`, `hyper=warn,ibex_web=info`).
    pub fn from_directives(value: &str) -> Option<LogLevel> {
        value
            .split(',')
            .rev()
            .find_map(|directive| LogLevel::parse(directive.rsplit('=').next().unwrap_or("")))
    }

    /// The level of this process: `IBEX_LOG`, else `RUST_LOG`, else `info`. Read once.
    pub fn current() -> LogLevel {
        static LEVEL: OnceLock<LogLevel> = OnceLock::new();
        *LEVEL.get_or_init(|| {
            ["IBEX_LOG", "RUST_LOG"]
                .iter()
                .find_map(|name| {
                    std::env::var(name)
                        .ok()
                        .and_then(|v| LogLevel::from_directives(&v))
                })
                .unwrap_or(LogLevel::Info)
        })
    }

    /// The level a response with `status` is logged at.
    pub fn of_status(status: u16) -> LogLevel {
        match status {
            500.. => LogLevel::Error,
            400..=499 => LogLevel::Warn,
            _ => LogLevel::Info,
        }
    }

    fn name(self) -> &'static str {
        match self {
            LogLevel::Off => "off",
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        }
    }
}

/// The id of a request: the caller's `x-request-id` when it is short and plain (letters, digits,
/// `-`, `_`, `.`, `:`; at most 64 bytes, so it cannot inject into a log line), else a new one,
/// unique within the process and unlikely to repeat across restarts.
pub fn request_id(headers: &HeaderMap) -> String {
    if let Some(given) = headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        })
    {
        return given.to_string();
    }
    static PROCESS: OnceLock<u32> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let process = *PROCESS.get_or_init(|| {
        // Distinct per process start: pid and start time mixed (not a secret, only a prefix).
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        let mixed =
            (nanos ^ (u64::from(std::process::id()) << 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (mixed >> 32) as u32
    });
    format!(
        "{process:08x}-{:06}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The route template a request matched, put in the response's extensions by the metrics
/// middleware (which runs inside routing, where the template is known).
#[derive(Debug, Clone)]
pub struct RouteTemplate(pub String);

/// Middleware, outermost: gives the request its id (also in the response header) and writes its
/// line once answered, whatever answered it (a handler, the auth check, the body limits, the
/// panic guard).
pub async fn log(request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let id = request_id(request.headers());
    let method = request.method().as_str().to_string();
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let route = response
        .extensions()
        .get::<RouteTemplate>()
        .map_or("unmatched", |t| t.0.as_str());
    log_request(
        &id,
        &method,
        route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Writes the line of one finished request, if the level lets it through.
pub fn log_request(id: &str, method: &str, route: &str, status: u16, latency: Duration) {
    let level = LogLevel::of_status(status);
    if LogLevel::current() < level || LogLevel::current() == LogLevel::Off {
        return;
    }
    let line = format!(
        "ts={} level={} request_id={id} method={method} route={} status={status} latency_ms={:.2}",
        rfc3339_now(),
        level.name(),
        quoted(route),
        latency.as_secs_f64() * 1000.0
    );
    eprintln!("{line}");
}

/// A logfmt value: bare when plain, else quoted with `"` and `\` escaped.
fn quoted(value: &str) -> String {
    if !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'=')
    {
        value.to_string()
    } else {
        format!("{:?}", value)
    }
}

/// The current UTC time as RFC 3339 with milliseconds.
fn rfc3339_now() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(since)
}

fn rfc3339(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since_epoch.subsec_millis()
    )
}

/// Year, month and day of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_like_rust_log() {
        assert_eq!(LogLevel::from_directives("info"), Some(LogLevel::Info));
        assert_eq!(
            LogLevel::from_directives("hyper=warn,ibex=error"),
            Some(LogLevel::Error)
        );
        assert_eq!(LogLevel::from_directives("OFF"), Some(LogLevel::Off));
        assert_eq!(LogLevel::from_directives("nonsense"), None);
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(
            rfc3339(Duration::from_millis(0)),
            "1970-01-01T00:00:00.000Z"
        );
        // 2026-12-01T11:22:33.123Z
        assert_eq!(
            rfc3339(Duration::from_millis(1_796_124_153_123)),
            "2026-12-01T11:22:33.123Z"
        );
        // A leap day.
        assert_eq!(
            rfc3339(Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn caller_ids_are_kept_only_when_plain() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("trace-42.a:b"));
        assert_eq!(request_id(&headers), "trace-42.a:b");
        headers.insert(
            REQUEST_ID_HEADER,
            HeaderValue::from_static("a b level=error"),
        );
        let made = request_id(&headers);
        assert_ne!(made, "a b level=error");
        assert!(
            made.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'),
            "{made}"
        );
        assert_ne!(request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
    }

    #[test]
    fn values_with_spaces_or_quotes_are_quoted() {
        assert_eq!(quoted("/v1/indexes/{name}"), "/v1/indexes/{name}");
        assert_eq!(quoted("a \"b\""), "\"a \\\"b\\\"\"");
    }
}
