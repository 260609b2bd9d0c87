//! Contacts: the people at an institution. A delete is soft (see the
//! module comment of `leads`): their notes keep their subject and history.

use serde::Serialize;
use sqlx::{FromRow, PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use super::details::{self, Detail};
use super::{Problems, institutions, optional, required};
use crate::context::RequestContext;
use crate::db::audit::{self, Change, to_json};
use crate::error::{DomainError, DomainResult, Entity};

#[derive(Debug, Clone, PartialEq, Serialize, FromRow, utoipa::ToSchema)]
pub struct Contact {
    pub id: Uuid,
    pub institution_id: Uuid,
    pub full_name: String,
    /// Their role at the institution.
    pub title: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ContactWithDetails {
    #[serde(flatten)]
    pub contact: Contact,
    pub details: Vec<Detail>,
}

#[derive(Debug, Clone, Default)]
pub struct ContactInput {
    pub full_name: String,
    pub title: Option<String>,
}

const COLUMNS: &str = "id, institution_id, full_name, title, created_at, updated_at";

fn check(input: &ContactInput) -> DomainResult<(String, Option<String>)> {
    check_all(input).map_err(super::first)
}

/// Every refusal of the input, not only the first: an import reports each.
pub(super) fn check_all(
    input: &ContactInput,
) -> Result<(String, Option<String>), Vec<DomainError>> {
    let mut p = Problems::default();
    let checked = (
        p.take(required("full_name", &input.full_name, 256)),
        p.take(optional("title", input.title.as_deref(), 128)),
    );
    p.finish(checked)
}

pub async fn create_contact(
    pool: &PgPool,
    ctx: &RequestContext,
    institution_id: Uuid,
    input: ContactInput,
) -> DomainResult<Contact> {
    let mut tx = pool.begin().await?;
    // Locked so the institution cannot be deleted under the new contact.
    institutions::lock(&mut tx, institution_id).await?;
    let created = create_contact_in(&mut tx, ctx, institution_id, input).await?;
    tx.commit().await?;
    Ok(created)
}

/// [`create_contact`] inside the caller's transaction, which holds the
/// institution's row lock already.
pub(super) async fn create_contact_in(
    conn: &mut PgConnection,
    ctx: &RequestContext,
    institution_id: Uuid,
    input: ContactInput,
) -> DomainResult<Contact> {
    let (full_name, title) = check(&input)?;
    let created = sqlx::query_as::<_, Contact>(&format!(
        "INSERT INTO lead_contacts (institution_id, full_name, title) VALUES ($1, $2, $3)
         RETURNING {COLUMNS}"
    ))
    .bind(institution_id)
    .bind(full_name)
    .bind(title)
    .fetch_one(&mut *conn)
    .await?;
    let change =
        Change::new("lead.contact.create", "lead_contact", created.id).after(to_json(&created)?);
    audit::record_change(conn, ctx, change).await?;
    Ok(created)
}

/// A contact that is not deleted, with its phones and e-mail addresses.
pub async fn get_contact(pool: &PgPool, id: Uuid) -> DomainResult<ContactWithDetails> {
    let contact = sqlx::query_as::<_, Contact>(&format!(
        "SELECT {COLUMNS} FROM lead_contacts WHERE id = $1 AND deleted_at IS NULL"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or(DomainError::NotFound(Entity::LeadContact))?;
    let details = details::of_contact(pool, id).await?;
    Ok(ContactWithDetails { contact, details })
}

/// An institution's contacts that are not deleted, by name.
pub async fn list_contacts(pool: &PgPool, institution_id: Uuid) -> DomainResult<Vec<Contact>> {
    Ok(sqlx::query_as::<_, Contact>(&format!(
        "SELECT {COLUMNS} FROM lead_contacts
         WHERE institution_id = $1 AND deleted_at IS NULL ORDER BY full_name, id"
    ))
    .bind(institution_id)
    .fetch_all(pool)
    .await?)
}

/// The contacts that are not deleted of several institutions, by name.
pub(super) async fn of_institutions(
    conn: &mut PgConnection,
    institution_ids: &[Uuid],
) -> DomainResult<Vec<Contact>> {
    Ok(sqlx::query_as::<_, Contact>(&format!(
        "SELECT {COLUMNS} FROM lead_contacts
         WHERE institution_id = ANY($1) AND deleted_at IS NULL ORDER BY full_name, id"
    ))
    .bind(institution_ids)
    .fetch_all(conn)
    .await?)
}

pub async fn update_contact(
    pool: &PgPool,
    ctx: &RequestContext,
    id: Uuid,
    input: ContactInput,
) -> DomainResult<Contact> {
    let mut tx = pool.begin().await?;
    let after = update_contact_in(&mut tx, ctx, id, input).await?;
    tx.commit().await?;
    Ok(after)
}

/// [`update_contact`] inside the caller's transaction.
pub(super) async fn update_contact_in(
    conn: &mut PgConnection,
    ctx: &RequestContext,
    id: Uuid,
    input: ContactInput,
) -> DomainResult<Contact> {
    let (full_name, title) = check(&input)?;
    let before = lock(conn, id).await?;
    let after = sqlx::query_as::<_, Contact>(&format!(
        "UPDATE lead_contacts SET full_name = $2, title = $3, updated_at = now()
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(full_name)
    .bind(title)
    .fetch_one(&mut *conn)
    .await?;
    let change = Change::new("lead.contact.update", "lead_contact", id)
        .before(to_json(&before)?)
        .after(to_json(&after)?);
    audit::record_change(conn, ctx, change).await?;
    Ok(after)
}

/// Soft-deletes the contact: it leaves lists and search, its notes and
/// their versions stay (and stay on the institution's timeline).
pub async fn delete_contact(pool: &PgPool, ctx: &RequestContext, id: Uuid) -> DomainResult<()> {
    let mut tx = pool.begin().await?;
    let before = lock(&mut tx, id).await?;
    sqlx::query("UPDATE lead_contacts SET deleted_at = now(), updated_at = now() WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let change = Change::new("lead.contact.delete", "lead_contact", id).before(to_json(&before)?);
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(())
}

/// Locks a contact that is not deleted: its detail changes queue behind it.
pub(super) async fn lock(conn: &mut PgConnection, id: Uuid) -> DomainResult<Contact> {
    sqlx::query_as::<_, Contact>(&format!(
        "SELECT {COLUMNS} FROM lead_contacts WHERE id = $1 AND deleted_at IS NULL FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or(DomainError::NotFound(Entity::LeadContact))
}
