//! Full-text search across institutions, contacts and notes, in German and
//! English at once: each text is indexed with both stemmings
//! (`lead_tsvector`) and the query is the OR of both parsings, so a German
//! word finds its inflections by the German stem and an English one by the
//! English stem. Every version of a note is indexed: a note is found by a
//! word of an old version too (the hit names the newest version matched).

use serde::Serialize;
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::error::{DomainError, DomainResult};

/// The longest query, in characters.
pub const QUERY_MAX_CHARS: usize = 256;

/// Where an institution matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type, utoipa::ToSchema)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Match {
    Institution,
    Contact,
    Note,
}

#[derive(Debug, Clone, PartialEq, Serialize, FromRow, utoipa::ToSchema)]
pub struct SearchHit {
    pub institution_id: Uuid,
    pub institution_name: String,
    pub matched: Match,
    /// The contact that matched, or the contact a matching note is about.
    pub contact_id: Option<Uuid>,
    pub note_id: Option<Uuid>,
    /// The newest version of the note that matched (older than the note's
    /// current one when only an old text had the words).
    pub note_version: Option<i32>,
    pub rank: f32,
}

/// The best `limit` hits for `query` (web-search syntax: words, "phrases",
/// `-not`, `or`), best first. Deleted contacts and notes are not found.
pub async fn search(pool: &PgPool, query: &str, limit: u32) -> DomainResult<Vec<SearchHit>> {
    let query = check_query(query)?;
    Ok(sqlx::query_as::<_, SearchHit>(
        "WITH q AS (SELECT websearch_to_tsquery('german', $1) || websearch_to_tsquery('english', $1) AS query)
         SELECT i.id AS institution_id, i.name AS institution_name, 'institution' AS matched,
                NULL::uuid AS contact_id, NULL::uuid AS note_id, NULL::int AS note_version,
                ts_rank(i.search, q.query) AS rank
           FROM lead_institutions i, q
          WHERE i.search @@ q.query
         UNION ALL
         SELECT i.id, i.name, 'contact', c.id, NULL, NULL, ts_rank(c.search, q.query)
           FROM lead_contacts c JOIN lead_institutions i ON i.id = c.institution_id, q
          WHERE c.deleted_at IS NULL AND c.search @@ q.query
         UNION ALL
         SELECT i.id, i.name, 'note', n.contact_id, n.id, max(v.version), max(ts_rank(v.search, q.query))
           FROM lead_note_versions v
           JOIN lead_notes n ON n.id = v.note_id
           JOIN lead_institutions i ON i.id = n.institution_id, q
          WHERE n.deleted_at IS NULL AND v.search @@ q.query
          GROUP BY i.id, i.name, n.contact_id, n.id
         ORDER BY rank DESC, institution_name, institution_id
         LIMIT $2",
    )
    .bind(query)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?)
}

/// The ids of the institutions [`search`] would find for `query` (by their
/// own text, a contact's or a note's), as a subquery.
pub(super) fn push_matching_institutions(
    sql: &mut QueryBuilder<'_, Postgres>,
    query: &str,
) -> DomainResult<()> {
    let query = check_query(query)?;
    // Each arm is answered by its table's GIN index.
    sql.push("SELECT id FROM lead_institutions WHERE search @@ ");
    push_tsquery(sql, query);
    sql.push(
        " UNION SELECT institution_id FROM lead_contacts WHERE deleted_at IS NULL AND search @@ ",
    );
    push_tsquery(sql, query);
    sql.push(
        " UNION SELECT n.institution_id FROM lead_note_versions v JOIN lead_notes n ON n.id = v.note_id
          WHERE n.deleted_at IS NULL AND v.search @@ ",
    );
    push_tsquery(sql, query);
    Ok(())
}

/// Both parsings of the query, as [`search`] builds them.
fn push_tsquery(sql: &mut QueryBuilder<'_, Postgres>, query: &str) {
    sql.push("(websearch_to_tsquery('german', ")
        .push_bind(query.to_owned())
        .push(") || websearch_to_tsquery('english', ")
        .push_bind(query.to_owned())
        .push("))");
}

fn check_query(query: &str) -> DomainResult<&str> {
    let query = query.trim();
    if query.is_empty() || query.chars().count() > QUERY_MAX_CHARS {
        return Err(DomainError::invalid(
            "q",
            format!("must be 1 to {QUERY_MAX_CHARS} characters"),
        ));
    }
    Ok(query)
}
