//! CSV import of institutions with their contacts.
//!
//! The file is UTF-8 CSV (a leading byte order mark is allowed) whose first
//! line names its columns, in any order and any case; only `institution` is
//! required, and a column this import does not know is refused:
//!
//! | column        | holds                                                   |
//! |---------------|---------------------------------------------------------|
//! | `external_id` | the institution's id in the system the file comes from  |
//! | `institution` | its name (required on every line)                       |
//! | `kind`        | its type: school, university, hospital, …               |
//! | `stage`       | one of [`super::STAGES`]; `new` for a new one left empty |
//! | `website`, `country`, `city`, `address` | as the API's fields           |
//! | `tags`        | separated by `;`                                        |
//! | `contact`     | a person's full name; empty for an institution alone    |
//! | `title`       | their role                                              |
//! | `emails`, `phones` | separated by `;`, the first of each kind primary   |
//!
//! One line per contact: lines with the same `external_id`, or without one
//! and with the same institution name (any case), are one institution, and
//! its lines with the same contact name (any case) are one contact. The
//! first non-empty cell of a column is the institution's (or contact's)
//! value; a later line saying something else is a problem.
//!
//! Rules:
//! - **Every problem is reported**, each with its line (as the file counts
//!   them, the header being line 1), its column and what is wrong; the dry
//!   run answers them all, the apply refuses a file with any.
//! - **All or nothing.** The apply runs in one transaction, through the
//!   same services as the API (their checks, one audit row per change, with
//!   the request id); the dry run runs exactly that and rolls it back, so
//!   what it counts is what the apply would do.
//! - **Re-running a file changes nothing more.** An institution is found by
//!   its `external_id` (kept in `lead_import_ids` from the first run) or, when
//!   the line has none, by its name (which then stays as stored); a contact
//!   by its name among the institution's. An import only adds and fills: a
//!   non-empty cell replaces the stored value, tags, contacts, e-mail
//!   addresses and phones are added when missing, and nothing is ever
//!   cleared or removed. A name two
//!   institutions share is a problem: such lines need an `external_id`.

mod parse;
mod write;

use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use crate::context::RequestContext;
pub use crate::db::imports::Problem;
use crate::db::imports::refusal;
use crate::error::DomainResult;

/// The columns a file may have.
pub const COLUMNS: [&str; 13] = [
    "external_id",
    "institution",
    "kind",
    "stage",
    "website",
    "country",
    "city",
    "address",
    "tags",
    "contact",
    "title",
    "emails",
    "phones",
];
/// The most lines (after the header) one file may have: the apply holds
/// every row it touches locked in one transaction, and writes each row with
/// its audit row; 10 000 lines of a contact with an e-mail address and a
/// phone each took 23 s (debug build, this 2-core machine), too near the
/// 30 s request timeout, 1 000 took 1.9 s.
pub const MAX_IMPORT_LINES: usize = 5_000;

/// What an import did, or (a dry run) would do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ImportSummary {
    /// Lines after the header.
    pub lines: u64,
    pub institutions_created: u64,
    pub institutions_updated: u64,
    /// Found, and the file says nothing they do not hold already.
    pub institutions_unchanged: u64,
    pub contacts_created: u64,
    pub contacts_updated: u64,
    /// E-mail addresses and phones added.
    pub details_added: u64,
}

/// Named apart from the other imports' report in the API's document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = LeadImportReport)]
pub struct ImportReport {
    /// Whether it was written; a dry run never is.
    pub applied: bool,
    /// All zero but `lines` when there are problems.
    pub summary: ImportSummary,
    /// Every problem, by line; nothing is written while there is one.
    pub problems: Vec<Problem>,
}

/// Checks the file and counts what importing it would do, writing nothing.
pub async fn dry_run_import(
    pool: &PgPool,
    ctx: &RequestContext,
    csv: &str,
) -> DomainResult<ImportReport> {
    let mut tx = pool.begin().await?;
    let outcome = run(&mut tx, ctx, csv).await?;
    tx.rollback().await?;
    Ok(outcome.report(false))
}

/// Imports the file in one transaction, or nothing of it: a file with any
/// problem is refused, naming the first (the dry run lists them all).
pub async fn apply_import(
    pool: &PgPool,
    ctx: &RequestContext,
    csv: &str,
) -> DomainResult<ImportReport> {
    let mut tx = pool.begin().await?;
    let outcome = run(&mut tx, ctx, csv).await?;
    if let Some(refusal) = refusal(&outcome.problems) {
        tx.rollback().await?;
        return Err(refusal);
    }
    tx.commit().await?;
    tracing::info!(lines = outcome.summary.lines, "leads imported");
    Ok(outcome.report(true))
}

/// What one run found and did.
struct Outcome {
    summary: ImportSummary,
    problems: Vec<Problem>,
}

impl Outcome {
    fn report(mut self, applied: bool) -> ImportReport {
        if !self.problems.is_empty() {
            self.summary = ImportSummary {
                lines: self.summary.lines,
                ..ImportSummary::default()
            };
        }
        ImportReport {
            applied: applied && self.problems.is_empty(),
            summary: self.summary,
            problems: self.problems,
        }
    }
}

/// Parses, finds what exists, and writes through the services, all in the
/// caller's transaction; stops before writing when the file has problems.
async fn run(conn: &mut PgConnection, ctx: &RequestContext, csv: &str) -> DomainResult<Outcome> {
    let mut problems = Vec::new();
    let (groups, lines) = parse::parse(csv, &mut problems);
    let mut summary = ImportSummary {
        lines,
        ..ImportSummary::default()
    };
    let found = write::Found::load(conn, &groups, &mut problems).await?;
    if problems.is_empty() {
        problems = found.write(conn, ctx, &groups, &mut summary).await?;
    }
    problems.sort_by_key(|p| p.line);
    Ok(Outcome { summary, problems })
}
