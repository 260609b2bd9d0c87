//! Resource pools: each pool's counts with a utilisation bar, the list with
//! filters (pool, status, license) and search, bulk add by pasting values
//! or ranges (reported line by line), allocation to a license, and a
//! resource's page with its history, release and quarantine. Every rule is
//! `db::resources`'s; the panel only reads forms and shows answers.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::download::FormatQuery;
use super::error::{PanelError, PanelResult, X_ERROR_CODE};
use super::exports;
use super::form::Form;
use super::pages::{Layout, when};
use super::session::{AdminUser, Viewer};
use crate::db::resources::{
    self, BulkInput, BulkReport, HistoryEntry, MAX_ALLOCATION, MAX_BULK_VALUES, OnBadLine,
    PoolSummary, Resource, ResourceFilter, ResourceKind, ResourceStatus,
};
use crate::error::{DomainError, Entity};
use crate::panel::PanelState;

pub const PER_PAGE: u32 = 100;
/// Lines of a bulk add's report shown in full; past this only the lines
/// with something to say (a fault, a repeat, a range) are listed.
pub const REPORT_ALL_LINES: usize = 100;
/// Most report lines shown at all.
pub const REPORT_MAX_LINES: usize = 500;
/// Longest quarantine the forms take.
pub const MAX_QUARANTINE_DAYS: i64 = 3650;

/// The pool's name in the panel.
pub fn pool_name(kind: &ResourceKind) -> &'static str {
    match kind {
        ResourceKind::Domain => "Domains",
        ResourceKind::Ip => "IP addresses",
        ResourceKind::Phone => "Phone numbers",
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    pub kind: String,
    pub status: String,
    pub license: String,
    pub q: String,
    pub page: String,
    /// Set after an allocation: how many were just allocated.
    pub allocated: String,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct BulkForm {
    pub kind: String,
    pub values: String,
    /// `yes`: add the valid lines even when some are malformed.
    pub add_valid: String,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct AllocateForm {
    pub license_id: String,
    pub kind: String,
    pub count: String,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct DaysForm {
    /// Release: rest it this many days (empty: available at once).
    pub quarantine_days: String,
    /// Quarantine: this many days.
    pub days: String,
}

#[derive(Debug)]
pub struct PoolBar {
    pub name: &'static str,
    pub kind: &'static str,
    pub counts: PoolSummary,
    /// Widths of the bar's parts, in percent.
    pub allocated_pct: f64,
    pub quarantined_pct: f64,
}

#[derive(Debug)]
pub struct Row {
    pub resource: Resource,
    pub pool: &'static str,
    pub since: String,
}

/// A refusal of one of the page's forms: which form, which field, why,
/// and the status and code it answers with.
#[derive(Debug)]
pub struct Refusal {
    pub form: &'static str,
    pub field: String,
    pub message: String,
    pub status: StatusCode,
    pub code: &'static str,
}

#[derive(Debug, Template, WebTemplate)]
#[template(path = "resources.html")]
pub struct ListPage {
    layout: Layout,
    pools: Vec<PoolBar>,
    query: ListQuery,
    rows: Vec<Row>,
    total: i64,
    page: u32,
    /// Query strings of the neighbouring pages.
    previous: Option<String>,
    next: Option<String>,
    /// Resources just allocated (to the filtered license).
    allocated: Option<u32>,
    report: Option<ReportView>,
    bulk: BulkForm,
    allocate: AllocateForm,
    refusal: Option<Refusal>,
    max_bulk: usize,
    max_allocation: u32,
}

impl ListPage {
    fn error_for(&self, form: &str, field: &str) -> Option<&str> {
        self.refusal
            .as_ref()
            .filter(|r| r.form == form && r.field == field)
            .map(|r| r.message.as_str())
    }

    fn refused(&self, form: &str) -> bool {
        self.refusal.as_ref().is_some_and(|r| r.form == form)
    }

    /// An allocation refused naming none of the form's fields (a revoked
    /// license): a banner above the form.
    fn allocate_banner(&self) -> Option<&str> {
        self.refusal
            .as_ref()
            .filter(|r| {
                r.form == "allocate" && !["license_id", "kind", "count"].contains(&r.field.as_str())
            })
            .map(|r| r.message.as_str())
    }

    fn filtered(&self) -> bool {
        !(self.query.kind.is_empty()
            && self.query.status.is_empty()
            && self.query.license.is_empty()
            && self.query.q.trim().is_empty())
    }
}

/// A bulk add's report as the page lists it.
#[derive(Debug)]
pub struct ReportView {
    pub report: BulkReport,
    pub pool: &'static str,
    /// The lines listed (see [`REPORT_ALL_LINES`]).
    pub shown: Vec<usize>,
    /// Lines not listed, every one of them fine.
    pub hidden: usize,
}

#[derive(Debug, Template, WebTemplate)]
#[template(path = "resource.html")]
pub struct ResourcePage {
    layout: Layout,
    resource: Resource,
    pool: &'static str,
    history: Vec<HistoryEntry>,
    form: DaysForm,
    refusal: Option<Refusal>,
}

impl ResourcePage {
    fn error_for(&self, field: &str) -> Option<&str> {
        self.refusal
            .as_ref()
            .filter(|r| r.field == field)
            .map(|r| r.message.as_str())
    }

    /// A refusal naming no field of the forms (a conflict): a banner.
    fn general_error(&self) -> Option<&str> {
        self.refusal
            .as_ref()
            .filter(|r| !["quarantine_days", "days"].contains(&r.field.as_str()))
            .map(|r| r.message.as_str())
    }
}

pub async fn list(
    viewer: Viewer,
    State(state): State<PanelState>,
    Query(query): Query<ListQuery>,
) -> PanelResult<Response> {
    Ok(ListPage::build(&viewer, &state, query, None)
        .await?
        .respond())
}

/// Adds the pasted lines; answers the list page with the report on top.
pub async fn add(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Form(form): Form<BulkForm>,
) -> PanelResult<Response> {
    let kind = match parse_kind(&form.kind) {
        Some(kind) => kind,
        None => {
            let refusal = field_refusal("bulk", "kind", "choose a pool");
            return refused(&admin, &state, refusal, |page| page.bulk = form).await;
        }
    };
    let on_bad_line = match form.add_valid.as_str() {
        "yes" => OnBadLine::AddTheValid,
        _ => OnBadLine::AddNothing,
    };
    let outcome = resources::add_lines(
        &state.pool,
        &admin.ctx,
        kind,
        BulkInput::Pasted(&form.values),
        on_bad_line,
    )
    .await;
    let report = match outcome {
        Ok(report) => report,
        Err(error) => {
            let refusal = domain_refusal("bulk", error)?;
            return refused(&admin, &state, refusal, |page| page.bulk = form).await;
        }
    };
    tracing::info!(
        kind = kind.as_str(),
        added = report.added,
        invalid = report.invalid,
        applied = report.applied,
        "resources added in the panel"
    );
    let mut page = ListPage::build(&admin, &state, ListQuery::default(), None).await?;
    // The pool stays chosen for the next paste.
    page.bulk.kind = form.kind.clone();
    if !report.applied {
        // The paste stays in the form, to fix or to tick "add the valid ones".
        page.bulk = form;
        page.refusal = Some(field_refusal(
            "bulk",
            "values",
            "nothing was added: fix the lines marked in the report above, or tick “add the valid ones”",
        ));
    }
    page.report = Some(ReportView::of(report));
    Ok(page.respond())
}

pub async fn allocate(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Form(form): Form<AllocateForm>,
) -> PanelResult<Response> {
    let parsed = (|| {
        let license_id = Uuid::parse_str(form.license_id.trim())
            .map_err(|_| ("license_id", "must be a license id like 0b5f…-…".to_owned()))?;
        let kind = parse_kind(&form.kind).ok_or(("kind", "choose a pool".to_owned()))?;
        let count = form
            .count
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_ALLOCATION).contains(n))
            .ok_or((
                "count",
                format!("must be a whole number from 1 to {MAX_ALLOCATION}"),
            ))?;
        Ok::<_, (&str, String)>((license_id, kind, count))
    })();
    let (license_id, kind, count) = match parsed {
        Ok(parsed) => parsed,
        Err((field, message)) => {
            let refusal = field_refusal("allocate", field, &message);
            return refused(&admin, &state, refusal, |page| page.allocate = form).await;
        }
    };
    match resources::allocate(&state.pool, &admin.ctx, license_id, kind, count).await {
        Ok(allocated) => Ok(Redirect::to(&format!(
            "/resources?license={license_id}&allocated={}",
            allocated.len()
        ))
        .into_response()),
        Err(error) => {
            let refusal = domain_refusal("allocate", error)?;
            refused(&admin, &state, refusal, |page| page.allocate = form).await
        }
    }
}

pub async fn show(
    viewer: Viewer,
    State(state): State<PanelState>,
    Path(id): Path<String>,
) -> PanelResult<ResourcePage> {
    resource_page(&viewer, &state, parse_id(&id)?, DaysForm::default(), None).await
}

/// Takes an allocated resource back; with days, it rests that long first.
pub async fn release(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<String>,
    Form(form): Form<DaysForm>,
) -> PanelResult<Response> {
    let id = parse_id(&id)?;
    let until = match form.quarantine_days.trim() {
        "" => Ok(None),
        days => parse_days(days).map(Some),
    };
    let outcome = match until {
        Ok(until) => resources::release(&state.pool, &admin.ctx, id, until).await,
        Err(message) => Err(DomainError::invalid("quarantine_days", message)),
    };
    after_change(&admin, &state, id, form, outcome).await
}

pub async fn quarantine(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<String>,
    Form(form): Form<DaysForm>,
) -> PanelResult<Response> {
    let id = parse_id(&id)?;
    let outcome = match parse_days(form.days.trim()) {
        Ok(until) => resources::quarantine(&state.pool, &admin.ctx, id, until).await,
        Err(message) => Err(DomainError::invalid("days", message)),
    };
    after_change(&admin, &state, id, form, outcome).await
}

impl ListPage {
    async fn build(
        viewer: &Viewer,
        state: &PanelState,
        query: ListQuery,
        refusal: Option<Refusal>,
    ) -> PanelResult<Self> {
        let pools = resources::summary(&state.pool)
            .await?
            .into_iter()
            .map(PoolBar::of)
            .collect();
        let mut page = Self {
            layout: Layout::new(viewer, "Resources", "/resources"),
            pools,
            query: query.clone(),
            rows: Vec::new(),
            total: 0,
            page: 1,
            previous: None,
            next: None,
            allocated: query.allocated.parse().ok(),
            report: None,
            bulk: BulkForm::default(),
            allocate: AllocateForm {
                license_id: query.license.trim().to_owned(),
                kind: query.kind.clone(),
                count: "1".into(),
            },
            refusal,
            max_bulk: MAX_BULK_VALUES,
            max_allocation: MAX_ALLOCATION,
        };
        let (filter, number) = match read_filter(&query) {
            Ok(read) => read,
            Err((field, message)) => {
                // The filter at fault is named next to its input; no rows.
                page.refusal = Some(field_refusal("filter", field, &message));
                return Ok(page);
            }
        };
        let found = resources::list(&state.pool, &filter, number, PER_PAGE).await?;
        page.total = found.total;
        page.page = number;
        page.rows = found
            .items
            .into_iter()
            .map(|resource| Row {
                pool: pool_name(&resource.kind),
                since: when(
                    resource
                        .allocated_at
                        .as_ref()
                        .unwrap_or(&resource.created_at),
                ),
                resource,
            })
            .collect();
        let link = |number: u32| {
            let mut out = form_urlencoded::Serializer::new(String::new());
            for (name, value) in [
                ("kind", &query.kind),
                ("status", &query.status),
                ("license", &query.license),
                ("q", &query.q),
            ] {
                if !value.trim().is_empty() {
                    out.append_pair(name, value.trim());
                }
            }
            out.append_pair("page", &number.to_string());
            out.finish()
        };
        page.previous = (number > 1).then(|| link(number - 1));
        page.next =
            (i64::from(number) * i64::from(PER_PAGE) < found.total).then(|| link(number + 1));
        Ok(page)
    }

    /// Under a refusal's status and code when there is one.
    fn respond(self) -> Response {
        match self.refusal.as_ref().map(|r| (r.status, r.code)) {
            Some((status, code)) => (status, [(X_ERROR_CODE, code)], self).into_response(),
            None => self.into_response(),
        }
    }
}

impl PoolBar {
    fn of(counts: PoolSummary) -> Self {
        let total = counts.total().max(1) as f64;
        Self {
            name: pool_name(&counts.kind),
            kind: counts.kind.as_str(),
            allocated_pct: 100.0 * counts.allocated as f64 / total,
            quarantined_pct: 100.0 * counts.quarantined as f64 / total,
            counts,
        }
    }

    /// "12.5%": allocated of all, one decimal.
    pub fn utilisation(&self) -> String {
        format!("{:.1}%", self.allocated_pct)
    }
}

impl ReportView {
    /// What the valid lines hold that is not in the pool yet.
    pub fn new_values(&self) -> u64 {
        self.report.lines.iter().map(|line| line.new).sum()
    }

    fn of(report: BulkReport) -> Self {
        let shown: Vec<usize> = report
            .lines
            .iter()
            .enumerate()
            .filter(|(_, line)| {
                report.lines.len() <= REPORT_ALL_LINES
                    || line.error.is_some()
                    || line.values != line.new
                    || line.values > 1
            })
            .map(|(i, _)| i)
            .take(REPORT_MAX_LINES)
            .collect();
        Self {
            pool: pool_name(&report.kind),
            hidden: report.lines.len() - shown.len(),
            shown,
            report,
        }
    }
}

/// The list page again, with a form's refusal (and what was entered, set
/// by `keep`), under the refusal's status and code.
async fn refused(
    admin: &Viewer,
    state: &PanelState,
    refusal: Refusal,
    keep: impl FnOnce(&mut ListPage),
) -> PanelResult<Response> {
    let mut page = ListPage::build(admin, state, ListQuery::default(), Some(refusal)).await?;
    keep(&mut page);
    Ok(page.respond())
}

/// After a release or quarantine: the resource's page, or it again with
/// the refusal (a bad field next to its input, a conflict as a banner).
async fn after_change(
    admin: &Viewer,
    state: &PanelState,
    id: i64,
    form: DaysForm,
    outcome: Result<Resource, DomainError>,
) -> PanelResult<Response> {
    match outcome {
        Ok(_) => Ok(Redirect::to(&format!("/resources/{id}")).into_response()),
        Err(error) => {
            let refusal = domain_refusal("resource", error)?;
            let (status, code) = (refusal.status, refusal.code);
            let page = resource_page(admin, state, id, form, Some(refusal)).await?;
            Ok((status, [(X_ERROR_CODE, code)], page).into_response())
        }
    }
}

async fn resource_page(
    viewer: &Viewer,
    state: &PanelState,
    id: i64,
    form: DaysForm,
    refusal: Option<Refusal>,
) -> PanelResult<ResourcePage> {
    let resource = resources::get(&state.pool, id).await?;
    let history = resources::history(&state.pool, id).await?;
    Ok(ResourcePage {
        layout: Layout::new(viewer, "Resource", "/resources"),
        pool: pool_name(&resource.kind),
        resource,
        history,
        form,
        refusal,
    })
}

fn field_refusal(form: &'static str, field: &str, message: &str) -> Refusal {
    Refusal {
        form,
        field: field.to_owned(),
        message: message.to_owned(),
        status: StatusCode::BAD_REQUEST,
        code: "INVALID_REQUEST",
    }
}

/// A domain refusal shown on the form; anything else is the error page.
fn domain_refusal(form: &'static str, error: DomainError) -> PanelResult<Refusal> {
    let code = error.code();
    let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let (field, message) = match error {
        DomainError::Invalid { field, message } => (field, message),
        DomainError::Conflict { field, message } => (field.unwrap_or_default(), message),
        // Allocating to an id that names no license: the field is at fault.
        DomainError::NotFound(Entity::License) if form == "allocate" => {
            ("license_id".to_owned(), "names no license".to_owned())
        }
        other => return Err(other.into()),
    };
    Ok(Refusal {
        form,
        field,
        message,
        status,
        code: code.as_str(),
    })
}

fn parse_kind(text: &str) -> Option<ResourceKind> {
    ResourceKind::ALL.into_iter().find(|k| k.as_str() == text)
}

/// The list's filter and page from the query; `Err` names the field.
fn read_filter(query: &ListQuery) -> Result<(ResourceFilter, u32), (&'static str, String)> {
    let kind = match query.kind.as_str() {
        "" => None,
        text => Some(parse_kind(text).ok_or(("kind", "is not a pool".to_owned()))?),
    };
    let status = match query.status.as_str() {
        "" => None,
        text => Some(
            ResourceStatus::ALL
                .into_iter()
                .find(|s| s.as_str() == text)
                .ok_or(("status", "is not a status".to_owned()))?,
        ),
    };
    let license_id = match query.license.trim() {
        "" => None,
        text => Some(
            Uuid::parse_str(text)
                .map_err(|_| ("license", "must be a license id like 0b5f…-…".to_owned()))?,
        ),
    };
    let page = match query.page.as_str() {
        "" => 1,
        text => text
            .parse::<u32>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or(("page", "pages count from 1".to_owned()))?,
    };
    let search = Some(query.q.trim().to_owned()).filter(|q| !q.is_empty());
    Ok((
        ResourceFilter {
            kind,
            status,
            license_id,
            search,
        },
        page,
    ))
}

/// `days` from now, 1 to [`MAX_QUARANTINE_DAYS`].
fn parse_days(text: &str) -> Result<OffsetDateTime, String> {
    text.parse::<i64>()
        .ok()
        .filter(|days| (1..=MAX_QUARANTINE_DAYS).contains(days))
        .map(|days| OffsetDateTime::now_utc() + Duration::days(days))
        .ok_or_else(|| format!("must be a whole number of days from 1 to {MAX_QUARANTINE_DAYS}"))
}

/// A resource id from the path; anything else is no page.
fn parse_id(text: &str) -> PanelResult<i64> {
    text.parse().map_err(|_| PanelError::NotFound)
}

/// The filtered list as `resources.csv` or `.json`, streamed (every matching
/// row, in constant memory).
pub async fn export(
    viewer: Viewer,
    State(state): State<PanelState>,
    Query(query): Query<ListQuery>,
    Query(download): Query<FormatQuery>,
) -> PanelResult<Response> {
    let (filter, _) = read_filter(&query)
        .map_err(|(field, message)| PanelError::Invalid(format!("{field}: {message}")))?;
    let total = resources::count(&state.pool, &filter).await?;
    let rows = resources::stream(state.pool.clone(), &filter);
    exports::start(&viewer, &state, rows, download.format()?, total).await
}
