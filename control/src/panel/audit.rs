//! The audit log viewer: filters, keyset pages (`db::audit::list_page`), a
//! before/after diff per row, and CSV/JSON export of the filtered view
//! through the same code as the JSON API's export.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use super::download::FormatQuery;
use super::error::{PanelError, PanelResult};
use super::exports;
use super::pages::{Layout, when};
use super::session::Viewer;
use crate::db::audit::{self, AuditEntry, AuditFilter, Cursor};
use crate::panel::PanelState;

pub const PER_PAGE: u32 = 50;
const MAX_FILTER_CHARS: usize = 256;

/// The filter form as submitted: empty fields mean "any". Times are UTC,
/// as `datetime-local` inputs send them (`2026-11-28T22:00`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct AuditQuery {
    pub actor_id: String,
    pub action: String,
    pub entity_kind: String,
    pub entity_id: String,
    pub request_id: String,
    pub from: String,
    pub to: String,
    /// `<microseconds since the epoch>_<id>` of the last row seen.
    pub after: String,
}

#[derive(Debug, Template, WebTemplate)]
#[template(path = "audit.html")]
pub struct AuditPage {
    layout: Layout,
    query: AuditQuery,
    rows: Vec<AuditRow>,
    /// The query string of the next page, if there is one.
    next: Option<String>,
    /// The query string of the filters alone, for the export links.
    filters: String,
}

#[derive(Debug)]
pub struct AuditRow {
    pub entry: AuditEntry,
    pub at: String,
    /// `(field, before, after)` for each field that differs.
    pub diff: Vec<(String, String, String)>,
}

pub async fn page(
    viewer: Viewer,
    State(state): State<PanelState>,
    Query(query): Query<AuditQuery>,
) -> PanelResult<AuditPage> {
    let filter = filter(&query)?;
    let cursor = parse_cursor(&query.after)?;
    let (entries, next) = audit::list_page(&state.pool, &filter, cursor, PER_PAGE).await?;
    let filters = filter_query(&query);
    let next = next.map(|cursor| {
        let mut next = filters.clone();
        if !next.is_empty() {
            next.push('&');
        }
        next.push_str(&format!(
            "after={}_{}",
            cursor.at.unix_timestamp_nanos() / 1_000,
            cursor.id
        ));
        next
    });
    let rows = entries
        .into_iter()
        .map(|entry| AuditRow {
            at: when(&entry.at),
            diff: diff(entry.before.as_ref(), entry.after.as_ref()),
            entry,
        })
        .collect();
    Ok(AuditPage {
        layout: Layout::new(&viewer, "Audit log", "/audit"),
        query,
        rows,
        next,
        filters,
    })
}

/// The filtered view as `audit.csv` or `audit.json`, newest first,
/// streamed (every matching row, in constant memory).
pub async fn export(
    viewer: Viewer,
    State(state): State<PanelState>,
    Query(query): Query<AuditQuery>,
    Query(download): Query<FormatQuery>,
) -> PanelResult<Response> {
    let filter = filter(&query)?;
    let total = audit::count(&state.pool, &filter).await?;
    let rows = audit::stream(state.pool.clone(), &filter);
    exports::start(&viewer, &state, rows, download.format()?, total).await
}

fn filter(query: &AuditQuery) -> PanelResult<AuditFilter> {
    let text = |name: &str, value: &str| -> PanelResult<Option<String>> {
        let value = value.trim();
        if value.chars().count() > MAX_FILTER_CHARS {
            return Err(PanelError::Invalid(format!(
                "{name}: at most {MAX_FILTER_CHARS} characters"
            )));
        }
        Ok((!value.is_empty()).then(|| value.to_owned()))
    };
    Ok(AuditFilter {
        actor_id: text("actor_id", &query.actor_id)?,
        action: text("action", &query.action)?,
        entity_kind: text("entity_kind", &query.entity_kind)?,
        entity_id: text("entity_id", &query.entity_id)?,
        request_id: text("request_id", &query.request_id)?,
        from: parse_time("from", &query.from)?,
        to: parse_time("to", &query.to)?,
    })
}

fn parse_time(name: &str, value: &str) -> PanelResult<Option<OffsetDateTime>> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let with_seconds = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let without = format_description!("[year]-[month]-[day]T[hour]:[minute]");
    PrimitiveDateTime::parse(value, with_seconds)
        .or_else(|_| PrimitiveDateTime::parse(value, without))
        .map(|at| Some(at.assume_utc()))
        .map_err(|_| PanelError::Invalid(format!("{name}: a time like 2026-11-28T22:00 (UTC)")))
}

fn parse_cursor(value: &str) -> PanelResult<Option<Cursor>> {
    if value.is_empty() {
        return Ok(None);
    }
    let bad = || PanelError::Invalid("after: not a page cursor".into());
    let (micros, id) = value.split_once('_').ok_or_else(bad)?;
    let micros: i128 = micros.parse().map_err(|_| bad())?;
    let at = OffsetDateTime::from_unix_timestamp_nanos(micros * 1_000).map_err(|_| bad())?;
    Ok(Some(Cursor {
        at,
        id: id.parse().map_err(|_| bad())?,
    }))
}

/// The non-empty filters as a query string.
fn filter_query(query: &AuditQuery) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (name, value) in [
        ("actor_id", &query.actor_id),
        ("action", &query.action),
        ("entity_kind", &query.entity_kind),
        ("entity_id", &query.entity_id),
        ("request_id", &query.request_id),
        ("from", &query.from),
        ("to", &query.to),
    ] {
        if !value.trim().is_empty() {
            out.append_pair(name, value.trim());
        }
    }
    out.finish()
}

/// Fields whose value differs between `before` and `after`; a value that is
/// not an object compares as one field, `value`.
fn diff(before: Option<&Value>, after: Option<&Value>) -> Vec<(String, String, String)> {
    let show = |value: Option<&Value>| value.map_or_else(|| "—".to_owned(), Value::to_string);
    match (before, after) {
        (Some(Value::Object(b)), Some(Value::Object(a))) => {
            let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .filter(|key| b.get(*key) != a.get(*key))
                .map(|key| (key.clone(), show(b.get(key)), show(a.get(key))))
                .collect()
        }
        (None, Some(Value::Object(a))) => a
            .iter()
            .map(|(key, value)| (key.clone(), show(None), show(Some(value))))
            .collect(),
        (Some(Value::Object(b)), None) => b
            .iter()
            .map(|(key, value)| (key.clone(), show(Some(value)), show(None)))
            .collect(),
        (None, None) => Vec::new(),
        (b, a) if b == a => Vec::new(),
        (b, a) => vec![("value".into(), show(b), show(a))],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_lists_changed_fields_only() {
        let before = json!({"status": "active", "name": "x"});
        let after = json!({"status": "suspended", "name": "x"});
        assert_eq!(
            diff(Some(&before), Some(&after)),
            vec![("status".into(), "\"active\"".into(), "\"suspended\"".into())]
        );
        assert_eq!(diff(None, Some(&json!({"a": 1}))).len(), 1);
        assert!(diff(None, None).is_empty());
    }

    #[test]
    fn cursors_and_times_parse() {
        let cursor = parse_cursor("1764367200000000_42").unwrap().unwrap();
        assert_eq!(cursor.id, 42);
        assert!(parse_cursor("nope").is_err());
        assert!(parse_time("from", "2026-11-28T22:00").unwrap().is_some());
        assert!(parse_time("from", "yesterday").is_err());
    }
}
