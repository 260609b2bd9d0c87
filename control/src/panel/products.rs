//! Products: the list, create / edit, a product's client configuration
//! (what its applications read: heartbeat, grace, feature catalogue, the
//! vendor's JSON), its releases per channel (publish, unpublish, the
//! minimum allowed version) and a preview of what the version check
//! answers. Every rule is `db::products`'s; the preview is the edges' rule
//! (`latchkey_shared::version::answer`) on the record the next snapshot
//! carries. A refused form comes back with the message next to its field.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use latchkey_shared::api::VersionCheckResponse;
use serde::Deserialize;
use uuid::Uuid;

use super::error::{PanelResult, X_ERROR_CODE};
use super::form::Form;
use super::pages::Layout;
use super::session::{AdminUser, Viewer};
use crate::db::flags;
use crate::db::products::{
    self, ClientConfig, DEFAULT_CHANNEL, NewProduct, NewRelease, Product, ProductUpdate, Release,
};
use crate::error::DomainError;
use crate::panel::PanelState;

/// A refusal and the field it names (empty: none of the form's).
#[derive(Debug, Default, Clone)]
pub struct Refusal {
    pub field: String,
    pub message: String,
}

impl Refusal {
    pub(super) fn of(error: &DomainError) -> Self {
        Self {
            field: error.field().unwrap_or_default().to_owned(),
            message: match error {
                DomainError::Invalid { message, .. } => message.clone(),
                other => other.to_body().message,
            },
        }
    }

    /// The message for `field`, if the refusal names it.
    pub fn for_field(&self, field: &str) -> Option<&str> {
        (self.field == field && !self.message.is_empty()).then_some(self.message.as_str())
    }

    /// A refusal naming none of `fields`.
    pub fn general(&self, fields: &[&str]) -> Option<&str> {
        (!self.message.is_empty() && !fields.contains(&self.field.as_str()))
            .then_some(self.message.as_str())
    }
}

/// Only refusals a person can act on come back as the form; anything else
/// is the error page.
pub(super) fn answerable(error: &DomainError) -> bool {
    matches!(
        error,
        DomainError::Invalid { .. } | DomainError::Conflict { .. }
    )
}

/// A form page shown again for a refusal: the refusal's status and code.
pub(super) fn refused(error: &DomainError, page: impl IntoResponse) -> Response {
    let code = error.code();
    let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    (status, [(X_ERROR_CODE, code.as_str())], page).into_response()
}

#[derive(Debug, Template, WebTemplate)]
#[template(path = "products.html")]
pub struct ListPage {
    layout: Layout,
    rows: Vec<Product>,
}

pub async fn list(viewer: Viewer, State(state): State<PanelState>) -> PanelResult<ListPage> {
    Ok(ListPage {
        layout: Layout::new(&viewer, "Products", "/products"),
        rows: products::list(&state.pool).await?,
    })
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct ProductForm {
    pub slug: String,
    pub name: String,
    pub description: String,
}

#[derive(Debug, Template, WebTemplate)]
#[template(path = "product_form.html")]
pub struct FormPage {
    layout: Layout,
    /// `None`: a new product (the slug can be chosen only then).
    id: Option<i32>,
    form: ProductForm,
    error: Refusal,
}

pub const PRODUCT_FIELDS: [&str; 3] = ["slug", "name", "description"];

fn form_page(viewer: &Viewer, id: Option<i32>, form: ProductForm, error: Refusal) -> FormPage {
    let title = if id.is_some() {
        "Edit product"
    } else {
        "New product"
    };
    FormPage {
        layout: Layout::new(viewer, title, "/products"),
        id,
        form,
        error,
    }
}

pub async fn new_form(AdminUser(admin): AdminUser) -> FormPage {
    form_page(&admin, None, ProductForm::default(), Refusal::default())
}

pub async fn create(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Form(form): Form<ProductForm>,
) -> PanelResult<Response> {
    let new = NewProduct {
        slug: form.slug.trim().to_owned(),
        name: form.name.clone(),
        description: optional(&form.description),
    };
    match products::create(&state.pool, &admin.ctx, &new).await {
        Ok(product) => Ok(Redirect::to(&format!("/products/{}", product.id)).into_response()),
        Err(error) => refused_product(&admin, None, form, error),
    }
}

pub async fn edit_form(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<i32>,
) -> PanelResult<FormPage> {
    let product = products::get(&state.pool, id).await?;
    let form = ProductForm {
        slug: product.slug,
        name: product.name,
        description: product.description.unwrap_or_default(),
    };
    Ok(form_page(&admin, Some(id), form, Refusal::default()))
}

pub async fn update(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<i32>,
    Form(form): Form<ProductForm>,
) -> PanelResult<Response> {
    let changes = ProductUpdate {
        name: Some(form.name.clone()),
        description: Some(optional(&form.description)),
    };
    match products::update(&state.pool, &admin.ctx, id, &changes).await {
        Ok(_) => Ok(Redirect::to(&format!("/products/{id}")).into_response()),
        Err(error) => refused_product(&admin, Some(id), form, error),
    }
}

fn refused_product(
    admin: &Viewer,
    id: Option<i32>,
    form: ProductForm,
    error: DomainError,
) -> PanelResult<Response> {
    if !answerable(&error) {
        return Err(error.into());
    }
    let page = form_page(admin, id, form, Refusal::of(&error));
    Ok(refused(&error, page))
}

/// The client configuration as typed: numbers and JSON as text.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct ConfigForm {
    pub heartbeat_interval_secs: String,
    pub grace_period_secs: String,
    /// Feature names separated by commas or spaces.
    pub features: String,
    pub settings: String,
}

impl ConfigForm {
    fn of(config: &ClientConfig) -> Self {
        let number = |n: Option<i32>| n.map(|n| n.to_string()).unwrap_or_default();
        Self {
            heartbeat_interval_secs: number(config.heartbeat_interval_secs),
            grace_period_secs: number(config.grace_period_secs),
            features: config.features.join(", "),
            settings: serde_json::to_string_pretty(&config.settings).unwrap_or_default(),
        }
    }

    fn parse(&self) -> Result<ClientConfig, DomainError> {
        Ok(ClientConfig {
            heartbeat_interval_secs: seconds(
                "heartbeat_interval_secs",
                &self.heartbeat_interval_secs,
            )?,
            grace_period_secs: seconds("grace_period_secs", &self.grace_period_secs)?,
            features: self
                .features
                .split([',', ' ', '\n', '\r', '\t'])
                .filter(|f| !f.is_empty())
                .map(str::to_owned)
                .collect(),
            settings: ClientConfig::parse_settings(&self.settings)?,
        })
    }
}

/// Empty: the edge configuration's.
fn seconds(field: &str, text: &str) -> Result<Option<i32>, DomainError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| DomainError::invalid(field, "a whole number of seconds, or empty"))
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct ReleaseForm {
    pub version: String,
    pub channel: String,
    pub download_url: String,
    pub notes: String,
}

/// The version check preview's question.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct PreviewQuery {
    pub version: String,
    pub channel: String,
}

#[derive(Debug, Template, WebTemplate)]
#[template(path = "product.html")]
pub struct ProductPage {
    layout: Layout,
    product: Product,
    config_form: ConfigForm,
    config_error: Refusal,
    releases: Vec<Release>,
    release_form: ReleaseForm,
    release_error: Refusal,
    /// Channels with a release, for the preview's choice.
    channels: Vec<String>,
    preview: PreviewQuery,
    answer: Option<VersionCheckResponse>,
    preview_error: Refusal,
    /// A refused publish / unpublish / minimum change.
    action_error: Refusal,
    flag_count: usize,
}

/// What the product page shows besides its defaults.
#[derive(Default)]
struct Shown {
    config_form: Option<ConfigForm>,
    config_error: Refusal,
    release_form: Option<ReleaseForm>,
    release_error: Refusal,
    preview: PreviewQuery,
    action_error: Refusal,
}

async fn product_page(
    viewer: &Viewer,
    state: &PanelState,
    id: i32,
    shown: Shown,
) -> PanelResult<ProductPage> {
    let product = products::get(&state.pool, id).await?;
    let config = products::client_config(&state.pool, id).await?;
    let releases = products::list_releases(&state.pool, id).await?;
    let mut channels: Vec<String> = releases.iter().map(|r| r.channel.clone()).collect();
    channels.push(DEFAULT_CHANNEL.to_owned());
    channels.sort();
    channels.dedup();
    let mut preview = shown.preview;
    let mut preview_error = Refusal::default();
    let answer = if preview.version.trim().is_empty() {
        None
    } else {
        let channel = Some(preview.channel.trim()).filter(|c| !c.is_empty());
        match products::version_check(&state.pool, &product.slug, &preview.version, channel).await {
            Ok(answer) => Some(answer),
            Err(error) if answerable(&error) => {
                preview_error = Refusal::of(&error);
                None
            }
            Err(error) => return Err(error.into()),
        }
    };
    if preview.channel.trim().is_empty() {
        preview.channel = DEFAULT_CHANNEL.to_owned();
    }
    let flag_count = flags::list(&state.pool)
        .await?
        .iter()
        .filter(|f| f.product_id == Some(id))
        .count();
    Ok(ProductPage {
        layout: Layout::new(viewer, "Product", "/products"),
        config_form: shown.config_form.unwrap_or_else(|| ConfigForm::of(&config)),
        config_error: shown.config_error,
        releases,
        release_form: shown.release_form.unwrap_or_else(|| ReleaseForm {
            channel: DEFAULT_CHANNEL.to_owned(),
            ..ReleaseForm::default()
        }),
        release_error: shown.release_error,
        channels,
        preview,
        answer,
        preview_error,
        action_error: shown.action_error,
        flag_count,
        product,
    })
}

/// The product page; `?version=&channel=` previews the version check.
pub async fn show(
    viewer: Viewer,
    State(state): State<PanelState>,
    Path(id): Path<i32>,
    Query(preview): Query<PreviewQuery>,
) -> PanelResult<ProductPage> {
    let shown = Shown {
        preview,
        ..Shown::default()
    };
    product_page(&viewer, &state, id, shown).await
}

/// The page again with a refusal, answering the refusal's status.
async fn refused_page(
    viewer: &Viewer,
    state: &PanelState,
    id: i32,
    error: DomainError,
    shown: Shown,
) -> PanelResult<Response> {
    if !answerable(&error) {
        return Err(error.into());
    }
    let page = product_page(viewer, state, id, shown).await?;
    Ok(refused(&error, page))
}

pub async fn set_config(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<i32>,
    Form(form): Form<ConfigForm>,
) -> PanelResult<Response> {
    let saved = match form.parse() {
        Ok(config) => products::set_client_config(&state.pool, &admin.ctx, id, &config).await,
        Err(error) => Err(error),
    };
    match saved {
        Ok(_) => Ok(Redirect::to(&format!("/products/{id}#client-config")).into_response()),
        Err(error) => {
            let shown = Shown {
                config_error: Refusal::of(&error),
                config_form: Some(form),
                ..Shown::default()
            };
            refused_page(&admin, &state, id, error, shown).await
        }
    }
}

pub async fn add_release(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<i32>,
    Form(form): Form<ReleaseForm>,
) -> PanelResult<Response> {
    let new = NewRelease {
        version: form.version.clone(),
        channel: match form.channel.trim() {
            "" => DEFAULT_CHANNEL.to_owned(),
            channel => channel.to_owned(),
        },
        download_url: optional(&form.download_url),
        notes: optional(&form.notes),
    };
    match products::add_release(&state.pool, &admin.ctx, id, &new).await {
        Ok(_) => Ok(Redirect::to(&format!("/products/{id}#releases")).into_response()),
        Err(error) => {
            let shown = Shown {
                release_error: Refusal::of(&error),
                release_form: Some(form),
                ..Shown::default()
            };
            refused_page(&admin, &state, id, error, shown).await
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum ReleaseAction {
    Publish,
    Unpublish,
    MarkMinAllowed,
    ClearMinAllowed,
}

async fn release_action(
    admin: &Viewer,
    state: &PanelState,
    release_id: Uuid,
    action: ReleaseAction,
) -> PanelResult<Response> {
    let (pool, ctx) = (&state.pool, &admin.ctx);
    let product_id = products::get_release(pool, release_id).await?.product_id;
    let done = match action {
        ReleaseAction::Publish => products::publish(pool, ctx, release_id).await,
        ReleaseAction::Unpublish => products::unpublish(pool, ctx, release_id).await,
        ReleaseAction::MarkMinAllowed => products::mark_min_allowed(pool, ctx, release_id).await,
        ReleaseAction::ClearMinAllowed => products::clear_min_allowed(pool, ctx, release_id).await,
    };
    match done {
        Ok(_) => Ok(Redirect::to(&format!("/products/{product_id}#releases")).into_response()),
        Err(error) => {
            let shown = Shown {
                action_error: Refusal::of(&error),
                ..Shown::default()
            };
            refused_page(admin, state, product_id, error, shown).await
        }
    }
}

pub async fn publish(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
) -> PanelResult<Response> {
    release_action(&admin, &state, id, ReleaseAction::Publish).await
}

pub async fn unpublish(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
) -> PanelResult<Response> {
    release_action(&admin, &state, id, ReleaseAction::Unpublish).await
}

pub async fn mark_min_allowed(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
) -> PanelResult<Response> {
    release_action(&admin, &state, id, ReleaseAction::MarkMinAllowed).await
}

pub async fn clear_min_allowed(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
) -> PanelResult<Response> {
    release_action(&admin, &state, id, ReleaseAction::ClearMinAllowed).await
}

/// An empty field clears the value.
pub(super) fn optional(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}
