//! Exports of what the admin API and the panel list: one writer per list,
//! shared by both, so a file downloaded from either is the same. Rows are
//! encoded as they come from the database and sent as they are encoded:
//! an export's memory does not grow with its rows.

use std::borrow::Cow;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use serde_json::Value;

use crate::db::RowStream;
use crate::db::audit::AuditEntry;
use crate::db::customers::Customer;
use crate::db::devices::Device;
use crate::db::imports::cell;
use crate::db::leads::Institution;
use crate::db::licenses::License;
use crate::db::resources::Resource;
use crate::db::sessions::Session;

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

/// A row type an export writes: JSON as the API answers it, CSV with one
/// column per field, in [`Record::COLUMNS`]' order. A CSV cell is the
/// field's JSON value as text: strings as they are, `null` empty, a list of
/// strings separated by `;` (as the imports read them), anything else
/// nested as JSON text.
pub trait Record: Serialize + Send + 'static {
    /// What the file is called, before its extension.
    const NAME: &'static str;
    /// The fields, as the JSON names them.
    const COLUMNS: &'static [&'static str];
}

impl Record for AuditEntry {
    const NAME: &'static str = "audit";
    const COLUMNS: &'static [&'static str] = &[
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
}

impl Record for Customer {
    const NAME: &'static str = "customers";
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "name",
        "email",
        "company",
        "notes",
        "metadata",
        "created_at",
        "updated_at",
    ];
}

impl Record for License {
    const NAME: &'static str = "licenses";
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "key_prefix",
        "customer_id",
        "product_id",
        "kind",
        "status",
        "valid_from",
        "valid_until",
        "device_limit",
        "session_limit",
        "allow_session_takeover",
        "grace_period_secs",
        "seat_change_limit",
        "seat_change_window_secs",
        "features",
        "usage_limits",
        "usage_exhausted",
        "metadata",
        "batch_id",
        "created_at",
        "updated_at",
    ];
}

impl Record for Device {
    const NAME: &'static str = "devices";
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "license_id",
        "fingerprint_hash",
        "components",
        "name",
        "status",
        "app_version",
        "ip",
        "first_seen_at",
        "last_seen_at",
        "deactivated_at",
        "deactivation_reason",
    ];
}

impl Record for Session {
    const NAME: &'static str = "sessions";
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "license_id",
        "device_id",
        "started_at",
        "last_heartbeat_at",
        "token_expires_at",
        "ended_at",
        "end_reason",
        "app_version",
    ];
}

impl Record for Resource {
    const NAME: &'static str = "resources";
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "kind",
        "value",
        "status",
        "license_id",
        "allocated_at",
        "quarantined_until",
        "notes",
        "created_at",
    ];
}

impl Record for Institution {
    const NAME: &'static str = "institutions";
    const COLUMNS: &'static [&'static str] = &[
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
}

/// The rows as a response body, streamed: a CSV with a header line, or a
/// JSON array. A database error midway ends the body early (the client
/// sees a cut transfer, never a file that looks whole) and is logged.
pub fn body<R: Record>(rows: RowStream<R>, format: Format) -> Body {
    Body::from_stream(encode(rows, format))
}

/// The rows encoded chunk by chunk, as [`body`] sends them and the CLI
/// writes them; a database error ends the stream with that error.
pub fn encode<R: Record>(
    rows: RowStream<R>,
    format: Format,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let opening = match format {
        Format::Csv => csv_line(R::COLUMNS.iter().map(|cell| Cow::Borrowed(*cell))),
        Format::Json => Bytes::from_static(b"["),
    };
    let mut first = true;
    let encoded = rows.map(move |row| {
        let row = row.map_err(|error| {
            tracing::error!(%error, export = R::NAME, "export cut short");
            std::io::Error::other(error)
        })?;
        let chunk = match format {
            Format::Csv => csv_record(&row)?,
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
    futures_util::stream::once(async move { Ok(opening) })
        .chain(encoded)
        .chain(futures_util::stream::iter(closing))
}

/// An export's answer: the file `<name>.<extension>`, never cached, and
/// `x-total-count`, how many rows matched (and the file holds).
pub fn download<R: Record>(rows: RowStream<R>, format: Format, total: i64) -> Response {
    attachment(body(rows, format), R::NAME, format, total)
}

/// [`download`]'s answer around a body already encoded (the panel's
/// export files).
pub fn attachment(body: Body, name: &str, format: Format, total: i64) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The names are ours, plain ASCII: the header value is always valid.
    if let Ok(disposition) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{name}.{}\"",
        format.extension()
    )) {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    headers.insert(X_TOTAL_COUNT.clone(), HeaderValue::from(total));
    response
}

/// How many rows an export holds.
static X_TOTAL_COUNT: HeaderName = HeaderName::from_static("x-total-count");

fn csv_record<R: Record>(row: &R) -> std::io::Result<Bytes> {
    let Value::Object(fields) = serde_json::to_value(row).map_err(std::io::Error::other)? else {
        return Err(std::io::Error::other(format!(
            "a {} row is not a JSON object",
            R::NAME
        )));
    };
    Ok(csv_line(R::COLUMNS.iter().map(|column| {
        Cow::Owned(fields.get(*column).map(cell).unwrap_or_default())
    })))
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
    fn cells_write_lists_of_strings_with_semicolons_and_the_rest_as_json() {
        assert_eq!(cell(&serde_json::json!(null)), "");
        assert_eq!(cell(&serde_json::json!("x")), "x");
        assert_eq!(cell(&serde_json::json!(["a", "b"])), "a;b");
        assert_eq!(cell(&serde_json::json!([1, 2])), "[1,2]");
        assert_eq!(cell(&serde_json::json!({"k": 1})), r#"{"k":1}"#);
        assert_eq!(cell(&serde_json::json!(7)), "7");
        assert_eq!(cell(&serde_json::json!(true)), "true");
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
