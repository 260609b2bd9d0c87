//! The lead CRM: institutions a vendor sells to, their contacts with any
//! number of phones and e-mail addresses, notes with full version history,
//! and the conversion of a lead into a customer. Every change writes one
//! audit row in its transaction; edges never see leads, so no outbox row.
//!
//! Decisions:
//! - **Notes are never lost.** Each edit adds a `lead_note_versions` row (the
//!   text, who, when); a delete adds a tombstone version. An edit names the
//!   version it was based on; if another edit landed first the base is stale
//!   and the edit is refused with a conflict (409): the later writer reloads
//!   and merges, nothing is overwritten. The check is one compare-and-set
//!   `UPDATE … WHERE current_version = base` (the row lock serialises
//!   concurrent edits) and the primary key `(note_id, version)` backs it.
//! - **A deleted contact is soft-deleted** (`deleted_at`): its notes keep
//!   their subject and their history stays readable; the contact disappears
//!   from lists and search. Notes on a contact also carry its institution, so
//!   an institution's timeline shows them.
//! - **Search indexes every version of a note**, not only the current one, so
//!   a note is found by a word it once said; tombstoned notes are not found.
//!   Each text is indexed with both the `german` and the `english`
//!   configuration (`lead_tsvector` in the migration) and queried the same way.
//! - **Phones** are checked as strict E.164 after removing spaces, dashes,
//!   dots and parentheses (`+[1-9][0-9]{6,14}`), not against a numbering
//!   plan: the `phonenumber` crate would be a heavy build for this check.

use crate::db::customers::check_optional as optional;
use crate::error::{DomainError, DomainResult};

mod contacts;
mod details;
mod import;
mod institutions;
mod notes;
mod pipeline;
mod search;

pub use contacts::{
    Contact, ContactInput, ContactWithDetails, create_contact, delete_contact, get_contact,
    list_contacts, update_contact,
};
pub use details::{
    Detail, DetailInput, DetailKind, add_detail, delete_detail, get_detail, normalise_email,
    normalise_phone, update_detail,
};
pub use import::{
    COLUMNS as IMPORT_COLUMNS, ImportReport, ImportSummary, MAX_IMPORT_LINES, Problem,
    apply_import, dry_run_import,
};
pub use institutions::{
    Cursor, Institution, InstitutionFilter, InstitutionInput, STAGES, TAGS_MAX,
    convert_to_customer, count_institutions, create_institution, delete_institution,
    get_institution, list_institutions, list_institutions_counted, stream_institutions,
    update_institution,
};
pub use notes::{
    NOTE_MAX_CHARS, Note, NoteSubject, NoteVersion, add_note, delete_note, edit_note, get_note,
    list_contact_notes, list_deleted_notes, list_notes, note_history,
};
pub use pipeline::{set_stage, stage_counts};
pub use search::{Match, QUERY_MAX_CHARS, SearchHit, search};

/// A required text, trimmed, of 1 to `max` characters.
fn required(field: &str, value: &str, max: usize) -> DomainResult<String> {
    let value = value.trim();
    let chars = value.chars().count();
    if chars == 0 || chars > max {
        return Err(DomainError::invalid(
            field,
            format!("must be 1 to {max} characters"),
        ));
    }
    Ok(value.to_owned())
}

/// Every refusal of one input, collected instead of stopping at the first:
/// an import reports each bad cell of a line.
#[derive(Debug, Default)]
struct Problems(Vec<DomainError>);

impl Problems {
    /// The checked value, or its type's default once the refusal is noted.
    fn take<T: Default>(&mut self, checked: DomainResult<T>) -> T {
        checked.unwrap_or_else(|error| {
            self.0.push(error);
            T::default()
        })
    }

    /// `value` when nothing was refused, else every refusal in order.
    fn finish<T>(self, value: T) -> Result<T, Vec<DomainError>> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self.0)
        }
    }
}

/// The first of the refusals [`Problems::finish`] gave (never empty).
fn first(errors: Vec<DomainError>) -> DomainError {
    errors
        .into_iter()
        .next()
        .unwrap_or_else(|| DomainError::Internal("a refusal without a reason".into()))
}
