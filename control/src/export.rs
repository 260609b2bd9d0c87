//! Exports of what the admin API and the panel list: one writer per list,
//! shared by both, so a CSV downloaded from either is the same file.

use std::borrow::Cow;

use time::format_description::well_known::Rfc3339;

use crate::db::audit::AuditEntry;
use crate::error::{DomainError, DomainResult};

/// Most rows one export answers; `x-total-count` says how many matched.
pub const EXPORT_MAX_ROWS: u32 = 100_000;

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

pub fn audit_csv(rows: &[AuditEntry]) -> DomainResult<Vec<u8>> {
    let fail = |error: csv::Error| DomainError::Internal(format!("writing audit CSV: {error}"));
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(CSV_HEADER).map_err(fail)?;
    for row in rows {
        let at = row
            .at
            .format(&Rfc3339)
            .map_err(|error| DomainError::Internal(format!("formatting a time: {error}")))?;
        let json = |value: &Option<serde_json::Value>| {
            value.as_ref().map(ToString::to_string).unwrap_or_default()
        };
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        let record = [
            row.id.to_string(),
            at,
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
        ];
        for cell in &record {
            writer.write_field(defused(cell).as_bytes()).map_err(fail)?;
        }
        writer.write_record(None::<&[u8]>).map_err(fail)?;
    }
    writer
        .into_inner()
        .map_err(|error| DomainError::Internal(format!("writing audit CSV: {error}")))
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
}
