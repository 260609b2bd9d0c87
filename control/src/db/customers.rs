//! Customers: who licenses belong to. Each change is one transaction with one
//! audit row holding the customer before and after.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;
use sqlx::{FromRow, PgConnection, PgPool, Postgres, QueryBuilder};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::context::RequestContext;
use crate::db::audit::{self, Change, to_json};
use crate::db::licenses::{self, CreatedLicense, NewLicense};
use crate::error::{DomainError, DomainResult, Entity};
use crate::secrets::Secrets;

pub const NAME_MAX_CHARS: usize = 256;
pub const EMAIL_MAX_CHARS: usize = 254;
pub const COMPANY_MAX_CHARS: usize = 256;
pub const NOTES_MAX_CHARS: usize = 10_000;
pub const QUERY_MAX_CHARS: usize = 256;

#[derive(Debug, Clone, PartialEq, Serialize, FromRow, utoipa::ToSchema)]
pub struct Customer {
    pub id: Uuid,
    pub name: String,
    pub email: Option<String>,
    pub company: Option<String>,
    pub notes: Option<String>,
    /// A JSON object of the operator's own keys.
    #[schema(value_type = Object)]
    pub metadata: Value,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, Default)]
pub struct NewCustomer {
    pub name: String,
    pub email: Option<String>,
    pub company: Option<String>,
    pub notes: Option<String>,
    pub metadata: Option<Value>,
}

/// A partial update: `None` leaves a value alone; `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct CustomerChanges {
    pub name: Option<String>,
    pub email: Option<Option<String>>,
    pub company: Option<Option<String>>,
    pub notes: Option<Option<String>>,
    pub metadata: Option<Value>,
}

const COLUMNS: &str = "id, name, email, company, notes, metadata, created_at, updated_at";

pub async fn create(
    pool: &PgPool,
    ctx: &RequestContext,
    new: NewCustomer,
) -> DomainResult<Customer> {
    let mut tx = pool.begin().await?;
    let customer = create_in(&mut tx, ctx, new).await?;
    tx.commit().await?;
    Ok(customer)
}

/// [`create`] inside the caller's transaction (a license batch's new
/// customers, a lead's conversion), with the same rules and audit row;
/// committing stays the caller's.
pub(crate) async fn create_in(
    conn: &mut PgConnection,
    ctx: &RequestContext,
    new: NewCustomer,
) -> DomainResult<Customer> {
    let name = check_name(&new.name)?;
    let email = new.email.as_deref().map(check_email).transpose()?;
    let company = check_optional("company", new.company.as_deref(), COMPANY_MAX_CHARS)?;
    let notes = check_optional("notes", new.notes.as_deref(), NOTES_MAX_CHARS)?;
    let metadata = check_metadata(
        new.metadata
            .unwrap_or_else(|| Value::Object(Default::default())),
    )?;
    let customer = sqlx::query_as::<_, Customer>(&format!(
        "INSERT INTO customers (name, email, company, notes, metadata)
         VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
    ))
    .bind(name)
    .bind(email)
    .bind(company)
    .bind(notes)
    .bind(metadata)
    .fetch_one(&mut *conn)
    .await?;
    let change = Change::new("customer.create", "customer", customer.id).after(to_json(&customer)?);
    audit::record_change(conn, ctx, change).await?;
    Ok(customer)
}

/// The oldest customer with this e-mail address (any case), if any: how a
/// form or a list of customers names one without its id.
pub async fn find_by_email(pool: &PgPool, email: &str) -> DomainResult<Option<Customer>> {
    Ok(sqlx::query_as::<_, Customer>(&format!(
        "SELECT {COLUMNS} FROM customers WHERE lower(email) = lower($1) ORDER BY created_at, id LIMIT 1"
    ))
    .bind(email.trim())
    .fetch_optional(pool)
    .await?)
}

/// A customer of a license batch, as a list names it: found by e-mail
/// address, created with the name and company when there is none.
#[derive(Debug, Clone, Default)]
pub struct BatchCustomer {
    pub email: String,
    pub name: String,
    pub company: Option<String>,
}

/// One license like `new` for each customer listed, in one transaction with
/// the customers it creates: an address already known (any case, or earlier
/// in the list) is that customer, a new one is created (audited). The first
/// bad entry refuses it all, as `customers[i].<field>`, and nothing is
/// created. The licenses come back in the order of the list.
pub async fn create_license_batch(
    pool: &PgPool,
    ctx: &RequestContext,
    secrets: &Secrets,
    new: &NewLicense,
    listed: &[BatchCustomer],
) -> DomainResult<Vec<CreatedLicense>> {
    new.validate()?;
    if listed.is_empty() {
        return Err(DomainError::invalid(
            "customers",
            "list at least one customer",
        ));
    }
    let at = |i: usize, error: DomainError| match error {
        DomainError::Invalid { field, message } => DomainError::Invalid {
            field: format!("customers[{i}].{field}"),
            message,
        },
        other => other,
    };
    let emails = listed
        .iter()
        .enumerate()
        .map(|(i, row)| check_email(&row.email).map_err(|error| at(i, error)))
        .collect::<DomainResult<Vec<String>>>()?;
    let lowered: Vec<String> = emails.iter().map(|email| email.to_lowercase()).collect();
    let mut tx = pool.begin().await?;
    // One look-up for the whole list; the oldest customer of an address wins.
    let known: Vec<(String, Uuid)> = sqlx::query_as(
        "SELECT DISTINCT ON (lower(email)) lower(email), id FROM customers
          WHERE lower(email) = ANY($1) ORDER BY lower(email), created_at, id",
    )
    .bind(&lowered)
    .fetch_all(&mut *tx)
    .await?;
    let mut by_email: HashMap<String, Uuid> = known.into_iter().collect();
    let mut owners = Vec::with_capacity(listed.len());
    for (i, (row, email)) in listed.iter().zip(emails).enumerate() {
        let key = email.to_lowercase();
        let id = match by_email.get(&key) {
            Some(id) => *id,
            None => {
                let customer = NewCustomer {
                    name: row.name.clone(),
                    email: Some(email),
                    company: row.company.clone(),
                    ..NewCustomer::default()
                };
                let id = create_in(&mut tx, ctx, customer)
                    .await
                    .map_err(|error| at(i, error))?
                    .id;
                by_email.insert(key, id);
                id
            }
        };
        owners.push(Some(id));
    }
    let created = licenses::create_in(&mut tx, ctx, secrets, new, &owners).await?;
    tx.commit().await?;
    Ok(created)
}

pub async fn get(pool: &PgPool, id: Uuid) -> DomainResult<Customer> {
    sqlx::query_as::<_, Customer>(&format!("SELECT {COLUMNS} FROM customers WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(DomainError::NotFound(Entity::Customer))
}

/// Newest first. `query` matches a part of the name, the e-mail address or
/// the company (any case): [`push_search`], the one rule.
pub async fn list(
    pool: &PgPool,
    query: Option<&str>,
    limit: i64,
    offset: i64,
) -> DomainResult<(Vec<Customer>, i64)> {
    let pattern = search_pattern(query)?;
    let mut sql =
        QueryBuilder::<Postgres>::new(format!("SELECT {COLUMNS} FROM customers WHERE true"));
    push_search(&mut sql, pattern.as_deref());
    sql.push(" ORDER BY created_at DESC, id LIMIT ")
        .push_bind(limit)
        .push(" OFFSET ")
        .push_bind(offset);
    let items: Vec<Customer> = sql.build_query_as().fetch_all(pool).await?;
    Ok((items, count(pool, query).await?))
}

/// Every customer [`list`] would show, newest first, streamed.
pub fn stream(pool: PgPool, query: Option<&str>) -> DomainResult<super::RowStream<Customer>> {
    let pattern = search_pattern(query)?;
    let mut sql =
        QueryBuilder::<Postgres>::new(format!("SELECT {COLUMNS} FROM customers WHERE true"));
    push_search(&mut sql, pattern.as_deref());
    sql.push(" ORDER BY created_at DESC, id");
    Ok(super::stream_rows(pool, sql))
}

/// How many customers [`stream`] sends.
pub async fn count(pool: &PgPool, query: Option<&str>) -> DomainResult<i64> {
    let pattern = search_pattern(query)?;
    let mut count = QueryBuilder::<Postgres>::new("SELECT count(*) FROM customers WHERE true");
    push_search(&mut count, pattern.as_deref());
    Ok(count.build_query_scalar().fetch_one(pool).await?)
}

/// The rule a search follows everywhere (the API's list, the panel's list
/// and its autocomplete). Left out for no query rather than written as
/// `$1 IS NULL OR …`: a prepared statement's generic plan could not use the
/// trigram indexes through that OR.
fn push_search(sql: &mut QueryBuilder<'_, Postgres>, pattern: Option<&str>) {
    if let Some(pattern) = pattern {
        sql.push(" AND (name ILIKE ")
            .push_bind(pattern.to_owned())
            .push(" OR email ILIKE ")
            .push_bind(pattern.to_owned())
            .push(" OR company ILIKE ")
            .push_bind(pattern.to_owned())
            .push(")");
    }
}

/// Where a page of [`list_page`] starts: strictly after this customer in
/// newest-first order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: OffsetDateTime,
    pub id: Uuid,
}

/// How many of the newest customers (after the cursor) a search looks
/// through before it asks the trigram indexes.
const RECENT_WINDOW: i64 = 5_000;

/// One page of customers matching `query` (the rule of [`list`]), newest
/// first, after `cursor`, and the cursor of the next page (`None`: this is
/// the last). Keyset on `(created_at, id)` (`customers_created`), no
/// `count(*)`: page 1 000 costs what page 1 does. The autocomplete is the
/// first page of a few.
///
/// A search runs in two steps because the planner cannot tell a common term
/// from a rare one (it estimates a few dozen rows for either): first among
/// the newest [`RECENT_WINDOW`] customers, which answers a common term in
/// about a millisecond; only if that finds less than a page, through the
/// trigram indexes (a bitmap scan, forced for that statement: left to
/// itself the planner walks `customers_created` through the whole table,
/// 140 ms at 100 000 rows). See ARCHITECTURE.md, "Measured".
pub async fn list_page(
    pool: &PgPool,
    query: Option<&str>,
    cursor: Option<Cursor>,
    per_page: u32,
) -> DomainResult<(Vec<Customer>, Option<Cursor>)> {
    if per_page == 0 {
        return Err(DomainError::invalid("per_page", "must be at least 1"));
    }
    let limit = i64::from(per_page) + 1;
    let pattern = search_pattern(query)?;
    let mut items: Vec<Customer> = match &pattern {
        None => {
            let mut sql = QueryBuilder::<Postgres>::new(format!(
                "SELECT {COLUMNS} FROM customers WHERE true"
            ));
            push_cursor(&mut sql, cursor);
            sql.push(" ORDER BY created_at DESC, id DESC LIMIT ")
                .push_bind(limit);
            sql.build_query_as().fetch_all(pool).await?
        }
        Some(pattern) => {
            let mut recent = QueryBuilder::<Postgres>::new(format!(
                "SELECT {COLUMNS} FROM (SELECT {COLUMNS} FROM customers WHERE true"
            ));
            push_cursor(&mut recent, cursor);
            recent
                .push(" ORDER BY created_at DESC, id DESC LIMIT ")
                .push_bind(RECENT_WINDOW.max(limit))
                .push(") recent WHERE true");
            push_search(&mut recent, Some(pattern));
            recent
                .push(" ORDER BY created_at DESC, id DESC LIMIT ")
                .push_bind(limit);
            let found: Vec<Customer> = recent.build_query_as().fetch_all(pool).await?;
            // A full page among the newest is the page: any other match is older.
            if found.len() as i64 == limit {
                found
            } else {
                let mut tx = pool.begin().await?;
                // Trigrams need three characters; with fewer, the planner's choice.
                if query.map_or(0, |q| q.trim().chars().count()) >= 3 {
                    sqlx::query("SET LOCAL enable_seqscan = off")
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("SET LOCAL enable_indexscan = off")
                        .execute(&mut *tx)
                        .await?;
                }
                let mut all = QueryBuilder::<Postgres>::new(format!(
                    "SELECT {COLUMNS} FROM customers WHERE true"
                ));
                push_search(&mut all, Some(pattern));
                push_cursor(&mut all, cursor);
                all.push(" ORDER BY created_at DESC, id DESC LIMIT ")
                    .push_bind(limit);
                let found = all.build_query_as().fetch_all(&mut *tx).await?;
                tx.commit().await?;
                found
            }
        }
    };
    let next = if items.len() > per_page as usize {
        items.truncate(per_page as usize);
        items.last().map(|last| Cursor {
            created_at: last.created_at,
            id: last.id,
        })
    } else {
        None
    };
    Ok((items, next))
}

fn push_cursor(sql: &mut QueryBuilder<'_, Postgres>, cursor: Option<Cursor>) {
    if let Some(cursor) = cursor {
        sql.push(" AND (created_at, id) < (")
            .push_bind(cursor.created_at)
            .push(", ")
            .push_bind(cursor.id)
            .push(")");
    }
}

/// The names of these customers (a list's page of licenses shows them);
/// an id with no customer is left out.
pub async fn names(pool: &PgPool, ids: &[Uuid]) -> DomainResult<HashMap<Uuid, String>> {
    let rows: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT id, name FROM customers WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().collect())
}

/// What a customer's page sums up: licenses by status, seats, sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq, FromRow)]
pub struct CustomerStats {
    pub active: i64,
    pub suspended: i64,
    pub revoked: i64,
    /// Active devices on all its licenses.
    pub devices_in_use: i64,
    /// The sum of its licenses' device limits.
    pub devices_allowed: i64,
    /// Sessions not ended.
    pub active_sessions: i64,
    /// The latest a device of its was seen or a session of its beat.
    pub last_seen_at: Option<OffsetDateTime>,
}

impl CustomerStats {
    pub fn licenses(&self) -> i64 {
        self.active + self.suspended + self.revoked
    }
}

pub async fn stats(pool: &PgPool, id: Uuid) -> DomainResult<CustomerStats> {
    Ok(sqlx::query_as::<_, CustomerStats>(
        "WITH owned AS (SELECT id, status, device_limit FROM licenses WHERE customer_id = $1),
              seen AS (SELECT count(*) FILTER (WHERE d.status = 'active') AS in_use,
                              max(d.last_seen_at) AS last_seen_at
                         FROM devices d WHERE d.license_id IN (SELECT id FROM owned)),
              open AS (SELECT count(*) FILTER (WHERE s.ended_at IS NULL) AS active,
                              max(s.last_heartbeat_at) AS last_beat_at
                         FROM sessions s WHERE s.license_id IN (SELECT id FROM owned))
         SELECT (SELECT count(*) FROM owned WHERE status = 'active') AS active,
                (SELECT count(*) FROM owned WHERE status = 'suspended') AS suspended,
                (SELECT count(*) FROM owned WHERE status = 'revoked') AS revoked,
                seen.in_use AS devices_in_use,
                (SELECT coalesce(sum(device_limit), 0)::bigint FROM owned) AS devices_allowed,
                open.active AS active_sessions,
                greatest(seen.last_seen_at, open.last_beat_at) AS last_seen_at
           FROM seen, open",
    )
    .bind(id)
    .fetch_one(pool)
    .await?)
}

pub async fn update(
    pool: &PgPool,
    ctx: &RequestContext,
    id: Uuid,
    changes: CustomerChanges,
) -> DomainResult<Customer> {
    let name = changes.name.as_deref().map(check_name).transpose()?;
    let email = changes
        .email
        .map(|email| email.as_deref().map(check_email).transpose())
        .transpose()?;
    let company = changes
        .company
        .map(|company| check_optional("company", company.as_deref(), COMPANY_MAX_CHARS))
        .transpose()?;
    let notes = changes
        .notes
        .map(|notes| check_optional("notes", notes.as_deref(), NOTES_MAX_CHARS))
        .transpose()?;
    let metadata = changes.metadata.map(check_metadata).transpose()?;

    let mut tx = pool.begin().await?;
    let before = lock(&mut tx, id).await?;
    let after = sqlx::query_as::<_, Customer>(&format!(
        "UPDATE customers SET
             name = $2,
             email = $3,
             company = $4,
             notes = $5,
             metadata = $6,
             updated_at = now()
         WHERE id = $1
         RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(name.unwrap_or_else(|| before.name.clone()))
    .bind(email.unwrap_or_else(|| before.email.clone()))
    .bind(company.unwrap_or_else(|| before.company.clone()))
    .bind(notes.unwrap_or_else(|| before.notes.clone()))
    .bind(metadata.unwrap_or_else(|| before.metadata.clone()))
    .fetch_one(&mut *tx)
    .await?;
    let change = Change::new("customer.update", "customer", id)
        .before(to_json(&before)?)
        .after(to_json(&after)?);
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(after)
}

/// Refused while licenses still name the customer.
pub async fn delete(pool: &PgPool, ctx: &RequestContext, id: Uuid) -> DomainResult<()> {
    let mut tx = pool.begin().await?;
    let before = lock(&mut tx, id).await?;
    let licenses: i64 = sqlx::query_scalar("SELECT count(*) FROM licenses WHERE customer_id = $1")
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    if licenses > 0 {
        return Err(still_has_licenses(licenses));
    }
    // The foreign key is the last word should a license appear meanwhile.
    sqlx::query("DELETE FROM customers WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|error| match &error {
            sqlx::Error::Database(db) if db.constraint() == Some("licenses_customer_id_fkey") => {
                still_has_licenses(1)
            }
            _ => DomainError::Database(error),
        })?;
    let change = Change::new("customer.delete", "customer", id).before(to_json(&before)?);
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(())
}

/// Deletes the customer and every license it has, in one transaction: each
/// license as `licenses::delete` does (sessions ended, resources released,
/// its own audit row, its removal in the outbox for edges), then the
/// customer. Answers how many licenses went. The customer's row lock keeps
/// a license from being created for it meanwhile (the foreign key waits).
pub async fn delete_with_licenses(
    pool: &PgPool,
    ctx: &RequestContext,
    id: Uuid,
) -> DomainResult<usize> {
    let mut tx = pool.begin().await?;
    let before = lock(&mut tx, id).await?;
    let owned: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM licenses WHERE customer_id = $1 ORDER BY id")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
    for license in &owned {
        licenses::delete_in(&mut tx, ctx, *license).await?;
    }
    sqlx::query("DELETE FROM customers WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let change = Change::new("customer.delete", "customer", id).before(to_json(&before)?);
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(owned.len())
}

async fn lock(conn: &mut PgConnection, id: Uuid) -> DomainResult<Customer> {
    sqlx::query_as::<_, Customer>(&format!(
        "SELECT {COLUMNS} FROM customers WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or(DomainError::NotFound(Entity::Customer))
}

fn still_has_licenses(count: i64) -> DomainError {
    DomainError::Conflict {
        field: None,
        message: format!(
            "the customer still has {count} license(s): delete or reassign them first"
        ),
    }
}

fn check_name(name: &str) -> DomainResult<String> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > NAME_MAX_CHARS {
        return Err(DomainError::invalid(
            "name",
            format!("must be 1 to {NAME_MAX_CHARS} characters"),
        ));
    }
    Ok(name.to_owned())
}

/// The shape of an address, not its existence: one `@`, something before it,
/// a dotted domain after it, no spaces or control characters.
pub fn check_email(email: &str) -> DomainResult<String> {
    let email = email.trim();
    let bad = || DomainError::invalid("email", "must be an e-mail address like name@example.com");
    if email.chars().count() > EMAIL_MAX_CHARS
        || email.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad());
    }
    let (local, domain) = email.split_once('@').ok_or_else(bad)?;
    let domain_ok = !domain.contains('@')
        && domain.contains('.')
        && domain
            .split('.')
            .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'));
    if local.is_empty() || local.chars().count() > 64 || !domain_ok {
        return Err(bad());
    }
    Ok(email.to_owned())
}

pub(crate) fn check_optional(
    field: &str,
    value: Option<&str>,
    max_chars: usize,
) -> DomainResult<Option<String>> {
    let Some(value) = value.map(str::trim) else {
        return Ok(None);
    };
    if value.chars().count() > max_chars {
        return Err(DomainError::invalid(
            field,
            format!("must be at most {max_chars} characters"),
        ));
    }
    Ok((!value.is_empty()).then(|| value.to_owned()))
}

fn check_metadata(metadata: Value) -> DomainResult<Value> {
    check_object("metadata", metadata)
}

/// The operator's own keys: a JSON object of at most 16 KiB.
pub(crate) fn check_object(field: &str, value: Value) -> DomainResult<Value> {
    if !value.is_object() {
        return Err(DomainError::invalid(field, "must be a JSON object"));
    }
    if value.to_string().len() > 16_384 {
        return Err(DomainError::invalid(
            field,
            "must be at most 16 KiB as JSON",
        ));
    }
    Ok(value)
}

/// The LIKE pattern of a search query, or `None` for an empty one.
fn search_pattern(query: Option<&str>) -> DomainResult<Option<String>> {
    match query.map(str::trim).filter(|q| !q.is_empty()) {
        Some(q) if q.chars().count() > QUERY_MAX_CHARS => Err(DomainError::invalid(
            "q",
            format!("must be at most {QUERY_MAX_CHARS} characters"),
        )),
        Some(q) => Ok(Some(format!("%{}%", escape_like(q)))),
        None => Ok(None),
    }
}

fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_shapes() {
        for good in ["a@b.co", "first.last+tag@mail.example.org", " x@y.z "] {
            assert!(check_email(good).is_ok(), "{good}");
        }
        for bad in [
            "", "plain", "@b.co", "a@", "a@b", "a@@b.co", "a b@c.de", "a@b..co", "a@-b.co",
        ] {
            let error = check_email(bad).unwrap_err();
            assert_eq!(error.field(), Some("email"), "{bad}");
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(check_name("  Acme  ").unwrap(), "Acme");
        assert!(check_name("   ").is_err());
        assert!(check_name(&"é".repeat(256)).is_ok());
        assert!(check_name(&"é".repeat(257)).is_err());
    }

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(escape_like(r"50%_off\"), r"50\%\_off\\");
    }
}
