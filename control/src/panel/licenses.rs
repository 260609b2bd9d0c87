//! Licenses: the list with filters, three sorts and keyset pages; a row's
//! quick edit in place (htmx: status, valid until, device limit); bulk
//! operations on the rows ticked or on everything a filter matches, each
//! with a confirmation that says how many licenses it will touch. Every rule
//! is `db::licenses`'s and `db::license_bulk`'s. A license's own page
//! (`/licenses/{id}`) is `license.rs`'s.

use std::collections::HashMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use latchkey_shared::snapshot::{LicenseKind, LicenseStatus};
use serde::Deserialize;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, Time};
use uuid::Uuid;

use super::download::FormatQuery;
use super::error::{PanelError, PanelResult, X_ERROR_CODE};
use super::exports;
use super::form::Form;
use super::pages::{Layout, when};
use super::session::{AdminUser, Viewer};
use crate::db::customers;
use crate::db::license_bulk::{self, Operation, Outcome, Selection};
use crate::db::licenses::{self, License, LicenseCursor, LicenseFilter, LicenseSort, QuickEdit};
use crate::db::products::{self, Product};
use crate::error::DomainError;
use crate::panel::PanelState;

pub const PER_PAGE: u32 = 50;
/// Longest "expiring within" a filter takes, in days.
pub const MAX_EXPIRING_DAYS: u32 = 3_650;

/// The list's filters and sort as the form sends them (empty: not set),
/// and the page cursor.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    pub status: String,
    pub product: String,
    pub customer: String,
    pub kind: String,
    pub batch: String,
    /// Days.
    pub expiring: String,
    pub key: String,
    pub sort: String,
    /// `<microseconds since the epoch, or "none">_<id>` of the last row seen.
    pub after: String,
}

const FILTER_FIELDS: [&str; 8] = [
    "status", "product", "customer", "kind", "batch", "expiring", "key", "sort",
];

impl ListQuery {
    fn field(&self, name: &str) -> &str {
        match name {
            "status" => &self.status,
            "product" => &self.product,
            "customer" => &self.customer,
            "kind" => &self.kind,
            "batch" => &self.batch,
            "expiring" => &self.expiring,
            "key" => &self.key,
            "sort" => &self.sort,
            _ => "",
        }
    }

    fn set(&mut self, name: &str, value: String) {
        match name {
            "status" => self.status = value,
            "product" => self.product = value,
            "customer" => self.customer = value,
            "kind" => self.kind = value,
            "batch" => self.batch = value,
            "expiring" => self.expiring = value,
            "key" => self.key = value,
            "sort" => self.sort = value,
            _ => {}
        }
    }

    /// The filters and sort that are set, as `(name, value)`: the hidden
    /// fields of a bulk form, and the query string of links.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        FILTER_FIELDS
            .iter()
            .map(|name| (*name, self.field(name).trim().to_owned()))
            .filter(|(_, value)| !value.is_empty())
            .collect()
    }

    /// The query string of this list without its cursor.
    pub fn query_string(&self) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (name, value) in self.pairs() {
            out.append_pair(name, &value);
        }
        out.finish()
    }

    pub fn filter(&self) -> PanelResult<LicenseFilter> {
        fn opt<T>(
            value: &str,
            field: &str,
            expected: &str,
            parse: impl FnOnce(&str) -> Option<T>,
        ) -> PanelResult<Option<T>> {
            let value = value.trim();
            if value.is_empty() {
                return Ok(None);
            }
            parse(value)
                .map(Some)
                .ok_or_else(|| PanelError::Invalid(format!("{field}: {expected}")))
        }
        Ok(LicenseFilter {
            status: opt(
                &self.status,
                "status",
                "active, suspended or revoked",
                |v| LicenseStatus::try_from(v.to_owned()).ok(),
            )?,
            product_id: opt(&self.product, "product", "a product id", |v| v.parse().ok())?,
            customer_id: opt(&self.customer, "customer", "a customer id", |v| {
                v.parse().ok()
            })?,
            batch_id: opt(&self.batch, "batch", "a batch id (a UUID)", |v| {
                v.parse().ok()
            })?,
            kind: opt(&self.kind, "kind", "full, trial or test", |v| {
                LicenseKind::try_from(v.to_owned()).ok()
            })?,
            expiring_within_days: opt(
                &self.expiring,
                "expiring",
                "a whole number of days from 1 to 3650",
                |v| {
                    v.parse()
                        .ok()
                        .filter(|d| (1..=MAX_EXPIRING_DAYS).contains(d))
                },
            )?,
            key_prefix: opt(&self.key, "key", "letters and digits of a key", |v| {
                v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-')
                    .then(|| v.to_owned())
            })?,
        })
    }

    pub fn sort(&self) -> PanelResult<LicenseSort> {
        match self.sort.trim() {
            "" | "newest" => Ok(LicenseSort::Newest),
            "oldest" => Ok(LicenseSort::Oldest),
            "valid_until" => Ok(LicenseSort::ValidUntil),
            _ => Err(PanelError::Invalid(
                "sort: newest, oldest or valid_until".into(),
            )),
        }
    }
}

/// One license as a row shows it.
#[derive(Debug, Clone)]
pub struct Row {
    pub license: License,
    pub product: String,
    /// Empty: no customer.
    pub customer: String,
    pub valid_until: String,
    /// Its validity has ended.
    pub expired: bool,
}

#[derive(Debug, Template, WebTemplate)]
#[template(path = "licenses.html")]
pub struct ListPage {
    layout: Layout,
    is_admin: bool,
    query: ListQuery,
    filtered: bool,
    rows: Vec<Row>,
    products: Vec<Product>,
    /// The name of the customer filtered by.
    customer_name: Option<String>,
    /// The query string of the next page, if there is one.
    next: Option<String>,
    /// This is not the first page.
    paged: bool,
}

impl ListPage {
    /// ` selected` for the option of a filter that is set to `value`.
    fn chosen(&self, field: &str, value: &str) -> &'static str {
        if self.query.field(field) == value {
            " selected"
        } else {
            ""
        }
    }

    fn chosen_product(&self, id: &i32) -> &'static str {
        self.chosen("product", &id.to_string())
    }
}

pub const STATUSES: [&str; 3] = ["active", "suspended", "revoked"];
pub const KINDS: [&str; 3] = ["full", "trial", "test"];

/// A plain row, as the list has it and as a quick edit answers.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "license_row.html")]
pub struct RowFragment {
    row: Row,
    is_admin: bool,
}

/// A row being edited, with what was entered and the refusal.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "license_quick.html")]
pub struct QuickFragment {
    row: Row,
    form: QuickForm,
    /// The field a refusal names (empty: none) and its message.
    error_field: String,
    error: String,
}

impl QuickFragment {
    fn chosen(&self, status: &str) -> &'static str {
        if self.form.status == status {
            " selected"
        } else {
            ""
        }
    }

    fn error_for(&self, field: &str) -> Option<&str> {
        (self.error_field == field).then_some(self.error.as_str())
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct QuickForm {
    pub status: String,
    /// `YYYY-MM-DD` (the end of that day) or `YYYY-MM-DD HH:MM`, UTC; empty: perpetual.
    pub valid_until: String,
    pub device_limit: String,
}

impl QuickForm {
    fn of(license: &License) -> Self {
        Self {
            status: license.status.as_str().to_owned(),
            valid_until: license
                .valid_until
                .map(|at| {
                    at.to_offset(time::UtcOffset::UTC)
                        .format(format_description!("[year]-[month]-[day] [hour]:[minute]"))
                        .unwrap_or_default()
                })
                .unwrap_or_default(),
            device_limit: license.device_limit.to_string(),
        }
    }

    /// The edit, or the field it cannot be read from. A time within the
    /// minute the license ends in now keeps its seconds: saving a row
    /// unchanged changes nothing.
    fn edit(&self, current: &License) -> Result<QuickEdit, DomainError> {
        let status = LicenseStatus::try_from(self.status.trim().to_owned())
            .map_err(|_| DomainError::invalid("status", "must be active, suspended or revoked"))?;
        let valid_until = parse_until(&self.valid_until)?;
        let valid_until = match (valid_until, current.valid_until) {
            (Some(new), Some(old)) if Some(new) == to_minute(old) => Some(old),
            (new, _) => new,
        };
        let device_limit = self.device_limit.trim().parse().map_err(|_| {
            DomainError::invalid("device_limit", "must be a whole number from 0 to 1000000")
        })?;
        Ok(QuickEdit {
            status,
            valid_until,
            device_limit,
        })
    }
}

fn to_minute(at: OffsetDateTime) -> Option<OffsetDateTime> {
    at.replace_second(0).ok()?.replace_nanosecond(0).ok()
}

fn parse_until(value: &str) -> Result<Option<OffsetDateTime>, DomainError> {
    let value = value.trim().trim_end_matches("UTC").trim();
    if value.is_empty() {
        return Ok(None);
    }
    let bad = || {
        DomainError::invalid(
            "valid_until",
            "must be a date like 2027-01-31, a time like 2027-01-31 18:00 (UTC), or empty for perpetual",
        )
    };
    let at = if let Ok(date) = time::Date::parse(value, format_description!("[year]-[month]-[day]"))
    {
        PrimitiveDateTime::new(date, Time::from_hms(23, 59, 59).map_err(|_| bad())?)
    } else {
        let value = value.replacen('T', " ", 1);
        PrimitiveDateTime::parse(
            &value,
            format_description!("[year]-[month]-[day] [hour]:[minute]"),
        )
        .map_err(|_| bad())?
    };
    Ok(Some(at.assume_utc()))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct QuickQuery {
    /// `1`: the plain row again (the edit's Cancel).
    pub cancel: String,
}

pub async fn list(
    viewer: Viewer,
    State(state): State<PanelState>,
    Query(query): Query<ListQuery>,
) -> PanelResult<ListPage> {
    let filter = query.filter()?;
    let sort = query.sort()?;
    let cursor = parse_cursor(&query.after)?;
    let (licenses, next) =
        licenses::list_page(&state.pool, &filter, sort, cursor, PER_PAGE).await?;
    let products = products::list(&state.pool).await?;
    let rows = rows(&state, &products, licenses).await?;
    let customer_name = match filter.customer_id {
        Some(id) => customers::names(&state.pool, &[id]).await?.remove(&id),
        None => None,
    };
    let base = query.query_string();
    let next = next.map(|cursor| {
        let after = format!(
            "after={}_{}",
            cursor.at.map_or_else(
                || "none".to_owned(),
                |at| (at.unix_timestamp_nanos() / 1_000).to_string()
            ),
            cursor.id
        );
        if base.is_empty() {
            after
        } else {
            format!("{base}&{after}")
        }
    });
    Ok(ListPage {
        layout: Layout::new(&viewer, "Licenses", "/licenses"),
        is_admin: viewer.is_admin(),
        filtered: !filter.is_empty(),
        query,
        rows,
        products,
        customer_name,
        next,
        paged: cursor.is_some(),
    })
}

/// The editable row (or, with `cancel`, the plain one).
pub async fn quick_form(
    AdminUser(_admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
    Query(query): Query<QuickQuery>,
) -> PanelResult<Response> {
    let license = licenses::get(&state.pool, id).await?;
    let row = one_row(&state, license).await?;
    if !query.cancel.is_empty() {
        return Ok(RowFragment {
            row,
            is_admin: true,
        }
        .into_response());
    }
    Ok(QuickFragment {
        form: QuickForm::of(&row.license),
        row,
        error_field: String::new(),
        error: String::new(),
    }
    .into_response())
}

/// Saves a quick edit and answers the plain row; a refusal answers the
/// editable row again (422, which htmx swaps in) with the message at its field.
pub async fn quick_save(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
    Form(form): Form<QuickForm>,
) -> PanelResult<Response> {
    let current = licenses::get(&state.pool, id).await?;
    let saved = match form.edit(&current) {
        Ok(edit) => licenses::quick_edit(&state.pool, &admin.ctx, id, &edit).await,
        Err(error) => Err(error),
    };
    match saved {
        Ok(license) => Ok(RowFragment {
            row: one_row(&state, license).await?,
            is_admin: true,
        }
        .into_response()),
        Err(error) => {
            let Some(field) = error
                .field()
                .filter(|f| ["status", "valid_until", "device_limit"].contains(f))
                .map(str::to_owned)
            else {
                return Err(error.into());
            };
            let code = error.code().as_str();
            let message = match &error {
                DomainError::Invalid { message, .. } => message.clone(),
                other => other.to_body().message,
            };
            let page = QuickFragment {
                row: one_row(&state, current).await?,
                form,
                error_field: field,
                error: message,
            };
            Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                [(X_ERROR_CODE, code)],
                page,
            )
                .into_response())
        }
    }
}

/// What a bulk operation's form sends: the operation, its value, which
/// licenses, and the list's filter.
#[derive(Debug, Default)]
pub struct BulkForm {
    op: String,
    days: String,
    device_limit: String,
    /// `selected` (the ids ticked) or `matching` (the filter).
    scope: String,
    /// `yes`: with no filter set, "matching" means every license.
    everything: String,
    ids: Vec<String>,
    filter: ListQuery,
    /// How many the confirmation said would be touched.
    expected: String,
}

impl BulkForm {
    fn read(pairs: Vec<(String, String)>) -> Self {
        let mut form = Self::default();
        for (name, value) in pairs {
            match name.as_str() {
                "op" => form.op = value,
                "days" => form.days = value,
                "device_limit" => form.device_limit = value,
                "scope" => form.scope = value,
                "everything" => form.everything = value,
                "id" => form.ids.push(value),
                "expected" => form.expected = value,
                other => form.filter.set(other, value),
            }
        }
        form
    }

    fn operation(&self) -> PanelResult<Operation> {
        let number = |value: &str, field: &str| -> PanelResult<i64> {
            value
                .trim()
                .parse()
                .map_err(|_| PanelError::Invalid(format!("{field}: a whole number")))
        };
        Ok(match self.op.as_str() {
            "suspend" => Operation::Suspend,
            "resume" => Operation::Resume,
            "revoke" => Operation::Revoke,
            "delete" => Operation::Delete,
            "extend" => {
                Operation::ExtendDays(u32::try_from(number(&self.days, "days")?).map_err(|_| {
                    PanelError::Invalid("days: a whole number from 1 to 3650".into())
                })?)
            }
            "device_limit" => Operation::SetDeviceLimit(
                i32::try_from(number(&self.device_limit, "device_limit")?)
                    .map_err(|_| PanelError::Invalid("device_limit: from 0 to 1000000".into()))?,
            ),
            _ => {
                return Err(PanelError::Invalid(
                    "op: choose an operation (suspend, resume, revoke, extend, device_limit, delete)".into(),
                ));
            }
        })
    }

    fn selection(&self) -> PanelResult<Selection> {
        match self.scope.as_str() {
            "selected" => {
                let ids = self
                    .ids
                    .iter()
                    .map(|id| id.parse())
                    .collect::<Result<Vec<Uuid>, _>>()
                    .map_err(|_| PanelError::Invalid("id: not a license id".into()))?;
                Ok(Selection::Ids(ids))
            }
            "matching" => {
                let filter = self.filter.filter()?;
                Ok(if filter.is_empty() && self.everything == "yes" {
                    Selection::Everything
                } else {
                    Selection::Matching(filter)
                })
            }
            _ => Err(PanelError::Invalid("scope: selected or matching".into())),
        }
    }
}

#[derive(Debug, Template, WebTemplate)]
#[template(path = "license_bulk.html")]
pub struct BulkPage {
    layout: Layout,
    /// The list to go back to.
    back: String,
    /// `None`: the refusal says why nothing can be done.
    outcome: Option<Outcome>,
    refusal: String,
    /// Set once done; before, this is the confirmation.
    done: bool,
    /// What the confirmation said, when the operation found otherwise.
    expected: Option<i64>,
    verb: &'static str,
    past: &'static str,
    /// What the operation does, in words ("by 30 days", "to 3").
    detail: String,
    /// Which licenses, in words.
    scope: String,
    /// The form again, as hidden fields, for the confirmation's button.
    hidden: Vec<(String, String)>,
}

fn words(operation: Operation) -> (&'static str, &'static str, String) {
    match operation {
        Operation::Suspend => ("Suspend", "Suspended", String::new()),
        Operation::Resume => ("Resume", "Resumed", String::new()),
        Operation::Revoke => ("Revoke", "Revoked", " (final: their sessions end)".into()),
        Operation::ExtendDays(days) => ("Extend", "Extended", format!(" by {days} day(s)")),
        Operation::SetDeviceLimit(limit) => (
            "Set the device limit of",
            "Set the device limit of",
            format!(" to {limit}"),
        ),
        Operation::Delete => (
            "Delete",
            "Deleted",
            " (their sessions end, resources are freed, edges stop accepting them)".into(),
        ),
    }
}

/// The confirmation: how many licenses the operation will touch and skip.
pub async fn bulk_preview(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> PanelResult<Response> {
    bulk(admin, state, pairs, false).await
}

/// Does it, in one transaction, and says what it did.
pub async fn bulk_apply(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> PanelResult<Response> {
    bulk(admin, state, pairs, true).await
}

async fn bulk(
    admin: Viewer,
    state: PanelState,
    pairs: Vec<(String, String)>,
    apply: bool,
) -> PanelResult<Response> {
    let hidden: Vec<(String, String)> = pairs
        .iter()
        .filter(|(name, _)| name != "_csrf" && name != "expected")
        .cloned()
        .collect();
    let form = BulkForm::read(pairs);
    let base = form.filter.query_string();
    let back = if base.is_empty() {
        "/licenses".to_owned()
    } else {
        format!("/licenses?{base}")
    };
    let operation = form.operation()?;
    let selection = form.selection()?;
    let result = if apply {
        license_bulk::apply(&state.pool, &admin.ctx, &selection, operation).await
    } else {
        license_bulk::preview(&state.pool, &selection, operation).await
    };
    let (verb, past, detail) = words(operation);
    let scope = match &selection {
        Selection::Ids(ids) => format!("the {} license(s) ticked", ids.len()),
        Selection::Everything => "every license".to_owned(),
        Selection::Matching(filter) => {
            // A product by its name, as the list's filter shows it.
            let product = match filter.product_id {
                Some(id) => Some(products::get(&state.pool, id).await?.name),
                None => None,
            };
            let pairs: Vec<String> = form
                .filter
                .pairs()
                .into_iter()
                .filter(|(name, _)| *name != "sort")
                .map(|(name, value)| match (name, &product) {
                    ("product", Some(product)) => format!("product {product}"),
                    _ => format!("{name} = {value}"),
                })
                .collect();
            format!("licenses matching {}", pairs.join(", "))
        }
    };
    let mut page = BulkPage {
        layout: Layout::new(&admin, "Bulk change", "/licenses"),
        back,
        outcome: None,
        refusal: String::new(),
        done: apply,
        expected: None,
        verb,
        past,
        detail,
        scope,
        hidden,
    };
    match result {
        Ok(outcome) => {
            page.expected = form
                .expected
                .parse::<i64>()
                .ok()
                .filter(|expected| *expected != outcome.touched);
            page.outcome = Some(outcome);
            Ok(page.into_response())
        }
        Err(DomainError::Invalid { message, field }) => {
            page.refusal = if field == "selection" {
                message
            } else {
                format!("{field}: {message}")
            };
            Ok((
                StatusCode::BAD_REQUEST,
                [(X_ERROR_CODE, "INVALID_REQUEST")],
                page,
            )
                .into_response())
        }
        Err(error) => Err(error.into()),
    }
}

async fn rows(
    state: &PanelState,
    products: &[Product],
    licenses: Vec<License>,
) -> PanelResult<Vec<Row>> {
    let names: HashMap<i32, &str> = products.iter().map(|p| (p.id, p.name.as_str())).collect();
    let mut customer_ids: Vec<Uuid> = licenses.iter().filter_map(|l| l.customer_id).collect();
    customer_ids.sort();
    customer_ids.dedup();
    let customers = customers::names(&state.pool, &customer_ids).await?;
    let now = OffsetDateTime::now_utc();
    Ok(licenses
        .into_iter()
        .map(|license| Row {
            product: names
                .get(&license.product_id)
                .map_or_else(|| license.product_id.to_string(), |n| (*n).to_owned()),
            customer: license
                .customer_id
                .and_then(|id| customers.get(&id).cloned())
                .unwrap_or_default(),
            valid_until: license
                .valid_until
                .as_ref()
                .map_or_else(|| "perpetual".to_owned(), when),
            expired: license.valid_until.is_some_and(|until| until <= now),
            license,
        })
        .collect())
}

async fn one_row(state: &PanelState, license: License) -> PanelResult<Row> {
    let products = products::list(&state.pool).await?;
    let mut rows = rows(state, &products, vec![license]).await?;
    rows.pop()
        .ok_or_else(|| PanelError::Internal("no row".into()))
}

fn parse_cursor(value: &str) -> PanelResult<Option<LicenseCursor>> {
    if value.is_empty() {
        return Ok(None);
    }
    let bad = || PanelError::Invalid("after: not a page cursor".into());
    let (micros, id) = value.split_once('_').ok_or_else(bad)?;
    let at = if micros == "none" {
        None
    } else {
        let micros: i128 = micros.parse().map_err(|_| bad())?;
        Some(OffsetDateTime::from_unix_timestamp_nanos(micros * 1_000).map_err(|_| bad())?)
    };
    Ok(Some(LicenseCursor {
        at,
        id: id.parse().map_err(|_| bad())?,
    }))
}

/// The filtered list as `licenses.csv` or `.json`, streamed (every matching
/// row, in constant memory).
pub async fn export(
    viewer: Viewer,
    State(state): State<PanelState>,
    Query(query): Query<ListQuery>,
    Query(download): Query<FormatQuery>,
) -> PanelResult<Response> {
    let filter = query.filter()?;
    let total = licenses::count(&state.pool, &filter).await?;
    let rows = licenses::stream(state.pool.clone(), &filter);
    exports::start(&viewer, &state, rows, download.format()?, total).await
}
