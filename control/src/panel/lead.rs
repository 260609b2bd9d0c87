//! An institution's page: its fields and their edit form; its contacts with
//! their phones and e-mail addresses (add, edit, delete each); the notes
//! timeline, the institution's and its contacts' (add, edit from the
//! version shown, delete as a tombstone); and its conversion into a
//! customer, after a confirmation. A refused form comes back on the page
//! with the message at its field. An edit or delete based on a version that
//! is no longer the newest comes back as a conflict showing the note's
//! current text beside the text that was not saved: nothing is overwritten.
//! Every rule is `db::leads`'s.

use std::collections::HashMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::error::{PanelError, PanelResult, X_ERROR_CODE};
use super::form::Form;
use super::leads::{InstitutionForm, names};
use super::pages::{Layout, when};
use super::products::{Refusal, answerable, optional, refused};
use super::session::{AdminUser, Viewer};
use crate::db::admins::{self, AdminSummary};
use crate::db::customers::{self, Customer, NewCustomer};
use crate::db::leads::{
    self, Contact, ContactInput, Detail, DetailInput, DetailKind, Institution, Note, NoteSubject,
};
use crate::error::{DomainError, DomainResult};
use crate::panel::PanelState;

/// The fields of the conversion form.
pub const CONVERT_FIELDS: [&str; 4] = ["name", "email", "company", "notes"];

#[derive(Debug)]
pub struct ContactView {
    pub contact: Contact,
    pub title: String,
    pub details: Vec<DetailView>,
    /// The keys of its edit form and of its "add a phone or e-mail" form.
    pub key: String,
    pub add_key: String,
}

#[derive(Debug)]
pub struct DetailView {
    pub detail: Detail,
    pub label: String,
    /// `tel:` or `mailto:`.
    pub href: String,
    pub key: String,
}

#[derive(Debug)]
pub struct NoteView {
    pub note: Note,
    /// "the institution", a contact's name, or "a former contact".
    pub about: String,
    pub author: String,
    pub created: String,
    pub changed: String,
    pub key: String,
}

/// An edit or delete refused because the note moved on: what it says
/// now (nothing once deleted) and what the refused edit said.
#[derive(Debug)]
pub struct NoteConflict {
    pub note_id: Uuid,
    /// "saved" or "deleted".
    pub verb: &'static str,
    /// The version the refused edit or delete was based on.
    pub base: i32,
    pub current: Option<NoteView>,
    pub entered: String,
}

/// A refused form of the page other than the institution's fields: its
/// key, the refusal, and what was entered.
#[derive(Debug)]
pub struct FormRefusal {
    pub form: String,
    pub refusal: Refusal,
    pub entered: HashMap<&'static str, String>,
}

#[derive(Debug, Template, WebTemplate)]
#[template(path = "lead.html")]
pub struct LeadPage {
    layout: Layout,
    institution: Institution,
    owner: String,
    owners: Vec<AdminSummary>,
    /// The fields' edit form and its refusal.
    form: InstitutionForm,
    refusal: Refusal,
    contacts: Vec<ContactView>,
    notes: Vec<NoteView>,
    deleted_notes: Vec<NoteView>,
    customer: Option<Customer>,
    /// Just converted: say so on top.
    converted_now: bool,
    other: Option<FormRefusal>,
    conflict: Option<NoteConflict>,
}

impl LeadPage {
    fn refusal_of(&self, form: &str) -> Option<&FormRefusal> {
        self.other.as_ref().filter(|other| other.form == form)
    }

    /// The message for `field` of form `form`, if it was refused there.
    fn error_at(&self, form: &str, field: &str) -> Option<&str> {
        self.refusal_of(form)
            .and_then(|other| other.refusal.for_field(field))
    }

    fn is_refused(&self, form: &str) -> bool {
        self.refusal_of(form).is_some()
    }

    /// A refusal of form `form` that names none of `fields`.
    fn general_at(&self, form: &str, fields: &[&str]) -> Option<&str> {
        self.refusal_of(form)
            .and_then(|other| other.refusal.general(fields))
    }

    /// What was entered in `field` of a refused `form`, else `current`.
    fn kept<'a>(&'a self, form: &str, field: &str, current: &'a str) -> &'a str {
        match self.refusal_of(form) {
            Some(other) => other.entered.get(field).map_or("", String::as_str),
            None => current,
        }
    }

    /// The extra JSON fields, each as `(name, value)`.
    fn extra_fields(&self) -> Vec<(String, String)> {
        match &self.institution.extra {
            Value::Object(map) => map
                .iter()
                .map(|(name, value)| {
                    let value = match value {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    (name.clone(), value)
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ShowQuery {
    /// `1` right after the conversion.
    pub converted: String,
}

pub async fn show(
    viewer: Viewer,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
    Query(query): Query<ShowQuery>,
) -> PanelResult<LeadPage> {
    let mut page = lead_page(&viewer, &state, id).await?;
    page.converted_now = query.converted == "1" && page.customer.is_some();
    Ok(page)
}

pub async fn update(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
    Form(form): Form<InstitutionForm>,
) -> PanelResult<Response> {
    let saved = match form.input() {
        Ok(input) => leads::update_institution(&state.pool, &admin.ctx, id, input).await,
        Err(error) => Err(error),
    };
    match saved {
        Ok(_) => Ok(Redirect::to(&format!("/leads/{id}")).into_response()),
        Err(error) if answerable(&error) => {
            let mut page = lead_page(&admin, &state, id).await?;
            page.form = form;
            page.refusal = Refusal::of(&error);
            Ok(refused(&error, page))
        }
        Err(error) => Err(error.into()),
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct ContactForm {
    pub full_name: String,
    pub title: String,
}

impl ContactForm {
    fn input(&self) -> ContactInput {
        ContactInput {
            full_name: self.full_name.clone(),
            title: optional(&self.title),
        }
    }

    fn entered(self) -> HashMap<&'static str, String> {
        HashMap::from([("full_name", self.full_name), ("title", self.title)])
    }
}

pub async fn add_contact(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
    Form(form): Form<ContactForm>,
) -> PanelResult<Response> {
    let created = leads::create_contact(&state.pool, &admin.ctx, id, form.input()).await;
    let back = created.map(|contact| format!("/leads/{id}#contact-{}", contact.id));
    after(
        &admin,
        &state,
        id,
        back,
        "contact-new".into(),
        form.entered(),
    )
    .await
}

pub async fn update_contact(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
    Form(form): Form<ContactForm>,
) -> PanelResult<Response> {
    let institution_id = institution_of(&state, id).await?;
    let saved = leads::update_contact(&state.pool, &admin.ctx, id, form.input()).await;
    let back = saved.map(|_| format!("/leads/{institution_id}#contact-{id}"));
    let key = format!("contact-{id}");
    after(&admin, &state, institution_id, back, key, form.entered()).await
}

/// Soft: the contact leaves the page, its notes stay on the timeline.
pub async fn delete_contact(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
) -> PanelResult<Redirect> {
    let institution_id = institution_of(&state, id).await?;
    leads::delete_contact(&state.pool, &admin.ctx, id).await?;
    Ok(Redirect::to(&format!("/leads/{institution_id}#contacts")))
}

/// A phone or e-mail address as typed; `primary` is `yes` when ticked.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct DetailForm {
    pub kind: String,
    pub value: String,
    pub label: String,
    pub primary: String,
}

impl DetailForm {
    fn input(&self) -> DomainResult<DetailInput> {
        Ok(DetailInput {
            kind: DetailKind::parse(&self.kind)?,
            value: self.value.clone(),
            label: optional(&self.label),
            is_primary: self.primary == "yes",
        })
    }

    fn entered(self) -> HashMap<&'static str, String> {
        HashMap::from([
            ("kind", self.kind),
            ("value", self.value),
            ("label", self.label),
            ("primary", self.primary),
        ])
    }
}

pub async fn add_detail(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(contact_id): Path<Uuid>,
    Form(form): Form<DetailForm>,
) -> PanelResult<Response> {
    let institution_id = institution_of(&state, contact_id).await?;
    let added = match form.input() {
        Ok(input) => leads::add_detail(&state.pool, &admin.ctx, contact_id, input).await,
        Err(error) => Err(error),
    };
    let back = added.map(|_| format!("/leads/{institution_id}#contact-{contact_id}"));
    let key = format!("detail-new-{contact_id}");
    after(&admin, &state, institution_id, back, key, form.entered()).await
}

pub async fn update_detail(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<String>,
    Form(form): Form<DetailForm>,
) -> PanelResult<Response> {
    let id = detail_id(&id)?;
    let (contact_id, institution_id) = detail_owner(&state, id).await?;
    let saved = match form.input() {
        Ok(input) => leads::update_detail(&state.pool, &admin.ctx, id, input).await,
        Err(error) => Err(error),
    };
    let back = saved.map(|_| format!("/leads/{institution_id}#contact-{contact_id}"));
    let key = format!("detail-{id}");
    after(&admin, &state, institution_id, back, key, form.entered()).await
}

pub async fn delete_detail(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<String>,
) -> PanelResult<Redirect> {
    let id = detail_id(&id)?;
    let (contact_id, institution_id) = detail_owner(&state, id).await?;
    leads::delete_detail(&state.pool, &admin.ctx, id).await?;
    Ok(Redirect::to(&format!(
        "/leads/{institution_id}#contact-{contact_id}"
    )))
}

/// A note as typed: what it is about (a contact's id; empty: the
/// institution), its text, and for an edit or delete the version it was
/// based on.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct NoteForm {
    pub about: String,
    pub body: String,
    pub base: String,
}

pub async fn add_note(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
    Form(form): Form<NoteForm>,
) -> PanelResult<Response> {
    let added = match subject(&state, id, &form.about).await {
        Ok(subject) => leads::add_note(&state.pool, &admin.ctx, subject, &form.body).await,
        Err(error) => Err(error),
    };
    let back = added.map(|note| format!("/leads/{id}#note-{}", note.id));
    let entered = HashMap::from([("about", form.about), ("body", form.body)]);
    after(&admin, &state, id, back, "note-new".into(), entered).await
}

pub async fn edit_note(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
    Form(form): Form<NoteForm>,
) -> PanelResult<Response> {
    let institution_id = note_institution(&state, id).await?;
    let base = base_version(&form.base)?;
    let saved = leads::edit_note(&state.pool, &admin.ctx, id, base, &form.body).await;
    match saved {
        Ok(_) => Ok(Redirect::to(&format!("/leads/{institution_id}#note-{id}")).into_response()),
        Err(error @ DomainError::Conflict { .. }) => {
            let refused = Refused {
                verb: "saved",
                base,
                error,
            };
            note_conflict(&admin, &state, institution_id, id, refused, form.body).await
        }
        Err(error) => {
            let entered = HashMap::from([("body", form.body)]);
            let key = format!("note-{id}");
            after(&admin, &state, institution_id, Err(error), key, entered).await
        }
    }
}

/// Deletes the note by a tombstone, if it still is at the version shown.
pub async fn delete_note(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
    Form(form): Form<NoteForm>,
) -> PanelResult<Response> {
    let institution_id = note_institution(&state, id).await?;
    let base = base_version(&form.base)?;
    match leads::delete_note(&state.pool, &admin.ctx, id, base).await {
        Ok(()) => Ok(Redirect::to(&format!("/leads/{institution_id}#notes")).into_response()),
        Err(error @ DomainError::Conflict { .. }) => {
            let refused = Refused {
                verb: "deleted",
                base,
                error,
            };
            note_conflict(&admin, &state, institution_id, id, refused, String::new()).await
        }
        Err(error) => Err(error.into()),
    }
}

/// The customer the lead becomes, as the confirmation proposes it.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct ConvertForm {
    pub name: String,
    pub email: String,
    pub company: String,
    pub notes: String,
}

#[derive(Debug, Template, WebTemplate)]
#[template(path = "lead_convert.html")]
pub struct ConvertPage {
    layout: Layout,
    institution: Institution,
    customer: Option<Customer>,
    form: ConvertForm,
    refusal: Refusal,
}

/// The confirmation: the customer to be created, its fields proposed from
/// the institution and its first contact's primary e-mail address.
pub async fn convert_form(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
) -> PanelResult<ConvertPage> {
    let institution = leads::get_institution(&state.pool, id).await?;
    let mut email = String::new();
    for contact in leads::list_contacts(&state.pool, id).await? {
        let details = leads::get_contact(&state.pool, contact.id).await?.details;
        if let Some(found) = details
            .iter()
            .filter(|d| d.kind == DetailKind::Email.as_str())
            .min_by_key(|d| !d.is_primary)
        {
            email = found.value.clone();
            break;
        }
    }
    let form = ConvertForm {
        name: institution.name.clone(),
        email,
        company: institution.name.clone(),
        notes: String::new(),
    };
    convert_page(&admin, &state, institution, form, Refusal::default()).await
}

pub async fn convert(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
    Form(form): Form<ConvertForm>,
) -> PanelResult<Response> {
    let customer = NewCustomer {
        name: form.name.clone(),
        email: optional(&form.email),
        company: optional(&form.company),
        notes: optional(&form.notes),
        metadata: None,
    };
    match leads::convert_to_customer(&state.pool, &admin.ctx, id, customer).await {
        Ok(_) => Ok(Redirect::to(&format!("/leads/{id}?converted=1")).into_response()),
        Err(error) if answerable(&error) => {
            let institution = leads::get_institution(&state.pool, id).await?;
            let page = convert_page(&admin, &state, institution, form, Refusal::of(&error)).await?;
            Ok(refused(&error, page))
        }
        Err(error) => Err(error.into()),
    }
}

async fn convert_page(
    admin: &Viewer,
    state: &PanelState,
    institution: Institution,
    form: ConvertForm,
    refusal: Refusal,
) -> PanelResult<ConvertPage> {
    Ok(ConvertPage {
        layout: Layout::new(admin, "Convert to customer", "/leads"),
        customer: customer_of(state, &institution).await?,
        institution,
        form,
        refusal,
    })
}

async fn lead_page(viewer: &Viewer, state: &PanelState, id: Uuid) -> PanelResult<LeadPage> {
    let institution = leads::get_institution(&state.pool, id).await?;
    let owners = admins::list(&state.pool).await?;
    let names = names(&owners);
    let mut contacts = Vec::new();
    for contact in leads::list_contacts(&state.pool, id).await? {
        let details = leads::get_contact(&state.pool, contact.id).await?.details;
        contacts.push(ContactView {
            title: contact.title.clone().unwrap_or_default(),
            key: format!("contact-{}", contact.id),
            add_key: format!("detail-new-{}", contact.id),
            details: details.into_iter().map(DetailView::of).collect(),
            contact,
        });
    }
    let note_view = |note: Note| NoteView::of(note, &contacts, &names);
    let notes = leads::list_notes(&state.pool, id)
        .await?
        .into_iter()
        .map(note_view)
        .collect();
    let deleted_notes = leads::list_deleted_notes(&state.pool, id)
        .await?
        .into_iter()
        .map(note_view)
        .collect();
    Ok(LeadPage {
        layout: Layout::new(viewer, "Lead", "/leads"),
        owner: institution
            .owner_id
            .and_then(|owner| names.get(&owner).cloned())
            .unwrap_or_default(),
        form: InstitutionForm::of(&institution),
        refusal: Refusal::default(),
        customer: customer_of(state, &institution).await?,
        institution,
        owners,
        contacts,
        notes,
        deleted_notes,
        converted_now: false,
        other: None,
        conflict: None,
    })
}

impl DetailView {
    fn of(detail: Detail) -> Self {
        let scheme = if detail.kind == DetailKind::Phone.as_str() {
            "tel"
        } else {
            "mailto"
        };
        Self {
            label: detail.label.clone().unwrap_or_default(),
            href: format!("{scheme}:{}", detail.value),
            key: format!("detail-{}", detail.id),
            detail,
        }
    }
}

impl NoteView {
    fn of(note: Note, contacts: &[ContactView], names: &HashMap<Uuid, String>) -> Self {
        let about = match note.contact_id {
            None => "the institution".to_owned(),
            Some(id) => contacts.iter().find(|c| c.contact.id == id).map_or_else(
                || "a former contact".to_owned(),
                |c| c.contact.full_name.clone(),
            ),
        };
        Self {
            about,
            author: author(names, note.created_by),
            created: when(&note.created_at),
            changed: when(note.deleted_at.as_ref().unwrap_or(&note.updated_at)),
            key: format!("note-{}", note.id),
            note,
        }
    }
}

/// Who an edit is by: an admin's name, or the API's or the system's.
pub(super) fn author(names: &HashMap<Uuid, String>, id: Option<Uuid>) -> String {
    match id {
        Some(id) => names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| "a removed admin".to_owned()),
        None => "an API client or the system".to_owned(),
    }
}

/// The customer the institution became, if it still exists.
async fn customer_of(
    state: &PanelState,
    institution: &Institution,
) -> PanelResult<Option<Customer>> {
    match institution.customer_id {
        Some(id) => Ok(Some(customers::get(&state.pool, id).await?)),
        None => Ok(None),
    }
}

/// After one of the page's forms: on to `back`, or the page again with the
/// refusal at the form's field (a detail's value is refused under its
/// kind's name, `phone` or `email`).
async fn after(
    admin: &Viewer,
    state: &PanelState,
    institution_id: Uuid,
    back: DomainResult<String>,
    form: String,
    entered: HashMap<&'static str, String>,
) -> PanelResult<Response> {
    let error = match back {
        Ok(back) => return Ok(Redirect::to(&back).into_response()),
        Err(error) if answerable(&error) => error,
        Err(error) => return Err(error.into()),
    };
    let mut refusal = Refusal::of(&error);
    if matches!(refusal.field.as_str(), "phone" | "email") {
        refusal.field = "value".into();
    }
    let mut page = lead_page(admin, state, institution_id).await?;
    page.other = Some(FormRefusal {
        form,
        refusal,
        entered,
    });
    Ok(refused(&error, page))
}

/// An edit or delete refused for its stale base.
struct Refused {
    verb: &'static str,
    base: i32,
    error: DomainError,
}

/// The page again with the conflict: the note's current text and the one
/// not saved, 409.
async fn note_conflict(
    admin: &Viewer,
    state: &PanelState,
    institution_id: Uuid,
    id: Uuid,
    refused: Refused,
    entered: String,
) -> PanelResult<Response> {
    let mut page = lead_page(admin, state, institution_id).await?;
    let current = page.notes.iter().position(|view| view.note.id == id);
    page.conflict = Some(NoteConflict {
        note_id: id,
        verb: refused.verb,
        base: refused.base,
        // Shown in the conflict's box, so taken out of the timeline.
        current: current.map(|i| page.notes.remove(i)),
        entered,
    });
    Ok((
        StatusCode::CONFLICT,
        [(X_ERROR_CODE, refused.error.code().as_str())],
        page,
    )
        .into_response())
}

/// The note's subject: the institution, or one of its contacts.
async fn subject(state: &PanelState, id: Uuid, about: &str) -> DomainResult<NoteSubject> {
    if about.is_empty() {
        return Ok(NoteSubject::Institution(id));
    }
    let not_here = || DomainError::invalid("about", "is not a contact of this institution");
    let contact_id: Uuid = about.parse().map_err(|_| not_here())?;
    match leads::get_contact(&state.pool, contact_id).await {
        Ok(contact) if contact.contact.institution_id == id => Ok(NoteSubject::Contact(contact_id)),
        Ok(_) | Err(DomainError::NotFound(_)) => Err(not_here()),
        Err(error) => Err(error),
    }
}

async fn note_institution(state: &PanelState, id: Uuid) -> PanelResult<Uuid> {
    leads::get_note(&state.pool, id)
        .await?
        .institution_id
        .ok_or(PanelError::NotFound)
}

/// The version an edit is based on, as the form carries it.
fn base_version(text: &str) -> PanelResult<i32> {
    text.trim()
        .parse()
        .map_err(|_| PanelError::Invalid("base: the version the edit is based on".into()))
}

/// A detail id from the path; anything else is no page.
fn detail_id(text: &str) -> PanelResult<i64> {
    text.parse().map_err(|_| PanelError::NotFound)
}

/// The institution a contact belongs to.
async fn institution_of(state: &PanelState, contact_id: Uuid) -> DomainResult<Uuid> {
    Ok(leads::get_contact(&state.pool, contact_id)
        .await?
        .contact
        .institution_id)
}

/// The contact and the institution a detail belongs to.
async fn detail_owner(state: &PanelState, id: i64) -> DomainResult<(Uuid, Uuid)> {
    let contact_id = leads::get_detail(&state.pool, id).await?.contact_id;
    Ok((contact_id, institution_of(state, contact_id).await?))
}
