//! Resources: `kind` (required: `domain`, `ip` or `phone`), `value`
//! (required; canonicalised as a bulk add does, so `Example.COM` is
//! `example.com`), `notes`. A value already in its pool is unchanged.

use serde_json::json;
use sqlx::PgConnection;

use super::source::Record;
use super::{Import, Problem};
use crate::context::RequestContext;
use crate::db::audit::{self, Change};
use crate::db::resources::ResourceKind;
use crate::error::DomainResult;
use crate::secrets::Secrets;

pub const RESOURCE_COLUMNS: &[&str] = &["kind", "value", "notes"];
/// Longest note on a resource.
const NOTES_MAX_CHARS: usize = 1_000;

pub struct Resources;

pub struct Line {
    kind: ResourceKind,
    value: String,
    notes: Option<String>,
}

impl Import for Resources {
    type Line = Line;
    const COLUMNS: &'static [&'static str] = RESOURCE_COLUMNS;
    const REQUIRED: &'static [&'static str] = &["kind", "value"];

    fn check(record: &Record, problems: &mut Vec<Problem>) -> Option<Line> {
        let mut problem = |column: &str, message: String| {
            problems.push(Problem::new(record.line, Some(column), message));
        };
        let kind = ResourceKind::try_from(record.get("kind")?.to_lowercase())
            .map_err(|_| problem("kind", "one of domain, ip, phone".to_owned()))
            .ok()?;
        let value = kind
            .canonicalise(record.get("value")?)
            .map_err(|message| problem("value", message))
            .ok()?;
        let notes = record.get("notes").map(str::to_owned);
        if notes
            .as_ref()
            .is_some_and(|n| n.chars().count() > NOTES_MAX_CHARS)
        {
            problem("notes", format!("at most {NOTES_MAX_CHARS} characters"));
            return None;
        }
        Some(Line { kind, value, notes })
    }

    fn identity(line: &Line) -> (&'static str, String) {
        ("value", format!("{}:{}", line.kind.as_str(), line.value))
    }

    async fn write(
        conn: &mut PgConnection,
        ctx: &RequestContext,
        _secrets: &Secrets,
        line: &Line,
    ) -> DomainResult<bool> {
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO resources (kind, value, notes) VALUES ($1, $2, $3)
             ON CONFLICT (kind, value) DO NOTHING RETURNING id",
        )
        .bind(line.kind.as_str())
        .bind(&line.value)
        .bind(&line.notes)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(id) = id else {
            return Ok(false);
        };
        sqlx::query("INSERT INTO resource_history (resource_id, action) VALUES ($1, 'added')")
            .bind(id)
            .execute(&mut *conn)
            .await?;
        let change = Change::new("resource.import", "resource", id.to_string()).after(json!({
            "kind": line.kind.as_str(),
            "value": line.value,
            "notes": line.notes,
        }));
        audit::record_change(conn, ctx, change).await?;
        Ok(true)
    }
}
