//! Which IP a request comes from: the socket peer, or, when the peer is a
//! trusted proxy, the nearest address in `X-Forwarded-For` that is not one.

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
        Ok(Self(client_ip(peer, &parts.headers, &app.trusted_proxies)))
    }
}

pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted_proxies: &[IpAddr]) -> IpAddr {
    let peer = peer.ip();
    if !trusted_proxies.contains(&peer) {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
        .collect::<Vec<_>>();
    // Walk back from the nearest hop: the first untrusted one is the client
    // as our own proxies saw it; anything further left the client could forge.
    forwarded
        .into_iter()
        .rev()
        .find(|ip| !trusted_proxies.contains(ip))
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", value.parse().unwrap());
        headers
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let from_proxy = SocketAddr::new(proxy, 4000);
        let stranger = SocketAddr::new("198.51.100.7".parse().unwrap(), 4000);
        let forged = headers("1.1.1.1, 203.0.113.9");
        assert_eq!(client_ip(stranger, &forged, &[proxy]), stranger.ip());
        assert_eq!(
            client_ip(from_proxy, &forged, &[proxy]),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(from_proxy, &headers("203.0.113.9, 10.0.0.1"), &[proxy]),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(from_proxy, &HeaderMap::new(), &[proxy]), proxy);
    }
}
