//! Contact details: any number of phones and e-mail addresses per contact,
//! each with a label and at most one primary per kind (the partial unique
//! index `lead_contact_details_one_primary` enforces it; the service moves
//! the mark, under the contact's row lock).

use serde::{Deserialize, Serialize};
use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;
use sqlx::{FromRow, PgConnection, PgPool, Postgres};
use uuid::Uuid;

use super::{contacts, optional};
use crate::context::RequestContext;
use crate::db::audit::{self, Change, to_json};
use crate::db::customers::check_email;
use crate::error::{DomainError, DomainResult, Entity, OnConstraint};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetailKind {
    Phone,
    Email,
}

impl DetailKind {
    pub const ALL: [DetailKind; 2] = [Self::Phone, Self::Email];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Phone => "phone",
            Self::Email => "email",
        }
    }

    pub fn parse(kind: &str) -> DomainResult<Self> {
        match kind {
            "phone" => Ok(Self::Phone),
            "email" => Ok(Self::Email),
            _ => Err(DomainError::invalid("kind", "must be phone or email")),
        }
    }

    /// The value normalised, or an error naming the kind as the field.
    fn normalise(self, value: &str) -> DomainResult<String> {
        match self {
            Self::Phone => normalise_phone(value),
            Self::Email => normalise_email(value),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, FromRow, utoipa::ToSchema)]
pub struct Detail {
    pub id: i64,
    pub contact_id: Uuid,
    /// `phone` or `email`.
    pub kind: String,
    pub value: String,
    pub label: Option<String>,
    pub is_primary: bool,
}

#[derive(Debug, Clone)]
pub struct DetailInput {
    pub kind: DetailKind,
    pub value: String,
    pub label: Option<String>,
    pub is_primary: bool,
}

const COLUMNS: &str = "id, contact_id, kind, value, label, is_primary";
/// A contact has each phone number or e-mail address once.
const UNIQUE_VALUE: &str = "lead_contact_details_contact_id_kind_value_key";

/// An e-mail address trimmed, its domain lowercased (the local part may be
/// case-sensitive); the shape rule is the customers' one.
pub fn normalise_email(value: &str) -> DomainResult<String> {
    let email = check_email(value)?;
    let (local, domain) = email.split_once('@').unwrap_or((&email, ""));
    Ok(format!("{local}@{}", domain.to_lowercase()))
}

/// A phone number as E.164: spaces, dashes, dots and parentheses removed,
/// then `+`, a first digit 1–9 and 7 to 15 digits in all.
pub fn normalise_phone(value: &str) -> DomainResult<String> {
    let phone: String = value
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let digits = phone.strip_prefix('+').unwrap_or("");
    let ok = (7..=15).contains(&digits.len())
        && digits.chars().all(|c| c.is_ascii_digit())
        && !digits.starts_with('0');
    if !ok {
        return Err(DomainError::invalid(
            "phone",
            "must be an international number like +49 30 1234567",
        ));
    }
    Ok(phone)
}

fn check(input: &DetailInput) -> DomainResult<(String, Option<String>)> {
    Ok((
        input.kind.normalise(&input.value)?,
        optional("label", input.label.as_deref(), 64)?,
    ))
}

pub(super) async fn of_contact(pool: &PgPool, contact_id: Uuid) -> DomainResult<Vec<Detail>> {
    Ok(sqlx::query_as::<_, Detail>(&format!(
        "SELECT {COLUMNS} FROM lead_contact_details WHERE contact_id = $1
         ORDER BY kind, is_primary DESC, id"
    ))
    .bind(contact_id)
    .fetch_all(pool)
    .await?)
}

/// The details of several contacts.
pub(super) async fn of_contacts(
    conn: &mut PgConnection,
    contact_ids: &[Uuid],
) -> DomainResult<Vec<Detail>> {
    Ok(sqlx::query_as::<_, Detail>(&format!(
        "SELECT {COLUMNS} FROM lead_contact_details WHERE contact_id = ANY($1) ORDER BY id"
    ))
    .bind(contact_ids)
    .fetch_all(conn)
    .await?)
}

pub async fn add_detail(
    pool: &PgPool,
    ctx: &RequestContext,
    contact_id: Uuid,
    input: DetailInput,
) -> DomainResult<Detail> {
    let mut tx = pool.begin().await?;
    contacts::lock(&mut tx, contact_id).await?;
    let created = add_detail_in(&mut tx, ctx, contact_id, input).await?;
    tx.commit().await?;
    Ok(created)
}

/// [`add_detail`] inside the caller's transaction, which holds the
/// contact's row lock already.
pub(super) async fn add_detail_in(
    conn: &mut PgConnection,
    ctx: &RequestContext,
    contact_id: Uuid,
    input: DetailInput,
) -> DomainResult<Detail> {
    let (value, label) = check(&input)?;
    if input.is_primary {
        clear_primary(conn, contact_id, input.kind).await?;
    }
    let insert = format!(
        "INSERT INTO lead_contact_details (contact_id, kind, value, label, is_primary)
         VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
    );
    let query = sqlx::query_as(&insert).bind(contact_id);
    let created = save(conn, query, &input, value, label).await?;
    let change = Change::new("lead.detail.create", "lead_contact_detail", created.id)
        .after(to_json(&created)?);
    audit::record_change(conn, ctx, change).await?;
    Ok(created)
}

/// A detail of a contact that is not deleted.
pub async fn get_detail(pool: &PgPool, id: i64) -> DomainResult<Detail> {
    sqlx::query_as::<_, Detail>(&format!(
        "SELECT {COLUMNS} FROM lead_contact_details WHERE id = $1 AND EXISTS
            (SELECT 1 FROM lead_contacts c WHERE c.id = contact_id AND c.deleted_at IS NULL)"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or(DomainError::NotFound(Entity::LeadDetail))
}

pub async fn update_detail(
    pool: &PgPool,
    ctx: &RequestContext,
    id: i64,
    input: DetailInput,
) -> DomainResult<Detail> {
    let (value, label) = check(&input)?;
    let mut tx = pool.begin().await?;
    let before = lock(&mut tx, id).await?;
    if input.is_primary {
        clear_primary(&mut tx, before.contact_id, input.kind).await?;
    }
    let update = format!(
        "UPDATE lead_contact_details SET kind = $2, value = $3, label = $4, is_primary = $5
         WHERE id = $1 RETURNING {COLUMNS}"
    );
    let after = save(
        &mut tx,
        sqlx::query_as(&update).bind(id),
        &input,
        value,
        label,
    )
    .await?;
    let change = Change::new("lead.detail.update", "lead_contact_detail", id)
        .before(to_json(&before)?)
        .after(to_json(&after)?);
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(after)
}

pub async fn delete_detail(pool: &PgPool, ctx: &RequestContext, id: i64) -> DomainResult<()> {
    let mut tx = pool.begin().await?;
    let before = lock(&mut tx, id).await?;
    sqlx::query("DELETE FROM lead_contact_details WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let change =
        Change::new("lead.detail.delete", "lead_contact_detail", id).before(to_json(&before)?);
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(())
}

/// Locks the detail's contact first (the order every detail change takes),
/// then the detail.
async fn lock(conn: &mut PgConnection, id: i64) -> DomainResult<Detail> {
    let contact_id: Uuid =
        sqlx::query_scalar("SELECT contact_id FROM lead_contact_details WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or(DomainError::NotFound(Entity::LeadDetail))?;
    contacts::lock(conn, contact_id).await?;
    sqlx::query_as::<_, Detail>(&format!(
        "SELECT {COLUMNS} FROM lead_contact_details WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or(DomainError::NotFound(Entity::LeadDetail))
}

/// Runs an insert or update whose first parameter is bound, with the
/// detail's values as `$2` to `$5`; a value the contact has already is a
/// conflict naming its kind.
async fn save(
    conn: &mut PgConnection,
    query: QueryAs<'_, Postgres, Detail, PgArguments>,
    input: &DetailInput,
    value: String,
    label: Option<String>,
) -> DomainResult<Detail> {
    query
        .bind(input.kind.as_str())
        .bind(value)
        .bind(label)
        .bind(input.is_primary)
        .fetch_one(conn)
        .await
        .on_unique(
            UNIQUE_VALUE,
            input.kind.as_str(),
            "the contact has this one already",
        )
}

async fn clear_primary(
    conn: &mut PgConnection,
    contact_id: Uuid,
    kind: DetailKind,
) -> DomainResult<()> {
    sqlx::query(
        "UPDATE lead_contact_details SET is_primary = false
         WHERE contact_id = $1 AND kind = $2 AND is_primary",
    )
    .bind(contact_id)
    .bind(kind.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_become_e164() {
        assert_eq!(
            normalise_phone("+49 (30) 123-45.67").unwrap(),
            "+49301234567"
        );
        for bad in [
            "030 1234567",
            "+0301234567",
            "+49 30",
            "+49 30 12a4567",
            "+1234567890123456",
        ] {
            assert_eq!(
                normalise_phone(bad).unwrap_err().field(),
                Some("phone"),
                "{bad}"
            );
        }
    }

    #[test]
    fn email_domains_are_lowercased() {
        assert_eq!(
            normalise_email("  Anna.B@Uni-Bonn.DE ").unwrap(),
            "Anna.B@uni-bonn.de"
        );
        assert_eq!(normalise_email("anna@").unwrap_err().field(), Some("email"));
    }
}
