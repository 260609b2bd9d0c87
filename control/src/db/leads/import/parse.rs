//! Reading a file: its header, each line checked by the services' rules,
//! and the lines grouped into institutions and their contacts.

use std::collections::{BTreeMap, HashMap};

use super::super::contacts::{self, ContactInput};
use super::super::details::{normalise_email, normalise_phone};
use super::super::institutions::{self, InstitutionInput};
use super::{COLUMNS, MAX_IMPORT_LINES, Problem};
use crate::error::{DomainError, DomainResult};

const EXTERNAL_ID_MAX_CHARS: usize = 128;
/// Between the values of `tags`, `emails` and `phones`.
const SEPARATOR: char = ';';
/// The institution's text columns besides its name, merged one by one.
const TEXT_COLUMNS: [&str; 6] = ["kind", "stage", "website", "country", "city", "address"];

/// A cell's value and the line it came from.
#[derive(Debug, Clone)]
pub(super) struct Cell {
    pub(super) value: String,
    pub(super) line: u64,
}

/// What the file says of one institution.
#[derive(Debug)]
pub(super) struct Group {
    /// Its first line.
    pub(super) line: u64,
    pub(super) external_id: Option<String>,
    pub(super) name: String,
    /// The text columns given, normalised.
    pub(super) text: BTreeMap<&'static str, Cell>,
    pub(super) tags: Vec<String>,
    pub(super) contacts: Vec<ContactGroup>,
}

/// What the file says of one contact.
#[derive(Debug)]
pub(super) struct ContactGroup {
    pub(super) key: String,
    pub(super) full_name: String,
    pub(super) title: Option<Cell>,
    pub(super) emails: Vec<String>,
    pub(super) phones: Vec<String>,
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
pub(super) fn parse(csv: &str, problems: &mut Vec<Problem>) -> (Vec<Group>, u64) {
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

pub(super) fn from_error(line: u64, error: DomainError) -> Problem {
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
pub(super) fn text_field<'a>(
    input: &'a mut InstitutionInput,
    column: &str,
) -> Option<&'a mut Option<String>> {
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

pub(super) fn problem(line: u64, field: Option<&str>, message: String) -> Problem {
    Problem {
        line,
        field: field.map(str::to_owned),
        message,
    }
}
