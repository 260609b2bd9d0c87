//! Customers: `external_id` (required: the customer's id in the system the
//! file comes from, by which a license line names it and a re-run finds
//! it), `name` (required), `email`, `company`, `notes`, `metadata` (a JSON
//! object).

use sqlx::PgConnection;
use uuid::Uuid;

use super::source::Record;
use super::{Import, Problem, external_id, object, parsed};
use crate::context::RequestContext;
use crate::db::customers::{self, NewCustomer};
use crate::error::DomainResult;
use crate::secrets::Secrets;

pub const CUSTOMER_COLUMNS: &[&str] = &[
    "external_id",
    "name",
    "email",
    "company",
    "notes",
    "metadata",
];

pub struct Customers;

pub struct Line {
    external_id: String,
    new: NewCustomer,
}

impl Import for Customers {
    type Line = Line;
    const COLUMNS: &'static [&'static str] = CUSTOMER_COLUMNS;
    const REQUIRED: &'static [&'static str] = &["external_id", "name"];

    fn check(record: &Record, problems: &mut Vec<Problem>) -> Option<Line> {
        let id = external_id(record, "external_id", problems);
        let metadata = parsed(record, "metadata", "a JSON object", object, problems);
        let text = |column: &str| record.get(column).map(str::to_owned);
        Some(Line {
            external_id: id?,
            new: NewCustomer {
                name: text("name")?,
                email: text("email"),
                company: text("company"),
                notes: text("notes"),
                metadata: metadata.ok()?,
            },
        })
    }

    fn identity(line: &Line) -> (&'static str, String) {
        ("external_id", line.external_id.clone())
    }

    async fn write(
        conn: &mut PgConnection,
        ctx: &RequestContext,
        _secrets: &Secrets,
        line: &Line,
    ) -> DomainResult<bool> {
        if imported(conn, &line.external_id).await?.is_some() {
            return Ok(false);
        }
        let customer = customers::create_in(&mut *conn, ctx, line.new.clone()).await?;
        sqlx::query("INSERT INTO customer_import_ids (external_id, customer_id) VALUES ($1, $2)")
            .bind(&line.external_id)
            .bind(customer.id)
            .execute(&mut *conn)
            .await?;
        Ok(true)
    }
}

/// The customer an earlier import made under this external id.
pub(super) async fn imported(
    conn: &mut PgConnection,
    external_id: &str,
) -> DomainResult<Option<Uuid>> {
    Ok(
        sqlx::query_scalar("SELECT customer_id FROM customer_import_ids WHERE external_id = $1")
            .bind(external_id)
            .fetch_optional(conn)
            .await?,
    )
}
