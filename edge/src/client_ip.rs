//! Which IP a request comes from: the socket peer, or, when the peer is a
//! trusted proxy, the client it names (`latchkey_shared::forwarded`, the
//! rule control's panel uses too).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use latchkey_shared::api::ErrorCode;

use crate::error::EdgeError;
use crate::routes::AppState;

/// The caller's IP as an extractor: reads the headers in place (the
/// `HeaderMap` extractor would copy them on every request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub std::net::IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = EdgeError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, EdgeError> {
        let ConnectInfo(peer) = ConnectInfo::<SocketAddr>::from_request_parts(parts, app)
            .await
            .map_err(|_| EdgeError::new(ErrorCode::Internal, "the peer address is unknown"))?;
        let values = |name: &str| {
            parts
                .headers
                .get_all(name)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .collect::<Vec<_>>()
        };
        if app.trusted_proxies.is_empty() {
            return Ok(Self(peer.ip()));
        }
        let (forwarded_for, forwarded) = (values("x-forwarded-for"), values("forwarded"));
        Ok(Self(app.trusted_proxies.client_ip(
            peer.ip(),
            forwarded_for.into_iter(),
            forwarded.into_iter(),
        )))
    }
}
