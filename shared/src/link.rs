//! The edge–control link: what travels over QUIC between them.
//!
//! Every message has a stream of its own, so QUIC's stream end is the
//! message end and no framing is needed:
//! - edge → control, bidirectional, first: [`Hello`], answered by [`Welcome`];
//! - control → edge, unidirectional: the bytes of one signed snapshot (full
//!   or delta), in sequence order;
//! - edge → control, unidirectional: [`Applied`] once a snapshot is in use;
//! - edge → control, bidirectional: one [`Call`] answered by one [`Reply`]
//!   (usage batches too: the reply comes once the batch is committed).
//!
//! Control messages are JSON (small, and the client API types are serde
//! types already); snapshots travel as their signed bytes.

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::api::{
    ActivateRequest, ActivateResponse, DeactivateRequest, DeactivateResponse, ErrorBody,
    LeaseRequest, LeaseResponse, SessionEndRequest, SessionEndResponse, SessionStartRequest,
    SessionStartResponse, TransferRequest,
};
use crate::usage::UsageBatch;

/// The one application protocol of the link.
pub const ALPN: &[u8] = b"latchkey-link/1";
/// The name control's link certificate is issued for and edges check.
pub const SERVER_NAME: &str = "latchkey-control";
/// Largest control message (a [`Call`] or [`Reply`]), in bytes.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;
/// How often each end pings a quiet link, and how long a silent peer is
/// waited for before its link is dropped: a peer gone without a word
/// (SIGKILL, a cut cable) is noticed within seconds, not QUIC's default
/// half minute, so an edge reconnects to a restarted control at once.
pub const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(1);
pub const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);
/// Largest snapshot an edge accepts over the link, in bytes.
pub const MAX_SNAPSHOT_BYTES: usize = 4 * 1024 * 1024 * 1024 - 1;

/// The edge introduces itself. Its identity is its TLS client certificate;
/// an edge control does not know yet presents a one-time enrolment token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub name: String,
    pub version: String,
    /// The snapshot sequence the edge serves now (from its cache).
    pub held_sequence: Option<u64>,
    #[serde(default)]
    pub enrol_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Welcome {
    Accepted { edge_id: Uuid },
    Refused { reason: String },
}

/// The edge serves this snapshot sequence now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub sequence: u64,
}

/// A client call control decides, with what the edge knows of the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Call {
    Activate {
        request: ActivateRequest,
        client_ip: Option<IpAddr>,
    },
    Deactivate {
        request: DeactivateRequest,
    },
    Transfer {
        request: TransferRequest,
        client_ip: Option<IpAddr>,
    },
    Lease {
        request: LeaseRequest,
    },
    SessionStart {
        request: SessionStartRequest,
        client_ip: Option<IpAddr>,
    },
    SessionEnd {
        request: SessionEndRequest,
    },
    /// Certify this edge's answer-signing key (`crate::answer`): base64url
    /// of its Ed25519 public key. Asked after each connect and again before
    /// the certificate expires.
    Certify {
        public_key: String,
    },
    /// Usage records; control fills in the edge id it knows the link by.
    /// Shared, not copied: the edge keeps the batch until it is committed.
    Usage(Arc<UsageBatch>),
}

/// Control's answer to a [`Call`]: the response the client gets, or the
/// refusal with its code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Activated(ActivateResponse),
    Deactivated(DeactivateResponse),
    Lease(LeaseResponse),
    SessionStarted(SessionStartResponse),
    SessionEnded(SessionEndResponse),
    /// The certificate (token text) of the key in [`Call::Certify`].
    Certified {
        certificate: String,
        expires_at: i64,
    },
    /// The batch is stored (now, or by an earlier delivery): forget it.
    UsageCommitted {
        batch_id: Uuid,
        duplicate: bool,
    },
    Refused(ErrorBody),
}

/// Each answer a call expects, taken out of its [`Reply`]. Any other reply
/// (control's [`Reply::Refused`], or a kind the call never gets) is handed
/// back whole, for the caller's one refusal path.
macro_rules! answer_from_reply {
    ($($answer:ty => $variant:ident),* $(,)?) => {$(
        impl TryFrom<Reply> for $answer {
            type Error = Reply;

            fn try_from(reply: Reply) -> Result<Self, Reply> {
                match reply {
                    Reply::$variant(answer) => Ok(answer),
                    other => Err(other),
                }
            }
        }
    )*};
}

answer_from_reply! {
    ActivateResponse => Activated,
    DeactivateResponse => Deactivated,
    LeaseResponse => Lease,
    SessionStartResponse => SessionStarted,
    SessionEndResponse => SessionEnded,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ErrorCode;

    #[test]
    fn an_answer_comes_out_of_its_own_reply_only() {
        let ended = SessionEndResponse {
            session_id: Uuid::from_u128(7),
            ended: true,
        };
        assert_eq!(
            SessionEndResponse::try_from(Reply::SessionEnded(ended.clone())),
            Ok(ended.clone())
        );
        let refused = Reply::Refused(ErrorBody::new(ErrorCode::SessionNotFound, "gone"));
        assert_eq!(SessionEndResponse::try_from(refused.clone()), Err(refused));
        let other = Reply::SessionEnded(ended);
        assert_eq!(LeaseResponse::try_from(other.clone()), Err(other));
    }
}
