//! Per-request accounting: every answer counted by endpoint and status and
//! timed, with the metric handles registered once. Counting an answer is an
//! array index and an atomic add; the `metrics` macros would build a key and
//! look it up in the registry on every request.

use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use axum::http::StatusCode;
use metrics::{Counter, Histogram};

/// The routes of `routes::router`, as their metric labels.
const ENDPOINTS: [&str; 15] = [
    "/api/license/verify",
    "/api/license/info/{license_key}",
    "/api/version/check",
    "/api/version/latest",
    "/api/license/session/heartbeat",
    "/api/license/activate",
    "/api/license/deactivate",
    "/api/license/transfer",
    "/api/license/lease",
    "/api/license/session/start",
    "/api/license/session/end",
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
];
/// Label of any path no route matches.
const UNMATCHED: &str = "unmatched";
const STATUSES: [&str; 13] = [
    "200", "400", "401", "403", "404", "405", "408", "413", "415", "429", "500", "503", "other",
];

/// An index into [`ENDPOINTS`], or one past it for unmatched paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint(usize);

impl Endpoint {
    /// `POST /api/license/verify`, which the server routes itself.
    pub const VERIFY: Self = Self(0);

    /// The route a path will be routed to. A `{parameter}` segment matches
    /// one non-empty path segment, as in the router.
    pub fn of(path: &str) -> Self {
        let index = ENDPOINTS.iter().position(|route| match route.find('{') {
            None => *route == path,
            Some(at) => path
                .strip_prefix(&route[..at])
                .is_some_and(|rest| !rest.is_empty() && !rest.contains('/')),
        });
        Self(index.unwrap_or(ENDPOINTS.len()))
    }

    fn label(self) -> &'static str {
        ENDPOINTS.get(self.0).copied().unwrap_or(UNMATCHED)
    }
}

/// Handles by endpoint (and status), created on first use so `/metrics`
/// lists only series that happened.
struct Handles {
    answers: [[OnceLock<Counter>; STATUSES.len()]; ENDPOINTS.len() + 1],
    durations: [OnceLock<Histogram>; ENDPOINTS.len() + 1],
}

static HANDLES: LazyLock<Handles> = LazyLock::new(|| Handles {
    answers: std::array::from_fn(|_| std::array::from_fn(|_| OnceLock::new())),
    durations: std::array::from_fn(|_| OnceLock::new()),
});

/// Counts one answer and records how long it took.
pub fn record(endpoint: Endpoint, status: StatusCode, elapsed: Duration) {
    let status = STATUSES
        .iter()
        .position(|s| *s == status.as_str())
        .unwrap_or(STATUSES.len() - 1);
    let label = endpoint.label();
    HANDLES.answers[endpoint.0][status]
        .get_or_init(|| {
            metrics::counter!("latchkey_edge_requests_total", "endpoint" => label, "status" => STATUSES[status])
        })
        .increment(1);
    HANDLES.durations[endpoint.0]
        .get_or_init(
            || metrics::histogram!("latchkey_edge_request_duration_seconds", "endpoint" => label),
        )
        .record(elapsed.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_to_their_routes() {
        assert_eq!(Endpoint::of("/api/license/verify"), Endpoint::VERIFY);
        assert_eq!(
            Endpoint::of("/api/license/verify").label(),
            "/api/license/verify"
        );
        assert_eq!(
            Endpoint::of("/api/license/info/ABCDE-12345").label(),
            "/api/license/info/{license_key}"
        );
        assert_eq!(Endpoint::of("/api/license/info/").label(), UNMATCHED);
        assert_eq!(Endpoint::of("/api/license/info/a/b").label(), UNMATCHED);
        assert_eq!(Endpoint::of("/nope").label(), UNMATCHED);
    }
}
