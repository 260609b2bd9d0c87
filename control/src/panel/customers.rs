//! Customers: the list with search and keyset pages, an autocomplete that
//! answers as you type (htmx), create / edit / delete, and a customer's page
//! with its quick stats and licenses. Every rule is `db::customers`'s (and
//! `db::licenses`'s for the licenses shown); a refused form comes back with
//! the message next to the field it names.

use std::collections::HashMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::download::FormatQuery;
use super::error::{PanelError, PanelResult, X_ERROR_CODE};
use super::exports;
use super::form::Form;
use super::pages::{Layout, when};
use super::session::{AdminUser, Viewer};
use crate::db::customers::{self, Cursor, Customer, CustomerChanges, CustomerStats, NewCustomer};
use crate::db::licenses::{self, License, LicenseFilter};
use crate::db::products;
use crate::error::DomainError;
use crate::panel::PanelState;

pub const PER_PAGE: u32 = 50;
/// Suggestions under the search field.
pub const SUGGESTIONS: u32 = 8;
/// The autocomplete waits for this many characters: trigrams need three,
/// and with fewer a rare term could not be answered within 100 ms.
pub const SUGGEST_MIN_CHARS: usize = 3;
/// Licenses listed on a customer's page (the stats count them all).
pub const LICENSES_SHOWN: u32 = 100;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    pub q: String,
    /// `<microseconds since the epoch>_<id>` of the last row seen.
    pub after: String,
}

#[derive(Debug, Template, WebTemplate)]
#[template(path = "customers.html")]
pub struct ListPage {
    layout: Layout,
    q: String,
    rows: Vec<Customer>,
    /// The query string of the next page, if there is one.
    next: Option<String>,
    /// This is not the first page.
    paged: bool,
}

#[derive(Debug, Template, WebTemplate)]
#[template(path = "customer_suggest.html")]
pub struct Suggestions {
    q: String,
    /// Fewer characters than [`SUGGEST_MIN_CHARS`]: say so, look nothing up.
    too_short: bool,
    rows: Vec<Customer>,
}

#[derive(Debug, Template, WebTemplate)]
#[template(path = "customer.html")]
pub struct CustomerPage {
    layout: Layout,
    customer: Customer,
    stats: CustomerStats,
    licenses: Vec<LicenseRow>,
    /// Licenses beyond those listed.
    more_licenses: i64,
    /// Why a delete was refused, shown above the page.
    refusal: Option<String>,
}

#[derive(Debug)]
pub struct LicenseRow {
    pub license: License,
    pub product: String,
    pub valid_until: String,
}

/// The create and edit form, with what was entered and the refusal.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "customer_form.html")]
pub struct FormPage {
    layout: Layout,
    /// `None`: a new customer.
    id: Option<Uuid>,
    form: CustomerForm,
    /// The field a refusal names (empty: none) and its message.
    error_field: String,
    error: String,
}

impl FormPage {
    /// The message for `field`, if the refusal names it.
    fn error_for(&self, field: &str) -> Option<&str> {
        (self.error_field == field).then_some(self.error.as_str())
    }

    /// A refusal that names no field of the form.
    fn general_error(&self) -> Option<&str> {
        (!self.error.is_empty() && !FIELDS.contains(&self.error_field.as_str()))
            .then_some(self.error.as_str())
    }
}

const FIELDS: [&str; 4] = ["name", "email", "company", "notes"];

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct CustomerForm {
    pub name: String,
    pub email: String,
    pub company: String,
    pub notes: String,
}

impl CustomerForm {
    fn of(customer: &Customer) -> Self {
        Self {
            name: customer.name.clone(),
            email: customer.email.clone().unwrap_or_default(),
            company: customer.company.clone().unwrap_or_default(),
            notes: customer.notes.clone().unwrap_or_default(),
        }
    }
}

/// An empty field clears the value.
fn optional(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

pub async fn list(
    viewer: Viewer,
    State(state): State<PanelState>,
    Query(query): Query<ListQuery>,
) -> PanelResult<ListPage> {
    let cursor = parse_cursor(&query.after)?;
    let (rows, next) = customers::list_page(&state.pool, Some(&query.q), cursor, PER_PAGE).await?;
    let q = query.q.trim().to_owned();
    let next = next.map(|cursor| {
        let mut out = form_urlencoded::Serializer::new(String::new());
        if !q.is_empty() {
            out.append_pair("q", &q);
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
    Ok(ListPage {
        layout: Layout::new(&viewer, "Customers", "/customers"),
        q,
        rows,
        next,
        paged: cursor.is_some(),
    })
}

/// The autocomplete's answer: a few customers matching what was typed.
pub async fn suggest(
    _viewer: Viewer,
    State(state): State<PanelState>,
    Query(query): Query<ListQuery>,
) -> PanelResult<Suggestions> {
    let q = query.q.trim().to_owned();
    let too_short = q.chars().count() < SUGGEST_MIN_CHARS;
    let rows = if too_short {
        Vec::new()
    } else {
        customers::list_page(&state.pool, Some(&q), None, SUGGESTIONS)
            .await?
            .0
    };
    Ok(Suggestions { q, too_short, rows })
}

pub async fn show(
    viewer: Viewer,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
) -> PanelResult<CustomerPage> {
    customer_page(&viewer, &state, id, None).await
}

pub async fn new_form(AdminUser(admin): AdminUser) -> FormPage {
    FormPage {
        layout: Layout::new(&admin, "New customer", "/customers"),
        id: None,
        form: CustomerForm::default(),
        error_field: String::new(),
        error: String::new(),
    }
}

pub async fn create(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Form(form): Form<CustomerForm>,
) -> PanelResult<Response> {
    let new = NewCustomer {
        name: form.name.clone(),
        email: optional(&form.email),
        company: optional(&form.company),
        notes: optional(&form.notes),
        metadata: None,
    };
    match customers::create(&state.pool, &admin.ctx, new).await {
        Ok(customer) => Ok(Redirect::to(&format!("/customers/{}", customer.id)).into_response()),
        Err(error) => refused_form(&admin, None, form, error),
    }
}

pub async fn edit_form(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
) -> PanelResult<FormPage> {
    let customer = customers::get(&state.pool, id).await?;
    Ok(FormPage {
        layout: Layout::new(&admin, "Edit customer", "/customers"),
        id: Some(id),
        form: CustomerForm::of(&customer),
        error_field: String::new(),
        error: String::new(),
    })
}

pub async fn update(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
    Form(form): Form<CustomerForm>,
) -> PanelResult<Response> {
    let changes = CustomerChanges {
        name: Some(form.name.clone()),
        email: Some(optional(&form.email)),
        company: Some(optional(&form.company)),
        notes: Some(optional(&form.notes)),
        metadata: None,
    };
    match customers::update(&state.pool, &admin.ctx, id, changes).await {
        Ok(_) => Ok(Redirect::to(&format!("/customers/{id}")).into_response()),
        Err(error) => refused_form(&admin, Some(id), form, error),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DeleteForm {
    /// `yes`: the customer's licenses go too, said in so many words.
    pub with_licenses: String,
}

/// Refused while the customer has licenses (its page says so, with 409),
/// unless the form says "and its licenses".
pub async fn delete(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
    Form(form): Form<DeleteForm>,
) -> PanelResult<Response> {
    let deleted = match form.with_licenses.as_str() {
        "" => customers::delete(&state.pool, &admin.ctx, id).await,
        "yes" => customers::delete_with_licenses(&state.pool, &admin.ctx, id)
            .await
            .map(|_| ()),
        _ => return Err(PanelError::Invalid("with_licenses: yes, or absent".into())),
    };
    match deleted {
        Ok(()) => Ok(Redirect::to("/customers").into_response()),
        Err(error @ DomainError::Conflict { .. }) => {
            let code = error.code().as_str();
            let message = error.to_body().message;
            let page = customer_page(&admin, &state, id, Some(message)).await?;
            Ok((StatusCode::CONFLICT, [(X_ERROR_CODE, code)], page).into_response())
        }
        Err(error) => Err(error.into()),
    }
}

async fn customer_page(
    viewer: &Viewer,
    state: &PanelState,
    id: Uuid,
    refusal: Option<String>,
) -> PanelResult<CustomerPage> {
    let customer = customers::get(&state.pool, id).await?;
    let stats = customers::stats(&state.pool, id).await?;
    let filter = LicenseFilter {
        customer_id: Some(id),
        ..LicenseFilter::default()
    };
    let (owned, total) = licenses::list(&state.pool, &filter, 1, LICENSES_SHOWN).await?;
    let names: HashMap<i32, String> = products::list(&state.pool)
        .await?
        .into_iter()
        .map(|product| (product.id, product.name))
        .collect();
    let more_licenses = total - owned.len() as i64;
    let licenses = owned
        .into_iter()
        .map(|license| LicenseRow {
            product: names
                .get(&license.product_id)
                .cloned()
                .unwrap_or_else(|| license.product_id.to_string()),
            valid_until: license
                .valid_until
                .as_ref()
                .map_or_else(|| "perpetual".to_owned(), when),
            license,
        })
        .collect();
    Ok(CustomerPage {
        layout: Layout::new(viewer, "Customer", "/customers"),
        customer,
        stats,
        licenses,
        more_licenses,
        refusal,
    })
}

/// The form again, as entered, with the refusal next to its field (400 for
/// a broken rule, the domain's status otherwise).
fn refused_form(
    admin: &Viewer,
    id: Option<Uuid>,
    form: CustomerForm,
    error: DomainError,
) -> PanelResult<Response> {
    if !matches!(
        error,
        DomainError::Invalid { .. } | DomainError::Conflict { .. }
    ) {
        return Err(error.into());
    }
    let code = error.code();
    let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let page = FormPage {
        layout: Layout::new(
            admin,
            if id.is_some() {
                "Edit customer"
            } else {
                "New customer"
            },
            "/customers",
        ),
        id,
        form,
        error_field: error.field().unwrap_or_default().to_owned(),
        error: match &error {
            DomainError::Invalid { message, .. } => message.clone(),
            other => other.to_body().message,
        },
    };
    Ok((status, [(X_ERROR_CODE, code.as_str())], page).into_response())
}

fn parse_cursor(value: &str) -> PanelResult<Option<Cursor>> {
    if value.is_empty() {
        return Ok(None);
    }
    let bad = || PanelError::Invalid("after: not a page cursor".into());
    let (micros, id) = value.split_once('_').ok_or_else(bad)?;
    let micros: i128 = micros.parse().map_err(|_| bad())?;
    let created_at =
        OffsetDateTime::from_unix_timestamp_nanos(micros * 1_000).map_err(|_| bad())?;
    Ok(Some(Cursor {
        created_at,
        id: id.parse().map_err(|_| bad())?,
    }))
}

/// The filtered list as `customers.csv` or `.json`, streamed (every matching
/// row, in constant memory).
pub async fn export(
    viewer: Viewer,
    State(state): State<PanelState>,
    Query(query): Query<ListQuery>,
    Query(download): Query<FormatQuery>,
) -> PanelResult<Response> {
    let q = Some(query.q.trim()).filter(|q| !q.is_empty());
    let total = customers::count(&state.pool, q).await?;
    let rows = customers::stream(state.pool.clone(), q)?;
    exports::start(&viewer, &state, rows, download.format()?, total).await
}
