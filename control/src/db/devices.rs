//! Seats: activation under the device limit, deactivation, transfer, leases.
//!
//! Every decision about a license's seats is taken with the license row
//! locked (`SELECT … FOR UPDATE`), so concurrent activations of one license
//! run one after another and the device limit is exact. So is the seat
//! change limit: a client may deactivate or transfer at most
//! `seat_change_limit` times per `seat_change_window_secs`, counted in
//! `device_transfers` (which records every seat change, a client's or an
//! admin's); an admin freeing a seat by id is never limited. A lease is
//! refreshed under the same lock, so a seat released in a transaction that
//! has not committed yet cannot be refreshed either.
//!
//! An idempotency key replays its first answer only for the same request
//! (call, machine, source device), only while the license is usable and the
//! seat the answer names is still held.

use std::net::IpAddr;

use latchkey_shared::api::{
    ActivateResponse, ActivationOutcome, DeactivateResponse, ErrorCode, LeaseResponse,
};
use latchkey_shared::fingerprint::{CanonicalFingerprint, DeviceDigest, MatchVerdict};
use latchkey_shared::snapshot::LicenseStatus;
use latchkey_shared::token::{self, Lease};
use latchkey_shared::{ClientKey, SigningKeyPair};
use serde::Serialize;
use serde_json::json;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};
use time::OffsetDateTime;
use uuid::Uuid;

use super::audit::{self, Change};
use super::licenses::{self, License};
use super::outbox::EntityKind;
use super::settings;
use crate::context::RequestContext;
use crate::error::{DomainError, DomainResult, Entity};

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Device {
    pub id: Uuid,
    pub license_id: Uuid,
    #[serde(serialize_with = "hex_bytes")]
    #[schema(value_type = String)]
    pub fingerprint_hash: Vec<u8>,
    #[serde(skip)]
    pub digest: Vec<u8>,
    pub components: serde_json::Value,
    pub name: Option<String>,
    pub status: String,
    pub app_version: Option<String>,
    /// Where the machine last called from, without a netmask.
    pub ip: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub deactivated_at: Option<OffsetDateTime>,
    pub deactivation_reason: Option<String>,
}

/// A client's activation or transfer, parsed and canonicalised.
#[derive(Debug, Clone)]
pub struct SeatRequest {
    pub key: ClientKey,
    pub fingerprint: CanonicalFingerprint,
    pub device_name: Option<String>,
    pub app_version: Option<String>,
    pub ip: Option<IpAddr>,
    pub idempotency_key: Option<String>,
}

/// Which call an idempotency key was first used with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SeatCall {
    Activate,
    Transfer { from_device: Uuid },
}

impl SeatCall {
    fn kind(self) -> &'static str {
        match self {
            Self::Activate => "activate",
            Self::Transfer { .. } => "transfer",
        }
    }

    fn source_device(self) -> Option<Uuid> {
        match self {
            Self::Activate => None,
            Self::Transfer { from_device } => Some(from_device),
        }
    }
}

/// A seat change, as `device_transfers` records it.
#[derive(Debug, Clone, Copy)]
enum SeatChange {
    Deactivate { device: Uuid, by: Initiator },
    Transfer { from: Uuid, to: Uuid, by: Initiator },
}

/// Who asked for a seat change: only a client's count against the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Initiator {
    Client,
    Admin,
}

/// How leases are signed. How long they last is the license's grace, else
/// its product's, else the edge configuration's (`db::settings`).
#[derive(Debug, Clone)]
pub struct LeaseIssuer {
    pub signer: SigningKeyPair,
}

const COLUMNS: &str = "id, license_id, fingerprint_hash, digest, components, name, status, app_version, host(ip) AS ip,
    first_seen_at,
    last_seen_at, deactivated_at, deactivation_reason";

fn hex_bytes<S: serde::Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&hex::encode(bytes))
}

/// Refuses a license that may not be used now, with the code that says why.
pub fn check_usable(license: &License, now: OffsetDateTime) -> DomainResult<()> {
    match license.status {
        LicenseStatus::Suspended => {
            return Err(DomainError::refused(
                ErrorCode::LicenseSuspended,
                "the license is suspended",
            ));
        }
        LicenseStatus::Revoked => {
            return Err(DomainError::refused(
                ErrorCode::LicenseRevoked,
                "the license is revoked",
            ));
        }
        LicenseStatus::Active => {}
    }
    if now < license.valid_from {
        return Err(DomainError::refused(
            ErrorCode::LicenseNotYetValid,
            "the license is not valid yet",
        ));
    }
    if license.valid_until.is_some_and(|until| until <= now) {
        return Err(DomainError::refused(
            ErrorCode::LicenseExpired,
            "the license has expired",
        ));
    }
    Ok(())
}

/// Takes a seat for the machine, or recognises the one it holds.
pub async fn activate(
    pool: &PgPool,
    ctx: &RequestContext,
    issuer: &LeaseIssuer,
    request: &SeatRequest,
) -> DomainResult<ActivateResponse> {
    validate(request)?;
    let now = OffsetDateTime::now_utc();
    let mut tx = pool.begin().await?;
    let license = licenses::lock_by_key_hash(&mut tx, &request.key.hash().0).await?;
    if let Some(answer) = replayed(&mut tx, &license, SeatCall::Activate, request, now).await? {
        return Ok(answer);
    }
    check_usable(&license, now)?;
    let devices = active_devices(&mut tx, license.id).await?;
    let hash = request.fingerprint.hash();
    let (device_id, outcome) = match find_device(&devices, &request.fingerprint) {
        Some((device, MatchVerdict::Exact)) if device.fingerprint_hash == hash.0 => {
            touch(&mut tx, device.id, request).await?;
            (device.id, ActivationOutcome::AlreadyActive)
        }
        Some((device, _))
            if stored_digest(device)
                .is_some_and(|stored| request.fingerprint.digest().covers(&stored)) =>
        {
            update_fingerprint(&mut tx, device.id, request).await?;
            (device.id, ActivationOutcome::Updated)
        }
        Some((device, _)) => {
            // The machine, reporting less than its device holds: the
            // stored digest stays, or later machines would be compared
            // with the weaker one.
            touch(&mut tx, device.id, request).await?;
            (device.id, ActivationOutcome::AlreadyActive)
        }
        None => {
            if devices.len() >= license.device_limit as usize {
                return Err(DomainError::refused(
                    ErrorCode::DeviceLimitReached,
                    format!(
                        "all {} seats of this license are taken",
                        license.device_limit
                    ),
                ));
            }
            (
                insert_device(&mut tx, license.id, &request.into()).await?,
                ActivationOutcome::Activated,
            )
        }
    };
    let used = devices.len() as u32 + u32::from(outcome == ActivationOutcome::Activated);
    let lease = lease_for(&mut tx, &license, &request.key, &request.fingerprint, now).await?;
    let answer = seat_answer(issuer, &license, lease, device_id, outcome, used);
    if outcome != ActivationOutcome::AlreadyActive {
        let action = if outcome == ActivationOutcome::Activated {
            "device.activate"
        } else {
            "device.update"
        };
        let change = Change::new(action, "device", device_id)
            .after(json!({ "license_id": license.id, "fingerprint": request.fingerprint, "outcome": outcome }))
            .publish(EntityKind::License, license.id);
        audit::record_change(&mut tx, ctx, change).await?;
    }
    remember(&mut tx, license.id, SeatCall::Activate, request, &answer).await?;
    tx.commit().await?;
    Ok(answer)
}

/// Frees the seat the machine holds: a seat change, under the license's limit.
pub async fn deactivate(
    pool: &PgPool,
    ctx: &RequestContext,
    key: &ClientKey,
    fingerprint: &CanonicalFingerprint,
) -> DomainResult<DeactivateResponse> {
    let mut tx = pool.begin().await?;
    let license = licenses::lock_by_key_hash(&mut tx, &key.hash().0).await?;
    let devices = active_devices(&mut tx, license.id).await?;
    let (device, _) = find_device(&devices, fingerprint).ok_or_else(|| {
        DomainError::refused(
            ErrorCode::DeviceNotFound,
            "this machine holds no seat of the license",
        )
    })?;
    let device_id = device.id;
    check_seat_change(&mut tx, &license).await?;
    release(&mut tx, ctx, &license, device_id, "client").await?;
    record_seat_change(
        &mut tx,
        license.id,
        SeatChange::Deactivate {
            device: device_id,
            by: Initiator::Client,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(DeactivateResponse {
        device_id,
        devices_used: devices.len() as u32 - 1,
        device_limit: license.device_limit as u32,
    })
}

/// An admin frees a seat by device id: recorded, never limited.
pub async fn deactivate_by_id(
    pool: &PgPool,
    ctx: &RequestContext,
    device_id: Uuid,
) -> DomainResult<Device> {
    let mut tx = pool.begin().await?;
    let license_id: Uuid = sqlx::query_scalar("SELECT license_id FROM devices WHERE id = $1")
        .bind(device_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(DomainError::NotFound(Entity::Device))?;
    let license = licenses::lock(&mut tx, license_id).await?;
    let device = release(&mut tx, ctx, &license, device_id, "admin").await?;
    record_seat_change(
        &mut tx,
        license.id,
        SeatChange::Deactivate {
            device: device_id,
            by: Initiator::Admin,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(device)
}

/// Moves the seat of `from_device` to the machine asking, in one step, so
/// a full license can change machines without a free seat.
pub async fn transfer(
    pool: &PgPool,
    ctx: &RequestContext,
    issuer: &LeaseIssuer,
    from_device: Uuid,
    request: &SeatRequest,
) -> DomainResult<ActivateResponse> {
    validate(request)?;
    let now = OffsetDateTime::now_utc();
    let mut tx = pool.begin().await?;
    let license = licenses::lock_by_key_hash(&mut tx, &request.key.hash().0).await?;
    let call = SeatCall::Transfer { from_device };
    if let Some(answer) = replayed(&mut tx, &license, call, request, now).await? {
        return Ok(answer);
    }
    check_usable(&license, now)?;
    let (device_id, used) = move_seat(
        &mut tx,
        ctx,
        &license,
        from_device,
        request,
        Initiator::Client,
    )
    .await?;
    let lease = lease_for(&mut tx, &license, &request.key, &request.fingerprint, now).await?;
    let answer = seat_answer(
        issuer,
        &license,
        lease,
        device_id,
        ActivationOutcome::Transferred,
        used,
    );
    remember(&mut tx, license.id, call, request, &answer).await?;
    tx.commit().await?;
    Ok(answer)
}

/// An admin moves the seat of `from_device` to another machine, named by
/// the fingerprint it reports: the rules of a client's [`transfer`] (the
/// license usable, the device holding a seat, the machine holding none),
/// recorded in `device_transfers` as the admin's, so never counted against
/// the license's seat change limit (as an admin's deactivation is not).
pub async fn transfer_by_admin(
    pool: &PgPool,
    ctx: &RequestContext,
    license_id: Uuid,
    from_device: Uuid,
    target: &AdminTransfer,
) -> DomainResult<Device> {
    check_device_name(target.device_name.as_deref())?;
    let mut tx = pool.begin().await?;
    let license = licenses::lock(&mut tx, license_id).await?;
    check_usable(&license, OffsetDateTime::now_utc())?;
    let request = SeatParts {
        fingerprint: &target.fingerprint,
        device_name: target.device_name.as_deref(),
        app_version: None,
        ip: None,
    };
    let (device_id, _) = move_seat(
        &mut tx,
        ctx,
        &license,
        from_device,
        request,
        Initiator::Admin,
    )
    .await?;
    let device = sqlx::query_as(&format!("SELECT {COLUMNS} FROM devices WHERE id = $1"))
        .bind(device_id)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(device)
}

/// The machine an admin moves a seat to.
#[derive(Debug, Clone)]
pub struct AdminTransfer {
    pub fingerprint: CanonicalFingerprint,
    pub device_name: Option<String>,
}

/// One seat change of a license, as `device_transfers` recorded it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SeatChangeEntry {
    pub at: OffsetDateTime,
    /// `transfer` or `deactivate`.
    pub kind: String,
    /// `client` or `admin`.
    pub initiated_by: String,
    pub from_device_id: Option<Uuid>,
    pub to_device_id: Option<Uuid>,
}

/// The license's seat changes, newest first, at most `limit`.
pub async fn seat_changes(
    pool: &PgPool,
    license_id: Uuid,
    limit: u32,
) -> DomainResult<Vec<SeatChangeEntry>> {
    Ok(sqlx::query_as(
        "SELECT at, kind, initiated_by, from_device_id, to_device_id FROM device_transfers
          WHERE license_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
    )
    .bind(license_id)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?)
}

/// The seat of `from_device` released and a new device for the machine
/// asking, under the license's lock, recorded and audited. Returns the new
/// device and the seats in use. A client's change counts against the limit.
async fn move_seat(
    conn: &mut PgConnection,
    ctx: &RequestContext,
    license: &License,
    from_device: Uuid,
    request: impl Into<SeatParts<'_>>,
    by: Initiator,
) -> DomainResult<(Uuid, u32)> {
    let request = request.into();
    let devices = active_devices(&mut *conn, license.id).await?;
    if !devices.iter().any(|d| d.id == from_device) {
        return Err(DomainError::refused(
            ErrorCode::DeviceNotFound,
            "the device to transfer from holds no seat",
        ));
    }
    if find_device(&devices, request.fingerprint).is_some() {
        return Err(DomainError::conflict(
            "fingerprint",
            "this machine already holds a seat of the license",
        ));
    }
    if by == Initiator::Client {
        check_seat_change(&mut *conn, license).await?;
    }
    let reason = match by {
        Initiator::Client => "transfer",
        Initiator::Admin => "admin_transfer",
    };
    release(&mut *conn, ctx, license, from_device, reason).await?;
    let device_id = insert_device(&mut *conn, license.id, &request).await?;
    record_seat_change(
        &mut *conn,
        license.id,
        SeatChange::Transfer {
            from: from_device,
            to: device_id,
            by,
        },
    )
    .await?;
    let change = Change::new("device.transfer", "device", device_id)
        .before(json!({ "device_id": from_device }))
        .after(json!({ "device_id": device_id, "license_id": license.id, "fingerprint": request.fingerprint }));
    audit::record_change(conn, ctx, change).await?;
    Ok((device_id, devices.len() as u32))
}

/// What a new device row is made of.
#[derive(Debug, Clone, Copy)]
struct SeatParts<'a> {
    fingerprint: &'a CanonicalFingerprint,
    device_name: Option<&'a str>,
    app_version: Option<&'a str>,
    ip: Option<IpAddr>,
}

impl<'a> From<&'a SeatRequest> for SeatParts<'a> {
    fn from(request: &'a SeatRequest) -> Self {
        Self {
            fingerprint: &request.fingerprint,
            device_name: request.device_name.as_deref(),
            app_version: request.app_version.as_deref(),
            ip: request.ip,
        }
    }
}

/// A fresh offline lease for a machine that holds a seat. Decided under the
/// license row lock, like the release of a seat: a deactivation or transfer
/// in flight is either seen committed (no lease) or waits for this one.
pub async fn refresh_lease(
    pool: &PgPool,
    issuer: &LeaseIssuer,
    key: &ClientKey,
    fingerprint: &CanonicalFingerprint,
) -> DomainResult<LeaseResponse> {
    let now = OffsetDateTime::now_utc();
    let mut tx = pool.begin().await?;
    let license: License = licenses::lock_by_key_hash(&mut tx, &key.hash().0).await?;
    check_usable(&license, now)?;
    let devices = active_devices(&mut tx, license.id).await?;
    let (device, _) = find_device(&devices, fingerprint).ok_or_else(|| {
        DomainError::refused(
            ErrorCode::FingerprintMismatch,
            "this machine holds no seat of the license",
        )
    })?;
    sqlx::query("UPDATE devices SET last_seen_at = now() WHERE id = $1")
        .bind(device.id)
        .execute(&mut *tx)
        .await?;
    let lease = lease_for(&mut tx, &license, key, fingerprint, now).await?;
    tx.commit().await?;
    Ok(LeaseResponse {
        valid_until: lease.valid_until,
        lease: token::sign(&lease, &issuer.signer),
    })
}

/// Which devices an export takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceFilter {
    /// One license's; every license's when `None`.
    pub license_id: Option<Uuid>,
    /// Deactivated ones too; only active ones by default.
    pub include_inactive: bool,
}

impl DeviceFilter {
    fn push(self, sql: &mut QueryBuilder<'_, Postgres>) {
        if let Some(license) = self.license_id {
            sql.push(" AND license_id = ").push_bind(license);
        }
        if !self.include_inactive {
            sql.push(" AND status = 'active'");
        }
    }
}

/// Every matching device, oldest first, streamed.
pub fn stream(pool: PgPool, filter: DeviceFilter) -> super::RowStream<Device> {
    let mut sql =
        QueryBuilder::<Postgres>::new(format!("SELECT {COLUMNS} FROM devices WHERE true"));
    filter.push(&mut sql);
    sql.push(" ORDER BY first_seen_at, id");
    super::stream_rows(pool, sql)
}

/// How many devices [`stream`] sends.
pub async fn count(pool: &PgPool, filter: DeviceFilter) -> DomainResult<i64> {
    let mut sql = QueryBuilder::<Postgres>::new("SELECT count(*) FROM devices WHERE true");
    filter.push(&mut sql);
    Ok(sql.build_query_scalar().fetch_one(pool).await?)
}

pub async fn list_for_license(
    pool: &PgPool,
    license_id: Uuid,
    include_inactive: bool,
) -> DomainResult<Vec<Device>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM devices WHERE license_id = $1 AND ($2 OR status = 'active') ORDER BY first_seen_at, id"
    ))
    .bind(license_id)
    .bind(include_inactive)
    .fetch_all(pool)
    .await?)
}

pub(crate) async fn active_devices(
    conn: &mut PgConnection,
    license_id: Uuid,
) -> DomainResult<Vec<Device>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM devices WHERE license_id = $1 AND status = 'active' ORDER BY first_seen_at, id"
    ))
    .bind(license_id)
    .fetch_all(conn)
    .await?)
}

/// The device the fingerprint identifies: an exact hash first, then the
/// shared matching rule.
pub(crate) fn find_device<'a>(
    devices: &'a [Device],
    fingerprint: &CanonicalFingerprint,
) -> Option<(&'a Device, MatchVerdict)> {
    let hash = fingerprint.hash();
    if let Some(device) = devices.iter().find(|d| d.fingerprint_hash == hash.0) {
        return Some((device, MatchVerdict::Exact));
    }
    let matcher = fingerprint.matcher();
    devices.iter().find_map(|device| {
        let verdict = matcher.compare(&stored_digest(device)?);
        verdict.is_same_machine().then_some((device, verdict))
    })
}

fn stored_digest(device: &Device) -> Option<DeviceDigest> {
    let bytes: [u8; DeviceDigest::BYTES] = device.digest.as_slice().try_into().ok()?;
    Some(DeviceDigest::from_bytes(&bytes))
}

fn check_device_name(name: Option<&str>) -> DomainResult<()> {
    if name.is_some_and(|n| n.chars().count() > 128) {
        return Err(DomainError::invalid(
            "device_name",
            "at most 128 characters",
        ));
    }
    Ok(())
}

fn validate(request: &SeatRequest) -> DomainResult<()> {
    check_device_name(request.device_name.as_deref())?;
    if request.app_version.as_ref().is_some_and(|v| v.len() > 64) {
        return Err(DomainError::invalid("app_version", "at most 64 characters"));
    }
    if request
        .idempotency_key
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > 128)
    {
        return Err(DomainError::invalid(
            "idempotency_key",
            "1 to 128 characters",
        ));
    }
    Ok(())
}

/// The lease a seat's machine runs offline on, for the license's grace,
/// else its product's, else the edge configuration's: the one rule edges
/// tell clients too (`Product::grace_period_secs`).
async fn lease_for(
    conn: &mut PgConnection,
    license: &License,
    key: &ClientKey,
    fingerprint: &CanonicalFingerprint,
    now: OffsetDateTime,
) -> DomainResult<Lease> {
    let default = settings::edge_config(&mut *conn).await?.grace_period_secs;
    let grace: i32 = sqlx::query_scalar(
        "SELECT coalesce($1, grace_period_secs, $2) FROM products WHERE id = $3",
    )
    .bind(license.grace_period_secs)
    .bind(default as i32)
    .bind(license.product_id)
    .fetch_one(&mut *conn)
    .await?;
    let grace = i64::from(grace);
    let issued = now.unix_timestamp();
    // A lease never outlives the license.
    let grace = license
        .valid_until
        .map_or(grace, |until| grace.min(until.unix_timestamp() - issued));
    Ok(Lease::issue(
        license.id,
        key.hash(),
        fingerprint.hash(),
        license.product_id as u32,
        license.features.clone(),
        issued,
        grace,
    ))
}

fn seat_answer(
    issuer: &LeaseIssuer,
    license: &License,
    lease: Lease,
    device_id: Uuid,
    outcome: ActivationOutcome,
    devices_used: u32,
) -> ActivateResponse {
    ActivateResponse {
        outcome,
        device_id,
        devices_used,
        device_limit: license.device_limit as u32,
        lease_valid_until: lease.valid_until,
        lease: token::sign(&lease, &issuer.signer),
    }
}

async fn insert_device(
    conn: &mut PgConnection,
    license_id: Uuid,
    request: &SeatParts<'_>,
) -> DomainResult<Uuid> {
    Ok(sqlx::query_scalar(
        "INSERT INTO devices (license_id, fingerprint_hash, digest, components, name, app_version, ip)
         VALUES ($1, $2, $3, $4, $5, $6, $7::inet) RETURNING id",
    )
    .bind(license_id)
    .bind(&request.fingerprint.hash().0[..])
    .bind(&request.fingerprint.digest().to_bytes()[..])
    .bind(json!(request.fingerprint))
    .bind(request.device_name)
    .bind(request.app_version)
    .bind(request.ip.map(|ip| ip.to_string()))
    .fetch_one(conn)
    .await?)
}

async fn touch(
    conn: &mut PgConnection,
    device_id: Uuid,
    request: &SeatRequest,
) -> DomainResult<()> {
    sqlx::query(
        "UPDATE devices SET last_seen_at = now(), app_version = coalesce($2, app_version),
                name = coalesce($3, name), ip = coalesce($4::inet, ip) WHERE id = $1",
    )
    .bind(device_id)
    .bind(&request.app_version)
    .bind(&request.device_name)
    .bind(request.ip.map(|ip| ip.to_string()))
    .execute(conn)
    .await?;
    Ok(())
}

async fn update_fingerprint(
    conn: &mut PgConnection,
    device_id: Uuid,
    request: &SeatRequest,
) -> DomainResult<()> {
    sqlx::query(
        "UPDATE devices SET fingerprint_hash = $2, digest = $3, components = $4, last_seen_at = now(),
                app_version = coalesce($5, app_version), name = coalesce($6, name) WHERE id = $1",
    )
    .bind(device_id)
    .bind(&request.fingerprint.hash().0[..])
    .bind(&request.fingerprint.digest().to_bytes()[..])
    .bind(json!(request.fingerprint))
    .bind(&request.app_version)
    .bind(&request.device_name)
    .execute(conn)
    .await?;
    Ok(())
}

async fn release(
    conn: &mut PgConnection,
    ctx: &RequestContext,
    license: &License,
    device_id: Uuid,
    reason: &str,
) -> DomainResult<Device> {
    let device: Device = sqlx::query_as(&format!(
        "UPDATE devices SET status = 'deactivated', deactivated_at = now(), deactivation_reason = $2
          WHERE id = $1 AND status = 'active' RETURNING {COLUMNS}"
    ))
    .bind(device_id)
    .bind(reason)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| DomainError::refused(ErrorCode::DeviceNotFound, "the device holds no seat"))?;
    super::session_ends::end_all_for_device(conn, device_id, "license").await?;
    let change = Change::new("device.deactivate", "device", device_id)
        .after(json!({ "license_id": license.id, "reason": reason }))
        .publish(EntityKind::License, license.id);
    audit::record_change(conn, ctx, change).await?;
    Ok(device)
}

/// Refuses a client's seat change when the license's window is used up.
/// Called with the license row locked: the count cannot change under it.
async fn check_seat_change(conn: &mut PgConnection, license: &License) -> DomainResult<()> {
    let window = f64::from(license.seat_change_window_secs);
    // The change the window frees next: the limit-th most recent one.
    let (used, next_at): (i64, Option<OffsetDateTime>) = sqlx::query_as(
        "SELECT count(*), (array_agg(at ORDER BY at DESC))[$3] + make_interval(secs => $2)
           FROM device_transfers
          WHERE license_id = $1 AND initiated_by = 'client' AND at > now() - make_interval(secs => $2)",
    )
    .bind(license.id)
    .bind(window)
    .bind(license.seat_change_limit)
    .fetch_one(&mut *conn)
    .await?;
    if used < i64::from(license.seat_change_limit) {
        return Ok(());
    }
    let message = match next_at {
        _ if license.seat_change_limit == 0 => {
            "this license's seats are freed or moved by an administrator only".to_owned()
        }
        Some(next) => format!(
            "this license allows {} seat changes in {} days; the next is possible at {}",
            license.seat_change_limit,
            license.seat_change_window_secs / 86_400,
            next.format(&time::format_description::well_known::Rfc3339)
                .map_err(|e| DomainError::Internal(e.to_string()))?,
        ),
        None => format!(
            "this license allows {} seat changes in {} days",
            license.seat_change_limit,
            license.seat_change_window_secs / 86_400,
        ),
    };
    Err(DomainError::refused(
        ErrorCode::SeatChangeLimitReached,
        message,
    ))
}

async fn record_seat_change(
    conn: &mut PgConnection,
    license_id: Uuid,
    change: SeatChange,
) -> DomainResult<()> {
    let (kind, by, from, to) = match change {
        SeatChange::Deactivate { device, by } => ("deactivate", by, device, None),
        SeatChange::Transfer { from, to, by } => ("transfer", by, from, Some(to)),
    };
    let by = match by {
        Initiator::Client => "client",
        Initiator::Admin => "admin",
    };
    sqlx::query(
        "INSERT INTO device_transfers (license_id, from_device_id, to_device_id, kind, initiated_by)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(license_id)
    .bind(from)
    .bind(to)
    .bind(kind)
    .bind(by)
    .execute(conn)
    .await?;
    Ok(())
}

/// The answer an earlier call with this idempotency key got, if it may be
/// given again: the key came with this same request, the license may still
/// be used, and the seat the answer names is still held. A key that came
/// with another request, or whose seat was released since, is a conflict.
async fn replayed(
    conn: &mut PgConnection,
    license: &License,
    call: SeatCall,
    request: &SeatRequest,
    now: OffsetDateTime,
) -> DomainResult<Option<ActivateResponse>> {
    let Some(idempotency_key) = request.idempotency_key.as_deref() else {
        return Ok(None);
    };
    let stored: Option<(String, Vec<u8>, Option<Uuid>, serde_json::Value)> = sqlx::query_as(
        "SELECT kind, fingerprint_hash, from_device_id, response FROM idempotent_requests
          WHERE license_id = $1 AND idempotency_key = $2",
    )
    .bind(license.id)
    .bind(idempotency_key)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((kind, fingerprint_hash, from_device, response)) = stored else {
        return Ok(None);
    };
    if kind != call.kind()
        || from_device != call.source_device()
        || fingerprint_hash != request.fingerprint.hash().0
    {
        return Err(DomainError::conflict(
            "idempotency_key",
            "this idempotency key was used with a different request",
        ));
    }
    check_usable(license, now)?;
    let answer: ActivateResponse =
        serde_json::from_value(response).map_err(|e| DomainError::Internal(e.to_string()))?;
    let held: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM devices WHERE id = $1 AND license_id = $2 AND status = 'active')",
    )
    .bind(answer.device_id)
    .bind(license.id)
    .fetch_one(&mut *conn)
    .await?;
    if !held {
        return Err(DomainError::conflict(
            "idempotency_key",
            "the seat this idempotency key took has been released since; use a new key",
        ));
    }
    Ok(Some(answer))
}

async fn remember(
    conn: &mut PgConnection,
    license_id: Uuid,
    call: SeatCall,
    request: &SeatRequest,
    answer: &ActivateResponse,
) -> DomainResult<()> {
    if let Some(idempotency_key) = request.idempotency_key.as_deref() {
        sqlx::query(
            "INSERT INTO idempotent_requests (license_id, idempotency_key, kind, fingerprint_hash, from_device_id,
                                              response)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(license_id)
        .bind(idempotency_key)
        .bind(call.kind())
        .bind(&request.fingerprint.hash().0[..])
        .bind(call.source_device())
        .bind(json!(answer))
        .execute(conn)
        .await?;
    }
    Ok(())
}
