//! API keys of the admin API: listed with their last use, made with scopes
//! picked from areas × read/write (or `*`), the secret shown once, revoked.
//! A panel admin holds every scope, so may grant and revoke any.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::error::{PanelResult, X_ERROR_CODE};
use super::form::Form;
use super::pages::Layout;
use super::session::{AdminUser, Viewer};
use crate::db::api_keys::{self, ApiKey, Area, NewApiKey, Scope, Scopes};
use crate::error::DomainError;
use crate::panel::PanelState;

/// How many keys the page lists, newest first.
const LISTED: i64 = 200;

#[derive(Debug, Template, WebTemplate)]
#[template(path = "api_keys.html")]
pub struct ApiKeysPage {
    layout: Layout,
    keys: Vec<ApiKey>,
    total: i64,
    /// Every area, for the scope checklist.
    areas: Vec<&'static str>,
    /// A key just made: its name and whole secret, the only time shown.
    created: Option<(String, String)>,
    /// A refused form's problem and the field it is about.
    problem: Option<(String, String)>,
}

/// A `scopes` entry per ticked box (`*` or `<area>:read|write`); the form is
/// read as pairs since a checklist repeats its name.
#[derive(Debug)]
pub struct CreateForm {
    name: String,
    scopes: Vec<String>,
    expires_days: String,
}

impl<'de> Deserialize<'de> for CreateForm {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let pairs = Vec::<(String, String)>::deserialize(deserializer)?;
        let mut form = CreateForm {
            name: String::new(),
            scopes: Vec::new(),
            expires_days: String::new(),
        };
        for (name, value) in pairs {
            match name.as_str() {
                "name" => form.name = value,
                "scopes" => form.scopes.push(value),
                "expires_days" => form.expires_days = value,
                _ => {}
            }
        }
        Ok(form)
    }
}

async fn render(
    viewer: &Viewer,
    state: &PanelState,
    created: Option<(String, String)>,
    problem: Option<(String, String)>,
) -> PanelResult<ApiKeysPage> {
    let (keys, total) = api_keys::list(&state.pool, LISTED, 0).await?;
    Ok(ApiKeysPage {
        layout: Layout::new(viewer, "API keys", "/settings"),
        keys,
        total,
        areas: Area::ALL.map(Area::as_str).to_vec(),
        created,
        problem,
    })
}

pub async fn page(viewer: Viewer, State(state): State<PanelState>) -> PanelResult<ApiKeysPage> {
    render(&viewer, &state, None, None).await
}

fn every_scope() -> Scopes {
    Scopes::new(vec![Scope::All])
}

/// Makes a key and shows its secret, once; a refusal names its field.
pub async fn create(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Form(form): Form<CreateForm>,
) -> PanelResult<Response> {
    let made = match parse(&form) {
        Ok(new) => {
            api_keys::create(&state.pool, &state.secrets, &admin.ctx, &every_scope(), new).await
        }
        Err(error) => Err(error),
    };
    match made {
        Ok(created) => {
            let shown = (created.key.name, created.secret);
            Ok(render(&admin, &state, Some(shown), None)
                .await?
                .into_response())
        }
        Err(DomainError::Invalid { field, message }) => {
            let page = render(&admin, &state, None, Some((field, message))).await?;
            let mut response = (StatusCode::BAD_REQUEST, page).into_response();
            response
                .headers_mut()
                .insert(X_ERROR_CODE, HeaderValue::from_static("INVALID_REQUEST"));
            Ok(response)
        }
        Err(error) => Err(error.into()),
    }
}

fn parse(form: &CreateForm) -> Result<NewApiKey, DomainError> {
    let scopes = Scopes::parse(&form.scopes)
        .map_err(|(_, message)| DomainError::invalid("scopes", message))?;
    let expires_at = match form.expires_days.trim() {
        "" => None,
        days => {
            let days: u16 = days.parse().ok().filter(|&d| d > 0).ok_or_else(|| {
                DomainError::invalid("expires_days", "a whole number of days from 1, or empty")
            })?;
            Some(OffsetDateTime::now_utc() + time::Duration::days(i64::from(days)))
        }
    };
    Ok(NewApiKey {
        name: form.name.clone(),
        scopes,
        expires_at,
    })
}

pub async fn revoke(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
) -> PanelResult<Response> {
    api_keys::revoke(&state.pool, &admin.ctx, &every_scope(), id).await?;
    Ok(Redirect::to("/api-keys").into_response())
}
