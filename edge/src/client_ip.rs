//! Which IP a request comes from: the socket peer, or, when the peer is a
//! trusted proxy, the client it names (`latchkey_shared::forwarded`, the
//! rule control's panel uses too).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use latchkey_shared::api::ErrorCode;

use crate::error::EdgeError;
use crate::routes::AppState;

/// The caller's IP as an extractor: reads the headers in place (the
/// `HeaderMap` extractor would copy them on every request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = EdgeError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, EdgeError> {
        let ConnectInfo(peer) = ConnectInfo::<SocketAddr>::from_request_parts(parts, app)
            .await
            .map_err(|_| EdgeError::new(ErrorCode::Internal, "the peer address is unknown"))?;
        Ok(Self(client_ip(app, peer, &parts.headers)))
    }
}

/// The caller's IP for a request from `peer` with `headers`.
pub fn client_ip(app: &AppState, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    if app.trusted_proxies.is_empty() {
        return peer.ip();
    }
    let values = |name: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect::<Vec<_>>()
    };
    let (forwarded_for, forwarded) = (values("x-forwarded-for"), values("forwarded"));
    app.trusted_proxies
        .client_ip(peer.ip(), forwarded_for.into_iter(), forwarded.into_iter())
}
