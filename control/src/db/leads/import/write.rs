//! Writing a file's institutions: what the database holds of them, found
//! and locked first, then each created or filled through the services.

use std::collections::{HashMap, HashSet};

use sqlx::PgConnection;
use uuid::Uuid;

use super::super::contacts::{self, Contact, ContactInput};
use super::super::details::{self, Detail, DetailInput, DetailKind};
use super::super::institutions::{self, Institution, InstitutionInput};
use super::parse::{ContactGroup, Group, from_error, problem, text_field};
use super::{ImportSummary, Problem};
use crate::context::RequestContext;
use crate::error::{DomainError, DomainResult, OnConstraint};

/// What the database holds of the file's institutions.
pub(super) struct Found {
    /// By the group's index.
    institutions: HashMap<usize, Institution>,
    /// By institution and contact name (any case): the first by name.
    contacts: HashMap<(Uuid, String), Contact>,
    details: HashMap<Uuid, Vec<Detail>>,
}

impl Found {
    /// Writes each group, in the file's order; answers the problems the
    /// services found in their values (then the caller writes nothing).
    pub(super) async fn write(
        &self,
        conn: &mut PgConnection,
        ctx: &RequestContext,
        groups: &[Group],
        summary: &mut ImportSummary,
    ) -> DomainResult<Vec<Problem>> {
        let mut problems = Vec::new();
        for (index, group) in groups.iter().enumerate() {
            let existing = self.institutions.get(&index);
            if let Err(error) = write(conn, ctx, group, existing, self, summary).await {
                problems.push(as_problem(group.line, error)?);
            }
        }
        Ok(problems)
    }

    /// Finds each group's institution, locked, with its contacts and their
    /// details; a name two institutions share is a problem.
    pub(super) async fn load(
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
