//! What a panel request can fail with, and the page each failure shows.
//! Every refusal carries a stable code, in the page and in `x-error-code`.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use crate::error::{DomainError, INTERNAL_MESSAGE, cause_chain};

/// The header naming a refusal's stable code.
pub const X_ERROR_CODE: &str = "x-error-code";

#[derive(Debug, thiserror::Error)]
pub enum PanelError {
    #[error("log in first")]
    LoginRequired,
    #[error("enter your second factor first")]
    SecondFactorRequired,
    #[error("this needs the admin role")]
    Forbidden,
    #[error("the form is stale or forged: reload the page and try again")]
    Csrf,
    #[error("logins from your address are blocked")]
    IpBlocked,
    #[error("too many login attempts: wait a minute")]
    RateLimited,
    #[error("no such page")]
    NotFound,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("login counters unavailable: {0}")]
    Guard(#[from] super::guard::GuardError),
    #[error("{0}")]
    Internal(String),
}

pub type PanelResult<T> = Result<T, PanelError>;

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    assets: &'static str,
    status: u16,
    code: &'a str,
    message: String,
}

impl PanelError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::LoginRequired | Self::SecondFactorRequired => {
                (StatusCode::SEE_OTHER, "LOGIN_REQUIRED")
            }
            Self::Forbidden => (StatusCode::FORBIDDEN, "FORBIDDEN"),
            Self::Csrf => (StatusCode::FORBIDDEN, "CSRF_INVALID"),
            Self::IpBlocked => (StatusCode::FORBIDDEN, "IP_BLOCKED"),
            Self::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED"),
            Self::NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            Self::Invalid(_) => (StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
            Self::Domain(error) => {
                let code = error.code();
                let status = StatusCode::from_u16(code.http_status())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                (status, code.as_str())
            }
            Self::Guard(_) => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        }
    }
}

impl IntoResponse for PanelError {
    fn into_response(self) -> Response {
        match self {
            Self::LoginRequired => return Redirect::to("/login").into_response(),
            Self::SecondFactorRequired => return Redirect::to("/login/2fa").into_response(),
            _ => {}
        }
        let (status, code) = self.status_and_code();
        let message = match &self {
            // The one mapping of a domain refusal; it logs a server-side cause.
            Self::Domain(error) => error.to_body().message,
            _ if status.is_server_error() => {
                // The cause is for the log, once; the page stays generic.
                tracing::error!(error = %cause_chain(&self), "panel request failed");
                INTERNAL_MESSAGE.to_owned()
            }
            _ => self.to_string(),
        };
        let page = ErrorPage {
            assets: super::assets::version(),
            status: status.as_u16(),
            code,
            message,
        };
        let body = page.render().unwrap_or_else(|_| code.to_owned());
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        headers.insert(X_ERROR_CODE, HeaderValue::from_static(code));
        response
    }
}
