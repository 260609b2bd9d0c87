//! Sessions under the concurrent-session limit, heartbeats, and the reaper.
//!
//! Starting a session locks the license row, so the limit is exact under
//! concurrency: with a limit of 1 only one of any number of simultaneous
//! starts wins. An ended session goes to the outbox, so edges refuse its
//! token until the token would have expired anyway.
//!
//! A session's heartbeat interval is its product's, else the edge
//! configuration's (`db::settings`): what edges tell its client, and what the
//! reaper and the monitor judge it by.

use std::net::IpAddr;

use latchkey_shared::api::{ErrorCode, SessionStartResponse};
use latchkey_shared::fingerprint::CanonicalFingerprint;
use latchkey_shared::snapshot::RevokedSession;
use latchkey_shared::token::{self, SessionClaims};
use latchkey_shared::{ClientKey, SigningKeyPair};
use serde::Serialize;
use sqlx::{PgExecutor, PgPool, Postgres, QueryBuilder};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::audit::{self, Change};
use super::devices::{active_devices, check_usable, find_device};
use super::{licenses, session_ends, settings};
use crate::context::RequestContext;
use crate::error::{DomainError, DomainResult, Entity};

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Session {
    pub id: Uuid,
    pub license_id: Uuid,
    pub device_id: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_heartbeat_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub token_expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    pub end_reason: Option<String>,
    pub app_version: Option<String>,
}

/// How sessions are signed and timed.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub signer: SigningKeyPair,
    pub token_ttl_secs: i64,
}

#[derive(Debug, Clone)]
pub struct StartRequest {
    pub key: ClientKey,
    pub fingerprint: CanonicalFingerprint,
    pub app_version: Option<String>,
    pub take_over: bool,
    pub ip: Option<IpAddr>,
    pub edge_id: Option<Uuid>,
}

const COLUMNS: &str = "id, license_id, device_id, started_at, last_heartbeat_at, token_expires_at, ended_at, end_reason, app_version";

pub async fn start(
    pool: &PgPool,
    _ctx: &RequestContext,
    settings: &SessionSettings,
    request: &StartRequest,
) -> DomainResult<SessionStartResponse> {
    if request.app_version.as_ref().is_some_and(|v| v.len() > 64) {
        return Err(DomainError::invalid("app_version", "at most 64 characters"));
    }
    let now = OffsetDateTime::now_utc();
    let mut tx = pool.begin().await?;
    let license = licenses::lock_by_key_hash(&mut tx, &request.key.hash().0).await?;
    check_usable(&license, now)?;
    let devices = active_devices(&mut tx, license.id).await?;
    let (device, _) = find_device(&devices, &request.fingerprint).ok_or_else(|| {
        DomainError::refused(
            ErrorCode::FingerprintMismatch,
            "activate this machine before starting a session",
        )
    })?;
    let open: Vec<Session> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM sessions WHERE license_id = $1 AND ended_at IS NULL ORDER BY started_at, id"
    ))
    .bind(license.id)
    .fetch_all(&mut *tx)
    .await?;
    let limit = license.session_limit as usize;
    let mut ended_session_id = None;
    if limit > 0 && open.len() >= limit {
        if !(request.take_over && license.allow_session_takeover) {
            return Err(DomainError::refused(
                ErrorCode::SessionActiveElsewhere,
                format!(
                    "{} session(s) already running, the most this license allows",
                    open.len()
                ),
            ));
        }
        // Take over: end the oldest sessions until one seat is free.
        for old in &open[..open.len() + 1 - limit] {
            session_ends::end_one(&mut tx, old.id, "takeover").await?;
            ended_session_id = Some(old.id);
        }
    }
    let default_interval = settings::edge_config(&mut *tx)
        .await?
        .heartbeat_interval_secs;
    let heartbeat_interval: i32 = sqlx::query_scalar(
        "SELECT coalesce(heartbeat_interval_secs, $2) FROM products WHERE id = $1",
    )
    .bind(license.product_id)
    .bind(default_interval as i32)
    .fetch_one(&mut *tx)
    .await?;
    let token_expires_at = now + Duration::seconds(settings.token_ttl_secs);
    let session_id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO sessions (id, license_id, device_id, started_at, last_heartbeat_at, token_expires_at, edge_id,
                               ip, app_version)
         VALUES ($1, $2, $3, $4, $4, $5, $6, $7::inet, $8)",
    )
    .bind(session_id)
    .bind(license.id)
    .bind(device.id)
    .bind(now)
    .bind(token_expires_at)
    .bind(request.edge_id)
    .bind(request.ip.map(|ip| ip.to_string()))
    .bind(&request.app_version)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let claims = SessionClaims {
        session_id,
        license_id: license.id,
        key_hash: request.key.hash(),
        fingerprint: request.fingerprint.hash(),
        issued_at: now.unix_timestamp(),
        expires_at: token_expires_at.unix_timestamp(),
    };
    Ok(SessionStartResponse {
        session_id,
        session_token: token::sign(&claims, &settings.signer),
        // The products table holds it within 10..=86400.
        heartbeat_interval_secs: heartbeat_interval as u32,
        expires_at: claims.expires_at,
        ended_session_id,
    })
}

/// Records a heartbeat; refused for a session that has ended.
pub async fn heartbeat(
    pool: &PgPool,
    session_id: Uuid,
    at: OffsetDateTime,
) -> DomainResult<Session> {
    let session: Session = sqlx::query_as(&format!(
        "UPDATE sessions SET last_heartbeat_at = greatest(last_heartbeat_at, $2)
          WHERE id = $1 AND ended_at IS NULL RETURNING {COLUMNS}"
    ))
    .bind(session_id)
    .bind(at)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| DomainError::refused(ErrorCode::SessionRevoked, "the session has ended"))?;
    Ok(session)
}

/// Ends a session; `ended` is false when it had already ended.
pub async fn end(pool: &PgPool, session_id: Uuid, reason: &str) -> DomainResult<bool> {
    let mut tx = pool.begin().await?;
    let session: Session = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM sessions WHERE id = $1 FOR UPDATE"
    ))
    .bind(session_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(DomainError::NotFound(Entity::Session))?;
    if session.ended_at.is_some() {
        return Ok(false);
    }
    session_ends::end_one(&mut tx, session.id, reason).await?;
    tx.commit().await?;
    Ok(true)
}

/// An admin terminates a live session.
pub async fn terminate(
    pool: &PgPool,
    ctx: &RequestContext,
    session_id: Uuid,
) -> DomainResult<Session> {
    let mut tx = pool.begin().await?;
    let session: Session = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM sessions WHERE id = $1 FOR UPDATE"
    ))
    .bind(session_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(DomainError::NotFound(Entity::Session))?;
    if session.ended_at.is_some() {
        return Err(DomainError::Conflict {
            field: None,
            message: "the session has already ended".into(),
        });
    }
    session_ends::end_one(&mut tx, session.id, "admin").await?;
    let change =
        Change::new("session.terminate", "session", session_id).before(serde_json::json!(session));
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(session)
}

/// How long after its last heartbeat a session is stale: twice the
/// interval, so one heartbeat lost on the way is forgiven. The reaper ends
/// a stale session; until it runs, the panel shows the session overdue.
pub fn heartbeat_deadline(heartbeat_interval_secs: u32) -> Duration {
    Duration::seconds(2 * i64::from(heartbeat_interval_secs))
}

/// [`heartbeat_deadline`] in SQL, with the numbers of its parameters:
/// session `s` of product `p` is past it at `now`, its interval `p`'s or the
/// edge configuration's `default`; and, so the open sessions' index answers
/// first, its heartbeat is older than `cutoff`, the shortest deadline of any
/// product ([`earliest_cutoff`]).
fn overdue(now: u8, default: u8, cutoff: u8) -> String {
    format!(
        "s.last_heartbeat_at < ${cutoff} AND s.last_heartbeat_at
           < ${now} - make_interval(secs => 2 * coalesce(p.heartbeat_interval_secs, ${default}))"
    )
}

/// The newest heartbeat time any open session may be overdue with at `now`:
/// the deadline of the shortest interval, a product's or `default_interval`.
async fn earliest_cutoff(
    db: impl PgExecutor<'_>,
    default_interval: u32,
    now: OffsetDateTime,
) -> DomainResult<OffsetDateTime> {
    // `least` skips a NULL minimum: no product sets its own interval.
    let shortest: i32 =
        sqlx::query_scalar("SELECT least($1, min(heartbeat_interval_secs)) FROM products")
            .bind(default_interval as i32)
            .fetch_one(db)
            .await?;
    Ok(now - heartbeat_deadline(shortest as u32))
}

/// Ends every session past its [`heartbeat_deadline`]. Returns how many it
/// ended.
pub async fn reap(pool: &PgPool, now: OffsetDateTime) -> DomainResult<u64> {
    let mut tx = pool.begin().await?;
    let default_interval = settings::edge_config(&mut *tx)
        .await?
        .heartbeat_interval_secs;
    let cutoff = earliest_cutoff(&mut *tx, default_interval, now).await?;
    let ended: Vec<Uuid> = sqlx::query_scalar(&format!(
        "UPDATE sessions s SET ended_at = $1, end_reason = 'reaped'
           FROM licenses l JOIN products p ON p.id = l.product_id
          WHERE l.id = s.license_id AND s.ended_at IS NULL AND {}
          RETURNING s.id",
        overdue(1, 2, 3)
    ))
    .bind(now)
    .bind(default_interval as i32)
    .bind(cutoff)
    .fetch_all(&mut *tx)
    .await?;
    session_ends::push_ended(&mut tx, &ended).await?;
    tx.commit().await?;
    Ok(ended.len() as u64)
}

/// Every session [`list`] would show, most recently started first, streamed.
pub fn stream(
    pool: PgPool,
    open_only: bool,
    license_id: Option<Uuid>,
) -> super::RowStream<Session> {
    let mut sql =
        QueryBuilder::<Postgres>::new(format!("SELECT {COLUMNS} FROM sessions WHERE true"));
    push_list_filter(&mut sql, open_only, license_id);
    sql.push(" ORDER BY started_at DESC, id");
    super::stream_rows(pool, sql)
}

/// How many sessions [`stream`] sends.
pub async fn count(pool: &PgPool, open_only: bool, license_id: Option<Uuid>) -> DomainResult<i64> {
    let mut sql = QueryBuilder::<Postgres>::new("SELECT count(*) FROM sessions WHERE true");
    push_list_filter(&mut sql, open_only, license_id);
    Ok(sql.build_query_scalar().fetch_one(pool).await?)
}

fn push_list_filter(
    sql: &mut QueryBuilder<'_, Postgres>,
    open_only: bool,
    license_id: Option<Uuid>,
) {
    if open_only {
        sql.push(" AND ended_at IS NULL");
    }
    if let Some(license) = license_id {
        sql.push(" AND license_id = ").push_bind(license);
    }
}

pub async fn list(
    pool: &PgPool,
    open_only: bool,
    license_id: Option<Uuid>,
    page: u32,
    per_page: u32,
) -> DomainResult<(Vec<Session>, i64)> {
    let mut sql =
        QueryBuilder::<Postgres>::new(format!("SELECT {COLUMNS} FROM sessions WHERE true"));
    push_list_filter(&mut sql, open_only, license_id);
    sql.push(" ORDER BY started_at DESC, id LIMIT ")
        .push_bind(i64::from(per_page))
        .push(" OFFSET ")
        .push_bind(i64::from(page.saturating_sub(1)) * i64::from(per_page));
    let items = sql.build_query_as().fetch_all(pool).await?;
    Ok((items, count(pool, open_only, license_id).await?))
}

/// Ended sessions whose tokens are still unexpired: edges must refuse them.
pub async fn revoked_for_snapshot(
    pool: &PgPool,
    now: OffsetDateTime,
) -> DomainResult<Vec<RevokedSession>> {
    let rows: Vec<(Uuid, OffsetDateTime)> = sqlx::query_as(
        "SELECT id, token_expires_at FROM sessions WHERE ended_at IS NOT NULL AND token_expires_at > $1",
    )
    .bind(now)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(session_id, expires)| RevokedSession {
            session_id,
            token_expires_at: expires.unix_timestamp(),
        })
        .collect())
}

/// An open session as the panel's live monitor shows it: with its license,
/// customer, device and the edge it was started at.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OpenSession {
    pub id: Uuid,
    pub license_id: Uuid,
    pub key_prefix: String,
    pub product_name: String,
    pub customer_id: Option<Uuid>,
    pub customer_name: Option<String>,
    pub device_id: Option<Uuid>,
    pub device_name: Option<String>,
    pub ip: Option<String>,
    pub app_version: Option<String>,
    pub started_at: OffsetDateTime,
    pub last_heartbeat_at: OffsetDateTime,
    /// `None`: not started through an edge, or the edge is gone.
    pub edge_name: Option<String>,
    /// Its product's, else the edge configuration's.
    pub heartbeat_interval_secs: i32,
}

impl OpenSession {
    /// How long the session is past its [`heartbeat_deadline`], if it is:
    /// the reaper ends it at its next run.
    pub fn overdue_by(&self, now: OffsetDateTime) -> Option<Duration> {
        let deadline = heartbeat_deadline(self.heartbeat_interval_secs as u32);
        let late = now - (self.last_heartbeat_at + deadline);
        late.is_positive().then_some(late)
    }
}

/// Which open sessions the monitor shows; `None`: any.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveFilter {
    pub product_id: Option<i32>,
    pub customer_id: Option<Uuid>,
}

/// The newest open sessions matching a filter, and how many match in all.
#[derive(Debug, Clone, PartialEq)]
pub struct LivePage {
    pub sessions: Vec<OpenSession>,
    pub total: i64,
    /// Of `total`, those past their heartbeat deadline.
    pub overdue: i64,
}

/// What the monitor shows of a session, the edge configuration's interval
/// bound as `${default_param}`; a statement adds its `WHERE`.
fn live_select(default_param: u8) -> String {
    format!(
        "SELECT s.id, s.license_id, l.key_prefix, p.name AS product_name, l.customer_id,
        c.name AS customer_name, s.device_id, d.name AS device_name, host(s.ip) AS ip,
        s.app_version, s.started_at, s.last_heartbeat_at, e.name AS edge_name,
        coalesce(p.heartbeat_interval_secs, ${default_param}) AS heartbeat_interval_secs
   FROM sessions s
   JOIN licenses l ON l.id = s.license_id
   JOIN products p ON p.id = l.product_id
   LEFT JOIN customers c ON c.id = l.customer_id
   LEFT JOIN devices d ON d.id = s.device_id
   LEFT JOIN edges e ON e.id = s.edge_id"
    )
}

const LIVE_FILTER: &str = "s.ended_at IS NULL AND ($1::int IS NULL OR l.product_id = $1)
     AND ($2::uuid IS NULL OR l.customer_id = $2)";

/// At most `limit` open sessions, newest first, with the counts of all that
/// match (overdue ones by [`heartbeat_deadline`], the reaper's rule).
pub async fn live(
    pool: &PgPool,
    filter: LiveFilter,
    now: OffsetDateTime,
    limit: u32,
) -> DomainResult<LivePage> {
    let default_interval = settings::edge_config(pool).await?.heartbeat_interval_secs;
    let sessions = sqlx::query_as(&format!(
        "{} WHERE {LIVE_FILTER} ORDER BY s.started_at DESC, s.id LIMIT $3",
        live_select(4)
    ))
    .bind(filter.product_id)
    .bind(filter.customer_id)
    .bind(i64::from(limit))
    .bind(default_interval as i32)
    .fetch_all(pool)
    .await?;
    // Unfiltered, the open sessions' partial index answers alone: 2 ms at
    // 20 000 open sessions, against 33 ms joined to their licenses.
    let counted = if filter == LiveFilter::default() {
        "sessions s WHERE s.ended_at IS NULL AND $1::int IS NULL AND $2::uuid IS NULL".to_owned()
    } else {
        format!("sessions s JOIN licenses l ON l.id = s.license_id WHERE {LIVE_FILTER}")
    };
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {counted}"))
        .bind(filter.product_id)
        .bind(filter.customer_id)
        .fetch_one(pool)
        .await?;
    // Overdue sessions are few: the cutoff leaves the join only them.
    let cutoff = earliest_cutoff(pool, default_interval, now).await?;
    let overdue: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM sessions s JOIN licenses l ON l.id = s.license_id
           JOIN products p ON p.id = l.product_id
          WHERE {LIVE_FILTER} AND {}",
        overdue(3, 4, 5)
    ))
    .bind(filter.product_id)
    .bind(filter.customer_id)
    .bind(now)
    .bind(default_interval as i32)
    .bind(cutoff)
    .fetch_one(pool)
    .await?;
    Ok(LivePage {
        sessions,
        total,
        overdue,
    })
}

/// Every open session the monitor's filter matches, newest first, as the
/// API lists sessions, streamed.
pub fn stream_live(pool: PgPool, filter: LiveFilter) -> super::RowStream<Session> {
    let columns: Vec<String> = COLUMNS.split(", ").map(|c| format!("s.{c}")).collect();
    let mut sql = QueryBuilder::<Postgres>::new(format!(
        "SELECT {} FROM sessions s JOIN licenses l ON l.id = s.license_id WHERE s.ended_at IS NULL",
        columns.join(", ")
    ));
    if let Some(product) = filter.product_id {
        sql.push(" AND l.product_id = ").push_bind(product);
    }
    if let Some(customer) = filter.customer_id {
        sql.push(" AND l.customer_id = ").push_bind(customer);
    }
    sql.push(" ORDER BY s.started_at DESC, s.id");
    super::stream_rows(pool, sql)
}

/// How many open sessions the monitor's filter matches.
pub async fn live_count(pool: &PgPool, filter: LiveFilter) -> DomainResult<i64> {
    Ok(sqlx::query_scalar(&format!(
        "SELECT count(*) FROM sessions s JOIN licenses l ON l.id = s.license_id WHERE {LIVE_FILTER}"
    ))
    .bind(filter.product_id)
    .bind(filter.customer_id)
    .fetch_one(pool)
    .await?)
}

/// Those of `ids` that are still open, newest first.
pub async fn live_among(pool: &PgPool, ids: &[Uuid]) -> DomainResult<Vec<OpenSession>> {
    let default_interval = settings::edge_config(pool).await?.heartbeat_interval_secs;
    Ok(sqlx::query_as(&format!(
        "{} WHERE s.id = ANY($1) AND s.ended_at IS NULL ORDER BY s.started_at DESC, s.id",
        live_select(2)
    ))
    .bind(ids)
    .bind(default_interval as i32)
    .fetch_all(pool)
    .await?)
}

/// Customers with an open session now, by name: what the monitor's
/// customer filter offers (at most `limit`).
pub async fn live_customers(pool: &PgPool, limit: u32) -> DomainResult<Vec<(Uuid, String)>> {
    Ok(sqlx::query_as(
        "SELECT DISTINCT c.id, c.name
           FROM sessions s
           JOIN licenses l ON l.id = s.license_id
           JOIN customers c ON c.id = l.customer_id
          WHERE s.ended_at IS NULL
          ORDER BY c.name, c.id
          LIMIT $1",
    )
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?)
}
