//! Who is asking, and from where: carried into every audit entry. Read from
//! a request the same way by the admin API and the panel.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::request::Parts;
use axum::http::{HeaderName, header};
use latchkey_shared::forwarded::TrustedProxies;
use serde::Serialize;
use uuid::Uuid;

/// The header carrying the request id, both ways.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

const REQUEST_ID_MAX_LEN: usize = 128;
const USER_AGENT_MAX_CHARS: usize = 512;

/// The id of the request being answered, put in the request's extensions by
/// the app's request-id layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// Short, printable, and free of anything a log or header could trip on.
pub fn is_sane_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= REQUEST_ID_MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The kind of principal behind a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    Admin,
    ApiKey,
    Client,
    System,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: Option<String>,
    pub name: Option<String>,
}

/// One request's identity, for audit and logs.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub actor: Actor,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::ApiKey => "api_key",
            Self::Client => "client",
            Self::System => "system",
        }
    }
}

impl Actor {
    pub fn system(name: &str) -> Self {
        Self {
            kind: ActorKind::System,
            id: None,
            name: Some(name.to_owned()),
        }
    }
}

impl RequestContext {
    /// A context for jobs and the CLI: a fresh request id, a system actor.
    pub fn system(name: &str) -> Self {
        Self {
            request_id: Uuid::new_v4().to_string(),
            actor: Actor::system(name),
            ip: None,
            user_agent: None,
        }
    }

    /// The admin user behind the request, when an admin made it (not a key,
    /// a client or the system).
    pub fn admin_id(&self) -> Option<Uuid> {
        match self.actor.kind {
            ActorKind::Admin => self.actor.id.as_deref().and_then(|id| id.parse().ok()),
            _ => None,
        }
    }
}

/// The request's id, client address and user agent, with a system actor
/// until someone authenticates. The address is the socket peer's, or the
/// client's behind the app's [`TrustedProxies`]; `ConnectInfo` is optional:
/// without it (a test calling the router directly) the address is unknown.
pub fn client_context(parts: &Parts) -> RequestContext {
    let request_id = parts
        .extensions
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_else(|| Uuid::new_v4().to_string());
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .or_else(|| {
            parts
                .extensions
                .get::<MockConnectInfo<SocketAddr>>()
                .map(|MockConnectInfo(addr)| addr.ip())
        });
    let ip = peer.map(|peer| match parts.extensions.get::<TrustedProxies>() {
        Some(trusted) => trusted.client_ip(
            peer,
            header_values(&parts.headers, "x-forwarded-for"),
            header_values(&parts.headers, header::FORWARDED.as_str()),
        ),
        None => peer,
    });
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .map(|agent| agent.chars().take(USER_AGENT_MAX_CHARS).collect());
    RequestContext {
        request_id,
        actor: Actor {
            kind: ActorKind::System,
            id: None,
            name: None,
        },
        ip,
        user_agent,
    }
}

fn header_values<'a>(
    headers: &'a axum::http::HeaderMap,
    name: &str,
) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_must_be_sane() {
        assert!(is_sane_request_id("3f1c2a9e-7a0b-4c51-9f7e-0d1a2b3c4d5e"));
        assert!(is_sane_request_id("req_01:abc.def"));
        for bad in ["", "a b", "a\u{7f}", "é", "x\ny", &"a".repeat(129)] {
            assert!(!is_sane_request_id(bad), "{bad:?}");
        }
    }
}
