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

use std::collections::{BTreeMap, HashMap, HashSet};

use latchkey_shared::api::ErrorCode;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::contacts::{self, Contact, ContactInput};
use super::details::{self, Detail, DetailInput, DetailKind, normalise_email, normalise_phone};
use super::institutions::{self, Institution, InstitutionInput};
use crate::context::RequestContext;
use crate::error::{DomainError, DomainResult, OnConstraint};

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
const EXTERNAL_ID_MAX_CHARS: usize = 128;
/// Between the values of `tags`, `emails` and `phones`.
const SEPARATOR: char = ';';
/// The institution's text columns besides its name, merged one by one.
const TEXT_COLUMNS: [&str; 6] = ["kind", "stage", "website", "country", "city", "address"];

/// One thing wrong with a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// As the file counts lines: the header is line 1.
    pub line: u64,
    /// The column, when one is to blame.
    pub field: Option<String>,
    pub message: String,
}

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
    if let Some(first) = outcome.problems.first() {
        tx.rollback().await?;
        let more = match outcome.problems.len() - 1 {
            0 => String::new(),
            n => format!(" (and {n} more: the dry run lists them all)"),
        };
        let message = format!(
            "line {}: {}{more}; nothing was imported",
            first.line, first.message
        );
        return Err(match &first.field {
            Some(column) => DomainError::invalid(column, message),
            None => DomainError::refused(ErrorCode::InvalidRequest, message),
        });
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
    let (groups, lines) = parse(csv, &mut problems);
    let mut summary = ImportSummary {
        lines,
        ..ImportSummary::default()
    };
    let found = Found::load(conn, &groups, &mut problems).await?;
    if problems.is_empty() {
        for (index, group) in groups.iter().enumerate() {
            let existing = found.institutions.get(&index);
            if let Err(error) = write(conn, ctx, group, existing, &found, &mut summary).await {
                problems.push(as_problem(group.line, error)?);
            }
        }
    }
    problems.sort_by_key(|p| p.line);
    Ok(Outcome { summary, problems })
}

/// A cell's value and the line it came from.
#[derive(Debug, Clone)]
struct Cell {
    value: String,
    line: u64,
}

/// What the file says of one institution.
#[derive(Debug)]
struct Group {
    /// Its first line.
    line: u64,
    external_id: Option<String>,
    name: String,
    /// The text columns given, normalised.
    text: BTreeMap<&'static str, Cell>,
    tags: Vec<String>,
    contacts: Vec<ContactGroup>,
}

/// What the file says of one contact.
#[derive(Debug)]
struct ContactGroup {
    key: String,
    full_name: String,
    title: Option<Cell>,
    emails: Vec<String>,
    phones: Vec<String>,
}

/// One line, checked.
struct Row {
    line: u64,
    external_id: Option<String>,
    /// Normalised: what the services would store.
    institution: InstitutionInput,
    /// The text columns the line filled (normalising defaults the stage).
    given: Vec<&'static str>,
    contact: Option<ContactGroup>,
}

/// The file's institutions in the order of their first line, and how many
/// lines it has; every problem found goes to `problems`.
fn parse(csv: &str, problems: &mut Vec<Problem>) -> (Vec<Group>, u64) {
    let csv = csv.strip_prefix('\u{feff}').unwrap_or(csv);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(csv.as_bytes());
    let Some(columns) = header(&mut reader, problems) else {
        return (Vec::new(), 0);
    };
    let mut groups: Vec<Group> = Vec::new();
    let mut by_key: HashMap<String, usize> = HashMap::new();
    let mut lines = 0;
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                let line = error.position().map_or(0, |p| p.line());
                problems.push(problem(line, None, format!("not readable as CSV: {error}")));
                continue;
            }
        };
        lines += 1;
        let line = record.position().map_or(0, |p| p.line());
        if lines > MAX_IMPORT_LINES as u64 {
            problems.push(problem(
                line,
                None,
                format!("a file may have at most {MAX_IMPORT_LINES} lines after the header"),
            ));
            break;
        }
        if record.len() > columns.len() {
            problems.push(problem(
                line,
                None,
                format!(
                    "has {} cells, the header names {} columns",
                    record.len(),
                    columns.len()
                ),
            ));
            continue;
        }
        let cells: HashMap<&str, &str> = columns
            .iter()
            .zip(record.iter())
            .map(|(column, cell)| (*column, cell.trim()))
            .filter(|(_, cell)| !cell.is_empty())
            .collect();
        if let Some(row) = check_row(line, &cells, problems) {
            group(row, &mut groups, &mut by_key, problems);
        }
    }
    // Found by name, such a line would miss the institution the file
    // makes under an external id, and make it twice.
    for by_name in groups.iter().filter(|g| g.external_id.is_none()) {
        let twin = groups.iter().find(|g| {
            g.external_id.is_some() && g.name.to_lowercase() == by_name.name.to_lowercase()
        });
        if let Some(twin) = twin {
            problems.push(problem(
                by_name.line,
                Some("external_id"),
                format!(
                    "line {} gives this institution an external_id: give this line the same",
                    twin.line
                ),
            ));
        }
    }
    (groups, lines)
}

/// The header's columns, or `None` (with its problems) when unusable.
fn header(
    reader: &mut csv::Reader<&[u8]>,
    problems: &mut Vec<Problem>,
) -> Option<Vec<&'static str>> {
    let header = match reader.headers() {
        Ok(header) => header.clone(),
        Err(error) => {
            problems.push(problem(1, None, format!("not readable as CSV: {error}")));
            return None;
        }
    };
    if header.iter().all(|name| name.trim().is_empty()) {
        problems.push(problem(
            1,
            None,
            format!(
                "the file is empty: its first line names the columns, of {}",
                COLUMNS.join(", ")
            ),
        ));
        return None;
    }
    let mut columns = Vec::new();
    let before = problems.len();
    for name in &header {
        let name = name.trim().to_lowercase();
        match COLUMNS.iter().find(|known| **known == name) {
            Some(known) if columns.contains(known) => {
                problems.push(problem(1, Some(known), "named twice".into()));
            }
            Some(known) => columns.push(*known),
            None => problems.push(problem(
                1,
                Some(&name),
                format!(
                    "not a column of this import, which has {}",
                    COLUMNS.join(", ")
                ),
            )),
        }
    }
    if !columns.contains(&"institution") {
        problems.push(problem(
            1,
            Some("institution"),
            "the column is required".into(),
        ));
    }
    (problems.len() == before).then_some(columns)
}

/// One line's values checked by the services' own rules, each problem
/// noted; `None` when the line has any.
fn check_row(line: u64, cells: &HashMap<&str, &str>, problems: &mut Vec<Problem>) -> Option<Row> {
    let before = problems.len();
    let cell = |column: &str| cells.get(column).map(|value| (*value).to_owned());
    let external_id = cell("external_id");
    if external_id
        .as_ref()
        .is_some_and(|id| id.chars().count() > EXTERNAL_ID_MAX_CHARS)
    {
        problems.push(problem(
            line,
            Some("external_id"),
            format!("must be at most {EXTERNAL_ID_MAX_CHARS} characters"),
        ));
    }
    let given: Vec<&'static str> = TEXT_COLUMNS
        .into_iter()
        .filter(|column| cells.contains_key(column))
        .collect();
    let raw = InstitutionInput {
        name: cell("institution").unwrap_or_default(),
        kind: cell("kind"),
        website: cell("website"),
        country: cell("country"),
        city: cell("city"),
        address: cell("address"),
        stage: cell("stage"),
        owner_id: None,
        tags: list(cells.get("tags").copied()),
        extra: None,
    };
    let institution = match institutions::normalised(raw) {
        Ok(institution) => Some(institution),
        Err(errors) => {
            problems.extend(errors.into_iter().map(|e| from_error(line, e)));
            None
        }
    };
    let contact = check_contact(line, cells, problems);
    (problems.len() == before).then(|| Row {
        line,
        external_id,
        institution: institution.unwrap_or_default(),
        given,
        contact: contact.flatten(),
    })
}

/// The line's contact: `Some(None)` for a line without one, `None` when
/// the contact's cells have problems.
fn check_contact(
    line: u64,
    cells: &HashMap<&str, &str>,
    problems: &mut Vec<Problem>,
) -> Option<Option<ContactGroup>> {
    let before = problems.len();
    let Some(full_name) = cells.get("contact") else {
        for column in ["title", "emails", "phones"] {
            if cells.contains_key(column) {
                problems.push(problem(
                    line,
                    Some("contact"),
                    format!("needed when `{column}` is given: whose is it?"),
                ));
                return None;
            }
        }
        return Some(None);
    };
    let input = ContactInput {
        full_name: (*full_name).to_owned(),
        title: cells.get("title").map(|title| (*title).to_owned()),
    };
    let checked = contacts::check_all(&input)
        .map_err(|errors| problems.extend(errors.into_iter().map(|e| from_error(line, e))))
        .ok();
    let mut values = |column: &str, normalise: fn(&str) -> DomainResult<String>| {
        let mut valid = Vec::new();
        for value in list(cells.get(column).copied()) {
            match normalise(&value) {
                Ok(value) if !valid.contains(&value) => valid.push(value),
                Ok(_) => {}
                Err(error) => problems.push(problem(
                    line,
                    Some(column),
                    format!("`{value}`: {}", error_message(&error)),
                )),
            }
        }
        valid
    };
    let emails = values("emails", normalise_email);
    let phones = values("phones", normalise_phone);
    let (full_name, title) = checked?;
    (problems.len() == before).then(|| {
        Some(ContactGroup {
            key: full_name.to_lowercase(),
            full_name,
            title: title.map(|value| Cell { value, line }),
            emails,
            phones,
        })
    })
}

/// Adds a checked line to its institution's group, noting every cell that
/// contradicts an earlier line.
fn group(
    mut row: Row,
    groups: &mut Vec<Group>,
    by_key: &mut HashMap<String, usize>,
    problems: &mut Vec<Problem>,
) {
    let name_key = row.institution.name.to_lowercase();
    let key = match &row.external_id {
        Some(id) => format!("id:{id}"),
        None => format!("name:{name_key}"),
    };
    let index = *by_key.entry(key).or_insert_with(|| {
        groups.push(Group {
            line: row.line,
            external_id: row.external_id.clone(),
            name: row.institution.name.clone(),
            text: BTreeMap::new(),
            tags: Vec::new(),
            contacts: Vec::new(),
        });
        groups.len() - 1
    });
    let group = &mut groups[index];
    let line = row.line;
    if group.external_id.is_some() && group.name != row.institution.name {
        problems.push(problem(
            line,
            Some("institution"),
            format!(
                "line {} names this external_id's institution `{}`",
                group.line, group.name
            ),
        ));
    }
    for column in row.given {
        let value = text_field(&mut row.institution, column).and_then(Option::take);
        merge(
            &mut group.text,
            column,
            value.unwrap_or_default(),
            line,
            problems,
        );
    }
    for tag in row.institution.tags {
        if !group.tags.contains(&tag) {
            group.tags.push(tag);
        }
    }
    let Some(contact) = row.contact else {
        return;
    };
    match group.contacts.iter_mut().find(|c| c.key == contact.key) {
        None => group.contacts.push(contact),
        Some(known) => {
            match (&known.title, contact.title) {
                (Some(was), Some(now)) if was.value != now.value => problems.push(problem(
                    line,
                    Some("title"),
                    format!(
                        "line {} gives this contact the title `{}`",
                        was.line, was.value
                    ),
                )),
                (None, now @ Some(_)) => known.title = now,
                _ => {}
            }
            for email in contact.emails {
                if !known.emails.contains(&email) {
                    known.emails.push(email);
                }
            }
            for phone in contact.phones {
                if !known.phones.contains(&phone) {
                    known.phones.push(phone);
                }
            }
        }
    }
}

fn merge(
    text: &mut BTreeMap<&'static str, Cell>,
    column: &'static str,
    value: String,
    line: u64,
    problems: &mut Vec<Problem>,
) {
    match text.get(column) {
        None => {
            text.insert(column, Cell { value, line });
        }
        Some(was) if was.value != value => problems.push(problem(
            line,
            Some(column),
            format!("line {} says `{}`", was.line, was.value),
        )),
        Some(_) => {}
    }
}

/// What the database holds of the file's institutions.
struct Found {
    /// By the group's index.
    institutions: HashMap<usize, Institution>,
    /// By institution and contact name (any case): the first by name.
    contacts: HashMap<(Uuid, String), Contact>,
    details: HashMap<Uuid, Vec<Detail>>,
}

impl Found {
    /// Finds each group's institution, locked, with its contacts and their
    /// details; a name two institutions share is a problem.
    async fn load(
        conn: &mut PgConnection,
        groups: &[Group],
        problems: &mut Vec<Problem>,
    ) -> DomainResult<Self> {
        let external_ids: Vec<&str> = groups
            .iter()
            .filter_map(|g| g.external_id.as_deref())
            .collect();
        let by_external_id: HashMap<String, Uuid> = sqlx::query_as(
            "SELECT external_id, institution_id FROM lead_import_ids WHERE external_id = ANY($1)",
        )
        .bind(&external_ids)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
        let names: Vec<String> = groups
            .iter()
            .filter(|g| g.external_id.is_none())
            .map(|g| g.name.to_lowercase())
            .collect();
        let named: Vec<(String, Uuid)> = sqlx::query_as(
            "SELECT lower(name), id FROM lead_institutions WHERE lower(name) = ANY($1) ORDER BY id",
        )
        .bind(&names)
        .fetch_all(&mut *conn)
        .await?;
        let mut by_name: HashMap<String, Vec<Uuid>> = HashMap::new();
        for (name, id) in named {
            by_name.entry(name).or_default().push(id);
        }
        let mut wanted: HashMap<usize, Uuid> = HashMap::new();
        for (index, group) in groups.iter().enumerate() {
            let id = match &group.external_id {
                Some(external_id) => by_external_id.get(external_id).copied(),
                None => match by_name.get(&group.name.to_lowercase()).map(Vec::as_slice) {
                    None | Some([]) => None,
                    Some([id]) => Some(*id),
                    Some(several) => {
                        problems.push(problem(
                            group.line,
                            Some("institution"),
                            format!(
                                "{} institutions have this name: give the line an external_id",
                                several.len()
                            ),
                        ));
                        None
                    }
                },
            };
            if let Some(id) = id {
                wanted.insert(index, id);
            }
        }
        let ids: Vec<Uuid> = wanted
            .values()
            .copied()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let locked: HashMap<Uuid, Institution> = institutions::lock_many(conn, &ids)
            .await?
            .into_iter()
            .map(|it| (it.id, it))
            .collect();
        let institutions = wanted
            .into_iter()
            .filter_map(|(index, id)| Some((index, locked.get(&id)?.clone())))
            .collect();
        let mut contacts = HashMap::new();
        for contact in contacts::of_institutions(conn, &ids).await? {
            contacts
                .entry((contact.institution_id, contact.full_name.to_lowercase()))
                .or_insert(contact);
        }
        let contact_ids: Vec<Uuid> = contacts.values().map(|c: &Contact| c.id).collect();
        let mut details: HashMap<Uuid, Vec<Detail>> = HashMap::new();
        for detail in details::of_contacts(conn, &contact_ids).await? {
            details.entry(detail.contact_id).or_default().push(detail);
        }
        Ok(Self {
            institutions,
            contacts,
            details,
        })
    }
}

/// Writes one institution's lines through the services: creates it or
/// fills what the file adds, then its contacts.
async fn write(
    conn: &mut PgConnection,
    ctx: &RequestContext,
    group: &Group,
    existing: Option<&Institution>,
    found: &Found,
    summary: &mut ImportSummary,
) -> DomainResult<()> {
    let before = existing.map(InstitutionInput::from).unwrap_or_default();
    let mut after = before.clone();
    // Found by its name (any case), an institution keeps the stored one.
    if existing.is_none() || group.external_id.is_some() {
        after.name = group.name.clone();
    }
    for (column, cell) in &group.text {
        if let Some(field) = text_field(&mut after, column) {
            *field = Some(cell.value.clone());
        }
    }
    for tag in &group.tags {
        if !after.tags.contains(tag) {
            after.tags.push(tag.clone());
        }
    }
    let institution_id = match existing {
        Some(current) if after == before => {
            summary.institutions_unchanged += 1;
            current.id
        }
        Some(current) => {
            institutions::update_institution_in(conn, ctx, current.id, after).await?;
            summary.institutions_updated += 1;
            current.id
        }
        None => {
            let created = institutions::create_institution_in(conn, ctx, after).await?;
            if let Some(external_id) = &group.external_id {
                sqlx::query(
                    "INSERT INTO lead_import_ids (external_id, institution_id) VALUES ($1, $2)",
                )
                .bind(external_id)
                .bind(created.id)
                .execute(&mut *conn)
                .await
                .on_unique(
                    "lead_import_ids_pkey",
                    "external_id",
                    "another import took this external_id meanwhile: run this one again",
                )?;
            }
            summary.institutions_created += 1;
            created.id
        }
    };
    for contact in &group.contacts {
        write_contact(conn, ctx, institution_id, contact, found, summary).await?;
    }
    Ok(())
}

/// Creates the contact or sets the title the file gives it, then adds the
/// e-mail addresses and phones it lacks; the first added of a kind is
/// primary when the contact has no primary of that kind yet.
async fn write_contact(
    conn: &mut PgConnection,
    ctx: &RequestContext,
    institution_id: Uuid,
    contact: &ContactGroup,
    found: &Found,
    summary: &mut ImportSummary,
) -> DomainResult<()> {
    let title = contact.title.as_ref().map(|cell| cell.value.clone());
    let known = found.contacts.get(&(institution_id, contact.key.clone()));
    let (contact_id, held) = match known {
        Some(known) => {
            contacts::lock(conn, known.id).await?;
            if title.is_some() && title != known.title {
                let input = ContactInput {
                    full_name: known.full_name.clone(),
                    title,
                };
                contacts::update_contact_in(conn, ctx, known.id, input).await?;
                summary.contacts_updated += 1;
            }
            let held = found.details.get(&known.id).map_or(&[][..], Vec::as_slice);
            (known.id, held)
        }
        None => {
            let input = ContactInput {
                full_name: contact.full_name.clone(),
                title,
            };
            let created = contacts::create_contact_in(conn, ctx, institution_id, input).await?;
            summary.contacts_created += 1;
            (created.id, &[][..])
        }
    };
    for (kind, values) in [
        (DetailKind::Email, &contact.emails),
        (DetailKind::Phone, &contact.phones),
    ] {
        let of_kind = || held.iter().filter(|d| d.kind == kind.as_str());
        let mut has_primary = of_kind().any(|d| d.is_primary);
        for value in values {
            if of_kind().any(|d| &d.value == value) {
                continue;
            }
            let input = DetailInput {
                kind,
                value: value.clone(),
                label: None,
                is_primary: !has_primary,
            };
            details::add_detail_in(conn, ctx, contact_id, input).await?;
            has_primary = true;
            summary.details_added += 1;
        }
    }
    Ok(())
}

/// A service's refusal of a group's values (a check, made before any SQL
/// runs, so the transaction goes on) as that group's problem: tags of the
/// stored institution and the file's together may be too many. Any other
/// failure ends the run.
fn as_problem(line: u64, error: DomainError) -> DomainResult<Problem> {
    match error {
        DomainError::Invalid { .. } => Ok(from_error(line, error)),
        other => Err(other),
    }
}

fn from_error(line: u64, error: DomainError) -> Problem {
    let field = error.field().map(|field| column(field).to_owned());
    Problem {
        line,
        field,
        message: error_message(&error),
    }
}

/// The message of a refusal without its field (the problem names the column).
fn error_message(error: &DomainError) -> String {
    match error {
        DomainError::Invalid { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// The column a service's field is read from.
fn column(field: &str) -> &str {
    match field {
        "name" => "institution",
        "full_name" => "contact",
        "email" => "emails",
        "phone" => "phones",
        other => other,
    }
}

/// The field of [`TEXT_COLUMNS`]' `column`.
fn text_field<'a>(input: &'a mut InstitutionInput, column: &str) -> Option<&'a mut Option<String>> {
    match column {
        "kind" => Some(&mut input.kind),
        "stage" => Some(&mut input.stage),
        "website" => Some(&mut input.website),
        "country" => Some(&mut input.country),
        "city" => Some(&mut input.city),
        "address" => Some(&mut input.address),
        _ => None,
    }
}

/// The values of a `;`-separated cell, trimmed, empty ones left out.
fn list(cell: Option<&str>) -> Vec<String> {
    cell.unwrap_or_default()
        .split(SEPARATOR)
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
        .collect()
}

fn problem(line: u64, field: Option<&str>, message: String) -> Problem {
    Problem {
        line,
        field: field.map(str::to_owned),
        message,
    }
}
