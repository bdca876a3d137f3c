//! API keys with read and write scopes, sent as `Authorization: Bearer <key>`.
//!
//! Keys are compared in constant time (on their SHA-256 digests, so neither the content nor the
//! length of a configured key leaks through timing), and every configured key is compared on
//! every request.

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::AppState;

/// Shortest key accepted: shorter ones are guessable.
pub const MIN_KEY_LEN: usize = 16;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scopes {
    /// Search, list and read documents.
    pub read: bool,
    /// Create and delete indexes, write and delete documents.
    pub write: bool,
}

/// A configured key (only its digest is kept).
#[derive(Clone)]
pub struct ApiKey {
    digest: [u8; 32],
    /// What the key may do.
    pub scopes: Scopes,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl std::str::FromStr for ApiKey {
    type Err = String;

    /// `KEY` (read and write), `KEY:read`, `KEY:write` or `KEY:read+write`.
    fn from_str(spec: &str) -> Result<Self, String> {
        let spec = spec.trim();
        let (key, scopes) = match spec.rsplit_once(':') {
            Some((key, scopes)) => (key, scopes),
            None => (spec, "read+write"),
        };
        let mut parsed = Scopes {
            read: false,
            write: false,
        };
        for scope in scopes.split('+') {
            match scope.trim() {
                "read" => parsed.read = true,
                "write" => parsed.write = true,
                other => {
                    return Err(format!(
                        "unknown scope {other:?} in an API key: use KEY, KEY:read, KEY:write or KEY:read+write"
                    ))
                }
            }
        }
        if key.len() < MIN_KEY_LEN || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "API keys must be at least {MIN_KEY_LEN} characters without spaces (for example from `openssl rand -hex 24`)"
            ));
        }
        Ok(ApiKey {
            digest: digest(key),
            scopes: parsed,
        })
    }
}

/// Parses a comma-separated list of keys (the `IBEX_API_KEYS` format).
pub fn parse_keys(list: &str) -> Result<Vec<ApiKey>, String> {
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(str::parse)
        .collect()
}

/// The scopes of the key `presented`, if it is one of `keys`.
fn lookup(keys: &[ApiKey], presented: &str) -> Option<Scopes> {
    let presented = digest(presented);
    let mut found = None;
    for key in keys {
        if bool::from(key.digest.ct_eq(&presented)) {
            found = Some(key.scopes);
        }
    }
    found
}

/// The scope a request needs: reads (GET, and searching, which is a POST only for its body) or
/// writes. `None` for what is open to all: health, readiness, the page and the API description.
fn required_scope(method: &Method, path: &str) -> Option<&'static str> {
    if !path.starts_with("/v1/") && path != "/metrics" {
        return None;
    }
    // POSTs that only read: searches, answers, recommendations and chat completions.
    let read_post = path.ends_with("/search")
        || path.ends_with("/answer")
        || path.ends_with("/recommend")
        || path == "/v1/chat/completions";
    if method == Method::GET || method == Method::HEAD || (method == Method::POST && read_post) {
        Some("read")
    } else {
        Some("write")
    }
}

/// Middleware: checks the bearer key when keys are configured.
pub async fn require_key(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let keys = &state.config.api_keys;
    if keys.is_empty() {
        return next.run(request).await;
    }
    let Some(scope) = required_scope(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(presented) = presented else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing_api_key",
            "this server needs an API key: send it as `Authorization: Bearer <key>`",
        )
        .into_response();
    };
    let Some(scopes) = lookup(keys, presented) else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "the API key is not one of this server's keys",
        )
        .into_response();
    };
    let allowed = match scope {
        "read" => scopes.read,
        _ => scopes.write,
    };
    if !allowed {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!("this API key lacks the {scope} scope this request needs"),
        )
        .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_with_scopes() {
        let keys = parse_keys(
            "reader-key-0123456789:read, writer-key-0123456789:write,admin-key-0123456789",
        )
        .unwrap();
        assert_eq!(
            lookup(&keys, "reader-key-0123456789"),
            Some(Scopes {
                read: true,
                write: false
            })
        );
        assert_eq!(
            lookup(&keys, "writer-key-0123456789"),
            Some(Scopes {
                read: false,
                write: true
            })
        );
        assert_eq!(
            lookup(&keys, "admin-key-0123456789"),
            Some(Scopes {
                read: true,
                write: true
            })
        );
        assert_eq!(lookup(&keys, "admin-key-012345678"), None);
        assert_eq!(lookup(&keys, ""), None);
    }

    #[test]
    fn short_keys_and_unknown_scopes_are_refused() {
        assert!("short:read".parse::<ApiKey>().is_err());
        assert!("long-enough-key-0123456789:admin"
            .parse::<ApiKey>()
            .is_err());
    }

    #[test]
    fn scopes_follow_method_and_path() {
        assert_eq!(required_scope(&Method::GET, "/healthz"), None);
        assert_eq!(required_scope(&Method::GET, "/"), None);
        assert_eq!(required_scope(&Method::GET, "/v1/indexes"), Some("read"));
        assert_eq!(
            required_scope(&Method::POST, "/v1/indexes/a/search"),
            Some("read")
        );
        assert_eq!(
            required_scope(&Method::POST, "/v1/indexes/a/documents"),
            Some("write")
        );
        assert_eq!(required_scope(&Method::PUT, "/v1/indexes/a"), Some("write"));
        assert_eq!(required_scope(&Method::GET, "/metrics"), Some("read"));
    }
}
