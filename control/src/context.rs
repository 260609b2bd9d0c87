//! Who is asking, and from where: carried into every audit entry.

use std::net::IpAddr;

use serde::Serialize;

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
            request_id: uuid::Uuid::new_v4().to_string(),
            actor: Actor::system(name),
            ip: None,
            user_agent: None,
        }
    }
}
