//! A license's seats from its page: deactivate a device (an admin's, never
//! counted against the seat change limit) and move a seat to another
//! machine, named by the fingerprint components it reports
//! (`db::devices::transfer_by_admin`: the rules of a client's transfer).
//! Both are recorded in the license's seat changes.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use latchkey_shared::fingerprint::Fingerprint;
use serde::Deserialize;
use uuid::Uuid;

use super::download::FormatQuery;
use super::error::{PanelError, PanelResult, X_ERROR_CODE};
use super::exports;
use super::form::Form;
use super::license::{Refusal, device_label, refused_page};
use super::pages::Layout;
use super::session::{AdminUser, Viewer};
use crate::db::devices::{self, AdminTransfer, Device, DeviceFilter};
use crate::error::DomainError;
use crate::panel::PanelState;

/// The license's devices, deactivated ones too, as `devices.csv` or
/// `.json`, oldest first.
pub async fn export(
    viewer: Viewer,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
    Query(download): Query<FormatQuery>,
) -> PanelResult<Response> {
    let filter = DeviceFilter {
        license_id: Some(id),
        include_inactive: true,
    };
    let total = devices::count(&state.pool, filter).await?;
    let rows = devices::stream(state.pool.clone(), filter);
    exports::start(&viewer, &state, rows, download.format()?, total).await
}

pub async fn deactivate(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path((id, device_id)): Path<(Uuid, Uuid)>,
) -> PanelResult<Response> {
    seat_of(&state, id, device_id).await?;
    match devices::deactivate_by_id(&state.pool, &admin.ctx, device_id).await {
        Ok(_) => Ok(Redirect::to(&format!("/licenses/{id}#devices")).into_response()),
        Err(error) => refused_page(&admin, &state, id, error).await,
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct TransferForm {
    pub system_uuid: String,
    pub machine_id: String,
    pub cpu_id: String,
    /// Separated by commas or spaces.
    pub macs: String,
    pub device_name: String,
}

const FIELDS: [&str; 5] = ["system_uuid", "machine_id", "cpu_id", "macs", "device_name"];

#[derive(Debug, Template, WebTemplate)]
#[template(path = "device_transfer.html")]
pub struct TransferPage {
    layout: Layout,
    license_id: Uuid,
    device: Device,
    label: String,
    form: TransferForm,
    refusal: Refusal,
}

impl TransferPage {
    fn general_error(&self) -> Option<&str> {
        self.refusal.general(&FIELDS)
    }
}

pub async fn transfer_form(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path((id, device_id)): Path<(Uuid, Uuid)>,
) -> PanelResult<TransferPage> {
    let device = seat_of(&state, id, device_id).await?;
    Ok(transfer_page(
        &admin,
        id,
        device,
        TransferForm::default(),
        Refusal::default(),
    ))
}

pub async fn transfer(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path((id, device_id)): Path<(Uuid, Uuid)>,
    Form(form): Form<TransferForm>,
) -> PanelResult<Response> {
    let device = seat_of(&state, id, device_id).await?;
    let moved = match target(&form) {
        Ok(target) => {
            devices::transfer_by_admin(&state.pool, &admin.ctx, id, device_id, &target).await
        }
        Err(error) => Err(error),
    };
    let error = match moved {
        Ok(_) => return Ok(Redirect::to(&format!("/licenses/{id}#devices")).into_response()),
        Err(error) => error,
    };
    // A refusal of the license or the seat (suspended, no seat) is no
    // field's: said above the form, with its own status.
    let (status, code) = (
        axum::http::StatusCode::from_u16(error.code().http_status())
            .unwrap_or(axum::http::StatusCode::BAD_REQUEST),
        error.code().as_str(),
    );
    let refusal = match error {
        DomainError::Refused { .. } => Refusal {
            field: String::new(),
            message: error.to_body().message,
        },
        other => Refusal::of(other)?.2,
    };
    let page = transfer_page(&admin, id, device, form, refusal);
    Ok((status, [(X_ERROR_CODE, code)], page).into_response())
}

fn transfer_page(
    admin: &Viewer,
    license_id: Uuid,
    device: Device,
    form: TransferForm,
    refusal: Refusal,
) -> TransferPage {
    TransferPage {
        layout: Layout::new(admin, "Transfer a seat", "/licenses"),
        license_id,
        label: device_label(&device),
        device,
        form,
        refusal,
    }
}

/// The machine the form names, canonical; a bad component is refused
/// under its input's name.
fn target(form: &TransferForm) -> Result<AdminTransfer, DomainError> {
    let optional = |value: &str| Some(value.trim().to_owned()).filter(|v| !v.is_empty());
    let reported = Fingerprint {
        system_uuid: optional(&form.system_uuid),
        machine_id: optional(&form.machine_id),
        cpu_id: optional(&form.cpu_id),
        macs: form
            .macs
            .split([',', ' ', '\n'])
            .map(str::trim)
            .filter(|mac| !mac.is_empty())
            .map(str::to_owned)
            .collect(),
        extra: Default::default(),
    };
    let fingerprint = reported.canonicalize().map_err(|error| {
        let field = error.field.strip_prefix("fingerprint.").unwrap_or("");
        let field = field.split('[').next().unwrap_or_default();
        let message = match error.field.as_str() {
            "fingerprint" => "give at least one usable component of the new machine".to_owned(),
            _ => error.reason.to_owned(),
        };
        DomainError::invalid(field, message)
    })?;
    Ok(AdminTransfer {
        fingerprint,
        device_name: optional(&form.device_name),
    })
}

/// The device, if it is one of the license's (an id from another license's
/// page is not found here).
async fn seat_of(state: &PanelState, license_id: Uuid, device_id: Uuid) -> PanelResult<Device> {
    devices::list_for_license(&state.pool, license_id, true)
        .await?
        .into_iter()
        .find(|device| device.id == device_id)
        .ok_or(PanelError::NotFound)
}
