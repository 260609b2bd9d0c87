//! One license: its page (state, validity window, limits, features, usage
//! this month, devices with their seat changes, open sessions, allocated
//! resources, its audit trail), the create and edit forms with each refusal
//! next to its field, and revealing its key (admins only, audited). Every
//! rule is `db::licenses`'s; this module turns forms into its types and its
//! refusals back into the form. Batches are `license_batch.rs`, seats
//! `devices.rs`.

use std::collections::{BTreeMap, HashMap};

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use latchkey_shared::snapshot::{LicenseKind, LicenseStatus};
use serde::Deserialize;
use serde_json::Value;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};
use uuid::Uuid;

use super::error::{PanelResult, X_ERROR_CODE};
use super::form::Form;
use super::pages::{Layout, when};
use super::session::{AdminUser, Viewer};
use crate::db::audit::{self, AuditEntry};
use crate::db::customers::{self, Customer};
use crate::db::devices::{self, Device, SeatChangeEntry};
use crate::db::licenses::{self, License, LicensePatch, NewLicense};
use crate::db::products::{self, Product};
use crate::db::resources::{self, Resource, ResourceFilter};
use crate::db::sessions::{self, Session};
use crate::db::usage::{self, UsageStatus};
use crate::error::DomainError;
use crate::panel::PanelState;

/// Rows of each list on a license's page (sessions, resources, seat
/// changes, audit); the page says when there are more.
pub const SHOWN: u32 = 50;

#[derive(Debug, Template, WebTemplate)]
#[template(path = "license.html")]
pub struct LicensePage {
    layout: Layout,
    license: License,
    product: String,
    customer: Option<Customer>,
    /// What a client is told now: the status, or why an active one is not usable.
    state: &'static str,
    usage: Vec<UsageStatus>,
    devices: Vec<DeviceRow>,
    active_devices: usize,
    changes: Vec<ChangeRow>,
    sessions: Vec<SessionRow>,
    more_sessions: i64,
    resources: Vec<Resource>,
    more_resources: i64,
    audit: Vec<AuditEntry>,
    /// The key in clear, right after an admin asked for it.
    revealed: Option<String>,
    /// Why the last change was refused, shown above the page.
    refusal: Option<String>,
}

#[derive(Debug)]
pub struct DeviceRow {
    pub device: Device,
    pub label: String,
    /// The canonical fingerprint's components, by name.
    pub components: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct ChangeRow {
    pub at: String,
    pub kind: String,
    pub by: String,
    pub from: String,
    pub to: Option<String>,
}

#[derive(Debug)]
pub struct SessionRow {
    pub session: Session,
    pub device: String,
}

pub async fn show(
    viewer: Viewer,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
) -> PanelResult<LicensePage> {
    license_page(&viewer, &state, id, None, None).await
}

/// The key in clear on the license's page: audited by `reveal_key`.
pub async fn reveal(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
) -> PanelResult<LicensePage> {
    let key = licenses::reveal_key(&state.pool, &admin.ctx, &state.secrets, id).await?;
    license_page(&admin, &state, id, Some(key), None).await
}

/// The license's page with a refusal on top, answered with the refusal's
/// status and code (a seat change the domain refused).
pub async fn refused_page(
    viewer: &Viewer,
    state: &PanelState,
    id: Uuid,
    error: DomainError,
) -> PanelResult<Response> {
    if matches!(error, DomainError::Database(_) | DomainError::Internal(_)) {
        return Err(error.into());
    }
    let code = error.code();
    let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let page = license_page(viewer, state, id, None, Some(error.to_body().message)).await?;
    Ok((status, [(X_ERROR_CODE, code.as_str())], page).into_response())
}

async fn license_page(
    viewer: &Viewer,
    state: &PanelState,
    id: Uuid,
    revealed: Option<String>,
    refusal: Option<String>,
) -> PanelResult<LicensePage> {
    let pool = &state.pool;
    let license = licenses::get(pool, id).await?;
    let product = products::get(pool, license.product_id)
        .await
        .map_or_else(|_| license.product_id.to_string(), |p| p.name);
    let customer = match license.customer_id {
        Some(customer) => Some(customers::get(pool, customer).await?),
        None => None,
    };
    let now = OffsetDateTime::now_utc();
    let usage = usage::current(pool, &license, now).await?;
    let all_devices = devices::list_for_license(pool, id, true).await?;
    let labels: HashMap<Uuid, String> = all_devices
        .iter()
        .map(|device| (device.id, device_label(device)))
        .collect();
    let label = |id: Option<Uuid>| {
        id.map_or_else(
            || "(deleted)".to_owned(),
            |id| labels.get(&id).cloned().unwrap_or_else(|| short(id)),
        )
    };
    let changes = devices::seat_changes(pool, id, SHOWN)
        .await?
        .into_iter()
        .map(|change: SeatChangeEntry| ChangeRow {
            at: when(&change.at),
            kind: change.kind,
            by: change.initiated_by,
            from: label(change.from_device_id),
            to: change.to_device_id.map(|to| label(Some(to))),
        })
        .collect();
    let (open, sessions_total) = sessions::list(pool, true, Some(id), 1, SHOWN).await?;
    let sessions: Vec<SessionRow> = open
        .into_iter()
        .map(|session| SessionRow {
            device: label(session.device_id),
            session,
        })
        .collect();
    let filter = ResourceFilter {
        license_id: Some(id),
        ..ResourceFilter::default()
    };
    let allocated = resources::list(pool, &filter, 1, SHOWN).await?;
    let device_ids: Vec<Uuid> = all_devices.iter().map(|device| device.id).collect();
    let audit = audit::for_license(pool, id, license.batch_id, &device_ids, SHOWN).await?;
    let active_devices = all_devices.iter().filter(|d| d.status == "active").count();
    // Active seats first, each group oldest first (as listed).
    let (mut devices, inactive): (Vec<Device>, Vec<Device>) = all_devices
        .into_iter()
        .partition(|device| device.status == "active");
    devices.extend(inactive);
    let devices = devices
        .into_iter()
        .map(|device| DeviceRow {
            label: device_label(&device),
            components: components(&device.components),
            device,
        })
        .collect();
    Ok(LicensePage {
        layout: Layout::new(viewer, "License", "/licenses"),
        state: usable_state(&license, now),
        product,
        customer,
        usage,
        devices,
        active_devices,
        changes,
        more_sessions: sessions_total - sessions.len() as i64,
        sessions,
        more_resources: allocated.total - allocated.items.len() as i64,
        resources: allocated.items,
        audit,
        revealed,
        refusal,
        license,
    })
}

fn usable_state(license: &License, now: OffsetDateTime) -> &'static str {
    match devices::check_usable(license, now) {
        Ok(()) => "active",
        Err(_) if license.status != LicenseStatus::Active => license.status.as_str(),
        Err(_) if now < license.valid_from => "not valid yet",
        Err(_) => "expired",
    }
}

/// The device's name, or the start of its id.
pub fn device_label(device: &Device) -> String {
    device.name.clone().unwrap_or_else(|| short(device.id))
}

fn short(id: Uuid) -> String {
    id.to_string()[..8].to_owned()
}

/// The stored canonical fingerprint as `(component, value)` pairs.
fn components(stored: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(object) = stored.as_object() else {
        return out;
    };
    for (name, value) in object {
        match value {
            Value::Null => {}
            Value::String(text) => out.push((name.clone(), text.clone())),
            Value::Array(items) if items.is_empty() => {}
            Value::Array(items) => out.push((
                name.clone(),
                items
                    .iter()
                    .map(|item| item.as_str().unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
            Value::Object(extra) => {
                for (key, value) in extra {
                    out.push((key.clone(), value.as_str().unwrap_or_default().to_owned()));
                }
            }
            other => out.push((name.clone(), other.to_string())),
        }
    }
    out
}

/// What the create, edit and batch forms share, as typed.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct LicenseFields {
    /// A customer's e-mail address or id; empty: none.
    pub customer: String,
    pub product_id: String,
    pub kind: String,
    pub valid_from: String,
    pub valid_until: String,
    pub device_limit: String,
    pub session_limit: String,
    /// `on` when ticked.
    pub allow_session_takeover: String,
    pub grace_period_hours: String,
    pub seat_change_limit: String,
    pub seat_change_window_days: String,
    /// Comma-separated.
    pub features: String,
    /// One `metric = limit` a line.
    pub usage_limits: String,
}

/// The form's inputs, in order, for refusals that name none of them.
pub const FIELDS: [&str; 13] = [
    "customer",
    "product_id",
    "kind",
    "valid_from",
    "valid_until",
    "device_limit",
    "session_limit",
    "allow_session_takeover",
    "grace_period_hours",
    "seat_change_limit",
    "seat_change_window_days",
    "features",
    "usage_limits",
];

impl LicenseFields {
    /// What a new license starts as: the domain's defaults.
    pub fn defaults() -> Self {
        Self {
            kind: "full".into(),
            device_limit: "1".into(),
            session_limit: "0".into(),
            seat_change_limit: licenses::DEFAULT_SEAT_CHANGE_LIMIT.to_string(),
            seat_change_window_days: (licenses::DEFAULT_SEAT_CHANGE_WINDOW_SECS / 86_400)
                .to_string(),
            ..Self::default()
        }
    }

    /// `customer` as the form names it (see [`customer_input`]).
    fn of(license: &License, customer: String) -> Self {
        Self {
            customer,
            product_id: license.product_id.to_string(),
            kind: license.kind.as_str().into(),
            valid_from: input_time(&license.valid_from),
            valid_until: license
                .valid_until
                .as_ref()
                .map_or_else(String::new, input_time),
            device_limit: license.device_limit.to_string(),
            session_limit: license.session_limit.to_string(),
            allow_session_takeover: if license.allow_session_takeover {
                "on".into()
            } else {
                String::new()
            },
            grace_period_hours: license
                .grace_period_secs
                .map_or_else(String::new, |secs| (secs / 3600).to_string()),
            seat_change_limit: license.seat_change_limit.to_string(),
            seat_change_window_days: (license.seat_change_window_secs / 86_400).to_string(),
            features: license.features.join(", "),
            usage_limits: license
                .usage_limits
                .as_object()
                .map(|limits| {
                    limits
                        .iter()
                        .map(|(metric, limit)| format!("{metric} = {limit}\n"))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// A new license as the domain takes it; a field that does not parse
    /// is refused under its input's name.
    pub async fn new_license(&self, state: &PanelState) -> Result<NewLicense, DomainError> {
        Ok(NewLicense {
            customer_id: self.customer_id(state).await?,
            product_id: integer("product_id", &self.product_id)?,
            kind: kind(&self.kind)?,
            valid_from: optional_time("valid_from", &self.valid_from)?,
            valid_until: optional_time("valid_until", &self.valid_until)?,
            device_limit: integer("device_limit", &self.device_limit)?,
            session_limit: integer("session_limit", &self.session_limit)?,
            allow_session_takeover: self.allow_session_takeover == "on",
            grace_period_secs: self.grace_secs()?,
            seat_change_limit: integer("seat_change_limit", &self.seat_change_limit)?,
            seat_change_window_secs: self.window_secs()?,
            features: self.feature_list(),
            usage_limits: usage_limits(&self.usage_limits)?,
            metadata: Value::Object(Default::default()),
        })
    }

    /// Every editable field as the form has it (absent from the form:
    /// product and start, which an edit cannot change).
    async fn patch(&self, state: &PanelState) -> Result<LicensePatch, DomainError> {
        Ok(LicensePatch {
            customer_id: Some(self.customer_id(state).await?),
            kind: Some(kind(&self.kind)?),
            valid_until: Some(optional_time("valid_until", &self.valid_until)?),
            device_limit: Some(integer("device_limit", &self.device_limit)?),
            session_limit: Some(integer("session_limit", &self.session_limit)?),
            allow_session_takeover: Some(self.allow_session_takeover == "on"),
            grace_period_secs: Some(self.grace_secs()?),
            seat_change_limit: Some(integer("seat_change_limit", &self.seat_change_limit)?),
            seat_change_window_secs: Some(self.window_secs()?),
            features: Some(self.feature_list()),
            usage_limits: Some(usage_limits(&self.usage_limits)?),
            metadata: None,
        })
    }

    async fn customer_id(&self, state: &PanelState) -> Result<Option<Uuid>, DomainError> {
        let given = self.customer.trim();
        if given.is_empty() {
            return Ok(None);
        }
        if let Ok(id) = given.parse::<Uuid>() {
            return Ok(Some(id));
        }
        match customers::find_by_email(&state.pool, given).await? {
            Some(customer) => Ok(Some(customer.id)),
            None => Err(DomainError::invalid(
                "customer",
                "matches no customer's e-mail address or id",
            )),
        }
    }

    fn grace_secs(&self) -> Result<Option<i32>, DomainError> {
        let hours = self.grace_period_hours.trim();
        if hours.is_empty() {
            return Ok(None);
        }
        let hours: i32 = integer("grace_period_hours", hours)?;
        hours
            .checked_mul(3600)
            .map(Some)
            .ok_or_else(|| DomainError::invalid("grace_period_hours", "must be at most a year"))
    }

    fn window_secs(&self) -> Result<i32, DomainError> {
        let days: i32 = integer("seat_change_window_days", &self.seat_change_window_days)?;
        days.checked_mul(86_400)
            .ok_or_else(|| DomainError::invalid("seat_change_window_days", "must be 1 to 365 days"))
    }

    fn feature_list(&self) -> Vec<String> {
        self.features
            .split([',', ' ', '\n'])
            .map(str::trim)
            .filter(|feature| !feature.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

fn integer<T: std::str::FromStr>(field: &str, value: &str) -> Result<T, DomainError> {
    value
        .trim()
        .parse()
        .map_err(|_| DomainError::invalid(field, "must be a whole number"))
}

fn kind(value: &str) -> Result<LicenseKind, DomainError> {
    LicenseKind::try_from(value.to_owned())
        .map_err(|_| DomainError::invalid("kind", "must be full, trial or test"))
}

/// `2026-12-02T10:30` (what a `datetime-local` input sends), seconds
/// optional, read as UTC.
fn optional_time(field: &str, value: &str) -> Result<Option<OffsetDateTime>, DomainError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let minutes = format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let seconds = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    PrimitiveDateTime::parse(value, minutes)
        .or_else(|_| PrimitiveDateTime::parse(value, seconds))
        .map(|at| Some(at.assume_utc()))
        .map_err(|_| DomainError::invalid(field, "must be a date and time like 2027-01-31T23:59"))
}

fn input_time(at: &OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(format_description!("[year]-[month]-[day]T[hour]:[minute]"))
        .unwrap_or_default()
}

fn usage_limits(text: &str) -> Result<BTreeMap<String, u64>, DomainError> {
    let mut limits = BTreeMap::new();
    for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
        let bad =
            || DomainError::invalid("usage_limits", format!("{line:?}: write metric = limit"));
        let (metric, limit) = line.split_once('=').ok_or_else(bad)?;
        let limit = limit.trim().parse().map_err(|_| bad())?;
        limits.insert(metric.trim().to_owned(), limit);
    }
    Ok(limits)
}

/// The form input a domain refusal's field belongs to.
pub fn input_for(field: &str) -> &str {
    match field {
        "customer_id" => "customer",
        "grace_period_secs" => "grace_period_hours",
        "seat_change_window_secs" => "seat_change_window_days",
        _ if field.starts_with("features[") => "features",
        _ if field.starts_with("usage_limits") => "usage_limits",
        other => other,
    }
}

/// A refusal as a form shows it: the input it belongs to and its message.
#[derive(Debug, Default, Clone)]
pub struct Refusal {
    pub field: String,
    pub message: String,
}

impl Refusal {
    /// Only a refusal of the input (400 or 409) goes back to the form; the
    /// rest is an error page. Returns the status with the refusal.
    pub fn of(error: DomainError) -> PanelResult<(StatusCode, &'static str, Self)> {
        if !matches!(
            error,
            DomainError::Invalid { .. } | DomainError::Conflict { .. }
        ) {
            return Err(error.into());
        }
        let code = error.code();
        let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
        let refusal = Self {
            field: input_for(error.field().unwrap_or_default()).to_owned(),
            message: error.to_body().message,
        };
        Ok((status, code.as_str(), refusal))
    }

    pub fn for_field(&self, field: &str) -> Option<&str> {
        (self.field == field).then_some(self.message.as_str())
    }

    /// A refusal that names none of `fields`.
    pub fn general(&self, fields: &[&str]) -> Option<&str> {
        (!self.message.is_empty() && !fields.contains(&self.field.as_str()))
            .then_some(self.message.as_str())
    }
}

/// The create and edit form.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "license_form.html")]
pub struct FormPage {
    layout: Layout,
    /// `None`: a new license.
    id: Option<Uuid>,
    products: Vec<Product>,
    form: LicenseFields,
    refusal: Refusal,
}

impl FormPage {
    fn general_error(&self) -> Option<&str> {
        self.refusal.general(&FIELDS)
    }
}

pub async fn new_form(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
) -> PanelResult<FormPage> {
    Ok(FormPage {
        layout: Layout::new(&admin, "New license", "/licenses"),
        id: None,
        products: products::list(&state.pool).await?,
        form: LicenseFields::defaults(),
        refusal: Refusal::default(),
    })
}

pub async fn create(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Form(form): Form<LicenseFields>,
) -> PanelResult<Response> {
    let created = match form.new_license(&state).await {
        Ok(new) => licenses::create(&state.pool, &admin.ctx, &state.secrets, &new, 1).await,
        Err(error) => Err(error),
    };
    match created {
        // The key is not shown here: the page offers "Reveal key", audited.
        Ok(created) => {
            Ok(Redirect::to(&format!("/licenses/{}", created[0].license.id)).into_response())
        }
        Err(error) => refused_form(&admin, &state, None, form, error).await,
    }
}

pub async fn edit_form(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
) -> PanelResult<FormPage> {
    let license = licenses::get(&state.pool, id).await?;
    let customer = customer_input(&state, license.customer_id).await?;
    Ok(FormPage {
        layout: Layout::new(&admin, "Edit license", "/licenses"),
        id: Some(id),
        products: products::list(&state.pool).await?,
        form: LicenseFields::of(&license, customer),
        refusal: Refusal::default(),
    })
}

/// The customer as the edit form shows it: the e-mail address when that
/// names this customer (the oldest of an address is the one it finds),
/// else the id, so saving unchanged never moves the license to another.
async fn customer_input(state: &PanelState, id: Option<Uuid>) -> PanelResult<String> {
    let Some(id) = id else {
        return Ok(String::new());
    };
    let customer = customers::get(&state.pool, id).await?;
    if let Some(email) = &customer.email
        && customers::find_by_email(&state.pool, email)
            .await?
            .is_some_and(|found| found.id == id)
    {
        return Ok(email.clone());
    }
    Ok(id.to_string())
}

pub async fn update(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
    Form(form): Form<LicenseFields>,
) -> PanelResult<Response> {
    let updated = match form.patch(&state).await {
        Ok(patch) => licenses::update(&state.pool, &admin.ctx, id, &patch).await,
        Err(error) => Err(error),
    };
    match updated {
        Ok(_) => Ok(Redirect::to(&format!("/licenses/{id}")).into_response()),
        Err(error) => refused_form(&admin, &state, Some(id), form, error).await,
    }
}

async fn refused_form(
    admin: &Viewer,
    state: &PanelState,
    id: Option<Uuid>,
    form: LicenseFields,
    error: DomainError,
) -> PanelResult<Response> {
    let (status, code, refusal) = Refusal::of(error)?;
    let title = if id.is_some() {
        "Edit license"
    } else {
        "New license"
    };
    let page = FormPage {
        layout: Layout::new(admin, title, "/licenses"),
        id,
        products: products::list(&state.pool).await?,
        form,
        refusal,
    };
    Ok((status, [(X_ERROR_CODE, code)], page).into_response())
}
