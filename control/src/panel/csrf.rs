//! CSRF: every POST/PUT/PATCH/DELETE must carry the session's token, in the
//! `x-csrf-token` header (htmx sends it from `hx-headers` on `<body>`) or
//! the `_csrf` form field. Before login there is no session: the login form
//! uses a double-submit cookie instead. SameSite=Strict cookies already stop
//! most cross-site posts; the token covers older browsers and same-site
//! attackers.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::PanelState;
use super::error::PanelError;
use super::session::{CurrentSession, cookie};

pub static X_CSRF_TOKEN: HeaderName = HeaderName::from_static("x-csrf-token");
pub const FORM_FIELD: &str = "_csrf";
/// Panel forms are small but one: a license batch's list of customers,
/// whose 10 000 lines (the most a batch makes) fit in this. A larger body
/// is not one of ours.
const MAX_FORM_BYTES: usize = 1024 * 1024;

pub async fn verify(State(state): State<PanelState>, request: Request, next: Next) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    let session = request
        .extensions()
        .get::<CurrentSession>()
        .and_then(|current| current.0.clone());
    let expected = match session {
        Some(session) => session.csrf_token.clone(),
        None if request.uri().path() == "/login" => {
            match cookie(request.headers(), state.cookies().login_csrf()) {
                Some(token) => token.to_owned(),
                None => return PanelError::Csrf.into_response(),
            }
        }
        // No session: the handler's extractor sends the caller to the login
        // page, and nothing can change without one.
        None => return next.run(request).await,
    };
    let (parts, body) = request.into_parts();
    let header_token = parts
        .headers
        .get(&X_CSRF_TOKEN)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let (presented, body) = match header_token {
        Some(token) => (Some(token), body),
        None if is_form(&parts.headers) => {
            let Ok(bytes) = to_bytes(body, MAX_FORM_BYTES).await else {
                return PanelError::Invalid(format!(
                    "form too large: at most {} KiB",
                    MAX_FORM_BYTES / 1024
                ))
                .into_response();
            };
            let token = form_urlencoded::parse(&bytes)
                .find(|(key, _)| key == FORM_FIELD)
                .map(|(_, value)| value.into_owned());
            (token, Body::from(bytes))
        }
        None => (None, body),
    };
    let matches = presented
        .is_some_and(|presented| bool::from(presented.as_bytes().ct_eq(expected.as_bytes())));
    if !matches {
        tracing::warn!(path = %parts.uri.path(), "CSRF token missing or wrong");
        return PanelError::Csrf.into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}

fn is_form(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"))
}
