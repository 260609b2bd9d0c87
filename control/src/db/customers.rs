//! Customers: who licenses belong to. Each change is one transaction with one
//! audit row holding the customer before and after.

use serde::Serialize;
use serde_json::Value;
use sqlx::{FromRow, PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::context::RequestContext;
use crate::db::audit::{self, Change, to_json};
use crate::error::{DomainError, DomainResult, Entity};

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
    let name = check_name(&new.name)?;
    let email = new.email.as_deref().map(check_email).transpose()?;
    let company = check_optional("company", new.company.as_deref(), COMPANY_MAX_CHARS)?;
    let notes = check_optional("notes", new.notes.as_deref(), NOTES_MAX_CHARS)?;
    let metadata = check_metadata(
        new.metadata
            .unwrap_or_else(|| Value::Object(Default::default())),
    )?;

    let mut tx = pool.begin().await?;
    let customer = sqlx::query_as::<_, Customer>(&format!(
        "INSERT INTO customers (name, email, company, notes, metadata)
         VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
    ))
    .bind(name)
    .bind(email)
    .bind(company)
    .bind(notes)
    .bind(metadata)
    .fetch_one(&mut *tx)
    .await?;
    let change = Change::new("customer.create", "customer", customer.id).after(to_json(&customer)?);
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(customer)
}

pub async fn get(pool: &PgPool, id: Uuid) -> DomainResult<Customer> {
    sqlx::query_as::<_, Customer>(&format!("SELECT {COLUMNS} FROM customers WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(DomainError::NotFound(Entity::Customer))
}

/// Newest first. `query` matches a part of the name (any case) or a part of
/// the e-mail address.
pub async fn list(
    pool: &PgPool,
    query: Option<&str>,
    limit: i64,
    offset: i64,
) -> DomainResult<(Vec<Customer>, i64)> {
    let pattern = match query.map(str::trim).filter(|q| !q.is_empty()) {
        Some(q) if q.chars().count() > QUERY_MAX_CHARS => {
            return Err(DomainError::invalid(
                "q",
                format!("must be at most {QUERY_MAX_CHARS} characters"),
            ));
        }
        Some(q) => Some(format!("%{}%", escape_like(q))),
        None => None,
    };
    let items = sqlx::query_as::<_, Customer>(&format!(
        "SELECT {COLUMNS} FROM customers
         WHERE $1::text IS NULL OR name ILIKE $1 OR email ILIKE $1
         ORDER BY created_at DESC, id
         LIMIT $2 OFFSET $3"
    ))
    .bind(&pattern)
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?;
    let total: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM customers WHERE $1::text IS NULL OR name ILIKE $1 OR email ILIKE $1",
    )
    .bind(&pattern)
    .fetch_one(pool)
    .await?;
    Ok((items, total))
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

fn check_optional(
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
    if !metadata.is_object() {
        return Err(DomainError::invalid("metadata", "must be a JSON object"));
    }
    if metadata.to_string().len() > 16_384 {
        return Err(DomainError::invalid(
            "metadata",
            "must be at most 16 KiB as JSON",
        ));
    }
    Ok(metadata)
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
