//! Leads: the pipeline as a list (filters by stage, owner and tag; a
//! full-text search that answers as you type and says where each hit
//! matched, an old version of a note included) and as a board with a column
//! per stage, whose cards move by their ← → buttons or by drag-and-drop
//! (`app.js` posts the buttons' request); and the form that creates an
//! institution. An institution's own page is `lead.rs`'s, a note's history
//! `note_history.rs`'s; every rule is `db::leads`'s.

use std::collections::HashMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use super::download::FormatQuery;
use super::error::PanelResult;
use super::exports;
use super::form::Form;
use super::pages::{Layout, when};
use super::products::{Refusal, answerable, optional, refused};
use super::session::{AdminUser, Viewer};
use crate::db::admins::{self, AdminSummary};
use crate::db::leads::{
    self, Cursor, Institution, InstitutionFilter, InstitutionInput, Match, NoteVersion, STAGES,
};
use crate::error::{DomainError, DomainResult, Entity};
use crate::panel::PanelState;

pub const PER_PAGE: u32 = 50;
/// Hits a search shows.
pub const SEARCH_HITS: u32 = 20;
/// Cards a board column shows; its count says how many it holds.
pub const BOARD_CARDS: u32 = 50;
/// Characters of a matching note shown under its hit.
const SNIPPET_CHARS: usize = 200;

/// The fields of the institution form, in its order.
pub const INSTITUTION_FIELDS: [&str; 10] = [
    "name", "kind", "website", "country", "city", "address", "stage", "owner_id", "tags", "extra",
];

/// A stage as the panel names it.
pub fn stage_label(stage: &str) -> &'static str {
    match stage {
        "new" => "New",
        "contacted" => "Contacted",
        "qualified" => "Qualified",
        "proposal" => "Proposal",
        "won" => "Won",
        "lost" => "Lost",
        _ => "Unknown stage",
    }
}

/// The institution form as typed: tags separated by commas, `extra` a JSON
/// object as text, the owner an admin's id (empty: no one).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct InstitutionForm {
    pub name: String,
    pub kind: String,
    pub website: String,
    pub country: String,
    pub city: String,
    pub address: String,
    pub stage: String,
    pub owner_id: String,
    pub tags: String,
    pub extra: String,
}

impl InstitutionForm {
    pub(super) fn of(it: &Institution) -> Self {
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        let extra = match &it.extra {
            Value::Object(map) if map.is_empty() => String::new(),
            other => serde_json::to_string_pretty(other).unwrap_or_default(),
        };
        Self {
            name: it.name.clone(),
            kind: text(&it.kind),
            website: text(&it.website),
            country: text(&it.country),
            city: text(&it.city),
            address: text(&it.address),
            stage: it.stage.clone(),
            owner_id: it.owner_id.map(|id| id.to_string()).unwrap_or_default(),
            tags: it.tags.join(", "),
            extra,
        }
    }

    /// What the form says, for `db::leads`; the rules are checked there.
    pub(super) fn input(&self) -> DomainResult<InstitutionInput> {
        let owner_id = match self.owner_id.trim() {
            "" => None,
            id => Some(
                id.parse()
                    .map_err(|_| DomainError::invalid("owner_id", "is not an admin"))?,
            ),
        };
        let extra = match self.extra.trim() {
            "" => None,
            text => Some(serde_json::from_str(text).map_err(|error| {
                DomainError::invalid(
                    "extra",
                    format!("must be a JSON object like {{\"beds\": 120}} ({error})"),
                )
            })?),
        };
        Ok(InstitutionInput {
            name: self.name.clone(),
            kind: optional(&self.kind),
            website: optional(&self.website),
            country: optional(&self.country),
            city: optional(&self.city),
            address: optional(&self.address),
            stage: optional(&self.stage),
            owner_id,
            tags: self
                .tags
                .split(',')
                .map(str::trim)
                .filter(|tag| !tag.is_empty())
                .map(str::to_owned)
                .collect(),
            extra,
        })
    }
}

/// The list's and the board's filters as the form sends them (empty: not
/// set), the search and the page cursor.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    pub stage: String,
    pub owner: String,
    pub tag: String,
    pub q: String,
    /// `<microseconds since the epoch>_<id>` of the last row seen.
    pub after: String,
}

impl ListQuery {
    fn filter(&self) -> DomainResult<InstitutionFilter> {
        let owner_id = match self.owner.trim() {
            "" => None,
            id => Some(
                id.parse()
                    .map_err(|_| DomainError::invalid("owner", "is not an admin"))?,
            ),
        };
        Ok(InstitutionFilter {
            stage: optional(&self.stage),
            owner_id,
            tag: optional(&self.tag),
            // The page's search is its own (`search`), over contacts and notes too.
            q: None,
        })
    }

    /// The owner and tag filters as a query string (the board keeps them).
    pub fn owner_and_tag(&self) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (name, value) in [("owner", &self.owner), ("tag", &self.tag)] {
            if !value.trim().is_empty() {
                out.append_pair(name, value.trim());
            }
        }
        out.finish()
    }

    fn filtered(&self) -> bool {
        !(self.stage.is_empty() && self.owner.trim().is_empty() && self.tag.trim().is_empty())
    }
}

/// An institution as the list and the board show it.
#[derive(Debug)]
pub struct Row {
    pub institution: Institution,
    pub owner: String,
    pub updated: String,
}

/// A search hit: which institution, where it matched, and the text.
#[derive(Debug)]
pub struct HitView {
    pub institution_id: Uuid,
    pub institution: String,
    pub matched: &'static str,
    /// Where, in words: "contact Anna Berg", "note, version 1 of 2".
    pub place: String,
    pub snippet: String,
    /// The note whose history has the matching text.
    pub note_id: Option<Uuid>,
}

#[derive(Debug, Template, WebTemplate)]
#[template(path = "leads.html")]
pub struct ListPage {
    layout: Layout,
    query: ListQuery,
    owners: Vec<AdminSummary>,
    rows: Vec<Row>,
    next: Option<String>,
    paged: bool,
    /// The search, when the form was sent without JavaScript.
    q: String,
    hits: Vec<HitView>,
    refusal: Refusal,
}

impl ListPage {
    fn filtered(&self) -> bool {
        self.query.filtered()
    }
}

/// The search's answer as you type: the hits alone.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "lead_search.html")]
pub struct SearchFragment {
    q: String,
    hits: Vec<HitView>,
}

/// One stage of the board.
#[derive(Debug)]
pub struct Column {
    pub stage: &'static str,
    pub label: &'static str,
    pub count: i64,
    pub cards: Vec<Row>,
    /// The stages a card moves to with ← and →.
    pub previous: Option<&'static str>,
    pub next: Option<&'static str>,
}

impl Column {
    /// Cards it holds beyond those shown.
    pub fn more(&self) -> i64 {
        self.count - self.cards.len() as i64
    }
}

#[derive(Debug, Template, WebTemplate)]
#[template(path = "leads_board.html")]
pub struct BoardPage {
    layout: Layout,
    query: ListQuery,
    owners: Vec<AdminSummary>,
    board: Board,
    refusal: Refusal,
}

/// The columns, what a move answers to htmx.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "lead_board.html")]
pub struct Board {
    columns: Vec<Column>,
    is_admin: bool,
    csrf: String,
    /// The filters a move keeps.
    keep_owner: String,
    keep_tag: String,
}

#[derive(Debug, Template, WebTemplate)]
#[template(path = "lead_new.html")]
pub struct NewPage {
    layout: Layout,
    form: InstitutionForm,
    owners: Vec<AdminSummary>,
    refusal: Refusal,
}

pub async fn list(
    viewer: Viewer,
    State(state): State<PanelState>,
    Query(query): Query<ListQuery>,
) -> PanelResult<Response> {
    let owners = admins::list(&state.pool).await?;
    let mut page = ListPage {
        layout: Layout::new(&viewer, "Leads", "/leads"),
        query: query.clone(),
        rows: Vec::new(),
        next: None,
        paged: !query.after.is_empty(),
        q: query.q.trim().to_owned(),
        hits: Vec::new(),
        refusal: Refusal::default(),
        owners,
    };
    let found = async {
        let filter = query.filter()?;
        let cursor = parse_cursor(&query.after)?;
        let hits = match page.q.as_str() {
            "" => Vec::new(),
            q => hits(&state, q).await?,
        };
        let page = leads::list_institutions(&state.pool, &filter, cursor, PER_PAGE).await?;
        Ok::<_, DomainError>((hits, page))
    }
    .await;
    let (hits, (institutions, next)) = match found {
        Ok(found) => found,
        Err(error) if answerable(&error) => {
            // A filter at fault is named at its input; no rows.
            page.refusal = filter_refusal(&error);
            return Ok(refused(&error, page));
        }
        Err(error) => return Err(error.into()),
    };
    page.hits = hits;
    page.rows = rows(&page.owners, institutions);
    page.next = next.map(|cursor| {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("stage", &query.stage),
            ("owner", &query.owner),
            ("tag", &query.tag),
        ] {
            if !value.trim().is_empty() {
                out.append_pair(name, value.trim());
            }
        }
        out.append_pair(
            "after",
            &format!(
                "{}_{}",
                cursor.created_at.unix_timestamp_nanos() / 1_000,
                cursor.id
            ),
        );
        out.finish()
    });
    Ok(page.into_response())
}

/// The search as you type: the hits for `q`, or nothing for an empty one.
pub async fn search(
    _viewer: Viewer,
    State(state): State<PanelState>,
    Query(query): Query<ListQuery>,
) -> PanelResult<SearchFragment> {
    let q = query.q.trim().to_owned();
    let hits = match q.as_str() {
        "" => Vec::new(),
        q => hits(&state, q).await?,
    };
    Ok(SearchFragment { q, hits })
}

pub async fn board(
    viewer: Viewer,
    State(state): State<PanelState>,
    Query(query): Query<ListQuery>,
) -> PanelResult<Response> {
    let owners = admins::list(&state.pool).await?;
    let columns = match query.filter() {
        Ok(filter) => columns(&state, &owners, &filter).await,
        Err(error) => Err(error),
    };
    let mut page = BoardPage {
        layout: Layout::new(&viewer, "Leads", "/leads"),
        board: Board {
            columns: Vec::new(),
            is_admin: viewer.is_admin(),
            csrf: viewer.session.csrf_token.clone(),
            keep_owner: query.owner.trim().to_owned(),
            keep_tag: query.tag.trim().to_owned(),
        },
        query,
        owners,
        refusal: Refusal::default(),
    };
    match columns {
        Ok(columns) => {
            page.board.columns = columns;
            Ok(page.into_response())
        }
        Err(error) if answerable(&error) => {
            page.refusal = filter_refusal(&error);
            Ok(refused(&error, page))
        }
        Err(error) => Err(error.into()),
    }
}

/// A card's move: `stage` is where to, `owner` and `tag` the board's
/// filters, kept for the answer.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct MoveForm {
    pub stage: String,
    pub owner: String,
    pub tag: String,
}

/// Moves an institution to another stage. htmx (the buttons, or a drop)
/// gets the board's columns again; a plain form post goes back to the board.
pub async fn move_stage(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    Form(form): Form<MoveForm>,
) -> PanelResult<Response> {
    leads::set_stage(&state.pool, &admin.ctx, id, &form.stage).await?;
    let query = ListQuery {
        owner: form.owner,
        tag: form.tag,
        ..ListQuery::default()
    };
    if !headers.contains_key("hx-request") {
        let back = query.owner_and_tag();
        let target = if back.is_empty() {
            format!("/leads/board#card-{id}")
        } else {
            format!("/leads/board?{back}#card-{id}")
        };
        return Ok(Redirect::to(&target).into_response());
    }
    let owners = admins::list(&state.pool).await?;
    let filter = query.filter()?;
    Ok(Board {
        columns: columns(&state, &owners, &filter).await?,
        is_admin: true,
        csrf: admin.session.csrf_token.clone(),
        keep_owner: query.owner.trim().to_owned(),
        keep_tag: query.tag.trim().to_owned(),
    }
    .into_response())
}

pub async fn new_form(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
) -> PanelResult<NewPage> {
    let form = InstitutionForm {
        stage: "new".into(),
        owner_id: admin.admin_id().to_string(),
        ..InstitutionForm::default()
    };
    Ok(NewPage {
        layout: Layout::new(&admin, "New institution", "/leads"),
        form,
        owners: admins::list(&state.pool).await?,
        refusal: Refusal::default(),
    })
}

pub async fn create(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Form(form): Form<InstitutionForm>,
) -> PanelResult<Response> {
    let created = match form.input() {
        Ok(input) => leads::create_institution(&state.pool, &admin.ctx, input).await,
        Err(error) => Err(error),
    };
    match created {
        Ok(institution) => Ok(Redirect::to(&format!("/leads/{}", institution.id)).into_response()),
        Err(error) if answerable(&error) => {
            let page = NewPage {
                layout: Layout::new(&admin, "New institution", "/leads"),
                form,
                owners: admins::list(&state.pool).await?,
                refusal: Refusal::of(&error),
            };
            Ok(refused(&error, page))
        }
        Err(error) => Err(error.into()),
    }
}

/// Admin ids to names, for owners and authors.
pub(super) fn names(owners: &[AdminSummary]) -> HashMap<Uuid, String> {
    owners
        .iter()
        .map(|admin| (admin.id, admin.username.clone()))
        .collect()
}

fn rows(owners: &[AdminSummary], institutions: Vec<Institution>) -> Vec<Row> {
    let names = names(owners);
    institutions
        .into_iter()
        .map(|institution| Row {
            owner: institution
                .owner_id
                .and_then(|id| names.get(&id).cloned())
                .unwrap_or_default(),
            updated: when(&institution.updated_at),
            institution,
        })
        .collect()
}

async fn columns(
    state: &PanelState,
    owners: &[AdminSummary],
    filter: &InstitutionFilter,
) -> DomainResult<Vec<Column>> {
    let counts = leads::stage_counts(&state.pool, filter).await?;
    let mut columns = Vec::with_capacity(STAGES.len());
    for (i, (stage, count)) in counts.into_iter().enumerate() {
        let in_stage = InstitutionFilter {
            stage: Some(stage.to_owned()),
            ..filter.clone()
        };
        let (cards, _) =
            leads::list_institutions(&state.pool, &in_stage, None, BOARD_CARDS).await?;
        columns.push(Column {
            stage,
            label: stage_label(stage),
            count,
            cards: rows(owners, cards),
            previous: i.checked_sub(1).map(|p| STAGES[p]),
            next: STAGES.get(i + 1).copied(),
        });
    }
    Ok(columns)
}

/// The search's hits, each with where it matched: a contact by name, a
/// note by the version whose text matched and a piece of that text.
async fn hits(state: &PanelState, q: &str) -> DomainResult<Vec<HitView>> {
    let found = leads::search(&state.pool, q, SEARCH_HITS).await?;
    let mut hits = Vec::with_capacity(found.len());
    for hit in found {
        let contact = match hit.contact_id {
            Some(id) => contact_name(state, id).await?,
            None => None,
        };
        let (matched, place, snippet) = match hit.matched {
            Match::Institution => (
                "institution",
                "the institution's name, type, address or website".to_owned(),
                String::new(),
            ),
            Match::Contact => (
                "contact",
                format!("contact {}", contact.unwrap_or_default()),
                String::new(),
            ),
            Match::Note => {
                let versions = match hit.note_id {
                    Some(id) => leads::note_history(&state.pool, id).await?,
                    None => Vec::new(),
                };
                let matched = hit.note_version.unwrap_or_default();
                let about = contact
                    .map(|name| format!(" about {name}"))
                    .unwrap_or_default();
                ("note", note_place(&versions, matched, &about), {
                    let text = versions
                        .iter()
                        .find(|v| v.version == matched)
                        .map_or("", |v| v.body.as_str());
                    snippet(text)
                })
            }
        };
        hits.push(HitView {
            institution_id: hit.institution_id,
            institution: hit.institution_name,
            matched,
            place,
            snippet,
            note_id: hit.note_id,
        });
    }
    Ok(hits)
}

/// "a note about Anna, version 1 of 2 (an older text)".
fn note_place(versions: &[NoteVersion], matched: i32, about: &str) -> String {
    let newest = versions.last().map_or(matched, |v| v.version);
    let older = if matched < newest {
        " (an older text: the note says otherwise now)"
    } else {
        ""
    };
    format!("a note{about}, version {matched} of {newest}{older}")
}

/// The contact's name; a contact deleted since the search ran has none.
async fn contact_name(state: &PanelState, id: Uuid) -> DomainResult<Option<String>> {
    match leads::get_contact(&state.pool, id).await {
        Ok(contact) => Ok(Some(contact.contact.full_name)),
        Err(DomainError::NotFound(Entity::LeadContact)) => Ok(None),
        Err(error) => Err(error),
    }
}

/// The first [`SNIPPET_CHARS`] characters, on one line.
fn snippet(text: &str) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(SNIPPET_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

/// A filter's refusal, at the input that sent it (the domain names tags
/// `tags`; the filter's input is `tag`).
fn filter_refusal(error: &DomainError) -> Refusal {
    let mut refusal = Refusal::of(error);
    if refusal.field == "tags" {
        refusal.field = "tag".into();
    }
    refusal
}

fn parse_cursor(value: &str) -> DomainResult<Option<Cursor>> {
    if value.is_empty() {
        return Ok(None);
    }
    let bad = || DomainError::invalid("after", "is not a page cursor");
    let (micros, id) = value.split_once('_').ok_or_else(bad)?;
    let micros: i128 = micros.parse().map_err(|_| bad())?;
    let created_at =
        OffsetDateTime::from_unix_timestamp_nanos(micros * 1_000).map_err(|_| bad())?;
    Ok(Some(Cursor {
        created_at,
        id: id.parse().map_err(|_| bad())?,
    }))
}

/// The filtered list as `institutions.csv` or `.json`, streamed (every matching
/// row, in constant memory).
pub async fn export(
    viewer: Viewer,
    State(state): State<PanelState>,
    Query(query): Query<ListQuery>,
    Query(download): Query<FormatQuery>,
) -> PanelResult<Response> {
    let filter = query.filter()?;
    let total = leads::count_institutions(&state.pool, &filter).await?;
    let rows = leads::stream_institutions(state.pool.clone(), &filter)?;
    exports::start(&viewer, &state, rows, download.format()?, total).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_are_one_line_and_cut() {
        assert_eq!(snippet("a\n b\t c"), "a b c");
        let long = "x".repeat(SNIPPET_CHARS + 10);
        assert_eq!(snippet(&long).chars().count(), SNIPPET_CHARS + 1);
    }

    #[test]
    fn the_form_reads_tags_owner_and_extra() {
        let form = InstitutionForm {
            name: "Uni".into(),
            tags: " eu, ,school ".into(),
            extra: "{\"beds\": 3}".into(),
            ..InstitutionForm::default()
        };
        let input = form.input().unwrap();
        assert_eq!(input.tags, ["eu", "school"]);
        assert_eq!(input.extra, Some(serde_json::json!({"beds": 3})));
        assert_eq!(input.owner_id, None);
        let bad = InstitutionForm {
            extra: "{beds".into(),
            ..form.clone()
        };
        assert_eq!(bad.input().unwrap_err().field(), Some("extra"));
        let bad = InstitutionForm {
            owner_id: "alice".into(),
            ..form
        };
        assert_eq!(bad.input().unwrap_err().field(), Some("owner_id"));
    }
}
