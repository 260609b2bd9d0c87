//! Edges: the enrolled edges with what each serves and how far behind the
//! newest published snapshot it is, enrolment tokens (shown once),
//! revocation, and the edge configuration every snapshot carries.

use std::collections::BTreeMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use latchkey_shared::snapshot::EdgeConfig;

use super::error::{PanelResult, X_ERROR_CODE};
use super::form::Form;
use super::pages::Layout;
use super::session::{AdminUser, Viewer};
use crate::db::edges::{self, Edge};
use crate::db::{publish, settings};
use crate::error::DomainError;
use crate::panel::PanelState;

/// An edge the link has heard from this recently is shown as connected
/// (the link touches `last_seen_at` every 10 s).
const CONNECTED_WITHIN_SECS: i64 = 30;

#[derive(Debug, Template, WebTemplate)]
#[template(path = "edges.html")]
pub struct EdgesPage {
    layout: Layout,
    edges: Vec<EdgeRow>,
    latest: Option<u64>,
    /// An edge just made and its enrolment token: the only time it is shown.
    created: Option<(String, String)>,
    create_error: Option<String>,
    config: ConfigFields,
}

#[derive(Debug)]
pub struct EdgeRow {
    pub edge: Edge,
    pub connected: bool,
    pub lag: Option<u64>,
    /// Its answer certificate still holds: clients believe its answers.
    pub answers_certified: bool,
}

/// One input of the configuration form: its name, label, unit, the value
/// shown and the problem with it, if any.
#[derive(Debug)]
pub struct ConfigField {
    pub name: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    pub value: String,
    pub error: Option<String>,
}

#[derive(Debug)]
pub struct ConfigFields(pub Vec<ConfigField>);

const LABELS: [(&str, &str); 5] = [
    ("Rate limit per license key", "per minute"),
    ("Rate limit per IP", "per minute"),
    ("Heartbeat interval", "seconds"),
    ("Grace period", "seconds"),
    ("Maximum snapshot age", "seconds"),
];

impl ConfigFields {
    fn new(values: [String; 5], errors: &BTreeMap<&str, String>) -> Self {
        Self(
            settings::EDGE_CONFIG_BOUNDS
                .iter()
                .zip(LABELS)
                .zip(values)
                .map(|(((name, _, _), (label, unit)), value)| ConfigField {
                    name,
                    label,
                    unit,
                    value,
                    error: errors.get(name).cloned(),
                })
                .collect(),
        )
    }

    fn of(config: &EdgeConfig) -> Self {
        Self::new(values(config).map(|v| v.to_string()), &BTreeMap::new())
    }
}

fn values(config: &EdgeConfig) -> [u32; 5] {
    [
        config.rate_limit_per_key_per_min,
        config.rate_limit_per_ip_per_min,
        config.heartbeat_interval_secs,
        config.grace_period_secs,
        config.max_snapshot_age_secs,
    ]
}

#[derive(Debug, Deserialize)]
pub struct CreateForm {
    name: String,
}

/// The configuration as typed: every field a string, so a bad one is named
/// next to its input rather than refused as a malformed form.
#[derive(Debug, Deserialize)]
pub struct ConfigForm {
    #[serde(default)]
    rate_limit_per_key_per_min: String,
    #[serde(default)]
    rate_limit_per_ip_per_min: String,
    #[serde(default)]
    heartbeat_interval_secs: String,
    #[serde(default)]
    grace_period_secs: String,
    #[serde(default)]
    max_snapshot_age_secs: String,
}

impl ConfigForm {
    fn texts(&self) -> [String; 5] {
        [
            &self.rate_limit_per_key_per_min,
            &self.rate_limit_per_ip_per_min,
            &self.heartbeat_interval_secs,
            &self.grace_period_secs,
            &self.max_snapshot_age_secs,
        ]
        .map(|text| text.trim().to_owned())
    }

    /// The configuration, or every field's problem.
    fn parse(&self) -> Result<EdgeConfig, BTreeMap<&'static str, String>> {
        let mut errors = BTreeMap::new();
        let mut numbers = [0u32; 5];
        for ((number, text), (field, min, max)) in numbers
            .iter_mut()
            .zip(self.texts())
            .zip(settings::EDGE_CONFIG_BOUNDS)
        {
            match text.parse::<u32>() {
                Ok(value) => *number = value,
                Err(_) => {
                    errors.insert(field, format!("a whole number from {min} to {max}"));
                }
            }
        }
        let [per_key, per_ip, heartbeat, grace, max_age] = numbers;
        let config = EdgeConfig {
            rate_limit_per_key_per_min: per_key,
            rate_limit_per_ip_per_min: per_ip,
            heartbeat_interval_secs: heartbeat,
            grace_period_secs: grace,
            max_snapshot_age_secs: max_age,
        };
        for (field, message) in settings::edge_config_problems(&config) {
            errors.entry(field).or_insert(message);
        }
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    }
}

async fn render(
    viewer: &Viewer,
    state: &PanelState,
    created: Option<(String, String)>,
    create_error: Option<String>,
    config: Option<ConfigFields>,
) -> PanelResult<EdgesPage> {
    let latest = publish::latest_sequence(&state.pool).await?;
    let now = OffsetDateTime::now_utc();
    let edges = edges::list(&state.pool)
        .await?
        .into_iter()
        .map(|edge| EdgeRow {
            connected: edge.revoked_at.is_none()
                && edge
                    .last_seen_at
                    .is_some_and(|at| (now - at).whole_seconds() < CONNECTED_WITHIN_SECS),
            lag: match (latest, edge.snapshot_sequence) {
                (Some(latest), Some(held)) => Some(latest.saturating_sub(held.max(0) as u64)),
                _ => None,
            },
            answers_certified: edge
                .answers_certified_until
                .is_some_and(|until| until > now),
            edge,
        })
        .collect();
    let config = match config {
        Some(fields) => fields,
        None => ConfigFields::of(&settings::edge_config(&state.pool).await?),
    };
    Ok(EdgesPage {
        layout: Layout::new(viewer, "Edges", "/settings"),
        edges,
        latest,
        created,
        create_error,
        config,
    })
}

/// The page answering a refused form: 400 with the problem next to its input.
fn refused(page: EdgesPage) -> Response {
    let mut response = (StatusCode::BAD_REQUEST, page).into_response();
    response
        .headers_mut()
        .insert(X_ERROR_CODE, HeaderValue::from_static("INVALID_REQUEST"));
    response
}

pub async fn page(viewer: Viewer, State(state): State<PanelState>) -> PanelResult<EdgesPage> {
    render(&viewer, &state, None, None, None).await
}

/// Makes an edge and shows its enrolment token, once.
pub async fn create(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Form(form): Form<CreateForm>,
) -> PanelResult<Response> {
    match edges::create(&state.pool, &admin.ctx, &form.name).await {
        Ok(created) => {
            let shown = (created.edge.name, created.enrol_token);
            Ok(render(&admin, &state, Some(shown), None, None)
                .await?
                .into_response())
        }
        Err(DomainError::Invalid { field, message }) => {
            let problem = format!("{field}: {message}");
            Ok(refused(
                render(&admin, &state, None, Some(problem), None).await?,
            ))
        }
        Err(error) => Err(error.into()),
    }
}

pub async fn revoke(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
) -> PanelResult<Response> {
    edges::revoke(&state.pool, &admin.ctx, id).await?;
    Ok(Redirect::to("/edges").into_response())
}

/// Stores the edge configuration; the next delta carries it to every edge.
pub async fn set_config(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Form(form): Form<ConfigForm>,
) -> PanelResult<Response> {
    match form.parse() {
        Ok(config) => {
            settings::set_edge_config(&state.pool, &admin.ctx, &config).await?;
            Ok(Redirect::to("/edges").into_response())
        }
        Err(errors) => {
            let fields = ConfigFields::new(form.texts(), &errors);
            Ok(refused(
                render(&admin, &state, None, None, Some(fields)).await?,
            ))
        }
    }
}
