//! Client calls forwarded by edges, decided here by the same services (and
//! the same single transactions) as everywhere else in control.

use std::net::IpAddr;

use latchkey_shared::answer;
use latchkey_shared::api::{ErrorBody, ErrorCode, SessionEndResponse};
use latchkey_shared::fingerprint::{CanonicalFingerprint, Fingerprint};
use latchkey_shared::link::{Call, Reply};
use latchkey_shared::token::{self, SessionClaims, TokenError};
use latchkey_shared::{ClientKey, TrustedKeys};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::context::{Actor, ActorKind, RequestContext};
use crate::db::devices::{self, LeaseIssuer, SeatRequest};
use crate::db::edges;
use crate::db::ingest::{self, IngestError, IngestOutcome, KnownPartitions};
use crate::db::sessions::{self, SessionSettings, StartRequest};
use crate::error::cause_chain;

/// What deciding a call needs.
#[derive(Debug)]
pub struct Deciders {
    pub pool: PgPool,
    pub issuer: LeaseIssuer,
    pub sessions: SessionSettings,
    /// To read the session tokens control itself signed.
    pub trusted: TrustedKeys,
    /// Heartbeat partitions known to exist (usage ingest).
    pub partitions: KnownPartitions,
}

/// Decides one call from the edge `edge_id`.
pub async fn decide(deciders: &Deciders, edge_id: Uuid, call: Call) -> Reply {
    match answer(deciders, edge_id, call).await {
        Ok(reply) => reply,
        Err(refusal) => Reply::Refused(refusal),
    }
}

async fn answer(d: &Deciders, edge_id: Uuid, call: Call) -> Result<Reply, ErrorBody> {
    let pool = &d.pool;
    match call {
        Call::Activate { request, client_ip } => {
            let ctx = context(edge_id, client_ip);
            let seat = SeatRequest {
                key: key(&request.license_key)?,
                fingerprint: fingerprint(&request.fingerprint)?,
                device_name: request.device_name,
                app_version: request.app_version,
                ip: client_ip,
                idempotency_key: request.idempotency_key,
            };
            devices::activate(pool, &ctx, &d.issuer, &seat)
                .await
                .map(Reply::Activated)
                .map_err(|error| error.to_body())
        }
        Call::Deactivate { request } => {
            let ctx = context(edge_id, None);
            let key = key(&request.license_key)?;
            let fingerprint = fingerprint(&request.fingerprint)?;
            devices::deactivate(pool, &ctx, &key, &fingerprint)
                .await
                .map(Reply::Deactivated)
                .map_err(|error| error.to_body())
        }
        Call::Transfer { request, client_ip } => {
            let ctx = context(edge_id, client_ip);
            let seat = SeatRequest {
                key: key(&request.license_key)?,
                fingerprint: fingerprint(&request.fingerprint)?,
                device_name: request.device_name,
                app_version: None,
                ip: client_ip,
                idempotency_key: request.idempotency_key,
            };
            devices::transfer(pool, &ctx, &d.issuer, request.from_device_id, &seat)
                .await
                .map(Reply::Activated)
                .map_err(|error| error.to_body())
        }
        Call::Lease { request } => {
            let key = key(&request.license_key)?;
            let fingerprint = fingerprint(&request.fingerprint)?;
            devices::refresh_lease(pool, &d.issuer, &key, &fingerprint)
                .await
                .map(Reply::Lease)
                .map_err(|error| error.to_body())
        }
        Call::SessionStart { request, client_ip } => {
            let ctx = context(edge_id, client_ip);
            let start = StartRequest {
                key: key(&request.license_key)?,
                fingerprint: fingerprint(&request.fingerprint)?,
                app_version: request.app_version,
                take_over: request.take_over,
                ip: client_ip,
                edge_id: Some(edge_id),
            };
            sessions::start(pool, &ctx, &d.sessions, &start)
                .await
                .map(Reply::SessionStarted)
                .map_err(|error| error.to_body())
        }
        Call::Usage(batch) => {
            // The link knows which edge sent it; the batch does not decide.
            // Just decoded, so the `Arc` is not shared: no copy.
            let mut batch = std::sync::Arc::unwrap_or_clone(batch);
            batch.edge_id = edge_id;
            let outcome = ingest::ingest_batch(pool, &d.partitions, &batch).await;
            count_ingest(&outcome);
            match outcome {
                Ok(outcome) => Ok(Reply::UsageCommitted {
                    batch_id: batch.batch_id,
                    duplicate: outcome == IngestOutcome::Duplicate,
                }),
                Err(IngestError::Invalid(invalid)) => Err(ErrorBody {
                    field: Some("records".into()),
                    ..ErrorBody::new(ErrorCode::InvalidRequest, invalid.to_string())
                }),
                Err(IngestError::Database(error)) => {
                    tracing::error!(error = %cause_chain(&error), batch = %batch.batch_id, "usage batch not stored; the edge resends it");
                    Err(ErrorBody::new(
                        ErrorCode::Internal,
                        "usage batch not stored",
                    ))
                }
            }
        }
        Call::Certify { public_key } => {
            let key = answer::parse_public_key(&public_key).ok_or_else(|| ErrorBody {
                field: Some("public_key".into()),
                ..ErrorBody::new(
                    ErrorCode::InvalidRequest,
                    "not an Ed25519 public key (base64url of 32 bytes)",
                )
            })?;
            // The edge is the one this link's TLS identity belongs to: a
            // certificate names the edge that asked, never one it claims.
            let now = OffsetDateTime::now_utc().unix_timestamp();
            let (certificate, claims) = answer::certify(
                edge_id,
                &key,
                &d.issuer.signer,
                now,
                answer::CERTIFICATE_TTL_SECS,
            );
            tracing::info!(%edge_id, expires_at = claims.expires_at, "edge answer key certified");
            // Shown in the panel; the certificate holds whether or not it is.
            if let Err(error) = edges::certified(pool, edge_id, claims.expires_at).await {
                tracing::warn!(%edge_id, error = %cause_chain(&error), "the edge's certificate was not recorded");
            }
            Ok(Reply::Certified {
                certificate,
                expires_at: claims.expires_at,
            })
        }
        Call::SessionEnd { request } => {
            let now = OffsetDateTime::now_utc().unix_timestamp();
            let claims: SessionClaims = token::verify(&request.session_token, &d.trusted, now)
                .map_err(|error| match error {
                    TokenError::Expired { .. } => {
                        ErrorBody::new(ErrorCode::SessionExpired, "the session token has expired")
                    }
                    other => ErrorBody {
                        field: Some("session_token".into()),
                        ..ErrorBody::new(ErrorCode::InvalidToken, other.to_string())
                    },
                })?;
            let ended = sessions::end(pool, claims.session_id, "client")
                .await
                .map_err(|error| error.to_body())?;
            Ok(Reply::SessionEnded(SessionEndResponse {
                session_id: claims.session_id,
                ended,
            }))
        }
    }
}

/// Calls from an edge are audited as the client, seen through that edge.
fn context(edge_id: Uuid, client_ip: Option<IpAddr>) -> RequestContext {
    RequestContext {
        request_id: Uuid::new_v4().to_string(),
        actor: Actor {
            kind: ActorKind::Client,
            id: Some(edge_id.to_string()),
            name: Some("edge".into()),
        },
        ip: client_ip,
        user_agent: None,
    }
}

/// The key a forwarded call names. A legacy key reaches control only when
/// the edge found it in its snapshot.
fn key(text: &str) -> Result<ClientKey, ErrorBody> {
    text.parse()
        .map_err(|error: latchkey_shared::key::KeyParseError| ErrorBody {
            field: Some("license_key".into()),
            ..ErrorBody::new(ErrorCode::InvalidLicenseKey, error.to_string())
        })
}

fn fingerprint(fingerprint: &Fingerprint) -> Result<CanonicalFingerprint, ErrorBody> {
    fingerprint.canonicalize().map_err(|error| ErrorBody {
        field: Some(error.field.clone()),
        ..ErrorBody::new(ErrorCode::InvalidRequest, error.reason)
    })
}

fn count_ingest(outcome: &Result<IngestOutcome, IngestError>) {
    let label = match outcome {
        Ok(IngestOutcome::Committed { rows }) => {
            metrics::counter!("latchkey_control_ingest_records_total").increment(*rows);
            "committed"
        }
        Ok(IngestOutcome::Duplicate) => "duplicate",
        Err(IngestError::Invalid(_)) => "invalid",
        Err(IngestError::Database(_)) => "failed",
    };
    metrics::counter!("latchkey_control_ingest_batches_total", "outcome" => label).increment(1);
}
