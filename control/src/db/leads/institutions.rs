//! Institutions: the leads themselves, their pipeline stage, owner and tags,
//! and their conversion into a customer.

use serde::Serialize;
use serde_json::Value;
use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;
use sqlx::{FromRow, PgConnection, PgPool, Postgres, QueryBuilder};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Problems, optional, required, search};
use crate::context::RequestContext;
use crate::db::audit::{self, Change, to_json};
use crate::db::customers::{self, Customer, NewCustomer};
use crate::error::{DomainError, DomainResult, Entity};

/// The sales pipeline, in order (the schema's CHECK holds the same list).
pub const STAGES: [&str; 6] = ["new", "contacted", "qualified", "proposal", "won", "lost"];
/// The most tags an institution has.
pub const TAGS_MAX: usize = 32;
const TAG_MAX_CHARS: usize = 64;

#[derive(Debug, Clone, PartialEq, Serialize, FromRow, utoipa::ToSchema)]
pub struct Institution {
    pub id: Uuid,
    pub name: String,
    /// Its type: school, university, hospital, … (free text).
    pub kind: Option<String>,
    pub website: Option<String>,
    pub country: Option<String>,
    pub city: Option<String>,
    pub address: Option<String>,
    pub stage: String,
    pub owner_id: Option<Uuid>,
    pub tags: Vec<String>,
    /// A JSON object of the operator's own keys.
    #[schema(value_type = Object)]
    pub extra: Value,
    /// The customer it became, once converted.
    pub customer_id: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub converted_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// What an institution is made of; an update replaces all of it (the caller
/// merges a partial change onto [`InstitutionInput::from`] the current one).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstitutionInput {
    pub name: String,
    pub kind: Option<String>,
    pub website: Option<String>,
    pub country: Option<String>,
    pub city: Option<String>,
    pub address: Option<String>,
    /// `None` is `new`.
    pub stage: Option<String>,
    pub owner_id: Option<Uuid>,
    pub tags: Vec<String>,
    pub extra: Option<Value>,
}

impl From<&Institution> for InstitutionInput {
    fn from(it: &Institution) -> Self {
        Self {
            name: it.name.clone(),
            kind: it.kind.clone(),
            website: it.website.clone(),
            country: it.country.clone(),
            city: it.city.clone(),
            address: it.address.clone(),
            stage: Some(it.stage.clone()),
            owner_id: it.owner_id,
            tags: it.tags.clone(),
            extra: Some(it.extra.clone()),
        }
    }
}

/// Which institutions [`list_institutions`] returns; `None` matches all.
#[derive(Debug, Clone, Default)]
pub struct InstitutionFilter {
    pub stage: Option<String>,
    pub owner_id: Option<Uuid>,
    pub tag: Option<String>,
    /// Full-text words ([`super::search`]'s syntax): the institution, one of
    /// its contacts or one of its notes says them.
    pub q: Option<String>,
}

/// Where a page starts: strictly after this institution, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: OffsetDateTime,
    pub id: Uuid,
}

pub(super) const COLUMNS: &str =
    "id, name, kind, website, country, city, address, stage, owner_id, tags, extra,
                       customer_id, converted_at, created_at, updated_at";

/// The input checked and normalised, in the order of the columns bound.
struct Checked {
    name: String,
    kind: Option<String>,
    website: Option<String>,
    country: Option<String>,
    city: Option<String>,
    address: Option<String>,
    stage: String,
    owner_id: Option<Uuid>,
    tags: Vec<String>,
    extra: Value,
}

impl Checked {
    /// Binds the values as the next ten parameters, in column order.
    fn bind<'q>(self, query: InstitutionQuery<'q>) -> InstitutionQuery<'q> {
        query
            .bind(self.name)
            .bind(self.kind)
            .bind(self.website)
            .bind(self.country)
            .bind(self.city)
            .bind(self.address)
            .bind(self.stage)
            .bind(self.owner_id)
            .bind(self.tags)
            .bind(self.extra)
    }
}

type InstitutionQuery<'q> = QueryAs<'q, Postgres, Institution, PgArguments>;

impl From<Checked> for InstitutionInput {
    fn from(c: Checked) -> Self {
        Self {
            name: c.name,
            kind: c.kind,
            website: c.website,
            country: c.country,
            city: c.city,
            address: c.address,
            stage: Some(c.stage),
            owner_id: c.owner_id,
            tags: c.tags,
            extra: Some(c.extra),
        }
    }
}

fn check(input: InstitutionInput) -> DomainResult<Checked> {
    check_all(input).map_err(super::first)
}

/// Every refusal of the input, field by field, not only the first.
fn check_all(input: InstitutionInput) -> Result<Checked, Vec<DomainError>> {
    let mut p = Problems::default();
    let stage = input.stage.as_deref().unwrap_or("new");
    let checked = Checked {
        name: p.take(required("name", &input.name, 256)),
        kind: p.take(optional("kind", input.kind.as_deref(), 64)),
        website: p.take(check_website(input.website.as_deref())),
        country: p.take(optional("country", input.country.as_deref(), 64)),
        city: p.take(optional("city", input.city.as_deref(), 128)),
        address: p.take(optional("address", input.address.as_deref(), 512)),
        stage: p.take(check_stage(stage)),
        owner_id: input.owner_id,
        tags: p.take(check_tags(input.tags)),
        extra: p.take(customers::check_object(
            "extra",
            input
                .extra
                .unwrap_or_else(|| Value::Object(Default::default())),
        )),
    };
    p.finish(checked)
}

/// The input as it would be stored (trimmed, tags lowercased, the stage
/// defaulted), or every refusal of it: an import compares what a file says
/// with what is stored, and reports each bad cell.
pub(super) fn normalised(input: InstitutionInput) -> Result<InstitutionInput, Vec<DomainError>> {
    check_all(input).map(InstitutionInput::from)
}

pub async fn create_institution(
    pool: &PgPool,
    ctx: &RequestContext,
    input: InstitutionInput,
) -> DomainResult<Institution> {
    let mut tx = pool.begin().await?;
    let created = create_institution_in(&mut tx, ctx, input).await?;
    tx.commit().await?;
    Ok(created)
}

/// [`create_institution`] inside the caller's transaction (an import's),
/// with the same rules and audit row; committing stays the caller's.
pub(super) async fn create_institution_in(
    conn: &mut PgConnection,
    ctx: &RequestContext,
    input: InstitutionInput,
) -> DomainResult<Institution> {
    let c = check(input)?;
    let insert = format!(
        "INSERT INTO lead_institutions (name, kind, website, country, city, address, stage, owner_id, tags, extra)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {COLUMNS}"
    );
    let created = c
        .bind(sqlx::query_as::<_, Institution>(&insert))
        .fetch_one(&mut *conn)
        .await
        .map_err(unknown_owner)?;
    let change = Change::new("lead.institution.create", "lead_institution", created.id)
        .after(to_json(&created)?);
    audit::record_change(conn, ctx, change).await?;
    Ok(created)
}

pub async fn get_institution(pool: &PgPool, id: Uuid) -> DomainResult<Institution> {
    sqlx::query_as::<_, Institution>(&format!(
        "SELECT {COLUMNS} FROM lead_institutions WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or(DomainError::NotFound(Entity::LeadInstitution))
}

/// One page of institutions matching `filter`, newest first, after
/// `cursor`, and the cursor of the next page (`None`: the last). Keyset on
/// `(created_at, id)`, no `count(*)`.
pub async fn list_institutions(
    pool: &PgPool,
    filter: &InstitutionFilter,
    cursor: Option<Cursor>,
    per_page: u32,
) -> DomainResult<(Vec<Institution>, Option<Cursor>)> {
    if per_page == 0 {
        return Err(DomainError::invalid("per_page", "must be at least 1"));
    }
    let mut sql = QueryBuilder::<Postgres>::new(format!(
        "SELECT {COLUMNS} FROM lead_institutions WHERE true"
    ));
    push_filter(&mut sql, filter)?;
    if let Some(cursor) = cursor {
        sql.push(" AND (created_at, id) < (")
            .push_bind(cursor.created_at)
            .push(", ")
            .push_bind(cursor.id)
            .push(")");
    }
    sql.push(" ORDER BY created_at DESC, id DESC LIMIT ")
        .push_bind(i64::from(per_page) + 1);
    let mut items: Vec<Institution> = sql.build_query_as().fetch_all(pool).await?;
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

/// `limit` institutions matching `filter` from `offset`, newest first, and
/// how many match in all: the admin API's pages and its export.
/// Every institution matching `filter`, newest first, streamed.
pub fn stream_institutions(
    pool: PgPool,
    filter: &InstitutionFilter,
) -> DomainResult<super::super::RowStream<Institution>> {
    let mut sql = QueryBuilder::<Postgres>::new(format!(
        "SELECT {COLUMNS} FROM lead_institutions WHERE true"
    ));
    push_filter(&mut sql, filter)?;
    sql.push(" ORDER BY created_at DESC, id DESC");
    Ok(super::super::stream_rows(pool, sql))
}

/// How many institutions match `filter`.
pub async fn count_institutions(pool: &PgPool, filter: &InstitutionFilter) -> DomainResult<i64> {
    let mut count =
        QueryBuilder::<Postgres>::new("SELECT count(*) FROM lead_institutions WHERE true");
    push_filter(&mut count, filter)?;
    Ok(count.build_query_scalar().fetch_one(pool).await?)
}

pub async fn list_institutions_counted(
    pool: &PgPool,
    filter: &InstitutionFilter,
    limit: i64,
    offset: i64,
) -> DomainResult<(Vec<Institution>, i64)> {
    let mut count =
        QueryBuilder::<Postgres>::new("SELECT count(*) FROM lead_institutions WHERE true");
    push_filter(&mut count, filter)?;
    let total: i64 = count.build_query_scalar().fetch_one(pool).await?;
    let mut sql = QueryBuilder::<Postgres>::new(format!(
        "SELECT {COLUMNS} FROM lead_institutions WHERE true"
    ));
    push_filter(&mut sql, filter)?;
    sql.push(" ORDER BY created_at DESC, id DESC LIMIT ")
        .push_bind(limit)
        .push(" OFFSET ")
        .push_bind(offset);
    let items = sql.build_query_as().fetch_all(pool).await?;
    Ok((items, total))
}

/// Appends `filter`'s conditions, each checked, to a query ending in a
/// `WHERE` clause.
pub(super) fn push_filter(
    sql: &mut QueryBuilder<'_, Postgres>,
    filter: &InstitutionFilter,
) -> DomainResult<()> {
    if let Some(stage) = &filter.stage {
        sql.push(" AND stage = ").push_bind(check_stage(stage)?);
    }
    if let Some(owner) = filter.owner_id {
        sql.push(" AND owner_id = ").push_bind(owner);
    }
    if let Some(tag) = &filter.tag {
        let tag = check_tags(vec![tag.clone()])?;
        sql.push(" AND tags @> ").push_bind(tag);
    }
    if let Some(q) = &filter.q {
        sql.push(" AND id IN (");
        search::push_matching_institutions(sql, q)?;
        sql.push(")");
    }
    Ok(())
}

pub async fn update_institution(
    pool: &PgPool,
    ctx: &RequestContext,
    id: Uuid,
    input: InstitutionInput,
) -> DomainResult<Institution> {
    let mut tx = pool.begin().await?;
    let after = update_institution_in(&mut tx, ctx, id, input).await?;
    tx.commit().await?;
    Ok(after)
}

/// [`update_institution`] inside the caller's transaction.
pub(super) async fn update_institution_in(
    conn: &mut PgConnection,
    ctx: &RequestContext,
    id: Uuid,
    input: InstitutionInput,
) -> DomainResult<Institution> {
    let c = check(input)?;
    let before = lock(conn, id).await?;
    let update = format!(
        "UPDATE lead_institutions SET name = $2, kind = $3, website = $4, country = $5, city = $6,
                address = $7, stage = $8, owner_id = $9, tags = $10, extra = $11, updated_at = now()
         WHERE id = $1 RETURNING {COLUMNS}"
    );
    let after = c
        .bind(sqlx::query_as::<_, Institution>(&update).bind(id))
        .fetch_one(&mut *conn)
        .await
        .map_err(unknown_owner)?;
    let change = Change::new("lead.institution.update", "lead_institution", id)
        .before(to_json(&before)?)
        .after(to_json(&after)?);
    audit::record_change(conn, ctx, change).await?;
    Ok(after)
}

/// Deletes the institution with its contacts and notes (the schema
/// cascades); the audit row keeps what it was. The customer it became stays.
pub async fn delete_institution(pool: &PgPool, ctx: &RequestContext, id: Uuid) -> DomainResult<()> {
    let mut tx = pool.begin().await?;
    let before = lock(&mut tx, id).await?;
    sqlx::query("DELETE FROM lead_institutions WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let change =
        Change::new("lead.institution.delete", "lead_institution", id).before(to_json(&before)?);
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(())
}

/// Makes the lead a customer, in one transaction: the customer is created
/// by the customers' own rule ([`customers::create_in`], its audit row
/// included), the institution keeps the link and moves to `won`. Refused
/// with a conflict when it was converted already; the institution's row
/// lock makes two concurrent conversions queue, and the second sees the link.
pub async fn convert_to_customer(
    pool: &PgPool,
    ctx: &RequestContext,
    id: Uuid,
    customer: NewCustomer,
) -> DomainResult<(Institution, Customer)> {
    let mut tx = pool.begin().await?;
    let before = lock(&mut tx, id).await?;
    if before.customer_id.is_some() {
        return Err(DomainError::Conflict {
            field: None,
            message: "the institution was converted to a customer already".to_owned(),
        });
    }
    let created = customers::create_in(&mut tx, ctx, customer).await?;
    let after = sqlx::query_as::<_, Institution>(&format!(
        "UPDATE lead_institutions SET customer_id = $2, converted_at = now(), stage = 'won',
                updated_at = now()
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(created.id)
    .fetch_one(&mut *tx)
    .await?;
    let change = Change::new("lead.institution.convert", "lead_institution", id)
        .before(to_json(&before)?)
        .after(to_json(&after)?);
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok((after, created))
}

/// Locks the institutions of these ids that exist, in id order (the order
/// every caller locking several takes, so two never wait on each other).
pub(super) async fn lock_many(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> DomainResult<Vec<Institution>> {
    Ok(sqlx::query_as::<_, Institution>(&format!(
        "SELECT {COLUMNS} FROM lead_institutions WHERE id = ANY($1) ORDER BY id FOR UPDATE"
    ))
    .bind(ids)
    .fetch_all(conn)
    .await?)
}

pub(super) async fn lock(conn: &mut PgConnection, id: Uuid) -> DomainResult<Institution> {
    sqlx::query_as::<_, Institution>(&format!(
        "SELECT {COLUMNS} FROM lead_institutions WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or(DomainError::NotFound(Entity::LeadInstitution))
}

fn unknown_owner(error: sqlx::Error) -> DomainError {
    match &error {
        sqlx::Error::Database(db) if db.constraint() == Some("lead_institutions_owner_id_fkey") => {
            DomainError::invalid("owner_id", "is not an admin")
        }
        _ => DomainError::Database(error),
    }
}

pub(super) fn check_stage(stage: &str) -> DomainResult<String> {
    let stage = stage.trim();
    if !STAGES.contains(&stage) {
        return Err(DomainError::invalid(
            "stage",
            format!("must be one of {}", STAGES.join(", ")),
        ));
    }
    Ok(stage.to_owned())
}

/// Trimmed, lowercased, deduplicated, in the order given.
fn check_tags(tags: Vec<String>) -> DomainResult<Vec<String>> {
    let mut checked: Vec<String> = Vec::new();
    for tag in tags {
        let tag = required("tags", &tag, TAG_MAX_CHARS)?.to_lowercase();
        if !checked.contains(&tag) {
            checked.push(tag);
        }
    }
    if checked.len() > TAGS_MAX {
        return Err(DomainError::invalid(
            "tags",
            format!("must be at most {TAGS_MAX} tags"),
        ));
    }
    Ok(checked)
}

/// An address a browser can open: `http(s)://` and a host, no spaces.
fn check_website(website: Option<&str>) -> DomainResult<Option<String>> {
    let Some(website) = optional("website", website, 512)? else {
        return Ok(None);
    };
    let host = website
        .strip_prefix("https://")
        .or_else(|| website.strip_prefix("http://"))
        .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or(""));
    match host {
        Some(host) if host.contains('.') && !website.contains(char::is_whitespace) => {
            Ok(Some(website))
        }
        _ => Err(DomainError::invalid(
            "website",
            "must be an address like https://example.org",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_normalised() {
        let tags = check_tags(vec![" School ".into(), "school".into(), "EU".into()]).unwrap();
        assert_eq!(tags, ["school", "eu"]);
        assert_eq!(
            check_tags(vec![" ".into()]).unwrap_err().field(),
            Some("tags")
        );
    }

    #[test]
    fn websites_need_a_scheme_and_a_host() {
        assert!(check_website(Some("https://uni-bonn.de/x")).is_ok());
        for bad in [
            "uni-bonn.de",
            "https://localhost",
            "ftp://a.de",
            "https://a .de",
        ] {
            assert_eq!(
                check_website(Some(bad)).unwrap_err().field(),
                Some("website"),
                "{bad}"
            );
        }
    }
}
