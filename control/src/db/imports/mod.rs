//! Imports of customers, licenses and resources, from CSV or JSON: how a
//! vendor moves from another licensing system (or another Latchkey: an
//! export's files import as they are, less the columns an import does not
//! take, like `id`).
//!
//! A CSV file is UTF-8 (a leading byte order mark is allowed) whose first
//! line names its columns, in any order and any case; a JSON file is an
//! array of objects with the same names. Each import's module lists its
//! columns. A column an import does not know is a problem.
//!
//! Rules, for every kind:
//! - **Every problem is reported**, each with its line (CSV: as the file
//!   counts lines, the header being line 1; JSON: the object's position
//!   from 1), its column and what is wrong. The dry run answers them all,
//!   the apply refuses a file with any.
//! - **All or nothing.** The apply runs in one transaction, through the
//!   same services as the API (their checks, one audit row per change with
//!   the request id); the dry run runs exactly that and rolls it back, so
//!   what it counts is what the apply would do. Each line is written under
//!   a savepoint, so a line the database refuses is reported and the lines
//!   after it are still checked.
//! - **Re-running a file adds nothing.** A line names its row by a stable
//!   identity — a customer by its `external_id`, a license by its key, a
//!   resource by its pool and value — and a row that exists already is
//!   counted as unchanged, never changed or made twice. Two lines of one
//!   file with the same identity are a problem.

mod customers;
mod licenses;
mod resources;
mod source;

use std::collections::HashMap;

use latchkey_shared::api::ErrorCode;
use serde::Serialize;
use sqlx::{Connection, PgConnection, PgPool};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

pub use self::customers::CUSTOMER_COLUMNS;
pub use self::licenses::LICENSE_COLUMNS;
pub use self::resources::RESOURCE_COLUMNS;
use self::source::Record;
pub use self::source::cell;
use crate::context::RequestContext;
use crate::error::{DomainError, DomainResult};
use crate::progress::Progress;
use crate::secrets::Secrets;

/// The most lines (after the header) one file may have: the apply holds
/// every row it writes in one transaction, each with its audit row.
pub const MAX_IMPORT_LINES: usize = 5_000;
/// Longest external id.
pub const EXTERNAL_ID_MAX_CHARS: usize = 128;

/// What an import reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

/// What an import makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Customers,
    Licenses,
    Resources,
}

/// One thing wrong with a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// As the file counts lines: the header is line 1 (JSON: the object's
    /// position, from 1; 0 for the file as a whole).
    pub line: u64,
    /// The column, when one is to blame.
    pub field: Option<String>,
    pub message: String,
}

impl Problem {
    pub fn new(line: u64, field: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            line,
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }
}

/// What an import did, or (a dry run) would do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    /// Whether it was written; a dry run never is.
    pub applied: bool,
    /// Lines (JSON: objects) read, after the header.
    pub lines: u64,
    /// Rows made; 0 when there are problems.
    pub created: u64,
    /// Lines whose row exists already (an earlier run of the file).
    pub unchanged: u64,
    /// Every problem, by line; nothing is written while there is one.
    pub problems: Vec<Problem>,
}

/// Checks the file and counts what importing it would do, writing nothing.
pub async fn dry_run(
    pool: &PgPool,
    ctx: &RequestContext,
    secrets: &Secrets,
    kind: Kind,
    format: Format,
    text: &str,
    progress: &Progress,
) -> DomainResult<ImportReport> {
    let mut tx = pool.begin().await?;
    let report = run(&mut tx, ctx, secrets, kind, format, text, progress).await?;
    tx.rollback().await?;
    Ok(report)
}

/// Imports the file in one transaction, or nothing of it: a file with any
/// problem is refused, naming the first (the dry run lists them all).
pub async fn apply(
    pool: &PgPool,
    ctx: &RequestContext,
    secrets: &Secrets,
    kind: Kind,
    format: Format,
    text: &str,
    progress: &Progress,
) -> DomainResult<ImportReport> {
    let mut tx = pool.begin().await?;
    let mut report = run(&mut tx, ctx, secrets, kind, format, text, progress).await?;
    if let Some(refusal) = refusal(&report.problems) {
        tx.rollback().await?;
        return Err(refusal);
    }
    tx.commit().await?;
    report.applied = true;
    tracing::info!(
        ?kind,
        lines = report.lines,
        created = report.created,
        "imported"
    );
    Ok(report)
}

/// How an apply refuses a file with problems: naming the first, and how
/// many more the dry run lists.
pub(crate) fn refusal(problems: &[Problem]) -> Option<DomainError> {
    let first = problems.first()?;
    let more = match problems.len() - 1 {
        0 => String::new(),
        n => format!(" (and {n} more: the dry run lists them all)"),
    };
    let message = format!(
        "line {}: {}{more}; nothing was imported",
        first.line, first.message
    );
    Some(match &first.field {
        Some(column) => DomainError::invalid(column, message),
        None => DomainError::refused(ErrorCode::InvalidRequest, message),
    })
}

/// One kind of import: its columns, how a line is read, what identifies
/// its row, and how it is written.
trait Import {
    type Line;
    const COLUMNS: &'static [&'static str];
    const REQUIRED: &'static [&'static str];

    /// The line checked by the services' rules as far as that needs no
    /// database; `None` after pushing its problems.
    fn check(record: &Record, problems: &mut Vec<Problem>) -> Option<Self::Line>;

    /// The column naming the row, and its value, for repeats in one file.
    fn identity(line: &Self::Line) -> (&'static str, String);

    /// Writes the line's row in the caller's transaction, or finds it made
    /// already (`Ok(false)`).
    async fn write(
        conn: &mut PgConnection,
        ctx: &RequestContext,
        secrets: &Secrets,
        line: &Self::Line,
    ) -> DomainResult<bool>;
}

async fn run(
    conn: &mut PgConnection,
    ctx: &RequestContext,
    secrets: &Secrets,
    kind: Kind,
    format: Format,
    text: &str,
    progress: &Progress,
) -> DomainResult<ImportReport> {
    let file = (format, text);
    match kind {
        Kind::Customers => run_as::<customers::Customers>(conn, ctx, secrets, file, progress).await,
        Kind::Licenses => run_as::<licenses::Licenses>(conn, ctx, secrets, file, progress).await,
        Kind::Resources => run_as::<resources::Resources>(conn, ctx, secrets, file, progress).await,
    }
}

async fn run_as<I: Import>(
    conn: &mut PgConnection,
    ctx: &RequestContext,
    secrets: &Secrets,
    (format, text): (Format, &str),
    progress: &Progress,
) -> DomainResult<ImportReport> {
    progress.stage("reading", "lines", None);
    let mut problems = Vec::new();
    let (records, lines) = source::read(format, text, I::COLUMNS, I::REQUIRED, &mut problems);
    if lines > MAX_IMPORT_LINES as u64 {
        return Err(DomainError::invalid(
            "file",
            format!("at most {MAX_IMPORT_LINES} lines; split the file"),
        ));
    }
    let mut checked = Vec::with_capacity(records.len());
    let mut first_with: HashMap<String, u64> = HashMap::new();
    for record in &records {
        let Some(line) = I::check(record, &mut problems) else {
            continue;
        };
        let (column, identity) = I::identity(&line);
        if let Some(first) = first_with.get(&identity) {
            problems.push(Problem::new(
                record.line,
                Some(column),
                format!("repeats line {first}"),
            ));
            continue;
        }
        first_with.insert(identity, record.line);
        checked.push((record.line, line));
    }
    let mut report = ImportReport {
        lines,
        ..ImportReport::default()
    };
    progress.stage("writing", "lines", Some(checked.len() as u64));
    for (number, line) in &checked {
        progress.advance(1);
        let mut savepoint = conn.begin().await?;
        match I::write(&mut savepoint, ctx, secrets, line).await {
            Ok(created) => {
                savepoint.commit().await?;
                if created {
                    report.created += 1;
                } else {
                    report.unchanged += 1;
                }
            }
            Err(error) => {
                savepoint.rollback().await?;
                problems.push(problem_of(*number, error)?);
            }
        }
    }
    problems.sort_by_key(|p| p.line);
    if !problems.is_empty() {
        report.created = 0;
        report.unchanged = 0;
    }
    report.problems = problems;
    Ok(report)
}

/// A service's refusal of one line as that line's problem; a failure that
/// is no refusal (the database gone) fails the whole import.
fn problem_of(line: u64, error: DomainError) -> DomainResult<Problem> {
    Ok(match error {
        DomainError::Invalid { field, message } => Problem::new(line, Some(&field), message),
        DomainError::Conflict { field, message } => Problem::new(line, field.as_deref(), message),
        DomainError::NotFound(entity) => Problem::new(line, None, format!("{entity} not found")),
        DomainError::Refused { message, .. } => Problem::new(line, None, message),
        other => return Err(other),
    })
}

/// An external id as a column holds it.
fn external_id(record: &Record, column: &str, problems: &mut Vec<Problem>) -> Option<String> {
    let value = record.get(column)?;
    if value.chars().count() > EXTERNAL_ID_MAX_CHARS {
        problems.push(Problem::new(
            record.line,
            Some(column),
            format!("at most {EXTERNAL_ID_MAX_CHARS} characters"),
        ));
        return None;
    }
    Some(value.to_owned())
}

/// A cell parsed by `parse`, or a problem saying what was `expected`.
fn parsed<T>(
    record: &Record,
    column: &str,
    expected: &str,
    parse: impl FnOnce(&str) -> Option<T>,
    problems: &mut Vec<Problem>,
) -> Result<Option<T>, ()> {
    let Some(text) = record.get(column) else {
        return Ok(None);
    };
    match parse(text) {
        Some(value) => Ok(Some(value)),
        None => {
            problems.push(Problem::new(
                record.line,
                Some(column),
                format!("{expected}, not {text:?}"),
            ));
            Err(())
        }
    }
}

/// RFC 3339, or a date alone (its midnight, UTC).
fn timestamp(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok().or_else(|| {
        Date::parse(text, format_description!("[year]-[month]-[day]"))
            .ok()
            .map(|date| date.midnight().assume_utc())
    })
}

/// A JSON object written as text (`metadata`).
fn object(text: &str) -> Option<serde_json::Value> {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .filter(serde_json::Value::is_object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_or_a_date() {
        assert_eq!(
            timestamp("2027-01-31"),
            Some(time::macros::datetime!(2027-01-31 00:00 UTC))
        );
        assert_eq!(
            timestamp("2027-01-31T10:00:00+01:00"),
            Some(time::macros::datetime!(2027-01-31 09:00 UTC))
        );
        assert_eq!(timestamp("31.01.2027"), None);
    }
}
