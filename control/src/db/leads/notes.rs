//! Notes with full version history; the rules are in the module comment of
//! `leads`. `lead_notes.current_version` is the newest version's number,
//! `lead_note_versions` holds every version, the tombstone of a delete too.

use serde::Serialize;
use sqlx::{FromRow, PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{contacts, institutions, required};
use crate::context::RequestContext;
use crate::db::audit::{self, Change, to_json};
use crate::error::{DomainError, DomainResult, Entity};

/// The longest note body, in characters.
pub const NOTE_MAX_CHARS: usize = 20_000;

/// What a note is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteSubject {
    Institution(Uuid),
    Contact(Uuid),
}

/// A note as it stands: its newest version's text.
#[derive(Debug, Clone, PartialEq, Serialize, FromRow, utoipa::ToSchema)]
pub struct Note {
    pub id: Uuid,
    /// Set for every note, a contact's too (its institution's timeline).
    pub institution_id: Option<Uuid>,
    pub contact_id: Option<Uuid>,
    pub version: i32,
    /// Empty once deleted: the text is in the versions before.
    pub body: String,
    pub created_by: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub deleted_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Serialize, FromRow, utoipa::ToSchema)]
pub struct NoteVersion {
    pub version: i32,
    pub body: String,
    /// A tombstone: the note was deleted by this version.
    pub deleted: bool,
    pub edited_by: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub edited_at: OffsetDateTime,
}

const SELECT: &str = "SELECT n.id, n.institution_id, n.contact_id, n.current_version AS version,
                             v.body, n.created_by, n.created_at, n.updated_at, n.deleted_at
                        FROM lead_notes n
                        JOIN lead_note_versions v ON v.note_id = n.id AND v.version = n.current_version";

pub async fn add_note(
    pool: &PgPool,
    ctx: &RequestContext,
    subject: NoteSubject,
    body: &str,
) -> DomainResult<Note> {
    let body = required("body", body, NOTE_MAX_CHARS)?;
    let mut tx = pool.begin().await?;
    // The subject is locked so it cannot go meanwhile; a contact's note also
    // carries its institution.
    let (institution_id, contact_id) = match subject {
        NoteSubject::Institution(id) => (institutions::lock(&mut tx, id).await?.id, None),
        NoteSubject::Contact(id) => {
            let contact = contacts::lock(&mut tx, id).await?;
            (contact.institution_id, Some(contact.id))
        }
    };
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO lead_notes (institution_id, contact_id, created_by) VALUES ($1, $2, $3)
         RETURNING id",
    )
    .bind(institution_id)
    .bind(contact_id)
    .bind(ctx.admin_id())
    .fetch_one(&mut *tx)
    .await?;
    insert_version(&mut tx, ctx, id, 1, &body, false).await?;
    let note = fetch(&mut tx, id).await?;
    let change = Change::new("lead.note.create", "lead_note", id).after(to_json(&note)?);
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(note)
}

/// A note, deleted or not (a deleted one answers its tombstone).
pub async fn get_note(pool: &PgPool, id: Uuid) -> DomainResult<Note> {
    let mut conn = pool.acquire().await?;
    fetch(&mut conn, id).await
}

/// An institution's notes that are not deleted, its contacts' included
/// (deleted contacts' too), newest change first.
pub async fn list_notes(pool: &PgPool, institution_id: Uuid) -> DomainResult<Vec<Note>> {
    Ok(sqlx::query_as::<_, Note>(&format!(
        "{SELECT} WHERE n.institution_id = $1 AND n.deleted_at IS NULL
         ORDER BY n.updated_at DESC, n.id"
    ))
    .bind(institution_id)
    .fetch_all(pool)
    .await?)
}

/// An institution's deleted notes (its contacts' too), most recently
/// deleted first: their tombstones, whose history keeps every text.
pub async fn list_deleted_notes(pool: &PgPool, institution_id: Uuid) -> DomainResult<Vec<Note>> {
    Ok(sqlx::query_as::<_, Note>(&format!(
        "{SELECT} WHERE n.institution_id = $1 AND n.deleted_at IS NOT NULL
         ORDER BY n.deleted_at DESC, n.id"
    ))
    .bind(institution_id)
    .fetch_all(pool)
    .await?)
}

/// A contact's notes that are not deleted, newest change first; 404 for a
/// deleted contact (its notes stay on its institution's timeline).
pub async fn list_contact_notes(pool: &PgPool, contact_id: Uuid) -> DomainResult<Vec<Note>> {
    let mut conn = pool.acquire().await?;
    let live: Option<bool> =
        sqlx::query_scalar("SELECT deleted_at IS NULL FROM lead_contacts WHERE id = $1")
            .bind(contact_id)
            .fetch_optional(&mut *conn)
            .await?;
    if live != Some(true) {
        return Err(DomainError::NotFound(Entity::LeadContact));
    }
    Ok(sqlx::query_as::<_, Note>(&format!(
        "{SELECT} WHERE n.contact_id = $1 AND n.deleted_at IS NULL
         ORDER BY n.updated_at DESC, n.id"
    ))
    .bind(contact_id)
    .fetch_all(&mut *conn)
    .await?)
}

/// Every version of a note, oldest first, the tombstone last if deleted.
pub async fn note_history(pool: &PgPool, id: Uuid) -> DomainResult<Vec<NoteVersion>> {
    let versions = sqlx::query_as::<_, NoteVersion>(
        "SELECT version, body, deleted, edited_by, edited_at FROM lead_note_versions
         WHERE note_id = $1 ORDER BY version",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    if versions.is_empty() {
        return Err(DomainError::NotFound(Entity::LeadNote));
    }
    Ok(versions)
}

/// A new version of the note, based on version `base`: refused with a
/// conflict when another edit (or the delete) came after `base`.
pub async fn edit_note(
    pool: &PgPool,
    ctx: &RequestContext,
    id: Uuid,
    base: i32,
    body: &str,
) -> DomainResult<Note> {
    let body = required("body", body, NOTE_MAX_CHARS)?;
    let mut tx = pool.begin().await?;
    let version = advance(&mut tx, id, base).await?;
    let before = version_of(&mut tx, id, base).await?;
    insert_version(&mut tx, ctx, id, version, &body, false).await?;
    let after = fetch(&mut tx, id).await?;
    let change = Change::new("lead.note.update", "lead_note", id)
        .before(to_json(&before)?)
        .after(to_json(&after)?);
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(after)
}

/// Deletes the note by a tombstone version, based on version `base` as an
/// edit is; every earlier version stays readable in [`note_history`].
pub async fn delete_note(
    pool: &PgPool,
    ctx: &RequestContext,
    id: Uuid,
    base: i32,
) -> DomainResult<()> {
    let mut tx = pool.begin().await?;
    let version = advance(&mut tx, id, base).await?;
    let before = version_of(&mut tx, id, base).await?;
    insert_version(&mut tx, ctx, id, version, "", true).await?;
    sqlx::query("UPDATE lead_notes SET deleted_at = now() WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let change = Change::new("lead.note.delete", "lead_note", id).before(to_json(&before)?);
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(())
}

/// Moves the note from version `base` to the next, or refuses. The
/// compare-and-set takes the row lock: a concurrent edit from the same base
/// waits, then finds `current_version` moved and matches no row.
async fn advance(conn: &mut PgConnection, id: Uuid, base: i32) -> DomainResult<i32> {
    let next: Option<i32> = sqlx::query_scalar(
        "UPDATE lead_notes SET current_version = current_version + 1, updated_at = now()
         WHERE id = $1 AND current_version = $2 AND deleted_at IS NULL
         RETURNING current_version",
    )
    .bind(id)
    .bind(base)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(next) = next {
        return Ok(next);
    }
    let now = fetch(conn, id).await?;
    let message = if now.deleted_at.is_some() {
        "the note was deleted: its history keeps every version".to_owned()
    } else {
        format!(
            "the note changed since version {base}: it is at version {}, reload it and edit that",
            now.version
        )
    };
    Err(DomainError::conflict("version", message))
}

async fn insert_version(
    conn: &mut PgConnection,
    ctx: &RequestContext,
    id: Uuid,
    version: i32,
    body: &str,
    deleted: bool,
) -> DomainResult<()> {
    sqlx::query(
        "INSERT INTO lead_note_versions (note_id, version, body, deleted, edited_by)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(version)
    .bind(body)
    .bind(deleted)
    .bind(ctx.admin_id())
    .execute(conn)
    .await?;
    Ok(())
}

/// The note as it stood at `version`, for the audit row's "before".
async fn version_of(conn: &mut PgConnection, id: Uuid, version: i32) -> DomainResult<NoteVersion> {
    Ok(sqlx::query_as::<_, NoteVersion>(
        "SELECT version, body, deleted, edited_by, edited_at FROM lead_note_versions
         WHERE note_id = $1 AND version = $2",
    )
    .bind(id)
    .bind(version)
    .fetch_one(conn)
    .await?)
}

async fn fetch(conn: &mut PgConnection, id: Uuid) -> DomainResult<Note> {
    sqlx::query_as::<_, Note>(&format!("{SELECT} WHERE n.id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or(DomainError::NotFound(Entity::LeadNote))
}
