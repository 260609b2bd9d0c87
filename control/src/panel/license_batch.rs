//! Licenses made many at once: a count of alike licenses, or one for each
//! customer of a CSV list (pasted, or read from a file by `app.js`), the
//! customers matched by e-mail or created, all in one transaction
//! (`db::customers::create_license_batch`); a bad line is named by its
//! number and nothing is created.
//!
//! The keys are on the result page once, and its download link is that
//! page's own CSV as a `data:` URL: the server keeps no key in clear to
//! serve a later download from (it has only the sealed copies an audited
//! reveal opens), and a second request could not fetch them again. The page
//! is `no-store`, like every panel page.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use uuid::Uuid;

use super::error::{PanelResult, X_ERROR_CODE};
use super::form::Form;
use super::license::{FIELDS, LicenseFields, Refusal};
use super::pages::Layout;
use super::session::{AdminUser, Viewer};
use crate::db::customers::{self, BatchCustomer};
use crate::db::licenses::{self, CreatedLicense};
use crate::db::products::{self, Product};
use crate::error::DomainError;
use crate::export;
use crate::panel::PanelState;

/// Keys listed on the result page; the CSV has all of them.
pub const KEYS_LISTED: usize = 100;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct BatchForm {
    #[serde(flatten)]
    pub fields: LicenseFields,
    pub count: String,
    /// CSV: `email,name,company`, a header line optional.
    pub customers: String,
}

#[derive(Debug, Template, WebTemplate)]
#[template(path = "license_batch.html")]
pub struct BatchPage {
    layout: Layout,
    products: Vec<Product>,
    form: LicenseFields,
    count: String,
    customers: String,
    refusal: Refusal,
}

impl BatchPage {
    fn general_error(&self) -> Option<&str> {
        let mut fields = FIELDS.to_vec();
        fields.extend(["count", "customers"]);
        self.refusal.general(&fields)
    }
}

#[derive(Debug, Template, WebTemplate)]
#[template(path = "license_batch_done.html")]
pub struct DonePage {
    layout: Layout,
    count: usize,
    batch_id: Option<Uuid>,
    listed: Vec<KeyRow>,
    /// The CSV of every key, as a `data:` URL.
    csv_href: String,
    file_name: String,
}

#[derive(Debug)]
pub struct KeyRow {
    pub key: String,
    pub license_id: Uuid,
    /// The customer's e-mail address (batches from a list).
    pub customer: String,
    pub customer_name: String,
}

pub async fn form(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
) -> PanelResult<BatchPage> {
    Ok(BatchPage {
        layout: Layout::new(&admin, "New licenses in a batch", "/licenses"),
        products: products::list(&state.pool).await?,
        form: LicenseFields::defaults(),
        count: String::new(),
        customers: String::new(),
        refusal: Refusal::default(),
    })
}

pub async fn create(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Form(form): Form<BatchForm>,
) -> PanelResult<Response> {
    let (created, listed) = match make(&admin, &state, &form).await {
        Ok(done) => done,
        Err(error) => return refused(&admin, &state, form, error).await,
    };
    let rows: Vec<KeyRow> = created
        .iter()
        .zip(listed.iter().map(Some).chain(std::iter::repeat(None)))
        .map(|(created, customer)| KeyRow {
            key: created.license_key.clone(),
            license_id: created.license.id,
            customer: customer.map_or_else(String::new, |c| c.email.clone()),
            customer_name: customer.map_or_else(String::new, |c| c.name.clone()),
        })
        .collect();
    let ids: Vec<String> = rows.iter().map(|row| row.license_id.to_string()).collect();
    let csv = export::license_keys_csv(rows.iter().zip(&ids).map(|(row, id)| {
        [
            row.key.as_str(),
            id.as_str(),
            row.customer.as_str(),
            row.customer_name.as_str(),
        ]
    }));
    let batch_id = created.first().and_then(|c| c.license.batch_id);
    let file_name = format!("licenses-{}.csv", batch_id.unwrap_or(rows[0].license_id));
    let page = DonePage {
        layout: Layout::new(&admin, "Licenses created", "/licenses"),
        count: rows.len(),
        batch_id,
        listed: rows.into_iter().take(KEYS_LISTED).collect(),
        csv_href: format!(
            "data:text/csv;charset=utf-8;base64,{}",
            STANDARD.encode(csv)
        ),
        file_name,
    };
    Ok(page.into_response())
}

/// The licenses, with the customers listed (empty for a count).
async fn make(
    admin: &Viewer,
    state: &PanelState,
    form: &BatchForm,
) -> Result<(Vec<CreatedLicense>, Vec<BatchCustomer>), DomainError> {
    let new = form.fields.new_license(state).await?;
    if form.customers.trim().is_empty() {
        let count: usize = form.count.trim().parse().map_err(|_| {
            DomainError::invalid("count", "must be a whole number (or list customers below)")
        })?;
        let created =
            licenses::create(&state.pool, &admin.ctx, &state.secrets, &new, count).await?;
        return Ok((created, Vec::new()));
    }
    if !form.count.trim().is_empty() {
        return Err(DomainError::invalid(
            "count",
            "leave empty when customers are listed: each gets one license",
        ));
    }
    if new.customer_id.is_some() {
        return Err(DomainError::invalid(
            "customer",
            "leave empty when customers are listed: each license is its line's",
        ));
    }
    let (lines, listed) = parse_customers(&form.customers)?;
    match customers::create_license_batch(&state.pool, &admin.ctx, &state.secrets, &new, &listed)
        .await
    {
        Ok(created) => Ok((created, listed)),
        Err(error) => Err(on_line(error, &lines)),
    }
}

/// A domain refusal of `customers[i].field` as the line it came from.
fn on_line(error: DomainError, lines: &[u64]) -> DomainError {
    let DomainError::Invalid { field, message } = error else {
        return error;
    };
    let listed = field
        .strip_prefix("customers[")
        .and_then(|rest| rest.split_once("]."))
        .and_then(|(index, name)| Some((lines.get(index.parse::<usize>().ok()?)?, name)));
    match listed {
        Some((line, name)) => DomainError::invalid(
            "customers",
            format!("line {line}: {name} {message}; nothing was created"),
        ),
        None => DomainError::Invalid { field, message },
    }
}

/// The CSV's customers and the line each is on. Columns `email,name,company`
/// in that order, or as a first line naming them (`email` required); a
/// blank name is the e-mail address.
fn parse_customers(text: &str) -> Result<(Vec<u64>, Vec<BatchCustomer>), DomainError> {
    // Browsers send a textarea's lines ending in CRLF, which the reader
    // would count as two line ends where a record starts: one, for numbering.
    let text = text.replace("\r\n", "\n");
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut columns = ["email", "name", "company"].map(str::to_owned).to_vec();
    let mut lines = Vec::new();
    let mut listed = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let record = record.map_err(|error| {
            let line = error.position().map_or(0, |p| p.line());
            DomainError::invalid(
                "customers",
                format!("line {line}: not CSV ({error}); nothing was created"),
            )
        })?;
        let line = record.position().map_or(index as u64 + 1, |p| p.line());
        let cells: Vec<&str> = record.iter().collect();
        if index == 0 && cells.iter().any(|cell| cell.eq_ignore_ascii_case("email")) {
            columns = cells.iter().map(|cell| cell.to_ascii_lowercase()).collect();
            if let Some(unknown) = columns
                .iter()
                .find(|c| !["email", "name", "company"].contains(&c.as_str()))
            {
                return Err(DomainError::invalid(
                    "customers",
                    format!("line 1: unknown column {unknown:?} (use email, name, company)"),
                ));
            }
            continue;
        }
        if cells.iter().all(|cell| cell.is_empty()) {
            continue;
        }
        if cells.len() > columns.len() {
            return Err(DomainError::invalid(
                "customers",
                format!(
                    "line {line}: {} cells, the columns are {}; nothing was created",
                    cells.len(),
                    columns.join(",")
                ),
            ));
        }
        let cell = |name: &str| {
            columns
                .iter()
                .position(|column| column == name)
                .and_then(|i| cells.get(i))
                .map_or("", |cell| *cell)
        };
        let email = cell("email").to_owned();
        let name = match cell("name") {
            "" => email.clone(),
            name => name.to_owned(),
        };
        let company = Some(cell("company").to_owned()).filter(|c| !c.is_empty());
        lines.push(line);
        listed.push(BatchCustomer {
            email,
            name,
            company,
        });
    }
    if listed.is_empty() {
        return Err(DomainError::invalid("customers", "lists no customer"));
    }
    if listed.len() > licenses::MAX_BATCH {
        return Err(DomainError::invalid(
            "customers",
            format!("at most {} customers at once", licenses::MAX_BATCH),
        ));
    }
    Ok((lines, listed))
}

async fn refused(
    admin: &Viewer,
    state: &PanelState,
    form: BatchForm,
    error: DomainError,
) -> PanelResult<Response> {
    let (status, code, refusal) = Refusal::of(error)?;
    let page = BatchPage {
        layout: Layout::new(admin, "New licenses in a batch", "/licenses"),
        products: products::list(&state.pool).await?,
        form: form.fields,
        count: form.count,
        customers: form.customers,
        refusal,
    };
    Ok((status, [(X_ERROR_CODE, code)], page).into_response())
}
