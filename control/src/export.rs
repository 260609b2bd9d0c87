//! Exports of what the admin API and the panel list: one writer per list,
//! shared by both, so a file downloaded from either is the same. Rows are
//! encoded as they come from the database and sent as they are encoded:
//! an export's memory does not grow with its rows.

use std::borrow::Cow;

use axum::body::{Body, Bytes};
use futures_util::{Stream, StreamExt};
use time::format_description::well_known::Rfc3339;

use crate::db::audit::AuditEntry;
use crate::db::leads::Institution;

/// What an export is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv; charset=utf-8",
            Self::Json => "application/json",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Json => "json",
        }
    }
}

const CSV_HEADER: [&str; 13] = [
    "id",
    "at",
    "request_id",
    "actor_kind",
    "actor_id",
    "actor_name",
    "action",
    "entity_kind",
    "entity_id",
    "ip",
    "user_agent",
    "before",
    "after",
];

/// The audit rows as a response body, streamed: a CSV with a header line,
/// or a JSON array. A database error midway ends the body early (the client
/// sees a cut transfer, never a file that looks whole) and is logged.
pub fn audit_body(
    rows: impl Stream<Item = Result<AuditEntry, sqlx::Error>> + Send + 'static,
    format: Format,
) -> Body {
    let opening = match format {
        Format::Csv => csv_line(CSV_HEADER.iter().map(|cell| Cow::Borrowed(*cell))),
        Format::Json => Bytes::from_static(b"["),
    };
    let mut first = true;
    let encoded = rows.map(move |row| {
        let row = row.map_err(|error| {
            tracing::error!(%error, "audit export cut short");
            std::io::Error::other(error)
        })?;
        let chunk = match format {
            Format::Csv => csv_line(audit_cells(&row).into_iter().map(Cow::Owned)),
            Format::Json => {
                let mut text = if first { Vec::new() } else { b",".to_vec() };
                serde_json::to_writer(&mut text, &row).map_err(std::io::Error::other)?;
                Bytes::from(text)
            }
        };
        first = false;
        Ok::<_, std::io::Error>(chunk)
    });
    let closing = match format {
        Format::Csv => None,
        Format::Json => Some(Ok(Bytes::from_static(b"]"))),
    };
    let stream = futures_util::stream::once(async move { Ok(opening) })
        .chain(encoded)
        .chain(futures_util::stream::iter(closing));
    Body::from_stream(stream)
}

fn audit_cells(row: &AuditEntry) -> [String; 13] {
    let json = |value: &Option<serde_json::Value>| {
        value.as_ref().map(ToString::to_string).unwrap_or_default()
    };
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    [
        row.id.to_string(),
        // An OffsetDateTime from PostgreSQL always formats as RFC 3339.
        row.at.format(&Rfc3339).unwrap_or_default(),
        row.request_id.clone(),
        row.actor_kind.clone(),
        text(&row.actor_id),
        text(&row.actor_name),
        row.action.clone(),
        row.entity_kind.clone(),
        text(&row.entity_id),
        text(&row.ip),
        text(&row.user_agent),
        json(&row.before),
        json(&row.after),
    ]
}

/// New license keys with what a recipient needs beside each: the CSV a
/// batch's result page offers once. Cells defused like every export.
pub fn license_keys_csv<'a>(rows: impl Iterator<Item = [&'a str; 4]>) -> Vec<u8> {
    let header = [
        "license_key",
        "license_id",
        "customer_email",
        "customer_name",
    ];
    let mut out = csv_line(header.into_iter().map(Cow::Borrowed)).to_vec();
    for row in rows {
        out.extend_from_slice(&csv_line(row.into_iter().map(Cow::Borrowed)));
    }
    out
}

const INSTITUTION_HEADER: [&str; 15] = [
    "id",
    "name",
    "kind",
    "stage",
    "website",
    "country",
    "city",
    "address",
    "tags",
    "owner_id",
    "customer_id",
    "converted_at",
    "extra",
    "created_at",
    "updated_at",
];

/// Lead institutions as a CSV with a header line; tags are separated by
/// `;` (as the import reads them), `extra` is JSON text.
pub fn institutions_csv(rows: &[Institution]) -> Vec<u8> {
    let mut out = csv_line(INSTITUTION_HEADER.into_iter().map(Cow::Borrowed)).to_vec();
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    let id = |value: Option<uuid::Uuid>| value.map(|id| id.to_string()).unwrap_or_default();
    // An OffsetDateTime from PostgreSQL always formats as RFC 3339.
    let at = |value: time::OffsetDateTime| value.format(&Rfc3339).unwrap_or_default();
    for row in rows {
        let cells = [
            row.id.to_string(),
            row.name.clone(),
            text(&row.kind),
            row.stage.clone(),
            text(&row.website),
            text(&row.country),
            text(&row.city),
            text(&row.address),
            row.tags.join(";"),
            id(row.owner_id),
            id(row.customer_id),
            row.converted_at.map(at).unwrap_or_default(),
            row.extra.to_string(),
            at(row.created_at),
            at(row.updated_at),
        ];
        out.extend_from_slice(&csv_line(cells.into_iter().map(Cow::Owned)));
    }
    out
}

/// One CSV record, cells defused, with its line ending.
fn csv_line<'a>(cells: impl Iterator<Item = Cow<'a, str>>) -> Bytes {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for cell in cells {
        // Writing to a Vec cannot fail.
        let _ = writer.write_field(defused(&cell).as_bytes());
    }
    let _ = writer.write_record(None::<&[u8]>);
    Bytes::from(writer.into_inner().unwrap_or_default())
}

/// A cell a spreadsheet would evaluate (`=`, `+`, `-`, `@`, tab, CR first)
/// gets a leading `'`: user agents and names come from callers.
fn defused(cell: &str) -> Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_defused() {
        assert_eq!(defused("=cmd()"), "'=cmd()");
        assert_eq!(defused("@x"), "'@x");
        assert_eq!(defused("license.create"), "license.create");
        assert_eq!(defused(""), "");
    }

    #[test]
    fn license_keys_csv_defuses_names() {
        let csv = license_keys_csv([["K-1", "id", "a@example.com", "=HYPERLINK(1)"]].into_iter());
        assert_eq!(
            String::from_utf8(csv).unwrap(),
            "license_key,license_id,customer_email,customer_name\nK-1,id,a@example.com,'=HYPERLINK(1)\n"
        );
    }
}
