//! The audit log: one row per mutation, written in the mutation's transaction,
//! and read back newest first. [`record_change`] is the writer every mutation
//! calls: its audit row and, when edges must learn of the change, its outbox
//! row.

use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};
use time::OffsetDateTime;
use uuid::Uuid;

use super::outbox::{self, EntityKind};
use crate::context::RequestContext;
use crate::error::{DomainError, DomainResult};

/// What changed: `action` like `license.suspend`, the entity, its state
/// before and after (`None` where it did not exist), and the outbox row, if
/// edges must learn of it.
#[derive(Debug)]
pub struct Change<'a> {
    action: &'a str,
    entity_kind: &'a str,
    entity_id: String,
    before: Option<Value>,
    after: Option<Value>,
    publish: Option<(EntityKind, String)>,
}

impl<'a> Change<'a> {
    /// A change with no state before or after: add what there is with
    /// [`before`](Self::before) and [`after`](Self::after).
    pub fn new(action: &'a str, entity_kind: &'a str, entity_id: impl ToString) -> Self {
        Self {
            action,
            entity_kind,
            entity_id: entity_id.to_string(),
            before: None,
            after: None,
            publish: None,
        }
    }

    pub fn before(self, before: Value) -> Self {
        Self {
            before: Some(before),
            ..self
        }
    }

    pub fn after(self, after: Value) -> Self {
        Self {
            after: Some(after),
            ..self
        }
    }

    /// The change with the outbox row edges learn of it by. What is
    /// published need not be what is audited: a device's activation
    /// publishes its license.
    pub fn publish(self, kind: EntityKind, entity_id: impl ToString) -> Self {
        Self {
            publish: Some((kind, entity_id.to_string())),
            ..self
        }
    }
}

/// Writes a change's audit row and, when it is published, its outbox row, in
/// the caller's transaction; committing stays the caller's, since some
/// mutations write more after it. A deleted license's outbox row carries its
/// key hash: that one is [`outbox::push_removed_license`], beside this.
pub async fn record_change(
    conn: &mut PgConnection,
    ctx: &RequestContext,
    change: Change<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_log (request_id, actor_kind, actor_id, actor_name, action, entity_kind, entity_id,
                                before, after, ip, user_agent)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::inet, $11)",
    )
    .bind(&ctx.request_id)
    .bind(ctx.actor.kind.as_str())
    .bind(&ctx.actor.id)
    .bind(&ctx.actor.name)
    .bind(change.action)
    .bind(change.entity_kind)
    .bind(change.entity_id)
    .bind(change.before)
    .bind(change.after)
    .bind(ctx.ip.map(|ip| ip.to_string()))
    .bind(&ctx.user_agent)
    .execute(&mut *conn)
    .await?;
    if let Some((kind, entity_id)) = change.publish {
        outbox::push(conn, kind, &entity_id).await?;
    }
    Ok(())
}

/// An entity as a change's before or after.
pub(super) fn to_json(value: &impl Serialize) -> DomainResult<Value> {
    serde_json::to_value(value).map_err(|error| DomainError::Internal(error.to_string()))
}

/// One audit row as read back.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub request_id: String,
    /// `admin`, `api_key`, `client` or `system`.
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub actor_name: Option<String>,
    /// Like `license.suspend`.
    pub action: String,
    pub entity_kind: String,
    pub entity_id: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
    /// The client's address, without a netmask.
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// Which rows [`list`] returns; every field left out matches all. `from` is
/// inclusive, `to` exclusive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub actor_id: Option<String>,
    pub action: Option<String>,
    pub entity_kind: Option<String>,
    pub entity_id: Option<String>,
    pub request_id: Option<String>,
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
}

/// Audit rows matching `filter`, newest first, and how many match over all
/// pages; `page` counts from 1.
///
/// Only the conditions given are written into the statement (no
/// `$1 IS NULL OR …`), so the planner sees the same shape as the indexes
/// (`audit_log_at`, `_actor`, `_action`, `_entity`, `_request`) whatever plan
/// it caches.
pub async fn list(
    pool: &PgPool,
    filter: &AuditFilter,
    page: u32,
    per_page: u32,
) -> DomainResult<(Vec<AuditEntry>, i64)> {
    if page == 0 {
        return Err(DomainError::invalid("page", "pages count from 1"));
    }
    if per_page == 0 {
        return Err(DomainError::invalid("per_page", "must be at least 1"));
    }
    check_window(filter)?;
    let mut query = QueryBuilder::<Postgres>::new(SELECT_ENTRIES);
    push_conditions(&mut query, filter);
    query
        .push(" ORDER BY at DESC, id DESC LIMIT ")
        .push_bind(i64::from(per_page))
        .push(" OFFSET ")
        .push_bind(i64::from(page - 1) * i64::from(per_page));
    let items: Vec<AuditEntry> = query.build_query_as().fetch_all(pool).await?;
    Ok((items, count(pool, filter).await?))
}

const SELECT_ENTRIES: &str =
    "SELECT id, at, request_id, actor_kind, actor_id, actor_name, action, entity_kind, entity_id,
            before, after, host(ip) AS ip, user_agent
       FROM audit_log";

/// How many rows match.
pub async fn count(pool: &PgPool, filter: &AuditFilter) -> DomainResult<i64> {
    check_window(filter)?;
    let mut count = QueryBuilder::<Postgres>::new("SELECT count(*) FROM audit_log");
    push_conditions(&mut count, filter);
    Ok(count.build_query_scalar().fetch_one(pool).await?)
}

/// Every matching row, newest first, streamed ([`super::stream_rows`]).
pub fn stream(pool: PgPool, filter: &AuditFilter) -> super::RowStream<AuditEntry> {
    let mut query = QueryBuilder::<Postgres>::new(SELECT_ENTRIES);
    push_conditions(&mut query, filter);
    query.push(" ORDER BY at DESC, id DESC");
    super::stream_rows(pool, query)
}

fn check_window(filter: &AuditFilter) -> DomainResult<()> {
    if let (Some(from), Some(to)) = (filter.from, filter.to)
        && to <= from
    {
        return Err(DomainError::invalid("to", "must be after from"));
    }
    Ok(())
}

fn push_conditions(query: &mut QueryBuilder<'_, Postgres>, filter: &AuditFilter) {
    let mut glue = " WHERE ";
    let mut text =
        |query: &mut QueryBuilder<'_, Postgres>, column: &str, value: &Option<String>| {
            if let Some(value) = value {
                query
                    .push(glue)
                    .push(column)
                    .push(" = ")
                    .push_bind(value.clone());
                glue = " AND ";
            }
        };
    text(query, "actor_id", &filter.actor_id);
    text(query, "action", &filter.action);
    text(query, "entity_kind", &filter.entity_kind);
    text(query, "entity_id", &filter.entity_id);
    text(query, "request_id", &filter.request_id);
    if let Some(from) = filter.from {
        query.push(glue).push("at >= ").push_bind(from);
        glue = " AND ";
    }
    if let Some(to) = filter.to {
        query.push(glue).push("at < ").push_bind(to);
    }
}

/// The newest `limit` rows about a license, the batch it was created in and
/// the devices named: its trail on its own page. One statement, each arm on
/// `audit_log_entity`.
pub async fn for_license(
    pool: &PgPool,
    license_id: Uuid,
    batch_id: Option<Uuid>,
    device_ids: &[Uuid],
    limit: u32,
) -> DomainResult<Vec<AuditEntry>> {
    let devices: Vec<String> = device_ids.iter().map(Uuid::to_string).collect();
    Ok(sqlx::query_as(&format!(
        "{SELECT_ENTRIES} WHERE (entity_kind = 'license' AND entity_id = $1)
            OR (entity_kind = 'device' AND entity_id = ANY($2))
            OR (entity_kind = 'license_batch' AND entity_id = $4)
          ORDER BY at DESC, id DESC LIMIT $3"
    ))
    .bind(license_id.to_string())
    .bind(&devices)
    .bind(i64::from(limit))
    .bind(batch_id.map(|id| id.to_string()))
    .fetch_all(pool)
    .await?)
}

/// Where a page of [`list_page`] starts: strictly after this row in
/// newest-first order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at: OffsetDateTime,
    pub id: i64,
}

/// One page of audit rows matching `filter`, newest first, after `cursor`,
/// and the cursor of the next page (`None`: this is the last).
///
/// Keyset pagination on `(at, id)`: the row comparison walks `audit_log_at`
/// (or a filter's `(…, at DESC)` index) from the cursor, so page 10 000 costs
/// what page 1 does, and no `count(*)` scans a million rows.
pub async fn list_page(
    pool: &PgPool,
    filter: &AuditFilter,
    cursor: Option<Cursor>,
    per_page: u32,
) -> DomainResult<(Vec<AuditEntry>, Option<Cursor>)> {
    if per_page == 0 {
        return Err(DomainError::invalid("per_page", "must be at least 1"));
    }
    check_window(filter)?;
    let mut query = QueryBuilder::<Postgres>::new(SELECT_ENTRIES);
    push_conditions(&mut query, filter);
    if let Some(cursor) = cursor {
        let glue = if query.sql().contains(" WHERE ") {
            " AND "
        } else {
            " WHERE "
        };
        query
            .push(glue)
            .push("(at, id) < (")
            .push_bind(cursor.at)
            .push(", ")
            .push_bind(cursor.id)
            .push(")");
    }
    query
        .push(" ORDER BY at DESC, id DESC LIMIT ")
        .push_bind(i64::from(per_page) + 1);
    let mut items: Vec<AuditEntry> = query.build_query_as().fetch_all(pool).await?;
    let next = if items.len() > per_page as usize {
        items.truncate(per_page as usize);
        items.last().map(|last| Cursor {
            at: last.at,
            id: last.id,
        })
    } else {
        None
    };
    Ok((items, next))
}
